"""CV and public score of every submission."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kagglecv.report.canvas import new_figure, save_figure


def leaderboard(leaderboard_csv: str | Path, out_png: str | Path) -> pd.DataFrame:
    lb = pd.read_csv(leaderboard_csv)
    fig = new_figure(9, 4.2)
    ax = fig.add_subplot()
    x = np.arange(1, len(lb) + 1)
    for col, style in (("cv", "-o"), ("public_score", "-s"), ("private_score", "-^")):
        if col in lb and pd.to_numeric(lb[col], errors="coerce").notna().any():
            ax.plot(x, pd.to_numeric(lb[col], errors="coerce"), style, label=col.replace("_", " "))
    times = pd.to_datetime(lb["time"], errors="coerce", utc=True) if "time" in lb else pd.Series([pd.NaT] * len(lb))
    ax.set_xticks(
        x, labels=[f"#{i}\n{t:%m-%d %H:%M}" if pd.notna(t) else f"#{i}" for i, t in zip(x, times)], fontsize=7
    )
    ax.set_xlabel("submission")
    ax.set_ylabel("score")
    ax.set_title(f"Leaderboard history: {len(lb)} submission(s)", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no scores yet", ha="center", transform=ax.transAxes)
    save_figure(fig, out_png)
    return lb
