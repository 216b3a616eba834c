"""Fixtures, and the test session's environment. Helpers (functions, constants) are in helpers.py.

Tiers (markers registered in pyproject.toml): `workflow` runs the real snakemake CLI, `slurm` starts a real
Slurm, `browser` drives headless Chromium, `kaggle` talks to tests/kaggle_stub.py through the real kaggle client.
`make test-fast` runs what is none of workflow/slurm/browser; `make test` runs everything."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The tests run the GPU's bf16 code paths on the CPU. On this workplace's Xeon VMs, oneDNN's AMX bf16 kernels gave
# NaN or other numbers under load (the same job alone was fine): cap oneDNN below AMX, at AVX512-BF16, for this
# process and every job it starts. Read when oneDNN first runs, so set before any test imports torch.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")

from helpers import write_csv_images_competition  # noqa: E402

# No test waits on the network (closed here): set for this process before anything imports huggingface_hub
# (it reads HF_HUB_OFFLINE at import) and inherited by every subprocess the tests start (snakemake, its jobs,
# the kaggle client). Without it a timm pretrained=True with nothing cached spends ~50 s in the hub's retries.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",  # huggingface_hub (timm's weights): the local cache only, an error at once otherwise
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "NO_ALBUMENTATIONS_UPDATE": "1",  # albumentations' version check on import (kagglecv.augment sets it too)
}


def pytest_configure(config):
    os.environ.update(OFFLINE_ENV)
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:  # imported before this hook (by a plugin): it has read the environment already
        hub.HF_HUB_OFFLINE = True


@pytest.fixture
def tiny_zip(tmp_path) -> tuple[Path, dict]:
    path = tmp_path / "tiny.zip"
    return path, write_csv_images_competition(path)
