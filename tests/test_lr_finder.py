"""kagglecv.training.lr_finder: the LR range test on a tiny timm model and scikit-learn's digits (16 px, 1 channel)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader

from kagglecv.data.augment import build_transform
from kagglecv.data.batches import CachedImages
from kagglecv.training.lr_finder import (
    LRFinderResult,
    lr_find,
    minimum,
    plot_lr_find,
    run_lr_find,
    steep,
    suggest,
    valley,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def one_thread():
    """Two cores shared with other jobs: keep each test on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    """uint8 NHWC images (8x8 digits scaled to 0..255) and labels: 600 of them."""
    d = load_digits()
    x = (d.images[:600] * (255 / 16)).round().astype(np.uint8)[..., None]
    return x, d.target[:600].astype(np.int64)


def make_loader(digits, batch_size=32, augment="light"):
    x, y = digits
    tf = build_transform(16, [0.5], [0.5], augment)
    return DataLoader(CachedImages(x, y, tf), batch_size=batch_size, shuffle=True, drop_last=True)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return timm.create_model("test_resnet", num_classes=10, in_chans=1)


def test_sweep_finite_suggestion_and_weights_restored(digits):
    model = tiny_model()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = lr_find(model, make_loader(digits), "cpu", num_it=60)  # 60 steps > one pass: cycles the loader

    assert isinstance(res, LRFinderResult)
    assert 1 <= len(res.lrs) == len(res.losses) <= 60
    assert np.all(np.isfinite(res.losses))
    assert res.lrs[0] == pytest.approx(1e-7)
    ratios = np.diff(np.log(res.lrs))  # exponential schedule: constant ratio between steps
    assert np.allclose(ratios, np.log(10 / 1e-7) / 60)
    assert set(res.suggestions) == {"valley", "minimum", "steep"}
    assert res.suggestion == res.suggestions["valley"]
    assert np.isfinite(res.suggestion) and 1e-7 <= res.suggestion <= 10
    assert all(np.isfinite(v) and v > 0 for v in res.suggestions.values())
    # weights (parameters and BatchNorm buffers) and mode are back as they were
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    assert not model.training


def test_stops_early_when_loss_diverges(digits):
    model = tiny_model()
    res = lr_find(model, make_loader(digits, augment="none"), "cpu", start_lr=1e-4, end_lr=1e8, num_it=100)
    assert res.stopped_early
    assert len(res.lrs) < 100
    assert np.all(np.isfinite(res.losses))
    assert np.isfinite(res.suggestion) and 1e-4 <= res.suggestion <= 1e8


def test_plot_is_a_png(digits, tmp_path):
    res = lr_find(tiny_model(), make_loader(digits), "cpu", num_it=30)
    out = tmp_path / "sub" / "lr_find.png"
    plot_lr_find(res, out)
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in out.parent.iterdir()] == ["lr_find.png"]  # no temp file left behind


def test_suggestion_rules_on_known_curves():
    lrs = np.logspace(-7, 1, 100)
    # down for 60 steps, then up: the valley is the first 60 points (start = -1 as in fastai)
    losses = np.concatenate([np.linspace(3.0, 1.0, 60), np.linspace(1.1, 5.0, 40)])
    lr, (mark_lr, mark_loss) = valley(lrs, losses)
    assert lr == lrs[-1 + 20 + 10] and mark_loss == losses[29]
    assert minimum(lrs, losses)[0] == pytest.approx(lrs[59] / 10)
    # steepest descent against log(lr): make one drop much steeper than the rest
    bumpy = losses.copy()
    bumpy[41:] -= 0.5
    assert steep(lrs, bumpy)[0] == lrs[40]
    # a 2-point valley at the very start: fastai would index lrs[-1]; we stay inside the curve
    assert valley(lrs[:3], np.array([2.0, 1.0, 3.0]))[0] == lrs[0]


def test_suggest_trims_like_fastai_and_drops_non_finite():
    lrs = np.logspace(-7, 1, 100)
    losses = np.concatenate([np.full(10, 0.1), np.linspace(3.0, 1.0, 85), np.full(5, 0.0)])
    values, _ = suggest(lrs, losses, num_it=100)  # the first 10 and the last 5 are ignored
    assert values["minimum"] == pytest.approx(lrs[94] / 10)
    with_nan = losses.copy()
    with_nan[50:] = np.nan
    values, _ = suggest(lrs, with_nan, num_it=100)
    assert values["minimum"] == pytest.approx(lrs[44] / 10)  # curve cut at the NaN, then the last 5 dropped
    with pytest.raises(ValueError, match="no finite loss"):
        suggest(lrs[:3], [np.nan] * 3, num_it=100)


def test_run_lr_find_writes_json_and_png(digits, tmp_path):
    x, y = digits
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    np.save(prepared / "train_images.npy", x[:240])
    (prepared / "meta.json").write_text(json.dumps({"task": "multiclass", "classes": [str(c) for c in range(10)]}))
    folds = pd.DataFrame({"id": [str(i) for i in range(240)], "y": y[:240], "fold": np.arange(240) % 3})
    folds.to_csv(tmp_path / "folds.csv", index=False)
    cfg = {
        "backbone": "test_resnet",
        "img_size": 16,
        "batch_size": 32,
        "lr": "auto",
        "device": "cpu",
        "fold": 0,
        "seed": 1,
        "metric": "accuracy",
    }
    out = run_lr_find(cfg, prepared, tmp_path / "folds.csv", tmp_path / "out", {"num_it": 20})

    saved = json.loads((tmp_path / "out" / "lr_find.json").read_text())
    assert saved["backbone"] == "test_resnet" and saved["n_train"] == 160
    assert saved["suggestion"] == out["suggestion"] == saved["suggestions"]["valley"]
    assert {"suggestion", "suggestions", "lrs", "losses", "backbone"} <= saved.keys()
    assert len(saved["lrs"]) == len(saved["losses"]) <= 20 and np.all(np.isfinite(saved["losses"]))
    assert 1e-7 <= saved["suggestion"] <= 10
    assert (tmp_path / "out" / "lr_find.png").read_bytes()[:8] == PNG_MAGIC


def test_bad_arguments(digits):
    with pytest.raises(ValueError, match="suggestion method"):
        lr_find(tiny_model(), make_loader(digits), "cpu", method="slide")
    with pytest.raises(ValueError, match="start_lr < end_lr"):
        lr_find(tiny_model(), make_loader(digits), "cpu", start_lr=1.0, end_lr=0.1)
