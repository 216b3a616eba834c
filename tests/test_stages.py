"""Stages after the first training (kagglecv.training.teachers): pseudo-label rounds and the distilled student, for
every task kind, honest by construction; then the whole DAG with a round, a student and a kernel that ships the
student."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest

from kagglecv.config.members import backbone_settings, members, teacher_of
from kagglecv.config.schema import resolve
from kagglecv.config.train import TrainConfig
from kagglecv.core.tasks import Task
from kagglecv.data.folds import make_folds
from kagglecv.data.prepare import prepare
from kagglecv.training.teachers import distill_targets, pseudo_labels, read_teacher
from kagglecv.training.train import run

from demo_tasks import DEMOS, make_task_competition
from helpers import mlflow_db, run_snakemake, tiny_config, write_csv_images_competition

KINDS = {"isic-mini": "binary", "planet-mini": "multilabel", "pawpularity-mini": "regression", "aptos-mini": "ordinal"}


def predictions(path, ids, cols, values):
    pd.DataFrame({"id": ids, **{c: values[:, k] for k, c in enumerate(cols)}}).to_csv(path, index=False)
    return path


def test_a_round_labels_the_test_set_with_the_folds_own_models(tmp_path):
    task, ids, cols = Task("multiclass", ("a", "b", "c")), ["t0", "t1", "t2"], ["p0", "p1", "p2"]
    m1 = predictions(tmp_path / "m1.csv", ids, cols, np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.1, 0.1, 0.8]]))
    m2 = predictions(tmp_path / "m2.csv", ids, cols, np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.0, 0.2, 0.8]]))
    out = pseudo_labels([m1, m2], task, tmp_path / "t.csv", min_confidence=0.6, soft=True, weight=0.5)
    assert out["id"].tolist() == ["t0", "t2"]  # t1: top probability 0.4, below 0.6
    assert np.allclose(out[cols].to_numpy(), [[0.8, 0.125, 0.075], [0.05, 0.15, 0.8]]) and (out["weight"] == 0.5).all()
    hard = pseudo_labels([m1, m2], task, tmp_path / "h.csv", min_confidence=0.0, soft=False)
    assert hard[cols].to_numpy().tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    values = Task("regression")
    v = predictions(tmp_path / "v.csv", ids, ["p0"], np.array([[3.0], [40.0], [7.5]]))
    assert pseudo_labels([v], values, tmp_path / "r.csv", min_confidence=0.99)["p0"].tolist() == [3.0, 40.0, 7.5]


def test_the_student_learns_from_predictions_that_never_saw_its_rows(tmp_path):
    folds = pd.DataFrame(
        {"id": ["a", "b", "c", "d"], "label": ["x", "y", "x", "y"], "y": [0, 1, 0, 1], "fold": [0, 0, 1, 1]}
    )
    oof = [
        [
            predictions(
                tmp_path / f"oof{k}.csv",
                folds["id"][folds["fold"] == k].tolist(),
                ["p0", "p1"],
                np.array([[0.6, 0.4], [0.3, 0.7]]),
            )
            for k in (0, 1)
        ]
    ]
    test = predictions(tmp_path / "test.csv", ["t0"], ["p0", "p1"], np.array([[0.2, 0.8]]))
    out = distill_targets(oof, [test], folds, 1, Task("binary", ("x", "y")), tmp_path / "s.csv", label_weight=0.5)
    train = out[out["source"] == "train"]
    assert train["id"].tolist() == ["a", "b"]  # fold 1's job: the rows of fold 0 only
    assert np.allclose(train[["p0", "p1"]], [[0.8, 0.2], [0.15, 0.85]])  # half the label, half the OOF prediction
    assert out[out["source"] == "test"][["p0", "p1"]].to_numpy().tolist() == [[0.2, 0.8]]


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    """A small prepared competition of each task kind, in 2 folds."""
    out = {}
    for slug in KINDS:
        root = tmp_path_factory.mktemp(slug)
        make_task_competition(slug, root / "c.zip", root / "solution.csv", 48, 12)
        meta = prepare(root / "c.zip", root / "p", metric=DEMOS[slug].metric)
        make_folds(root / "p" / "train.csv", root / "folds.csv", 2, 0, task=meta["task"])
        out[slug] = root
    return out


@pytest.mark.parametrize("slug", list(KINDS))
def test_a_job_trains_on_its_teachers_rows_for_every_task(kinds, slug, tmp_path):
    root = kinds[slug]
    meta = json.loads((root / "p/meta.json").read_text())
    task = Task.of(meta)
    assert task.kind == KINDS[slug]
    test_ids = pd.read_csv(root / "p/test.csv", dtype=str)["id"].tolist()
    cols = [f"p{k}" for k in range(task.outputs)]
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(len(test_ids), len(cols)))
    if task.kind in ("binary", "multiclass"):
        p = p / p.sum(1, keepdims=True)
    elif task.kind in ("regression", "ordinal"):
        p = p * 4
    teacher = predictions(tmp_path / "teacher.csv", test_ids, cols, p)
    targets = pseudo_labels([teacher], task, tmp_path / "round2.csv", min_confidence=0.0, soft=True, weight=0.5)
    folds = pd.read_csv(root / "folds.csv", dtype={"id": str})
    tr_idx = np.flatnonzero(folds["fold"].to_numpy() != 0)
    train_t, rows, test_t, w = read_teacher(tmp_path / "round2.csv", folds, tr_idx, test_ids, task)
    assert train_t is None and rows.tolist() == list(range(len(test_ids))) and np.allclose(test_t, targets[cols])
    cfg = TrainConfig(
        backbone="test_resnet", epochs=1, img_size=16, batch_size=8, threads=1, tta="none", metric=DEMOS[slug].metric
    )
    r = run(cfg, root / "p", root / "folds.csv", tmp_path / "m", track=False, teacher_csv=tmp_path / "round2.csv")
    resolved = json.loads((tmp_path / "m/config.json").read_text())
    assert resolved["teacher_rows"] == len(test_ids) and resolved["n_train"] == len(tr_idx)
    assert np.isfinite(r["score"]) and len(pd.read_csv(tmp_path / "m/test.csv")) == len(test_ids)


def test_members_of_the_stages():
    cfg = resolve(
        {
            "backbones": ["resnet18", {"name": "effnet", "model": "efficientnet_b0"}],
            "pseudo_labels": {"rounds": 2},
            "distill": {"student": {"name": "resnet10t", "epochs": 3}},
        }
    )
    m = members(cfg, backbone_settings(cfg))
    assert list(m) == [
        "resnet18",
        "effnet",
        "resnet18@r2",
        "effnet@r2",
        "resnet18@r3",
        "effnet@r3",
        "resnet10t@student",
    ]
    assert m["effnet@r3"]["model"] == "efficientnet_b0" and m["resnet18@r2"]["model"] == "resnet18"
    assert m["resnet10t@student"]["epochs"] == 3 and m["resnet10t@student"]["model"] == "resnet10t"
    assert [teacher_of(x) for x in ("resnet18", "resnet18@r3", "resnet10t@student")] == [None, "round3", "student"]


@pytest.mark.workflow
def test_a_round_and_a_student_in_the_dag_and_a_kernel_of_the_student(tmp_path):
    write_csv_images_competition(tmp_path / "tiny.zip", n_test=12)
    cfg = tiny_config(
        tmp_path / "tiny.zip",
        mlflow={"enabled": True, "live": False},
        pseudo_labels={"rounds": 1, "min_confidence": 0.0, "soft": True},
        distill={"student": {"name": "test_convnext", "img_size": 32}},
        kaggle={"owner": "someone", "enable_gpu": False, "kernel_models": "student"},
    )
    plan = run_snakemake(tmp_path, cfg, "-n", "--quiet", "rules")
    counts = dict(
        line.split()[:2]
        for line in plan.stdout.splitlines()
        if line.split()[:1] and line.split()[0] in ("train", "pseudo_labels", "distill_targets")
    )
    assert counts == {"train": "6", "pseudo_labels": "2", "distill_targets": "2"}, plan.stdout
    run_snakemake(tmp_path, cfg)
    res = tmp_path / "results/tiny"
    scores = json.loads((res / "scores.json").read_text())
    assert set(scores["models"]) == {"test_resnet", "test_resnet@r2", "test_convnext@student"}
    # fold k of round two learnt from fold k's round-one model only: the honest teacher
    for k in range(2):
        labelled = pd.read_csv(res / f"teachers/round2/fold{k}.csv")
        first = pd.read_csv(res / f"models/test_resnet/fold{k}/test.csv")
        assert np.allclose(labelled.filter(like="p").to_numpy(), first.filter(like="p").to_numpy())
    # the CV table and MLflow hold a row / a run per stage
    assert "test_resnet@r2" in (res / "report/cv_table.html").read_text()
    store = mlflow_db(tmp_path / "results/mlflow.db")
    runs = {name: status for name, (status, _) in store.items()}
    cv = {k: v[-1] for k, v in store["ensemble"][1].items()}
    assert {
        "test_resnet@r2-fold0",
        "test_convnext@student-fold1",
        "pseudo_labels-round2-fold0",
        "distill_targets-fold1",
        "ensemble",
    } <= set(runs) and set(runs.values()) == {"FINISHED"}, runs
    assert cv["cv_test_resnet_r2"] == pytest.approx(scores["models"]["test_resnet@r2"]["cv"])
    run_snakemake(tmp_path, cfg, "--cores", "2", "kernel")
    ds = res / "kernel-dataset"
    assert sorted(p.name for p in (ds / "models").iterdir()) == ["test_convnext@student"]
    inp = tmp_path / "input"
    with zipfile.ZipFile(tmp_path / "tiny.zip") as zf:
        zf.extractall(inp / "tiny")
    shutil.copytree(ds, inp / "tiny-kagglecv")
    meta = json.loads((res / "kernel/kernel-metadata.json").read_text())
    env = {**os.environ, "KAGGLE_INPUT": str(inp), "KAGGLE_WORKING": str(tmp_path / "out")}
    r = subprocess.run(
        [sys.executable, str(res / "kernel" / meta["code_file"])],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    sub = pd.read_csv(tmp_path / "out/submission.csv", dtype=str)
    student = np.mean(
        [
            pd.read_csv(res / f"models/test_convnext@student/fold{k}/test.csv").filter(like="p").to_numpy()
            for k in range(2)
        ],
        axis=0,
    )
    classes = json.loads((res / "prepared/meta.json").read_text())["classes"]
    assert sub["label"].tolist() == [str(classes[i]) for i in student.argmax(1)]  # the student alone
