"""What a code competition's hidden rerun needs settled before it starts, and watched while it runs.

Kaggle scores a code competition by rerunning the notebook on a hidden test set it never shows: often many times
the public one, internet off, a hard time limit (kaggle.kernel_time_limit, usually 9 hours). A run that fails
there, or ends after the limit, scores nothing. So:

  at `snakemake kernel` (kagglecv.kaggle.kernel.build)
    project   the rerun's time: every fold's prediction cost per image (its training job timed predicting its
              validation and test rows, with the TTA views, in metrics.json), decoding's cost per image
              (prepare's meta.json), times kaggle.hidden_test_rows and a speed factor for Kaggle's device;
              refused with one line when above kaggle.kernel_time_safety x kaggle.kernel_time_limit
    tested    the versions of the packages the kernel imports, as installed where the workflow ran
  in the kernel (kagglecv.kaggle.notebook.run), before it decodes anything
    check_environment  each package present and no older than tested, or one line naming the wheel to ship
    verify_files       every file of the dataset against the manifest's size and sha256
    check_disk         room for the decoded test images
  while it runs
    Progress           where each stage is and when it will end, in the log

This module imports nothing heavy: the kernel checks its environment before torch is imported.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import platform
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kagglecv.core.errors import InputError
from kagglecv.core.files import file_sha256
from kagglecv.core.results import ModelRecord, PreparedMeta

log = logging.getLogger("kagglecv.kaggle.kernel")

# The distributions whose modules kagglecv imports on the kernel's path (prepare, images, predict, train, blend,
# submission); their own dependencies are theirs to declare.
KERNEL_REQUIRES = (
    "numpy",
    "pandas",
    "pillow",
    "scikit-learn",
    "scipy",
    "torch",
    "timm",
    "albumentations",
    "PyYAML",
    "tqdm",
)
# Kaggle's kernels have 4 CPU cores (GPU kernels too): decoding there runs on 4 processes.
KAGGLE_CORES = 4
# Kaggle's seconds per second timed here, when the kernel runs on another kind of device than the training
# jobs did: guesses on the safe side (a T4/P100 predicts small CNNs at least 4x faster than a training job's CPU
# threads; 4 CPU cores are at least 20x slower than a GPU). kaggle.kernel_speed_factor replaces them with a
# factor measured from one real run (its log states its seconds per image).
SPEED_FACTORS = {("cpu", "gpu"): 0.25, ("cuda", "cpu"): 20.0}
VIEWS = {"none": 1, "flip": 2, "dihedral": 8}  # predictions per image for each TTA, besides augment's 1 + tta_n


# ---------------------------------------------------------------- the projection (snakemake kernel)


def fold_cost(metrics: dict, config: dict, n_test: int) -> float | None:
    """Seconds one fold spent per image predicting (its TTA views included), from its training job's timing of
    its validation and test rows; None for a job that did not time it."""
    seconds, rows = metrics.get("tta_seconds"), int(config.get("n_valid", 0)) + int(n_test)
    return None if seconds is None or rows == 0 else float(seconds) / rows


def views(config: dict) -> int:
    tta = config.get("tta_used", "none")
    return 1 + int(config.get("tta_n", 1)) if tta == "augment" else VIEWS.get(tta, 1)


def decode_cost(meta: PreparedMeta) -> float:
    """Seconds per image decoding on Kaggle's cores, from prepare's timing on this machine's."""
    d = PreparedMeta.of(meta).decode
    if not d.get("images_per_s"):
        return 0.0
    return float(d["workers"]) / float(d["images_per_s"]) / KAGGLE_CORES


def project(
    folds: dict[str, list[ModelRecord]],
    meta: PreparedMeta,
    *,
    enable_gpu: bool,
    hidden_test_rows: int | None,
    speed_factor: float | None,
) -> dict | None:
    """The rerun's projected time from `folds` ({member: [the training record of each fold]}); None when some
    fold was not timed (a run from before training timed its predictions)."""
    meta, members, devices = PreparedMeta.of(meta), {}, set()
    for m, records in folds.items():
        records = [ModelRecord.of(r) for r in records]
        costs = [fold_cost(r.metrics, r.config, meta.n_test) for r in records]
        if None in costs:
            return None
        members[m] = {"seconds_per_image": sum(costs), "folds": len(records), "views": views(records[0].config)}
        devices |= {str(r.metrics.get("device", "cpu")).split(":")[0] for r in records}
    timed_on = "cuda" if devices == {"cuda"} else "cpu"
    factor = speed_factor or SPEED_FACTORS.get((timed_on, "gpu" if enable_gpu else "cpu"), 1.0)
    per_image = decode_cost(meta) + factor * sum(v["seconds_per_image"] for v in members.values())
    rows = int(hidden_test_rows or meta.n_test)
    return {
        "rows": rows,
        "decode_seconds_per_image": decode_cost(meta),
        "members": members,
        "timed_on": timed_on,
        "target": "gpu" if enable_gpu else "cpu",
        "speed_factor": factor,
        "seconds_per_image": per_image,
        "projected_seconds": rows * per_image,
    }


def check_budget(plan: dict | None, limit: float, safety: float) -> None:
    """One line, naming what to cut, when the projected rerun does not fit in safety x limit."""
    if plan is None or plan["projected_seconds"] <= safety * limit:
        return
    factor = plan["speed_factor"]
    parts = ", ".join(
        f"{m} {v['folds']} folds x {v['views']} views {v['seconds_per_image'] * factor:.3g} s"
        for m, v in plan["members"].items()
    )
    costliest = max(plan["members"], key=lambda m: plan["members"][m]["seconds_per_image"])
    raise InputError(
        f"kernel: the hidden rerun would take ~{plan['projected_seconds'] / 3600:.2f} h ({plan['rows']:,} images x "
        f"{plan['seconds_per_image']:.3g} s: decoding {plan['decode_seconds_per_image']:.2g} s, {parts}; timed on "
        f"{plan['timed_on']}, x{plan['speed_factor']:g} for a {plan['target']} kernel), above "
        f"{safety:g} x kaggle.kernel_time_limit = {safety * limit / 3600:.2f} h; cut TTA views (train.tta), folds "
        f"or backbones ({costliest} costs the most), or set kaggle.hidden_test_rows / kaggle.kernel_speed_factor "
        f"if they are wrong"
    )


# ---------------------------------------------------------------- the environment


def release(version: str) -> tuple[int, ...]:
    """'2.15.0+cu132' -> (2, 15, 0): the numbers that order versions (pre-releases count as their release)."""
    m = re.match(r"\d+(\.\d+)*", version or "")
    return tuple(int(p) for p in m.group(0).split(".")) if m else ()


def installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def tested_environment() -> dict:
    """The Python and package versions the workflow ran with: the kernel needs at least these."""
    return {
        "python": platform.python_version(),
        "packages": {n: v for n in KERNEL_REQUIRES if (v := installed(n)) is not None},
    }


def check_environment(environment: dict | None) -> dict[str, str | None]:
    """Print the versions the kernel runs with; one line when a package is missing or older than tested, naming
    the wheel to ship in kaggle.kernel_wheels."""
    tested = (environment or {}).get("packages", {})
    found = {n: installed(n) for n in tested or KERNEL_REQUIRES}
    print(
        f"python {platform.python_version()}; " + ", ".join(f"{n} {v or 'missing'}" for n, v in found.items()),
        flush=True,
    )
    short = [(n, found[n], v) for n, v in tested.items() if found[n] is None or release(found[n]) < release(v)]
    if short:
        what = ", ".join(f"{n} {have or 'missing'} (tested: {want})" for n, have, want in short)
        pins = " ".join(f"{n}=={want}" for n, _, want in short)
        raise InputError(
            f"kernel: {what}; download the wheel(s) (pip download --no-deps -d wheels/ {pins}), list "
            "them in kaggle.kernel_wheels, then snakemake kernel and submit again"
        )
    return found


# ---------------------------------------------------------------- the dataset and the disk


def verify_files(folder: Path, manifest: dict, skip: set[str] = frozenset()) -> None:
    """Every file the manifest lists has its size and sha256: a dataset uploaded half, or from another build,
    stops here, before hours of decoding."""
    for name, want in manifest["files"].items():
        path = Path(folder) / name
        if name in skip:
            continue
        if not path.is_file():
            problem = "not found"
        elif path.stat().st_size != want["bytes"] or file_sha256(path) != want["sha256"]:
            problem = f"differs from the manifest ({path.stat().st_size:,} bytes, manifest: {want['bytes']:,})"
        else:
            continue
        raise InputError(
            f"{path}: {problem}; the kernel dataset is incomplete or stale: upload "
            "results/<competition>/kernel-dataset again (snakemake submit)"
        )


def check_disk(folder: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise InputError(
            f"{folder}: {free / 2**30:.2f} GiB free, {what} needs {needed / 2**30:.2f} GiB; free space "
            "there, or point TMPDIR at a larger disk"
        )


def read_manifest(path: Path) -> dict:
    if not Path(path).is_file():
        raise InputError(
            f"{path}: not found; the kernel dataset is incomplete: upload "
            "results/<competition>/kernel-dataset again (snakemake submit)"
        )
    return json.loads(Path(path).read_text())


# ---------------------------------------------------------------- progress


class Progress:
    """Logs how far a stage has got and when it will end, at most every `every` seconds and once at the end: a
    nine-hour rerun's log says where it is."""

    def __init__(self, what: str, total: int, unit: str, every: float = 60.0):
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.done, self.start = 0, time.monotonic()
        self.last = self.start

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last < self.every and self.done < self.total:
            return
        self.last, spent = now, now - self.start
        left = spent / max(self.done, 1) * (self.total - self.done)
        end = datetime.now(UTC) + timedelta(seconds=left)
        log.info(
            "%s: %d/%d %s in %.0f s; ends in ~%.0f s (%s UTC)",
            self.what,
            self.done,
            self.total,
            self.unit,
            spent,
            left,
            end.strftime("%H:%M:%S"),
        )
