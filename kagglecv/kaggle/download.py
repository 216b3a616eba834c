"""A competition's files through the official client, downloaded once and unpacked safely.

download_competition(competition, dest)  ->  dest/files/ (unpacked), dest/manifest.json, dest/.complete
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from kagglecv.core.errors import InputError
from kagglecv.core.files import write_json
from kagglecv.core.layout import DownloadFiles
from kagglecv.data.archive import ArchiveLimits, safe_extract
from kagglecv.kaggle.client import HTTP_TIMEOUT, KAGGLE, KaggleError, Truncated, call, client

log = logging.getLogger("kagglecv.kaggle")

MARKER, MANIFEST = DownloadFiles.marker, DownloadFiles.manifest  # the record twice: see _complete


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
            if not all(
                (files / f).is_file() and (f not in sizes or (files / f).stat().st_size == sizes[f])
                for f in record["files"]
            ):
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
            api.download_file(
                response,
                str(outfile),
                kaggle.http_client(),
                quiet=True,
                resume=False,
                max_retries=retries,
                timeout=http_timeout or HTTP_TIMEOUT,
            )
        except ValueError as e:
            raise Truncated(str(e)) from e
    return outfile


def _check_archive(archive: Path, competition: str) -> None:
    """A file Kaggle served as .zip must be a whole zip: an error page or a cut-short transfer is not."""
    if archive.suffix.lower() == ".zip" and not zipfile.is_zipfile(archive):
        with open(archive, "rb") as f:
            head = f.read(16)
        raise KaggleError(
            f"Kaggle download for '{competition}': {archive.name} ({archive.stat().st_size} bytes, "
            f"starting {head!r}) is not a zip archive; the transfer was corrupted or cut short. "
            f"Nothing was kept: run again to download it afresh"
        )


def download_competition(
    competition: str,
    dest: Path,
    *,
    retries: int = KAGGLE["retries"],
    backoff: float = KAGGLE["backoff"],
    http_timeout: float | None = HTTP_TIMEOUT,
    limits: ArchiveLimits | None = None,
) -> Path:
    """Download and unpack `competition` into `dest/files/`; return that folder.

    `dest/manifest.json` and then `dest/.complete` are written last, so an interrupted, cut-short or corrupt
    download leaves neither and the next run starts over; a complete earlier download is never fetched again
    (no network call at all), even when Snakemake has deleted the marker to rerun the rule. Network errors,
    timeouts (`http_timeout` seconds), cut-short transfers, 429 and 5xx are retried `retries` times (jittered
    waits of about backoff, 2*backoff, 4*backoff, ... seconds, or what Retry-After asks). The zip is
    checked against `limits` (kagglecv.data.archive.ArchiveLimits) before anything is unpacked.
    """
    dest = Path(dest)
    if (files := _complete(dest)) is not None:
        log.info("%s: already downloaded to %s", competition, files)
        return files
    api = client(http_timeout)
    dest.mkdir(parents=True, exist_ok=True)
    for stale in dest.glob(".download-*"):  # left by a killed run; Snakemake never runs one target twice at once
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        archive = call(
            lambda: _fetch(api, competition, tmp, retries, http_timeout),
            competition,
            "download",
            retries,
            backoff,
            http_timeout=http_timeout,
        )
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
        "competition": competition,
        "zip": zip_name,
        "zip_bytes": zip_bytes,
        "unpacked_bytes": sum(sizes.values()),
        "files": listing,
        "sizes": sizes,
        "downloaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(dest / MANIFEST, record)  # first the manifest, then the marker: the marker means both exist
    write_json(dest / MARKER, record)
    log.info("%s: %d files in %s", competition, len(listing), files)
    return files
