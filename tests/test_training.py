"""GPU leases across concurrent jobs, and kill-and-resume of a training job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from kagglecv.config.train import TrainConfig
from kagglecv.data import folds, prepare
from kagglecv.training.train import run

from helpers import REPO, write_csv_images_competition

LEASE_JOB = """
import json, os, sys, time
from kagglecv.core.gpus import lease_gpu
dev = lease_gpu(sys.argv[1], poll=0.05)
start = time.time()
time.sleep(0.6)
print(json.dumps({"dev": dev, "cuda": os.environ["CUDA_VISIBLE_DEVICES"], "start": start, "end": time.time()}))
"""


def test_concurrent_jobs_never_share_a_device(tmp_path):
    env = {**os.environ, "KAGGLECV_DEVICES": "0,1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    procs = [
        subprocess.Popen([sys.executable, "-c", LEASE_JOB, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
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
    out = subprocess.run(
        [sys.executable, "-c", LEASE_JOB, str(tmp_path)], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out)["dev"] == "3"


TRAIN_JOB = """
import json, sys
from kagglecv.config.train import TrainConfig
from kagglecv.training.train import run
cfg = TrainConfig(**json.loads(sys.argv[4]))
run(cfg, sys.argv[1], sys.argv[2], sys.argv[3], track=False)
"""
KILLED = dict(backbone="test_resnet", fold=0, epochs=4, img_size=32, batch_size=8, tta="none", device="cpu")


def train_job(args: list[str], settings: dict, **kw):
    """TRAIN_JOB in a process of its own, as the train rule runs it."""
    return subprocess.Popen([sys.executable, "-c", TRAIN_JOB, *args, json.dumps(settings)], cwd=REPO, **kw)


def killed_after_an_epoch(tmp_path, settings: dict = KILLED) -> tuple[list[str], dict]:
    """A training job killed (SIGKILL) once its first end-of-epoch checkpoint exists: (its args, the checkpoint)."""
    write_csv_images_competition(tmp_path / "c.zip", n_per_class=40)
    prepare.prepare(tmp_path / "c.zip", tmp_path / "prep")
    folds.make_folds(tmp_path / "prep" / "train.csv", tmp_path / "folds.csv", 2, seed=0)
    out = tmp_path / "model"
    args = [str(tmp_path / "prep"), str(tmp_path / "folds.csv"), str(out)]
    p = train_job(args, settings, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "resume.pt").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    saved = torch.load(out / "resume.pt", weights_only=True)  # tensors and plain values only: never code
    assert 1 <= saved["epoch"] < settings["epochs"] and not (out / "metrics.json").exists()
    return args, saved


RESUMED = TrainConfig(backbone="test_resnet", fold=0, epochs=4, img_size=32, batch_size=8, tta="none", device="cpu")


def test_killed_training_resumes_from_its_last_epoch(tmp_path, capsys):
    args, saved = killed_after_an_epoch(tmp_path)
    result = run(RESUMED, *args, track=False)
    assert f"resuming from {args[2]}/resume.pt after epoch {saved['epoch']}" in capsys.readouterr().out
    out = tmp_path / "model"
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert history.iloc[: saved["epoch"]]["train_loss"].tolist() == [h["train_loss"] for h in saved["history"]]
    saved_metrics = json.loads((out / "metrics.json").read_text())
    assert saved_metrics["score"] == result["score"]
    # what the job spent besides its epochs: start-up (here the whole pytest process so far) and TTA included
    assert 0 < saved_metrics["startup_seconds"] <= saved_metrics["fixed_seconds"]
    assert saved_metrics["tta_seconds"] >= 0
    assert not (out / "resume.pt").exists()  # removed once the job has finished
    record = json.loads((out / "test_resnet-fold0.mlflow.json").read_text())  # the whole history, resumed or not
    assert sorted({step for key, _, step, _ in record["metrics"] if key == "train_loss"}) == [1, 2, 3, 4]


def test_a_resumed_job_ends_byte_identical_to_an_uninterrupted_one(tmp_path):
    """Killed after its first epoch and run again, a job must end with the model an uninterrupted one ends with:
    every random state the later epochs draw from is in the checkpoint (the batch order's generator, the
    augmentation's own generators, torch's, numpy's and Python's)."""
    settings = {**KILLED, "epochs": 3, "augment": "flip", "threads": 1}
    args, saved = killed_after_an_epoch(tmp_path, settings)
    resumed = train_job(args, settings, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert resumed.wait(timeout=300) == 0 and "resuming from" in resumed.stdout.read()
    whole = [*args[:2], str(tmp_path / "whole")]
    assert train_job(whole, settings, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).wait(timeout=300) == 0
    for name in ("oof.csv", "test.csv"):
        assert (tmp_path / "model" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_a_checkpoint_of_other_folds_is_not_resumed(tmp_path, capsys):
    args, _ = killed_after_an_epoch(tmp_path)
    folds.make_folds(tmp_path / "prep" / "train.csv", tmp_path / "folds.csv", 2, seed=1)  # folds changed since
    run(RESUMED, *args, track=False)
    assert "saved with other data or folds; starting over" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "model" / "history.csv")["epoch"].tolist() == [1, 2, 3, 4]


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


def _tiny(tmp_path, n_per_class=12):
    write_csv_images_competition(tmp_path / "c.zip", n_per_class=n_per_class)
    prepare.prepare(tmp_path / "c.zip", tmp_path / "prep")
    folds.make_folds(tmp_path / "prep" / "train.csv", tmp_path / "folds.csv", 2, seed=0)
    return tmp_path / "prep", tmp_path / "folds.csv"


def test_device_data_path_trains_and_augments_in_batches(tmp_path):
    from kagglecv.data.augment import AUGMENT_PRESETS, batch_augment

    x = torch.arange(64, dtype=torch.uint8).reshape(1, 8, 8, 1).repeat(16, 1, 1, 1)  # asymmetric image
    out = batch_augment(x, 16, AUGMENT_PRESETS["fastai"], torch.Generator().manual_seed(0), train=True)
    assert out.shape == (16, 1, 16, 16) and 0 <= out.min() and out.max() <= 1
    assert len({tuple(v.flatten().round(decimals=3).tolist()) for v in out}) > 8  # per-sample randomness
    plain = batch_augment(x[:1], 8, AUGMENT_PRESETS["none"], None, train=False)
    assert torch.allclose(plain[0, 0] * 255, x[0, ..., 0].float())  # eval: a pure resize

    prep, fcsv = _tiny(tmp_path)
    r = run(
        TrainConfig(
            backbone="test_resnet", epochs=1, img_size=16, batch_size=8, tta="augment", tta_n=2, data_path="device"
        ),
        prep,
        fcsv,
        tmp_path / "m",
        track=False,
    )
    assert json.loads((tmp_path / "m" / "config.json").read_text())["data_path_used"] == "device"
    assert pd.read_csv(tmp_path / "m" / "oof.csv").filter(like="p").sum(axis=1).round(5).eq(1).all()
    assert 0 <= r["score"] <= 1


def test_fine_tune_trains_the_head_alone_then_everything_with_discriminative_lrs():
    from kagglecv.inference.models import build_model
    from kagglecv.training.schedule import plan_phases, set_frozen

    cfg = TrainConfig(backbone="test_resnet", lr=0.01, freeze_epochs=1, epochs=2, lr_mult=100, lr_groups=3)
    model, _ = build_model(cfg, n_outputs=3, in_chans=1)
    frozen, thawed = plan_phases(model, cfg, steps_per_epoch=4)
    assert frozen.frozen and frozen.epochs == 1 and not thawed.frozen and thawed.epochs == 2
    head = {id(p) for p in model.get_classifier().parameters()}
    assert {id(p) for g in frozen.optimizer.param_groups for p in g["params"]} == head
    peak = [g["max_lr"] for g in thawed.optimizer.param_groups]
    assert peak == pytest.approx([0.01 / 2 / 100, 0.01 / 2 / 10, 0.01 / 2])  # earliest layers .. head
    set_frozen(model, True)
    assert {id(p) for p in model.parameters() if p.requires_grad} == head
    set_frozen(model, False)
    assert all(p.requires_grad for p in model.parameters())


def test_fine_tune_ema_mixup_and_accumulation_run_end_to_end(tmp_path):
    prep, fcsv = _tiny(tmp_path)
    cfg = TrainConfig(
        backbone="test_resnet",
        epochs=1,
        freeze_epochs=1,
        img_size=16,
        batch_size=8,
        tta="flip",
        ema_decay=0.9,
        mixup_alpha=0.4,
        cutmix_alpha=1.0,
        grad_accum=2,
    )
    run(cfg, prep, fcsv, tmp_path / "m", track=False)
    history = pd.read_csv(tmp_path / "m" / "history.csv")
    assert history["epoch"].tolist() == [1, 2] and history["train_loss"].notna().all()
    assert (tmp_path / "m" / "model.pt").exists()


def test_gpu_code_paths_run_on_cpu(tmp_path, monkeypatch):
    """What a GPU job does, executed on CPU: bf16 autocast in training, TTA and prediction, a channels_last
    model fed channels_last batches, and the on-device data path; then predict's reload of the fold."""
    from kagglecv.core import devices
    from kagglecv.inference.predict import load_fold_model

    seen = []
    forward = torch.nn.Module.__call__

    def spy(self, x, *a, **kw):  # what the top-level model is fed, and under which autocast
        if isinstance(self, torch.nn.Module) and hasattr(self, "kagglecv_channels_last") and torch.is_tensor(x):
            seen.append(
                (
                    x.is_contiguous(memory_format=torch.channels_last),
                    torch.is_autocast_enabled("cpu"),
                    torch.get_autocast_dtype("cpu"),
                )
            )
        return forward(self, x, *a, **kw)

    monkeypatch.setattr(torch.nn.Module, "__call__", spy)
    prep, fcsv = _tiny(tmp_path)
    cfg = TrainConfig(
        backbone="test_resnet",
        epochs=1,
        img_size=16,
        batch_size=8,
        tta="augment",
        tta_n=2,
        data_path="device",
        device="cpu",
        amp_dtype="bf16",
        channels_last=True,
    )
    r = run(cfg, prep, fcsv, tmp_path / "m", track=False)
    resolved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert resolved["amp_dtype_used"] == "torch.bfloat16" and resolved["channels_last_used"] is True
    assert resolved["data_path_used"] == "device"
    assert seen and all(cl and amp and dtype == torch.bfloat16 for cl, amp, dtype in seen)
    assert pd.read_csv(tmp_path / "m" / "oof.csv").filter(like="p").sum(axis=1).round(3).eq(1).all()
    assert 0 <= r["score"] <= 1
    model, *_, amp, _ = load_fold_model(tmp_path / "m" / "model.pt", in_chans=1, device_pref="cpu")
    assert amp == torch.bfloat16 and model.kagglecv_channels_last
    with pytest.raises(devices.InputError, match="fp16 needs a GPU"):
        devices.autocast_dtype(torch.device("cpu"), TrainConfig(backbone="x", amp_dtype="fp16"))


@pytest.mark.parametrize("channels_last", [True, False])
def test_cpu_default_precision_is_full(channels_last):
    """On CPU, auto means full precision in NCHW (bf16 on a CPU with AMX was neither reproducible nor safe in the
    workflow's jobs); amp_dtype: bf16 and channels_last force the GPU's code paths on any device."""
    from kagglecv.core import devices as train

    cpu, cfg = torch.device("cpu"), TrainConfig(backbone="x")
    assert train.autocast_dtype(cpu, cfg) is None
    assert train.place_model(torch.nn.Conv2d(1, 2, 3), cpu, cfg).kagglecv_channels_last is False
    assert train.autocast_dtype(cpu, TrainConfig(backbone="x", amp=False)) is None
    assert train.autocast_dtype(cpu, TrainConfig(backbone="x", amp_dtype="bf16")) == torch.bfloat16
    forced = TrainConfig(backbone="x", channels_last=channels_last)
    assert train.place_model(torch.nn.Conv2d(1, 2, 3), cpu, forced).kagglecv_channels_last is channels_last
