"""Talking to Kaggle through the official client: download competition data, submit, record scores.

`kaggle` authenticates when it is imported (and may print help and exit), so it is imported
lazily inside functions, with its stdout captured: nothing the client prints reaches the user
unredacted. Every failure becomes a one-line KaggleError that names the fix. Every HTTP request the
client makes gets a timeout (it sets none itself), and retries wait with jittered exponential backoff,
or as long as a 429's Retry-After asks.

    python -m kagglecv.kaggle_io download COMPETITION DEST
    python -m kagglecv.kaggle_io submit COMPETITION FILE -m MESSAGE [--leaderboard results/leaderboard.csv --cv 0.97]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import email.utils
import fcntl
import io
import json
import logging
import os
import random
import re
import shutil
import sys
import tempfile
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, TypeVar
from urllib.parse import unquote, urlsplit

from .archive import ArchiveLimits, safe_extract
from .config import defaults
from .errors import InputError
from .fsutil import atomic_path, file_sha256, write_json

log = logging.getLogger(__name__)
T = TypeVar("T")

MARKER = ".complete"  # the download rule's output: Snakemake deletes it before it reruns the rule
MANIFEST = "manifest.json"  # the same record, which Snakemake does not own: it survives any rerun
LEADERBOARD_COLUMNS = ["time", "competition", "message", "cv", "public_score", "private_score", "ref", "status",
                       "file_sha256"]
PENDING = "PENDING"  # a submission made but not scored yet: the next submit polls it instead of uploading again
KAGGLE = defaults()["kaggle"]  # the `kaggle:` settings' defaults live in the schema, and only there
HTTP_TIMEOUT = KAGGLE["http_timeout"]  # seconds to connect, and between two reads, for every HTTP request
MAX_WAIT = 600.0  # the longest single wait before a retry, Retry-After included
CREDENTIAL_PLACES = (
    "save it as ~/.kaggle/kaggle.json (then chmod 600 ~/.kaggle/kaggle.json), "
    "or set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN"
)
NO_CREDENTIALS = ("no usable Kaggle credentials found: create a token at https://www.kaggle.com/settings/api and "
                  + CREDENTIAL_PLACES)


class KaggleError(InputError):
    """A Kaggle API failure, explained in one line with what to do about it."""


class _Truncated(Exception):
    """The download ended before the size the server announced (Content-Length)."""


# ---------------------------------------------------------------- credentials and redaction


def _config_dirs() -> list[Path]:
    """Where the client looks for kaggle.json (KAGGLE_CONFIG_DIR, ~/.kaggle, ~/.config/kaggle)."""
    dirs = [Path(os.environ["KAGGLE_CONFIG_DIR"])] if os.environ.get("KAGGLE_CONFIG_DIR") else []
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return dirs + [Path(os.path.expanduser("~/.kaggle")), Path(xdg) / "kaggle"]


def _json_values(path: Path, *keys: str) -> set[str]:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        cfg = json.loads(path.read_text())
        return {str(cfg.get(k) or "") for k in keys}
    return set()


def _mlflow_secrets() -> set[str]:
    """The password (and user:password) in MLFLOW_TRACKING_URI, and MLflow's own credential variables."""
    found = {os.environ.get("MLFLOW_TRACKING_PASSWORD", ""), os.environ.get("MLFLOW_TRACKING_TOKEN", "")}
    with contextlib.suppress(ValueError):
        parts = urlsplit(os.environ.get("MLFLOW_TRACKING_URI", ""))
        if parts.password:
            found |= {parts.password, unquote(parts.password)}
    return found


def _secrets() -> set[str]:
    """Every credential value the client could use (env, kaggle.json, access tokens, the OAuth tokens of
    credentials.json), the Basic-auth header forms of user:key, and MLflow's credentials."""
    users, keys = {os.environ.get("KAGGLE_USERNAME", "")}, {os.environ.get("KAGGLE_KEY", "")}
    tokens = {os.environ.get("KAGGLE_API_TOKEN", "")}  # the token itself or a file containing it
    for d in _config_dirs():
        users |= _json_values(d / "kaggle.json", "username")
        keys |= _json_values(d / "kaggle.json", "key")
        tokens |= _json_values(d / "credentials.json", "refresh_token", "access_token")  # `kaggle auth login`
    for f in filter(None, [os.environ.get("KAGGLE_API_TOKEN"), "~/.kaggle/access_token", "~/.kaggle/access_token.txt"]):
        with contextlib.suppress(OSError, ValueError):
            tokens.add(Path(os.path.expanduser(f)).read_text().strip())
    basic = {base64.b64encode(f"{u}:{k}".encode()).decode() for u in users for k in keys if k}
    return {s for s in keys | tokens | basic | _mlflow_secrets() if len(s) >= 4}  # tiny values would mangle text


_USERINFO = re.compile(r"(?<=://)[^/\s@]+@")  # https://user:password@host -> https://***@host


def redact(text: str) -> str:
    """`text` with every credential replaced by ***: Kaggle's (env, kaggle.json, access_token,
    credentials.json) and MLflow's (MLFLOW_TRACKING_URI's password, MLFLOW_TRACKING_PASSWORD/TOKEN), and the
    user:password part of any URL."""
    text = _USERINFO.sub("***@", str(text))
    for secret in sorted(_secrets(), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# ---------------------------------------------------------------- calling the client


@contextlib.contextmanager
def _http_timeout(seconds: float | None):
    """Inside the block, every HTTP request that sets no timeout gets `seconds` (connect and each read).

    The client builds its own requests sessions and passes no timeout, so a stalled connection would hang
    the job forever; every request of `requests` goes through HTTPAdapter.send, so the default goes there."""
    from requests.adapters import HTTPAdapter

    original = HTTPAdapter.send
    if seconds is None or getattr(original, "_kagglecv_timeout", False):  # none asked, or already in place
        yield
        return

    def send(self, request, stream=False, timeout=None, *args, **kwargs):
        return original(self, request, stream, seconds if timeout is None else timeout, *args, **kwargs)

    send._kagglecv_timeout = True
    HTTPAdapter.send = send
    try:
        yield
    finally:
        HTTPAdapter.send = original


@contextlib.contextmanager
def _quiet_client(http_timeout: float | None = HTTP_TIMEOUT):
    """Capture what the client prints (auth help, progress, warnings); log it redacted at debug level.
    Every HTTP request made inside gets `http_timeout`."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), _http_timeout(http_timeout):
            yield
    finally:
        if buf.getvalue().strip():
            log.debug("kaggle client: %s", redact(buf.getvalue().strip()))


def _client(http_timeout: float | None = HTTP_TIMEOUT):
    """An authenticated KaggleApi. The client prints help and exits(1) when it finds no credentials."""
    import requests

    try:
        with _quiet_client(http_timeout):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except ImportError as e:
        raise KaggleError(f"the kaggle client is missing ({e}): pip install kaggle==2.2.4") from e
    except SystemExit:
        raise KaggleError(NO_CREDENTIALS) from None
    except requests.RequestException as e:  # checking an access token needs the network
        raise KaggleError(f"could not reach Kaggle to check the access token: {redact(str(e))}") from e
    return api


def _status(err: Exception) -> int | None:
    response = getattr(err, "response", None)
    return response.status_code if response is not None else None  # a Response is falsy on errors


def _explain(err: Exception, competition: str, action: str) -> KaggleError:
    """One line naming the fix for an HTTP error from the client."""
    status, detail = _status(err), (redact(str(err)).splitlines() or [type(err).__name__])[0].rstrip(".")
    if status == 401:
        return KaggleError(f"Kaggle rejected the credentials (401 Unauthorized): they are wrong or expired; "
                           f"create a new token at https://www.kaggle.com/settings/api and {CREDENTIAL_PLACES}")
    if status == 403:
        return KaggleError(f"Kaggle refused the {action} for '{competition}' (403 Forbidden): accept the "
                           f"competition's rules at https://www.kaggle.com/competitions/{competition}/rules "
                           f"(the API cannot accept them for you), then run again")
    if status == 404:
        return KaggleError(f"Kaggle has no competition '{competition}' (404 Not Found): check the slug, the last "
                           f"part of https://www.kaggle.com/competitions/<slug>")
    if status == 400 and any(w in detail.lower() for w in ("notebook", "kernel")):
        return KaggleError(f"'{competition}' is a code competition and refuses file uploads ({detail}): push a "
                           f"notebook that writes submission.csv (`kaggle kernels push -p DIR`), then run "
                           f"`kaggle competitions submit -c {competition} -k OWNER/KERNEL -f submission.csv "
                           f"-v VERSION -m MSG`")
    return KaggleError(f"Kaggle {action} for '{competition}' failed ({status or type(err).__name__}): {detail}")


def retry_after(err: Exception) -> float | None:
    """Seconds a 429/503 response asks to wait (Retry-After: seconds or an HTTP date), if it says."""
    response = getattr(err, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, (email.utils.parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    return None


def backoff_delay(attempt: int, backoff: float, max_wait: float = MAX_WAIT) -> float:
    """Exponential backoff with jitter: backoff * 2**attempt, times a random factor in [0.5, 1.5), capped.

    The jitter keeps many jobs that failed together from retrying together."""
    return min(max_wait, backoff * 2**attempt * random.uniform(0.5, 1.5))


def _retriable() -> tuple[type[BaseException], ...]:
    import requests
    from urllib3.exceptions import ProtocolError

    return (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError, ProtocolError,
            _Truncated)


def _call(fn: Callable[[], T], competition: str, action: str, retries: int = 0, backoff: float = 2.0,
          hint: str = "try again later", http_timeout: float | None = HTTP_TIMEOUT) -> T:
    """Run a client call; retry network errors, timeouts, cut-short downloads, 429 and 5xx `retries` times.

    Waits follow a response's Retry-After, else jittered exponential backoff (see backoff_delay)."""
    import requests

    for attempt in range(retries + 1):
        try:
            with _quiet_client(http_timeout):
                return fn()
        except SystemExit as e:  # the client exits on some failures instead of raising
            raise KaggleError(f"Kaggle {action} for '{competition}' failed: the kaggle client exited ({e.code})")
        except requests.HTTPError as e:
            if _status(e) is not None and _status(e) < 500 and _status(e) != 429:
                raise _explain(e, competition, action) from e
            err = e
        except _retriable() as e:
            err = e
        if attempt < retries:
            asked = retry_after(err)
            wait = min(MAX_WAIT, asked) if asked is not None else backoff_delay(attempt, backoff)
            log.warning("Kaggle %s for %s failed (attempt %d/%d): %s; retrying in %.1fs", action, competition,
                        attempt + 1, retries + 1, redact(str(err)), wait)
            time.sleep(wait)
    why = {429: "Kaggle is rate-limiting this account (429 Too Many Requests)"}.get(
        _status(err), "Kaggle or the network is unavailable")
    if isinstance(err, requests.Timeout):
        why = f"no answer within {http_timeout:g}s; Kaggle or the network is unavailable or very slow"
    if isinstance(err, (_Truncated, requests.exceptions.ChunkedEncodingError)):
        read = re.search(r"IncompleteRead\(([^)]*)\)", str(err))  # '100 bytes read, 468 more expected'
        why = f"the download was cut short ({read.group(1) if read else redact(str(err)).splitlines()[0][:200]})"
    raise KaggleError(f"Kaggle {action} for '{competition}' failed after {retries + 1} attempt(s) "
                      f"({_status(err) or type(err).__name__}): {why}; {hint}") from err


# ---------------------------------------------------------------- download


def _complete(dest: Path) -> Path | None:
    """The unpacked folder if an earlier download finished and all its files are still there (same sizes).

    The marker is the rule's output, so Snakemake deletes it whenever it decides to rerun the rule (its
    script changed, --forcerun, ...); the manifest beside it is ours. A valid manifest restores the marker
    without any network call: a 50 GB competition is never fetched twice."""
    files = dest / "files"
    for name in (MARKER, MANIFEST):
        try:
            record = json.loads((dest / name).read_text())
            sizes = record.get("sizes") or {}
            if not all((files / f).is_file() and (f not in sizes or (files / f).stat().st_size == sizes[f])
                       for f in record["files"]):
                continue
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if name != MARKER:
            write_json(dest / MARKER, record)
        return files
    return None


def _fetch(api, competition: str, folder: str, retries: int, http_timeout: float | None) -> Path:
    """Download the competition's files as the client saves them (`<competition>.zip`); return the file.

    This is KaggleApi.competition_download_files, less its skip-if-present check, with the client's own
    resumable `download_file` given our retry count and read timeout (the wrapper hides both): it checks the
    bytes received against the Content-Length that Kaggle announced and raises ValueError when they differ."""
    from kagglesdk.competitions.types.competition_api_service import ApiDownloadDataFilesRequest

    with api.build_kaggle_client() as kaggle:
        request = ApiDownloadDataFilesRequest()
        request.competition_name = competition
        response = kaggle.competitions.competition_api_client.download_data_files(request)
        outfile = Path(folder) / f"{competition}.{response.url.split('?')[0].split('.')[-1]}"
        try:
            api.download_file(response, str(outfile), kaggle.http_client(), quiet=True, resume=False,
                              max_retries=retries, timeout=http_timeout or HTTP_TIMEOUT)
        except ValueError as e:
            raise _Truncated(str(e)) from e
    return outfile


def _check_archive(archive: Path, competition: str) -> None:
    """A file Kaggle served as .zip must be a whole zip: an error page or a cut-short transfer is not."""
    if archive.suffix.lower() == ".zip" and not zipfile.is_zipfile(archive):
        with open(archive, "rb") as f:
            head = f.read(16)
        raise KaggleError(f"Kaggle download for '{competition}': {archive.name} ({archive.stat().st_size} bytes, "
                          f"starting {head!r}) is not a zip archive; the transfer was corrupted or cut short. "
                          f"Nothing was kept: run again to download it afresh")


def download_competition(competition: str, dest: Path, *, retries: int = KAGGLE["retries"],
                         backoff: float = KAGGLE["backoff"],
                         http_timeout: float | None = HTTP_TIMEOUT, limits: ArchiveLimits | None = None) -> Path:
    """Download and unpack `competition` into `dest/files/`; return that folder.

    `dest/manifest.json` and then `dest/.complete` are written last, so an interrupted, cut-short or corrupt
    download leaves neither and the next run starts over; a complete earlier download is never fetched again
    (no network call at all), even when Snakemake has deleted the marker to rerun the rule. Network errors,
    timeouts (`http_timeout` seconds), cut-short transfers, 429 and 5xx are retried `retries` times (jittered
    waits of about backoff, 2*backoff, 4*backoff, ... seconds, or what Retry-After asks). The zip is
    checked against `limits` (kagglecv.archive.ArchiveLimits) before anything is unpacked.
    """
    dest = Path(dest)
    if (files := _complete(dest)) is not None:
        log.info("%s: already downloaded to %s", competition, files)
        return files
    api = _client(http_timeout)
    dest.mkdir(parents=True, exist_ok=True)
    for stale in dest.glob(".download-*"):  # left by a killed run; Snakemake never runs one target twice at once
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        archive = _call(lambda: _fetch(api, competition, tmp, retries, http_timeout), competition, "download",
                        retries, backoff, http_timeout=http_timeout)
        _check_archive(archive, competition)
        zip_name, zip_bytes = archive.name, archive.stat().st_size
        staging = Path(tmp) / "files"
        if archive.suffix.lower() == ".zip":
            try:
                safe_extract(archive, staging, limits=limits)
            except InputError as e:  # name the final place, not the temp folder that is about to vanish
                raise KaggleError(f"{str(e).replace(tmp, str(dest))}; nothing was unpacked") from e
        else:  # a single-file competition is served as that file, not a zip
            staging.mkdir()
            shutil.move(archive, staging / archive.name)
        files = dest / "files"
        shutil.rmtree(files, ignore_errors=True)  # leftovers of an interrupted unpack
        os.replace(staging, files)
    listing = sorted(p.relative_to(files).as_posix() for p in files.rglob("*") if p.is_file())
    sizes = {f: (files / f).stat().st_size for f in listing}
    record = {
        "competition": competition, "zip": zip_name, "zip_bytes": zip_bytes,
        "unpacked_bytes": sum(sizes.values()), "files": listing, "sizes": sizes,
        "downloaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(dest / MANIFEST, record)  # first the manifest, then the marker: the marker means both exist
    write_json(dest / MARKER, record)
    log.info("%s: %d files in %s", competition, len(listing), files)
    return files


# ---------------------------------------------------------------- submit


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


def _upload(api, competition: str, file: Path, message: str, listing: Callable[[], list],
            http_timeout: float | None) -> int:
    """Submit `file`; return the new submission's ref. Raises only when Kaggle certainly recorded nothing."""
    before = {s.ref for s in listing()}
    # Not retried: a submission that failed on the way back may still count against the daily limit.
    response = _call(lambda: api.competition_submit(str(file), message, competition, quiet=True), competition,
                     "submission", http_timeout=http_timeout,
                     hint=f"check `kaggle competitions submissions -c {competition}` before resubmitting")
    if response.ref:  # Kaggle created it: the listing may take a while to show it, so never upload again
        return response.ref
    # A failed upload comes back as a message, not an error (the CLI even exits 0): the list decides.
    new = [s for s in listing() if s.ref not in before]
    if not new:
        raise KaggleError(f"Kaggle did not record the submission to '{competition}' "
                          f"({redact(response.message or 'no message')}): the upload failed; run again")
    return new[0].ref


def submit(competition: str, file: Path, message: str, *, poll_interval: float = KAGGLE["poll_interval"],
           timeout: float = KAGGLE["timeout"],
           resume_ref: str | int | None = None, http_timeout: float | None = HTTP_TIMEOUT) -> dict:
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
    api = _client(http_timeout)
    listing = submission_listing(api, competition, poll_interval, http_timeout)
    ref = resume_ref if resume_ref is not None else _upload(api, competition, file, message, listing,
                                                                 http_timeout)
    return _poll(competition, ref, message, listing, poll_interval, timeout)


def submission_listing(api, competition: str, poll_interval: float, http_timeout: float | None) -> Callable[[], list]:
    """The competition's submissions, as `_poll` reads them: read-only, so each call is retried."""
    def listing() -> list:
        return _call(lambda: api.competition_submissions(competition) or [], competition, "submission listing",
                     retries=2, backoff=poll_interval, http_timeout=http_timeout)
    return listing


def _poll(competition: str, ref: int | str, message: str, listing: Callable[[], list], poll_interval: float,
          timeout: float) -> dict:
    """Poll the submission listing until `ref` is scored; PENDING (with the reason) at the deadline or when
    the listing keeps failing (after its own retries)."""
    deadline, sub, reason = time.monotonic() + timeout, None, f"not scored within {timeout:g}s"
    while True:
        try:
            sub = next((s for s in listing() if str(s.ref) == str(ref)), sub)
        except KaggleError as e:  # rate-limited or down: the submission exists, so it stays pending
            reason = str(e)
            break
        if sub is not None and _scored(sub):
            result = _as_dict(sub) | {"reason": None}
            log.info("%s: submission %s %s, public score %s", competition, ref, result["status"],
                     result["public_score"])
            return result
        if time.monotonic() >= deadline:
            break
        time.sleep(poll_interval)
    pending = (_as_dict(sub) if sub is not None else {"date": None, "description": message, "error": None,
                                                       "public_score": None, "private_score": None})
    return pending | {"ref": ref, "status": PENDING, "reason": reason}


def check_result(result: dict, competition: str) -> None:
    """Raise the one-line KaggleError for a submission that is not scored (PENDING) or could not be (ERROR)."""
    if result["status"] == PENDING:
        raise KaggleError(f"submission {result['ref']} to '{competition}' was made but is still pending "
                          f"({redact(str(result.get('reason')))}); run the submit step again to keep polling it "
                          f"(nothing is uploaded again), or check `kaggle competitions submissions -c {competition}`")
    if result["status"] == "ERROR":
        raise KaggleError(f"Kaggle could not score submission {result['ref']} to '{competition}': "
                          f"{redact(str(result['error']))}")


# ---------------------------------------------------------------- leaderboard


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on `.<name>.lock` beside `path`: fcntl.lockf (POSIX record locks work on NFS,
    flock on a folder does not). The small lock file stays; deleting it would race with the next writer."""
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o666)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_leaderboard(path: str | Path) -> list[dict]:
    """The rows of leaderboard.csv (none if it does not exist); files from before `status` read as complete."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def pending_submission(path: str | Path, competition: str, **match) -> dict | None:
    """The last leaderboard row for `competition` whose columns equal `match` (file_sha256=..., or a kernel
    and its version), if it is still PENDING."""
    rows = [r for r in read_leaderboard(path) if r.get("competition") == competition
            and all(r.get(k) == str(v) for k, v in match.items())]
    return rows[-1] if rows and rows[-1].get("status") == PENDING and rows[-1].get("ref") else None


def append_leaderboard(path: Path, row: dict, *, replace_ref: bool = False) -> None:
    """Append `row` (time, competition, message, cv, public_score, private_score, ref, status, file_sha256)
    to a CSV, atomically and under a lock file beside it.

    With `replace_ref`, the existing row of the same competition and ref (a pending one, now scored) is
    replaced in place instead, keeping its time. Unknown keys become extra columns; `time` defaults to now
    (UTC). Cells are redacted.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), **row}
    cells = {k: "" if v is None else redact(str(v)) for k, v in row.items()}
    with _locked(path):  # parallel submit jobs cannot drop each other's row
        rows, columns = [], list(LEADERBOARD_COLUMNS)
        if path.exists():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
                columns += [c for c in reader.fieldnames or [] if c not in columns]
        columns += [c for c in row if c not in columns]
        same = [i for i, r in enumerate(rows) if replace_ref and r.get("competition") == cells.get("competition")
                and r.get("ref") == cells.get("ref")]
        if same:
            rows[same[-1]] = {**rows[same[-1]], **cells, "time": rows[same[-1]].get("time") or cells["time"]}
        else:
            rows.append(cells)
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)


def record_result(leaderboard: Path, competition: str, message: str, cv, result: dict, sha256: str, *,
                  replace_ref: bool = False, **extra) -> None:
    """A submission's row in leaderboard.csv (any status, PENDING included); `extra` adds columns."""
    append_leaderboard(Path(leaderboard), {
        "competition": competition, "message": message, "cv": cv, "public_score": result["public_score"],
        "private_score": result["private_score"], "ref": result["ref"], "status": result["status"],
        "file_sha256": sha256, **extra,
    }, replace_ref=replace_ref)


def submit_and_record(competition: str, file: Path, message: str, leaderboard: Path | None, *,
                      cv: float | None = None, resume: bool = True, resume_ref: str | None = None,
                      **submit_kw) -> dict:
    """submit(), with the result written to `leaderboard` (any status, PENDING included) before returning.

    With `resume` (default), a PENDING leaderboard row for this competition and this exact file is polled
    again instead of uploading the file a second time; `resume_ref` names a submission to poll explicitly.
    The message and CV of a resumed row are kept. Does not raise for PENDING/ERROR: see check_result."""
    sha = file_sha256(file) if Path(file).is_file() else ""
    pending = (pending_submission(leaderboard, competition, file_sha256=sha) if (leaderboard and resume and sha)
               else None)
    if resume_ref is None and pending is not None:
        resume_ref, message, cv = pending["ref"], pending.get("message") or message, pending.get("cv") or cv
        log.info("%s: submission %s of this file is still pending: polling it, not uploading again",
                 competition, resume_ref)
    result = submit(competition, file, message, resume_ref=resume_ref, **submit_kw)
    if leaderboard:
        record_result(leaderboard, competition, message, cv, result, sha, replace_ref=resume_ref is not None)
    return result | {"message": message, "cv": cv}


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None, prog: str = "python -m kagglecv.kaggle_io") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the kaggle client prints (redacted)")
    parser.add_argument("--http-timeout", type=float, default=HTTP_TIMEOUT,
                        help="seconds to connect and between reads, for every HTTP request")
    cmd = parser.add_subparsers(dest="cmd", required=True)
    d = cmd.add_parser("download", help="download and unpack a competition's files")
    d.add_argument("competition")
    d.add_argument("dest", type=Path, help="e.g. data/kaggle/<competition>; files land in DEST/files")
    d.add_argument("--retries", type=int, default=KAGGLE["retries"])
    d.add_argument("--backoff", type=float, default=KAGGLE["backoff"])
    s = cmd.add_parser("submit", help="submit a file and wait for its public score")
    s.add_argument("competition")
    s.add_argument("file", type=Path)
    s.add_argument("-m", "--message", required=True)
    s.add_argument("--poll-interval", type=float, default=KAGGLE["poll_interval"])
    s.add_argument("--timeout", type=float, default=KAGGLE["timeout"])
    s.add_argument("--leaderboard", type=Path, help="leaderboard.csv to append the result to (a pending row "
                                                    "of the same file is polled again instead of resubmitting)")
    s.add_argument("--cv", type=float, help="the run's cross-validation score, for the leaderboard")
    s.add_argument("--resume-ref", help="poll this earlier submission instead of uploading")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.cmd == "download":
            print(download_competition(args.competition, args.dest, retries=args.retries, backoff=args.backoff,
                                       http_timeout=args.http_timeout))
            return 0
        result = submit_and_record(args.competition, args.file, args.message, args.leaderboard, cv=args.cv,
                                   resume_ref=args.resume_ref, poll_interval=args.poll_interval,
                                   timeout=args.timeout, http_timeout=args.http_timeout)
        print(json.dumps(result))
        check_result(result, args.competition)
    except InputError as e:
        print(f"error: {redact(str(e))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
