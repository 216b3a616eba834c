#!/usr/bin/env python
"""`make bench-tune`: does `snakemake tune` pay? A study, then the whole DAG with its best settings against the
defaults, scored on held-out labels.

The competition is bench/dag.py's: Fashion-MNIST in Kaggle's CSV + image-folder layout, --n-train training and
--n-test test images, the test labels kept aside. In one fresh folder:

  1. `snakemake tune`: a --trials study of --backbone at --img-size px, --epochs epochs, on fold 0 of --folds, over
     lr, weight_decay, label_smoothing, augment and drop_rate (TPE, median pruner), trials side by side on
     --cores (the local profile: a thread each);
  2. `snakemake --config tune='{apply: true}'`: the whole DAG (every fold, TTA, ensemble, submission) with
     tune/best.yaml laid over the entry;
and in a second fresh folder:
  3. `snakemake`: the same DAG with the defaults.

Figures: held-out accuracy of 2 and 3 and their difference (goal: +1 point), the study's wall time (goal: 15
minutes on 2 cores), the share of trials pruned, the most trials that ran at once. Printed, and written to
bench/results/tune-<device>-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from dag import accuracy, write_competition  # noqa: E402 - bench/dag.py builds the competition
from workflow import snakemake  # noqa: E402

from kagglecv.core.files import write_json  # noqa: E402

from machine import cpu_name, loadavg, slug  # noqa: E402

COMPETITION = "fmnist-tune"
SPACE = {
    "lr": {"low": 3.0e-4, "high": 3.0e-2, "log": True},
    "weight_decay": {"low": 1.0e-5, "high": 1.0e-1, "log": True},
    "label_smoothing": {"low": 0.0, "high": 0.2},
    "augment": {"choices": ["none", "light", "flip"]},
    "drop_rate": {"low": 0.0, "high": 0.5},
}


def space(args) -> dict:
    """The issue's five settings, with --space's YAML mapping laid over them (a key set to null is dropped)."""
    import yaml

    extra = yaml.safe_load(args.space) if args.space else {}
    return {k: v for k, v in (SPACE | extra).items() if v is not None}


def config(args, zip_path: Path) -> dict:
    return {
        "competition": COMPETITION,
        "data": {"source": "local", "path": str(zip_path)},
        "folds": args.folds,
        "seed": args.seed,
        "backbones": [args.backbone],
        "train": {"epochs": args.epochs, "img_size": args.img_size},
        "mlflow": {"live": False},
        "tune": {
            "trials": args.trials,
            "folds": [0],
            "space": space(args),
            "pruner": args.pruner,
            "startup_trials": args.startup_trials,
        },
    }


def study_figures(res: Path) -> dict:
    """From tune/trials.csv: counts by state, the share pruned, the study's span, the most trials at once."""
    import pandas as pd
    import yaml

    df = pd.read_csv(res / "tune" / "trials.csv")
    start, end = pd.to_datetime(df["started"]), pd.to_datetime(df["finished"])
    events = sorted([(t, 1) for t in start.dropna()] + [(t, -1) for t in end.dropna()], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    best = df[df["state"] == "COMPLETE"].sort_values("value", ascending=False).iloc[0]
    return {
        "trials": len(df),
        "states": df["state"].value_counts().to_dict(),
        "pruned_share": round(float((df["state"] == "PRUNED").mean()), 3),
        "study_seconds": round(float((end.max() - start.min()).total_seconds()), 1),
        "trial_seconds_sum": round(float(df["seconds"].sum()), 1),
        "most_at_once": peak,
        "epochs_run": int(df["epochs"].sum()),
        "best_trial": int(best["number"]),
        "best_fold0_accuracy": round(float(best["value"]), 4),
        "best_entry": yaml.safe_load((res / "tune" / "best.yaml").read_text())["backbones"][0],
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--startup-trials", type=int, default=5)
    ap.add_argument("--pruner", default="median", choices=["median", "hyperband", "none"])
    ap.add_argument(
        "--space", default=None, help="YAML laid over the search space, e.g. '{batch_size: {choices: [16, 32, 64]}}'"
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="no study: the defaults' whole DAG once per seed (folds and weights), to see how far the held-out "
        "accuracy moves by chance",
    )
    ap.add_argument(
        "--probe",
        default=None,
        help="no study: the whole DAG once per entry of this YAML list of settings laid over the backbone's entry "
        "(e.g. '[{}, {lr: 0.01}, {augment: flip}]'; {} is the defaults), to see whether any point of the space "
        "beats the defaults held out",
    )
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--work", type=Path, default=BENCH / "work" / "tune")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    args.work = args.work.resolve()  # snakemake runs in a folder below it
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    zip_path = args.work / f"{COMPETITION}.zip"
    truth = write_competition(zip_path, args.n_train, args.n_test)
    name = cpu_name()
    print(
        f"{name}: Fashion-MNIST {args.n_train} train / {args.n_test} hidden test, {args.backbone} {args.img_size} px, "
        f"{args.folds} folds x {args.epochs} epochs; "
        + (
            f"the defaults with seeds {args.seeds}"
            if args.seeds
            else "the whole DAG at each --probe point"
            if args.probe
            else f"a {args.trials}-trial study on fold 0"
        ),
        flush=True,
    )
    cfg = config(args, zip_path)
    if args.seeds:
        return seed_spread(args, cfg, truth, name)
    if args.probe:
        return probe(args, cfg, truth, name)
    tuned_dir, default_dir = args.work / "tuned", args.work / "defaults"
    results: dict = {"loadavg_before": loadavg()}

    wall = snakemake(tuned_dir, cfg, "tune", cores=args.cores)
    study = study_figures(tuned_dir / "results" / COMPETITION) | {"snakemake_tune_seconds": round(wall, 1)}
    print(
        f"[study] {study['trials']} trials {study['states']} in {study['study_seconds']:.0f} s (snakemake tune "
        f"{wall:.0f} s, prepare and folds included), {study['pruned_share']:.0%} pruned, at most "
        f"{study['most_at_once']} at once; best fold-0 accuracy {study['best_fold0_accuracy']}: "
        f"{study['best_entry']}",
        flush=True,
    )
    results["study"] = study

    for way, work, extra in (("tuned", tuned_dir, ["--config", "tune={apply: true}"]), ("defaults", default_dir, [])):
        results[way] = whole_dag(args, work, cfg, truth, way, *extra)
    results["loadavg_after"] = loadavg()
    gain = round(100 * (results["tuned"]["test_accuracy"] - results["defaults"]["test_accuracy"]), 2)
    goals = {
        "tuned_ahead_points": gain,
        "tuned_ahead_by_1_point": gain >= 1.0,
        "study_within_15_min": study["study_seconds"] <= 900,
    }
    print(
        f"\ntuned - defaults: {gain:+.2f} points held out (goal +1); study {study['study_seconds']:.0f} s "
        f"(goal <= 900 s on 2 cores)",
        flush=True,
    )
    return write_report(args, name, "tune", {"space": space(args), "results": results, "goals": goals})


def whole_dag(args, work: Path, cfg: dict, truth: dict, label: str, *extra: str) -> dict:
    """`snakemake` (the whole DAG) in `work` with `cfg`: its wall seconds, ensemble CV and held-out accuracy."""
    wall = snakemake(work, cfg, *extra, cores=args.cores)
    res = work / "results" / COMPETITION
    cv = json.loads((res / "scores.json").read_text())["ensemble"]["cv"]
    acc = accuracy(res / "submission.csv", truth)
    print(f"[{label}] whole DAG in {wall:.0f} s: CV {cv:.4f}, held-out accuracy {acc:.4f}", flush=True)
    return {"wall_seconds": round(wall, 1), "cv": round(cv, 4), "test_accuracy": round(acc, 4)}


def write_report(args, name: str, prefix: str, body: dict) -> dict:
    """The run's report (device, date, settings, then `body`), written to --out, else to
    bench/results/<prefix>-<device>-<date>.json."""
    report = {
        "device": name,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        **body,
    }
    out = args.out or BENCH / "results" / f"{prefix}-{slug(name)}-{dt.date.today().isoformat()}.json"
    write_json(out, report)
    print(f"written: {out}")
    return report


def seed_spread(args, cfg: dict, truth: dict, name: str) -> dict:
    """The defaults' whole DAG once per --seeds value, each in a fresh folder: the held-out accuracy's spread is
    the noise floor a tuned run has to clear."""
    import statistics

    runs = {
        seed: whole_dag(args, args.work / f"seed{seed}", {**cfg, "seed": seed}, truth, f"seed {seed}")
        for seed in args.seeds
    }
    accs = [r["test_accuracy"] for r in runs.values()]
    spread = {
        "mean": round(statistics.mean(accs), 4),
        "sd": round(statistics.stdev(accs), 4) if len(accs) > 1 else None,
        "range_points": round(100 * (max(accs) - min(accs)), 2),
    }
    print(f"\ndefaults over seeds {args.seeds}: {spread}", flush=True)
    return write_report(args, name, "tune-seeds", {"results": {"seeds": runs, "spread": spread}})


def probe(args, cfg: dict, truth: dict, name: str) -> dict:
    """The whole DAG once per --probe entry (settings laid over the backbone's entry), each in a fresh folder, with
    the same seed: held-out accuracy of each point, against the first (give {} first for the defaults)."""
    import yaml

    points = yaml.safe_load(args.probe)
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise SystemExit(f"--probe: a YAML list of mappings, not {args.probe!r}")
    runs = []
    for i, point in enumerate(points):
        point_cfg = {**cfg, "backbones": [{"name": args.backbone, **point}]}
        runs.append({"settings": point} | whole_dag(args, args.work / f"probe{i}", point_cfg, truth, str(point)))
    ref = runs[0]["test_accuracy"]
    for r in runs:
        r["points_over_first"] = round(100 * (r["test_accuracy"] - ref), 2)
    return write_report(args, name, "tune-probe", {"results": {"loadavg": loadavg(), "points": runs}})


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
