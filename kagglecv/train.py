"""Train one (backbone, fold): timm model by name, albumentations, one-cycle, AMP on GPU, TTA.

The task (kagglecv.tasks) sets the head's width, the loss and what a prediction is: softmax probabilities
(binary, multiclass: cross-entropy), sigmoid probabilities (multilabel: BCE per label), or values (regression,
ordinal: Huber on standardised targets).

Writes into `out_dir`: oof.csv and test.csv (predictions, columns p0..), metrics.json, config.json,
history.csv (one row per epoch) and model.pt. Every file is written atomically.
"""

from __future__ import annotations

import dataclasses
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

from . import metrics
from .tasks import CLASSIFICATION, Task
from .augment import resolve_tta, tta_blend, tta_views
from .config import explicit_input_size
from .data import loader_workers, make_batches, open_cache, rng_state, set_rng_state, use_device_path
from .errors import InputError
from .fsutil import atomic_path, read_table, write_csv, write_json
from .gpu import lease_gpu
from .layout import ModelFiles, PreparedFiles, record_file
from .tracking import Tracker


@dataclass
class TrainConfig:
    backbone: str  # any timm model name, e.g. "resnet18" or "convnext_tiny.fb_in22k"
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


def build_model(cfg: TrainConfig, n_outputs: int, in_chans: int) -> tuple[torch.nn.Module, dict]:
    """timm model by name plus the input size and normalisation to feed it."""
    kw = dict(cfg.extra)
    if cfg.pretrained_file:
        if not Path(cfg.pretrained_file).exists():
            raise InputError(f"{cfg.pretrained_file}: pretrained weights for {cfg.backbone} not found; "
                             "fix pretrained_file or set pretrained: false")
        kw["pretrained_cfg_overlay"] = dict(file=str(Path(cfg.pretrained_file).resolve()))
    pretrained = cfg.pretrained or bool(cfg.pretrained_file)
    try:
        model = timm.create_model(cfg.backbone, pretrained=pretrained, num_classes=n_outputs, in_chans=in_chans,
                                  drop_rate=cfg.drop_rate, **kw)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise InputError(f"backbones: unknown timm model {cfg.backbone!r}; see timm.list_models()") from e
        raise
    except Exception as e:  # noqa: BLE001 - hub/network errors come in many types
        if not pretrained:
            raise
        raise InputError(f"backbones: pretrained weights for {cfg.backbone} not found ({type(e).__name__}); put "
                         "them in the Hugging Face cache, set pretrained_file: /path/to/weights, or "
                         "pretrained: false") from e
    dc = timm.data.resolve_model_data_config(model)
    size = explicit_input_size({"img_size": cfg.img_size, "extra": cfg.extra}) or dc["input_size"][-1]
    try:  # fail now, with the fix named, rather than after an epoch deep inside the model
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_chans, size, size))
    except RuntimeError as e:
        raise InputError(f"backbones: {cfg.backbone} cannot take {size}x{size} input ({str(e).splitlines()[0]}); "
                         f"raise img_size for this backbone") from e
    mean, std = list(dc["mean"]), list(dc["std"])
    if in_chans == 1:  # grayscale: one channel with the average statistics
        mean, std = [float(np.mean(mean))], [float(np.mean(std))]
    return model, {"img_size": int(size), "mean": mean, "std": std}


def pick_device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cpu":
        return torch.device("cpu")
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


def task_loss(task: Task, out, target, label_smoothing: float = 0.0):
    """Cross-entropy (classification; soft targets after mixup), BCE per label (multilabel), Huber on
    standardised targets (numeric: robust to the odd mislabelled grade, and MSE near the target)."""
    out = out.float()
    if task.kind in CLASSIFICATION:
        if target.ndim == 2:  # mixup / cutmix mixed the one-hot targets
            return torch.sum(-target * F.log_softmax(out, 1), 1).mean()
        return F.cross_entropy(out, target, label_smoothing=label_smoothing)
    if task.kind == "multilabel":
        return F.binary_cross_entropy_with_logits(out, target.float())
    return F.smooth_l1_loss(out[:, 0], target.float())


@torch.no_grad()
def predict(model, loader, device, amp_dtype, tta: str = "none", task: Task = Task("multiclass")) -> np.ndarray:
    """The task's predictions (probabilities or values); with tta=flip/dihedral, the mean over the deterministic
    views only. Views are averaged after activation: on the scale the metric reads."""
    model.eval()
    out = []
    for x, _ in loader:
        x = as_input(model, x.to(device, non_blocking=True))
        batches = tta_views(x, tta) if tta != "none" else [x]
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            probs = torch.stack([task.activate(model(v).float()) for v in batches]).mean(0)
        out.append(probs.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def predict_tta(model, images, cfg: TrainConfig, dc: dict, device, amp_dtype, on_device: bool = False,
                rows=None, task: Task = Task("multiclass")) -> np.ndarray:
    """The plain prediction of `rows` of the cache (all when None) blended with the TTA views (fastai's beta
    blend), streamed a batch at a time. An image's random views (tta=augment) are seeded by its own pixels, so
    it gets the same prediction in the test set, a Kaggle kernel or `predict`, whatever rows surround it."""
    def batches(augment: str, seed: int = 0):
        return make_batches(images, None, dc, device, augment=augment, shuffle=False, batch_size=cfg.batch_size * 2,
                            seed=seed, on_device=on_device, rows=rows, per_image=True,
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
    """A stretch of epochs with its own optimizer and one-cycle schedule (fine_tune has two)."""
    epochs: int
    frozen: bool  # body frozen, head only
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler


def plan_phases(model, cfg: TrainConfig, steps_per_epoch: int) -> list[Phase]:
    """Plain one-cycle; or, with freeze_epochs, fastai's fine_tune: head alone at lr, then every layer with
    discriminative learning rates from lr / 2 / lr_mult (earliest layers) to lr / 2 (head)."""
    steps = math.ceil(steps_per_epoch / cfg.grad_accum)
    params = list(model.parameters())
    if not cfg.freeze_epochs:
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return [Phase(cfg.epochs, False, opt, one_cycle(opt, cfg, cfg.epochs * steps))]
    head_ids = {id(p) for p in model.get_classifier().parameters()}
    head, body = [p for p in params if id(p) in head_ids], [p for p in params if id(p) not in head_ids]
    opt1 = torch.optim.AdamW(head, lr=cfg.lr, weight_decay=cfg.weight_decay)
    chunks = [c for c in np.array_split(np.arange(len(body)), max(1, cfg.lr_groups - 1)) if len(c)]
    lrs = np.geomspace(cfg.lr / 2 / cfg.lr_mult, cfg.lr / 2, len(chunks) + 1).tolist()
    groups = [{"params": [body[i] for i in c]} for c in chunks] + [{"params": head}]
    opt2 = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return [Phase(cfg.freeze_epochs, True, opt1, one_cycle(opt1, cfg, cfg.freeze_epochs * steps, pct_start=0.99)),
            Phase(cfg.epochs, False, opt2, one_cycle(opt2, cfg, cfg.epochs * steps, max_lr=lrs))]


def set_frozen(model, frozen: bool) -> None:
    head_ids = {id(p) for p in model.get_classifier().parameters()}
    for p in model.parameters():
        p.requires_grad_(not frozen or id(p) in head_ids)


def train_epoch(model, batches, phase: Phase, scaler, device, amp_dtype, cfg, desc, ema=None,
                mixup=None, task: Task = Task("multiclass")) -> tuple[float, float]:
    """One pass over the training fold; returns (mean loss, images per second)."""
    model.train()
    total, n, t0 = 0.0, 0, time.perf_counter()
    bar = tqdm(batches, desc=desc, leave=False, mininterval=1)
    phase.optimizer.zero_grad(set_to_none=True)
    for step, (x, y) in enumerate(bar, 1):
        x, y = as_input(model, x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
        target = y
        if mixup is not None and len(x) % 2 == 0:  # timm's Mixup pairs samples: an even batch is required
            x, target = mixup(x, y)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = task_loss(task, model(x), target, cfg.label_smoothing)
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


def data_fingerprint(prepared: PreparedFiles, folds_csv) -> str:
    """What a checkpoint was trained on: the content of folds.csv and the prepared tables, and the image cache
    files' size and modification time (rebuilding the cache changes them; hashing gigabytes every epoch would
    cost more than it saves)."""
    h = hashlib.sha256()
    for p in (Path(folds_csv), prepared.meta, prepared.train):
        h.update(p.read_bytes())
    for p in (prepared.train_images, prepared.test_images):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def save_resume(path: Path, epoch: int, history, model, phases, scaler, ema, resolved, fingerprint: str,
                batches=None) -> None:
    """End-of-epoch state, so a killed job restarts from its last complete epoch and ends as an uninterrupted one
    would: weights, optimizers, schedules, and every random state the next epochs draw from (torch's, numpy's,
    Python's, and the training batches' own: data.rng_state). Only tensors and plain values, so that it loads
    with weights_only=True (a checkpoint is never code)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"epoch": epoch, "history": history, "model": model.state_dict(), "scaler": scaler.state_dict(),
             "phases": [(p.optimizer.state_dict(), p.scheduler.state_dict()) for p in phases],
             "ema": ema.state_dict() if ema is not None else None, "config": resolved, "data": fingerprint,
             "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
             "batches_rng": rng_state(batches) if batches is not None else None,
             "numpy_rng": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}
    with atomic_path(path, durable=False) as tmp:  # a torn checkpoint after a crash only means starting over
        torch.save(state, tmp)


def load_resume(path: Path, resolved, fingerprint: str, model, phases, scaler, ema,
                batches=None) -> tuple[int, list, dict]:
    """(epochs already done, their history, the saved state); nothing when the config, the folds or the data
    changed since the checkpoint was written (the job then starts over)."""
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
    model.load_state_dict(state["model"]), scaler.load_state_dict(state["scaler"])
    for phase, (opt_state, sched_state) in zip(phases, state["phases"]):
        phase.optimizer.load_state_dict(opt_state), phase.scheduler.load_state_dict(sched_state)
    if ema is not None and state["ema"] is not None:
        ema.load_state_dict(state["ema"])
    name, keys, pos, has_gauss, cached = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if state.get("python_rng") is not None:
        random.setstate(state["python_rng"])
    if batches is not None and state.get("batches_rng") is not None:
        set_rng_state(batches, state["batches_rng"])
    print(f"resuming from {path} after epoch {state['epoch']}", flush=True)
    return state["epoch"], state["history"], state


def load_fold(cfg: TrainConfig, prepared_dir, folds_csv) -> tuple[pd.DataFrame, np.ndarray, np.ndarray,
                                                                        np.ndarray, np.ndarray, Task]:
    """Seed this job, then (folds, memory-mapped train cache, targets, train rows, valid rows, task) for cfg.fold.
    Numeric tasks get their target scale from this fold's training rows only."""
    torch.manual_seed(cfg.seed * 1000 + cfg.fold)
    np.random.seed(cfg.seed * 1000 + cfg.fold)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
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
    return folds, images, y, tr_idx, np.flatnonzero(fold == cfg.fold), task.fitted_scale(y[tr_idx])


def fold_batches(cfg: TrainConfig, images, y, tr_idx, va_idx, dc: dict, device, on_device: bool):
    """(training batches, validation batches) of the fold, read from the cache by row; `y` as the model learns
    it (Task.standardise)."""
    workers = loader_workers(cfg.num_workers, cfg.threads, device)
    train = make_batches(images, y[tr_idx], dc, device, augment=cfg.augment, shuffle=True, batch_size=cfg.batch_size,
                         seed=cfg.seed * 1000 + cfg.fold, on_device=on_device, rows=tr_idx, num_workers=workers)
    valid = make_batches(images, y[va_idx], dc, device, augment="none", shuffle=False, batch_size=cfg.batch_size * 2,
                         seed=0, on_device=on_device, rows=va_idx, num_workers=workers)
    return train, valid


def setup_model(cfg: TrainConfig, n_outputs: int, in_chans: int):
    """(model on its device, data config, device, autocast dtype)."""
    device = pick_device(cfg)
    model, dc = build_model(cfg, n_outputs, in_chans)
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


def run(cfg: TrainConfig, prepared_dir: str | Path, folds_csv: str | Path, out_dir: str | Path,
        experiment: str = "default", results_dir: str | Path = "results", track: bool = True) -> dict:
    prepared, out = PreparedFiles(prepared_dir), ModelFiles(out_dir)
    folds, images, y, tr_idx, va_idx, task = load_fold(cfg, prepared_dir, folds_csv)
    test_images = open_cache(prepared.test_images)
    test_ids = read_table(prepared.test)["id"]
    model, dc, device, amp_dtype = setup_model(cfg, task.outputs, in_chans=images.shape[-1])
    on_device = use_device_path(cfg.data_path, device, images.nbytes + test_images.nbytes)
    train_batches, val_batches = fold_batches(cfg, images, task.standardise(y), tr_idx, va_idx, dc, device,
                                              on_device)
    phases = plan_phases(model, cfg, len(train_batches))
    epoch_phase = [p for p in phases for _ in range(p.epochs)]  # which phase each epoch belongs to
    scaler = torch.amp.GradScaler(enabled=amp_dtype == torch.float16)
    ema = timm.utils.ModelEmaV3(model, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
    mixup = (timm.data.Mixup(mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.cutmix_alpha,
                             label_smoothing=cfg.label_smoothing, num_classes=task.outputs)
             if cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0 else None)

    resolved = {**dataclasses.asdict(cfg), **dc, "device": str(device), "amp_dtype_used": str(amp_dtype),
                "tta_used": resolve_tta(cfg.tta, cfg.augment),
                "channels_last_used": bool(getattr(model, "kagglecv_channels_last", False)),
                "data_path_used": "device" if on_device else "loader",
                "num_workers_used": 0 if on_device else loader_workers(cfg.num_workers, cfg.threads, device),
                "n_train": len(tr_idx), "n_valid": len(va_idx), "task": task.kind, "n_outputs": task.outputs,
                "target_scale": list(task.scale)}  # predict.py rebuilds the task's activation from these
    write_json(out.config, resolved)
    # Not a declared output: survives a killed job, and is removed once the job has finished.
    resume_path = out.resume
    fingerprint = data_fingerprint(prepared, folds_csv)
    start_epoch, history, _ = load_resume(resume_path, resolved, fingerprint, model, phases, scaler, ema,
                                          train_batches)
    run_name = f"{cfg.backbone}-fold{cfg.fold}"
    with Tracker(experiment, run_name, results_dir, enabled=track, record=record_file(out.path, run_name),
                 tags={"step": "train", "backbone": cfg.backbone, "fold": str(cfg.fold)}) as tracker:
        tracker.log_params(resolved)
        for row in history:  # epochs done before a resume: this run (and its record) holds the whole history
            tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        t_start, startup = time.perf_counter(), process_seconds()  # startup: imports, data, model, tracking
        for epoch in range(start_epoch, len(epoch_phase)):
            t0, phase = time.perf_counter(), epoch_phase[epoch]
            set_frozen(model, phase.frozen)
            loss, img_s = train_epoch(model, train_batches, phase, scaler, device, amp_dtype, cfg, ema=ema,
                                      mixup=mixup, task=task, desc=f"{cfg.backbone} fold {cfg.fold} "
                                                        f"epoch {epoch + 1}/{len(epoch_phase)}")
            if not math.isfinite(loss):
                raise RuntimeError(f"{cfg.backbone} fold {cfg.fold}: training loss is {loss} at epoch {epoch + 1}; "
                                   "lower train.lr")
            probs = predict(ema.module if ema else model, val_batches, device, amp_dtype, task=task)
            row = {"epoch": epoch + 1, "train_loss": loss,
                   "valid_loss": task.valid_loss(y[va_idx], probs),
                   f"valid_{cfg.metric}": metrics.score(cfg.metric, y[va_idx], probs, grades=task.grades),
                   "lr": phase.scheduler.get_last_lr()[-1], "seconds": time.perf_counter() - t0, "img_per_s": img_s}
            history.append(row)
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  flush=True)
            tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch + 1)
            save_resume(resume_path, epoch + 1, history, model, phases, scaler, ema, resolved, fingerprint,
                        train_batches)
        train_seconds = time.perf_counter() - t_start

        final = ema.module if ema else model
        t_tta = time.perf_counter()
        oof = predict_tta(final, images, cfg, dc, device, amp_dtype, on_device, rows=va_idx, task=task)
        test = predict_tta(final, test_images, cfg, dc, device, amp_dtype, on_device, task=task)
        tta_seconds = time.perf_counter() - t_tta
        cols = [f"p{k}" for k in range(task.outputs)]
        oof_df = pd.DataFrame(oof, columns=cols)
        oof_df.insert(0, "fold", cfg.fold), oof_df.insert(0, "y", folds["y"].to_numpy()[va_idx])
        oof_df.insert(0, "id", folds["id"].to_numpy()[va_idx])
        test_df = pd.DataFrame(test, columns=cols)
        test_df.insert(0, "id", test_ids.to_numpy())
        result = {
            "backbone": cfg.backbone, "fold": cfg.fold, "metric": cfg.metric,
            "score": metrics.score(cfg.metric, y[va_idx], oof, grades=task.grades),
            "score_no_tta": history[-1][f"valid_{cfg.metric}"] if history else None,
            "valid_loss": task.valid_loss(y[va_idx], oof),
            "train_seconds": train_seconds, "device": str(device),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # which GPU lease this job held
            "img_per_s": float(np.mean([h["img_per_s"] for h in history])) if history else None,
        }
        write_csv(out.oof, oof_df)
        write_csv(out.test, test_df)
        write_csv(out.history, pd.DataFrame(history))
        with atomic_path(out.model) as tmp:
            torch.save({"state_dict": final.state_dict(), "config": resolved}, tmp)
        # Everything but the epochs (make bench's target: a few seconds per job): before the first batch,
        # the TTA passes, and the rest (writing outputs, tracking).
        result |= {"startup_seconds": round(startup, 2), "tta_seconds": round(tta_seconds, 2),
                   "fixed_seconds": round(process_seconds() - train_seconds, 2)}
        print(f"job time besides the epochs: {result['fixed_seconds']:.1f} s (start-up {startup:.1f} s, "
              f"TTA {tta_seconds:.1f} s)", flush=True)
        write_json(out.metrics, result)
        resume_path.unlink(missing_ok=True)
        tracker.log_metrics({"cv_fold": result["score"], "cv_fold_no_tta": result["score_no_tta"] or 0.0})
        for path in (out.metrics, out.config, out.history):
            tracker.log_artifact(path)
    return result
