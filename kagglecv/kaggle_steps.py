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

from .kaggle_io import KAGGLE
from .tracking import Tracker, log_to_parent

log = logging.getLogger(__name__)

DEFAULT_MESSAGE = KAGGLE["message"]  # the schema's kaggle.message


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
                poll_interval: float = KAGGLE["poll_interval"], timeout: float = KAGGLE["timeout"], repo=None, experiment: str | None = None,
                results_dir="results", track=True, resume: bool = True, resume_ref: str | None = None,
                http_timeout: float | None = None, code_competition: bool | str = KAGGLE["code_competition"],
                owner: str | None = None, kernel_timeout: float = KAGGLE["kernel_timeout"],
                max_bytes: int | None = KAGGLE["dataset_max_bytes"]) -> dict:
    """Submit, wait for the public score, append it to `leaderboard_csv`, log it to MLflow.

    A file competition gets `submission_csv`; a code competition (`code_competition` true, or auto and Kaggle
    says so) gets the kernel of `snakemake kernel`, run on Kaggle (kagglecv.kaggle_code). The leaderboard row
    is written whatever happens once the submission exists: scored, ERROR (Kaggle could not score it) or
    PENDING (not scored within `timeout`, or polling was rate-limited); the step then fails with the reason.
    Run again after PENDING: the pending row is polled again, never submitted twice; `resume_ref` polls a
    given submission ref instead (file competitions). `http_timeout` (seconds; None: kaggle_io.HTTP_TIMEOUT)
    bounds every HTTP request.
    """
    from .kaggle_io import HTTP_TIMEOUT, _client, check_result, redact, submit_and_record

    http_timeout = http_timeout or HTTP_TIMEOUT
    scores = json.loads(Path(scores_json).read_text())
    cv = scores["ensemble"]["cv"]
    text = submission_message(scores, git_commit(repo), message)
    if code_competition == "auto":
        from .kaggle_code import is_code_competition

        code_competition = bool(is_code_competition(_client(http_timeout), competition, http_timeout))
        log.info("%s: %s competition (Kaggle's listing)", competition, "a code" if code_competition else "a file")
    if code_competition:
        from .kaggle_code import code_submit
        from .layout import Layout

        log.info("%s: code competition: submitting the kernel's output with message %r", competition, redact(text))
        result = code_submit(competition, Layout(Path(scores_json).parent), text, cv=cv, owner=owner,
                             poll_interval=poll_interval, timeout=timeout, kernel_timeout=kernel_timeout,
                             max_bytes=max_bytes, http_timeout=http_timeout)
    else:
        log.info("%s: submitting %s with message %r", competition, submission_csv, redact(text))
        result = submit_and_record(competition, Path(submission_csv), text, Path(leaderboard_csv), cv=cv,
                                   resume=resume, resume_ref=resume_ref, poll_interval=poll_interval,
                                   timeout=timeout, http_timeout=http_timeout)
    log.info("%s: submission %s %s: public score %s (CV %s %s); recorded in %s", competition, result["ref"],
             result["status"], result["public_score"], scores["metric"], result["cv"], leaderboard_csv)
    params = {"message": redact(result["message"]), "ref": result["ref"], "status": result["status"],
              "metric": scores["metric"]}
    if result.get("kernel"):
        params |= {"kernel": result["kernel"], "kernel_version": result["kernel_version"]}
    with Tracker(experiment or competition, "submit", results_dir, enabled=track, tags={"step": "submit"}) as t:
        t.log_params(params)
        t.log_metrics({"cv": cv, "public_score": result["public_score"], "private_score": result["private_score"]})
        t.log_artifact(leaderboard_csv)
    if track:  # the invocation's parent run holds the public score beside the ensemble CV
        log_to_parent({"public_score": result["public_score"], "private_score": result["private_score"]},
                      results_dir=results_dir)
    check_result(result, competition)
    return result
