from pathlib import Path

from kagglecv.runner import run_logged
from kagglecv.steps import kernel_step
from kagglecv.tracking import tracks_live

p = snakemake.params
track = tracks_live(snakemake.config)  # the config, not params: toggling tracking reruns nothing
run_logged(snakemake.log[0], kernel_step, Path(snakemake.input.scores).parent, snakemake.output.dataset,
           snakemake.output.kernel, p.experiment, track=track, competition=p.competition, repo=p.repo,
           owner=p.owner, dataset=p.dataset, kernel=p.kernel, enable_gpu=p.enable_gpu, wheels=p.wheels,
           max_bytes=p.max_bytes)
