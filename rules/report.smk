# The report's figures, made in the default run (`rule all` asks for report_targets()), so that
# `snakemake --report results/<competition>/report.html` after a run only collects them; and
# `snakemake predict --config predict_dir=DIR`: the trained ensemble on a folder of new images.
from kagglecv.inference.predict import output_name, require_folder
from kagglecv.report.targets import lr_find_results, report_targets as report_files

PREDICT_DIR = config.get("predict_dir")
PREDICT_NAME = output_name(PREDICT_DIR) if PREDICT_DIR else "unset"

# {backbone: lr_find.json} to plot: those that exist or are made in this run; none without the lr_find rule.
lr_find_jsons = lambda: lr_find_results(L, BACKBONES, rules.has("lr_find"))
# For `rule all`: the report's figures, made in the default run.
report_targets = lambda: report_files(L, lr_find_jsons())


rule report_cv:
    input:
        scores=str(L.scores),
        oof=str(L.ensemble_oof),
    output:
        png=report(
            str(L.report.cv_table),
            category="CV scores",
            caption="../report/cv_table.rst",
            labels={"figure": "CV table (image)"},
        ),
        html=report(
            str(L.report.cv_table_html),
            category="CV scores",
            caption="../report/cv_table_html.rst",
            labels={"figure": "CV table (HTML)"},
        ),
    log:
        str(L.log("report/cv")),
    localrule: True  # a figure in seconds: never a cluster job
    conda:
        DATA_ENV
    params:
        kind="cv",
    script:
        JOB


rule report_curves:
    input:
        metrics=all_fold_outputs("metrics"),  # a training job writes it last: its history.csv is there by then
    output:
        png=report(
            str(L.report.training_curves),
            category="Training",
            caption="../report/training_curves.rst",
            labels={"figure": "training curves"},
        ),
        job_time=report(
            str(L.report.job_time),
            category="Training",
            caption="../report/job_time.rst",
            labels={"figure": "job time"},
        ),
    log:
        str(L.log("report/curves")),
    localrule: True  # a figure in seconds: never a cluster job
    conda:
        DATA_ENV
    params:
        kind="curves",
        histories={b: fold_outputs(b, "history") for b in MEMBERS},
        metrics={b: fold_outputs(b, "metrics") for b in MEMBERS},
        metric=config["metric"],
    script:
        JOB


rule report_oof:
    input:
        oof=str(L.ensemble_oof),
        scores=str(L.scores),
        meta=str(L.meta),
        train=str(PREPARED.train),
        images=str(PREPARED.train_images),
    output:
        confusion=report(
            str(L.report.confusion_matrix),
            category="OOF errors",
            caption="../report/confusion_matrix.rst",
            labels={"figure": "confusion matrix"},
        ),
        errors=report(
            str(L.report.oof_errors),
            category="OOF errors",
            caption="../report/oof_errors.rst",
            labels={"figure": "confidently wrong and uncertain images"},
        ),
    log:
        str(L.log("report/oof")),
    localrule: True  # a figure in seconds: never a cluster job
    conda:
        DATA_ENV
    params:
        kind="oof",
    script:
        JOB


rule report_folds:
    input:
        folds=str(L.folds),
        meta=str(L.meta),
    output:
        png=report(
            str(L.report.class_balance),
            category="Data",
            caption="../report/class_balance.rst",
            labels={"figure": "class balance per fold"},
        ),
    log:
        str(L.log("report/folds")),
    localrule: True  # a figure in seconds: never a cluster job
    conda:
        DATA_ENV
    params:
        kind="folds",
    script:
        JOB


rule report_lr_find:
    input:
        lambda wildcards: list(lr_find_jsons().values()),
    output:
        png=report(
            str(L.report.lr_find),
            category="LR finder",
            caption="../report/lr_find.rst",
            labels={"figure": "LR range test"},
        ),
    log:
        str(L.log("report/lr_find")),
    localrule: True  # a figure in seconds: never a cluster job
    conda:
        DATA_ENV
    params:
        kind="lr_find",
        lr_find=lambda wildcards: lr_find_jsons(),
    script:
        JOB


# leaderboard.csv is appended by `snakemake submit` (no rule's output): the figure follows its mtime.
rule report_leaderboard:
    input:
        leaderboard=str(L.leaderboard),
    output:
        png=report(
            str(L.report.leaderboard),
            category="Leaderboard",
            caption="../report/leaderboard.rst",
            labels={"figure": "leaderboard history"},
        ),
    log:
        str(L.log("report/leaderboard")),
    localrule: True  # a figure in seconds: never a cluster job
    conda:
        DATA_ENV
    params:
        kind="leaderboard",
    script:
        JOB


# `snakemake predict --config predict_dir=DIR` writes predictions/<DIR's name>.csv (+ .json): the submission's
# preprocessing, TTA and ensemble recipe on every image in DIR; unreadable files are listed and skipped.
# Also `kagglecv predict --results results/<competition> DIR`. Not part of `all`.
rule predict:
    input:
        images=lambda wildcards: require_folder(PREDICT_DIR),
        models=all_fold_outputs("model"),
        oof=all_fold_outputs("oof"),
        test=all_fold_outputs("test"),
        scores=str(L.scores),
        ensemble_test=str(L.ensemble_test),
        folds=str(L.folds),
        meta=str(L.meta),
    output:
        csv=str(L.prediction(PREDICT_NAME)),
        summary=str(L.prediction(PREDICT_NAME).with_suffix(".json")),
    log:
        str(L.log(f"predict/{PREDICT_NAME}")),
    conda:
        TRAIN_ENV
    threads: TRAIN_THREADS
    resources:
        gpu=1,
    params:
        device=config["train"]["device"],
    script:
        JOB
