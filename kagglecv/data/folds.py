"""K-fold assignment per task kind, made once and read by every training job.

  binary, multiclass, ordinal  StratifiedKFold on the class / grade; every class needs `n_folds` samples, unless
                               there are many classes (more than LONG_TAIL): then rare ones (Whale's one-image
                               whales, Herbarium's rare species) land where they fall, and are counted in the log
  multilabel                   MultilabelStratifiedKFold (iterative stratification, Sechidis et al. 2011): each
                               label's share about equal in every fold; a label rarer than n_folds is allowed
                               (it cannot be in every fold, and forbidding it would refuse most real tag sets)
  regression                   StratifiedKFold on quantile bins of the value, so every fold spans the range

With a `group` column (prepare's copy of data.group_column: patient, photographer) each group lies in one fold:
StratifiedGroupKFold on the same key. Multilabel has no grouped iterative stratifier, so it stratifies groups
on one key per row, its rarest label: common labels land in every fold anyway, rare ones are what
stratification must spread (a row without labels has key "").
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from kagglecv.core.errors import InputError
from kagglecv.core.files import write_csv
from kagglecv.core.tasks import KINDS, Task, class_names

MAX_BINS = 10  # regression: quantile bins of y
LONG_TAIL = 50  # classes beyond which a class rarer than the folds is the competition's tail, not a wrong column


def _read(train_csv, task: str) -> pd.DataFrame:
    """Prepared train.csv with every column as written (ids, labels, groups, multilabel's tags in `y`), but a
    number in `y` where the task has one, so folds.csv keeps the types prepare wrote."""
    df = pd.read_csv(train_csv, dtype=str, keep_default_na=False)
    if task != "multilabel":
        y = pd.to_numeric(df["y"], errors="coerce")
        if y.isna().any():
            raise InputError(
                f"{train_csv}: y {df['y'][y.isna()].iloc[0]!r} is not a number for a {task} task; run prepare again"
            )
        df["y"] = y
    return df


def _check_classes(df: pd.DataFrame, train_csv, n_folds: int) -> None:
    counts = df["label"].value_counts()
    small = counts[counts < n_folds]
    if len(small) and len(counts) > LONG_TAIL:
        print(
            f"{train_csv}: {len(small)} of {len(counts)} classes have fewer than folds={n_folds} samples "
            f"({int(small.sum())} rows); they are in some folds' validation only",
            flush=True,
        )
    elif len(small):
        cls, n = small.index[0], int(small.iloc[0])
        cls = cls.item() if hasattr(cls, "item") else cls  # numpy scalar -> plain value for the message
        raise InputError(
            f"{train_csv}: class {cls!r} has {n} sample(s), fewer than folds={n_folds}; "
            "lower `folds` or add samples of that class"
        )


def _groups(df: pd.DataFrame, n_folds: int) -> np.ndarray | None:
    """The rows' groups, checked to make n_folds folds possible; None without a group column."""
    if "group" not in df.columns:
        return None
    groups = df["group"].astype(str).str.strip()
    empty = groups == ""
    if empty.any():
        raise InputError(f"data.group_column: id {df['id'][empty].iloc[0]!r} has no group; fill it in or drop the row")
    counts = groups.value_counts()
    if len(counts) < n_folds:
        raise InputError(
            f"data.group_column: {len(counts)} distinct group(s), fewer than folds={n_folds}; use "
            "fewer folds or a finer grouping"
        )
    big, n = counts.index[0], int(counts.iloc[0])
    if n > len(df) / n_folds:  # that group alone overfills its fold: folds could not be near equal in size
        raise InputError(
            f"data.group_column: group {big!r} has {n} of {len(df)} rows, more than one fold "
            f"({len(df) // n_folds}) can hold; use fewer folds or a finer grouping"
        )
    return groups.to_numpy()


def _rarest_label(tags: np.ndarray) -> np.ndarray:
    """Each row's rarest label (by count over all rows) as its stratification key; -1 for a row with none."""
    counts = tags.sum(0)
    rarity = np.where(tags == 1, counts, np.inf)
    return np.where(tags.any(1), rarity.argmin(1), -1)


def _value_bins(y: np.ndarray, n_folds: int) -> np.ndarray:
    """Equal-count bins of y (ties split by row order), at most MAX_BINS, each at least n_folds rows."""
    n_bins = max(1, min(MAX_BINS, len(y) // n_folds))
    rank = np.argsort(np.argsort(y, kind="stable"), kind="stable")
    return rank * n_bins // len(y)


def _splits(df: pd.DataFrame, task: str, n_folds: int, seed: int, groups):
    """(train, validation) index pairs for the task, grouped where `groups` is given."""
    x = np.zeros(len(df))
    if task == "multilabel":
        tags = Task("multilabel", tuple(class_names(df["label"], "multilabel"))).targets(df)
        if groups is None:
            from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

            return list(MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(x, tags))
        key = _rarest_label(tags)
    elif task == "regression":
        key = _value_bins(df["y"].to_numpy(), n_folds)
    else:
        key = df["y"].to_numpy()
    kind = StratifiedKFold if groups is None else StratifiedGroupKFold  # StratifiedKFold ignores groups (None)
    # a long tail's rare classes (_check_classes) and multilabel keys rarer than n_folds (module docstring) are allowed
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        return list(kind(n_splits=n_folds, shuffle=True, random_state=seed).split(x, key, groups))


def make_folds(
    train_csv: str | Path, out_csv: str | Path, n_folds: int, seed: int, task: str = "multiclass"
) -> pd.DataFrame:
    """Write train.csv's columns (id,label,y[,group]) plus `fold` to `out_csv`, atomically; return that table."""
    if task not in KINDS:
        raise InputError(f"task: unknown task {task!r}; use one of {', '.join(KINDS)}")
    df = _read(train_csv, task)
    if len(df) < n_folds:
        raise InputError(f"{train_csv}: {len(df)} row(s), fewer than folds={n_folds}; lower `folds`")
    if task in ("binary", "multiclass", "ordinal"):
        _check_classes(df, train_csv, n_folds)
    groups = _groups(df, n_folds)
    fold = np.full(len(df), -1, dtype=int)
    for k, (_, val_idx) in enumerate(_splits(df, task, n_folds, seed, groups)):
        fold[val_idx] = k
    empty = sorted(set(range(n_folds)) - set(fold))
    if empty:  # grouped splits of few, uneven groups can leave a fold without rows
        where = "data.group_column" if groups is not None else str(train_csv)
        raise InputError(f"{where}: fold {empty[0]} got no rows; use fewer folds")
    df["fold"] = fold
    write_csv(out_csv, df)
    return df
