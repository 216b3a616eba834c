"""What a competition asks to predict, and what follows from it for every step.

  binary, multiclass  one label per image, a class name     model: logits per class  -> softmax probabilities
  multilabel          a set of label names per image         model: logits per label  -> sigmoid probabilities
                      (Planet's space-separated tags, or Plant Pathology's one 0/1 column per label)
  regression          a number (PetFinder's Pawpularity)     model: one output        -> the value
  ordinal             an integer grade scored by QWK (APTOS) trained as regression (the winning recipe); grades
                                                             come from cut points fitted on OOF (thresholds.py)

`detect` recognises the task from the labels as written (and the metric where integers are ambiguous);
`task:` in the config overrides it. Labels are text: a multilabel row's labels are a list of names, written to
the prepared tables by `join_tags` (space-separated, or a JSON list when a name holds a space: RANZCR's
'ETT - Abnormal') and read back by `split_tags`. Predictions are always 2-D (rows x outputs): probabilities per class or
label, or one column of values; test-time augmentation averages them as they are (probabilities, values).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from kagglecv.core.errors import InputError
from kagglecv.core.results import PreparedMeta

KINDS = ("binary", "multiclass", "multilabel", "regression", "ordinal")
CLASSIFICATION = ("binary", "multiclass")
NUMERIC = ("regression", "ordinal")
REGRESSION_METRICS = {"rmse", "mae"}
MULTILABEL_METRICS = {"f2_samples", "mean_column_auc"}


def is_number(text: str) -> bool:
    try:
        return np.isfinite(float(text))
    except ValueError:
        return False


def join_tags(names) -> str:
    """A row's labels as one cell: space-separated, or a JSON list when a name holds whitespace or starts '['."""
    names = [str(n) for n in names]
    if any(n.split() != [n] or n.startswith("[") for n in names):
        return json.dumps(names)
    return " ".join(names)


def split_tags(cell) -> list[str]:
    """`join_tags` undone (a cell of space-separated tags, as Planet writes them, reads the same way)."""
    text = "" if cell is None or (isinstance(cell, float) and np.isnan(cell)) else str(cell)
    return json.loads(text) if text.startswith("[") else text.split()


def detect(labels, metric: str, task: str = "auto", column: str = "label", ids=None, tags: bool = False) -> str:
    """The task of one target column whose values are `labels` (text as written; lists of names when `tags`);
    `ids` name bad rows."""
    labels = list(labels)
    if task in NUMERIC:
        require_numbers(labels, column, task, ids)
    if task != "auto":
        return task
    if tags or metric in MULTILABEL_METRICS:
        return "multilabel"
    numbers = [is_number(v) for v in labels]
    if all(numbers):
        values = np.array([float(v) for v in labels])
        if not np.all(values == np.round(values)) or metric in REGRESSION_METRICS:
            return "regression"
        if metric == "qwk":
            return "ordinal"
    elif metric in REGRESSION_METRICS | {"qwk"}:
        require_numbers(labels, column, f"metric {metric}", ids)
    return "binary" if len(set(labels)) == 2 else "multiclass"


def require_numbers(labels, column: str, what: str, ids=None) -> None:
    """A numeric target: every value a finite number (no NaN, no text among the numbers)."""
    bad = [k for k, v in enumerate(labels) if not is_number(v)]
    if bad:
        row = f"id {list(ids)[bad[0]]!r}" if ids is not None else f"row {bad[0] + 2}"
        raise InputError(
            f"column {column!r}: {what} needs a number in every row, but {row} has "
            f"{labels[bad[0]]!r}; fix or drop the row, or set task: to a classification task"
        )


def class_names(labels, kind: str) -> list[str]:
    """The classes (binary, multiclass), label names (multilabel) or grades (ordinal) as text, in order."""
    if kind == "multilabel":
        names = {tag for v in labels for tag in (v if isinstance(v, list) else split_tags(v))}
    elif kind == "regression":
        return []
    else:
        names = set(labels)
    try:
        return sorted(names, key=lambda c: (float(c), c))  # by number when every one reads as one: "2" < "10"
    except ValueError:
        return sorted(names)


@dataclass(frozen=True)
class Task:
    kind: str
    classes: tuple[str, ...] = ()  # class / label names; ordinal: the grades; regression: none
    # numeric tasks train on standardised targets, (y - mean) / std over the job's training rows: one learning
    # rate then suits Pawpularity's 1-100 as well as APTOS's 0-4. activate() undoes it.
    scale: tuple[float, float] = (0.0, 1.0)

    @classmethod
    def of(cls, meta: PreparedMeta) -> Task:
        """The task of a prepared competition (its meta.json, or prepare's dict of it)."""
        meta = PreparedMeta.of(meta)
        return cls(meta.task, tuple(str(c) for c in meta.classes))

    @property
    def outputs(self) -> int:
        """Width of the model's head and of the prediction files."""
        return 1 if self.kind in NUMERIC else len(self.classes)

    @property
    def grades(self) -> list[float] | None:
        return [float(c) for c in self.classes] if self.kind == "ordinal" else None

    def targets(self, frame) -> np.ndarray:
        """Training targets from prepared train.csv / folds.csv rows: class indices, a 0/1 matrix, or numbers."""
        if self.kind in CLASSIFICATION:
            return frame["y"].to_numpy().astype(np.int64)
        if self.kind == "multilabel":
            index = {c: k for k, c in enumerate(self.classes)}
            out = np.zeros((len(frame), len(self.classes)), dtype=np.float32)
            for row, tags in enumerate(frame["label"].fillna("")):
                for tag in split_tags(tags):
                    out[row, index[tag]] = 1.0
            return out
        return frame["y"].to_numpy().astype(np.float32)

    def prior(self, frame) -> np.ndarray:
        """The prediction that knows nothing of the image, in the predictions' own terms: the training labels'
        class frequencies (classification), label frequencies (multilabel) or mean value (numeric). The kernel
        gives it to a hidden test image it cannot read."""
        y = self.targets(frame)
        if self.kind in CLASSIFICATION:
            return np.bincount(y, minlength=self.outputs) / len(y)
        if self.kind == "multilabel":
            return y.mean(0).astype(np.float64)
        return np.array([float(np.mean(y))])

    def encode(self, labels) -> list:
        """prepare's `y` column, always a number: class index (classification), how many tags (multilabel:
        the tags themselves are the `label` column), the value (numeric)."""
        if self.kind in CLASSIFICATION:
            index = {c: k for k, c in enumerate(self.classes)}
            return [index[v] for v in labels]
        if self.kind == "multilabel":
            return [len(v if isinstance(v, list) else split_tags(v)) for v in labels]
        return [float(v) for v in labels]

    def valid_loss(self, y: np.ndarray, pred: np.ndarray) -> float:
        """The training loss's counterpart on predictions, for the epoch log: log loss (classification), mean
        binary cross-entropy (multilabel), RMSE on the target's scale (numeric)."""
        eps = 1e-7
        if self.kind in CLASSIFICATION:
            p = np.clip(pred[np.arange(len(y)), np.asarray(y, dtype=np.int64)], eps, 1.0)
            return float(-np.mean(np.log(p)))
        if self.kind == "multilabel":
            p = np.clip(pred, eps, 1 - eps)
            return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        return float(np.sqrt(np.mean((pred[:, 0] - y) ** 2)))

    def activate(self, logits):
        """The model's outputs as predictions (works on torch tensors): probabilities, or values."""
        if self.kind in CLASSIFICATION:
            return logits.softmax(1)
        if self.kind == "multilabel":
            return logits.sigmoid()
        return logits * self.scale[1] + self.scale[0]

    def standardise(self, y):
        """Numeric targets as the model learns them (see `scale`); other targets unchanged."""
        return (y - self.scale[0]) / self.scale[1] if self.kind in NUMERIC else y

    def fitted_scale(self, y: np.ndarray) -> Task:
        """This task with `scale` taken from training targets `y` (numeric tasks only)."""
        if self.kind not in NUMERIC:
            return self
        std = float(np.std(y))
        return Task(self.kind, self.classes, (float(np.mean(y)), std if std > 0 else 1.0))
