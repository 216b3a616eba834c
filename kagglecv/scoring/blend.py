"""Ensemble methods over out-of-fold predictions, for every task kind. Weights are fit on OOF rows only.

Predictions are lists of (n_rows x outputs) matrices, one per model, laid out as in metrics.py: class
probabilities (binary, multiclass), per-label probabilities (multilabel), one column of values (regression,
ordinal). `METHODS` maps a name to (fit or None, apply):

  fit(oofs, y, metric, kind="multiclass") -> params      apply(preds, params=None, kind="multiclass") -> pred

Pass the same `kind` to fit and apply (or use `apply(method, preds, params, kind)`): the params of the stacker
differ by kind (one multinomial model; one model per label; one ridge regression), and rank_mean renormalises
rows of class probabilities only. `methods(kind, metric, n_models)` says which methods make sense.

Fitted methods are scored honestly by `nested_oof`: for each fold, fit on the other folds' rows and predict
this fold's rows, so no row is scored by weights it helped fit. Metrics that compare decisions are scored with
default decisions here (metrics.py); thresholds are fitted after blending (thresholds.py)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression, Ridge, RidgeCV

from kagglecv.core.errors import InputError
from kagglecv.core.tasks import CLASSIFICATION, NUMERIC
from kagglecv.scoring import metrics


def _normalise(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-15, None)
    return p / p.sum(1, keepdims=True)


def mean_apply(preds, params=None, kind="multiclass"):
    return np.mean(preds, axis=0)


def rank_apply(preds, params=None, kind="multiclass"):
    """Average of per-column ranks scaled to [0, 1]: robust to models' different calibration (AUC metrics).
    Rows are renormalised for classes only: multilabel columns are independent probabilities."""
    ranks = np.mean([np.column_stack([rankdata(p[:, c]) / len(p) for c in range(p.shape[1])]) for p in preds], 0)
    return _normalise(ranks) if kind in CLASSIFICATION else ranks


def best_single_fit(oofs, y, metric, kind="multiclass"):
    sign = 1 if metrics.greater_is_better(metric) else -1
    return {"model": int(np.argmax([sign * metrics.score(metric, y, p) for p in oofs]))}


def best_single_apply(preds, params, kind="multiclass"):
    return preds[params["model"]]


def hill_climb_fit(oofs, y, metric, kind="multiclass", max_iter: int = 25):
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


def weighted_apply(preds, params, kind="multiclass"):
    return np.tensordot(np.asarray(params["weights"]), np.asarray(preds), axes=1)


# ---------------------------------------------------------------- stacking: a second-level model per kind


def _log_probs(preds):
    return np.log(np.clip(np.hstack(preds), 1e-6, 1.0))


def _logits(preds, j):
    """Label j's logit in every model: the features of that label's stacker."""
    p = np.clip(np.column_stack([q[:, j] for q in preds]), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def stack_fit(oofs, y, metric, kind="multiclass", C: float = 1.0):
    """Classes: a multinomial logistic regression over the models' log-probabilities. Multilabel: a logistic
    regression per label over that label's logits in every model. Values: ridge regression over the models'
    values, its penalty chosen by leave-one-out (RidgeCV)."""
    if kind in NUMERIC:
        return {"model": RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(np.hstack(oofs), np.asarray(y, dtype=float))}
    if kind == "multilabel":
        y = np.asarray(y).astype(int)
        # a label with one class only in these rows cannot be fit: it keeps its observed rate
        return {
            "models": [
                LogisticRegression(C=C, max_iter=1000).fit(_logits(oofs, j), y[:, j])
                if 0 < y[:, j].sum() < len(y)
                else float(y[:, j].mean())
                for j in range(y.shape[1])
            ]
        }
    return {"model": LogisticRegression(C=C, max_iter=1000).fit(_log_probs(oofs), y)}


def stack_apply(preds, params, kind="multiclass"):
    if kind in NUMERIC:
        return params["model"].predict(np.hstack(preds))[:, None]
    if kind == "multilabel":
        return np.column_stack(
            [
                np.full(len(preds[0]), m) if isinstance(m, float) else m.predict_proba(_logits(preds, j))[:, 1]
                for j, m in enumerate(params["models"])
            ]
        )
    model = params["model"]
    p = model.predict_proba(_log_probs(preds))
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


def methods(kind: str, metric: str, n_models: int) -> list[str]:
    """The methods worth trying. One model: only "mean", which is that model unchanged (any other method could
    only reshape its predictions, and rank_mean would change even its accuracy). rank_mean only for AUC
    metrics, which ignore calibration; it destroys probabilities and values."""
    if n_models == 1:
        return ["mean"]
    return [m for m in METHODS if m != "rank_mean" or metric in metrics.AUC_METRICS]


def _check(method: str):
    if method not in METHODS:
        raise InputError(f"ensemble.method: unknown method {method!r}; use auto or one of {sorted(METHODS)}")
    return METHODS[method]


def used(method: str, params, n_models: int) -> list[int]:
    """The models whose predictions `method` with fitted `params` reads: one best_single model, the hill climb's
    models with weight. A model outside it needs no predicting (a code competition's kernel skips its passes)."""
    if method == "best_single":
        return [int(params["model"])]
    if method == "hill_climb":
        return [i for i, w in enumerate(params["weights"]) if w > 0]
    return list(range(n_models))


def apply(method: str, preds, params, kind="multiclass") -> np.ndarray:
    """`method` with fitted `params` (None for parameter-free methods) on predictions of the same models."""
    return np.asarray(_check(method)[1](preds, params, kind=kind))


def nested_oof(method: str, oofs, y, fold, metric, kind="multiclass") -> np.ndarray:
    """Honest OOF predictions of `method`: parameters fit on the other folds' rows only."""
    fit, apply_ = _check(method)
    if fit is None:
        return apply_(oofs, None, kind=kind)
    y, fold = np.asarray(y), np.asarray(fold)
    out = np.zeros(np.shape(oofs[0]))
    for k in np.unique(fold):
        inner, outer = fold != k, fold == k
        params = fit([p[inner] for p in oofs], y[inner], metric, kind=kind)
        out[outer] = apply_([p[outer] for p in oofs], params, kind=kind)
    return out


def fit_all(oofs, y, metric, kind="multiclass", names=None):
    """Parameters of each method fit on all OOF rows, what is applied to the test set: {method: params, None for
    parameter-free ones}. names: the methods to fit (default: methods(kind, metric, len(oofs)))."""
    names = methods(kind, metric, len(oofs)) if names is None else names
    y = np.asarray(y)
    return {name: (fit(oofs, y, metric, kind=kind) if (fit := _check(name)[0]) else None) for name in names}


def _fitted(model) -> dict:
    """A fitted linear model's state, exactly (JSON floats round-trip): what its predict/predict_proba read."""
    out = {
        "type": type(model).__name__,
        "coef": np.asarray(model.coef_).tolist(),
        "intercept": np.asarray(model.intercept_).tolist(),
    }
    if hasattr(model, "classes_"):
        out["classes"] = np.asarray(model.classes_).tolist()
    return out


def _refitted(state: dict):
    """The model `_fitted` described, ready to predict with scikit-learn's own code (no refit)."""
    model = LogisticRegression() if state["type"] == "LogisticRegression" else Ridge()
    model.coef_, model.intercept_ = np.asarray(state["coef"]), np.asarray(state["intercept"])
    if "classes" in state:
        model.classes_ = np.asarray(state["classes"])
    model.n_features_in_ = model.coef_.shape[-1]
    return model


def to_json(params):
    """Fitted params as JSON-friendly data that `from_json` turns back into params `apply` accepts, exactly:
    the ensemble step stores them in scores.json, and `predict` and the Kaggle kernel apply them from there."""
    if params is None or "weights" in params or set(params) == {"model"} and isinstance(params["model"], int):
        return params
    if "models" in params:
        return {"models": [m if isinstance(m, float) else _fitted(m) for m in params["models"]]}
    return {"model": _fitted(params["model"])}


def from_json(data):
    if data is None or "weights" in data or isinstance(data.get("model"), int):
        return data
    if "models" in data:
        return {"models": [m if isinstance(m, float) else _refitted(m) for m in data["models"]]}
    return {"model": _refitted(data["model"])}


def describe(name: str, params, names: list[str]):
    """JSON-friendly parameters for scores.json. `names`: the models, in the order of oofs."""
    if params is None:
        return None
    if "weights" in params:
        return dict(zip(names, params["weights"]))
    if name == "best_single":
        return {"model": names[params["model"]]}
    if "models" in params:  # multilabel stacker: one per label
        return {"type": "LogisticRegression", "per_label": len(params["models"])}
    model = params["model"]
    if isinstance(model, RidgeCV):
        return {
            "type": "RidgeCV",
            "alpha": float(model.alpha_),
            "intercept": float(model.intercept_),
            "coef": dict(zip(names, np.ravel(model.coef_).tolist())),
        }
    return {"type": type(model).__name__}
