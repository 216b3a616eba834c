from pathlib import Path

from kagglecv.predict import predict_step
from kagglecv.runner import run_logged

run_logged(snakemake.log[0], predict_step, Path(snakemake.input.scores).parent, snakemake.input.images,
           snakemake.output.csv, snakemake.output.summary, device=snakemake.params.device,
           threads=snakemake.threads)
