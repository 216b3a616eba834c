from pathlib import Path

from kagglecv.lr_finder import run_lr_find
from kagglecv.runner import run_logged

p = snakemake.params
run_logged(snakemake.log[0], run_lr_find, {**p.train, "threads": snakemake.threads},
           Path(snakemake.input.prepared[0]).parent, snakemake.input.folds,
           Path(snakemake.output.json).parent, p.lr_find)
