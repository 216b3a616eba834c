"""Any Kaggle image competition read right the first time: the 19 image competitions of MLE-bench, as stand-ins in
their public layouts (tests/standins), read by prepare with nothing but their metric; what a submission row holds;
the metrics they are graded with, each against a hand-computed case; `kagglecv inspect`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from kagglecv.config.data import DataConfig
from kagglecv.core.errors import InputError
from kagglecv.core.tasks import Task, join_tags, split_tags
from kagglecv.data.prepare import prepare
from kagglecv.scoring import metrics
from kagglecv.scoring.submission import submission_frame

from helpers import REPO
from standins import SLUGS, make

METRIC = {
    slug: yaml.safe_load((REPO / "configs" / f"{slug}.yaml").read_text()).get("metric", "accuracy") for slug in SLUGS
}
# slug -> (layout, task, submission format, a few facts of meta.json)
EXPECTED = {
    "aerial-cactus-identification": ("csv_images", "binary", "probability"),
    "aptos2019-blindness-detection": ("csv_images", "ordinal", "label"),
    "cassava-leaf-disease-classification": ("csv_images", "multiclass", "label"),
    "dog-breed-identification": ("csv_images", "multiclass", "class_columns"),
    "dogs-vs-cats-redux-kernels-edition": ("filename_labels", "binary", "probability"),
    "histopathologic-cancer-detection": ("csv_images", "binary", "probability"),
    "invasive-species-monitoring": ("csv_images", "binary", "probability"),
    "leaf-classification": ("csv_images", "multiclass", "class_columns"),
    "paddy-disease-classification": ("csv_images", "multiclass", "label"),
    "petfinder-pawpularity-score": ("csv_images", "regression", "value"),
    "plant-pathology-2020-fgvc7": ("csv_images", "multilabel", "class_columns"),
    "plant-pathology-2021-fgvc8": ("csv_images", "multilabel", "tags"),
    "plant-seedlings-classification": ("folder_per_class", "multiclass", "label"),
    "ranzcr-clip-catheter-line-classification": ("csv_images", "multilabel", "class_columns"),
    "siim-isic-melanoma-classification": ("csv_images", "binary", "probability"),
    "whale-categorization-playground": ("csv_images", "multiclass", "top_k"),
    "herbarium-2020-fgvc7": ("json_annotations", "multiclass", "label"),
    "imet-2020-fgvc7": ("csv_images", "multilabel", "tags"),
    "iwildcam-2019-fgvc6": ("csv_images", "multiclass", "label"),
}


def prepared(slug, tmp_path, zipped=False, **data):
    standin = make(slug, tmp_path / "c", n_train=40, n_test=10, zipped=zipped)
    meta = prepare(standin.data, tmp_path / "p", DataConfig(image_size=16, **data), metric=METRIC[slug])
    return standin, meta


@pytest.mark.parametrize("slug", SLUGS)
def test_each_competition_is_read_from_its_public_folder(tmp_path, slug):
    """The public folder as MLE-bench lays it out (inner archives, index columns and all), with only the metric."""
    standin, meta = prepared(slug, tmp_path)
    assert (meta["layout"], meta["task"], meta["submission"]["format"]) == EXPECTED[slug]
    assert meta["n_train"] == 40 and meta["n_test"] == len(pd.read_csv(standin.sample_submission))
    test = pd.read_csv(tmp_path / "p" / "test.csv", dtype=str, keep_default_na=False)
    assert test["id"].tolist() == pd.read_csv(standin.sample_submission, dtype=str)[meta["id_column"]].tolist()
    assert meta["data"]["layout"] == meta["layout"] and meta["data"]["id_column"] == meta["id_column"]


@pytest.mark.parametrize(
    "slug",
    ["aerial-cactus-identification", "invasive-species-monitoring", "iwildcam-2019-fgvc6", "herbarium-2020-fgvc7"],
)
def test_a_zipped_competition_reads_as_its_folder(tmp_path, slug):
    _, folder = prepared(slug, tmp_path / "folder")
    _, zipped = prepared(slug, tmp_path / "zip", zipped=True)
    assert {k: zipped[k] for k in ("layout", "task", "classes", "submission")} == {
        k: folder[k] for k in ("layout", "task", "classes", "submission")
    }
    for name in ("train.csv", "test.csv", "train_images.npy", "test_images.npy"):
        assert (tmp_path / "zip" / "p" / name).read_bytes() == (tmp_path / "folder" / "p" / name).read_bytes()


def test_class_names_with_spaces_are_classes_not_tags(tmp_path):
    """Plant Seedlings: 'Common Chickweed' and 'Sugar beet' are species; the template shows 'Sugar beet' in every
    row, which is one class, not two tags."""
    _, meta = prepared("plant-seedlings-classification", tmp_path)
    assert meta["task"] == "multiclass" and any(" " in c for c in meta["classes"])
    preds = pd.DataFrame({"id": pd.read_csv(tmp_path / "p" / "test.csv")["id"]})
    for k in range(len(meta["classes"])):
        preds[f"p{k}"] = np.eye(len(meta["classes"]))[np.arange(len(preds)) % len(meta["classes"]), k]
    out = submission_frame(preds, meta, tmp_path / "p" / "sample_submission.csv", "f1_micro", None)
    assert set(out["species"]) <= set(meta["classes"]) and any(" " in s for s in out["species"])


def test_one_hot_columns_named_with_spaces_are_the_labels(tmp_path):
    """RANZCR in MLE-bench's layout: the template's nine columns ('ETT - Abnormal', ...) are the labels, names as
    written; the training CSV's two others are not graded, so not learnt. With Kaggle's template of all eleven,
    all eleven are."""
    standin, meta = prepared("ranzcr-clip-catheter-line-classification", tmp_path / "mle")
    template = pd.read_csv(standin.sample_submission)
    assert meta["classes"] == list(template.columns[1:]) and len(meta["classes"]) == 9  # in template order
    frame = pd.read_csv(tmp_path / "mle" / "p" / "train.csv")
    assert Task.of(meta).targets(frame).shape == (40, 9)  # the names with spaces read back whole
    train = pd.read_csv(standin.folder / "train.csv")
    eleven = [c for c in train.columns if c not in ("StudyInstanceUID", "PatientID")]
    template.assign(**{c: 0 for c in eleven})[["StudyInstanceUID", *eleven]].to_csv(
        standin.folder / "sample_submission.csv", index=False
    )
    meta = prepare(standin.folder, tmp_path / "kaggle", DataConfig(image_size=16), metric="mean_column_auc")
    assert len(meta["classes"]) == 11 and "Swan Ganz Catheter Present" in meta["classes"]


def test_tags_are_named_as_written_and_read_back():
    assert join_tags(["scab", "rust"]) == "scab rust" and split_tags("scab rust") == ["scab", "rust"]
    names = ["ETT - Abnormal", "NGT - Normal"]
    assert split_tags(join_tags(names)) == names and split_tags("") == [] and split_tags(float("nan")) == []


def test_the_label_column_is_the_one_holding_the_templates_classes(tmp_path):
    """Leaf Classification: species among 192 numeric features, the template one column per species."""
    _, meta = prepared("leaf-classification", tmp_path)
    assert meta["data"]["target_column"] == "species" and meta["target_columns"] == meta["classes"]


def test_labels_from_coco_annotations_with_nested_paths(tmp_path):
    standin, meta = prepared("herbarium-2020-fgvc7", tmp_path)
    assert meta["data"]["train_json"] == "nybg2020/train/metadata.json"
    assert meta["data"]["test_json"] == "nybg2020/test/metadata.json"
    assert meta["classes"] == sorted(meta["classes"], key=int)  # category ids as numbers, not contiguous
    with pytest.raises(InputError, match="nope.json: not found; fix data.train_json"):
        prepare(
            standin.folder,
            tmp_path / "q",
            DataConfig(layout="json_annotations", train_json="nope.json"),
            metric="f1_macro",
        )


def test_a_templates_leading_index_column_is_kept_and_the_id_is_the_next(tmp_path):
    """iWildCam as MLE-bench writes it: ',Id,Category' (pandas' index first); the target is train.csv's
    category_id, named after the template's Category."""
    _, meta = prepared("iwildcam-2019-fgvc6", tmp_path)
    assert meta["id_column"] == "Id" and meta["target_columns"] == ["Category"]
    assert meta["data"]["target_column"] == "category_id"
    preds = pd.DataFrame({"id": pd.read_csv(tmp_path / "p" / "test.csv", dtype=str)["id"]})
    for k in range(len(meta["classes"])):
        preds[f"p{k}"] = 1.0 / len(meta["classes"])
    out = submission_frame(preds, meta, tmp_path / "p" / "sample_submission.csv", "f1_macro", None)
    assert list(out.columns) == ["", "Id", "Category"]  # the header as the template spells it


def test_a_label_csv_beside_class_folders(tmp_path):
    """Paddy: train.csv plus train_images/<label>/<image_id>: the images are found below their folder."""
    _, meta = prepared("paddy-disease-classification", tmp_path)
    assert meta["data"]["train_dir"] == "train_images" and meta["layout"] == "csv_images"


def test_top_k_submission_and_map_at_k(tmp_path):
    _, meta = prepared("whale-categorization-playground", tmp_path)
    assert meta["submission"] == {"format": "top_k", "top_k": 5, "range": None}
    k = len(meta["classes"])
    ids = pd.read_csv(tmp_path / "p" / "test.csv", dtype=str)["id"]
    probs = np.tile(np.linspace(1, 0.1, k), (len(ids), 1))
    preds = pd.DataFrame(probs, columns=[f"p{j}" for j in range(k)]).assign(id=ids)
    out = submission_frame(preds, meta, tmp_path / "p" / "sample_submission.csv", "map@5", None)
    assert (out["Id"] == " ".join(meta["classes"][:5])).all()


def test_a_value_is_clipped_to_the_targets_range(tmp_path):
    _, meta = prepared("petfinder-pawpularity-score", tmp_path)
    lo, hi = meta["submission"]["range"]
    ids = pd.read_csv(tmp_path / "p" / "test.csv", dtype=str)["id"]
    preds = pd.DataFrame({"id": ids, "p0": np.linspace(lo - 50, hi + 50, len(ids))})
    out = submission_frame(preds, meta, tmp_path / "p" / "sample_submission.csv", "rmse", None)
    values = out["Pawpularity"].astype(float)
    assert values.min() == lo and values.max() == hi
    _, meta = prepared("petfinder-pawpularity-score", tmp_path / "set", target_range=[1, 100])
    assert meta["submission"]["range"] == [1.0, 100.0]


def test_settings_override_what_was_recognised(tmp_path):
    _, meta = prepared("plant-seedlings-classification", tmp_path, submission="top_k", top_k=2)
    assert meta["submission"] == {"format": "top_k", "top_k": 2, "range": None}
    standin = make("imet-2020-fgvc7", tmp_path / "imet", n_train=40, n_test=10)
    meta = prepare(standin.folder, tmp_path / "q", DataConfig(image_size=16, tags=False), metric="f1_micro")
    assert meta["task"] == "multiclass"  # each tag set its own class, as asked


# ---------------------------------------------------------------- the metrics, against hand-computed cases


def test_map_at_k_by_hand():
    # ranks of the true class: 1st (1), 3rd (1/3), absent from the top 2 (0)
    p = np.array([[0.6, 0.3, 0.1], [0.5, 0.3, 0.2], [0.5, 0.4, 0.1]])
    assert metrics.score("map@5", [0, 2, 2], p) == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)
    assert metrics.score("map@2", [0, 2, 2], p) == pytest.approx(1 / 3)
    metrics.check_metric("map@5", "multiclass")
    with pytest.raises(InputError, match="map@5 does not fit a regression task"):
        metrics.check_metric("map@5", "regression")


def test_macro_f1_over_many_classes_by_hand():
    # 1000 classes, 4 rows, row 2 (class 2) predicted as class 3; classes absent from truth and prediction
    # do not count
    p = np.zeros((4, 1000))
    p[[0, 1, 2, 3], [0, 1, 3, 3]] = 1
    # by hand: class 3 has tp 1, fp 1 -> F1 2/3; classes 0, 1 -> 1; class 2 -> 0: (1 + 1 + 0 + 2/3) / 4
    assert metrics.score("f1_macro", [0, 1, 2, 3], p) == pytest.approx((1 + 1 + 0 + 2 / 3) / 4)


def test_mean_column_auc_qwk_log_loss_rmse_by_hand():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p = np.array([[0.9, 0.2], [0.1, 0.8], [0.6, 0.3], [0.4, 0.1]])
    # column 0: positives 0.9, 0.6 above negatives 0.1, 0.4 -> 1; column 1: positives 0.8, 0.3 vs 0.2, 0.1 -> 1
    assert metrics.score("mean_column_auc", y, p) == pytest.approx(1.0)
    p[2, 1] = 0.15  # one positive below one negative (0.2): 3 of 4 pairs -> 0.75
    assert metrics.score("mean_column_auc", y, p) == pytest.approx((1 + 0.75) / 2)
    # QWK on grades 0..2: truth [0, 1, 2], decided [0, 2, 2]: observed one disagreement of distance 1
    grades = np.array([[0.0], [2.0], [2.0]])
    o = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1]]) / 3
    e = np.outer([1, 1, 1], [1, 0, 2]) / 9
    w = np.array([[(i - j) ** 2 / 4 for j in range(3)] for i in range(3)])
    assert metrics.score("qwk", [0, 1, 2], grades, grades=[0, 1, 2]) == pytest.approx(1 - (w * o).sum() / (w * e).sum())
    # log loss clips at 1e-15: a certain wrong answer costs -log(1e-15) = 34.54, not infinity
    assert metrics.score("log_loss", [0, 1], np.array([[0.0, 1.0], [0.0, 1.0]])) == pytest.approx(
        -np.log(1e-15) / 2, rel=1e-6
    )
    assert metrics.score("rmse", [1, 2, 3], np.array([[1], [2], [5]])) == pytest.approx(np.sqrt(4 / 3))


# ---------------------------------------------------------------- kagglecv inspect


def test_inspect_says_what_was_recognised_and_the_line_to_change_it(tmp_path):
    standin = make("whale-categorization-playground", tmp_path / "c", n_train=30, n_test=8)
    r = subprocess.run(
        [sys.executable, "-m", "kagglecv", "inspect", str(standin.folder), "--config", "metric=map@5"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines()}
    assert "csv_images" in rows["layout"] and "# data.layout: csv_images" in rows["layout"]
    assert "top_k (k=5)" in rows["submission"] and "# data.submission: top_k" in rows["submission"]
    assert "column 'Id'" in r.stdout and "multiclass" in rows["task"] and "new_whale" in rows["task"]
    bad = subprocess.run(
        [sys.executable, "-m", "kagglecv", "inspect", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert bad.returncode == 1 and bad.stderr.strip().startswith("ERROR: ") and len(bad.stderr.splitlines()) == 1
    assert not any(p.name.startswith("kagglecv-inspect") for p in tmp_path.iterdir())


def test_an_image_path_column_names_nested_files(tmp_path):
    """data.image_column: the training CSV names each image's path below the folder (ids that are not file names);
    the test side is found by id as always."""
    from kagglecv.data.demo import write_competition

    rng = np.random.default_rng(0)
    imgs = {f"a{k}": rng.integers(0, 255, (8, 8), dtype=np.uint8) for k in range(6)}
    train = pd.DataFrame(
        {"id": list(imgs), "file": [f"batch{k % 2}/img{k}.png" for k in range(6)], "label": ["x", "y"] * 3}
    )
    images = {f"train/{f}": imgs[i] for i, f in zip(train["id"], train["file"])}
    images |= {"test/t0.png": imgs["a0"], "test/t1.png": imgs["a1"]}
    write_competition(tmp_path / "c.zip", train, images, pd.DataFrame({"id": ["t0", "t1"], "label": "x"}))
    meta = prepare(tmp_path / "c.zip", tmp_path / "p", DataConfig(image_column="file", target_column="label"))
    assert meta["n_train"] == 6 and meta["classes"] == ["x", "y"]
    with pytest.raises(InputError, match="no image column 'path'"):
        prepare(tmp_path / "c.zip", tmp_path / "q", DataConfig(image_column="path", target_column="label"))
