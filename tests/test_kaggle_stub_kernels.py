"""The code-competition endpoints of tests/kaggle_stub.py, through the REAL kaggle client (CLI and KaggleApi).

Datasets (create from a folder with a subfolder, status, version), kernels (push, status, output: the stub really
runs the pushed code with its inputs under $KAGGLE_INPUT), code submissions (`competitions submit -k -v`),
`competitions list` (isKernelsSubmissionsOnly), credentials without rights, and the failure knobs.
Every client call runs in a subprocess with the stub's environment (the client authenticates at import) and its
own TMPDIR (the client keeps resumable-upload state under $TMPDIR/.kaggle/uploads).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import competition_zip, stub_secrets
from kaggle_stub import KaggleStub

KAGGLE_CLI = Path(sys.executable).parent / "kaggle"
OWNER = "tester"
DATASET = f"{OWNER}/cactus-wheels"
KERNEL = f"{OWNER}/cactus-kernel"
TERMINAL = ("KernelWorkerStatus.COMPLETE", "KernelWorkerStatus.ERROR")


@pytest.fixture
def stub():
    with KaggleStub({"cactus": competition_zip(), "digits": competition_zip()}) as s:
        s.code_competitions.add("cactus")
        yield s


def client_env(stub: KaggleStub, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return stub.env(tmp_path / "home") | {"TMPDIR": str(tmp_path / "tmp")}


def kaggle(stub: KaggleStub, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [str(KAGGLE_CLI), *args],
        env=client_env(stub, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    for secret in stub_secrets(stub):
        assert secret not in r.stdout + r.stderr
    return r


def submit_output(
    stub: KaggleStub, tmp_path: Path, competition: str, kernel: str, version: str, file_name: str, message: str
) -> subprocess.CompletedProcess:
    """`kaggle competitions submit` of a kernel version's output file (a code competition's submission)."""
    return kaggle(
        stub,
        tmp_path,
        "competitions",
        "submit",
        "-c",
        competition,
        "-k",
        kernel,
        "-v",
        version,
        "-f",
        file_name,
        "-m",
        message,
    )


def api(stub: KaggleStub, tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    """Python code run with `api` = an authenticated KaggleApi."""
    prelude = (
        "import json\nfrom kaggle.api.kaggle_api_extended import KaggleApi\napi = KaggleApi()\napi.authenticate()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        env=client_env(stub, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def dataset_folder(root: Path, ref: str = DATASET, *, marker: str = "v1") -> Path:
    """A dataset folder: a file, and a subfolder holding a file and a sub-subfolder."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "wheels" / "extra").mkdir(parents=True, exist_ok=True)
    (root / "notes.txt").write_text(f"notes {marker}\n")
    (root / "wheels" / "pkg-1.0-py3-none-any.whl").write_bytes(b"PK-not-really-a-wheel")
    (root / "wheels" / "extra" / "label.txt").write_text("1\n")
    (root / "dataset-metadata.json").write_text(
        json.dumps({"title": "Cactus wheels", "id": ref, "licenses": [{"name": "CC0-1.0"}]})
    )
    return root


def kernel_folder(root: Path, code: str, ref: str = KERNEL, **meta) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text(code)
    (root / "kernel-metadata.json").write_text(
        json.dumps(
            {
                "id": ref,
                "title": ref.split("/")[1].replace("-", " "),
                "code_file": "main.py",
                "language": "python",
                "kernel_type": "script",
                "is_private": True,
                "enable_gpu": False,
                "enable_internet": False,
                "dataset_sources": [],
                "competition_sources": ["cactus"],
                **meta,
            }
        )
    )
    return root


def wait_status(stub: KaggleStub, tmp_path: Path, ref: str = KERNEL, timeout: float = 15) -> list[str]:
    """`kaggle kernels status` until the run is over: every stdout seen, the last one terminal."""
    seen, deadline = [], time.monotonic() + timeout
    while True:
        r = kaggle(stub, tmp_path, "kernels", "status", ref)
        assert r.returncode == 0, r.stderr
        seen.append(r.stdout)
        if any(s in r.stdout for s in TERMINAL) or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


# The kernel every competition test pushes: reads the dataset and the competition under $KAGGLE_INPUT, writes
# submission.csv (labels from the dataset's file) to $KAGGLE_WORKING, prints what it saw.
GOOD_KERNEL = """\
import csv, os
inp, work = os.environ["KAGGLE_INPUT"], os.environ["KAGGLE_WORKING"]
assert os.getcwd() == work
label = open(os.path.join(inp, "cactus-wheels", "wheels", "extra", "label.txt")).read().strip()
rows = list(csv.DictReader(open(os.path.join(inp, "cactus", "train.csv"))))
with open(os.path.join(work, "submission.csv"), "w") as f:
    f.write("id,label\\n" + "".join(f"{r['id']},{label}\\n" for r in rows))
print("inputs:", sorted(os.listdir(inp)), "rows:", len(rows))
import urllib.error, urllib.request
try:  # enable_internet is false: HTTP goes through a proxy nobody listens on
    urllib.request.urlopen("http://example.com/", timeout=5)
    raise SystemExit("internet reachable")
except urllib.error.URLError as e:
    print("offline:", e.reason)
"""
EXPECTED_SUBMISSION = b"id,label\na.jpg,1\nb.jpg,1\n"


def fraction_of_ones(competition: str, data: bytes) -> float:
    labels = [line.split(",")[1] for line in data.decode().splitlines()[1:]]
    return labels.count("1") / len(labels)


# ---------------------------------------------------------------- datasets


@pytest.mark.kaggle
def test_dataset_create_status_version(stub, tmp_path):
    folder = dataset_folder(tmp_path / "ds")
    r = kaggle(stub, tmp_path, "datasets", "create", "-p", str(folder), "--dir-mode", "zip")
    assert r.returncode == 0 and "Your private Dataset is being created" in r.stdout, r.stdout + r.stderr
    # The folder went up as wheels.zip and is a folder again on the server; the metadata file is not uploaded.
    assert stub.datasets[DATASET]["versions"][0]["files"] == {
        "notes.txt": b"notes v1\n",
        "wheels/pkg-1.0-py3-none-any.whl": b"PK-not-really-a-wheel",
        "wheels/extra/label.txt": b"1\n",
    }
    assert stub.calls("StartBlobUpload") == 2 and stub.calls("CreateDataset") == 1
    assert kaggle(stub, tmp_path, "datasets", "status", DATASET).stdout.strip() == "ready"

    stub.dataset_pending_polls = 1
    dataset_folder(folder, marker="v2")
    r = kaggle(stub, tmp_path, "datasets", "version", "-p", str(folder), "-m", "second cut", "-r", "zip")
    assert r.returncode == 0 and "Dataset version is being created" in r.stdout, r.stdout + r.stderr
    versions = stub.datasets[DATASET]["versions"]
    assert [v["message"] for v in versions] == ["", "second cut"]
    assert versions[1]["files"]["notes.txt"] == b"notes v2\n" and versions[0]["files"]["notes.txt"] == b"notes v1\n"
    # Pending for one poll after the new version (a DatabundleVersionStatus name, lower-cased by the client).
    assert kaggle(stub, tmp_path, "datasets", "status", DATASET).stdout.strip() == "blobs_received"
    r = kaggle(stub, tmp_path, "datasets", "status", DATASET, "--format", "json")
    assert json.loads(r.stdout) == {"status": "ready", "current_version_number": 2}


@pytest.mark.kaggle
def test_dataset_errors_are_printed_with_exit_0(stub, tmp_path):
    folder = dataset_folder(tmp_path / "ds")
    # Without --dir-mode the client skips folders (and says so).
    r = kaggle(stub, tmp_path, "datasets", "create", "-p", str(folder))
    assert r.returncode == 0 and "Skipping folder: wheels" in r.stdout
    assert sorted(stub.datasets[DATASET]["versions"][0]["files"]) == ["notes.txt"]
    # Creating it again: refused, the client reports it on stdout and exits 0.
    r = kaggle(stub, tmp_path, "datasets", "create", "-p", str(folder), "-r", "zip")
    assert r.returncode == 0 and "Dataset creation error" in r.stdout and "already in use" in r.stdout
    assert len(stub.datasets[DATASET]["versions"]) == 1
    # Versioning a dataset that does not exist.
    missing = dataset_folder(tmp_path / "missing", f"{OWNER}/no-such-dataset")
    r = kaggle(stub, tmp_path, "datasets", "version", "-p", str(missing), "-m", "x", "-r", "zip")
    assert r.returncode == 0 and "Dataset version creation error: Dataset tester/no-such-dataset not found" in r.stdout
    assert f"{OWNER}/no-such-dataset" not in stub.datasets
    # Too big for the (knob) size limit.
    stub.dataset_max_bytes = 10
    r = kaggle(stub, tmp_path, "datasets", "version", "-p", str(folder), "-m", "big", "-r", "zip")
    assert r.returncode == 0 and "too large" in r.stdout and "exceeds the limit of 10 bytes" in r.stdout
    assert len(stub.datasets[DATASET]["versions"]) == 1
    # Status of a dataset that does not exist: an HTTP error, exit 1.
    r = kaggle(stub, tmp_path, "datasets", "status", f"{OWNER}/no-such-dataset")
    assert r.returncode == 1 and "Dataset not found" in r.stderr


# ---------------------------------------------------------------- kernels and code submissions


@pytest.mark.kaggle
def test_kernel_runs_on_inputs_and_its_output_is_code_submitted(stub, tmp_path):
    stub.score_fn = fraction_of_ones
    assert (
        kaggle(stub, tmp_path, "datasets", "create", "-p", str(dataset_folder(tmp_path / "ds")), "-r", "zip").returncode
        == 0
    )
    kdir = kernel_folder(tmp_path / "kernel", GOOD_KERNEL, dataset_sources=[DATASET])
    r = kaggle(stub, tmp_path, "kernels", "push", "-p", str(kdir))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (
        f"Kernel version 1 successfully pushed.  Please check progress at https://www.kaggle.com/code/{KERNEL}"
        in r.stdout
    )
    push = stub.pushes[-1]
    assert (push["slug"], push["language"], push["kernelType"]) == (KERNEL, "python", "script")
    assert push["competitionDataSources"] == ["cactus"] and push["datasetDataSources"] == [DATASET]
    assert push["enableInternet"] is False and push["text"] == GOOD_KERNEL

    seen = wait_status(stub, tmp_path)
    assert f'{KERNEL} has status "KernelWorkerStatus.COMPLETE"' in seen[-1] and "Failure message" not in seen[-1]
    version = stub.kernels[KERNEL]["versions"][0]
    assert version["number"] == 1 and version["status"] == "COMPLETE" and version["code"] == GOOD_KERNEL

    out = tmp_path / "out"
    r = kaggle(stub, tmp_path, "kernels", "output", KERNEL, "-p", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "submission.csv").read_bytes() == EXPECTED_SUBMISSION
    log = (out / "cactus-kernel.log").read_text()
    assert "inputs: ['cactus', 'cactus-wheels'] rows: 2" in log and "offline: [Errno 111] Connection refused" in log
    assert sorted(p.name for p in out.iterdir()) == ["cactus-kernel.log", "submission.csv"]

    r = submit_output(stub, tmp_path, "cactus", KERNEL, "1", "submission.csv", "kernel v1")
    assert r.returncode == 0 and "Successfully submitted to cactus" in r.stdout, r.stdout + r.stderr
    [sub] = stub.submissions
    assert (sub["data"], sub["fileName"], sub["kernel"], sub["kernelVersion"]) == (
        EXPECTED_SUBMISSION,
        "submission.csv",
        KERNEL,
        1,
    )
    r = kaggle(stub, tmp_path, "competitions", "submissions", "-c", "cactus")
    assert r.returncode == 0 and "kernel v1" in r.stdout and "COMPLETE" in r.stdout and "1.00000" in r.stdout
    # File submissions stay refused for a code competition.
    r = kaggle(
        stub, tmp_path, "competitions", "submit", "-c", "cactus", "-f", str(out / "submission.csv"), "-m", "file"
    )
    assert r.returncode == 1 and "only accepts submissions from notebooks" in r.stderr
    assert len(stub.submissions) == 1


@pytest.mark.kaggle
def test_kernel_error_then_fixed_version(stub, tmp_path):
    crash = "print('before the crash')\nraise ValueError('boom from the kernel')\n"
    kdir = kernel_folder(tmp_path / "kernel", crash)
    assert "Kernel version 1 successfully pushed" in kaggle(stub, tmp_path, "kernels", "push", "-p", str(kdir)).stdout
    last = wait_status(stub, tmp_path)[-1]
    assert 'has status "KernelWorkerStatus.ERROR"' in last
    assert 'Failure message: "ValueError: boom from the kernel"' in last

    out = tmp_path / "out"
    assert kaggle(stub, tmp_path, "kernels", "output", KERNEL, "-p", str(out)).returncode == 0
    log = (out / "cactus-kernel.log").read_text()
    assert "before the crash" in log and "Traceback (most recent call last)" in log and "boom from the kernel" in log
    assert not (out / "submission.csv").exists()

    r = submit_output(stub, tmp_path, "cactus", KERNEL, "1", "submission.csv", "broken")
    assert r.returncode == 1 and "did not run successfully (status ERROR)" in r.stderr
    assert stub.submissions == []

    kernel_folder(kdir, "open('submission.csv', 'w').write('id,label\\na.jpg,1\\n')\n")
    assert "Kernel version 2 successfully pushed" in kaggle(stub, tmp_path, "kernels", "push", "-p", str(kdir)).stdout
    assert "KernelWorkerStatus.COMPLETE" in wait_status(stub, tmp_path)[-1]
    assert [v["status"] for v in stub.kernels[KERNEL]["versions"]] == ["ERROR", "COMPLETE"]
    r = submit_output(stub, tmp_path, "cactus", KERNEL, "2", "submission.csv", "fixed")
    assert r.returncode == 0, r.stderr
    assert [s["data"] for s in stub.submissions] == [b"id,label\na.jpg,1\n"]


@pytest.mark.kaggle
def test_code_submission_refusals(stub, tmp_path):
    # A runner that does not execute anything: what it returns is what the kernel produced.
    stub.kernel_runner = lambda stub, version: ("COMPLETE", "ran\n", {"submission.csv": b"id,label\na.jpg,1\n"})
    kdir = kernel_folder(tmp_path / "k1", "pass\n")
    assert kaggle(stub, tmp_path, "kernels", "push", "-p", str(kdir)).returncode == 0
    internet = kernel_folder(tmp_path / "k2", "pass\n", f"{OWNER}/online-kernel", enable_internet=True)
    assert kaggle(stub, tmp_path, "kernels", "push", "-p", str(internet)).returncode == 0
    digits_only = kernel_folder(tmp_path / "k3", "pass\n", f"{OWNER}/digits-kernel", competition_sources=["digits"])
    assert kaggle(stub, tmp_path, "kernels", "push", "-p", str(digits_only)).returncode == 0
    assert stub.wait_for_kernels(10)

    def submit(kernel: str, version: str, file_name: str = "submission.csv") -> subprocess.CompletedProcess:
        return submit_output(stub, tmp_path, "cactus", kernel, version, file_name, "x")

    for args, expected in [
        ((f"{OWNER}/no-such-kernel", "1"), "Notebook tester/no-such-kernel not found"),
        ((KERNEL, "5"), f"Notebook {KERNEL} has no version 5"),
        ((KERNEL, "1", "preds.csv"), "has no output file named preds.csv"),
        ((f"{OWNER}/online-kernel", "1"), "internet access enabled"),
        ((f"{OWNER}/digits-kernel", "1"), "does not use the data of competition cactus"),
    ]:
        r = submit(*args)
        assert r.returncode == 1 and expected in r.stderr, (args, r.stdout, r.stderr)
    assert stub.submissions == []
    # Internet access only matters for a code competition.
    r = submit_output(stub, tmp_path, "digits", f"{OWNER}/digits-kernel", "1", "submission.csv", "ok")
    assert r.returncode == 0 and [s["competition"] for s in stub.submissions] == ["digits"], r.stderr
    assert submit(KERNEL, "1").returncode == 0 and len(stub.submissions) == 2


@pytest.mark.kaggle
def test_running_timeout_and_forced_error(stub, tmp_path):
    stub.kernel_timeout = 3
    kdir = kernel_folder(tmp_path / "kernel", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n")
    started = time.monotonic()
    assert kaggle(stub, tmp_path, "kernels", "push", "-p", str(kdir)).returncode == 0
    seen = wait_status(stub, tmp_path)
    assert any("KernelWorkerStatus.RUNNING" in s for s in seen[:-1])
    assert "KernelWorkerStatus.ERROR" in seen[-1] and "timed out after 3 seconds" in seen[-1]
    assert time.monotonic() - started < 15
    assert "sleeping" in stub.kernels[KERNEL]["versions"][0]["log"]

    stub.kernel_error = "Your notebook tried to allocate more memory than is available."
    kernel_folder(kdir, "open('ran.txt', 'w').write('1')\n")
    assert "Kernel version 2" in kaggle(stub, tmp_path, "kernels", "push", "-p", str(kdir)).stdout
    last = wait_status(stub, tmp_path)[-1]
    assert "KernelWorkerStatus.ERROR" in last and "tried to allocate more memory" in last
    assert stub.kernels[KERNEL]["versions"][1]["outputs"] == {}  # not run


@pytest.mark.kaggle
def test_output_pages_subfolders_and_notebooks(stub, tmp_path):
    notebook = {
        "cells": [
            {"cell_type": "markdown", "source": ["# not code"]},
            {
                "cell_type": "code",
                "source": [
                    "%matplotlib inline\n",
                    "import os\n",
                    "for i in range(25):\n",
                    "    os.makedirs('preds', exist_ok=True)\n",
                    "    open(f'preds/p{i:02d}.csv', 'w').write(str(i))\n",
                ],
                "outputs": [],
                "execution_count": None,
            },
            {"cell_type": "code", "source": "print('done:', len(os.listdir('preds')))", "outputs": []},
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    kdir = tmp_path / "nb"
    kernel_folder(kdir, "", kernel_type="notebook", code_file="main.ipynb")
    (kdir / "main.ipynb").write_text(json.dumps(notebook))
    assert kaggle(stub, tmp_path, "kernels", "push", "-p", str(kdir)).returncode == 0
    assert "KernelWorkerStatus.COMPLETE" in wait_status(stub, tmp_path)[-1]
    out = tmp_path / "out"
    r = kaggle(stub, tmp_path, "kernels", "output", KERNEL, "-p", str(out))  # 25 files: two pages of 20
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "preds").iterdir()) == [f"p{i:02d}.csv" for i in range(25)]
    assert (out / "preds" / "p24.csv").read_text() == "24"
    assert "done: 25" in (out / "cactus-kernel.log").read_text()
    assert stub.calls("ListKernelSessionOutput") == 2


@pytest.mark.kaggle
def test_competitions_list_kernels_only(stub, tmp_path):
    r = api(
        stub,
        tmp_path,
        "print(json.dumps([[c.ref, c.title, c.is_kernels_submissions_only]\n"
        "    for s in ('cact', 'DIG', 'nothing')\n"
        "    for c in api.competitions_list(search=s).competitions]))",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [
        ["https://www.kaggle.com/competitions/cactus", "Cactus", True],
        ["https://www.kaggle.com/competitions/digits", "Digits", False],
    ]
    r = kaggle(stub, tmp_path, "competitions", "list", "-s", "cactus")
    assert r.returncode == 0 and "https://www.kaggle.com/competitions/cactus" in r.stdout and "digits" not in r.stdout


@pytest.mark.kaggle
def test_credentials_without_rights(stub, tmp_path):
    stub.forbidden.add("cactus")
    rules = "You must accept this competition's rules"
    r = kaggle(stub, tmp_path, "competitions", "files", "-c", "cactus")
    assert r.returncode == 1 and rules in r.stderr
    r = kaggle(stub, tmp_path, "kernels", "push", "-p", str(kernel_folder(tmp_path / "k", GOOD_KERNEL)))
    assert r.returncode == 1 and rules in r.stderr
    assert stub.kernels == {} and len(stub.pushes) == 1
    stub.kernels[KERNEL] = {
        "versions": [
            {
                "number": 1,
                "ref": KERNEL,
                "status": "COMPLETE",
                "outputs": {"submission.csv": b"id,label\n"},
                "metadata": {"competitionDataSources": ["cactus"]},
            }
        ]
    }
    r = submit_output(stub, tmp_path, "cactus", KERNEL, "1", "submission.csv", "x")
    assert r.returncode == 1 and rules in r.stderr and stub.submissions == []
    # Other competitions are unaffected.
    assert kaggle(stub, tmp_path, "competitions", "files", "-c", "digits").returncode == 0


@pytest.mark.kaggle
def test_failure_knobs(stub, tmp_path):
    stub.fail.update(kernel=(500, 1), code_submit=(503, 1), dataset=(500, 2))
    kdir = kernel_folder(tmp_path / "k", "open('submission.csv', 'w').write('id,label\\n')\n")
    r = kaggle(stub, tmp_path, "kernels", "push", "-p", str(kdir))
    assert r.returncode == 1 and "Internal server error" in r.stderr and stub.kernels == {}
    assert kaggle(stub, tmp_path, "kernels", "push", "-p", str(kdir)).returncode == 0
    assert "KernelWorkerStatus.COMPLETE" in wait_status(stub, tmp_path)[-1]
    submit = ("competitions", "submit", "-c", "cactus", "-k", KERNEL, "-v", "1", "-f", "submission.csv", "-m", "x")
    assert kaggle(stub, tmp_path, *submit).returncode == 1 and stub.submissions == []
    assert kaggle(stub, tmp_path, *submit).returncode == 0 and len(stub.submissions) == 1
    # The dataset knob: the client reads a failing status check as "no such dataset" and goes on to CreateDataset,
    # which fails too (exit 1); nothing is created.
    r = kaggle(stub, tmp_path, "datasets", "create", "-p", str(dataset_folder(tmp_path / "ds")), "-r", "zip")
    assert r.returncode == 1 and "Internal server error" in r.stderr and stub.datasets == {}
    assert stub.calls("GetDatasetStatus") == 1 and stub.calls("CreateDataset") == 1
