from kagglecv.runner import run_logged
from kagglecv.steps import demo_step

run_logged(snakemake.log[0], demo_step, snakemake.output.zip, snakemake.output.solution)
