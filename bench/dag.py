#!/usr/bin/env python
"""`make bench-dag`: the whole workflow against fastai on the same competition, wall clock and held-out accuracy.

A Fashion-MNIST competition in the CSV-of-ids + image-folder layout (train.csv, train/<id>.png, test/<id>.png,
sample_submission.csv) with --n-train training and --n-test test images; the test labels are kept aside.

  kagglecv  `snakemake` in a fresh folder, as a user runs it (the workflow profile, all cores): download, prepare,
            --folds folds x --epochs epochs of --backbone at --img-size px, TTA, ensemble, submission, report
            figures. Accuracy: submission.csv against the hidden labels.
  fastai    a fresh Python process, as a fastai user writes it: ImageDataLoaders.from_csv(valid_pct=0.2,
            Resize, aug_transforms + Normalize imagenet stats), vision_learner(pretrained=False),
            fit_one_cycle(--fastai-epochs), learn.tta on the test images. Accuracy: the same hidden labels.

Both are timed from process start to predictions on disk, one after the other, on this machine. Results: printed,
and bench/results/dag-<device>-<date>.json. Needs both environments: .venv (snakemake) and bench/.venv (fastai).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from workflow import snakemake  # noqa: E402

from kagglecv.core.files import write_json  # noqa: E402

from machine import FASHION, cpu_name, loadavg, read_idx, slug, train_overrides  # noqa: E402

FASTAI_PYTHON = BENCH / ".venv" / "bin" / "python"


def write_competition(path: Path, n_train: int, n_test: int) -> dict[str, int]:
    """The competition zip; returns the hidden test labels {id: label}."""
    import pandas as pd

    from kagglecv.data import demo

    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        raise SystemExit(f"{FASHION}: not found; apt-get install -y dataset-fashion-mnist")
    xtr, ytr = (
        read_idx(FASHION / "train-images-idx3-ubyte.gz")[:n_train],
        read_idx(FASHION / "train-labels-idx1-ubyte.gz"),
    )
    xte, yte = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")[:n_test], read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")
    tr_ids, te_ids = [f"tr{i:05d}" for i in range(len(xtr))], [f"te{i:05d}" for i in range(len(xte))]
    images = {f"train/{i}.png": x for i, x in zip(tr_ids, xtr)} | {f"test/{i}.png": x for i, x in zip(te_ids, xte)}
    train = pd.DataFrame({"id": tr_ids, "label": ytr[:n_train]})
    demo.write_competition(path, train, images, pd.DataFrame({"id": te_ids, "label": 0}))
    return {i: int(y) for i, y in zip(te_ids, yte[:n_test])}


def backbone_entry(text: str):
    """--backbone: a timm name, or a YAML mapping (a factory's file made absolute: the run is in another folder)."""
    import yaml

    entry = yaml.safe_load(text) if text.lstrip().startswith("{") else text
    if isinstance(entry, dict) and ".py:" in str(entry.get("model", "")):
        entry["model"] = (
            str((REPO / entry["model"]).resolve()) if not Path(entry["model"]).is_absolute() else entry["model"]
        )
    return entry


def run_kagglecv(work: Path, zip_path: Path, args) -> tuple[float, Path]:
    config = {
        "competition": "fmnist-bench",
        "data": {"source": "local", "path": str(zip_path)},
        "folds": args.folds,
        "backbones": [backbone_entry(args.backbone)],
        "train": {**args.train_set, "epochs": args.epochs, "img_size": args.img_size},
        "mlflow": {"live": args.mlflow_live},
    }
    wall = snakemake(work, config, cores=args.cores)
    return wall, work / "results" / "fmnist-bench" / "submission.csv"


FASTAI_SCRIPT = r"""
import sys, time
from pathlib import Path
import numpy as np, pandas as pd, torch
from fastai.vision.all import (ImageDataLoaders, Normalize, PILImageBW, Resize, accuracy, aug_transforms,
                               imagenet_stats, vision_learner)
root, out, epochs, size, bs, lr, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \
    int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
augment = sys.argv[8] == "light"
torch.manual_seed(seed)
mean, std = (float(np.mean(v)) for v in imagenet_stats)  # grey images: ImageNet's channel means, as timm does
dls = ImageDataLoaders.from_csv(root, "train.csv", folder="train", suff=".png", valid_pct=0.2, seed=seed, bs=bs,
                                img_cls=PILImageBW, item_tfms=Resize(size),
                                batch_tfms=[*(aug_transforms(do_flip=False, max_rotate=10.0, max_zoom=1.1,
                                                             max_lighting=0.0, max_warp=0.0, p_affine=0.75)
                                              if augment else []),
                                            Normalize.from_stats([mean], [std], cuda=False)])
learn = vision_learner(dls, "resnet18", pretrained=False, n_in=1, metrics=accuracy)
with learn.no_bar(), learn.no_logging():
    learn.fit_one_cycle(epochs, lr)
    print("valid accuracy", float(learn.recorder.values[-1][2]))  # before tta, which starts a new record
    test = sorted((root / "test").glob("*.png"))
    preds, _ = learn.tta(dl=learn.dls.test_dl(test))
vocab = list(learn.dls.vocab)
labels = [vocab[k] for k in preds.argmax(1).tolist()]
pd.DataFrame({"id": [p.stem for p in test], "label": labels}).to_csv(out, index=False)
"""


def run_fastai(work: Path, zip_path: Path, args) -> tuple[float, Path]:
    root = work / "data"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root)  # fastai reads folders; unzipping is not timed (kagglecv's prepare unpacks inside its run)
    script, out = work / "fastai_run.py", work / "fastai_submission.csv"
    script.write_text(FASTAI_SCRIPT)
    cmd = [
        str(FASTAI_PYTHON),
        str(script),
        str(root),
        str(out),
        str(args.fastai_epochs),
        str(args.img_size),
        str(args.batch_size),
        str(args.lr),
        str(args.seed),
        args.fastai_augment,
    ]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - t0
    (work / "fastai.log").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise SystemExit(f"fastai failed ({r.returncode}); see {work / 'fastai.log'}:\n{r.stderr[-3000:]}")
    return wall, out


def accuracy(submission: Path, truth: dict[str, int]) -> float:
    import pandas as pd

    sub = pd.read_csv(submission, dtype={"id": str})
    if sorted(sub["id"]) != sorted(truth):
        raise SystemExit(f"{submission}: its ids are not the test ids")
    return float((sub["label"].astype(int) == sub["id"].map(truth)).mean())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument(
        "--backbone",
        default="resnet18",
        help="kagglecv's backbones: entry, a timm name or a YAML mapping, e.g. "
        "'{name: small_cnn, model: bench/models/small_cnn.py:build, model_args: {width: 16}}'",
    )
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3, help="kagglecv epochs per fold")
    ap.add_argument("--fastai-epochs", type=int, default=10)
    ap.add_argument(
        "--fastai-augment",
        choices=["light", "none"],
        default="light",
        help="light: aug_transforms without flips, lighting or warp (rotate 10, zoom 1.1, p 0.75), as a "
        "fastai user augments; none: Normalize only, as kagglecv's default",
    )
    ap.add_argument("--batch-size", type=int, default=128, help="fastai's batch size (kagglecv: its default)")
    ap.add_argument("--lr", type=float, default=3e-3, help="fastai's peak LR (kagglecv: its default)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument(
        "--mlflow-live",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="kagglecv's mlflow.live (default: off, as in the demo)",
    )
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a kagglecv train setting (YAML value), e.g. --set label_smoothing=0.1; repeatable",
    )
    ap.add_argument("--ways", default="kagglecv,fastai")
    ap.add_argument("--work", type=Path, default=BENCH / "work" / "dag")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    args.train_set = train_overrides(ap, args.overrides)
    if not FASTAI_PYTHON.exists():
        raise SystemExit(f"{FASTAI_PYTHON}: missing; `make bench/.venv/.installed` builds fastai's environment")
    ways = [w for w in args.ways.split(",") if w]
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    zip_path = args.work / "fmnist-bench.zip"
    truth = write_competition(zip_path, args.n_train, args.n_test)
    name = cpu_name()
    print(
        f"{name}: Fashion-MNIST {args.n_train} train / {args.n_test} hidden test, {args.backbone} {args.img_size} px",
        flush=True,
    )
    results = {}
    for way in ways:
        work = args.work / way
        work.mkdir()
        load = loadavg()
        if way == "kagglecv":
            print(
                f"[kagglecv] snakemake, {args.folds} folds x {args.epochs} epochs, mlflow.live {args.mlflow_live}",
                flush=True,
            )
            wall, sub = run_kagglecv(work, zip_path, args)
        else:
            print(
                f"[fastai] fit_one_cycle {args.fastai_epochs} epochs on 80/20, augment {args.fastai_augment}, TTA",
                flush=True,
            )
            wall, sub = run_fastai(work, zip_path, args)
        results[way] = {
            "wall_seconds": round(wall, 1),
            "test_accuracy": round(accuracy(sub, truth), 4),
            "loadavg_before": load,
            "loadavg_after": loadavg(),
        }
        print(f"    {wall:.1f} s, held-out accuracy {results[way]['test_accuracy']:.4f}", flush=True)
    ratio = None
    if {"kagglecv", "fastai"} <= set(results):
        k, f = results["kagglecv"], results["fastai"]
        ratio = round(k["wall_seconds"] / f["wall_seconds"], 3)
        print(
            f"\nwall kagglecv/fastai {ratio} (target <= 0.8); accuracy kagglecv {k['test_accuracy']:.4f} vs fastai "
            f"{f['test_accuracy']:.4f} (target: at least fastai's)"
        )
    report = {
        "device": name,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results,
        "wall_ratio_kagglecv_over_fastai": ratio,
    }
    out = args.out or BENCH / "results" / f"dag-{slug(name)}-{dt.date.today().isoformat()}.json"
    write_json(out, report)
    print(f"written: {out}")
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
