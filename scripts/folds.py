from kagglecv.runner import run_logged
from kagglecv.steps import folds_step

p = snakemake.params
run_logged(snakemake.log[0], folds_step, snakemake.input.train, snakemake.output.folds, p.folds, p.seed,
           p.experiment, track=p.track)
