"""Metadata beside the image (`data.meta_columns`): columns of train.csv and test.csv the model sees as numbers.

prepare checks the columns and copies their values, as written, into prepared/train.csv and test.csv (as
`meta:<column>`); each training job then fits a `MetaEncoder` on its fold's training rows only - never the
validation rows or the test set - and saves it with the model, so prediction and the Kaggle kernel encode new rows
exactly as training did:

  a number column  standardised with the fold's training mean and standard deviation, plus a missing indicator
                   (a missing value is 0 after standardising, the training mean, with the indicator 1). A column is
                   one when most of its present values are numbers (NUMBER_SHARE); a value that is not a finite
                   number ("unknown", inf, 1e400) is then missing, counted and reported once (prepare's log for
                   train.csv and test.csv, the kernel's for the hidden test CSV), never an error
  a text column    one-hot over the values of the fold's training rows, plus an "other" slot for values unseen
                   in training (and for missing ones, unless missing occurs in training: then it is a value)
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kagglecv.config.data import DataConfig
from kagglecv.core.errors import InputError
from kagglecv.core.files import META_PREFIX
from kagglecv.data.tables import Template, match_column, read_csv, refuse_duplicates

PREFIX = META_PREFIX  # prepared train.csv / test.csv columns holding the raw values (kagglecv.core.files)
MISSING = {"", "nan", "NaN", "NA", "N/A", "n/a", "null", "NULL", "None", "none"}
MISSING_VALUE = "(missing)"  # a text column's category for missing values seen in training
NUMBER_SHARE = 0.5  # a number column: more than this share of its present values (train and test) are numbers
EXAMPLES = 3  # values quoted when a column's unparsed values are reported

log = logging.getLogger("kagglecv.data.meta")


def column(name: str) -> str:
    """The prepared tables' column of metadata column `name`."""
    return f"{PREFIX}{name}"


def is_missing(values: pd.Series) -> np.ndarray:
    return values.astype(str).str.strip().isin(MISSING).to_numpy()


def as_numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(the values as floats, NaN where missing or not a finite number; where a present value is not a finite number:
    text, inf, or a number too large for a float such as 1e400)."""
    present = ~is_missing(values)
    nums = pd.to_numeric(values.astype(str).str.strip().where(present), errors="coerce")
    nums = nums.to_numpy(dtype=float, copy=True)
    bad = present & ~np.isfinite(nums)
    nums[bad] = np.nan
    return nums, bad


def numbers_share(values: pd.Series) -> float:
    """The share of the present values that read as numbers (inf and 1e400 included: numbers, if not finite ones)."""
    present = ~is_missing(values)
    if not present.any():
        return 1.0
    parsed = pd.to_numeric(values.astype(str).str.strip()[present], errors="coerce").to_numpy(dtype=float)
    return float(np.mean(~np.isnan(parsed)))


def report_unparsed(values: pd.Series, name: str, path) -> int:
    """Log, once, how many present values of number column `name` in `path` are not finite numbers (they are read
    as missing); the count."""
    _, bad = as_numbers(values)
    n = int(bad.sum())
    if n:
        shown = ", ".join(repr(str(v)) for v in pd.unique(values[bad].astype(str))[:EXAMPLES])
        log.warning(
            "%s: column %r (data.meta_columns): %d of %d value(s) are not finite numbers (%s); read as "
            "missing, the missing indicator set",
            path,
            name,
            n,
            len(values),
            shown,
        )
    return n


def require_column(frame: pd.DataFrame, name: str, path) -> None:
    """A data.meta_columns column of `path` (train.csv, or test.csv: the kernel's hidden one too)."""
    if name not in frame.columns:
        raise InputError(
            f"{path}: no column {name!r} (data.meta_columns); the model needs it in train and test, or "
            f"remove it from data.meta_columns"
        )


def specs(train: pd.DataFrame, test: pd.DataFrame, columns: list[str], train_path, test_path=None) -> list[dict]:
    """[{name, kind}] of the columns (kind: number when most present values in train and test are numbers,
    NUMBER_SHARE, else text; the values of a number column that are not finite numbers reported once per file);
    a column missing from train.csv, or empty in every training row, is a one-line error (one missing from the
    test CSV: prepare.read_test_meta)."""
    out = []
    for name in columns:
        require_column(train, name, train_path)
        if is_missing(train[name]).all():
            raise InputError(
                f"{train_path}: column {name!r} (data.meta_columns) is empty in every row; remove it "
                f"from data.meta_columns"
            )
        numeric = numbers_share(pd.concat([train[name], test[name]], ignore_index=True)) > NUMBER_SHARE
        if numeric:  # reported by file name: prepare reads them from a temporary folder
            report_unparsed(train[name], name, Path(train_path).name)
            report_unparsed(test[name], name, Path(test_path).name if test_path else "the test CSV")
        out.append({"name": name, "kind": "number" if numeric else "text"})
    return out


def metadata_rows(
    test: pd.DataFrame, id_column: str, ids: list, columns: list[str], path, missing: list | None = None
) -> pd.DataFrame:
    """The metadata `columns` of the test `ids`, row for row, from the test CSV `test` (raw values). An id without
    a row is an error; with `missing` (a list: the kernel, which cannot drop a hidden test row) its values are
    missing and (id, reason) is appended: it is predicted with the prior, counted as an unreadable image is."""
    have = set(test[id_column])
    absent = [i for i in ids if i not in have]
    if absent and missing is None:
        raise InputError(
            f"{path}: test id {absent[0]!r} has no row; the metadata of every test image is needed (data.meta_columns)"
        )
    for i in absent:
        missing.append((i, f"has no row in {path} (data.meta_columns)"))
    return test.set_index(id_column).reindex(ids)[columns].fillna("").reset_index(drop=True)


@dataclass
class MetaEncoder:
    """The encoding fitted on one fold's training rows (see the module docstring)."""

    columns: list[dict] = field(default_factory=list)  # {name, kind, mean, std} or {name, kind, categories}

    @classmethod
    def fit(cls, rows: pd.DataFrame, column_specs: list[dict]) -> MetaEncoder:
        fitted = []
        for spec in column_specs:
            values = rows[column(spec["name"])]
            if spec["kind"] == "number":
                nums, _ = as_numbers(values)
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
        """float32 rows x width. A value of a number column that is not a finite number is missing (reported where
        the values are read: report_unparsed)."""
        parts = []
        for c in self.columns:
            values = rows[column(c["name"])]
            if c["kind"] == "number":
                nums, _ = as_numbers(values)
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
    def from_json(cls, data) -> MetaEncoder:
        return cls(list(data or []))


def text_values(values: pd.Series) -> list[str]:
    """A text column's values as categories: stripped, missing spellings as one value."""
    return [MISSING_VALUE if m else str(v).strip() for v, m in zip(values, is_missing(values))]


def group_values(train: pd.DataFrame, tid: str, cfg: DataConfig, path: Path) -> list[str] | None:
    """data.group_column's values (patients, photographers): folds keep each group in one fold."""
    if not cfg.group_column:
        return None
    col = match_column(train, cfg.group_column, path, "group", "fix data.group_column")
    empty = (train[col].str.strip() == "").to_numpy()
    if empty.any():
        raise InputError(
            f"{path}: id {train[tid].iloc[int(np.flatnonzero(empty)[0])]!r} has no group in column "
            f"{col!r} (data.group_column); fill it or drop the row"
        )
    return train[col].tolist()


def read_test_meta(root: Path, cfg: DataConfig, template: Template, missing: list | None = None) -> pd.DataFrame | None:
    """data.meta_columns of the template's test ids, row for row, from data.test_csv (raw values); None when the
    config names none. Read by prepare and, from the hidden test CSV alone, by the Kaggle kernel (`missing`: see
    meta.metadata_rows)."""
    if not cfg.meta_columns:
        return None
    path = root / cfg.test_table
    test = read_csv(path)
    col = match_column(test, template.id_column, path, "id", "rename it, or set data.id_column")
    refuse_duplicates(test[col], path, col)
    for name in cfg.meta_columns:
        require_column(test, name, path)
    return metadata_rows(test, col, template.ids, cfg.meta_columns, path, missing)


def meta_values(root: Path, cfg: DataConfig, train: pd.DataFrame, template: Template) -> dict | None:
    """data.meta_columns: their kinds and raw values for the train rows and, from data.test_csv, the test ids."""
    from kagglecv.config.checks import check_meta_columns  # not the id, a target or the group column

    check_meta_columns(asdict(cfg), [template.id_column, *template.targets])
    test = read_test_meta(root, cfg, template)
    if test is None:
        return None
    kinds = specs(train, test, cfg.meta_columns, root / cfg.train_csv, root / cfg.test_table)
    return {"specs": kinds, "train": train[cfg.meta_columns].reset_index(drop=True), "test": test}
