"""Jobs of the Snakemake report's figures and of `snakemake predict` (rules/report.smk).

Library modules are imported inside each job: a small job must not pay for torch and timm.
"""

from __future__ import annotations

from kagglecv.jobs.harness import Job, job


@job
def predict(job: Job) -> None:
    from kagglecv.inference.predict import predict_folder

    out = predict_folder(
        job.layout.root,
        job.input.images,
        job.output.csv,
        job.output.summary,
        device=job.params.device,
        threads=job.threads,
        meta_csv=job.config["predict_meta"],
    )
    print(f"{len(out)} prediction(s) written to {job.output.csv}", flush=True)


@job
def report_cv(job: Job) -> None:
    from kagglecv.report.tables import cv_table

    cv_table(job.input.scores, job.output.png, job.output.html, job.input.oof)


@job
def report_curves(job: Job) -> None:
    from kagglecv.report.curves import job_time, training_curves

    training_curves(job.params.histories, job.params.metric, job.output.png)
    job_time(job.params.metrics, job.output.job_time)


@job
def report_oof(job: Job) -> None:
    from kagglecv.core.results import Scores
    from kagglecv.report.oof import confusion, oof_errors

    scores = Scores.read(job.input.scores)
    confusion(job.input.oof, job.input.meta, job.output.confusion, scores.ensemble.method, scores)
    oof_errors(job.input.oof, job.layout.prepared.path, job.output.errors)


@job
def report_folds(job: Job) -> None:
    from kagglecv.report.folds import class_balance

    class_balance(job.input.folds, job.input.meta, job.output.png)


@job
def report_lr_find(job: Job) -> None:
    from kagglecv.report.curves import lr_find_curves

    lr_find_curves(job.params.lr_find, job.output.png)


@job
def report_leaderboard(job: Job) -> None:
    from kagglecv.report.leaderboard import leaderboard

    leaderboard(job.input.leaderboard, job.output.png)
