"""One job's data: its fold's rows of the memory-mapped cache, targets, metadata, and the rows a teacher adds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from kagglecv.config.train import TrainConfig, check_mixup
from kagglecv.core.devices import world
from kagglecv.core.errors import InputError
from kagglecv.core.files import read_table
from kagglecv.core.layout import PreparedFiles
from kagglecv.core.results import PreparedMeta
from kagglecv.core.tasks import NUMERIC, Task
from kagglecv.data.batches import loader_workers, make_batches, open_cache
from kagglecv.data.meta import MetaEncoder


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

    check_mixup(cfg, teacher=True)
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
        torch.set_num_threads(max(1, cfg.threads // world()))
    folds = read_table(folds_csv)
    if cfg.fold not in set(folds["fold"]):
        raise InputError(f"{folds_csv}: no fold {cfg.fold}; folds are {sorted(set(folds['fold']))}")
    prepared = PreparedFiles(prepared_dir)
    images = open_cache(prepared.train_images)
    fold = folds["fold"].to_numpy()
    meta = PreparedMeta.read(prepared.meta)
    task = Task.of(meta)
    check_mixup(cfg, task.kind)
    y, tr_idx = task.targets(folds), np.flatnonzero(fold != cfg.fold)
    data = Fold(folds, images, y, tr_idx, np.flatnonzero(fold == cfg.fold), task.fitted_scale(y[tr_idx]))
    specs = meta.meta_columns
    if specs:
        check_mixup(cfg, meta=True)
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
    train = make_batches(
        data.images,
        targets,
        dc,
        device,
        augment=cfg.augment,
        shuffle=True,
        batch_size=cfg.batch_size,
        seed=cfg.seed * 1000 + cfg.fold,
        on_device=on_device,
        rows=rows,
        num_workers=workers,
        meta=data.meta,
        shard=shard,
        weights=weights,
    )
    valid = make_batches(
        data.images,
        data.task.standardise(data.y)[data.va_idx],
        dc,
        device,
        augment="none",
        shuffle=False,
        batch_size=cfg.batch_size * 2,
        seed=0,
        on_device=on_device,
        rows=data.va_idx,
        num_workers=workers,
        meta=data.meta,
    )
    return train, valid
