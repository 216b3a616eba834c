"""The learning-rate schedule: one-cycle per phase, fine_tune's two phases, progressive resizing's stages.

train.stages       progressive resizing: [{img_size: 128, epochs: 6}, {img_size: 192, epochs: 2, lr: 0.0003}].
                   One model through the stages in order, each with its own one-cycle schedule (warm-up and
                   anneal per stage, peak at the stage's lr, else train.lr) on the same AdamW, whose moments
                   carry over; batch_size may be set per stage too. The image cache is sized for the largest
                   stage; validation, TTA and prediction use the last stage's size. `epochs` is their sum.
train.freeze_epochs  fastai's fine_tune: the head alone first, then every layer at discriminative rates.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from kagglecv.core.errors import InputError


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
    from kagglecv.config.train import check_stages

    check_stages(cfg)
    out = []
    for st in cfg.stages:
        out.append(
            Stage(
                int(st["img_size"]),
                int(st["epochs"]),
                float(st.get("lr", cfg.lr)),
                int(st.get("batch_size", cfg.batch_size)),
            )
        )
    return out


def steps_per_epoch(rows: int, batch_size: int) -> int:
    """Training batches of an epoch: full batches only (data.make_batches drops the last, short one), unless the
    rows fill fewer than one batch."""
    return rows // batch_size if rows > batch_size else 1


def rebuild_schedule(phase, make_scheduler, epochs: int, steps: int, done_steps: int) -> None:
    """The phase's one-cycle schedule rebuilt for `epochs` epochs of `steps` steps, moved on to `done_steps`."""
    import warnings

    phase.scheduler = make_scheduler(phase.optimizer, epochs * steps)
    phase.epochs = epochs
    with warnings.catch_warnings():  # stepping a new schedule without optimizer steps is the point here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(min(done_steps, epochs * steps - 1)):
            phase.scheduler.step()


def one_cycle(optimizer, cfg, total_steps: int, max_lr=None, pct_start: float | None = None):
    pct_start = cfg.pct_start if pct_start is None else pct_start
    if total_steps > 1 and pct_start * total_steps == 1:  # torch's OneCycleLR divides by zero on a 1-step warm-up
        pct_start = 1.5 / total_steps
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=cfg.lr if max_lr is None else max_lr,
        total_steps=total_steps,
        pct_start=pct_start,
        anneal_strategy="cos",
        div_factor=cfg.div_factor,
        final_div_factor=cfg.final_div_factor,
        cycle_momentum=True,
        base_momentum=cfg.moms[1],
        max_momentum=cfg.moms[0],
    )


@dataclass
class Phase:
    """A stretch of epochs with its own one-cycle schedule (fine_tune has two phases, progressive resizing one per
    stage, sharing the optimizer). A stage's schedule is made when the stage starts (`schedule`): two OneCycleLRs
    on one optimizer would overwrite each other's settings."""

    epochs: int
    frozen: bool  # body frozen, head only
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    stage: int = 0  # which of the job's stages (recipes.Stage) it trains
    make: object = None  # optimizer, total steps -> scheduler, for a schedule made later

    def schedule(self, steps: int) -> None:
        if self.scheduler is None:
            self.scheduler = self.make(self.optimizer, self.epochs * steps)


def optimizer_steps(cfg, batches: int) -> int:
    return math.ceil(batches / cfg.grad_accum)


def plan_phases(model, cfg, steps_per_epoch: int, stages: list[Stage] | None = None) -> list[Phase]:
    """Plain one-cycle (one per stage with progressive resizing); or, with freeze_epochs, fastai's fine_tune: head
    alone at lr, then every layer with discriminative learning rates from lr / 2 / lr_mult (earliest layers) to
    lr / 2 (head)."""
    steps = optimizer_steps(cfg, steps_per_epoch)
    params = list(model.parameters())
    if not cfg.freeze_epochs:
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        stages = stages or [Stage(0, cfg.epochs, cfg.lr, cfg.batch_size)]

        def make(optimizer, total: int, lr: float):
            return one_cycle(optimizer, cfg, total, max_lr=lr)

        phases = [
            Phase(st.epochs, False, opt, None, k, functools.partial(make, lr=st.lr)) for k, st in enumerate(stages)
        ]
        phases[0].schedule(steps)  # the first now; a later stage's when it starts (its batch size may differ)
        return phases
    head_ids = head_params(model)
    head, body = [p for p in params if id(p) in head_ids], [p for p in params if id(p) not in head_ids]
    opt1 = torch.optim.AdamW(head, lr=cfg.lr, weight_decay=cfg.weight_decay)
    chunks = [c for c in np.array_split(np.arange(len(body)), max(1, cfg.lr_groups - 1)) if len(c)]
    lrs = np.geomspace(cfg.lr / 2 / cfg.lr_mult, cfg.lr / 2, len(chunks) + 1).tolist()
    groups = [{"params": [body[i] for i in c]} for c in chunks] + [{"params": head}]
    opt2 = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return [
        Phase(cfg.freeze_epochs, True, opt1, one_cycle(opt1, cfg, cfg.freeze_epochs * steps, pct_start=0.99)),
        Phase(cfg.epochs, False, opt2, one_cycle(opt2, cfg, cfg.epochs * steps, max_lr=lrs)),
    ]


def head_params(model) -> set[int]:
    """ids of the head's parameters, what fine_tune trains alone first: timm's get_classifier()."""
    if not hasattr(model, "get_classifier"):
        raise InputError(
            f"train.freeze_epochs: a {type(model).__name__} has no get_classifier() to tell its head "
            f"from its body; set freeze_epochs: 0 for this backbone, or give the model that method"
        )
    return {id(p) for p in model.get_classifier().parameters()}


def set_frozen(model, frozen: bool) -> None:
    head_ids = head_params(model) if frozen else set()
    for p in model.parameters():
        p.requires_grad_(not frozen or id(p) in head_ids)
