"""Figures and tables for the Snakemake report (`snakemake --report results/<competition>/report.html`).

Every function reads the workflow's own files and writes one PNG (matplotlib's Agg canvas, no pyplot state)
or one HTML file, atomically. The report rules (rules/report.smk) are part of the default run, so the report
of a finished run needs no further computation.

  cv_table        scores.json (+ ensemble_oof.csv): backbone x fold and every ensemble method, as PNG and HTML
  training_curves history.csv of every (backbone, fold) job: losses and the validation metric per epoch
  job_time        metrics.json of every training job: start-up, epochs, TTA and the rest (its fixed cost)
  lr_find_curves  lr_find.json of each backbone: smoothed loss against learning rate, with the suggestion
  confusion       ensemble_oof.csv: the ensemble's out-of-fold confusion matrix
  class_balance   folds.csv: class counts per fold
  oof_errors      ensemble_oof.csv + the image cache: the most confidently wrong and the most uncertain images
  leaderboard     leaderboard.csv: CV and public score of every submission
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from kagglecv.core.files import atomic_path, read_table
from kagglecv.core.layout import Layout, PreparedFiles

# matplotlib is imported where a figure is made: rules/report.smk imports this module while Snakemake parses.

DPI = 110
CHOSEN_COLOR = "#d9f2e4"  # the chosen ensemble's row
BEST_COLOR = "#b7e1c8"  # the best cell of a column


def new_figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | Path, bbox_inches=None) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches=bbox_inches)


def class_names(meta: dict) -> list[str]:
    return [str(c) for c in meta["classes"]]


def _fmt(v, digits: int = 5) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


# ---------------------------------------------------------------- CV table


def cv_frame(scores: dict, ensemble_oof: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per backbone and per ensemble method: kind, name, CV, fold 0..k-1, chosen, params."""
    n_folds = max((len(m["folds"]) for m in scores["models"].values()), default=0)
    folds = [f"fold {k}" for k in range(n_folds)]
    rows = []
    for name, m in scores["models"].items():
        rows.append({"kind": "backbone", "model": name, "CV": m["cv"], **dict(zip(folds, m["folds"])),
                     "chosen": False, "params": ""})
    chosen = scores.get("ensemble", {}).get("method")
    for name, m in scores.get("methods", {}).items():
        row = {"kind": "ensemble", "model": name, "CV": m["cv"], "chosen": name == chosen,
               "params": _describe_params(m.get("params"))}
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


def cv_table(scores_json: str | Path, out_png: str | Path, out_html: str | Path,
             ensemble_oof_csv: str | Path | None = None) -> pd.DataFrame:
    scores = json.loads(Path(scores_json).read_text())
    oof = read_table(ensemble_oof_csv) if ensemble_oof_csv else None
    df = cv_frame(scores, oof)
    metric, greater = scores["metric"], scores.get("greater_is_better", True)
    score_cols = [c for c in df.columns if c == "CV" or c.startswith("fold ")]
    best = {c: _best_rows(df, c, greater) for c in score_cols}
    ens = scores.get("ensemble", {})
    title = (f"CV {metric} ({'higher' if greater else 'lower'} is better); ensemble: {ens.get('method')} "
             f"chosen by {ens.get('chosen_by')}, CV {_fmt(ens.get('cv'))}")
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


# ---------------------------------------------------------------- training curves


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
            col = f"valid_{metric}" if f"valid_{metric}" in h else next(
                (c2 for c2 in h.columns if c2.startswith("valid_") and c2 != "valid_loss"), None)
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
            rows.append({"job": f"{name} fold {m['fold']}", "start-up": startup, "epochs": m["train_seconds"],
                         "TTA": tta, "writing and the rest": max(fixed - startup - tta, 0.0), "fixed": fixed,
                         "budget": budget.get("budget_seconds"), "planned": budget.get("planned_seconds"),
                         "used": budget.get("used_seconds")})
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
        ax.scatter(start + budgeted["planned"].to_numpy(dtype=float), y, marker="|", s=300, color="k",
                   label="planned (time budget)", zorder=3)
        ax.scatter(start + budgeted["budget"].to_numpy(dtype=float), y, marker="|", s=300, color="C3",
                   label="time budget", zorder=3)
    ax.invert_yaxis()  # first job on top
    ax.set_xlabel("seconds")
    fixed = f"{df['fixed'].mean():.1f} s per job (median {df['fixed'].median():.1f})" if len(df) else "no data"
    ax.set_title(f"Training jobs: fixed cost (all but the epochs) {fixed}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, ncols=4, loc="outside lower center")
    save_figure(fig, out_png)
    return df


# ---------------------------------------------------------------- LR finder


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


# ---------------------------------------------------------------- OOF: confusion, class balance, errors


def _probs(df: pd.DataFrame) -> np.ndarray:
    cols = [c for c in df.columns if c.startswith("p") and c[1:].isdigit()]
    return df[sorted(cols, key=lambda c: int(c[1:]))].to_numpy(float)


def decided(oof: pd.DataFrame, meta: dict, scores: dict | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(true index, predicted index, names) of OOF rows of a task with classes: argmax for classification,
    the fitted cut points for ordinal grades."""
    from kagglecv.scoring.decisions import decide
    from kagglecv.core.tasks import Task

    task, p = Task.of(meta), _probs(oof)
    names = list(task.classes)
    if task.kind != "ordinal":
        return oof["y"].to_numpy(int), p.argmax(1), names
    cuts = (scores or {}).get("ensemble", {}).get("thresholds")
    grades = task.grades
    pred = decide(p, cuts, "ordinal", grades)
    index = {g: k for k, g in enumerate(grades)}
    return np.array([index[float(v)] for v in oof["y"]]), np.array([index[float(v)] for v in pred]), names


def confusion(ensemble_oof_csv: str | Path, meta_json: str | Path, out_png: str | Path,
              method: str | None = None, scores: dict | None = None) -> np.ndarray:
    """The OOF confusion matrix (classes, grades); multilabel: per-label counts; regression: predicted vs true."""
    oof = read_table(ensemble_oof_csv)
    meta = json.loads(Path(meta_json).read_text())
    if meta.get("task") == "multilabel":
        return label_confusion(oof, meta, scores, out_png, method)
    if meta.get("task") == "regression":
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
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if rates[i, j] > 0.5 else "black")
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels=names if n <= 60 else [""] * n, rotation=90 if n > 10 else 0, fontsize=8)
    ax.set_yticks(ticks, labels=names if n <= 60 else [""] * n, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = float(np.trace(cm) / max(cm.sum(), 1))
    ax.set_title(f"OOF confusion matrix, ensemble{f' ({method})' if method else ''}: "
                 f"{cm.sum()} images, accuracy {acc:.4f}", fontsize=10)
    save_figure(fig, out_png)
    return cm




def label_confusion(oof, meta, scores, out_png, method) -> np.ndarray:
    """Multilabel: true positives, false positives and false negatives per label at the fitted thresholds."""
    from kagglecv.scoring.decisions import decide
    from kagglecv.core.tasks import Task

    task = Task.of(meta)
    truth = task.targets(oof).astype(bool)
    flags = decide(_probs(oof), (scores or {}).get("ensemble", {}).get("thresholds"), "multilabel")
    flags = np.asarray(flags).astype(bool)
    counts = np.stack([(truth & flags).sum(0), (~truth & flags).sum(0), (truth & ~flags).sum(0)], axis=1)
    names = list(task.classes)
    fig = new_figure(9, max(3.0, 0.3 * len(names) + 1.5))
    ax = fig.add_subplot()
    left = np.zeros(len(names))
    for j, (what, color) in enumerate((("true positive", "#1b7837"), ("false positive", "#d6604d"),
                                       ("false negative", "#f4a582"))):
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


def fold_counts(folds: pd.DataFrame, meta: dict) -> tuple[pd.DataFrame, list[str]]:
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
    counts = (folds.assign(key=key).groupby(["fold", "key"]).size().unstack(fill_value=0)
              .reindex(columns=range(len(names)), fill_value=0).sort_index())
    return counts, names


def class_balance(folds_csv: str | Path, meta_json: str | Path, out_png: str | Path) -> pd.DataFrame:
    counts, names = fold_counts(read_table(folds_csv), json.loads(Path(meta_json).read_text()))
    fig = new_figure(9, max(3.0, 0.45 * len(counts) + 1.8))
    ax = fig.add_subplot()
    frac = counts.div(counts.sum(axis=1), axis=0)
    labels = [f"fold {k} (n={int(counts.loc[k].sum())})" for k in counts.index]
    if len(names) <= 12:
        left = np.zeros(len(counts))
        for j, name in enumerate(names):
            ax.barh(labels, frac[j], left=left, color=f"C{j % 10}", label=name)
            for i, (l, f, c) in enumerate(zip(left, frac[j], counts[j])):
                if f > 0.06:
                    ax.text(l + f / 2, i, str(c), ha="center", va="center", fontsize=8, color="white")
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


def pick_errors(oof: pd.DataFrame, n: int = 16, meta: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(most confidently wrong, most uncertain) OOF rows, with pred, confidence and margin columns; tasks
    without classes: (largest errors, smallest errors)."""
    kind = (meta or {}).get("task", "multiclass")
    if kind in ("multilabel", "regression", "ordinal"):
        from kagglecv.core.tasks import Task

        task, p = Task.of(meta), _probs(oof)
        truth = task.targets(oof).reshape(len(oof), -1)
        out = oof[["id", "label", "fold"]].copy()
        out["error"] = np.abs(p - truth).sum(1)  # numeric: |pred - y|; multilabel: summed probability misses
        out["shown"] = [" ".join(f"{v:.2f}" for v in row[:3]) for row in p]
        return (out.sort_values(["error", "id"], ascending=[False, True]).head(n),
                out.sort_values(["error", "id"]).head(n))
    p = _probs(oof)
    top2 = np.sort(p, axis=1)[:, -2:]
    out = oof[["id", "y", "fold"]].copy()
    out["pred"], out["confidence"], out["margin"] = p.argmax(1), top2[:, 1], top2[:, 1] - top2[:, 0]
    out["p_true"] = p[np.arange(len(p)), oof["y"].to_numpy(int)]
    wrong = out[out["pred"] != out["y"]].sort_values(["confidence", "id"], ascending=[False, True]).head(n)
    uncertain = out.sort_values(["margin", "id"]).head(n)
    return wrong, uncertain


def oof_errors(ensemble_oof_csv: str | Path, prepared_dir: str | Path, out_png: str | Path, n: int = 16,
               per_row: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    prepared = PreparedFiles(prepared_dir)
    oof = read_table(ensemble_oof_csv)
    meta = json.loads(prepared.meta.read_text())
    names = class_names(meta)
    train = read_table(prepared.train)
    row_of = dict(zip(train["id"], range(len(train))))
    images = np.load(prepared.train_images, mmap_mode="r")
    wrong, uncertain = pick_errors(oof, n, meta)
    by_class = "error" not in wrong.columns
    sections = ([("Most confidently wrong", wrong, "no wrong out-of-fold prediction"),
                 ("Most uncertain (smallest margin between the top two classes)", uncertain, "no images")]
                if by_class else [("Largest out-of-fold errors", wrong, "no images"),
                                  ("Smallest out-of-fold errors", uncertain, "no images")])
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
            ax.set_title(f"{_short(str(r.id))}\ntrue {_short(names[r.y])} / pred {_short(names[r.pred])}\n"
                         f"p={r.confidence:.2f} (true {r.p_true:.2f})", fontsize=7,
                         color="#b00020" if wrong_pred else "#1b5e20")
    save_figure(fig, out_png)
    return wrong, uncertain


def _short(s: str, n: int = 16) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


# ---------------------------------------------------------------- leaderboard


def leaderboard(leaderboard_csv: str | Path, out_png: str | Path) -> pd.DataFrame:
    lb = pd.read_csv(leaderboard_csv)
    fig = new_figure(9, 4.2)
    ax = fig.add_subplot()
    x = np.arange(1, len(lb) + 1)
    for col, style in (("cv", "-o"), ("public_score", "-s"), ("private_score", "-^")):
        if col in lb and pd.to_numeric(lb[col], errors="coerce").notna().any():
            ax.plot(x, pd.to_numeric(lb[col], errors="coerce"), style, label=col.replace("_", " "))
    times = pd.to_datetime(lb["time"], errors="coerce", utc=True) if "time" in lb else pd.Series([pd.NaT] * len(lb))
    ax.set_xticks(x, labels=[f"#{i}\n{t:%m-%d %H:%M}" if pd.notna(t) else f"#{i}" for i, t in zip(x, times)],
                  fontsize=7)
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


# ---------------------------------------------------------------- the workflow's entry points


def lr_find_results(layout: Layout, backbones: dict, lr_find_rule: bool) -> dict[str, str]:
    """{backbone: lr_find.json} for the backbones whose LR range test exists or is part of the run
    (train.lr: auto); none unless the workflow includes the lr_find rule."""
    if not lr_find_rule:
        return {}
    out = {}
    for name, settings in backbones.items():
        path = layout.lr_find(name).json
        if path.exists() or str(settings.get("lr")) == "auto":
            out[name] = str(path)
    return out


def report_targets(layout: Layout, lr_find: dict) -> list[str]:
    """The report's files: the LR finder and leaderboard figures only when there is data."""
    report = layout.report
    targets = [str(p) for p in report.files()]  # always; the LR finder's and the leaderboard's with data
    if lr_find:
        targets.append(str(report.lr_find))
    if layout.leaderboard.exists():
        targets.append(str(report.leaderboard))
    return targets
