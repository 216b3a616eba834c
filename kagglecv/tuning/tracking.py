"""The study in MLflow: one parent run per study, one child run per finished trial, made from the study's storage.

The trial jobs do not talk to MLflow: the storage already holds every trial's params, reports, value, state and
times, and Optuna is what the trials must reach (on a cluster, MLflow's SQLite store would be one more contended
file). The study's summary job (`tune_results`) brings MLflow up to date: the parent run (tag
kagglecv.tune.study) is found or made, and each finished trial without a child run (tag kagglecv.tune.trial) gets
one, so a continued study adds its new trials and a rerun after a tracking outage fills in what was missed. As
everywhere, tracking never fails the job: a failure warns once (kagglecv.tracking.tracker.warn_down).
"""

from __future__ import annotations

import time

from kagglecv.core.secrets import redact
from kagglecv.tracking.tracker import (
    JOB_TAG,
    create_experiment,
    flatten,
    http_defaults,
    log_batch,
    mlflow_name,
    numbers,
    retry_busy,
    tracking_uri,
    warn_down,
)

STUDY_TAG = "kagglecv.tune.study"
TRIAL_TAG = "kagglecv.tune.trial"
PARENT_TAG = "mlflow.parentRunId"
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}  # Optuna's state -> MLflow's


def ms(d) -> int | None:
    return int(d.timestamp() * 1000) if d is not None else None


def sync(study, tuning, url: str, experiment: str, results_dir, only: int | None = None) -> dict | None:
    """Bring MLflow up to date with `study` (`only`: the parent and that trial's child run, as a trial's job logs
    its own); {"parent": run id, "created": [trial numbers]}, or None when tracking failed (warned)."""
    try:
        return _sync(study, tuning, url, experiment, results_dir, only)
    except Exception as e:  # noqa: BLE001 - tracking must never fail the job
        warn_down("tuning runs (kagglecv.tuning.tracking)", e, stacklevel=2)
        return None


def _sync(study, tuning, url, experiment, results_dir, only=None) -> dict:
    import mlflow

    http_defaults()
    client = mlflow.MlflowClient(tracking_uri(results_dir))
    exp = retry_busy(client.get_experiment_by_name, experiment)
    exp_id = exp.experiment_id if exp else retry_busy(create_experiment, client, experiment, results_dir)
    name = study.study_name
    runs = retry_busy(client.search_runs, [exp_id], filter_string=f"tags.`{STUDY_TAG}` = '{name}'", max_results=50000)
    parent = next((r.info.run_id for r in runs if TRIAL_TAG not in r.data.tags), None)
    if parent is None:
        parent = make_parent(client, exp_id, study, tuning, url)
    have = {r.data.tags[TRIAL_TAG] for r in runs if TRIAL_TAG in r.data.tags}
    created = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name in STATUS and str(t.number) not in have and only in (None, t.number):
            make_child(client, exp_id, parent, name, tuning.metric, t)
            created.append(t.number)
    update_parent(client, parent, study, tuning)
    return {"parent": parent, "created": created}


def make_parent(client, exp_id: str, study, tuning, url: str) -> str:
    run_name = f"tune-{tuning.backbone}"
    run = retry_busy(
        client.create_run,
        exp_id,
        run_name=run_name,
        tags={"step": "tune", STUDY_TAG: study.study_name, JOB_TAG: run_name},
    )
    params = {
        "study": study.study_name,
        "backbone": tuning.backbone,
        "metric": tuning.metric,
        "direction": tuning.direction,
        "folds": list(tuning.folds),
        "seed": tuning.seed,
        "storage": url,
    }
    log_run(client, run.info.run_id, params=params)
    return run.info.run_id


def update_parent(client, parent: str, study, tuning) -> None:
    """What changes as a study goes on: the counts and the best value (metrics, at the step of the trials seen),
    the settings a rerun may change (tags)."""
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    metrics = {f"trials_{s.lower()}": states.count(s) for s in ("COMPLETE", "PRUNED", "FAIL")}
    tags = {
        "trials": str(tuning.trials),
        "sampler": tuning.sampler,
        "pruner": tuning.pruner,
        "space": redact(str({p.name: p.choices or [p.low, p.high] for p in tuning.space}))[:5000],
    }
    if metrics["trials_complete"]:
        metrics["best_value"] = study.best_value
        tags["best_trial"] = str(study.best_trial.number)
    log_run(client, parent, metrics=metrics, tags=tags, step=len(states))
    retry_busy(client.set_terminated, parent, "FINISHED")


def make_child(client, exp_id: str, parent: str, study_name: str, metric: str, t) -> None:
    run = retry_busy(
        client.create_run,
        exp_id,
        start_time=ms(t.datetime_start),
        run_name=f"trial-{t.number:03d}",
        tags={
            PARENT_TAG: parent,
            STUDY_TAG: study_name,
            TRIAL_TAG: str(t.number),
            "step": "tune_trial",
            "optuna.state": t.state.name,
            **({"error": t.user_attrs["error"][:5000]} if t.user_attrs.get("error") else {}),
        },
    )
    params = {**t.params, "slot": t.user_attrs.get("slot"), "attempt": t.user_attrs.get("attempt")}
    # the value of a completed trial only: a pruned one's is its last report, already in <metric>_report
    metrics = {"epochs": t.user_attrs.get("epochs"), **({metric: t.value} if t.state.name == "COMPLETE" else {})}
    if t.datetime_start and t.datetime_complete:
        metrics["seconds"] = (t.datetime_complete - t.datetime_start).total_seconds()
    log_run(
        client,
        run.info.run_id,
        params=params,
        metrics=metrics,
        steps=t.intermediate_values,
        step_key=f"{metric}_report",
    )
    retry_busy(client.set_terminated, run.info.run_id, STATUS[t.state.name], end_time=ms(t.datetime_complete))


def log_run(
    client,
    run_id: str,
    params: dict | None = None,
    metrics: dict | None = None,
    tags: dict | None = None,
    step: int = 0,
    steps: dict | None = None,
    step_key: str | None = None,
) -> None:
    """Params (those set), metrics (numbers only) and tags (kagglecv.tracking.tracker.log_batch); `steps`
    ({step: value}) as the metric `step_key`."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    ms_ = [Metric(k, v, now, step) for k, v in numbers(metrics).items()]
    ms_ += [Metric(mlflow_name(step_key), float(v), now, int(s)) for s, v in (steps or {}).items()]
    log_batch(client, run_id, {k: v for k, v in flatten(params or {}).items() if v is not None}, ms_, tags)
