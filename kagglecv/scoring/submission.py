"""A Kaggle-format submission: exactly the ids, order and columns of sample_submission.csv.

What a row holds (`plan_submission`, decided when the competition is prepared and kept in meta.json; data.submission
overrides it):
  label          one column, a class name (classification) or a grade (ordinal: cut points fitted on OOF)
  probability    one column, P(second class): a binary task scored on probabilities (roc_auc, log_loss)
  class_columns  one column per class or label (Plant Pathology, Dog Breed): probabilities, or 0/1 where the
                 metric needs decisions
  tags           one column of space-separated labels whose probability passes its threshold (Planet, iMet)
  top_k          one column of the k most probable classes, space-separated, best first (Whale: MAP@5)
  value          one column, the predicted number, clipped to the target's range (PetFinder: 1-100)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kagglecv.core.errors import InputError
from kagglecv.core.files import header, read_table, write_csv
from kagglecv.core.layout import PreparedFiles
from kagglecv.core.results import PreparedMeta, Scores
from kagglecv.core.tasks import CLASSIFICATION, Task
from kagglecv.scoring import metrics
from kagglecv.scoring.decisions import decide


def auto_format(kind: str, n_targets: int, metric: str, tokens: int = 1) -> str:
    """What a row holds when nothing says otherwise: from the template (its target columns, and the words each
    cell shows: Whale's five ids), the task and the metric."""
    if n_targets > 1:
        return "class_columns"
    if kind in CLASSIFICATION and (metrics.top_k(metric) or tokens > 1):
        return "top_k"
    if kind == "multilabel":
        return "tags"
    if kind == "regression":
        return "value"
    if kind == "binary" and metric in metrics.PROBABILITY_METRICS:
        return "probability"
    return "label"


def plan_submission(
    kind: str,
    n_targets: int,
    metric: str,
    tokens: int,
    configured: str = "auto",
    top_k: int | None = None,
    target_range=None,
    values=None,
) -> dict:
    """meta.json's `submission`: {format, top_k, range}. top_k: data.top_k, else the metric's k (map@5), else the
    template's words per cell; range (numeric tasks): data.target_range, else the training values' range."""
    fmt = auto_format(kind, n_targets, metric, tokens) if configured == "auto" else configured
    k = (top_k or metrics.top_k(metric) or (tokens if tokens > 1 else None)) if fmt == "top_k" else None
    if fmt == "top_k" and not k:
        raise InputError("data.submission: top_k needs data.top_k (or a map@<k> metric)")
    lo_hi = None
    if kind == "regression":
        lo_hi = [float(v) for v in target_range] if target_range else [float(min(values)), float(max(values))]
    return {"format": fmt, "top_k": k, "range": lo_hi}


def submission_format(meta: PreparedMeta, metric: str) -> str:
    """The format prepare planned (meta.json's `submission`); for a meta.json written before it was kept there,
    what `auto_format` says."""
    meta = PreparedMeta.of(meta)
    return meta.submission.get("format") or auto_format(meta.task, len(meta.target_columns), metric)


def fitted_thresholds(scores_json: Path | None) -> list[float] | None:
    """The thresholds (multilabel) or cut points (ordinal) the ensemble step fitted on OOF, if any."""
    if scores_json is None or not Path(scores_json).exists():
        return None
    return Scores.read(scores_json).ensemble.thresholds


def decisions(
    task: Task, preds: np.ndarray, fmt: str, metric: str, cuts: list[float] | None, planned: dict | None = None
):
    """Each row's answer in the submission's terms: class names, 0/1 label flags, grade names, numbers (clipped to
    the planned range), the k most probable classes, or the probabilities themselves where the metric scores
    those."""
    planned = planned or {}
    if task.kind == "multilabel":
        if fmt == "tags" or metrics.needs_thresholds(metric, task.kind):
            return decide(preds, cuts, task.kind)
        return preds
    if task.kind == "regression":
        lo_hi = planned.get("range")
        return np.clip(preds[:, 0], *lo_hi) if lo_hi else preds[:, 0]
    if fmt == "top_k":
        k = int(planned.get("top_k") or metrics.top_k(metric) or 1)
        return [" ".join(task.classes[j] for j in row) for row in metrics.top_classes(preds, k)]
    if task.kind == "ordinal":
        grades = decide(preds, cuts, task.kind, task.grades)
        return [task.classes[task.grades.index(float(g))] for g in grades]
    if fmt == "label":
        return [task.classes[k] for k in preds.argmax(1)]
    if fmt == "probability":
        return preds[:, 1]
    # one column per class of one label: rows renormalised in float64, so that each sums to one as log-loss
    # graders check (a float32 softmax, averaged over models, misses by 1e-7: sklearn warns, strict graders refuse)
    probs = np.asarray(preds, dtype=np.float64)
    return probs / probs.sum(axis=1, keepdims=True)


def make_submission(
    ensemble_test_csv: Path,
    prepared_dir: Path,
    sample_csv_path: Path,
    metric: str,
    out_csv: Path,
    scores_json: Path | None = None,
) -> pd.DataFrame:
    """The workflow's submission step: ensemble_test.csv in the template's ids, order and columns."""
    meta = PreparedMeta.read(PreparedFiles(prepared_dir).meta)
    out = submission_frame(
        read_table(ensemble_test_csv),
        meta,
        sample_csv_path,
        metric,
        fitted_thresholds(scores_json),
        source=ensemble_test_csv,
    )
    write_csv(out_csv, out)
    return out


def submission_frame(
    preds: pd.DataFrame,
    meta: PreparedMeta,
    sample_csv_path: Path,
    metric: str,
    cuts: list[float] | None,
    source: str | Path = "predictions",
) -> pd.DataFrame:
    """`preds` (an `id` column and p0..p<k-1>) as the competition's template wants it: the one place a
    submission is made, by the workflow and by the Kaggle kernel (kagglecv.kaggle.kernel) alike."""
    meta = PreparedMeta.of(meta)
    task = Task.of(meta)
    sample = pd.read_csv(sample_csv_path, dtype=str, keep_default_na=False)
    id_col, classes = meta.id_column, list(task.classes)
    probs = preds[[f"p{k}" for k in range(task.outputs)]].to_numpy()
    pred_by_id = dict(zip(preds["id"], range(len(preds))))
    missing = [i for i in sample[id_col] if i not in pred_by_id]
    if missing:
        raise InputError(f"{source}: no prediction for id {missing[0]!r} of {sample_csv_path}; rerun the training jobs")
    probs = probs[[pred_by_id[i] for i in sample[id_col]]]
    if not np.isfinite(probs).all():
        bad = sample[id_col].iloc[int(np.flatnonzero(~np.isfinite(probs).all(1))[0])]
        raise InputError(
            f"{source}: prediction for id {bad!r} is not finite; a training job diverged, lower train.lr and rerun"
        )
    out = sample.copy()
    fmt, target = submission_format(meta, metric), meta.target_columns[0]
    answer = decisions(task, probs, fmt, metric, cuts, meta.submission)
    if fmt == "class_columns":
        unknown = [c for c in meta.target_columns if c not in classes]
        if unknown:
            raise InputError(
                f"{sample_csv_path}: column {unknown[0]!r} is not a class in train labels {classes[:5]}..."
            )
        answer = np.asarray(answer)
        for c in meta.target_columns:
            out[c] = answer[:, classes.index(c)]
    elif fmt == "tags":
        out[target] = [" ".join(c for c, f in zip(classes, row) if f) for row in np.asarray(answer)]
    else:
        out[target] = answer
    check_submission(out, sample, id_col, sample_csv_path, source, tags=fmt == "tags")
    out.columns = header(sample_csv_path)  # as the template spells them
    return out


def kind_of(values: pd.Series, template: bool = False) -> str | None:
    """'number' when every non-empty value reads as a finite number, 'text' otherwise; None when all are empty,
    or (`template`) when one whole number fills the column: templates fill class columns with a placeholder 0."""
    text = values.astype(str).str.strip()
    text = text[(text != "") & values.notna().to_numpy()]
    if text.empty:
        return None
    numbers = pd.to_numeric(text, errors="coerce")
    if not np.isfinite(numbers).all():
        return "text"
    return None if template and numbers.nunique() == 1 and float(numbers.iloc[0]).is_integer() else "number"


def check_submission(
    out: pd.DataFrame, sample: pd.DataFrame, id_col: str, sample_path, source, tags: bool = False
) -> None:
    """What Kaggle's scorer checks, before anything is written: the template's columns in its order, its ids in
    its order, no missing value, and each column of the template's kind (numbers where it holds numbers, text
    where it holds text; a column filled with one whole number is a placeholder, of no kind). A column of
    space-separated tags may be empty (an image with no tag) and is text whatever the template shows. One
    implementation: the workflow's submission step and the kernel both make their submission through
    submission_frame."""

    def refuse(what: str) -> None:
        raise InputError(f"{source}: {what} ({sample_path}); Kaggle would not score this submission")

    if list(out.columns) != list(sample.columns):
        refuse(f"columns {list(out.columns)} are not the template's {list(sample.columns)}")
    ids = out[id_col].astype(str).tolist()
    if ids != sample[id_col].tolist():
        k = next((k for k, (a, b) in enumerate(zip(ids, sample[id_col])) if a != b), min(len(ids), len(sample)))
        refuse(f"{len(ids)} ids, row {k + 2} differing from the template's {len(sample)} ids in their order")
    for c in out.columns.drop(id_col):
        values = out[c]
        gap = values.isna().to_numpy() | (values.astype(str).str.strip().eq("").to_numpy() & (not tags))
        if pd.api.types.is_numeric_dtype(values):
            gap |= ~np.isfinite(values.to_numpy(dtype=float))
        if gap.any():
            refuse(f"id {ids[int(np.flatnonzero(gap)[0])]!r} has no value in column {c!r}")
        ours, theirs = kind_of(values), kind_of(sample[c], template=True)
        if ours and theirs and ours != theirs and not tags:
            plural = {"number": "numbers", "text": "text"}
            refuse(
                f"column {c!r} holds {plural[ours]} (e.g. {values.iloc[0]!r}) where the template holds "
                f"{plural[theirs]} (e.g. {sample[c].iloc[0]!r}); check `metric:` (probability metrics write numbers)"
            )


def score_against(submission_csv, solution_csv, meta: PreparedMeta, metric: str) -> dict:
    """{metric, score, n}: a submission scored against held-aside labels (the demo's solution.csv), as Kaggle
    scores it: the local 'public score'."""
    meta = PreparedMeta.of(meta)
    sub = pd.read_csv(submission_csv, dtype=str, keep_default_na=False)
    sol = pd.read_csv(solution_csv, dtype=str, keep_default_na=False)
    id_col, target = meta.id_column, meta.target_columns[0]
    merged = sol.merge(sub, on=id_col, suffixes=("_true", "_pred"), validate="one_to_one")
    classes = [str(c) for c in meta.classes]
    y = merged[f"{target}_true"].map(classes.index).to_numpy()
    if submission_format(meta, metric) == "label":
        probs = pd.get_dummies(pd.Categorical(merged[f"{target}_pred"], categories=classes)).to_numpy(float)
    else:
        p1 = merged[f"{target}_pred"].astype(float).to_numpy()
        probs = pd.DataFrame({"0": 1 - p1, "1": p1}).to_numpy()
    return {"metric": metric, "score": metrics.score(metric, y, probs), "n": len(merged)}
