"""`kagglecv inspect PATH`: how a competition is read, before any run, and the config line that changes each part.

It reads the competition exactly as prepare does (kagglecv.data.prepare.read: archives unpacked, the description
filled in, the task recognised, the submission planned) and looks at a sample of the images' headers; nothing is
decoded or written beside the competition.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from kagglecv.config.data import DataConfig
from kagglecv.data import images
from kagglecv.data.pixels import PixelRows
from kagglecv.data.prepare import read

SAMPLE = 200  # image headers read per side: formats and sizes, not a scan of the whole set


def _images(paths, max_pixels: int | None) -> str:
    if isinstance(paths, PixelRows):
        return f"{len(paths):,} images as pixel columns ({paths.side}x{paths.side}, grey)"
    shown = [p for p in paths if p is not None][:SAMPLE]
    kinds = Counter(Path(p).suffix.lower() for p in shown)
    sizes = Counter()
    gray = 0
    for p in shown:
        w, h, g = images.probe(p, Path(p).name, max_pixels)
        sizes[(w, h)] += 1
        gray += g
    fmt = ", ".join(f"{k or '(none)'} {n}" for k, n in kinds.most_common())
    size = (
        f"{next(iter(sizes))[0]}x{next(iter(sizes))[1]}"
        if len(sizes) == 1
        else f"{len(sizes)} sizes, {min(sizes, key=lambda s: s[0] * s[1])} to {max(sizes, key=lambda s: s[0] * s[1])}"
    )
    sampled = f" (first {len(shown)})" if len(shown) < len(paths) else ""
    return f"{len(paths):,} images; {fmt}{sampled}; {size}; {'grey' if gray == len(shown) else 'colour'}"


def inspect(path: str | Path, config: dict) -> str:
    """The report `kagglecv inspect` prints, for the competition at `path` read with `config` (its data, task and
    metric settings: the schema's defaults, or a config file's)."""
    path, cfg = Path(path), DataConfig.of(config["data"])
    with tempfile.TemporaryDirectory(prefix="kagglecv-inspect-") as tmp:
        task, metric = config["task"], config["metric"]
        comp, _, root, archives, kind, classes, plan = read(path, Path(tmp), cfg, None, task, metric)
        d = comp.data
        source = {
            "csv_images": f"{d.train_csv}",
            "pixel_csv": f"{d.train_csv}",
            "json_annotations": f"{d.train_json}",
            "folder_per_class": f"folder names in {d.train_dir}/",
            "filename_labels": f"file names in {d.train_dir}/",
        }
        labels = (
            f"one 0/1 column per label: {_few(d.label_columns)}"
            if d.label_columns
            else f"column {d.target_column!r}"
            if d.target_column
            else ""
        )
        shown = _few(classes)
        fmt = (
            plan["format"]
            + (f" (k={plan['top_k']})" if plan["top_k"] else "")
            + (f" clipped to {plan['range']}" if plan["range"] else "")
        )
        rows = [
            ("competition", f"{path}" + (f" (unpacked: {', '.join(archives)})" if archives else ""), "data.path"),
            ("layout", d.layout, f"data.layout: {d.layout}"),
            (
                "template",
                f"{comp.template.path.name}: id {d.id_column!r}, target(s) {_few(comp.template.targets)}"
                + (", a leading index column kept as it is" if comp.template.index_column else ""),
                f"data.id_column: {d.id_column}",
            ),
            (
                "train labels",
                f"{source[d.layout]} {labels}".strip() + f", {len(comp.train_ids):,} rows",
                _config_line(d),
            ),
            (
                "train images",
                f"{d.train_dir}/: {_images(comp.train_images, cfg.max_image_pixels)}",
                f"data.train_dir: {d.train_dir}",
            ),
            (
                "test images",
                f"{d.test_dir + '/' if d.test_dir else d.test_csv}: {_images(comp.test_images, cfg.max_image_pixels)}",
                f"data.test_dir: {d.test_dir}" if d.test_dir else f"data.test_csv: {d.test_csv}",
            ),
            ("task", f"{kind}" + (f", {len(classes)} classes: {shown}" if classes else ""), f"task: {kind}"),
            ("metric", config["metric"], f"metric: {config['metric']}"),
            ("submission", fmt, f"data.submission: {plan['format']}"),
        ]
        if comp.groups is not None:
            rows.append(
                (
                    "groups",
                    f"{d.group_column!r}: {len(set(comp.groups)):,} groups",
                    f"data.group_column: {d.group_column}",
                )
            )
        if comp.meta:
            rows.append(
                (
                    "metadata",
                    ", ".join(s["name"] for s in comp.meta["specs"]),
                    f"data.meta_columns: {list(d.meta_columns)}",
                )
            )
    width = max(len(r[0]) for r in rows)
    wide = max(len(r[1]) for r in rows)
    lines = [f"{name:<{width}}  {what:<{min(wide, 70)}}  # {line}" for name, what, line in rows]
    return "\n".join(lines)


def _few(names, n: int = 6) -> str:
    return ", ".join(map(repr, names[:n])) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def _config_line(d: DataConfig) -> str:
    if d.label_columns:
        return "data.label_columns: [...]"
    if d.layout == "json_annotations":
        return f"data.train_json: {d.train_json}"
    if d.target_column:
        return f"data.target_column: {d.target_column}" + (f"; data.train_csv: {d.train_csv}" if d.train_csv else "")
    return f"data.layout: {d.layout}"
