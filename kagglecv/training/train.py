"""Train one (backbone, fold): timm model by name, albumentations, one-cycle, AMP on GPU, TTA.

The task (kagglecv.core.tasks) sets the head's width, the loss and what a prediction is: softmax probabilities
(binary, multiclass: cross-entropy), sigmoid probabilities (multilabel: BCE per label), or values (regression,
ordinal: Huber on standardised targets).

Writes into `out_dir`: oof.csv and test.csv (predictions, columns p0..), metrics.json, config.json,
history.csv (one row per epoch) and model.pt. Every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kagglecv.training import distributed
from kagglecv.scoring import metrics
from kagglecv.core.tasks import CLASSIFICATION, NUMERIC, Task
from kagglecv.data.augment import resolve_tta, tta_blend, tta_views
from kagglecv.data.batches import loader_workers, make_batches, open_cache, rng_state, set_rng_state, use_device_path
from kagglecv.core.errors import InputError
from kagglecv.core.files import atomic_path, read_table, write_csv, write_json
from kagglecv.core.gpus import lease_gpu
from kagglecv.core.layout import ModelFiles, PreparedFiles, record_file
from kagglecv.data.meta import MetaEncoder
from kagglecv.inference.models import build_model, check_forward, forward
from kagglecv.training.recipes import AVERAGE_BN_BATCHES, Stage, WeightAverage, epoch_costs, plan_epochs, precise_bn, predict_seconds, \
    rebuild_schedule, stages_of
from kagglecv.tracking.tracker import Tracker


@dataclass
class TrainConfig:
    backbone: str  # the entry's name: a timm model name ("resnet18", "convnext_tiny.fb_in22k") unless `model` says
    model: str | None = None  # a timm name for this entry, or the user's factory FILE.py:FUNCTION / MODULE:FUNCTION
    model_args: dict = field(default_factory=dict)  # keyword arguments of the factory (kagglecv.inference.models)
    head: str = "linear"  # linear: the model's own classifier | gem: GeM pooling, learned p | multi_dropout
    gpus: int = 1  # devices one job trains on; more than 1: DistributedDataParallel, one process per device
    fold: int = 0
    seed: int = 42
    metric: str = "accuracy"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3  # peak LR of the one-cycle schedule ("auto" in the config: resolved from lr_find.json first)
    weight_decay: float = 1e-2  # AdamW, decoupled
    pct_start: float = 0.25  # fraction of steps spent warming up (fastai's default)
    div_factor: float = 25.0  # start LR = lr / div_factor
    final_div_factor: float = 1e5  # end LR = start LR / final_div_factor
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95)  # Adam beta1 cycled high -> low -> high
    img_size: int | None = None  # None: the model's own data config input size
    pretrained: bool = False
    pretrained_file: str | None = None  # local weights file (offline); implies pretrained
    augment: str = "none"  # preset in augment.AUGMENT_PRESETS. none: on small grey images (Fashion-MNIST, 3 and
    #                        10 epochs) light augmentation cost 2-3 points and 15% of the speed (bench/README.md);
    #                        photo competitions name theirs (flip, fastai) in their configs
    tta: str = "auto"  # none | flip | dihedral | augment (n random passes of the train augmentation) | auto: the
    #                    flips the augment preset trains with (augment.resolve_tta), none when it has none
    tta_n: int = 4  # passes for tta=augment
    tta_beta: float = 0.25  # weight of the plain prediction in the blend, as fastai's tta(beta)
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0  # > 0 enables mixup (timm.data.Mixup); soft targets replace label smoothing's
    cutmix_alpha: float = 0.0  # > 0 enables cutmix; with both set, timm switches between them per batch
    ema_decay: float = 0.0  # > 0 keeps an exponential moving average of the weights and predicts with it
    precise_bn: int = 200  # batches over which batch norm's statistics are recomputed for the final weights; 0: off.
    #                        On short schedules the running averages lag the weights: 20 steps of Fashion-MNIST
    #                        left every fold at chance in eval mode (0.28 -> 0.62 on digits at 2 epochs)
    stages: list = field(default_factory=list)  # progressive resizing: [{img_size, epochs, lr?, batch_size?}, ...]
    time_budget: float | None = None  # seconds for the epochs and the final predictions, instead of `epochs`
    valid_every: int = 1  # validate after every k-th epoch (and the first and last): validation is not free
    average: str = "none"  # none | last_k: predict with the mean weights of the last `average_epochs` epochs
    average_epochs: int = 3
    grad_accum: int = 1  # optimizer step every N batches: an effective batch of N * batch_size
    freeze_epochs: int = 0  # fastai's fine_tune: first train the head alone for N epochs, then unfreeze
    lr_mult: float = 100.0  # after unfreezing, the earliest layers train at lr / 2 / lr_mult, the head at lr / 2
    lr_groups: int = 3  # layer groups spanning that discriminative range (body split evenly, head last)
    data_path: str = "auto"  # device: uint8 cache on the device, batch augmentation there; loader: DataLoader +
    #                          albumentations per sample; auto: device on a GPU when the cache fits, else loader
    drop_rate: float = 0.0
    amp: bool = True  # mixed precision on GPUs (bf16 where supported, else fp16 + grad scaler); full precision on
    #                   CPUs unless amp_dtype says bf16: on a Xeon with AMX, bf16 jobs of the workflow were not
    #                   reproducible and some diverged to NaN (README, GPUs); fp32 on CPU is both
    amp_dtype: str = "auto"  # auto (as above) | bf16: bf16 autocast on any device (1.5x the images/s of fp32 on a
    #                          CPU with native bf16, at that risk) | fp16: fp16 + grad scaler, GPU only
    channels_last: bool | None = None  # NHWC model and batches; None: on GPUs, and on CPUs where AMP runs
    #                                    (oneDNN's bf16 convolutions are NHWC-native; in fp32 on CPU it did not pay)
    num_workers: int | None = None  # DataLoader workers; None: 0 on CPU, threads - 1 on a GPU (data.loader_workers)
    threads: int | None = None  # torch CPU threads (the workflow passes the rule's `threads:`); None: torch's own
    device: str = "auto"  # auto | cpu | cuda
    extra: dict = field(default_factory=dict)  # timm.create_model kwargs (e.g. drop_path_rate)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"train config: unknown key(s) {unknown}; known keys: {sorted(names)}")
        d = dict(d)
        if "lr" in d and (isinstance(d["lr"], bool) or not isinstance(d["lr"], (int, float))):
            raise InputError(f"train.lr: {d['lr']!r} is not a number here; lr: auto is resolved by the workflow "
                             "from lr_find.json (kagglecv.steps.train_step)")
        if "moms" in d:
            d["moms"] = tuple(d["moms"])
        return cls(**d)


def pick_device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cpu":
        return torch.device("cpu")
    if distributed.world() > 1:  # the devices were leased before the processes started
        return distributed.device()
    lease_gpu()  # sets CUDA_VISIBLE_DEVICES before CUDA initialises; None when there is no GPU
    if torch.cuda.is_available():
        return torch.device("cuda")
    if cfg.device == "cuda":
        raise InputError("train.device: cuda requested but no GPU is available; use device: auto")
    return torch.device("cpu")


def autocast_dtype(device: torch.device, cfg: TrainConfig) -> torch.dtype | None:
    """The autocast dtype (None: full precision), from train.amp and train.amp_dtype."""
    if not cfg.amp:
        return None
    if cfg.amp_dtype == "bf16":
        return torch.bfloat16
    if device.type != "cuda":
        if cfg.amp_dtype == "fp16":
            raise InputError("train.amp_dtype: fp16 needs a GPU (the grad scaler); use bf16 or auto on CPU")
        return None
    if cfg.amp_dtype == "fp16":
        return torch.float16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def place_model(model, device: torch.device, cfg: TrainConfig):
    """The model on `device`, in channels_last when train.channels_last says (None: on GPUs, and on CPUs where
    AMP runs). The choice rides on the model (and on its EMA copy), so every batch fed to it follows: see
    `as_input`."""
    model = model.to(device)
    auto = device.type == "cuda" or autocast_dtype(device, cfg) is not None
    model.kagglecv_channels_last = auto if cfg.channels_last is None else bool(cfg.channels_last)
    if model.kagglecv_channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def as_input(model, x: torch.Tensor) -> torch.Tensor:
    """A batch in the memory format its model was placed in."""
    return x.contiguous(memory_format=torch.channels_last) if getattr(model, "kagglecv_channels_last", False) else x


def inputs(model, x, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images, metadata rows or None) of a batch's input, on `device`, images in the model's memory format."""
    x, meta = x if isinstance(x, (tuple, list)) else (x, None)
    return as_input(model, x.to(device, non_blocking=True)), (None if meta is None else meta.to(device))


def task_loss(task: Task, out, target, label_smoothing: float = 0.0, weight=None):
    """Cross-entropy (classification; soft targets after mixup or from teachers), BCE per label (multilabel), Huber
    on standardised targets (numeric: robust to the odd mislabelled grade, and MSE near the target). `weight`: one
    per row (pseudo-labelled rows count less, kagglecv.training.teachers); the loss is then the mean of weighted losses."""
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


@torch.no_grad()
def predict(model, loader, device, amp_dtype, tta: str = "none", task: Task = Task("multiclass")) -> np.ndarray:
    """The task's predictions (probabilities or values); with tta=flip/dihedral, the mean over the deterministic
    views only. Views are averaged after activation: on the scale the metric reads."""
    model.eval()
    out = []
    for x, _ in loader:
        x, meta = inputs(model, x, device)
        batches = tta_views(x, tta) if tta != "none" else [x]
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            probs = torch.stack([task.activate(forward(model, v, meta).float()) for v in batches]).mean(0)
        out.append(probs.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def predict_tta(model, images, cfg: TrainConfig, dc: dict, device, amp_dtype, on_device: bool = False,
                rows=None, task: Task = Task("multiclass"), meta=None) -> np.ndarray:
    """The plain prediction of `rows` of the cache (all when None) blended with the TTA views (fastai's beta
    blend), streamed a batch at a time; `meta`: the encoded metadata of every cache row, for models built with
    it. An image's random views (tta=augment) are seeded by its own pixels, so it gets the same prediction in
    the test set, a Kaggle kernel or `predict`, whatever rows surround it."""
    def batches(augment: str, seed: int = 0):
        return make_batches(images, None, dc, device, augment=augment, shuffle=False, batch_size=cfg.batch_size * 2,
                            seed=seed, on_device=on_device, rows=rows, per_image=True, meta=meta,
                            num_workers=loader_workers(cfg.num_workers, cfg.threads, device))

    tta = resolve_tta(cfg.tta, cfg.augment)
    plain = predict(model, batches("none"), device, amp_dtype, task=task)
    if tta == "none":
        return plain
    if tta == "augment":
        views = [predict(model, batches(cfg.augment, cfg.seed + i), device, amp_dtype, task=task)
                 for i in range(cfg.tta_n)]
    else:
        views = [predict(model, batches("none"), device, amp_dtype, tta=tta, task=task)]
    return tta_blend(plain, views, cfg.tta_beta)


def one_cycle(optimizer, cfg: TrainConfig, total_steps: int, max_lr=None, pct_start: float | None = None):
    pct_start = cfg.pct_start if pct_start is None else pct_start
    if total_steps > 1 and pct_start * total_steps == 1:  # torch's OneCycleLR divides by zero on a 1-step warm-up
        pct_start = 1.5 / total_steps
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr if max_lr is None else max_lr, total_steps=total_steps, pct_start=pct_start,
        anneal_strategy="cos", div_factor=cfg.div_factor, final_div_factor=cfg.final_div_factor,
        cycle_momentum=True, base_momentum=cfg.moms[1], max_momentum=cfg.moms[0])


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


def optimizer_steps(cfg: TrainConfig, batches: int) -> int:
    return math.ceil(batches / cfg.grad_accum)


def plan_phases(model, cfg: TrainConfig, steps_per_epoch: int, stages: list[Stage] | None = None) -> list[Phase]:
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

        phases = [Phase(st.epochs, False, opt, None, k, functools.partial(make, lr=st.lr))
                  for k, st in enumerate(stages)]
        phases[0].schedule(steps)  # the first now; a later stage's when it starts (its batch size may differ)
        return phases
    head_ids = head_params(model)
    head, body = [p for p in params if id(p) in head_ids], [p for p in params if id(p) not in head_ids]
    opt1 = torch.optim.AdamW(head, lr=cfg.lr, weight_decay=cfg.weight_decay)
    chunks = [c for c in np.array_split(np.arange(len(body)), max(1, cfg.lr_groups - 1)) if len(c)]
    lrs = np.geomspace(cfg.lr / 2 / cfg.lr_mult, cfg.lr / 2, len(chunks) + 1).tolist()
    groups = [{"params": [body[i] for i in c]} for c in chunks] + [{"params": head}]
    opt2 = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return [Phase(cfg.freeze_epochs, True, opt1, one_cycle(opt1, cfg, cfg.freeze_epochs * steps, pct_start=0.99)),
            Phase(cfg.epochs, False, opt2, one_cycle(opt2, cfg, cfg.epochs * steps, max_lr=lrs))]


def head_params(model) -> set[int]:
    """ids of the head's parameters, what fine_tune trains alone first: timm's get_classifier()."""
    if not hasattr(model, "get_classifier"):
        raise InputError(f"train.freeze_epochs: a {type(model).__name__} has no get_classifier() to tell its head "
                         f"from its body; set freeze_epochs: 0 for this backbone, or give the model that method")
    return {id(p) for p in model.get_classifier().parameters()}


def set_frozen(model, frozen: bool) -> None:
    head_ids = head_params(model) if frozen else set()
    for p in model.parameters():
        p.requires_grad_(not frozen or id(p) in head_ids)


def train_epoch(model, batches, phase: Phase, scaler, device, amp_dtype, cfg, desc, ema=None,
                mixup=None, task: Task = Task("multiclass")) -> tuple[float, float]:
    """One pass over the training fold; returns (mean loss, images per second)."""
    model.train()
    total, n, t0 = 0.0, 0, time.perf_counter()
    bar = tqdm(batches, desc=desc, leave=False, mininterval=1, disable=not distributed.is_main())
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


def data_fingerprint(prepared: PreparedFiles, folds_csv, teacher_csv=None) -> str:
    """What a checkpoint was trained on: the content of folds.csv and the prepared tables, and the image cache
    files' size and modification time (rebuilding the cache changes them; hashing gigabytes every epoch would
    cost more than it saves)."""
    h = hashlib.sha256()
    for p in (Path(folds_csv), prepared.meta, prepared.train, *([Path(teacher_csv)] if teacher_csv else [])):
        h.update(p.read_bytes())
    for p in (prepared.train_images, prepared.test_images):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def save_resume(path: Path, epoch: int, history, s, resolved, fingerprint: str, recipe: dict | None = None) -> None:
    """End-of-epoch state of session `s`, so a killed job restarts from its last complete epoch and ends as an
    uninterrupted one would: weights, optimizers, schedules, the recipe's state, and every random state the next
    epochs draw from (torch's, numpy's, Python's, and the current stage's training batches' own: data.rng_state).
    Only tensors and plain values, so that it loads with weights_only=True (a checkpoint is never code)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"epoch": epoch, "history": history, "model": s.model.state_dict(), "scaler": s.scaler.state_dict(),
             "phases": [(p.optimizer.state_dict(), p.scheduler.state_dict() if p.scheduler else None)
                        for p in s.phases],
             "ema": s.ema.state_dict() if s.ema is not None else None, "config": resolved, "data": fingerprint,
             "recipe": recipe,
             "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
             "batches_rng": {"stage": s.stage, **rng_state(s.train_batches)},
             "numpy_rng": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}
    with atomic_path(path, durable=False) as tmp:  # a torn checkpoint after a crash only means starting over
        torch.save(state, tmp)


def load_resume(path: Path, resolved, fingerprint: str, s) -> tuple[int, list, dict]:
    """(epochs already done, their history, the saved state) into session `s`; nothing when the config, the folds
    or the data changed since the checkpoint was written (the job then starts over)."""
    if not path.exists():
        return 0, [], {}
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unreadable or unsafe checkpoint: train from scratch
        print(f"{path}: cannot load the checkpoint ({type(e).__name__}); starting over", flush=True)
        return 0, [], {}
    for key, now, what in (("config", resolved, "another config"), ("data", fingerprint, "other data or folds")):
        if state.get(key) != now:
            print(f"{path}: saved with {what}; starting over", flush=True)
            return 0, [], {}
    s.model.load_state_dict(state["model"]), s.scaler.load_state_dict(state["scaler"])
    restore_recipe(s, state.get("recipe"))  # the planned epochs first: the schedules are made for them
    for phase, (opt_state, sched_state) in zip(s.phases, state["phases"]):
        phase.optimizer.load_state_dict(opt_state)
        if sched_state is not None:
            if phase.scheduler is None:  # a later stage's: made as it was when the checkpoint was written
                phase.scheduler = phase.make(phase.optimizer, 1)
            phase.scheduler.load_state_dict(sched_state)
    if s.ema is not None and state["ema"] is not None:
        s.ema.load_state_dict(state["ema"])
    name, keys, pos, has_gauss, cached = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if state.get("python_rng") is not None:
        random.setstate(state["python_rng"])
    saved = state.get("batches_rng")
    if saved is not None and state["epoch"] < len(s.epochs) and s.epochs[state["epoch"]].stage == saved["stage"]:
        s.to_stage(saved["stage"])  # the next epoch goes on drawing from the batches the last one drew from
        set_rng_state(s.train_batches, saved)
    print(f"resuming from {path} after epoch {state['epoch']}", flush=True)
    return state["epoch"], state["history"], state


@dataclass
class Fold:
    """One job's data: the folds table, the memory-mapped train cache, the targets, this fold's rows and task."""
    folds: pd.DataFrame
    images: np.ndarray
    y: np.ndarray
    tr_idx: np.ndarray  # training rows (cache rows = folds.csv rows)
    va_idx: np.ndarray  # this fold's held-out rows
    task: Task  # numeric tasks carry the target scale of the training rows
    encoder: MetaEncoder | None = None  # data.meta_columns, fitted on the training rows only
    meta: np.ndarray | None = None  # every row's encoded metadata (float32), for the batches
    # With a teacher (kagglecv.training.teachers): `images` also holds the test images after the training ones, and the
    # training batches are these rows, targets (float, the task's scale as the model learns it) and weights.
    train_rows: np.ndarray | None = None
    train_y: np.ndarray | None = None
    weights: np.ndarray | None = None

    @property
    def n_meta(self) -> int:
        return 0 if self.encoder is None else self.encoder.width

    def training(self) -> tuple:
        """(rows, targets as the model learns them, weights or None) of the training batches."""
        if self.train_rows is not None:
            return self.train_rows, self.train_y, self.weights
        return self.tr_idx, self.task.standardise(self.y)[self.tr_idx], None


def attach_teacher(data: Fold, teacher_csv, prepared: PreparedFiles, cfg: TrainConfig) -> None:
    """The rows a teacher file adds to the fold's training (pseudo-labelled test images; distilled targets of the
    training rows), with the test images read from the test cache beside the training ones (data.Stacked)."""
    from kagglecv.data.batches import Stacked
    from kagglecv.training.teachers import read_teacher, true_targets

    if cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0:
        raise InputError("train.mixup_alpha/cutmix_alpha: mixup mixes class labels, not the teachers' targets; set "
                         "them to 0 with pseudo_labels or distill")
    task, test_table = data.task, read_table(prepared.test)
    train_t, rows, test_t, w = read_teacher(teacher_csv, data.folds, data.tr_idx, test_table["id"].tolist(), task)
    width = test_t.shape[1] if test_t.ndim == 2 else 1
    labelled = train_t if train_t is not None else true_targets(task, data.folds.iloc[data.tr_idx], width)
    targets = np.concatenate([labelled, test_t]).astype(np.float32)
    if task.kind in NUMERIC:  # one value per row, standardised as the labels are
        targets = task.standardise(targets[:, 0]).astype(np.float32)
    n = len(data.images)
    data.images = Stacked(data.images, open_cache(prepared.test_images))
    data.train_rows = np.concatenate([data.tr_idx, n + rows])
    data.train_y, data.weights = targets, np.concatenate([np.ones(len(data.tr_idx)), w]).astype(np.float32)
    if data.meta is not None:
        data.meta = np.concatenate([data.meta, data.encoder.transform(test_table)])


def load_fold(cfg: TrainConfig, prepared_dir, folds_csv, teacher_csv=None) -> Fold:
    """Seed this job, then read its fold (and the rows its teacher file adds). Numeric tasks get their target
    scale, and metadata its encoding, from this fold's labelled training rows only."""
    torch.manual_seed(cfg.seed * 1000 + cfg.fold)
    np.random.seed(cfg.seed * 1000 + cfg.fold)
    if cfg.threads:  # the job's threads, shared by its processes
        torch.set_num_threads(max(1, cfg.threads // distributed.world()))
    folds = read_table(folds_csv)
    if cfg.fold not in set(folds["fold"]):
        raise InputError(f"{folds_csv}: no fold {cfg.fold}; folds are {sorted(set(folds['fold']))}")
    prepared = PreparedFiles(prepared_dir)
    images = open_cache(prepared.train_images)
    fold = folds["fold"].to_numpy()
    task = Task.of(json.loads(prepared.meta.read_text()))
    if (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0) and task.kind not in CLASSIFICATION:
        raise InputError(f"train.mixup_alpha/cutmix_alpha: mixup mixes class targets; this is a {task.kind} task, "
                         "set them to 0")
    y, tr_idx = task.targets(folds), np.flatnonzero(fold != cfg.fold)
    data = Fold(folds, images, y, tr_idx, np.flatnonzero(fold == cfg.fold), task.fitted_scale(y[tr_idx]))
    specs = json.loads(prepared.meta.read_text()).get("meta_columns") or []
    if specs:
        if cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0:
            raise InputError("train.mixup_alpha/cutmix_alpha: mixup mixes images, not their metadata; with "
                             "data.meta_columns set them to 0")
        data.encoder = MetaEncoder.fit(folds.iloc[tr_idx], specs)
        data.meta = data.encoder.transform(folds)
    if teacher_csv:
        attach_teacher(data, teacher_csv, prepared, cfg)
    return data


def fold_batches(cfg: TrainConfig, data: Fold, dc: dict, device, on_device: bool, shard: bool = True):
    """(training batches, validation batches) of the fold, read from the cache by row, the targets as the model
    learns them (Fold.training), the metadata with them when there is any. shard: with several processes, each
    takes its share of every training batch (kagglecv.training.distributed)."""
    workers = loader_workers(cfg.num_workers, cfg.threads, device)
    rows, targets, weights = data.training()
    train = make_batches(data.images, targets, dc, device, augment=cfg.augment, shuffle=True,
                         batch_size=cfg.batch_size, seed=cfg.seed * 1000 + cfg.fold, on_device=on_device, rows=rows,
                         num_workers=workers, meta=data.meta, shard=shard, weights=weights)
    valid = make_batches(data.images, data.task.standardise(data.y)[data.va_idx], dc, device, augment="none",
                         shuffle=False, batch_size=cfg.batch_size * 2, seed=0, on_device=on_device,
                         rows=data.va_idx, num_workers=workers, meta=data.meta)
    return train, valid


def setup_model(cfg: TrainConfig, n_outputs: int, in_chans: int, n_meta: int = 0):
    """(model on its device, data config, device, autocast dtype)."""
    device = pick_device(cfg)
    model, dc = build_model(cfg, n_outputs, in_chans, n_meta)
    return place_model(model, device, cfg), dc, device, autocast_dtype(device, cfg)


_IMPORTED = time.perf_counter()


def process_seconds() -> float:
    """Seconds since this process started: interpreter and imports included (Linux /proc), else since this
    module was imported. What a job costs besides its epochs is this minus the epochs' time."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime, in clock ticks
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


@dataclass
class Session:
    """Everything one job trains with, built in the order that fixes its random draws (see `start`)."""
    cfg: TrainConfig
    data: Fold
    model: torch.nn.Module  # on its device; `trained` is what the optimizer steps (DDP wraps it across processes)
    trained: torch.nn.Module
    dc: dict  # input size and normalisation of the current stage (the last one's after training)
    device: torch.device
    amp_dtype: torch.dtype | None
    on_device: bool  # the device data path (data.DeviceBatches) rather than a DataLoader
    train_batches: object  # the current stage's
    val_batches: object
    phases: list[Phase]
    scaler: torch.amp.GradScaler
    stages: list[Stage]
    ema: object | None = None  # timm.utils.ModelEmaV3
    mixup: object | None = None  # timm.data.Mixup
    average: WeightAverage | None = None  # train.average: last_k
    stage: int = 0  # the stage the batches and dc are for
    budget: dict = field(default_factory=dict)  # train.time_budget: what was planned and spent

    @property
    def final(self) -> torch.nn.Module:
        """What predicts: the EMA weights when kept, else the model."""
        return self.ema.module if self.ema else self.model

    @property
    def epochs(self) -> list[Phase]:
        """The phase of each epoch (its count may change once: train.time_budget)."""
        return [p for p in self.phases for _ in range(p.epochs)]

    def batches(self, shard: bool = True) -> tuple:
        """(training batches, validation batches) of the current stage."""
        cfg = dataclasses.replace(self.cfg, batch_size=self.stages[self.stage].batch_size)
        return fold_batches(cfg, self.data, self.dc, self.device, self.on_device, shard)

    def to_stage(self, stage: int) -> None:
        if stage != self.stage:
            self.stage = stage
            self.dc = {**self.dc, "img_size": self.stages[stage].img_size}
            self.train_batches, self.val_batches = self.batches()

    def enter(self, phase: Phase) -> None:
        """The batches, input size and schedule of the phase's stage (progressive resizing)."""
        self.to_stage(phase.stage)
        phase.schedule(optimizer_steps(self.cfg, len(self.train_batches)))


def check_recipe(cfg: TrainConfig) -> None:
    """Settings that do not go together, refused before anything is built."""
    if cfg.average not in ("none", "last_k"):
        raise InputError(f"train.average: {cfg.average!r}; use none or last_k")
    if cfg.average == "last_k" and cfg.ema_decay > 0:
        raise InputError("train.average: last_k and train.ema_decay both choose the weights to predict with; set one")
    if cfg.time_budget and (cfg.freeze_epochs or cfg.gpus > 1):
        raise InputError("train.time_budget: not with freeze_epochs or gpus > 1 (the epoch count is planned from "
                         "one process's plain schedule); set epochs instead")


def start(cfg: TrainConfig, prepared_dir, folds_csv, test_bytes: int, teacher_csv=None) -> Session:
    """The job's data, model, batches and optimizers. The order is the job's seed order: the fold's seeds, then the
    model's initial weights, then everything else; changing it changes every result."""
    check_recipe(cfg)
    data = load_fold(cfg, prepared_dir, folds_csv, teacher_csv)
    model, dc, device, amp_dtype = setup_model(cfg, data.task.outputs, data.images.shape[-1], data.n_meta)
    stages = stages_of(cfg, dc["img_size"])
    for size in sorted({st.img_size for st in stages} - {dc["img_size"]}):  # every stage's size, before any epoch
        check_forward(model, cfg, data.images.shape[-1], size, data.task.outputs, data.n_meta)
    dc = {**dc, "img_size": stages[0].img_size}
    on_device = use_device_path(cfg.data_path, device, data.images.nbytes + test_bytes)
    first = dataclasses.replace(cfg, batch_size=stages[0].batch_size)
    train_batches, val_batches = fold_batches(first, data, dc, device, on_device)
    phases = plan_phases(model, cfg, len(train_batches), stages if cfg.stages else None)
    scaler = torch.amp.GradScaler(enabled=amp_dtype == torch.float16)
    ema = timm.utils.ModelEmaV3(model, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
    mixup = (timm.data.Mixup(mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.cutmix_alpha,
                             label_smoothing=cfg.label_smoothing, num_classes=data.task.outputs)
             if cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0 else None)
    average = WeightAverage(cfg.average_epochs) if cfg.average == "last_k" else None
    return Session(cfg, data, model, distributed.wrap(model), dc, device, amp_dtype, on_device, train_batches,
                   val_batches, phases, scaler, stages, ema, mixup, average)


def resolved_config(s: Session) -> dict:
    """config.json: the settings and what they resolved to here (also inside model.pt: predict rebuilds from it).
    img_size is the last stage's: what the model predicts at."""
    cfg, data = s.cfg, s.data
    return {**dataclasses.asdict(cfg), **s.dc, "img_size": s.stages[-1].img_size, "device": str(s.device),
            "amp_dtype_used": str(s.amp_dtype), "tta_used": resolve_tta(cfg.tta, cfg.augment),
            "channels_last_used": bool(getattr(s.model, "kagglecv_channels_last", False)),
            "data_path_used": "device" if s.on_device else "loader",
            "num_workers_used": 0 if s.on_device else loader_workers(cfg.num_workers, cfg.threads, s.device),
            "n_train": len(data.tr_idx), "n_valid": len(data.va_idx), "task": data.task.kind,
            "n_outputs": data.task.outputs,
            "target_scale": list(data.task.scale),  # predict.py rebuilds the task's activation from these
            **({"meta_encoder": data.encoder.to_json()} if data.encoder else {}),  # and the metadata's encoding
            **({"teacher_rows": len(data.train_rows) - len(data.tr_idx)} if data.train_rows is not None else {})}


def tta_passes(cfg: TrainConfig) -> int:
    """Forward passes per image of the final predictions: the plain one and the TTA views."""
    tta = resolve_tta(cfg.tta, cfg.augment)
    return 1 + {"none": 0, "flip": 2, "dihedral": 8, "augment": cfg.tta_n}[tta]


def plan_budget(s: Session, spent: float, train_seconds: float, valid_seconds: list[float], n_test: int) -> None:
    """train.time_budget, after the first epoch: the epoch count whose training and final predictions fit, and the
    one-cycle schedule rebuilt for it."""
    cfg, phase, steps = s.cfg, s.phases[-1], optimizer_steps(s.cfg, len(s.train_batches))
    n_valid = len(s.data.va_idx)
    after = predict_seconds(valid_seconds[-1], n_valid, n_valid + n_test, tta_passes(cfg), cfg.precise_bn,
                            train_seconds, len(s.train_batches))
    epochs, planned = plan_epochs(cfg.time_budget, spent, 1, *epoch_costs(spent, 1, valid_seconds), cfg.valid_every,
                                  after)
    rebuild_schedule(phase, phase.make, epochs, steps, steps)
    s.budget = {"budget_seconds": cfg.time_budget, "planned_epochs": epochs, "planned_seconds": round(planned, 2),
                "first_epoch_seconds": round(spent, 2), "predict_seconds": round(after, 2),
                "first_planned_epochs": epochs, "replans": []}  # replans: [after epoch, epochs planned then]
    print(f"train.time_budget {cfg.time_budget:g} s: {epochs} epoch(s) of {spent:.1f} s and {after:.1f} s of "
          f"final predictions", flush=True)


def replan_budget(s: Session, elapsed: float, done: int, valid_seconds: list[float]) -> None:
    """train.time_budget, after each later epoch: the count planned again from the epochs so far, and the
    schedule rebuilt from where it is. A shared machine slows down or speeds up mid-run (a 2-core VM: 515 images/s
    in one run's first epoch, 310 in another's third), and a plan made once would then overrun the budget."""
    phase, b, steps = s.phases[-1], s.budget, optimizer_steps(s.cfg, len(s.train_batches))
    epoch_s, valid_s = epoch_costs(elapsed, done, valid_seconds)
    epochs, planned = plan_epochs(s.cfg.time_budget, elapsed, done, epoch_s, valid_s, s.cfg.valid_every,
                                  b["predict_seconds"])
    if epochs != phase.epochs:
        rebuild_schedule(phase, phase.make, epochs, steps, done * steps)
        b["replans"].append([done, epochs])
        b["planned_epochs"], b["planned_seconds"] = epochs, round(planned, 2)
        print(f"train.time_budget {s.cfg.time_budget:g} s: {epochs} epoch(s) after all (epochs of "
              f"{epoch_s:.1f} s so far, validation passes of {valid_s:.1f} s)", flush=True)


def fit(s: Session, history: list, start_epoch: int, log_epoch, n_test: int = 0) -> None:
    """Train the epochs not done yet; after each, `log_epoch(epoch, row)` (only the main process validates)."""
    cfg, data = s.cfg, s.data
    epoch, t_fit = start_epoch, time.perf_counter()
    valid_seconds: list[float] = []  # each validation pass's, for the time budget's plans
    while epoch < len(s.epochs):
        t0, phase = time.perf_counter(), s.epochs[epoch]
        s.enter(phase)
        set_frozen(s.model, phase.frozen)
        loss, img_s = train_epoch(s.trained, s.train_batches, phase, s.scaler, s.device, s.amp_dtype, cfg,
                                  ema=s.ema, mixup=s.mixup, task=data.task,
                                  desc=f"{cfg.backbone} fold {cfg.fold} epoch {epoch + 1}/{len(s.epochs)}")
        if not math.isfinite(loss):
            raise RuntimeError(f"{cfg.backbone} fold {cfg.fold}: training loss is {loss} at epoch {epoch + 1}; "
                               "lower train.lr")
        if s.average is not None:
            s.average.update(s.model, epoch + 1, len(s.epochs))
        epoch += 1
        if not distributed.is_main():
            continue
        row = {"epoch": epoch, "train_loss": loss}
        if epoch == 1 or epoch % cfg.valid_every == 0 or epoch == len(s.epochs):  # the first: the budget's plan
            t_val, y_va = time.perf_counter(), data.y[data.va_idx]
            probs = predict(s.final, s.val_batches, s.device, s.amp_dtype, task=data.task)
            valid_seconds.append(time.perf_counter() - t_val)
            if cfg.time_budget and epoch == 1:
                plan_budget(s, time.perf_counter() - t_fit, t_val - t0, valid_seconds, n_test)
            row |= {"valid_loss": data.task.valid_loss(y_va, probs),
                    f"valid_{cfg.metric}": metrics.score(cfg.metric, y_va, probs, grades=data.task.grades)}
        row |= {"lr": phase.scheduler.get_last_lr()[-1], "seconds": time.perf_counter() - t0, "img_per_s": img_s}
        history.append(row)
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        # a resumed job keeps its plan; so does the last epoch but one: cut then, it would end before its anneal
        if cfg.time_budget and start_epoch == 0 and 1 < epoch < len(s.epochs) - 1:
            replan_budget(s, time.perf_counter() - t_fit, epoch, valid_seconds)
        log_epoch(epoch, row)  # after the plan: the resume checkpoint holds the schedule the next epoch follows


def finish(s: Session) -> dict:
    """The final weights: averaged (train.average), then batch norm recomputed for them (train.precise_bn; always
    after averaging). What was done, for metrics.json."""
    averaged = s.average.apply(s.model) if s.average is not None else 0
    bn_batches = max(s.cfg.precise_bn, AVERAGE_BN_BATCHES if averaged else 0)

    def run_batch(x):
        x, meta = inputs(s.final, x, s.device)
        with torch.autocast(s.device.type, dtype=s.amp_dtype, enabled=s.amp_dtype is not None):
            forward(s.final, x, meta)

    # every row of a batch, as one process trains (several processes each trained on their share)
    batches = s.train_batches if distributed.world() == 1 else s.batches(shard=False)[0]
    return {"averaged_epochs": averaged, "precise_bn_batches": precise_bn(s.final, batches, run_batch, bn_batches)}


def recipe_state(s: Session) -> dict:
    """What resuming needs beyond weights and optimizers: the planned epoch count and the weight average."""
    return {"epochs": [p.epochs for p in s.phases], "budget": s.budget,
            "average": s.average.state() if s.average is not None else None}


def restore_recipe(s: Session, state: dict | None) -> None:
    if not state:
        return
    for phase, epochs in zip(s.phases, state["epochs"]):
        phase.epochs = epochs
    s.budget = state["budget"]
    if s.average is not None:
        s.average.load(state["average"])


def run(cfg: TrainConfig, prepared_dir: str | Path, folds_csv: str | Path, out_dir: str | Path,
        experiment: str = "default", results_dir: str | Path = "results", track: bool = True,
        teacher_csv: str | Path | None = None, on_epoch=None) -> dict:
    """Train one (backbone, fold) and write its outputs (ModelFiles) into `out_dir`; its metrics.json. With
    `teacher_csv` (kagglecv.training.teachers), its training rows include what the teachers labelled.
    `on_epoch(epoch, row)`: called in the main process after each epoch's history row (with
    `valid_<metric>` when the epoch was validated) and its resume checkpoint; what it raises stops the job
    (a tuning trial's pruner, kagglecv.tuning)."""
    if cfg.gpus > 1 and distributed.world() == 1:
        return run_distributed(cfg, prepared_dir, folds_csv, out_dir, experiment, results_dir, track, teacher_csv)
    prepared, out, main = PreparedFiles(prepared_dir), ModelFiles(out_dir), distributed.is_main()
    test_images, test_table = open_cache(prepared.test_images), read_table(prepared.test)
    s = start(cfg, prepared_dir, folds_csv, test_images.nbytes, teacher_csv)
    resolved = resolved_config(s)
    if main:
        write_json(out.config, resolved)
    # Not a declared output: survives a killed job, and is removed once the job has finished.
    fingerprint = data_fingerprint(prepared, folds_csv, teacher_csv)
    start_epoch, history, _ = load_resume(out.resume, resolved, fingerprint, s)
    run_name = f"{cfg.backbone}-fold{cfg.fold}"
    with Tracker(experiment, run_name, results_dir, enabled=track and main, record=record_file(out.path, run_name),
                 tags={"step": "train", "backbone": cfg.backbone, "fold": str(cfg.fold)}) as tracker:
        tracker.log_params(resolved)
        for row in history:  # epochs done before a resume: this run (and its record) holds the whole history
            tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        t_start, startup = time.perf_counter(), process_seconds()  # startup: imports, data, model, tracking

        def log_epoch(epoch: int, row: dict) -> None:
            tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
            save_resume(out.resume, epoch, history, s, resolved, fingerprint, recipe_state(s))
            if on_epoch is not None:
                on_epoch(epoch, row)

        fit(s, history, start_epoch, log_epoch, len(test_table))
        if not main:
            return {}
        done = finish(s)
        train_seconds = time.perf_counter() - t_start
        result = write_outputs(s, out, history, resolved, test_images, test_table) | done
        # Everything but the epochs (make bench's target: a few seconds per job): before the first batch,
        # the TTA passes, and the rest (writing outputs, tracking).
        result |= {"train_seconds": train_seconds, "startup_seconds": round(startup, 2),
                   "fixed_seconds": round(process_seconds() - train_seconds, 2),
                   # when the job's process ran (Unix time): which jobs shared the machine
                   "started_at": round(time.time() - process_seconds(), 2), "finished_at": round(time.time(), 2)}
        if s.budget:  # planned against spent: the epochs, the final predictions, and both together
            result["time_budget"] = {**s.budget, "used_seconds": round(time.perf_counter() - t_start, 2),
                                     "epochs": len(history)}
        print(f"job time besides the epochs: {result['fixed_seconds']:.1f} s (start-up {startup:.1f} s, "
              f"TTA {result['tta_seconds']:.1f} s)", flush=True)
        write_json(out.metrics, result)
        out.resume.unlink(missing_ok=True)
        tracker.log_metrics({"cv_fold": result["score"], "cv_fold_no_tta": result["score_no_tta"] or 0.0,
                             **({"budget_planned_seconds": s.budget["planned_seconds"],
                                 "budget_used_seconds": result["time_budget"]["used_seconds"]} if s.budget else {})})
        for path in (out.metrics, out.config, out.history):
            tracker.log_artifact(path)
    return result


def write_outputs(s: Session, out: ModelFiles, history: list, resolved: dict, test_images, test_table) -> dict:
    """The TTA predictions of the held-out rows and of the test set, the history and the weights; the result."""
    cfg, data = s.cfg, s.data
    va_idx, y_va = data.va_idx, data.y[data.va_idx]
    test_meta = None if data.encoder is None else data.encoder.transform(test_table)
    t_tta = time.perf_counter()
    oof = predict_tta(s.final, data.images, cfg, s.dc, s.device, s.amp_dtype, s.on_device, rows=va_idx,
                      task=data.task, meta=data.meta)
    test = predict_tta(s.final, test_images, cfg, s.dc, s.device, s.amp_dtype, s.on_device, task=data.task,
                       meta=test_meta)
    tta_seconds = time.perf_counter() - t_tta
    cols = [f"p{k}" for k in range(data.task.outputs)]
    oof_df = pd.DataFrame(oof, columns=cols)
    oof_df.insert(0, "fold", cfg.fold), oof_df.insert(0, "y", data.folds["y"].to_numpy()[va_idx])
    oof_df.insert(0, "id", data.folds["id"].to_numpy()[va_idx])
    test_df = pd.DataFrame(test, columns=cols)
    test_df.insert(0, "id", test_table["id"].to_numpy())
    write_csv(out.oof, oof_df)
    write_csv(out.test, test_df)
    write_csv(out.history, pd.DataFrame(history))
    with atomic_path(out.model) as tmp:
        torch.save({"state_dict": s.final.state_dict(), "config": resolved}, tmp)
    return {"backbone": cfg.backbone, "fold": cfg.fold, "metric": cfg.metric,
            "score": metrics.score(cfg.metric, y_va, oof, grades=data.task.grades),
            "score_no_tta": history[-1][f"valid_{cfg.metric}"] if history else None,
            "valid_loss": data.task.valid_loss(y_va, oof), "device": str(s.device),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # which GPU lease this job held
            "img_per_s": float(np.mean([h["img_per_s"] for h in history])) if history else None,
            "tta_seconds": round(tta_seconds, 2), "processes": distributed.world()}


def run_distributed(cfg: TrainConfig, prepared_dir, folds_csv, out_dir, experiment, results_dir, track,
                    teacher_csv=None) -> dict:
    """`run` in one process per device (kagglecv.training.distributed), after leasing the devices; the main process's
    result."""
    if cfg.device != "cpu":
        lease_gpu(count=cfg.gpus)  # CUDA_VISIBLE_DEVICES for the processes (Slurm's, when it set them)
    distributed.launch(cfg.gpus, run, cfg, prepared_dir, folds_csv, out_dir, experiment, results_dir, track,
                       teacher_csv)
    return json.loads(ModelFiles(out_dir).metrics.read_text())
