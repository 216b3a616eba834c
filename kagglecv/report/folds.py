"""Class counts per fold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kagglecv.core.files import read_table
from kagglecv.core.results import PreparedMeta
from kagglecv.report.canvas import new_figure, save_figure


def fold_counts(folds: pd.DataFrame, meta: PreparedMeta) -> tuple[pd.DataFrame, list[str]]:
    """(rows per fold and class, column names): classes and grades; labels (multilabel, a row counts once per
    label); target quantile bins (regression)."""
    from kagglecv.core.tasks import Task

    task = Task.of(meta)
    if task.kind == "multilabel":
        names = list(task.classes)
        table = pd.DataFrame(task.targets(folds), columns=range(len(names))).groupby(folds["fold"]).sum()
        return table.astype(int).sort_index(), names
    if task.kind == "regression":
        edges = np.unique(np.quantile(folds["y"], np.linspace(0, 1, 6)))
        key = np.clip(np.searchsorted(edges, folds["y"], side="right") - 1, 0, len(edges) - 2)
        names = [f"{edges[k]:.3g}-{edges[k + 1]:.3g}" for k in range(len(edges) - 1)]
    elif task.kind == "ordinal":
        key, names = np.array([task.grades.index(float(v)) for v in folds["y"]]), list(task.classes)
    else:
        key, names = folds["y"].to_numpy(int), list(task.classes)
    counts = (
        folds.assign(key=key)
        .groupby(["fold", "key"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=range(len(names)), fill_value=0)
        .sort_index()
    )
    return counts, names


def class_balance(folds_csv: str | Path, meta_json: str | Path, out_png: str | Path) -> pd.DataFrame:
    counts, names = fold_counts(read_table(folds_csv), PreparedMeta.read(meta_json))
    fig = new_figure(9, max(3.0, 0.45 * len(counts) + 1.8))
    ax = fig.add_subplot()
    frac = counts.div(counts.sum(axis=1), axis=0)
    labels = [f"fold {k} (n={int(counts.loc[k].sum())})" for k in counts.index]
    if len(names) <= 12:
        left = np.zeros(len(counts))
        for j, name in enumerate(names):
            ax.barh(labels, frac[j], left=left, color=f"C{j % 10}", label=name)
            for i, (start, f, c) in enumerate(zip(left, frac[j], counts[j])):
                if f > 0.06:
                    ax.text(start + f / 2, i, str(c), ha="center", va="center", fontsize=8, color="white")
            left += frac[j].to_numpy()
        ax.set_xlim(0, 1)
        ax.legend(title="class", fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
        ax.set_xlabel("fraction of the fold (numbers: images)")
        ax.invert_yaxis()
    else:
        im = ax.imshow(frac.to_numpy(), aspect="auto", cmap="viridis")
        fig.colorbar(im, ax=ax, label="fraction of the fold")
        ax.set_yticks(range(len(labels)), labels=labels)
        ax.set_xlabel("class index")
    ax.set_title("Class balance per fold (validation rows)", fontsize=10)
    save_figure(fig, out_png)
    return counts
