from pathlib import Path

from kagglecv.runner import run_logged
from kagglecv.steps import submission_step
from kagglecv.tracking import tracks_live

p = snakemake.params
track = tracks_live(snakemake.config)  # the config, not params: toggling tracking reruns nothing
run_logged(snakemake.log[0], submission_step, snakemake.input.test, Path(snakemake.input.prepared[0]).parent,
           snakemake.output.submission, p.metric, p.experiment, track=track,
           scores_json=snakemake.input.scores)
