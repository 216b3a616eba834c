"""Hyperparameter search as part of the DAG (`snakemake tune`, docs/tuning.md; rules/tune.smk).

Owns the `tune:` section and everything a study leaves under results/<competition>/tune/:

  settings  the section validated (`Tuning.of`: one line naming the key for bad input), the study's name and
            storage, the sampler and pruner; `applied`: tune.apply's best.yaml laid over its backbone entry
  space     the search space: parsed and checked against the settings' schema, sampled from an Optuna trial
  study     opening the study; a slot's claim (a stale RUNNING trial of the slot marked failed, a new one asked);
            the trials as a table
  trial     one trial: the entry trained on tune.folds, reporting after every epoch and fold, pruned or told
  results   trials.csv, best.yaml, parameter importances
  tracking  the study in MLflow: a parent run, one child run per trial, made from the study's storage

Optuna is the engine, used by ask and tell: each trial job opens the study, asks, trains and tells, so trials run
side by side as Snakemake jobs (locally or one sbatch job each). The study's storage is the source of truth;
everything else is made from it.
"""
