"""The workflow's Kaggle submit step (the download step is kaggle_io.download_competition itself).

scripts/submit.py makes exactly one call into this module. Credentials never pass through here: the
kaggle client finds them itself (kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY, KAGGLE_API_TOKEN), and
everything it says is redacted by kagglecv.kaggle_io.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

from .tracking import Tracker, log_to_parent

log = logging.getLogger(__name__)

DEFAULT_MESSAGE = "CV {metric}={cv:.5f} | {method} | {commit}"


def git_commit(repo: str | Path | None = None) -> str:
    """Short sha of HEAD in `repo` (the workflow's code), or 'nogit' when there is none."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo or None, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "nogit"
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else "nogit"


def submission_message(scores: dict, commit: str, template: str | None = None) -> str:
    """'CV <metric>=<value> | <ensemble method> | <commit>' (or `template` with those fields)."""
    from .errors import InputError

    fields = {"metric": scores["metric"], "cv": scores["ensemble"]["cv"],
              "method": scores["ensemble"]["method"], "commit": commit}
    try:
        return (template or DEFAULT_MESSAGE).format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        raise InputError(f"kaggle.message: bad template {template!r} ({type(e).__name__}: {e}); "
                         f"use the fields {{metric}}, {{cv}}, {{method}}, {{commit}}") from None


def submit_step(competition: str, submission_csv, scores_json, leaderboard_csv, *, message: str | None = None,
                poll_interval: float = 10, timeout: float = 600, repo=None, experiment: str | None = None,
                results_dir="results", track=True) -> dict:
    """Submit `submission_csv`, wait for the public score, append it to `leaderboard_csv`, log it to MLflow.

    The leaderboard row is written even when Kaggle could not score the file (status ERROR); the step then
    fails with Kaggle's reason.
    """
    from .kaggle_io import KaggleError, append_leaderboard, redact, submit

    scores = json.loads(Path(scores_json).read_text())
    cv = scores["ensemble"]["cv"]
    text = submission_message(scores, git_commit(repo), message)
    log.info("%s: submitting %s with message %r", competition, submission_csv, redact(text))
    result = submit(competition, Path(submission_csv), text, poll_interval=poll_interval, timeout=timeout)
    append_leaderboard(Path(leaderboard_csv), {
        "competition": competition, "message": text, "cv": cv, "public_score": result["public_score"],
        "private_score": result["private_score"], "ref": result["ref"],
    })
    log.info("%s: submission %s: public score %s (CV %s %.5f); appended to %s", competition, result["ref"],
             result["public_score"], scores["metric"], cv, leaderboard_csv)
    with Tracker(experiment or competition, "submit", results_dir, enabled=track, tags={"step": "submit"}) as t:
        t.log_params({"message": redact(text), "ref": result["ref"], "status": result["status"],
                      "metric": scores["metric"]})
        t.log_metrics({"cv": cv, "public_score": result["public_score"], "private_score": result["private_score"]})
        t.log_artifact(leaderboard_csv)
    if track:  # the invocation's parent run holds the public score beside the ensemble CV
        log_to_parent({"public_score": result["public_score"], "private_score": result["private_score"]},
                      results_dir=results_dir)
    if result["status"] == "ERROR":
        raise KaggleError(f"Kaggle could not score submission {result['ref']} to '{competition}': "
                          f"{redact(str(result['error']))}")
    return result
