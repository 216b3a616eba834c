"""A code competition's kernel on Kaggle: the dataset uploaded (a new version when it changed), the kernel pushed, its
run polled to the end, its log and outputs fetched (a failed run is one line with the log's tail)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from kagglecv.core.layout import KernelFiles
from kagglecv.core.secrets import redact
from kagglecv.kaggle.client import KaggleError, call, guard, http_status, poll

DONE = {"COMPLETE"}
FAILED = {"ERROR", "CANCEL_REQUESTED", "CANCEL_ACKNOWLEDGED"}
OUTPUT = KernelFiles.submission  # what the notebook writes, and what is submitted


LOG_TAIL = 5  # lines of the kernel's log in the one-line error

log = logging.getLogger("kagglecv.kaggle.code")


class KernelFailed(KaggleError):
    """The kernel's run ended in error on Kaggle: the next submit pushes it again rather than waiting for it."""


def _name(value) -> str:
    """An enum from the client (KernelWorkerStatus.COMPLETE) or a string, as upper-case text."""
    return str(getattr(value, "name", value) or "").upper()


def upload_dataset(
    api,
    folder: Path,
    dataset_id: str,
    notes: str,
    competition: str,
    *,
    poll_interval: float,
    timeout: float,
    http_timeout: float | None,
) -> str:
    """Create the dataset or add a version; wait until it is ready. Returns 'created' or 'versioned'."""
    hint = "check the dataset at https://www.kaggle.com/datasets/" + dataset_id
    try:
        exists = bool(
            call(lambda: api.dataset_status(dataset_id), competition, "dataset status", http_timeout=http_timeout)
        )
    except KaggleError as e:
        if http_status(e.__cause__) != 404:  # only "no such dataset" means: create it
            raise
        exists = False
    if exists:
        response = guard(
            lambda: api.dataset_create_version(str(folder), notes, quiet=True, dir_mode="zip"),
            competition,
            "dataset upload",
            hint,
            http_timeout=http_timeout,
        )
    else:
        response = guard(
            lambda: api.dataset_create_new(str(folder), public=False, quiet=True, dir_mode="zip"),
            competition,
            "dataset upload",
            hint,
            http_timeout=http_timeout,
        )
    if getattr(response, "error", None):
        raise KaggleError(f"Kaggle refused the kernel dataset {dataset_id}: {redact(str(response.error))}; {hint}")
    status, ready = poll(
        lambda: _name(
            call(
                lambda: api.dataset_status(dataset_id),
                competition,
                "dataset status",
                retries=2,
                backoff=poll_interval,
                http_timeout=http_timeout,
            )
        ),
        lambda status: status in ("READY", "FAILED", "ERROR"),
        interval=poll_interval,
        timeout=timeout,
    )
    if status in ("FAILED", "ERROR"):
        raise KaggleError(f"Kaggle could not process the kernel dataset {dataset_id} (status {status}); {hint}")
    if not ready:
        raise KaggleError(
            f"the kernel dataset {dataset_id} is still {status.lower()} after {timeout:g}s "
            f"(kaggle.timeout); run `snakemake submit` again once it is ready (it is not "
            f"uploaded again)"
        )
    return "versioned" if exists else "created"


def push_kernel(api, folder: Path, kernel_id: str, competition: str, http_timeout: float | None) -> int:
    """`kernels push`; the new version's number."""
    hint = f"check {folder}/kernel-metadata.json and https://www.kaggle.com/code/{kernel_id}"
    response = guard(lambda: api.kernels_push(str(folder)), competition, "kernel push", hint, http_timeout=http_timeout)
    problems = [
        f"{what}: {', '.join(map(str, bad))}"
        for what, bad in (
            ("invalid dataset sources", getattr(response, "invalid_dataset_sources", None)),
            ("invalid competition sources", getattr(response, "invalid_competition_sources", None)),
        )
        if bad
    ]
    if getattr(response, "error", None) or problems:
        raise KaggleError(
            f"Kaggle refused the kernel {kernel_id}: "
            f"{redact(str(getattr(response, 'error', None) or '; '.join(problems)))}; {hint}"
        )
    if not getattr(response, "version_number", None):
        raise KaggleError(f"Kaggle accepted the kernel {kernel_id} but returned no version number; {hint}")
    return int(response.version_number)


def fetch_run(api, kernel_id: str, dest: Path, competition: str, http_timeout: float | None) -> Path | None:
    """Download the kernel's latest outputs and log into `dest`; the log file, if there is one."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        files, _ = guard(
            lambda: api.kernels_output(kernel_id, str(dest), force=True, quiet=True),
            competition,
            "kernel output",
            "see the kernel's page on Kaggle",
            retries=2,
            http_timeout=http_timeout,
        )
    except KaggleError as e:
        log.warning("%s: could not fetch the output of %s: %s", competition, kernel_id, e)
        return None
    logs = [Path(f) for f in files if str(f).endswith(".log")]
    return logs[0] if logs else None


def log_tail(log_file: Path | None, n: int = LOG_TAIL) -> str:
    """The last `n` non-empty lines of the kernel's log (Kaggle's log is JSON lines {stream_name, data})."""
    if log_file is None or not log_file.is_file():
        return ""
    text = log_file.read_text(errors="replace")
    try:  # Kaggle's format: a JSON list of {"stream_name": ..., "time": ..., "data": ...}
        text = "".join(e.get("data", "") for e in json.loads(text))
    except (ValueError, AttributeError, TypeError):
        pass
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


def wait_kernel(
    api,
    kernel_id: str,
    version: int,
    runs: Path,
    competition: str,
    *,
    poll_interval: float,
    timeout: float,
    http_timeout: float | None,
) -> Path:
    """Poll `kernels status` until the run completes; fetch its outputs into runs/<version>/ and return that
    folder. A failed or cancelled run, or one still going at `timeout`, is a one-line KaggleError."""

    def finished(response) -> bool:
        status = _name(getattr(response, "status", ""))
        if status not in DONE | FAILED:
            log.info("%s: kernel %s version %d is %s", competition, kernel_id, version, status.lower() or "queued")
        return status in DONE | FAILED

    response, _ = poll(
        lambda: guard(
            lambda: api.kernels_status(kernel_id),
            competition,
            "kernel status",
            "check the kernel's page on Kaggle",
            retries=2,
            backoff=poll_interval,
            http_timeout=http_timeout,
        ),
        finished,
        interval=poll_interval,
        timeout=timeout,
    )
    status = _name(getattr(response, "status", ""))
    dest = Path(runs) / str(version)
    if status not in DONE | FAILED:
        raise KaggleError(
            f"kernel {kernel_id} version {version} is still {status.lower() or 'queued'} after "
            f"{timeout:g}s (kaggle.kernel_timeout); run `snakemake submit` again to keep waiting for "
            f"it (it is not pushed again)"
        )
    log_file = fetch_run(api, kernel_id, dest, competition, http_timeout)
    if status in FAILED:
        why = redact(str(getattr(response, "failure_message", "") or status.lower()))
        tail = redact(log_tail(log_file))
        raise KernelFailed(
            f"kernel {kernel_id} version {version} failed on Kaggle ({why})"
            + (f"; log ends: {tail}" if tail else "")
            + f"; full log in {log_file or dest}; fix it, then `snakemake kernel` and submit again"
        )
    if not (dest / OUTPUT).is_file():
        raise KaggleError(
            f"kernel {kernel_id} version {version} completed but wrote no {OUTPUT} "
            f"(outputs in {dest}); the kernel must write {OUTPUT} to its working folder"
        )
    return dest
