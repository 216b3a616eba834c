"""Where a job computes: its device, precision and memory format, and its rank among the processes of one job.

Shared by training and inference (both place a model and feed it batches the same way). `cfg` is anything with
the device settings of a TrainConfig (`device`, `amp`, `amp_dtype`, `channels_last`). Processes of a
multi-device job (kagglecv.training.distributed) are ranks of one torch.distributed group; a single process is
rank 0 of 1.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from kagglecv.core.errors import InputError
from kagglecv.core.gpus import lease_gpu
from kagglecv.core.precision import check_amp_dtype


def pick_device(cfg) -> torch.device:
    if cfg.device == "cpu":
        return torch.device("cpu")
    if world() > 1:  # the devices were leased before the processes started
        return rank_device()
    lease_gpu()  # sets CUDA_VISIBLE_DEVICES before CUDA initialises; None when there is no GPU
    if torch.cuda.is_available():
        return torch.device("cuda")
    if cfg.device == "cuda":
        raise InputError("train.device: cuda requested but no GPU is available; use device: auto")
    return torch.device("cpu")


def autocast_dtype(device: torch.device, cfg) -> torch.dtype | None:
    """The autocast dtype (None: full precision), from train.amp and train.amp_dtype."""
    if not cfg.amp:
        return None
    if cfg.amp_dtype == "bf16":
        return torch.bfloat16
    check_amp_dtype(device.type, cfg)
    if device.type != "cuda":
        return None
    if cfg.amp_dtype == "fp16":
        return torch.float16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def place_model(model, device: torch.device, cfg):
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


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def shard(rows, of: int | None = None, at: int | None = None):
    """This process's share of a global batch of `rows` (every `world`-th row, from its rank)."""
    return rows[(rank() if at is None else at) :: (world() if of is None else of)]


def rank_device(cpu: bool = False) -> torch.device:
    """This process's device."""
    if not cpu and torch.cuda.is_available():
        return torch.device("cuda", rank() if world() > 1 else torch.cuda.current_device())
    return torch.device("cpu")
