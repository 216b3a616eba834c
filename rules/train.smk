rule train:
    input:
        prepared=PREPARED_FILES,
        folds=str(L.folds),
        lr_find=lr_find_input,
    output:
        **{name: str(path) for name, path in zip(MODEL.names(), MODEL.files())},
    log:
        str(L.log("train/{backbone}/fold{fold}")),
    benchmark:
        str(L.benchmark("train/{backbone}/fold{fold}"))
    conda:
        "../envs/train.yaml"
    threads: TRAIN_THREADS
    resources:
        gpu=1,
        mem_mb=train_mem,
    params:
        train=train_params,
        experiment=COMP,
    script:
        "../scripts/job.py"
