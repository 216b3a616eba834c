"""Prepare a competition: unpack it, read it (kagglecv.data.competition), recognise its task, and decode every image
once into a compact cache.

The cache is `train_images.npy`/`test_images.npy` (uint8, N x H x W x C), `train.csv`/`test.csv` with the ids
and labels, and `meta.json`: the task, the classes, the filled-in description of how the competition was read
(`data`), what a submission row holds (`submission`), and the cache's shape. Every later step reads only these,
the images memory-mapped.

The cache's side is what training needs (the workflow passes the largest input size of any backbone plus a
margin, `kagglecv.config.members.cache_side`), not the photos' size: images that all share one size no larger
than that are kept as they are; anything else becomes side x side by `data.resize` (kagglecv.data.images).
Images are decoded on every core and streamed to disk, so memory does not grow with the dataset.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from kagglecv.config.data import DataConfig
from kagglecv.core import tasks
from kagglecv.core.errors import InputError
from kagglecv.core.files import atomic_path, write_csv, write_json
from kagglecv.core.layout import PreparedFiles
from kagglecv.data import images
from kagglecv.data.archive import ArchiveLimits, unpacked
from kagglecv.data.competition import Competition, read_competition
from kagglecv.data.labels import recognise, refuse_unknown_columns
from kagglecv.data.pixels import PixelRows
from kagglecv.data.tables import find_root
from kagglecv.scoring.submission import plan_submission

FALLBACK_SIDE = 256  # mixed sizes and nothing saying what training needs (a direct library call)


def cache_shape(sizes: set[tuple[int, int]], gray: bool, cfg: DataConfig) -> tuple[int, int, int]:
    """(H, W, C) of the cache: the images' own size when they all share one that is no larger than the side
    training needs (and squashing would not change them), else side x side."""
    channels = 1 if gray else 3
    if len(sizes) == 1:
        w, h = next(iter(sizes))
        if (cfg.image_size is None or max(w, h) <= cfg.image_size) and (w == h or cfg.resize == "squash"):
            return h, w, channels
    side = cfg.image_size or FALLBACK_SIDE
    return side, side, channels


def write_images(path: Path, sources, ids: list[str], decoder: images.Decoder, pool: images.Pool, desc: str) -> None:
    with tqdm(total=len(ids), desc=desc, unit="img", mininterval=2) as bar:
        if isinstance(sources, PixelRows):  # pixels are data already: chunks through the same decoder

            def parts():
                for chunk in sources.chunks():
                    yield np.stack([decoder(a, "") for a in chunk]) if chunk.shape[1:] != decoder.shape else chunk
                    bar.update(len(chunk))

            images.write_array_stream(path, (len(sources), *decoder.shape), parts())
        else:
            images.write_cache(path, sources, ids, decoder, pool, progress=bar)


def scan(comp: Competition, cfg: DataConfig, pool: images.Pool) -> tuple[bool, set[tuple[int, int]]]:
    """(all grayscale?, set of upright sizes), from the headers of every image, in parallel."""
    if isinstance(comp.train_images, PixelRows):
        side = comp.train_images.side
        return True, {(side, side)}
    sources, ids = comp.train_images + comp.test_images, comp.train_ids + comp.test_ids
    with tqdm(total=len(ids), desc="scan headers", unit="img", mininterval=2) as bar:
        found = images.probe_all(sources, ids, pool, cfg.max_image_pixels, progress=bar)
    return all(g for _, _, g in found), {(w, h) for w, h, _ in found}


@contextlib.contextmanager
def inside(data_path: Path, root: Path):
    """Errors about files of an unpacked archive name them inside the archive (or the user's folder), not in the
    temp folder about to vanish."""
    try:
        yield
    except InputError as e:
        sep = ":" if data_path.is_file() else "/"
        raise InputError(str(e).replace(f"{root}/", f"{data_path}{sep}")) from e


def read(
    data_path: Path, scratch: Path, cfg: DataConfig, limits: ArchiveLimits | None, task: str, metric: str
) -> tuple[Competition, Path, Path, list[str], str, list[str], dict]:
    """(the competition read, the folder `data_path` was read into, the competition's folder within it, the
    archives unpacked, its task, classes, the submission plan): what `prepare` and `inspect` both know before any
    image is decoded. Errors name files from `data_path` on, through `inside(data_path, <the second>)`."""
    src, archives = unpacked(data_path, scratch, limits)
    root = find_root(src, cfg)
    with inside(data_path, src):
        comp = read_competition(root, cfg)
        if not comp.train_ids:
            raise InputError(f"{data_path}: no training images found")
        kind, classes = recognise(
            comp, task, metric, root / (comp.data.train_csv or comp.data.train_dir or "train"), cfg.label_normalise
        )
        if kind in tasks.CLASSIFICATION:
            refuse_unknown_columns(comp, classes)
        plan = plan_submission(
            kind,
            len(comp.template.targets),
            metric,
            comp.template.tokens(classes),
            comp.data.submission,
            comp.data.top_k,
            comp.data.target_range,
            [float(v) for v in comp.labels] if kind == "regression" else None,
        )
    return comp, src, root, archives, kind, classes, plan


def prepare(
    data_path: str | Path,
    out_dir: str | Path,
    cfg: DataConfig | None = None,
    workers: int = 1,
    limits: ArchiveLimits | None = None,
    task: str = "auto",
    metric: str = "accuracy",
) -> dict:
    """Validate the competition at `data_path` (a folder or an archive, and the archives inside it, unpacked
    within `limits`), recognise its task (`task: auto`; the metric settles integer targets, see
    kagglecv.core.tasks) and write the cache into `out_dir`, decoding on `workers` processes."""
    cfg = cfg or DataConfig()
    if cfg.resize not in images.RESIZE_MODES:
        raise InputError(f"data.resize: unknown mode {cfg.resize!r}; use one of {', '.join(images.RESIZE_MODES)}")
    data_path, out_dir = Path(data_path), Path(out_dir)
    if not data_path.exists():
        raise InputError(f"{data_path}: not found; set data.path to the competition folder or archive")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = PreparedFiles(out_dir)
    images.remove_stale(
        out_dir, PreparedFiles.names().values()
    )  # temp files of a killed run: gigabytes, and never mistaken for outputs
    for stale in out_dir.glob(".unpack-*"):
        shutil.rmtree(stale, ignore_errors=True)
    t0 = time.perf_counter()
    # The decoding processes start first, while this process holds no per-image data (see images.Pool).
    with images.Pool(workers) as pool, tempfile.TemporaryDirectory(dir=out_dir, prefix=".unpack-") as tmp:
        comp, src, _, archives, kind, classes, plan = read(data_path, Path(tmp), cfg, limits, task, metric)
        with inside(data_path, src):  # not root: a competition one folder down keeps that folder in its messages
            gray, sizes = scan(comp, cfg, pool)
            h, w, c = cache_shape(sizes, gray, cfg)
            decoder = images.Decoder(h, w, gray, cfg.resize, cfg.max_image_pixels)
            t1 = time.perf_counter()
            write_images(out.train_images, comp.train_images, comp.train_ids, decoder, pool, "decode train")
            write_images(out.test_images, comp.test_images, comp.test_ids, decoder, pool, "decode test")
        decode_s = time.perf_counter() - t1
        # Later steps need the submission template; keep it byte for byte beside the cache.
        with atomic_path(out.sample_submission) as t:
            shutil.copyfile(comp.template.path, t)
    n_images = len(comp.train_ids) + len(comp.test_ids)
    meta = {
        "layout": comp.layout,
        "id_column": comp.template.id_column,
        "target_columns": comp.template.targets,
        "classes": classes,
        "task": kind,
        "group_column": cfg.group_column,
        "meta_columns": comp.meta["specs"] if comp.meta else [],
        # how the competition was read and decoded, filled in: a Kaggle kernel reads its test set the same way,
        # from the test side alone (a hidden rerun has no training side to recognise it from)
        "data": asdict(comp.data),
        "submission": plan,
        "archives": archives,
        "n_train": len(comp.train_ids),
        "n_test": len(comp.test_ids),
        "image_shape": [h, w, c],
        "cache": {
            "side": cfg.image_size,
            "resize": cfg.resize,
            "max_image_pixels": cfg.max_image_pixels,
            "distinct_sizes": len(sizes),
            "smallest": list(min(sizes, key=lambda s: s[0] * s[1])),
            "largest": list(max(sizes, key=lambda s: s[0] * s[1])),
            "bytes": n_images * h * w * c,
        },
        "decode": {
            "workers": workers,
            "seconds": round(decode_s, 2),
            "images_per_s": round(n_images / decode_s, 1) if decode_s > 0 else None,
            "total_seconds": round(time.perf_counter() - t0, 2),
        },
    }
    labels = [tasks.join_tags(v) for v in comp.labels] if kind == "multilabel" else comp.labels
    train = pd.DataFrame(
        {"id": comp.train_ids, "label": labels, "y": tasks.Task(kind, tuple(classes)).encode(comp.labels)}
    )
    if comp.groups is not None:
        train["group"] = comp.groups
    test = pd.DataFrame({"id": comp.test_ids})
    if comp.meta is not None:
        from kagglecv.data.meta import column

        for name in cfg.meta_columns:
            train[column(name)], test[column(name)] = comp.meta["train"][name], comp.meta["test"][name]
    write_csv(out.train, train)
    write_csv(out.test, test)
    write_json(out.meta, meta)  # last: a complete meta.json means a complete cache
    return meta
