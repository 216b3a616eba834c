"""Decisions from predictions: a class, the labels above their thresholds, a grade between cut points.

Metrics that compare decisions (kagglecv.scoring.metrics) and the thresholds fitted for them
(kagglecv.scoring.thresholds) both decide through `decide`; this module imports neither.
"""

from __future__ import annotations

import numpy as np

from kagglecv.core.errors import InputError


def midpoints(grades) -> np.ndarray:
    """Default cut points: halfway between consecutive grades, i.e. rounding to the nearest grade."""
    g = np.sort(np.asarray(grades, dtype=float))
    return (g[:-1] + g[1:]) / 2


def label_thresholds(thresholds, n_labels: int) -> np.ndarray:
    t = np.full(n_labels, 0.5) if thresholds is None else np.asarray(thresholds, dtype=float)
    t = np.full(n_labels, float(t)) if t.ndim == 0 else t  # one threshold for every label
    if len(t) != n_labels:
        raise InputError(
            f"thresholds: {len(t)} thresholds for {n_labels} labels; fit them again on this task's OOF predictions"
        )
    return t


def cut_points(thresholds, grades: np.ndarray) -> np.ndarray:
    cuts = midpoints(grades) if thresholds is None else np.asarray(thresholds, dtype=float)
    if len(cuts) != len(grades) - 1 or np.any(np.diff(cuts) < 0):
        raise InputError(
            f"thresholds: cut points {np.round(cuts, 4).tolist()} do not fit grades "
            f"{grades.tolist()} (need {len(grades) - 1}, ascending); fit them again"
        )
    return cuts


def decide(pred, thresholds, kind: str, grades=None) -> np.ndarray:
    """Decisions from predictions (rows x outputs): multilabel a 0/1 int matrix (probability > threshold);
    ordinal the grade values (n,): value < cuts[0] -> grades[0], cuts[0] <= value < cuts[1] -> grades[1], ...;
    binary/multiclass the argmax class index; regression the values. thresholds=None: the defaults."""
    pred = np.asarray(pred, dtype=float)
    pred = pred[:, None] if pred.ndim == 1 else pred
    if kind == "multilabel":
        return (pred > label_thresholds(thresholds, pred.shape[1])).astype(int)
    if kind == "ordinal":
        if grades is None:
            raise InputError("grades: ordinal decisions need the task's grades; pass grades=Task.grades")
        g = np.sort(np.asarray(grades, dtype=float))
        return g[np.digitize(pred[:, 0], cut_points(thresholds, g))]
    if kind in ("binary", "multiclass"):
        return pred.argmax(1)
    if kind == "regression":
        return pred[:, 0]
    raise InputError(f"task: unknown task {kind!r}; use binary, multiclass, multilabel, regression or ordinal")
