"""The CV table: backbone x fold and every ensemble method, as PNG and HTML."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from kagglecv.core.files import atomic_path, read_table
from kagglecv.core.results import Scores
from kagglecv.report.canvas import new_figure, save_figure

CHOSEN_COLOR = "#d9f2e4"  # the chosen ensemble's row


BEST_COLOR = "#b7e1c8"  # the best cell of a column


def _fmt(v, digits: int = 5) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def cv_frame(scores: Scores, ensemble_oof: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per backbone and per ensemble method: kind, name, CV, fold 0..k-1, chosen, params."""
    scores = Scores.of(scores)
    n_folds = max((len(m["folds"]) for m in scores.models.values()), default=0)
    folds = [f"fold {k}" for k in range(n_folds)]
    rows = []
    for name, m in scores.models.items():
        rows.append(
            {
                "kind": "backbone",
                "model": name,
                "CV": m["cv"],
                **dict(zip(folds, m["folds"])),
                "chosen": False,
                "params": "",
            }
        )
    chosen = scores.ensemble.method
    for name, m in scores.methods.items():
        row = {
            "kind": "ensemble",
            "model": name,
            "CV": m["cv"],
            "chosen": name == chosen,
            "params": _describe_params(m.get("params")),
        }
        row.update(zip(folds, m.get("folds", [])))  # per-fold scores of the method's honest OOF
        rows.append(row)
    df = pd.DataFrame(rows, columns=["kind", "model", "CV", *folds, "chosen", "params"])
    return df


def _describe_params(params) -> str:
    if not params:
        return ""
    if set(params) == {"model"}:
        return f"model: {params['model']}"
    if all(isinstance(v, (int, float)) for v in params.values()):  # hill_climb weights
        return ", ".join(f"{k}: {v:.2f}" for k, v in params.items())
    return ", ".join(f"{k}: {v}" for k, v in params.items() if isinstance(v, (str, int, float)))


def _best_rows(df: pd.DataFrame, column: str, greater: bool) -> set[int]:
    values = pd.to_numeric(df[column], errors="coerce")
    if values.notna().sum() == 0:
        return set()
    best = values.max() if greater else values.min()
    return set(df.index[np.isclose(values, best, rtol=0, atol=1e-12)])


def cv_table(
    scores_json: str | Path, out_png: str | Path, out_html: str | Path, ensemble_oof_csv: str | Path | None = None
) -> pd.DataFrame:
    scores = Scores.read(scores_json)
    oof = read_table(ensemble_oof_csv) if ensemble_oof_csv else None
    df = cv_frame(scores, oof)
    metric, greater = scores.metric, scores.greater_is_better
    score_cols = [c for c in df.columns if c == "CV" or c.startswith("fold ")]
    best = {c: _best_rows(df, c, greater) for c in score_cols}
    ens = scores.ensemble
    title = (
        f"CV {metric} ({'higher' if greater else 'lower'} is better); ensemble: {ens.method} "
        f"chosen by {ens.chosen_by}, CV {_fmt(ens.cv)}"
    )
    _cv_table_png(df, score_cols, best, title, out_png)
    _cv_table_html(df, score_cols, best, title, out_html)
    return df


def _cv_table_png(df, score_cols, best, title, out_png) -> None:
    header = ["model", *score_cols, "params"]
    cells = []
    for _, r in df.iterrows():
        name = f"{r['model']} ✓" if r["chosen"] else r["model"]
        if r["kind"] == "ensemble":
            name = f"ensemble: {name}"
        cells.append([name, *[_fmt(r[c], 4) for c in score_cols], r["params"][:40]])
    width = 2.6 + 0.85 * len(score_cols) + (2.6 if df["params"].str.len().max() else 0.6)
    fig = new_figure(min(max(width, 6.0), 22.0), 0.9 + 0.32 * (len(cells) + 1), layout=None)
    ax = fig.add_subplot()
    ax.axis("off")
    heading = ax.text(0, 1.02, title, fontsize=10, transform=ax.transAxes, va="bottom")
    table = ax.table(cellText=cells, colLabels=header, loc="upper left", cellLoc="center", colLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.auto_set_column_width(list(range(len(header))))
    table.scale(1, 1.25)
    for (i, j), cell in table.get_celld().items():
        if i == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#e8e8e8")
            continue
        row = df.iloc[i - 1]
        if row["chosen"]:
            cell.set_facecolor(CHOSEN_COLOR)
        if 1 <= j <= len(score_cols) and df.index[i - 1] in best[score_cols[j - 1]]:
            cell.set_facecolor(BEST_COLOR)
            cell.set_text_props(weight="bold")
        if j == 0:
            cell.set_text_props(ha="left")
    # crop to the table and its title: an axes-sized figure would leave a blank margin
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    box = Bbox.union([table.get_window_extent(renderer), heading.get_window_extent(renderer)])
    save_figure(fig, out_png, bbox_inches=box.transformed(fig.dpi_scale_trans.inverted()).padded(0.12))


def _cv_table_html(df, score_cols, best, title, out_html) -> None:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["model", *score_cols, "params"])
    body = []
    for idx, r in df.iterrows():
        cls = ' class="chosen"' if r["chosen"] else ""
        label = ("ensemble: " if r["kind"] == "ensemble" else "") + str(r["model"]) + (" ✓" if r["chosen"] else "")
        tds = [f'<td class="name">{html.escape(label)}</td>']
        for c in score_cols:
            best_cls = ' class="best"' if idx in best[c] else ""
            tds.append(f"<td{best_cls}>{_fmt(r[c])}</td>")
        tds.append(f'<td class="params">{html.escape(str(r["params"]))}</td>')
        body.append(f'<tr data-kind="{r["kind"]}"{cls}>{"".join(tds)}</tr>')
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CV table</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fff; }}
table {{ border-collapse: collapse; font-size: 14px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; font-variant-numeric: tabular-nums; }}
th {{ background: #eee; }}
td.name, td.params, th:first-child, th:last-child {{ text-align: left; }}
tr.chosen td {{ background: {CHOSEN_COLOR}; }}
td.best {{ background: {BEST_COLOR}; font-weight: bold; }}
caption {{ caption-side: top; text-align: left; padding-bottom: 0.6em; }}
</style></head>
<body>
<table id="cv-table">
<caption>{html.escape(title)}</caption>
<thead><tr>{head}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
</body></html>
"""
    with atomic_path(out_html) as tmp:
        tmp.write_text(doc, encoding="utf-8")
