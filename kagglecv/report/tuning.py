"""The study's figures in the Snakemake report (rules/tune.smk, `tune_results`): its history and its parameter
importances, drawn with matplotlib from trials.csv's table and kagglecv.tuning.results.importances."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kagglecv.report.canvas import new_figure, save_figure

STATE_STYLE = {
    "COMPLETE": ("#1f77b4", "o", "completed"),
    "PRUNED": ("#9a9a9a", "v", "pruned (last report)"),
    "FAIL": ("#d62728", "x", "failed"),
}


def history(trials: pd.DataFrame, metric: str, maximize: bool, out_png: str | Path) -> None:
    """Each trial's value by trial number (a pruned trial's last report; a failed one on the axis), and the best
    value so far."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(7.5, 4.2)
    ax = fig.add_subplot()
    done = trials[trials["state"] == "COMPLETE"].sort_values("number")
    values = pd.to_numeric(trials["value"], errors="coerce")
    floor = values.min() if values.notna().any() else 0.0
    for state, (color, marker, label) in STATE_STYLE.items():
        rows = trials[trials["state"] == state]
        if rows.empty:
            continue
        y = pd.to_numeric(rows["value"], errors="coerce").fillna(floor)
        ax.scatter(rows["number"], y, c=color, marker=marker, label=f"{label} ({len(rows)})", zorder=3)
    if not done.empty:
        best = done["value"].cummax() if maximize else done["value"].cummin()
        ax.step(done["number"], best, where="post", color="#2ca02c", label="best so far", zorder=2)
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{metric} ({'higher' if maximize else 'lower'} is better)")
    ax.set_title(f"Study history: {len(trials)} trial(s)")
    ax.grid(alpha=0.3)
    if len(trials):
        ax.legend(loc="best", fontsize=8)
    save_figure(fig, out_png)


def importances(found: dict[str, float], why_not: str | None, out_png: str | Path) -> None:
    """The parameters' importances as bars (largest on top), or the reason there are none yet."""
    fig = new_figure(7.5, max(2.2, 0.45 * len(found) + 1.2))
    ax = fig.add_subplot()
    if found:
        names = list(found)[::-1]
        ax.barh(names, [found[n] for n in names], color="#1f77b4")
        for k, n in enumerate(names):
            ax.text(found[n], k, f" {found[n]:.2f}", va="center", fontsize=8)
        ax.set_xlabel("importance (sums to 1)")
        ax.set_xlim(0, max(found.values()) * 1.15 or 1)
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, f"No importances yet: {why_not}", ha="center", va="center", wrap=True)
    ax.set_title("Parameter importances (Optuna, completed trials)")
    save_figure(fig, out_png)
