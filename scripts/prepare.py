from pathlib import Path

from kagglecv.runner import run_logged
from kagglecv.steps import prepare_step
from kagglecv.tracking import tracks_live

p = snakemake.params
track = tracks_live(snakemake.config, before_ensemble=True)  # the config, not params: toggling tracking reruns nothing
# archive limits from the config, not params: changing them must not rebuild the cache
run_logged(snakemake.log[0], prepare_step, p.path, Path(snakemake.output[0]).parent, p.data, p.experiment,
           track=track, task=p.task, metric=p.metric, workers=snakemake.threads, archive=snakemake.config["archive"])
