import sys

from kagglecv.kaggle_steps import submit_step
from kagglecv.runner import run_logged
from kagglecv.tracking import tracks_live

p = snakemake.params
track = tracks_live(snakemake.config)  # the config, not params: toggling tracking reruns nothing
result = run_logged(snakemake.log[0], submit_step, p.competition, snakemake.input.submission,
                    snakemake.input.scores, p.leaderboard, message=p.message, poll_interval=p.poll_interval,
                    timeout=p.timeout, http_timeout=p.http_timeout, repo=p.repo, experiment=p.experiment, track=track,
                    code_competition=p.code_competition, owner=p.owner, kernel_timeout=p.kernel_timeout,
                    max_bytes=p.max_bytes)
print(f"{p.competition}: submission {result['ref']} public score {result['public_score']} "
      f"(row appended to {p.leaderboard})", file=sys.stderr)
