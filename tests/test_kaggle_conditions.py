"""Kaggle under real conditions, through the real client against tests/kaggle_stub.py: timeouts, 429 with
Retry-After, lagging listings, pending scores, and the leaderboard row the command line writes."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
import time

import pytest

from kagglecv.core.layout import Layout
from kagglecv.kaggle.client import backoff_delay, retry_after

from helpers import REPO, competition_zip, error_line, run_kaggle_cli
from kaggle_stub import KaggleStub


@pytest.fixture
def stub():
    with KaggleStub({"digits": competition_zip()}) as s:
        yield s


# ---------------------------------------------------------------- Kaggle under real conditions


@pytest.mark.kaggle
@pytest.mark.parametrize(
    "op, args",
    [
        ("download", ["download", "digits", "D", "--retries", "1", "--backoff", "0.05"]),
        ("blob", ["download", "digits", "D", "--retries", "1", "--backoff", "0.05"]),
        ("submissions", ["submit", "digits", "S", "-m", "x", "--poll-interval", "0.05"]),
    ],
)
def test_http_calls_time_out(stub, tmp_path, op, args):
    (tmp_path / "S").write_text("id,label\n1,0\n")
    stub.delay[op] = 60  # the server accepts the connection and never answers
    t0 = time.monotonic()
    cmd = [str(tmp_path / a) if a in "DS" else a for a in args]
    r = run_kaggle_cli(stub, tmp_path, cmd[0], "--http-timeout", "0.5", *cmd[1:])
    line = error_line(r)
    assert time.monotonic() - t0 < 30 and "Timeout" in line and "attempt(s)" in line
    assert stub.submissions == [] and not (tmp_path / "D" / ".complete").exists()


@pytest.mark.kaggle
def test_429_retry_after_honoured_and_backoff_jittered(stub, tmp_path):
    import requests

    stub.fail["download"], stub.retry_after = (429, 1), "1.5"
    r = run_kaggle_cli(stub, tmp_path, "download", "digits", str(tmp_path / "d"), "--backoff", "0.01")
    assert r.returncode == 0, r.stderr
    calls = [t for t, path in stub.times if path.endswith("/DownloadDataFiles")]
    assert len(calls) == 2 and calls[1] - calls[0] >= 1.4  # not the 0.01 s backoff
    # Retry-After as an HTTP date, and jittered, capped exponential backoff otherwise.
    response = requests.Response()
    response.status_code, response.headers["Retry-After"] = 429, "Wed, 21 Oct 2015 07:28:00 GMT"
    assert retry_after(requests.HTTPError(response=response)) == 0.0  # a date in the past: no wait
    waits = [backoff_delay(3, 1.0) for _ in range(50)]
    assert all(4 <= w < 12 for w in waits) and len(set(waits)) > 40
    assert backoff_delay(30, 1.0, max_wait=60) == 60


@pytest.mark.kaggle
def test_submission_missing_from_listing_keeps_being_polled(stub, tmp_path):
    submission = tmp_path / "submission.csv"
    submission.write_text("id,label\n1,0\n")
    stub.hidden_polls = 3  # Kaggle's listing lags behind the submission it just created
    r = run_kaggle_cli(stub, tmp_path, "submit", "digits", str(submission), "-m", "x", "--poll-interval", "0.05")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["status"] == "COMPLETE" and result["ref"] == stub.submissions[0]["ref"]
    assert stub.calls("StartSubmissionUpload") == 1 and len(stub.submissions) == 1


SUBMIT_JOB = """
import sys
from kagglecv.config.schema import resolve
from kagglecv.jobs import Files, Job, run_logged
from kagglecv.jobs.kaggle import submit
config = resolve({"competition": "digits", "mlflow": {"enabled": False},
                  "kaggle": {"poll_interval": 0.05, "timeout": float(sys.argv[1])}})
params = Files(competition="digits", repo=None)
r = run_logged(None, submit, Job("submit", config, params=params))
print("RESULT", r["ref"], r["status"], r["public_score"])
"""


@pytest.mark.kaggle
@pytest.mark.parametrize("stall", ["not scored in time", "listing rate-limited"])
def test_pending_submission_recorded_then_resumed(stub, tmp_path, stall):
    L = Layout(tmp_path / "results" / "digits")
    sub, scores, board = L.submission, L.scores, L.leaderboard
    L.root.mkdir(parents=True)
    sub.write_text("id,label\n1,0\n")
    scores.write_text(json.dumps({"metric": "accuracy", "ensemble": {"cv": 0.9, "method": "mean"}}))
    board.write_text(
        "time,competition,message,cv,public_score,private_score,ref\n"  # a file from before `status`
        "2024-01-01T00:00:00+00:00,digits,old,0.8,0.81,,7\n"
    )
    if stall == "not scored in time":
        stub.pending_polls = 10**6
    else:  # the listings after the upload answer 429 (Retry-After: 0) until the retries run out
        stub.retry_after = "0"
        stub.on_submit = lambda: stub.fail.update(submissions=429)
    env = stub.env(tmp_path / "home") | {"PYTHONPATH": str(REPO)}
    step = [sys.executable, "-c", SUBMIT_JOB]
    r = subprocess.run([*step, "0.5"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "was made but is still pending" in r.stderr.strip().splitlines()[-1], r.stderr
    old, pending = list(csv.DictReader(board.open()))
    assert old["message"] == "old" and old["status"] == "" and old["public_score"] == "0.81"  # still readable
    assert pending["status"] == "PENDING" and pending["ref"] == str(stub.submissions[0]["ref"])
    assert pending["public_score"] == "" and len(pending["file_sha256"]) == 64

    stub.pending_polls, stub.fail, stub.on_submit = 0, {}, None  # Kaggle scores it now
    r = subprocess.run([*step, "30"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"RESULT {stub.submissions[0]['ref']} COMPLETE 0.5" in r.stdout
    assert stub.calls("StartSubmissionUpload") == 1 and len(stub.submissions) == 1  # polled, not resubmitted
    rows = list(csv.DictReader(board.open()))
    assert len(rows) == 2 and rows[1]["status"] == "COMPLETE" and rows[1]["public_score"] == "0.5"
    assert rows[1]["time"] == pending["time"] and rows[1]["ref"] == pending["ref"]


def test_kaggle_cli_still_writes_leaderboard_row(stub, tmp_path):
    """The command line records the status and the file's hash too (what resuming matches on)."""
    submission, board = tmp_path / "s.csv", tmp_path / "leaderboard.csv"
    submission.write_text("id,label\n1,1\n")
    r = run_kaggle_cli(
        stub,
        tmp_path,
        "submit",
        "digits",
        str(submission),
        "-m",
        "x",
        "--poll-interval",
        "0.05",
        "--leaderboard",
        str(board),
        "--cv",
        "0.5",
    )
    assert r.returncode == 0, r.stderr
    (row,) = csv.DictReader(board.open())
    assert row["status"] == "COMPLETE" and row["public_score"] == "0.5"
    assert row["file_sha256"] == hashlib.sha256(submission.read_bytes()).hexdigest()
