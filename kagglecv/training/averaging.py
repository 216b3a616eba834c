"""The final weights: averaged over the last epochs (train.average: last_k, timm's avg_checkpoints), and batch
norm's running statistics recomputed for them (train.precise_bn, detectron2's PreciseBN). On short schedules the
running averages trail the weights; averaged weights never had statistics of their own.
"""

from __future__ import annotations

import torch

BATCH_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d, torch.nn.SyncBatchNorm)
AVERAGE_BN_BATCHES = 200  # batch norm is always recomputed for averaged weights, over this many batches at least
BN_PASS_SHARE = 0.4  # a forward pass in train mode costs about this share of a training step (backward: the rest)


# ---------------------------------------------------------------- time budget


# ---------------------------------------------------------------- weight averaging


class WeightAverage:
    """The mean of the model's weights at the end of each of the last `k` epochs. With a known epoch count, the
    running sum of the epochs in that window; while the count may still change (train.time_budget plans it again
    after each epoch, kagglecv.training.budget), the weights of the last k epochs done, whichever epochs the plan
    ends with."""

    def __init__(self, k: int):
        self.k, self.sum, self.count = k, None, 0
        self.recent: list = []  # [[epoch, weights]] of the last k epochs, when the count is not known

    def update(self, model: torch.nn.Module, epoch: int, total: int | None) -> None:
        """After `epoch` (1-based) of `total` (None: not known yet): add the weights if it is one of the last k."""
        if total is not None and epoch <= total - self.k:
            return
        state = {n: t.detach().to("cpu", torch.float64) for n, t in model.state_dict().items() if t.is_floating_point()}
        if total is None:
            self.recent = [*self.recent, [epoch, state]][-self.k :]
            return
        self.sum = state if self.sum is None else {n: self.sum[n] + t for n, t in state.items()}
        self.count += 1

    def apply(self, model: torch.nn.Module) -> int:
        """Load the average into the model (integer buffers keep their last value); the epochs averaged."""
        if self.recent:
            self.sum, self.count = None, 0
            for _, state in self.recent:  # in epoch order, as the running sum adds them
                self.sum = state if self.sum is None else {n: self.sum[n] + t for n, t in state.items()}
                self.count += 1
        if not self.count:
            return 0
        current = model.state_dict()
        model.load_state_dict(
            {n: (self.sum[n] / self.count).to(t.dtype) if n in self.sum else t for n, t in current.items()}
        )
        return self.count

    def state(self) -> dict:
        return {"sum": self.sum, "count": self.count, "recent": self.recent}

    def load(self, state: dict | None) -> None:
        if state:
            self.sum, self.count = state["sum"], int(state["count"])
            self.recent = [[int(e), w] for e, w in state.get("recent") or []]


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
