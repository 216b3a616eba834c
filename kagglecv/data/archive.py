"""Safe unpacking of competition zips, nested zips included (train.zip inside the competition zip).

Extraction plans first and writes last: every entry of the archive and of every nested zip is checked
(paths, sizes, compression ratios, entry count, nesting depth, duplicate and colliding names, free disk
space) before the first byte lands in the target, so a bad archive leaves the target untouched. Nested zips
are copied to a private spool folder beside the target while they are checked (their own size passed the
checks of the zip holding them); the spool is always removed. OS litter (`__MACOSX/`, `._*`, `.DS_Store`,
`Thumbs.db`, hidden files and folders) is skipped.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable

from kagglecv.config.schema import default_of
from kagglecv.core.errors import InputError

MB = 2**20
JUNK_NAMES = frozenset({"__macosx", ".ds_store", "thumbs.db", "desktop.ini"})
SPOOL_PREFIX = ".unpack-zips-"  # beside the target; callers that clean `.unpack-*` leftovers clean these too


@dataclass(frozen=True)
class ArchiveLimits:
    """What a zip may hold before it is refused: the workflow's `archive:` section (the schema describes each key
    and holds its default, far above any real competition). The free space of the target's disk is always a
    limit too."""

    max_entries: int = default_of("archive.max_entries")
    max_ratio: float = default_of("archive.max_ratio")
    bomb_bytes: int = default_of("archive.bomb_bytes")
    max_entry_bytes: int | None = default_of("archive.max_entry_bytes")
    max_total_bytes: int | None = default_of("archive.max_total_bytes")
    max_depth: int = default_of("archive.max_depth")


def is_junk(name: str | os.PathLike | Iterable[str]) -> bool:
    """True for OS litter: any part that is hidden ('.x', AppleDouble '._x', '.DS_Store', '.ipynb_checkpoints'),
    `__MACOSX`, `Thumbs.db` or `desktop.ini`.

    `name` is a path relative to the folder or archive being read (a string with / or \\, a PurePath or its
    parts): an absolute path would be judged by its ancestors too (e.g. ~/.cache)."""
    if isinstance(name, (str, os.PathLike)):
        parts = PurePosixPath(os.fspath(name).replace("\\", "/")).parts
    else:
        parts = tuple(name)
    return any(p.lower() in JUNK_NAMES or (p.startswith(".") and p not in (".", "..")) for p in parts)


@dataclass
class _Plan:
    """Everything the archive will write: files (source zip, entry, relative path) and folders."""

    files: list[tuple[Path, str, zipfile.ZipInfo, PurePosixPath]] = field(default_factory=list)
    dirs: set[PurePosixPath] = field(default_factory=set)
    entries: int = 0
    spool: Path | None = None  # created only when there is a nested zip


def _open(path: Path, shown: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise InputError(f"{shown}: not a readable zip ({e}); delete it and download again") from e


def _member_path(shown: str, info: zipfile.ZipInfo) -> PurePosixPath:
    """The entry's relative path; refuse symlinks, absolute paths, '..' and drive letters."""
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InputError(f"{shown}: refusing symlink entry {name!r}; the archive is not a plain competition zip")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise InputError(f"{shown}: refusing entry {name!r} that would land outside the target; the archive is unsafe")
    return pure


def _check_size(shown: str, info: zipfile.ZipInfo, limits: ArchiveLimits) -> None:
    size, packed = info.file_size, max(info.compress_size, 1)
    if limits.max_entry_bytes is not None and size > limits.max_entry_bytes:
        raise InputError(f"{shown}: entry {info.filename!r} unpacks to {size / MB:.0f} MB, above the limit of "
                         f"{limits.max_entry_bytes / MB:.0f} MB; raise archive.max_entry_bytes in the config if it is genuine")
    if size > limits.bomb_bytes and size / packed > limits.max_ratio:
        raise InputError(f"{shown}: entry {info.filename!r} unpacks to {size / MB:.0f} MB from {packed / MB:.1f} MB "
                         f"({size / packed:.0f}x, limit {limits.max_ratio:g}x): refusing a likely zip bomb; "
                         f"raise archive.max_ratio in the config if the archive is genuine")


def _check_ratio(zip_path: Path, total: int, limits: ArchiveLimits) -> None:
    """The whole archive against the zip-bomb rule, as each entry is (_check_size): many entries, each below
    bomb_bytes or max_ratio, may still unpack to far more than the archive's size on disk (nested zips included)."""
    packed = max(zip_path.stat().st_size, 1)
    if total > limits.bomb_bytes and total / packed > limits.max_ratio:
        raise InputError(f"{zip_path}: its entries unpack to {total / MB:.0f} MB together from {packed / MB:.1f} MB "
                         f"({total / packed:.0f}x, limit {limits.max_ratio:g}x): refusing a likely zip bomb; raise "
                         f"archive.max_ratio in the config if the archive is genuine")


def _check_free(where: Path, need: int, shown: str, what: str) -> None:
    free = shutil.disk_usage(where).free
    if need > free:
        raise InputError(f"{shown}: {what} needs {need / MB:.0f} MB but {where} has {free / MB:.0f} MB free; "
                         f"free some space or unpack elsewhere")


def _prefix(zip_rel: PurePosixPath, rels: list[PurePosixPath]) -> PurePosixPath:
    """Where a nested X.zip unpacks: into X/ beside it, or beside it when it holds a single top folder X/
    (Kaggle's train.zip often holds train/: never train/train)."""
    out_dir = zip_rel.with_suffix("")
    return zip_rel.parent if {r.parts[0] for r in rels} == {out_dir.name} else out_dir


def _plan_zip(path: Path, shown: str, zip_rel: PurePosixPath | None, depth: int, nested: bool,
              limits: ArchiveLimits, plan: _Plan, spool_base: Path) -> None:
    """Add one zip's entries to `plan` (checking each), then recurse into its nested zips."""
    with _open(path, shown) as zf:
        infos = zf.infolist()
        plan.entries += len(infos)
        if plan.entries > limits.max_entries:
            raise InputError(f"{shown}: more than {limits.max_entries:,} entries; refusing (raise "
                             f"archive.max_entries in the config if the archive is genuine)")
        members = [(info, rel) for info in infos if (rel := _member_path(shown, info)).parts and not is_junk(rel)]
        prefix = PurePosixPath() if zip_rel is None else _prefix(zip_rel, [rel for _, rel in members])
        inner = []
        for info, rel in members:
            _check_size(shown, info, limits)
            if info.is_dir():
                plan.dirs.add(prefix / rel)
            elif nested and rel.suffix.lower() == ".zip":
                inner.append((info, prefix / rel))
            else:
                plan.files.append((path, shown, info, prefix / rel))
        for info, rel in inner:
            inner_shown = f"{shown} > {info.filename}"
            if depth + 1 > limits.max_depth:
                raise InputError(f"{inner_shown}: zips nested {depth + 1} levels deep (limit {limits.max_depth}); "
                                 f"refusing (raise archive.max_depth in the config if the archive is genuine)")
            spooled = _spool(zf, info, inner_shown, plan, spool_base)
            _plan_zip(spooled, inner_shown, rel, depth + 1, nested, limits, plan, spool_base)


def _spool(zf: zipfile.ZipFile, info: zipfile.ZipInfo, shown: str, plan: _Plan, base: Path) -> Path:
    """Copy a nested zip (already checked as an entry) into the private spool folder."""
    if plan.spool is None:
        base.mkdir(parents=True, exist_ok=True)
        plan.spool = Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=base))
    _check_free(plan.spool, info.file_size, shown, "copying it out")
    out = plan.spool / f"{len(list(plan.spool.iterdir()))}.zip"
    try:
        with zf.open(info) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, MB)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise InputError(f"{shown}: could not read it from the archive ({e}); delete the archive and download "
                         f"again") from e
    return out


def _parents(rel: str):
    while "/" in rel:
        rel = rel.rsplit("/", 1)[0]
        yield rel


def _check_names(plan: _Plan) -> None:
    """Refuse duplicate files, a file and a folder of the same name, and names equal but for case."""
    files = [str(rel) for _, _, _, rel in plan.files]  # strings: this runs over every entry of big archives
    where = {str(rel): shown for _, shown, _, rel in plan.files}
    dup = next((rel for rel, n in Counter(files).items() if n > 1), None)
    if dup is not None:
        raise InputError(f"{where[dup]}: entry {dup!r} appears more than once; refusing an ambiguous archive")
    dirs = {str(d) for d in plan.dirs}
    dirs |= {p for rel in [*files, *dirs] for p in _parents(rel)}
    clash = next((rel for rel in files if rel in dirs), None)
    if clash is not None:
        raise InputError(f"{where[clash]}: {clash!r} is both a file and a folder; refusing an ambiguous archive")
    seen: dict[str, str] = {}
    for rel in sorted([*files, *dirs]):
        other = seen.setdefault(rel.casefold(), rel)
        if other != rel:
            raise InputError(f"{where.get(rel) or where.get(other) or 'archive'}: {other!r} and {rel!r} differ only "
                             f"in case; refusing (they would overwrite each other on macOS/Windows)")


def _check_inside(plan: _Plan, target: Path) -> None:
    """An existing target may hold symlinks: every destination must still resolve inside it."""
    if not target.is_dir() or not any(target.iterdir()):
        return  # nothing there yet, and the names are already free of '..' and absolute paths
    root = target.resolve()
    for _, shown, info, rel in plan.files:
        dest = (target / rel).resolve()
        if root not in dest.parents:
            raise InputError(f"{shown}: refusing entry {info.filename!r} that would land outside {target}")


def _write(plan: _Plan, target: Path) -> None:
    """Write the planned folders and files; on failure remove what was written."""
    created, written = not target.exists(), []
    try:
        target.mkdir(parents=True, exist_ok=True)
        for d in sorted(plan.dirs):
            (target / d).mkdir(parents=True, exist_ok=True)
        open_zips: dict[Path, zipfile.ZipFile] = {}
        try:
            for source, shown, info, rel in plan.files:
                zf = open_zips.get(source) or open_zips.setdefault(source, _open(source, shown))
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                written.append(dest)
                with zf.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, MB)
        finally:
            for zf in open_zips.values():
                zf.close()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for p in written:
                p.unlink(missing_ok=True)
        name = written[-1].relative_to(target) if written else target
        raise InputError(f"{target}: could not unpack {str(name)!r} ({e}); the archive is damaged or the disk "
                         f"is full: delete it and download again") from e


def safe_extract(zip_path: str | Path, target: str | Path, *, nested: bool = True,
                 limits: ArchiveLimits | None = None) -> Path:
    """Extract `zip_path` into `target`, each nested `X.zip` into `X/` beside where it lies (or beside it, when it
    holds a single top folder `X/`); nested zips themselves are not kept. Returns `target`.

    Every entry at every level is checked against `limits` (ArchiveLimits()) before anything is written to
    `target`: a refused archive raises InputError and leaves `target` as it was. OS litter is skipped."""
    zip_path, target = Path(zip_path), Path(target)
    limits = limits or ArchiveLimits()
    plan = _Plan()
    try:
        _plan_zip(zip_path, str(zip_path), None, 0, nested, limits, plan, target.parent)
        _check_names(plan)
        total = sum(info.file_size for _, _, info, _ in plan.files)
        if limits.max_total_bytes is not None and total > limits.max_total_bytes:
            raise InputError(f"{zip_path}: unpacks to {total / MB:.0f} MB, above the limit of "
                             f"{limits.max_total_bytes / MB:.0f} MB; raise archive.max_total_bytes in the config if genuine")
        existing = next(p for p in [target, *target.parents] if p.exists())
        _check_free(existing, total, str(zip_path), "unpacking it")
        _check_ratio(zip_path, total, limits)
        _check_inside(plan, target)
        _write(plan, target)
    finally:
        if plan.spool is not None:
            shutil.rmtree(plan.spool, ignore_errors=True)
    return target
