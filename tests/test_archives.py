"""Archives wherever Kaggle puts them (kagglecv.data.archive): zip, 7z and tar, nested in each other or lying in a
folder beside the CSVs, all under the same checks; the user's folder is never written to."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from kagglecv.core.errors import InputError
from kagglecv.data.archive import ArchiveLimits, archive_suffix, inner_archives, safe_extract, unpacked

from helpers import make_zip

py7zr = pytest.importorskip("py7zr")


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below `folder`, symlinked folders followed (a mirror is made of links)."""
    out = {}
    for d, _, files in os.walk(folder, followlinks=True):
        out |= {(Path(d) / f).relative_to(folder).as_posix(): (Path(d) / f).read_bytes() for f in files}
    return dict(sorted(out.items()))


def tar_bytes(entries: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def seven_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with py7zr.SevenZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(data, name)
    return path


def test_archive_suffixes():
    assert [archive_suffix(n) for n in ("a.zip", "b.7z", "c.tar.gz", "d.tgz", "e.TAR.XZ", "f.csv", "g.csv.zip")] == [
        ".zip",
        ".7z",
        ".tar.gz",
        ".tgz",
        ".tar.xz",
        None,
        ".zip",
    ]


def test_a_tar_gz_and_a_7z_unpack_like_a_zip(tmp_path):
    entries = {"train/a.png": b"A", "train.csv": b"id,label\na,0\n"}
    (tmp_path / "c.tar.gz").write_bytes(tar_bytes(entries))
    seven_zip(tmp_path / "c.7z", entries)
    (tmp_path / "c.zip").write_bytes(make_zip(entries))
    out = [
        tree(safe_extract(tmp_path / name, tmp_path / name.replace(".", "_"))) for name in ("c.tar.gz", "c.7z", "c.zip")
    ]
    assert out[0] == out[1] == out[2] == entries


def test_archives_nested_in_each_other_unpack_where_they_lie(tmp_path):
    """A zip holding train.7z (images at its root) and test.tar.gz (a top folder test/): train/ and test/."""
    seven = seven_zip(tmp_path / "train.7z", {"a.jpg": b"A", "b.jpg": b"B"}).read_bytes()
    comp = make_zip({"train.7z": seven, "test.tar.gz": tar_bytes({"test/c.jpg": b"C"}), "s.csv": b"id\n"})
    (tmp_path / "comp.zip").write_bytes(comp)
    assert tree(safe_extract(tmp_path / "comp.zip", tmp_path / "out")) == {
        "s.csv": b"id\n",
        "test/c.jpg": b"C",
        "train/a.jpg": b"A",
        "train/b.jpg": b"B",
    }


def test_a_folder_of_archives_is_read_unpacked_and_left_as_it_was(tmp_path):
    """Invasive Species as Kaggle ships it: train.7z, test.7z, train_labels.csv.zip, sample_submission.csv.zip."""
    comp = tmp_path / "comp"
    comp.mkdir()
    seven_zip(comp / "train.7z", {"train/1.jpg": b"1", "train/2.jpg": b"2"})
    seven_zip(comp / "test.7z", {"test/3.jpg": b"3"})
    (comp / "train_labels.csv.zip").write_bytes(make_zip({"train_labels.csv": b"name,invasive\n1,0\n2,1\n"}))
    (comp / "sample_submission.csv.zip").write_bytes(make_zip({"sample_submission.csv": b"name,invasive\n3,0.5\n"}))
    before = tree(comp)
    root, done = unpacked(comp, tmp_path / "scratch")
    assert sorted(done) == ["sample_submission.csv.zip", "test.7z", "train.7z", "train_labels.csv.zip"]
    assert tree(root) == {
        "sample_submission.csv": b"name,invasive\n3,0.5\n",
        "test/3.jpg": b"3",
        "train/1.jpg": b"1",
        "train/2.jpg": b"2",
        "train_labels.csv": b"name,invasive\n1,0\n2,1\n",
    }
    assert tree(comp) == before  # nothing written into the user's folder


def test_a_folder_unpacked_once_keeps_its_folders_and_links_the_rest(tmp_path):
    """train.zip beside the train/ it was unpacked into: the folder is read, the zip left alone; other files are
    links into the user's folder, not copies."""
    comp = tmp_path / "comp"
    (comp / "train").mkdir(parents=True)
    (comp / "train" / "a.jpg").write_bytes(b"mine")
    (comp / "train.zip").write_bytes(make_zip({"train/a.jpg": b"zipped"}))
    (comp / "test.zip").write_bytes(make_zip({"b.jpg": b"B"}))  # images at the zip root: into test/
    (comp / "train.csv").write_bytes(b"id,label\n")
    root, done = unpacked(comp, tmp_path / "scratch")
    assert done == ["test.zip"]
    assert tree(root) == {"test/b.jpg": b"B", "train.csv": b"id,label\n", "train/a.jpg": b"mine"}
    assert (root / "train.csv").is_symlink() and (root / "train").is_symlink()


def test_a_folder_without_archives_is_read_in_place(tmp_path):
    (tmp_path / "comp" / "train").mkdir(parents=True)
    assert unpacked(tmp_path / "comp", tmp_path / "scratch") == (tmp_path / "comp", [])
    assert not (tmp_path / "scratch").exists()
    assert inner_archives(tmp_path / "comp") == []


def test_many_entries_each_under_the_bomb_size_are_refused_together(tmp_path):
    """Each entry is below bomb_bytes, so no entry is a bomb alone; the archive, 2000x compressed, is one."""
    data = {f"train/{k}.png": bytes(600_000) for k in range(20)}  # 12 MB of zeros in a few KB
    (tmp_path / "many.zip").write_bytes(make_zip_deflated(data))
    limits = ArchiveLimits(bomb_bytes=1_000_000, max_ratio=100)
    with pytest.raises(InputError, match="refusing a likely zip bomb") as e:
        safe_extract(tmp_path / "many.zip", tmp_path / "out", limits=limits)
    assert "unpack to" in str(e.value) and "\n" not in str(e.value) and not (tmp_path / "out").exists()
    (tmp_path / "many.tar.gz").write_bytes(tar_bytes(data))  # tar.gz: no packed size per entry, the file's
    with pytest.raises(InputError, match="refusing a likely zip bomb"):
        safe_extract(tmp_path / "many.tar.gz", tmp_path / "out2", limits=limits)
    assert safe_extract(
        tmp_path / "many.zip", tmp_path / "ok", limits=ArchiveLimits(bomb_bytes=1_000_000, max_ratio=10_000)
    )


def make_zip_deflated(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["tar", "7z"])
def test_links_and_escapes_are_refused_in_every_format(tmp_path, kind):
    bad = tmp_path / f"bad.{'tar.gz' if kind == 'tar' else '7z'}"
    if kind == "tar":
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            link = tarfile.TarInfo("train/link.png")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(link)
        bad.write_bytes(buf.getvalue())
        expected = "refusing symlink entry 'train/link.png'"
    else:  # py7zr writes no '..' names; a symlink it does store
        (tmp_path / "link.png").symlink_to("/etc/passwd")
        with py7zr.SevenZipFile(bad, "w") as z:
            z.write(tmp_path / "link.png", "train/link.png")
        expected = "refusing symlink entry 'train/link.png'"
    with pytest.raises(InputError, match=expected):
        safe_extract(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_damaged_archive_is_one_line(tmp_path):
    for name in ("x.7z", "x.tar.gz", "x.zip"):
        (tmp_path / name).write_bytes(b"<html>rate limited</html>")
        with pytest.raises(InputError) as e:
            safe_extract(tmp_path / name, tmp_path / "out")
        assert "not a readable" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".unpack")]  # no spool left behind
    assert all(not p.is_symlink() for p in tmp_path.iterdir())
    assert os.listdir(tmp_path)  # the damaged files themselves stay: they are the user's
