"""Combine the out-of-fold predictions of every backbone and score them with the competition metric.

scores.json: {"metric", "greater_is_better", "task", "models": {backbone: {"cv", "folds"}},
              "methods": {method: {"cv", "folds", "params"}},
              "ensemble": {"method", "chosen_by", "members", "cv", "params"[, "thresholds"]}}
`ensemble.params` are the chosen method's fitted parameters (blend.to_json): `predict` and the Kaggle kernel
apply exactly these to new images. Every reader reads it as kagglecv.core.results.Scores.
Every CV is honest: fitted blends by blend.nested_oof, and thresholds or cut points (multilabel F-scores,
ordinal grades) by thresholds.nested; `thresholds` are then fitted on all OOF rows for the test set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kagglecv.core.errors import InputError
from kagglecv.core.files import read_table, write_csv, write_json
from kagglecv.core.layout import Layout, ModelFiles
from kagglecv.core.results import PreparedMeta, Scores
from kagglecv.core.tasks import Task
from kagglecv.scoring import blend, metrics, thresholds


def prob_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("p") and c[1:].isdigit()]


def load_backbone(fold_dirs: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """OOF rows of all folds of one backbone, and its test predictions averaged over folds."""
    folds = [ModelFiles(d) for d in fold_dirs]
    oof = pd.concat([read_table(f.oof) for f in folds], ignore_index=True)
    tests = [read_table(f.test) for f in folds]
    cols = prob_columns(tests[0])
    test = tests[0][["id"]].copy()
    test[cols] = np.mean([t[cols].to_numpy() for t in tests], axis=0)
    return oof, test


def results_task(layout: Layout, kind: str = "multiclass") -> Task:
    """The task of a results folder: its prepared meta.json (the ensemble rule declares it an input); bare OOF
    files without one are `kind` (what their scores.json says, else classification)."""
    return Task.of(PreparedMeta.read(layout.meta)) if layout.meta.exists() else Task(kind)


def honest_score(metric: str, task: Task, y, pred, fold) -> tuple[float, list[float]]:
    """(CV, per-fold scores) of OOF predictions. Where the metric needs decisions (F2 thresholds, QWK cut points),
    each fold is decided by thresholds fitted on the other folds only (thresholds.nested)."""
    folds = sorted(np.unique(fold))
    if not metrics.needs_thresholds(metric, task.kind):
        return (
            metrics.score(metric, y, pred, grades=task.grades),
            [metrics.score(metric, y[fold == k], pred[fold == k], grades=task.grades) for k in folds],
        )
    cv, per_fold_thresholds = thresholds.nested(metric, y, pred, fold, task.grades)
    return cv, [
        metrics.score(metric, y[fold == k], pred[fold == k], thresholds=t, grades=task.grades)
        for k, t in zip(folds, per_fold_thresholds)
    ]


def combine(
    model_dirs: dict[str, list[Path]], folds_csv: Path, metric: str, out_dir: Path, method: str = "mean"
) -> Scores:
    layout = Layout(Path(out_dir))  # out_dir is results/<competition>
    task = results_task(layout)
    folds = read_table(folds_csv)
    y, fold = task.targets(folds), folds["fold"].to_numpy()
    scores = {"metric": metric, "greater_is_better": metrics.greater_is_better(metric), "task": task.kind, "models": {}}
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
        cv, per_fold = honest_score(metric, task, y, oofs[name], fold)
        scores["models"][name] = {"cv": cv, "folds": per_fold}
    names = list(oofs)
    oof_list, test_list = [oofs[n] for n in names], [tests[n][prob_columns(tests[n])].to_numpy() for n in names]
    sign = 1 if metrics.greater_is_better(metric) else -1
    available = blend.methods(task.kind, metric, len(names))
    honest = {m: blend.nested_oof(m, oof_list, y, fold, metric, kind=task.kind) for m in available}
    params = blend.fit_all(oof_list, y, metric, kind=task.kind)
    scores["methods"] = {}
    for m in available:
        cv, per_fold = honest_score(metric, task, y, honest[m], fold)
        scores["methods"][m] = {"cv": cv, "folds": per_fold, "params": blend.describe(m, params[m], names)}
    if len(names) == 1:  # one model: the ensemble is that model, whatever ensemble.method says
        chosen, method = "mean", "single model"
    elif method == "auto":
        chosen = max(available, key=lambda m: sign * scores["methods"][m]["cv"])
    elif method in available:
        chosen = method
    elif method in blend.METHODS:
        raise InputError(
            f"ensemble.method: {method} does not suit {len(names)} {task.kind} model(s) scored by "
            f"{metric}; use auto or one of {available}"
        )
    else:
        raise InputError(f"ensemble.method: unknown method {method!r}; use auto or one of {sorted(blend.METHODS)}")
    ens_oof = honest[chosen]
    ens_test = blend.apply(chosen, test_list, params[chosen], kind=task.kind)
    scores["ensemble"] = {
        "method": chosen,
        "chosen_by": {"auto": "cv", "single model": "single model"}.get(method, "config"),
        "members": names,
        "cv": scores["methods"][chosen]["cv"],
        "params": blend.to_json(params[chosen]),
    }  # what predict and the kernel apply
    if metrics.needs_thresholds(metric, task.kind):  # fitted on every OOF row, applied to the test set
        fitted = thresholds.fit(metric, y, ens_oof, task.grades)
        scores["ensemble"]["thresholds"] = [float(t) for t in fitted]
    cols = [f"p{k}" for k in range(ens_oof.shape[1])]
    keep = [c for c in ("id", "label", "y", "fold") if c in folds.columns]
    oof_df = pd.concat([folds[keep], pd.DataFrame(ens_oof, columns=cols)], axis=1)
    test_df = pd.concat([tests[names[0]][["id"]], pd.DataFrame(ens_test, columns=cols)], axis=1)
    write_csv(layout.ensemble_oof, oof_df)
    write_csv(layout.ensemble_test, test_df)
    write_json(layout.scores, scores)
    return Scores.of(scores)


def cv_table(scores: Scores) -> str:
    """The CV table `make run` prints at the end."""
    scores = Scores.of(scores)
    m = scores.metric
    rows = [(name, s["cv"], " ".join(f"{v:.4f}" for v in s["folds"])) for name, s in scores.models.items()]
    for name, s in scores.methods.items():
        chosen = " <- chosen" if name == scores.ensemble.method else ""
        rows.append((f"ensemble: {name}", s["cv"], chosen))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'model':<{width}}  {'CV ' + m:>12}  folds", "-" * (width + 30)]
    lines += [f"{n:<{width}}  {cv:>12.5f}  {f}" for n, cv, f in rows]
    return "\n".join(lines)
