"""Credentials never reach a log, a record or MLflow, whoever prints them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

from kagglecv.core.secrets import redact
from kagglecv.tracking import tracker as tracking

from helpers import REPO


def test_credentials_redacted_everywhere(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    (home / ".kaggle" / "credentials.json").write_text(
        json.dumps(
            {"refresh_token": "refreshOAUTH111", "access_token": "accessOAUTH222", "access_token_expiration": ""}
        )
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    monkeypatch.setenv("KAGGLE_API_TOKEN", "envTOKEN333")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:pa%24%24word444@127.0.0.1:9/")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    text = redact(
        "refresh=refreshOAUTH111 access=accessOAUTH222 env=envTOKEN333 pass=pa$$word444 "
        "uri=https://bob:hunter2@mlflow.example.com:5000/x other=https://tok@host/"
    )
    assert text == (
        "refresh=*** access=*** env=*** pass=*** uri=https://***@mlflow.example.com:5000/x other=https://***@host/"
    )
    assert tracking.display_uri(tracking.tracking_uri()) == "http://***@127.0.0.1:9/"
    # A tracking server that is down: the warning names the store without its credentials.
    monkeypatch.setattr(tracking, "_down", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracking.Tracker("exp", "job", tmp_path) as t:
            t.log_metrics({"m": 1.0})
    message = " ".join(str(w.message) for w in caught)
    assert "continuing without tracking" in message and "http://***@127.0.0.1:9/" in message
    assert "pa%24%24word444" not in message and "alice:" not in message


MLFLOW_PRINTS = r"""
import logging, os, sys
from kagglecv.jobs import run_logged
from kagglecv.tracking.tracker import http_defaults

def job():
    http_defaults()
    print("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT=" + os.environ.get("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "unset"))
    url = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
    sys.stdout.write(f"\N{RUNNER} View run train at: {url}/#/experiments/1/runs/abc\n")  # as MLflow prints it
    sys.stdout.write(url[:12])  # a URL printed in pieces
    sys.stdout.write(url[12:] + "/x\n")
    logging.getLogger("kagglecv").info("tracking at %s", url)
    print("the token is envTOKEN333", file=sys.stderr)

run_logged(sys.argv[1], job)
"""


def test_job_logs_never_hold_a_credential(tmp_path, monkeypatch):
    """MLflow prints each run's URL, built from the tracking URI with its user:password, to stdout, which the job
    harness sends to results/<competition>/logs/: it is not printed, and what any library prints is redacted."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MLFLOW_TRACKING_URI": "http://alice:pa55word444@127.0.0.1:9/",
        "KAGGLE_API_TOKEN": "envTOKEN333",
    }
    env.pop("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", None)
    log = tmp_path / "logs" / "train.log"
    r = subprocess.run(
        [sys.executable, "-c", MLFLOW_PRINTS, str(log)], env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    text = log.read_text()
    assert "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT=true" in text
    assert "View run train at: http://***@127.0.0.1:9/#/experiments/1/runs/abc" in text
    assert "http://***@127.0.0.1:9/x" in text and "tracking at http://***@127.0.0.1:9" in text
    assert "the token is ***" in text
    assert "pa55word444" not in text + r.stdout + r.stderr and "envTOKEN333" not in text
