"""Environments that mean what they say: the data-side jobs run without torch, the conda envs pin what the lock
pins."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap

import yaml

from helpers import REPO, write_csv_images_competition

# ---------------------------------------------------------------- environments

NO_TORCH = """
import importlib, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "timm", "torchvision", "albumentations"):
            raise ImportError(f"{name} is not in the data env")
sys.meta_path.insert(0, Block())
"""


def data_env_rules() -> set[str]:
    """The rules that run in envs/data.yaml (DATA_ENV)."""
    rules = set()
    for smk in (REPO / "rules").glob("*.smk"):
        for rule in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            if "conda:\n        DATA_ENV" in rule:
                rules.add(rule.split(":")[0])
    return rules


def job_imports(rules: set[str]) -> set[str]:
    """The kagglecv modules the jobs of `rules` import (kagglecv/jobs/, one function per rule)."""
    found = set()
    for fn in (f for m in (REPO / "kagglecv" / "jobs").glob("*.py") for f in ast.parse(m.read_text()).body):
        if isinstance(fn, ast.FunctionDef) and fn.name in rules:
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kagglecv"):
                    for name in (f"{node.module}.{a.name}" for a in node.names):  # a module, or a name in one
                        is_module = (REPO / name.replace(".", "/")).with_suffix(".py").is_file()
                        found.add(name if is_module else node.module)
    return found


def test_data_env_jobs_run_without_torch(tmp_path):
    rules = data_env_rules()
    assert {"prepare", "folds", "ensemble", "submission", "download", "kernel", "submit", "report_cv"} <= rules
    assert "train" not in rules and "predict" not in rules
    modules = sorted(job_imports(rules) | {"kagglecv.jobs"})
    assert "kagglecv.kaggle.download" in modules and "kagglecv.scoring.ensemble" in modules
    write_csv_images_competition(tmp_path / "tiny.zip")
    code = NO_TORCH + textwrap.dedent(f"""
        for m in {modules!r}:
            importlib.import_module(m)
        from kagglecv.config.schema import resolve
        from kagglecv.jobs import Files, Job
        from kagglecv.jobs.data import folds, prepare
        config = resolve({{"competition": "tiny", "mlflow": {{"enabled": False}}}})
        prepare(Job("prepare", config, params=Files(path={str(tmp_path / "tiny.zip")!r}, data={{}}, task="auto",
                                                     metric="accuracy"), threads=2))
        folds(Job("folds", config, params=Files(folds=2, seed=0)))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "results/tiny/folds.csv").exists()


def test_conda_envs_pin_what_the_lock_pins():
    lock = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "requirements.lock").read_text(), flags=re.M))
    lock = {k.lower(): v for k, v in lock.items()}
    for env in ("data", "train"):
        spec = yaml.safe_load((REPO / "envs" / f"{env}.yaml").read_text())
        pins = dict(
            re.match(r"([A-Za-z0-9_.-]+)==(\S+)", p).groups() for p in spec["dependencies"][-1]["pip"] if "==" in p
        )
        assert pins and all(lock[k.lower()] == v for k, v in pins.items()), (env, pins)
        assert ("torch" in pins) == (env == "train")
