# Helpers and config validation: everything here runs before any job starts.
import json
from pathlib import Path

import yaml
from snakemake.utils import validate

from kagglecv.config import (
    backbone_settings,
    cache_side,
    input_size,
    loader_workers,
    prepare_side,
    train_mem_mb,
    train_threads,
)
from kagglecv.gpu import visible_devices

validate(config, "../schemas/config.schema.yaml")

SCHEMA = yaml.safe_load(Path(workflow.basedir, "schemas", "config.schema.yaml").read_text())
COMP = config["competition"]
RES = f"results/{COMP}"
PREP = f"{RES}/prepared"
PREPARED_FILES = [
    f"{PREP}/{name}"
    for name in (
        "train_images.npy",
        "test_images.npy",
        "train.csv",
        "test.csv",
        "meta.json",
        "sample_submission.csv",
    )
]
MODEL = f"{RES}/models/{{backbone}}/fold{{fold}}"  # one training job's folder (wildcards left open)


def global_resource(name):
    """A --resources limit (e.g. gpu=2), or None when none is set."""
    res = workflow.global_resources.get(name)
    return getattr(res, "value", res)


BACKBONES = backbone_settings(
    config, SCHEMA
)  # {name: train settings}, overrides merged and validated
# What the largest backbone needs, plus the margin; the previous side when the cache would not change.
CACHE_SIDE = prepare_side(cache_side(BACKBONES, config["data"]), f"{PREP}/meta.json")
TRAIN_THREADS = train_threads(config["train"]["threads"], workflow.cores, global_resource("gpu"))
LOCAL_GPUS = bool(visible_devices())


def train_mem(wildcards):
    """mem_mb for one training job of this backbone. Called at DAG time, once the executor is known: on a
    cluster the job gets a GPU (the rule asks for one), locally it does when this machine has some.
    """
    s = BACKBONES[wildcards.backbone]
    gpu = workflow.non_local_exec or LOCAL_GPUS
    workers = loader_workers(s["num_workers"], TRAIN_THREADS, gpu)
    return train_mem_mb(s, input_size(wildcards.backbone, s), 3, workers, gpu)


wildcard_constraints:
    backbone="[A-Za-z0-9_.-]+",
    fold=r"\d+",


def data_input():
    """What prepare waits for: the demo zip, a local folder/zip, or the download's completion marker."""
    source, path = config["data"]["source"], config["data"]["path"]
    if source == "demo":
        return path or f"data/demo/{COMP}.zip"
    if source == "kaggle":
        return f"data/kaggle/{COMP}/.complete"
    if not path:
        raise ValueError(
            "data.path: required with data.source: local (a competition folder or zip)"
        )
    return path


def competition_path(wildcards, input):
    """The competition prepare reads: its input, or for a download the files beside the marker."""
    data = Path(input.data)
    return str(data.parent / "files") if data.name == ".complete" else str(data)


def train_params(wildcards):
    """What the training job computes with. Scheduling settings (mem_mb) are not params: changing them
    must not retrain anything."""
    return {
        **{k: v for k, v in BACKBONES[wildcards.backbone].items() if k != "mem_mb"},
        "backbone": wildcards.backbone,
        "fold": int(wildcards.fold),
        "seed": config["seed"],
        "metric": config["metric"],
    }


def lr_find_input(wildcards):
    """lr_find.json when the backbone's train.lr is auto (the train job then reads its suggestion), else nothing."""
    if BACKBONES[wildcards.backbone]["lr"] == "auto":
        return f"{RES}/lr_find/{wildcards.backbone}/lr_find.json"
    return []


def fold_dirs(backbone):
    return [f"{RES}/models/{backbone}/fold{k}" for k in range(config["folds"])]


def all_fold_outputs(name):
    return [f"{d}/{name}" for b in BACKBONES for d in fold_dirs(b)]


def default_targets():
    targets = [f"{RES}/scores.json", f"{RES}/submission.csv"]
    if config["data"]["source"] == "demo":
        targets.append(f"{RES}/holdout.json")
    return targets


def report_and_close(ok):
    """Close the MLflow parent run; after a success print the CV table and where things are."""
    from kagglecv.tracking import display_uri, finish_parent, tracking_uri

    scores_path, holdout_path = Path(f"{RES}/scores.json"), Path(f"{RES}/holdout.json")
    scores = json.loads(scores_path.read_text()) if ok and scores_path.exists() else None
    finish_parent(ok, {"cv_ensemble": scores["ensemble"]["cv"]} if scores else None)
    if not scores:
        return
    from kagglecv.ensemble import cv_table

    print(f"\n{cv_table(scores)}")
    if holdout_path.exists():
        h = json.loads(holdout_path.read_text())
        print(f"submission scored on the held-aside labels: {h['metric']} = {h['score']:.5f}")
    print(f"\nsubmission: {RES}/submission.csv")
    print(f"MLflow UI:  mlflow ui --backend-store-uri {display_uri(tracking_uri('results'))}")


onstart:
    # One MLflow parent run per invocation; jobs find its id in their environment (never a param).
    if config["mlflow"]["enabled"]:
        from kagglecv.tracking import start_parent

        start_parent(COMP)


onsuccess:
    report_and_close(ok=True)


onerror:
    report_and_close(ok=False)
