"""The typed readers of the results files (kagglecv.core.results): every key prepare and the ensemble step write,
the defaults of keys older versions did not write, and the dict written again byte for byte."""

from __future__ import annotations

import json

import pytest

from kagglecv.core.errors import InputError
from kagglecv.core.files import write_json
from kagglecv.core.results import Ensemble, ModelRecord, PreparedMeta, Scores
from kagglecv.core.tasks import Task
from kagglecv.data import prepare

from helpers import write_csv_images_competition


def test_meta_json_reads_every_key_prepare_writes(tmp_path):
    write_csv_images_competition(tmp_path / "c.zip")
    written = prepare.prepare(tmp_path / "c.zip", tmp_path / "prep")
    meta = PreparedMeta.read(tmp_path / "prep" / "meta.json")
    assert meta.to_dict() == written and list(meta.to_dict()) == list(written)  # every key, in the writer's order
    write_json(tmp_path / "again.json", meta.to_dict())
    assert (tmp_path / "again.json").read_bytes() == (tmp_path / "prep" / "meta.json").read_bytes()
    assert meta.task == "multiclass" and meta.classes == ["0", "1", "2"] and meta.image_shape == [8, 8, 1]
    assert meta.submission["format"] == "label" and meta.data["layout"] == "csv_images" and meta.cache["bytes"]
    assert PreparedMeta.of(written) == meta and PreparedMeta.of(meta) is meta  # prepare's dict, or the instance
    assert Task.of(written) == Task.of(meta) == Task("multiclass", ("0", "1", "2"))


def test_an_older_meta_json_reads_with_the_defaults():
    old = PreparedMeta.of(
        {
            "layout": "csv_images",
            "id_column": "id",
            "target_columns": ["label"],
            "classes": [0, 1],
            "task": "binary",
            "n_train": 4,
            "n_test": 2,
            "image_shape": [8, 8, 1],
            "submission": None,
            "some_later_key": 1,
        }
    )
    assert old.submission == {} and old.archives == [] and old.meta_columns == [] and old.data == {}
    assert old.group_column is None and old.decode == {} and old.cache == {}
    assert Task.of(old).classes == ("0", "1")  # class names as text
    assert PreparedMeta.of({}).task == "multiclass" and Task.of({}) == Task("multiclass")


def test_scores_json_reads_and_writes_again():
    d = {
        "metric": "qwk",
        "greater_is_better": True,
        "task": "ordinal",
        "models": {"a": {"cv": 0.5, "folds": [0.4, 0.6]}},
        "methods": {"mean": {"cv": 0.5, "folds": [0.4, 0.6], "params": None}},
        "ensemble": {
            "method": "mean",
            "chosen_by": "single model",
            "members": ["a"],
            "cv": 0.5,
            "params": None,
            "thresholds": [0.5, 1.5],
        },
    }
    scores = Scores.of(d)
    assert scores.ensemble.thresholds == [0.5, 1.5] and scores.n_folds("a") == 2
    assert scores.to_dict() == d and list(scores.to_dict()["ensemble"]) == list(d["ensemble"])
    without = Ensemble.of({**d["ensemble"], "thresholds": None})
    assert "thresholds" not in without.to_dict()  # written only where the metric needs them
    bare = Scores.of({"ensemble": {"thresholds": [0.3]}})  # what a hand-made scores.json holds
    assert bare.task == "multiclass" and bare.greater_is_better and bare.methods == {} and bare.ensemble.members == []
    assert Scores.of(scores) is scores and Scores.of({}).ensemble == Ensemble()


def test_a_missing_results_file_is_one_line(tmp_path):
    for reader, name in ((PreparedMeta, "meta.json"), (Scores, "scores.json")):
        with pytest.raises(InputError, match=rf"^{tmp_path / name}: not found; run the workflow first") as e:
            reader.read(tmp_path / name)
        assert "\n" not in str(e.value)
    fold = tmp_path / "models" / "a" / "fold0"
    fold.mkdir(parents=True)
    (fold / "config.json").write_text(json.dumps({"backbone": "a"}))
    with pytest.raises(InputError, match=r"fold0/metrics.json: not found; run the workflow first"):
        ModelRecord.read(fold)
    (fold / "metrics.json").write_text(json.dumps({"score": 0.5}))
    assert ModelRecord.read(fold) == ModelRecord(config={"backbone": "a"}, metrics={"score": 0.5})
