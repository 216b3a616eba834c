"""Teachers: the targets of pseudo-label rounds and of the distilled student, made so that CV stays honest.

A row of a teacher file (results/<competition>/teachers/<round2|student>/fold<k>.csv) is a training target the
fold-k job learns from besides its labelled rows:

  source  "test": a test image, labelled by the teachers; "train": a training row whose label is mixed with the
          teachers' out-of-fold prediction (distillation)
  id      the test or training id
  weight  its loss weight
  p0...   the target, on the task's scale: probabilities (classification, multilabel) or values (numeric)

Honesty: fold k's held-out rows must not reach fold k's model through labels derived from themselves. So a test
image's target is the mean prediction of the previous round's fold-k models only (trained without fold k's rows),
and a training row's teacher target is the members' mean out-of-fold prediction for it, made by models that never
saw it; only training rows of fold k's job (the other folds) get one. Plain means, never a fitted blend: a stacker
fitted on every fold's labels would carry fold k's labels into fold k's targets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kagglecv.config.schema import default_value
from kagglecv.core.errors import InputError
from kagglecv.core.files import read_table, write_csv
from kagglecv.core.tasks import CLASSIFICATION, NUMERIC, Task


def prob_frame(path) -> tuple[pd.DataFrame, list[str]]:
    df = read_table(path)
    return df, [c for c in df.columns if c.startswith("p") and c[1:].isdigit()]


def mean_predictions(items: list) -> pd.DataFrame:
    """id and p columns: the mean of the members' predictions (files or frames; same ids, same order)."""
    frames = [
        prob_frame(p)
        if not isinstance(p, pd.DataFrame)
        else (p, [c for c in p.columns if c.startswith("p") and c[1:].isdigit()])
        for p in items
    ]
    base, cols = frames[0]
    for df, c in frames[1:]:
        if c != cols or df["id"].tolist() != base["id"].tolist():
            raise InputError("the members' predictions differ in ids or columns; rerun their training jobs")
    out = base[["id"]].copy()
    out[cols] = np.mean([df[cols].to_numpy(dtype=float) for df, _ in frames], axis=0)
    return out


def confidence(task: Task, p: np.ndarray) -> np.ndarray:
    """How sure the teachers are of each row: the top probability, every label's least sure side, or 1 (values)."""
    if task.kind in CLASSIFICATION:
        return p.max(1)
    if task.kind == "multilabel":
        return np.maximum(p, 1 - p).min(1)
    return np.ones(len(p))


def decided(task: Task, p: np.ndarray) -> np.ndarray:
    """Hard targets: the argmax class one-hot, labels above 0.5; values stay values."""
    if task.kind in CLASSIFICATION:
        return np.eye(p.shape[1])[p.argmax(1)]
    if task.kind == "multilabel":
        return (p > 0.5).astype(float)
    return p


def pseudo_labels(
    test_predictions: list,
    task: Task,
    out_csv,
    *,
    min_confidence: float = default_value("pseudo_labels.min_confidence"),
    soft: bool = default_value("pseudo_labels.soft"),
    weight: float = default_value("pseudo_labels.weight"),
) -> pd.DataFrame:
    """The test images a pseudo-label round of one fold learns from: the mean of that fold's previous-round
    predictions, the rows the teachers are sure enough of, as probabilities or decisions."""
    mean = mean_predictions(test_predictions)
    cols = [c for c in mean.columns if c != "id"]
    p = mean[cols].to_numpy(dtype=float)
    keep = confidence(task, p) >= min_confidence if task.kind not in NUMERIC else np.ones(len(p), bool)
    targets = p if soft or task.kind in NUMERIC else decided(task, p)
    out = pd.DataFrame({"source": "test", "id": mean["id"][keep].to_numpy(), "weight": float(weight)})
    out[cols] = targets[keep]
    write_csv(out_csv, out)
    return out


def distill_targets(
    member_oofs: list[list],
    fold_tests: list,
    folds: pd.DataFrame,
    fold: int,
    task: Task,
    out_csv,
    *,
    label_weight: float = default_value("distill.label_weight"),
) -> pd.DataFrame:
    """The student of fold `fold`: its training rows (the other folds) with targets mixing the true label
    (label_weight) and the members' mean out-of-fold prediction, and the test images labelled by the members'
    fold-`fold` models. member_oofs: per member, its oof.csv of every fold."""
    oof = mean_predictions([combined_oof(paths, folds) for paths in member_oofs])
    cols = [c for c in oof.columns if c != "id"]
    train = folds[folds["fold"] != fold]
    teacher = oof.set_index("id").loc[train["id"], cols].to_numpy(dtype=float)
    truth = true_targets(task, train, len(cols))
    train_rows = pd.DataFrame({"source": "train", "id": train["id"].to_numpy(), "weight": 1.0})
    train_rows[cols] = label_weight * truth + (1 - label_weight) * teacher
    test = mean_predictions(fold_tests)
    test_rows = pd.DataFrame({"source": "test", "id": test["id"].to_numpy(), "weight": 1.0})
    test_rows[cols] = test[cols].to_numpy(dtype=float)
    out = pd.concat([train_rows, test_rows], ignore_index=True)
    write_csv(out_csv, out)
    return out


def combined_oof(paths: list, folds: pd.DataFrame) -> pd.DataFrame:
    """One member's out-of-fold predictions of every fold, in folds.csv's row order."""
    oof = pd.concat([prob_frame(p)[0] for p in paths], ignore_index=True).drop(columns=["y", "fold"], errors="ignore")
    return folds[["id"]].merge(oof, on="id", how="left", validate="one_to_one")


def true_targets(task: Task, rows: pd.DataFrame, width: int) -> np.ndarray:
    """The labelled rows' targets as the teacher's columns hold them: one-hot classes, 0/1 labels, values."""
    y = task.targets(rows)
    if task.kind in CLASSIFICATION:
        return np.eye(width)[y]
    return y.reshape(len(rows), -1).astype(float)


def read_teacher(path, folds: pd.DataFrame, tr_idx: np.ndarray, test_ids, task: Task):
    """What a fold's job learns from its teacher file: (targets of its training rows, or None when the teachers
    give none; the test rows' positions in the test cache, their targets, their weights). Targets are on the
    task's scale: the caller standardises numeric ones as it does the labels."""
    df = read_table(path)
    cols = [c for c in df.columns if c.startswith("p") and c[1:].isdigit()]
    train = df[df["source"] == "train"].set_index("id")
    train_targets = None
    if len(train):
        ids = folds["id"].to_numpy()[tr_idx]
        missing = sorted(set(ids) - set(train.index))
        if missing:
            raise InputError(f"{path}: no teacher target for training id {missing[0]!r}; rerun the teacher step")
        train_targets = train.loc[ids, cols].to_numpy(dtype=np.float32)
    test = df[df["source"] == "test"]
    position = {i: k for k, i in enumerate(test_ids)}
    unknown = [i for i in test["id"] if i not in position]
    if unknown:
        raise InputError(f"{path}: test id {unknown[0]!r} is not in the prepared test set; rerun the teacher step")
    rows = np.array([position[i] for i in test["id"]], dtype=np.int64)
    return (train_targets, rows, test[cols].to_numpy(dtype=np.float32), test["weight"].to_numpy(dtype=np.float32))
