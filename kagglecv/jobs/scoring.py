"""Jobs of the scoring stage: ensemble, submission, holdout (rules/ensemble.smk).

Library modules are imported inside each job: a small job must not pay for torch and timm.
"""

from __future__ import annotations

from pathlib import Path

from kagglecv.core.results import PreparedMeta, Scores
from kagglecv.jobs.harness import Job, job


@job
def ensemble(job: Job) -> Scores:
    """The ensemble, logged. With mlflow.live: false, first put the records of the jobs before it (prepare,
    folds, training) into MLflow, which they skipped to save their start-up."""
    from kagglecv.scoring import ensemble as ens
    from kagglecv.tracking.tracker import replays_records

    L, p = job.layout, job.params
    if replays_records(job.config):
        replay_records(L.root, job.experiment)
    with job.tracker("ensemble", L.root) as t:
        scores = ens.combine(
            {k: [Path(d) for d in v] for k, v in p.model_dirs.items()}, L.folds, p.metric, L.root, p.method
        )
        print(ens.cv_table(scores))
        t.log_params({"metric": p.metric, "method": p.method, "backbones": ",".join(p.model_dirs)})
        t.log_metrics({f"cv_{name}": s["cv"] for name, s in scores.models.items()})
        t.log_metrics({"cv_ensemble": scores.ensemble.cv})
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
        out = make_submission(
            L.ensemble_test,
            L.prepared.path,
            L.prepared.sample_submission,
            job.params.metric,
            L.submission,
            scores_json=L.scores,
        )
        t.log_params({"rows": len(out), "columns": ",".join(out.columns)})
        t.log_artifact(L.submission)


@job
def holdout(job: Job) -> dict:
    """Score the submission against held-aside labels (the demo's solution.csv): the local 'public score'."""
    from kagglecv.core.files import write_json
    from kagglecv.scoring.submission import score_against

    L = job.layout
    result = score_against(L.submission, job.input.solution, PreparedMeta.read(L.meta), job.params.metric)
    with job.tracker("holdout", L.root) as t:
        write_json(L.holdout, result)
        t.log_metrics({"holdout_score": result["score"]})
        t.log_artifact(L.holdout)
    return result
