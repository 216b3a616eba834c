"""Talking to Kaggle through the official client: download competition data, submit, record scores.

`kaggle` authenticates when it is imported (and may print help and exit), so it is imported
lazily inside functions, with its stdout captured: nothing the client prints reaches the user
unredacted. Every failure becomes a one-line KaggleError that names the fix.

    python -m kagglecv.kaggle_io download COMPETITION DEST
    python -m kagglecv.kaggle_io submit COMPETITION FILE -m MESSAGE [--leaderboard results/leaderboard.csv --cv 0.97]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import fcntl
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, TypeVar

from .archive import safe_extract
from .errors import InputError
from .fsutil import atomic_path, write_json

log = logging.getLogger(__name__)
T = TypeVar("T")

MARKER = ".complete"
LEADERBOARD_COLUMNS = ["time", "competition", "message", "cv", "public_score", "private_score", "ref"]
CREDENTIAL_PLACES = (
    "save it as ~/.kaggle/kaggle.json (then chmod 600 ~/.kaggle/kaggle.json), "
    "or set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN"
)
NO_CREDENTIALS = ("no usable Kaggle credentials found: create a token at https://www.kaggle.com/settings/api and "
                  + CREDENTIAL_PLACES)


class KaggleError(InputError):
    """A Kaggle API failure, explained in one line with what to do about it."""


# ---------------------------------------------------------------- credentials


def _config_dirs() -> list[Path]:
    """Where the client looks for kaggle.json (KAGGLE_CONFIG_DIR, ~/.kaggle, ~/.config/kaggle)."""
    dirs = [Path(os.environ["KAGGLE_CONFIG_DIR"])] if os.environ.get("KAGGLE_CONFIG_DIR") else []
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return dirs + [Path(os.path.expanduser("~/.kaggle")), Path(xdg) / "kaggle"]


def _secrets() -> set[str]:
    """Every credential value the client could use, plus the Basic-auth header forms of user:key."""
    users, keys = {os.environ.get("KAGGLE_USERNAME", "")}, {os.environ.get("KAGGLE_KEY", "")}
    for d in _config_dirs():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            cfg = json.loads((d / "kaggle.json").read_text())
            users.add(str(cfg.get("username", "")))
            keys.add(str(cfg.get("key", "")))
    token = os.environ.get("KAGGLE_API_TOKEN", "")
    tokens = {token}  # the variable holds the token itself or a file containing it
    for f in filter(None, [token, "~/.kaggle/access_token", "~/.kaggle/access_token.txt"]):
        with contextlib.suppress(OSError, ValueError):
            tokens.add(Path(os.path.expanduser(f)).read_text().strip())
    basic = {base64.b64encode(f"{u}:{k}".encode()).decode() for u in users for k in keys if k}
    return {s for s in keys | tokens | basic if len(s) >= 4}  # tiny values would mangle ordinary text


def redact(text: str) -> str:
    """`text` with every Kaggle credential value (env, kaggle.json, access_token) replaced by ***."""
    for secret in sorted(_secrets(), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# ---------------------------------------------------------------- calling the client


@contextlib.contextmanager
def _quiet_client():
    """Capture what the client prints (auth help, progress, warnings); log it redacted at debug level."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        if buf.getvalue().strip():
            log.debug("kaggle client: %s", redact(buf.getvalue().strip()))


def _client():
    """An authenticated KaggleApi. The client prints help and exits(1) when it finds no credentials."""
    import requests

    try:
        with _quiet_client():
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


def _call(fn: Callable[[], T], competition: str, action: str, retries: int = 0, backoff: float = 2.0,
          hint: str = "try again later") -> T:
    """Run a client call; retry network errors, 429 and 5xx `retries` times with exponential backoff."""
    import requests

    for attempt in range(retries + 1):
        try:
            with _quiet_client():
                return fn()
        except SystemExit as e:  # the client exits on some failures instead of raising
            raise KaggleError(f"Kaggle {action} for '{competition}' failed: the kaggle client exited ({e.code})")
        except requests.HTTPError as e:
            if _status(e) is not None and _status(e) < 500 and _status(e) != 429:
                raise _explain(e, competition, action) from e
            err = e
        except (requests.ConnectionError, requests.Timeout) as e:
            err = e
        log.warning("Kaggle %s for %s failed (attempt %d/%d): %s", action, competition, attempt + 1,
                    retries + 1, redact(str(err)))
        if attempt < retries:
            time.sleep(backoff * 2**attempt)
    raise KaggleError(f"Kaggle {action} for '{competition}' failed after {retries + 1} attempt(s) "
                      f"({_status(err) or type(err).__name__}): Kaggle or the network is unavailable; {hint}") from err


# ---------------------------------------------------------------- download


def _complete(dest: Path) -> Path | None:
    """The unpacked folder if an earlier download finished and all its files are still there."""
    try:
        marker = json.loads((dest / MARKER).read_text())
        files = dest / "files"
        return files if all((files / f).is_file() for f in marker["files"]) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def download_competition(competition: str, dest: Path, *, retries: int = 3, backoff: float = 2.0) -> Path:
    """Download and unpack `competition` into `dest/files/`; return that folder.

    `dest/.complete` is written last, so an interrupted run starts over, and a complete earlier
    download is never fetched again (no network call at all). Network errors and 5xx are retried
    `retries` times (waits of backoff, 2*backoff, 4*backoff, ... seconds).
    """
    dest = Path(dest)
    if (files := _complete(dest)) is not None:
        log.info("%s: already downloaded to %s", competition, files)
        return files
    api = _client()
    dest.mkdir(parents=True, exist_ok=True)
    for stale in dest.glob(".download-*"):  # left by a killed run; Snakemake never runs one target twice at once
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        # force=True: a stale zip from an interrupted run must not make the client skip the download.
        _call(lambda: api.competition_download_files(competition, path=tmp, force=True, quiet=True),
              competition, "download", retries, backoff)
        downloaded = [p for p in Path(tmp).iterdir() if p.is_file() and not p.name.endswith(".kaggle-partial")]
        if len(downloaded) != 1:
            raise KaggleError(f"Kaggle download for '{competition}' produced {len(downloaded)} files, expected one zip")
        archive = downloaded[0]
        zip_name, zip_bytes = archive.name, archive.stat().st_size
        staging = Path(tmp) / "files"
        if zipfile.is_zipfile(archive):
            try:
                safe_extract(archive, staging)
            except InputError as e:  # name the final place, not the temp folder that is about to vanish
                raise KaggleError(f"{str(e).replace(tmp, str(dest))}; nothing was unpacked") from e
        else:  # a single-file competition is served as that file, not a zip
            staging.mkdir()
            shutil.move(archive, staging / archive.name)
        files = dest / "files"
        shutil.rmtree(files, ignore_errors=True)  # leftovers of an interrupted unpack
        os.replace(staging, files)
    listing = sorted(p.relative_to(files).as_posix() for p in files.rglob("*") if p.is_file())
    write_json(dest / MARKER, {
        "competition": competition, "zip": zip_name, "zip_bytes": zip_bytes,
        "unpacked_bytes": sum((files / f).stat().st_size for f in listing), "files": listing,
        "downloaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
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


def submit(competition: str, file: Path, message: str, *, poll_interval: float = 10, timeout: float = 600) -> dict:
    """Submit `file` to `competition` and wait for its public score.

    Returns dict(ref, date, description, status, public_score, private_score, error); status is
    COMPLETE or ERROR (then `error` says why Kaggle could not score it).
    """
    file = Path(file)
    if not file.is_file():
        raise KaggleError(f"{file}: submission file not found; run the predict step first")
    api = _client()

    def listing() -> list:  # read-only, so safe to retry
        return _call(lambda: api.competition_submissions(competition) or [], competition, "submission listing",
                     retries=2, backoff=poll_interval)

    before = {s.ref for s in listing()}
    # Not retried: a submission that failed on the way back may still count against the daily limit.
    response = _call(lambda: api.competition_submit(str(file), message, competition, quiet=True), competition,
                     "submission", hint=f"check `kaggle competitions submissions -c {competition}` before resubmitting")
    # A failed upload comes back as a message, not an error (the CLI even exits 0): trust the list only.
    new = [s for s in listing() if s.ref not in before]
    if not new:
        raise KaggleError(f"Kaggle did not record the submission to '{competition}' "
                          f"({redact(response.message or 'no message')}): the upload failed; run again")
    sub = next((s for s in new if s.ref == response.ref), new[0])
    deadline = time.monotonic() + timeout
    while not _scored(sub):
        if time.monotonic() >= deadline:
            raise KaggleError(f"submission {sub.ref} to '{competition}' was made but not scored within {timeout:g}s; "
                              f"check later with `kaggle competitions submissions -c {competition}`")
        time.sleep(poll_interval)
        sub = next((s for s in listing() if s.ref == sub.ref), sub)
    result = _as_dict(sub)
    log.info("%s: submission %s %s, public score %s", competition, sub.ref, result["status"], result["public_score"])
    return result


# ---------------------------------------------------------------- leaderboard


def append_leaderboard(path: Path, row: dict) -> None:
    """Append `row` (time, competition, message, cv, public_score, private_score, ref) to a CSV, atomically.

    Unknown keys become extra columns; `time` defaults to now (UTC). Cells are redacted.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), **row}
    # Lock the folder (no lock file left behind) so parallel submit jobs cannot drop each other's row.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        rows, columns = [], list(LEADERBOARD_COLUMNS)
        if path.exists():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
                columns += [c for c in reader.fieldnames or [] if c not in columns]
        columns += [c for c in row if c not in columns]
        rows.append({k: "" if v is None else redact(str(v)) for k, v in row.items()})
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kagglecv.kaggle_io", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the kaggle client prints (redacted)")
    cmd = parser.add_subparsers(dest="cmd", required=True)
    d = cmd.add_parser("download", help="download and unpack a competition's files")
    d.add_argument("competition")
    d.add_argument("dest", type=Path, help="e.g. data/kaggle/<competition>; files land in DEST/files")
    d.add_argument("--retries", type=int, default=3)
    d.add_argument("--backoff", type=float, default=2.0)
    s = cmd.add_parser("submit", help="submit a file and wait for its public score")
    s.add_argument("competition")
    s.add_argument("file", type=Path)
    s.add_argument("-m", "--message", required=True)
    s.add_argument("--poll-interval", type=float, default=10)
    s.add_argument("--timeout", type=float, default=600)
    s.add_argument("--leaderboard", type=Path, help="leaderboard.csv to append the result to")
    s.add_argument("--cv", type=float, help="the run's cross-validation score, for the leaderboard")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.cmd == "download":
            print(download_competition(args.competition, args.dest, retries=args.retries, backoff=args.backoff))
            return 0
        result = submit(args.competition, args.file, args.message, poll_interval=args.poll_interval,
                        timeout=args.timeout)
        if args.leaderboard:
            append_leaderboard(args.leaderboard, {
                "competition": args.competition, "message": args.message, "cv": args.cv,
                "public_score": result["public_score"], "private_score": result["private_score"], "ref": result["ref"],
            })
        print(json.dumps(result))
        if result["status"] == "ERROR":
            raise KaggleError(f"Kaggle could not score submission {result['ref']}: {result['error']}")
    except InputError as e:
        print(f"error: {redact(str(e))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
