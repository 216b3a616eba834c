"""Where each image of a competition is: found by its id, in the folder that holds them, sub-folders included.

Kaggle names image folders many ways (train/, train_images/, images/ shared by both sides, jpeg/train/ beside a
train/ of DICOM copies) and nests them (train_images/<label>/<id>.jpg, images/<a>/<b>/<id>.jpg). An id finds
its file by name, with or without the extension, or by its path below the folder; the folder is the first of
the usual names, else any folder named for the side, that holds an image for every id.
"""

from __future__ import annotations

import os
from pathlib import Path

from kagglecv.core.errors import InputError
from kagglecv.data.archive import files_below, is_junk

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
USUAL = {
    "train": ("train", "train_images", "images", "jpeg/train", "train/images"),
    "test": ("test", "test_images", "images", "jpeg/test", "test/images"),
}

Index = dict[str, "Path | tuple[Path, ...]"]


def image_files(folder: Path):
    """Every image below `folder`, OS litter and hidden folders left out, in a stable order."""
    return (p for p in files_below(folder) if p.suffix.lower() in IMAGE_EXTS)


def index_images(folder: Path) -> Index:
    """Each image of `folder` (sub-folders included) under its path below the folder, its name and its stem, so
    ids may carry the extension or not. A name or stem shared by several files (x.jpg and x.png, or two
    sub-folders' 1.jpg) maps to all of them: such an id cannot choose."""
    if not folder.is_dir():
        raise InputError(f"{folder}: image folder not found; check data.train_dir/data.test_dir")
    index: Index = {}
    shared: dict[str, list[Path]] = {}
    for p in image_files(folder):
        rel = p.relative_to(folder).as_posix()
        index[rel] = p
        for key in {p.name, p.stem} - {rel}:
            shared.setdefault(key, []).append(p)
    for key, paths in shared.items():
        index.setdefault(key, paths[0] if len(paths) == 1 else tuple(paths))
    return index


def lookup(index: Index, ids, folder: Path, source: Path, what: str, missing: list | None = None) -> list[Path | None]:
    """The image of each id. An id without an image, or one whose name matches several files, is an error; with
    `missing` (a list: the kernel, which cannot drop a hidden test row) its path is None and (id, reason) is
    appended instead. Two ids naming one file ('a' and 'a.png') are an error where rows can be dropped."""
    paths, seen = [], {}
    for i in ids:
        p, problem = index.get(str(i)), None
        if p is None:
            problem = f"has no image in {folder}/", "restore the image or drop the row"
        elif isinstance(p, tuple):
            problem = (
                f"matches {' and '.join(str(q.relative_to(folder)) for q in p)} in {folder}/",
                "put the extension (or the path) in the id, or remove all but one of the files",
            )
        elif p in seen and missing is None:
            raise InputError(
                f"{source}: {what} ids {seen[p]!r} and {i!r} both name {folder}/{p.name}; drop one of the rows"
            )
        if problem and missing is None:
            raise InputError(f"{source}: {what} id {i!r} {problem[0]}; {problem[1]}")
        if problem:
            missing.append((i, problem[0]))
            p = None
        seen[p] = i
        paths.append(p)
    return paths


def candidates(root: Path, side: str):
    """Folders that may hold a side's images: the usual names first, then any folder named for the side."""
    seen = set()
    for p in [root / d for d in USUAL[side]]:
        if p.is_dir() and p not in seen:
            seen.add(p)
            yield p
    named = sorted(
        (
            Path(d)
            for d, _, _ in os.walk(root, followlinks=True)
            if side in Path(d).name.lower() and Path(d) != root and not is_junk(Path(d).relative_to(root))
        ),
        key=lambda p: (len(p.parts), str(p)),
    )
    for p in named:
        if p not in seen:
            seen.add(p)
            yield p


def image_folder(root: Path, ids: list[str], side: str, configured: str | None) -> tuple[Path, Index]:
    """(the folder of `side`'s images, its index): `configured` (data.train_dir / data.test_dir) when set, else
    the first candidate holding an image for every id; failing that, the one holding the most (the lookup then
    names an id it lacks)."""
    if configured:
        folder = root / configured
        return folder, index_images(folder)
    best = None
    for folder in candidates(root, side):
        index = index_images(folder)
        hits = sum(isinstance(index.get(str(i)), Path) for i in ids)
        if hits == len(ids):
            return folder, index
        if best is None or hits > best[0]:
            best = (hits, folder, index)
    if best is None or best[0] == 0:
        names = ", ".join(f"{d}/" for d in USUAL[side])
        raise InputError(
            f"{root}: no folder of {side} images holding the {side} ids (looked in {names} and "
            f"folders named '{side}'); set data.{side}_dir"
        )
    return best[1], best[2]
