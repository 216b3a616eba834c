from pathlib import Path

from kagglecv.runner import run_logged
from kagglecv.steps import submission_step

p = snakemake.params
run_logged(snakemake.log[0], submission_step, snakemake.input.test, Path(snakemake.input.prepared[0]).parent,
           snakemake.output.submission, p.metric, p.experiment, track=p.track,
           scores_json=snakemake.input.scores)
