from pathlib import Path

from kagglecv.runner import run_logged
from kagglecv.steps import holdout_step
from kagglecv.tracking import tracks_live

p = snakemake.params
track = tracks_live(snakemake.config)  # the config, not params: toggling tracking reruns nothing
run_logged(snakemake.log[0], holdout_step, snakemake.input.submission, snakemake.input.solution,
           Path(snakemake.input.prepared[0]).parent, snakemake.output.score, p.metric, p.experiment,
           track=track)
