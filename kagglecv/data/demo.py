"""The embedded default competition: scikit-learn's digits, shipped exactly as Kaggle ships an image competition.

`<name>.zip` holds train.csv (id,label), train/*.png, test/*.png and sample_submission.csv; the test labels
go to a separate solution.csv outside the zip, so the pipeline never sees them.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from kagglecv.core.files import atomic_path, write_csv


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


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
    with atomic_path(zip_path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("train.csv", train.to_csv(index=False))
            zf.writestr("sample_submission.csv", sample.to_csv(index=False))
            for split, index in (("train", idx_train), ("test", idx_test)):
                for i in index:
                    zf.writestr(f"{split}/{ids[i]}.png", png_bytes(images[i]))
    write_csv(solution_path, solution)
