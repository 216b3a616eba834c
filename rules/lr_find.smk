# LR range test (fastai's lr_find) per backbone, on fold 0's training rows, built exactly as training builds them.
# With `train.lr: auto` the train rule takes lr_find.json as input and trains at its suggestion.
from types import SimpleNamespace


rule lr_find:
    input:
        prepared=PREPARED_FILES,
        folds=str(L.folds),
        factory=factory_input,
    output:
        json=str(L.lr_find("{backbone}").json),
        png=str(L.lr_find("{backbone}").png),
    log:
        str(L.log("lr_find/{backbone}")),
    benchmark:
        str(L.benchmark("lr_find/{backbone}"))
    conda:
        TRAIN_ENV
    threads: TRAIN_THREADS
    resources:
        gpu=1,
        mem_mb=train_mem,
    params:
        # the backbone's settings exactly as the train rule resolves them, for fold 0
        train=lambda wildcards: train_params(SimpleNamespace(backbone=wildcards.backbone, fold="0")),
        lr_find=config.get("lr_find", {}),
    script:
        JOB
