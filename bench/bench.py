#!/usr/bin/env python
"""`make bench`: one backbone, image size, batch size and epoch count on the same real data, trained four ways.

  1. synthetic  random tensors already on the device: the compute limit (no data path at all)
  2. kagglecv   our data path: uint8 cache -> CachedImages + albumentations -> DataLoader -> one-cycle AdamW,
                built from kagglecv.training.train's own pieces, as train.run builds them
  3. png        a plain torch DataLoader decoding PNG files from disk, per-sample albumentations (same transform)
  4. fastai     vision_learner(dls, arch, pretrained=False, metrics=accuracy).fit_one_cycle(epochs, lr) on the
                same PNG files (ImageDataLoaders.from_folder, Resize + aug_transforms on the batch)

Ways 1-3 share kagglecv.training.train's model builder, train_epoch and predict; way 4 uses the same timm architecture
by name. Every way trains the same number of steps (drop_last) with a one-cycle schedule peaking at --lr and
validates after each epoch. Throughput is images trained / wall time of the fit, validation included (the
anchor's definition: fastai took 19.8 s = ~360 img/s on 2 CPU cores); train-only throughput is reported too.

Data: Fashion-MNIST from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), the first
--n-train training and --n-valid test images; scikit-learn's digits (80/20) when it is not installed.
Results: printed, and written to bench/results/<device>-<date>.json. Run it in bench/.venv (see README.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # kagglecv's per-step progress bars would flood the output

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from kagglecv.config.train import TrainConfig
from kagglecv.core.devices import autocast_dtype, pick_device, place_model
from kagglecv.core.files import atomic_path, write_json  # noqa: E402
from kagglecv.core.tasks import Task  # noqa: E402
from kagglecv.data.augment import build_transform  # noqa: E402
from kagglecv.data.batches import open_cache, use_device_path  # noqa: E402
from kagglecv.inference.models import build_model  # noqa: E402
from kagglecv.inference.tta import predict
from kagglecv.training.fold import Fold, fold_batches
from kagglecv.training.loop import train_epoch
from kagglecv.training.schedule import plan_phases

from machine import FASHION, cpu_name, loadavg, read_idx, slug, train_overrides  # noqa: E402

BENCH = Path(__file__).resolve().parent
ANCHOR = {
    "what": "fastai resnet18 (timm, from scratch), 32 px, bs 128, 3 epochs fit_one_cycle on 2,400 "
    "Fashion-MNIST images, 2 CPU cores, torch 2.13 (shared/notes/anchors.md)",
    "seconds": 19.8,
    "img_per_s": 360,
}
EPOCHS = 10  # fastai needs 8 of them to pass TARGET on the default data (the time-to-accuracy curve)
TARGET = 0.80  # held-out accuracy on the 2,400/600 Fashion-MNIST split: the time-to-accuracy mark


# --- data ------------------------------------------------------------------------------------------------------


def load_data(n_train: int, n_valid: int):
    """(x_train, y_train, x_valid, y_valid, name): uint8 N x H x W x 1 images and int64 labels."""
    if (FASHION / "train-images-idx3-ubyte.gz").exists():
        xtr, ytr = read_idx(FASHION / "train-images-idx3-ubyte.gz"), read_idx(FASHION / "train-labels-idx1-ubyte.gz")
        xva, yva = read_idx(FASHION / "t10k-images-idx3-ubyte.gz"), read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")
        return (
            xtr[:n_train, ..., None],
            ytr[:n_train].astype(np.int64),
            xva[:n_valid, ..., None],
            yva[:n_valid].astype(np.int64),
            "fashion-mnist",
        )
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images * (255 / 16)).round().astype(np.uint8)[..., None]
    n = min(n_train + n_valid, len(x))
    cut = min(n_train, int(n * 0.8))
    print(
        f"{FASHION} not found (apt-get install dataset-fashion-mnist): using scikit-learn digits, "
        f"{cut} train + {n - cut} valid",
        flush=True,
    )
    return x[:cut], d.target[:cut].astype(np.int64), x[cut:n], d.target[cut:n].astype(np.int64), "sklearn-digits"


def write_pngs(root: Path, xtr, ytr, xva, yva) -> tuple[list[Path], list[Path]]:
    """ImageNet-style folders root/{train,valid}/<label>/<n>.png (reused when already complete)."""
    out = {}
    for split, x, y in (("train", xtr, ytr), ("valid", xva, yva)):
        paths = [root / split / str(int(label)) / f"{k:05d}.png" for k, label in enumerate(y)]
        existing = sorted((root / split).glob("*/*.png")) if (root / split).is_dir() else []
        if sorted(existing) != sorted(paths):
            for p in existing:
                p.unlink()
            for p, img in zip(paths, x):
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img[..., 0]).save(p)
        out[split] = paths
    return out["train"], out["valid"]


class PngImages(Dataset):
    """Way 3: decode each PNG from disk per sample, then the same albumentations transform as way 2."""

    def __init__(self, paths, labels, transform):
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as img:
            arr = np.asarray(img.convert("L"))[..., None]
        x = self.transform(image=arr)["image"]
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), int(self.labels[i])


# --- the kagglecv loop (ways 1-3) -------------------------------------------------------------------------------


def fit_kagglecv(cfg: TrainConfig, train_dl, val_dl, y_valid, device, n_classes: int, in_chans: int) -> dict:
    """kagglecv.training.train's model, optimiser, one-cycle schedule, train_epoch and predict, as train.run uses
    them."""
    torch.manual_seed(cfg.seed)
    model, _ = build_model(cfg, n_classes, in_chans)
    model = place_model(model, device, cfg)
    amp_dtype = autocast_dtype(device, cfg)
    phase = plan_phases(model, cfg, len(train_dl))[0]
    scaler = torch.amp.GradScaler(enabled=amp_dtype == torch.float16)
    t_train = t_valid = 0.0
    curve = []  # one point per epoch: cumulative fit seconds (validation included) and held-out accuracy
    for epoch in range(cfg.epochs):
        sync(device)
        t0 = time.perf_counter()
        loss, _ = train_epoch(model, train_dl, phase, scaler, device, amp_dtype, cfg, desc=f"epoch {epoch + 1}")
        sync(device)
        t1 = time.perf_counter()
        probs = predict(model, val_dl, device, amp_dtype)
        t2 = time.perf_counter()
        t_train, t_valid = t_train + t1 - t0, t_valid + t2 - t1
        acc = float((probs.argmax(1) == y_valid).mean()) if y_valid is not None else None
        curve.append({"epoch": epoch + 1, "seconds": round(t_train + t_valid, 3), "valid_accuracy": acc})
        print(
            f"    epoch {epoch + 1}: train_loss={loss:.4f} valid_accuracy={acc if acc is None else round(acc, 4)} "
            f"train {t1 - t0:.1f}s valid {t2 - t1:.1f}s",
            flush=True,
        )
    return {
        "train_seconds": t_train,
        "valid_seconds": t_valid,
        "valid_accuracy": acc,
        "steps_per_epoch": len(train_dl),
        "amp_dtype": str(amp_dtype),
        "curve": curve,
    }


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_synthetic(cfg, device, n_train, n_valid, n_classes, in_chans):
    """Way 1: the same steps on random tensors that already sit on the device (normalised float, model size)."""
    g = torch.Generator().manual_seed(0)
    s = cfg.img_size
    steps = n_train // cfg.batch_size
    train = [
        (
            torch.randn(cfg.batch_size, in_chans, s, s, generator=g).to(device),
            torch.randint(0, n_classes, (cfg.batch_size,), generator=g).to(device),
        )
        for _ in range(steps)
    ]
    vb = cfg.batch_size * 2
    valid = [
        (torch.randn(min(vb, n_valid - k), in_chans, s, s, generator=g).to(device), None) for k in range(0, n_valid, vb)
    ]
    return fit_kagglecv(cfg, train, valid, None, device, n_classes, in_chans)


def loaders(cfg, train_ds, valid_ds, device, n_train):
    """DataLoaders exactly as kagglecv.training.train.run makes them."""
    pin = device.type == "cuda"
    train_dl = DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=n_train > cfg.batch_size,
        num_workers=cfg.num_workers,
        pin_memory=pin,
        persistent_workers=cfg.num_workers > 0,
    )
    val_dl = DataLoader(valid_ds, batch_size=cfg.batch_size * 2, num_workers=cfg.num_workers, pin_memory=pin)
    return train_dl, val_dl


def run_kagglecv(cfg, device, data, n_classes, work: Path):
    """Way 2: our data path exactly as train.run picks it: the uint8 cache as prepare.py writes it (a .npy file,
    memory-mapped, read by row), on the device with batch augmentation when it fits on a GPU, else CachedImages
    + albumentations (data_path=auto)."""
    xtr, ytr, xva, yva = data
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "cache.npy", np.concatenate([xtr, xva]))
    images, y = open_cache(work / "cache.npy"), np.concatenate([ytr, yva])
    tr_idx, va_idx = np.arange(len(xtr)), np.arange(len(xtr), len(images))
    _, dc = build_model(cfg, n_classes, xtr.shape[-1])
    on_device = use_device_path(cfg.data_path, device, images.nbytes)
    print(f"    data path: {'device' if on_device else 'loader'}", flush=True)
    train_dl, val_dl = fold_batches(
        cfg, Fold(None, images, y, tr_idx, va_idx, Task("multiclass")), dc, device, on_device
    )
    return fit_kagglecv(cfg, train_dl, val_dl, yva, device, n_classes, xtr.shape[-1])


def run_png(cfg, device, paths, data, n_classes):
    """Way 3: a plain torch DataLoader decoding PNGs from disk, per-sample albumentations (the same transform)."""
    (tr_paths, va_paths), (xtr, ytr, _, yva) = paths, data
    _, dc = build_model(cfg, n_classes, xtr.shape[-1])
    train_tf = build_transform(dc["img_size"], dc["mean"], dc["std"], cfg.augment, seed=cfg.seed)
    plain_tf = build_transform(dc["img_size"], dc["mean"], dc["std"], "none")
    train_dl, val_dl = loaders(
        cfg, PngImages(tr_paths, ytr, train_tf), PngImages(va_paths, yva, plain_tf), device, len(ytr)
    )
    return fit_kagglecv(cfg, train_dl, val_dl, yva, device, n_classes, xtr.shape[-1])


# --- fastai (way 4) --------------------------------------------------------------------------------------------


def run_fastai(cfg, device, png_root: Path, workers: int | None) -> dict:
    """Way 4: fastai's own recipe on the same PNG files, with the same timm architecture by name, set up as its
    users set it up: aug_transforms and Normalize.from_stats(*imagenet_stats) in batch_tfms, fastai's default
    DataLoader workers. The images are grey (PILImageBW, n_in=1), so the statistics are ImageNet's channel
    means: what timm's data config and kagglecv give a 1-channel model, so both ways see the same inputs."""
    from fastai.callback.core import Callback
    from fastai.metrics import accuracy
    from fastai.vision.all import (
        ImageDataLoaders,
        Normalize,
        PILImageBW,
        Resize,
        aug_transforms,
        imagenet_stats,
        vision_learner,
    )

    class Timer(Callback):
        order = -100  # around everything else

        def before_fit(self):
            self.train_s = self.valid_s = 0.0
            self.curve = []  # cumulative fit seconds after each epoch's validation

        def before_train(self):
            sync(device)
            self.t = time.perf_counter()

        def after_train(self):
            sync(device)
            self.train_s += time.perf_counter() - self.t

        def before_validate(self):
            self.t = time.perf_counter()

        def after_validate(self):
            self.valid_s += time.perf_counter() - self.t

        def after_epoch(self):
            self.curve.append(self.train_s + self.valid_s)

    torch.manual_seed(cfg.seed)
    kw = {} if workers is None else {"num_workers": workers}
    mean, std = (float(np.mean(v)) for v in imagenet_stats)
    # The closest fastai augmentation to kagglecv's "light" preset (rotate 10, zoom 1.1, p 0.75); no flips,
    # no lighting, no warp. fastai applies it per batch, on the device, then normalises.
    dls = ImageDataLoaders.from_folder(
        png_root,
        train="train",
        valid="valid",
        bs=cfg.batch_size,
        img_cls=PILImageBW,
        item_tfms=Resize(cfg.img_size),
        batch_tfms=[
            *aug_transforms(
                do_flip=False, max_rotate=10.0, max_zoom=1.1, max_lighting=0.0, max_warp=0.0, p_affine=0.75
            ),
            Normalize.from_stats([mean], [std], cuda=device.type == "cuda"),
        ],
        device=device,
        **kw,
    )
    timer = Timer()
    learn = vision_learner(dls, cfg.backbone, pretrained=False, n_in=1, metrics=accuracy, cbs=[timer])
    amp = None
    if device.type == "cuda" and cfg.amp:  # as kagglecv: bf16 where supported, else fp16
        if torch.cuda.is_bf16_supported():
            learn, amp = learn.to_bf16(), "torch.bfloat16"
        else:
            learn, amp = learn.to_fp16(), "torch.float16"
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(cfg.epochs, cfg.lr, wd=cfg.weight_decay)
    values = learn.recorder.values  # per epoch: train_loss, valid_loss, accuracy
    curve = [
        {"epoch": k + 1, "seconds": round(sec, 3), "valid_accuracy": float(v[2])}
        for k, (sec, v) in enumerate(zip(timer.curve, values))
    ]
    for point, v in zip(curve, values):
        print(
            f"    epoch {point['epoch']}: train_loss={v[0]:.4f} valid_accuracy={v[2]:.4f} fit {point['seconds']:.1f}s",
            flush=True,
        )
    return {
        "train_seconds": timer.train_s,
        "valid_seconds": timer.valid_s,
        "valid_accuracy": float(values[-1][2]),
        "steps_per_epoch": len(dls.train),
        "amp_dtype": str(amp),
        "num_workers": dls.train.num_workers,
        "normalize": {"mean": [mean], "std": [std]},
        "curve": curve,
    }


# --- reporting ---------------------------------------------------------------------------------------------------


def seconds_to(curve: list[dict] | None, target: float) -> float | None:
    """Fit seconds (validation included) at the first epoch whose held-out accuracy reaches `target`."""
    for point in curve or []:
        if point["valid_accuracy"] is not None and point["valid_accuracy"] >= target:
            return point["seconds"]
    return None


def plot_curves(results: dict, target: float, path: Path, title: str) -> None:
    """Held-out accuracy after each epoch against fit seconds, one line per way that has labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for way, r in results.items():
        pts = [p for p in r.get("curve") or [] if p["valid_accuracy"] is not None]
        if pts:
            ax.plot([p["seconds"] for p in pts], [p["valid_accuracy"] for p in pts], marker="o", label=way)
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target}")
    ax.set(xlabel="fit seconds (validation included)", ylabel="held-out accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    print(f"written: {path}")


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backbone", default="resnet18", help="timm model name (default resnet18)")
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument(
        "--data-path",
        default="auto",
        choices=["auto", "device", "loader"],
        help="way 2's data path (train.data_path); auto = device on a GPU when it fits",
    )
    ap.add_argument("--lr", type=float, default=3e-3, help="peak one-cycle LR, the same for every way")
    ap.add_argument("--n-train", type=int, default=2400)
    ap.add_argument("--n-valid", type=int, default=600)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    ap.add_argument(
        "--workers", type=int, default=0, help="DataLoader workers for ways 2 and 3 (default 0, kagglecv's default)"
    )
    ap.add_argument("--fastai-workers", type=int, default=None, help="fastai's num_workers (default: fastai's own)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--ways", default="synthetic,kagglecv,png,fastai", help="comma-separated subset to run")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work", type=Path, default=BENCH / "work", help="scratch folder for the PNG files")
    ap.add_argument(
        "--target",
        type=float,
        default=TARGET,
        help="held-out accuracy whose time to reach is compared (default %(default)s)",
    )
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a kagglecv train setting for ways 1-3 (TrainConfig; YAML value), e.g. label_smoothing=0.1",
    )
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/<device>-<date>.json)")
    args = ap.parse_args(argv)
    overrides = train_overrides(ap, args.overrides)
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    unknown = set(ways) - {"synthetic", "kagglecv", "png", "fastai"}
    if unknown:
        ap.error(f"unknown way(s) {sorted(unknown)}")

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    # Ways 1-3 train with kagglecv's own defaults (TrainConfig, the schema's) for everything not set here.
    cfg = TrainConfig.from_dict(
        {
            "augment": "light",
            **overrides,
            "backbone": args.backbone,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "data_path": args.data_path,
            "img_size": args.img_size,
            "tta": "none",
            "num_workers": args.workers,
            "threads": args.threads,
            "device": args.device,
            "seed": args.seed,
        }
    )
    device = pick_device(cfg)
    xtr, ytr, xva, yva, dataset = load_data(args.n_train, args.n_valid)
    n_classes, in_chans = int(max(ytr.max(), yva.max())) + 1, xtr.shape[-1]
    png_root = args.work / f"png-{dataset}-{len(ytr)}-{len(yva)}"
    paths = write_pngs(png_root, xtr, ytr, xva, yva) if {"png", "fastai"} & set(ways) else None
    name = device_name(device)
    print(
        f"device: {name} ({device}), torch {torch.__version__}, {args.threads} threads; data: {dataset} "
        f"{len(ytr)} train + {len(yva)} valid, {xtr.shape[1]}x{xtr.shape[2]} -> {args.img_size} px; "
        f"{args.backbone}, bs {args.batch_size}, {args.epochs} epochs, lr {args.lr}",
        flush=True,
    )

    # Warm-up (not timed): the first steps of a process pay one-off kernel/allocator set-up costs.
    warm = dict(cfg.__dict__, epochs=1)
    run_synthetic(TrainConfig(**warm), device, 2 * args.batch_size, 2, n_classes, in_chans)

    results = {}
    for way in ways:
        torch.set_num_threads(args.threads)
        print(f"[{way}]", flush=True)
        load_before = loadavg()
        t0 = time.perf_counter()
        if way == "synthetic":
            r = run_synthetic(cfg, device, len(ytr), len(yva), n_classes, in_chans)
            r["valid_accuracy"] = None  # random labels
        elif way == "kagglecv":
            r = run_kagglecv(cfg, device, (xtr, ytr, xva, yva), n_classes, args.work)
        elif way == "png":
            r = run_png(cfg, device, paths, (xtr, ytr, xva, yva), n_classes)
        else:
            try:
                import fastai
            except ImportError:
                print("    skipped: fastai is not installed here; run in bench/.venv (bench/README.md)", flush=True)
                continue
            r = run_fastai(cfg, device, png_root, args.fastai_workers)
            r["fastai_version"] = fastai.__version__
        images = args.epochs * r["steps_per_epoch"] * args.batch_size
        fit_s = r["train_seconds"] + r["valid_seconds"]
        r.update(
            {
                "images_trained": images,
                "fit_seconds": round(fit_s, 3),
                "img_per_s": round(images / fit_s, 1),
                "train_img_per_s": round(images / r["train_seconds"], 1),
                "wall_seconds_with_setup": round(time.perf_counter() - t0, 3),
                "loadavg_before": load_before,
                "loadavg_after": loadavg(),
            }
        )
        for k in ("train_seconds", "valid_seconds"):
            r[k] = round(r[k], 3)
        results[way] = r

    ratios = {}
    base = results.get("kagglecv")
    for other in ("synthetic", "png", "fastai"):
        if base and other in results:
            ratios[f"kagglecv/{other}"] = round(base["img_per_s"] / results[other]["img_per_s"], 3)
            ratios[f"kagglecv/{other} (train only)"] = round(
                base["train_img_per_s"] / results[other]["train_img_per_s"], 3
            )

    for r in results.values():
        r["seconds_to_target"] = seconds_to(r.get("curve"), args.target)
    if base and "fastai" in results and base["seconds_to_target"] and results["fastai"]["seconds_to_target"]:
        ratios["time to target kagglecv/fastai"] = round(
            base["seconds_to_target"] / results["fastai"]["seconds_to_target"], 3
        )

    target = f"s to {args.target}"
    print(f"\n{'way':<10} {'fit s':>7} {'img/s':>7} {'train img/s':>12} {'valid acc':>10} {target:>10}")
    for way, r in results.items():
        acc = "-" if r["valid_accuracy"] is None else f"{r['valid_accuracy']:.4f}"
        to = "-" if r["seconds_to_target"] is None else f"{r['seconds_to_target']:.1f}"
        print(
            f"{way:<10} {r['fit_seconds']:>7.1f} {r['img_per_s']:>7.0f} {r['train_img_per_s']:>12.0f} {acc:>10} "
            f"{to:>10}"
        )
    print(
        "img/s = images trained / fit time, validation included; ratios of img/s (>1: kagglecv is faster); "
        f"s to {args.target}: fit seconds until the held-out accuracy first reaches it (<1 ratio: kagglecv is "
        "sooner)"
    )
    for k, v in ratios.items():
        print(f"  {k:<34} {v:.3f}")

    import timm

    report = {
        "device": name,
        "device_type": device.type,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "settings": {
            "backbone": args.backbone,
            "img_size": args.img_size,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "lr": args.lr,
            "weight_decay": cfg.weight_decay,
            "augment": "kagglecv light / fastai aug_transforms(rotate 10, zoom 1.1, p 0.75)",
            "dataset": dataset,
            "n_train": len(ytr),
            "n_valid": len(yva),
            "threads": args.threads,
            "workers": args.workers,
            "fastai_workers": args.fastai_workers,
            "seed": args.seed,
            "target_accuracy": args.target,
            "kagglecv_overrides": overrides,
            "label_smoothing": cfg.label_smoothing,
        },
        "results": results,
        "ratios": ratios,
        "valid_accuracy": {w: results[w]["valid_accuracy"] for w in ("kagglecv", "fastai") if w in results},
        "anchor": ANCHOR,
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    out = args.out or BENCH / "results" / f"{slug(name)}-{dt.date.today().isoformat()}.json"
    write_json(out, report)
    plot_curves(
        results,
        args.target,
        out.with_suffix(".png"),
        f"{args.backbone}, {args.img_size} px, {dataset} {len(ytr)}/{len(yva)}, {name}",
    )
    print(f"\nwritten: {out} ({report['total_seconds']:.0f} s in all)")
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
