"""File submissions: submit, wait for the public score, and record it in leaderboard.csv.

A submission is an action, not a file: it is never made twice for the same file while an earlier one is still
pending (the leaderboard row says so), and nothing Kaggle answers reaches a log unredacted.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

from kagglecv.core.errors import InputError
from kagglecv.core.files import file_sha256
from kagglecv.core.results import Scores
from kagglecv.core.secrets import redact
from kagglecv.kaggle.client import HTTP_TIMEOUT, KAGGLE, KaggleError, call, client, poll
from kagglecv.kaggle.leaderboard import PENDING, pending_submission, record_result

log = logging.getLogger("kagglecv.kaggle")

DEFAULT_MESSAGE = KAGGLE["message"]  # the schema's kaggle.message


def git_commit(repo: str | Path | None = None) -> str:
    """Short sha of HEAD in `repo` (the workflow's code), or 'nogit' when there is none."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo or None, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return "nogit"
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else "nogit"


def submission_message(scores: Scores, commit: str, template: str | None = None) -> str:
    """'CV <metric>=<value> | <ensemble method> | <commit>' (or `template` with those fields)."""
    scores = Scores.of(scores)
    fields = {"metric": scores.metric, "cv": scores.ensemble.cv, "method": scores.ensemble.method, "commit": commit}
    try:
        return (template or DEFAULT_MESSAGE).format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        raise InputError(
            f"kaggle.message: bad template {template!r} ({type(e).__name__}: {e}); "
            f"use the fields {{metric}}, {{cv}}, {{method}}, {{commit}}"
        ) from None


def _score(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):  # "" while pending, None when hidden
        return None


def _as_dict(sub) -> dict:
    return {
        "ref": sub.ref,
        "date": sub.date.isoformat() + "Z" if sub.date else None,  # the client parses Kaggle's UTC dates naive
        "description": sub.description,
        "status": getattr(sub.status, "name", str(sub.status)),
        "public_score": _score(sub.public_score),
        "private_score": _score(sub.private_score),
        "error": sub.error_description or None,
    }


def _scored(sub) -> bool:
    return bool(sub.public_score) or getattr(sub.status, "name", "") in ("COMPLETE", "ERROR")


def _upload(
    api, competition: str, file: Path, message: str, listing: Callable[[], list], http_timeout: float | None
) -> int:
    """Submit `file`; return the new submission's ref. Raises only when Kaggle certainly recorded nothing."""
    before = {s.ref for s in listing()}
    # Not retried: a submission that failed on the way back may still count against the daily limit.
    response = call(
        lambda: api.competition_submit(str(file), message, competition, quiet=True),
        competition,
        "submission",
        http_timeout=http_timeout,
        hint=f"check `kaggle competitions submissions -c {competition}` before resubmitting",
    )
    if response.ref:  # Kaggle created it: the listing may take a while to show it, so never upload again
        return response.ref
    # A failed upload comes back as a message, not an error (the CLI even exits 0): the list decides.
    new = [s for s in listing() if s.ref not in before]
    if not new:
        raise KaggleError(
            f"Kaggle did not record the submission to '{competition}' "
            f"({redact(response.message or 'no message')}): the upload failed; run again"
        )
    return new[0].ref


def submit(
    competition: str,
    file: Path,
    message: str,
    *,
    poll_interval: float = KAGGLE["poll_interval"],
    timeout: float = KAGGLE["timeout"],
    resume_ref: str | int | None = None,
    http_timeout: float | None = HTTP_TIMEOUT,
    api=None,
) -> dict:
    """Submit `file` to `competition` (or, with `resume_ref`, only poll that earlier submission) and wait for
    its public score.

    Returns dict(ref, date, description, status, public_score, private_score, error, reason); status is
    COMPLETE, ERROR (`error` says why Kaggle could not score it) or PENDING: the submission exists but was
    not scored within `timeout` s, or polling was rate-limited or failed (`reason` says which). A
    submission the listing does not show yet is polled like a pending one, never reported as failed.
    """
    file = Path(file)
    if resume_ref is None and not file.is_file():
        raise KaggleError(f"{file}: submission file not found; run the predict step first")
    api = api or client(http_timeout)
    listing = submission_listing(api, competition, poll_interval, http_timeout)
    ref = resume_ref if resume_ref is not None else _upload(api, competition, file, message, listing, http_timeout)
    return wait_for_score(competition, ref, message, listing, poll_interval, timeout)


def submission_listing(api, competition: str, poll_interval: float, http_timeout: float | None) -> Callable[[], list]:
    """The competition's submissions, as `wait_for_score` reads them: read-only, so each call is retried."""

    def listing() -> list:
        return call(
            lambda: api.competition_submissions(competition) or [],
            competition,
            "submission listing",
            retries=2,
            backoff=poll_interval,
            http_timeout=http_timeout,
        )

    return listing


def wait_for_score(
    competition: str, ref: int | str, message: str, listing: Callable[[], list], poll_interval: float, timeout: float
) -> dict:
    """Poll the submission listing until `ref` is scored; PENDING (with the reason) at the deadline or when
    the listing keeps failing (after its own retries)."""
    last = None  # the submission as the listing last showed it

    def lookup() -> tuple[object, str | None]:  # (the submission, why polling must stop)
        nonlocal last
        try:
            last = next((s for s in listing() if str(s.ref) == str(ref)), last)
            return last, None
        except KaggleError as e:  # rate-limited or down: the submission exists, so it stays pending
            return last, str(e)

    (sub, error), _ = poll(
        lookup,
        lambda got: got[1] is not None or (got[0] is not None and _scored(got[0])),
        interval=poll_interval,
        timeout=timeout,
    )
    if error is None and sub is not None and _scored(sub):
        result = _as_dict(sub) | {"reason": None}
        log.info("%s: submission %s %s, public score %s", competition, ref, result["status"], result["public_score"])
        return result
    pending = (
        _as_dict(sub)
        if sub is not None
        else {"date": None, "description": message, "error": None, "public_score": None, "private_score": None}
    )
    return pending | {"ref": ref, "status": PENDING, "reason": error or f"not scored within {timeout:g}s"}


def check_result(result: dict, competition: str) -> None:
    """Raise the one-line KaggleError for a submission that is not scored (PENDING) or could not be (ERROR)."""
    if result["status"] == PENDING:
        raise KaggleError(
            f"submission {result['ref']} to '{competition}' was made but is still pending "
            f"({redact(str(result.get('reason')))}); run the submit step again to keep polling it "
            f"(nothing is uploaded again), or check `kaggle competitions submissions -c {competition}`"
        )
    if result["status"] == "ERROR":
        raise KaggleError(
            f"Kaggle could not score submission {result['ref']} to '{competition}': {redact(str(result['error']))}"
        )


def submit_and_record(
    competition: str,
    file: Path,
    message: str,
    leaderboard: Path | None,
    *,
    cv: float | None = None,
    resume: bool = True,
    resume_ref: str | None = None,
    **submit_kw,
) -> dict:
    """submit(), with the result written to `leaderboard` (any status, PENDING included) before returning.

    With `resume` (default), a PENDING leaderboard row for this competition and this exact file is polled
    again instead of uploading the file a second time; `resume_ref` names a submission to poll explicitly.
    The message and CV of a resumed row are kept. Does not raise for PENDING/ERROR: see check_result."""
    sha = file_sha256(file) if Path(file).is_file() else ""
    pending = (
        pending_submission(leaderboard, competition, file_sha256=sha) if (leaderboard and resume and sha) else None
    )
    if resume_ref is None and pending is not None:
        resume_ref, message, cv = pending["ref"], pending.get("message") or message, pending.get("cv") or cv
        log.info(
            "%s: submission %s of this file is still pending: polling it, not uploading again", competition, resume_ref
        )
    result = submit(competition, file, message, resume_ref=resume_ref, **submit_kw)
    if leaderboard:
        record_result(leaderboard, competition, message, cv, result, sha, replace_ref=resume_ref is not None)
    return result | {"message": message, "cv": cv}
