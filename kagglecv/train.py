"""Train one (backbone, fold): timm model by name, albumentations, one-cycle, AMP on GPU, TTA.

Writes into `out_dir`: oof.csv and test.csv (class probabilities), metrics.json, config.json,
history.csv (one row per epoch) and model.pt. Every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import metrics
from .augment import build_transform, tta_blend, tta_views
from .errors import InputError
from .fsutil import atomic_path, write_csv, write_json
from .gpu import lease_gpu
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
    augment: str = "light"  # preset in augment.AUGMENT_PRESETS
    tta: str = "augment"  # none | flip | dihedral | augment (n random passes of the train augmentation)
    tta_n: int = 4  # passes for tta=augment
    tta_beta: float = 0.25  # weight of the plain prediction in the blend, as fastai's tta(beta)
    label_smoothing: float = 0.0
    drop_rate: float = 0.0
    amp: bool = True  # mixed precision on GPU (bf16 where supported, else fp16 + grad scaler); off on CPU
    num_workers: int = 0  # DataLoader workers; 0 is fastest for small cached images on few cores
    threads: int = 1  # torch CPU threads (Snakemake's `threads:`)
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


class CachedImages(Dataset):
    """uint8 NHWC images from the prepare cache, transformed per sample by albumentations."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        x = self.transform(image=self.images[i])["image"]
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
        return x, (-1 if self.labels is None else int(self.labels[i]))


def build_model(cfg: TrainConfig, n_classes: int, in_chans: int) -> tuple[torch.nn.Module, dict]:
    """timm model by name plus the input size and normalisation to feed it."""
    kw = dict(cfg.extra)
    if cfg.pretrained_file:
        if not Path(cfg.pretrained_file).exists():
            raise InputError(f"{cfg.pretrained_file}: pretrained weights for {cfg.backbone} not found; "
                             "fix pretrained_file or set pretrained: false")
        kw["pretrained_cfg_overlay"] = dict(file=str(Path(cfg.pretrained_file).resolve()))
    pretrained = cfg.pretrained or bool(cfg.pretrained_file)
    try:
        model = timm.create_model(cfg.backbone, pretrained=pretrained, num_classes=n_classes, in_chans=in_chans,
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
    size = cfg.img_size or dc["input_size"][-1]
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
    if device.type != "cuda" or not cfg.amp:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@torch.no_grad()
def predict(model, loader, device, amp_dtype, tta: str = "none") -> np.ndarray:
    """Softmax probabilities; with tta=flip/dihedral, the mean over the deterministic views only."""
    model.eval()
    out = []
    for x, _ in loader:
        x = x.to(device, non_blocking=True)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        batches = tta_views(x, tta) if tta != "none" else [x]
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            probs = torch.stack([model(v).float().softmax(1) for v in batches]).mean(0)
        out.append(probs.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def predict_tta(model, images, cfg: TrainConfig, dc: dict, device, amp_dtype) -> np.ndarray:
    """The plain prediction blended with the TTA views (fastai's beta blend)."""
    plain_tf = build_transform(dc["img_size"], dc["mean"], dc["std"], "none")
    kw = dict(batch_size=cfg.batch_size * 2, num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
    plain = predict(model, DataLoader(CachedImages(images, None, plain_tf), **kw), device, amp_dtype)
    if cfg.tta == "none":
        return plain
    if cfg.tta == "augment":
        views = [predict(model, DataLoader(CachedImages(images, None, build_transform(
            dc["img_size"], dc["mean"], dc["std"], cfg.augment, seed=cfg.seed + i)), **kw), device, amp_dtype)
            for i in range(cfg.tta_n)]
    else:
        views = [predict(model, DataLoader(CachedImages(images, None, plain_tf), **kw), device, amp_dtype,
                         tta=cfg.tta)]
    return tta_blend(plain, views, cfg.tta_beta)


def one_cycle(optimizer, cfg: TrainConfig, total_steps: int):
    pct_start = cfg.pct_start
    if total_steps > 1 and pct_start * total_steps == 1:  # torch's OneCycleLR divides by zero on a 1-step warm-up
        pct_start = 1.5 / total_steps
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=pct_start, anneal_strategy="cos",
        div_factor=cfg.div_factor, final_div_factor=cfg.final_div_factor, cycle_momentum=True,
        base_momentum=cfg.moms[1], max_momentum=cfg.moms[0])


def train_epoch(model, loader, optimizer, scheduler, scaler, device, amp_dtype, cfg, desc) -> tuple[float, float]:
    """One pass over the training fold; returns (mean loss, images per second)."""
    model.train()
    total, n, t0 = 0.0, 0, time.perf_counter()
    bar = tqdm(loader, desc=desc, leave=False, mininterval=1)
    for x, y in bar:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total, n = total + loss.item() * len(y), n + len(y)
        bar.set_postfix(loss=f"{total / n:.4f}", img_s=f"{n / (time.perf_counter() - t0):.0f}")
    return total / max(n, 1), n / (time.perf_counter() - t0)


def save_resume(path: Path, epoch: int, history, model, optimizer, scheduler, scaler, resolved) -> None:
    """End-of-epoch state, so a killed job restarts from its last complete epoch."""
    state = {"epoch": epoch, "history": history, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "config": resolved,
             "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_resume(path: Path, resolved, model, optimizer, scheduler, scaler) -> tuple[int, list]:
    """(epochs already done, their history); (0, []) when there is nothing to resume or the config changed."""
    if not path.exists():
        return 0, []
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state["config"] != resolved:
        print(f"{path}: saved with another config; starting over", flush=True)
        return 0, []
    model.load_state_dict(state["model"]), optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"]), scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"]), np.random.set_state(state["numpy_rng"])
    print(f"resuming from {path} after epoch {state['epoch']}", flush=True)
    return state["epoch"], state["history"]


def run(cfg: TrainConfig, prepared_dir: str | Path, folds_csv: str | Path, out_dir: str | Path,
        experiment: str = "default", results_dir: str | Path = "results", track: bool = True) -> dict:
    prepared_dir, out_dir = Path(prepared_dir), Path(out_dir)
    torch.manual_seed(cfg.seed * 1000 + cfg.fold)
    np.random.seed(cfg.seed * 1000 + cfg.fold)
    torch.set_num_threads(max(1, cfg.threads))
    folds = pd.read_csv(folds_csv, dtype={"id": str})
    if cfg.fold not in set(folds["fold"]):
        raise InputError(f"{folds_csv}: no fold {cfg.fold}; folds are {sorted(set(folds['fold']))}")
    images = np.load(prepared_dir / "train_images.npy", mmap_mode="r")
    test_images = np.load(prepared_dir / "test_images.npy", mmap_mode="r")
    test_ids = pd.read_csv(prepared_dir / "test.csv", dtype={"id": str})["id"]
    n_classes = int(folds["y"].max()) + 1
    tr_idx = np.flatnonzero(folds["fold"].to_numpy() != cfg.fold)
    va_idx = np.flatnonzero(folds["fold"].to_numpy() == cfg.fold)
    y = folds["y"].to_numpy()

    device = pick_device(cfg)
    amp_dtype = autocast_dtype(device, cfg)
    model, dc = build_model(cfg, n_classes, in_chans=images.shape[-1])
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    train_tf = build_transform(dc["img_size"], dc["mean"], dc["std"], cfg.augment, seed=cfg.seed * 1000 + cfg.fold)
    plain_tf = build_transform(dc["img_size"], dc["mean"], dc["std"], "none")
    pin = device.type == "cuda"
    train_dl = DataLoader(CachedImages(images[tr_idx], y[tr_idx], train_tf), batch_size=cfg.batch_size,
                          shuffle=True, drop_last=len(tr_idx) > cfg.batch_size, num_workers=cfg.num_workers,
                          pin_memory=pin, persistent_workers=cfg.num_workers > 0)
    val_dl = DataLoader(CachedImages(images[va_idx], y[va_idx], plain_tf), batch_size=cfg.batch_size * 2,
                        num_workers=cfg.num_workers, pin_memory=pin)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = one_cycle(optimizer, cfg, total_steps=cfg.epochs * len(train_dl))
    scaler = torch.amp.GradScaler(enabled=amp_dtype == torch.float16)

    resolved = {**dataclasses.asdict(cfg), **dc, "device": str(device), "amp_dtype": str(amp_dtype),
                "n_train": len(tr_idx), "n_valid": len(va_idx), "n_classes": n_classes}
    write_json(out_dir / "config.json", resolved)
    # Not a declared output: survives a killed job, and is removed once the job has finished.
    resume_path = out_dir / "resume.pt"
    start_epoch, history = load_resume(resume_path, resolved, model, optimizer, scheduler, scaler)
    with Tracker(experiment, f"{cfg.backbone}-fold{cfg.fold}", results_dir, enabled=track,
                 tags={"step": "train", "backbone": cfg.backbone, "fold": str(cfg.fold)}) as tracker:
        tracker.log_params(resolved)
        t_start = time.perf_counter()
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            loss, img_s = train_epoch(model, train_dl, optimizer, scheduler, scaler, device, amp_dtype, cfg,
                                      desc=f"{cfg.backbone} fold {cfg.fold} epoch {epoch + 1}/{cfg.epochs}")
            if not math.isfinite(loss):
                raise RuntimeError(f"{cfg.backbone} fold {cfg.fold}: training loss is {loss} at epoch {epoch + 1}; "
                                   "lower train.lr")
            probs = predict(model, val_dl, device, amp_dtype)
            row = {"epoch": epoch + 1, "train_loss": loss,
                   "valid_loss": metrics.score("log_loss", y[va_idx], probs),
                   f"valid_{cfg.metric}": metrics.score(cfg.metric, y[va_idx], probs),
                   "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - t0, "img_per_s": img_s}
            history.append(row)
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  flush=True)
            tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch + 1)
            save_resume(resume_path, epoch + 1, history, model, optimizer, scheduler, scaler, resolved)
        train_seconds = time.perf_counter() - t_start

        oof = predict_tta(model, images[va_idx], cfg, dc, device, amp_dtype)
        test = predict_tta(model, test_images, cfg, dc, device, amp_dtype)
        cols = [f"p{k}" for k in range(n_classes)]
        oof_df = pd.DataFrame(oof, columns=cols)
        oof_df.insert(0, "fold", cfg.fold), oof_df.insert(0, "y", y[va_idx])
        oof_df.insert(0, "id", folds["id"].to_numpy()[va_idx])
        test_df = pd.DataFrame(test, columns=cols)
        test_df.insert(0, "id", test_ids.to_numpy())
        result = {
            "backbone": cfg.backbone, "fold": cfg.fold, "metric": cfg.metric,
            "score": metrics.score(cfg.metric, y[va_idx], oof),
            "score_no_tta": history[-1][f"valid_{cfg.metric}"] if history else None,
            "valid_loss": metrics.score("log_loss", y[va_idx], oof),
            "train_seconds": train_seconds, "device": str(device),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # which GPU lease this job held
            "img_per_s": float(np.mean([h["img_per_s"] for h in history])) if history else None,
        }
        write_csv(out_dir / "oof.csv", oof_df)
        write_csv(out_dir / "test.csv", test_df)
        write_csv(out_dir / "history.csv", pd.DataFrame(history))
        with atomic_path(out_dir / "model.pt") as tmp:
            torch.save({"state_dict": model.state_dict(), "config": resolved}, tmp)
        write_json(out_dir / "metrics.json", result)
        resume_path.unlink(missing_ok=True)
        tracker.log_metrics({"cv_fold": result["score"], "cv_fold_no_tta": result["score_no_tta"] or 0.0})
        for name in ("metrics.json", "config.json", "history.csv"):
            tracker.log_artifact(out_dir / name)
    return result
