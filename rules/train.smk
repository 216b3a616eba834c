rule train:
    input:
        prepared=PREPARED_FILES,
        folds=f"{RES}/folds.csv",
        lr_find=lr_find_input,
    output:
        oof=f"{MODEL}/oof.csv",
        test=f"{MODEL}/test.csv",
        metrics=f"{MODEL}/metrics.json",
        config=f"{MODEL}/config.json",
        history=f"{MODEL}/history.csv",
        model=f"{MODEL}/model.pt",
    log:
        f"{RES}/logs/train/{{backbone}}/fold{{fold}}.log",
    benchmark:
        f"{RES}/benchmarks/train/{{backbone}}/fold{{fold}}.tsv"
    conda:
        "../envs/train.yaml"
    threads: TRAIN_THREADS
    resources:
        gpu=1,
        mem_mb=train_mem,
    params:
        train=train_params,
        experiment=COMP,
        track=config["mlflow"]["enabled"],
    script:
        "../scripts/train.py"
