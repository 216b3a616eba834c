"""Combine the out-of-fold predictions of every backbone and score them with the competition metric.

scores.json: {"metric", "greater_is_better", "models": {backbone: {"cv", "folds"}},
              "methods": {method: {"cv", "params"}}, "ensemble": {"method", "chosen_by", "members", "cv"}}
The CV of fitted methods is honest: see blend.nested_oof.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import blend, metrics
from .errors import InputError
from .fsutil import read_table, write_csv, write_json
from .layout import Layout


def prob_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("p") and c[1:].isdigit()]


def load_backbone(fold_dirs: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """OOF rows of all folds of one backbone, and its test predictions averaged over folds."""
    oof = pd.concat([read_table(d / "oof.csv") for d in fold_dirs], ignore_index=True)
    tests = [read_table(d / "test.csv") for d in fold_dirs]
    cols = prob_columns(tests[0])
    test = tests[0][["id"]].copy()
    test[cols] = np.mean([t[cols].to_numpy() for t in tests], axis=0)
    return oof, test


def combine(model_dirs: dict[str, list[Path]], folds_csv: Path, metric: str, out_dir: Path,
            method: str = "mean") -> dict:
    folds = read_table(folds_csv)
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
    names, y, fold = list(oofs), folds["y"].to_numpy(), folds["fold"].to_numpy()
    oof_list, test_list = [oofs[n] for n in names], [tests[n][prob_columns(tests[n])].to_numpy() for n in names]
    sign = 1 if metrics.greater_is_better(metric) else -1
    honest = {m: blend.nested_oof(m, oof_list, y, fold, metric) for m in blend.METHODS}
    params = blend.fit_all(oof_list, y, metric)
    scores["methods"] = {m: {"cv": metrics.score(metric, y, honest[m]),
                             "params": blend.describe(m, params[m], names)} for m in blend.METHODS}
    if method == "auto":
        chosen = max(blend.METHODS, key=lambda m: sign * scores["methods"][m]["cv"])
    elif method in blend.METHODS:
        chosen = method
    else:
        raise InputError(f"ensemble.method: unknown method {method!r}; use auto or one of {sorted(blend.METHODS)}")
    ens_oof = honest[chosen]
    ens_test = blend.METHODS[chosen][1](test_list, params[chosen])
    first = tests[names[0]]
    scores["ensemble"] = {"method": chosen, "chosen_by": "cv" if method == "auto" else "config",
                          "members": names, "cv": scores["methods"][chosen]["cv"]}
    cols = [f"p{k}" for k in range(ens_oof.shape[1])]
    oof_df = pd.concat([folds[["id", "y", "fold"]], pd.DataFrame(ens_oof, columns=cols)], axis=1)
    test_df = pd.concat([first[["id"]], pd.DataFrame(ens_test, columns=cols)], axis=1)
    layout = Layout(Path(out_dir))  # out_dir is results/<competition>
    write_csv(layout.ensemble_oof, oof_df)
    write_csv(layout.ensemble_test, test_df)
    write_json(layout.scores, scores)
    return scores


def cv_table(scores: dict) -> str:
    """The CV table `make run` prints at the end."""
    m = scores["metric"]
    rows = [(name, s["cv"], " ".join(f"{v:.4f}" for v in s["folds"])) for name, s in scores["models"].items()]
    for name, s in scores.get("methods", {}).items():
        chosen = " <- chosen" if name == scores["ensemble"]["method"] else ""
        rows.append((f"ensemble: {name}", s["cv"], chosen))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'model':<{width}}  {'CV ' + m:>12}  folds", "-" * (width + 30)]
    lines += [f"{n:<{width}}  {cv:>12.5f}  {f}" for n, cv, f in rows]
    return "\n".join(lines)
