"""Learning-rate range test, as fastai's `Learner.lr_find`: an exponential LR sweep on the training data.

The LR grows from `start_lr` to `end_lr` over `num_it` AdamW steps; the loss is smoothed exponentially (with
bias correction, fastai's `AvgSmoothLoss`) and the sweep stops once it passes `stop_div` x its best value or is
not finite. The model's weights are restored afterwards. Suggestions follow fastai's `SuggestionMethod`s:
`valley` (the default), `minimum` (one tenth of the LR at the lowest loss) and `steep` (steepest descent).

`run_lr_find` builds the model and the training data exactly as `kagglecv.training.train.run` does (fold 0's training
rows, the train augmentation) and writes lr_find.json and lr_find.png.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kagglecv.config.schema import default_of
from kagglecv.config.train import TrainConfig
from kagglecv.core.errors import InputError
from kagglecv.core.files import atomic_path, write_json
from kagglecv.core.layout import LrFindFiles

SUGGESTION_METHODS = ("valley", "minimum", "steep")


@dataclass(frozen=True)
class LRFindConfig:
    """The sweep's settings: the workflow's `lr_find:` section (the schema describes each and holds its default)."""

    start_lr: float = default_of("lr_find.start_lr")
    end_lr: float = default_of("lr_find.end_lr")
    num_it: int = default_of("lr_find.num_it")
    stop_div: float = default_of("lr_find.stop_div")
    method: str = default_of("lr_find.method")


DEFAULTS = LRFindConfig()


@dataclass
class LRFinderResult:
    lrs: list[float]  # LR used at each recorded step
    losses: list[float]  # smoothed (bias-corrected) training loss after each step
    suggestion: float  # suggestions[method], valley by default
    suggestions: dict[str, float] = field(default_factory=dict)  # valley, minimum, steep
    method: str = "valley"
    stopped_early: bool = False  # True when the loss diverged before num_it steps
    points: dict[str, tuple[float, float]] = field(default_factory=dict)  # (lr, loss) to mark on the plot


# --- suggestion rules (fastai.callback.schedule: valley, minimum, steep) ---------------------------------------


def valley(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, tuple[float, float]]:
    """fastai's valley: the longest decreasing run of losses (longest decreasing subsequence ending at each
    point), then the LR half-way into it (start + len/3 + len/6; fastai documents it as "~2/3").

    Returns (suggested lr, (lr, loss) to mark)."""
    n = len(losses)
    longest = [1] * n  # longest[i]: length of the longest strictly decreasing subsequence ending at i
    end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[i] > longest[end]:
            end = i
    start = end - longest[end]  # as fastai (may be -1 when the valley begins at the first point)
    sections = (end - start) / 3
    idx = start + int(sections) + int(sections / 2)
    idx = min(max(idx, 0), n - 1)  # fastai would index lrs[-1] for a 2-point valley at the start
    return float(lrs[idx]), (float(lrs[idx]), float(losses[idx]))


def minimum(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, tuple[float, float]]:
    """One tenth of the LR at the lowest loss."""
    i = int(np.argmin(losses))
    return float(lrs[i]) / 10, (float(lrs[i]), float(losses[i]))


def steep(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, tuple[float, float]]:
    """The LR where the loss falls fastest against log(lr)."""
    if len(lrs) < 2:
        return float(lrs[0]), (float(lrs[0]), float(losses[0]))
    grads = np.diff(losses) / np.diff(np.log(lrs))
    i = int(np.argmin(grads))
    return float(lrs[i]), (float(lrs[i]), float(losses[i]))


SUGGESTERS = {"valley": valley, "minimum": minimum, "steep": steep}


def suggest(lrs, losses, num_it: int) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """All suggestions on the recorded curve, trimmed as fastai does: drop the first num_it // 10 steps (the
    smoother warming up) and the last 5 (the blow-up), and everything from the first non-finite loss on."""
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    bad = np.flatnonzero(~np.isfinite(losses))
    if len(bad):
        lrs, losses = lrs[: bad[0]], losses[: bad[0]]
    if len(losses) == 0:
        raise ValueError("lr_find: no finite loss was recorded; lower start_lr or check the data")
    lo, hi = num_it // 10, len(losses) - 5
    if hi - lo >= 2:  # a sweep that diverged very early keeps its whole (short) curve
        lrs, losses = lrs[lo:hi], losses[lo:hi]
    values, points = {}, {}
    for name, fn in SUGGESTERS.items():
        values[name], points[name] = fn(lrs, losses)
    return values, points


# --- the sweep ---------------------------------------------------------------------------------------------------


def _batches(loader):
    """Cycle through the loader for as many steps as needed."""
    while True:
        n = 0
        for batch in loader:
            n += 1
            yield batch
        if n == 0:
            raise ValueError("lr_find: the training loader is empty")


def lr_find(
    model: torch.nn.Module,
    train_loader,
    device,
    *,
    start_lr: float = DEFAULTS.start_lr,
    end_lr: float = DEFAULTS.end_lr,
    num_it: int = DEFAULTS.num_it,
    beta: float = 0.98,
    stop_div: float = DEFAULTS.stop_div,
    weight_decay: float = 0.01,
    amp_dtype: torch.dtype | None = None,
    label_smoothing: float = 0.0,
    method: str = DEFAULTS.method,
    loss_fn=None,
) -> LRFinderResult:
    """Sweep the LR exponentially from start_lr to end_lr over num_it AdamW steps on (x, y) batches.

    The model is moved to `device` and left there; its weights (parameters and buffers) and its train/eval
    mode are restored afterwards, whatever happens. Step i uses lr = start_lr * (end_lr / start_lr) ** (i / num_it),
    as fastai's LRFinder. `amp_dtype` autocasts the forward pass (float16 adds a grad scaler) as in training.
    """
    if method not in SUGGESTERS:
        raise ValueError(f"lr_find: unknown suggestion method {method!r}; choose one of {list(SUGGESTERS)}")
    if not 0 < start_lr < end_lr:
        raise ValueError(f"lr_find: need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
    from kagglecv.core.devices import inputs  # batches follow the model's memory format (devices.place_model)
    from kagglecv.inference.models import forward

    num_it = max(int(num_it), 6)  # fastai's floor: fewer steps leave nothing after trimming
    device = torch.device(device)
    model.to(device)
    saved = copy.deepcopy(model.state_dict())
    was_training = model.training
    optimizer = torch.optim.AdamW(model.parameters(), lr=start_lr, weight_decay=weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    lrs: list[float] = []
    losses: list[float] = []
    avg, best, stopped = 0.0, math.inf, False
    try:
        model.train()
        batches = _batches(train_loader)
        for it in range(num_it):
            lr = start_lr * (end_lr / start_lr) ** (it / num_it)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = next(batches)
            (x, meta), y = inputs(model, x, device), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = forward(model, x, meta)
                loss = (
                    loss_fn(out, y)
                    if loss_fn is not None
                    # the task's loss (train.task_loss)
                    else F.cross_entropy(out, y, label_smoothing=label_smoothing)
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            value = float(loss.detach())
            avg = beta * avg + (1 - beta) * value
            smooth = avg / (1 - beta ** (it + 1))
            if not math.isfinite(smooth):
                stopped = True
                break
            lrs.append(lr)
            losses.append(smooth)
            best = min(best, smooth)
            if smooth > stop_div * best:
                stopped = True
                break
    finally:
        optimizer.zero_grad(set_to_none=True)
        model.load_state_dict(saved)
        model.train(was_training)
    values, points = suggest(lrs, losses, num_it)
    return LRFinderResult(
        lrs=lrs,
        losses=losses,
        suggestion=values[method],
        suggestions=values,
        method=method,
        stopped_early=stopped,
        points=points,
    )


# --- plot and workflow step -----------------------------------------------------------------------------------


def plot_lr_find(result: LRFinderResult, path: str | Path, skip_end: int = 5, title: str | None = None) -> None:
    """Smoothed loss against LR (log scale) with the suggestions marked; PNG written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lrs, losses = result.lrs, result.losses
    if skip_end and len(lrs) > skip_end + 2:  # fastai hides the last points, where the loss explodes
        lrs, losses = lrs[:-skip_end], losses[:-skip_end]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    try:
        ax.plot(lrs, losses)
        ax.set_xscale("log")
        ax.set_xlabel("Learning Rate")
        ax.set_ylabel("Loss (smoothed)")
        if title:
            ax.set_title(title)
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"][1:]
        for (name, value), color in zip(result.suggestions.items(), colors):
            if name in result.points:
                mark_lr, mark_loss = result.points[name]
            else:  # a result rebuilt from lr_find.json: mark the curve at the suggested lr
                mark_lr, mark_loss = value, float(np.interp(np.log(value), np.log(result.lrs), result.losses))
            label = f"{name}: {value:.2e}" + (" (suggestion)" if name == result.method else "")
            ax.plot(mark_lr, mark_loss, "o", color=color, label=label)
        ax.legend(loc="best")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def run_lr_find(train_cfg: dict, prepared_dir, folds_csv, out_dir, settings: dict | LRFindConfig | None = None) -> dict:
    """The range test on the training rows of fold train_cfg["fold"] (0 by default), built as train.run builds
    them: same model, input size, normalisation, augmentation, batch size, weight decay, AMP and seed.

    Writes out_dir/lr_find.json ({suggestion, suggestions, lrs, losses, backbone, ...}) and out_dir/lr_find.png."""
    from kagglecv.data.batches import use_device_path
    from kagglecv.training.fold import fold_batches, load_fold
    from kagglecv.training.loop import task_loss
    from kagglecv.training.session import setup_model

    cfg = TrainConfig.from_dict({k: v for k, v in train_cfg.items() if k != "lr"})  # lr may be "auto"
    sweep = settings if isinstance(settings, LRFindConfig) else LRFindConfig(**(settings or {}))
    start_lr, end_lr, num_it, stop_div, method = (
        sweep.start_lr,
        sweep.end_lr,
        sweep.num_it,
        sweep.stop_div,
        sweep.method,
    )
    prepared_dir, out_dir = Path(prepared_dir), Path(out_dir)
    data = load_fold(cfg, prepared_dir, folds_csv)
    images, task, tr_idx = data.images, data.task, data.tr_idx
    model, dc, device, amp_dtype = setup_model(cfg, task.outputs, images.shape[-1], data.n_meta)
    # The training rows exactly as train.run feeds them (same targets, data path, augmentation, seed, metadata).
    train_dl, _ = fold_batches(cfg, data, dc, device, use_device_path(cfg.data_path, device, images.nbytes))
    result = lr_find(
        model,
        train_dl,
        device,
        start_lr=start_lr,
        end_lr=end_lr,
        num_it=num_it,
        stop_div=stop_div,
        weight_decay=cfg.weight_decay,
        amp_dtype=amp_dtype,
        label_smoothing=cfg.label_smoothing,
        method=method,
        loss_fn=lambda out, target: task_loss(task, out, target, cfg.label_smoothing),
    )
    print(
        f"lr_find {cfg.backbone}: {len(result.lrs)} steps"
        f"{' (stopped: loss diverged)' if result.stopped_early else ''}; "
        + ", ".join(f"{k}={v:.3g}" for k, v in result.suggestions.items())
        + f"; suggestion ({method}) = {result.suggestion:.3g}",
        flush=True,
    )
    out = {
        "backbone": cfg.backbone,
        "suggestion": result.suggestion,
        "method": method,
        "suggestions": result.suggestions,
        "lrs": result.lrs,
        "losses": result.losses,
        "stopped_early": result.stopped_early,
        "fold": cfg.fold,
        "n_train": len(tr_idx),
        "img_size": dc["img_size"],
        "batch_size": cfg.batch_size,
        "device": str(device),
        "settings": {"start_lr": start_lr, "end_lr": end_lr, "num_it": num_it, "stop_div": stop_div},
    }
    files = LrFindFiles(out_dir)
    plot_lr_find(result, files.png, title=f"{cfg.backbone}: lr_find")
    write_json(files.json, out)
    return out


def with_lr(cfg: TrainConfig, lr_find_json: str | Path | None) -> TrainConfig:
    """`cfg` with train.lr: auto resolved to the suggestion in the backbone's lr_find.json (the lr_find rule's)."""
    if cfg.lr != "auto":
        return cfg
    if not lr_find_json:
        raise InputError("train.lr: auto needs the lr_find rule's lr_find.json for this backbone")
    found = json.loads(Path(lr_find_json).read_text())
    print(
        f"train.lr: auto -> {found['suggestion']:.4g} ({found.get('method', 'valley')} of {lr_find_json})", flush=True
    )
    return dataclasses.replace(cfg, lr=float(found["suggestion"]))
