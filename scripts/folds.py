from kagglecv.runner import run_logged
from kagglecv.steps import folds_step
from kagglecv.tracking import tracks_live

p = snakemake.params
track = tracks_live(snakemake.config, before_ensemble=True)  # the config, not params: toggling tracking reruns nothing
run_logged(snakemake.log[0], folds_step, snakemake.input.train, snakemake.output.folds, p.folds, p.seed,
           p.experiment, track=track)
