from kagglecv.report import report_step
from kagglecv.runner import run_logged

run_logged(snakemake.log[0], report_step, snakemake.params.kind, dict(snakemake.input.items()),
           dict(snakemake.output.items()), {k: v for k, v in snakemake.params.items() if k != "kind"})
