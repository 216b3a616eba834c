"""GPU leases for concurrent Snakemake jobs.

Snakemake's `--resources gpu=N` only caps how many GPU jobs run; it never says which device a job gets.
Each job therefore takes a non-blocking flock on one lock file per device and exports CUDA_VISIBLE_DEVICES.
The lock dies with the process, so a killed job never leaks its GPU.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

DEVICES_ENV = "KAGGLECV_DEVICES"  # override of the device list, e.g. "0,1" (tests, or to reserve GPUs)
_held: list = []  # open lock files: kept referenced for the life of the process


def visible_devices() -> list[str]:
    """The devices this machine offers: the override, else what nvidia-smi lists (no CUDA init here)."""
    if os.environ.get(DEVICES_ENV) is not None:
        return [d for d in os.environ[DEVICES_ENV].split(",") if d.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def lease_gpu(lock_dir: str | Path | None = None, timeout: float = 3600, poll: float = 1.0) -> str | None:
    """Take one free device and set CUDA_VISIBLE_DEVICES to it; None when there is no GPU.

    An existing CUDA_VISIBLE_DEVICES (Slurm sets it) is respected and returned as is."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") and os.environ.get(DEVICES_ENV) is None:
        return os.environ["CUDA_VISIBLE_DEVICES"]
    devices = visible_devices()
    if not devices:
        return None
    lock_dir = Path(lock_dir or Path(tempfile.gettempdir()) / "kagglecv-gpu-locks")
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        for dev in devices:
            f = open(lock_dir / f"gpu{dev}.lock", "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            f.seek(0), f.truncate(), f.write(f"{os.getpid()}\n"), f.flush()
            _held.append(f)
            os.environ["CUDA_VISIBLE_DEVICES"] = dev
            return dev
        # All busy: only happens when more jobs run than --resources gpu=N allows for; wait for one.
        if time.monotonic() > deadline:
            raise RuntimeError(f"no free GPU among {devices} after {timeout:.0f}s (locks in {lock_dir}); "
                               "lower --resources gpu=N to the number of GPUs")
        time.sleep(poll)
