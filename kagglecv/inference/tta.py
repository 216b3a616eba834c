"""Predictions with test-time augmentation: the plain prediction blended with deterministic or random views.

`predict` runs a model over batches (the mean over deterministic views when asked); `predict_tta` is what every
prediction of the workflow goes through (validation rows after training, the test set, `predict`, the kernel):
the plain pass blended with the TTA views as fastai's tta(beta). `cfg` is anything with a TrainConfig's
prediction settings (`tta`, `tta_n`, `tta_beta`, `augment`, `seed`, `batch_size`, `num_workers`, `threads`).
"""

from __future__ import annotations

import numpy as np
import torch

from kagglecv.core.devices import inputs
from kagglecv.core.tasks import Task
from kagglecv.data.augment import AUGMENT_PRESETS, Preset
from kagglecv.data.batches import loader_workers, make_batches
from kagglecv.inference.models import forward


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


def predict_tta(
    model,
    images,
    cfg,
    dc: dict,
    device,
    amp_dtype,
    on_device: bool = False,
    rows=None,
    task: Task = Task("multiclass"),
    meta=None,
) -> np.ndarray:
    """The plain prediction of `rows` of the cache (all when None) blended with the TTA views (fastai's beta
    blend), streamed a batch at a time; `meta`: the encoded metadata of every cache row, for models built with
    it. An image's random views (tta=augment) are seeded by its own pixels, so it gets the same prediction in
    the test set, a Kaggle kernel or `predict`, whatever rows surround it."""

    def batches(augment: str, seed: int = 0):
        return make_batches(
            images,
            None,
            dc,
            device,
            augment=augment,
            shuffle=False,
            batch_size=cfg.batch_size * 2,
            seed=seed,
            on_device=on_device,
            rows=rows,
            per_image=True,
            meta=meta,
            num_workers=loader_workers(cfg.num_workers, cfg.threads, device),
        )

    tta = resolve_tta(cfg.tta, cfg.augment)
    plain = predict(model, batches("none"), device, amp_dtype, task=task)
    if tta == "none":
        return plain
    if tta == "augment":
        views = [
            predict(model, batches(cfg.augment, cfg.seed + i), device, amp_dtype, task=task) for i in range(cfg.tta_n)
        ]
    else:
        views = [predict(model, batches("none"), device, amp_dtype, tta=tta, task=task)]
    return tta_blend(plain, views, cfg.tta_beta)


def tta_passes(cfg) -> int:
    """Forward passes per image of the final predictions: the plain one and the TTA views."""
    tta = resolve_tta(cfg.tta, cfg.augment)
    return 1 + {"none": 0, "flip": 2, "dihedral": 8, "augment": cfg.tta_n}[tta]


def dihedral_views(x: torch.Tensor, n: int = 8) -> list[torch.Tensor]:
    """The first n of the 8 symmetries of the square, on an NCHW batch (identity first)."""
    views = []
    for k in range(4):
        r = torch.rot90(x, k, dims=(2, 3))
        views += [r, torch.flip(r, dims=(3,))]
    return views[:n]


def resolve_tta(tta: str, augment: str) -> str:
    """tta 'auto': the symmetries the training augmentation teaches (d4: dihedral, hflip: flip), else none. A
    view the model never saw in training hurts (flip TTA on a model trained without flips: Fashion-MNIST 0.81 ->
    0.65), and random passes of a light augmentation did not pay for their 5 forward passes (bench/README.md)."""
    if tta != "auto":
        return tta
    preset = AUGMENT_PRESETS.get(augment, Preset())
    return "dihedral" if preset.d4 else "flip" if preset.hflip else "none"


def tta_views(x: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """Deterministic TTA views of a normalised batch; 'augment' is handled by the caller (random passes)."""
    if tta == "flip":
        return [torch.flip(x, dims=(3,))]
    if tta == "dihedral":
        return dihedral_views(x)[1:]  # the plain view is blended separately
    return []


def tta_blend(plain: np.ndarray, views: list[np.ndarray], beta: float) -> np.ndarray:
    """fastai's tta(beta): beta * plain + (1 - beta) * mean(augmented views)."""
    if not views:
        return plain
    return beta * plain + (1.0 - beta) * np.mean(views, axis=0)
