"""Issue 34's smaller items: a time budget's re-plan with weight averaging, a resumed time-budget job that plans on,
credentials in a URI's query string and short ones, a bug's traceback on the terminal, an archive whose entries
are each below the zip-bomb limit, and two submits at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import pandas as pd
import pytest
import torch

from kagglecv.config.train import TrainConfig
from kagglecv.core.errors import InputError
from kagglecv.core.secrets import redact
from kagglecv.data.archive import ArchiveLimits, safe_extract
from kagglecv.data.folds import make_folds
from kagglecv.data.prepare import prepare
from kagglecv.training import train as training
from kagglecv.training.averaging import WeightAverage
from kagglecv.training.schedule import optimizer_steps, rebuild_schedule

from helpers import REPO, write_csv_images_competition
from kaggle_stub import KaggleStub

BASE = dict(backbone="test_resnet", batch_size=8, img_size=16, threads=1, tta="none", amp=False, device="cpu")


@pytest.fixture
def tiny(tmp_path):
    write_csv_images_competition(tmp_path / "c.zip", n_per_class=12)
    prepare(tmp_path / "c.zip", tmp_path / "prep")
    make_folds(tmp_path / "prep" / "train.csv", tmp_path / "folds.csv", 2, 0)
    return [str(tmp_path / "prep"), str(tmp_path / "folds.csv")]


# ---------------------------------------------------------------- time budgets


def set_epochs(s, epochs: int, done: int) -> None:
    """What a plan does: the schedule rebuilt for `epochs`, moved on to the `done` epochs' steps."""
    steps = optimizer_steps(s.cfg, len(s.train_batches))
    rebuild_schedule(s.phases[-1], s.phases[-1].make, epochs, steps, done * steps)
    s.budget["planned_epochs"] = epochs


def test_weight_averaging_keeps_the_last_epochs_of_a_count_that_changes():
    model = torch.nn.Linear(1, 1, bias=False)
    avg = WeightAverage(2)
    for epoch in range(1, 7):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        avg.update(model, epoch, None)  # the count is not known: a time budget plans it again after each epoch
    assert avg.apply(model) == 2 and model.weight.item() == 5.5  # epochs 5 and 6, whatever was planned


def test_a_budget_replanned_inside_the_averaging_window_averages_the_last_epochs(tiny, tmp_path, monkeypatch):
    """Planned for 5 epochs, average_epochs 3 (epochs 3-5), then after epoch 3 planned again for 7: the average is
    of epochs 5, 6 and 7, three of them, not of epochs 3, 5, 6 and 7."""
    plan = training.plan_budget

    def first_plan(s, *args):
        plan(s, *args)
        set_epochs(s, 5, 1)

    def plan_again(s, elapsed, done, valid_seconds):
        if done == 3:
            set_epochs(s, 7, done)

    monkeypatch.setattr(training, "plan_budget", first_plan)
    monkeypatch.setattr(training, "replan_budget", plan_again)
    cfg = TrainConfig(**BASE, epochs=1, time_budget=600.0, average="last_k", average_epochs=3)
    r = training.run(cfg, *tiny, tmp_path / "m", track=False)
    assert len(pd.read_csv(tmp_path / "m" / "history.csv")) == 7 and r["averaged_epochs"] == 3


RESUMABLE = """
import json, sys
from kagglecv.config.train import TrainConfig
from kagglecv.training.train import run
run(TrainConfig(**json.loads(sys.argv[4])), sys.argv[1], sys.argv[2], sys.argv[3], track=False)
"""


def test_a_resumed_time_budget_job_plans_on_from_the_epochs_before_the_kill(tiny, tmp_path, monkeypatch):
    settings = {**BASE, "epochs": 1, "time_budget": 6.0}
    out = tmp_path / "m"
    proc = subprocess.Popen(
        [sys.executable, "-c", RESUMABLE, *tiny, str(out), json.dumps(settings)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (out / "resume.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = torch.load(out / "resume.pt", weights_only=True)
    planned = saved["recipe"]["budget"]["planned_epochs"]
    assert saved["epoch"] < planned - 2, "too few epochs left to plan again; make the budget larger"
    assert saved["recipe"]["timing"]["seconds"] > 0  # the epochs' time so far, kept for the plans after a resume
    calls, replan = [], training.replan_budget

    def recorded(s, elapsed, done, valid_seconds):
        calls.append((elapsed, done, len(valid_seconds)))
        return replan(s, elapsed, done, valid_seconds)

    monkeypatch.setattr(training, "replan_budget", recorded)
    training.run(TrainConfig(**settings), *tiny, out, track=False)
    assert calls, "the resumed job never planned again"
    elapsed, done, passes = calls[0]
    assert done == saved["epoch"] + 1 and passes == done  # the validation passes before the kill counted
    assert elapsed > saved["recipe"]["timing"]["seconds"]  # and the seconds of the epochs before it


# ---------------------------------------------------------------- credentials


def test_a_token_in_a_uri_query_string_is_redacted(monkeypatch):
    for name in ("KAGGLE_KEY", "KAGGLE_API_TOKEN", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", "/nonexistent")
    monkeypatch.setenv("HOME", "/nonexistent")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com/?workspace=w1&opaque=zq81LmX4")
    text = redact(
        "tracking at https://mlflow.example.com/?workspace=w1&opaque=zq81LmX4, ok; opaque zq81LmX4; "
        "GET https://api.example.com/v1/runs?id=3&access_token=t0k3nVALUE&x=1; "
        "https://storage.example.com/blob?se=2030&sig=AbC%2Bdef"
    )
    assert text == (
        "tracking at https://mlflow.example.com/?workspace=***&opaque=***, ok; opaque ***; "
        "GET https://api.example.com/v1/runs?id=3&access_token=***&x=1; "
        "https://storage.example.com/blob?se=2030&sig=***"
    )


def test_a_short_secret_is_redacted_where_it_stands_alone(monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", "/nonexistent")
    monkeypatch.setenv("HOME", "/nonexistent")
    monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)
    monkeypatch.setenv("KAGGLE_KEY", "x7q")
    assert redact("key=x7q, 'x7q' and x7q. but not ax7qb or x7q9") == "key=***, '***' and ***. but not ax7qb or x7q9"


LEAKY_JOB = """
import os, sys
from types import SimpleNamespace
from kagglecv.jobs import job, run

@job
def leaky(job_):
    print("about to fail")
    raise ValueError(f"the server refused key {os.environ['KAGGLE_KEY']}")

run(SimpleNamespace(rule="leaky", config={"competition": "x"}, input={}, output={}, params={}, wildcards={},
                    threads=1, log=[sys.argv[1]]))
"""


def test_a_bugs_traceback_reaches_the_terminal_redacted_and_fails_the_job(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "KAGGLE_KEY": "leakyKEY-0123456789"}
    log = tmp_path / "logs" / "leaky.log"
    r = subprocess.run(
        [sys.executable, "-c", LEAKY_JOB, str(log)], env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "ValueError: the server refused key ***" in r.stderr, r.stderr
    assert "leakyKEY" not in r.stdout + r.stderr + log.read_text()
    assert "ValueError: the server refused key ***" in log.read_text()


# ---------------------------------------------------------------- archives


def test_many_entries_each_below_the_bomb_limit_are_refused_together(tmp_path):
    """Each entry is below bomb_bytes (the per-entry rule does not apply) but the archive unpacks to over a
    thousand times its size: refused before anything is written."""
    limits = ArchiveLimits(bomb_bytes=2 * 2**20)  # the default's 100 MB, scaled down
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for k in range(4):
            zf.writestr(f"train/part{k}.png", bytes(2**20 - 1))  # below bomb_bytes each, 4 MB together
    target = tmp_path / "out"
    with pytest.raises(InputError) as e:
        safe_extract(bomb, target, limits=limits)
    assert "refusing a likely zip bomb" in str(e.value) and "\n" not in str(e.value) and "together" in str(e.value)
    assert not target.exists()
    with zipfile.ZipFile(tmp_path / "fine.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train/a.png", os.urandom(2**20)), zf.writestr("train/b.png", bytes(2**20))
    assert (safe_extract(tmp_path / "fine.zip", tmp_path / "ok", limits=limits) / "train" / "a.png").is_file()


# ---------------------------------------------------------------- two submits at once


SUBMIT = """
import sys
from kagglecv.config.schema import resolve
from kagglecv.jobs import Files, Job, run_logged
from kagglecv.jobs.kaggle import submit
config = resolve({"competition": "digits", "mlflow": {"enabled": False},
                  "kaggle": {"poll_interval": 0.05, "timeout": float(sys.argv[1]), "code_competition": False}})
params = Files(competition="digits", repo=None)
run_logged(None, submit, Job("submit", config, params=params))
"""


@pytest.mark.kaggle
def test_a_second_submit_while_one_runs_is_refused_and_uploads_nothing(tmp_path):
    from kagglecv.core.layout import Layout

    L = Layout(tmp_path / "results" / "digits")
    L.root.mkdir(parents=True)
    L.submission.write_text("id,label\n1,0\n")
    L.scores.write_text(json.dumps({"metric": "accuracy", "ensemble": {"cv": 0.9, "method": "mean"}}))
    with KaggleStub({"digits": b""}) as stub:
        stub.pending_polls = 10**6  # the first submit waits for its score
        env = stub.env(tmp_path / "home") | {"PYTHONPATH": str(REPO)}
        first = subprocess.Popen(
            [sys.executable, "-c", SUBMIT, "20"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not stub.submissions and first.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert stub.submissions and first.poll() is None, "the first submit did not upload"
            second = subprocess.run(
                [sys.executable, "-c", SUBMIT, "1"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
            )
        finally:
            first.kill()
            first.wait()
    assert second.returncode == 1, second.stderr
    line = second.stderr.strip().splitlines()[-1]
    assert line.startswith("ERROR: ") and "another `snakemake submit` of digits is running" in line, second.stderr
    assert len(stub.submissions) == 1  # nothing uploaded twice
