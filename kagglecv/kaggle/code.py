"""Submitting to a code competition through the official client: dataset, kernel run, code submission, score.

Kaggle scores a code competition only from a notebook's output. `code_submit` does what a competitor does by
hand, from the folders `snakemake kernel` wrote (kagglecv.kaggle.kernel):
  1. upload the kernel dataset (`datasets create`, or `datasets version` when it exists) unless it is unchanged
     since the last upload, and wait until Kaggle says it is ready;
  2. push the kernel (`kernels push`) and poll `kernels status` until its run completes; a failed run is a
     one-line error with the tail of the kernel's log (the whole log is kept under kernel-runs/<version>/);
  3. `competitions submit -k owner/kernel -v version -f submission.csv -m message`, then poll the submission
     list for the score exactly as a file submission (kagglecv.kaggle.submit), and record it in leaderboard.csv.
Both folders are pushed from hard-linked copies stamped with the authenticated user's name, so the kernel
rule's outputs are never edited. kernel-state.json remembers the last upload and push: a rerun after a
timeout waits for the same kernel version instead of pushing again, and an unchanged dataset is not uploaded
twice. Nothing is written to leaderboard.csv unless a submission exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path

from kagglecv.core.errors import InputError
from kagglecv.core.files import file_sha256, read_json, write_json
from kagglecv.core.layout import KernelDatasetFiles, KernelFiles, Layout
from kagglecv.core.secrets import redact
from kagglecv.kaggle.client import HTTP_TIMEOUT, KAGGLE, KaggleError, call, client, guard, http_status, poll
from kagglecv.kaggle.leaderboard import pending_submission, record_result
from kagglecv.kaggle.submit import submission_listing, wait_for_score

log = logging.getLogger("kagglecv.kaggle")

DONE = {"COMPLETE"}
FAILED = {"ERROR", "CANCEL_REQUESTED", "CANCEL_ACKNOWLEDGED"}
OUTPUT = KernelFiles.submission  # what the notebook writes, and what is submitted
LOG_TAIL = 5  # lines of the kernel's log in the one-line error


class KernelFailed(KaggleError):
    """The kernel's run ended in error on Kaggle: the next submit pushes it again rather than waiting for it."""


def _name(value) -> str:
    """An enum from the client (KernelWorkerStatus.COMPLETE) or a string, as upper-case text."""
    return str(getattr(value, "name", value) or "").upper()


def _folder_sha(folder: Path, skip: set[str] = frozenset()) -> str:
    """One digest of every file's path and content: has anything in the folder changed?"""
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and p.name not in skip:
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + file_sha256(p).encode() + b"\n")
    return h.hexdigest()


def _read_state(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------- is it a code competition?


def is_code_competition(api, competition: str, http_timeout: float | None = HTTP_TIMEOUT) -> bool | None:
    """The competition's isKernelsSubmissionsOnly, from `competitions list -s <competition>`; None when the
    listing does not show it (then the setting kaggle.code_competition decides)."""
    try:
        response = call(lambda: api.competitions_list(search=competition), competition, "competition lookup",
                         retries=2, http_timeout=http_timeout)
    except KaggleError as e:
        log.warning("%s: cannot tell whether it is a code competition (%s)", competition, e)
        return None
    items = getattr(response, "competitions", response) or []
    for c in items:
        if str(getattr(c, "ref", "")).rstrip("/").rsplit("/", 1)[-1] == competition:
            return bool(getattr(c, "is_kernels_submissions_only", False))
    return None


# ---------------------------------------------------------------- the dataset


def upload_dataset(api, folder: Path, dataset_id: str, notes: str, competition: str, *, poll_interval: float,
                   timeout: float, http_timeout: float | None) -> str:
    """Create the dataset or add a version; wait until it is ready. Returns 'created' or 'versioned'."""
    hint = "check the dataset at https://www.kaggle.com/datasets/" + dataset_id
    try:
        exists = bool(call(lambda: api.dataset_status(dataset_id), competition, "dataset status",
                            http_timeout=http_timeout))
    except KaggleError as e:
        if http_status(e.__cause__) != 404:  # only "no such dataset" means: create it
            raise
        exists = False
    if exists:
        response = guard(lambda: api.dataset_create_version(str(folder), notes, quiet=True, dir_mode="zip"),
                          competition, "dataset upload", hint, http_timeout=http_timeout)
    else:
        response = guard(lambda: api.dataset_create_new(str(folder), public=False, quiet=True, dir_mode="zip"),
                          competition, "dataset upload", hint, http_timeout=http_timeout)
    if getattr(response, "error", None):
        raise KaggleError(f"Kaggle refused the kernel dataset {dataset_id}: {redact(str(response.error))}; {hint}")
    status, ready = poll(lambda: _name(call(lambda: api.dataset_status(dataset_id), competition, "dataset status",
                                            retries=2, backoff=poll_interval, http_timeout=http_timeout)),
                         lambda status: status in ("READY", "FAILED", "ERROR"), interval=poll_interval, timeout=timeout)
    if status in ("FAILED", "ERROR"):
        raise KaggleError(f"Kaggle could not process the kernel dataset {dataset_id} (status {status}); {hint}")
    if not ready:
        raise KaggleError(f"the kernel dataset {dataset_id} is still {status.lower()} after {timeout:g}s "
                          f"(kaggle.timeout); run `snakemake submit` again once it is ready (it is not "
                          f"uploaded again)")
    return "versioned" if exists else "created"


# ---------------------------------------------------------------- the kernel


def push_kernel(api, folder: Path, kernel_id: str, competition: str, http_timeout: float | None) -> int:
    """`kernels push`; the new version's number."""
    hint = f"check {folder}/kernel-metadata.json and https://www.kaggle.com/code/{kernel_id}"
    response = guard(lambda: api.kernels_push(str(folder)), competition, "kernel push", hint,
                      http_timeout=http_timeout)
    problems = [f"{what}: {', '.join(map(str, bad))}" for what, bad in (
        ("invalid dataset sources", getattr(response, "invalid_dataset_sources", None)),
        ("invalid competition sources", getattr(response, "invalid_competition_sources", None))) if bad]
    if getattr(response, "error", None) or problems:
        raise KaggleError(f"Kaggle refused the kernel {kernel_id}: "
                          f"{redact(str(getattr(response, 'error', None) or '; '.join(problems)))}; {hint}")
    if not getattr(response, "version_number", None):
        raise KaggleError(f"Kaggle accepted the kernel {kernel_id} but returned no version number; {hint}")
    return int(response.version_number)


def fetch_run(api, kernel_id: str, dest: Path, competition: str, http_timeout: float | None) -> Path | None:
    """Download the kernel's latest outputs and log into `dest`; the log file, if there is one."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        files, _ = guard(lambda: api.kernels_output(kernel_id, str(dest), force=True, quiet=True), competition,
                          "kernel output", "see the kernel's page on Kaggle", retries=2, http_timeout=http_timeout)
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


def wait_kernel(api, kernel_id: str, version: int, runs: Path, competition: str, *, poll_interval: float,
                timeout: float, http_timeout: float | None) -> Path:
    """Poll `kernels status` until the run completes; fetch its outputs into runs/<version>/ and return that
    folder. A failed or cancelled run, or one still going at `timeout`, is a one-line KaggleError."""
    def finished(response) -> bool:
        status = _name(getattr(response, "status", ""))
        if status not in DONE | FAILED:
            log.info("%s: kernel %s version %d is %s", competition, kernel_id, version, status.lower() or "queued")
        return status in DONE | FAILED

    response, _ = poll(lambda: guard(lambda: api.kernels_status(kernel_id), competition, "kernel status",
                                     "check the kernel's page on Kaggle", retries=2, backoff=poll_interval,
                                     http_timeout=http_timeout),
                       finished, interval=poll_interval, timeout=timeout)
    status = _name(getattr(response, "status", ""))
    dest = Path(runs) / str(version)
    if status not in DONE | FAILED:
        raise KaggleError(f"kernel {kernel_id} version {version} is still {status.lower() or 'queued'} after "
                          f"{timeout:g}s (kaggle.kernel_timeout); run `snakemake submit` again to keep waiting for "
                          f"it (it is not pushed again)")
    log_file = fetch_run(api, kernel_id, dest, competition, http_timeout)
    if status in FAILED:
        why = redact(str(getattr(response, "failure_message", "") or status.lower()))
        tail = redact(log_tail(log_file))
        raise KernelFailed(f"kernel {kernel_id} version {version} failed on Kaggle ({why})"
                          + (f"; log ends: {tail}" if tail else "")
                          + f"; full log in {log_file or dest}; fix it, then `snakemake kernel` and submit again")
    if not (dest / OUTPUT).is_file():
        raise KaggleError(f"kernel {kernel_id} version {version} completed but wrote no {OUTPUT} "
                          f"(outputs in {dest}); the kernel must write {OUTPUT} to its working folder")
    return dest


# ---------------------------------------------------------------- the whole submit


def code_submit(competition: str, layout: Layout, message: str, *, cv: float | None = None,
                owner: str | None = None, poll_interval: float = KAGGLE["poll_interval"],
                timeout: float = KAGGLE["timeout"], kernel_timeout: float = KAGGLE["kernel_timeout"],
                max_bytes: int | None = KAGGLE["dataset_max_bytes"],
                http_timeout: float | None = HTTP_TIMEOUT, api=None) -> dict:
    """Upload the kernel dataset, run the kernel on Kaggle, submit its output, wait for the score, and append the
    result to leaderboard.csv. Returns the result dict of kagglecv.kaggle.submit.submit (plus message, cv, kernel,
    kernel_version); raises KaggleError before anything is recorded when no submission was made."""
    from kagglecv.kaggle.kernel import check_size, stamp_owner

    dataset, kernel = layout.kernel_dataset, layout.kernel
    dataset_dir, kernel_dir = dataset.path, kernel.path
    for path in (dataset.metadata, dataset.manifest, kernel.metadata):
        if not path.is_file():
            raise KaggleError(f"{path.parent}: no {path.name}; build the kernel folders with `snakemake kernel` first")
    try:
        check_size(dataset_dir, max_bytes)
    except InputError as e:
        raise KaggleError(str(e)) from None
    api = api or client(http_timeout)
    user = owner or api.get_config_value("username")
    if not user:
        raise KaggleError("cannot tell which Kaggle user pushes the kernel; set kaggle.owner")
    dataset_slug = read_json(dataset.metadata)["id"].split("/")[-1]
    kernel_slug = read_json(kernel.metadata)["id"].split("/")[-1]
    dataset_id, kernel_id = f"{user}/{dataset_slug}", f"{user}/{kernel_slug}"
    manifest = read_json(dataset.manifest)  # every file with its sha256 (kernel.build)
    # what the kernel reads: the files, and the manifest's own settings (kaggle.max_bad_test_images, versions)
    uploaded = {**manifest, "files": {f: v for f, v in manifest["files"].items() if f != KernelDatasetFiles.metadata}}
    dataset_sha = hashlib.sha256(json.dumps(uploaded, sort_keys=True).encode()).hexdigest()
    kernel_sha = _folder_sha(kernel_dir, {KernelFiles.metadata})
    state_path = layout.kernel_state
    state = _read_state(state_path)

    def save(**changes) -> None:
        state.update(changes)
        write_json(state_path, state)

    same_push = (state.get("kernel") == kernel_id and state.get("kernel_sha") == kernel_sha
                 and state.get("dataset_sha") == dataset_sha and state.get("kernel_version"))
    pending = (pending_submission(layout.leaderboard, competition, kernel=kernel_id,
                                  kernel_version=state["kernel_version"]) if same_push else None)
    if pending is not None:  # submitted before, not scored yet: poll it, never submit twice
        log.info("%s: submission %s of kernel %s version %s is still pending: polling it", competition,
                 pending["ref"], kernel_id, state["kernel_version"])
        return _score(api, competition, layout, pending["ref"], pending.get("message") or message,
                      pending.get("cv") or cv, kernel_id, int(state["kernel_version"]),
                      layout.kernel_runs / str(state["kernel_version"]) / OUTPUT, poll_interval, timeout,
                      http_timeout, replace=True)
    with tempfile.TemporaryDirectory(dir=layout.root, prefix=".kernel-push-") as tmp:
        ds_copy, kernel_copy = stamp_owner(dataset_dir, kernel_dir, user, Path(tmp))
        if state.get("dataset") == dataset_id and state.get("dataset_sha") == dataset_sha:
            log.info("%s: kernel dataset %s unchanged since its last upload: not uploaded again", competition,
                     dataset_id)
        else:
            log.info("%s: uploading kernel dataset %s (%d files, %.1f MB)", competition, dataset_id,
                     len(manifest["files"]), manifest["bytes"] / 1e6)
            how = upload_dataset(api, ds_copy, dataset_id, message, competition, poll_interval=poll_interval,
                                 timeout=timeout, http_timeout=http_timeout)
            save(dataset=dataset_id, dataset_sha=dataset_sha, kernel_version=None, submitted=None)
            log.info("%s: kernel dataset %s %s and ready", competition, dataset_id, how)
        if same_push and not state.get("submitted"):
            version = int(state["kernel_version"])
            log.info("%s: kernel %s version %d was pushed already: waiting for it", competition, kernel_id, version)
        else:
            version = push_kernel(api, kernel_copy, kernel_id, competition, http_timeout)
            save(kernel=kernel_id, kernel_sha=kernel_sha, kernel_version=version, submitted=None)
            log.info("%s: kernel %s version %d pushed", competition, kernel_id, version)
    try:
        run = wait_kernel(api, kernel_id, version, layout.kernel_runs, competition, poll_interval=poll_interval,
                          timeout=kernel_timeout, http_timeout=http_timeout)
    except KernelFailed:
        save(kernel_version=None)  # a failed run is not waited for again: the next submit pushes anew
        raise
    log.info("%s: kernel %s version %d complete; submitting its %s", competition, kernel_id, version, OUTPUT)
    response = guard(lambda: api.competition_submit_code(OUTPUT, message, competition, kernel=kernel_id,
                                                          kernel_version=version, quiet=True),
                      competition, "code submission",
                      f"check `kaggle competitions submissions -c {competition}` before submitting again",
                      http_timeout=http_timeout)
    ref = getattr(response, "ref", None)
    if not ref:
        raise KaggleError(f"Kaggle did not record the submission of kernel {kernel_id} version {version} to "
                          f"'{competition}' ({redact(str(getattr(response, 'message', '') or 'no message'))})")
    save(submitted=ref)
    return _score(api, competition, layout, ref, message, cv, kernel_id, version, run / OUTPUT, poll_interval,
                  timeout, http_timeout)


def _score(api, competition: str, layout: Layout, ref, message: str, cv, kernel_id: str, version: int,
           output: Path, poll_interval: float, timeout: float, http_timeout: float | None,
           replace: bool = False) -> dict:
    """Poll the submission list for `ref` (as for a file submission) and record the row in leaderboard.csv."""
    result = wait_for_score(competition, ref, message, submission_listing(api, competition, poll_interval, http_timeout),
                   poll_interval, timeout)
    record_result(layout.leaderboard, competition, message, cv, result,
                  file_sha256(output) if output.is_file() else "", replace_ref=replace, kernel=kernel_id,
                  kernel_version=version)
    return result | {"message": message, "cv": cv, "kernel": kernel_id, "kernel_version": version}

