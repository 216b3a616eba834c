"""Tracking: MLflow, guarded so a job never fails for it, and what it missed replayed later.

tracker   a job's MLflow run and its record (`<run>.mlflow.json`), the invocation's parent run
backfill  the records replayed into MLflow (`kagglecv backfill`, `snakemake backfill`)
summary   the end of a run: the parent run closed, the CV table printed
"""
