"""The Snakemake report (rendered in headless Chromium) and predictions on new images, after one tiny run.

The run: a copy of the session's trained run (conftest.py `trained_run`: the tiny csv_images competition, 2 folds,
test_resnet (16 px) + test_convnext (32 px), 1 epoch, a stacked ensemble), to which the module adds a leaderboard
and LR range tests.
Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages ended by NUL
on fds 3 and 4), so no websocket package is needed. Screenshots of every report item are kept under
tests/artifacts/report/ (git-ignored); the test prints where.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import REPO, run_snakemake

ARTIFACTS = REPO / "tests" / "artifacts" / "report"
NAMES = ["test_resnet", "test_convnext"]
METHODS = ["mean", "best_single", "hill_climb", "stack"]  # the tiny run is scored by accuracy: no rank_mean
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# (category, label) of every report item; LR finder is added when the workflow includes the lr_find rule
ITEMS = [
    ("CV scores", "CV table (image)"),
    ("CV scores", "CV table (HTML)"),
    ("Training", "training curves"),
    ("Training", "job time"),
    ("OOF errors", "confusion matrix"),
    ("OOF errors", "confidently wrong and uncertain images"),
    ("Data", "class balance per fold"),
    ("Leaderboard", "leaderboard history"),
]


def targets(*names: str) -> tuple[str, ...]:
    """run_snakemake's args follow --configfile, which takes several values: an option in between (a repeated
    --cores) keeps the targets from being read as config files."""
    return ("--cores", "2", *names)


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


# ---------------------------------------------------------------- the run, shared by every test here


@pytest.fixture(scope="module")
def run(trained_run, tmp_path_factory):
    t0 = time.perf_counter()
    shared = trained_run.copy(tmp_path_factory.mktemp("report") / "run")
    wd, cfg, info = shared.wd, shared.cfg, shared.info
    res = shared.res
    assert "Nothing to be done" in (r := run_snakemake(wd, cfg, "-n")).stdout + r.stderr  # the copy is complete
    # Afterwards: a leaderboard (as `snakemake submit` appends it) and, where the workflow has the rule,
    # an LR range test: the next default run adds their figures and nothing else.
    pd.DataFrame(
        {
            "time": ["2026-01-01T10:00:00+00:00", "2026-01-02T09:30:00+00:00"],
            "competition": "tiny",
            "message": ["first", "second"],
            "cv": [0.31, 0.36],
            "public_score": [0.30, ""],
            "private_score": ["", ""],
            "ref": ["1", "2"],
        }
    ).to_csv(res / "leaderboard.csv", index=False)
    lr_rule = "lr_find" in run_snakemake(wd, cfg, "--list-rules").stdout.split()
    items = list(ITEMS)
    if lr_rule:
        run_snakemake(wd, cfg, *targets(*[f"results/tiny/lr_find/{b}/lr_find.json" for b in NAMES]))
        items.append(("LR finder", "LR range test"))
    plan = run_snakemake(wd, cfg, "-n", "--quiet", "rules").stdout
    planned = {k for k, v in re.findall(r"^(\w+)\s+(\d+)$", plan, flags=re.M) if k not in ("total", "all")}
    expected = {"report_leaderboard"} | ({"report_lr_find"} if lr_rule else set())
    assert planned == expected, plan
    run_snakemake(wd, cfg)
    print(f"\nleaderboard and LR range tests added to the trained run: {time.perf_counter() - t0:.0f} s")
    return wd, cfg, info, items


@pytest.fixture(scope="module")
def report_html(run):
    wd, cfg, *_ = run
    out = wd / "results" / "tiny" / "report.html"
    r = run_snakemake(wd, cfg, "--report", str(out))
    assert out.exists(), r.stdout + r.stderr
    return out


@pytest.mark.workflow
def test_report_figures_are_made_by_the_default_run(run):
    wd, cfg, info, items = run
    rep = wd / "results" / "tiny" / "report"
    names = {
        "cv_table.png",
        "training_curves.png",
        "job_time.png",
        "confusion_matrix.png",
        "oof_errors.png",
        "class_balance.png",
        "leaderboard.png",
    } | ({"lr_find.png"} if len(items) > len(ITEMS) else set())
    for name in names:
        assert (rep / name).read_bytes()[:8] == PNG_MAGIC, name
    html = (rep / "cv_table.html").read_text()
    for name in [*NAMES, *METHODS]:
        assert f">{name}" in html or f"ensemble: {name}" in html, name
    assert "✓" in html  # the chosen method is marked
    assert not list(rep.glob(".*"))  # atomic writes leave no temp files behind
    assert "Nothing to be done" in (r := run_snakemake(wd, cfg, "-n")).stdout + r.stderr


@pytest.mark.workflow
@pytest.mark.browser
def test_report_html_renders_every_item_in_chromium(run, report_html):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install -y chromium; .ci/run installs it)")
    wd, cfg, info, items = run
    scores = json.loads((wd / "results/tiny/scores.json").read_text())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, Chromium(chromium, profile) as c:
        c.open(report_html.resolve().as_uri())
        c.wait_for("document.querySelector('nav li a') !== null")
        cats = c.js("JSON.stringify(categories)")
        assert set(json.loads(cats)) == {cat for cat, _ in items}, cats
        assert "Competition" in c.js("document.body.innerText")  # report/workflow.rst on the start page
        for category, label in items:
            c.show_item(category, label)
            slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
            if label == "CV table (HTML)":
                text = c.wait_for_frame(
                    "document.querySelector('#cv-table') && document.querySelector('#cv-table').innerText"
                )
                rows = c.frame_js("document.querySelectorAll('#cv-table tbody tr').length")
                assert rows == len(NAMES) + len(METHODS), text
                for name in [*NAMES, *METHODS]:
                    assert name in text, (name, text)
                assert f"ensemble: {scores['ensemble']['method']} ✓" in text
            else:  # an <img> holding the PNG, decoded by the browser
                w, h, src = c.wait_for(
                    "(() => { const i = document.querySelector('#app > div > div.grow img');"
                    " return i && i.complete && i.naturalWidth ? [i.naturalWidth, i.naturalHeight, i.src.slice(0, 22)]"
                    " : null })()"
                )
                assert src.startswith("data:image/png") and w > 100 and h > 100, (label, w, h, src)
            time.sleep(0.3)  # let the browser paint before the screenshot
            c.screenshot(ARTIFACTS / f"{slug}.png")
            caption = c.show_info(category, label)
            assert len(caption) > 40 and caption.rstrip().endswith("."), (label, caption)
    print(f"\nreport screenshots: {ARTIFACTS}")


# ---------------------------------------------------------------- predictions


def _unzip_test_images(zip_path: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as zf:
        for name in zf.namelist():
            if name.startswith("test/") and name.endswith(".png"):
                (dest / Path(name).name).write_bytes(zf.read(name))
    return dest


@pytest.mark.workflow
def test_snakemake_predict_agrees_with_the_submission(run):
    wd, cfg, info, _ = run
    folder = _unzip_test_images(wd / "tiny.zip", wd / "new_images")
    run_snakemake(wd, cfg, *targets("predict"), "--config", f"predict_dir={folder}")
    res = wd / "results" / "tiny"
    pred = pd.read_csv(res / "predictions" / "new_images.csv", dtype={"image": str, "label": str})
    summary = json.loads((res / "predictions" / "new_images.json").read_text())
    sub = pd.read_csv(res / "submission.csv", dtype=str)
    meta = json.loads((res / "prepared" / "meta.json").read_text())
    classes = [str(c) for c in meta["classes"]]
    assert list(pred.columns) == ["image", *classes, "label"]
    assert np.allclose(pred[classes].sum(axis=1), 1.0, atol=1e-5)
    assert summary["skipped"] == [] and summary["n_images"] == len(sub) == len(info["test_ids"])
    assert summary["consistency_check"]["ok"], summary
    by_id = dict(zip(pred["image"].str.replace(".png", "", regex=False), pred["label"]))
    assert set(by_id) == set(sub["id"])
    for i, label in zip(sub["id"], sub["label"]):  # every id: the label the submission gave it
        assert by_id[i] == label, (i, by_id[i], label, summary)
    # the method the ensemble step chose, applied with its stored parameters: never a fallback
    assert summary["method"] == json.loads((res / "scores.json").read_text())["ensemble"]["method"]
    assert summary["notes"] == []


@pytest.mark.workflow
def test_predict_cli_lists_and_skips_unreadable_files(run):
    wd, cfg, info, _ = run
    folder = wd / "mixed"
    folder.mkdir()
    src = _unzip_test_images(wd / "tiny.zip", wd / "mixed_src")
    shutil.copy(src / "te000.png", folder / "te000.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden").write_text("ignored")
    rgb = np.zeros((13, 20, 3), dtype=np.uint8)
    rgb[:, :, 0] = 200
    Image.fromarray(rgb).save(folder / "wide_rgb.jpg")
    Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).save(folder / "deep16.png")
    r = subprocess.run(
        [sys.executable, "-m", "kagglecv", "predict", "--results", "results/tiny", str(folder), "--threads", "1"],
        cwd=wd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "broken.png" in r.stderr and "notes.txt" in r.stderr and ".hidden" not in r.stderr
    pred = pd.read_csv(wd / "results/tiny/predictions/mixed.csv", dtype={"image": str})
    assert pred["image"].tolist() == ["deep16.png", "te000.png", "wide_rgb.jpg"]
    summary = json.loads((wd / "results/tiny/predictions/mixed.json").read_text())
    assert [s["file"] for s in summary["skipped"]] == ["broken.png", "notes.txt"]
    assert all(s["reason"] for s in summary["skipped"])


@pytest.mark.workflow
def test_predict_without_a_folder_fails_clearly(run, tmp_path):
    wd, cfg, *_ = run
    r = run_snakemake(wd, cfg, *targets("predict"), "-n", check=False)
    assert r.returncode != 0 and "predict_dir" in r.stdout + r.stderr
    from kagglecv.core.errors import InputError
    from kagglecv.inference.predict import predict_folder

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "junk.bin").write_bytes(b"\0\1\2")
    with pytest.raises(InputError, match="no readable image"):
        predict_folder(wd / "results/tiny", empty)


def test_images_are_decoded_as_the_training_cache(tmp_path):
    """predict.load_folder decodes exactly as prepare writes the cache: mode, size, channels, resize mode."""
    from kagglecv.data.images import Decoder, write_cache
    from kagglecv.inference.predict import load_folder

    rng = np.random.default_rng(0)
    paths = []
    for name, arr in [
        ("a.png", rng.integers(0, 255, (20, 13, 3), dtype=np.uint8)),
        ("b.png", rng.integers(0, 255, (8, 8), dtype=np.uint8)),
        ("c.png", rng.integers(0, 255, (30, 30, 4), dtype=np.uint8)),
        ("d.jpg", rng.integers(0, 255, (90, 70, 3), dtype=np.uint8)),
    ]:
        Image.fromarray(arr).save(tmp_path / name)
        paths.append(tmp_path / name)
    for shape, resize in (([16, 16, 1], "squash"), ([12, 10, 3], "crop"), ([12, 12, 3], "pad")):
        names, images, skipped = load_folder(tmp_path, shape, resize)
        write_cache(
            tmp_path / "cache.npy", paths, ["a", "b", "c", "d"], Decoder(*shape[:2], shape[2] == 1, resize), workers=2
        )
        assert names == ["a.png", "b.png", "c.png", "d.jpg"] and not skipped
        assert images.dtype == np.uint8 and np.array_equal(images, np.load(tmp_path / "cache.npy"))
        (tmp_path / "cache.npy").unlink()


@pytest.mark.workflow
def test_every_ensemble_method_recipe_reproduces_its_test_predictions(run, tmp_path):
    """For each method: the ensemble step's own ensemble_test.csv is what predict's recipe gives on the stored
    per-fold test predictions, with the parameters stored in scores.json (never refitted)."""
    from kagglecv.inference.predict import check_against_submission, ensemble_recipe
    from kagglecv.scoring.ensemble import combine

    wd, *_ = run
    res = wd / "results" / "tiny"
    out = tmp_path / "res"
    out.mkdir()
    (out / "models").symlink_to(res / "models")
    shutil.copy(res / "folds.csv", out / "folds.csv")
    model_dirs = {b: [res / "models" / b / f"fold{k}" for k in range(2)] for b in NAMES}
    for method in METHODS:
        scores = combine(model_dirs, res / "folds.csv", "accuracy", out, method=method)
        used, members, params = ensemble_recipe(scores)
        assert (used, members) == (method, NAMES), method
        check = check_against_submission(out, scores, used, members, params)
        assert check["checked"] and check["ok"], (method, check)


def _prepared(tmp_path, meta: dict, labels: list, y: list, preds: np.ndarray, images: np.ndarray | None = None):
    """A prepared folder (`images`, grey 8x8 blanks by default; train.csv; meta.json) and an ensemble OOF file
    (tmp_path/oof.csv) with `preds`; the prepared folder."""
    n = len(y)
    images = np.zeros((n, 8, 8, 1), dtype=np.uint8) if images is None else images
    prep = tmp_path / "prepared"
    prep.mkdir()
    np.save(prep / "train_images.npy", images)
    ids = [f"img{i}" for i in range(n)]
    pd.DataFrame({"id": ids, "label": labels, "y": y}).to_csv(prep / "train.csv", index=False)
    (prep / "meta.json").write_text(json.dumps({**meta, "image_shape": list(images.shape[1:])}))
    oof = pd.DataFrame(preds, columns=[f"p{j}" for j in range(preds.shape[1])])
    oof.insert(0, "fold", np.arange(n) % 3), oof.insert(0, "y", y), oof.insert(0, "label", labels)
    oof.insert(0, "id", ids)
    oof.to_csv(tmp_path / "oof.csv", index=False)
    return prep


def test_report_library_handles_many_classes_and_rgb(tmp_path):
    """Figures for a 30-class RGB competition without wrong predictions (heatmaps, empty error panel)."""
    from kagglecv.report.folds import class_balance
    from kagglecv.report.oof import confusion, oof_errors

    n, k = 90, 30
    rng = np.random.default_rng(1)
    y = np.arange(n) % k
    p = np.full((n, k), 0.5 / (k - 1))
    p[np.arange(n), y] = 0.5
    rgb = rng.integers(0, 255, (n, 24, 24, 3), dtype=np.uint8)
    meta = {"classes": [f"class_{v}" for v in range(k)]}
    prep = _prepared(tmp_path, meta, [f"class_{v}" for v in y], y, p, images=rgb)
    pd.read_csv(tmp_path / "oof.csv")[["id", "y", "fold"]].to_csv(tmp_path / "folds.csv", index=False)
    confusion(tmp_path / "oof.csv", prep / "meta.json", tmp_path / "cm.png")
    class_balance(tmp_path / "folds.csv", prep / "meta.json", tmp_path / "cb.png")
    wrong, uncertain = oof_errors(tmp_path / "oof.csv", prep, tmp_path / "err.png")
    assert wrong.empty and len(uncertain) == 16
    for name in ("cm.png", "cb.png", "err.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC


def test_report_figures_of_multilabel_tasks_count_decisions_per_label(tmp_path):
    """Multilabel: true/false positives and false negatives per label at the fitted thresholds (0.5 without)."""
    from kagglecv.report.oof import confusion, oof_errors

    labels = ["a b", "b", "", "c", "a c"]
    preds = np.array([[0.9, 0.8, 0.1], [0.6, 0.7, 0.2], [0.1, 0.2, 0.3], [0.2, 0.4, 0.45], [0.7, 0.1, 0.9]])
    prep = _prepared(tmp_path, {"task": "multilabel", "classes": ["a", "b", "c"]}, labels, [2, 1, 0, 1, 2], preds)
    counts = confusion(tmp_path / "oof.csv", prep / "meta.json", tmp_path / "cm.png")
    # a: TP img0 img4, FP img1; b: TP img0 img1; c: TP img4, FN img3 (0.45 < 0.5)
    assert counts.tolist() == [[2, 1, 0], [2, 0, 0], [1, 0, 1]]
    fitted = {"ensemble": {"thresholds": [0.65, 0.5, 0.4]}}  # a stricter a, a laxer c
    counts = confusion(tmp_path / "oof.csv", prep / "meta.json", tmp_path / "cm2.png", scores=fitted)
    assert counts.tolist() == [[2, 0, 0], [2, 0, 0], [2, 0, 0]]
    wrong, smallest = oof_errors(tmp_path / "oof.csv", prep, tmp_path / "err.png")
    # probability misses summed: img3 0.2 + 0.4 + 0.55 = 1.15, img1 0.6 + 0.3 + 0.2 = 1.1, ..., img0 0.4 the least
    assert wrong["id"].tolist()[:2] == ["img3", "img1"] and smallest["id"].iloc[0] == "img0"
    assert (tmp_path / "cm.png").read_bytes()[:8] == (tmp_path / "err.png").read_bytes()[:8] == PNG_MAGIC


def test_report_figures_of_numeric_tasks_plot_values_and_grades(tmp_path):
    """Regression: predicted against true, errors ranked by size; ordinal: the confusion of grades at the fitted
    cut points (midpoints without), not an argmax over one output."""
    from kagglecv.report.oof import confusion, oof_errors

    y = [10.0, 20.0, 30.0, 40.0]
    pred = np.array([[12.0], [20.5], [15.0], [41.0]])
    prep = _prepared(tmp_path, {"task": "regression"}, [str(v) for v in y], y, pred)
    points = confusion(tmp_path / "oof.csv", prep / "meta.json", tmp_path / "pv.png")
    assert points.tolist() == [[10.0, 12.0], [20.0, 20.5], [30.0, 15.0], [40.0, 41.0]]
    largest, smallest = oof_errors(tmp_path / "oof.csv", prep, tmp_path / "err.png")
    assert largest["id"].tolist()[:2] == ["img2", "img0"] and smallest["id"].iloc[0] == "img1"

    ordinal = tmp_path / "ordinal"
    ordinal.mkdir()
    y = [0.0, 1.0, 2.0, 2.0, 1.0]
    pred = np.array([[0.2], [1.4], [1.6], [2.3], [0.6]])
    prep = _prepared(ordinal, {"task": "ordinal", "classes": ["0", "1", "2"]}, [str(v) for v in y], y, pred)
    cm = confusion(ordinal / "oof.csv", prep / "meta.json", ordinal / "cm.png")
    # midpoints 0.5, 1.5: decided 0, 1, 2, 2, 1
    assert cm.tolist() == [[1, 0, 0], [0, 2, 0], [0, 0, 2]]
    cm = confusion(
        ordinal / "oof.csv", prep / "meta.json", ordinal / "cm2.png", scores={"ensemble": {"thresholds": [0.7, 1.5]}}
    )
    assert cm.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 2]]  # 0.6 is now grade 0


# ---------------------------------------------------------------- a minimal DevTools-protocol client


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe: fd 3 carries commands to the browser,
    fd 4 its replies and events, each a JSON message ended by NUL."""

    FLAGS = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--remote-debugging-pipe",
        "--window-size=1600,1100",
    ]

    def __init__(self, binary: str, profile_dir: str):
        to_r, self._to_browser = os.pipe()
        self._from_browser, from_w = os.pipe()
        # the child's ends moved to fds >= 10, so that dup2 onto 3 and 4 never overwrites one of them
        child_r, child_w = fcntl.fcntl(to_r, fcntl.F_DUPFD_CLOEXEC, 10), fcntl.fcntl(from_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_r), os.close(from_w)

        def child_fds():  # dup2 onto a different fd makes the copy inheritable
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [binary, *self.FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            preexec_fn=child_fds,
            close_fds=False,
        )
        os.close(child_r), os.close(child_w)
        self._buf, self._id, self._events, self.session = b"", 0, [], None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:]

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from Chromium")
            if select.select([self._from_browser], [], [], left)[0]:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium exited: {self._stderr_tail()}")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, browser: bool = False, timeout: float = 60) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if self.session and not browser:
            msg["sessionId"] = self.session
        try:
            os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            raise RuntimeError(f"Chromium exited: {self._stderr_tail()}") from None
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def _wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self._events):
                if ev.get("method") == method:
                    return self._events.pop(i)
            self._events.append(self._read(deadline))

    def open(self, url: str, timeout: float = 120) -> None:
        page = next(t for t in self.send("Target.getTargets", browser=True)["targetInfos"] if t["type"] == "page")
        self.session = self.send(
            "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}, browser=True
        )["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Page.navigate", {"url": url})
        self._wait_event("Page.loadEventFired", timeout)

    def js(self, expression: str, context: int | None = None):
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        if context is not None:
            params["contextId"] = context
        r = self.send("Runtime.evaluate", params)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30, frame: bool = False):
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.frame_js(expression) if frame else self.js(expression)
            except (RuntimeError, StopIteration):  # the frame is not there yet
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"never true in the report: {expression}")
            time.sleep(0.2)

    def wait_for_frame(self, expression: str, timeout: float = 30):
        return self.wait_for(expression, timeout, frame=True)

    def frame_js(self, expression: str):
        """Evaluate in the content iframe (the report shows HTML results in one, from a data: URL)."""
        child = self.send("Page.getFrameTree")["frameTree"]["childFrames"][-1]
        context = self.send("Page.createIsolatedWorld", {"frameId": child["frame"]["id"]})["executionContextId"]
        return self.js(expression, context)

    def _click_row(self, category: str, label: str, button: int) -> None:
        """From the start menu: the category, then the result's eye (0) or info (1) button, as a user clicks."""
        self.js("document.querySelector('nav ol li a') && document.querySelector('nav ol li a').click()")  # home
        self.wait_for(
            f"[...document.querySelectorAll('nav li a')].some(a => a.innerText.trim() === {json.dumps(category)})"
        )
        link = f"[...document.querySelectorAll('nav li a')].find(a => a.innerText.trim() === {json.dumps(category)})"
        self.js(f"{link}.click()")
        rows = "[...document.querySelectorAll('nav table tbody tr')]"
        row = f"{rows}.find(r => r.cells[0].innerText.trim() === {json.dumps(label)})"
        self.wait_for(f"!!{row}")
        self.js(f"{row}.querySelectorAll('a')[{button}].click()")

    def show_item(self, category: str, label: str) -> None:
        self._click_row(category, label, 0)

    def show_info(self, category: str, label: str) -> str:
        self._click_row(category, label, 1)
        return self.wait_for("document.querySelector('nav .prose') && document.querySelector('nav .prose').innerText")

    def screenshot(self, path: Path) -> None:
        data = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        assert data[:8] == PNG_MAGIC
        Path(path).write_bytes(data)

    def close(self) -> None:
        try:
            self.send("Browser.close", browser=True, timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        self._stderr.close()


def test_job_time_figure_splits_each_job(tmp_path):
    """The report's job-time figure reads each job's metrics.json: start-up, epochs, TTA and the rest (fixed
    minus start-up minus TTA); jobs from before these figures existed are left out, not failed on."""
    from kagglecv.report.curves import job_time

    paths = []
    for k, (startup, tta, fixed, train) in enumerate([(5.0, 1.5, 7.0, 30.0), (6.0, 2.0, 9.0, 31.0)]):
        path = tmp_path / f"m{k}.json"
        path.write_text(
            json.dumps(
                {
                    "fold": k,
                    "startup_seconds": startup,
                    "tta_seconds": tta,
                    "fixed_seconds": fixed,
                    "train_seconds": train,
                }
            )
        )
        paths.append(str(path))
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"fold": 2, "train_seconds": 10.0}))
    df = job_time({"resnet18": [*paths, str(old)]}, tmp_path / "job_time.png")
    assert df["job"].tolist() == ["resnet18 fold 0", "resnet18 fold 1"]
    assert df["writing and the rest"].tolist() == [0.5, 1.0] and df["epochs"].tolist() == [30.0, 31.0]
    assert (tmp_path / "job_time.png").read_bytes()[:8] == PNG_MAGIC
