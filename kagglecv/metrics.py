"""Competition metrics over class-probability matrices (n_samples x n_classes)."""

from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn import metrics as skm


def _accuracy(y, p):
    return float(skm.accuracy_score(y, p.argmax(1)))


def _roc_auc(y, p):
    if p.shape[1] == 2:
        return float(skm.roc_auc_score(y, p[:, 1]))
    return float(skm.roc_auc_score(y, p, multi_class="ovr", labels=np.arange(p.shape[1])))


def _log_loss(y, p):
    # Kaggle clips at 1e-15 and renormalises rows; sklearn does the same.
    return float(skm.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=np.arange(p.shape[1])))


def _f1_micro(y, p):
    return float(skm.f1_score(y, p.argmax(1), average="micro"))


def _f1_macro(y, p):
    return float(skm.f1_score(y, p.argmax(1), average="macro"))


# name -> (function(y_true_int, probs), greater_is_better)
METRICS: dict[str, tuple[Callable[[np.ndarray, np.ndarray], float], bool]] = {
    "accuracy": (_accuracy, True),
    "roc_auc": (_roc_auc, True),
    "log_loss": (_log_loss, False),
    "f1_micro": (_f1_micro, True),
    "f1_macro": (_f1_macro, True),
}

# Metrics scored on probabilities: a binary submission then carries P(positive class), not a label.
PROBABILITY_METRICS = {"roc_auc", "log_loss"}


def score(name: str, y: np.ndarray, probs: np.ndarray) -> float:
    return METRICS[name][0](np.asarray(y), np.asarray(probs))


def greater_is_better(name: str) -> bool:
    return METRICS[name][1]
