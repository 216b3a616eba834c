"""Our re-implementation of MLE-bench's graders for the 19 image competitions (written from reading its grade.py
files, not copied): `grade(slug, submission, answers)` makes the checks its grader makes and computes its metric.

Where MLE-bench's grader would give no score (an InvalidSubmissionError, or any other error its grading function
raises on the submission: a failed assert on the ids, a column pandas cannot split, text where numbers belong),
`grade` raises `InvalidSubmission` saying why. Both files are read as MLE-bench reads them: `pd.read_csv` with
pandas' default types (ids such as 1, 2 become integers; empty cells NaN) and round-trip floats. MLE-bench rounds the
score to 5 decimals when it reports it; `grade` does not.

  metric (MLE-bench's name)      competitions
  auc-roc                        aerial-cactus, histopathologic, invasive-species, siim-isic, ranzcr (mean of 9 cols)
  mean-column-wise-roc-auc       plant-pathology-2020
  quadratic-weighted-kappa       aptos2019
  accuracy                       cassava, paddy
  multi-class-log-loss, log-loss dog-breed, leaf (one column per class); dogs-vs-cats (P(dog))
  root-mean-squared-error        petfinder (values must lie in 1-100)
  micro-f1-score                 plant-seedlings (one label), plant-pathology-2021 and imet (space-separated tags)
  macro-f1-score                 herbarium, iwildcam (integer categories)
  MAP@5                          whale (five space-separated Ids per image)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.preprocessing import MultiLabelBinarizer

from .common import Standin
from .layouts_more import RANZCR_GRADED


class InvalidSubmission(ValueError):
    """MLE-bench's grader would not score this submission."""


def read(frame_or_path) -> pd.DataFrame:
    """A CSV (or .csv.zip) as MLE-bench's grading reads it; a DataFrame is copied."""
    if isinstance(frame_or_path, pd.DataFrame):
        return frame_or_path.copy()
    return pd.read_csv(Path(frame_or_path))  # pandas 3 reads floats round-trip by default


def _require(sub: pd.DataFrame, *columns: str) -> None:
    for c in columns:
        if c not in sub.columns:
            raise InvalidSubmission(f"submission has no {c!r} column (columns: {list(sub.columns)[:8]})")


def _same_length(sub: pd.DataFrame, ans: pd.DataFrame) -> None:
    if len(sub) != len(ans):
        raise InvalidSubmission(f"submission has {len(sub)} rows, the answers {len(ans)}")


def _aligned(sub: pd.DataFrame, ans: pd.DataFrame, id_col: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both sorted by id; the ids must then match row for row (so: the same ids, each once)."""
    sub = sub.sort_values(id_col).reset_index(drop=True)
    ans = ans.sort_values(id_col).reset_index(drop=True)
    _same_length(sub, ans)
    if (sub[id_col].to_numpy() != ans[id_col].to_numpy()).any():
        missing = sorted(set(ans[id_col]) - set(sub[id_col]), key=str)[:3]
        raise InvalidSubmission(f"submission ids in {id_col!r} differ from the answers' (missing e.g. {missing})")
    return sub, ans


# ---------------------------------------------------------------- metrics written out (the rest is sklearn)


def average_precision_at_k(actual: set, predicted: list, k: int = 5) -> float:
    """AP@k of one ranked prediction list against the set of right answers (a repeated guess scores once)."""
    predicted = list(predicted)[:k]
    if not actual:
        return 0.0
    hits, score = 0, 0.0
    for i, p in enumerate(predicted):
        if p in actual and p not in predicted[:i]:
            hits += 1
            score += hits / (i + 1)
    return score / min(len(actual), k)


def map_at_k(actual: list[set], predicted: list[list], k: int = 5) -> float:
    return float(np.mean([average_precision_at_k(a, p, k) for a, p in zip(actual, predicted)]))


# ---------------------------------------------------------------- the grading functions


def _auc_single(id_col: str, target: str):
    def grade(sub, ans):
        y, p = _auc_inputs(sub, ans, id_col, target)
        return skm.roc_auc_score(y, p)

    return grade


def _auc_inputs(sub, ans, id_col, target):
    _require(sub, id_col, target)
    _same_length(sub, ans)
    try:
        values = pd.to_numeric(sub[target])
    except (ValueError, TypeError) as e:
        raise InvalidSubmission(f"column {target!r} must be numeric ({e})") from e
    if values.min() < 0 or values.max() > 1:
        raise InvalidSubmission(f"column {target!r} must hold probabilities in [0, 1]")
    sub = sub.assign(**{target: values})
    sub, ans = _aligned(sub, ans, id_col)
    return ans[target].to_numpy(), sub[target].to_numpy()


def _ranzcr(sub, ans):
    classes = RANZCR_GRADED  # nine of the answers' eleven columns: MLE-bench grades no 'CVC - Normal', 'Swan Ganz'
    for c in classes:
        _require(sub, c)
    _same_length(sub, ans)
    return float(np.mean([skm.roc_auc_score(*_auc_inputs(sub, ans, "StudyInstanceUID", c)) for c in classes]))


def _plant_pathology_2020(sub, ans):
    _same_length(sub, ans)
    expected = list(ans.columns)
    if set(sub.columns) != set(expected):
        raise InvalidSubmission(f"submission columns must be exactly {expected}, got {list(sub.columns)}")
    sub, ans = _aligned(sub, ans, "image_id")
    return float(np.mean([skm.roc_auc_score(ans[c], sub[c]) for c in expected[1:]]))


def _aptos(sub, ans):
    _require(sub, "diagnosis", "id_code")
    if sub.empty:
        raise InvalidSubmission("submission is empty")
    if set(sub["id_code"]) != set(ans["id_code"]):
        raise InvalidSubmission("submission must have the answers' id_codes")
    _same_length(sub, ans)  # MLE-bench: a repeated id fails inside cohen_kappa_score
    sub, ans = sub.sort_values("id_code"), ans.sort_values("id_code")
    return skm.cohen_kappa_score(sub["diagnosis"].to_numpy(), ans["diagnosis"].to_numpy(), weights="quadratic")


def _accuracy(id_col: str, target: str, fill_empty: bool = False):
    def grade(sub, ans):
        if fill_empty:  # paddy: superset of columns, and an empty label is a wrong one
            if not {id_col, target} <= set(sub.columns):
                raise InvalidSubmission(f"submission needs columns {id_col!r} and {target!r}")
            _same_length(sub, ans)
        else:
            _same_length(sub, ans)
            _require(sub, target, id_col)
        sub, ans = _aligned(sub, ans, id_col)
        pred = (
            sub[target].astype(object).where(sub[target].notna(), "").tolist() if fill_empty else sub[target].to_numpy()
        )
        return skm.accuracy_score(ans[target].to_numpy() if not fill_empty else ans[target], pred)

    return grade


def _one_hot_log_loss(exact_columns: bool):
    """dog-breed (every class column present; extra columns ignored) and leaf (exactly id + the classes)."""

    def grade(sub, ans):
        classes = [c for c in ans.columns if c != "id"]
        if exact_columns:
            if set(sub.columns) != {"id", *classes}:
                raise InvalidSubmission("submission must have an 'id' column and one column per class, no other")
        else:
            missing = [c for c in classes if c not in sub.columns]
            if missing:
                raise InvalidSubmission(f"submission must have a column for every class; missing {missing[:3]}")
            _require(sub, "id")
        _same_length(sub, ans)
        probs = sub[classes]
        if not np.all(np.isclose(probs.sum(axis=1), 1, atol=1e-6)):
            raise InvalidSubmission("each row's probabilities must sum to one")
        if not ((probs >= 0) & (probs <= 1)).all().all():
            raise InvalidSubmission("every probability must lie in [0, 1]")
        sub, ans = _aligned(sub[["id"] + classes], ans, "id")
        return skm.log_loss(ans[classes].to_numpy(), sub[classes].to_numpy())

    return grade


def _dogs_vs_cats(sub, ans):
    _require(sub, "id", "label")
    if set(sub["id"]) != set(ans["id"]):
        raise InvalidSubmission("submission ids differ from the answers'")
    _same_length(sub, ans)
    if not ((sub["label"] >= 0) & (sub["label"] <= 1)).all():
        raise InvalidSubmission("every label must be a probability in [0, 1]")
    sub, ans = sub.sort_values("id"), ans.sort_values("id")
    return skm.log_loss(ans["label"], sub["label"])


def _petfinder(sub, ans):
    _require(sub, "Id", "Pawpularity")
    if not sub["Pawpularity"].between(1, 100).all():
        raise InvalidSubmission("Pawpularity must lie in 1-100 in every row")
    sub, ans = _aligned(sub, ans, "Id")
    return skm.root_mean_squared_error(ans["Pawpularity"].to_numpy(), sub["Pawpularity"].to_numpy())


def _tags_micro_f1(id_col: str, target: str):
    """plant-pathology-2021, imet: space-separated tags; the classes are the answers' tags (others ignored)."""

    def grade(sub, ans):
        _require(sub, id_col, target)
        sub, ans = _aligned(sub, ans, id_col)
        sub[target] = sub[target].astype(object).where(sub[target].notna(), "")
        ans[target] = ans[target].astype(object).where(ans[target].notna(), "")
        try:
            true_sets, pred_sets = ans[target].str.split(), sub[target].str.split()
        except AttributeError as e:  # e.g. a column of single integers, which pandas read as numbers
            raise InvalidSubmission(f"column {target!r} is not text that splits into tags ({e})") from e
        mlb = MultiLabelBinarizer(classes=sorted(set(true_sets.explode().dropna())), sparse_output=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unknown tags in the submission are ignored, with a warning
            y_true, y_pred = mlb.fit_transform(true_sets), mlb.transform(pred_sets)
        return skm.f1_score(y_true, y_pred, average="micro")

    return grade


def _label_f1(id_col: str, target: str, average: str, as_int: bool):
    """plant-seedlings (micro, text labels); herbarium and iwildcam (macro, integer categories)."""

    def grade(sub, ans):
        if as_int:
            _same_length(sub, ans)
        _require(sub, id_col, target)
        sub, ans = _aligned(sub, ans, id_col)
        y_true, y_pred = ans[target].tolist(), sub[target].tolist()
        if as_int:
            try:
                y_true, y_pred = [int(v) for v in y_true], [int(v) for v in y_pred]
            except (ValueError, TypeError) as e:
                raise InvalidSubmission(f"column {target!r} must hold integers ({e})") from e
        return skm.f1_score(y_true, y_pred, average=average)

    return grade


def _whale(sub, ans):
    if set(sub.columns) != {"Image", "Id"}:
        raise InvalidSubmission(f"submission columns must be exactly Image, Id; got {list(sub.columns)}")
    _same_length(sub, ans)
    if set(sub["Image"]) != set(ans["Image"]):
        raise InvalidSubmission("submission Images differ from the answers'")
    sub = sub.sort_values("Image").reset_index(drop=True)
    ans = ans.sort_values("Image").reset_index(drop=True)
    actual = ans["Id"].astype(str).str.split(" ").apply(set).tolist()
    predicted = sub["Id"].astype(str).str.split(" ").tolist()
    return map_at_k(actual, predicted, 5)


GRADERS = {
    "aerial-cactus-identification": _auc_single("id", "has_cactus"),
    "aptos2019-blindness-detection": _aptos,
    "cassava-leaf-disease-classification": _accuracy("image_id", "label"),
    "dog-breed-identification": _one_hot_log_loss(exact_columns=False),
    "dogs-vs-cats-redux-kernels-edition": _dogs_vs_cats,
    "histopathologic-cancer-detection": _auc_single("id", "label"),
    "invasive-species-monitoring": _auc_single("name", "invasive"),
    "leaf-classification": _one_hot_log_loss(exact_columns=True),
    "paddy-disease-classification": _accuracy("image_id", "label", fill_empty=True),
    "petfinder-pawpularity-score": _petfinder,
    "plant-pathology-2020-fgvc7": _plant_pathology_2020,
    "plant-pathology-2021-fgvc8": _tags_micro_f1("image", "labels"),
    "plant-seedlings-classification": _label_f1("file", "species", "micro", as_int=False),
    "ranzcr-clip-catheter-line-classification": _ranzcr,
    "siim-isic-melanoma-classification": _auc_single("image_name", "target"),
    "whale-categorization-playground": _whale,
    "herbarium-2020-fgvc7": _label_f1("Id", "Predicted", "macro", as_int=True),
    "imet-2020-fgvc7": _tags_micro_f1("id", "attribute_ids"),
    "iwildcam-2019-fgvc6": _label_f1("Id", "Category", "macro", as_int=True),
}
LOWER_IS_BETTER = {
    "dog-breed-identification",
    "dogs-vs-cats-redux-kernels-edition",
    "leaf-classification",
    "petfinder-pawpularity-score",
}


def lower_is_better(slug: str) -> bool:
    if slug not in GRADERS:
        raise KeyError(f"no grader for {slug!r}")
    return slug in LOWER_IS_BETTER


def grade(slug: str, submission, answers) -> float:
    """`submission` scored against `answers` (DataFrames or CSV paths) as MLE-bench's grader for `slug` scores
    it; InvalidSubmission where that grader would give no score."""
    if slug not in GRADERS:
        raise KeyError(f"no grader for {slug!r}")
    sub, ans = read(submission), read(answers)
    try:
        return float(GRADERS[slug](sub, ans))
    except InvalidSubmission:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as e:  # MLE-bench: any error while grading -> no score
        raise InvalidSubmission(f"{slug}: the grader fails on this submission ({type(e).__name__}: {e})") from e


# ---------------------------------------------------------------- reference submissions


def sample_score(slug: str, standin: Standin) -> float:
    """The public sample submission's grade."""
    return grade(slug, standin.sample_submission, standin.answers)


PRIOR_KIND = {  # how the training prior answers, per competition
    "aerial-cactus-identification": "mean",
    "histopathologic-cancer-detection": "mean",
    "invasive-species-monitoring": "mean",
    "siim-isic-melanoma-classification": "mean",
    "dogs-vs-cats-redux-kernels-edition": "mean",
    "petfinder-pawpularity-score": "mean",
    "ranzcr-clip-catheter-line-classification": "mean",
    "plant-pathology-2020-fgvc7": "mean",
    "dog-breed-identification": "mean",
    "leaf-classification": "mean",  # column means of one-hot = class freqs
    "aptos2019-blindness-detection": "mode",
    "cassava-leaf-disease-classification": "mode",
    "paddy-disease-classification": "mode",
    "plant-seedlings-classification": "mode",
    "herbarium-2020-fgvc7": "mode",
    "iwildcam-2019-fgvc6": "mode",
    "plant-pathology-2021-fgvc8": "mode",
    "imet-2020-fgvc7": "mode",  # the most common tag set
    "whale-categorization-playground": "top5",
}


def prior_submission(slug: str, standin: Standin) -> pd.DataFrame:
    """The sample submission answered from the training targets alone: the training mean per target column
    (probabilities, class frequencies, Pawpularity), the most common label (or tag set), or for whale the five
    most common Ids."""
    sub = read(standin.sample_submission)
    train = standin.train_targets
    for c in standin.target_columns:
        kind = PRIOR_KIND[slug]
        if kind == "mean":
            value = float(pd.to_numeric(train[c]).mean())
        elif kind == "mode":
            value = train[c].value_counts().sort_index(kind="stable").idxmax()
        else:
            value = " ".join(train[c].value_counts().index[:5])
        sub[c] = value
    return sub


def prior_score(slug: str, standin: Standin) -> float:
    """The grade of prior_submission."""
    return grade(slug, prior_submission(slug, standin), standin.answers)
