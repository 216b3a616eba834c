"""A stand-in run end to end as a new user runs a competition: its config from configs/<slug>.yaml, the public
folder (or its zip) as data.path, a run size, and nothing else; the submission graded as MLE-bench grades it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from .graders import grade, lower_is_better, prior_score, sample_score
from .layouts import make

REPO = Path(__file__).resolve().parents[2]
# A run size for 2 CPU cores: one small test model, two folds, a few epochs at 24 px.
RUN_SIZE = {
    "folds": 2,
    "backbones": ["test_resnet"],
    "mlflow": {"enabled": False},
    "train": {"epochs": 6, "img_size": 24, "batch_size": 16, "pretrained": False, "lr": 0.003, "precise_bn": 50},
}


@dataclass
class Graded:
    slug: str
    score: float
    sample: float
    prior: float
    lower_is_better: bool
    seconds: float
    meta: dict

    @property
    def beats_baselines(self) -> bool:
        better = (lambda a, b: a < b) if self.lower_is_better else (lambda a, b: a > b)
        return better(self.score, self.sample) and better(self.score, self.prior)


def run_standin(
    slug: str,
    work: Path,
    *,
    n_train: int = 150,
    n_test: int = 40,
    zipped: bool = False,
    seed: int = 0,
    size: dict | None = None,
    timeout: int = 900,
) -> Graded:
    """Generate `slug`'s stand-in under work/, run `snakemake` on configs/<slug>.yaml laid under the run size and
    data.path, and grade results/<slug>/submission.csv against the stand-in's answers."""
    standin = make(slug, work / "competition", n_train=n_train, n_test=n_test, seed=seed, zipped=zipped)
    run = work / "run"
    run.mkdir(parents=True, exist_ok=True)
    over = {**RUN_SIZE, **(size or {}), "data": {"source": "local", "path": str(standin.data)}}
    (run / "size.yaml").write_text(yaml.safe_dump(over))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--configfile",
        str(REPO / "configs" / f"{slug}.yaml"),
        str(run / "size.yaml"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(run),
        "--workflow-profile",
        str(REPO / "profiles" / "default"),
        "--cores",
        "2",
        "submission",
    ]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    t0 = time.perf_counter()
    r = subprocess.run(
        cmd, cwd=run, env={**env, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=timeout
    )
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise AssertionError(f"{slug}: snakemake failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    results = run / "results" / slug
    return Graded(
        slug,
        grade(slug, results / "submission.csv", standin.answers),
        sample_score(slug, standin),
        prior_score(slug, standin),
        lower_is_better(slug),
        seconds,
        json.loads((results / "prepared" / "meta.json").read_text()),
    )
