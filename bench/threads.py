#!/usr/bin/env python
"""`make bench-threads`: on this machine's cores, is it faster to run training jobs side by side with a thread
each, or one at a time with every core?

The real workflow on a config (default: the embedded demo, config.yaml) is prepared once (data and folds), then
its training jobs run from that same start under each setting, in turn:

  jobs x threads   snakemake --cores N --resources gpu=G   (train.threads: null gives each job N // G threads)
  N x 1            G = N: N jobs at once, one torch thread each (the default profile on 2 cores: gpu=2)
  1 x N            G = 1: one job at a time with all N threads

Reported per setting: wall time of all the training jobs (`snakemake --until train`), and from each job's
metrics.json its epochs' time, start-up and fixed cost. Results: printed, and written to
bench/results/threads-<device>-<date>.json. Run it in the project's environment: .venv/bin/python bench/threads.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from kagglecv.core.files import write_json  # noqa: E402

from machine import cpu_name, loadavg, slug  # noqa: E402


def snakemake(work: Path, config: Path, *args: str) -> float:
    """The real CLI on the repo's Snakefile in `work`; returns its wall seconds (raises on failure)."""
    cmd = [
        str(Path(sys.executable).parent / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(work),
        "--workflow-profile",
        "none",
        "--configfile",
        str(config),
        "--quiet",
        "all",
        *args,
    ]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0


def job_figures(res: Path) -> list[dict]:
    """Each training job's own figures (metrics.json)."""
    out = []
    for m in sorted(res.glob("models/*/fold*/metrics.json")):
        d = json.loads(m.read_text())
        out.append(
            {
                k: d.get(k)
                for k in (
                    "backbone",
                    "fold",
                    "train_seconds",
                    "startup_seconds",
                    "tta_seconds",
                    "fixed_seconds",
                    "img_per_s",
                    "score",
                )
            }
        )
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=REPO / "config.yaml", help="workflow config (default: the demo)")
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--work", type=Path, default=BENCH / "work" / "threads", help="scratch folder")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    cfg = yaml.safe_load(args.config.read_text())
    comp = cfg["competition"]
    n = args.cores
    settings = {f"{n}x1": n, f"1x{n}": 1}  # name -> gpu slots (jobs at once)

    base = args.work / "base"
    shutil.rmtree(args.work, ignore_errors=True)
    base.mkdir(parents=True)
    config = args.work / "config.yaml"
    shutil.copy(args.config, config)
    print(f"preparing {comp} once in {base} ...", flush=True)
    snakemake(base, config, "--cores", str(n), "--until", "folds")

    results = {}
    for name, slots in settings.items():
        work = args.work / name
        shutil.copytree(base, work, symlinks=True)
        load_before = loadavg()
        print(f"[{name}] snakemake --cores {n} --resources gpu={slots} --until train", flush=True)
        wall = snakemake(work, config, "--cores", str(n), "--resources", f"gpu={slots}", "--until", "train")
        jobs = job_figures(work / "results" / comp)
        results[name] = {
            "jobs_at_once": slots,
            "threads_per_job": max(1, n // slots),
            "wall_seconds": round(wall, 1),
            "jobs": len(jobs),
            "sum_train_seconds": round(sum(j["train_seconds"] for j in jobs), 1),
            "mean_fixed_seconds": round(sum(j["fixed_seconds"] for j in jobs) / len(jobs), 2),
            "mean_startup_seconds": round(sum(j["startup_seconds"] for j in jobs) / len(jobs), 2),
            "mean_score": round(sum(j["score"] for j in jobs) / len(jobs), 5),
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
            "per_job": jobs,
        }
        r = results[name]
        print(
            f"    wall {r['wall_seconds']:.1f} s for {r['jobs']} jobs; epochs {r['sum_train_seconds']:.1f} s summed; "
            f"fixed {r['mean_fixed_seconds']:.1f} s per job (start-up {r['mean_startup_seconds']:.1f}); "
            f"mean fold score {r['mean_score']:.4f}",
            flush=True,
        )

    a, b = results[f"{n}x1"], results[f"1x{n}"]
    ratio = round(a["wall_seconds"] / b["wall_seconds"], 3)
    faster = f"{n}x1" if ratio < 1 else f"1x{n}"
    print(
        f"\nwall {n}x1 / 1x{n} = {ratio} -> faster: {faster} "
        f"({'--resources gpu=' + str(n) if faster == f'{n}x1' else '--resources gpu=1'} on {n} cores)"
    )
    name = cpu_name()
    report = {
        "device": name,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "config": str(args.config),
        "competition": comp,
        "cores": n,
        "settings": results,
        "ratio_wall_Nx1_over_1xN": ratio,
        "faster": faster,
    }
    out = args.out or BENCH / "results" / f"threads-{slug(name)}-{dt.date.today().isoformat()}.json"
    write_json(out, report)
    print(f"written: {out}")
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
