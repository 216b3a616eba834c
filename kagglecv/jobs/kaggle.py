"""Jobs that talk to Kaggle or build for it: kernel, submit, backfill (rules/kaggle.smk, rules/mlflow.smk).

Library modules are imported inside each job: a small job must not pay for torch and timm.
"""

from __future__ import annotations

import logging
import sys

from kagglecv.jobs.harness import Job, job

log = logging.getLogger("kagglecv.jobs")


@job
def kernel(job: Job) -> dict:
    """The code competition's notebook and dataset (kagglecv.kaggle.kernel.build), logged. The record goes beside the
    results, not into the dataset (a file that changes on every build would make every submit upload again)."""
    from kagglecv.kaggle.kernel import build

    L, p = job.layout, job.params
    with job.tracker("kernel", L.root) as t:
        manifest = build(
            L.root,
            L.kernel_dataset.path,
            L.kernel.path,
            competition=p.competition,
            repo=p.repo,
            kaggle=p.kaggle,
            student=p.student,
        )
        t.log_params(
            {
                "dataset": manifest["dataset"],
                "kernel": manifest["kernel"],
                "method": manifest["method"],
                "members": ",".join(manifest["members"]),
                "files": len(manifest["files"]),
            }
        )
        t.log_metrics(
            {
                "dataset_bytes": manifest["bytes"],
                **{
                    k: v
                    for k, v in (manifest["kernel_run"]["budget"] or {}).items()
                    if k in ("projected_seconds", "seconds_per_image", "rows")
                },
            }
        )
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
    from kagglecv.kaggle.leaderboard import submitting

    with submitting(job.layout.root, job.params.competition):  # one submit of these results at a time
        return submit_locked(job)


def submit_locked(job: Job) -> dict:
    """The submit job, under its lock."""
    from kagglecv.core.results import Scores
    from kagglecv.core.secrets import redact
    from kagglecv.kaggle import code
    from kagglecv.kaggle import submit as files
    from kagglecv.kaggle.client import client
    from kagglecv.tracking.tracker import Tracker, log_to_parent

    # the kaggle settings come from the config: the rule has no outputs, so nothing hangs on its params
    L, p, k = job.layout, job.params, job.config["kaggle"]
    scores = Scores.read(L.scores)
    cv = scores.ensemble.cv
    message = files.submission_message(scores, files.git_commit(p.repo), k["message"])
    api = client(k["http_timeout"])
    is_code = k["code_competition"]
    if is_code == "auto":
        is_code = bool(code.is_code_competition(api, p.competition, k["http_timeout"]))
        log.info("%s: %s competition (Kaggle's listing)", p.competition, "a code" if is_code else "a file")
    log.info(
        "%s: submitting %s with message %r",
        p.competition,
        "the kernel's output" if is_code else L.submission,
        redact(message),
    )
    wait = {"poll_interval": k["poll_interval"], "timeout": k["timeout"], "http_timeout": k["http_timeout"], "api": api}
    if is_code:
        result = code.code_submit(
            p.competition,
            L,
            message,
            cv=cv,
            owner=k["owner"],
            kernel_timeout=k["kernel_timeout"],
            max_bytes=k["dataset_max_bytes"],
            **wait,
        )
    else:
        result = files.submit_and_record(p.competition, L.submission, message, L.leaderboard, cv=cv, **wait)
    log.info(
        "%s: submission %s %s: public score %s (CV %s %s); recorded in %s",
        p.competition,
        result["ref"],
        result["status"],
        result["public_score"],
        scores.metric,
        cv,
        L.leaderboard,
    )
    params = {
        "message": result["message"],
        "ref": result["ref"],
        "status": result["status"],
        "metric": scores.metric,
        **{k: result[k] for k in ("kernel", "kernel_version") if k in result},
    }
    scored = {"public_score": result["public_score"], "private_score": result["private_score"]}
    with Tracker(job.experiment, "submit", L.results, enabled=job.track, tags={"step": "submit"}) as t:
        t.log_params(params)  # redacted, as everything a Tracker logs
        t.log_metrics({"cv": result["cv"], **scored})
        t.log_artifact(L.leaderboard)
    if job.track:  # the invocation's parent run holds the public score beside the ensemble CV
        log_to_parent(scored, results_dir=L.results)
    files.check_result(result, p.competition)
    print(
        f"{p.competition}: submission {result['ref']} public score {result['public_score']} "
        f"(row appended to {L.leaderboard})",
        file=sys.__stderr__,
    )
    return result


@job
def backfill(job: Job) -> dict:
    """Put into MLflow the runs that tracking missed; this invocation's own parent run holds no workflow, so it
    is named for what it did (and kept out of the runs a later backfill attributes jobs to: step=workflow)."""
    from kagglecv.tracking.backfill import backfill as replay
    from kagglecv.tracking.tracker import log_to_parent

    report = replay(job.layout.root, job.experiment)
    log_to_parent(
        metrics={k: len(v) for k, v in report.items()},
        tags={"step": "backfill", "mlflow.runName": "backfill", "kagglecv.job": "backfill"},
    )
    return report
