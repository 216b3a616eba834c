"""Tracking that never fails a job: a server that is down, a busy SQLite store across processes, names MLflow
refuses, records backfilled; atomic, durable writes and a leaderboard appended across processes."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from kagglecv.core.files import atomic_path, write_json
from kagglecv.tracking import tracker as tracking

from helpers import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def test_the_parent_run_survives_a_tracking_server_that_is_down(tmp_path, monkeypatch):
    """The workflow's parent run (Snakefile onstart/onsuccess, submit's score) against a server that is down: each
    call warns and returns, none raises, and once one failed the rest do not wait on the server again."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9/")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    monkeypatch.setattr(tracking, "_down", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert tracking.start_parent("exp", tmp_path) is None
        assert tracking.log_to_parent({"public_score": 0.9}, results_dir=tmp_path) is False  # no parent: nothing
        monkeypatch.setenv(tracking.PARENT_ENV, "abc123")  # a parent started while the server was up
        monkeypatch.setattr(tracking, "_down", False)
        assert tracking.log_to_parent({"public_score": 0.9}, results_dir=tmp_path) is False
        assert tracking._down
        tracking.finish_parent(True)  # down already: says how to close it later, without calling the server
    messages = [str(w.message) for w in caught]
    assert any("parent run" in m and "continuing without tracking" in m for m in messages), messages
    assert any("logging to the parent run" in m for m in messages), messages
    assert "the parent run abc123 stays open" in messages[-1] and "--close-parents" in messages[-1]


# ---------------------------------------------------------------- MLflow, leaderboard, atomic writes

TRACK_JOB = """
import sys
from kagglecv.tracking.tracker import Tracker
with Tracker("busy", sys.argv[2], sys.argv[1]) as t:
    t.log_metrics({"m": 1.0})
print("RUN", t.run_id, flush=True)
"""


def test_mlflow_sqlite_busy_retried_across_processes(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONWARNINGS": "always"}
    first = subprocess.run(
        [sys.executable, "-c", TRACK_JOB, str(tmp_path), "init"], env=env, capture_output=True, text=True, timeout=120
    )
    assert "RUN " in first.stdout, first.stderr  # the store exists, with its tables
    db = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None, timeout=60)
    db.execute("BEGIN EXCLUSIVE")  # another job holding a write: every job now sees "database is locked"
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", TRACK_JOB, str(tmp_path), f"job{i}"],
            env=env | extra,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, extra in enumerate([{}, {}, {"KAGGLECV_MLFLOW_BUSY_RETRIES": "0"}])
    ]
    errs = {i: [] for i in range(3)}
    readers = [threading.Thread(target=lambda i=i: errs[i].extend(jobs[i].stderr), daemon=True) for i in range(3)]
    for t in readers:
        t.start()
    deadline = time.monotonic() + 100
    while (
        not (all(any("MLflow store busy" in line for line in errs[i]) for i in (0, 1)) and jobs[2].poll() is not None)
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    db.execute("ROLLBACK")  # the other job finishes: the retrying jobs get through
    outs = [j.communicate(timeout=120)[0] for j in jobs]
    for t in readers:
        t.join(timeout=10)
    assert all(j.returncode == 0 for j in jobs)
    ran = [out.split()[1] for out in outs if out.startswith("RUN ") and out.split()[1] != "None"]
    assert len(ran) == 2, (outs, errs)  # the two jobs that retried; the third gave up
    logged = {r for (r,) in db.execute("SELECT run_uuid FROM metrics WHERE key = 'm'")}
    assert set(ran) <= logged
    gave_up = "".join(errs[2])
    assert "continuing without tracking" in gave_up and "use an MLflow server" in gave_up


APPEND = """
import sys
from kagglecv.kaggle.leaderboard import append_leaderboard
for i in range(int(sys.argv[3])):
    append_leaderboard(sys.argv[1], {"competition": "c", "message": f"{sys.argv[2]}-{i}", "ref": i})
"""


def test_leaderboard_lock_file_beside_it_works_across_processes(tmp_path):
    board = tmp_path / "leaderboard.csv"
    append = [sys.executable, "-c", APPEND, str(board)]
    fd = os.open(tmp_path / ".leaderboard.csv.lock", os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.lockf(fd, fcntl.LOCK_EX)  # a writer on another host of the NFS share holds it
    blocked = subprocess.Popen([*append, "blocked", "1"], env=ENV)
    time.sleep(1.5)
    assert blocked.poll() is None and not board.exists()  # waits for the lock, writes nothing meanwhile
    os.close(fd)
    assert blocked.wait(timeout=60) == 0
    writers = [subprocess.Popen([*append, f"w{k}", "5"], env=ENV) for k in range(4)]
    assert [w.wait(timeout=120) for w in writers] == [0] * 4
    messages = [r["message"] for r in csv.DictReader(board.open())]
    assert sorted(messages) == sorted(["blocked-0"] + [f"w{k}-{i}" for k in range(4) for i in range(5)])


def test_atomic_write_durable_and_umask_untouched(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def spy_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    def no_umask(mask):
        raise AssertionError("os.umask changes the umask of every thread in the process")

    old = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "fsync", spy_fsync)
        monkeypatch.setattr(os, "umask", no_umask)
        out = tmp_path / "sub" / "x.json"
        write_json(out, {"a": 1})
        with pytest.raises(ZeroDivisionError), atomic_path(tmp_path / "sub" / "y.json") as t:
            t.write_text("half")
            raise ZeroDivisionError
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert json.loads(out.read_text()) == {"a": 1} and (out.stat().st_mode & 0o777) == 0o640  # the umask applies
    assert len(synced) == 2 and Path(synced[0]).name.startswith(".x.json.") and synced[1] == str(out.parent)
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.json"]  # no y.json, no temp file


@pytest.mark.kaggle
def test_disabled_tracking_never_imports_mlflow(tmp_path):
    """mlflow.enabled: false (or mlflow.live: false, or tracking down) costs a job nothing: a training job's
    imports and a disabled Tracker's calls leave mlflow unimported (it takes seconds per job); nor does scoring
    accuracy import scikit-learn (another second), while a metric that needs it still gets it."""
    code = f"""
import sys
import numpy as np
import kagglecv.training.train
from kagglecv.scoring import metrics
from kagglecv.tracking.tracker import Tracker
with Tracker("x", "y", {str(tmp_path)!r}, enabled=False, record={str(tmp_path / "r.json")!r}) as t:
    t.log_params({{"a": 1}}); t.log_metrics({{"b": 1.0}}); t.log_artifact({str(tmp_path / "r.json")!r})
acc = metrics.score("accuracy", np.array([0, 1, 2]), np.eye(3)[[0, 1, 1]])
print("mlflow" in sys.modules, "sklearn" in sys.modules, round(acc, 4))
auc = metrics.score("roc_auc", np.array([0, 1, 0, 1]), np.array([[.9, .1], [.2, .8], [.6, .4], [.3, .7]]))
print("sklearn" in sys.modules, auc)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["False", "False", "0.6667", "True", "1.0"], r.stdout
    assert json.loads((tmp_path / "r.json").read_text())["params"] == {"a": "1"}  # the job's record is still written


def test_a_stage_members_name_is_logged_under_a_name_mlflow_accepts(tmp_path, monkeypatch):
    """ "cv_resnet18@r2": MLflow refuses a batch with "@" in a name, which ended the ensemble job's tracking (its run
    left RUNNING, as if the server were down). Logged as "cv_resnet18_r2", in MLflow and in the job's record."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    monkeypatch.setattr(tracking, "_down", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a tracking failure would warn "continuing without tracking"
        with tracking.Tracker("exp", "ensemble", tmp_path, record=tmp_path / "r.json") as t:
            t.log_params({"members": {"resnet18@r2": "x"}})
            t.log_metrics({"cv_resnet18@r2": 0.5, "cv_a.b/c d:e-f": 0.25})
    import mlflow

    run = mlflow.MlflowClient(tracking.tracking_uri(tmp_path)).get_run(t.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"cv_resnet18_r2": 0.5, "cv_a.b/c d:e-f": 0.25}
    assert run.data.params == {"members.resnet18_r2": "x"}
    assert [m[0] for m in json.loads((tmp_path / "r.json").read_text())["metrics"]] == [
        "cv_resnet18_r2",
        "cv_a.b/c d:e-f",
    ]


def test_a_record_written_before_names_were_cleaned_is_backfilled_under_clean_names(tmp_path, monkeypatch):
    """An ensemble record from before tracking cleaned names holds "cv_a@r2": the backfill logs it as MLflow
    holds such names now ("cv_a_r2"), and a second backfill finds it there (nothing logged twice)."""
    from kagglecv.tracking.backfill import backfill

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    monkeypatch.setattr(tracking, "_down", False)
    res = tmp_path / "results" / "comp"
    res.mkdir(parents=True)
    (res / "scores.json").write_text("{}")
    record = res / "ensemble.mlflow.json"
    with tracking.Tracker(
        "comp", "ensemble", tmp_path / "results", tags={"step": "ensemble"}, enabled=False, record=record
    ) as t:
        t.log_artifact(res / "scores.json")
    old = json.loads(record.read_text())
    old["params"]["members.a@r2"] = "x"
    old["metrics"].append(["cv_a@r2", 0.5, 0, old["start_ms"]])
    record.write_text(json.dumps(old))
    assert backfill(res)["created"] == ["ensemble"]
    again = backfill(res)
    assert again["created"] == [] and again["completed"] == []
    import mlflow

    client = mlflow.MlflowClient(tracking.tracking_uri(tmp_path / "results"))
    [run] = [
        r
        for r in client.search_runs([client.get_experiment_by_name("comp").experiment_id])
        if r.info.run_name == "ensemble"
    ]
    assert run.data.metrics == {"cv_a_r2": 0.5} and run.data.params == {"members.a_r2": "x"}
    assert len(client.get_metric_history(run.info.run_id, "cv_a_r2")) == 1
