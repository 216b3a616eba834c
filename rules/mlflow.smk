# `snakemake backfill`: puts into MLflow the runs that tracking missed (a tracking server that was down or
# died during a run) from what the finished jobs wrote; a second backfill adds nothing.
# Not part of `all`; run it once the workflow has finished. The same as `kagglecv backfill results/<competition>`.
# No output on purpose: it is an action on the tracking server, asked for by name, run every time.
rule backfill:
    log:
        str(L.log("backfill")),
    localrule: True  # it only talks to the tracking server: no cluster job for it
    conda:
        DATA_ENV
    params:
        results=str(L.root),
        experiment=COMP,
    script:
        JOB
