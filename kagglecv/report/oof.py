"""The ensemble's out-of-fold predictions: its confusion, and the images it is most wrong or unsure about."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from kagglecv.core.files import read_table
from kagglecv.core.layout import PreparedFiles
from kagglecv.core.results import PreparedMeta, Scores
from kagglecv.report.canvas import class_names, new_figure, save_figure


def _probs(df: pd.DataFrame) -> np.ndarray:
    cols = [c for c in df.columns if c.startswith("p") and c[1:].isdigit()]
    return df[sorted(cols, key=lambda c: int(c[1:]))].to_numpy(float)


def decided(oof: pd.DataFrame, meta: PreparedMeta, scores: Scores | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(true index, predicted index, names) of OOF rows of a task with classes: argmax for classification,
    the fitted cut points for ordinal grades."""
    from kagglecv.core.tasks import Task
    from kagglecv.scoring.decisions import decide

    task, p = Task.of(meta), _probs(oof)
    names = list(task.classes)
    if task.kind != "ordinal":
        return oof["y"].to_numpy(int), p.argmax(1), names
    cuts = Scores.of(scores).ensemble.thresholds if scores else None
    grades = task.grades
    pred = decide(p, cuts, "ordinal", grades)
    index = {g: k for k, g in enumerate(grades)}
    return np.array([index[float(v)] for v in oof["y"]]), np.array([index[float(v)] for v in pred]), names


def confusion(
    ensemble_oof_csv: str | Path,
    meta_json: str | Path,
    out_png: str | Path,
    method: str | None = None,
    scores: Scores | None = None,
) -> np.ndarray:
    """The OOF confusion matrix (classes, grades); multilabel: per-label counts; regression: predicted vs true."""
    oof = read_table(ensemble_oof_csv)
    meta = PreparedMeta.read(meta_json)
    if meta.task == "multilabel":
        return label_confusion(oof, meta, scores, out_png, method)
    if meta.task == "regression":
        return predicted_vs_true(oof, out_png, method)
    y, pred, names = decided(oof, meta, scores)
    n = len(names)
    cm = np.zeros((n, n), dtype=int)
    np.add.at(cm, (y, pred), 1)
    side = min(max(4.5, 0.45 * n + 2.5), 24)
    fig = new_figure(side + 1, side)
    ax = fig.add_subplot()
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    if n <= 25:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        str(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if rates[i, j] > 0.5 else "black",
                    )
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels=names if n <= 60 else [""] * n, rotation=90 if n > 10 else 0, fontsize=8)
    ax.set_yticks(ticks, labels=names if n <= 60 else [""] * n, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = float(np.trace(cm) / max(cm.sum(), 1))
    ax.set_title(
        f"OOF confusion matrix, ensemble{f' ({method})' if method else ''}: {cm.sum()} images, accuracy {acc:.4f}",
        fontsize=10,
    )
    save_figure(fig, out_png)
    return cm


def label_confusion(oof, meta, scores, out_png, method) -> np.ndarray:
    """Multilabel: true positives, false positives and false negatives per label at the fitted thresholds."""
    from kagglecv.core.tasks import Task
    from kagglecv.scoring.decisions import decide

    task = Task.of(meta)
    truth = task.targets(oof).astype(bool)
    flags = decide(_probs(oof), Scores.of(scores).ensemble.thresholds if scores else None, "multilabel")
    flags = np.asarray(flags).astype(bool)
    counts = np.stack([(truth & flags).sum(0), (~truth & flags).sum(0), (truth & ~flags).sum(0)], axis=1)
    names = list(task.classes)
    fig = new_figure(9, max(3.0, 0.3 * len(names) + 1.5))
    ax = fig.add_subplot()
    left = np.zeros(len(names))
    for j, (what, color) in enumerate(
        (("true positive", "#1b7837"), ("false positive", "#d6604d"), ("false negative", "#f4a582"))
    ):
        ax.barh(names, counts[:, j], left=left, color=color, label=what)
        left += counts[:, j]
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    ax.set_xlabel("OOF images")
    ax.set_title(f"OOF decisions per label, ensemble{f' ({method})' if method else ''}", fontsize=10)
    save_figure(fig, out_png)
    return counts


def predicted_vs_true(oof, out_png, method) -> np.ndarray:
    """Regression: each OOF prediction against its target, with the diagonal."""
    y, p = oof["y"].to_numpy(float), _probs(oof)[:, 0]
    fig = new_figure(6, 5.5)
    ax = fig.add_subplot()
    ax.scatter(y, p, s=6, alpha=0.5)
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1)
    rmse = float(np.sqrt(np.mean((p - y) ** 2)))
    ax.set_xlabel("true")
    ax.set_ylabel("predicted (OOF)")
    ax.set_title(f"OOF predictions, ensemble{f' ({method})' if method else ''}: RMSE {rmse:.4g}", fontsize=10)
    save_figure(fig, out_png)
    return np.column_stack([y, p])


def pick_errors(oof: pd.DataFrame, n: int = 16, meta: PreparedMeta | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(most confidently wrong, most uncertain) OOF rows, with pred, confidence and margin columns; tasks
    without classes: (largest errors, smallest errors)."""
    kind = PreparedMeta.of(meta).task if meta else "multiclass"
    if kind in ("multilabel", "regression", "ordinal"):
        from kagglecv.core.tasks import Task

        task, p = Task.of(meta), _probs(oof)
        truth = task.targets(oof).reshape(len(oof), -1)
        out = oof[["id", "label", "fold"]].copy()
        out["error"] = np.abs(p - truth).sum(1)  # numeric: |pred - y|; multilabel: summed probability misses
        out["shown"] = [" ".join(f"{v:.2f}" for v in row[:3]) for row in p]
        return (
            out.sort_values(["error", "id"], ascending=[False, True]).head(n),
            out.sort_values(["error", "id"]).head(n),
        )
    p = _probs(oof)
    top2 = np.sort(p, axis=1)[:, -2:]
    out = oof[["id", "y", "fold"]].copy()
    out["pred"], out["confidence"], out["margin"] = p.argmax(1), top2[:, 1], top2[:, 1] - top2[:, 0]
    out["p_true"] = p[np.arange(len(p)), oof["y"].to_numpy(int)]
    wrong = out[out["pred"] != out["y"]].sort_values(["confidence", "id"], ascending=[False, True]).head(n)
    uncertain = out.sort_values(["margin", "id"]).head(n)
    return wrong, uncertain


def oof_errors(
    ensemble_oof_csv: str | Path, prepared_dir: str | Path, out_png: str | Path, n: int = 16, per_row: int = 8
) -> tuple[pd.DataFrame, pd.DataFrame]:
    prepared = PreparedFiles(prepared_dir)
    oof = read_table(ensemble_oof_csv)
    meta = PreparedMeta.read(prepared.meta)
    names = class_names(meta)
    train = read_table(prepared.train)
    row_of = dict(zip(train["id"], range(len(train))))
    images = np.load(prepared.train_images, mmap_mode="r")
    wrong, uncertain = pick_errors(oof, n, meta)
    by_class = "error" not in wrong.columns
    sections = (
        [
            ("Most confidently wrong", wrong, "no wrong out-of-fold prediction"),
            ("Most uncertain (smallest margin between the top two classes)", uncertain, "no images"),
        ]
        if by_class
        else [
            ("Largest out-of-fold errors", wrong, "no images"),
            ("Smallest out-of-fold errors", uncertain, "no images"),
        ]
    )
    rows = [max(1, math.ceil(len(df) / per_row)) for _, df, _ in sections]
    fig = new_figure(1.45 * per_row, 1.75 * sum(rows) + 0.9)
    subfigs = fig.subfigures(len(sections), 1, height_ratios=rows)
    for sub, (title, df, empty), nrow in zip(subfigs, sections, rows):
        sub.suptitle(title, fontsize=11, x=0.01, ha="left", fontweight="bold")
        axes = sub.subplots(nrow, per_row, squeeze=False).ravel()
        for ax in axes:
            ax.axis("off")
        if df.empty:
            axes[0].text(0, 0.5, empty, fontsize=10, transform=axes[0].transAxes)
            continue
        for ax, r in zip(axes, df.itertuples()):
            img = np.asarray(images[row_of[r.id]])
            if img.shape[-1] == 1:
                ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(img, interpolation="nearest")
            if not by_class:
                ax.set_title(f"{_short(str(r.id))}\ntrue {_short(str(r.label))}\npred {_short(r.shown)}", fontsize=7)
                continue
            wrong_pred = r.pred != r.y
            ax.set_title(
                f"{_short(str(r.id))}\ntrue {_short(names[r.y])} / pred {_short(names[r.pred])}\n"
                f"p={r.confidence:.2f} (true {r.p_true:.2f})",
                fontsize=7,
                color="#b00020" if wrong_pred else "#1b5e20",
            )
    save_figure(fig, out_png)
    return wrong, uncertain


def _short(s: str, n: int = 16) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
