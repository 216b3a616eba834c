"""What a device can train in, torch-free: the config's checks (before any job runs) and the job itself
(kagglecv.core.devices.autocast_dtype) refuse the same settings in the same words."""

from __future__ import annotations

from kagglecv.core.errors import InputError


def check_amp_dtype(device_type: str, cfg) -> None:
    """fp16 autocast needs a GPU: its grad scaler is CUDA's. bf16 runs anywhere (CPU autocast included)."""
    if cfg.amp and cfg.amp_dtype == "fp16" and device_type != "cuda":
        raise InputError("train.amp_dtype: fp16 needs a GPU (the grad scaler); use bf16 or auto on CPU")
