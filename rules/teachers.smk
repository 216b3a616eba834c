# Stages after the first training, as jobs that depend on it (kagglecv.training.teachers): the targets each pseudo-label
# round and the distilled student learn from, per fold. Their members train through the train rule
# (<backbone>@r<round>, <name>@student) and join the ensemble like any backbone.


rule pseudo_labels:
    input:
        test=pseudo_sources,
        meta=str(L.meta),
    output:
        targets=str(L.teacher("round{round}", "{fold}")),
    log:
        str(L.log("teachers/round{round}/fold{fold}")),
    wildcard_constraints:
        round=r"\d+",
    conda:
        DATA_ENV
    params:
        settings={k: v for k, v in config["pseudo_labels"].items() if k != "rounds"},
        experiment=COMP,
    script:
        JOB


rule distill_targets:
    input:
        oof=lambda wildcards: [f for m in teachers_of_student() for f in fold_outputs(m, "oof")],
        test=lambda wildcards: [str(L.model(m, wildcards.fold).test) for m in teachers_of_student()],
        folds=str(L.folds),
        meta=str(L.meta),
    output:
        targets=str(L.teacher("student", "{fold}")),
    log:
        str(L.log("teachers/student/fold{fold}")),
    conda:
        DATA_ENV
    params:
        teachers=teachers_of_student(),
        label_weight=config["distill"]["label_weight"],
        experiment=COMP,
    script:
        JOB
