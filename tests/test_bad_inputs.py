"""Input real competitions throw at `prepare`: each case either runs correctly or stops there with a one-line
error naming the file, column, id or value, before any training. Every case starts from a valid fixture.
The last section runs the prepare and folds jobs through the job harness, as every rule runs them: the error is
one line on the terminal, exit status 1, and no output (one case through the real snakemake CLI:
tests/test_workflow.py). (Archives: tests/test_zip_limits.py and test_archives.py; Kaggle:
test_kaggle_conditions.py.)"""

from __future__ import annotations

import logging
import re
import zipfile

import numpy as np
import pandas as pd
import pytest

from kagglecv.config.data import DataConfig
from kagglecv.core.errors import InputError, first_line
from kagglecv.core.files import read_table
from kagglecv.data import folds, prepare
from kagglecv.data.demo import write_competition
from kagglecv.scoring import submission

from helpers import (
    digits_images,
    edit_zip,
    png,
    tiny_config,
    write_csv_images_competition,
)


def run_prepare(zip_or_dir, tmp_path) -> dict:
    return prepare.prepare(zip_or_dir, tmp_path / "prepared", DataConfig())


def submit_argmax(tmp_path, prep) -> pd.DataFrame:
    """A submission from made-up test predictions: class k for the k-th test row (mod n)."""
    meta = pd.read_json(prep / "meta.json", typ="series")
    test = read_table(prep / "test.csv")
    n = len(meta["classes"])
    probs = np.eye(n)[np.arange(len(test)) % n]
    pd.concat([test, pd.DataFrame(probs, columns=[f"p{k}" for k in range(n)])], axis=1).to_csv(
        tmp_path / "t.csv", index=False
    )
    return submission.make_submission(
        tmp_path / "t.csv", prep, prep / "sample_submission.csv", "accuracy", tmp_path / "s.csv"
    )


def test_an_error_message_is_cut_to_its_first_line_and_never_empty():
    """Every one-line message quotes the cause through first_line: tarfile, py7zr, PIL and timm explain over
    several lines, and an exception raised bare has no text at all (indexing its lines would raise instead)."""
    assert first_line(OSError("truncated\n  at offset 12")) == "truncated"
    assert first_line(EOFError()) == "EOFError"
    assert first_line(RuntimeError("  \n"), empty="") == ""


# ---------------------------------------------------------------- labels and ids keep their identity


@pytest.mark.parametrize(
    "names, order",
    [
        ({0: "001", 1: "010", 2: "1"}, ["001", "1", "010"]),  # three classes, by number then text
        ({0: "NA", 1: "None", 2: "null"}, ["NA", "None", "null"]),  # names, not missing values
        ({0: "3", 1: "5", 2: "10"}, ["3", "5", "10"]),  # numbers as written: 3, not 3.0; 5 before 10
    ],
)
def test_labels_are_text_as_written(tmp_path, names, order):
    write_csv_images_competition(tmp_path / "c.zip", label_names=names)
    meta = run_prepare(tmp_path / "c.zip", tmp_path)
    assert meta["classes"] == order
    prep = tmp_path / "prepared"
    df = folds.make_folds(prep / "train.csv", tmp_path / "folds.csv", 2, 0)
    assert sorted(df["label"].unique()) == sorted(names.values())  # NA/None survive the round trip
    submit_argmax(tmp_path, prep)
    written = pd.read_csv(tmp_path / "s.csv", dtype=str, keep_default_na=False)
    assert set(written["label"]) == set(names.values())  # written back exactly as in train.csv


def test_ids_are_text_whatever_the_id_columns_case(tmp_path):
    info = write_csv_images_competition(tmp_path / "c.zip")
    fresh = {i: f"{k:05d}" for k, i in enumerate(info["ids"] + info["test_ids"], start=17)}  # 00017, ...

    def edit(name, data):
        if name == "train.csv":
            df = pd.read_csv(pd.io.common.BytesIO(data), dtype=str)
            return df.assign(id=df["id"].map(fresh)).rename(columns={"id": "ID"}).to_csv(index=False).encode()
        if name == "sample_submission.csv":
            df = pd.read_csv(pd.io.common.BytesIO(data), dtype=str)
            return df.assign(id=df["id"].map(fresh)).to_csv(index=False).encode()
        stem = name.split("/")[-1].removesuffix(".png")
        return data if stem not in fresh else None

    def add_renamed(src, dst):
        with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "a") as b:
            for n in a.namelist():
                stem = n.split("/")[-1].removesuffix(".png")
                if stem in fresh:
                    b.writestr(n.replace(stem, fresh[stem]), a.read(n))

    edit_zip(tmp_path / "c.zip", tmp_path / "ids.zip", edit)
    add_renamed(tmp_path / "c.zip", tmp_path / "ids.zip")
    run_prepare(tmp_path / "ids.zip", tmp_path)
    assert read_table(tmp_path / "prepared/train.csv")["id"].iloc[0] == "00017"
    sub = submit_argmax(tmp_path, tmp_path / "prepared")
    assert sub["id"].iloc[0] == fresh[info["test_ids"][0]] and sub["id"].str.len().eq(5).all()


@pytest.mark.parametrize(
    "file, expected",
    [
        ("train.csv", "train.csv: id 'tr003' appears 2 times in column 'id'"),
        ("sample_submission.csv", "sample_submission.csv: id 'te001' appears 2 times in column 'id'"),
    ],
)
def test_duplicate_ids_are_refused(tmp_path, file, expected):
    write_csv_images_competition(tmp_path / "c.zip")

    def edit(name, data):
        if name != file:
            return data
        lines = data.decode().splitlines()
        dup = next(line for line in lines if line.startswith(("tr003,", "te001,")))
        return "\n".join([*lines, dup]).encode() + b"\n"

    with pytest.raises(InputError, match=expected):
        run_prepare(edit_zip(tmp_path / "c.zip", tmp_path / "bad.zip", edit), tmp_path)
    assert not (tmp_path / "prepared" / "meta.json").exists()


@pytest.mark.parametrize(
    "file, content, expected",
    [
        ("sample_submission.csv", b"id,label\n", "sample_submission.csv: no rows, only a header"),
        ("sample_submission.csv", b"", "sample_submission.csv: the file is empty"),
        ("train.csv", b"id,label\n", "train.csv: no rows, only a header"),
        ("train.csv", b"   \n", "train.csv: the file is empty"),
        ("train.csv", "id,label\ntr000,0\n".encode("utf-16"), "train.csv: not UTF-8 text"),
    ],
)
def test_empty_or_unreadable_csvs(tmp_path, file, content, expected):
    write_csv_images_competition(tmp_path / "c.zip")
    bad = edit_zip(tmp_path / "c.zip", tmp_path / "bad.zip", lambda n, d: content if n == file else d)
    with pytest.raises(InputError, match=expected):
        run_prepare(bad, tmp_path)


def test_extra_column_beside_the_target_in_the_sample_submission(tmp_path):
    write_csv_images_competition(tmp_path / "c.zip")
    bad = edit_zip(
        tmp_path / "c.zip",
        tmp_path / "bad.zip",
        lambda n, d: (
            d.replace(b"id,label\n", b"id,label,note\n").replace(b",0\n", b",0,x\n")
            if n == "sample_submission.csv"
            else d
        ),
    )
    with pytest.raises(InputError, match="sample_submission.csv: extra column\\(s\\) 'note' beside the target 'label'"):
        run_prepare(bad, tmp_path)


def test_extra_column_in_a_one_column_per_class_sample_submission(tmp_path):
    write_csv_images_competition(tmp_path / "c.zip")

    def edit(name, data):
        if name != "sample_submission.csv":
            return data
        df = pd.read_csv(pd.io.common.BytesIO(data), dtype=str)
        return df[["id"]].assign(**{"0": 0.3, "1": 0.3, "2": 0.4, "comment": ""}).to_csv(index=False).encode()

    with pytest.raises(InputError, match="sample_submission.csv: column 'comment' is not a class of the training"):
        run_prepare(edit_zip(tmp_path / "c.zip", tmp_path / "bad.zip", edit), tmp_path)


def test_missing_label_names_the_id(tmp_path):
    write_csv_images_competition(tmp_path / "c.zip")
    bad = edit_zip(
        tmp_path / "c.zip",
        tmp_path / "bad.zip",
        lambda n, d: d.replace(b"tr004,0", b"tr004,") if n == "train.csv" else d,
    )
    with pytest.raises(InputError, match="train.csv: id 'tr004' has no value in column 'label'"):
        run_prepare(bad, tmp_path)


def pixel_competition(path, nan_row: int | None = None):
    imgs, labels = digits_images(6, (0, 1, 2))
    cols = [f"pixel{i}" for i in range(64)]
    train = pd.DataFrame(np.stack(imgs).reshape(len(imgs), -1), columns=cols)
    train.insert(0, "label", [str(v) for v in labels])
    if nan_row is not None:
        train.loc[nan_row, "label"] = ""
    test = pd.DataFrame(np.stack(imgs[:4]).reshape(4, -1), columns=cols)
    sample = pd.DataFrame({"ImageId": range(1, 5), "Label": 0})
    return write_competition(path, train, {}, sample, files={"test.csv": test})


def test_pixel_csv_missing_label_names_the_row(tmp_path):
    assert run_prepare(pixel_competition(tmp_path / "ok.zip"), tmp_path)["classes"] == ["0", "1", "2"]
    with pytest.raises(InputError, match=r"train.csv: id 'row 9' has no value in column 'label'"):
        run_prepare(pixel_competition(tmp_path / "nan.zip", nan_row=7), tmp_path)


# ---------------------------------------------------------------- OS litter is not data


def test_os_litter_is_ignored_in_image_and_class_folders(tmp_path):
    root = tmp_path / "seedlings"
    imgs, labels = digits_images(4, (0, 1))
    for k, (img, label) in enumerate(zip(imgs, labels)):
        (root / "train" / f"kind{label}").mkdir(parents=True, exist_ok=True)
        (root / "train" / f"kind{label}" / f"{k}.png").write_bytes(png(img))
    (root / "test").mkdir()
    for k, img in enumerate(imgs[:3]):
        (root / "test" / f"t{k}.png").write_bytes(png(img))
    pd.DataFrame({"file": [f"t{k}.png" for k in range(3)], "species": "kind0"}).to_csv(
        root / "sample_submission.csv", index=False
    )
    # what macOS, Windows and Jupyter leave behind: folders that look like classes, files that look like images
    for junk in ("__MACOSX/kind0", ".ipynb_checkpoints", ".hidden_class"):
        (root / "train" / junk).mkdir(parents=True)
        (root / "train" / junk / "0.png").write_bytes(png(imgs[0]))
    (root / "train" / "kind0" / "._0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (root / "train" / "kind1" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "train" / "kind1" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "test" / "._t0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    meta = run_prepare(root, tmp_path)
    assert meta["layout"] == "folder_per_class" and meta["classes"] == ["kind0", "kind1"]
    assert meta["n_train"] == len(imgs) and meta["n_test"] == 3


@pytest.mark.parametrize("shipped", ["zip", "folder"])
def test_a_bad_image_one_folder_down_is_named_by_its_whole_path(tmp_path, shipped):
    """Kaggle archives often hold the competition one folder down (mycomp/train.csv): a decoding error names the
    file from what the user gave (the archive, or their folder) through that folder, a path they can open."""
    flat = tmp_path / "flat.zip"
    write_csv_images_competition(flat)
    with zipfile.ZipFile(flat) as src, zipfile.ZipFile(tmp_path / "c.zip", "w") as dst:
        for info in src.infolist():
            data = b"not an image" if info.filename == "train/tr003.png" else src.read(info)
            dst.writestr(f"mycomp/{info.filename}", data)
    given = tmp_path / "c.zip"
    if shipped == "folder":
        given = tmp_path / "downloaded"
        zipfile.ZipFile(tmp_path / "c.zip").extractall(given)
    sep = ":" if shipped == "zip" else "/"
    with pytest.raises(InputError, match=f"^{re.escape(f'{given}{sep}mycomp/train/tr003.png')}: cannot read image"):
        run_prepare(given, tmp_path)
    assert not (tmp_path / "prepared" / "meta.json").exists()


# ---------------------------------------------------------------- through the job harness (kagglecv.jobs)


def run_job(wd, rule: str, config: dict, capfd, **params) -> tuple[int, str, str]:
    """The rule's job as scripts/job.py runs it (kagglecv.jobs.run_logged, logged to the rule's log, in the
    run's folder `wd`): (exit status, what reached the terminal, the log)."""
    from kagglecv.jobs import JOBS, Files, Job, run_logged

    log = wd / "results" / config["competition"] / "logs" / f"{rule}.log"
    job = Job(rule, config, params=Files(params), threads=1, log=str(log))
    capfd.readouterr()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        run_logged(job.log, JOBS[rule], job)
        code = 0
    except SystemExit as e:
        code = e.code
    finally:  # run_logged points logging at the job's log, closed by now
        root.handlers[:] = handlers
        root.setLevel(level)
    return code, capfd.readouterr().err, log.read_text()


def assert_one_line_error(code: int, terminal: str, log: str, expected: str) -> None:
    lines = terminal.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("ERROR: ") and expected in lines[0], terminal
    assert log.strip().splitlines()[-1] == lines[0] and "Traceback" not in log, log


def resolved(zip_path, **over) -> dict:
    from kagglecv.config.schema import resolve

    return resolve(tiny_config(zip_path, mlflow={"enabled": False}, **over))


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda n, d: None if n == "train/tr005.png" else d, "train id 'tr005' has no image in"),
        (lambda n, d: b"\x89PNG broken" if n == "train/tr006.png" else d, "cannot read image for id 'tr006'"),
        # two columns beside the id, neither named for the template's target (one alone would be the labels)
        (
            lambda n, d: (
                b"id,klass,note\n" + b"".join(r + b",x\n" for r in d.splitlines()[1:]) if n == "train.csv" else d
            ),
            "no target column 'label'",
        ),
        (lambda n, d: d.replace(b"id,label", b"name,label") if n == "train.csv" else d, "no id column 'id'"),
        (lambda n, d: d + b"te999,0\n" if n == "sample_submission.csv" else d, "test id 'te999' has no image"),
    ],
)
def test_bad_input_stops_the_prepare_job_with_one_line(tmp_path, tiny_zip, monkeypatch, capfd, edit, expected):
    bad = edit_zip(tiny_zip[0], tmp_path / "bad.zip", edit)
    monkeypatch.chdir(tmp_path)
    code, terminal, log = run_job(
        tmp_path, "prepare", resolved(bad), capfd, path=str(bad), data={}, task="auto", metric="accuracy"
    )
    assert_one_line_error(code, terminal, log, expected)
    assert not (tmp_path / "results/tiny/prepared/meta.json").exists()


def test_class_smaller_than_folds_stops_the_folds_job_with_one_line(tmp_path, tiny_zip, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    config = resolved(tiny_zip[0], folds=9)
    code, terminal, _ = run_job(
        tmp_path, "prepare", config, capfd, path=str(tiny_zip[0]), data={}, task="auto", metric="accuracy"
    )
    assert code == 0 and terminal == "", terminal
    code, terminal, log = run_job(tmp_path, "folds", config, capfd, folds=9, seed=1)
    assert_one_line_error(code, terminal, log, "class '0' has 8 sample(s), fewer than folds=9")
    assert not (tmp_path / "results/tiny/folds.csv").exists()


# ---------------------------------------------------------------- labels spelt two ways are one label, or refused


@pytest.mark.parametrize(
    "spellings, named",
    [
        ({"tr001": " 1"}, r"' 1', '1'"),  # surrounding whitespace
        ({"tr001": "1.0", "tr002": "1.0"}, r"'1', '1.0'"),  # a float column written out
        ({"tr010": "nan", "tr011": "NaN"}, r"'NaN', 'nan'"),  # two spellings of a missing value
    ],
)
def test_labels_spelt_two_ways_are_refused_or_normalised(tmp_path, spellings, named):
    write_csv_images_competition(tmp_path / "c.zip")

    def edit(name, data):
        if name != "train.csv":
            return data
        df = pd.read_csv(pd.io.common.BytesIO(data), dtype=str, keep_default_na=False)
        for i, label in spellings.items():
            df.loc[df["id"] == i, "label"] = label
        return df.to_csv(index=False).encode()

    bad = edit_zip(tmp_path / "c.zip", tmp_path / "bad.zip", edit)
    with pytest.raises(
        InputError,
        match=rf"train.csv: labels {named} in column 'label' differ only by whitespace, "
        r"number format or missing-value spelling .*data.label_normalise: true$",
    ):
        run_prepare(bad, tmp_path)
    assert not (tmp_path / "prepared" / "meta.json").exists()
    normalise = DataConfig(label_normalise=True)
    if "nan" in spellings.values():  # a missing label is not a class: normalising names the row
        with pytest.raises(InputError, match=r"train.csv: id 'tr010' has a missing label \('nan'\) in column 'label'"):
            prepare.prepare(bad, tmp_path / "prepared", normalise)
        return
    meta = prepare.prepare(bad, tmp_path / "prepared", normalise)
    assert meta["classes"] == ["0", "1", "2"]  # the most common spelling, stripped
    assert set(read_table(tmp_path / "prepared" / "train.csv")["label"]) == {"0", "1", "2"}


# ---------------------------------------------------------------- pixel CSVs hold numbers from 0 to 255 (or 0 to 1)


def test_pixel_csv_in_zero_to_one_is_scaled_not_truncated(tmp_path):
    ints = run_prepare(pixel_competition(tmp_path / "ok.zip"), tmp_path)
    cache = np.load(tmp_path / "prepared" / "train_images.npy")
    assert ints["image_shape"] == [8, 8, 1] and cache.max() > 200

    def to_unit(name, data):
        if name not in ("train.csv", "test.csv"):
            return data
        df = pd.read_csv(pd.io.common.BytesIO(data))
        pixels = [c for c in df.columns if c.startswith("pixel")]
        df[pixels] = df[pixels] / 255.0
        return df.to_csv(index=False).encode()

    edit_zip(tmp_path / "ok.zip", tmp_path / "unit.zip", to_unit)
    prepare.prepare(tmp_path / "unit.zip", tmp_path / "unit", DataConfig())
    assert np.array_equal(np.load(tmp_path / "unit" / "train_images.npy"), cache)
    assert np.array_equal(
        np.load(tmp_path / "unit" / "test_images.npy"), np.load(tmp_path / "prepared" / "test_images.npy")
    )


@pytest.mark.parametrize(
    "file, value, expected",
    [
        ("train.csv", "", r"train.csv: row 5 column 'pixel3' has no value"),
        ("train.csv", "300", r"train.csv: row 5 column 'pixel3' holds '300'"),
        ("test.csv", "dark", r"test.csv: row 5 column 'pixel3' holds 'dark'"),
    ],
)
def test_pixel_csv_values_outside_the_pixel_range_are_refused(tmp_path, file, value, expected):
    pixel_competition(tmp_path / "ok.zip")

    def edit(name, data):
        if name != file:
            return data
        df = pd.read_csv(pd.io.common.BytesIO(data), dtype=str, keep_default_na=False)
        df.loc[3, "pixel3"] = value  # the file's row 5: the header is row 1
        return df.to_csv(index=False).encode()

    with pytest.raises(InputError, match=expected + r"; pixels are numbers from 0 to 255 \(or 0 to 1\), fix the file$"):
        run_prepare(edit_zip(tmp_path / "ok.zip", tmp_path / "bad.zip", edit), tmp_path)


# ---------------------------------------------------------------- one image per id, and one id per image


def test_two_ids_naming_one_image_are_refused(tmp_path):
    write_csv_images_competition(tmp_path / "c.zip")
    bad = edit_zip(
        tmp_path / "c.zip", tmp_path / "bad.zip", lambda n, d: d + b"tr003.png,1\n" if n == "train.csv" else d
    )  # tr003 and tr003.png
    with pytest.raises(
        InputError,
        match=r"train.csv: train ids 'tr003' and 'tr003.png' both name .*train/tr003.png; "
        r"drop one of the rows$",
    ):
        run_prepare(bad, tmp_path)


def test_an_id_matching_two_files_is_refused(tmp_path):
    write_csv_images_competition(tmp_path / "c.zip")
    with zipfile.ZipFile(tmp_path / "c.zip", "a") as zf:
        zf.writestr("test/te002.jpg", zf.read("test/te002.png"))  # te002.png and te002.jpg: which one is te002?
    with pytest.raises(
        InputError,
        match=r"sample_submission.csv: test id 'te002' matches te002.jpg and te002.png in "
        r".*test/; put the extension \(or the path\) in the id, or remove all but one of the files$",
    ):
        run_prepare(tmp_path / "c.zip", tmp_path)


# ---------------------------------------------------------------- the submission is checked before it is written


def test_submission_checked_against_the_template(tmp_path):
    """The checks of the workflow's submission step and the kernel's (one implementation, in submission_frame):
    ids and their order, columns and their order, missing values, and each column's kind."""
    sample = pd.DataFrame({"id": ["b", "a", "c"], "label": ["0.5", "0.5", "0.5"]})
    sample.to_csv(tmp_path / "sample.csv", index=False)
    meta = {"task": "binary", "classes": ["cat", "dog"], "id_column": "id", "target_columns": ["label"]}
    preds = pd.DataFrame({"id": ["a", "b", "c"], "p0": [0.2, 0.7, 0.4], "p1": [0.8, 0.3, 0.6]})
    out = submission.submission_frame(preds, meta, tmp_path / "sample.csv", "log_loss", None)
    assert out["id"].tolist() == ["b", "a", "c"] and out["label"].tolist() == [0.3, 0.8, 0.6]
    # accuracy writes class names where the template holds probabilities: Kaggle would not score it
    with pytest.raises(
        InputError,
        match=r"predictions: column 'label' holds text \(e.g. 'cat'\) where the template "
        r"holds numbers \(e.g. '0.5'\); check `metric:` .*Kaggle would not score",
    ):
        submission.submission_frame(preds, meta, tmp_path / "sample.csv", "accuracy", None)
    sample.assign(label="0").to_csv(tmp_path / "zero.csv", index=False)  # a placeholder 0 says nothing of the kind
    assert submission.submission_frame(preds, meta, tmp_path / "zero.csv", "accuracy", None)["label"].tolist() == [
        "cat",
        "dog",
        "dog",
    ]
    for bad, expected in [
        (out[["label", "id"]], r"columns \['label', 'id'\] are not the template's \['id', 'label'\]"),
        (out.iloc[[1, 0, 2]], r"3 ids, row 2 differing from the template's 3 ids in their order"),
        (out.iloc[:2], r"2 ids, row 4 differing from the template's 3 ids"),
        (out.assign(label=[0.3, np.nan, 0.6]), r"id 'a' has no value in column 'label'"),
    ]:
        with pytest.raises(InputError, match=expected):
            submission.check_submission(bad, sample, "id", tmp_path / "sample.csv", "kernel")


def test_a_bug_keeps_its_traceback_in_the_log_and_fails_the_job(tmp_path):
    """Not bad input but a bug: the traceback goes to the log (not a one-line ERROR) and the exception propagates,
    so Snakemake marks the job failed."""
    from kagglecv.jobs import run_logged

    def broken():
        print("started")
        return {}["missing"]

    log = tmp_path / "logs" / "broken.log"
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with pytest.raises(KeyError):
            run_logged(log, broken)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    text = log.read_text()
    assert text.startswith("started\n") and "Traceback" in text and "KeyError: 'missing'" in text
    assert "ERROR: " not in text


def test_a_rule_reusing_a_job_finds_it_by_its_name_and_others_are_told_the_convention():
    from kagglecv.jobs import JOBS, Files, job_of

    assert job_of("train_mynet") is JOBS["train"] and job_of("report_cv") is JOBS["report_cv"]
    with pytest.raises(KeyError, match="rule 'mytrain' has no job .* named <its name>_<anything>, e.g. train_mynet"):
        job_of("mytrain")
    with pytest.raises(AttributeError, match="no 'oof' here; named: folds, meta"):
        _ = Files({"folds": "f.csv", "meta": "m.json"}).oof
