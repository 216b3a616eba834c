"""Augmentation and TTA presets. Training augmentations are albumentations pipelines chosen by name."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check for a newer version in every job

import albumentations as A  # noqa: E402
import numpy as np
import torch


def _affine(rotate: float, zoom: float, shift: float) -> A.BasicTransform:
    return A.Affine(rotate=(-rotate, rotate), scale=(1.0, zoom), translate_percent=(-shift, shift), p=0.75)


# name -> transforms applied after resizing to the model's input size, before normalisation.
AUGMENT_PRESETS = {
    "none": lambda: [],
    # Small shifts/rotations/zooms: safe for digits and anything orientation-sensitive.
    "light": lambda: [_affine(rotate=10, zoom=1.1, shift=0.08)],
    "flip": lambda: [A.HorizontalFlip(p=0.5), _affine(rotate=10, zoom=1.1, shift=0.05)],
    # Seed 000's fastai get_transforms(do_flip=True, flip_vert=True, max_rotate=10, max_zoom=1.1,
    # max_lighting=0.2, max_warp=0.2): dihedral flips, then affine/lighting/warp each with p=0.75.
    "fastai": lambda: [
        A.D4(p=1.0),
        _affine(rotate=10, zoom=1.1, shift=0.0),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.75),
        A.Perspective(scale=(0.0, 0.1), p=0.75),
    ],
}



def build_transform(size: int, mean, std, augment: str = "none", seed: int | None = None) -> A.Compose:
    """Resize, augment, normalise. `seed` makes the random augmentations reproducible (single-process loading)."""
    if augment not in AUGMENT_PRESETS:
        raise ValueError(f"unknown augment preset {augment!r}; choose one of {sorted(AUGMENT_PRESETS)}")
    return A.Compose([
        A.Resize(size, size),
        *AUGMENT_PRESETS[augment](),
        A.Normalize(mean=mean, std=std, max_pixel_value=255.0),
    ], seed=seed)


def dihedral_views(x: torch.Tensor, n: int = 8) -> list[torch.Tensor]:
    """The first n of the 8 symmetries of the square, on an NCHW batch (identity first)."""
    views = []
    for k in range(4):
        r = torch.rot90(x, k, dims=(2, 3))
        views += [r, torch.flip(r, dims=(3,))]
    return views[:n]


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
