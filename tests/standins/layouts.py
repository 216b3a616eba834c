"""Stand-ins of MLE-bench's image-classification competitions: `make(slug, dest)` writes `dest/public/` (exactly the
files, names, columns and id formats MLE-bench's prepare.py gives a competitor) and `dest/private/` (the answers
its grader reads), tiny and learnable (see common.py). This module holds the first ten; layouts_more.py the rest.

Each generator's docstring lists what its public folder holds; tests/test_standins.py checks it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .common import (
    Standin,
    class_split,
    distinct_ints,
    draw,
    fresh,
    hex_ids,
    image_bytes,
    one_hot,
    save,
    tf_example,
    unpack_inner,
    write_7z,
    write_csv,
    write_tfrecord,
    zip_folder_files,
    zip_whole,
)


def aerial_cactus(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """train.csv (id,has_cactus; id = 32-hex file name WITH .jpg), train.zip and test.zip (32 px JPEGs at the zip
    root, no folder), sample_submission.csv (id,has_cactus = 0.5). Answers: private/test.csv id,has_cactus."""
    ytr, yte = class_split(rng, n_train, n_test, 2, [0.25, 0.75])
    ids = [h + ".jpg" for h in hex_ids(rng, n_train + n_test, 32)]
    tr_ids, te_ids = ids[:n_train], ids[n_train:]
    for split, sids, ys in (("train", tr_ids, ytr), ("test", te_ids, yte)):
        for i, y in zip(sids, ys):
            save(draw(rng, int(y)), pub / split / i)
        zip_folder_files(pub / split, pub / f"{split}.zip")
        shutil.rmtree(pub / split)
    train = pd.DataFrame({"id": tr_ids, "has_cactus": ytr})
    answers = pd.DataFrame({"id": te_ids, "has_cactus": yte})
    write_csv(train, pub / "train.csv")
    write_csv(answers.assign(has_cactus=0.5), pub / "sample_submission.csv")
    return Standin(
        "aerial-cactus-identification",
        pub,
        write_csv(answers, priv / "test.csv"),
        "auc-roc",
        "id",
        ["has_cactus"],
        False,
        train,
        "roc_auc",
        ["train.zip", "test.zip"],
    )


def aptos(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """train.csv (id_code,diagnosis 0-4; id_code = 12 hex, no extension), test.csv (id_code), train_images/ and
    test_images/ (<id_code>.png, sizes vary, not square), sample_submission.csv (id_code,diagnosis = 0).
    Answers: private/test.csv id_code,diagnosis."""
    ytr, yte = class_split(rng, n_train, n_test, 5, [0.49, 0.10, 0.27, 0.05, 0.09])
    ids = hex_ids(rng, n_train + n_test, 12)
    for folder, sids, ys in (("train_images", ids[:n_train], ytr), ("test_images", ids[n_train:], yte)):
        for i, y in zip(sids, ys):
            size = (int(rng.integers(28, 48)), int(rng.integers(24, 40)))
            save(draw(rng, int(y), size), pub / folder / f"{i}.png")
    train = pd.DataFrame({"id_code": ids[:n_train], "diagnosis": ytr})
    answers = pd.DataFrame({"id_code": ids[n_train:], "diagnosis": yte})
    write_csv(train, pub / "train.csv")
    write_csv(answers[["id_code"]], pub / "test.csv")
    write_csv(answers.assign(diagnosis=0), pub / "sample_submission.csv")
    return Standin(
        "aptos2019-blindness-detection",
        pub,
        write_csv(answers, priv / "test.csv"),
        "quadratic-weighted-kappa",
        "id_code",
        ["diagnosis"],
        False,
        train,
        "qwk",
    )


CASSAVA = {
    "0": "Cassava Bacterial Blight (CBB)",
    "1": "Cassava Brown Streak Disease (CBSD)",
    "2": "Cassava Green Mottle (CGM)",
    "3": "Cassava Mosaic Disease (CMD)",
    "4": "Healthy",
}


def cassava(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """train.csv (image_id,label; image_id = digits WITH .jpg, label 0-4), train_images/, test_images/,
    train_tfrecords/ld_trainNN-<count>.tfrec and test_tfrecords/ld_testNN-<count>.tfrec (tf.train.Example with
    image, image_name, target: the test records carry the label, as the real files do), label_num_to_disease_map.json,
    sample_submission.csv (image_id,label = 4). No test.csv. Answers: private/test.csv image_id,label."""
    ytr, yte = class_split(rng, n_train, n_test, 5, [0.05, 0.10, 0.11, 0.61, 0.13])
    ids = [f"{v}.jpg" for v in distinct_ints(rng, n_train + n_test, 10_000_000, 4_300_000_000)]
    records: dict[str, list[bytes]] = {"train": [], "test": []}
    for split, sids, ys in (("train", ids[:n_train], ytr), ("test", ids[n_train:], yte)):
        for i, y in zip(sids, ys):
            img = draw(rng, int(y), (40, 30))
            save(img, pub / f"{split}_images" / i)
            records[split].append(tf_example({"image": image_bytes(img, ".jpg"), "image_name": i, "target": int(y)}))
    for split in ("train", "test"):
        chunks = np.array_split(np.arange(len(records[split])), 2 if split == "train" else 1)
        for k, chunk in enumerate(chunks):
            write_tfrecord(
                pub / f"{split}_tfrecords" / f"ld_{split}{k:02d}-{len(chunk)}.tfrec", [records[split][j] for j in chunk]
            )
    (pub / "label_num_to_disease_map.json").write_text(json.dumps(CASSAVA))
    train = pd.DataFrame({"image_id": ids[:n_train], "label": ytr})
    answers = pd.DataFrame({"image_id": ids[n_train:], "label": yte})
    write_csv(train, pub / "train.csv")
    write_csv(answers.assign(label=4), pub / "sample_submission.csv")
    return Standin(
        "cassava-leaf-disease-classification",
        pub,
        write_csv(answers, priv / "test.csv"),
        "accuracy",
        "image_id",
        ["label"],
        False,
        train,
        "accuracy",
    )


BREEDS = ["affenpinscher", "beagle", "black-and-tan_coonhound", "boston_bull", "golden_retriever"]  # real names


def dog_breed(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """labels.csv (id,breed; id = 32 hex, no extension), train/ and test/ (<id>.jpg), sample_submission.csv (id +
    one column per breed, alphabetical like the real 120, each 1/k). No train.csv/test.csv. Answers:
    private/test.csv id + the breed columns one-hot (the grader refuses rows not summing to 1)."""
    ytr, yte = class_split(rng, n_train, n_test, len(BREEDS))
    ids = hex_ids(rng, n_train + n_test, 32)
    for split, sids, ys in (("train", ids[:n_train], ytr), ("test", ids[n_train:], yte)):
        for i, y in zip(sids, ys):
            save(draw(rng, int(y), (36, 36)), pub / split / f"{i}.jpg")
    write_csv(pd.DataFrame({"id": ids[:n_train], "breed": [BREEDS[y] for y in ytr]}), pub / "labels.csv")
    answers = one_hot(ids[n_train:], "id", [BREEDS[y] for y in yte], BREEDS)
    sample = answers.astype({b: "float64" for b in BREEDS})
    sample[BREEDS] = 1 / len(BREEDS)
    write_csv(sample, pub / "sample_submission.csv")
    train = one_hot(ids[:n_train], "id", [BREEDS[y] for y in ytr], BREEDS)
    return Standin(
        "dog-breed-identification",
        pub,
        write_csv(answers, priv / "test.csv"),
        "multi-class-log-loss",
        "id",
        list(BREEDS),
        True,
        train,
        "log_loss",
    )


def dogs_vs_cats(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """train.zip (cat.<n>.jpg, dog.<n>.jpg at the zip root: the label is in the file name), test.zip (1.jpg ...
    <N>.jpg at the root), sample_submission.csv (id,label = 0.5; id = the number without .jpg). No CSV of labels.
    Answers: private/answers.csv id,label (1 = dog)."""
    ytr, yte = class_split(rng, n_train, n_test, 2)
    counts = {0: 0, 1: 0}
    names = []
    for y in ytr:
        names.append(f"{'dog' if y else 'cat'}.{counts[int(y)]}.jpg")
        counts[int(y)] += 1
        save(draw(rng, 3 + int(y), (int(rng.integers(28, 44)), int(rng.integers(28, 44)))), pub / "train" / names[-1])
    for k, y in enumerate(yte, start=1):
        save(draw(rng, 3 + int(y), (int(rng.integers(28, 44)), int(rng.integers(28, 44)))), pub / "test" / f"{k}.jpg")
    for split in ("train", "test"):
        zip_folder_files(pub / split, pub / f"{split}.zip")
        shutil.rmtree(pub / split)
    ids = list(range(1, n_test + 1))
    answers = pd.DataFrame({"id": ids, "label": yte})
    write_csv(pd.DataFrame({"id": ids, "label": 0.5}), pub / "sample_submission.csv")
    train = pd.DataFrame({"id": names, "label": ytr})
    return Standin(
        "dogs-vs-cats-redux-kernels-edition",
        pub,
        write_csv(answers, priv / "answers.csv"),
        "log-loss",
        "id",
        ["label"],
        True,
        train,
        "log_loss",
        ["train.zip", "test.zip"],
    )


def histopathologic(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """train_labels.csv (id,label; id = 40 hex, no extension), train/ and test/ (<id>.tif, 32 px RGB TIFF; the
    real ones are 96 px), sample_submission.csv (id,label = 0). Answers: private/answers.csv id,label."""
    ytr, yte = class_split(rng, n_train, n_test, 2, [0.6, 0.4])
    ids = hex_ids(rng, n_train + n_test, 40)
    for split, sids, ys in (("train", ids[:n_train], ytr), ("test", ids[n_train:], yte)):
        for i, y in zip(sids, ys):
            save(draw(rng, 5 + int(y)), pub / split / f"{i}.tif")
    train = pd.DataFrame({"id": ids[:n_train], "label": ytr})
    answers = pd.DataFrame({"id": ids[n_train:], "label": yte})
    write_csv(train, pub / "train_labels.csv")
    write_csv(answers.assign(label=0), pub / "sample_submission.csv")
    return Standin(
        "histopathologic-cancer-detection",
        pub,
        write_csv(answers, priv / "answers.csv"),
        "auc-roc",
        "id",
        ["label"],
        False,
        train,
        "roc_auc",
    )


def invasive(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """Only archives: train_labels.csv.zip (train_labels.csv: name,invasive; name = an integer, no extension),
    sample_submission.csv.zip (sample_submission.csv: name,invasive = 0.5), train.7z (train/<name>.jpg) and
    test.7z (test/<name>.jpg). Needs py7zr (common.write_7z). MLE-bench's own prepare.py calls py7zr's write() on
    the folders, which stores only a folder entry and no image (openai/mle-bench#122); this stand-in stores the
    images, as Kaggle's archives do. Answers: private/answers.csv name,invasive."""
    ytr, yte = class_split(rng, n_train, n_test, 2, [0.37, 0.63])
    names = [int(v) for v in rng.permutation(np.arange(1, n_train + n_test + 1))]
    for split, sids, ys in (("train", names[:n_train], ytr), ("test", names[n_train:], yte)):
        for i, y in zip(sids, ys):
            save(draw(rng, 2 + 4 * int(y), (48, 36)), pub / split / f"{i}.jpg")
    train = pd.DataFrame({"name": names[:n_train], "invasive": ytr})
    answers = pd.DataFrame({"name": names[n_train:], "invasive": yte})
    write_csv(answers, priv / "answers.csv")
    write_csv(answers.assign(invasive=0.5), priv / "sample_submission.csv")
    write_csv(answers.assign(invasive=0.5), pub / "sample_submission.csv")
    write_csv(train, pub / "train_labels.csv")
    for csv in ("sample_submission.csv", "train_labels.csv"):
        shutil.make_archive(str(pub / csv), "zip", root_dir=pub, base_dir=csv)
        (pub / csv).unlink()
    for split in ("train", "test"):
        write_7z(pub / split, pub / f"{split}.7z")
        shutil.rmtree(pub / split)
    return Standin(
        "invasive-species-monitoring",
        pub,
        priv / "answers.csv",
        "auc-roc",
        "name",
        ["invasive"],
        False,
        train,
        "roc_auc",
        ["train_labels.csv.zip", "sample_submission.csv.zip", "train.7z", "test.7z"],
        notes="MLE-bench's real train.7z/test.7z hold no images (openai/mle-bench#122)",
    )


LEAVES = [
    "Acer_Capillipes",
    "Alnus_Rubra",
    "Betula_Pendula",
    "Quercus_Rubra",
    "Quercus_x_Hispanica",
    "Tilia_Oliveri",
]  # real species names, in the grader's (ASCII-sorted) order
LEAF_FEATURES = [f"{kind}{k}" for kind in ("margin", "shape", "texture") for k in range(1, 65)]


def leaf(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """train.csv (id,species,margin1..64,shape1..64,texture1..64; id = an integer), test.csv (id + the 192
    features), images/<id>.jpg for train AND test in one folder (binary silhouettes, sizes vary),
    sample_submission.csv (id + one column per species, each 1/k). Answers: private/test.csv id + species one-hot;
    private/images/ (empty, as MLE-bench leaves it)."""
    ytr, yte = class_split(rng, n_train, n_test, len(LEAVES))
    ids = [int(v) for v in rng.permutation(np.arange(1, n_train + n_test + 1))]
    centres = rng.uniform(0, 0.05, (len(LEAVES), len(LEAF_FEATURES)))
    for i, y in zip(ids, np.concatenate([ytr, yte])):
        save(
            draw(rng, int(y), (int(rng.integers(24, 48)), int(rng.integers(24, 48))), binary=True),
            pub / "images" / f"{i}.jpg",
        )
    (priv / "images").mkdir()

    def features(ys):
        return pd.DataFrame(
            np.round(np.abs(centres[ys] + rng.normal(0, 0.01, (len(ys), len(LEAF_FEATURES)))), 6), columns=LEAF_FEATURES
        )

    train = pd.concat([pd.DataFrame({"id": ids[:n_train], "species": [LEAVES[y] for y in ytr]}), features(ytr)], axis=1)
    test = pd.concat([pd.DataFrame({"id": ids[n_train:]}), features(yte)], axis=1)
    answers = one_hot(ids[n_train:], "id", [LEAVES[y] for y in yte], LEAVES)
    write_csv(train, pub / "train.csv")
    write_csv(test, pub / "test.csv")
    sample = answers.astype({s: "float64" for s in LEAVES})
    sample[LEAVES] = 1 / len(LEAVES)
    write_csv(sample, pub / "sample_submission.csv")
    return Standin(
        "leaf-classification",
        pub,
        write_csv(answers, priv / "test.csv"),
        "multi-class-log-loss",
        "id",
        list(LEAVES),
        True,
        one_hot(ids[:n_train], "id", list(train["species"]), LEAVES),
        "log_loss",
    )


PADDY = ["bacterial_leaf_blight", "blast", "hispa", "normal"]  # 4 of the 10 real labels
VARIETIES = ["ADT45", "KarnatakaPonni", "Ponni", "AtchayaPonni"]


def paddy(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """train.csv (image_id,label,variety,age; image_id = 6 digits WITH .jpg), train_images/<label>/<image_id>
    (one folder per label), test_images/<image_id>, sample_submission.csv (image_id,label with every label EMPTY).
    No test.csv. Answers: private/test.csv image_id,label,variety,age."""
    ytr, yte = class_split(rng, n_train, n_test, len(PADDY), [0.2, 0.3, 0.2, 0.3])
    ids = [f"{v}.jpg" for v in distinct_ints(rng, n_train + n_test, 100000, 111000)]
    for i, y in zip(ids[:n_train], ytr):
        save(draw(rng, int(y), (24, 32)), pub / "train_images" / PADDY[y] / i)
    for i, y in zip(ids[n_train:], yte):
        save(draw(rng, int(y), (24, 32)), pub / "test_images" / i)

    def table(sids, ys):
        return pd.DataFrame(
            {
                "image_id": sids,
                "label": [PADDY[y] for y in ys],
                "variety": rng.choice(VARIETIES, len(sids)),
                "age": rng.integers(45, 83, len(sids)),
            }
        )

    train, answers = table(ids[:n_train], ytr), table(ids[n_train:], yte)
    write_csv(train, pub / "train.csv")
    write_csv(answers[["image_id", "label"]].assign(label=""), pub / "sample_submission.csv")
    return Standin(
        "paddy-disease-classification",
        pub,
        write_csv(answers, priv / "test.csv"),
        "accuracy",
        "image_id",
        ["label"],
        False,
        train[["image_id", "label"]],
        "accuracy",
    )


PET_FLAGS = [
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
PAWPULARITY = [18, 25, 30, 35, 40, 48, 55, 65, 80, 95]  # per digit class: the value to learn (1-100)


def petfinder(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """train.csv (Id,<12 0/1 photo flags, names with a space: 'Subject Focus'>,Pawpularity; Id = 32 hex, no
    extension; Pawpularity an integer 1-100), test.csv (Id + the flags), train/ and test/ (<Id>.jpg),
    sample_submission.csv (Id,Pawpularity = uniform random in 1-100, 2 decimals). Answers: private/test.csv, all of
    test's columns and Pawpularity. The grader refuses any value outside 1-100."""
    ytr, yte = class_split(rng, n_train, n_test, 10)
    ids = hex_ids(rng, n_train + n_test, 32)
    for split, sids, ys in (("train", ids[:n_train], ytr), ("test", ids[n_train:], yte)):
        for i, y in zip(sids, ys):
            save(draw(rng, int(y), (36, 28)), pub / split / f"{i}.jpg")

    def table(sids, ys):
        flags = pd.DataFrame(rng.integers(0, 2, (len(sids), len(PET_FLAGS))), columns=PET_FLAGS)
        value = np.clip(np.round(np.take(PAWPULARITY, ys) + rng.normal(0, 4, len(ys))), 1, 100).astype(int)
        return pd.concat([pd.DataFrame({"Id": sids}), flags, pd.DataFrame({"Pawpularity": value})], axis=1)

    train, answers = table(ids[:n_train], ytr), table(ids[n_train:], yte)
    write_csv(train, pub / "train.csv")
    write_csv(answers.drop(columns=["Pawpularity"]), pub / "test.csv")
    sample = answers[["Id", "Pawpularity"]].copy()
    sample["Pawpularity"] = np.random.default_rng(0).uniform(1, 100, len(sample)).round(2)
    write_csv(sample, pub / "sample_submission.csv")
    return Standin(
        "petfinder-pawpularity-score",
        pub,
        write_csv(answers, priv / "test.csv"),
        "root-mean-squared-error",
        "Id",
        ["Pawpularity"],
        True,
        train[["Id", "Pawpularity"]],
        "rmse",
    )


# ---------------------------------------------------------------- the dispatcher

from . import layouts_more  # noqa: E402  (it imports helpers from here)

GENERATORS = {
    "aerial-cactus-identification": aerial_cactus,
    "aptos2019-blindness-detection": aptos,
    "cassava-leaf-disease-classification": cassava,
    "dog-breed-identification": dog_breed,
    "dogs-vs-cats-redux-kernels-edition": dogs_vs_cats,
    "histopathologic-cancer-detection": histopathologic,
    "invasive-species-monitoring": invasive,
    "leaf-classification": leaf,
    "paddy-disease-classification": paddy,
    "petfinder-pawpularity-score": petfinder,
    **layouts_more.GENERATORS,
}
SLUGS = list(GENERATORS)


def make(
    slug: str,
    dest: str | Path,
    n_train: int = 100,
    n_test: int = 30,
    seed: int = 0,
    zipped: bool = False,
    unpack_inner_archives: bool = False,
) -> Standin:
    """The stand-in of `slug` under `dest` (public/ and private/, emptied first), deterministic from `seed`.

    zipped: also write `dest/<slug>.zip`, the public folder as one zip (Kaggle's download; `Standin.data` names it).
    unpack_inner_archives: replace the public folder's inner archives (train.zip, .7z, .csv.zip) by their contents,
    as a user who unpacked them once has them (`Standin.inner_archives` then lists none)."""
    if slug not in GENERATORS:
        raise KeyError(f"no stand-in for {slug!r}; one of {', '.join(SLUGS)}")
    pub, priv = fresh(Path(dest))
    standin = GENERATORS[slug](pub, priv, np.random.default_rng(seed), n_train, n_test)
    if unpack_inner_archives and standin.inner_archives:
        unpack_inner(pub, standin.inner_archives)
        standin.inner_archives = []
    if zipped:
        standin.zip = zip_whole(pub, Path(dest) / f"{slug}.zip")
    return standin
