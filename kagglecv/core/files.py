"""Atomic, durable writes: outputs appear complete or not at all, and survive a crash once renamed."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    """Flush `path` (a file, or a folder's entries) to disk; a no-op where the OS or filesystem refuses."""
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # e.g. EINVAL: folders cannot be fsynced on some filesystems
        pass
    finally:
        os.close(fd)


def _create_temp(path: Path) -> Path:
    """A new empty file beside `path`, created with mode 0666 so the process umask applies as for any file
    (never reading or changing the umask, which is process-wide: other threads would see the change)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{path.suffix or '.tmp'}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: could not create a temp file beside {path.name}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temp path beside `path`; if the block succeeds, fsync it, rename it onto `path` and fsync the
    folder (so the rename itself survives a crash). The temp name keeps the suffix (np.save, to_csv...).

    durable=False skips the fsyncs, for files rewritten often whose loss costs little and is detected (a
    training job's per-epoch checkpoint: fsyncing 100+ MB every epoch slowed training by ~10 %)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    finally:
        tmp.unlink(missing_ok=True)


def file_sha256(path: str | os.PathLike) -> str:
    """A file's SHA-256, read a megabyte at a time (artifacts and submissions can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike):
    """A JSON file's data. The results files other steps read have their typed readers (kagglecv.core.results)."""
    return json.loads(Path(path).read_text())


def write_csv(path: str | os.PathLike, df) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


TEXT_COLUMNS = ("id", "label", "group", "source")  # the pipeline's text columns; label: a class, tags, or a number
# as written; source: a teacher file's "train" or "test" (kagglecv.training.teachers)


META_PREFIX = "meta:"  # the prepared tables' columns of data.meta_columns' raw values ("meta:age_approx")


def text_dtypes(path, is_text) -> dict:
    """{column: str} for the text columns of a CSV's header."""
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    return {c: str for c in header if is_text(c)}


def header(path: str | os.PathLike) -> list[str]:
    """The CSV's column names exactly as written (an index column's empty name stays empty)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f), [])


def read_table(path: str | os.PathLike, **kw):
    """One of the pipeline's own tables (folds.csv, the prepared train/test.csv, oof/test predictions): ids and
    labels (and groups) as the text they were written as; "NA" and "None" are names, not missing values."""
    import pandas as pd

    def is_text(c: str) -> bool:
        return c in TEXT_COLUMNS or c.startswith(META_PREFIX)  # metadata: values as written (kagglecv.data.meta)

    df = pd.read_csv(path, **{"dtype": text_dtypes(path, is_text), "keep_default_na": False, **kw})
    for c in df.columns:  # every other column is numbers: an empty cell is a gap (NaN), not text
        if not is_text(c) and not pd.api.types.is_numeric_dtype(df[c]):
            df[c] = pd.to_numeric(df[c].replace("", None), errors="coerce")
    return df


@contextlib.contextmanager
def locked(path: str | os.PathLike, wait: bool = True):
    """An exclusive lock on `.<name>.lock` beside `path`: fcntl.lockf (POSIX record locks work on NFS,
    flock on a folder does not). The small lock file stays; deleting it would race with the next writer.
    With `wait` false, BlockingIOError at once where another process holds it."""
    path = Path(path)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if wait:
                raise
            # EACCES or EAGAIN, as the system says it: another process holds the lock
            raise BlockingIOError(e.errno, f"{path}: locked by another process") from None
        yield
    finally:
        os.close(fd)  # releases the lock
