"""The archive formats behind kagglecv.data.archive: one entry list and one way to copy an entry out, for zip,
tar (plain, gz, bz2, xz) and 7z (py7zr)."""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from kagglecv.core.errors import InputError, first_line

MB = 2**20
ARCHIVE_SUFFIXES = (".zip", ".7z", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def archive_suffix(name: str) -> str | None:
    """The archive suffix of a file name (`.zip`, `.7z`, `.tar.gz`, ...), or None for any other file."""
    lower = name.lower()
    return next((s for s in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True) if lower.endswith(s)), None)


# what reading an archive can raise besides InputError: damaged data, truncation, a format library's own errors
READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, zlib.error, ValueError, KeyError)


@dataclass
class Entry:
    name: str  # as stored
    size: int  # unpacked bytes
    packed: int | None  # compressed bytes, where the format stores them per entry (zip)
    is_dir: bool
    is_link: bool  # a symlink, hard link or device: never written
    handle: object = field(default=None, repr=False)  # the format's own entry object


class _Zip:
    kind = "zip"

    def __init__(self, path: Path, shown: str):
        try:
            self.f = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise InputError(f"{shown}: not a readable zip ({first_line(e)}); delete it and download again") from e

    def entries(self) -> list[Entry]:
        return [
            Entry(i.filename, i.file_size, i.compress_size, i.is_dir(), stat.S_ISLNK(i.external_attr >> 16), i)
            for i in self.f.infolist()
        ]

    def copy(self, entry: Entry, dest: Path) -> None:
        with self.f.open(entry.handle) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, MB)

    def close(self) -> None:
        self.f.close()


class _Tar:
    kind = "tar"

    def __init__(self, path: Path, shown: str):
        try:
            self.f = tarfile.open(path)
            self.members = self.f.getmembers()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            reason = first_line(e)
            raise InputError(f"{shown}: not a readable tar archive ({reason}); delete it and download again") from e

    def entries(self) -> list[Entry]:
        return [Entry(m.name, m.size, None, m.isdir(), not (m.isfile() or m.isdir()), m) for m in self.members]

    def copy(self, entry: Entry, dest: Path) -> None:
        src = self.f.extractfile(entry.handle)
        with src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, MB)

    def close(self) -> None:
        self.f.close()


class _SevenZip:
    """py7zr reads a solid archive front to back: entries are copied by one `extract` of the planned names into a
    private folder beside the target, then moved into place (`copy` moves one)."""

    kind = "7z"

    def __init__(self, path: Path, shown: str):
        import py7zr

        self.path, self.shown, self.scratch = path, shown, None
        try:
            self.f = py7zr.SevenZipFile(path)
            self.infos = self.f.list()
        except (py7zr.Bad7zFile, OSError, EOFError, ValueError) as e:
            reason = first_line(e)
            raise InputError(f"{shown}: not a readable 7z archive ({reason}); delete it and download again") from e
        if self.f.needs_password():
            raise InputError(f"{shown}: the 7z archive is encrypted; unpack it yourself and point data.path at it")

    def entries(self) -> list[Entry]:
        return [
            Entry(i.filename, int(i.uncompressed or 0), None, i.is_directory, bool(i.is_symlink), i) for i in self.infos
        ]

    def extract_all(self, names: list[str], scratch: Path) -> None:
        self.scratch = scratch
        self.f.reset()
        self.f.extract(path=scratch, targets=names)

    def copy(self, entry: Entry, dest: Path) -> None:
        shutil.move(self.scratch / entry.name, dest)

    def close(self) -> None:
        self.f.close()


def _reader(path: Path, shown: str):
    suffix = archive_suffix(path.name) or ".zip"
    if suffix == ".7z":
        return _SevenZip(path, shown)
    if suffix.startswith((".tar", ".tgz")):
        return _Tar(path, shown)
    return _Zip(path, shown)
