"""Fixtures, and the test session's environment. Helpers (functions, constants) are in helpers.py.

Tiers (markers registered in pyproject.toml): `workflow` runs the real snakemake CLI, `slurm` starts a real
Slurm, `browser` drives headless Chromium, `kaggle` talks to tests/kaggle_stub.py through the real kaggle client.
`make test-fast` runs what is none of workflow/slurm/browser; `make test` runs everything."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# The tests run the GPU's bf16 code paths on the CPU. On this workplace's Xeon VMs, oneDNN's AMX bf16 kernels gave
# NaN or other numbers under load (the same job alone was fine): cap oneDNN below AMX, at AVX512-BF16, for this
# process and every job it starts. Read when oneDNN first runs, so set before any test imports torch.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")

from helpers import TINY_TRAIN, run_snakemake, tiny_config, write_csv_images_competition  # noqa: E402

# No test waits on the network (closed here): set for this process before anything imports huggingface_hub
# (it reads HF_HUB_OFFLINE at import) and inherited by every subprocess the tests start (snakemake, its jobs,
# the kaggle client). Without it a timm pretrained=True with nothing cached spends ~50 s in the hub's retries.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",  # huggingface_hub (timm's weights): the local cache only, an error at once otherwise
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "NO_ALBUMENTATIONS_UPDATE": "1",  # albumentations' version check on import (kagglecv.data.augment sets it too)
}


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput") and os.environ.get(GROUPS_ENV):  # the controller: its groups folder
        shutil.rmtree(os.environ.pop(GROUPS_ENV), ignore_errors=True)


def pytest_configure(config):
    os.environ.update(OFFLINE_ENV)
    if not hasattr(config, "workerinput") and config.getoption("numprocesses", None):  # the xdist controller
        os.environ[GROUPS_ENV] = tempfile.mkdtemp(prefix="kagglecv-test-groups-")  # the workers inherit it
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:  # imported before this hook (by a plugin): it has read the environment already
        hub.HF_HUB_OFFLINE = True


GROUPS_ENV = "KAGGLECV_TEST_GROUPS"  # a folder: each xdist worker writes {test: group} there (GroupScheduling)

# Seconds a group of tests took on the 2-core machine (pytest --durations under `make test`, 2026-12-06). `make test`
# hands groups to its two xdist workers longest first (--dist loadgroup --no-loadscope-reorder), so that no long
# one is left for one worker at the end. A hint only: a group missing here or a stale figure costs time, not a
# result. A group is a module (its module-scoped fixtures stay in one process) unless its tests name their own
# with @pytest.mark.xdist_group (independent whole workflows that may run on either worker). test_kernel.py's
# figure includes the session's shared trained run, which its first test usually trains.
GROUP_SECONDS = {
    "slurm": 340,
    "test_kernel.py": 280,
    "aerial-cactus-identification": 240,
    "test_tuning.py": 165,
    "mlflow-server-killed": 150,
    "test_extending.py": 140,
    "test_stages.py": 105,
    "test_factory_edits.py": 100,
    "test_workflow.py": 90,
    "test_report_predict.py": 85,
    "test_recipes.py": 75,
    "mlebench-zipped": 70,
    "tune-killed": 65,
    "digit-recognizer": 60,
    "test_config.py": 60,
    "test_messy_metadata.py": 55,
    "test_training.py": 55,
    "dogs-vs-cats-redux-kernels-edition": 50,
    "tune-postgres": 50,
    "test_cache.py": 50,
    "plant-seedlings-classification": 45,
    "test_rank_logs.py": 45,
    "pawpularity-mini": 45,
    "aptos-mini": 45,
    "plant-pathology-mini": 45,
    "isic-mini": 40,
    "test_models.py": 35,
}


def group(item) -> str:
    """The item's xdist group: its own mark's, else "slurm" for a test that starts the Slurm cluster (one can run
    at a time, tests/slurm_local.py: they queue on one worker instead of one worker waiting for the other's),
    else its module's (see GROUP_SECONDS)."""
    mark = item.get_closest_marker("xdist_group")
    if mark:
        return str(mark.args[0])
    return "slurm" if item.get_closest_marker("slurm") else Path(item.module.__file__).name


def pytest_collection_modifyitems(config, items):
    """The groups in the order the workers should take them; under xdist, each test's group for GroupScheduling."""
    # the listed groups longest first, then the others by tier (Slurm, whole workflows, the rest), then as collected
    tier: dict[str, int] = {}
    for item in items:
        rank = 0 if item.get_closest_marker("slurm") else 1 if item.get_closest_marker("workflow") else 2
        tier[group(item)] = min(tier.get(group(item), rank), rank)
    order = {item: k for k, item in enumerate(items)}
    items.sort(key=lambda item: (-GROUP_SECONDS.get(group(item), 0), tier[group(item)], order[item]))
    if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get(GROUPS_ENV):
        out = Path(os.environ[GROUPS_ENV]) / f"{os.environ['PYTEST_XDIST_WORKER']}.json"
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps({item.nodeid: group(item) for item in items}))
        tmp.replace(out)  # written before the worker reports its collection, so before any scheduling


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup` as it should be: xdist's own does not group under pytest 9.2 (it renames the items
    after their group, which no longer takes; pytest-xdist#1386). Same scheduler, the scope of a test read from
    what the workers wrote in pytest_collection_modifyitems."""
    if config.getvalue("dist") != "loadgroup" or not os.environ.get(GROUPS_ENV):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # first called once every worker has collected
                self.groups = {}
                for f in sorted(Path(os.environ[GROUPS_ENV]).glob("*.json")):
                    self.groups.update(json.loads(f.read_text()))
            return self.groups.get(nodeid) or nodeid.split("::")[0]

    return GroupScheduling(config, log)


@pytest.fixture
def tiny_zip(tmp_path) -> tuple[Path, dict]:
    path = tmp_path / "tiny.zip"
    return path, write_csv_images_competition(path)


# ---------------------------------------------------------------- one trained run for the whole session

# The tiny csv_images competition (12 test images), 2 folds, two backbones (a per-backbone lr and input size),
# tta=augment (random views) after fastai augmentation, a stacked ensemble, kernel settings, live MLflow
# tracking: one run that serves test_workflow.py, test_report_predict.py and test_kernel.py.
SHARED_BACKBONES = ["test_resnet", {"name": "test_convnext", "lr": 0.002, "img_size": 32}]
SHARED_TRAIN = {**TINY_TRAIN, "tta": "augment", "tta_n": 2, "augment": "fastai"}


@dataclass
class TrainedRun:
    """A finished default `snakemake` run: its folder, config, the competition's ids and test labels, and what
    snakemake printed."""

    wd: Path
    cfg: dict
    info: dict
    run: subprocess.CompletedProcess = field(repr=False)

    @property
    def res(self) -> Path:
        return self.wd / "results" / self.cfg["competition"]

    def copy(self, dest: Path) -> TrainedRun:
        """The run copied to `dest`, file times and Snakemake's records included, so that nothing is out of date
        there: for tests that add to a run (more targets, a leaderboard, predictions) without changing what
        the others see. The config still reads the original's zip (a path is a param: another would retrain);
        MLflow's artifact folders are moved to the copy's own."""
        shutil.copytree(self.wd, dest, symlinks=True)
        old, new = ((p / "results" / "mlartifacts").resolve().as_uri() for p in (self.wd, dest))
        with sqlite3.connect(dest / "results" / "mlflow.db") as db:
            db.execute("update experiments set artifact_location = replace(artifact_location, ?, ?)", (old, new))
            db.execute("update runs set artifact_uri = replace(artifact_uri, ?, ?)", (old, new))
        db.close()
        return TrainedRun(dest, self.cfg, self.info, self.run)


def _train_shared(wd: Path) -> TrainedRun:
    info = write_csv_images_competition(wd / "tiny.zip", n_test=12)
    cfg = tiny_config(
        wd / "tiny.zip",
        backbones=SHARED_BACKBONES,
        train=dict(SHARED_TRAIN),
        ensemble={"method": "stack"},
        kaggle={"owner": "someone", "enable_gpu": False, "max_bad_test_images": 0.05},
    )
    return TrainedRun(wd, cfg, info, run_snakemake(wd, cfg))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, worker_id) -> TrainedRun:
    """The session's one trained run (see SHARED_*): tests only read it; those that add to it take a copy. Under
    pytest-xdist (`make test` runs two workers) the first worker to ask trains it in the workers' common temp
    folder, under a file lock, and the others read it from there: one run for the whole session still."""
    if worker_id == "master":
        return _train_shared(tmp_path_factory.mktemp("trained"))
    import pickle

    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # shared by the workers of this session
    done = root / "trained.pickle"
    with FileLock(str(root / "trained.lock")):
        if done.exists():
            return pickle.loads(done.read_bytes())
        (wd := root / "trained").mkdir()
        shared = _train_shared(wd)
        done.write_bytes(pickle.dumps(shared))
        return shared
