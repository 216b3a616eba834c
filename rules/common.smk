# Helpers and config validation: everything here runs before any job starts.
import copy
import json
from pathlib import Path

import jsonschema
import yaml
from snakemake.utils import validate

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


def backbone_settings():
    """{name: train config} with each backbone's overrides merged over `train`, validated now."""
    out = {}
    for item in config["backbones"]:
        item = {"name": item} if isinstance(item, str) else dict(item)
        name = item.pop("name")
        if name in out:
            raise ValueError(f"backbones: {name!r} is listed twice")
        merged = {**copy.deepcopy(config["train"]), **item}
        try:
            jsonschema.validate(merged, SCHEMA["properties"]["train"])
        except jsonschema.ValidationError as e:
            raise ValueError(f"backbones: override for {name!r} is invalid: {e.message}") from None
        out[name] = merged
    return out


BACKBONES = backbone_settings()


wildcard_constraints:
    backbone="[A-Za-z0-9_.-]+",
    fold=r"\d+",


def data_input():
    """The competition as Kaggle ships it: the demo zip, a local folder/zip, or the download."""
    source, path = config["data"]["source"], config["data"]["path"]
    if source == "demo":
        return path or f"data/demo/{COMP}.zip"
    if source == "kaggle":
        return f"data/kaggle/{COMP}/files"
    if not path:
        raise ValueError(
            "data.path: required with data.source: local (a competition folder or zip)"
        )
    return path


def train_params(wildcards):
    return {
        **BACKBONES[wildcards.backbone],
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
    from kagglecv.tracking import finish_parent, tracking_uri

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
    print(f"MLflow UI:  mlflow ui --backend-store-uri {tracking_uri('results')}")


onstart:
    # One MLflow parent run per invocation; jobs find its id in their environment (never a param).
    if config["mlflow"]["enabled"]:
        from kagglecv.tracking import start_parent

        start_parent(COMP)


onsuccess:
    report_and_close(ok=True)


onerror:
    report_and_close(ok=False)
