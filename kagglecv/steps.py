"""The workflow's steps: each composes library pieces, writes its outputs, and logs to MLflow.

Scripts in scripts/ make exactly one call into this module."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .fsutil import write_json
from .layout import Layout, record_file
from .tracking import Tracker

# Library modules are imported inside each step: a small job must not pay for importing torch and timm.


def demo_step(zip_path, solution_path) -> None:
    from .demo import make_digits_competition

    make_digits_competition(zip_path, solution_path)


def prepare_step(data_path, out_dir, data_cfg: dict, experiment: str, results_dir="results", track=True,
                 workers: int = 1, archive: dict | None = None, task: str = "auto", metric: str = "accuracy") -> dict:
    from . import prepare
    from .archive import ArchiveLimits

    cfg = prepare.DataConfig(**data_cfg)
    with Tracker(experiment, "prepare", results_dir, enabled=track, tags={"step": "prepare"},
                 record=record_file(out_dir, "prepare")) as t:
        meta = prepare.prepare(data_path, out_dir, cfg, workers=workers, limits=ArchiveLimits(**(archive or {})),
                               task=task, metric=metric)
        t.log_params({"data_path": str(data_path), **{k: v for k, v in meta.items() if k != "classes"},
                      "n_classes": len(meta["classes"])})
        t.log_artifact(Path(out_dir) / "meta.json")
    return meta


def folds_step(train_csv, out_csv, n_folds: int, seed: int, experiment: str, results_dir="results",
               track=True) -> None:
    from . import folds

    with Tracker(experiment, "folds", results_dir, enabled=track, tags={"step": "folds"},
                 record=record_file(Path(out_csv).parent, "folds")) as t:
        task = json.loads((Path(train_csv).parent / "meta.json").read_text())["task"]
        df = folds.make_folds(train_csv, out_csv, n_folds, seed, task=task)
        t.log_params({"folds": n_folds, "seed": seed})
        t.log_metrics({f"fold{k}_size": int(n) for k, n in df["fold"].value_counts().sort_index().items()})
        t.log_artifact(out_csv)


def train_step(train_cfg: dict, prepared_dir, folds_csv, out_dir, experiment: str, results_dir="results",
               track=True, lr_find_json=None) -> dict:
    from . import train
    from .errors import InputError

    if train_cfg.get("lr") == "auto":
        if not lr_find_json:
            raise InputError("train.lr: auto needs the lr_find rule's lr_find.json for this backbone")
        found = json.loads(Path(lr_find_json).read_text())
        print(f"train.lr: auto -> {found['suggestion']:.4g} ({found.get('method', 'valley')} of {lr_find_json})")
        train_cfg = {**train_cfg, "lr": float(found["suggestion"])}
    return train.run(train.TrainConfig.from_dict(train_cfg), prepared_dir, folds_csv, out_dir,
                     experiment=experiment, results_dir=results_dir, track=track)


def ensemble_step(model_dirs: dict[str, list[str]], folds_csv, out_dir, metric: str, method: str,
                  experiment: str, results_dir="results", track=True, replay=False) -> dict:
    """The ensemble, logged. replay (mlflow.live: false): first put the records of the jobs before it (prepare,
    folds, training) into MLflow, which they skipped to save their start-up."""
    from . import ensemble

    if replay:
        replay_records(out_dir, experiment)

    with Tracker(experiment, "ensemble", results_dir, enabled=track, tags={"step": "ensemble"},
                 record=record_file(out_dir, "ensemble")) as t:
        scores = ensemble.combine({k: [Path(d) for d in v] for k, v in model_dirs.items()}, Path(folds_csv),
                                  metric, Path(out_dir), method)
        print(ensemble.cv_table(scores))
        t.log_params({"metric": metric, "method": method, "backbones": ",".join(model_dirs)})
        t.log_metrics({f"cv_{name}": s["cv"] for name, s in scores["models"].items()})
        t.log_metrics({"cv_ensemble": scores["ensemble"]["cv"]})
        t.log_artifact(Layout(Path(out_dir)).scores)
    return scores


def replay_records(results, experiment: str) -> None:
    """kagglecv.backfill of `results` (results/<competition>): the runs of jobs that wrote only their record.
    Tracking never fails a step: a failure warns once, as any tracking call's does, and `snakemake backfill`
    can do it later."""
    from .backfill import backfill
    from .tracking import _warn_down

    try:
        backfill(results, experiment)  # prints what it logged
    except Exception as e:  # noqa: BLE001 - the ensemble's result does not depend on MLflow
        _warn_down("replaying the jobs' records", e, stacklevel=2)


def submission_step(ensemble_test_csv, prepared_dir, out_csv, metric: str, experiment: str,
                    results_dir="results", track=True, scores_json=None) -> None:
    from . import submission

    with Tracker(experiment, "submission", results_dir, enabled=track, tags={"step": "submission"},
                 record=record_file(Path(out_csv).parent, "submission")) as t:
        out = submission.make_submission(Path(ensemble_test_csv), Path(prepared_dir),
                                         Path(prepared_dir) / "sample_submission.csv", metric, Path(out_csv),
                                         scores_json=scores_json)
        t.log_params({"rows": len(out), "columns": ",".join(out.columns)})
        t.log_artifact(out_csv)


def kernel_step(results_dir, dataset_dir, kernel_dir, experiment: str, mlflow_dir="results", track=True,
                **settings) -> dict:
    """The kernel rule: kagglecv.kernel.build, logged. The record goes beside the results, not into the dataset
    (a file that changes on every build would make every submit upload the dataset again)."""
    from .kernel import MANIFEST, build

    with Tracker(experiment, "kernel", mlflow_dir, enabled=track, tags={"step": "kernel"},
                 record=record_file(results_dir, "kernel")) as t:
        manifest = build(results_dir, dataset_dir, kernel_dir, **settings)
        t.log_params({"dataset": manifest["dataset"], "kernel": manifest["kernel"], "method": manifest["method"],
                      "members": ",".join(manifest["members"]), "files": len(manifest["files"])})
        t.log_metrics({"dataset_bytes": manifest["bytes"]})
        t.log_artifact(Path(dataset_dir) / MANIFEST)
    return manifest


def holdout_step(submission_csv, solution_csv, prepared_dir, out_json, metric: str, experiment: str,
                 results_dir="results", track=True) -> dict:
    """Score a submission against held-aside labels (the demo's solution.csv): the local 'public score'."""
    from . import metrics, submission

    meta = json.loads((Path(prepared_dir) / "meta.json").read_text())
    sub = pd.read_csv(submission_csv, dtype=str, keep_default_na=False)
    sol = pd.read_csv(solution_csv, dtype=str, keep_default_na=False)
    id_col, target = meta["id_column"], meta["target_columns"][0]
    merged = sol.merge(sub, on=id_col, suffixes=("_true", "_pred"), validate="one_to_one")
    classes = [str(c) for c in meta["classes"]]
    y = merged[f"{target}_true"].map(classes.index).to_numpy()
    if submission.submission_format(meta, metric) == "label":
        probs = pd.get_dummies(pd.Categorical(merged[f"{target}_pred"], categories=classes)).to_numpy(float)
    else:
        p1 = merged[f"{target}_pred"].astype(float).to_numpy()
        probs = pd.DataFrame({"0": 1 - p1, "1": p1}).to_numpy()
    result = {"metric": metric, "score": metrics.score(metric, y, probs), "n": len(merged)}
    with Tracker(experiment, "holdout", results_dir, enabled=track, tags={"step": "holdout"},
                 record=record_file(Path(out_json).parent, "holdout")) as t:
        write_json(out_json, result)
        t.log_metrics({"holdout_score": result["score"]})
        t.log_artifact(out_json)
    return result
