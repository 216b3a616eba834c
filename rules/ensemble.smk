rule ensemble:
    input:
        oof=all_fold_outputs("oof"),
        test=all_fold_outputs("test"),
        folds=str(L.folds),
        meta=str(L.meta),
    output:
        scores=str(L.scores),
        oof=str(L.ensemble_oof),
        test=str(L.ensemble_test),
    log:
        str(L.log("ensemble")),
    conda:
        DATA_ENV
    params:
        model_dirs={b: fold_dirs(b) for b in MEMBERS},
        metric=config["metric"],
        method=config["ensemble"]["method"],
        experiment=COMP,
    script:
        JOB


rule submission:
    input:
        test=str(L.ensemble_test),
        scores=str(L.scores),
        prepared=PREPARED_FILES,
    output:
        submission=str(L.submission),
    log:
        str(L.log("submission")),
    conda:
        DATA_ENV
    params:
        metric=config["metric"],
        experiment=COMP,
    script:
        JOB


rule holdout:
    input:
        submission=str(L.submission),
        solution=f"data/demo/{COMP}.solution.csv",
        prepared=PREPARED_FILES,
    output:
        score=str(L.holdout),
    log:
        str(L.log("holdout")),
    conda:
        DATA_ENV
    params:
        metric=config["metric"],
        experiment=COMP,
    script:
        JOB
