from pathlib import Path

from kagglecv.runner import run_logged
from kagglecv.steps import ensemble_step

p = snakemake.params
run_logged(snakemake.log[0], ensemble_step, p.model_dirs, snakemake.input.folds,
           Path(snakemake.output.scores).parent, p.metric, p.method, p.experiment, track=p.track,
           replay=p.replay)
