rule ensemble:
    input:
        oof=all_fold_outputs("oof.csv"),
        test=all_fold_outputs("test.csv"),
        folds=f"{RES}/folds.csv",
    output:
        scores=f"{RES}/scores.json",
        oof=f"{RES}/ensemble_oof.csv",
        test=f"{RES}/ensemble_test.csv",
    log:
        f"{RES}/logs/ensemble.log",
    conda:
        "../envs/data.yaml"
    params:
        model_dirs={b: fold_dirs(b) for b in BACKBONES},
        metric=config["metric"],
        method=config["ensemble"]["method"],
        experiment=COMP,
        track=config["mlflow"]["enabled"],
    script:
        "../scripts/ensemble.py"


rule submission:
    input:
        test=f"{RES}/ensemble_test.csv",
        prepared=PREPARED_FILES,
    output:
        submission=f"{RES}/submission.csv",
    log:
        f"{RES}/logs/submission.log",
    conda:
        "../envs/data.yaml"
    params:
        metric=config["metric"],
        experiment=COMP,
        track=config["mlflow"]["enabled"],
    script:
        "../scripts/submission.py"


rule holdout:
    input:
        submission=f"{RES}/submission.csv",
        solution=f"data/demo/{COMP}.solution.csv",
        prepared=PREPARED_FILES,
    output:
        score=f"{RES}/holdout.json",
    log:
        f"{RES}/logs/holdout.log",
    conda:
        "../envs/data.yaml"
    params:
        metric=config["metric"],
        experiment=COMP,
        track=config["mlflow"]["enabled"],
    script:
        "../scripts/holdout.py"
