"""The stand-ins of MLE-bench's 19 image competitions (tests/standins/) and our graders: each generator writes the
public files MLE-bench's prepare.py writes (names, columns, id formats, archives), each grader computes its metric
on hand-worked cases, refuses what MLE-bench's grader refuses, and scores a perfect submission best."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from standins import SLUGS, InvalidSubmission, grade, lower_is_better, make, prior_score, sample_score
from standins.common import read_tfrecord
from standins.graders import average_precision_at_k, prior_submission, read

N_TRAIN, N_TEST = 40, 12
HAS_7Z = True
try:
    import py7zr  # noqa: F401
except ImportError:
    HAS_7Z = False


def build(slug: str, dest: Path, **kw):
    if slug == "invasive-species-monitoring" and not HAS_7Z and not kw.get("unpack_inner_archives"):
        pytest.skip("py7zr is not installed: the invasive-species stand-in's train.7z/test.7z cannot be written")
    return make(slug, dest, n_train=N_TRAIN, n_test=N_TEST, **kw)


def header(path: Path) -> list[str]:
    return list(pd.read_csv(path, nrows=0).columns)


def zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()


def stems(folder: Path, pattern: str = "*") -> set[str]:
    return {p.stem for p in folder.glob(pattern) if p.is_file()}


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file()}


RANZCR_11 = [
    "ETT - Abnormal",
    "ETT - Borderline",
    "ETT - Normal",
    "NGT - Abnormal",
    "NGT - Borderline",
    "NGT - Incompletely Imaged",
    "NGT - Normal",
    "CVC - Abnormal",
    "CVC - Borderline",
    "CVC - Normal",
    "Swan Ganz Catheter Present",
]
PET = [
    "Subject Focus",
    "Eyes",
    "Face",
    "Near",
    "Action",
    "Accessory",
    "Group",
    "Collage",
    "Human",
    "Occlusion",
    "Info",
    "Blur",
]
LEAF_FEATURES = [f"{k}{i}" for k in ("margin", "shape", "texture") for i in range(1, 65)]

# slug -> (public top-level entries, {public CSV: header}, answers file name, answers header)
LAYOUT = {
    "aerial-cactus-identification": (
        {"train.csv", "train.zip", "test.zip", "sample_submission.csv"},
        {"train.csv": ["id", "has_cactus"], "sample_submission.csv": ["id", "has_cactus"]},
        "test.csv",
        ["id", "has_cactus"],
    ),
    "aptos2019-blindness-detection": (
        {"train.csv", "test.csv", "train_images", "test_images", "sample_submission.csv"},
        {
            "train.csv": ["id_code", "diagnosis"],
            "test.csv": ["id_code"],
            "sample_submission.csv": ["id_code", "diagnosis"],
        },
        "test.csv",
        ["id_code", "diagnosis"],
    ),
    "cassava-leaf-disease-classification": (
        {
            "train.csv",
            "sample_submission.csv",
            "train_images",
            "test_images",
            "train_tfrecords",
            "test_tfrecords",
            "label_num_to_disease_map.json",
        },
        {"train.csv": ["image_id", "label"], "sample_submission.csv": ["image_id", "label"]},
        "test.csv",
        ["image_id", "label"],
    ),
    "dog-breed-identification": (
        {"labels.csv", "train", "test", "sample_submission.csv"},
        {"labels.csv": ["id", "breed"]},
        "test.csv",
        None,
    ),
    "dogs-vs-cats-redux-kernels-edition": (
        {"train.zip", "test.zip", "sample_submission.csv"},
        {"sample_submission.csv": ["id", "label"]},
        "answers.csv",
        ["id", "label"],
    ),
    "histopathologic-cancer-detection": (
        {"train_labels.csv", "train", "test", "sample_submission.csv"},
        {"train_labels.csv": ["id", "label"], "sample_submission.csv": ["id", "label"]},
        "answers.csv",
        ["id", "label"],
    ),
    "invasive-species-monitoring": (
        {"train_labels.csv.zip", "sample_submission.csv.zip", "train.7z", "test.7z"},
        {"train_labels.csv.zip": ["name", "invasive"], "sample_submission.csv.zip": ["name", "invasive"]},
        "answers.csv",
        ["name", "invasive"],
    ),
    "leaf-classification": (
        {"train.csv", "test.csv", "images", "sample_submission.csv"},
        {"train.csv": ["id", "species"] + LEAF_FEATURES, "test.csv": ["id"] + LEAF_FEATURES},
        "test.csv",
        None,
    ),
    "paddy-disease-classification": (
        {"train.csv", "train_images", "test_images", "sample_submission.csv"},
        {"train.csv": ["image_id", "label", "variety", "age"], "sample_submission.csv": ["image_id", "label"]},
        "test.csv",
        ["image_id", "label", "variety", "age"],
    ),
    "petfinder-pawpularity-score": (
        {"train.csv", "test.csv", "train", "test", "sample_submission.csv"},
        {
            "train.csv": ["Id"] + PET + ["Pawpularity"],
            "test.csv": ["Id"] + PET,
            "sample_submission.csv": ["Id", "Pawpularity"],
        },
        "test.csv",
        ["Id"] + PET + ["Pawpularity"],
    ),
    "plant-pathology-2020-fgvc7": (
        {"train.csv", "test.csv", "images", "sample_submission.csv"},
        {
            "train.csv": ["image_id", "healthy", "multiple_diseases", "rust", "scab"],
            "test.csv": ["image_id"],
            "sample_submission.csv": ["image_id", "healthy", "multiple_diseases", "rust", "scab"],
        },
        "test.csv",
        ["image_id", "healthy", "multiple_diseases", "rust", "scab"],
    ),
    "plant-pathology-2021-fgvc8": (
        {"train.csv", "train_images", "test_images", "sample_submission.csv"},
        {"train.csv": ["image", "labels"], "sample_submission.csv": ["image", "labels"]},
        "answers.csv",
        ["image", "labels"],
    ),
    "plant-seedlings-classification": (
        {"train", "test", "sample_submission.csv"},
        {"sample_submission.csv": ["file", "species"]},
        "answers.csv",
        ["file", "species"],
    ),
    "ranzcr-clip-catheter-line-classification": (
        {"train.csv", "train_annotations.csv", "train", "test", "sample_submission.csv"},
        {
            "train.csv": ["StudyInstanceUID"] + RANZCR_11 + ["PatientID"],
            "train_annotations.csv": ["StudyInstanceUID", "label", "data"],
            "sample_submission.csv": ["StudyInstanceUID"] + RANZCR_11[:9],
        },
        "test.csv",
        ["StudyInstanceUID"] + RANZCR_11 + ["PatientID"],
    ),
    "siim-isic-melanoma-classification": (
        {"train.csv", "test.csv", "jpeg", "train", "test", "tfrecords", "sample_submission.csv"},
        {
            "train.csv": [
                "image_name",
                "patient_id",
                "sex",
                "age_approx",
                "anatom_site_general_challenge",
                "diagnosis",
                "benign_malignant",
                "target",
            ],
            "test.csv": ["image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge"],
            "sample_submission.csv": ["image_name", "target"],
        },
        "test.csv",
        ["image_name", "target"],
    ),
    "whale-categorization-playground": (
        {"train.csv", "train", "test", "sample_submission.csv"},
        {"train.csv": ["Image", "Id"], "sample_submission.csv": ["Image", "Id"]},
        "test.csv",
        ["Image", "Id"],
    ),
    "herbarium-2020-fgvc7": (
        {"nybg2020", "sample_submission.csv"},
        {"sample_submission.csv": ["Id", "Predicted"]},
        "answers.csv",
        ["Id", "Predicted"],
    ),
    "imet-2020-fgvc7": (
        {"train.csv", "labels.csv", "train", "test", "sample_submission.csv"},
        {
            "train.csv": ["id", "attribute_ids"],
            "labels.csv": ["attribute_id", "attribute_name"],
            "sample_submission.csv": ["id", "attribute_ids"],
        },
        "answers.csv",
        ["id", "attribute_ids"],
    ),
    "iwildcam-2019-fgvc6": (
        {"train.csv", "test.csv", "train_images.zip", "test_images.zip", "sample_submission.csv"},
        {
            "train.csv": [
                "category_id",
                "date_captured",
                "file_name",
                "frame_num",
                "id",
                "location",
                "rights_holder",
                "seq_id",
                "seq_num_frames",
                "width",
                "height",
            ],
            "test.csv": [
                "date_captured",
                "file_name",
                "frame_num",
                "id",
                "location",
                "rights_holder",
                "seq_id",
                "seq_num_frames",
                "width",
                "height",
            ],
            "sample_submission.csv": ["Unnamed: 0", "Id", "Category"],
        },
        "answers.csv",
        ["Id", "Category"],
    ),
}


def test_every_competition_has_a_layout_and_a_grader():
    assert sorted(LAYOUT) == sorted(SLUGS) and len(SLUGS) == 19


def file_and_sample_ids(slug: str, pub: Path) -> tuple[set, set]:
    """(the test ids the image files give, as the sample submission spells them; the sample's ids)."""
    sample = (
        read(pub / "sample_submission.csv")
        if (pub / "sample_submission.csv").exists()
        else read(pub / "sample_submission.csv.zip")
    )
    ids = {str(i) for i in sample.iloc[:, 1 if slug == "iwildcam-2019-fgvc6" else 0]}
    files = {
        "aerial-cactus-identification": lambda: set(zip_names(pub / "test.zip")),
        "aptos2019-blindness-detection": lambda: stems(pub / "test_images", "*.png"),
        "cassava-leaf-disease-classification": lambda: names(pub / "test_images"),
        "dog-breed-identification": lambda: stems(pub / "test", "*.jpg"),
        "dogs-vs-cats-redux-kernels-edition": lambda: {Path(n).stem for n in zip_names(pub / "test.zip")},
        "histopathologic-cancer-detection": lambda: stems(pub / "test", "*.tif"),
        "invasive-species-monitoring": lambda: {Path(n).stem for n in _7z_names(pub / "test.7z") if "." in n},
        "leaf-classification": lambda: stems(pub / "images", "*.jpg") - {str(i) for i in read(pub / "train.csv").id},
        "paddy-disease-classification": lambda: names(pub / "test_images"),
        "petfinder-pawpularity-score": lambda: stems(pub / "test", "*.jpg"),
        "plant-pathology-2020-fgvc7": lambda: stems(pub / "images", "Test_*.jpg"),
        "plant-pathology-2021-fgvc8": lambda: names(pub / "test_images"),
        "plant-seedlings-classification": lambda: names(pub / "test"),
        "ranzcr-clip-catheter-line-classification": lambda: stems(pub / "test", "*.jpg"),
        "siim-isic-melanoma-classification": lambda: stems(pub / "jpeg" / "test", "*.jpg"),
        "whale-categorization-playground": lambda: names(pub / "test"),
        "herbarium-2020-fgvc7": lambda: {
            img["id"] for img in json.loads((pub / "nybg2020" / "test" / "metadata.json").read_text())["images"]
        },
        "imet-2020-fgvc7": lambda: stems(pub / "test", "*.png"),
        "iwildcam-2019-fgvc6": lambda: {Path(n).stem for n in zip_names(pub / "test_images.zip")},
    }[slug]()
    return files, ids


def _7z_names(path: Path) -> list[str]:
    import py7zr

    with py7zr.SevenZipFile(path, "r") as z:
        return z.getnames()


@pytest.mark.parametrize("slug", SLUGS)
def test_public_layout(slug, tmp_path):
    s = build(slug, tmp_path)
    top, csvs, answers_name, answers_header = LAYOUT[slug]
    assert {p.name for p in s.folder.iterdir()} == top
    for name, cols in csvs.items():
        assert header(s.folder / name) == cols, name
    assert s.answers == tmp_path / "private" / answers_name
    if answers_header:
        assert header(s.answers) == answers_header
    assert header(s.answers)[0] == s.id_column
    assert set(s.target_columns) <= set(header(s.answers))
    files, ids = file_and_sample_ids(slug, s.folder)
    assert files == ids and len(ids) == N_TEST
    answers = read(s.answers)
    assert set(map(str, answers[s.id_column])) == ids
    assert s.lower_is_better == lower_is_better(slug)


def test_seedlings_and_paddy_class_folders(tmp_path):
    s = build("plant-seedlings-classification", tmp_path / "s")
    folders = {p.name for p in (s.folder / "train").iterdir()}
    assert {"Common Chickweed", "Loose Silky-bent", "Sugar beet"} <= folders
    assert all(p.suffix == ".png" and len(p.stem) == 9 for p in (s.folder / "train").rglob("*.png"))
    assert read(s.sample_submission)["species"].eq("Sugar beet").all()
    p = build("paddy-disease-classification", tmp_path / "p")
    train = read(p.folder / "train.csv")
    for row in train.itertuples():
        assert (p.folder / "train_images" / row.label / row.image_id).is_file()
    assert (p.folder / "sample_submission.csv").read_text().splitlines()[1].endswith(",")  # empty labels


def test_id_formats(tmp_path):
    a = build("aerial-cactus-identification", tmp_path / "a")
    assert all(i.endswith(".jpg") and len(i) == 36 for i in read(a.folder / "train.csv").id)
    assert set(zip_names(a.folder / "train.zip")) == set(read(a.folder / "train.csv").id)  # at the zip root
    d = build("dogs-vs-cats-redux-kernels-edition", tmp_path / "d")
    train = zip_names(d.folder / "train.zip")
    assert {"cat.0.jpg", "dog.0.jpg"} <= set(train) and all("/" not in n for n in train)
    assert read(d.sample_submission).id.tolist() == list(range(1, N_TEST + 1))
    h = build("histopathologic-cancer-detection", tmp_path / "h")
    assert all(len(i) == 40 and "." not in i for i in read(h.folder / "train_labels.csv").id)
    assert Image.open(next((h.folder / "train").glob("*.tif"))).format == "TIFF"
    pp = build("plant-pathology-2020-fgvc7", tmp_path / "pp")
    train = read(pp.folder / "train.csv")
    assert train.image_id.iloc[0].startswith("Train_") and (train.iloc[:, 1:].sum(axis=1) == 1).all()
    assert (pp.folder / "images" / f"{train.image_id.iloc[0]}.jpg").is_file()
    r = build("ranzcr-clip-catheter-line-classification", tmp_path / "r")
    uid = read(r.folder / "train.csv").StudyInstanceUID.iloc[0]
    assert uid.startswith("1.2.826.0.1.3680043.8.498.") and (r.folder / "train" / f"{uid}.jpg").is_file()
    assert Image.open(r.folder / "train" / f"{uid}.jpg").mode == "L"


def test_aptos_sizes_vary_and_leaf_silhouettes(tmp_path):
    a = build("aptos2019-blindness-detection", tmp_path / "a")
    sizes = {Image.open(p).size for p in (a.folder / "train_images").glob("*.png")}
    assert len(sizes) > 5
    leaf = build("leaf-classification", tmp_path / "l")
    img = np.asarray(Image.open(next((leaf.folder / "images").glob("*.jpg"))))
    assert img.ndim == 2 and ((img < 40) | (img > 215)).mean() > 0.9  # black and white
    assert (leaf.folder.parent / "private" / "images").is_dir()


def test_petfinder_range_and_sample(tmp_path):
    s = build("petfinder-pawpularity-score", tmp_path)
    train = read(s.folder / "train.csv")
    assert train.Pawpularity.between(1, 100).all() and train.Pawpularity.dtype.kind == "i"
    sample = read(s.sample_submission)
    assert sample.Pawpularity.between(1, 100).all() and sample.Pawpularity.nunique() > 1


def test_whale_sample_and_new_whale(tmp_path):
    s = build("whale-categorization-playground", tmp_path)
    train = read(s.folder / "train.csv")
    assert train.Id.value_counts().index[0] == "new_whale" and train.Id.str.match(r"^(new_whale|w_[0-9a-f]{7})$").all()
    assert read(s.sample_submission).Id.eq("new_whale w_1287fbc w_98baff9 w_7554f44 w_1eafe46").all()


def test_herbarium_coco_metadata(tmp_path):
    s = build("herbarium-2020-fgvc7", tmp_path)
    meta = json.loads((s.folder / "nybg2020" / "train" / "metadata.json").read_text())
    assert set(meta) == {"annotations", "categories", "images", "info", "licenses", "regions"}
    cats = [c["id"] for c in meta["categories"]]
    assert cats != list(range(len(cats))) and 0 not in cats  # non-contiguous integers
    for ann, img in zip(meta["annotations"], meta["images"]):
        assert ann["image_id"] == img["id"]
        c = ann["category_id"]
        assert img["file_name"] == f"images/{c // 100:03d}/{c % 100:02d}/{img['id']}.jpg"
        assert (s.folder / "nybg2020" / "train" / img["file_name"]).is_file()
    test = json.loads((s.folder / "nybg2020" / "test" / "metadata.json").read_text())
    assert set(test) == {"images", "info", "licenses"}
    assert [i["id"] for i in test["images"]] == [str(k) for k in range(N_TEST)]
    assert test["images"][3]["file_name"] == "images/000/3.jpg"


def test_iwildcam_index_column_and_locations(tmp_path):
    s = build("iwildcam-2019-fgvc6", tmp_path)
    assert (s.folder / "sample_submission.csv").read_text().startswith(",Id,Category\n")
    train, test = read(s.folder / "train.csv"), read(s.folder / "test.csv")
    assert set(train.location).isdisjoint(test.location)
    assert (train.file_name == train.id + ".jpg").all() and 0 in set(train.category_id)


def test_tfrecords_dicom_and_json(tmp_path):
    c = build("cassava-leaf-disease-classification", tmp_path / "c")
    recs = sorted((c.folder / "test_tfrecords").glob("ld_test00-*.tfrec"))
    assert len(recs) == 1 and recs[0].name == f"ld_test00-{N_TEST}.tfrec"
    records = read_tfrecord(recs[0])
    assert len(records) == N_TEST
    first_id = read(c.sample_submission).image_id.iloc[0]
    assert first_id.encode() in records[0]
    assert json.loads((c.folder / "label_num_to_disease_map.json").read_text())["4"] == "Healthy"
    s = build("siim-isic-melanoma-classification", tmp_path / "s")
    dcm = next((s.folder / "train").glob("ISIC_*.dcm"))
    assert dcm.read_bytes()[128:132] == b"DICM"
    assert {p.name.split("-")[0] for p in (s.folder / "tfrecords").iterdir()} == {
        "train00",
        "train01",
        "train02",
        "test00",
    }
    test = read(s.folder / "test.csv")
    assert test.image_name.str.match(r"^ISIC_\d{7}$").all()


def test_invasive_archives(tmp_path):
    s = build("invasive-species-monitoring", tmp_path / "a")
    assert zip_names(s.folder / "train_labels.csv.zip") == ["train_labels.csv"]
    assert all(n == "train" or n.startswith("train/") for n in _7z_names(s.folder / "train.7z"))
    u = (
        make("invasive-species-monitoring", tmp_path / "u", n_train=N_TRAIN, n_test=N_TEST, unpack_inner_archives=True)
        if HAS_7Z
        else None
    )
    if u is not None:
        assert {p.name for p in u.folder.iterdir()} == {"train_labels.csv", "sample_submission.csv", "train", "test"}


def test_unpacked_and_zipped_variants(tmp_path):
    a = build("aerial-cactus-identification", tmp_path / "a", unpack_inner_archives=True, zipped=True)
    assert {p.name for p in a.folder.iterdir()} == {"train.csv", "train", "test", "sample_submission.csv"}
    assert names(a.folder / "train") == set(read(a.folder / "train.csv").id)
    assert a.data == tmp_path / "a" / "aerial-cactus-identification.zip"
    inside = set(zip_names(a.data))
    assert "train.csv" in inside and f"train/{read(a.folder / 'train.csv').id.iloc[0]}" in inside
    w = build("iwildcam-2019-fgvc6", tmp_path / "w", unpack_inner_archives=True)
    assert (w.folder / "test_images").is_dir() and not (w.folder / "test_images.zip").exists()


def test_deterministic_from_seed(tmp_path):
    a = make("whale-categorization-playground", tmp_path / "a", n_train=N_TRAIN, n_test=N_TEST, seed=3)
    b = make("whale-categorization-playground", tmp_path / "b", n_train=N_TRAIN, n_test=N_TEST, seed=3)
    c = make("whale-categorization-playground", tmp_path / "c", n_train=N_TRAIN, n_test=N_TEST, seed=4)
    assert (a.folder / "train.csv").read_bytes() == (b.folder / "train.csv").read_bytes()
    assert a.answers.read_bytes() == b.answers.read_bytes()
    assert {p.name: p.read_bytes() for p in (a.folder / "test").iterdir()} == {
        p.name: p.read_bytes() for p in (b.folder / "test").iterdir()
    }
    assert (a.folder / "train.csv").read_bytes() != (c.folder / "train.csv").read_bytes()


@pytest.mark.parametrize(
    "slug",
    [
        "cassava-leaf-disease-classification",
        "ranzcr-clip-catheter-line-classification",
        "whale-categorization-playground",
    ],
)
def test_labels_are_learnable_from_pixels(slug, tmp_path):
    """A linear model on the pixels beats the most common label: the stand-ins are learnable."""
    from sklearn.linear_model import LogisticRegression

    s = make(slug, tmp_path, n_train=150, n_test=40)
    folder = {
        "cassava-leaf-disease-classification": ("train_images", "test_images"),
        "ranzcr-clip-catheter-line-classification": ("train", "test"),
        "whale-categorization-playground": ("train", "test"),
    }[slug]
    target = s.target_columns[0] if slug != "ranzcr-clip-catheter-line-classification" else "NGT - Normal"
    ext = ".jpg" if slug == "ranzcr-clip-catheter-line-classification" else ""

    def xy(sub, frame):
        x = [
            np.asarray(Image.open(s.folder / sub / f"{i}{ext}").convert("RGB").resize((16, 16)), float).ravel()
            for i in frame[s.id_column]
        ]
        return np.array(x) / 255, frame[target].astype(str).to_numpy()

    xtr, ytr = xy(folder[0], s.train_targets)
    xte, yte = xy(folder[1], read(s.answers))
    acc = (LogisticRegression(max_iter=2000).fit(xtr, ytr).predict(xte) == yte).mean()
    majority = (yte == pd.Series(ytr).value_counts().index[0]).mean()
    assert acc > majority + 0.1, (acc, majority)


# ---------------------------------------------------------------- graders: hand-worked values


def test_map_at_5_by_hand():
    assert average_precision_at_k({"a"}, ["a", "b", "c", "d", "e"]) == 1
    assert average_precision_at_k({"a"}, ["b", "a", "c", "d", "e"]) == 0.5
    assert average_precision_at_k({"a"}, ["b", "c", "d", "e", "f", "a"]) == 0  # the sixth guess is not read
    assert average_precision_at_k({"a"}, ["a", "a"]) == 1  # a repeated guess counts once
    answers = pd.DataFrame({"Image": ["i1.jpg", "i2.jpg", "i3.jpg"], "Id": ["w_a", "new_whale", "w_b"]})
    sub = pd.DataFrame(
        {"Image": ["i3.jpg", "i1.jpg", "i2.jpg"], "Id": ["w_x w_y w_z w_q w_r w_b", "w_x w_a", "new_whale w_a"]}
    )
    assert grade("whale-categorization-playground", sub, answers) == pytest.approx((0 + 0.5 + 1) / 3)


def test_qwk_by_hand():
    answers = pd.DataFrame({"id_code": ["a", "b", "c", "d"], "diagnosis": [0, 0, 1, 1]})
    sub = pd.DataFrame({"id_code": ["d", "c", "b", "a"], "diagnosis": [1, 1, 1, 0]})
    # observed [[1,1],[0,2]], expected [[.5,1.5],[.5,1.5]], weights off-diagonal 1: 1 - 1/2
    assert grade("aptos2019-blindness-detection", sub, answers) == pytest.approx(0.5)
    answers = pd.DataFrame({"id_code": ["a", "b", "c"], "diagnosis": [0, 1, 2]})
    sub = pd.DataFrame({"id_code": ["a", "b", "c"], "diagnosis": [0, 2, 2]})
    assert grade("aptos2019-blindness-detection", sub, answers) == pytest.approx(1 - 1 / 5)


def test_macro_f1_by_hand():
    answers = pd.DataFrame({"Id": [0, 1, 2, 3], "Predicted": [3, 3, 117, 1520]})
    sub = pd.DataFrame({"Id": [0, 1, 2, 3], "Predicted": [3, 117, 117, 3]})
    # class 3: P 1/2 R 1/2 -> 1/2; class 117: P 1/2 R 1 -> 2/3; class 1520: 0
    assert grade("herbarium-2020-fgvc7", sub, answers) == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    answers = answers.rename(columns={"Predicted": "Category"})
    sub = sub.rename(columns={"Predicted": "Category"}).assign(extra=1)  # other columns are ignored
    assert grade("iwildcam-2019-fgvc6", sub, answers) == pytest.approx(7 / 18)


def test_micro_f1_by_hand():
    answers = pd.DataFrame({"image": ["a", "b", "c"], "labels": ["scab", "scab frog_eye_leaf_spot", "healthy"]})
    sub = pd.DataFrame({"image": ["a", "b", "c"], "labels": ["scab", "scab rust", None]})
    # rust is no class of the answers (ignored): 2 predicted, both right; 4 true -> P 1, R 1/2
    assert grade("plant-pathology-2021-fgvc8", sub, answers) == pytest.approx(2 / 3)
    answers = pd.DataFrame(
        {
            "file": ["a.png", "b.png", "c.png", "d.png"],
            "species": ["Sugar beet", "Black-grass", "Sugar beet", "Common Chickweed"],
        }
    )
    sub = answers.assign(species=["Sugar beet", "Sugar beet", "Sugar beet", "Common Chickweed"])
    assert grade("plant-seedlings-classification", sub, answers) == pytest.approx(0.75)
    answers = pd.DataFrame({"id": ["x", "y"], "attribute_ids": ["1 5", "2 3 7"]})
    sub = pd.DataFrame({"id": ["x", "y"], "attribute_ids": ["1 5 7", "2"]})  # TP 3, FP 1, FN 2
    assert grade("imet-2020-fgvc7", sub, answers) == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))


def test_mean_column_auc_by_hand():
    answers = pd.DataFrame(
        {
            "image_id": ["T1", "T2", "T3", "T4"],
            "healthy": [1, 0, 0, 0],
            "multiple_diseases": [0, 0, 0, 1],
            "rust": [0, 1, 0, 0],
            "scab": [0, 0, 1, 0],
        }
    )
    sub = pd.DataFrame(
        {
            "image_id": ["T1", "T2", "T3", "T4"],
            "healthy": [0.9, 0.1, 0.2, 0.3],
            "multiple_diseases": [0.1, 0.2, 0.3, 0.4],
            "rust": [0.5, 0.4, 0.6, 0.1],
            "scab": [0.5, 0.5, 0.5, 0.5],
        }
    )
    assert grade("plant-pathology-2020-fgvc7", sub, answers) == pytest.approx((1 + 1 + 1 / 3 + 0.5) / 4)
    answers = pd.DataFrame({"image_name": ["a", "b", "c", "d"], "target": [0, 0, 1, 1]})
    sub = answers.assign(target=[0.1, 0.4, 0.35, 0.8])
    assert grade("siim-isic-melanoma-classification", sub, answers) == pytest.approx(0.75)


def test_log_loss_by_hand_with_clipping():
    answers = pd.DataFrame({"id": [1, 2], "label": [1, 0]})
    sub = pd.DataFrame({"id": [2, 1], "label": [1.0, 0.8]})  # a certain wrong answer: clipped at machine epsilon
    eps = np.finfo(float).eps
    assert grade("dogs-vs-cats-redux-kernels-edition", sub, answers) == pytest.approx(
        (-math.log(0.8) - math.log(eps)) / 2
    )
    answers = pd.DataFrame({"id": ["a", "b"], "beagle": [1, 0], "boxer": [0, 0], "pug": [0, 1]})
    sub = pd.DataFrame({"id": ["a", "b"], "beagle": [0.7, 0.25], "boxer": [0.2, 0.25], "pug": [0.1, 0.5]})
    assert grade("dog-breed-identification", sub, answers) == pytest.approx((-math.log(0.7) - math.log(0.5)) / 2)
    assert grade("leaf-classification", sub, answers) == pytest.approx((-math.log(0.7) - math.log(0.5)) / 2)


def test_rmse_and_accuracy_by_hand():
    answers = pd.DataFrame({"Id": ["a", "b", "c"], "Pawpularity": [10, 20, 30]})
    sub = pd.DataFrame({"Id": ["c", "b", "a"], "Pawpularity": [27, 20, 12]})
    assert grade("petfinder-pawpularity-score", sub, answers) == pytest.approx(math.sqrt(13 / 3))
    answers = pd.DataFrame({"image_id": ["1.jpg", "2.jpg", "3.jpg", "4.jpg"], "label": [0, 3, 3, 4]})
    assert grade("cassava-leaf-disease-classification", answers.assign(label=[0, 3, 1, 1]), answers) == 0.5
    answers = pd.DataFrame({"image_id": ["1.jpg", "2.jpg"], "label": ["blast", "normal"]})
    assert grade("paddy-disease-classification", answers.assign(label=["blast", None]), answers) == 0.5


# ---------------------------------------------------------------- graders: refusals, perfect, sample and prior


def perfect(s) -> pd.DataFrame:
    """The answers reformatted as a submission: the sample's rows and columns, the true targets."""
    sample, answers = read(s.sample_submission), read(s.answers).set_index(s.id_column)
    for c in s.target_columns:
        sample[c] = sample[s.id_column].map(answers[c])
    return sample


@pytest.mark.parametrize("slug", SLUGS)
def test_perfect_scores_best_and_beats_sample_and_prior(slug, tmp_path):
    s = build(slug, tmp_path)
    best = grade(slug, perfect(s), s.answers)
    if lower_is_better(slug):
        assert best == pytest.approx(0, abs=1e-9)
        assert best < prior_score(slug, s) and best < sample_score(slug, s)
    else:
        assert best == pytest.approx(1)
        assert best > prior_score(slug, s) and best > sample_score(slug, s)


@pytest.mark.parametrize("slug", SLUGS)
def test_refuses_missing_ids_and_columns(slug, tmp_path):
    s = build(slug, tmp_path)
    good = perfect(s)
    with pytest.raises(InvalidSubmission):
        grade(slug, good.iloc[1:], s.answers)  # a test id left out
    swapped = good.copy()
    swapped.loc[0, s.id_column] = swapped.loc[1, s.id_column]  # one id twice, another missing
    with pytest.raises(InvalidSubmission):
        grade(slug, swapped, s.answers)
    with pytest.raises(InvalidSubmission):
        grade(slug, good.drop(columns=[s.target_columns[0]]), s.answers)


def test_refuses_what_each_grader_refuses(tmp_path):
    pet = build("petfinder-pawpularity-score", tmp_path / "pet")
    sub = perfect(pet).astype({"Pawpularity": float})
    sub.loc[0, "Pawpularity"] = 100.5
    with pytest.raises(InvalidSubmission, match="1-100"):
        grade(pet.slug, sub, pet.answers)
    cactus = build("aerial-cactus-identification", tmp_path / "c")
    with pytest.raises(InvalidSubmission, match="probabilities"):
        grade(cactus.slug, perfect(cactus).assign(has_cactus=2.0), cactus.answers)
    with pytest.raises(InvalidSubmission, match="numeric"):
        grade(cactus.slug, perfect(cactus).assign(has_cactus="yes"), cactus.answers)
    dvc = build("dogs-vs-cats-redux-kernels-edition", tmp_path / "d")
    with pytest.raises(InvalidSubmission):
        grade(dvc.slug, perfect(dvc).assign(label=1.2), dvc.answers)
    dog = build("dog-breed-identification", tmp_path / "dog")
    unnormalised = perfect(dog)
    unnormalised[dog.target_columns] = 0.5
    with pytest.raises(InvalidSubmission, match="sum to one"):
        grade(dog.slug, unnormalised, dog.answers)
    assert grade(dog.slug, perfect(dog).assign(extra=0.0), dog.answers) == pytest.approx(0, abs=1e-9)  # ignored
    leaf = build("leaf-classification", tmp_path / "leaf")
    with pytest.raises(InvalidSubmission, match="no other"):
        grade(leaf.slug, perfect(leaf).assign(extra=0.0), leaf.answers)  # leaf wants exactly its columns
    whale = build("whale-categorization-playground", tmp_path / "w")
    with pytest.raises(InvalidSubmission):
        grade(whale.slug, perfect(whale).assign(extra=1), whale.answers)
    herb = build("herbarium-2020-fgvc7", tmp_path / "h")
    with pytest.raises(InvalidSubmission, match="integers"):
        grade(herb.slug, perfect(herb).assign(Predicted="Poa annua"), herb.answers)
    pp = build("plant-pathology-2020-fgvc7", tmp_path / "pp")
    with pytest.raises(InvalidSubmission):
        grade(pp.slug, perfect(pp).assign(extra=0), pp.answers)  # exactly its five columns
    ranzcr = build("ranzcr-clip-catheter-line-classification", tmp_path / "r")
    assert grade(ranzcr.slug, perfect(ranzcr).assign(**{"CVC - Normal": 0.0}), ranzcr.answers) == 1.0  # ignored


def test_imet_single_integer_tags_are_ungradeable(tmp_path):
    """MLE-bench reads the submission with pandas: a column of one integer per row becomes numbers, which its
    grader cannot split into tags, so such a submission gets no score even as a CSV file."""
    s = build("imet-2020-fgvc7", tmp_path)
    path = tmp_path / "sub.csv"
    perfect(s).assign(attribute_ids="3").to_csv(path, index=False)
    with pytest.raises(InvalidSubmission, match="split"):
        grade(s.slug, path, s.answers)
    perfect(s).assign(attribute_ids="3 5").to_csv(path, index=False)
    assert 0 < grade(s.slug, path, s.answers) < 1


def test_sample_and_prior_reference_values(tmp_path):
    dog = build("dog-breed-identification", tmp_path / "dog")
    assert sample_score(dog.slug, dog) == pytest.approx(math.log(len(dog.target_columns)))
    for slug in (
        "aerial-cactus-identification",
        "ranzcr-clip-catheter-line-classification",
        "plant-pathology-2020-fgvc7",
    ):
        s = build(slug, tmp_path / slug)
        assert sample_score(slug, s) == 0.5 and prior_score(slug, s) == 0.5  # constants rank nothing
    paddy = build("paddy-disease-classification", tmp_path / "paddy")
    assert sample_score(paddy.slug, paddy) == 0  # the sample's labels are empty
    whale = build("whale-categorization-playground", tmp_path / "w")
    assert prior_submission(whale.slug, whale).Id.iloc[0].split()[0] == "new_whale"
    pet = build("petfinder-pawpularity-score", tmp_path / "pet")
    answers = read(pet.answers).Pawpularity
    mean = pet.train_targets.Pawpularity.mean()
    assert prior_score(pet.slug, pet) == pytest.approx(float(np.sqrt(((answers - mean) ** 2).mean())))
