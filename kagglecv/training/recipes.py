"""Within one training job, beyond one schedule at one size: progressive resizing, a time budget, weight averaging,
and batch norm recomputed for the final weights (kagglecv.training.train calls these).

  train.stages       progressive resizing: [{img_size: 128, epochs: 6}, {img_size: 192, epochs: 2, lr: 0.0003}].
                     One model through the stages in order, each with its own one-cycle schedule (warm-up and
                     anneal per stage, peak at the stage's lr, else train.lr) on the same AdamW, whose moments
                     carry over; batch_size may be set per stage too. The image cache is sized for the largest
                     stage; validation, TTA and prediction use the last stage's size. `epochs` is their sum.
  train.time_budget  seconds for training plus the final predictions (TTA), instead of `epochs`: after the first
                     epoch the job knows an epoch's time and a prediction's, sets the epoch count that fits and
                     rebuilds the one-cycle schedule for it (as Ultralytics' `time=` does); after each later
                     epoch it plans again from the mean epoch so far, so a machine that slows down mid-run
                     costs epochs, not the budget (a job resumed after a kill keeps its plan).
  train.average      last_k: the weights of the last `average_epochs` epochs averaged (timm's avg_checkpoints), then
                     batch norm recomputed for them; an alternative to ema_decay.
  train.precise_bn   batch norm's running statistics recomputed for the final weights, over that many batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kagglecv.core.errors import InputError

BATCH_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d, torch.nn.SyncBatchNorm)
AVERAGE_BN_BATCHES = 200  # batch norm is always recomputed for averaged weights, over this many batches at least
BN_PASS_SHARE = 0.4  # a forward pass in train mode costs about this share of a training step (backward: the rest)


@dataclass
class Stage:
    """A stretch of epochs at one input size."""
    img_size: int
    epochs: int
    lr: float
    batch_size: int


def stages_of(cfg, size: int) -> list[Stage]:
    """train.stages, completed from the job's settings; without them one stage: the job's size and epochs."""
    if not cfg.stages:
        return [Stage(size, cfg.epochs, cfg.lr, cfg.batch_size)]
    if cfg.freeze_epochs or cfg.time_budget:
        raise InputError("train.stages: set their epochs and sizes only, not freeze_epochs or time_budget with them")
    out = []
    for k, st in enumerate(cfg.stages):
        unknown = set(st) - {"img_size", "epochs", "lr", "batch_size"}
        if unknown or "img_size" not in st or "epochs" not in st:
            raise InputError(f"train.stages[{k}]: {st}: each stage names img_size and epochs (lr, batch_size "
                             f"optional){f'; unknown: {sorted(unknown)}' if unknown else ''}")
        out.append(Stage(int(st["img_size"]), int(st["epochs"]), float(st.get("lr", cfg.lr)),
                         int(st.get("batch_size", cfg.batch_size))))
    return out


def steps_per_epoch(rows: int, batch_size: int) -> int:
    """Training batches of an epoch: full batches only (data.make_batches drops the last, short one), unless the
    rows fill fewer than one batch."""
    return rows // batch_size if rows > batch_size else 1


# ---------------------------------------------------------------- time budget


def epoch_costs(elapsed: float, done: int, valid_seconds: list[float]) -> tuple[float, float]:
    """(an epoch's seconds without validation, one validation pass's seconds), from the `done` epochs that took
    `elapsed` seconds and their validation passes. The first plan and every re-plan use both: a plain mean epoch
    counts the first epoch's validation in full, and the count swung as validated epochs came and went."""
    valid = sum(valid_seconds)
    return (elapsed - valid) / done, valid / max(len(valid_seconds), 1)


MAX_EPOCHS = 10_000  # a bound on the plan of a job whose epochs take no measurable time


def plan_epochs(budget: float, elapsed: float, done: int, epoch_s: float, valid_s: float, valid_every: int,
                predict_s: float) -> tuple[int, float]:
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


def predict_seconds(valid_seconds: float, n_valid: int, n_rows: int, views: int, bn_batches: int,
                    epoch_seconds: float, steps: int) -> float:
    """What the job spends after its epochs: each of `views` forward passes over `n_rows` rows costs what the
    validation pass did per row, and recomputing batch norm over `bn_batches` batches a share of an epoch."""
    per_row = valid_seconds / max(n_valid, 1)
    bn = BN_PASS_SHARE * epoch_seconds * min(bn_batches, steps) / max(steps, 1)
    return per_row * n_rows * views + bn


def rebuild_schedule(phase, make_scheduler, epochs: int, steps: int, done_steps: int) -> None:
    """The phase's one-cycle schedule rebuilt for `epochs` epochs of `steps` steps, moved on to `done_steps`."""
    import warnings

    phase.scheduler = make_scheduler(phase.optimizer, epochs * steps)
    phase.epochs = epochs
    with warnings.catch_warnings():  # stepping a new schedule without optimizer steps is the point here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(min(done_steps, epochs * steps - 1)):
            phase.scheduler.step()


# ---------------------------------------------------------------- weight averaging


class WeightAverage:
    """The running sum of the model's weights at the end of each of the last `k` epochs."""

    def __init__(self, k: int):
        self.k, self.sum, self.count = k, None, 0

    def update(self, model: torch.nn.Module, epoch: int, total: int) -> None:
        """After `epoch` (1-based) of `total`: add the weights if it is one of the last k."""
        if epoch <= total - self.k:
            return
        state = {n: t.detach().to("cpu", torch.float64) for n, t in model.state_dict().items()
                 if t.is_floating_point()}
        self.sum = state if self.sum is None else {n: self.sum[n] + t for n, t in state.items()}
        self.count += 1

    def apply(self, model: torch.nn.Module) -> int:
        """Load the average into the model (integer buffers keep their last value); the epochs averaged."""
        if not self.count:
            return 0
        current = model.state_dict()
        model.load_state_dict({n: (self.sum[n] / self.count).to(t.dtype) if n in self.sum else t
                               for n, t in current.items()})
        return self.count

    def state(self) -> dict:
        return {"sum": self.sum, "count": self.count}

    def load(self, state: dict | None) -> None:
        if state:
            self.sum, self.count = state["sum"], int(state["count"])


# ---------------------------------------------------------------- batch norm


@torch.no_grad()
def precise_bn(model, batches, run_batch, max_batches: int) -> int:
    """Recompute every batch norm's running mean and variance as the plain average over up to `max_batches`
    training batches seen by the final weights (detectron2's PreciseBN): the exponential running averages trail
    weights that kept moving, by far on short schedules. `run_batch(x)` feeds one batch's input to the model.
    Returns the batches used (0: no batch norm, or off)."""
    norms = [m for m in model.modules() if isinstance(m, BATCH_NORMS) and m.track_running_stats]
    if not norms or max_batches <= 0:
        return 0
    momenta, was_training = [m.momentum for m in norms], model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    model.train()
    used = 0
    try:
        for x, _ in batches:
            run_batch(x)
            used += 1
            if used >= max_batches:
                break
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return used
