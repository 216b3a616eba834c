"""Batches from the image cache, for training and prediction.

The cache (`train_images.npy`, `test_images.npy`: uint8 N x H x W x C) is memory-mapped and read row by row: a
fold, its validation rows or the test set is a cache plus an array of row indices, never a copy. Pages the
process has read are handed back to the page cache as it goes (`release`), so a job's resident memory stays
flat however large the dataset: reading all of a 7 GB cache costs no more RSS than reading 100 MB of it.

Two paths make the same batches (normalised NCHW float tensors and labels):
  loader  a DataLoader over `CachedImages`, albumentations per sample; `num_workers` processes share the map.
  device  `DeviceBatches`: the fold's rows copied once to the device (in chunks: host memory stays bounded),
          augmented there a whole batch at a time. Only when they fit (`use_device_path`).
"""

from __future__ import annotations

import math
import mmap
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from kagglecv.core.devices import shard, world
from kagglecv.data.augment import AUGMENT_PRESETS, batch_augment, build_transform, image_seed, reseed

RELEASE_BYTES = 16 << 20  # bytes read between two page releases: what mapped pages may add to RSS
DEVICE_CHUNK = 4096  # rows per host-to-device copy when the device path loads a fold


def open_cache(path: str | Path) -> np.ndarray:
    """The cache, memory-mapped read-only."""
    return np.load(path, mmap_mode="r")


class Stacked:
    """Two caches read as one, without a copy: rows [0, len(first)) from the first, the rest from the second (a
    fold's training images and the test images its teachers labelled, kagglecv.training.teachers)."""

    def __init__(self, first, second):
        self.parts, self.n_first = (first, second), len(first)
        self.shape, self.dtype = (len(first) + len(second), *first.shape[1:]), first.dtype
        self.nbytes = first.nbytes + second.nbytes

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows):
        if np.ndim(rows) == 0:
            return self.parts[0][rows] if rows < self.n_first else self.parts[1][rows - self.n_first]
        rows = np.asarray(rows)
        out, first = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype), rows < self.n_first
        out[first], out[~first] = self.parts[0][rows[first]], self.parts[1][rows[~first] - self.n_first]
        return out


def release(cache) -> None:
    """Drop this process's mapped pages of a memory-mapped cache. The data stays in the kernel's page cache, so
    a later read is a minor fault, not disk I/O; what goes is the pages' weight in this process's RSS."""
    for part in getattr(cache, "parts", ()):
        release(part)
    mm = getattr(cache, "_mmap", None)
    if mm is not None and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


def as_rows(cache, rows) -> np.ndarray:
    return np.arange(len(cache)) if rows is None else np.asarray(rows, dtype=np.int64)


class CachedImages(Dataset):
    """Rows `rows` of the cache (all when None), transformed per sample by albumentations.

    `labels[i]` belongs to `rows[i]`; None for unlabelled (test) rows. With `view_seed`, each image's random
    transform is seeded from its pixels and `view_seed` (augment.image_seed): test-time views that do not
    depend on order, batch size or worker processes. With `meta` (float32, one row per cache row: the encoded
    data.meta_columns), an item's input is (image, its metadata row)."""

    def __init__(self, cache, labels, transform, rows=None, view_seed: int | None = None, meta=None, weights=None):
        self.cache, self.rows, self.labels, self.transform = cache, as_rows(cache, rows), labels, transform
        self.view_seed, self.meta, self.weights = view_seed, meta, weights
        self._read = 0  # bytes read since the last release

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        row = np.asarray(self.cache[self.rows[i]])
        if self.view_seed is not None:
            reseed(self.transform, image_seed(row, self.view_seed))
        x = self.transform(image=row)["image"]
        self._read += row.nbytes
        if self._read >= RELEASE_BYTES:  # per process: DataLoader workers each count their own reads
            release(self.cache)
            self._read = 0
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
        if self.meta is not None:
            x = (x, torch.from_numpy(self.meta[self.rows[i]]))
        # a class index, a 0/1 vector (multilabel) or a number (regression); the default collate stacks them
        y = -1 if self.labels is None else torch.as_tensor(self.labels[i])
        return x, (y if self.weights is None else (y, torch.as_tensor(self.weights[i])))


def to_device(cache, rows, device, view_seed: int | None = None) -> tuple[torch.Tensor, list[int] | None]:
    """The cache's `rows` as one uint8 tensor on `device`, copied a chunk at a time; with `view_seed`, also each
    row's image_seed (computed on the host copy, on the way)."""
    x = torch.empty((len(rows), *cache.shape[1:]), dtype=torch.uint8, device=device)
    seeds = None if view_seed is None else []
    for s in range(0, len(rows), DEVICE_CHUNK):
        chunk = np.ascontiguousarray(cache[rows[s : s + DEVICE_CHUNK]])
        x[s : s + DEVICE_CHUNK] = torch.from_numpy(chunk).to(device)
        if seeds is not None:
            seeds += [image_seed(img, view_seed) for img in chunk]
        release(cache)
    return x, seeds


class ShardedBatches(Sampler):
    """Shuffled batches of `batch_size` rows, each cut to this process's share (kagglecv.training.distributed): the
    global batches are those one process would draw from the same generator, so N processes see what one would."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, drop_last: bool):
        self.n, self.bs, self.gen, self.drop_last = n, batch_size, generator, drop_last

    def __len__(self) -> int:
        return self.n // self.bs if self.drop_last else math.ceil(self.n / self.bs)

    def __iter__(self):
        from kagglecv.core.devices import shard

        order = torch.randperm(self.n, generator=self.gen).tolist()  # as RandomSampler draws it
        for b in range(len(self)):
            yield shard(order[b * self.bs : (b + 1) * self.bs])


class DeviceBatches:
    """The on-device data path: the fold's uint8 rows live on the device and whole batches are augmented there,
    so no per-sample work, no host-to-device copies and no worker processes stand between epochs."""

    def __init__(
        self,
        cache,
        labels,
        dc: dict,
        device,
        *,
        augment: str,
        shuffle: bool,
        batch_size: int,
        seed: int,
        rows=None,
        view_seed: int | None = None,
        meta=None,
        shard: bool = True,
        weights=None,
    ):
        self.x, self.seeds = to_device(cache, as_rows(cache, rows), device, view_seed)
        self.shard = shard
        self.w = None if weights is None else torch.from_numpy(np.asarray(weights)).to(device)
        self.m = None if meta is None else torch.from_numpy(np.asarray(meta)[as_rows(cache, rows)]).to(device)
        self.y = None if labels is None else torch.from_numpy(np.asarray(labels)).to(device)
        self.preset, self.augment, self.size = AUGMENT_PRESETS[augment], augment != "none", dc["img_size"]
        self.mean = torch.tensor(dc["mean"], device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(dc["std"], device=device).view(1, -1, 1, 1)
        self.shuffle, self.bs, self.gen = shuffle, batch_size, torch.Generator().manual_seed(seed)
        self.drop_last = shuffle and len(self.x) > batch_size

    def __len__(self) -> int:
        return len(self.x) // self.bs if self.drop_last else math.ceil(len(self.x) / self.bs)

    def __iter__(self):
        n = len(self.x)
        order = torch.randperm(n, generator=self.gen) if self.shuffle else torch.arange(n)
        for i in range(len(self)):
            idx = order[i * self.bs : (i + 1) * self.bs]
            idx = (shard(idx) if self.shuffle and self.shard else idx).to(self.x.device)  # this process's share
            seeds = None if self.seeds is None else [self.seeds[i] for i in idx.tolist()]
            xb = batch_augment(self.x[idx], self.size, self.preset, self.gen, train=self.augment, seeds=seeds)
            xb = (xb - self.mean) / self.std
            yb = self.y[idx] if self.y is not None else torch.full((len(idx),), -1)
            yield (xb if self.m is None else (xb, self.m[idx])), (yb if self.w is None else (yb, self.w[idx]))


def use_device_path(data_path: str, device: torch.device, nbytes: int) -> bool:
    """data_path device/loader as configured; auto: the device path on a GPU when the data takes at most a
    quarter of its free memory (the model, activations and the rest need the other three)."""
    if data_path != "auto":
        return data_path == "device"
    if device.type != "cuda":
        return False  # on CPU the model, not per-sample albumentations, is the bottleneck (make bench)
    return nbytes < 0.25 * torch.cuda.mem_get_info()[0]


def loader_workers(num_workers: int | None, threads: int | None, device: torch.device) -> int:
    """config.loader_workers for this device."""
    from kagglecv.config.resources import loader_workers as rule

    return rule(num_workers, threads, device.type == "cuda")


def make_batches(
    cache,
    labels,
    dc: dict,
    device,
    *,
    augment: str,
    shuffle: bool,
    batch_size: int,
    seed: int,
    on_device: bool,
    rows=None,
    num_workers: int = 0,
    per_image: bool = False,
    meta=None,
    shard: bool = True,
    weights=None,
):
    """Batches of normalised NCHW tensors with labels, from either data path, over `rows` of the cache; with `meta`
    (one encoded row per cache row) a batch's input is (images, metadata); with `weights` (one per row of `rows`,
    as `labels`) its target is (labels, weights). per_image: seed each image's random views from its pixels and
    `seed` (test-time augmentation), not from the order of the rows."""
    view_seed = seed if per_image else None
    if on_device:
        return DeviceBatches(
            cache,
            labels,
            dc,
            device,
            augment=augment,
            shuffle=shuffle,
            batch_size=batch_size,
            seed=seed,
            rows=rows,
            view_seed=view_seed,
            meta=meta,
            shard=shard,
            weights=weights,
        )
    tf = build_transform(dc["img_size"], dc["mean"], dc["std"], augment, seed=seed)
    ds = CachedImages(cache, labels, tf, rows, view_seed=view_seed, meta=meta, weights=weights)
    if shuffle and shard and world() > 1:  # DistributedDataParallel: this process's share of each global batch
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(
            ds,
            batch_sampler=ShardedBatches(len(ds), batch_size, gen, len(ds) > batch_size),
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            generator=gen,
        )
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=shuffle and len(ds) > batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=shuffle and num_workers > 0,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
    )


def _random_parts(transform) -> list:
    """The albumentations pipeline and each of its transforms: each draws from generators of its own."""
    return [transform, *(t for sub in getattr(transform, "transforms", []) for t in _random_parts(sub))]


def rng_state(batches) -> dict:
    """What decides the next epochs' batches besides the global RNGs: the order (the DataLoader's generator, or
    the device path's, which also draws its augmentation) and the albumentations transforms' own generators.
    In a checkpoint, it lets a resumed job draw exactly what an uninterrupted one would have (CPU; DataLoader
    worker processes keep copies of the transforms that no checkpoint sees)."""
    if isinstance(batches, DeviceBatches):
        return {"order": batches.gen.get_state(), "augment": []}
    transform = getattr(batches.dataset, "transform", None)
    return {
        "order": None if batches.generator is None else batches.generator.get_state(),
        "augment": [
            (t.random_generator.bit_generator.state, t.py_random.getstate())
            for t in (_random_parts(transform) if transform is not None else [])
        ],
    }


def set_rng_state(batches, state: dict) -> None:
    """Restore what `rng_state` saved into batches made by the same settings."""
    if isinstance(batches, DeviceBatches):
        batches.gen.set_state(state["order"])
        return
    if state["order"] is not None:
        batches.generator.set_state(state["order"])
    parts = _random_parts(batches.dataset.transform) if state["augment"] else []
    for t, (numpy_state, python_state) in zip(parts, state["augment"]):
        t.random_generator.bit_generator.state = numpy_state
        t.py_random.setstate(python_state)
