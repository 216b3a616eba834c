"""Training recipes beyond one plain schedule (kagglecv.training.recipes, kagglecv.training.train): precise batch
norm on short schedules, progressive resizing, weight averaging, time budgets."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from kagglecv.config.members import input_size
from kagglecv.config.resources import train_runtime_minutes
from kagglecv.config.train import TrainConfig
from kagglecv.core.errors import InputError
from kagglecv.data.demo import make_digits_competition
from kagglecv.data.folds import make_folds
from kagglecv.data.prepare import prepare
from kagglecv.training.averaging import WeightAverage
from kagglecv.training.train import run


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
    cfg = TrainConfig(
        backbone="resnet18",
        epochs=2,
        batch_size=128,
        augment="light",
        img_size=16,
        amp=False,
        threads=2,
        precise_bn=precise_bn,
        tta="none",
    )
    r = run(cfg, digits / "p", digits / "folds.csv", tmp_path / "m", track=False)
    assert r["precise_bn_batches"] == (958 // 128 if precise_bn else 0)  # every full training batch, once
    if expected == "chance":
        assert r["score"] < 0.4, r["score"]
    else:
        assert r["score"] > 0.55, r["score"]


@pytest.fixture
def tiny(tmp_path):
    from helpers import write_csv_images_competition

    write_csv_images_competition(tmp_path / "c.zip", n_per_class=12)
    prepare(tmp_path / "c.zip", tmp_path / "prep")
    make_folds(tmp_path / "prep" / "train.csv", tmp_path / "folds.csv", 2, 0)
    return tmp_path / "prep", tmp_path / "folds.csv"


BASE = dict(backbone="test_resnet", batch_size=8, threads=1, tta="none", amp=False)


def test_progressive_resizing_trains_each_stage_at_its_size(tiny, tmp_path):
    from kagglecv.training.session import start

    cfg = TrainConfig(**BASE, stages=[{"img_size": 16, "epochs": 2}, {"img_size": 24, "epochs": 1, "lr": 0.001}])
    s = start(cfg, *tiny, test_bytes=0)
    assert [p.epochs for p in s.phases] == [2, 1] and s.dc["img_size"] == 16
    assert s.phases[1].scheduler is None  # made when its stage starts: one OneCycleLR per optimizer at a time
    s.enter(s.phases[1])
    assert s.dc["img_size"] == 24 and next(iter(s.train_batches))[0].shape[-1] == 24
    assert s.phases[1].optimizer.param_groups[0]["max_lr"] == 0.001  # the stage's own peak
    r = run(cfg, *tiny, tmp_path / "m", track=False)
    history = pd.read_csv(tmp_path / "m" / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    resolved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert resolved["img_size"] == 24  # predicted at the last stage's size
    assert 0 <= r["score"] <= 1
    assert input_size("test_resnet", {"stages": cfg.stages}) == 24  # the cache serves the largest stage


def test_a_stage_the_model_cannot_take_is_refused_before_training(tiny, tmp_path):
    cfg = TrainConfig(
        **{**BASE, "backbone": "test_convnext"}, stages=[{"img_size": 32, "epochs": 1}, {"img_size": 8, "epochs": 1}]
    )
    with pytest.raises(InputError, match="cannot take 8x8 input"):
        run(cfg, *tiny, tmp_path / "m", track=False)


def test_weight_average_is_the_mean_of_the_last_epochs():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    avg = WeightAverage(2)
    for epoch, value in ((1, 10.0), (2, 1.0), (3, 3.0)):
        with torch.no_grad():
            model[0].weight.fill_(value)
        avg.update(model, epoch, 3)
    assert avg.apply(model) == 2 and torch.all(model[0].weight == 2.0)  # epochs 2 and 3 only
    assert model[1].num_batches_tracked.dtype == torch.int64  # integer buffers keep their last value


def test_averaged_weights_get_their_batch_norm_recomputed(tiny, tmp_path):
    r = run(
        TrainConfig(**BASE, epochs=3, img_size=16, average="last_k", average_epochs=2, precise_bn=0),
        *tiny,
        tmp_path / "m",
        track=False,
    )
    assert r["averaged_epochs"] == 2 and r["precise_bn_batches"] > 0  # recomputed though precise_bn is off
    with pytest.raises(InputError, match="both choose the weights"):
        run(TrainConfig(**BASE, epochs=1, average="last_k", ema_decay=0.9), *tiny, tmp_path / "n", track=False)


def test_a_time_budget_sets_the_epochs_after_the_first(tiny, tmp_path):
    cfg = TrainConfig(**BASE, img_size=16, epochs=1, time_budget=6.0)
    r = run(cfg, *tiny, tmp_path / "m", track=False)
    budget = r["time_budget"]
    epochs = len(pd.read_csv(tmp_path / "m" / "history.csv"))
    assert budget["planned_epochs"] == epochs > 1  # `epochs: 1` is not what decided it
    assert budget["planned_seconds"] <= cfg.time_budget + budget["first_epoch_seconds"]
    assert budget["used_seconds"] > 0 and budget["epochs"] == epochs
    resolved = {**json.loads((tmp_path / "m" / "config.json").read_text()), "time_budget": 6.0}
    assert train_runtime_minutes(resolved) == 11  # the Slurm limit: the budget and a start-up margin
    with pytest.raises(InputError, match="not with freeze_epochs or gpus > 1"):
        run(TrainConfig(**BASE, time_budget=5.0, freeze_epochs=1), *tiny, tmp_path / "n", track=False)


def test_the_report_shows_a_budget_planned_against_used(tmp_path):
    from kagglecv.report.curves import job_time

    m = tmp_path / "m.json"
    m.write_text(
        json.dumps(
            {
                "fold": 0,
                "startup_seconds": 4.0,
                "tta_seconds": 1.0,
                "fixed_seconds": 6.0,
                "train_seconds": 50.0,
                "time_budget": {"budget_seconds": 60.0, "planned_seconds": 55.0, "used_seconds": 52.0},
            }
        )
    )
    df = job_time({"resnet18": [str(m)]}, tmp_path / "job_time.png")
    assert df[["budget", "planned", "used"]].iloc[0].tolist() == [60.0, 55.0, 52.0]
    assert (tmp_path / "job_time.png").stat().st_size > 0


def test_valid_every_validates_the_first_every_kth_and_the_last_epoch(tiny, tmp_path):
    from kagglecv.report.curves import training_curves

    r = run(TrainConfig(**BASE, epochs=5, img_size=16, valid_every=3), *tiny, tmp_path / "m", track=False)
    h = pd.read_csv(tmp_path / "m" / "history.csv")
    assert h.loc[h["valid_loss"].notna(), "epoch"].tolist() == [1, 3, 5]
    assert h["train_loss"].notna().all() and len(h) == 5
    assert r["score_no_tta"] == pytest.approx(h["valid_accuracy"].iloc[-1])  # the fold's figures: the last epoch's
    training_curves({"test_resnet": [tmp_path / "m" / "history.csv"]}, "accuracy", tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_a_time_budget_is_planned_again_when_the_machine_slows_down(tiny, tmp_path, monkeypatch):
    """Epochs that become slower after the first plan (a shared VM): the count is planned again after each epoch
    and the job ends near its budget instead of overrunning it by the slowdown."""
    import time as _time

    import kagglecv.training.train as train

    real, calls = train.train_epoch, []

    def slower(*args, **kw):
        calls.append(1)
        if len(calls) > 2:
            _time.sleep(1.0)  # from the third epoch on
        return real(*args, **kw)

    monkeypatch.setattr(train, "train_epoch", slower)
    cfg = TrainConfig(**BASE, img_size=16, epochs=1, time_budget=8.0, precise_bn=0)
    budget = run(cfg, *tiny, tmp_path / "m", track=False)["time_budget"]
    assert budget["replans"] and budget["planned_epochs"] < budget["first_planned_epochs"], budget
    assert budget["epochs"] == len(pd.read_csv(tmp_path / "m" / "history.csv")) == budget["planned_epochs"]
    assert budget["used_seconds"] <= cfg.time_budget * 1.25, budget


def test_a_plan_counts_each_validation_pass_it_will_make():
    from kagglecv.training.budget import epoch_costs, plan_epochs

    # two epochs of 10 s, the first validated (8 s): 10 s an epoch and 8 s a pass, not (28) / 2
    assert epoch_costs(28.0, 2, [8.0]) == pytest.approx((10.0, 8.0))
    # after the first epoch (18 s), one pass every 4 epochs and after the last, 5 s of final prediction:
    # 7 epochs validate after epochs 1, 4 and 7: 18 + 6 * 10 + 2 * 8 + 5 = 99
    assert plan_epochs(100.0, 18.0, 1, 10.0, 8.0, 4, 5.0) == (7, pytest.approx(99.0))
    # at 95 s, 7 epochs no longer fit; an epoch's share of the passes (10 + 8 / 4) would have planned 7 all the same
    assert plan_epochs(95.0, 18.0, 1, 10.0, 8.0, 4, 5.0) == (6, pytest.approx(89.0))
    assert plan_epochs(20.0, 18.0, 1, 10.0, 8.0, 4, 5.0)[0] == 1  # never fewer than the epochs done
    assert plan_epochs(100.0, 18.0, 1, 10.0, 8.0, 1, 5.0)[0] == 5  # validating each: 18 + 4 * 18 + 5 = 95


def test_a_budget_with_costly_validations_is_not_cut_when_they_are_skipped(tiny, tmp_path, monkeypatch):
    """valid_every: 4 and a validation pass that costs four epochs, on a clock of the test's own (an epoch 1 s, a
    validation pass 4 s, nothing else takes time): the machine's speed never changes, so no re-plan may change the
    count. The old model (the plain mean epoch, which counts the first epoch's validation in full) re-planned
    after the second epoch and swung as validated epochs came and went."""
    import time as real_time
    from types import SimpleNamespace

    import kagglecv.training.train as train

    clock = [0.0]

    def perf_counter():  # a microsecond a reading, so that a rate (images/s) has a duration to divide by
        clock[0] += 1e-6
        return clock[0]

    monkeypatch.setattr(train, "time", SimpleNamespace(perf_counter=perf_counter, time=real_time.time))

    def ticking(fn, seconds):
        def call(*args, **kw):
            clock[0] += seconds
            return fn(*args, **kw)

        return call

    monkeypatch.setattr(train, "train_epoch", ticking(train.train_epoch, 1.0))
    monkeypatch.setattr(train, "predict", ticking(train.predict, 4.0))
    cfg = TrainConfig(**BASE, img_size=16, epochs=1, time_budget=60.0, precise_bn=0, valid_every=4)
    budget = run(cfg, *tiny, tmp_path / "m", track=False)["time_budget"]
    assert budget["replans"] == [] and budget["planned_epochs"] == budget["epochs"] > 10, budget
