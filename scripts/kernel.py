from pathlib import Path

from kagglecv.kernel import build
from kagglecv.runner import run_logged

p = snakemake.params
run_logged(snakemake.log[0], build, Path(snakemake.input.scores).parent, snakemake.output.dataset,
           snakemake.output.kernel, competition=p.competition, repo=p.repo, owner=p.owner, dataset=p.dataset,
           kernel=p.kernel, enable_gpu=p.enable_gpu, wheels=p.wheels, max_bytes=p.max_bytes)
