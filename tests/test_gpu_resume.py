"""GPU leases across concurrent jobs, and kill-and-resume of a training job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from kagglecv import folds, prepare
from kagglecv.train import TrainConfig, run

from conftest import REPO, write_csv_images_competition

LEASE_JOB = """
import json, os, sys, time
from kagglecv.gpu import lease_gpu
dev = lease_gpu(sys.argv[1], poll=0.05)
start = time.time()
time.sleep(0.6)
print(json.dumps({"dev": dev, "cuda": os.environ["CUDA_VISIBLE_DEVICES"], "start": start, "end": time.time()}))
"""


def test_concurrent_jobs_never_share_a_device(tmp_path):
    env = {**os.environ, "KAGGLECV_DEVICES": "0,1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    procs = [subprocess.Popen([sys.executable, "-c", LEASE_JOB, str(tmp_path)], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    leases = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(lease["dev"] for lease in leases) == ["0", "0", "1", "1"]
    assert all(lease["dev"] == lease["cuda"] for lease in leases)
    for dev in "01":
        a, b = sorted((x for x in leases if x["dev"] == dev), key=lambda x: x["start"])
        assert a["end"] <= b["start"], f"device {dev} was held by two jobs at once"


def test_an_existing_cuda_visible_devices_is_respected(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KAGGLECV_DEVICES"}
    env["CUDA_VISIBLE_DEVICES"] = "3"  # as Slurm sets it
    out = subprocess.run([sys.executable, "-c", LEASE_JOB, str(tmp_path)], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out)["dev"] == "3"


TRAIN_JOB = """
import sys
from kagglecv.train import TrainConfig, run
cfg = TrainConfig(backbone="test_resnet", fold=0, epochs=4, img_size=32, batch_size=8, tta="none", device="cpu")
run(cfg, sys.argv[1], sys.argv[2], sys.argv[3], track=False)
"""


def test_killed_training_resumes_from_its_last_epoch(tmp_path):
    write_csv_images_competition(tmp_path / "c.zip", n_per_class=40)
    prepare.prepare(tmp_path / "c.zip", tmp_path / "prep")
    folds.make_folds(tmp_path / "prep" / "train.csv", tmp_path / "folds.csv", 2, seed=0)
    out = tmp_path / "model"
    args = [str(tmp_path / "prep"), str(tmp_path / "folds.csv"), str(out)]
    p = subprocess.Popen([sys.executable, "-c", TRAIN_JOB, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "resume.pt").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    saved = torch.load(out / "resume.pt", weights_only=False)
    assert 1 <= saved["epoch"] < 4 and not (out / "metrics.json").exists()

    result = run(TrainConfig(backbone="test_resnet", fold=0, epochs=4, img_size=32, batch_size=8, tta="none",
                             device="cpu"), *args, track=False)
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert history.iloc[: saved["epoch"]]["train_loss"].tolist() == [h["train_loss"] for h in saved["history"]]
    assert json.loads((out / "metrics.json").read_text())["score"] == result["score"]
    assert not (out / "resume.pt").exists()  # removed once the job has finished


def test_same_seed_gives_identical_predictions(tmp_path):
    write_csv_images_competition(tmp_path / "c.zip", n_per_class=10)
    prepare.prepare(tmp_path / "c.zip", tmp_path / "prep")
    folds.make_folds(tmp_path / "prep" / "train.csv", tmp_path / "folds.csv", 2, seed=0)
    cfg = dict(backbone="test_resnet", fold=1, epochs=1, img_size=16, batch_size=8, tta="augment", tta_n=2)
    for name in ("a", "b"):
        run(TrainConfig(**cfg), tmp_path / "prep", tmp_path / "folds.csv", tmp_path / name, track=False)
    assert (tmp_path / "a" / "oof.csv").read_text() == (tmp_path / "b" / "oof.csv").read_text()
    run(TrainConfig(**cfg, seed=7), tmp_path / "prep", tmp_path / "folds.csv", tmp_path / "c", track=False)
    assert (tmp_path / "a" / "oof.csv").read_text() != (tmp_path / "c" / "oof.csv").read_text()
