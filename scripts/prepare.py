from pathlib import Path

from kagglecv.runner import run_logged
from kagglecv.steps import prepare_step

p = snakemake.params
run_logged(snakemake.log[0], prepare_step, snakemake.input.data, Path(snakemake.output[0]).parent,
           p.data, p.experiment, track=p.track)
