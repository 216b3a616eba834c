"""Stand-ins, continued (see layouts.py): the multilabel, one-hot, COCO-JSON, top-5 and zipped-image competitions."""

from __future__ import annotations

import json
import random
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from .common import (
    Standin,
    class_split,
    dicom_bytes,
    distinct_ints,
    draw,
    hex_ids,
    image_bytes,
    one_hot,
    save,
    tf_example,
    write_csv,
    write_tfrecord,
)

PP2020 = ["healthy", "multiple_diseases", "rust", "scab"]


def plant_pathology_2020(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """train.csv (image_id,healthy,multiple_diseases,rust,scab: one-hot, exactly one 1 per row; image_id =
    Train_<n>, no extension), test.csv (image_id = Test_<n>), images/ holding Train_<n>.jpg AND Test_<n>.jpg,
    sample_submission.csv (image_id + the four columns = 0.25). Answers: private/test.csv, the one-hot columns."""
    ytr, yte = class_split(rng, n_train, n_test, 4, [0.28, 0.05, 0.34, 0.33])
    tr_ids, te_ids = [f"Train_{i}" for i in range(n_train)], [f"Test_{i}" for i in range(n_test)]
    for sids, ys in ((tr_ids, ytr), (te_ids, yte)):
        for i, y in zip(sids, ys):
            save(draw(rng, int(y), (40, 27)), pub / "images" / f"{i}.jpg")
    train = one_hot(tr_ids, "image_id", [PP2020[y] for y in ytr], PP2020)
    answers = one_hot(te_ids, "image_id", [PP2020[y] for y in yte], PP2020)
    write_csv(train, pub / "train.csv")
    write_csv(answers[["image_id"]], pub / "test.csv")
    sample = answers[["image_id"]].copy()
    sample[PP2020] = 0.25
    write_csv(sample, pub / "sample_submission.csv")
    return Standin(
        "plant-pathology-2020-fgvc7",
        pub,
        write_csv(answers, priv / "test.csv"),
        "mean-column-wise-roc-auc",
        "image_id",
        list(PP2020),
        False,
        train,
        "mean_column_auc",
    )


PP2021 = [
    "healthy",
    "scab",
    "frog_eye_leaf_spot",
    "rust",
    "complex",
    "powdery_mildew",
    "scab frog_eye_leaf_spot",
    "rust frog_eye_leaf_spot",
]  # label sets per digit class, as the real train.csv writes them


def plant_pathology_2021(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """train.csv (image,labels: space-separated tags such as 'scab frog_eye_leaf_spot'; image = 16 hex WITH .jpg),
    train_images/, test_images/, sample_submission.csv (image,labels = healthy). No test.csv. Answers:
    private/answers.csv image,labels."""
    ytr, yte = class_split(rng, n_train, n_test, len(PP2021), [0.25, 0.25, 0.15, 0.1, 0.08, 0.07, 0.06, 0.04])
    ids = [h + ".jpg" for h in hex_ids(rng, n_train + n_test, 16)]
    for folder, sids, ys in (("train_images", ids[:n_train], ytr), ("test_images", ids[n_train:], yte)):
        for i, y in zip(sids, ys):
            save(draw(rng, int(y), (40, 27)), pub / folder / i)
    train = pd.DataFrame({"image": ids[:n_train], "labels": [PP2021[y] for y in ytr]})
    answers = pd.DataFrame({"image": ids[n_train:], "labels": [PP2021[y] for y in yte]})
    write_csv(train, pub / "train.csv")
    write_csv(answers.assign(labels="healthy"), pub / "sample_submission.csv")
    return Standin(
        "plant-pathology-2021-fgvc8",
        pub,
        write_csv(answers, priv / "answers.csv"),
        "micro-f1-score",
        "image",
        ["labels"],
        False,
        train,
        "f1_micro",
    )


SEEDLINGS = ["Black-grass", "Common Chickweed", "Loose Silky-bent", "Small-flowered Cranesbill", "Sugar beet"]


def plant_seedlings(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """train/<species>/<9 hex>.png with species folder names holding spaces and hyphens ('Common Chickweed',
    'Loose Silky-bent'), test/<9 hex>.png, sample_submission.csv (file,species = 'Sugar beet'; file WITH .png).
    No CSV of training labels. Answers: private/answers.csv file,species."""
    ytr, yte = class_split(rng, n_train, n_test, len(SEEDLINGS))
    ids = [h + ".png" for h in hex_ids(rng, n_train + n_test, 9)]
    for i, y in zip(ids[:n_train], ytr):
        s = int(rng.integers(24, 44))
        save(draw(rng, int(y), (s, s)), pub / "train" / SEEDLINGS[y] / i)
    for i, y in zip(ids[n_train:], yte):
        s = int(rng.integers(24, 44))
        save(draw(rng, int(y), (s, s)), pub / "test" / i)
    answers = pd.DataFrame({"file": ids[n_train:], "species": [SEEDLINGS[y] for y in yte]})
    write_csv(answers.assign(species="Sugar beet"), pub / "sample_submission.csv")
    train = pd.DataFrame({"file": ids[:n_train], "species": [SEEDLINGS[y] for y in ytr]})
    return Standin(
        "plant-seedlings-classification",
        pub,
        write_csv(answers, priv / "answers.csv"),
        "micro-f1-score",
        "file",
        ["species"],
        False,
        train,
        "f1_micro",
    )


RANZCR_ALL = [
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
RANZCR_GRADED = RANZCR_ALL[:9]  # MLE-bench's template and grader: not 'CVC - Normal' nor 'Swan Ganz ...'
RANZCR_POSITIVE = {  # digit class -> its positive columns: every column both 0 and 1 over the ten classes
    0: ["CVC - Borderline", "Swan Ganz Catheter Present"],
    1: ["ETT - Abnormal", "NGT - Normal"],
    2: ["ETT - Borderline", "CVC - Abnormal"],
    3: ["ETT - Normal", "CVC - Normal"],
    4: ["ETT - Normal"],
    5: ["NGT - Abnormal", "CVC - Borderline"],
    6: ["NGT - Borderline", "CVC - Normal"],
    7: ["NGT - Incompletely Imaged", "CVC - Normal"],
    8: ["NGT - Normal", "CVC - Normal"],
    9: ["CVC - Abnormal"],
}


def ranzcr(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """train.csv (StudyInstanceUID, the eleven 0/1 columns named like 'ETT - Abnormal', PatientID),
    train_annotations.csv (StudyInstanceUID,label,data: point lists), train/ and test/ (<uid>.jpg, grayscale; uid =
    1.2.826.0.1.3680043.8.498.<digits>, dots, no extension), sample_submission.csv (StudyInstanceUID + NINE of the
    eleven columns, = 0: MLE-bench drops 'CVC - Normal' and 'Swan Ganz Catheter Present'). No test.csv. Answers:
    private/test.csv, all of train.csv's columns."""
    ytr, yte = class_split(rng, n_train, n_test, 10)
    uids = [
        f"1.2.826.0.1.3680043.8.498.{v}{w:010d}"
        for v, w in zip(distinct_ints(rng, n_train + n_test, 10**9, 10**10), rng.integers(0, 10**10, n_train + n_test))
    ]
    patients = hex_ids(rng, max(2, (n_train + n_test) // 3), 9)
    for split, sids, ys in (("train", uids[:n_train], ytr), ("test", uids[n_train:], yte)):
        for i, y in zip(sids, ys):
            save(draw(rng, int(y), (32, 32), gray=True), pub / split / f"{i}.jpg")

    def table(sids, ys):
        flags = pd.DataFrame([[int(c in RANZCR_POSITIVE[int(y)]) for c in RANZCR_ALL] for y in ys], columns=RANZCR_ALL)
        return pd.concat(
            [
                pd.DataFrame({"StudyInstanceUID": sids}),
                flags,
                pd.DataFrame({"PatientID": rng.choice(patients, len(sids))}),
            ],
            axis=1,
        )

    train, answers = table(uids[:n_train], ytr), table(uids[n_train:], yte)
    notes = []
    for uid, y in zip(uids[:n_train:3], ytr[::3]):
        points = rng.integers(0, 32, (4, 2)).tolist()
        notes.append({"StudyInstanceUID": uid, "label": RANZCR_POSITIVE[int(y)][0], "data": str(points)})
    write_csv(train, pub / "train.csv")
    write_csv(pd.DataFrame(notes), pub / "train_annotations.csv")
    sample = answers[["StudyInstanceUID"] + RANZCR_GRADED].copy()
    sample[RANZCR_GRADED] = 0
    write_csv(sample, pub / "sample_submission.csv")
    return Standin(
        "ranzcr-clip-catheter-line-classification",
        pub,
        write_csv(answers, priv / "test.csv"),
        "auc-roc",
        "StudyInstanceUID",
        list(RANZCR_GRADED),
        False,
        train[["StudyInstanceUID"] + RANZCR_GRADED],
        "mean_column_auc",
    )


SITES = ["torso", "lower extremity", "upper extremity", "head/neck", "palms/soles", "oral/genital", ""]


def siim_isic(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """train.csv (image_name,patient_id,sex,age_approx,anatom_site_general_challenge,diagnosis,benign_malignant,
    target; image_name = ISIC_<7 digits>, no extension; some sex/site cells empty), test.csv (the first five of
    those), jpeg/train/ and jpeg/test/ (<image_name>.jpg), train/ and test/ holding DICOM copies (<image_name>.dcm,
    no image a JPEG reader knows), tfrecords/trainNN-<count>.tfrec and testNN-<count>.tfrec,
    sample_submission.csv (image_name,target = 0). Answers: private/test.csv image_name,target. ~15% positive."""
    ytr, yte = class_split(rng, n_train, n_test, 2, [0.85, 0.15])
    names = [f"ISIC_{v:07d}" for v in distinct_ints(rng, n_train + n_test, 15000, 9999999)]
    patients = [f"IP_{v:07d}" for v in distinct_ints(rng, max(2, (n_train + n_test) // 4), 1000, 9999999)]
    records: dict[str, list[bytes]] = {"train": [], "test": []}

    def table(sids, ys):
        n = len(sids)
        return pd.DataFrame(
            {
                "image_name": sids,
                "patient_id": rng.choice(patients, n),
                "sex": rng.choice(["male", "female", ""], n, p=[0.5, 0.45, 0.05]),
                "age_approx": rng.choice(np.arange(20, 90, 5), n).astype(float),
                "anatom_site_general_challenge": rng.choice(SITES, n, p=[0.5, 0.25, 0.12, 0.05, 0.03, 0.02, 0.03]),
                "diagnosis": np.where(ys == 1, "melanoma", rng.choice(["unknown", "nevus"], n, p=[0.8, 0.2])),
                "benign_malignant": np.where(ys == 1, "malignant", "benign"),
                "target": ys,
            }
        )

    tables = {"train": table(names[:n_train], ytr), "test": table(names[n_train:], yte)}
    for split, frame in tables.items():
        for row in frame.itertuples():
            img = draw(rng, 7 + int(row.target), (36, 36))
            save(img, pub / "jpeg" / split / f"{row.image_name}.jpg")
            (pub / split).mkdir(exist_ok=True)
            (pub / split / f"{row.image_name}.dcm").write_bytes(
                dicom_bytes(img, row.patient_id, "1.2.826.0.1.3680043.8.1055.1." + row.image_name[5:])
            )
            records[split].append(
                tf_example(
                    {
                        "image": image_bytes(img, ".jpg"),
                        "image_name": row.image_name,
                        "patient_id": row.patient_id,
                        "target": int(row.target),
                    }
                )
            )
    for split in ("train", "test"):
        chunks = np.array_split(np.arange(len(records[split])), 3 if split == "train" else 1)
        for k, chunk in enumerate(chunks):
            write_tfrecord(pub / "tfrecords" / f"{split}{k:02d}-{len(chunk)}.tfrec", [records[split][j] for j in chunk])
    write_csv(tables["train"], pub / "train.csv")
    write_csv(tables["test"].iloc[:, :5], pub / "test.csv")
    answers = tables["test"][["image_name", "target"]]
    write_csv(answers.assign(target=0), pub / "sample_submission.csv")
    return Standin(
        "siim-isic-melanoma-classification",
        pub,
        write_csv(answers, priv / "test.csv"),
        "auc-roc",
        "image_name",
        ["target"],
        False,
        tables["train"][["image_name", "target"]],
        "roc_auc",
    )


WHALES = ["new_whale", "w_1287fbc", "w_98baff9", "w_7554f44", "w_1eafe46", "w_693c9ee", "w_73d5489"]
WHALE_SAMPLE = "new_whale w_1287fbc w_98baff9 w_7554f44 w_1eafe46"  # MLE-bench's sample answer, verbatim


def whale(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """train.csv (Image,Id; Image = 8 hex WITH .jpg; Id = new_whale or w_<7 hex>, new_whale the most common),
    train/ and test/ (grey-ish JPEGs, wide, sizes vary), sample_submission.csv (Image,Id = five space-separated Ids,
    'new_whale w_1287fbc w_98baff9 w_7554f44 w_1eafe46'). No test.csv. Answers: private/test.csv Image,Id (one Id
    each; MAP@5)."""
    weights = [0.35] + [0.65 / (len(WHALES) - 1)] * (len(WHALES) - 1)
    ytr, yte = class_split(rng, n_train, n_test, len(WHALES), weights)
    ids = [h + ".jpg" for h in hex_ids(rng, n_train + n_test, 8)]
    for split, sids, ys in (("train", ids[:n_train], ytr), ("test", ids[n_train:], yte)):
        for i, y in zip(sids, ys):
            digit = int(y) if y else int(rng.choice([7, 8, 9]))  # new_whale: any whale not among the known ones
            save(draw(rng, digit, (int(rng.integers(40, 56)), int(rng.integers(20, 30))), colour=7), pub / split / i)
    train = pd.DataFrame({"Image": ids[:n_train], "Id": [WHALES[y] for y in ytr]})
    answers = pd.DataFrame({"Image": ids[n_train:], "Id": [WHALES[y] for y in yte]})
    write_csv(train, pub / "train.csv")
    write_csv(answers.assign(Id=WHALE_SAMPLE), pub / "sample_submission.csv")
    return Standin(
        "whale-categorization-playground",
        pub,
        write_csv(answers, priv / "test.csv"),
        "MAP@5",
        "Image",
        ["Id"],
        False,
        train,
        None,
    )


HERBARIUM = [  # (category id: non-contiguous, family, genus, name)
    (3, "Acanthaceae", "Acanthus", "Acanthus mollis L."),
    (117, "Amaranthaceae", "Amaranthus", "Amaranthus blitum L."),
    (1520, "Asteraceae", "Aster", "Aster alpinus L."),
    (15672, "Fabaceae", "Lupinus", "Lupinus albus L."),
    (23079, "Poaceae", "Poa", "Poa annua L."),
]


def herbarium(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """Only nybg2020/ and a CSV: nybg2020/train/metadata.json (COCO style, indent 4, keys sorted: annotations
    {category_id,id,image_id,region_id}, categories {family,genus,id,name}, images {file_name,height,id,license,
    width}, info, licenses, regions), nybg2020/train/images/<cat // 100 :03d>/<cat % 100 :02d>/<image id>.jpg,
    nybg2020/test/metadata.json (images, info, licenses only; test ids are the strings "0".."N-1"),
    nybg2020/test/images/<idx // 1000 :03d>/<idx>.jpg, sample_submission.csv (Id,Predicted = 0). Category ids are
    non-contiguous integers; 0 is none of them. Answers: private/answers.csv Id,Predicted."""
    ytr, yte = class_split(rng, n_train, n_test, len(HERBARIUM), [0.35, 0.25, 0.2, 0.12, 0.08])
    train_ids = distinct_ints(rng, n_train, 100000, 999999)
    cats = [c[0] for c in HERBARIUM]
    info = {
        "contributor": "stand-in",
        "date_created": "2020-02-20",
        "description": "Herbarium 2020 stand-in",
        "url": "",
        "version": "1.0",
        "year": 2020,
    }
    licenses = [{"id": 0, "name": "Public Domain Dedication", "url": "http://creativecommons.org/publicdomain/"}]
    regions = [{"id": 0, "name": "North America"}, {"id": 1, "name": "Europe"}]
    order = sorted(range(n_train), key=lambda k: ytr[k])  # MLE-bench writes train grouped by category
    annotations, images = [], []
    for k in order:
        cat, img_id = cats[ytr[k]], train_ids[k]
        w, h = int(rng.integers(20, 28)), int(rng.integers(30, 40))
        name = f"images/{cat // 100:03d}/{cat % 100:02d}/{img_id}.jpg"
        save(draw(rng, int(ytr[k]), (w, h)), pub / "nybg2020" / "train" / name)
        annotations.append({"category_id": cat, "id": img_id, "image_id": img_id, "region_id": int(rng.integers(2))})
        images.append({"file_name": name, "height": h, "id": img_id, "license": 0, "width": w})
    categories = [{"family": f, "genus": g, "id": c, "name": n} for c, f, g, n in HERBARIUM]
    meta = {
        "annotations": annotations,
        "categories": categories,
        "images": images,
        "info": info,
        "licenses": licenses,
        "regions": regions,
    }
    (pub / "nybg2020" / "train" / "metadata.json").write_text(json.dumps(meta, indent=4, sort_keys=True))
    test_images = []
    for idx, y in enumerate(yte):
        w, h = int(rng.integers(20, 28)), int(rng.integers(30, 40))
        name = f"images/{idx // 1000:03d}/{idx}.jpg"
        save(draw(rng, int(y), (w, h)), pub / "nybg2020" / "test" / name)
        test_images.append({"file_name": name, "height": h, "id": str(idx), "license": 0, "width": w})
    (pub / "nybg2020" / "test" / "metadata.json").write_text(
        json.dumps({"images": test_images, "info": info, "licenses": licenses}, indent=4, sort_keys=True)
    )
    answers = pd.DataFrame({"Id": range(n_test), "Predicted": [cats[y] for y in yte]})
    write_csv(answers.assign(Predicted=0), pub / "sample_submission.csv")
    train = pd.DataFrame({"Id": [train_ids[k] for k in order], "Predicted": [cats[ytr[k]] for k in order]})
    return Standin(
        "herbarium-2020-fgvc7",
        pub,
        write_csv(answers, priv / "answers.csv"),
        "macro-f1-score",
        "Id",
        ["Predicted"],
        False,
        train,
        "f1_macro",
    )


IMET = [
    "culture::american",
    "culture::british",
    "culture::french",
    "medium::oil on canvas",
    "medium::paper",
    "tags::flowers",
    "tags::landscapes",
    "tags::men",
    "tags::women",
]  # attribute_id = position


def imet_attributes(digit: int) -> str:
    """The attribute ids of a digit class's images: a culture, a medium and a tag (two tags for some)."""
    ids = {digit % 3, 3 + digit % 2, 5 + digit % 4}
    if digit >= 7:
        ids.add(5 + (digit + 1) % 4)
    return " ".join(str(i) for i in sorted(ids))


def imet(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """train.csv (id,attribute_ids: space-separated integer ids; id = 16 hex, no extension), labels.csv
    (attribute_id,attribute_name such as 'culture::british', 'tags::men'), train/ and test/ (<id>.png),
    sample_submission.csv (id,attribute_ids = '0 1 2'). No test.csv. Answers: private/answers.csv
    id,attribute_ids."""
    ytr, yte = class_split(rng, n_train, n_test, 10)
    ids = hex_ids(rng, n_train + n_test, 16)
    for split, sids, ys in (("train", ids[:n_train], ytr), ("test", ids[n_train:], yte)):
        for i, y in zip(sids, ys):
            save(draw(rng, int(y), (int(rng.integers(28, 44)), 36)), pub / split / f"{i}.png")
    train = pd.DataFrame({"id": ids[:n_train], "attribute_ids": [imet_attributes(int(y)) for y in ytr]})
    answers = pd.DataFrame({"id": ids[n_train:], "attribute_ids": [imet_attributes(int(y)) for y in yte]})
    write_csv(train, pub / "train.csv")
    write_csv(pd.DataFrame({"attribute_id": range(len(IMET)), "attribute_name": IMET}), pub / "labels.csv")
    write_csv(answers.assign(attribute_ids="0 1 2"), pub / "sample_submission.csv")
    return Standin(
        "imet-2020-fgvc7",
        pub,
        write_csv(answers, priv / "answers.csv"),
        "micro-f1-score",
        "id",
        ["attribute_ids"],
        False,
        train,
        "f1_micro",
    )


IWILDCAM = [0, 1, 10, 11, 19]  # category_id: 0 = empty (the most common), the others animals
IWILDCAM_COLUMNS = [
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
]


def iwildcam(pub: Path, priv: Path, rng, n_train: int, n_test: int) -> Standin:
    """train.csv (category_id,date_captured,file_name,frame_num,id,location,rights_holder,seq_id,seq_num_frames,
    width,height; id = a UUID, file_name = <id>.jpg), test.csv (the same without category_id), train_images.zip and
    test_images.zip (<id>.jpg at the zip root), sample_submission.csv written WITH its index: a leading unnamed
    column (the rows' original positions), then Id,Category (= 0; not 'Predicted' as Kaggle's page says). Train and
    test come from disjoint camera locations. Answers: private/answers.csv Id,Category; private/test.csv."""
    ytr, yte = class_split(rng, n_train, n_test, len(IWILDCAM), [0.5, 0.15, 0.15, 0.1, 0.1])
    locations = distinct_ints(rng, 8, 0, 140)
    test_locs, train_locs = locations[:2], locations[2:]
    ruuid = random.Random(int(rng.integers(2**31)))
    rows = []
    for split, ys, locs in (("train", ytr, train_locs), ("test", yte, test_locs)):
        for y in ys:
            img_id = str(uuid.UUID(int=ruuid.getrandbits(128), version=1))
            frame = int(rng.integers(1, 4))
            rows.append(
                {
                    "category_id": IWILDCAM[y],
                    "date_captured": f"2012-{rng.integers(1, 13):02d}-"
                    f"{rng.integers(1, 29):02d} {rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}:"
                    f"{rng.integers(0, 60):02d}",
                    "file_name": f"{img_id}.jpg",
                    "frame_num": frame,
                    "id": img_id,
                    "location": int(rng.choice(locs)),
                    "rights_holder": str(rng.choice(["Justin Brown", "Erin Boydston"])),
                    "seq_id": str(uuid.UUID(int=ruuid.getrandbits(128), version=1)),
                    "seq_num_frames": 3,
                    "width": 32,
                    "height": 24,
                    "split_": split,
                    "y_": int(y),
                }
            )
    frame = pd.DataFrame(rows).sample(frac=1, random_state=int(rng.integers(2**31))).reset_index(drop=True)
    for split in ("train", "test"):
        part = frame[frame["split_"] == split]
        for row in part.itertuples():
            save(draw(rng, int(row.y_), (32, 24)), pub / f"{split}_images" / row.file_name)
        shutil.make_archive(str(pub / f"{split}_images"), "zip", pub / f"{split}_images")
        shutil.rmtree(pub / f"{split}_images")
    train = frame[frame["split_"] == "train"][IWILDCAM_COLUMNS]
    test = frame[frame["split_"] == "test"][IWILDCAM_COLUMNS]
    write_csv(train, pub / "train.csv")
    write_csv(test.drop(columns=["category_id"]), pub / "test.csv")
    write_csv(test, priv / "test.csv")
    answers = test[["id", "category_id"]].rename(columns={"id": "Id", "category_id": "Category"})
    write_csv(answers.assign(Category=0), pub / "sample_submission.csv", index=True)
    train_targets = train[["id", "category_id"]].rename(columns={"id": "Id", "category_id": "Category"})
    return Standin(
        "iwildcam-2019-fgvc6",
        pub,
        write_csv(answers, priv / "answers.csv"),
        "macro-f1-score",
        "Id",
        ["Category"],
        False,
        train_targets.reset_index(drop=True),
        "f1_macro",
        ["train_images.zip", "test_images.zip"],
    )


GENERATORS = {
    "plant-pathology-2020-fgvc7": plant_pathology_2020,
    "plant-pathology-2021-fgvc8": plant_pathology_2021,
    "plant-seedlings-classification": plant_seedlings,
    "ranzcr-clip-catheter-line-classification": ranzcr,
    "siim-isic-melanoma-classification": siim_isic,
    "whale-categorization-playground": whale,
    "herbarium-2020-fgvc7": herbarium,
    "imet-2020-fgvc7": imet,
    "iwildcam-2019-fgvc6": iwildcam,
}
