"""`make bench-scale`: does the pipeline hold at real competition sizes?

Generates a Dogs-vs-Cats-sized synthetic photo competition locally (filename_labels layout: train/cat.0.jpg,
test/1.jpg, sample_submission.csv id,label; JPEGs of mixed sizes, 300-500 px a side, about 60 KB each, like
the real one's 1.9 GB for 37,500 images) and measures, for each dataset size (default 10,000 and 37,500):

  prepare       wall time, decode images/s, peak RSS of the process tree (workers included), cache bytes on disk
                against N x S^2 x C for the side S the backbone needs
  baseline      a single-process Pillow loop on the same files (open, convert, resize: today's decoder before
                this work) -> the ratio of our decode throughput to it
  train         one training job (fold 0 of 5, one backbone at 64 px, one epoch): wall time, peak RSS of the tree
  concurrent    two training jobs at once (folds 0 and 1, one thread each), as `--resources gpu=2` runs them:
                peak RSS of both trees together (largest size only)

Every step runs in its own process; peak RSS is sampled every 50 ms over the process and its children (the sum,
as Snakemake's benchmark files count it) and also read from the kernel (ru_maxrss of the largest process).
Writes bench/results/scale-<machine>-<date>.json and prints a table.

    python bench/scale.py [--sizes 10000,37500] [--img-size 64] [--backbone resnet10t] [--skip-concurrent]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from machine import cpu_name, slug  # noqa: E402

GENERATOR_VERSION = 1  # bump when the generated images change, so cached competitions are rebuilt


# ---------------------------------------------------------------- the synthetic competition


def _photo(args) -> None:
    """One JPEG: a smooth random background with texture and a class-coloured ellipse (a learnable signal)."""
    path, seed, label = args
    rng = np.random.default_rng(seed)
    w, h = (int(v) for v in rng.integers(300, 501, 2))
    base = Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    arr = np.asarray(base).astype(np.int16) + rng.integers(-20, 21, (h, w, 3))
    cy, cx = rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4)
    ry, rx = rng.integers(h // 8, h // 4), rng.integers(w // 8, w // 4)
    yy, xx = np.ogrid[:h, :w]
    blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    arr[blob] = (200, 120, 60) if label == "dog" else (60, 120, 200)
    Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(path, quality=90)


def generate(root: Path, n_images: int, seed: int = 0) -> Path:
    """The competition folder (2/3 train, 1/3 test, as Dogs vs Cats: 25,000 + 12,500); reused when complete."""
    stamp = root / ".complete"
    want = {"n_images": n_images, "seed": seed, "version": GENERATOR_VERSION}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return root
    n_train = n_images * 2 // 3
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "test").mkdir(parents=True, exist_ok=True)
    jobs = [
        (root / "train" / f"{'cat' if i % 2 else 'dog'}.{i // 2}.jpg", seed * 10_000_000 + i, "cat" if i % 2 else "dog")
        for i in range(n_train)
    ]
    test_ids = list(range(1, n_images - n_train + 1))
    jobs += [(root / "test" / f"{i}.jpg", seed * 10_000_000 + n_train + i, "dog" if i % 2 else "cat") for i in test_ids]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count()) as ex:
        list(ex.map(_photo, jobs, chunksize=256))
    (root / "sample_submission.csv").write_text("id,label\n" + "".join(f"{i},0.5\n" for i in test_ids))
    stamp.write_text(json.dumps(want))
    print(f"generated {n_images} JPEGs in {root} in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


# ---------------------------------------------------------------- measuring a process tree


def measure(cmd: list[str], env: dict | None = None, log: Path | None = None) -> dict:
    """Run `cmd`; wall seconds, peak RSS of its process tree (summed, sampled) and of its largest process."""
    out = open(log, "w") if log else subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
    peak = {"tree": 0}
    done = threading.Event()

    def sample():
        p = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [p, *p.children(recursive=True)]
                peak["tree"] = max(peak["tree"], sum(_rss(q) for q in procs))
            except psutil.Error:
                pass
            done.wait(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    t.join()
    if log:
        out.close()
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        tail = log.read_text()[-3000:] if log else ""
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({rc}):\n{tail}")
    return {
        "wall_s": round(time.perf_counter() - t0, 2),
        "peak_rss_tree_mb": round(peak["tree"] / 2**20, 1),
        "max_rss_process_mb": round(usage.ru_maxrss / 1024, 1),
    }


def _rss(p: psutil.Process) -> int:
    try:
        return p.memory_info().rss
    except psutil.Error:
        return 0


def python(code: str, *args) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *map(str, args)]


PREPARE = """
import json, sys
from kagglecv.config.data import DataConfig
from kagglecv.data.prepare import prepare
meta = prepare(sys.argv[1], sys.argv[2], DataConfig(image_size=int(sys.argv[3])), workers=int(sys.argv[4]))
print(json.dumps(meta["decode"]))
"""

BASELINE = """
import sys, time
from pathlib import Path
import numpy as np
from PIL import Image
side = int(sys.argv[2])
files = sorted(p for d in ("train", "test") for p in (Path(sys.argv[1]) / d).iterdir())
out = np.empty((len(files), side, side, 3), dtype=np.uint8)
t = time.perf_counter()
for k, p in enumerate(files):  # one process, no draft: open, convert, resize
    out[k] = np.asarray(Image.open(p).convert("RGB").resize((side, side), Image.BILINEAR))
print(len(files) / (time.perf_counter() - t))
"""

FOLDS = """
import sys
from kagglecv.data.folds import make_folds
make_folds(sys.argv[1], sys.argv[2], 5, 42)
"""

TRAIN = """
import json, sys
from kagglecv.config.train import TrainConfig
from kagglecv.training.train import run
cfg = TrainConfig(backbone=sys.argv[4], fold=int(sys.argv[5]), epochs=1, img_size=int(sys.argv[6]), batch_size=64,
                  tta="none", augment="flip", threads=int(sys.argv[7]), device="cpu", metric="log_loss")
print(json.dumps(run(cfg, sys.argv[1], sys.argv[2], sys.argv[3], track=False)))
"""


def run_concurrent(cmds: list[list[str]], logs: list[Path]) -> dict:
    """Several commands at once; wall time and the peak of their summed process trees."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=open(log, "w"), stderr=subprocess.STDOUT) for c, log in zip(cmds, logs)]
    peak, done = 0, False
    while not done:
        total = 0
        for p in procs:
            try:
                pp = psutil.Process(p.pid)
                total += sum(_rss(q) for q in [pp, *pp.children(recursive=True)])
            except psutil.Error:
                pass
        peak = max(peak, total)
        done = all(p.poll() is not None for p in procs)
        time.sleep(0.05)
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a concurrent training job failed; see {logs}")
    return {"wall_s": round(time.perf_counter() - t0, 2), "peak_rss_both_mb": round(peak / 2**20, 1)}


# ---------------------------------------------------------------- one size


def bench_size(n: int, args, work: Path) -> dict:
    comp = generate(work / f"photos-{n}", n)
    side = int(np.ceil(args.img_size * (1 + args.margin)))  # kagglecv.config.members.cache_side's rule
    out = work / f"prepared-{n}"
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"\n== {n} images: prepare at {side} px on {args.workers} workers", flush=True)
    prep = measure(python(PREPARE, comp, out, side, args.workers), log=logs / f"prepare-{n}.log")
    decode = json.loads(re.findall(r"^\{.*\}$", (logs / f"prepare-{n}.log").read_text(), re.M)[-1])
    cache_bytes = sum((out / f).stat().st_size for f in ("train_images.npy", "test_images.npy"))
    bound = n * side * side * 3
    print(
        f"   prepare {prep['wall_s']} s, {decode['images_per_s']} img/s decoding, peak RSS {prep['peak_rss_tree_mb']} "
        f"MB; cache {cache_bytes / 2**20:.0f} MB = {cache_bytes / bound:.3f} x N*S^2*C",
        flush=True,
    )
    base_log = logs / f"baseline-{n}.log"
    measure(python(BASELINE, comp, side), log=base_log)
    base_rate = float(base_log.read_text().split()[-1])
    print(
        f"   single-process Pillow loop: {base_rate:.0f} img/s -> ratio {decode['images_per_s'] / base_rate:.2f}",
        flush=True,
    )
    measure(python(FOLDS, out / "train.csv", out / "folds.csv"))
    train = measure(
        python(TRAIN, out, out / "folds.csv", work / f"model-{n}", args.backbone, 0, args.img_size, args.threads),
        log=logs / f"train-{n}.log",
    )
    print(f"   one training job: {train['wall_s']} s, peak RSS {train['peak_rss_tree_mb']} MB", flush=True)
    return {
        "n_images": n,
        "cache_side": side,
        "prepare": {**prep, **decode},
        "cache_bytes": cache_bytes,
        "cache_over_n_s2_c": round(cache_bytes / bound, 4),
        "baseline_images_per_s": round(base_rate, 1),
        "decode_ratio_vs_single_process_loop": round(decode["images_per_s"] / base_rate, 2),
        "train_one_job": train,
    }


def machine() -> str:
    return f"{cpu_name()}, {psutil.virtual_memory().total / 2**30:.0f} GiB"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,37500", help="dataset sizes (train + test images)")
    ap.add_argument("--img-size", type=int, default=64, help="training input size")
    ap.add_argument("--margin", type=float, default=0.125, help="data.cache_margin")
    ap.add_argument("--backbone", default="resnet10t")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="prepare's decoding processes")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of the single training job")
    ap.add_argument("--skip-concurrent", action="store_true", help="skip the two-jobs-at-once measurement")
    ap.add_argument("--work", type=Path, default=BENCH / "work" / "scale")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    t0 = time.perf_counter()
    results = [bench_size(n, args, args.work) for n in sizes]
    report = {
        "machine": machine(),
        "date": dt.date.today().isoformat(),
        "python": platform.python_version(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "sizes": results,
    }
    if not args.skip_concurrent:
        n = sizes[-1]
        out = args.work / f"prepared-{n}"
        cmds = [
            python(TRAIN, out, out / "folds.csv", args.work / f"model-{n}-c{k}", args.backbone, k, args.img_size, 1)
            for k in (0, 1)
        ]
        print(f"\n== two training jobs at once on {n} images (1 thread each)", flush=True)
        report["concurrent_two_jobs"] = {
            "n_images": n,
            **run_concurrent(cmds, [args.work / "logs" / f"train-{n}-c{k}.log" for k in (0, 1)]),
        }
        print(f"   {report['concurrent_two_jobs']}", flush=True)
    small, large = results[0], results[-1]
    if len(results) > 1:
        report["growth_largest_over_smallest"] = {
            "prepare_peak_rss": round(large["prepare"]["peak_rss_tree_mb"] / small["prepare"]["peak_rss_tree_mb"], 3),
            "train_peak_rss": round(
                large["train_one_job"]["peak_rss_tree_mb"] / small["train_one_job"]["peak_rss_tree_mb"], 3
            ),
        }
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print("\n" + table(report), flush=True)
    dest = args.out or BENCH / "results" / f"scale-{slug(report['machine'])[:60]}-{report['date']}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {dest}")
    return report


def table(r: dict) -> str:
    rows = [
        (
            "images",
            "prepare s",
            "decode img/s",
            "x loop",
            "prepare RSS MB",
            "cache MB",
            "cache/NS2C",
            "train s",
            "train RSS MB",
        )
    ]
    for s in r["sizes"]:
        rows.append(
            (
                s["n_images"],
                s["prepare"]["wall_s"],
                s["prepare"]["images_per_s"],
                s["decode_ratio_vs_single_process_loop"],
                s["prepare"]["peak_rss_tree_mb"],
                round(s["cache_bytes"] / 2**20),
                s["cache_over_n_s2_c"],
                s["train_one_job"]["wall_s"],
                s["train_one_job"]["peak_rss_tree_mb"],
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).rjust(w) for v, w in zip(row, widths)) for row in rows]
    if "concurrent_two_jobs" in r:
        c = r["concurrent_two_jobs"]
        lines.append(
            f"two training jobs at once ({c['n_images']} images): {c['wall_s']} s, peak RSS of both "
            f"{c['peak_rss_both_mb']} MB"
        )
    return f"{r['machine']}\n" + "\n".join(lines)


if __name__ == "__main__":
    main()
