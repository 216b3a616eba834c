"""Every rule's job, one function per rule, named as the rule in rules/*.smk, in the module of its stage.

harness   the Job a rule's script receives, its log, bad input as one line, the registry (`@job`, `job_of`)
data      demo_competition, download, prepare, folds
training  lr_find, train, pseudo_labels, distill_targets
scoring   ensemble, submission, holdout
kaggle    kernel, submit, backfill
report    report_* figures, predict
tuning    tune_study, tune_trial, tune_results
"""

from kagglecv.jobs import data, kaggle, report, scoring, training, tuning  # noqa: F401 - each registers its rules' jobs
from kagglecv.jobs.harness import JOBS, Files, Job, job, job_of, run, run_logged

__all__ = ["JOBS", "Files", "Job", "job", "job_of", "run", "run_logged"]
