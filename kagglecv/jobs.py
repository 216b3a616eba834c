"""Every rule's job, one function per rule, named as the rule in rules/*.smk.

Each rule runs scripts/job.py, which calls `run(snakemake)`: the harness builds a `Job` (the rule's input, output,
params, config, threads and wildcards, and the competition's `Layout`), sends the job's output to its log, turns
bad input into one `ERROR:` line with exit status 1, and calls the function registered under the rule's name.
Tracking is decided here once (`Job.track`), from the config, never from a param: turning it on, off or live
reruns nothing. Library modules are imported inside each job: a small job must not pay for torch and timm.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kagglecv.core.errors import InputError
from kagglecv.core.layout import Layout, record_file

# Jobs that, with mlflow.live: false, only write their record; the ensemble step replays it into MLflow.
BEFORE_ENSEMBLE = {"prepare", "folds", "train", "pseudo_labels", "distill_targets"}
JOBS: dict[str, Callable[["Job"], object]] = {}
log = logging.getLogger("kagglecv.jobs")


class Files(dict):
    """A rule's named input, output, params or wildcards: `job.input.folds` or `job.input["folds"]`."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no {name!r} here; named: {', '.join(self) or 'none'}") from None


@dataclass
class Job:
    """What one job of a rule receives."""

    rule: str
    config: dict  # the workflow's resolved config (rules/common.smk)
    input: Files = field(default_factory=Files)
    output: Files = field(default_factory=Files)
    params: Files = field(default_factory=Files)
    wildcards: Files = field(default_factory=Files)
    threads: int = 1
    log: str | None = None

    @classmethod
    def of(cls, smk) -> "Job":
        """The job Snakemake hands a script (its global `snakemake` object)."""
        return cls(smk.rule, smk.config, Files(smk.input.items()), Files(smk.output.items()),
                   Files(smk.params.items()), Files(smk.wildcards.items()), smk.threads,
                   smk.log[0] if smk.log else None)

    @property
    def layout(self) -> Layout:
        return Layout.of(self.config["competition"])

    @property
    def experiment(self) -> str:
        return self.config["competition"]

    @property
    def track(self) -> bool:
        """Whether this job logs to MLflow while it runs (kagglecv.tracking.tracker.tracks_live)."""
        from kagglecv.tracking.tracker import tracks_live

        return tracks_live(self.config, before_ensemble=job_of(self.rule).__name__ in BEFORE_ENSEMBLE)

    def tracker(self, run_name: str, folder, **tags):
        """The job's MLflow run, with its record written beside its outputs in `folder`."""
        from kagglecv.tracking.tracker import Tracker

        return Tracker(self.experiment, run_name, self.layout.results, enabled=self.track,
                       tags={"step": self.rule, **tags}, record=record_file(folder, run_name))


def job(fn: Callable[[Job], object]) -> Callable[[Job], object]:
    """Register `fn` as the job of the rule of the same name."""
    JOBS[fn.__name__] = fn
    return fn


# ---------------------------------------------------------------- the harness


def run_logged(log_path: str | Path | None, fn, *args, **kwargs):
    """Call fn(*args, **kwargs) with stdout/stderr going to `log_path`.

    An InputError becomes a single `ERROR: ...` line, in the log and on the terminal, and exit status 1;
    any other exception keeps its traceback in the log (that is a bug, not bad input). Everything the job
    prints or logs is redacted on its way (kagglecv.core.secrets): libraries print URLs with their credentials."""
    from kagglecv.core.secrets import RedactedStream, redact

    terminal = sys.__stderr__
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    raw = open(log_path, "a", buffering=1) if log_path else sys.stderr
    log_file = RedactedStream(raw)
    logging.basicConfig(stream=log_file, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        force=True)
    try:
        with contextlib.redirect_stdout(log_file), contextlib.redirect_stderr(log_file):
            try:
                return fn(*args, **kwargs)
            except InputError as e:
                print(f"ERROR: {e}", file=log_file, flush=True)
                if terminal is not None and log_path:
                    print(f"ERROR: {redact(str(e), log_file.known)}", file=terminal, flush=True)
                sys.exit(1)
            except Exception:
                traceback.print_exc(file=log_file)
                raise
    finally:
        log_file.flush()
        if log_path:
            raw.close()


def job_of(rule: str) -> Callable[[Job], object]:
    """The job of `rule`: the function of that name, or for a rule reusing one of ours (`use rule train as
    train_mynet`, docs/extending.md) the job whose name, with "_", begins its name."""
    if rule in JOBS:
        return JOBS[rule]
    base = max((name for name in JOBS if rule.startswith(f"{name}_")), key=len, default=None)
    if base is None:
        raise KeyError(f"rule {rule!r} has no job in kagglecv.jobs (known: {', '.join(sorted(JOBS))}); a rule reusing "
                       f"one of ours is named <its name>_<anything>, e.g. train_mynet")
    return JOBS[base]


def run(smk):
    """scripts/job.py: the job of the rule Snakemake is running, logged."""
    job_ = Job.of(smk)
    return run_logged(job_.log, job_of(job_.rule), job_)


# ---------------------------------------------------------------- data


@job
def demo_competition(job: Job) -> None:
    from kagglecv.data.demo import make_digits_competition

    make_digits_competition(job.output.zip, job.output.solution)


@job
def download(job: Job) -> Path:
    """The competition through the Kaggle API. Retry settings and archive limits come from the config, not
    params: changing them must never download a competition again."""
    from kagglecv.data.archive import ArchiveLimits
    from kagglecv.kaggle.download import download_competition

    k = job.config["kaggle"]
    return download_competition(job.wildcards.competition, Path(job.output.marker).parent, retries=k["retries"],
                                backoff=k["backoff"], http_timeout=k["http_timeout"],
                                limits=ArchiveLimits(**job.config["archive"]))


@job
def prepare(job: Job) -> dict:
    """Read, validate and decode the competition into prepared/. Archive limits come from the config, not
    params: changing them must not rebuild the cache."""
    from kagglecv.data import prepare as prep
    from kagglecv.data.archive import ArchiveLimits

    p, out = job.params, job.layout.prepared
    with job.tracker("prepare", out.path) as t:
        meta = prep.prepare(p.path, out.path, prep.DataConfig(**p.data), workers=job.threads,
                            limits=ArchiveLimits(**job.config["archive"]), task=p.task, metric=p.metric)
        t.log_params({"data_path": str(p.path), **{k: v for k, v in meta.items() if k != "classes"},
                      "n_classes": len(meta["classes"])})
        t.log_artifact(out.meta)
    return meta


@job
def folds(job: Job) -> None:
    from kagglecv.data import folds as kfold

    L, p = job.layout, job.params
    with job.tracker("folds", L.root) as t:
        task = json.loads(L.prepared.meta.read_text())["task"]
        df = kfold.make_folds(L.prepared.train, L.folds, p.folds, p.seed, task=task)
        t.log_params({"folds": p.folds, "seed": p.seed})
        t.log_metrics({f"fold{k}_size": int(n) for k, n in df["fold"].value_counts().sort_index().items()})
        t.log_artifact(L.folds)


# ---------------------------------------------------------------- training


def train_settings(job: Job) -> dict:
    """The backbone's training settings (the rule's `train` param) with the job's threads."""
    return {**job.params.train, "threads": job.threads}


@job
def lr_find(job: Job) -> dict:
    from kagglecv.training.lr_finder import run_lr_find

    L = job.layout
    return run_lr_find(train_settings(job), L.prepared.path, L.folds, L.lr_find(job.wildcards.backbone).path,
                       job.params.lr_find)


def one_file(files) -> str | None:
    """A named input that is one file or none (an input function's [])."""
    if isinstance(files, str):
        return files
    return str(files[0]) if files else None


@job
def train(job: Job) -> dict:
    """One (member, fold): a backbone, a pseudo-label round's copy of it, or the student, which learn from their
    teacher file too (kagglecv.training.teachers). train.lr: auto trains at the lr_find rule's suggestion."""
    from kagglecv.training import train as trainer

    L, cfg = job.layout, train_settings(job)
    if cfg.get("lr") == "auto":
        found = one_file(job.input.get("lr_find"))
        if not found:
            raise InputError("train.lr: auto needs the lr_find rule's lr_find.json for this backbone")
        suggestion = json.loads(Path(found).read_text())
        print(f"train.lr: auto -> {suggestion['suggestion']:.4g} ({suggestion.get('method', 'valley')} of {found})")
        cfg["lr"] = float(suggestion["suggestion"])
    return trainer.run(trainer.TrainConfig.from_dict(cfg), L.prepared.path, L.folds,
                       L.model(job.wildcards.backbone, job.wildcards.fold).path, experiment=job.experiment,
                       results_dir=L.results, track=job.track, teacher_csv=one_file(job.input.get("teacher")))


@job
def pseudo_labels(job: Job) -> None:
    """A pseudo-label round's targets for one fold: the test images as the previous round's fold models see them."""
    from kagglecv.core.tasks import Task
    from kagglecv.training.teachers import pseudo_labels as label

    L, w = job.layout, job.wildcards
    out = L.teacher(f"round{w.round}", w.fold)
    with job.tracker(f"pseudo_labels-round{w.round}-fold{w.fold}", out.parent, round=w.round, fold=w.fold) as t:
        rows = label(list(job.input.test), Task.of(json.loads(L.meta.read_text())), out, **job.params.settings)
        t.log_params({"teachers": len(job.input.test), **job.params.settings})
        t.log_metrics({"test_rows": len(rows)})
        t.log_artifact(out)


@job
def distill_targets(job: Job) -> None:
    """The student's targets for one fold: its training rows' labels mixed with the other members' out-of-fold
    predictions, and the test images as the members' fold models see them."""
    from kagglecv.core.files import read_table
    from kagglecv.core.tasks import Task
    from kagglecv.training.teachers import distill_targets as targets

    L, fold, n = job.layout, int(job.wildcards.fold), job.config["folds"]
    out = L.teacher("student", fold)
    oofs = [[m.oof for m in L.folds_of(member, n)] for member in job.params.teachers]
    with job.tracker(f"distill_targets-fold{fold}", out.parent, fold=str(fold)) as t:
        rows = targets(oofs, list(job.input.test), read_table(L.folds), fold, Task.of(json.loads(L.meta.read_text())),
                       out, label_weight=job.params.label_weight)
        t.log_params({"teachers": ",".join(job.params.teachers), "label_weight": job.params.label_weight})
        t.log_metrics({"rows": len(rows)})
        t.log_artifact(out)


# ---------------------------------------------------------------- ensemble, submission


@job
def ensemble(job: Job) -> dict:
    """The ensemble, logged. With mlflow.live: false, first put the records of the jobs before it (prepare,
    folds, training) into MLflow, which they skipped to save their start-up."""
    from kagglecv.scoring import ensemble as ens
    from kagglecv.tracking.tracker import replays_records

    L, p = job.layout, job.params
    if replays_records(job.config):
        replay_records(L.root, job.experiment)
    with job.tracker("ensemble", L.root) as t:
        scores = ens.combine({k: [Path(d) for d in v] for k, v in p.model_dirs.items()}, L.folds, p.metric,
                             L.root, p.method)
        print(ens.cv_table(scores))
        t.log_params({"metric": p.metric, "method": p.method, "backbones": ",".join(p.model_dirs)})
        t.log_metrics({f"cv_{name}": s["cv"] for name, s in scores["models"].items()})
        t.log_metrics({"cv_ensemble": scores["ensemble"]["cv"]})
        t.log_artifact(L.scores)
    return scores


def replay_records(results, experiment: str) -> None:
    """kagglecv.tracking.backfill of `results` (results/<competition>): the runs of jobs that wrote only their record.
    Tracking never fails a step: a failure warns once, as any tracking call's does, and `snakemake backfill`
    can do it later."""
    from kagglecv.tracking.backfill import backfill as replay
    from kagglecv.tracking.tracker import warn_down

    try:
        replay(results, experiment)  # prints what it logged
    except Exception as e:  # noqa: BLE001 - the ensemble's result does not depend on MLflow
        warn_down("replaying the jobs' records", e, stacklevel=2)


@job
def submission(job: Job) -> None:
    from kagglecv.scoring.submission import make_submission

    L = job.layout
    with job.tracker("submission", L.root) as t:
        out = make_submission(L.ensemble_test, L.prepared.path, L.prepared.sample_submission, job.params.metric,
                              L.submission, scores_json=L.scores)
        t.log_params({"rows": len(out), "columns": ",".join(out.columns)})
        t.log_artifact(L.submission)


@job
def holdout(job: Job) -> dict:
    """Score the submission against held-aside labels (the demo's solution.csv): the local 'public score'."""
    from kagglecv.core.files import write_json
    from kagglecv.scoring.submission import score_against

    L = job.layout
    result = score_against(L.submission, job.input.solution, json.loads(L.meta.read_text()), job.params.metric)
    with job.tracker("holdout", L.root) as t:
        write_json(L.holdout, result)
        t.log_metrics({"holdout_score": result["score"]})
        t.log_artifact(L.holdout)
    return result


# ---------------------------------------------------------------- Kaggle


@job
def kernel(job: Job) -> dict:
    """The code competition's notebook and dataset (kagglecv.kaggle.kernel.build), logged. The record goes beside the
    results, not into the dataset (a file that changes on every build would make every submit upload again)."""
    from kagglecv.kaggle.kernel import build

    L, p = job.layout, job.params
    with job.tracker("kernel", L.root) as t:
        manifest = build(L.root, L.kernel_dataset.path, L.kernel.path, competition=p.competition, repo=p.repo,
                         owner=p.owner, dataset=p.dataset, kernel=p.kernel, enable_gpu=p.enable_gpu,
                         wheels=p.wheels, max_bytes=p.max_bytes, models=p.models, student=p.student,
                         rerun_config=p.rerun)
        t.log_params({"dataset": manifest["dataset"], "kernel": manifest["kernel"], "method": manifest["method"],
                      "members": ",".join(manifest["members"]), "files": len(manifest["files"])})
        t.log_metrics({"dataset_bytes": manifest["bytes"],
                       **{k: v for k, v in (manifest["kernel_run"]["budget"] or {}).items()
                          if k in ("projected_seconds", "seconds_per_image", "rows")}})
        t.log_artifact(L.kernel_dataset.manifest)
    return manifest


@job
def submit(job: Job) -> dict:
    """Submit, wait for the public score, append it to leaderboard.csv, log it to MLflow. A file competition gets
    submission.csv (kagglecv.kaggle.submit); a code competition (kaggle.code_competition true, or auto and Kaggle's
    listing says so) the output of the kernel of `snakemake kernel`, run on Kaggle (kagglecv.kaggle.code); one
    authenticated client does all of it. The leaderboard row is written whatever happens once the submission
    exists (scored, ERROR or PENDING); the job then fails with the reason. Run again after PENDING: the pending
    row is polled again, never submitted twice."""
    from kagglecv.kaggle import code, submit as files
    from kagglecv.kaggle.client import client
    from kagglecv.core.secrets import redact
    from kagglecv.tracking.tracker import Tracker, log_to_parent

    L, p = job.layout, job.params
    scores = json.loads(L.scores.read_text())
    cv = scores["ensemble"]["cv"]
    message = files.submission_message(scores, files.git_commit(p.repo), p.message)
    api = client(p.http_timeout)
    is_code = p.code_competition
    if is_code == "auto":
        is_code = bool(code.is_code_competition(api, p.competition, p.http_timeout))
        log.info("%s: %s competition (Kaggle's listing)", p.competition, "a code" if is_code else "a file")
    log.info("%s: submitting %s with message %r", p.competition, "the kernel's output" if is_code else L.submission,
             redact(message))
    wait = {"poll_interval": p.poll_interval, "timeout": p.timeout, "http_timeout": p.http_timeout, "api": api}
    if is_code:
        result = code.code_submit(p.competition, L, message, cv=cv, owner=p.owner, kernel_timeout=p.kernel_timeout,
                                  max_bytes=p.max_bytes, **wait)
    else:
        result = files.submit_and_record(p.competition, L.submission, message, L.leaderboard, cv=cv, **wait)
    log.info("%s: submission %s %s: public score %s (CV %s %s); recorded in %s", p.competition, result["ref"],
             result["status"], result["public_score"], scores["metric"], cv, L.leaderboard)
    params = {"message": result["message"], "ref": result["ref"], "status": result["status"],
              "metric": scores["metric"], **{k: result[k] for k in ("kernel", "kernel_version") if k in result}}
    scored = {"public_score": result["public_score"], "private_score": result["private_score"]}
    with Tracker(job.experiment, "submit", L.results, enabled=job.track, tags={"step": "submit"}) as t:
        t.log_params(params)  # redacted, as everything a Tracker logs
        t.log_metrics({"cv": result["cv"], **scored})
        t.log_artifact(L.leaderboard)
    if job.track:  # the invocation's parent run holds the public score beside the ensemble CV
        log_to_parent(scored, results_dir=L.results)
    files.check_result(result, p.competition)
    print(f"{p.competition}: submission {result['ref']} public score {result['public_score']} "
          f"(row appended to {L.leaderboard})", file=sys.__stderr__)
    return result


@job
def backfill(job: Job) -> dict:
    """Put into MLflow the runs that tracking missed; this invocation's own parent run holds no workflow, so it
    is named for what it did (and kept out of the runs a later backfill attributes jobs to: step=workflow)."""
    from kagglecv.tracking.backfill import backfill as replay
    from kagglecv.tracking.tracker import log_to_parent

    report = replay(job.layout.root, job.experiment)
    log_to_parent(metrics={k: len(v) for k, v in report.items()},
                  tags={"step": "backfill", "mlflow.runName": "backfill", "kagglecv.job": "backfill"})
    return report


# ---------------------------------------------------------------- predict and the report


@job
def predict(job: Job) -> None:
    from kagglecv.inference.predict import predict_folder

    out = predict_folder(job.layout.root, job.input.images, job.output.csv, job.output.summary,
                         device=job.params.device, threads=job.threads, meta_csv=job.config["predict_meta"])
    print(f"{len(out)} prediction(s) written to {job.output.csv}", flush=True)


@job
def report_cv(job: Job) -> None:
    from kagglecv.report.figures import cv_table

    cv_table(job.input.scores, job.output.png, job.output.html, job.input.oof)


@job
def report_curves(job: Job) -> None:
    from kagglecv.report.figures import job_time, training_curves

    training_curves(job.params.histories, job.params.metric, job.output.png)
    job_time(job.params.metrics, job.output.job_time)


@job
def report_oof(job: Job) -> None:
    from kagglecv.report.figures import confusion, oof_errors

    scores = json.loads(Path(job.input.scores).read_text())
    confusion(job.input.oof, job.input.meta, job.output.confusion, scores["ensemble"]["method"], scores)
    oof_errors(job.input.oof, job.layout.prepared.path, job.output.errors)


@job
def report_folds(job: Job) -> None:
    from kagglecv.report.figures import class_balance

    class_balance(job.input.folds, job.input.meta, job.output.png)


@job
def report_lr_find(job: Job) -> None:
    from kagglecv.report.figures import lr_find_curves

    lr_find_curves(job.params.lr_find, job.output.png)


@job
def report_leaderboard(job: Job) -> None:
    from kagglecv.report.figures import leaderboard

    leaderboard(job.input.leaderboard, job.output.png)
