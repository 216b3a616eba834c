rule demo_competition:
    output:
        zip="data/demo/{competition}.zip",
        solution="data/demo/{competition}.solution.csv",
    log:
        "data/demo/{competition}.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/job.py"


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
        "../envs/data.yaml"
    threads: workflow.cores  # images are decoded on every core; prepare runs before anything else
    params:
        path=competition_path,
        data=prepare_params(),
        task=config["task"],
        metric=config["metric"],
        experiment=COMP,
    script:
        "../scripts/job.py"


rule folds:
    input:
        train=str(PREPARED.train),
        meta=str(PREPARED.meta),
    output:
        folds=str(L.folds),
    log:
        str(L.log("folds")),
    conda:
        "../envs/data.yaml"
    params:
        folds=config["folds"],
        seed=config["seed"],
        experiment=COMP,
    script:
        "../scripts/job.py"
