"""One epoch of training, and the loss each task trains with."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kagglecv.core.devices import inputs, is_main
from kagglecv.core.tasks import CLASSIFICATION, Task
from kagglecv.inference.models import forward
from kagglecv.training.schedule import Phase


def task_loss(task: Task, out, target, label_smoothing: float = 0.0, weight=None):
    """Cross-entropy (classification; soft targets after mixup or from teachers), BCE per label (multilabel), Huber
    on standardised targets (numeric: robust to the odd mislabelled grade, and MSE near the target). `weight`: one
    per row (pseudo-labelled rows count less, kagglecv.training.teachers); the loss is then the mean of weighted
    losses."""
    out, reduction = out.float(), "none" if weight is not None else "mean"
    if task.kind in CLASSIFICATION:
        if target.ndim == 2:  # soft targets: mixup / cutmix mixed the one-hot targets, or the teachers' probabilities
            loss = torch.sum(-target * F.log_softmax(out, 1), 1)
            return loss.mean() if weight is None else (loss * weight).mean()
        loss = F.cross_entropy(out, target, label_smoothing=label_smoothing, reduction=reduction)
    elif task.kind == "multilabel":
        loss = F.binary_cross_entropy_with_logits(out, target.float(), reduction=reduction)
        loss = loss if weight is None else loss.mean(1)
    else:
        loss = F.smooth_l1_loss(out[:, 0], target.float(), reduction=reduction)
    return loss if weight is None else (loss * weight).mean()


def train_epoch(
    model,
    batches,
    phase: Phase,
    scaler,
    device,
    amp_dtype,
    cfg,
    desc,
    ema=None,
    mixup=None,
    task: Task = Task("multiclass"),
) -> tuple[float, float]:
    """One pass over the training fold; returns (mean loss, images per second)."""
    model.train()
    total, n, t0 = 0.0, 0, time.perf_counter()
    bar = tqdm(batches, desc=desc, leave=False, mininterval=1, disable=not is_main())
    phase.optimizer.zero_grad(set_to_none=True)
    for step, (x, y) in enumerate(bar, 1):
        y, weight = y if isinstance(y, (tuple, list)) else (y, None)  # weights: rows labelled by teachers
        (x, meta), y = inputs(model, x, device), y.to(device, non_blocking=True)
        weight = None if weight is None else weight.to(device)
        target = y
        if mixup is not None and len(x) % 2 == 0:  # timm's Mixup pairs samples: an even batch is required
            x, target = mixup(x, y)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = task_loss(task, forward(model, x, meta), target, cfg.label_smoothing, weight)
        scaler.scale(loss / cfg.grad_accum).backward()
        if step % cfg.grad_accum == 0 or step == len(batches):
            scaler.step(phase.optimizer)
            scaler.update()
            phase.optimizer.zero_grad(set_to_none=True)
            phase.scheduler.step()
            if ema is not None:
                ema.update(model)
        total, n = total + loss.item() * len(y), n + len(y)
        bar.set_postfix(loss=f"{total / n:.4f}", img_s=f"{n / (time.perf_counter() - t0):.0f}")
    return total / max(n, 1), n / (time.perf_counter() - t0)
