"""Fold assignment per task kind, with and without groups (folds.make_folds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from kagglecv.core.errors import InputError
from kagglecv.data import folds


def _write(tmp_path, label, y=None, group=None) -> str:
    df = pd.DataFrame({"id": [f"i{k}" for k in range(len(label))], "label": label, "y": label if y is None else y})
    if group is not None:
        df["group"] = group
    path = tmp_path / "train.csv"
    df.to_csv(path, index=False)
    return str(path)


def _make(tmp_path, train, n_folds=5, seed=0, task="multiclass"):
    return folds.make_folds(train, tmp_path / "folds.csv", n_folds, seed, task=task)


def _raises(tmp_path, train, match, **kw):
    with pytest.raises(InputError, match=match) as e:
        _make(tmp_path, train, **kw)
    assert "\n" not in str(e.value) and not (tmp_path / "folds.csv").exists()


# ---------------------------------------------------------------- groups


def test_groups_never_cross_folds_and_stay_stratified(tmp_path):
    rng = np.random.default_rng(0)
    group = [f"p{k}" for k in rng.integers(0, 60, 600)]
    y = rng.integers(0, 3, 600)
    df = _make(tmp_path, _write(tmp_path, y, y, group), seed=3)
    assert (df.groupby("group")["fold"].nunique() == 1).all()
    # the assignment is StratifiedGroupKFold's on the class
    expected = np.zeros(600, dtype=int)
    for k, (_, val) in enumerate(StratifiedGroupKFold(5, shuffle=True, random_state=3).split(y, y, group)):
        expected[val] = k
    assert (df["fold"].to_numpy() == expected).all()
    written = pd.read_csv(tmp_path / "folds.csv", dtype={"group": str})
    assert list(written.columns) == ["id", "label", "y", "group", "fold"] and written["group"].tolist() == group


@pytest.mark.parametrize("task", ["multilabel", "regression", "ordinal"])
def test_groups_never_cross_folds_for_every_task(tmp_path, task):
    rng = np.random.default_rng(1)
    if task == "multilabel":
        label = [" ".join(t for t in "abcd" if rng.random() < 0.3) for _ in range(400)]
    elif task == "regression":
        label = [f"{v:.2f}" for v in rng.normal(50, 10, 400)]
    else:
        label = [str(v) for v in rng.integers(0, 5, 400)]
    df = _make(tmp_path, _write(tmp_path, label, group=[f"g{k % 50}" for k in range(400)]), task=task)
    assert (df.groupby("group")["fold"].nunique() == 1).all() and set(df["fold"]) == set(range(5))


def test_a_row_without_a_group_is_refused(tmp_path):
    train = _write(tmp_path, [0, 1] * 10, group=["p1"] * 5 + [""] + [f"p{k}" for k in range(14)])
    _raises(tmp_path, train, r"^data.group_column: id 'i5' has no group; fill it in or drop the row$")


def test_fewer_groups_than_folds_are_refused(tmp_path):
    train = _write(tmp_path, [0, 1] * 10, group=[f"p{k % 3}" for k in range(20)])
    _raises(tmp_path, train, r"^data.group_column: 3 distinct group\(s\), fewer than folds=5; use fewer folds")


def test_a_group_larger_than_a_fold_is_refused(tmp_path):
    group = ["p17"] * 900 + [f"q{k}" for k in range(100)]
    train = _write(tmp_path, [0, 1] * 500, group=group)
    _raises(
        tmp_path,
        train,
        r"^data.group_column: group 'p17' has 900 of 1000 rows, more than one fold \(200\) "
        r"can hold; use fewer folds",
    )


# ---------------------------------------------------------------- stratification per task


def test_multilabel_folds_spread_every_label(tmp_path):
    rng = np.random.default_rng(2)
    rates = {"clear": 0.7, "road": 0.3, "water": 0.15, "bloom": 0.03, "blow_down": 0.0}
    label = [" ".join(t for t, r in rates.items() if rng.random() < r) for _ in range(500)]
    label[:2] = ["blow_down", "blow_down road"]  # rarer than folds: allowed, it cannot be in every fold
    label[2] = ""  # a row without labels
    df = _make(tmp_path, _write(tmp_path, label), task="multilabel")
    assert df["fold"].value_counts().tolist() == [100] * 5
    tags = df["label"].str.split()
    for tag in ("clear", "road", "water", "bloom"):
        has = tags.apply(lambda t, tag=tag: tag in t)
        share = has.groupby(df["fold"]).mean()
        assert set(df.loc[has, "fold"]) == set(range(5)), tag  # in every fold, so in every training fold
        assert share.max() - share.min() <= 0.03, (tag, share.tolist())
    written = pd.read_csv(tmp_path / "folds.csv", keep_default_na=False)
    assert written["y"].tolist() == label  # multilabel's y is the tags, kept as written


def test_regression_folds_balance_the_values(tmp_path):
    rng = np.random.default_rng(3)
    y = np.clip(rng.normal(38, 20, 500), 1, 100)  # like Pawpularity
    df = _make(tmp_path, _write(tmp_path, [f"{v:.3f}" for v in y]), task="regression")
    deciles = pd.qcut(df["y"], 10, labels=False)
    assert (pd.crosstab(df["fold"], deciles) == 10).all().all()  # every tenth of the range equally in each fold
    means = df.groupby("fold")["y"].mean()
    assert (means - df["y"].mean()).abs().max() < 0.06 * df["y"].std()  # shuffled KFold: ~0.13 on average
    assert folds._value_bins(np.arange(23.0), 5).max() == 3  # 23 rows: 4 bins of at least 5 rows


def test_ordinal_folds_stratify_grades(tmp_path):
    label = [str(k % 5) for k in range(100)]
    df = _make(tmp_path, _write(tmp_path, label, [float(v) for v in label]), task="ordinal")
    assert (pd.crosstab(df["fold"], df["y"]) == 4).all().all()


def test_classes_smaller_than_folds_are_refused_for_classes_and_grades(tmp_path):
    train = _write(tmp_path, ["x"] * 5 + ["rare"] * 2, [0] * 5 + [1] * 2)
    _raises(tmp_path, train, r"class 'rare' has 2 sample\(s\), fewer than folds=3", n_folds=3)
    train = _write(tmp_path, ["0"] * 5 + ["4"] * 2, [0.0] * 5 + [4.0] * 2)
    _raises(tmp_path, train, r"class '4' has 2 sample\(s\), fewer than folds=3", n_folds=3, task="ordinal")


def test_old_callers_and_bad_tasks(tmp_path):
    train = _write(tmp_path, [k % 2 for k in range(40)])
    a = folds.make_folds(train, tmp_path / "a.csv", 4, 7)  # positional, as before tasks: multiclass
    assert (pd.crosstab(a["fold"], a["y"]) == 5).all().all()
    _raises(tmp_path, train, r"^task: unknown task 'ranking'", task="ranking")
    _raises(tmp_path, _write(tmp_path, ["a", "b"]), r"2 row\(s\), fewer than folds=5", task="multilabel")
    _raises(
        tmp_path, _write(tmp_path, ["1.5", "x"] * 5), r"y 'x' is not a number for a regression task", task="regression"
    )
