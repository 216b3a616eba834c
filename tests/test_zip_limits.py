"""Hostile or broken zips, each built from a valid fixture: limits, unsafe entries, damage, OS litter, a download
that fails midway; refused before anything is written."""

from __future__ import annotations

import shutil
import warnings
import zipfile
from pathlib import Path

import pytest

from kagglecv.core.errors import InputError
from kagglecv.data.archive import ArchiveLimits, is_junk, safe_extract

from helpers import competition_zip, error_line, make_zip, run_kaggle_cli
from kaggle_stub import KaggleStub


def extended(src: Path, dst: Path, entries: list[tuple[str, bytes]], **kw) -> Path:
    """A copy of the zip `src` with `entries` appended (duplicates allowed)."""
    shutil.copy(src, dst)
    with warnings.catch_warnings(), zipfile.ZipFile(dst, "a", **kw) as zf:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some tests want
        for name, data in entries:
            zf.writestr(name, data)
    return dst


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- archives


def forged_huge(src: Path, dst: Path) -> Path:
    """An entry whose central directory claims 2**50 bytes, packed and unpacked (ratio 1: only the disk trips)."""
    shutil.copy(src, dst)
    with zipfile.ZipFile(dst, "a") as zf:
        zf.writestr("train/huge.png", b"x")
        info = zf.getinfo("train/huge.png")
        info.file_size = info.compress_size = 2**50
    return dst


def nested_levels(n: int) -> bytes:
    data = make_zip({"x.csv": b"id\n"})
    for level in range(n - 1, 0, -1):
        data = make_zip({f"level{level + 1}.zip": data})
    return data


BROKEN = {  # name -> (build(valid_zip, dst), limits, what the one-line error must say)
    "zip bomb": (
        lambda z, d: extended(z, d, [("train/bomb.png", bytes(101 * 2**20))], compression=zipfile.ZIP_DEFLATED),
        None,
        "zip bomb",
    ),
    "entry size": (lambda z, d: shutil.copy(z, d), ArchiveLimits(max_entry_bytes=50), "max_entry_bytes"),
    "too many entries": (lambda z, d: shutil.copy(z, d), ArchiveLimits(max_entries=10), "more than 10 entries"),
    "total size": (lambda z, d: shutil.copy(z, d), ArchiveLimits(max_total_bytes=1000), "max_total_bytes"),
    "free disk": (forged_huge, None, "MB free"),
    "nested too deep": (
        lambda z, d: extended(z, d, [("level1.zip", nested_levels(4))]),
        None,
        "4 levels deep (limit 3)",
    ),
    "duplicate name": (lambda z, d: extended(z, d, [("train.csv", b"id,label\n")]), None, "more than once"),
    "duplicate across nesting": (
        lambda z, d: extended(z, d, [("train.zip", make_zip({"train/tr000.png": b"x"}))]),
        None,
        "'train/tr000.png' appears more than once",
    ),
    "file and folder": (lambda z, d: extended(z, d, [("train", b"x")]), None, "both a file and a folder"),
    "case collision": (lambda z, d: extended(z, d, [("TRAIN/tr000.png", b"x")]), None, "differ only in case"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_zip_limits_refused_before_writing(tmp_path, tiny_zip, case):
    build, limits, expected = BROKEN[case]
    bad = tmp_path / "bad.zip"
    build(tiny_zip[0], bad)
    target = tmp_path / "out"
    with pytest.raises(InputError) as e:
        safe_extract(bad, target, limits=limits)
    assert expected in str(e.value) and "\n" not in str(e.value)
    assert not target.exists()  # nothing written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip", "tiny.zip"]  # the nested-zip spool is gone
    # The same fixture, unbroken, unpacks under the same limits (except the ones that are the point).
    if limits is None:
        assert "train.csv" in tree(safe_extract(tiny_zip[0], tmp_path / "ok"))


def symlink_entry(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    with zipfile.ZipFile(dst, "a") as zf:
        info = zipfile.ZipInfo("train/link.png")
        info.external_attr = 0o120777 << 16  # S_IFLNK: a symlink, as `zip --symlinks` stores one
        zf.writestr(info, "/etc/passwd")
    return dst


def damaged_member(src: Path, dst: Path) -> Path:
    """A valid directory whose last file's stored bytes are flipped: found only while unpacking (CRC)."""
    with zipfile.ZipFile(src) as zf:
        names = zf.namelist()
    shutil.copy(src, dst)
    with zipfile.ZipFile(dst, "a") as zf:
        zf.writestr("zz_last.csv", b"id,label\n" * 50)  # stored: the bytes below are the file's own
        info = zf.getinfo("zz_last.csv")
    data = bytearray(dst.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 5] ^= 0xFF
    dst.write_bytes(bytes(data))
    assert len(names) > 1
    return dst


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda z, d: d.write_bytes(b"<html>rate limited</html>"), "not a readable zip"),
        (symlink_entry, "refusing symlink entry 'train/link.png'"),
        (damaged_member, "could not unpack 'zz_last.csv' (Bad CRC-32"),  # found while writing, after the others
    ],
)
def test_an_unreadable_or_unsafe_archive_is_one_line_and_leaves_nothing(tmp_path, tiny_zip, build, expected):
    """Refused while planning (nothing written) or, for damage only reading finds, after writing: then what was
    written is removed again."""
    bad = tmp_path / "bad.zip"
    build(tiny_zip[0], bad)
    with pytest.raises(InputError) as e:
        safe_extract(bad, tmp_path / "out")
    assert expected in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()
    existing = tmp_path / "existing"  # a folder of the user's: kept, and only what the archive wrote is removed
    (existing / "notes").mkdir(parents=True)
    (existing / "notes" / "mine.txt").write_text("keep")
    with pytest.raises(InputError):
        safe_extract(bad, existing)
    assert tree(existing) == {"notes/mine.txt": b"keep"}


def test_an_existing_target_whose_symlink_leads_outside_is_refused(tmp_path, tiny_zip):
    target, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    target.mkdir()
    elsewhere.mkdir()
    (target / "train").symlink_to(elsewhere)  # train/... would be written into `elsewhere`
    with pytest.raises(InputError, match="would land outside"):
        safe_extract(tiny_zip[0], target)
    assert not any(elsewhere.iterdir())


def test_os_litter_skipped(tmp_path, tiny_zip):
    litter = [
        ("__MACOSX/train/._tr000.png", b"\x00\x05\x16\x07"),
        ("train/._tr001.png", b"\x00\x05\x16\x07"),
        (".DS_Store", b"\x00\x00\x00\x01Bud1"),
        ("train/Thumbs.db", b"\xd0\xcf"),
        (".ipynb_checkpoints/train-checkpoint.csv", b"id\n"),
        ("__MACOSX/._extra.zip", b"not a zip"),
        (
            "extra.zip",
            make_zip({"extra/a.csv": b"a\n", "__MACOSX/extra/._a.csv": b"\x00", "extra/.hidden/b.csv": b"b\n"}),
        ),
    ]
    clean = safe_extract(tiny_zip[0], tmp_path / "clean")
    messy = safe_extract(extended(tiny_zip[0], tmp_path / "messy.zip", litter), tmp_path / "messy")
    # extra.zip holds a single top folder extra/ once its litter is ignored: unpacked beside it, not extra/extra.
    assert tree(messy) == tree(clean) | {"extra/a.csv": b"a\n"}
    assert not is_junk("train/tr000.png") and not is_junk(("train", "a.png"))
    assert all(
        is_junk(n)
        for n in (
            "__MACOSX/x.png",
            "train/._x.png",
            r"train\.DS_Store",
            Path("a/Thumbs.db"),
            (".ipynb_checkpoints", "x.png"),
            ".hidden/x.png",
        )
    )


@pytest.fixture
def stub():
    with KaggleStub({"digits": competition_zip()}) as s:
        yield s


@pytest.mark.kaggle
@pytest.mark.parametrize("fault", ["not a zip", "cut short", "zip bomb"])
def test_bad_download_is_never_complete(stub, tmp_path, fault):
    if fault == "not a zip":  # e.g. an HTML error page saved as digits.zip
        stub.competitions["digits"] = b"<html><body>503 Service Unavailable</body></html>"
    elif fault == "cut short":  # Content-Length announces the whole zip; the connection drops after 100 bytes
        stub.truncate["digits"] = 100
    else:
        stub.competitions["digits"] = bomb_zip(tmp_path)
    dest = tmp_path / "data" / "digits"
    line = error_line(run_kaggle_cli(stub, tmp_path, "download", "digits", str(dest), "--retries", "0"))
    assert {"not a zip": "is not a zip archive", "cut short": "the download was cut short", "zip bomb": "zip bomb"}[
        fault
    ] in line
    assert list(dest.iterdir()) == []  # no files/, no manifest.json, no .complete, no temp folder
    stub.competitions["digits"], stub.truncate = competition_zip(), {}  # Kaggle serves it properly again
    r = run_kaggle_cli(stub, tmp_path, "download", "digits", str(dest))
    assert r.returncode == 0, r.stderr
    assert stub.calls("DownloadDataFiles") == 2 and (dest / ".complete").exists()


def bomb_zip(tmp_path: Path) -> bytes:
    """The valid competition zip plus 101 MB of zeros deflated to 100 KB."""
    z = tmp_path / "base.zip"
    z.write_bytes(competition_zip())
    return extended(
        z, tmp_path / "bomb.zip", [("train/bomb.png", bytes(101 * 2**20))], compression=zipfile.ZIP_DEFLATED
    ).read_bytes()
