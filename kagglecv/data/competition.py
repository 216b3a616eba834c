"""Reading a competition as Kaggle ships it: the description filled in from the files, then each side read by it.

Layouts (kagglecv.config.data.DataConfig.layout; `auto` recognises them in this order):
  json_annotations  COCO-style annotations: images (id, file_name), annotations (image_id, category_id)  (Herbarium)
  pixel_csv         a training CSV of a target and pixel0..pixelN columns, test.csv alike        (Digit Recognizer)
  csv_images        a training CSV of ids and labels (one column, one 0/1 column per label, or space-separated
                    tags), images in a folder found by id, sub-folders included        (Cactus, Paddy, RANZCR, Leaf)
  folder_per_class  train/<class>/<image>, test/<image>                                       (Plant Seedlings)
  filename_labels   train/<label>.<n>.jpg, test/<id>.jpg                                          (Dogs vs Cats)

What detection settles is written back into the description (`Competition.data`): the training CSV or JSON,
the id, target or label columns, the image folders. The test side is read from the description alone, so a
code competition's kernel reads its hidden test set exactly as prepare read the public one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kagglecv.config.data import DataConfig
from kagglecv.core.errors import InputError
from kagglecv.data.archive import files_below, is_junk
from kagglecv.data.locate import IMAGE_EXTS, image_folder, lookup
from kagglecv.data.meta import group_values, meta_values
from kagglecv.data.pixels import PixelRows, pixel_columns
from kagglecv.data.tables import (
    Template,
    find_column,
    match_column,
    read_csv,
    read_template,
    refuse_duplicates,
    refuse_missing,
    require_rows,
)

TRAIN_CSVS = ("train.csv", "labels.csv", "train_labels.csv")
HINT = "rename it, or set data.id_column/data.target_column"


@dataclass
class Competition:
    """What reading returns: ids, raw labels, where each image comes from, and the description that read them."""

    data: DataConfig  # filled in: what was recognised, or what the config said
    template: Template = field(repr=False)
    train_ids: list[str]
    labels: list
    test_ids: list[str]
    train_images: list | PixelRows = field(repr=False)  # image paths, or the pixel_csv rows
    test_images: list | PixelRows = field(repr=False)
    label_names: list[str] | None = None  # one 0/1 column per label: those columns, in template order
    groups: list[str] | None = None  # data.group_column's values
    meta: dict | None = None  # data.meta_columns: {"specs", "train", "test"} (raw values, in id order)

    @property
    def layout(self) -> str:
        return self.data.layout


@dataclass
class TestSide:
    """What predicting the test set needs, and nothing of the training side (a code competition's hidden rerun
    has none): the template and, row for row, each test image (a path, None where `missing` took it) or the
    pixel rows."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    template: Template
    images: list | PixelRows = field(repr=False)


# ---------------------------------------------------------------- recognising the description


def train_csv(root: Path, cfg: DataConfig, template: Template) -> str | None:
    """The training labels' CSV: data.train_csv, else train.csv, labels.csv or train_labels.csv, else the one other
    CSV holding the template's id column."""
    if cfg.train_csv:
        return cfg.train_csv
    for name in TRAIN_CSVS:
        if (root / name).is_file():
            return name
    skip = {cfg.sample_submission, cfg.test_table}
    others = [p for p in sorted(root.glob("*.csv")) if p.name not in skip and "test" not in p.name.lower()]
    holding = [p.name for p in others if find_column(read_csv(p, nrows=0).columns, template.id_column)]
    return holding[0] if len(holding) == 1 else None


def annotations_json(root: Path, configured: str | None, side: str) -> str | None:
    """data.train_json / data.test_json, else a JSON with `images` (and, for training, `annotations`), searched in
    folders named for the side first."""
    if configured:
        return configured
    found = sorted(
        (p for p in files_below(root, depth=4) if p.suffix.lower() == ".json"),
        key=lambda p: (side not in str(p.relative_to(root)).lower(), len(p.parts), str(p)),
    )
    for p in found[:8]:
        keys = coco_keys(p)
        if "images" in keys and ("annotations" in keys) == (side == "train"):
            return str(p.relative_to(root))
    return None


def coco_keys(path: Path) -> set[str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
    return set(data) if isinstance(data, dict) else set()


def detect_layout(root: Path, cfg: DataConfig, template: Template) -> DataConfig:
    """The description with its layout and its training source filled in."""
    csv_name = train_csv(root, cfg, template) if cfg.layout in ("auto", "csv_images", "pixel_csv") else None
    searched = cfg.layout == "json_annotations" or (cfg.layout == "auto" and not csv_name)
    train_json = annotations_json(root, cfg.train_json, "train") if searched else None  # each JSON parsed once
    if cfg.layout == "json_annotations" or train_json:
        return cfg.filled(layout="json_annotations", train_json=train_json)
    if csv_name and cfg.layout in ("auto", "csv_images", "pixel_csv"):
        pixels = any(str(c).lower().startswith("pixel") for c in read_csv(root / csv_name, nrows=0).columns)
        return cfg.filled(layout="pixel_csv" if pixels else "csv_images", train_csv=csv_name)
    if cfg.layout in ("csv_images", "pixel_csv"):
        raise InputError(f"{root}: no training CSV found (looked for {', '.join(TRAIN_CSVS)}); set data.train_csv")
    train_dir = root / (cfg.train_dir or "train")
    if cfg.layout != "auto":
        return cfg.filled(train_dir=cfg.train_dir or "train")
    if train_dir.is_dir():
        entries = [e for e in train_dir.iterdir() if not is_junk(e.name)]
        if entries and all(e.is_dir() for e in entries):
            return cfg.filled(layout="folder_per_class", train_dir=train_dir.name)
        if any(e.suffix.lower() in IMAGE_EXTS and e.name.count(".") >= 2 for e in entries):
            return cfg.filled(layout="filename_labels", train_dir=train_dir.name)
    raise InputError(
        f"{root}: cannot recognise the layout (no training CSV such as {', '.join(TRAIN_CSVS)}, no "
        f"annotations JSON, no class folders in train/); set data.layout (kagglecv inspect shows what "
        "was found)"
    )


def label_source(train: pd.DataFrame, tid: str, cfg: DataConfig, template: Template, path: Path) -> DataConfig:
    """Where the training CSV's labels are: one 0/1 column per label (data.label_columns: the template's class
    columns when the CSV has them all), else one column (data.target_column): the template's target column, or a
    column named after it (category_id for Category), or the one column whose values are the template's class
    columns (Leaf's species), or the only column besides the id."""
    if cfg.label_columns or cfg.target_column:
        return cfg
    targets = template.targets
    if len(targets) > 1 and all(find_column(train.columns, t) for t in targets):
        return cfg.filled(label_columns=list(targets))
    others = [str(c) for c in train.columns if c != tid]
    if len(targets) == 1:
        t = targets[0]
        exact = find_column(others, t)
        named = [c for c in others if t.lower() in c.lower()] if len(t) > 1 else []
        found = exact or (named[0] if len(named) == 1 else None) or (others[0] if len(others) == 1 else None)
        if found:
            return cfg.filled(target_column=found)
        raise InputError(f"{path}: no target column {t!r} (columns: {', '.join(others[:8])}); {HINT}")
    shared = [t for t in targets if find_column(train.columns, t)]
    if len(shared) == 1:
        extra = ", ".join(repr(t) for t in targets if t not in shared)
        raise InputError(
            f"{template.path}: extra column(s) {extra} beside the target {shared[0]!r}; a submission "
            "template holds the id and the target columns only, remove them"
        )
    classes = set(targets)
    valued = [c for c in others if set(train[c].str.strip()) <= classes]
    if len(valued) == 1 or len(others) == 1:
        return cfg.filled(target_column=(valued or others)[0])
    raise InputError(
        f"{path}: which column holds the labels ({', '.join(others[:6])})? The template has one "
        "column per class and no column of the training CSV holds only their names; set "
        "data.target_column"
    )


# ---------------------------------------------------------------- the layouts' readers: (description, TrainSide)


@dataclass
class TrainSide:
    ids: list[str]
    labels: list
    images: list | PixelRows = field(repr=False)
    label_names: list[str] | None = None
    groups: list[str] | None = None
    meta: dict | None = None  # see Competition.meta


def _csv_images(root: Path, cfg: DataConfig, template: Template) -> tuple[DataConfig, TrainSide]:
    path = root / cfg.train_csv
    train = read_csv(path)
    require_rows(train, path, "it must list the training images and their labels")
    tid = match_column(train, template.id_column, path, "id", HINT)
    refuse_duplicates(train[tid], path, tid)
    cfg = label_source(train, tid, cfg, template, path)
    label_names = None
    if cfg.label_columns:
        labels, label_names = one_hot_labels(train, tid, cfg.label_columns, path), list(cfg.label_columns)
    else:
        tgt = match_column(train, cfg.target_column, path, "target", HINT)
        refuse_missing(train[tgt], train[tid], path, tgt)
        labels = train[tgt].tolist()
    ids = train[tid].tolist()
    if cfg.image_column:
        keys = train[match_column(train, cfg.image_column, path, "image", "fix data.image_column")].tolist()
    else:
        keys = ids
    folder, index = image_folder(root, keys, "train", cfg.train_dir)
    cfg = cfg.filled(train_dir=folder.relative_to(root).as_posix())
    images = lookup(index, keys, folder, path, "train")
    return cfg, TrainSide(
        ids, labels, images, label_names, group_values(train, tid, cfg, path), meta_values(root, cfg, train, template)
    )


def one_hot_labels(train: pd.DataFrame, tid: str, columns: list[str], path: Path) -> list[list[str]]:
    """One 0/1 column per label -> each row's labels, as a list of the column names."""
    cols = [match_column(train, c, path, "label", "fix data.label_columns") for c in columns]
    flags = []
    for col in cols:
        values = train[col].str.strip()
        bad = ~values.isin(["0", "1", "0.0", "1.0"])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                f"{path}: column {col!r} holds {values.iloc[row]!r} for id {train[tid].iloc[row]!r}; one "
                "column per label takes 0 or 1, fix the value or drop the row"
            )
        flags.append(values.astype(float).astype(bool).to_numpy())
    return [[n for n, f in zip(columns, row) if f] for row in np.column_stack(flags)]


def _pixel_csv(root: Path, cfg: DataConfig, template: Template) -> tuple[DataConfig, TrainSide]:
    path = root / cfg.train_csv
    head = read_csv(path, nrows=0)
    tgt = match_column(head, cfg.target_column or template.targets[0], path, "target", "set data.target_column")
    pixels, side = pixel_columns(path, head)
    labels = read_csv(path, usecols=[tgt])[tgt]
    require_rows(labels.to_frame(), path, "it must hold the training images")
    refuse_missing(labels, (f"row {k + 2}" for k in range(len(labels))), path, tgt)
    test_csv = cfg.test_table
    absent = [c for c in pixels if c not in read_csv(root / test_csv, nrows=0).columns]
    if absent:
        raise InputError(f"{root / test_csv}: missing pixel column {absent[0]!r}; download the competition again")
    side_rows = PixelRows.of(path, pixels, side)
    return cfg.filled(target_column=tgt, test_csv=test_csv), TrainSide(
        [str(i) for i in range(len(labels))], labels.tolist(), side_rows
    )


def _folder_per_class(root: Path, cfg: DataConfig, template: Template) -> tuple[DataConfig, TrainSide]:
    train_dir = root / cfg.train_dir
    ids, labels, paths = [], [], []
    for cls_dir in sorted(p for p in train_dir.iterdir() if p.is_dir() and not is_junk(p.name)):
        for p in sorted(cls_dir.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not is_junk(p.name):
                ids.append(f"{cls_dir.name}/{p.name}")
                labels.append(cls_dir.name)  # the folder's name as written: 'Common Chickweed' is one class
                paths.append(p)
    return cfg, TrainSide(ids, labels, paths)


def _filename_labels(root: Path, cfg: DataConfig, template: Template) -> tuple[DataConfig, TrainSide]:
    train_dir = root / cfg.train_dir
    paths = sorted(p for p in train_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS and not is_junk(p.name))
    bad = [p.name for p in paths if p.name.count(".") < 2]
    if bad:
        raise InputError(f"{train_dir}/{bad[0]}: no label in the file name (expected <label>.<n>.<ext>)")
    return cfg, TrainSide([p.name for p in paths], [p.name.split(".")[0] for p in paths], paths)


def coco_images(path: Path) -> tuple[dict, dict[str, str]]:
    """(the JSON, {image id as text: file name}) of a COCO-style file."""
    if not path.is_file():
        raise InputError(f"{path}: not found; fix data.train_json or data.test_json")
    try:
        data = json.loads(path.read_text())
        files = {str(img["id"]): str(img["file_name"]) for img in data["images"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a COCO-style file of images (each with id and file_name): {e}") from e
    return data, files


def _json_annotations(root: Path, cfg: DataConfig, template: Template) -> tuple[DataConfig, TrainSide]:
    """Labels from COCO-style annotations: each image's category (its first annotation's; an image without one
    is not a training image), the image at `file_name` below the JSON's folder (or data.train_dir)."""
    if not cfg.train_json:
        raise InputError(f"{root}: no annotations JSON found (a file with images and annotations); set data.train_json")
    path = root / cfg.train_json
    data, files = coco_images(path)
    labels: dict[str, str] = {}
    for a in data.get("annotations") or []:
        labels.setdefault(str(a.get("image_id")), str(a.get("category_id")))
    ids = [i for i in files if i in labels]
    if not ids:
        raise InputError(f"{path}: no image has an annotation with a category_id; is it the training file?")
    base = root / cfg.train_dir if cfg.train_dir else path.parent
    images = [base / files[i] for i in ids]
    gone = next((i for i, p in zip(ids, images) if not p.is_file()), None)
    if gone is not None:
        raise InputError(
            f"{path}: image {gone!r} names {files[gone]!r}, not found below {base}/; restore it or set data.train_dir"
        )
    cfg = cfg.filled(train_dir=base.relative_to(root).as_posix())
    return cfg, TrainSide(ids, [labels[i] for i in ids], images)


READERS = {
    "csv_images": _csv_images,
    "pixel_csv": _pixel_csv,
    "folder_per_class": _folder_per_class,
    "filename_labels": _filename_labels,
    "json_annotations": _json_annotations,
}


# ---------------------------------------------------------------- both sides


def read_test_side(
    root: Path, cfg: DataConfig, template: Template | None = None, missing: list | None = None
) -> tuple[DataConfig, TestSide]:
    """The test side of the competition in `root` as the description says: pixel rows of data.test_csv, row for
    row with the template; images named in data.test_json; or images found by the template's ids in
    data.test_dir (found when not set). `missing`: see locate.lookup."""
    template = template or read_template(root, cfg)
    if cfg.layout == "pixel_csv":
        path = root / cfg.test_table
        rows = PixelRows.of(path, *pixel_columns(path, read_csv(path, nrows=0)))
        if len(rows) != len(template.frame):
            raise InputError(
                f"{path}: {len(rows)} rows but {len(template.frame)} ids in {cfg.sample_submission}; "
                "they must correspond row by row"
            )
        return cfg.filled(test_csv=path.name), TestSide(template, rows)
    test_json = annotations_json(root, cfg.test_json, "test") if cfg.layout == "json_annotations" else None
    if test_json:
        _, files = coco_images(root / test_json)
        base = root / cfg.test_dir if cfg.test_dir else (root / test_json).parent
        index = {i: base / f for i, f in files.items() if (base / f).is_file()}
        images = lookup(index, template.ids, base, root / test_json, "test", missing)
        return cfg.filled(test_json=test_json, test_dir=base.relative_to(root).as_posix()), TestSide(template, images)
    folder, index = image_folder(root, template.ids, "test", cfg.test_dir)
    images = lookup(index, template.ids, folder, template.path, "test", missing)
    return cfg.filled(test_dir=folder.relative_to(root).as_posix()), TestSide(template, images)


def read_competition(root: Path, cfg: DataConfig) -> Competition:
    template = read_template(root, cfg)
    cfg = detect_layout(root, cfg, template)
    for key in ("group_column", "meta_columns"):
        if getattr(cfg, key) and cfg.layout != "csv_images":
            raise InputError(
                f"data.{key}: the {cfg.layout} layout has no training CSV columns to read them from; remove data.{key}"
            )
    cfg, train = READERS[cfg.layout](root, cfg, template)
    cfg, test = read_test_side(root, cfg, template)
    cfg = cfg.filled(id_column=template.id_column)
    return Competition(
        cfg,
        template,
        train.ids,
        train.labels,
        template.ids,
        train.images,
        test.images,
        train.label_names,
        train.groups,
        train.meta,
    )
