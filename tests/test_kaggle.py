"""kagglecv.kaggle against a stand-in Kaggle server, through the REAL kaggle client.

`kaggle` authenticates at import time, so every download/submit runs in a subprocess
(`kagglecv download|submit ...`) with the stub's environment: isolated HOME and
KAGGLE_CONFIG_DIR, KAGGLE_API_ENVIRONMENT=LOCALHOST and HTTP_PROXY pointing at the stub.
"""

from __future__ import annotations

import base64
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kagglecv.core.secrets import redact
from kagglecv.kaggle.leaderboard import append_leaderboard

from helpers import REPO, competition_zip, error_line, make_zip, run_kaggle_cli, stub_secrets
from kaggle_stub import KaggleStub

KAGGLE_CLI = Path(sys.executable).parent / "kaggle"


@pytest.fixture
def stub():
    with KaggleStub(
        {
            "digits": competition_zip(),
            "digits-top": competition_zip(top_folder=True),
            "cactus": competition_zip(),
            "evil": make_zip({"ok.csv": b"id\n", "../evil.txt": b"pwned"}),
            "evil-nested": make_zip({"ok.csv": b"id\n", "train.zip": make_zip({"../../evil.txt": b"pwned"})}),
        }
    ) as s:
        s.code_competitions.add("cactus")
        yield s


# ---------------------------------------------------------------- download


@pytest.mark.kaggle
@pytest.mark.parametrize(
    "creds, competition",
    [
        ("env", "digits"),
        ("file", "digits"),
        ("token", "digits"),
        ("env", "digits-top"),
    ],
)
def test_download_unpacks_nested_zip(stub, tmp_path, creds, competition):
    dest = tmp_path / "data" / "kaggle" / "digits"
    r = run_kaggle_cli(stub, tmp_path, "download", competition, str(dest), creds=creds)
    assert r.returncode == 0, r.stderr
    files = dest / "files"
    assert r.stdout.strip().splitlines()[-1] == str(files)
    assert (files / "train.csv").read_bytes().startswith(b"id,label")
    assert (files / "train" / "a.jpg").read_bytes() == b"jpeg-a"  # nested train.zip unpacked, not train/train
    assert not (files / "train.zip").exists()
    marker = json.loads((dest / ".complete").read_text())
    assert marker["competition"] == competition and marker["zip"] == f"{competition}.zip"
    assert set(marker["files"]) == {"train.csv", "sample_submission.csv", "train/a.jpg", "train/b.jpg"}
    assert json.loads((dest / "manifest.json").read_text()) == marker
    assert sorted(p.name for p in dest.iterdir()) == [".complete", "files", "manifest.json"]  # no temp leftovers


@pytest.mark.kaggle
def test_second_download_makes_no_request(stub, tmp_path):
    dest = tmp_path / "digits"
    assert run_kaggle_cli(stub, tmp_path, "download", "digits", str(dest)).returncode == 0
    stub.requests.clear()
    r = run_kaggle_cli(stub, tmp_path, "download", "digits", str(dest))
    assert r.returncode == 0 and stub.requests == []
    # ...but a marker whose files went missing is not trusted.
    (dest / "files" / "train" / "a.jpg").unlink()
    assert run_kaggle_cli(stub, tmp_path, "download", "digits", str(dest)).returncode == 0
    assert stub.calls("DownloadDataFiles") == 1 and (dest / "files" / "train" / "a.jpg").exists()


@pytest.mark.kaggle
def test_no_credentials(stub, tmp_path):
    line = error_line(run_kaggle_cli(stub, tmp_path, "download", "digits", str(tmp_path / "d"), creds=None))
    for hint in ("~/.kaggle/kaggle.json", "chmod 600", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        assert hint in line
    assert stub.requests == []


@pytest.mark.kaggle
def test_bad_credentials_401(stub, tmp_path):
    line = error_line(run_kaggle_cli(stub, tmp_path, "download", "digits", str(tmp_path / "d"), key="wrongkey999"))
    assert "401" in line and "wrong or expired" in line


@pytest.mark.kaggle
def test_rules_not_accepted_403(stub, tmp_path):
    stub.fail["download"] = 403
    line = error_line(run_kaggle_cli(stub, tmp_path, "download", "digits", str(tmp_path / "d")))
    assert "https://www.kaggle.com/competitions/digits/rules" in line


@pytest.mark.kaggle
def test_unknown_competition_404(stub, tmp_path):
    line = error_line(run_kaggle_cli(stub, tmp_path, "download", "no-such-comp", str(tmp_path / "d")))
    assert "404" in line and "check the slug" in line and "no-such-comp" in line


@pytest.mark.kaggle
def test_server_error_retried_then_fails(stub, tmp_path):
    stub.fail["download"] = 500
    dest = tmp_path / "d"
    r = run_kaggle_cli(stub, tmp_path, "download", "digits", str(dest), "--retries", "2", "--backoff", "0.1")
    assert "failed after 3 attempt(s)" in error_line(r)
    assert stub.calls("DownloadDataFiles") == 3
    assert not (dest / ".complete").exists()


@pytest.mark.kaggle
def test_network_down_retried_then_fails(stub, tmp_path):
    env = stub.env(tmp_path / "home") | {"PYTHONPATH": str(REPO)}
    stub.stop()  # nothing listens on the proxy port any more
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "kagglecv",
            "download",
            "digits",
            str(tmp_path / "d"),
            "--retries",
            "1",
            "--backoff",
            "0.1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = error_line(r)
    assert "failed after 2 attempt(s)" in line and "network is unavailable" in line
    assert stub.key not in r.stdout + r.stderr


@pytest.mark.kaggle
def test_transient_server_error_recovers(stub, tmp_path):
    stub.fail["download"] = (500, 1)  # only the first call fails
    r = run_kaggle_cli(stub, tmp_path, "download", "digits", str(tmp_path / "d"), "--backoff", "0.1")
    assert r.returncode == 0, r.stderr
    assert stub.calls("DownloadDataFiles") == 2


@pytest.mark.kaggle
@pytest.mark.parametrize("competition", ["evil", "evil-nested"])
def test_zip_slip_refused(stub, tmp_path, competition):
    dest = tmp_path / "data" / competition
    assert "refusing" in error_line(run_kaggle_cli(stub, tmp_path, "download", competition, str(dest)))
    assert list(tmp_path.rglob("evil.txt")) == []
    assert list(dest.iterdir()) == []  # no files/, no marker, no temp folder


@pytest.mark.kaggle
def test_verbose_client_output_is_redacted(stub, tmp_path):
    # VERBOSE makes the client print request headers, Authorization included; run_kaggle_cli() checks for leaks.
    r = run_kaggle_cli(stub, tmp_path, "-v", "download", "digits", str(tmp_path / "d"), extra_env={"VERBOSE": "1"})
    assert r.returncode == 0, r.stderr
    assert "Authorization: Basic ***" in r.stderr


# ---------------------------------------------------------------- submit


@pytest.fixture
def submission(tmp_path) -> Path:
    path = tmp_path / "submission.csv"
    path.write_text("ImageId,Label\n1,0\n2,1\n3,1\n4,1\n")
    return path


def fraction_of_ones(competition: str, data: bytes) -> float:
    labels = [line.split(",")[1] for line in data.decode().splitlines()[1:]]
    return labels.count("1") / len(labels)


@pytest.mark.kaggle
def test_submit_reads_score_after_pending_polls(stub, tmp_path, submission):
    stub.score_fn, stub.pending_polls = fraction_of_ones, 2
    board = tmp_path / "results" / "leaderboard.csv"
    r = run_kaggle_cli(
        stub,
        tmp_path,
        "submit",
        "digits",
        str(submission),
        "-m",
        "fold ensemble v1",
        "--poll-interval",
        "0.05",
        "--leaderboard",
        str(board),
        "--cv",
        "0.8",
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["status"] == "COMPLETE" and result["public_score"] == 0.75
    assert result["description"] == "fold ensemble v1" and result["ref"] == stub.submissions[0]["ref"]
    assert stub.submissions[0]["data"] == submission.read_bytes()
    assert stub.calls("ListSubmissions") == 1 + 3  # before submitting, then 2 pending polls and the score
    rows = list(csv.DictReader(board.open()))
    assert [(r["competition"], r["message"], r["cv"], r["public_score"]) for r in rows] == [
        ("digits", "fold ensemble v1", "0.8", "0.75")
    ]
    assert not any(s in board.read_text() for s in stub_secrets(stub))


@pytest.mark.kaggle
def test_upload_failure_detected_although_client_exits_0(stub, tmp_path, submission):
    stub.fail["upload"] = True
    # The behaviour being guarded against: the official CLI reports success through its exit code.
    cli = run_kaggle_cli(
        stub,
        tmp_path,
        cmd=[str(KAGGLE_CLI), "competitions", "submit", "-c", "digits", "-f", str(submission), "-m", "x"],
    )
    assert cli.returncode == 0 and "Could not submit to competition" in cli.stdout
    line = error_line(
        run_kaggle_cli(stub, tmp_path, "submit", "digits", str(submission), "-m", "x", "--poll-interval", "0.05")
    )
    assert "did not record the submission" in line
    assert stub.submissions == []


@pytest.mark.kaggle
def test_code_competition_refused_with_kernel_instructions(stub, tmp_path, submission):
    line = error_line(run_kaggle_cli(stub, tmp_path, "submit", "cactus", str(submission), "-m", "x"))
    assert "code competition" in line
    assert "kaggle competitions submit -c cactus -k OWNER/KERNEL -f submission.csv -v VERSION" in line


@pytest.mark.kaggle
@pytest.mark.parametrize(
    "status, expected",
    [
        (403, "https://www.kaggle.com/competitions/digits/rules"),
        (500, "check `kaggle competitions submissions -c digits` before resubmitting"),
    ],
)
def test_submit_errors(stub, tmp_path, submission, status, expected):
    stub.fail["submit"] = status
    assert expected in error_line(run_kaggle_cli(stub, tmp_path, "submit", "digits", str(submission), "-m", "x"))
    assert stub.calls("StartSubmissionUpload") == 1  # a submission is never retried blindly


@pytest.mark.kaggle
def test_submit_timeout_says_submission_was_made(stub, tmp_path, submission):
    stub.pending_polls = 10**6
    line = error_line(
        run_kaggle_cli(
            stub,
            tmp_path,
            "submit",
            "digits",
            str(submission),
            "-m",
            "x",
            "--poll-interval",
            "0.05",
            "--timeout",
            "0.3",
        )
    )
    assert "was made" in line and "kaggle competitions submissions -c digits" in line
    assert len(stub.submissions) == 1


@pytest.mark.kaggle
def test_scoring_error_reported(stub, tmp_path, submission):
    def bad_columns(competition, data):
        raise ValueError("Submission must have columns ImageId,Label")

    stub.score_fn = bad_columns
    line = error_line(
        run_kaggle_cli(stub, tmp_path, "submit", "digits", str(submission), "-m", "x", "--poll-interval", "0.05")
    )
    assert "could not score" in line and "must have columns" in line


# ---------------------------------------------------------------- leaderboard and redaction (in process)


@pytest.fixture
def fake_creds(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "fileuser", "key": "filekey789"}))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    monkeypatch.setenv("KAGGLE_USERNAME", "tester")
    monkeypatch.setenv("KAGGLE_KEY", "secretkey123")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "tokensecret456")


def test_redact(fake_creds):
    basic = base64.b64encode(b"tester:secretkey123").decode()
    text = redact(f"key=secretkey123 file=filekey789 token=tokensecret456 Authorization: Basic {basic} score=0.9")
    assert text == "key=*** file=*** token=*** Authorization: Basic *** score=0.9"


def test_append_leaderboard(fake_creds, tmp_path):
    board = tmp_path / "results" / "leaderboard.csv"
    append_leaderboard(board, {"competition": "digits", "message": "v1", "cv": 0.9, "public_score": 0.91, "ref": 1})
    append_leaderboard(
        board,
        {
            "competition": "digits",
            "message": "oops secretkey123",
            "cv": 0.95,
            "public_score": None,
            "ref": 2,
            "model": "convnext",
        },
    )
    rows = list(csv.DictReader(board.open()))
    assert list(rows[0]) == [
        "time",
        "competition",
        "message",
        "cv",
        "public_score",
        "private_score",
        "ref",
        "status",
        "file_sha256",
        "model",
    ]
    assert [(r["message"], r["public_score"], r["ref"], r["model"]) for r in rows] == [
        ("v1", "0.91", "1", ""),
        ("oops ***", "", "2", "convnext"),
    ]
    assert rows[0]["time"] and "secretkey123" not in board.read_text()
    assert sorted(p.name for p in board.parent.iterdir()) == [".leaderboard.csv.lock", "leaderboard.csv"]  # no temp
