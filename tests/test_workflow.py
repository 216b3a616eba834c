"""The real Snakemake DAG on tiny data with timm's tiny test models. The finished run the tests inspect is the
session's one trained run (conftest.py `trained_run`: two backbones, 2 folds, a stacked ensemble, live MLflow)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pandas as pd
import pytest

from helpers import REPO, SNAKEMAKE, TINY_TRAIN, edit_zip, mlflow_db, run_snakemake, tiny_config

pytestmark = pytest.mark.workflow  # every test here runs the real snakemake CLI


@pytest.fixture
def finished(trained_run):
    """The session's trained run (read only here): (folder, config, competition info, snakemake's output)."""
    return trained_run.wd, trained_run.cfg, trained_run.info, trained_run.run


def test_full_run_writes_every_output(finished):
    wd, cfg, info, run = finished
    res = wd / "results" / "tiny"
    assert (res / "folds.csv").exists()
    for b in ("test_resnet", "test_convnext"):
        for k in range(2):
            d = res / "models" / b / f"fold{k}"
            for name in ("oof.csv", "test.csv", "metrics.json", "config.json", "history.csv", "model.pt"):
                assert (d / name).exists(), d / name
            m = json.loads((d / "metrics.json").read_text())
            assert m["metric"] == "accuracy" and 0 <= m["score"] <= 1
        assert (res / "benchmarks" / "train" / b / "fold0.tsv").exists()
    # the per-backbone override reached that backbone only
    assert json.loads((res / "models/test_convnext/fold0/config.json").read_text())["lr"] == 0.002
    assert json.loads((res / "models/test_resnet/fold0/config.json").read_text())["lr"] == 0.003


def test_scores_json_has_the_documented_shape(finished, tmp_path):
    from kagglecv.scoring.ensemble import combine

    wd, cfg, *_ = finished
    res = wd / "results/tiny"
    scores = json.loads((res / "scores.json").read_text())
    assert scores["metric"] == "accuracy"
    assert set(scores["models"]) == {"test_resnet", "test_convnext"}
    assert all(len(m["folds"]) == 2 and 0 <= m["cv"] <= 1 for m in scores["models"].values())
    # rank_mean only for AUC metrics: ranks say nothing about which class wins
    assert set(scores["methods"]) == {"mean", "best_single", "hill_climb", "stack"}
    # the run's ensemble.method (stack) reached the ensemble job
    assert cfg["ensemble"]["method"] == "stack"
    assert scores["ensemble"]["method"] == "stack" and scores["ensemble"]["chosen_by"] == "config"
    assert scores["ensemble"]["cv"] == scores["methods"]["stack"]["cv"] and 0 <= scores["ensemble"]["cv"] <= 1
    # auto, the default, on the same models: the method with the best CV
    out = tmp_path / "tiny"
    out.mkdir()
    (out / "prepared").symlink_to(res / "prepared")
    shutil.copy(res / "folds.csv", out / "folds.csv")
    dirs = {b: [res / "models" / b / f"fold{k}" for k in range(2)] for b in scores["models"]}
    auto = combine(dirs, out / "folds.csv", "accuracy", out, method="auto")
    assert set(auto.methods) == set(scores["methods"])
    assert auto.ensemble.chosen_by == "cv" and 0 <= auto.ensemble.cv <= 1
    best = max(m["cv"] for m in auto.methods.values())
    assert auto.ensemble.cv == best


def test_submission_matches_the_sample(finished):
    wd, _, info, run = finished
    sub = pd.read_csv(wd / "results/tiny/submission.csv", dtype=str)
    sample = pd.read_csv(zipfile.ZipFile(wd / "tiny.zip").open("sample_submission.csv"), dtype=str)
    assert list(sub.columns) == list(sample.columns) and sub["id"].tolist() == sample["id"].tolist()
    assert set(sub["label"]) <= {"0", "1", "2"}
    assert "submission: results/tiny/submission.csv" in run.stdout  # the closing summary


def test_every_step_is_in_mlflow(finished):
    wd, cfg, *_ = finished
    store = mlflow_db(wd / "results" / "mlflow.db", "tiny")
    assert {"prepare", "folds", "ensemble", "submission", "test_resnet-fold0", "test_convnext-fold1"} <= set(store)
    assert {status for status, _ in store.values()} == {"FINISHED"}
    for name in ("test_resnet-fold0", "test_convnext-fold1"):  # one train_loss per epoch of each training job
        assert len(store[name][1]["train_loss"]) == cfg["train"]["epochs"], name


def test_complete_run_leaves_nothing_to_do(finished):
    wd, cfg, *_ = finished
    r = run_snakemake(wd, cfg, "-n")
    assert "Nothing to be done" in r.stdout + r.stderr


def test_adding_a_backbone_schedules_only_its_jobs(finished):
    wd, cfg, *_ = finished
    more = {**cfg, "backbones": [*cfg["backbones"], "test_efficientnet"]}
    r = run_snakemake(wd, more, "-n", "--quiet", "rules")
    assert job_counts(r) == {
        "train": "2",
        "ensemble": "1",
        "submission": "1",
        "report_cv": "1",
        "report_curves": "1",
        "report_oof": "1",
        "all": "1",
    }, r.stdout


def test_dry_run_plans_the_whole_dag(tmp_path, tiny_zip):
    r = run_snakemake(
        tmp_path, tiny_config(tiny_zip[0], backbones=["test_resnet", "test_vit"]), "-n", "--quiet", "rules"
    )
    assert job_counts(r) == {
        "prepare": "1",
        "folds": "1",
        "train": "4",
        "ensemble": "1",
        "submission": "1",
        "report_cv": "1",
        "report_curves": "1",
        "report_oof": "1",
        "report_folds": "1",
        "all": "1",
    }


def job_counts(r) -> dict:
    """Rule -> planned job count, from `snakemake -n --quiet rules`."""
    return {k: v for k, v in re.findall(r"^(\w+)\s+(\d+)$", r.stdout, flags=re.M) if k != "total"}


def _assert_one_line_error(r, expected):
    assert r.returncode != 0
    errors = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("ERROR: ")]
    assert errors and expected in errors[0], (r.stdout + r.stderr)[-3000:]


def test_bad_input_fails_with_one_line_and_no_submission(tmp_path, tiny_zip):
    """Through the real CLI, one case: the job's one line reaches the terminal and nothing is made after it.
    Every bad input's line from the prepare and folds jobs: tests/test_bad_inputs.py (the job harness)."""
    bad = edit_zip(tiny_zip[0], tmp_path / "bad.zip", lambda n, d: None if n == "train/tr005.png" else d)
    r = run_snakemake(tmp_path / "wd", tiny_config(bad), check=False)
    _assert_one_line_error(r, "train id 'tr005' has no image in")
    assert not (tmp_path / "wd/results/tiny/submission.csv").exists()
    assert not (tmp_path / "wd/results/tiny/prepared/meta.json").exists()


def test_config_is_validated_before_any_job(tmp_path, tiny_zip):
    cfg = tiny_config(tiny_zip[0])
    cfg["train"]["epochz"] = 3
    r = run_snakemake(tmp_path, cfg, "-n", check=False)
    assert r.returncode != 0 and "epochz" in r.stdout + r.stderr
    r = run_snakemake(
        tmp_path, tiny_config(tiny_zip[0], backbones=[{"name": "test_resnet", "lr": -1}]), "-n", check=False
    )
    assert r.returncode != 0 and "override for 'test_resnet' is invalid" in r.stdout + r.stderr


def test_lint_and_format_are_clean():
    lint = subprocess.run(
        [*SNAKEMAKE, "--lint", "--snakefile", str(REPO / "Snakefile")], cwd=REPO, capture_output=True, text=True
    )
    assert lint.returncode == 0 and "Congratulations" in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"], cwd=REPO, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    for args in (["check", "."], ["format", "--check", "."]):  # ruff, as `make lint` and CI run it
        r = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr


def mlflow_runs(uri: str, experiment: str) -> dict:
    """{run name: (params, {metric: [(step, value), ...]})} of the job runs in an MLflow store."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    out = {}
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        if run.data.tags.get("step") == "workflow":
            continue
        history = {
            k: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, k))
            for k in run.data.metrics
        }
        out[run.info.run_name] = (run.data.params, history)
    return out


def test_backfill_replays_exactly_what_the_live_run_logged(finished, tmp_path):
    """Each job's record (<run name>.mlflow.json beside its outputs) is what it logged: a backfill into an
    empty store gives the same params and metrics as the live run, and a backfill into the live store adds
    nothing."""
    wd, *_ = finished
    res = wd / "results" / "tiny"
    records = sorted(p.name for p in res.rglob("*.mlflow.json"))
    assert records == sorted(
        [
            "prepare.mlflow.json",
            "folds.mlflow.json",
            "ensemble.mlflow.json",
            "submission.mlflow.json",
            *(f"{b}-fold{k}.mlflow.json" for b in ("test_resnet", "test_convnext") for k in (0, 1)),
        ]
    )
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    base_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # None: the live store
    for uri, created in ((fresh, 8), (None, 0)):
        env = {**base_env, **({"MLFLOW_TRACKING_URI": uri} if uri else {})}
        r = subprocess.run(
            [sys.executable, "-m", "kagglecv", "backfill", str(res)],
            cwd=wd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        assert f"{created} run(s) were created" in r.stdout, r.stdout
    live = mlflow_runs(f"sqlite:///{wd / 'results' / 'mlflow.db'}", "tiny")
    back = mlflow_runs(fresh, "tiny")
    assert sorted(back) == sorted(live) and len(live) == 8
    for name, (params, metrics) in live.items():
        assert back[name][0] == params, name
        assert back[name][1] == metrics, name


def test_training_runs_reach_mlflow_after_the_fact_when_not_live(tmp_path, tiny_zip):
    """mlflow.live: false: prepare, folds and the training jobs never touch MLflow (they write their record only)
    and the ensemble step puts those records into MLflow as children of the workflow's run, with every epoch's
    metrics; the steps after it log live. Run up to the ensemble (scores.json): what follows is not tracked
    differently."""
    cfg = tiny_config(tiny_zip[0], mlflow={"live": False})
    target = ("-p", "results/tiny/scores.json")  # after a plain flag: --configfile takes every word after it
    run_snakemake(tmp_path, cfg, *target)
    runs = mlflow_runs(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}", "tiny")
    assert {"prepare", "folds", "ensemble", "test_resnet-fold0", "test_resnet-fold1"} <= set(runs)
    for k in (0, 1):
        params, metrics = runs[f"test_resnet-fold{k}"]
        assert params["fold"] == str(k) and len(metrics["train_loss"]) == TINY_TRAIN["epochs"]
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    by_name = {r.info.run_name: r for r in client.search_runs([exp.experiment_id], max_results=100)}
    parent = by_name["workflow"].info.run_id
    for name in ("prepare", "folds", "test_resnet-fold0", "test_resnet-fold1"):
        tags = by_name[name].data.tags
        assert tags["kagglecv.backfilled"] == "created" and tags["mlflow.parentRunId"] == parent, tags
        assert by_name[name].info.status == "FINISHED"
    assert "kagglecv.backfilled" not in by_name["ensemble"].data.tags  # the steps from the ensemble on log live
    log = (tmp_path / "results/tiny/logs/ensemble.log").read_text()
    assert "4 run(s) were created" in log, log
    # tracking changes no result: turning it live, or off, reruns nothing (jobs read it from the config)
    for mlflow_cfg in ({"live": True}, {"enabled": False}):
        r = run_snakemake(tmp_path, {**cfg, "mlflow": mlflow_cfg}, "-n", *target)
        assert "Nothing to be done" in r.stdout + r.stderr, (mlflow_cfg, r.stdout[-2000:])
