"""train.time_budget: seconds for training plus the final predictions (TTA), instead of `epochs`.

After the first epoch the job knows an epoch's time and a prediction's, sets the epoch count that fits and rebuilds
the one-cycle schedule for it (as Ultralytics' `time=` does); after each later epoch it plans again from the
epochs so far, so a machine that slows down mid-run costs epochs, not the budget (a job resumed after a kill plans
on from the epochs before it, their seconds kept in its checkpoint). One cost model for every plan: an epoch's
seconds without validation, and each validation pass the plan will make (`valid_every`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kagglecv.inference.tta import tta_passes
from kagglecv.training.averaging import BN_PASS_SHARE
from kagglecv.training.schedule import optimizer_steps, rebuild_schedule

if TYPE_CHECKING:
    from kagglecv.training.session import Session


def epoch_costs(elapsed: float, done: int, valid_seconds: list[float]) -> tuple[float, float]:
    """(an epoch's seconds without validation, one validation pass's seconds), from the `done` epochs that took
    `elapsed` seconds and their validation passes. The first plan and every re-plan use both: a plain mean epoch
    counts the first epoch's validation in full, and the count swung as validated epochs came and went."""
    valid = sum(valid_seconds)
    return (elapsed - valid) / done, valid / max(len(valid_seconds), 1)


MAX_EPOCHS = 10_000  # a bound on the plan of a job whose epochs take no measurable time


def plan_epochs(
    budget: float, elapsed: float, done: int, epoch_s: float, valid_s: float, valid_every: int, predict_s: float
) -> tuple[int, float]:
    """The most epochs (at least `done`) whose further epochs, their validation passes (after every
    `valid_every`-th epoch and the last: train.valid_every) and the final prediction fit in `budget` seconds after
    `elapsed`; and the seconds that plan comes to."""

    def seconds(n: int) -> float:
        passes = n // valid_every - done // valid_every + (n % valid_every != 0) if n > done else 0
        return elapsed + (n - done) * epoch_s + passes * valid_s + predict_s

    n = done
    while n < MAX_EPOCHS and seconds(n + 1) <= budget:  # seconds(n) grows with n by an epoch at least
        n += 1
    return n, seconds(n)


def predict_seconds(
    valid_seconds: float, n_valid: int, n_rows: int, views: int, bn_batches: int, epoch_seconds: float, steps: int
) -> float:
    """What the job spends after its epochs: each of `views` forward passes over `n_rows` rows costs what the
    validation pass did per row, and recomputing batch norm over `bn_batches` batches a share of an epoch."""
    per_row = valid_seconds / max(n_valid, 1)
    bn = BN_PASS_SHARE * epoch_seconds * min(bn_batches, steps) / max(steps, 1)
    return per_row * n_rows * views + bn


def plan_budget(s: Session, spent: float, train_seconds: float, valid_seconds: list[float], n_test: int) -> None:
    """train.time_budget, after the first epoch: the epoch count whose training and final predictions fit, and the
    one-cycle schedule rebuilt for it."""
    cfg, phase, steps = s.cfg, s.phases[-1], optimizer_steps(s.cfg, len(s.train_batches))
    n_valid = len(s.data.va_idx)
    after = predict_seconds(
        valid_seconds[-1],
        n_valid,
        n_valid + n_test,
        tta_passes(cfg),
        cfg.precise_bn,
        train_seconds,
        len(s.train_batches),
    )
    epochs, planned = plan_epochs(
        cfg.time_budget, spent, 1, *epoch_costs(spent, 1, valid_seconds), cfg.valid_every, after
    )
    rebuild_schedule(phase, phase.make, epochs, steps, steps)
    s.budget = {
        "budget_seconds": cfg.time_budget,
        "planned_epochs": epochs,
        "planned_seconds": round(planned, 2),
        "first_epoch_seconds": round(spent, 2),
        "predict_seconds": round(after, 2),
        "first_planned_epochs": epochs,
        "replans": [],
    }  # replans: [after epoch, epochs planned then]
    print(
        f"train.time_budget {cfg.time_budget:g} s: {epochs} epoch(s) of {spent:.1f} s and {after:.1f} s of "
        f"final predictions",
        flush=True,
    )


def replan_budget(s: Session, elapsed: float, done: int, valid_seconds: list[float]) -> None:
    """train.time_budget, after each later epoch: the count planned again from the epochs so far, and the
    schedule rebuilt from where it is. A shared machine slows down or speeds up mid-run, and a plan made once would then
    overrun the budget."""
    phase, b, steps = s.phases[-1], s.budget, optimizer_steps(s.cfg, len(s.train_batches))
    epoch_s, valid_s = epoch_costs(elapsed, done, valid_seconds)
    epochs, planned = plan_epochs(
        s.cfg.time_budget, elapsed, done, epoch_s, valid_s, s.cfg.valid_every, b["predict_seconds"]
    )
    if epochs != phase.epochs:
        rebuild_schedule(phase, phase.make, epochs, steps, done * steps)
        b["replans"].append([done, epochs])
        b["planned_epochs"], b["planned_seconds"] = epochs, round(planned, 2)
        print(
            f"train.time_budget {s.cfg.time_budget:g} s: {epochs} epoch(s) after all (epochs of "
            f"{epoch_s:.1f} s so far, validation passes of {valid_s:.1f} s)",
            flush=True,
        )
