from pathlib import Path

from kagglecv.kaggle_io import download_competition
from kagglecv.runner import run_logged

p = snakemake.params
run_logged(snakemake.log[0], download_competition, p.competition, Path(snakemake.output[0]).parent,
           retries=p.retries, backoff=p.backoff)
