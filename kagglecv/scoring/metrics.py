"""Competition metrics for every task kind (kagglecv/core/tasks.py), computed with scikit-learn.

  kind                y                              pred (always 2-D)
  binary, multiclass  class indices (n,)             class probabilities (n x K), rows sum to 1
  multilabel          0/1 matrix (n x L)             per-label probabilities (n x L), independent
  regression          values (n,)                    values (n x 1)
  ordinal             grade values (n,), e.g. 0..4   continuous values on the grade scale (n x 1)

`score` tells the kind from the layout of y and pred. map@<k> (map@5) is the mean average precision of the k
most probable classes, for a top-k submission. Metrics that compare decisions (accuracy, F-scores, QWK)
make them from pred: argmax for classes; per-label thresholds for multilabel (default 0.5); cut points between
grades for ordinal (default the midpoints: rounding to the nearest grade). thresholds.py fits better thresholds
on OOF rows; pass them as `thresholds=`. Ordinal decisions need the grade set: pass `grades=` (Task.grades),
since a slice of y (one fold) may lack a grade; it defaults to the distinct values of y.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kagglecv.core.errors import InputError
from kagglecv.core.tasks import CLASSIFICATION, KINDS
from kagglecv.scoring.decisions import decide

# ---------------------------------------------------------------- inputs and decisions


def _skm():
    """sklearn.metrics, imported where a metric needs it: the import costs a training job about a second of
    start-up, and accuracy (the commonest metric) does without it."""
    from sklearn import metrics

    return metrics


def arrays(y, pred) -> tuple[np.ndarray, np.ndarray]:
    y, pred = np.asarray(y), np.asarray(pred, dtype=float)
    return y, (pred[:, None] if pred.ndim == 1 else pred)  # a bare vector of values is one column


def layout(y: np.ndarray, pred: np.ndarray) -> str:
    """'multilabel' (y is a matrix), 'numeric' (one column of values: regression or ordinal) or 'classification'."""
    if np.ndim(y) == 2:
        return "multilabel"
    return "numeric" if pred.shape[1] == 1 else "classification"


def grade_set(y, grades=None) -> np.ndarray:
    """The ordinal grades, sorted: `grades` as given, else the distinct values of y."""
    return np.unique(np.asarray(y, dtype=float)) if grades is None else np.sort(np.asarray(grades, dtype=float))


def grade_index(values, grades: np.ndarray, column: str = "y") -> np.ndarray:
    """Positions of grade values in `grades`: QWK weighs disagreements by distance in grade order."""
    values = np.asarray(values, dtype=float)
    idx = np.clip(np.searchsorted(grades, values), 0, len(grades) - 1)
    bad = ~np.isclose(grades[idx], values)
    if bad.any():
        raise InputError(
            f"{column}: value {values[bad][0]:g} is not one of the grades {grades.tolist()}; pass the task's grades"
        )
    return idx


def _as_labels(y, decided, kind: str, grades) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(truth, decisions, label set) as sklearn compares them: class indices, 0/1 matrices, or grade indices."""
    if kind == "multilabel":
        return np.asarray(y).astype(int), np.asarray(decided).astype(int), None
    if kind == "ordinal":
        g = grade_set(y, grades)
        return grade_index(y, g), grade_index(decided, g, "decision"), np.arange(len(g))
    y, decided = np.asarray(y).astype(int), np.asarray(decided).astype(int)
    return y, decided, np.arange(max(y.max(initial=0), decided.max(initial=0)) + 1)


def _decisions(y, p, thresholds, grades):
    shape = layout(y, p)
    if shape == "classification":
        return y.astype(int), p.argmax(1), np.arange(p.shape[1])  # all K classes, present in y or not
    kind = "multilabel" if shape == "multilabel" else "ordinal"  # one column of values: decisions are grades
    grades = grade_set(y, grades) if kind == "ordinal" else None
    return _as_labels(y, decide(p, thresholds, kind, grades), kind, grades)


# ---------------------------------------------------------------- metrics on decisions: f(truth, decided, labels)


def _accuracy_d(y, d, labels):
    same = np.asarray(y) == np.asarray(d)
    return float(np.mean(same.all(1) if same.ndim == 2 else same))  # multilabel: exact match of the label set


def _f1_micro_d(y, d, labels):
    return _skm().f1_score(y, d, average="micro", zero_division=0)


def _f1_macro_d(y, d, labels):
    return _skm().f1_score(y, d, average="macro", zero_division=0)


def _f2_samples_d(y, d, labels):
    # Planet: F2 per image, averaged; an image with no true and no predicted tag scores 0
    return _skm().fbeta_score(y, d, beta=2, average="samples", zero_division=0)


def _qwk_d(y, d, labels):
    # labels fixed to the whole grade set: weights follow grade order even where a grade is missing
    return _skm().cohen_kappa_score(y, d, labels=labels, weights="quadratic")


_ON_DECISIONS = {
    "accuracy": _accuracy_d,
    "f1_micro": _f1_micro_d,
    "f1_macro": _f1_macro_d,
    "f2_samples": _f2_samples_d,
    "qwk": _qwk_d,
}
DECISION_METRICS = set(_ON_DECISIONS)


def _decision_metric(compare):
    def metric(y, p, thresholds=None, grades=None):
        return compare(*_decisions(y, p, thresholds, grades))

    return metric


# ---------------------------------------------------------------- metrics on probabilities and values


def _one_hot(y, p):
    return y.astype(int) if y.ndim == 2 else np.eye(p.shape[1], dtype=int)[y.astype(int)]


def _mean_column_auc(y, p, thresholds=None, grades=None):
    """Plant Pathology: mean over columns of ROC AUC. A column with one class only (no positive, or no
    negative, in these rows) has no AUC and is skipped; nan when no column has one."""
    y = _one_hot(y, p)
    aucs = [_skm().roc_auc_score(y[:, j], p[:, j]) for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
    return float(np.mean(aucs)) if aucs else float("nan")


def _roc_auc(y, p, thresholds=None, grades=None):
    if y.ndim == 2:
        return _mean_column_auc(y, p)
    if p.shape[1] == 2:
        return _skm().roc_auc_score(y, p[:, 1])
    return _skm().roc_auc_score(y, p, multi_class="ovr", labels=np.arange(p.shape[1]))


def _log_loss(y, p, thresholds=None, grades=None):
    # Kaggle clips at 1e-15 and renormalises rows; sklearn does the same.
    p = np.clip(p, 1e-15, 1 - 1e-15)
    if y.ndim == 2:  # independent labels: the mean of the per-label binary log losses
        return np.mean([_skm().log_loss(y[:, j], p[:, j], labels=[0, 1]) for j in range(y.shape[1])])
    return _skm().log_loss(y, p, labels=np.arange(p.shape[1]))


def top_classes(p, k: int) -> np.ndarray:
    """Each row's k most probable class indices, most probable first; ties rank by class order."""
    return np.argsort(-np.asarray(p), axis=1, kind="stable")[:, :k]


def map_at_k(y, p, k: int) -> float:
    """Mean average precision at k with one right answer per row (Whale Categorization's MAP@5): 1/rank of the
    true class among the k most probable (top_classes), 0 when it is not among them."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    top = top_classes(p, k)
    hit = top == y[:, None]
    return float(np.mean((hit / np.arange(1, top.shape[1] + 1)).sum(1)))


def _rmse(y, p, thresholds=None, grades=None):
    return _skm().root_mean_squared_error(y, p[:, 0])


def _mae(y, p, thresholds=None, grades=None):
    return _skm().mean_absolute_error(y, p[:, 0])


# name -> (function(y, pred, thresholds, grades), greater_is_better)
METRICS: dict[str, tuple[Callable[..., float], bool]] = {
    "accuracy": (_decision_metric(_accuracy_d), True),
    "roc_auc": (_roc_auc, True),
    "log_loss": (_log_loss, False),
    "f1_micro": (_decision_metric(_f1_micro_d), True),
    "f1_macro": (_decision_metric(_f1_macro_d), True),
    "f2_samples": (_decision_metric(_f2_samples_d), True),
    "mean_column_auc": (_mean_column_auc, True),
    "qwk": (_decision_metric(_qwk_d), True),
    "rmse": (_rmse, False),
    "mae": (_mae, False),
}

# Metrics scored on probabilities: a binary submission then carries P(positive class), not a label.
PROBABILITY_METRICS = {"roc_auc", "log_loss", "mean_column_auc"}

_LABELS = ("binary", "multiclass", "multilabel")
# metric -> the task kinds it fits
TASKS: dict[str, tuple[str, ...]] = {
    "accuracy": ("binary", "multiclass", "multilabel", "ordinal"),
    "roc_auc": _LABELS,
    "log_loss": _LABELS,
    "f1_micro": ("binary", "multiclass", "multilabel", "ordinal"),
    "f1_macro": ("binary", "multiclass", "multilabel", "ordinal"),
    "f2_samples": ("multilabel",),
    "mean_column_auc": _LABELS,
    "qwk": ("multiclass", "ordinal"),  # multiclass: classes in grade order, decided by argmax
    "rmse": ("regression", "ordinal"),
    "mae": ("regression", "ordinal"),
}
AUC_METRICS = {"roc_auc", "mean_column_auc"}  # depend on the order of predictions only


def top_k(name: str) -> int | None:
    """k of a MAP@k metric ("map@5"), else None."""
    if name.startswith("map@") and name[4:].isdigit() and int(name[4:]) > 0:
        return int(name[4:])
    return None


def _entry(name: str):
    if (k := top_k(name)) is not None:
        return (lambda y, p, thresholds=None, grades=None: map_at_k(y, p, k)), True
    if name not in METRICS:
        raise InputError(f"metric: unknown metric {name!r}; use one of {', '.join(sorted(METRICS))} or map@<k>")
    return METRICS[name]


def tasks_of(name: str) -> tuple[str, ...]:
    """The task kinds `name` fits."""
    return CLASSIFICATION if top_k(name) is not None else TASKS[name]


def score(name: str, y, pred, thresholds=None, grades=None) -> float:
    """`name` of predictions `pred` against targets `y` (layouts in the module docstring). `thresholds`: per-label
    thresholds (multilabel) or cut points between grades (ordinal), for metrics that compare decisions."""
    y, pred = arrays(y, pred)
    return float(_entry(name)[0](y, pred, thresholds, grades))


def score_decided(name: str, y, decided, kind: str, grades=None) -> float:
    """`name` of decisions already made (thresholds.decide): 0/1 matrix (multilabel), grade values (ordinal), or
    class indices. Lets folds decided with different thresholds be scored together (thresholds.nested)."""
    if name not in _ON_DECISIONS:
        raise InputError(f"metric: {name} scores predictions, not decisions; use one of {sorted(_ON_DECISIONS)}")
    return float(_ON_DECISIONS[name](*_as_labels(y, decided, kind, grades)))


def greater_is_better(name: str) -> bool:
    return _entry(name)[1]


def check_metric(metric: str, kind: str) -> None:
    """InputError unless `metric` is known and fits a `kind` task."""
    _entry(metric)
    if kind not in KINDS:
        raise InputError(f"task: unknown task {kind!r}; use one of {', '.join(KINDS)}")
    if kind not in tasks_of(metric):
        fits = sorted(m for m, kinds in TASKS.items() if kind in kinds)
        fits += ["map@<k>"] if kind in CLASSIFICATION else []
        raise InputError(f"metric: {metric} does not fit a {kind} task; use one of {', '.join(fits)}")


def needs_thresholds(metric: str, kind: str) -> bool:
    """Whether `metric` on a `kind` task compares decisions whose thresholds are worth fitting on OOF rows:
    multilabel per-label thresholds, ordinal cut points. Classes are decided by argmax: nothing to fit."""
    return kind in ("multilabel", "ordinal") and metric in DECISION_METRICS
