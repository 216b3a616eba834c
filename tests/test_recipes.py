"""Training recipes beyond one plain schedule (kagglecv.train): precise batch norm on short schedules."""

from __future__ import annotations

import pytest

from kagglecv.demo import make_digits_competition
from kagglecv.folds import make_folds
from kagglecv.prepare import prepare
from kagglecv.train import TrainConfig, run


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The demo's digits, prepared, in 3 folds: 958 training rows per fold."""
    root = tmp_path_factory.mktemp("digits")
    make_digits_competition(root / "d.zip", root / "solution.csv")
    prepare(root / "d.zip", root / "p")
    make_folds(root / "p" / "train.csv", root / "folds.csv", 3, 42)
    return root


@pytest.mark.parametrize("precise_bn, expected", [(0, "chance"), (200, "learned")])
def test_a_short_schedule_predicts_with_its_batch_norm_statistics_recomputed(digits, tmp_path, precise_bn, expected):
    """2 epochs of 7 steps at batch 128: the running averages of batch norm trail the weights so far that eval mode
    predicts near chance (0.28); recomputed over the training batches for the final weights, 0.62."""
    cfg = TrainConfig(backbone="resnet18", epochs=2, batch_size=128, augment="light", img_size=16, amp=False,
                      threads=2, precise_bn=precise_bn, tta="none")
    r = run(cfg, digits / "p", digits / "folds.csv", tmp_path / "m", track=False)
    assert r["precise_bn_batches"] == (958 // 128 if precise_bn else 0)  # every full training batch, once
    if expected == "chance":
        assert r["score"] < 0.4, r["score"]
    else:
        assert r["score"] > 0.55, r["score"]
