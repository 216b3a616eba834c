"""A Kaggle-format submission: exactly the ids, order and columns of sample_submission.csv."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .fsutil import read_table, write_csv
from .metrics import PROBABILITY_METRICS


def submission_format(meta: dict, metric: str) -> str:
    """class_columns (one probability column per class), probability (P of the second class), or label."""
    if len(meta["target_columns"]) > 1:
        return "class_columns"
    if meta["task"] == "binary" and metric in PROBABILITY_METRICS:
        return "probability"
    return "label"


def make_submission(ensemble_test_csv: Path, prepared_dir: Path, sample_csv_path: Path, metric: str,
                    out_csv: Path) -> pd.DataFrame:
    prepared_dir = Path(prepared_dir)
    meta = json.loads((prepared_dir / "meta.json").read_text())
    sample = pd.read_csv(sample_csv_path, dtype=str, keep_default_na=False)
    id_col, classes = meta["id_column"], meta["classes"]
    preds = read_table(ensemble_test_csv)
    probs = preds[[f"p{k}" for k in range(len(classes))]].to_numpy()
    pred_by_id = dict(zip(preds["id"], range(len(preds))))
    missing = [i for i in sample[id_col] if i not in pred_by_id]
    if missing:
        raise InputError(f"{ensemble_test_csv}: no prediction for id {missing[0]!r} of {sample_csv_path}; "
                         "rerun the training jobs")
    probs = probs[[pred_by_id[i] for i in sample[id_col]]]
    if not np.isfinite(probs).all():
        bad = sample[id_col].iloc[int(np.flatnonzero(~np.isfinite(probs).all(1))[0])]
        raise InputError(f"{ensemble_test_csv}: prediction for id {bad!r} is not finite; "
                         "a training job diverged, lower train.lr and rerun")
    out = sample.copy()
    fmt = submission_format(meta, metric)
    if fmt == "class_columns":
        names = [str(c) for c in classes]
        unknown = [c for c in meta["target_columns"] if c not in names]
        if unknown:
            raise InputError(f"{sample_csv_path}: column {unknown[0]!r} is not a class in train labels {names[:5]}...")
        for c in meta["target_columns"]:
            out[c] = probs[:, names.index(c)]
    elif fmt == "probability":
        out[meta["target_columns"][0]] = probs[:, 1]
    else:
        out[meta["target_columns"][0]] = [classes[k] for k in probs.argmax(1)]
    write_csv(out_csv, out)
    return out
