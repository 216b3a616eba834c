"""Safe unpacking of competitions: zip, 7z and tar archives, nested ones included, and folders holding archives.

Kaggle ships archives wherever it likes: the competition zip holds `train.zip` (Dogs vs Cats, Aerial Cactus), a
folder holds `train.7z` and `sample_submission.csv.zip` (Invasive Species), `train_images.zip` sits beside the
CSVs (iWildCam). `safe_extract` unpacks one archive; `unpacked` gives a folder whose inner archives are read as
the folders they hold, without touching the user's folder.

Extraction plans first and writes last: every entry of the archive and of every nested archive is checked
(paths, symlinks, sizes, compression ratios per entry and for the whole archive, entry count, nesting depth,
duplicate and colliding names, free disk space) before the first byte lands in the target, so a bad archive
leaves the target untouched. Nested archives are copied to a private spool folder beside the target while they
are checked (their own size passed the checks of the archive holding them); the spool is always removed. OS
litter (`__MACOSX/`, `._*`, `.DS_Store`, `Thumbs.db`, hidden files and folders) is skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from kagglecv.config.schema import default_of
from kagglecv.core.errors import InputError, first_line
from kagglecv.data._formats import READ_ERRORS, Entry, _reader, _SevenZip, archive_suffix

MB = 2**20
JUNK_NAMES = frozenset({"__macosx", ".ds_store", "thumbs.db", "desktop.ini"})
SPOOL_PREFIX = ".unpack-zips-"  # beside the target; callers that clean `.unpack-*` leftovers clean these too


@dataclass
class ArchiveLimits:
    """What an archive may hold before it is refused: the workflow's `archive:` section (the schema describes each key
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


# ---------------------------------------------------------------- the plan


@dataclass
class _Plan:
    """Everything the archive will write: files (source archive, its shown name, entry, relative path), folders."""

    files: list[tuple[Path, str, Entry, PurePosixPath]] = field(default_factory=list)
    dirs: set[PurePosixPath] = field(default_factory=set)
    entries: int = 0
    spool: Path | None = None  # created only when there is a nested archive


def _member_path(shown: str, entry: Entry) -> PurePosixPath:
    """The entry's relative path; refuse links, absolute paths, '..' and drive letters."""
    name = entry.name
    if entry.is_link:
        raise InputError(f"{shown}: refusing symlink entry {name!r}; the archive is not a plain competition archive")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise InputError(f"{shown}: refusing entry {name!r} that would land outside the target; the archive is unsafe")
    return pure


def _check_size(shown: str, entry: Entry, limits: ArchiveLimits) -> None:
    size = entry.size
    if limits.max_entry_bytes is not None and size > limits.max_entry_bytes:
        raise InputError(
            f"{shown}: entry {entry.name!r} unpacks to {size / MB:.0f} MB, above the limit of "
            f"{limits.max_entry_bytes / MB:.0f} MB; raise archive.max_entry_bytes in the config if it is "
            "genuine"
        )
    packed = max(entry.packed or 0, 1)
    if entry.packed is not None and size > limits.bomb_bytes and size / packed > limits.max_ratio:
        raise InputError(
            f"{shown}: entry {entry.name!r} unpacks to {size / MB:.0f} MB from {packed / MB:.1f} MB "
            f"({size / packed:.0f}x, limit {limits.max_ratio:g}x): refusing a likely zip bomb; "
            f"raise archive.max_ratio in the config if the archive is genuine"
        )


def _check_whole(shown: str, path: Path, entries: list[Entry], limits: ArchiveLimits) -> None:
    """The archive as a whole against the same ratio: many entries each under the bomb size (or a tar.gz or solid
    7z, whose entries have no packed size of their own) can fill a disk as surely as one."""
    total = sum(e.size for e in entries)
    known = all(e.packed is not None for e in entries)
    packed = max(sum(e.packed for e in entries) if known else path.stat().st_size, 1)
    if total > limits.bomb_bytes and total / packed > limits.max_ratio:
        raise InputError(
            f"{shown}: its entries unpack to {total / MB:.0f} MB together from {packed / MB:.1f} MB "
            f"({total / packed:.0f}x, limit {limits.max_ratio:g}x): refusing a likely zip bomb; raise "
            "archive.max_ratio in the config if the archive is genuine"
        )


def _check_free(where: Path, need: int, shown: str, what: str) -> None:
    free = shutil.disk_usage(where).free
    if need > free:
        raise InputError(
            f"{shown}: {what} needs {need / MB:.0f} MB but {where} has {free / MB:.0f} MB free; "
            f"free some space or unpack elsewhere"
        )


def _prefix(archive_rel: PurePosixPath, rels: list[PurePosixPath]) -> PurePosixPath:
    """Where a nested X.zip (X.7z, X.tar.gz) unpacks: into X/ beside it, or beside it when it holds a single top
    folder X/ (Kaggle's train.zip often holds train/: never train/train). A compressed single file (X.csv.zip
    holding X.csv) lands beside it."""
    out_dir = archive_rel.parent / archive_rel.name[: -len(archive_suffix(archive_rel.name) or "")]
    tops = {r.parts[0] for r in rels}
    if tops == {out_dir.name} or (len(rels) == 1 and rels[0].name == out_dir.name):
        return archive_rel.parent
    return out_dir


def _plan(
    path: Path,
    shown: str,
    rel: PurePosixPath | None,
    depth: int,
    nested: bool,
    limits: ArchiveLimits,
    plan: _Plan,
    spool_base: Path,
) -> None:
    """Add one archive's entries to `plan` (checking each), then recurse into its nested archives."""
    reader = _reader(path, shown)
    try:
        entries = reader.entries()
        plan.entries += len(entries)
        if plan.entries > limits.max_entries:
            raise InputError(
                f"{shown}: more than {limits.max_entries:,} entries; refusing (raise "
                f"archive.max_entries in the config if the archive is genuine)"
            )
        members = [(e, r) for e in entries if (r := _member_path(shown, e)).parts and not is_junk(r)]
        _check_whole(shown, path, [e for e, _ in members], limits)
        prefix = PurePosixPath() if rel is None else _prefix(rel, [r for _, r in members])
        inner = []
        for entry, r in members:
            _check_size(shown, entry, limits)
            if entry.is_dir:
                plan.dirs.add(prefix / r)
            elif nested and archive_suffix(r.name):
                inner.append((entry, prefix / r))
            else:
                plan.files.append((path, shown, entry, prefix / r))
        for entry, r in inner:
            inner_shown = f"{shown} > {entry.name}"
            if depth + 1 > limits.max_depth:
                raise InputError(
                    f"{inner_shown}: archives nested {depth + 1} levels deep (limit {limits.max_depth}); "
                    f"refusing (raise archive.max_depth in the config if the archive is genuine)"
                )
            spooled = _spool(reader, entry, inner_shown, plan, spool_base)
            _plan(spooled, inner_shown, r, depth + 1, nested, limits, plan, spool_base)
    finally:
        reader.close()


def _spool(reader, entry: Entry, shown: str, plan: _Plan, base: Path) -> Path:
    """Copy a nested archive (already checked as an entry) into the private spool folder."""
    if plan.spool is None:
        base.mkdir(parents=True, exist_ok=True)
        plan.spool = Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=base))
    _check_free(plan.spool, entry.size, shown, "copying it out")
    out = plan.spool / f"{len(list(plan.spool.iterdir()))}{archive_suffix(entry.name)}"
    try:
        if isinstance(reader, _SevenZip):
            reader.extract_all([entry.name], plan.spool / "7z")
        reader.copy(entry, out)
    except READ_ERRORS as e:
        raise InputError(
            f"{shown}: could not read it from the archive ({first_line(e)}); delete the archive and download again"
        ) from e
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
            raise InputError(
                f"{where.get(rel) or where.get(other) or 'archive'}: {other!r} and {rel!r} differ only "
                f"in case; refusing (they would overwrite each other on macOS/Windows)"
            )


def _check_inside(plan: _Plan, target: Path) -> None:
    """An existing target may hold symlinks: every destination must still resolve inside it."""
    if not target.is_dir() or not any(target.iterdir()):
        return  # nothing there yet, and the names are already free of '..' and absolute paths
    root = target.resolve()
    for _, shown, entry, rel in plan.files:
        dest = (target / rel).resolve()
        if root not in dest.parents:
            raise InputError(f"{shown}: refusing entry {entry.name!r} that would land outside {target}")


def _write(plan: _Plan, target: Path) -> None:
    """Write the planned folders and files; on failure remove what was written."""
    created, written = not target.exists(), []
    readers: dict[Path, object] = {}
    scratch = None
    try:
        target.mkdir(parents=True, exist_ok=True)
        for d in sorted(plan.dirs):
            (target / d).mkdir(parents=True, exist_ok=True)
        for source, shown, entry, rel in plan.files:
            reader = readers.get(source)
            if reader is None:
                reader = readers[source] = _reader(source, shown)
                if isinstance(reader, _SevenZip):
                    scratch = scratch or Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=target))
                    names = [e.name for s, _, e, _ in plan.files if s == source]
                    reader.extract_all(names, scratch / str(len(readers)))
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            written.append(dest)
            reader.copy(entry, dest)
    except READ_ERRORS as e:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for p in written:
                p.unlink(missing_ok=True)
        name = written[-1].relative_to(target) if written else target
        raise InputError(
            f"{target}: could not unpack {str(name)!r} ({first_line(e)}); the archive is damaged or the disk "
            f"is full: delete it and download again"
        ) from e
    finally:
        for reader in readers.values():
            reader.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def safe_extract(
    archive: str | Path, target: str | Path, *, nested: bool = True, limits: ArchiveLimits | None = None
) -> Path:
    """Extract `archive` (zip, 7z, tar) into `target`, each nested `X.zip` (`X.7z`, `X.tar.gz`) into `X/` beside
    where it lies (or beside it, when it holds a single top folder `X/` or a single file `X`); nested archives
    themselves are not kept. Returns `target`.

    Every entry at every level is checked against `limits` (ArchiveLimits()) before anything is written to
    `target`: a refused archive raises InputError and leaves `target` as it was. OS litter is skipped."""
    archive, target = Path(archive), Path(target)
    limits = limits or ArchiveLimits()
    plan = _Plan()
    try:
        _plan(archive, str(archive), None, 0, nested, limits, plan, target.parent)
        _check_names(plan)
        total = sum(entry.size for _, _, entry, _ in plan.files)
        if limits.max_total_bytes is not None and total > limits.max_total_bytes:
            raise InputError(
                f"{archive}: unpacks to {total / MB:.0f} MB, above the limit of "
                f"{limits.max_total_bytes / MB:.0f} MB; raise archive.max_total_bytes in the config if "
                "genuine"
            )
        existing = next(p for p in [target, *target.parents] if p.exists())
        _check_free(existing, total, str(archive), "unpacking it")
        _check_inside(plan, target)
        _write(plan, target)
    finally:
        if plan.spool is not None:
            shutil.rmtree(plan.spool, ignore_errors=True)
    return target


# ---------------------------------------------------------------- a folder holding archives


def files_below(folder: Path, depth: int | None = None):
    """Every file below `folder` (not in hidden or litter folders, at most `depth` folders down), symlinked folders
    followed: a folder read from a mirror (`unpacked`) is made of links."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        rel = Path(dirpath).relative_to(folder)
        dirnames[:] = sorted(d for d in dirnames if not is_junk(d) and (depth is None or len(rel.parts) < depth))
        yield from (Path(dirpath) / f for f in sorted(filenames) if not is_junk(f))


def inner_archives(folder: Path, depth: int = 3) -> list[Path]:
    """The archives inside `folder` (not in hidden or litter folders), at most `depth` folders down."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        rel = Path(dirpath).relative_to(folder)
        dirnames[:] = sorted(d for d in dirnames if not is_junk(d) and len(rel.parts) < depth)
        found += [Path(dirpath) / f for f in sorted(filenames) if archive_suffix(f) and not is_junk(f)]
    return found


def unpacked(path: str | Path, scratch: str | Path, limits: ArchiveLimits | None = None) -> tuple[Path, list[str]]:
    """(a folder to read the competition from, what was unpacked). An archive is extracted into `scratch`; a
    folder without archives is read as it is; a folder holding archives (train.zip beside train.csv, train.7z,
    sample_submission.csv.zip) is mirrored into `scratch`: symlinks to its files and folders, and each archive
    unpacked where it lies, as `safe_extract` unpacks a nested one. The user's folder is never written to."""
    path, scratch = Path(path), Path(scratch)
    if path.is_file():
        if not archive_suffix(path.name):
            raise InputError(f"{path}: not a folder or an archive (zip, 7z, tar); set data.path to the competition")
        return safe_extract(path, scratch / "data", limits=limits), [path.name]
    archives = inner_archives(path)
    if not archives:
        return path, []
    root = scratch / "data"
    _mirror(path, root, {a.parent for a in archives} | {p for a in archives for p in a.parents})
    done = []
    for a in archives:
        rel = a.relative_to(path)
        with tempfile.TemporaryDirectory(dir=scratch, prefix=".one-") as one:
            # unpacked alone, then moved in: the prefix rule of a nested archive decides where it lands
            out = safe_extract(a, Path(one) / "x", limits=limits)
            prefix = _prefix(PurePosixPath(rel.name), _top_names(out))
            tops = {(prefix / p.relative_to(out)).parts[0] for p in out.iterdir()}
            if any((a.parent / t).exists() for t in tops):
                continue  # unpacked once already (train/ beside train.zip): the folder is what the user reads
            _move_into(out, root / rel.parent, prefix)
            done.append(str(rel))
    return root, done


def _top_names(folder: Path) -> list[PurePosixPath]:
    return [PurePosixPath(p.relative_to(folder).as_posix()) for p in folder.rglob("*") if p.is_file()]


def _mirror(src: Path, dst: Path, real: set[Path]) -> None:
    """`dst` as a copy of `src` made of symlinks, except the folders in `real` (those holding archives), which are
    made as folders and mirrored in turn; archives are left out."""
    dst.mkdir(parents=True, exist_ok=True)
    for child in sorted(src.iterdir()):
        if is_junk(child.name) or (child.is_file() and archive_suffix(child.name)):
            continue
        if child.is_dir() and child in real:
            _mirror(child, dst / child.name, real)
        else:
            (dst / child.name).symlink_to(child.resolve())


def _move_into(unpacked_dir: Path, parent: Path, prefix: PurePosixPath) -> None:
    """Move an unpacked archive's files under parent/prefix, refusing to overwrite what the folder has."""
    dest = parent / prefix
    for p in sorted(unpacked_dir.rglob("*")):
        if p.is_dir():
            continue
        out = dest / p.relative_to(unpacked_dir)
        if out.exists() or out.is_symlink():
            raise InputError(
                f"{out.relative_to(parent)}: both unpacked from an archive and already in the folder; "
                "remove one of them"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(p, out)
