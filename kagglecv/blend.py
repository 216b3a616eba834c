"""Ensemble methods over out-of-fold probabilities. Weights are fit on OOF rows only.

Each method is fit(oofs, y) -> params and apply(preds, params) -> probabilities, where oofs/preds are lists of
(n_rows x n_classes) matrices, one per model. Fitted methods are scored honestly by `nested_oof`: for each fold,
fit on the other folds' rows and predict this fold's rows, so no row is scored by weights it helped fit.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression

from . import metrics


def _normalise(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-15, None)
    return p / p.sum(1, keepdims=True)


def mean_apply(preds, params=None):
    return np.mean(preds, axis=0)


def rank_apply(preds, params=None):
    """Average of per-column ranks scaled to [0, 1]: robust to models' different calibration (AUC metrics)."""
    ranks = [np.column_stack([rankdata(p[:, c]) / len(p) for c in range(p.shape[1])]) for p in preds]
    return _normalise(np.mean(ranks, axis=0))


def best_single_fit(oofs, y, metric):
    sign = 1 if metrics.greater_is_better(metric) else -1
    return {"model": int(np.argmax([sign * metrics.score(metric, y, p) for p in oofs]))}


def best_single_apply(preds, params):
    return preds[params["model"]]


def hill_climb_fit(oofs, y, metric, max_iter: int = 25):
    """Caruana et al. (2004): greedy forward selection with replacement; weights are selection counts."""
    sign = 1 if metrics.greater_is_better(metric) else -1
    counts = np.zeros(len(oofs))
    counts[best_single_fit(oofs, y, metric)["model"]] = 1
    best = sign * metrics.score(metric, y, oofs[int(np.argmax(counts))])
    for _ in range(max_iter):
        current = np.tensordot(counts, oofs, axes=1)
        trials = [sign * metrics.score(metric, y, (current + oofs[m]) / (counts.sum() + 1)) for m in range(len(oofs))]
        m = int(np.argmax(trials))
        if trials[m] <= best:  # no model improves the blend any more
            break
        counts[m] += 1
        best = trials[m]
    return {"weights": (counts / counts.sum()).tolist()}


def weighted_apply(preds, params):
    return np.tensordot(np.asarray(params["weights"]), np.asarray(preds), axes=1)


def _stack_features(preds):
    return np.log(np.clip(np.hstack(preds), 1e-6, 1.0))


def stack_fit(oofs, y, metric, C: float = 1.0):
    """A multinomial logistic regression over the models' log-probabilities."""
    model = LogisticRegression(C=C, max_iter=1000)
    model.fit(_stack_features(oofs), y)
    return {"model": model}


def stack_apply(preds, params):
    model = params["model"]
    p = model.predict_proba(_stack_features(preds))
    out = np.full((len(p), len(preds[0][0])), 1e-15)
    out[:, model.classes_] = p  # a class absent from the fitting rows keeps ~0 probability
    return _normalise(out)


# name -> (fit or None for parameter-free methods, apply)
METHODS = {
    "mean": (None, mean_apply),
    "rank_mean": (None, rank_apply),
    "best_single": (best_single_fit, best_single_apply),
    "hill_climb": (hill_climb_fit, weighted_apply),
    "stack": (stack_fit, stack_apply),
}


def nested_oof(method: str, oofs, y, fold, metric) -> np.ndarray:
    """Honest OOF predictions of `method`: parameters fit on the other folds' rows only."""
    fit, apply = METHODS[method]
    if fit is None:
        return apply(oofs)
    out = np.zeros_like(oofs[0])
    for k in np.unique(fold):
        inner, outer = fold != k, fold == k
        params = fit([p[inner] for p in oofs], y[inner], metric)
        out[outer] = apply([p[outer] for p in oofs], params)
    return out


def fit_all(oofs, y, metric):
    """Parameters of every method fit on all OOF rows: what is applied to the test set."""
    return {name: (fit(oofs, y, metric) if fit else None) for name, (fit, _) in METHODS.items()}


def describe(name: str, params, names: list[str]):
    """JSON-friendly parameters for scores.json."""
    if params is None:
        return None
    if "weights" in params:
        return dict(zip(names, params["weights"]))
    if name == "best_single":
        return {"model": names[params["model"]]}
    return {"type": type(params["model"]).__name__}
