"""Read a competition as Kaggle ships it, validate it, and decode every image once into a compact cache.

Layouts (recognised from the files; `data.layout` names it when they are ambiguous):
  csv_images       train.csv with id + target columns, images in train/ and test/   (Aerial Cactus)
  pixel_csv        train.csv with a target + pixel0..pixelN columns, test.csv        (Digit Recognizer)
  folder_per_class train/<class>/<image>, test/<image>                              (Plant Seedlings)
  filename_labels  train/<label>.<n>.jpg, test/<id>.jpg                              (Dogs vs Cats)

The cache is `train_images.npy`/`test_images.npy` (uint8, N x H x W x C), `train.csv`/`test.csv` with the ids
and labels, and `meta.json`; every later step reads only these.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from .archive import safe_extract
from .errors import InputError
from .fsutil import atomic_path, write_csv, write_json

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


@dataclass
class DataConfig:
    layout: str = "auto"  # one of the layouts above, or auto-detect
    id_column: str | None = None  # None: first column of sample_submission.csv
    target_column: str | None = None  # None: sample_submission's target column, matched case-insensitively
    train_csv: str = "train.csv"
    test_csv: str = "test.csv"  # pixel_csv only
    train_dir: str = "train"
    test_dir: str = "test"
    sample_submission: str = "sample_submission.csv"
    image_size: int | None = None  # cache size; None keeps native size when all images share one, else 256


@dataclass
class Competition:
    """What a layout reader returns: ids, raw labels, and where each image comes from."""
    layout: str
    id_column: str
    target_columns: list[str]
    train_ids: list[str]
    labels: list
    test_ids: list[str]
    train_images: list = field(repr=False)  # paths, or arrays for pixel_csv
    test_images: list = field(repr=False)


def find_root(path: Path, cfg: DataConfig) -> Path:
    """The folder holding sample_submission.csv (Kaggle zips sometimes nest one folder deep)."""
    if (path / cfg.sample_submission).exists():
        return path
    hits = sorted(path.rglob(cfg.sample_submission), key=lambda p: len(p.parts))
    if not hits:
        raise InputError(f"{path}: no {cfg.sample_submission} found; point data.path at the competition folder or zip")
    return hits[0].parent


def read_csv(path: Path, **kw) -> pd.DataFrame:
    if not path.exists():
        raise InputError(f"{path}: file not found; the competition is incomplete, download it again")
    try:
        return pd.read_csv(path, **kw)
    except Exception as e:  # noqa: BLE001 - pandas raises many types for broken CSVs
        raise InputError(f"{path}: cannot read CSV ({e}); download it again") from e


def match_column(df: pd.DataFrame, want: str, path: Path, what: str, hint: str) -> str:
    """Exact column, else a case-insensitive match (Digit Recognizer: `Label` vs `label`)."""
    if want in df.columns:
        return want
    folded = {c.lower(): c for c in df.columns}
    if want.lower() in folded:
        return folded[want.lower()]
    raise InputError(f"{path}: no {what} column {want!r} (columns: {', '.join(map(str, df.columns[:8]))}); {hint}")


def index_images(folder: Path) -> dict[str, Path]:
    """Map both 'name.ext' and 'name' to the file, so ids may carry the extension or not."""
    if not folder.is_dir():
        raise InputError(f"{folder}: image folder not found; check data.train_dir/data.test_dir")
    index: dict[str, Path] = {}
    for p in folder.iterdir():
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
            index[p.name] = p
            index.setdefault(p.stem, p)
    return index


def lookup(index: dict[str, Path], ids, folder: Path, source: Path, what: str) -> list[Path]:
    paths = []
    for i in ids:
        p = index.get(str(i))
        if p is None:
            raise InputError(f"{source}: {what} id {i!r} has no image in {folder}/; restore the image or drop the row")
        paths.append(p)
    return paths


def detect_layout(root: Path, cfg: DataConfig) -> str:
    train_csv, train_dir = root / cfg.train_csv, root / cfg.train_dir
    if train_csv.exists():
        head = pd.read_csv(train_csv, nrows=1)
        if any(str(c).lower().startswith("pixel") for c in head.columns):
            return "pixel_csv"
        return "csv_images"
    if train_dir.is_dir():
        entries = list(train_dir.iterdir())
        if entries and all(e.is_dir() for e in entries):
            return "folder_per_class"
        if any(e.suffix.lower() in IMAGE_EXTS and e.name.count(".") >= 2 for e in entries):
            return "filename_labels"
    raise InputError(f"{root}: cannot recognise the layout (no {cfg.train_csv}, no class folders in {cfg.train_dir}/); "
                     "set data.layout")


def read_competition(root: Path, cfg: DataConfig) -> Competition:
    sample_path = root / cfg.sample_submission
    sample = read_csv(sample_path, dtype=str)
    id_col = cfg.id_column or sample.columns[0]
    if id_col not in sample.columns:
        raise InputError(f"{sample_path}: no id column {id_col!r}; fix data.id_column")
    targets = [c for c in sample.columns if c != id_col]
    if not targets:
        raise InputError(f"{sample_path}: no target column beside {id_col!r}; it is not a submission template")
    layout = detect_layout(root, cfg) if cfg.layout == "auto" else cfg.layout
    reader = {"csv_images": _csv_images, "pixel_csv": _pixel_csv,
              "folder_per_class": _folder_per_class, "filename_labels": _filename_labels}.get(layout)
    if reader is None:
        raise InputError(f"data.layout: unknown layout {layout!r}; use auto, csv_images, pixel_csv, "
                         "folder_per_class or filename_labels")
    return reader(root, cfg, sample, id_col, targets)


def _target_name(cfg: DataConfig, targets: list[str]) -> str:
    return cfg.target_column or targets[0]


def _csv_images(root, cfg, sample, id_col, targets) -> Competition:
    train_path = root / cfg.train_csv
    train = read_csv(train_path, dtype={id_col: str})
    hint = "rename it, or set data.id_column/data.target_column"
    tid = match_column(train, id_col, train_path, "id", hint)
    tgt = match_column(train, _target_name(cfg, targets), train_path, "target", hint)
    if train[tgt].isna().any():
        bad = train.loc[train[tgt].isna(), tid].iloc[0]
        raise InputError(f"{train_path}: id {bad!r} has no value in column {tgt!r}; fill or drop the row")
    train_dir, test_dir = root / cfg.train_dir, root / cfg.test_dir
    train_ids = train[tid].astype(str).tolist()
    test_ids = sample[id_col].tolist()
    return Competition("csv_images", id_col, targets, train_ids, train[tgt].tolist(), test_ids,
                       lookup(index_images(train_dir), train_ids, train_dir, train_path, "train"),
                       lookup(index_images(test_dir), test_ids, test_dir, root / cfg.sample_submission, "test"))


def _pixel_csv(root, cfg, sample, id_col, targets) -> Competition:
    train_path, test_path = root / cfg.train_csv, root / cfg.test_csv
    train, test = read_csv(train_path), read_csv(test_path)
    tgt = match_column(train, _target_name(cfg, targets), train_path, "target", "set data.target_column")
    pixels = [c for c in train.columns if str(c).lower().startswith("pixel")]
    side = int(round(len(pixels) ** 0.5))
    if side * side != len(pixels):
        raise InputError(f"{train_path}: {len(pixels)} pixel columns do not make a square image")
    missing = [c for c in pixels if c not in test.columns]
    if missing:
        raise InputError(f"{test_path}: missing pixel column {missing[0]!r}; download the competition again")
    if len(test) != len(sample):
        raise InputError(f"{test_path}: {len(test)} rows but {len(sample)} ids in {cfg.sample_submission}; "
                         "they must correspond row by row")

    def to_images(df):
        return list(df[pixels].to_numpy().clip(0, 255).astype(np.uint8).reshape(-1, side, side, 1))

    return Competition("pixel_csv", id_col, targets, [str(i) for i in range(len(train))], train[tgt].tolist(),
                       sample[id_col].tolist(), to_images(train), to_images(test))


def _folder_per_class(root, cfg, sample, id_col, targets) -> Competition:
    train_dir, test_dir = root / cfg.train_dir, root / cfg.test_dir
    ids, labels, paths = [], [], []
    for cls_dir in sorted(p for p in train_dir.iterdir() if p.is_dir()):
        for p in sorted(cls_dir.iterdir()):
            if p.suffix.lower() in IMAGE_EXTS:
                ids.append(f"{cls_dir.name}/{p.name}")
                labels.append(cls_dir.name)
                paths.append(p)
    test_ids = sample[id_col].tolist()
    return Competition("folder_per_class", id_col, targets, ids, labels, test_ids, paths,
                       lookup(index_images(test_dir), test_ids, test_dir, root / cfg.sample_submission, "test"))


def _filename_labels(root, cfg, sample, id_col, targets) -> Competition:
    train_dir, test_dir = root / cfg.train_dir, root / cfg.test_dir
    paths = sorted(p for p in train_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    bad = [p.name for p in paths if p.name.count(".") < 2]
    if bad:
        raise InputError(f"{train_dir}/{bad[0]}: no label in the file name (expected <label>.<n>.<ext>)")
    test_ids = sample[id_col].tolist()
    return Competition("filename_labels", id_col, targets, [p.name for p in paths],
                       [p.name.split(".")[0] for p in paths], test_ids, paths,
                       lookup(index_images(test_dir), test_ids, test_dir, root / cfg.sample_submission, "test"))


def load_image(src, ident: str) -> Image.Image:
    if isinstance(src, np.ndarray):
        return Image.fromarray(src[..., 0] if src.shape[-1] == 1 else src)
    try:
        img = Image.open(src)
        img.load()
        return img
    except (OSError, UnidentifiedImageError) as e:
        raise InputError(f"{src}: cannot read image for id {ident!r} ({e}); restore the file or drop the row") from e


def decode_all(sources: list, ids: list[str], size: tuple[int, int] | None, gray: bool, desc: str) -> np.ndarray:
    first = np.asarray(load_image(sources[0], ids[0]).convert("L" if gray else "RGB")) if sources else None
    h, w = size or (first.shape[:2] if first is not None else (1, 1))
    out = np.empty((len(sources), h, w, 1 if gray else 3), dtype=np.uint8)
    for k, (src, ident) in enumerate(tqdm(list(zip(sources, ids)), desc=desc, mininterval=2)):
        img = load_image(src, ident).convert("L" if gray else "RGB")
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR)
        arr = np.asarray(img)
        out[k] = arr[..., None] if gray else arr
    return out


def image_modes(sources: list, ids: list[str]) -> tuple[bool, set[tuple[int, int]]]:
    """(all grayscale?, set of sizes) from the headers only: cheap, decides the cache shape."""
    gray, sizes = True, set()
    for src, ident in zip(sources, ids):
        if isinstance(src, np.ndarray):
            sizes.add(src.shape[:2][::-1])
            gray &= src.shape[-1] == 1
            continue
        try:
            with Image.open(src) as img:
                sizes.add(img.size)
                gray &= img.mode in GRAY_MODES
        except (OSError, UnidentifiedImageError) as e:
            raise InputError(f"{src}: cannot read image for id {ident!r} ({e}); restore the file or drop the row") from e
    return gray, sizes


def prepare(data_path: str | Path, out_dir: str | Path, cfg: DataConfig | None = None) -> dict:
    """Validate the competition at `data_path` (folder or zip) and write the cache into `out_dir`."""
    cfg = cfg or DataConfig()
    data_path, out_dir = Path(data_path), Path(out_dir)
    if not data_path.exists():
        raise InputError(f"{data_path}: not found; set data.path to the competition folder or zip")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".unpack-") as tmp:
        src = data_path
        if data_path.is_file():
            src = safe_extract(data_path, Path(tmp))
        root = find_root(src, cfg)
        comp = read_competition(root, cfg)
        # Later steps need the submission template; keep it byte for byte beside the cache.
        with atomic_path(out_dir / "sample_submission.csv") as t:
            shutil.copyfile(root / cfg.sample_submission, t)
        if not comp.train_ids:
            raise InputError(f"{data_path}: no training images found")
        gray, sizes = image_modes(comp.train_images + comp.test_images, comp.train_ids + comp.test_ids)
        if cfg.image_size:
            size = (cfg.image_size, cfg.image_size)
        elif len(sizes) == 1:
            size = None
        else:
            size = (256, 256)  # mixed sizes: one square cache; training resizes to the model's input anyway
        train_x = decode_all(comp.train_images, comp.train_ids, size, gray, "decode train")
        test_x = decode_all(comp.test_images, comp.test_ids, size or train_x.shape[1:3], gray, "decode test")
    classes = sorted(set(comp.labels), key=lambda v: (str(type(v)), v))
    cls_index = {c: k for k, c in enumerate(classes)}
    meta = {
        "layout": comp.layout, "id_column": comp.id_column, "target_columns": comp.target_columns,
        "classes": [c.item() if hasattr(c, "item") else c for c in classes],
        "task": "binary" if len(classes) == 2 else "multiclass",
        "n_train": len(comp.train_ids), "n_test": len(comp.test_ids),
        "image_shape": list(train_x.shape[1:]),
    }
    if len(classes) < 2:
        raise InputError(f"{data_path}: only one class ({classes[0]!r}) in the training labels")
    for name, arr in (("train_images.npy", train_x), ("test_images.npy", test_x)):
        with atomic_path(out_dir / name) as t:
            with open(t, "wb") as f:
                np.save(f, arr)
    write_csv(out_dir / "train.csv", pd.DataFrame({"id": comp.train_ids, "label": comp.labels,
                                                   "y": [cls_index[v] for v in comp.labels]}))
    write_csv(out_dir / "test.csv", pd.DataFrame({"id": comp.test_ids}))
    write_json(out_dir / "meta.json", meta)
    return meta
