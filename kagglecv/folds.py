"""Stratified k-fold assignment, made once and read by every training job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from .errors import InputError
from .fsutil import read_table, write_csv


def make_folds(train_csv: str | Path, out_csv: str | Path, n_folds: int, seed: int) -> pd.DataFrame:
    """Write `id,label,y,fold` to `out_csv`. Every class needs at least `n_folds` samples."""
    df = read_table(train_csv)
    counts = df["label"].value_counts()
    small = counts[counts < n_folds]
    if len(small):
        cls, n = small.index[0], int(small.iloc[0])
        cls = cls.item() if hasattr(cls, "item") else cls  # numpy scalar -> plain value for the message
        raise InputError(f"{train_csv}: class {cls!r} has {n} sample(s), fewer than folds={n_folds}; "
                         "lower `folds` or add samples of that class")
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold = np.full(len(df), -1, dtype=int)
    for k, (_, val_idx) in enumerate(skf.split(np.zeros(len(df)), df["y"])):
        fold[val_idx] = k
    df["fold"] = fold
    write_csv(out_csv, df)
    return df
