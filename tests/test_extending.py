"""docs/extending.md through the real snakemake CLI: a model in a file outside the repository, a backbone trained by
its own rule file (rules/backbones/<name>.smk) in a copy of the workflow, one trained by a script of the user's,
all in one ensemble; the kernel of that run from its dataset alone; a `gpus: 2` backbone scheduled alone."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from helpers import REPO, run_snakemake, tiny_config, write_csv_images_competition

pytestmark = pytest.mark.workflow

FACTORY = textwrap.dedent("""
    import torch.nn as nn

    def build(num_outputs, in_chans, pretrained, img_size, width=8):
        body = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return body if num_outputs == 0 else nn.Sequential(body, nn.Linear(width, num_outputs))
""")

OUR_JOB_ELSEWHERE = textwrap.dedent("""
    use rule train as train_mynet with:
        resources:
            gpu=1,
            mem_mb=1024,
            runtime=5,
        wildcard_constraints:
            backbone="mynet",
""")

OWN_SCRIPT_RULE = textwrap.dedent("""
    rule train_prior:
        input:
            folds=str(L.folds),
            test=str(PREPARED.test),
        output:
            oof=str(L.model("prior", "{fold}").oof),
            test=str(L.model("prior", "{fold}").test),
            metrics=str(L.model("prior", "{fold}").metrics),
            config=str(L.model("prior", "{fold}").config),
        log:
            str(L.log("train/prior/fold{fold}")),
        script:
            "prior.py"
""")

PRIOR_SCRIPT = textwrap.dedent("""
    # The class frequencies of the fold's training rows: a model by the contract of docs/extending.md.
    import json
    import pandas as pd

    folds = pd.read_csv(snakemake.input.folds, dtype={"id": str}, keep_default_na=False)
    test = pd.read_csv(snakemake.input.test, dtype={"id": str}, keep_default_na=False)
    k = int(snakemake.wildcards.fold)
    n = int(folds["y"].max()) + 1
    prior = folds.loc[folds["fold"] != k, "y"].value_counts(normalize=True).reindex(range(n), fill_value=0.0)
    oof = folds.loc[folds["fold"] == k, ["id", "y", "fold"]].reset_index(drop=True)
    out = test[["id"]].copy()
    for c in range(n):
        oof[f"p{c}"] = out[f"p{c}"] = prior[c]
    oof.to_csv(snakemake.output.oof, index=False)
    out.to_csv(snakemake.output.test, index=False)
    acc = float((oof["y"] == int(prior.idxmax())).mean())
    json.dump({"backbone": "prior", "fold": k, "metric": "accuracy", "score": acc}, open(snakemake.output.metrics, "w"))
    json.dump({"backbone": "prior", "kind": "class prior"}, open(snakemake.output.config, "w"))
""")


def workflow_copy(dest: Path) -> Path:
    """The workflow as a user's checkout has it (the kernel rule builds kagglecv's wheel from it), to add to."""
    for name in ("Snakefile", "config.yaml", "pyproject.toml"):
        shutil.copy(REPO / name, dest / name)
    for name in ("rules", "scripts", "schemas", "envs", "profiles", "report", "kagglecv"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest / "Snakefile"


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    root = tmp_path_factory.mktemp("ext")
    (root / "wf").mkdir()
    snakefile = workflow_copy(root / "wf")
    backbones = root / "wf" / "rules" / "backbones"
    backbones.mkdir()
    (backbones / "mynet.smk").write_text(OUR_JOB_ELSEWHERE)
    (backbones / "prior.smk").write_text(OWN_SCRIPT_RULE)
    (backbones / "prior.py").write_text(PRIOR_SCRIPT)
    factory = root / "elsewhere" / "mynet.py"  # outside the repository and the working directory
    factory.parent.mkdir()
    factory.write_text(FACTORY)
    wd = root / "run"
    write_csv_images_competition(wd.parent / "tiny.zip", n_test=12)
    mynet = {"name": "mynet", "model": f"{factory}:build", "model_args": {"width": 6}, "img_size": 16}
    cfg = tiny_config(
        wd.parent / "tiny.zip",
        backbones=["test_resnet", mynet, "prior"],
        ensemble={"method": "mean"},
        mlflow={"enabled": False},
        kaggle={"owner": "someone", "enable_gpu": False},
    )
    plan = run_snakemake(wd, cfg, "-n", "--quiet", "rules", snakefile=snakefile)
    run = run_snakemake(wd, cfg, snakefile=snakefile)
    return {
        "wd": wd,
        "cfg": cfg,
        "snakefile": snakefile,
        "factory": factory,
        "plan": plan,
        "run": run,
        "res": wd / "results" / "tiny",
    }


def test_each_backbone_is_trained_by_its_rule(extended):
    counts = dict(r.split()[:2] for r in extended["plan"].stdout.splitlines() if r.startswith("train"))
    assert counts == {"train": "2", "train_mynet": "2", "train_prior": "2"}, extended["plan"].stdout
    log = extended["run"].stdout + extended["run"].stderr
    assert "rule train_mynet:" in log and "rule train_prior:" in log
    used = json.loads((extended["res"] / "models/mynet/fold0/config.json").read_text())
    assert used["model"] == f"{extended['factory']}:build" and used["model_args"] == {"width": 6}


def test_the_ensemble_and_the_submission_take_every_backbone(extended):
    scores = json.loads((extended["res"] / "scores.json").read_text())
    assert set(scores["models"]) == {"test_resnet", "mynet", "prior"}
    assert set(scores["ensemble"]["members"]) == {"test_resnet", "mynet", "prior"}
    sub = pd.read_csv(extended["res"] / "submission.csv", dtype=str)
    assert len(sub) == 12 and sub["label"].notna().all()
    assert (extended["res"] / "report" / "training_curves.png").stat().st_size > 0  # prior has no history: skipped


def test_the_kernel_of_a_factory_model_runs_from_its_dataset_alone(extended, tmp_path):
    wd, cfg, snakefile = extended["wd"], dict(extended["cfg"]), extended["snakefile"]
    cfg["backbones"] = [b for b in cfg["backbones"] if b != "prior"]  # the kernel needs model.pt of every member
    run_snakemake(wd, cfg, snakefile=snakefile)
    run_snakemake(wd, cfg, "--cores", "2", "kernel", snakefile=snakefile)
    ds = extended["res"] / "kernel-dataset"
    assert (ds / "models" / "mynet" / "mynet.py").read_text() == FACTORY
    hidden = extended["factory"].with_suffix(".moved")
    extended["factory"].rename(hidden)  # the kernel must not need the user's file where it was
    try:
        inp = tmp_path / "input"
        with zipfile.ZipFile(wd.parent / "tiny.zip") as zf:
            zf.extractall(inp / "tiny")
        shutil.copytree(ds, inp / "tiny-kagglecv")
        meta = json.loads((extended["res"] / "kernel" / "kernel-metadata.json").read_text())
        env = {**os.environ, "KAGGLE_INPUT": str(inp), "KAGGLE_WORKING": str(tmp_path / "out")}
        r = subprocess.run(
            [sys.executable, str(extended["res"] / "kernel" / meta["code_file"])],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        hidden.rename(extended["factory"])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert (tmp_path / "out" / "submission.csv").read_bytes() == (extended["res"] / "submission.csv").read_bytes()


def test_a_two_device_backbone_runs_alone(tmp_path):
    """gpus: 2 under --resources gpu=2: its jobs hold both slots, so no other training job runs beside them; on
    CPU each trains in two gloo processes."""
    write_csv_images_competition(tmp_path / "tiny.zip")
    cfg = tiny_config(
        tmp_path / "tiny.zip",
        mlflow={"enabled": False},
        backbones=["test_resnet", {"name": "test_convnext", "gpus": 2, "img_size": 32, "threads": 2}],
    )
    # 4 cores: by threads the 2-thread jobs could run beside the others; only the gpu slots keep them apart
    run_snakemake(tmp_path, cfg, "--cores", "4", "--resources", "gpu=2", "--until", "train")
    jobs = []
    for m in sorted((tmp_path / "results/tiny/models").glob("*/fold*/metrics.json")):
        metrics = json.loads(m.read_text())
        jobs.append(
            {
                "job": f"{metrics['backbone']}-{metrics['fold']}",
                "gpus": metrics["processes"],
                "start": metrics["started_at"],
                "end": metrics["finished_at"],
            }
        )
    assert sorted(j["gpus"] for j in jobs) == [1, 1, 2, 2], jobs
    assert json.loads((tmp_path / "results/tiny/models/test_convnext/fold0/config.json").read_text())["threads"] == 2
    overlap = {
        (a["job"], b["job"]): a["start"] < b["end"] and b["start"] < a["end"]
        for a, b in itertools.combinations(jobs, 2)
    }
    assert overlap[("test_resnet-0", "test_resnet-1")], jobs  # one-device jobs do share the machine
    assert not any(v for (a, b), v in overlap.items() if "convnext" in a or "convnext" in b), jobs
