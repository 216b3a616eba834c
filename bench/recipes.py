#!/usr/bin/env python
"""`make bench-recipes`: what the recipes beyond one schedule buy, each measured side by side on held-out labels the
workflow never sees (Fashion-MNIST competitions built here; the real `snakemake` for every DAG-level figure).

  short     2,000 / 1,000 pixel-CSV, resnet18, 3 folds x 2 epochs, batch 128, light augmentation (~20 optimizer
            steps a fold): held-out accuracy with precise batch norm (the default) and without.
  meta      3,000 / 1,000 images with a text column `kind`: `signal` shifts the label by kind, `noise` leaves it alone
            (kind random): held-out accuracy with data.meta_columns [kind] and without, for both.
  heads     one fold, resnet18 three ways (timm's own head, head: gem, a factory file wrapping timm's resnet18):
            start-up seconds and images/s from metrics.json.
  pseudo    1,000 labelled / 5,000 test images, resnet18, 3 folds x 4 epochs at 32 px: held-out accuracy with one
            pseudo-label round (soft labels on every test image; hard labels on the confident ones; two rounds of
            those; one round at other confidence thresholds) and without (`--pseudo NAME` for some of them);
            the distilled student (resnet10t) beside them: its held-out accuracy and its prediction time against
            its teachers' ensemble.
  resize    a photo competition (bench/scale.py's generator): stages 48 -> 64 px against 64 px throughout, same
            epochs: wall time and CV.
  budget    one fold of 10,000 images: time budgets of 40, 120 and 300 s, planned against used seconds.
  average   one fold, 6 epochs: the final weights, EMA (0.99) and the last-3-epochs average: fold score.

Results: printed, and bench/results/recipes-<what>-<device>-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from workflow import snakemake  # noqa: E402

from kagglecv.core.files import write_json  # noqa: E402
from kagglecv.data.demo import write_competition  # noqa: E402

from machine import FASHION, cpu_name, loadavg, read_idx, slug  # noqa: E402

# ---------------------------------------------------------------- competitions


def fashion(n_train: int, n_test: int, seed: int = 0):
    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        raise SystemExit(f"{FASHION}: not found; apt-get install -y dataset-fashion-mnist")
    xtr, ytr = read_idx(FASHION / "train-images-idx3-ubyte.gz"), read_idx(FASHION / "train-labels-idx1-ubyte.gz")
    xte, yte = read_idx(FASHION / "t10k-images-idx3-ubyte.gz"), read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(seed)
    tr, te = rng.choice(len(xtr), n_train, replace=False), rng.choice(len(xte), n_test, replace=False)
    return xtr[tr], ytr[tr].astype(int), xte[te], yte[te].astype(int)


def pixel_competition(dest: Path, n_train: int, n_test: int) -> pd.Series:
    """Digit Recognizer's layout; the hidden labels by ImageId."""
    xtr, ytr, xte, yte = fashion(n_train, n_test)
    dest.mkdir(parents=True, exist_ok=True)
    cols = [f"pixel{i}" for i in range(784)]
    train = pd.DataFrame(xtr.reshape(len(xtr), -1), columns=cols)
    train.insert(0, "label", ytr)
    train.to_csv(dest / "train.csv", index=False)
    pd.DataFrame(xte.reshape(len(xte), -1), columns=cols).to_csv(dest / "test.csv", index=False)
    ids = np.arange(1, len(xte) + 1)
    pd.DataFrame({"ImageId": ids, "Label": 0}).to_csv(dest / "sample_submission.csv", index=False)
    return pd.Series(yte, index=ids.astype(str))


def image_competition(path: Path, xtr, ytr, xte, yte, train_extra=None, test_extra=None) -> pd.Series:
    """csv_images (train.csv id,label[,extra], train/ test/ PNGs, test.csv with the extra columns)."""
    tr_ids, te_ids = [f"tr{i:05d}" for i in range(len(xtr))], [f"te{i:05d}" for i in range(len(xte))]
    train = pd.DataFrame({"id": tr_ids, "label": ytr, **(train_extra or {})})
    test = pd.DataFrame({"id": te_ids, **(test_extra or {})})
    images = {f"train/{i}.png": x for i, x in zip(tr_ids, xtr)} | {f"test/{i}.png": x for i, x in zip(te_ids, xte)}
    write_competition(path, train, images, pd.DataFrame({"id": te_ids, "label": 0}), files={"test.csv": test})
    return pd.Series(yte, index=te_ids)


# ---------------------------------------------------------------- running the workflow


def held_out(work: Path, competition: str, truth: pd.Series) -> float:
    sub = pd.read_csv(work / "results" / competition / "submission.csv", dtype=str)
    id_col, label = sub.columns[:2]
    return float((sub[label].astype(int).to_numpy() == truth.loc[sub[id_col]].to_numpy()).mean())


def scores(work: Path, competition: str) -> dict:
    return json.loads((work / "results" / competition / "scores.json").read_text())


def base_config(competition: str, data: dict, **over) -> dict:
    cfg = {
        "competition": competition,
        "data": data,
        "backbones": ["resnet18"],
        "folds": 3,
        "metric": "accuracy",
        "train": {"epochs": 3, "img_size": 32, "batch_size": 64},
        "mlflow": {"enabled": False},
    }
    for k, v in over.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg


# ---------------------------------------------------------------- the measurements


def short(root: Path) -> dict:
    truth = pixel_competition(root / "fm2k", 2000, 1000)
    out = {}
    for name, bn in (("precise_bn", 200), ("running_stats", 0)):
        cfg = base_config(
            "fm2k",
            {"source": "local", "path": str(root / "fm2k")},
            train={"epochs": 2, "batch_size": 128, "augment": "light", "precise_bn": bn},
        )
        wall = snakemake(root / name, cfg)
        s = scores(root / name, "fm2k")
        out[name] = {
            "held_out": held_out(root / name, "fm2k", truth),
            "cv": s["ensemble"]["cv"],
            "folds": s["models"]["resnet18"]["folds"],
            "wall_s": round(wall, 1),
        }
    return out


def meta(root: Path) -> dict:
    xtr, ytr, xte, yte = fashion(3000, 1000, seed=1)
    rng = np.random.default_rng(1)
    ktr, kte = rng.choice(["a", "b", "c"], len(ytr)), rng.choice(["a", "b", "c"], len(yte))
    shift = {"a": 0, "b": 3, "c": 7}
    out = {}
    for case in ("signal", "noise"):
        if case == "signal":
            ltr = (ytr + np.array([shift[k] for k in ktr])) % 10
            lte = (yte + np.array([shift[k] for k in kte])) % 10
        else:
            ltr, lte = ytr, yte
        truth = image_competition(root / f"{case}.zip", xtr, ltr, xte, lte, {"kind": ktr}, {"kind": kte})
        for with_meta in (True, False):
            name = f"{case}-{'meta' if with_meta else 'image'}"
            data = {
                "source": "local",
                "path": str(root / f"{case}.zip"),
                **({"meta_columns": ["kind"]} if with_meta else {}),
            }
            wall = snakemake(root / name, base_config(case, data))
            out[name] = {
                "held_out": held_out(root / name, case, truth),
                "cv": scores(root / name, case)["ensemble"]["cv"],
                "wall_s": round(wall, 1),
            }
    return out


FACTORY = """import timm

def build(num_outputs, in_chans, pretrained, img_size):
    return timm.create_model("resnet18", num_classes=num_outputs, in_chans=in_chans, pretrained=pretrained)
"""


def one_fold(root: Path, n_train: int, n_test: int) -> tuple[Path, Path]:
    """A prepared pixel-CSV competition in 3 folds, for library-level jobs."""
    from kagglecv.data.folds import make_folds
    from kagglecv.data.prepare import prepare

    pixel_competition(root / "comp", n_train, n_test)
    prepare(root / "comp", root / "prepared", workers=2)
    make_folds(root / "prepared" / "train.csv", root / "folds.csv", 3, 42)
    return root / "prepared", root / "folds.csv"


def job(cfg: dict, prepared: Path, folds: Path, out: Path) -> dict:
    """One training job in its own process, as the workflow runs it (start-up included)."""
    code = (
        "import json, sys; from kagglecv.training.train import TrainConfig, run; "
        "r = run(TrainConfig.from_dict(json.loads(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4], "
        "track=False); print('RESULT', json.dumps(r))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, json.dumps(cfg), str(prepared), str(folds), str(out)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "TQDM_DISABLE": "1"},
    )
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.split("RESULT ", 1)[1])


def heads(root: Path) -> dict:
    prepared, folds = one_fold(root, 3000, 500)
    (root / "factory.py").write_text(FACTORY)
    base = {"backbone": "resnet18", "epochs": 2, "img_size": 32, "batch_size": 64, "threads": 2, "tta": "none"}
    ways = {"timm": {}, "gem": {"head": "gem"}, "factory": {"model": f"{root / 'factory.py'}:build"}}
    out = {}
    for rep in range(2):  # interleaved twice: the machine's drift shows as the spread between repeats
        for name, over in ways.items():
            r = job({**base, **over}, prepared, folds, root / f"{name}-{rep}")
            out.setdefault(name, []).append(
                {"startup_s": r["startup_seconds"], "img_per_s": round(r["img_per_s"], 1), "score": r["score"]}
            )
    return out


HARD = {"min_confidence": 0.9, "soft": False}  # hard labels on the test images the teacher is sure of
PSEUDO = {
    "plain": {},
    "round": {"pseudo_labels": {"rounds": 1}},  # the defaults: hard labels on p >= 0.95
    "round, soft labels on every image": {"pseudo_labels": {"rounds": 1, "min_confidence": 0.0, "soft": True}},
    "round, confident hard labels": {"pseudo_labels": {"rounds": 1, **HARD}},
    "two rounds, confident hard labels": {"pseudo_labels": {"rounds": 2, **HARD}},
    "round, hard labels p >= 0.8": {"pseudo_labels": {"rounds": 1, **HARD, "min_confidence": 0.8}},
    "round, hard labels p >= 0.95": {"pseudo_labels": {"rounds": 1, **HARD, "min_confidence": 0.95}},
    "round+student": {"pseudo_labels": {"rounds": 1}, "distill": {"student": "resnet10t"}},
}


def pseudo(root: Path, only: list[str] | None = None) -> dict:
    """Every PSEUDO variant, or `only` those (plain always: the baseline of the same run)."""
    xtr, ytr, xte, yte = fashion(1000, 5000, seed=2)
    truth = image_competition(root / "pl.zip", xtr, ytr, xte, yte)
    data = {"source": "local", "path": str(root / "pl.zip")}
    out = {}
    for name, over in PSEUDO.items():
        if only and name != "plain" and name not in only:
            continue
        cfg = base_config("pl", data, train={"epochs": 4}, **over)
        wall = snakemake(root / name, cfg)
        s = scores(root / name, "pl")
        out[name] = {
            "held_out": held_out(root / name, "pl", truth),
            "cv": s["ensemble"]["cv"],
            "method": s["ensemble"]["method"],
            "members": {m: v["cv"] for m, v in s["models"].items()},
            "wall_s": round(wall, 1),
        }
    if "round+student" in out:
        out["student"] = student_against_ensemble(root / "round+student" / "results" / "pl", truth)
    return out


def student_against_ensemble(res: Path, truth: pd.Series) -> dict:
    """The student alone against its teachers' ensemble (the mean of the other members, what it was distilled
    from): held-out accuracy, and the seconds each takes to predict the test images
    (kagglecv.inference.predict.ensemble_predict, as `snakemake predict` and the kernel run it)."""
    from kagglecv.core.layout import Layout
    from kagglecv.core.results import Scores
    from kagglecv.data.batches import open_cache
    from kagglecv.inference.predict import ensemble_predict
    from kagglecv.kaggle.kernel_dataset import student_scores

    L = Layout(res)
    full = Scores.read(L.scores).to_dict()
    student = next(m for m in full["models"] if m.endswith("@student"))
    images = open_cache(L.prepared.test_images)
    ids = pd.read_csv(L.prepared.test, dtype=str)["id"]
    out = {}
    teachers = [m for m in full["models"] if m != student]
    ensemble = {**full, "ensemble": {"method": "mean", "members": teachers, "params": None}}
    for name, s in (("ensemble", ensemble), ("student", student_scores(L, full, student).to_dict())):
        bundle = res.parent.parent / f"bundle-{name}"
        shutil.rmtree(bundle, ignore_errors=True)
        shutil.copytree(res, bundle / "r", ignore=shutil.ignore_patterns("*.npy", "kernel*", "logs", "report"))
        Layout(bundle / "r").scores.write_text(json.dumps(s))
        t0 = time.perf_counter()
        probs, info = ensemble_predict(bundle / "r", images, "cpu")
        seconds = time.perf_counter() - t0
        out[name] = {
            "held_out": float((probs.argmax(1) == truth.loc[ids].to_numpy()).mean()),
            "predict_s": round(seconds, 2),
            "members": info["members"],
        }
    out["time_ratio"] = round(out["student"]["predict_s"] / out["ensemble"]["predict_s"], 3)
    return out


def resize(root: Path) -> dict:
    from scale import generate

    data = {"source": "local", "path": str(generate(root / "photos", 3000))}  # 2,000 train, 1,000 test photos
    out = {}
    for name, train in (
        ("64px", {"epochs": 6, "img_size": 64}),
        ("48-64px", {"stages": [{"img_size": 48, "epochs": 4}, {"img_size": 64, "epochs": 2}]}),
    ):
        # the generator's template holds probabilities (Dogs vs Cats): a probability metric, as scale.py's
        cfg = base_config("photos", data, train={**train, "augment": "flip"}, metric="log_loss")
        wall = snakemake(root / name, cfg)
        s = scores(root / name, "photos")
        train_s = [
            json.loads(p.read_text())["train_seconds"]
            for p in (root / name / "results/photos/models").glob("*/fold*/metrics.json")
        ]
        out[name] = {"cv": s["ensemble"]["cv"], "wall_s": round(wall, 1), "train_s_sum": round(sum(train_s), 1)}
    return out


def budget(root: Path) -> dict:
    prepared, folds = one_fold(root, 10000, 2000)
    out = {}
    for seconds in (40, 120, 300):
        r = job(
            {"backbone": "resnet18", "img_size": 32, "batch_size": 64, "threads": 2, "time_budget": seconds},
            prepared,
            folds,
            root / f"b{seconds}",
        )
        b = r["time_budget"]
        out[str(seconds)] = {**b, "off_by": round(b["used_seconds"] / seconds - 1, 3), "score": r["score"]}
    return out


def average(root: Path) -> dict:
    prepared, folds = one_fold(root, 3000, 500)
    base = {"backbone": "resnet18", "epochs": 6, "img_size": 32, "batch_size": 64, "threads": 2}
    out = {}
    for name, over in (("final", {}), ("ema", {"ema_decay": 0.99}), ("last_3", {"average": "last_k"})):
        r = job({**base, **over}, prepared, folds, root / name)
        out[name] = {"score": r["score"], "averaged_epochs": r.get("averaged_epochs", 0)}
    return out


WHAT = {
    "short": short,
    "meta": meta,
    "heads": heads,
    "pseudo": pseudo,
    "resize": resize,
    "budget": budget,
    "average": average,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", nargs="+", choices=sorted(WHAT))
    ap.add_argument("--work", type=Path, default=Path("/tmp/kagglecv-bench-recipes"))
    ap.add_argument(
        "--pseudo",
        action="append",
        choices=sorted(PSEUDO),
        default=None,
        help="pseudo: only these variants beside plain (repeatable; default: every one)",
    )
    ap.add_argument("--tag", default="", help="added to the results file's name (recipes-<what>-<tag>-...)")
    args = ap.parse_args()
    device = cpu_name()
    for what in args.what:
        root = args.work / what
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        load0, t0 = loadavg(), time.perf_counter()
        figures = pseudo(root, args.pseudo) if what == "pseudo" else WHAT[what](root)
        result = {
            "what": what,
            "device": device,
            "date": dt.date.today().isoformat(),
            "load_before": load0,
            "load_after": loadavg(),
            "seconds": round(time.perf_counter() - t0, 1),
            "figures": figures,
        }
        print(json.dumps(result, indent=2))
        name = "-".join(x for x in ("recipes", what, args.tag, slug(device), result["date"]) if x)
        write_json(BENCH / "results" / f"{name}.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
