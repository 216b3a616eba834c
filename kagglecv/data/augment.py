"""Augmentation and TTA presets. Training augmentations are albumentations pipelines chosen by name."""

from __future__ import annotations

import os
import zlib

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check for a newer version in every job

from dataclasses import dataclass  # noqa: E402

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


@dataclass(frozen=True)
class Preset:
    """One augmentation recipe, rendered both as albumentations (per sample) and as batched tensor ops."""

    hflip: bool = False  # random left-right mirror
    d4: bool = False  # random element of the dihedral group (flips + 90-degree rotations)
    rotate: float = 0.0  # max degrees
    zoom: float = 1.0  # max scale
    shift: float = 0.0  # max translation, fraction of the side
    p_affine: float = 0.75  # probability of the rotate/zoom/shift, as fastai's p_affine
    lighting: float = 0.0  # max brightness and contrast change
    warp: float = 0.0  # perspective strength (albumentations path only)


AUGMENT_PRESETS = {
    "none": Preset(),
    # Small shifts/rotations/zooms: safe for digits and anything orientation-sensitive.
    "light": Preset(rotate=10, zoom=1.1, shift=0.08),
    "flip": Preset(hflip=True, rotate=10, zoom=1.1, shift=0.05),
    # Seed 000's fastai get_transforms(do_flip=True, flip_vert=True, max_rotate=10, max_zoom=1.1,
    # max_lighting=0.2, max_warp=0.2): dihedral flips, then affine/lighting/warp each with p=0.75.
    "fastai": Preset(d4=True, rotate=10, zoom=1.1, lighting=0.2, warp=0.1),
}


def albumentations_ops(p: Preset) -> list:
    ops = [A.HorizontalFlip(p=0.5)] if p.hflip else []
    ops += [A.D4(p=1.0)] if p.d4 else []
    if p.rotate or p.zoom != 1.0 or p.shift:
        ops.append(
            A.Affine(
                rotate=(-p.rotate, p.rotate), scale=(1.0, p.zoom), translate_percent=(-p.shift, p.shift), p=p.p_affine
            )
        )
    if p.lighting:
        ops.append(A.RandomBrightnessContrast(brightness_limit=p.lighting, contrast_limit=p.lighting, p=0.75))
    if p.warp:
        ops.append(A.Perspective(scale=(0.0, p.warp), p=0.75))
    return ops


def image_seed(image: np.ndarray, seed: int) -> int:
    """A seed for one image's random views, from its pixels and `seed`: the same image gets the same views
    whatever its position, batch or company (the workflow's test set, a kernel on Kaggle, `predict`)."""
    return zlib.crc32(np.ascontiguousarray(image).data, int(seed) & 0xFFFFFFFF)


def reseed(transform: A.Compose, seed: int) -> None:
    """Seed an albumentations pipeline and give each of its transforms a stream of its own (set_random_seed
    alone hands them all the same seed, so e.g. a flip and an affine would always fire together)."""
    states = np.random.SeedSequence(seed).generate_state(len(transform.transforms) + 1)
    transform.set_random_seed(int(states[0]))
    for t, s in zip(transform.transforms, states[1:]):
        t.set_random_seed(int(s))


def _uniform(n: int, gen: torch.Generator | None, gens: list[torch.Generator] | None, dev) -> torch.Tensor:
    """n uniforms: from `gen` in batch order, or one from each row's own generator (per-image seeding)."""
    if gens is None:
        return torch.rand(n, generator=gen, device="cpu").to(dev)
    return torch.cat([torch.rand(1, generator=g) for g in gens]).to(dev)


def batch_augment(
    x: torch.Tensor, size: int, p: Preset, gen: torch.Generator | None, train: bool, seeds: list[int] | None = None
) -> torch.Tensor:
    """uint8 NHWC batch -> float NCHW in [0, 1] at size x size, augmented on x's device.

    Resize, flips, rotations, zoom and shift are one affine grid_sample per batch: the whole
    augmentation costs a few kernels however large the batch (the airbench lesson). With `seeds` (one per row,
    see image_seed) each row's random parameters come from its own seed instead of `gen`."""
    x = x.permute(0, 3, 1, 2).float().div_(255)
    n, dev = len(x), x.device
    gens = None if seeds is None else [torch.Generator().manual_seed(int(s)) for s in seeds]
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    if train and p != Preset():

        def rand(n):
            return _uniform(n, gen, gens, dev)

        apply = (rand(n) < p.p_affine).float()
        angle = torch.deg2rad((rand(n) * 2 - 1) * p.rotate) * apply
        if p.d4:
            angle = angle + torch.floor(rand(n) * 4) * (torch.pi / 2)
        scale = 1.0 / (1.0 + (p.zoom - 1.0) * rand(n) * apply)  # zoom in = sample a smaller window
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        flip = torch.where(rand(n) < 0.5, -1.0, 1.0) if (p.hflip or p.d4) else torch.ones(n, device=dev)
        theta = torch.stack(
            [
                torch.stack([cos * flip, -sin, (rand(n) * 2 - 1) * 2 * p.shift * apply], 1),
                torch.stack([sin * flip, cos, (rand(n) * 2 - 1) * 2 * p.shift * apply], 1),
            ],
            1,
        )
    grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if train and p.lighting:
        b = 1 + (_uniform(n, gen, gens, dev).view(n, 1, 1, 1) * 2 - 1) * p.lighting
        c = 1 + (_uniform(n, gen, gens, dev).view(n, 1, 1, 1) * 2 - 1) * p.lighting
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * c + mean * b).clamp_(0, 1)
    return out


def build_transform(size: int, mean, std, augment: str = "none", seed: int | None = None) -> A.Compose:
    """Resize, augment, normalise. `seed` makes the random augmentations reproducible (single-process loading)."""
    if augment not in AUGMENT_PRESETS:
        raise ValueError(f"unknown augment preset {augment!r}; choose one of {sorted(AUGMENT_PRESETS)}")
    return A.Compose(
        [
            A.Resize(size, size),
            *albumentations_ops(AUGMENT_PRESETS[augment]),
            A.Normalize(mean=mean, std=std, max_pixel_value=255.0),
        ],
        seed=seed,
    )
