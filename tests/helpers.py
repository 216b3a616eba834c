"""Shared test helpers (imported as `from helpers import ...`; fixtures live in conftest.py): tiny competitions
in Kaggle's layouts, zips, a real `snakemake` run in a temp dir, and the Kaggle CLI (kagglecv) against
tests/kaggle_stub.py."""

from __future__ import annotations

import base64
import io
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.datasets import load_digits

from kagglecv.data.demo import png_bytes, write_competition

from kaggle_stub import KaggleStub

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


png = png_bytes  # an image array as PNG bytes, for the tests that write image files themselves


def digits_images(n_per_class: int, classes=(0, 1, 2), offset: int = 0):
    d = load_digits()
    imgs, labels = [], []
    for c in classes:
        idx = np.flatnonzero(d.target == c)[offset : offset + n_per_class]
        imgs += [np.round(d.images[i] * 255 / 16).astype(np.uint8) for i in idx]
        labels += [c] * len(idx)
    return imgs, labels


def write_csv_images_competition(
    path: Path, *, n_per_class=8, n_test=6, classes=(0, 1, 2), with_ext=False, label_names=None
) -> dict:
    """A csv_images competition (train.csv id,label + train/ test/ + sample_submission.csv) as a zip.

    Returns what a test needs to know about it: the ids and the true test labels."""
    imgs, labels = digits_images(n_per_class, classes)
    test_imgs, test_labels = digits_images(n_test // len(classes), classes, offset=n_per_class)
    names = label_names or {c: c for c in classes}
    ids = [f"tr{i:03d}" + (".png" if with_ext else "") for i in range(len(imgs))]
    test_ids = [f"te{i:03d}" + (".png" if with_ext else "") for i in range(len(test_imgs))]
    write_competition(
        path,
        pd.DataFrame({"id": ids, "label": [names[c] for c in labels]}),
        {f"train/{Path(i).stem}.png": img for i, img in zip(ids, imgs)}
        | {f"test/{Path(i).stem}.png": img for i, img in zip(test_ids, test_imgs)},
        pd.DataFrame({"id": test_ids, "label": names[classes[0]]}),
    )
    return {"ids": ids, "test_ids": test_ids, "test_labels": [names[c] for c in test_labels]}


def make_zip(entries: dict[str, bytes]) -> bytes:
    """A zip archive in memory, from {name: bytes}."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def edit_zip(src: Path, dst: Path, edit) -> Path:
    """Copy a competition zip, letting `edit(name, data)` change (return bytes) or drop (return None) entries."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for name in a.namelist():
            data = edit(name, a.read(name))
            if data is not None:
                b.writestr(name, data)
    return dst


TINY_TRAIN = {"epochs": 1, "img_size": 16, "batch_size": 16, "tta": "flip", "tta_beta": 0.5}


def tiny_config(data_path: Path, **over) -> dict:
    cfg = {
        "competition": "tiny",
        "data": {"source": "local", "path": str(data_path)},
        "folds": 2,
        "seed": 1,
        "metric": "accuracy",
        "backbones": ["test_resnet"],
        "train": dict(TINY_TRAIN),
    }
    cfg.update(over)
    return cfg


# The user's local profile: on 2 cores, two training jobs at once with a thread each (resources gpu=2), which
# finished the tiny runs sooner than one job with both threads.
PROFILE = REPO / "profiles" / "default"


def snakemake_command(
    workdir: Path, config: dict | None, *args: str, snakefile: Path | None = None, profile: Path | str = PROFILE
) -> list[str]:
    """The real CLI on the repo's Snakefile (or `snakefile`), with `config` written to workdir/config.yaml, under
    `profile` (profiles/default; "none" for none) and 2 cores; `args` (targets, flags) last."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [*SNAKEMAKE]
    if config is not None:  # first: --configfile takes every value up to the next option, targets included
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        cmd += ["--configfile", str(workdir / "config.yaml")]
    cmd += [
        "--snakefile",
        str(snakefile or REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--workflow-profile",
        str(profile),
        "--cores",
        "2",
    ]
    return [*cmd, *args]


def snakemake_env(env: dict | None = None) -> dict:
    """This environment for a snakemake run: MLflow's default store (no MLFLOW_TRACKING_URI), output unbuffered."""
    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**full_env, "PYTHONUNBUFFERED": "1", **(env or {})}


def run_snakemake(
    workdir: Path,
    config: dict | None,
    *args: str,
    check: bool = True,
    env: dict | None = None,
    snakefile: Path | None = None,
    profile: Path | str = PROFILE,
) -> subprocess.CompletedProcess:
    """snakemake_command run to its end (15 minutes at most); fails the test when it fails, unless not `check`."""
    cmd = snakemake_command(workdir, config, *args, snakefile=snakefile, profile=profile)
    r = subprocess.run(cmd, cwd=workdir, env=snakemake_env(env), capture_output=True, text=True, timeout=900)
    if check and r.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-6000:]}"
        )
    return r


def killed_snakemake(
    workdir: Path, config: dict, *args: str, ready, timeout: float, poll: float, log: Path | None = None
) -> None:
    """snakemake_command started in a process group of its own, SIGKILLed with its jobs as soon as `ready()` holds
    (polled every `poll` s); fails the test if the run ends first or `timeout` s pass. Output to `log`, if given."""
    workdir.mkdir(parents=True, exist_ok=True)
    with open(log, "w") if log else open(os.devnull, "w") as out:
        proc = subprocess.Popen(
            snakemake_command(workdir, config, *args),
            cwd=workdir,
            env=snakemake_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while not ready():
                assert proc.poll() is None, "the run ended before it was killed" + (
                    f":\n{log.read_text()[-3000:]}" if log else ""
                )
                assert time.monotonic() < deadline, f"not ready within {timeout} s"
                time.sleep(poll)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def updated_workflow(dest: Path) -> Path:
    """A copy of the workflow (Snakefile, rules, scripts, schemas, profiles...) whose scripts/job.py has just been
    modified, as any `git pull` or checkout leaves it; the real checkout's mtimes stay as they are."""
    shutil.copytree(
        REPO,
        dest,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "results", "data", "tests", "bench", "docs", ".snakemake", "__pycache__"
        ),
    )
    os.utime(dest / "scripts" / "job.py")
    return dest


def dry_run(flow: Path, workdir: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`snakemake -n` of the finished run in `workdir`, with the workflow in `flow` and its default profile."""
    cmd = [
        *SNAKEMAKE,
        "--snakefile",
        str(flow / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--workflow-profile",
        str(flow / "profiles" / "default"),
        "-n",
    ]
    env = env or {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)


# ---------------------------------------------------------------- the Kaggle CLI against the Kaggle stub


def competition_bytes(train, images, sample, *, files=None) -> bytes:
    """kagglecv.data.demo.write_competition's zip in memory: what the stand-in Kaggle server serves."""
    return write_competition(io.BytesIO(), train, images, sample, files=files).getvalue()


def competition_zip(top_folder: bool = False) -> bytes:
    """Like a real image competition: CSVs plus a nested train.zip holding the images.

    Kaggle's train.zip holds either the images or a top folder train/; both must end up in files/train/.
    """
    train = make_zip({f"{'train/' if top_folder else ''}{n}": b"jpeg-" + n[:1].encode() for n in ("a.jpg", "b.jpg")})
    labels = pd.DataFrame({"id": ["a.jpg", "b.jpg"], "label": [0, 1]})
    return competition_bytes(labels, {}, pd.DataFrame(columns=["id", "label"]), files={"train.zip": train})


def stub_secrets(stub: KaggleStub) -> list[str]:
    return [stub.key, stub.token, base64.b64encode(f"{stub.username}:{stub.key}".encode()).decode()]


def run_kaggle_cli(
    stub: KaggleStub,
    tmp_path: Path,
    *args: str,
    creds: str | None = "env",
    key: str | None = None,
    extra_env: dict | None = None,
    cmd: list[str] | None = None,
) -> subprocess.CompletedProcess:
    """Run `kagglecv ARGS` (or `cmd`) against the stub; credentials must never leak."""
    env = stub.env(tmp_path / "home", creds=creds, key=key) | {"PYTHONPATH": str(REPO)} | (extra_env or {})
    cmd = cmd or [sys.executable, "-m", "kagglecv", *args]
    r = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    for secret in stub_secrets(stub):
        assert secret not in r.stdout + r.stderr
    return r


def mlflow_db(db: Path, experiment: str | None = None) -> dict[str, tuple[str, dict[str, list[float]]]]:
    """{run name: (status, {metric: its values by step})} of the runs in a workflow's SQLite MLflow store (of one
    experiment, or all), read with SQL, without starting an MLflow client. A name logged twice keeps its latest
    run."""
    with sqlite3.connect(db) as con:
        runs = con.execute(
            "SELECT r.run_uuid, r.name, r.status FROM runs r JOIN experiments e "
            "ON r.experiment_id = e.experiment_id WHERE ? IS NULL OR e.name = ? "
            "ORDER BY r.start_time",
            (experiment, experiment),
        ).fetchall()
        out = {}
        for uuid, name, status in runs:
            metrics: dict[str, list[float]] = {}
            for key, value in con.execute(
                "SELECT key, value FROM metrics WHERE run_uuid = ? ORDER BY step, timestamp", (uuid,)
            ):
                metrics.setdefault(key, []).append(value)
            out[name] = (status, metrics)
    return out


def error_line(r: subprocess.CompletedProcess) -> str:
    """The one-line error: exit 1 and `ERROR: ...` as the last line of stderr."""
    assert r.returncode == 1, (r.stdout, r.stderr)
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("ERROR: ") and "Traceback" not in r.stderr, r.stderr
    return line
