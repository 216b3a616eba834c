"""kagglecv: reproducible Kaggle image-classification runs.

The package is in wings by stage of the DAG; each sub-package's docstring says what it owns, and every import
points down this list (tests/test_house.py checks it):

  jobs       every rule's job, one module per stage; the harness (log, one-line errors, tracking)   top
  cli        the `kagglecv` command (config, inspect, predict, backfill, download, submit)
  report     the Snakemake report's figures
  tuning     hyperparameter search: Optuna trials as jobs of the DAG
  kaggle     the official kaggle client: download, submit, code competitions (kernel builder, notebook)
  training   one (member, fold) job: session, loop, schedule, budget, averaging, resume; the teachers
  inference  models, TTA, predicting a finished run's ensemble
  data       a competition read as Kaggle ships it, checked, decoded once; folds; batches
  tracking   MLflow, guarded; records replayed by backfill
  config     the schema, layering and validation; members, resources; TrainConfig and DataConfig
  scoring    metrics, decisions and thresholds, blending, the ensemble, the submission
  core       errors, files, secrets, the results layout and readers, tasks, devices        bottom

A rule's job is `kagglecv.jobs.<stage>.<rule name>` (rules/*.smk run scripts/job.py); the library never imports
snakemake, so all of it is tested directly.
"""

__version__ = "0.1.0"
