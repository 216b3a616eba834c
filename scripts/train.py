from pathlib import Path

from kagglecv.runner import run_logged
from kagglecv.steps import train_step
from kagglecv.tracking import tracks_live

p = snakemake.params
track = tracks_live(snakemake.config, before_ensemble=True)  # the config, not params: toggling tracking reruns nothing
run_logged(snakemake.log[0], train_step, {**p.train, "threads": snakemake.threads},
           Path(snakemake.input.prepared[0]).parent, snakemake.input.folds,
           Path(snakemake.output.oof).parent, p.experiment, track=track,
           lr_find_json=snakemake.input.lr_find or None)
