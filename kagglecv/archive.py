"""Safe unpacking of competition zips, nested zips included (train.zip inside the competition zip)."""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from .errors import InputError


def _check_member(zip_path: Path, info: zipfile.ZipInfo, target: Path) -> Path:
    """Refuse entries that would land outside `target`: absolute paths, '..', symlinks."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise InputError(f"{zip_path}: refusing symlink entry {name!r}; the archive is not a plain competition zip")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise InputError(f"{zip_path}: refusing entry {name!r} that would land outside {target}; the archive is unsafe")
    dest = (target / pure).resolve()
    if dest != target.resolve() and target.resolve() not in dest.parents:
        raise InputError(f"{zip_path}: refusing entry {name!r} that would land outside {target}")
    return dest


def safe_extract(zip_path: str | Path, target: str | Path, *, nested: bool = True) -> Path:
    """Extract `zip_path` into `target`; then unpack any nested `X.zip` into `X/` beside it and drop it.

    Every member is checked before anything is written, so a bad archive leaves nothing behind.
    """
    zip_path, target = Path(zip_path), Path(target)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"{zip_path}: not a readable zip ({e}); delete it and download again") from e
    with zf:
        members = [(info, _check_member(zip_path, info, target)) for info in zf.infolist()]
        target.mkdir(parents=True, exist_ok=True)
        for info, dest in members:
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    # Nested zips (train.zip inside the competition zip): unpack each, level by level, until none is left.
    while nested and (inners := sorted(target.rglob("*.zip"))):
        for inner in inners:
            out_dir = inner.with_suffix("")
            # Kaggle's train.zip usually holds a top folder `train/`: unpack beside it, not into train/train.
            with zipfile.ZipFile(inner) as zf:
                tops = {PurePosixPath(n).parts[0] for n in zf.namelist() if n.strip("/")}
            safe_extract(inner, inner.parent if tops == {out_dir.name} else out_dir, nested=False)
            inner.unlink()
    return target
