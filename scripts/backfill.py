from kagglecv.backfill import backfill
from kagglecv.runner import run_logged
from kagglecv.tracking import log_to_parent

p = snakemake.params
report = run_logged(snakemake.log[0], backfill, p.results, p.experiment)
# This invocation's own parent run holds no workflow: name it for what it did (and keep it out of the runs
# that a later backfill attributes jobs to, which are those tagged step=workflow).
log_to_parent(metrics={k: len(v) for k, v in report.items()},
              tags={"step": "backfill", "mlflow.runName": "backfill", "kagglecv.job": "backfill"})
