"""Read a competition as Kaggle ships it, validate it, and decode every image once into a compact cache.

Layouts (recognised from the files; `data.layout` names it when they are ambiguous):
  csv_images       train.csv with id + target columns, images in train/ and test/   (Aerial Cactus)
  pixel_csv        train.csv with a target + pixel0..pixelN columns, test.csv        (Digit Recognizer)
  folder_per_class train/<class>/<image>, test/<image>                              (Plant Seedlings)
  filename_labels  train/<label>.<n>.jpg, test/<id>.jpg                              (Dogs vs Cats)

The cache is `train_images.npy`/`test_images.npy` (uint8, N x H x W x C), `train.csv`/`test.csv` with the ids
and labels, and `meta.json`; every later step reads only these, the images memory-mapped.

The cache's side is what training needs (the workflow passes the largest input size of any backbone plus a
margin, `kagglecv.config.members.cache_side`), not the photos' size: images that all share one size no larger than that
are kept as they are; anything else becomes side x side by `data.resize` (kagglecv.data.images). Images are decoded
on every core and streamed to disk, so memory does not grow with the dataset.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections import Counter
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from kagglecv.data import images
from kagglecv.scoring import metrics
from kagglecv.core import tasks
from kagglecv.data.archive import ArchiveLimits, is_junk, safe_extract
from kagglecv.config.schema import default_of
from kagglecv.core.errors import InputError
from kagglecv.core.files import atomic_path, write_csv, write_json
from kagglecv.core.layout import PreparedFiles

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
FALLBACK_SIDE = 256  # mixed sizes and nothing saying what training needs (a direct library call)


@dataclass
class DataConfig:
    """How prepare reads a competition: the workflow's `data:` section (the schema describes each key and holds its
    default)."""

    layout: str = default_of("data.layout")
    id_column: str | None = default_of("data.id_column")
    target_column: str | None = default_of("data.target_column")
    train_csv: str = default_of("data.train_csv")
    test_csv: str = default_of("data.test_csv")
    train_dir: str = default_of("data.train_dir")
    test_dir: str = default_of("data.test_dir")
    sample_submission: str = default_of("data.sample_submission")
    image_size: int | None = default_of("data.image_size")
    resize: str = default_of("data.resize")
    max_image_pixels: int | None = default_of("data.max_image_pixels")
    group_column: str | None = default_of("data.group_column")
    meta_columns: list[str] = default_of("data.meta_columns")
    label_normalise: bool = default_of("data.label_normalise")


@dataclass
class Competition:
    """What a layout reader returns: ids, raw labels, and where each image comes from."""
    layout: str
    id_column: str
    target_columns: list[str]
    train_ids: list[str]
    labels: list
    test_ids: list[str]
    train_images: list | "PixelRows" = field(repr=False)  # image paths, or the pixel_csv rows
    test_images: list | "PixelRows" = field(repr=False)
    label_names: list[str] | None = None  # one 0/1 train.csv column per label: those columns, in template order
    groups: list[str] | None = None  # data.group_column's values
    meta: dict | None = None  # data.meta_columns: {"specs", "train", "test"} (raw values, in id order)


@dataclass
class PixelRows:
    """Images stored as pixel columns of a CSV (Digit Recognizer), read in chunks, never all at once. `of` checks
    every value first: numbers from 0 to 255, or from 0 to 1 (then scaled by `scale`: 255)."""
    path: Path
    columns: list[str]
    side: int
    n: int
    scale: float = 1.0

    @classmethod
    def of(cls, path: Path, columns: list[str], side: int, chunk: int = 4096) -> "PixelRows":
        n, top = 0, 0.0
        try:
            for df in pd.read_csv(path, usecols=columns, chunksize=chunk):
                top, n = max(top, float(pixel_values(df[columns], path, first_row=n).max(initial=0.0))), n + len(df)
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: cannot read CSV ({str(e).splitlines()[0]}); download it again") from e
        # an image on the 0-255 scale never stays below 2: values all within [0, 1] are on the 0-1 scale
        return cls(path, columns, side, n, 255.0 if top <= 1.0 else 1.0)

    def __len__(self) -> int:
        return self.n

    def chunks(self, size: int = 4096) -> Iterator[np.ndarray]:
        for df in pd.read_csv(self.path, usecols=self.columns, chunksize=size):
            values = df[self.columns].to_numpy(dtype=np.float64) * self.scale
            yield np.rint(values).astype(np.uint8).reshape(-1, self.side, self.side, 1)


def pixel_values(df: pd.DataFrame, path: Path, first_row: int = 0) -> np.ndarray:
    """A chunk of pixel columns as numbers; a one-line error naming the row (as numbered in the file, the header
    being row 1), the column and the value for text, a missing value, or a value outside 0-255."""
    numeric = df.apply(lambda col: col if col.dtype.kind in "biuf" else pd.to_numeric(col, errors="coerce"))
    values = numeric.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 0) | (values > 255)
    if bad.any():
        r, c = (int(k[0]) for k in np.nonzero(bad))
        raw = df.iat[r, c]
        why = "has no value" if pd.isna(raw) else f"holds '{raw}'"
        raise InputError(f"{path}: row {first_row + r + 2} column {df.columns[c]!r} {why}; pixels are numbers from "
                         "0 to 255 (or 0 to 1), fix the file")
    return values


def pixel_columns(path: Path, head: pd.DataFrame) -> tuple[list[str], int]:
    """(the pixel0..pixelN columns of a pixel CSV, the side of the square image they make)."""
    pixels = [c for c in head.columns if str(c).lower().startswith("pixel")]
    side = int(round(len(pixels) ** 0.5))
    if not pixels or side * side != len(pixels):
        raise InputError(f"{path}: {len(pixels)} pixel columns do not make a square image")
    return pixels, side


def find_root(path: Path, cfg: DataConfig) -> Path:
    """The folder holding sample_submission.csv (Kaggle zips sometimes nest one folder deep)."""
    if (path / cfg.sample_submission).exists():
        return path
    hits = sorted(path.rglob(cfg.sample_submission), key=lambda p: len(p.parts))
    if not hits:
        raise InputError(f"{path}: no {cfg.sample_submission} found; point data.path at the competition folder or zip")
    return hits[0].parent


def read_csv(path: Path, **kw) -> pd.DataFrame:
    """A competition CSV as text: ids and labels exactly as written ("00017", "001", "NA", "None" stay)."""
    if not path.exists():
        raise InputError(f"{path}: file not found; the competition is incomplete, download it again")
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head.strip():
        raise InputError(f"{path}: the file is empty; download the competition again")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head:
        raise InputError(f"{path}: not UTF-8 text (UTF-16?); save it as a UTF-8 CSV")
    try:
        return pd.read_csv(path, **{"dtype": str, "keep_default_na": False, **kw})
    except Exception as e:  # noqa: BLE001 - pandas raises many types for broken CSVs
        raise InputError(f"{path}: cannot read CSV ({str(e).splitlines()[0]}); download it again") from e


def require_rows(df: pd.DataFrame, path: Path, what: str) -> None:
    if df.empty:
        raise InputError(f"{path}: no rows, only a header; {what}")


def refuse_duplicates(ids: pd.Series, path: Path, column: str) -> None:
    dup = ids[ids.duplicated()]
    if len(dup):
        raise InputError(f"{path}: id {dup.iloc[0]!r} appears {int((ids == dup.iloc[0]).sum())} times in column "
                         f"{column!r}; ids must be unique, drop the repeated rows")


def refuse_missing(labels: pd.Series, ids, path: Path, column: str) -> None:
    missing = (labels.str.strip() == "").to_numpy()
    if missing.any():
        bad = list(ids)[int(np.flatnonzero(missing)[0])]
        raise InputError(f"{path}: id {bad!r} has no value in column {column!r}; fill or drop the row")


def match_column(df: pd.DataFrame, want: str, path: Path, what: str, hint: str) -> str:
    """Exact column, else a case-insensitive match (Digit Recognizer: `Label` vs `label`)."""
    if want in df.columns:
        return want
    folded = {c.lower(): c for c in df.columns}
    if want.lower() in folded:
        return folded[want.lower()]
    raise InputError(f"{path}: no {what} column {want!r} (columns: {', '.join(map(str, df.columns[:8]))}); {hint}")


def index_images(folder: Path) -> dict[str, Path | tuple[Path, ...]]:
    """Map both 'name.ext' and 'name' to the file, so ids may carry the extension or not. A name shared by
    several files (x.jpg and x.png) maps to all of them: an id without the extension cannot choose."""
    if not folder.is_dir():
        raise InputError(f"{folder}: image folder not found; check data.train_dir/data.test_dir")
    index: dict[str, Path | tuple[Path, ...]] = {}
    stems: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not is_junk(p.name):
            index[p.name] = p
            stems.setdefault(p.stem, []).append(p)
    for stem, paths in stems.items():
        index.setdefault(stem, paths[0] if len(paths) == 1 else tuple(paths))
    return index


def lookup(index: dict, ids, folder: Path, source: Path, what: str,
           missing: list | None = None) -> list[Path | None]:
    """The image of each id. An id without an image, or one whose name matches several files, is an error; with
    `missing` (a list: the kernel, which cannot drop a hidden test row) its path is None and (id, reason) is
    appended instead. Two ids naming one file ('a' and 'a.png') are an error where rows can be dropped."""
    paths, seen = [], {}
    for i in ids:
        p, problem = index.get(str(i)), None
        if p is None:
            problem = f"has no image in {folder}/", "restore the image or drop the row"
        elif isinstance(p, tuple):
            problem = (f"matches {' and '.join(q.name for q in p)} in {folder}/",
                       "put the extension in the id, or remove all but one of the files")
        elif p in seen and missing is None:
            raise InputError(f"{source}: {what} ids {seen[p]!r} and {i!r} both name {folder}/{p.name}; drop one "
                             "of the rows")
        if problem and missing is None:
            raise InputError(f"{source}: {what} id {i!r} {problem[0]}; {problem[1]}")
        if problem:
            missing.append((i, problem[0]))
            p = None
        seen[p] = i
        paths.append(p)
    return paths


def detect_layout(root: Path, cfg: DataConfig) -> str:
    train_csv, train_dir = root / cfg.train_csv, root / cfg.train_dir
    if train_csv.exists():
        head = read_csv(train_csv, nrows=0)
        if any(str(c).lower().startswith("pixel") for c in head.columns):
            return "pixel_csv"
        return "csv_images"
    if train_dir.is_dir():
        entries = [e for e in train_dir.iterdir() if not is_junk(e.name)]
        if entries and all(e.is_dir() for e in entries):
            return "folder_per_class"
        if any(e.suffix.lower() in IMAGE_EXTS and e.name.count(".") >= 2 for e in entries):
            return "filename_labels"
    raise InputError(f"{root}: cannot recognise the layout (no {cfg.train_csv}, no class folders in {cfg.train_dir}/); "
                     "set data.layout")


@dataclass
class Template:
    """sample_submission.csv, checked: the test ids in their order, and the target columns."""
    path: Path
    frame: pd.DataFrame = field(repr=False)
    id_column: str
    targets: list[str]

    @property
    def ids(self) -> list[str]:
        return self.frame[self.id_column].tolist()


def read_template(root: Path, cfg: DataConfig) -> Template:
    path = root / cfg.sample_submission
    sample = read_csv(path)
    require_rows(sample, path, "it must list every test id; download the competition again")
    id_col = cfg.id_column or sample.columns[0]
    if id_col not in sample.columns:
        raise InputError(f"{path}: no id column {id_col!r}; fix data.id_column")
    refuse_duplicates(sample[id_col], path, id_col)
    targets = [c for c in sample.columns if c != id_col]
    if not targets:
        raise InputError(f"{path}: no target column beside {id_col!r}; it is not a submission template")
    return Template(path, sample, id_col, targets)


@dataclass
class TestSide:
    """What predicting the test set needs, and nothing of the training side (a code competition's hidden rerun
    has none): the template and, row for row, each test image (a path, None where `missing` took it) or the
    pixel rows."""
    __test__ = False  # not a test class, whatever pytest thinks of its name

    template: Template
    images: list | PixelRows = field(repr=False)


LAYOUTS = ("csv_images", "pixel_csv", "folder_per_class", "filename_labels")


def read_test_side(root: Path, cfg: DataConfig, layout: str, template: Template | None = None,
                   missing: list | None = None) -> TestSide:
    """The test side of the competition in `root` as `layout` stores it: every layout but pixel_csv keeps the
    test images in data.test_dir, named by the template's ids; pixel_csv keeps them in data.test_csv, row for
    row with the template. `missing`: see lookup."""
    if layout not in LAYOUTS:
        raise InputError(f"data.layout: unknown layout {layout!r}; use auto, {', '.join(LAYOUTS)}")
    template = template or read_template(root, cfg)
    if layout == "pixel_csv":
        path = root / cfg.test_csv
        rows = PixelRows.of(path, *pixel_columns(path, read_csv(path, nrows=0)))
        if len(rows) != len(template.frame):
            raise InputError(f"{path}: {len(rows)} rows but {len(template.frame)} ids in {cfg.sample_submission}; "
                             "they must correspond row by row")
        return TestSide(template, rows)
    folder = root / cfg.test_dir
    return TestSide(template, lookup(index_images(folder), template.ids, folder, template.path, "test", missing))


@dataclass
class TrainSide:
    ids: list[str]
    labels: list
    images: list | PixelRows = field(repr=False)
    label_names: list[str] | None = None
    groups: list[str] | None = None
    meta: dict | None = None  # see Competition.meta


def read_competition(root: Path, cfg: DataConfig) -> Competition:
    template = read_template(root, cfg)
    layout = detect_layout(root, cfg) if cfg.layout == "auto" else cfg.layout
    if layout not in LAYOUTS:
        raise InputError(f"data.layout: unknown layout {layout!r}; use auto, {', '.join(LAYOUTS)}")
    for key in ("group_column", "meta_columns"):
        if getattr(cfg, key) and layout != "csv_images":
            raise InputError(f"data.{key}: the {layout} layout has no train.csv columns to read them from; remove "
                             f"data.{key}")
    reader = {"csv_images": _csv_images, "pixel_csv": _pixel_csv,
              "folder_per_class": _folder_per_class, "filename_labels": _filename_labels}[layout]
    train = reader(root, cfg, template)
    if layout == "pixel_csv":
        test_path = root / cfg.test_csv
        absent = [c for c in train.images.columns if c not in read_csv(test_path, nrows=0).columns]
        if absent:
            raise InputError(f"{test_path}: missing pixel column {absent[0]!r}; download the competition again")
    test = read_test_side(root, cfg, layout, template)
    return Competition(layout, template.id_column, template.targets, train.ids, train.labels, template.ids,
                       train.images, test.images, train.label_names, train.groups, train.meta)


def _target_name(cfg: DataConfig, targets: list[str]) -> str:
    return cfg.target_column or targets[0]


def refuse_extra_columns(train: pd.DataFrame, targets: list[str], sample_path: Path) -> None:
    """A template with one target column that train.csv also has, plus others it does not: the others are
    extra (a template with one column per class has none of them in train.csv)."""
    have = {str(c).lower() for c in train.columns}
    shared = [t for t in targets if t.lower() in have]
    if len(targets) > 1 and len(shared) == 1:
        extra = ", ".join(repr(t) for t in targets if t not in shared)
        raise InputError(f"{sample_path}: extra column(s) {extra} beside the target {shared[0]!r}; a submission "
                         "template holds the id and the target columns only, remove them")


def label_column(train: pd.DataFrame, tid: str, cfg: DataConfig, targets: list[str], path: Path) -> str:
    """data.target_column; else the template's target column; else, when the template has one probability
    column per class, train.csv's only column besides the id."""
    hint = "rename it, or set data.id_column/data.target_column"
    if cfg.target_column or len(targets) == 1:
        return match_column(train, _target_name(cfg, targets), path, "target", hint)
    others = [c for c in train.columns if c != tid]
    if len(others) != 1:
        raise InputError(f"{path}: which column holds the labels ({', '.join(others[:6])})? The template has one "
                         "column per class; set data.target_column")
    return others[0]


def _csv_images(root, cfg, template: Template) -> TrainSide:
    train_path, targets = root / cfg.train_csv, template.targets
    train = read_csv(train_path)
    require_rows(train, train_path, "it must list the training images and their labels")
    hint = "rename it, or set data.id_column/data.target_column"
    tid = match_column(train, template.id_column, train_path, "id", hint)
    refuse_duplicates(train[tid], train_path, tid)
    label_names = None
    if not cfg.target_column and len(targets) > 1 and all(t.lower() in map(str.lower, train.columns) for t in targets):
        labels, label_names = one_hot_labels(train, tid, targets, train_path), targets  # Plant Pathology
    else:
        refuse_extra_columns(train, targets, template.path)
        tgt = label_column(train, tid, cfg, targets, train_path)
        refuse_missing(train[tgt], train[tid], train_path, tgt)
        labels = train[tgt].tolist()
    train_dir, train_ids = root / cfg.train_dir, train[tid].tolist()
    return TrainSide(train_ids, labels, lookup(index_images(train_dir), train_ids, train_dir, train_path, "train"),
                     label_names, group_values(train, tid, cfg, train_path),
                     meta_values(root, cfg, train, template))


def one_hot_labels(train: pd.DataFrame, tid: str, targets: list[str], path: Path) -> list[str]:
    """One 0/1 column per label (the template's columns) -> each row's labels as space-separated names."""
    cols = [match_column(train, t, path, "label", "") for t in targets]
    flags = []
    for name, col in zip(targets, cols):
        values = train[col].str.strip()
        bad = ~values.isin(["0", "1", "0.0", "1.0"])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{path}: column {col!r} holds {values.iloc[row]!r} for id {train[tid].iloc[row]!r}; one "
                             "column per label takes 0 or 1, fix the value or drop the row")
        flags.append(values.astype(float).astype(bool).to_numpy())
    return [" ".join(n for n, f in zip(targets, row) if f) for row in np.column_stack(flags)]


def group_values(train: pd.DataFrame, tid: str, cfg: DataConfig, path: Path) -> list[str] | None:
    """data.group_column's values (patients, photographers): folds keep each group in one fold."""
    if not cfg.group_column:
        return None
    col = match_column(train, cfg.group_column, path, "group", "fix data.group_column")
    empty = (train[col].str.strip() == "").to_numpy()
    if empty.any():
        raise InputError(f"{path}: id {train[tid].iloc[int(np.flatnonzero(empty)[0])]!r} has no group in column "
                         f"{col!r} (data.group_column); fill it or drop the row")
    return train[col].tolist()


def read_test_meta(root: Path, cfg: DataConfig, template: Template, missing: list | None = None) -> pd.DataFrame | None:
    """data.meta_columns of the template's test ids, row for row, from data.test_csv (raw values); None when the
    config names none. Read by prepare and, from the hidden test CSV alone, by the Kaggle kernel (`missing`: see
    meta.metadata_rows)."""
    if not cfg.meta_columns:
        return None
    path = root / cfg.test_csv
    test = read_csv(path)
    col = match_column(test, template.id_column, path, "id", "rename it, or set data.id_column")
    refuse_duplicates(test[col], path, col)
    from kagglecv.data.meta import require_column

    for name in cfg.meta_columns:
        require_column(test, name, path)
    from kagglecv.data.meta import metadata_rows

    return metadata_rows(test, col, template.ids, cfg.meta_columns, path, missing)


def meta_values(root: Path, cfg: DataConfig, train: pd.DataFrame, template: Template) -> dict | None:
    """data.meta_columns: their kinds and raw values for the train rows and, from data.test_csv, the test ids."""
    from kagglecv.config.checks import check_meta_columns  # not the id, a target or the group column

    check_meta_columns(asdict(cfg), [template.id_column, *template.targets])
    test = read_test_meta(root, cfg, template)
    if test is None:
        return None
    from kagglecv.data import meta

    specs = meta.specs(train, test, cfg.meta_columns, root / cfg.train_csv, root / cfg.test_csv)
    return {"specs": specs, "train": train[cfg.meta_columns].reset_index(drop=True), "test": test}


def _pixel_csv(root, cfg, template: Template) -> TrainSide:
    train_path = root / cfg.train_csv
    train_head = read_csv(train_path, nrows=0)
    tgt = match_column(train_head, _target_name(cfg, template.targets), train_path, "target", "set data.target_column")
    pixels, side = pixel_columns(train_path, train_head)
    labels = read_csv(train_path, usecols=[tgt])[tgt]
    require_rows(labels.to_frame(), train_path, "it must hold the training images")
    refuse_missing(labels, (f"row {k + 2}" for k in range(len(labels))), train_path, tgt)
    return TrainSide([str(i) for i in range(len(labels))], labels.tolist(), PixelRows.of(train_path, pixels, side))


def _folder_per_class(root, cfg, template: Template) -> TrainSide:
    train_dir = root / cfg.train_dir
    ids, labels, paths = [], [], []
    for cls_dir in sorted(p for p in train_dir.iterdir() if p.is_dir() and not is_junk(p.name)):
        for p in sorted(cls_dir.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not is_junk(p.name):
                ids.append(f"{cls_dir.name}/{p.name}")
                labels.append(cls_dir.name)
                paths.append(p)
    return TrainSide(ids, labels, paths)


def _filename_labels(root, cfg, template: Template) -> TrainSide:
    train_dir = root / cfg.train_dir
    paths = sorted(p for p in train_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS and not is_junk(p.name))
    bad = [p.name for p in paths if p.name.count(".") < 2]
    if bad:
        raise InputError(f"{train_dir}/{bad[0]}: no label in the file name (expected <label>.<n>.<ext>)")
    return TrainSide([p.name for p in paths], [p.name.split(".")[0] for p in paths], paths)


def refuse_unknown_columns(comp: Competition, classes: list[str], sample_path: Path) -> None:
    """A template with several target columns wants one probability per class: each column must be a class."""
    if len(comp.target_columns) > 1:
        unknown = [c for c in comp.target_columns if c not in classes]
        if unknown:
            raise InputError(f"{sample_path}: column {unknown[0]!r} is not a class of the training labels "
                             f"({', '.join(classes[:6])}{', ...' if len(classes) > 6 else ''}); remove it or fix "
                             "the labels")


MISSING_SPELLINGS = {"", "nan", "NaN", "NAN", "NA", "N/A", "n/a", "#N/A", "<NA>"}  # how CSV writers spell a gap
DECIMAL = re.compile(r"[+-]?\d+\.\d*")


def spelling(value) -> tuple:
    """What a label means once its spelling is set aside: ' 1', '1' and '1.0' are one label (a float column
    written out), 'nan' and 'NA' a missing value. Leading zeros stay: '001' is a code, not the number 1."""
    text = str(value).strip()
    if text in MISSING_SPELLINGS:
        return ("missing",)
    return ("label", text.rstrip("0").rstrip(".") if DECIMAL.fullmatch(text) else text)


def label_spellings(labels: list, ids, path: Path, column: str, normalise: bool) -> list:
    """The labels, each meaning spelt one way. Labels that differ only by surrounding whitespace, number format or
    missing-value spelling would silently become separate classes: refused, naming them. With data.label_normalise
    each becomes its most common spelling (stripped), and missing-value spellings are missing labels (refused,
    naming the row). One consistent spelling (a class named 'NA') is left as it is."""
    counts = Counter(labels)
    groups: dict[tuple, list] = {}
    for value in counts:
        groups.setdefault(spelling(value), []).append(value)
    if not normalise:
        clash = next((sorted(g) for g in groups.values() if len(g) > 1), None)
        if clash:
            raise InputError(f"{path}: labels {', '.join(map(repr, clash))} in column {column!r} differ only by "
                             "whitespace, number format or missing-value spelling and would be separate classes; "
                             "write each one way, or set data.label_normalise: true")
        return labels
    if ("missing",) in groups:
        row = next(k for k, v in enumerate(labels) if spelling(v) == ("missing",))
        raise InputError(f"{path}: id {list(ids)[row]!r} has a missing label ({labels[row]!r}) in column {column!r}; "
                         "fill or drop the row")
    best = {key: min(g, key=lambda v: (-counts[v], str(v).strip())).strip() for key, g in groups.items()}
    return [best[spelling(v)] for v in labels]


def recognise(comp: Competition, task: str, metric: str, train_path: Path,
              normalise: bool = False) -> tuple[str, list[str]]:
    """(task kind, classes) of the training labels; the metric must suit the task. Labels that name classes are
    checked for spellings first (label_spellings; comp.labels takes the result)."""
    column = comp.target_columns[0] if len(comp.target_columns) == 1 else "label"
    if comp.label_names:  # one 0/1 column per label: multilabel, or one class per row when task: says so
        kind = task if task != "auto" else "multilabel"
        if kind in tasks.CLASSIFICATION:
            several = [i for i, v in zip(comp.train_ids, comp.labels) if len(v.split()) != 1]
            if several:
                raise InputError(f"{train_path}: id {several[0]!r} has not exactly one label among "
                                 f"{', '.join(comp.label_names)}, which task: {kind} needs; use task: multilabel")
        elif kind != "multilabel":
            raise InputError(f"task: {kind} cannot read one 0/1 column per label; use multilabel or multiclass")
        classes = list(comp.label_names)
    else:
        kind = tasks.detect(comp.labels, metric, task, column, comp.train_ids)
        if kind not in ("multilabel", "regression"):  # a number is a number to a regression
            comp.labels = label_spellings(comp.labels, comp.train_ids, train_path, column, normalise)
            kind = tasks.detect(comp.labels, metric, task, column, comp.train_ids)
        classes = tasks.class_names(comp.labels, kind)
    metrics.check_metric(metric, kind)
    if kind in tasks.CLASSIFICATION and len(classes) < 2:
        raise InputError(f"{train_path}: only one class ({classes[0]!r}) in the training labels")
    if kind == "binary" and len(classes) != 2:
        raise InputError(f"task: binary, but the labels have {len(classes)} classes; use task: multiclass")
    if kind == "multilabel" and not classes:
        raise InputError(f"{train_path}: no labels at all in column {column!r}")
    return kind, classes


def cache_shape(sizes: set[tuple[int, int]], gray: bool, cfg: DataConfig) -> tuple[int, int, int]:
    """(H, W, C) of the cache: the images' own size when they all share one that is no larger than the side
    training needs (and squashing would not change them), else side x side."""
    channels = 1 if gray else 3
    if len(sizes) == 1:
        w, h = next(iter(sizes))
        if (cfg.image_size is None or max(w, h) <= cfg.image_size) and (w == h or cfg.resize == "squash"):
            return h, w, channels
    side = cfg.image_size or FALLBACK_SIDE
    return side, side, channels


def write_images(path: Path, sources, ids: list[str], decoder: images.Decoder, pool: images.Pool, desc: str) -> None:
    with tqdm(total=len(ids), desc=desc, unit="img", mininterval=2) as bar:
        if isinstance(sources, PixelRows):  # pixels are data already: chunks through the same decoder
            def parts():
                for chunk in sources.chunks():
                    yield np.stack([decoder(a, "") for a in chunk]) if chunk.shape[1:] != decoder.shape else chunk
                    bar.update(len(chunk))
            images.write_array_stream(path, (len(sources), *decoder.shape), parts())
        else:
            images.write_cache(path, sources, ids, decoder, pool, progress=bar)


def scan(comp: Competition, cfg: DataConfig, pool: images.Pool) -> tuple[bool, set[tuple[int, int]]]:
    """(all grayscale?, set of upright sizes), from the headers of every image, in parallel."""
    if isinstance(comp.train_images, PixelRows):
        side = comp.train_images.side
        return True, {(side, side)}
    sources, ids = comp.train_images + comp.test_images, comp.train_ids + comp.test_ids
    with tqdm(total=len(ids), desc="scan headers", unit="img", mininterval=2) as bar:
        found = images.probe_all(sources, ids, pool, cfg.max_image_pixels, progress=bar)
    return all(g for _, _, g in found), {(w, h) for w, h, _ in found}


@contextlib.contextmanager
def inside(data_path: Path, tmp: str):
    """Errors about files unpacked from a zip name them inside the zip, not in the temp folder about to vanish."""
    try:
        yield
    except InputError as e:
        raise InputError(str(e).replace(f"{tmp}/", f"{data_path}:")) from e


def prepare(data_path: str | Path, out_dir: str | Path, cfg: DataConfig | None = None, workers: int = 1,
            limits: ArchiveLimits | None = None, task: str = "auto", metric: str = "accuracy") -> dict:
    """Validate the competition at `data_path` (folder or zip, unpacked within `limits`), recognise its task
    (`task: auto`; the metric settles integer targets, see kagglecv.core.tasks) and write the cache into `out_dir`,
    decoding on `workers` processes."""
    cfg = cfg or DataConfig()
    if cfg.resize not in images.RESIZE_MODES:
        raise InputError(f"data.resize: unknown mode {cfg.resize!r}; use one of {', '.join(images.RESIZE_MODES)}")
    data_path, out_dir = Path(data_path), Path(out_dir)
    if not data_path.exists():
        raise InputError(f"{data_path}: not found; set data.path to the competition folder or zip")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = PreparedFiles(out_dir)
    images.remove_stale(out_dir, PreparedFiles.names().values())  # temp files of a killed run: gigabytes, and never mistaken for outputs
    for stale in out_dir.glob(".unpack-*"):
        shutil.rmtree(stale, ignore_errors=True)
    t0 = time.perf_counter()
    # The decoding processes start first, while this process holds no per-image data (see images.Pool).
    with images.Pool(workers) as pool, tempfile.TemporaryDirectory(dir=out_dir, prefix=".unpack-") as tmp, \
            inside(data_path, tmp):
        src = data_path
        if data_path.is_file():
            src = safe_extract(data_path, Path(tmp), limits=limits)
        root = find_root(src, cfg)
        comp = read_competition(root, cfg)
        if not comp.train_ids:
            raise InputError(f"{data_path}: no training images found")
        kind, classes = recognise(comp, task, metric, root / cfg.train_csv, cfg.label_normalise)
        if kind in tasks.CLASSIFICATION:
            refuse_unknown_columns(comp, classes, root / cfg.sample_submission)
        gray, sizes = scan(comp, cfg, pool)
        h, w, c = cache_shape(sizes, gray, cfg)
        decoder = images.Decoder(h, w, gray, cfg.resize, cfg.max_image_pixels)
        t1 = time.perf_counter()
        write_images(out.train_images, comp.train_images, comp.train_ids, decoder, pool, "decode train")
        write_images(out.test_images, comp.test_images, comp.test_ids, decoder, pool, "decode test")
        decode_s = time.perf_counter() - t1
        # Later steps need the submission template; keep it byte for byte beside the cache.
        with atomic_path(out.sample_submission) as t:
            shutil.copyfile(root / cfg.sample_submission, t)
    n_images = len(comp.train_ids) + len(comp.test_ids)
    meta = {
        "layout": comp.layout, "id_column": comp.id_column, "target_columns": comp.target_columns,
        "classes": classes,
        "task": kind, "group_column": cfg.group_column,
        "meta_columns": comp.meta["specs"] if comp.meta else [],
        # how the competition was read and decoded, the layout as recognised: a Kaggle kernel reads its test set
        # the same way, from the test side alone (a hidden rerun has no training side to recognise it from)
        "data": {**asdict(cfg), "layout": comp.layout},
        "n_train": len(comp.train_ids), "n_test": len(comp.test_ids),
        "image_shape": [h, w, c],
        "cache": {"side": cfg.image_size, "resize": cfg.resize, "max_image_pixels": cfg.max_image_pixels,
                  "distinct_sizes": len(sizes),
                  "smallest": list(min(sizes, key=lambda s: s[0] * s[1])),
                  "largest": list(max(sizes, key=lambda s: s[0] * s[1])),
                  "bytes": n_images * h * w * c},
        "decode": {"workers": workers, "seconds": round(decode_s, 2),
                   "images_per_s": round(n_images / decode_s, 1) if decode_s > 0 else None,
                   "total_seconds": round(time.perf_counter() - t0, 2)},
    }
    train = pd.DataFrame({"id": comp.train_ids, "label": comp.labels,
                          "y": tasks.Task(kind, tuple(classes)).encode(comp.labels)})
    if comp.groups is not None:
        train["group"] = comp.groups
    test = pd.DataFrame({"id": comp.test_ids})
    if comp.meta is not None:
        from kagglecv.data.meta import column

        for name in cfg.meta_columns:
            train[column(name)], test[column(name)] = comp.meta["train"][name], comp.meta["test"][name]
    write_csv(out.train, train)
    write_csv(out.test, test)
    write_json(out.meta, meta)  # last: a complete meta.json means a complete cache
    return meta
