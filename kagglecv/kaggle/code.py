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
from kagglecv.kaggle.client import HTTP_TIMEOUT, KAGGLE, KaggleError, call, client, guard
from kagglecv.kaggle.kernel_run import (
    OUTPUT,
    KernelFailed,
    push_kernel,
    upload_dataset,
    wait_kernel,
)
from kagglecv.kaggle.leaderboard import pending_submission, record_result
from kagglecv.kaggle.submit import submission_listing, wait_for_score

log = logging.getLogger("kagglecv.kaggle")


# ---------------------------------------------------------------- is it a code competition?


def is_code_competition(api, competition: str, http_timeout: float | None = HTTP_TIMEOUT) -> bool | None:
    """The competition's isKernelsSubmissionsOnly, from `competitions list -s <competition>`; None when the
    listing does not show it (then the setting kaggle.code_competition decides)."""
    try:
        response = call(
            lambda: api.competitions_list(search=competition),
            competition,
            "competition lookup",
            retries=2,
            http_timeout=http_timeout,
        )
    except KaggleError as e:
        log.warning("%s: cannot tell whether it is a code competition (%s)", competition, e)
        return None
    items = getattr(response, "competitions", response) or []
    for c in items:
        if str(getattr(c, "ref", "")).rstrip("/").rsplit("/", 1)[-1] == competition:
            return bool(getattr(c, "is_kernels_submissions_only", False))
    return None


# ---------------------------------------------------------------- the whole submit


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


def code_submit(
    competition: str,
    layout: Layout,
    message: str,
    *,
    cv: float | None = None,
    owner: str | None = None,
    poll_interval: float = KAGGLE["poll_interval"],
    timeout: float = KAGGLE["timeout"],
    kernel_timeout: float = KAGGLE["kernel_timeout"],
    max_bytes: int | None = KAGGLE["dataset_max_bytes"],
    http_timeout: float | None = HTTP_TIMEOUT,
    api=None,
) -> dict:
    """Upload the kernel dataset, run the kernel on Kaggle, submit its output, wait for the score, and append the
    result to leaderboard.csv. Returns the result dict of kagglecv.kaggle.submit.submit (plus message, cv, kernel,
    kernel_version); raises KaggleError before anything is recorded when no submission was made."""
    from kagglecv.kaggle.kernel import stamp_owner
    from kagglecv.kaggle.kernel_dataset import check_size

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

    same_push = (
        state.get("kernel") == kernel_id
        and state.get("kernel_sha") == kernel_sha
        and state.get("dataset_sha") == dataset_sha
        and state.get("kernel_version")
    )
    pending = (
        pending_submission(layout.leaderboard, competition, kernel=kernel_id, kernel_version=state["kernel_version"])
        if same_push
        else None
    )
    if pending is not None:  # submitted before, not scored yet: poll it, never submit twice
        log.info(
            "%s: submission %s of kernel %s version %s is still pending: polling it",
            competition,
            pending["ref"],
            kernel_id,
            state["kernel_version"],
        )
        return _score(
            api,
            competition,
            layout,
            pending["ref"],
            pending.get("message") or message,
            pending.get("cv") or cv,
            kernel_id,
            int(state["kernel_version"]),
            layout.kernel_runs / str(state["kernel_version"]) / OUTPUT,
            poll_interval,
            timeout,
            http_timeout,
            replace=True,
        )
    with tempfile.TemporaryDirectory(dir=layout.root, prefix=".kernel-push-") as tmp:
        ds_copy, kernel_copy = stamp_owner(dataset_dir, kernel_dir, user, Path(tmp))
        if state.get("dataset") == dataset_id and state.get("dataset_sha") == dataset_sha:
            log.info(
                "%s: kernel dataset %s unchanged since its last upload: not uploaded again", competition, dataset_id
            )
        else:
            log.info(
                "%s: uploading kernel dataset %s (%d files, %.1f MB)",
                competition,
                dataset_id,
                len(manifest["files"]),
                manifest["bytes"] / 1e6,
            )
            how = upload_dataset(
                api,
                ds_copy,
                dataset_id,
                message,
                competition,
                poll_interval=poll_interval,
                timeout=timeout,
                http_timeout=http_timeout,
            )
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
        run = wait_kernel(
            api,
            kernel_id,
            version,
            layout.kernel_runs,
            competition,
            poll_interval=poll_interval,
            timeout=kernel_timeout,
            http_timeout=http_timeout,
        )
    except KernelFailed:
        save(kernel_version=None)  # a failed run is not waited for again: the next submit pushes anew
        raise
    log.info("%s: kernel %s version %d complete; submitting its %s", competition, kernel_id, version, OUTPUT)
    response = guard(
        lambda: api.competition_submit_code(
            OUTPUT, message, competition, kernel=kernel_id, kernel_version=version, quiet=True
        ),
        competition,
        "code submission",
        f"check `kaggle competitions submissions -c {competition}` before submitting again",
        http_timeout=http_timeout,
    )
    ref = getattr(response, "ref", None)
    if not ref:
        raise KaggleError(
            f"Kaggle did not record the submission of kernel {kernel_id} version {version} to "
            f"'{competition}' ({redact(str(getattr(response, 'message', '') or 'no message'))})"
        )
    save(submitted=ref)
    return _score(
        api,
        competition,
        layout,
        ref,
        message,
        cv,
        kernel_id,
        version,
        run / OUTPUT,
        poll_interval,
        timeout,
        http_timeout,
    )


def _score(
    api,
    competition: str,
    layout: Layout,
    ref,
    message: str,
    cv,
    kernel_id: str,
    version: int,
    output: Path,
    poll_interval: float,
    timeout: float,
    http_timeout: float | None,
    replace: bool = False,
) -> dict:
    """Poll the submission list for `ref` (as for a file submission) and record the row in leaderboard.csv."""
    result = wait_for_score(
        competition,
        ref,
        message,
        submission_listing(api, competition, poll_interval, http_timeout),
        poll_interval,
        timeout,
    )
    record_result(
        layout.leaderboard,
        competition,
        message,
        cv,
        result,
        file_sha256(output) if output.is_file() else "",
        replace_ref=replace,
        kernel=kernel_id,
        kernel_version=version,
    )
    return result | {"message": message, "cv": cv, "kernel": kernel_id, "kernel_version": version}
