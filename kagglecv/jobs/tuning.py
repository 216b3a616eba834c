"""Jobs of the hyperparameter search: tune_study, tune_trial, tune_results (rules/tune.smk; kagglecv.tuning).

Every job reads the `tune:` section from the config (validated as the workflow read it) and the study's name from
its rule's params; the storage URL is never a param (its password would sit in Snakemake's records).
"""

from __future__ import annotations

from kagglecv.core.errors import InputError
from kagglecv.jobs.harness import Job, job


def context(job: Job):
    """(the tune section as kagglecv.tuning.settings.Tuning, TuneFiles, the study's name, the storage URL)."""
    from kagglecv.config.schema import load_schema
    from kagglecv.tuning.settings import Tuning

    tuning, files = Tuning.of(job.config, load_schema()), job.layout.tune
    return tuning, files, job.params.study, tuning.storage_url(files)


@job
def tune_study(job: Job) -> None:
    """Create the study in its storage (or find it) before any trial asks it, and say so in study.json."""
    from kagglecv.core.files import write_json
    from kagglecv.core.secrets import redact
    from kagglecv.tuning.space import configured
    from kagglecv.tuning.study import open_study

    tuning, _, name, url = context(job)
    if not tuning.space:
        raise InputError(
            "tune.space: empty; name the settings to search, e.g. lr: {low: 1.0e-4, high: 1.0e-2, "
            "log: true} (docs/tuning.md)"
        )
    study = open_study(name, url, tuning.direction)
    baseline = configured(tuning.entry, tuning.space) if tuning.baseline and not study.trials else {}
    if baseline:  # a new study: its first trial trains the entry as configured
        study.enqueue_trial(baseline, user_attrs={"baseline": True})
        print(f"study {name}: trial 0 is the entry as configured: {baseline}", flush=True)
    if job.track:  # mlflow.live: the parent run now, before trials on several nodes could each make one
        from kagglecv.tuning.tracking import sync

        sync(study, tuning, redact(url), job.experiment, job.layout.results)
    write_json(
        job.output.study,
        {
            "study": name,
            "backbone": tuning.backbone,
            "metric": tuning.metric,
            "direction": tuning.direction,
            "folds": list(tuning.folds),
            "storage": redact(url),
        },
    )
    print(
        f"study {name} ({tuning.direction} {tuning.metric}) in {redact(url)}: {len(study.trials)} trial(s) so far",
        flush=True,
    )


@job
def tune_trial(job: Job) -> dict:
    """One trial slot: its stale trial (a killed job's) marked failed, a new trial asked, trained and told."""
    from kagglecv.core.files import write_json
    from kagglecv.tuning.study import claim, open_study
    from kagglecv.tuning.trial import run_trial

    tuning, files, name, url = context(job)
    slot = int(job.wildcards.slot)
    study = open_study(name, url, tuning.direction, pruner=tuning.make_pruner())
    trial, stale = claim(study, slot, tuning.sampler_for, url)
    if stale:
        print(
            f"slot {slot}: trial(s) {stale} left RUNNING by a killed job, marked FAIL; trial {trial.number} "
            "takes the slot",
            flush=True,
        )
    outcome = run_trial(tuning, study, trial, job.layout, files.trial(trial.number), job.threads)
    if job.track:  # mlflow.live: the trial's child run as it ends (tune_results adds what is missing)
        from kagglecv.core.secrets import redact
        from kagglecv.tuning.study import claiming
        from kagglecv.tuning.tracking import sync

        with claiming(url):  # an SQLite study's slots take turns, as they do to claim a trial
            sync(study, tuning, redact(url), job.experiment, job.layout.results, only=trial.number)
    write_json(job.output.slot, {"slot": slot, "study": name, **outcome})
    return outcome


@job
def tune_results(job: Job) -> None:
    """trials.csv, best.yaml and the report's figures from the study's storage; the study in MLflow."""
    from kagglecv.core.secrets import redact
    from kagglecv.report import tuning as figures
    from kagglecv.tuning.results import importances, write_best, write_trials
    from kagglecv.tuning.study import most_at_once, open_study
    from kagglecv.tuning.tracking import sync

    tuning, _, name, url = context(job)
    study = open_study(name, url, tuning.direction)
    trials = study.get_trials(deepcopy=False)
    df = write_trials(trials, job.output.trials)
    entry = write_best(tuning, study, job.output.best, trials)
    found, why_not = importances(study, trials)
    figures.history(df, tuning.metric, tuning.direction == "maximize", job.output.history)
    figures.importances(found, why_not, job.output.importances)
    if job.config["mlflow"]["enabled"]:
        sync(study, tuning, redact(url), job.experiment, job.layout.results)
    counts = df["state"].value_counts().to_dict()
    print(
        f"study {name}: {len(df)} trial(s) {counts}, at most {most_at_once(trials)} at once; best: trial "
        f"{study.best_trial.number}, {tuning.metric} {study.best_value:.5g}: {entry}",
        flush=True,
    )
