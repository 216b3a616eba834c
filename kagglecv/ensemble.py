"""Combine the out-of-fold predictions of every backbone and score them with the competition metric.

scores.json: {"metric", "greater_is_better", "models": {backbone: {"cv", "folds"}}, "ensemble": {"method", "cv"}}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics
from .errors import InputError
from .fsutil import write_csv, write_json


def prob_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("p") and c[1:].isdigit()]


def load_backbone(fold_dirs: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """OOF rows of all folds of one backbone, and its test predictions averaged over folds."""
    oof = pd.concat([pd.read_csv(d / "oof.csv", dtype={"id": str}) for d in fold_dirs], ignore_index=True)
    tests = [pd.read_csv(d / "test.csv", dtype={"id": str}) for d in fold_dirs]
    cols = prob_columns(tests[0])
    test = tests[0][["id"]].copy()
    test[cols] = np.mean([t[cols].to_numpy() for t in tests], axis=0)
    return oof, test


def combine(model_dirs: dict[str, list[Path]], folds_csv: Path, metric: str, out_dir: Path,
            method: str = "mean") -> dict:
    folds = pd.read_csv(folds_csv, dtype={"id": str})
    scores = {"metric": metric, "greater_is_better": metrics.greater_is_better(metric), "models": {}}
    oofs, tests = {}, {}
    for name, dirs in model_dirs.items():
        oof, test = load_backbone([Path(d) for d in dirs])
        # Align every backbone's OOF rows to folds.csv order, so rows mean the same image across backbones.
        oof = folds[["id"]].merge(oof, on="id", how="left", validate="one_to_one")
        cols = prob_columns(oof)
        if oof[cols].isna().any().any():
            missing = oof.loc[oof[cols].isna().any(axis=1), "id"].iloc[0]
            raise InputError(f"{name}: no out-of-fold prediction for id {missing!r}; rerun its training jobs")
        oofs[name], tests[name] = oof[cols].to_numpy(), test
        per_fold = [metrics.score(metric, oof.loc[oof["fold"] == k, "y"], oofs[name][(oof["fold"] == k).to_numpy()])
                    for k in sorted(oof["fold"].unique())]
        scores["models"][name] = {"cv": metrics.score(metric, folds["y"], oofs[name]), "folds": per_fold}
    if method != "mean":
        raise InputError(f"ensemble.method: {method!r} is not available; use mean")
    ens_oof = np.mean(list(oofs.values()), axis=0)
    first = next(iter(tests.values()))
    ens_test = np.mean([t[prob_columns(t)].to_numpy() for t in tests.values()], axis=0)
    scores["ensemble"] = {"method": method, "members": list(model_dirs), "cv": metrics.score(metric, folds["y"], ens_oof)}
    cols = [f"p{k}" for k in range(ens_oof.shape[1])]
    oof_df = pd.concat([folds[["id", "y", "fold"]], pd.DataFrame(ens_oof, columns=cols)], axis=1)
    test_df = pd.concat([first[["id"]], pd.DataFrame(ens_test, columns=cols)], axis=1)
    write_csv(out_dir / "ensemble_oof.csv", oof_df)
    write_csv(out_dir / "ensemble_test.csv", test_df)
    write_json(out_dir / "scores.json", scores)
    return scores


def cv_table(scores: dict) -> str:
    """The CV table `make run` prints at the end."""
    m = scores["metric"]
    rows = [(name, s["cv"], " ".join(f"{v:.4f}" for v in s["folds"])) for name, s in scores["models"].items()]
    rows.append((f"ensemble ({scores['ensemble']['method']})", scores["ensemble"]["cv"], ""))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'model':<{width}}  {'CV ' + m:>12}  folds", "-" * (width + 30)]
    lines += [f"{n:<{width}}  {cv:>12.5f}  {f}" for n, cv, f in rows]
    return "\n".join(lines)
