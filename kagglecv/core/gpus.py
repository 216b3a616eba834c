"""GPU leases for concurrent Snakemake jobs.

Snakemake's `--resources gpu=N` only caps how many GPU jobs run; it never says which device a job gets.
Each job therefore takes a non-blocking flock on one lock file per device and exports CUDA_VISIBLE_DEVICES.
The lock dies with the process, so a killed job never leaks its GPU. The lock folder is private to the user
(0700, never a symlink or someone else's), lock files are opened without following symlinks, and a process
that asks again (train, then predict in the same job) gets the device it already holds.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kagglecv.core.errors import InputError

DEVICES_ENV = "KAGGLECV_DEVICES"  # override of the device list, e.g. "0,1" (tests, or to reserve GPUs)
LOCK_DIR_ENV = "KAGGLECV_GPU_LOCK_DIR"  # where the per-device lock files live (default: per user, under /tmp)
WAIT_ENV = "KAGGLECV_GPU_WAIT"  # seconds a job waits for a free device before failing (default: forever)
_held: list[int] = []  # open lock file descriptors: kept for the life of the process
_leased: str | None = None  # the device this process holds


def visible_devices() -> list[str]:
    """The devices this machine offers: the override, else what nvidia-smi lists (no CUDA init here)."""
    if os.environ.get(DEVICES_ENV) is not None:
        return [d for d in os.environ[DEVICES_ENV].split(",") if d.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def default_lock_dir() -> Path:
    """$KAGGLECV_GPU_LOCK_DIR, else <tmp>/kagglecv-gpu-locks-<uid>: one folder per user, so another user's
    folder is never written to (nor can another user plant files or symlinks in ours)."""
    env = os.environ.get(LOCK_DIR_ENV)
    return Path(env) if env else Path(tempfile.gettempdir()) / f"kagglecv-gpu-locks-{os.getuid()}"


def private_dir(path: str | Path) -> Path:
    """Create `path` as a 0700 folder, or check an existing one: a real folder (not a symlink) owned by
    this user. Raises InputError naming the fix otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        what = (
            "a symlink"
            if stat.S_ISLNK(st.st_mode)
            else ("not a folder" if not stat.S_ISDIR(st.st_mode) else f"owned by uid {st.st_uid}")
        )
        raise InputError(
            f"{path}: the GPU lock folder is {what}, not a private folder of uid {os.getuid()}; "
            f"remove it or set {LOCK_DIR_ENV} to a folder of your own"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)  # ours, but open to others (an older version, or a loose umask): close it
    return path


def _try_lock(lock_dir: Path, dev: str) -> int | None:
    """An fd holding the device's lock, or None when another process holds it. Never follows a symlink."""
    path = lock_dir / f"gpu{dev}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:  # ELOOP: a symlink was planted where the lock file goes
        raise InputError(f"{path}: cannot open the GPU lock file ({e.strerror}); remove it") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _holders(lock_dir: Path, devices: list[str]) -> str:
    pids = []
    for dev in devices:
        try:
            pids.append(f"gpu{dev}: pid {(lock_dir / f'gpu{dev}.lock').read_text().strip() or '?'}")
        except OSError:
            pass
    return ", ".join(pids)


def _wait_limit(timeout: float | None) -> float | None:
    if timeout is not None:
        return timeout
    env = os.environ.get(WAIT_ENV)
    try:
        return float(env) if env else None
    except ValueError:
        raise InputError(f"{WAIT_ENV}={env!r}: not a number of seconds; unset it to wait forever") from None


def lease_gpu(
    lock_dir: str | Path | None = None, timeout: float | None = None, poll: float = 1.0, count: int = 1
) -> str | None:
    """Take `count` free devices and set CUDA_VISIBLE_DEVICES to them ("2" or "0,3"); None when there is no GPU.

    An existing CUDA_VISIBLE_DEVICES (Slurm sets it) is respected and returned as is; a process that holds
    a lease already gets the same devices back. When too few devices are free, waits (printing one line) for
    `timeout` seconds: None means $KAGGLECV_GPU_WAIT if set, else forever. All or nothing: a partial set is let
    go at once, so two jobs never hold half of what each needs."""
    global _leased
    if _leased is not None:
        return _leased
    if os.environ.get("CUDA_VISIBLE_DEVICES") and os.environ.get(DEVICES_ENV) is None:
        return os.environ["CUDA_VISIBLE_DEVICES"]
    devices = visible_devices()
    if not devices:
        return None
    if count > len(devices):
        raise InputError(
            f"train.gpus: {count} devices asked for, this machine has {len(devices)} ({devices}); "
            f"lower gpus for this backbone"
        )
    lock_dir = private_dir(lock_dir or default_lock_dir())
    limit = _wait_limit(timeout)
    start, told = time.monotonic(), False
    while True:
        got = []
        for dev in devices:
            if len(got) < count and (fd := _try_lock(lock_dir, dev)) is not None:
                got.append((dev, fd))
        if len(got) == count:
            _held.extend(fd for _, fd in got)
            _leased = os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(dev for dev, _ in got)
            if told:
                print(f"kagglecv: got GPU {_leased} after {time.monotonic() - start:.0f}s", file=sys.stderr, flush=True)
            return _leased
        for _, fd in got:  # all or nothing
            os.close(fd)
        # All busy: more jobs run than there are devices (e.g. --resources gpu=N above the GPU count, or
        # another workflow on this machine); wait for one.
        if limit is not None and time.monotonic() - start >= limit:
            raise InputError(
                f"no free GPU among {devices} after {limit:.0f}s ({_holders(lock_dir, devices)}; "
                f"locks in {lock_dir}); lower --resources gpu=N to the number of GPUs, or set "
                f"{WAIT_ENV} to wait longer"
            )
        if not told:
            print(
                f"kagglecv: waiting for a free GPU among {devices} ({_holders(lock_dir, devices)}; locks in "
                f"{lock_dir}); waiting {'forever' if limit is None else f'up to {limit:.0f}s'}",
                file=sys.stderr,
                flush=True,
            )
            told = True
        time.sleep(poll)
