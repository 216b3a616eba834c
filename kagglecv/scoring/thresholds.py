"""Decision thresholds fitted on out-of-fold predictions, for metrics that compare decisions (metrics.py).

  multilabel  one probability threshold per label. Planet's F2 rewards recall, so the best thresholds sit below
              0.5 and differ per label. Coordinate ascent over a grid, label by label, a couple of passes: the
              Planet winners' recipe.
  ordinal     cut points between consecutive grades on the regressor's output (APTOS's "OptimizedRounder"):
              a regressor fit on squared error shrinks towards the mean, so plain rounding under-uses the
              extreme grades. Coordinate search, each cut strictly between its neighbours, so they stay sorted.

A threshold moves only for a strict improvement, so the in-sample score of `fit` is at least the default's
(0.5 per label, midpoints between grades). That in-sample score flatters: `nested` is the honest one.
"""

from __future__ import annotations

import numpy as np

from kagglecv.scoring import metrics
from kagglecv.scoring.decisions import decide, midpoints

GRID = np.linspace(0.05, 0.95, 19)  # multilabel candidates; 0.5 is among them
LABEL_PASSES = 2
CUT_PASSES, CUT_STEPS = 3, 30  # ordinal: candidates per cut between its neighbours


def kind_of(metric: str, y, pred) -> str | None:
    """'multilabel' or 'ordinal' when `metric` on this layout of y/pred compares decisions worth fitting."""
    shape = metrics.layout(np.asarray(y), np.asarray(pred).reshape(len(pred), -1))
    kind = {"multilabel": "multilabel", "numeric": "ordinal"}.get(shape)
    return kind if kind and metrics.needs_thresholds(metric, kind) else None


# ---------------------------------------------------------------- multilabel: per-label thresholds


def _fbeta_samples_trials(y, decided, j, cands, beta: float) -> np.ndarray:
    """Sample-averaged F-beta (sklearn's average="samples", zero_division=0) for each candidate column j, from
    per-row counts: O(rows) per candidate instead of a full sklearn call (Planet: 40k rows x 17 labels)."""
    hit = y * decided
    tp_rest = hit.sum(1) - hit[:, j]
    fp_rest = ((1 - y) * decided).sum(1) - (1 - y[:, j]) * decided[:, j]
    tp = tp_rest[:, None] + y[:, j, None] * cands
    fp = fp_rest[:, None] + (1 - y[:, j, None]) * cands
    fn = y.sum(1)[:, None] - tp
    num = (1 + beta**2) * tp
    den = num + beta**2 * fn + fp
    return np.divide(num, den, out=np.zeros(num.shape), where=den > 0).mean(0)


def _column_trials(metric, y, decided, j, cands) -> np.ndarray:
    """The metric with column j of the decisions replaced by each column of `cands`."""
    if metric == "f2_samples":
        return _fbeta_samples_trials(y, decided, j, cands, beta=2.0)
    trial, out = decided.copy(), []
    for k in range(cands.shape[1]):
        trial[:, j] = cands[:, k]
        out.append(metrics.score_decided(metric, y, trial, "multilabel"))
    return np.array(out)


def _fit_labels(metric, y, pred) -> list[float]:
    sign = 1 if metrics.greater_is_better(metric) else -1
    y = y.astype(int)
    t = np.full(pred.shape[1], 0.5)
    decided = decide(pred, t, "multilabel")
    best = sign * metrics.score_decided(metric, y, decided, "multilabel")
    for _ in range(LABEL_PASSES):
        moved = False
        for j in range(pred.shape[1]):
            cands = (pred[:, j, None] > GRID).astype(int)
            trials = sign * _column_trials(metric, y, decided, j, cands)
            k = int(np.argmax(trials))
            if trials[k] > best + 1e-12:  # strictly better only: ties keep the current threshold
                best, t[j], decided[:, j], moved = trials[k], GRID[k], cands[:, k], True
        if not moved:
            break
    return t.tolist()


# ---------------------------------------------------------------- ordinal: cut points between grades


def _fit_cuts(metric, y, pred, grades: np.ndarray) -> list[float]:
    sign = 1 if metrics.greater_is_better(metric) else -1
    values = pred[:, 0]

    def objective(cuts):
        return sign * metrics.score_decided(metric, y, grades[np.digitize(values, cuts)], "ordinal", grades)

    cuts = midpoints(grades)
    best = objective(cuts)
    low, high = min(values.min(), grades[0]), max(values.max(), grades[-1])
    for _ in range(CUT_PASSES):
        moved = False
        for i in range(len(cuts)):
            lo = cuts[i - 1] if i > 0 else low
            hi = cuts[i + 1] if i + 1 < len(cuts) else high
            cands = np.linspace(lo, hi, CUT_STEPS + 2)[1:-1]  # strictly between the neighbours: stays sorted
            trials = [objective(np.concatenate([cuts[:i], [c], cuts[i + 1 :]])) for c in cands]
            k = int(np.argmax(trials))
            if trials[k] > best + 1e-12:
                best, cuts[i], moved = trials[k], cands[k], True
        if not moved:
            break
    return cuts.tolist()


# ---------------------------------------------------------------- fitting and honest scoring


def fit(metric: str, y, pred, grades=None) -> list[float] | None:
    """Thresholds maximising `metric` on these rows: per-label thresholds (multilabel, pred n x L) or cut points
    between grades (ordinal, pred n x 1; len(grades) - 1 of them, ascending). None where the metric needs none
    (probability and value metrics, argmax classes). grades: the task's grades (default: distinct values of y)."""
    y, pred = metrics.arrays(y, pred)
    kind = kind_of(metric, y, pred)
    if kind == "multilabel":
        return _fit_labels(metric, y, pred)
    if kind == "ordinal":
        return _fit_cuts(metric, y, pred, metrics.grade_set(y, grades))
    return None


def nested(metric: str, y, pred, fold, grades=None) -> tuple[float, list]:
    """Honest score of fitted thresholds: each fold decided with thresholds fit on the other folds' rows, then
    all decided rows scored together (QWK and F-scores do not average over folds). Returns (score, the
    thresholds fitted for each fold in sorted fold order; None each where the metric needs none)."""
    y, pred = metrics.arrays(y, pred)
    fold = np.asarray(fold)
    kind, folds = kind_of(metric, y, pred), np.unique(fold)
    if kind is None:
        return metrics.score(metric, y, pred, grades=grades), [None] * len(folds)
    if kind == "ordinal":
        grades = metrics.grade_set(y, grades)  # of all rows: a fold's training rows may lack a grade
    decided = np.zeros(y.shape, dtype=int) if kind == "multilabel" else np.zeros(len(y))
    per_fold = []
    for k in folds:
        inner, outer = fold != k, fold == k
        per_fold.append(fit(metric, y[inner], pred[inner], grades))
        decided[outer] = decide(pred[outer], per_fold[-1], kind, grades)
    return metrics.score_decided(metric, y, decided, kind, grades), per_fold
