# `snakemake tune`: a hyperparameter search of one backbone entry (tune: in the config; docs/tuning.md).
# tune_study creates the study in its storage; each tune_trial job is one trial slot (ask, train tune.folds with
# the competition's metric on folds.csv, tell), so trials run side by side under --cores / --resources gpu=N and
# one sbatch job each under profiles/slurm; tune_results writes trials.csv, best.yaml and the report's figures
# from the storage and brings MLflow up to date. Not part of `all`. The tune section is validated here, as the
# workflow reads its config (kagglecv.tuning.settings.Tuning).
from types import SimpleNamespace

from kagglecv.core.layout import TuneFiles
from kagglecv.tuning.settings import Tuning

TUNE = Tuning.of(config, SCHEMA)
TUNE_FILES = L.tune
# The study's name hashes what a trial's value means (the entry's settings, folds, metric, seed): a trial slot's
# param, so that changing one starts a new study; the space, sampler, pruner and trial count only shape new trials.
TUNE_STUDY = TUNE.study_name(TRAIN_DEFAULTS)
TUNED = SimpleNamespace(backbone=TUNE.backbone)  # what the training jobs' resource functions take


rule tune:
    input:
        trials=str(TUNE_FILES.trials),
        best=str(TUNE_FILES.best),
        history=str(TUNE_FILES.history),
        importances=str(TUNE_FILES.importances),


rule tune_study:
    output:
        study=str(TUNE_FILES.study),
    log:
        str(L.log("tune/study")),
    localrule: True  # a few statements against the storage
    conda:
        TRAIN_ENV
    params:
        study=TUNE_STUDY,
    script:
        JOB


rule tune_trial:
    input:
        prepared=PREPARED_FILES,
        folds=str(L.folds),
        study=ancient(str(TUNE_FILES.study)),  # made once; a remade one must not rerun the trials done
    output:
        slot=str(TUNE_FILES.slot("{slot}")),
    log:
        str(L.log("tune/slot{slot}")),
    benchmark:
        str(L.benchmark("tune/slot{slot}"))
    wildcard_constraints:
        slot=r"\d+",
    conda:
        TRAIN_ENV
    threads: lambda wildcards: train_threads_of(TUNED)
    resources:
        gpu=lambda wildcards: train_gpus(TUNED),
        mem_mb=lambda wildcards: train_mem(TUNED),
        runtime=lambda wildcards: train_runtime(TUNED) * len(TUNE.folds),
    params:
        study=TUNE_STUDY,
        experiment=COMP,
    script:
        JOB


rule tune_results:
    input:
        slots=expand(str(TUNE_FILES.slot("{slot}")), slot=range(TUNE.trials)),
    output:
        trials=str(TUNE_FILES.trials),
        best=str(TUNE_FILES.best),
        history=report(
            str(TUNE_FILES.history),
            category="Tuning",
            caption="../report/tune_history.rst",
            labels={"figure": "study history"},
        ),
        importances=report(
            str(TUNE_FILES.importances),
            category="Tuning",
            caption="../report/tune_importances.rst",
            labels={"figure": "parameter importances"},
        ),
    log:
        str(L.log("tune/results")),
    localrule: True  # reads the storage, draws two figures
    conda:
        TRAIN_ENV
    params:
        study=TUNE_STUDY,
        experiment=COMP,
    script:
        JOB
