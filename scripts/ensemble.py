from pathlib import Path

from kagglecv.runner import run_logged
from kagglecv.steps import ensemble_step
from kagglecv.tracking import replays_records, tracks_live

p = snakemake.params
track = tracks_live(snakemake.config)  # the config, not params: toggling tracking reruns nothing
run_logged(snakemake.log[0], ensemble_step, p.model_dirs, snakemake.input.folds,
           Path(snakemake.output.scores).parent, p.metric, p.method, p.experiment, track=track,
           replay=replays_records(snakemake.config))
