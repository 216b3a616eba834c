"""Miniature competitions of every task kind, shipped as Kaggle ships them, with held-out labels to score.

Images are Fashion-MNIST (Debian's dataset-fashion-mnist; scikit-learn's digits when it is missing); each
competition derives its target from the garment class, so there is something to learn:

  planet-mini            train.csv image_name,tags (space-separated)      multilabel   f2_samples
  plant-pathology-mini   train.csv image_id + one 0/1 column per label    multilabel   mean_column_auc
  pawpularity-mini       train.csv Id,Eyes,Face,Pawpularity (1-100)       regression   rmse
  aptos-mini             train.csv id_code,diagnosis (grades 0-4)         ordinal      qwk
  isic-mini              train.csv image_name,patient_id,target           binary, grouped by patient   roc_auc

`make_task_competition(slug, zip_path, solution_path)` writes the zip (train.csv, train/, test/,
sample_submission.csv) and the solution (the submission's columns, true values); `score_submission` scores a
submission as Kaggle would, and `trivial_submission` is the constant prediction a model has to beat.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from kagglecv.core.files import write_csv
from kagglecv.data.demo import write_competition

FASHION = Path("/usr/share/datasets/fashion-mnist")
# Per Fashion-MNIST class: T-shirt, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot
TAGS = [
    "top short_sleeve",
    "bottom",
    "top long_sleeve warm",
    "dress",
    "top long_sleeve warm outer",
    "footwear open",
    "top long_sleeve",
    "footwear",
    "accessory",
    "footwear warm",
]
DISEASE = {"healthy": (0, 2, 4, 6), "multiple_diseases": (1, 3), "rust": (5, 7, 9), "scab": (8,)}
PAWPULARITY = [30, 60, 20, 80, 40, 10, 50, 90, 70, 100]
GRADE = [0, 2, 0, 3, 1, 4, 1, 4, 2, 3]


@dataclass(frozen=True)
class TaskDemo:
    metric: str
    task: str
    group_column: str | None = None


DEMOS = {
    "planet-mini": TaskDemo("f2_samples", "multilabel"),
    "plant-pathology-mini": TaskDemo("mean_column_auc", "multilabel"),
    "pawpularity-mini": TaskDemo("rmse", "regression"),
    "aptos-mini": TaskDemo("qwk", "ordinal"),
    "isic-mini": TaskDemo("roc_auc", "binary", "patient_id"),
}


def _idx(path: Path) -> np.ndarray:
    raw = gzip.open(path, "rb").read()
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(raw[3]))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * raw[3]).reshape(shape)


def load_images(n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train classes, test images, test classes): uint8 N x H x W, classes 0-9."""
    if (FASHION / "train-images-idx3-ubyte.gz").exists():
        return (
            _idx(FASHION / "train-images-idx3-ubyte.gz")[:n_train],
            _idx(FASHION / "train-labels-idx1-ubyte.gz")[:n_train].astype(int),
            _idx(FASHION / "t10k-images-idx3-ubyte.gz")[:n_test],
            _idx(FASHION / "t10k-labels-idx1-ubyte.gz")[:n_test].astype(int),
        )
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = np.round(d.images * (255 / 16)).astype(np.uint8), d.target.astype(int)
    n_test = min(n_test, len(x) // 4)
    n_train = min(n_train, len(x) - n_test)
    return x[:n_train], y[:n_train], x[n_train : n_train + n_test], y[n_train : n_train + n_test]


def targets(slug: str, classes: np.ndarray, rng: np.random.Generator, ids: list[str]) -> pd.DataFrame:
    """The competition's target columns (train.csv's and the solution's) for images of these classes."""
    if slug == "planet-mini":
        return pd.DataFrame({"tags": [TAGS[c] for c in classes]})
    if slug == "plant-pathology-mini":
        return pd.DataFrame({name: np.isin(classes, members).astype(int) for name, members in DISEASE.items()})
    if slug == "pawpularity-mini":
        value = np.clip(np.round(np.take(PAWPULARITY, classes) + rng.normal(0, 6, len(classes))), 1, 100)
        return pd.DataFrame(
            {
                "Eyes": rng.integers(0, 2, len(classes)),
                "Face": rng.integers(0, 2, len(classes)),
                "Pawpularity": value.astype(int),
            }
        )
    if slug == "aptos-mini":
        return pd.DataFrame({"diagnosis": np.take(GRADE, classes)})
    if slug == "isic-mini":  # bags are the rare positive class; each patient has six photos
        return pd.DataFrame(
            {"patient_id": [f"IP_{k // 6:04d}" for k in range(len(ids))], "target": (classes == 8).astype(int)}
        )
    raise KeyError(f"unknown task demo {slug!r}; one of {sorted(DEMOS)}")


def columns(slug: str) -> tuple[str, list[str]]:
    """(id column, submission target columns)."""
    return {
        "planet-mini": ("image_name", ["tags"]),
        "plant-pathology-mini": ("image_id", list(DISEASE)),
        "pawpularity-mini": ("Id", ["Pawpularity"]),
        "aptos-mini": ("id_code", ["diagnosis"]),
        "isic-mini": ("image_name", ["target"]),
    }[slug]


def make_task_competition(
    slug: str, zip_path: str | Path, solution_path: str | Path, n_train: int = 2400, n_test: int = 600, seed: int = 0
) -> None:
    rng = np.random.default_rng(seed)
    xtr, ytr, xte, yte = load_images(n_train, n_test)
    id_col, target_cols = columns(slug)
    train_ids = [f"{slug[:4]}_train_{i:05d}" for i in range(len(xtr))]
    test_ids = [f"{slug[:4]}_test_{i:05d}" for i in range(len(xte))]
    train = pd.concat([pd.DataFrame({id_col: train_ids}), targets(slug, ytr, rng, train_ids)], axis=1)
    solution = pd.concat([pd.DataFrame({id_col: test_ids}), targets(slug, yte, rng, test_ids)[target_cols]], axis=1)
    sample = solution.copy()
    for c in target_cols:  # Kaggle's templates hold a placeholder answer
        sample[c] = train[c].iloc[0]
    images = {f"train/{i}.png": x for i, x in zip(train_ids, xtr)} | {f"test/{i}.png": x for i, x in zip(test_ids, xte)}
    write_competition(zip_path, train, images, sample)
    write_csv(solution_path, solution)


def score_submission(slug: str, submission: pd.DataFrame, solution: pd.DataFrame) -> float:
    """The competition metric of a submission against the held-out solution, as Kaggle's scorer computes it."""
    id_col, target_cols = columns(slug)
    if list(submission.columns) != list(solution.columns):
        raise ValueError(f"submission columns {list(submission.columns)} are not {list(solution.columns)}")
    sub = solution[[id_col]].merge(submission, on=id_col, how="left", validate="one_to_one")
    metric = DEMOS[slug].metric
    if metric == "f2_samples":
        names = sorted({t for v in solution["tags"] for t in str(v).split()})

        def flags(col):
            return np.array([[n in str(v).split() for n in names] for v in col], dtype=int)

        return float(
            skm.fbeta_score(
                flags(solution["tags"]), flags(sub["tags"].fillna("")), beta=2, average="samples", zero_division=0
            )
        )
    if metric == "mean_column_auc":
        return float(np.mean([skm.roc_auc_score(solution[c].astype(int), sub[c].astype(float)) for c in target_cols]))
    truth, pred = solution[target_cols[0]].astype(float), sub[target_cols[0]].astype(float)
    if metric == "rmse":
        return float(np.sqrt(skm.mean_squared_error(truth, pred)))
    if metric == "qwk":
        return float(skm.cohen_kappa_score(truth.astype(int), pred.astype(int), weights="quadratic"))
    return float(skm.roc_auc_score(truth.astype(int), pred))


def trivial_submission(slug: str, train: pd.DataFrame, sample: pd.DataFrame) -> pd.DataFrame:
    """The best constant answer known from the training labels: every image gets the same prediction."""
    id_col, target_cols = columns(slug)
    out = sample.copy()
    if slug == "planet-mini":  # the tags most images carry: F2 rewards recall, so every tag above 20%
        share = pd.Series([t for v in train["tags"] for t in v.split()]).value_counts() / len(train)
        out["tags"] = " ".join(share[share >= 0.2].index)
    elif slug == "pawpularity-mini":
        out["Pawpularity"] = float(train["Pawpularity"].astype(float).mean())
    elif slug == "aptos-mini":
        out["diagnosis"] = int(train["diagnosis"].astype(int).mode()[0])
    else:  # AUC metrics: a constant probability (the prior) scores 0.5
        for c in target_cols:
            out[c] = float(train[c].astype(float).mean())
    return out
