"""What every stand-in generator shares: the `Standin` record, learnable images, ids, and the file formats the
real competitions ship (JPEG/PNG/TIFF, zips, 7z, TFRecords, DICOM), written here from their specifications.

Images are scikit-learn's `load_digits` (8 x 8, ten classes) scaled up, the digit drawn in a colour of its class
over a dark noisy background: a small CNN tells the classes apart within a few epochs. A competition's target is a
function of the digit class it draws (a label, a set of tags, a number), so every target is learnable.
"""

from __future__ import annotations

import io
import shutil
import struct
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


class Missing7z(RuntimeError):
    """py7zr is needed to write a .7z archive (it is not among the project's dependencies)."""


@dataclass
class Standin:
    """A generated stand-in of one MLE-bench competition.

    folder: the public competition folder, exactly as MLE-bench's prepare.py lays it out (inner archives included);
    answers: the private answers CSV in the grader's format; train_targets: the public training targets in the
    grader's terms (the id column and the target columns the grader reads), for priors."""

    slug: str
    folder: Path
    answers: Path
    metric: str  # MLE-bench's grader name
    id_column: str  # as the grader reads it
    target_columns: list[str]  # as the grader reads them
    lower_is_better: bool
    train_targets: pd.DataFrame = field(repr=False)
    kagglecv_metric: str | None = None  # the closest name in kagglecv's config schema (None: it has none)
    inner_archives: list[str] = field(default_factory=list)  # archives inside the public folder
    zip: Path | None = None  # zipped=True: the whole public folder as one zip (Kaggle's download)
    notes: str = ""

    @property
    def data(self) -> Path:
        """What `data.path` should name: the zip when there is one, else the folder."""
        return self.zip or self.folder

    @property
    def sample_submission(self) -> Path:
        """The public sample submission (inside its .zip for invasive-species-monitoring: see graders.read_sample)."""
        plain = self.folder / "sample_submission.csv"
        return plain if plain.exists() else self.folder / "sample_submission.csv.zip"


# ---------------------------------------------------------------- images


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(int)


PALETTE = np.array(
    [
        [230, 60, 60],
        [60, 200, 60],
        [70, 110, 240],
        [240, 210, 40],
        [200, 60, 220],
        [40, 220, 220],
        [250, 140, 30],
        [150, 150, 150],
        [140, 90, 40],
        [255, 255, 255],
    ],
    float,
)


def draw(
    rng: np.random.Generator,
    digit: int,
    size: tuple[int, int] = (32, 32),
    colour: int | None = None,
    gray: bool = False,
    binary: bool = False,
) -> np.ndarray:
    """An image (H x W x 3 uint8, or H x W for gray/binary) of one `load_digits` sample of `digit`, scaled to
    `size` = (width, height), drawn in PALETTE[colour] (default: the digit's own colour)."""
    imgs, target = _digits()
    idx = rng.choice(np.flatnonzero(target == digit))
    w, h = size
    shape = (
        np.asarray(Image.fromarray((imgs[idx] * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32)
        / 255.0
    )
    if binary:  # a silhouette (Leaf Classification): white shape on black
        return np.where(shape > 0.35, 255, 0).astype(np.uint8)
    noise = rng.normal(0, 12, (h, w, 1 if gray else 3))
    fg = PALETTE[digit if colour is None else colour]
    if gray:
        fg = fg.mean(keepdims=True)
    img = 25 + noise + shape[..., None] * (fg - 25)
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img[..., 0] if gray else img


def image_bytes(img: np.ndarray, fmt: str) -> bytes:
    """`img` encoded as JPEG, PNG or TIFF (fmt: a suffix such as '.jpg' or a PIL format name)."""
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}.get(fmt.lower(), fmt)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buf.getvalue()


def save(img: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(img, path.suffix))
    return path


# ---------------------------------------------------------------- labels, ids, splits


def class_split(
    rng: np.random.Generator, n_train: int, n_test: int, n_classes: int, weights=None
) -> tuple[np.ndarray, np.ndarray]:
    """Class indices of the train and test rows, drawn with `weights`; every class at least twice in train and,
    where n_test allows, once in test (so that each class's AUC/F1 is defined on the test rows)."""
    p = np.ones(n_classes) / n_classes if weights is None else np.asarray(weights, float) / np.sum(weights)

    def draw_rows(n, floor):
        base = np.repeat(np.arange(n_classes), floor)
        rest = rng.choice(n_classes, size=max(n - len(base), 0), p=p)
        out = np.concatenate([base, rest])[:n] if n >= len(base) else base[:n]
        rng.shuffle(out)
        return out

    return draw_rows(n_train, 2), draw_rows(n_test, 1 if n_test >= n_classes else 0)


def hex_ids(rng: np.random.Generator, n: int, length: int) -> list[str]:
    """n distinct lowercase hex strings of `length` characters."""
    out: list[str] = []
    seen = set()
    while len(out) < n:
        s = rng.bytes((length + 1) // 2).hex()[:length]
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def distinct_ints(rng: np.random.Generator, n: int, low: int, high: int) -> list[int]:
    """n distinct integers in [low, high), in random order."""
    out: list[int] = []
    seen = set()
    while len(out) < n:
        v = int(rng.integers(low, high))
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


def one_hot(ids: list, id_col: str, labels: list[str], classes: list[str]) -> pd.DataFrame:
    """id_col + one 0/1 column per class (in `classes` order), one row per id."""
    out = pd.DataFrame(0, index=range(len(ids)), columns=[id_col] + list(classes))
    out[id_col] = ids
    for k, lab in enumerate(labels):
        out.loc[k, lab] = 1
    return out


def write_csv(df: pd.DataFrame, path: Path, index: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=index)
    return path


# ---------------------------------------------------------------- archives


def zip_folder_files(src: Path, dst: Path) -> Path:
    """Every file under `src` into the zip `dst`, named relative to `src` (no folder entries, no top folder): how
    MLE-bench recompresses train/ and test/ (so the images sit at the zip's root)."""
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(q for q in src.rglob("*") if q.is_file()):
            zf.write(p, arcname=p.relative_to(src).as_posix())
    return dst


def zip_whole(src: Path, dst: Path) -> Path:
    """A whole public folder as one zip, files at its root: a Kaggle competition download."""
    return zip_folder_files(src, dst)


def write_7z(src: Path, dst: Path) -> Path:
    """`src` (a folder) into the 7z archive `dst`, its entries named `<src name>/<file>` (the folder at the top, as
    Kaggle's train.7z/test.7z hold it)."""
    try:
        import py7zr
    except ImportError as e:
        raise Missing7z(
            f"writing {dst.name} needs py7zr (pip install py7zr); or make the stand-in with unpack_inner=True"
        ) from e
    with py7zr.SevenZipFile(dst, "w") as z:
        z.writeall(src, arcname=src.name)
    return dst


def read_7z_names(path: Path) -> list[str]:
    import py7zr

    with py7zr.SevenZipFile(path, "r") as z:
        return sorted(z.getnames())


# ---------------------------------------------------------------- TFRecords (tf.train.Example, from the spec)


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len_field(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def tf_example(features: dict[str, bytes | str | int | float]) -> bytes:
    """A serialized tf.train.Example: bytes/str as a BytesList, int as an Int64List, float as a FloatList."""
    entries = b""
    for key, value in features.items():
        if isinstance(value, (bytes, str)):
            raw = value.encode() if isinstance(value, str) else value
            feature = _len_field(1, _len_field(1, raw))
        elif isinstance(value, (bool, int, np.integer)):
            feature = _len_field(3, _len_field(1, _varint(int(value))))
        else:
            feature = _len_field(2, _len_field(1, struct.pack("<f", float(value))))
        entries += _len_field(1, _len_field(1, key.encode()) + _len_field(2, feature))
    return _len_field(1, entries)


def write_tfrecord(path: Path, examples: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for data in examples:
            length = struct.pack("<Q", len(data))
            f.write(
                length + struct.pack("<I", _masked(crc32c(length))) + data + struct.pack("<I", _masked(crc32c(data)))
            )
    return path


def read_tfrecord(path: Path) -> list[bytes]:
    """The records of a TFRecord file, their checksums verified."""
    out, raw, pos = [], Path(path).read_bytes(), 0
    while pos < len(raw):
        (n,) = struct.unpack_from("<Q", raw, pos)
        assert struct.unpack_from("<I", raw, pos + 8)[0] == _masked(crc32c(raw[pos : pos + 8]))
        data = raw[pos + 12 : pos + 12 + n]
        assert struct.unpack_from("<I", raw, pos + 12 + n)[0] == _masked(crc32c(data))
        out.append(data)
        pos += 16 + n
    return out


# ---------------------------------------------------------------- DICOM (explicit VR little endian, uncompressed RGB)


def _dicom_element(group: int, elem: int, vr: str, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr in ("UI", "OB") else b" "
    head = struct.pack("<HH", group, elem) + vr.encode()
    if vr in ("OB", "OW", "SQ", "UN", "UT"):
        return head + b"\0\0" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def dicom_bytes(img: np.ndarray, patient_id: str, uid: str) -> bytes:
    """A minimal Secondary Capture DICOM file holding `img` (H x W x 3 uint8) uncompressed."""
    sop_class, syntax = b"1.2.840.10008.5.1.4.1.1.7", b"1.2.840.10008.1.2.1"
    meta = (
        _dicom_element(2, 1, "OB", b"\0\1")
        + _dicom_element(2, 2, "UI", sop_class)
        + _dicom_element(2, 3, "UI", uid.encode())
        + _dicom_element(2, 0x10, "UI", syntax)
    )
    meta = _dicom_element(2, 0, "UL", struct.pack("<I", len(meta))) + meta
    h, w = img.shape[:2]
    us = lambda v: struct.pack("<H", v)  # noqa: E731
    body = (
        _dicom_element(8, 0x16, "UI", sop_class)
        + _dicom_element(8, 0x18, "UI", uid.encode())
        + _dicom_element(0x10, 0x20, "LO", patient_id.encode())
        + _dicom_element(0x28, 2, "US", us(3))
        + _dicom_element(0x28, 4, "CS", b"RGB")
        + _dicom_element(0x28, 6, "US", us(0))
        + _dicom_element(0x28, 0x10, "US", us(h))
        + _dicom_element(0x28, 0x11, "US", us(w))
        + _dicom_element(0x28, 0x100, "US", us(8))
        + _dicom_element(0x28, 0x101, "US", us(8))
        + _dicom_element(0x28, 0x102, "US", us(7))
        + _dicom_element(0x28, 0x103, "US", us(0))
        + _dicom_element(0x7FE0, 0x10, "OB", np.ascontiguousarray(img, np.uint8).tobytes())
    )
    return b"\0" * 128 + b"DICM" + meta + body


# ---------------------------------------------------------------- finishing


def unpack_inner(folder: Path, names: list[str]) -> None:
    """Replace each inner archive (zip or 7z) of `folder` by what it holds, as a user who unpacked it once has."""
    for name in names:
        path = folder / name
        if name.endswith(".zip"):
            inner = folder / name[:-4]
            target = folder if inner.suffix == ".csv" else inner
            with zipfile.ZipFile(path) as zf:
                zf.extractall(target)
        else:
            import py7zr

            with py7zr.SevenZipFile(path, "r") as z:
                z.extractall(folder)
        path.unlink()


def fresh(dest: Path) -> tuple[Path, Path]:
    """(public, private) folders under `dest`, emptied."""
    dest = Path(dest)
    for sub in ("public", "private"):
        shutil.rmtree(dest / sub, ignore_errors=True)
        (dest / sub).mkdir(parents=True)
    return dest / "public", dest / "private"
