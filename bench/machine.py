"""What machine a benchmark ran on, how busy it was, the real data it reads and the recipe changes it was given:
shared by the bench scripts (light on purpose: no torch)."""

from __future__ import annotations

import gzip
import os
import platform
import re
from pathlib import Path

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST format), gzipped."""
    raw = gzip.open(path, "rb").read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def cpu_name() -> str:
    """The CPU model and core count, e.g. "AMD EPYC, 2 cores"."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("(r)", "").replace("(tm)", "")).strip("-")


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: a busy neighbour shows up here."""
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def train_overrides(ap, items: list[str]) -> dict:
    """`--set KEY=VALUE` arguments as {key: YAML value}; a malformed one is the parser's usage error."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out
