"""A job on several devices (`gpus: 2`, kagglecv.training.distributed; on CPU two gloo processes): what each of its
processes prints or logs reaches the job's log (process 0) or a log of its own beside it, redacted as the job's
own output is, and never the terminal."""

from __future__ import annotations

import os
import textwrap

import pytest

from helpers import run_snakemake, tiny_config, write_csv_images_competition

SECRET = "kaggle-key-0123456789abcdef"  # KAGGLE_KEY: one of the credentials every job's output is redacted of

# A factory that prints, logs and writes below Python (file descriptor 2) what it is built with, credentials
# included, in every process that builds the model.
LOUD = textwrap.dedent("""
    import logging
    import os

    import torch.distributed as dist
    import torch.nn as nn


    def build(num_outputs, in_chans, pretrained, img_size):
        rank = dist.get_rank() if dist.is_initialized() else 0
        print(f"built in process {rank} with key {os.environ['KAGGLE_KEY']}", flush=True)
        logging.getLogger("loud").info("logged in process %d with key %s", rank, os.environ["KAGGLE_KEY"])
        os.write(2, f"written below python in process {rank} with key {os.environ['KAGGLE_KEY']}\\n".encode())
        return nn.Sequential(nn.Conv2d(in_chans, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_outputs))
""")


@pytest.mark.workflow
@pytest.mark.timeout(900)
def test_each_process_of_a_two_device_job_logs_redacted_beside_the_job(tmp_path):
    wd = tmp_path / "wd"
    (wd / "nets").mkdir(parents=True)
    (wd / "nets" / "loud.py").write_text(LOUD)
    write_csv_images_competition(tmp_path / "tiny.zip")
    cfg = tiny_config(
        tmp_path / "tiny.zip",
        mlflow={"enabled": False},
        backbones=[{"name": "loud", "model": "nets/loud.py:build", "gpus": 2, "threads": 2}],
    )
    r = run_snakemake(wd, cfg, "--until", "train", env={"KAGGLE_KEY": SECRET})
    logs = wd / "results" / "tiny" / "logs" / "train" / "loud"
    assert sorted(p.name for p in logs.iterdir()) == ["fold0.log", "fold0.rank1.log", "fold1.log", "fold1.rank1.log"]
    for fold in (0, 1):
        for rank, name in ((0, f"fold{fold}.log"), (1, f"fold{fold}.rank1.log")):
            text = (logs / name).read_text()
            for what in ("built", "logged", "written below python"):
                assert f"{what} in process {rank} with key ***" in text, (name, text[-3000:])
    everything = [
        r.stdout,
        r.stderr,
        *(
            p.read_text(errors="replace")
            for p in wd.rglob("*")
            if p.is_file() and p.suffix in (".log", ".json", ".csv", ".txt")
        ),
    ]
    assert not [t for t in everything if SECRET in t]
    assert "with key" not in r.stdout + r.stderr  # nothing of the processes reached the terminal
    assert os.environ.get("KAGGLECV_JOB_LOG") is None
