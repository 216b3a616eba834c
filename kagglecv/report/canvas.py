"""A figure canvas without pyplot state, written atomically; shared by the report's figures."""

from __future__ import annotations

from pathlib import Path

from kagglecv.core.files import atomic_path
from kagglecv.core.results import PreparedMeta

# matplotlib is imported where a figure is made: rules/report.smk imports this module while Snakemake parses.

DPI = 110


def new_figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | Path, bbox_inches=None) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches=bbox_inches)


def class_names(meta: PreparedMeta) -> list[str]:
    return [str(c) for c in PreparedMeta.of(meta).classes]
