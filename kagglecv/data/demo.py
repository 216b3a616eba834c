"""The embedded default competition: scikit-learn's digits, shipped exactly as Kaggle ships an image competition.

`<name>.zip` holds train.csv (id,label), train/*.png, test/*.png and sample_submission.csv; the test labels
go to a separate solution.csv outside the zip, so the pipeline never sees them. `write_competition` writes that
zip; the tests' and benchmarks' miniature competitions are written with it too.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from kagglecv.core.files import atomic_path, write_csv

Dest = TypeVar("Dest", bound=str | os.PathLike | BinaryIO)


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def write_competition(
    dest: Dest,
    train: pd.DataFrame | None,
    images: Mapping[str, np.ndarray | bytes],
    sample: pd.DataFrame,
    *,
    files: Mapping[str, pd.DataFrame | bytes] | None = None,
) -> Dest:
    """A competition zip as Kaggle ships one: train.csv (none where the labels live in the file names or folders),
    the other `files` (test.csv as a table, a nested train.zip as bytes...), sample_submission.csv, then `images`
    ({path in the zip such as 'train/x.png': an image array, written as PNG, or an encoded file's bytes}), in that
    order; returns `dest`.

    `dest` is a file, written atomically (a workflow reading it never sees half a zip), or an open binary file (the
    bytes a stand-in Kaggle server serves). Every entry is dated 1980-01-01, zip's epoch, not the clock: the bytes
    depend on the entries alone, so the demo's zip is the same on every machine and every run."""
    entries = {"train.csv": train} if train is not None else {}
    entries |= {**(files or {}), "sample_submission.csv": sample, **images}
    with atomic_path(dest) if isinstance(dest, str | os.PathLike) else nullcontext(dest) as target:
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, value in entries.items():
                if isinstance(value, pd.DataFrame):
                    value = value.to_csv(index=False)
                elif isinstance(value, np.ndarray):
                    value = png_bytes(value)
                info = zipfile.ZipInfo(name)  # dated 1980-01-01; read-write for the owner, as writestr(name) has it
                info.external_attr = 0o600 << 16
                zf.writestr(info, value, compress_type=zipfile.ZIP_DEFLATED)
    return dest


def make_digits_competition(
    zip_path: str | Path, solution_path: str | Path, *, test_size: float = 0.2, seed: int = 0
) -> None:
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # 8x8, values 0..16 -> 0..255
    labels = digits.target
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=test_size, random_state=seed, stratify=labels
    )
    # Kaggle-style opaque ids; the file name carries an extension the id column does not.
    ids = np.array([f"img_{i:05d}" for i in range(len(labels))])
    train = pd.DataFrame({"id": ids[idx_train], "label": labels[idx_train]})
    sample = pd.DataFrame({"id": ids[idx_test], "label": 0})
    solution = pd.DataFrame({"id": ids[idx_test], "label": labels[idx_test]})
    pngs = {
        f"{split}/{ids[i]}.png": images[i] for split, index in (("train", idx_train), ("test", idx_test)) for i in index
    }
    write_competition(zip_path, train, pngs, sample)
    write_csv(solution_path, solution)
