from pathlib import Path

from kagglecv.archive import ArchiveLimits
from kagglecv.kaggle_io import download_competition
from kagglecv.runner import run_logged

k = snakemake.config["kaggle"]  # not params: these settings must never trigger a new download
run_logged(snakemake.log[0], download_competition, snakemake.wildcards.competition,
           Path(snakemake.output.marker).parent, retries=k["retries"], backoff=k["backoff"],
           http_timeout=k["http_timeout"], limits=ArchiveLimits(**snakemake.config["archive"]))
