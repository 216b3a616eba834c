"""Metadata beside the image (`data.meta_columns`): columns of train.csv and test.csv the model sees as numbers.

prepare checks the columns and copies their values, as written, into prepared/train.csv and test.csv (as
`meta:<column>`); each training job then fits a `MetaEncoder` on its fold's training rows only - never the
validation rows or the test set - and saves it with the model, so prediction and the Kaggle kernel encode new rows
exactly as training did:

  a number column  standardised with the fold's training mean and standard deviation, plus a missing indicator
                   (a missing value is 0 after standardising, the training mean, with the indicator 1)
  a text column    one-hot over the values of the fold's training rows, plus an "other" slot for values unseen
                   in training (and for missing ones, unless missing occurs in training: then it is a value)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kagglecv.core.errors import InputError
from kagglecv.core.files import META_PREFIX

PREFIX = META_PREFIX  # prepared train.csv / test.csv columns holding the raw values (kagglecv.core.files)
MISSING = {"", "nan", "NaN", "NA", "N/A", "n/a", "null", "NULL", "None", "none"}
MISSING_VALUE = "(missing)"  # a text column's category for missing values seen in training


def column(name: str) -> str:
    """The prepared tables' column of metadata column `name`."""
    return f"{PREFIX}{name}"


def is_missing(values: pd.Series) -> np.ndarray:
    return values.astype(str).str.strip().isin(MISSING).to_numpy()


def as_numbers(values: pd.Series) -> np.ndarray | None:
    """The values as floats (NaN where missing), or None when some present value is not a finite number."""
    present = ~is_missing(values)
    nums = pd.to_numeric(values.where(present), errors="coerce").to_numpy(dtype=float)
    return None if np.any(present & ~np.isfinite(nums)) else nums


def require_column(frame: pd.DataFrame, name: str, path) -> None:
    """A data.meta_columns column of `path` (train.csv, or test.csv: the kernel's hidden one too)."""
    if name not in frame.columns:
        raise InputError(f"{path}: no column {name!r} (data.meta_columns); the model needs it in train and test, or "
                         f"remove it from data.meta_columns")


def specs(train: pd.DataFrame, test: pd.DataFrame, columns: list[str], train_path) -> list[dict]:
    """[{name, kind}] of the columns (kind: number when every present value in train and test is one, else text);
    a column missing from train.csv, or empty in every training row, is a one-line error (one missing from the
    test CSV: prepare.read_test_meta)."""
    out = []
    for name in columns:
        require_column(train, name, train_path)
        if is_missing(train[name]).all():
            raise InputError(f"{train_path}: column {name!r} (data.meta_columns) is empty in every row; remove it "
                             f"from data.meta_columns")
        numeric = as_numbers(train[name]) is not None and as_numbers(test[name]) is not None
        out.append({"name": name, "kind": "number" if numeric else "text"})
    return out


@dataclass
class MetaEncoder:
    """The encoding fitted on one fold's training rows (see the module docstring)."""

    columns: list[dict] = field(default_factory=list)  # {name, kind, mean, std} or {name, kind, categories}

    @classmethod
    def fit(cls, rows: pd.DataFrame, column_specs: list[dict]) -> "MetaEncoder":
        fitted = []
        for spec in column_specs:
            values = rows[column(spec["name"])]
            if spec["kind"] == "number":
                nums = as_numbers(values)
                present = nums[np.isfinite(nums)]
                mean = float(present.mean()) if len(present) else 0.0
                std = float(present.std()) if len(present) else 1.0
                fitted.append({**spec, "mean": mean, "std": std if std > 0 else 1.0})
            else:
                fitted.append({**spec, "categories": sorted(set(text_values(values)))})
        return cls(fitted)

    @property
    def width(self) -> int:
        return sum(2 if c["kind"] == "number" else len(c["categories"]) + 1 for c in self.columns)

    def transform(self, rows: pd.DataFrame) -> np.ndarray:
        """float32 rows x width."""
        parts = []
        for c in self.columns:
            values = rows[column(c["name"])]
            if c["kind"] == "number":
                nums = as_numbers(values)
                if nums is None:
                    raise InputError(f"metadata column {c['name']!r}: the model was trained on numbers, but "
                                     f"these rows hold text; give it numbers")
                missing = ~np.isfinite(nums)
                parts += [np.where(missing, 0.0, (nums - c["mean"]) / c["std"]), missing.astype(float)]
            else:
                index = {v: k for k, v in enumerate(c["categories"])}
                codes = [index.get(v, len(index)) for v in text_values(values)]
                parts.append(np.eye(len(index) + 1)[codes].T if len(codes) else np.zeros((len(index) + 1, 0)))
        if not parts:
            return np.zeros((len(rows), 0), dtype=np.float32)
        return np.vstack([np.atleast_2d(p) for p in parts]).T.astype(np.float32)

    def to_json(self) -> list[dict]:
        return self.columns

    @classmethod
    def from_json(cls, data) -> "MetaEncoder":
        return cls(list(data or []))


def text_values(values: pd.Series) -> list[str]:
    """A text column's values as categories: stripped, missing spellings as one value."""
    return [MISSING_VALUE if m else str(v).strip() for v, m in zip(values, is_missing(values))]
