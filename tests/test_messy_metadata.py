"""Metadata and images as competitions ship them, messy: a word or inf among a number column's values, a test id
without a metadata row, an image that opens but does not convert. Each is read as missing (or the image as
unreadable), counted and reported once, in prepare and in the Kaggle kernel alike; the kernel predicts what it
cannot read with the training prior instead of failing a code submission after hours."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kagglecv.core.errors import InputError
from kagglecv.data.demo import write_competition
from kagglecv.data.images import Decoder, write_cache
from kagglecv.data.meta import MetaEncoder, column, metadata_rows, specs

from helpers import digits_images, run_snakemake, tiny_config


def lab_tiff(side: int = 8) -> bytes:
    """An image Pillow opens and decodes, but cannot convert to grey (Pillow goes through RGB, which LAB lacks)."""
    buf = io.BytesIO()
    Image.new("LAB", (side, side), (50, 10, 10)).save(buf, format="TIFF")
    return buf.getvalue()


def frame(**cols) -> pd.DataFrame:
    return pd.DataFrame({column(k): v for k, v in cols.items()})


def test_a_value_that_is_not_a_finite_number_is_missing_not_an_error():
    enc = MetaEncoder.fit(frame(age=["10", "30", "unknown", "inf"]), [{"name": "age", "kind": "number"}])
    assert enc.columns[0]["mean"] == 20.0 and enc.columns[0]["std"] == 10.0  # fitted on the numbers only
    out = enc.transform(frame(age=["unknown", "inf", "-inf", "1e400", " 40 ", ""]))
    assert out.tolist() == [[0.0, 1.0]] * 4 + [[2.0, 0.0], [0.0, 1.0]]  # missing: the mean, the indicator set


def test_a_number_column_stays_one_with_a_few_bad_values_which_are_reported_once(caplog):
    train = pd.DataFrame({"age": [str(a) for a in range(20, 40)] + ["inf", "unknown"], "site": ["head"] * 22})
    test = pd.DataFrame({"age": ["1e400", "31", "32"], "site": ["torso", "head", "head"]})
    with caplog.at_level(logging.WARNING, logger="kagglecv.data.meta"):
        got = specs(train, test, ["age", "site"], "train.csv", "test.csv")
    assert got == [{"name": "age", "kind": "number"}, {"name": "site", "kind": "text"}]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "train.csv: column 'age' (data.meta_columns): 2 of 22 value(s) are not finite numbers ('inf', 'unknown'); "
        "read as missing, the missing indicator set",
        "test.csv: column 'age' (data.meta_columns): 1 of 3 value(s) are not finite numbers ('1e400'); read as "
        "missing, the missing indicator set",
    ]
    mostly_words = pd.DataFrame({"age": ["young", "old", "old", "12"]})
    assert specs(mostly_words, mostly_words, ["age"], "t")[0]["kind"] == "text"


def test_a_test_id_without_metadata_is_an_error_for_prepare_and_the_prior_for_the_kernel():
    test = pd.DataFrame({"id": ["a", "c"], "age": ["1", "3"]})
    with pytest.raises(InputError, match=r"test.csv: test id 'b' has no row; the metadata of every test image"):
        metadata_rows(test, "id", ["a", "b", "c"], ["age"], "test.csv")
    missing: list = []
    rows = metadata_rows(test, "id", ["a", "b", "c"], ["age"], "test.csv", missing)
    assert rows["age"].tolist() == ["1", "", "3"] and missing == [("b", "has no row in test.csv (data.meta_columns)")]


def test_an_image_that_opens_but_does_not_convert_is_unreadable(tmp_path):
    """Decoding, converting and resizing are all inside the guard: one line naming the image (prepare), a zero row
    listed as bad (the kernel's tolerant decode, which predicts it with the prior)."""
    (tmp_path / "lab.png").write_bytes(lab_tiff())  # named .png, as a mislabelled upload is
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ok.png")
    with pytest.raises(InputError, match=r"lab.png: cannot read image for id 'x' \(conversion from LAB to RGB"):
        Decoder(8, 8, gray=True)(tmp_path / "lab.png", "x")  # a grey cache
    bad: list = []
    write_cache(
        tmp_path / "c.npy", [tmp_path / "ok.png", tmp_path / "lab.png"], ["ok", "lab"], Decoder(4, 4, True), bad=bad
    )
    assert [(row, ident) for row, ident, _ in bad] == [(1, "lab")] and "LAB" in bad[0][2]


# ---------------------------------------------------------------- the workflow and its kernel


AGES = ["unknown", "inf", "1e400"]  # among the training rows' ages; the model still reads age as a number


def messy_competition(path: Path) -> dict:
    imgs, digits = digits_images(8, classes=(0, 1, 2))
    test_imgs, _ = digits_images(2, classes=(0, 1, 2), offset=8)
    rng = np.random.default_rng(0)
    ids, test_ids = [f"tr{i:03d}" for i in range(len(imgs))], [f"te{i:03d}" for i in range(len(test_imgs))]
    ages = [str(a) for a in rng.integers(20, 80, len(imgs))]
    ages[1], ages[5], ages[9] = AGES
    train = pd.DataFrame({"id": ids, "label": digits, "age": ages, "site": rng.choice(["head", "torso"], len(ids))})
    test = pd.DataFrame(
        {
            "id": test_ids,
            "age": ["1e400", "unknown", *map(str, rng.integers(20, 80, 4))],
            "site": rng.choice(["head", "torso"], len(test_ids)),
        }
    )
    images = {f"train/{i}.png": img for i, img in zip(ids, imgs)}
    images |= {f"test/{i}.png": img for i, img in zip(test_ids, test_imgs)}
    write_competition(path, train, images, pd.DataFrame({"id": test_ids, "label": 0}), files={"test.csv": test})
    return {"test_ids": test_ids}


@pytest.mark.workflow
@pytest.mark.timeout(900)
def test_messy_metadata_and_images_finish_the_run_and_the_kernel(tmp_path):
    """Issue 34, cases 2 and 3 through the real workflow and its kernel: training ages with a word, inf and 1e400
    (a number column still, each read as missing and reported once in prepare's log); a hidden test set whose CSV
    lacks a row and holds text and 1e400 in the age column, and whose images include a LAB TIFF: the kernel
    finishes, the two rows it cannot predict get the training prior, counted against kaggle.max_bad_test_images."""
    wd = tmp_path / "wd"
    info = messy_competition(tmp_path / "messy.zip")
    cfg = tiny_config(
        tmp_path / "messy.zip",
        mlflow={"enabled": False},
        kaggle={"owner": "someone", "enable_gpu": False, "max_bad_test_images": 0.34},
    )
    cfg["data"]["meta_columns"] = ["age", "site"]
    run_snakemake(wd, cfg, "results/tiny/submission.csv")
    res = wd / "results" / "tiny"
    meta = json.loads((res / "prepared" / "meta.json").read_text())
    assert meta["meta_columns"] == [{"name": "age", "kind": "number"}, {"name": "site", "kind": "text"}]
    log = (res / "logs" / "prepare.log").read_text()
    assert log.count("column 'age' (data.meta_columns): 3 of 24 value(s) are not finite numbers") == 1, log
    assert log.count("test.csv: column 'age' (data.meta_columns): 2 of 6 value(s) are not finite numbers") == 1, log
    assert len(pd.read_csv(res / "submission.csv")) == 6

    run_snakemake(wd, cfg, "kernel")
    inp = tmp_path / "input"
    with zipfile.ZipFile(tmp_path / "messy.zip") as zf:
        zf.extractall(inp / "tiny")
    hidden = pd.read_csv(inp / "tiny" / "test.csv", dtype=str, keep_default_na=False)
    hidden[hidden["id"] != "te000"].to_csv(inp / "tiny" / "test.csv", index=False)  # te000: no metadata row
    (inp / "tiny" / "test" / "te002.png").write_bytes(lab_tiff())  # opens, does not convert
    shutil.copytree(res / "kernel-dataset", inp / "tiny-kagglecv")
    kernel = json.loads((res / "kernel" / "kernel-metadata.json").read_text())
    env = {**os.environ, "KAGGLE_INPUT": str(inp), "KAGGLE_WORKING": str(tmp_path / "working")}
    r = subprocess.run(
        [sys.executable, str(res / "kernel" / kernel["code_file"])],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = pd.read_csv(tmp_path / "working" / "submission.csv", dtype=str)
    assert out["id"].tolist() == info["test_ids"] and out["label"].notna().all()
    assert (
        f"test id 'te000' (row 2): has no row in {inp}/tiny/test.csv (data.meta_columns); predicted with the "
        "training prior" in r.stdout
    ), r.stdout[-3000:]
    assert "test id 'te002' (row 4):" in r.stdout and "conversion from LAB to RGB not supported" in r.stdout
    assert r.stdout.count("column 'age' (data.meta_columns): 1 of 6 value(s) are not finite numbers") == 1
    assert r.stdout.strip().splitlines()[-1].endswith("2 unreadable test image(s) predicted with the training prior")
