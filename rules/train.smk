rule train:
    input:
        prepared=PREPARED_FILES,
        folds=str(L.folds),
        lr_find=lr_find_input,
        teacher=teacher_input,
        factory=factory_input,
    output:
        **{name: str(path) for name, path in zip(MODEL.names(), MODEL.files())},
    log:
        str(L.log("train/{backbone}/fold{fold}")),
    benchmark:
        str(L.benchmark("train/{backbone}/fold{fold}"))
    wildcard_constraints:
        backbone=TRAIN_BACKBONE,
    conda:
        TRAIN_ENV
    threads: train_threads_of
    resources:
        gpu=train_gpus,
        mem_mb=train_mem,
        runtime=train_runtime,
    params:
        train=train_params,
        experiment=COMP,
    script:
        JOB
