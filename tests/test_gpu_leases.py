"""GPU leases for jobs that run side by side: a private lock folder, waits that end, one lease per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from helpers import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


# ---------------------------------------------------------------- GPU leases

LEASE = """
import json, os, sys, time
from kagglecv.core.errors import InputError
from kagglecv.core.gpus import lease_gpu
timeout = None if sys.argv[2] == "none" else float(sys.argv[2])
try:
    dev = lease_gpu(sys.argv[1], timeout=timeout, poll=0.05)
    again = lease_gpu(sys.argv[1], timeout=1, poll=0.05)  # e.g. predict after train in one job
except InputError as e:
    print(f"ERROR: {e}", file=sys.stderr)
    sys.exit(1)
print(json.dumps({"dev": dev, "again": again, "cuda": os.environ["CUDA_VISIBLE_DEVICES"]}), flush=True)
if len(sys.argv) > 3:
    time.sleep(float(sys.argv[3]))  # hold the lease
"""


def lease(lock_dir: Path, timeout="none", hold: float | None = None, **env) -> subprocess.Popen:
    args = [sys.executable, "-c", LEASE, str(lock_dir), str(timeout)] + ([str(hold)] if hold else [])
    full = {k: v for k, v in ENV.items() if k not in ("CUDA_VISIBLE_DEVICES", "KAGGLECV_GPU_WAIT")}
    return subprocess.Popen(
        args, env=full | {"KAGGLECV_DEVICES": "0"} | env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_gpu_lock_folder_private_and_not_followed(tmp_path):
    locks = tmp_path / "locks"
    out, _ = lease(locks).communicate(timeout=60)
    assert json.loads(out)["dev"] == "0" and (os.stat(locks).st_mode & 0o777) == 0o700
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o777)
    if os.getuid() == 0:
        os.chown(theirs, 65534, 65534)
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (planted / "gpu0.lock").symlink_to(victim)
    cases = [(tmp_path / "link", "is a symlink"), (planted, "cannot open the GPU lock file")]
    cases += [(theirs, "owned by uid 65534")] if os.getuid() == 0 else []
    for lock_dir, expected in cases:
        p = lease(lock_dir)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 1 and expected in err.strip().splitlines()[-1], err
    assert victim.read_text() == "keep me\n" and list((tmp_path / "real").iterdir()) == []


def test_gpu_wait_message_timeout_and_same_process_lease(tmp_path):
    locks = tmp_path / "locks"
    holder = lease(locks, hold=120)
    held = json.loads(holder.stdout.readline())
    assert held["dev"] == held["again"] == held["cuda"] == "0"  # asking again returns the same device at once
    for p in (lease(locks, timeout=0.6), lease(locks, KAGGLECV_GPU_WAIT="0.6")):  # an argument, or the env
        _, err = p.communicate(timeout=60)
        assert p.returncode == 1 and "no free GPU among ['0']" in err and f"pid {holder.pid}" in err, err
        assert err.count("waiting for a free GPU") == 1
    waiter = lease(locks)  # no limit: waits as long as it takes
    time.sleep(2)
    assert waiter.poll() is None
    holder.kill()
    holder.wait()
    out, err = waiter.communicate(timeout=60)
    assert json.loads(out)["dev"] == "0" and err.count("waiting for a free GPU") == 1 and "waiting forever" in err
