"""Curves: the training history of every job, each job's time, the LR finder's sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from kagglecv.report.canvas import new_figure, save_figure


def training_curves(histories: dict[str, list[str | Path]], metric: str, out_png: str | Path) -> None:
    """histories: {backbone: [history.csv of fold 0, 1, ...]}. One row of panels per backbone; a backbone trained by
    a rule of the user's that writes no history.csv (docs/extending.md) is left out."""
    histories = {b: paths for b, paths in histories.items() if all(Path(p).is_file() for p in paths)}
    names = list(histories)
    fig = new_figure(11, 2.8 * max(len(names), 1))
    axes = fig.subplots(max(len(names), 1), 2, squeeze=False)
    colors = [f"C{k}" for k in range(10)]
    for row, name in enumerate(names):
        ax_loss, ax_metric = axes[row]
        for k, path in enumerate(histories[name]):
            h = pd.read_csv(path)
            if h.empty:
                continue
            c = colors[k % len(colors)]
            ax_loss.plot(h["epoch"], h["train_loss"], "-o", color=c, ms=3, label=f"fold {k} train")
            v = h.dropna(subset=["valid_loss"])  # the validated epochs (train.valid_every)
            ax_loss.plot(v["epoch"], v["valid_loss"], "--s", color=c, ms=3, label=f"fold {k} valid")
            col = (
                f"valid_{metric}"
                if f"valid_{metric}" in h
                else next((c2 for c2 in h.columns if c2.startswith("valid_") and c2 != "valid_loss"), None)
            )
            if col:
                ax_metric.plot(v["epoch"], v[col], "-o", color=c, ms=3, label=f"fold {k}")
        ax_loss.set_title(f"{name}: loss (solid train, dashed valid)", fontsize=10)
        ax_metric.set_title(f"{name}: validation {metric} (no TTA)", fontsize=10)
        for ax in (ax_loss, ax_metric):
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.xaxis.get_major_locator().set_params(integer=True)
        if ax_metric.lines:
            ax_metric.legend(fontsize=7, loc="best")
    save_figure(fig, out_png)


JOB_PARTS = (("start-up", "C7"), ("epochs", "C0"), ("TTA", "C1"), ("writing and the rest", "C2"))


def job_time_frame(metrics: dict[str, list[str | Path]]) -> pd.DataFrame:
    """One row per training job from its metrics.json: seconds of start-up (imports, data, model: until the
    first batch), epochs, TTA, and the rest (writing outputs, tracking)."""
    rows = []
    for name, paths in metrics.items():
        for path in paths:
            m = json.loads(Path(path).read_text())
            if m.get("fixed_seconds") is None:  # written before these figures existed
                continue
            startup, tta, fixed = m["startup_seconds"], m["tta_seconds"], m["fixed_seconds"]
            budget = m.get("time_budget") or {}
            rows.append(
                {
                    "job": f"{name} fold {m['fold']}",
                    "start-up": startup,
                    "epochs": m["train_seconds"],
                    "TTA": tta,
                    "writing and the rest": max(fixed - startup - tta, 0.0),
                    "fixed": fixed,
                    "budget": budget.get("budget_seconds"),
                    "planned": budget.get("planned_seconds"),
                    "used": budget.get("used_seconds"),
                }
            )
    return pd.DataFrame(rows, columns=["job", *(p for p, _ in JOB_PARTS), "fixed", "budget", "planned", "used"])


def job_time(metrics: dict[str, list[str | Path]], out_png: str | Path) -> pd.DataFrame:
    """Where each training job's time went, one stacked bar per job: what is not epochs is the job's fixed
    cost (make bench's target is a few seconds)."""
    df = job_time_frame(metrics)
    fig = new_figure(9, 0.9 + 0.32 * max(len(df), 1))
    ax = fig.subplots()
    left = np.zeros(len(df))
    for part, color in JOB_PARTS:
        ax.barh(df["job"], df[part], left=left, color=color, label=part)
        left += df[part].to_numpy()
    budgeted = df[df["budget"].notna()]  # train.time_budget: planned and used seconds, counted from start-up's end
    if len(budgeted):
        y = [list(df["job"]).index(j) for j in budgeted["job"]]
        start = budgeted["start-up"].to_numpy(dtype=float)
        for column, color, label in (("planned", "k", "planned (time budget)"), ("budget", "C3", "time budget")):
            seconds = start + budgeted[column].to_numpy(dtype=float)
            ax.scatter(seconds, y, marker="|", s=300, color=color, label=label, zorder=3)
    ax.invert_yaxis()  # first job on top
    ax.set_xlabel("seconds")
    fixed = f"{df['fixed'].mean():.1f} s per job (median {df['fixed'].median():.1f})" if len(df) else "no data"
    ax.set_title(f"Training jobs: fixed cost (all but the epochs) {fixed}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, ncols=4, loc="outside lower center")
    save_figure(fig, out_png)
    return df


def lr_find_curves(results: dict[str, str | Path], out_png: str | Path) -> None:
    """results: {backbone: lr_find.json with "lrs", "losses", "suggestion"}."""
    fig = new_figure(8, 4.5)
    ax = fig.add_subplot()
    for k, (name, path) in enumerate(results.items()):
        r = json.loads(Path(path).read_text())
        lrs, losses = np.asarray(r["lrs"], float), np.asarray(r["losses"], float)
        c = f"C{k % 10}"
        ax.plot(lrs, losses, color=c, label=name)
        s = r.get("suggestion")
        if s is not None and len(lrs):
            y = float(np.interp(np.log(s), np.log(lrs), losses))
            ax.plot([s], [y], "o", color=c, ms=7, mfc="none", mew=2)
            ax.annotate(f"{s:.2g}", (s, y), textcoords="offset points", xytext=(6, 8 + 11 * k), color=c, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed training loss")
    ax.set_title("LR range test (circles: suggested LR)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    if ax.lines:
        ax.legend(fontsize=8)
    save_figure(fig, out_png)
