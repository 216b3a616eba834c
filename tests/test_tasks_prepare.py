"""prepare recognises each task from the files as Kaggle ships them, and refuses targets it cannot read with one
line naming the column and the value; the config refuses a metric that does not suit a stated task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kagglecv.config.data import DataConfig
from kagglecv.config.schema import load_schema, resolve
from kagglecv.core.errors import InputError
from kagglecv.data import folds as folds_mod
from kagglecv.data import prepare
from kagglecv.data.demo import write_competition
from kagglecv.scoring.submission import make_submission

from helpers import digits_images


def competition(path: Path, train: pd.DataFrame, sample_targets: dict, id_col: str = "id") -> Path:
    """A csv_images zip: `train` (ids in id_col) with one digits image per row, four test images."""
    imgs, _ = digits_images(20, classes=tuple(range(10)))
    test_ids = [f"te{i}" for i in range(4)]
    images = {f"train/{i}.png": img for i, img in zip(train[id_col], imgs)}
    images |= {f"test/{i}.png": img for i, img in zip(test_ids, imgs)}
    return write_competition(path, train, images, pd.DataFrame({id_col: test_ids, **sample_targets}))


def ids(n=40):
    return [f"tr{i:03d}" for i in range(n)]


def run(tmp_path, train, sample_targets, metric="accuracy", task="auto", id_col="id", **data):
    zp = competition(tmp_path / "c.zip", train, sample_targets, id_col)
    return prepare.prepare(zp, tmp_path / "out", DataConfig(**data), task=task, metric=metric)


def test_space_separated_tags_are_multilabel(tmp_path):
    tags = ["clear primary", "haze", "primary water road", "clear"] * 10
    meta = run(
        tmp_path,
        pd.DataFrame({"image_name": ids(), "tags": tags}),
        {"tags": "clear"},
        "f2_samples",
        id_col="image_name",
    )
    assert meta["task"] == "multilabel" and meta["classes"] == ["clear", "haze", "primary", "road", "water"]
    train = pd.read_csv(tmp_path / "out" / "train.csv", keep_default_na=False)
    assert train["label"].tolist()[:3] == tags[:3] and train["y"].tolist()[:3] == [2, 1, 3]


def test_one_hot_columns_matching_the_template_are_multilabel_in_template_order(tmp_path):
    flags = np.eye(4, dtype=int)[np.arange(40) % 4]
    cols = ["healthy", "multiple_diseases", "rust", "scab"]
    train = pd.concat([pd.DataFrame({"image_id": ids()}), pd.DataFrame(flags, columns=cols)], axis=1)
    meta = run(tmp_path, train, {c: 0.25 for c in cols}, "mean_column_auc", id_col="image_id")
    assert meta["task"] == "multilabel" and meta["classes"] == cols
    assert pd.read_csv(tmp_path / "out" / "train.csv")["label"].tolist()[:4] == cols


def test_one_hot_value_that_is_not_0_or_1_names_column_and_id(tmp_path):
    flags = np.eye(2, dtype=int)[np.arange(40) % 2]
    train = pd.concat([pd.DataFrame({"id": ids()}), pd.DataFrame(flags, columns=["a", "b"])], axis=1)
    train.loc[7, "b"] = 2
    with pytest.raises(InputError, match=r"column 'b' holds '2' for id 'tr007'; one column per label takes 0 or 1"):
        run(tmp_path, train, {"a": 0.5, "b": 0.5}, "mean_column_auc")


@pytest.mark.parametrize(
    "metric,task", [("rmse", "regression"), ("mae", "regression"), ("qwk", "ordinal"), ("accuracy", "multiclass")]
)
def test_integer_targets_follow_the_metric(tmp_path, metric, task):
    meta = run(tmp_path, pd.DataFrame({"id": ids(), "score": [i % 5 for i in range(40)]}), {"score": 0}, metric)
    assert meta["task"] == task


def test_fractional_numbers_are_regression_and_keep_their_value(tmp_path):
    values = [round(0.37 * i, 2) for i in range(40)]
    meta = run(tmp_path, pd.DataFrame({"id": ids(), "v": values}), {"v": 0}, "rmse")
    assert meta["task"] == "regression" and meta["classes"] == []
    assert np.allclose(pd.read_csv(tmp_path / "out" / "train.csv")["y"], values)


@pytest.mark.parametrize("bad", ["", "nan", "high"])
def test_a_numeric_target_with_a_hole_or_text_names_the_row(tmp_path, bad):
    values = [str(i) for i in range(40)]
    values[5] = bad
    train = pd.DataFrame({"id": ids(), "Pawpularity": values})
    match = (
        "no value in column 'Pawpularity'"
        if bad == ""
        else (rf"column 'Pawpularity': metric rmse needs a number in every row, but id 'tr005' has '{bad}'")
    )
    with pytest.raises(InputError, match=match):
        run(tmp_path, train, {"Pawpularity": 0}, "rmse")


def test_metric_that_does_not_suit_the_recognised_task_stops_prepare(tmp_path):
    with pytest.raises(InputError, match="metric: rmse does not fit a multilabel task"):
        run(tmp_path, pd.DataFrame({"id": ids(), "tags": ["a b", "b"] * 20}), {"tags": "a"}, "rmse")


def test_metric_that_does_not_suit_a_stated_task_is_a_config_error():
    schema = load_schema()
    with pytest.raises(InputError, match="metric: qwk does not fit a multilabel task"):
        resolve({"task": "multilabel", "metric": "qwk"}, schema)
    assert resolve({"task": "regression", "metric": "rmse"}, schema)["task"] == "regression"


def test_group_column_is_kept_and_checked(tmp_path):
    train = pd.DataFrame({"id": ids(), "patient_id": [f"p{i // 4}" for i in range(40)], "target": [0, 1] * 20})
    meta = run(tmp_path, train, {"target": 0.5}, "roc_auc", group_column="patient_id")
    assert meta["task"] == "binary" and meta["group_column"] == "patient_id"
    out = pd.read_csv(tmp_path / "out" / "train.csv", dtype=str)
    assert out["group"].tolist()[:5] == ["p0", "p0", "p0", "p0", "p1"]
    folds = folds_mod.make_folds(tmp_path / "out" / "train.csv", tmp_path / "folds.csv", 3, 0, task="binary")
    assert folds.groupby("group")["fold"].nunique().max() == 1


def test_missing_group_column_names_it(tmp_path):
    train = pd.DataFrame({"id": ids(), "target": [0, 1] * 20})
    with pytest.raises(InputError, match="no group column 'patient_id'.*fix data.group_column"):
        run(tmp_path, train, {"target": 0.5}, "roc_auc", group_column="patient_id")


def test_a_group_larger_than_a_fold_is_refused(tmp_path):
    train = pd.DataFrame(
        {"id": ids(), "patient_id": ["big"] * 30 + [f"p{i}" for i in range(10)], "target": [0, 1] * 20}
    )
    run(tmp_path, train, {"target": 0.5}, "roc_auc", group_column="patient_id")
    with pytest.raises(InputError, match="group 'big'"):
        folds_mod.make_folds(tmp_path / "out" / "train.csv", tmp_path / "folds.csv", 3, 0, task="binary")


def _ensemble_files(tmp_path, meta, preds, thresholds=None):
    prepared = tmp_path / "prepared"
    prepared.mkdir(exist_ok=True)
    (prepared / "meta.json").write_text(json.dumps(meta))
    sample = pd.DataFrame({"id": ["b", "a"], **{c: "0" for c in meta["target_columns"]}})
    sample.to_csv(prepared / "sample_submission.csv", index=False)
    test = pd.DataFrame({"id": ["a", "b"], **{f"p{k}": preds[:, k] for k in range(preds.shape[1])}})
    test.to_csv(tmp_path / "ensemble_test.csv", index=False)
    (tmp_path / "scores.json").write_text(json.dumps({"ensemble": {"thresholds": thresholds}}))
    return make_submission(
        tmp_path / "ensemble_test.csv",
        prepared,
        prepared / "sample_submission.csv",
        meta.get("metric", "accuracy"),
        tmp_path / "sub.csv",
        tmp_path / "scores.json",
    )


@pytest.mark.parametrize(
    "meta,metric,preds,thresholds,expected",
    [
        (
            {"task": "multilabel", "classes": ["clear", "haze", "road"], "target_columns": ["tags"], "id_column": "id"},
            "f2_samples",
            [[0.9, 0.1, 0.3], [0.2, 0.6, 0.25]],
            [0.5, 0.5, 0.2],
            ["haze road", "clear road"],
        ),
        (
            {"task": "ordinal", "classes": ["0", "1", "2"], "target_columns": ["diagnosis"], "id_column": "id"},
            "qwk",
            [[0.2], [1.7]],
            [0.9, 1.6],
            ["2", "0"],
        ),
        (
            {"task": "regression", "classes": [], "target_columns": ["Pawpularity"], "id_column": "id"},
            "rmse",
            [[31.5], [77.25]],
            None,
            ["77.25", "31.5"],
        ),
    ],
)
def test_submission_formats_per_task(tmp_path, meta, metric, preds, thresholds, expected):
    out = _ensemble_files(tmp_path, {**meta, "metric": metric}, np.array(preds, dtype=float), thresholds)
    column = meta["target_columns"][0]
    assert out["id"].tolist() == ["b", "a"]  # the template's order
    written = pd.read_csv(tmp_path / "sub.csv", dtype=str, keep_default_na=False)
    assert written[column].tolist() == expected
