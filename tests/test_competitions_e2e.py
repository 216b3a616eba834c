"""The real workflow, from a competition's name to a scored submission, for each Kaggle layout.

Each test builds a miniature competition zip in exactly the layout Kaggle ships (Aerial Cactus,
Digit Recognizer, Dogs vs. Cats Redux, Plant Seedlings), serves it from the stand-in Kaggle server
(tests/kaggle_stub.py), and runs `snakemake` then `snakemake submit` as subprocesses in a temp folder:
the real kaggle client downloads, the pipeline trains test_resnet for one epoch on 16 px images, and
the submit step uploads submission.csv, which the stub scores with the competition's real metric.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from sklearn import metrics as skm

from helpers import (
    PROFILE,
    REPO,
    SNAKEMAKE,
    competition_bytes,
    dry_run,
    make_zip,
    mlflow_db,
    stub_secrets,
    updated_workflow,
)
from kaggle_stub import KaggleStub

SIDE = 16  # px: tiny images keep each run well under a minute on 2 CPU cores


# ---------------------------------------------------------------- miniature competitions


@dataclass
class Competition:
    slug: str
    metric: str
    zip_bytes: bytes
    sample: pd.DataFrame  # sample_submission.csv as shipped (all str)
    solution: dict[str, str]  # test id -> true label, known only to the stub
    expected_files: list[str]  # a few paths that must exist under data/kaggle/<slug>/files after the download


def image_bytes(rng: np.random.Generator, label: int, fmt: str) -> bytes:
    """A 16 px RGB image whose brightness depends on the class (so there is something to learn)."""
    base = 60 + 70 * label
    arr = np.clip(rng.normal(base, 25, size=(SIDE, SIDE, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def hex_id(prefix: str, i: int) -> str:
    return hashlib.md5(f"{prefix}{i}".encode()).hexdigest()


def aerial_cactus() -> Competition:
    """csv_images: train.csv id,has_cactus (ids with .jpg); train.zip/test.zip each holding a top folder."""
    rng = np.random.default_rng(1)
    train_y = [1] * 28 + [0] * 12  # mostly cactus, like the real data
    train_ids = [hex_id("train", i) + ".jpg" for i in range(len(train_y))]
    test_y = [1, 0] * 5
    test_ids = [hex_id("test", i) + ".jpg" for i in range(len(test_y))]
    train_zip = make_zip({f"train/{i}": image_bytes(rng, y, "JPEG") for i, y in zip(train_ids, train_y)})
    test_zip = make_zip({f"test/{i}": image_bytes(rng, y, "JPEG") for i, y in zip(test_ids, test_y)})
    train = pd.DataFrame({"id": train_ids, "has_cactus": train_y})
    sample = pd.DataFrame({"id": test_ids, "has_cactus": "0.5"})
    return Competition(
        "aerial-cactus-identification",
        "roc_auc",
        competition_bytes(train, {}, sample, files={"train.zip": train_zip, "test.zip": test_zip}),
        sample,
        dict(zip(test_ids, map(str, test_y))),
        ["train.csv", f"train/{train_ids[0]}", f"test/{test_ids[0]}"],
    )


def digit_recognizer() -> Competition:
    """pixel_csv: train.csv label,pixel0..; test.csv pixels only; sample ImageId (from 1),Label."""
    rng = np.random.default_rng(2)
    pixels = [f"pixel{k}" for k in range(SIDE * SIDE)]

    def rows(labels):
        return np.clip(rng.normal(40 + 80 * np.array(labels)[:, None], 30, (len(labels), len(pixels))), 0, 255)

    train_y = [0, 1, 2] * 14
    test_y = [0, 1, 2, 0, 1, 2, 0, 1, 2, 1]
    train = pd.concat(
        [pd.DataFrame({"label": train_y}), pd.DataFrame(rows(train_y).astype(int), columns=pixels)], axis=1
    )
    test = pd.DataFrame(rows(test_y).astype(int), columns=pixels)
    ids = [str(i) for i in range(1, len(test_y) + 1)]
    sample = pd.DataFrame({"ImageId": ids, "Label": "0"})
    return Competition(
        "digit-recognizer",
        "accuracy",
        competition_bytes(train, {}, sample, files={"test.csv": test}),
        sample,
        dict(zip(ids, map(str, test_y))),
        ["train.csv", "test.csv", "sample_submission.csv"],
    )


def dogs_vs_cats() -> Competition:
    """filename_labels: train.zip of train/cat.0.jpg ..., test.zip of test/1.jpg ...; sample id,label=P(dog)."""
    rng = np.random.default_rng(3)
    train = {
        f"train/{animal}.{n}.jpg": image_bytes(rng, y, "JPEG")
        for y, animal in enumerate(["cat", "dog"])
        for n in range(20)
    }
    test_y = [0, 1] * 5
    ids = [str(i) for i in range(1, len(test_y) + 1)]
    test = {f"test/{i}.jpg": image_bytes(rng, y, "JPEG") for i, y in zip(ids, test_y)}
    sample = pd.DataFrame({"id": ids, "label": "0.5"})
    return Competition(
        "dogs-vs-cats-redux-kernels-edition",
        "log_loss",
        competition_bytes(None, {}, sample, files={"train.zip": make_zip(train), "test.zip": make_zip(test)}),
        sample,
        dict(zip(ids, map(str, test_y))),
        ["train/cat.0.jpg", "train/dog.19.jpg", "test/1.jpg"],
    )


def plant_seedlings() -> Competition:
    """folder_per_class: train/<species>/x.png (species names with spaces), test/x.png; sample file,species."""
    rng = np.random.default_rng(4)
    species = ["Black-grass", "Charlock", "Common Chickweed"]
    train = {
        f"train/{s}/{hex_id(s, n)[:9]}.png": image_bytes(rng, y, "PNG")
        for y, s in enumerate(species)
        for n in range(14)
    }
    test_y = [0, 1, 2, 0, 1, 2, 0, 1, 2, 2]
    ids = [hex_id("test", i)[:9] + ".png" for i in range(len(test_y))]
    test = {f"test/{i}": image_bytes(rng, y, "PNG") for i, y in zip(ids, test_y)}
    sample = pd.DataFrame({"file": ids, "species": "Sugar beet"})
    return Competition(
        "plant-seedlings-classification",
        "f1_micro",
        competition_bytes(None, train | test, sample),
        sample,
        {i: species[y] for i, y in zip(ids, test_y)},
        [next(iter(train)), f"test/{ids[0]}", "sample_submission.csv"],
    )


COMPETITIONS = {c.slug: c for c in (aerial_cactus(), digit_recognizer(), dogs_vs_cats(), plant_seedlings())}
LAYOUTS = {  # layout -> competition that ships it
    "csv_images": "aerial-cactus-identification",
    "pixel_csv": "digit-recognizer",
    "filename_labels": "dogs-vs-cats-redux-kernels-edition",
    "folder_per_class": "plant-seedlings-classification",
}

TRACKED = LAYOUTS["csv_images"]  # the competition whose run logs to MLflow (the others' jobs skip its start-up)


def public_score(comp: Competition, data: bytes) -> float:
    """What Kaggle's scorer does: refuse a file unlike the sample, else the metric against the solution."""
    sub = pd.read_csv(io.BytesIO(data), dtype=str)
    if list(sub.columns) != list(comp.sample.columns):
        raise ValueError(f"Submission must have columns {','.join(comp.sample.columns)}")
    id_col, target = comp.sample.columns
    if sub[id_col].tolist() != comp.sample[id_col].tolist():
        raise ValueError("Submission ids must be those of sample_submission.csv, in its order")
    truth = [comp.solution[i] for i in sub[id_col]]
    if comp.metric == "roc_auc":
        return float(skm.roc_auc_score([int(t) for t in truth], sub[target].astype(float)))
    if comp.metric == "log_loss":
        p = sub[target].astype(float).clip(1e-15, 1 - 1e-15)
        return float(skm.log_loss([int(t) for t in truth], p, labels=[0, 1]))
    if comp.metric == "accuracy":
        return float(skm.accuracy_score(truth, sub[target]))
    return float(skm.f1_score(truth, sub[target], average="micro"))


# ---------------------------------------------------------------- running the workflow


@pytest.fixture(scope="module")
def stub():
    with KaggleStub({slug: c.zip_bytes for slug, c in COMPETITIONS.items()}) as s:
        s.score_fn = lambda competition, data: public_score(COMPETITIONS[competition], data)
        yield s


@dataclass
class Run:
    comp: Competition
    workdir: Path
    env: dict[str, str]
    outputs: list[str]  # stdout + stderr of every snakemake call, for the credential check

    def snakemake(self, *targets: str) -> subprocess.CompletedProcess:
        cmd = [
            *SNAKEMAKE,
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(self.workdir),
            "--configfile",
            str(self.workdir / "config.yaml"),
            "--cores",
            "2",
            "--workflow-profile",
            str(PROFILE),
            *targets,
        ]
        r = subprocess.run(cmd, env=self.env, cwd=self.workdir, capture_output=True, text=True, timeout=600)
        self.outputs.append(r.stdout + r.stderr)
        return r

    @property
    def results(self) -> Path:
        return self.workdir / "results" / self.comp.slug

    def leaderboard(self) -> list[dict]:
        board = self.results / "leaderboard.csv"
        return list(csv.DictReader(board.open())) if board.exists() else []


@pytest.fixture(scope="module")
def pipeline(stub, tmp_path_factory):
    """slug -> Run after a complete `snakemake` (download ... submission.csv); each competition runs once."""
    runs: dict[str, Run] = {}

    def get(slug: str) -> Run:
        if slug not in runs:
            comp = COMPETITIONS[slug]
            workdir = tmp_path_factory.mktemp(slug)
            (workdir / "config.yaml").write_text(
                yaml.safe_dump(
                    {
                        "competition": slug,
                        "metric": comp.metric,
                        "data": {"source": "kaggle"},
                        "folds": 2,
                        # tracked (one competition: the tracking is the same for every layout), the jobs before the
                        # ensemble by their records (mlflow.live: false saves each its MLflow start-up); what these
                        # tests
                        # read from MLflow is the submit step's, logged live
                        "backbones": ["test_resnet"],
                        "mlflow": {"enabled": slug == TRACKED, "live": False},
                        "train": {"epochs": 1, "img_size": SIDE, "batch_size": 16, "tta": "none", "device": "cpu"},
                    }
                )
            )
            env = stub.env(tmp_path_factory.mktemp("home"))
            env.pop("MLFLOW_TRACKING_URI", None)  # the run's own store under results/
            env["NO_ALBUMENTATIONS_UPDATE"] = "1"  # its version check would go through the stub's proxy
            run = Run(comp, workdir, env, [])
            before = stub.calls("DownloadDataFiles")
            r = run.snakemake()
            assert r.returncode == 0, r.stdout + r.stderr
            assert stub.calls("DownloadDataFiles") == before + 1
            runs[slug] = run
        return runs[slug]

    return get


def assert_no_credentials(stub: KaggleStub, run: Run) -> None:
    """No credential (key, token, Basic header) in any file the run wrote, nor in what snakemake printed."""
    for secret in stub_secrets(stub):
        for text in run.outputs:
            assert secret not in text
        for path in run.workdir.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), f"{secret!r} leaked into {path}"


def mlflow_metrics(run: Run, run_name: str) -> dict[str, float]:
    """The latest value of each metric of run `run_name` in the competition's experiment."""
    _, metrics = mlflow_db(run.workdir / "results" / "mlflow.db", run.comp.slug)[run_name]
    return {k: v[-1] for k, v in metrics.items()}


def git_short_sha() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "nogit"


# ---------------------------------------------------------------- tests


@pytest.mark.workflow
@pytest.mark.kaggle
# a competition's tests in one xdist group (tests/conftest.py), since they share its run; competitions apart
@pytest.mark.parametrize("layout", [pytest.param(k, marks=pytest.mark.xdist_group(v)) for k, v in LAYOUTS.items()])
def test_competition_to_scored_submission(stub, pipeline, layout):
    run = pipeline(LAYOUTS[layout])
    comp = run.comp

    # Downloaded through the real client and unpacked (nested train.zip/test.zip included), marker written.
    dest = run.workdir / "data" / "kaggle" / comp.slug
    marker = json.loads((dest / ".complete").read_text())
    for f in comp.expected_files:
        assert (dest / "files" / f).is_file(), f
        assert f in marker["files"]
    assert not list((dest / "files").rglob("*.zip"))
    assert json.loads((run.results / "prepared" / "meta.json").read_text())["layout"] == layout

    # The submission is exactly the template's ids, order and columns.
    sub = pd.read_csv(run.results / "submission.csv", dtype=str)
    assert list(sub.columns) == list(comp.sample.columns)
    id_col = comp.sample.columns[0]
    assert sub[id_col].tolist() == comp.sample[id_col].tolist()

    # Submit: the file is uploaded, scored by the stub, and the score comes back to the leaderboard and MLflow.
    n_before, downloads = len(stub.submissions), stub.calls("DownloadDataFiles")
    r = run.snakemake("submit")
    assert r.returncode == 0, r.stdout + r.stderr
    assert stub.calls("DownloadDataFiles") == downloads  # the earlier download is reused
    assert len(stub.submissions) == n_before + 1
    uploaded = stub.submissions[-1]
    assert uploaded["competition"] == comp.slug
    assert uploaded["data"] == (run.results / "submission.csv").read_bytes()
    expected = round(public_score(comp, uploaded["data"]), 5)

    scores = json.loads((run.results / "scores.json").read_text())
    cv = scores["ensemble"]["cv"]
    message = f"CV {comp.metric}={cv:.5f} | {scores['ensemble']['method']} | {git_short_sha()}"
    assert uploaded["description"] == message
    row = run.leaderboard()[-1]
    assert row["competition"] == comp.slug and row["message"] == message
    assert float(row["public_score"]) == pytest.approx(expected, abs=1e-9)
    assert float(row["cv"]) == pytest.approx(cv)
    assert row["ref"] == str(uploaded["ref"])
    if comp.slug == TRACKED:
        tracked = mlflow_metrics(run, "submit")
        assert tracked["public_score"] == pytest.approx(expected) and tracked["cv"] == pytest.approx(cv)
    else:
        assert not (run.workdir / "results" / "mlflow.db").exists()
    log = (run.results / "logs" / "submit.log").read_text()
    assert f"public score {expected}" in log
    assert f"{comp.slug}: submission {uploaded['ref']} public score {expected}" in r.stderr  # told on the terminal

    assert_no_credentials(stub, run)


def set_config(run: Run, **kaggle) -> None:
    """Merge `kaggle` settings into the run's config.yaml (they are the kernel and submit rules' params)."""
    cfg = yaml.safe_load((run.workdir / "config.yaml").read_text())
    cfg["kaggle"] = {**cfg.get("kaggle", {}), **kaggle}
    (run.workdir / "config.yaml").write_text(yaml.safe_dump(cfg))


def one_line_error(r: subprocess.CompletedProcess) -> str:
    """The step's `ERROR: ...` line (run_logged), and no traceback."""
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "Traceback" not in out, out[-3000:]
    return next(ln for ln in out.splitlines() if ln.startswith("ERROR: "))


@pytest.mark.workflow
@pytest.mark.kaggle
@pytest.mark.xdist_group(LAYOUTS["pixel_csv"])
def test_updating_the_workflow_downloads_and_retrains_nothing(stub, pipeline, tmp_path):
    """After a checkout (every script's mtime changes) the default profile reruns nothing of a finished run:
    neither the download (its marker) nor anything after it. The leaderboard's figure may be due: the submit step
    of the pipeline fixture wrote leaderboard.csv after its run, which `all` then plots."""
    run = pipeline(LAYOUTS["pixel_csv"])
    r = dry_run(updated_workflow(tmp_path / "flow"), run.workdir, run.env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    stats = re.search(r"Job stats:\n(.*?)\n\s*total", out, re.S)
    due = set() if "Nothing to be done" in out else {ln.split()[0] for ln in stats.group(1).splitlines()[2:]}
    assert due <= {"report_leaderboard", "all"}, out[-3000:]


@pytest.mark.workflow
@pytest.mark.kaggle
@pytest.mark.xdist_group(LAYOUTS["csv_images"])
def test_code_competition_submits_the_kernel_output(stub, pipeline):
    """Aerial Cactus as Kaggle runs it: Kaggle's listing says notebooks only, so `snakemake submit` builds the
    kernel folders, uploads the dataset, pushes the kernel, which the stand-in really runs on the competition's
    files (internet off), and submits its output; the score comes back to the leaderboard and MLflow. Then a
    kernel that fails on Kaggle (no row, the log's tail in the error), and a second good submit after the
    dataset changed: a new dataset version, not a new dataset."""
    run = pipeline("aerial-cactus-identification")
    comp = run.comp
    stub.code_competitions.add(comp.slug)
    rows_before = len(run.leaderboard())
    try:
        r = run.snakemake("submit")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
        user = stub.username
        dataset, kernel = stub.datasets[f"{user}/{comp.slug}-kagglecv"], stub.kernels[f"{user}/{comp.slug}-kagglecv"]
        assert len(dataset["versions"]) == 1 and len(kernel["versions"]) == 1
        files = dataset["versions"][0]["files"]
        assert any(f.startswith("models/test_resnet/fold1/") and f.endswith("model.pt") for f in files)
        assert any(f.startswith("wheels/kagglecv-") for f in files) and "scores.json" in files
        pushed = kernel["versions"][0]["metadata"]
        assert pushed["competitionDataSources"] == [comp.slug] and pushed["enableInternet"] is False
        assert pushed["datasetDataSources"] == [f"{user}/{comp.slug}-kagglecv"]

        uploaded = stub.submissions[-1]
        assert uploaded["competition"] == comp.slug and uploaded["fileName"] == "submission.csv"
        ours = pd.read_csv(io.BytesIO(uploaded["data"]), dtype={"id": str})
        local = pd.read_csv(run.results / "submission.csv", dtype={"id": str})
        assert list(ours["id"]) == list(local["id"]) and list(ours.columns) == list(local.columns)
        assert np.abs(ours["has_cactus"].to_numpy() - local["has_cactus"].to_numpy()).max() < 1e-5
        expected = round(public_score(comp, uploaded["data"]), 5)
        row = run.leaderboard()[-1]
        assert len(run.leaderboard()) == rows_before + 1
        assert float(row["public_score"]) == pytest.approx(expected) and row["status"] == "COMPLETE"
        assert row["kernel"] == f"{user}/{comp.slug}-kagglecv" and row["kernel_version"] == "1"
        assert mlflow_metrics(run, "submit")["public_score"] == pytest.approx(expected)
        assert (run.results / "kernel-runs" / "1" / "submission.csv").read_bytes() == uploaded["data"]

        # A kernel that fails on Kaggle: a one-line error with the log's tail, no submission, no row.
        n_subs, n_rows = len(stub.submissions), len(run.leaderboard())
        stub.kernel_error = "Your notebook tried to allocate more memory than is available"
        try:
            r = run.snakemake("submit")
        finally:
            stub.kernel_error = None
        line = one_line_error(r)
        assert "failed on Kaggle" in line and "more memory than is available" in line
        assert "version 2" in line and "snakemake kernel" in line
        assert len(stub.submissions) == n_subs and len(run.leaderboard()) == n_rows
        assert len(dataset["versions"]) == 1  # unchanged: not uploaded again

        # The dataset changes (an extra wheel): the next submit versions it and submits the new kernel run.
        extra = run.workdir / "extra_pkg-0.1-py3-none-any.whl"
        extra.write_bytes(make_zip({"extra_pkg/__init__.py": b""}))
        set_config(run, kernel_wheels=[str(extra)])
        r = run.snakemake("submit")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
        assert (
            len(dataset["versions"]) == 2 and "wheels/extra_pkg-0.1-py3-none-any.whl" in dataset["versions"][1]["files"]
        )
        assert len(stub.datasets) == 1 and len(kernel["versions"]) == 3
        assert run.leaderboard()[-1]["kernel_version"] == "3" and len(stub.submissions) == n_subs + 1
    finally:
        stub.code_competitions.discard(comp.slug)
        set_config(run, kernel_wheels=[])
    assert_no_credentials(stub, run)


@pytest.mark.workflow
@pytest.mark.kaggle
@pytest.mark.xdist_group(LAYOUTS["csv_images"])
def test_code_competition_waits_again_for_a_kernel_still_running(stub, pipeline):
    """A kernel that outlives kaggle.kernel_timeout: a one-line error, no submission, no row; the next submit
    waits for the same version (nothing uploaded or pushed again) and submits it once it completes."""
    import threading

    from kaggle_stub import run_kernel

    run = pipeline("aerial-cactus-identification")
    release = threading.Event()

    def slow(stub_, version):
        release.wait(120)
        return run_kernel(stub_, version)

    stub.kernel_runner = slow
    set_config(run, code_competition=True, kernel_timeout=3, poll_interval=0.5)
    n_subs, n_rows = len(stub.submissions), len(run.leaderboard())
    try:
        line = one_line_error(run.snakemake("submit"))
        assert "still running" in line and "kaggle.kernel_timeout" in line and "run `snakemake submit` again" in line
        assert len(stub.submissions) == n_subs and len(run.leaderboard()) == n_rows
        pushes, uploads = len(stub.pushes), stub.calls("CreateDatasetVersion") + stub.calls("CreateDataset")
        release.set()
        set_config(run, code_competition=True, kernel_timeout=120, poll_interval=0.5)
        r = run.snakemake("submit")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
        assert len(stub.pushes) == pushes  # waited for the same version
        assert stub.calls("CreateDatasetVersion") + stub.calls("CreateDataset") == uploads
        assert len(stub.submissions) == n_subs + 1 and run.leaderboard()[-1]["status"] == "COMPLETE"
    finally:
        release.set()
        stub.kernel_runner = run_kernel
        set_config(run, code_competition="auto", kernel_timeout=32400.0, poll_interval=10.0)


@pytest.mark.workflow
@pytest.mark.kaggle
@pytest.mark.xdist_group(LAYOUTS["csv_images"])
def test_code_competition_faults_are_one_line_errors(stub, pipeline):
    """Without rights to the competition, with a dataset above the size limit, or a missing kernel folder:
    one line saying what to do, a non-zero exit, and no row claiming a score."""
    run = pipeline("aerial-cactus-identification")
    comp = run.comp
    stub.code_competitions.add(comp.slug)
    n_subs, n_rows = len(stub.submissions), len(run.leaderboard())
    try:
        set_config(run, code_competition=True)
        stub.forbidden.add(comp.slug)
        try:
            line = one_line_error(run.snakemake("submit"))
        finally:
            stub.forbidden.discard(comp.slug)
        assert "403" in line and f"kaggle.com/competitions/{comp.slug}/rules" in line

        set_config(run, code_competition=True, dataset_max_bytes=1000)
        line = one_line_error(run.snakemake("submit"))
        assert "above the Kaggle dataset limit" in line and "kaggle.dataset_max_bytes" in line

        set_config(run, code_competition=True, dataset_max_bytes=None)
        from kagglecv.core.layout import Layout
        from kagglecv.kaggle.client import KaggleError
        from kagglecv.kaggle.code import code_submit

        empty = Layout(run.workdir / "elsewhere" / comp.slug)
        empty.root.mkdir(parents=True)
        with pytest.raises(
            KaggleError,
            match=r"kernel-dataset: no dataset-metadata.json; build the kernel "
            r"folders with `snakemake kernel` first",
        ):
            code_submit(comp.slug, empty, "msg")
    finally:
        stub.code_competitions.discard(comp.slug)
        set_config(run, code_competition="auto", dataset_max_bytes=107374182400)
    assert len(stub.submissions) == n_subs and len(run.leaderboard()) == n_rows


def test_submission_message(tmp_path):
    from kagglecv.core.errors import InputError
    from kagglecv.kaggle.submit import git_commit, submission_message

    scores = {"metric": "roc_auc", "ensemble": {"method": "rank_mean", "cv": 0.987654321}}
    assert submission_message(scores, "abc1234") == "CV roc_auc=0.98765 | rank_mean | abc1234"
    assert submission_message(scores, "abc1234", "{method}@{commit}: {cv:.2f}") == "rank_mean@abc1234: 0.99"
    with pytest.raises(InputError, match="kaggle.message"):
        submission_message(scores, "abc1234", "{score}")
    assert git_commit(REPO) == git_short_sha()
    assert git_commit(tmp_path) == "nogit"  # not a repository
