rule demo_competition:
    output:
        zip="data/demo/{competition}.zip",
        solution="data/demo/{competition}.solution.csv",
    log:
        "data/demo/{competition}.log",
    conda:
        DATA_ENV
    script:
        JOB


rule prepare:
    input:
        data=data_input(),
    output:
        **{name: str(path) for name, path in zip(PREPARED.names(), PREPARED.files())},
    log:
        str(L.log("prepare")),
    benchmark:
        str(L.benchmark("prepare"))
    conda:
        DATA_ENV
    threads: workflow.cores  # images are decoded on every core; prepare runs before anything else
    params:
        path=competition_path,
        data=prepare_params(),
        task=config["task"],
        metric=config["metric"],
        experiment=COMP,
    script:
        JOB


rule folds:
    input:
        train=str(PREPARED.train),
        meta=str(PREPARED.meta),
    output:
        folds=str(L.folds),
    log:
        str(L.log("folds")),
    conda:
        DATA_ENV
    params:
        folds=config["folds"],
        seed=config["seed"],
        experiment=COMP,
    script:
        JOB
