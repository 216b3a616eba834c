"""What the training labels are: tags or names, spelt one way, and the task they make.

Labels are text: whitespace inside a class name ('Common Chickweed') or a column name ('ETT - Abnormal') is part
of it. A label cell is space-separated tags only when data.tags, the task, the metric, the template or the labels
themselves say so (`are_tags`).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from kagglecv.config.data import DataConfig
from kagglecv.core import tasks
from kagglecv.core.errors import InputError
from kagglecv.data.competition import Competition
from kagglecv.scoring import metrics

NAMED_LAYOUTS = ("folder_per_class", "filename_labels", "json_annotations")  # a folder, file or category names one


def are_tags(labels: list, cfg: DataConfig, comp: Competition, metric: str, task: str) -> bool:
    """Whether label cells are space-separated tags: data.tags when set; yes for task: multilabel or a multilabel
    metric; no for another task given, or labels that are folder, file or category names; else yes when some
    cell holds several words and the words recur: a word of one label is another label ('scab' and 'scab rust'),
    or there are fewer distinct words than distinct labels (Planet's 17 tags in hundreds of combinations). The
    words of class names do neither ('Common Chickweed', 'Sugar beet': 12 names, 20 words). A template showing
    several words in a cell says nothing: Plant Seedlings' shows 'Sugar beet', Planet's 'clear primary'."""
    if cfg.tags is not None:
        return cfg.tags
    if task == "multilabel" or metric in tasks.MULTILABEL_METRICS:
        return True
    if task != "auto" or comp.layout in NAMED_LAYOUTS:
        return False
    cells = {str(v) for v in labels}
    several = [c for c in cells if len(c.split()) > 1]
    if not several:
        return False
    words = {w for c in cells for w in c.split()}
    alone = any(w in cells for c in several for w in c.split())  # 'scab' a label, and a word of 'scab rust'
    return alone or len(words) < len(cells)


def refuse_unknown_columns(comp: Competition, classes: list[str]) -> None:
    """A template with several target columns wants one probability per class: each column must be a class."""
    if len(comp.template.targets) > 1:
        unknown = [c for c in comp.template.targets if c not in classes]
        if unknown:
            raise InputError(
                f"{comp.template.path}: column {unknown[0]!r} is not a class of the training labels "
                f"({', '.join(classes[:6])}{', ...' if len(classes) > 6 else ''}); remove it or fix "
                "the labels"
            )


MISSING_SPELLINGS = {"", "nan", "NaN", "NAN", "NA", "N/A", "n/a", "#N/A", "<NA>"}  # how CSV writers spell a gap


DECIMAL = re.compile(r"[+-]?\d+\.\d*")


def spelling(value) -> tuple:
    """What a label means once its spelling is set aside: ' 1', '1' and '1.0' are one label (a float column
    written out), 'nan' and 'NA' a missing value. Leading zeros stay: '001' is a code, not the number 1."""
    text = str(value).strip()
    if text in MISSING_SPELLINGS:
        return ("missing",)
    return ("label", text.rstrip("0").rstrip(".") if DECIMAL.fullmatch(text) else text)


def label_spellings(labels: list, ids, path: Path, column: str, normalise: bool) -> list:
    """The labels, each meaning spelt one way. Labels that differ only by surrounding whitespace, number format or
    missing-value spelling would silently become separate classes: refused, naming them. With data.label_normalise
    each becomes its most common spelling (stripped), and missing-value spellings are missing labels (refused,
    naming the row). One consistent spelling (a class named 'NA') is left as it is."""
    counts = Counter(labels)
    groups: dict[tuple, list] = {}
    for value in counts:
        groups.setdefault(spelling(value), []).append(value)
    if not normalise:
        clash = next((sorted(g) for g in groups.values() if len(g) > 1), None)
        if clash:
            raise InputError(
                f"{path}: labels {', '.join(map(repr, clash))} in column {column!r} differ only by "
                "whitespace, number format or missing-value spelling and would be separate classes; "
                "write each one way, or set data.label_normalise: true"
            )
        return labels
    if ("missing",) in groups:
        row = next(k for k, v in enumerate(labels) if spelling(v) == ("missing",))
        raise InputError(
            f"{path}: id {list(ids)[row]!r} has a missing label ({labels[row]!r}) in column {column!r}; "
            "fill or drop the row"
        )
    best = {key: min(g, key=lambda v: (-counts[v], str(v).strip())).strip() for key, g in groups.items()}
    return [best[spelling(v)] for v in labels]


def recognise(
    comp: Competition, task: str, metric: str, train_path: Path, normalise: bool = False
) -> tuple[str, list[str]]:
    """(task kind, classes) of the training labels; the metric must suit the task. Tag cells become lists of
    names; labels that name classes are checked for spellings first (label_spellings). comp.labels takes the
    result: a name per row, a list of names per row (multilabel), or the numbers as written."""
    column = comp.data.target_column or "label"
    if comp.label_names:  # one 0/1 column per label: multilabel, or one class per row when task: says so
        kind = task if task != "auto" else "multilabel"
        if kind in tasks.CLASSIFICATION:
            several = [i for i, v in zip(comp.train_ids, comp.labels) if len(v) != 1]
            if several:
                raise InputError(
                    f"{train_path}: id {several[0]!r} has not exactly one label among "
                    f"{', '.join(comp.label_names)}, which task: {kind} needs; use task: multilabel"
                )
            comp.labels = [v[0] for v in comp.labels]
        elif kind != "multilabel":
            raise InputError(f"task: {kind} cannot read one 0/1 column per label; use multilabel or multiclass")
        classes = list(comp.label_names)
    else:
        if are_tags(comp.labels, comp.data, comp, metric, task):
            comp.labels = [tasks.split_tags(v) for v in comp.labels]
            kind = tasks.detect(comp.labels, metric, task, column, comp.train_ids, tags=True)
        else:
            kind = tasks.detect(comp.labels, metric, task, column, comp.train_ids)
            if kind != "regression":  # a number is a number to a regression
                comp.labels = label_spellings(comp.labels, comp.train_ids, train_path, column, normalise)
                kind = tasks.detect(comp.labels, metric, task, column, comp.train_ids)
        classes = tasks.class_names(comp.labels, kind)
    metrics.check_metric(metric, kind)
    if kind in tasks.CLASSIFICATION and len(classes) < 2:
        raise InputError(f"{train_path}: only one class ({classes[0]!r}) in the training labels")
    if kind == "binary" and len(classes) != 2:
        raise InputError(f"task: binary, but the labels have {len(classes)} classes; use task: multiclass")
    if kind == "multilabel" and not classes:
        raise InputError(f"{train_path}: no labels at all in column {column!r}")
    return kind, classes
