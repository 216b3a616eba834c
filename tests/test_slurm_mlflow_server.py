"""The DAG on a real (single-node) Slurm, tracked on a real MLflow server; the server killed mid-run (that DAG on the
local executor), then a backfill.

Started for real by the fixtures in slurm_local.py: munged, slurmctld and slurmd with two fake GPUs (gres), and
`mlflow server` with a SQLite store. Needs root (and Debian's slurm-wlm, which .ci/install-slurm.sh installs);
elsewhere these tests skip and say why. Select them with `pytest -m slurm`.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import PROFILE as LOCAL_PROFILE
from helpers import REPO, SNAKEMAKE, tiny_config, write_csv_images_competition
from slurm_local import MlflowServer, Unavailable, slurm_cluster

PROFILE = REPO / "profiles" / "slurm"
# One backbone (its own input size) x 2 folds: two training jobs, on the node's two GPUs at once.
BACKBONES = [{"name": "test_convnext", "img_size": 32}]
TRAIN_JOBS = {f"test_convnext-fold{k}" for k in range(2)}
JOBS = {"prepare", "folds", "ensemble", "submission"} | TRAIN_JOBS
WARNING = "continuing without tracking"

# Slurm tests: the first one's setup may install slurm-wlm, wait for another session's cluster, then run the
# whole workflow through sbatch (about 3 minutes on 2 cores once installed).
pytestmark = [pytest.mark.slurm, pytest.mark.workflow, pytest.mark.timeout(1800)]


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip(
            "snakemake-executor-plugin-slurm is not installed (uv pip install snakemake-executor-plugin-slurm==2.8.0)"
        )
    try:
        cm = slurm_cluster(tmp_path_factory.mktemp("slurm"))
        cluster = cm.__enter__()
    except Unavailable as e:
        pytest.skip(f"no Slurm here: {e}")
    try:
        yield cluster
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def competition(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.zip"
    write_csv_images_competition(path)
    return path


def workflow_cmd(wd: Path, cfg: dict, *args: str, profile: str | Path = PROFILE, snakefile: Path | None = None):
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    # targets and options first: --configfile takes every word after it. The test node has 2 CPUs: --cores 1
    # caps the profile's 8-thread jobs at one CPU each, so that two training jobs fit on it at once.
    # Status checks: the plugin waits this long after a job finished, and 10 s more after each check that found
    # none finished (3, 16, 39 s... after a submission). The tiny jobs take 10-15 s under Slurm here: 3 finds them
    # at the second check, 16 s; the profile's 5 at 20 s; 1 at 33 s (the DAG in 139, 170, 208 s, by the jobs'
    # start and end times in slurmctld.log of one run).
    fit = ["--cores", "1"] if Path(profile) == PROFILE and "--cores" not in args else []
    if Path(profile) == PROFILE:
        fit += ["--slurm-init-seconds-before-status-checks", "3"]
    return [
        *SNAKEMAKE,
        *args,
        *fit,
        "--snakefile",
        str(snakefile or REPO / "Snakefile"),
        "--directory",
        str(wd),
        "--workflow-profile",
        str(profile),
        "--configfile",
        str(wd / "config.yaml"),
    ]


@pytest.fixture(scope="module", autouse=True)
def pycache(tmp_path_factory):
    """Bytecode cached for the jobs in a dir of the tests' own: with PYTHONDONTWRITEBYTECODE (as on these
    machines) every job would compile torch, mlflow and snakemake again; the venv itself is left alone."""
    PYCACHE.append(tmp_path_factory.mktemp("pycache"))


PYCACHE: list[Path] = []


def workflow_env(server: MlflowServer) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "KAGGLECV_", "SLURM_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update({"PYTHONUNBUFFERED": "1", "MLFLOW_TRACKING_URI": server.uri})
    if PYCACHE:
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE[-1])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", ""), "/usr/sbin", "/sbin"])
    return env


def run_workflow(wd: Path, cfg: dict, server: MlflowServer, *args: str, profile=PROFILE, timeout=900):
    t0 = time.perf_counter()
    r = subprocess.run(
        workflow_cmd(wd, cfg, *args, profile=profile),
        cwd=wd,
        env=workflow_env(server),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    r.wall = time.perf_counter() - t0
    assert r.returncode == 0, f"snakemake failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}"
    return r


def client_for(server: MlflowServer):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=server.uri)


def runs_of(server: MlflowServer, experiment: str = "tiny") -> list:
    c = client_for(server)
    exp = c.get_experiment_by_name(experiment)
    return list(c.search_runs([exp.experiment_id], max_results=1000)) if exp else []


def assert_complete_outputs(wd: Path, competition: Path) -> None:
    res = wd / "results" / "tiny"
    for job in TRAIN_JOBS:
        b, k = job.rsplit("-fold", 1)
        for name in ("oof.csv", "test.csv", "metrics.json", "config.json", "history.csv", "model.pt"):
            assert (res / "models" / b / f"fold{k}" / name).exists(), (job, name)
    assert json.loads((res / "scores.json").read_text())["ensemble"]["cv"] >= 0
    sub = pd.read_csv(res / "submission.csv", dtype=str)
    sample = pd.read_csv(zipfile.ZipFile(competition).open("sample_submission.csv"), dtype=str)
    assert list(sub.columns) == list(sample.columns) and sub["id"].tolist() == sample["id"].tolist()
    assert sub["label"].notna().all()


def training_jobs(wd: Path, slurm_jobs: list[dict]) -> list[dict]:
    """Each training job's device (metrics.json: what the job saw) and when it held it.

    The interval is the Slurm job's StartTime/EndTime (whole seconds; the job holds its GPU that long). Neither
    file times nor the training loop's own clock can tell: Snakemake touches a cluster job's outputs when it sees
    the job finish, and on tiny data the loop lasts a fraction of a second."""

    def ts(value: str) -> float:
        return datetime.fromisoformat(value).timestamp()

    by_wildcards = {
        Path(j["StdOut"]).parent.name: j
        for j in slurm_jobs
        if "/rule_train/" in j.get("StdOut", "") and j.get("JobState") == "COMPLETED"
    }
    out = []
    for m in sorted((wd / "results/tiny/models").glob("*/fold*/metrics.json")):
        metrics = json.loads(m.read_text())
        backbone, fold = m.parent.parent.name, m.parent.name.removeprefix("fold")
        sj = by_wildcards[f"{backbone}_{fold}"]
        start, end = ts(sj["StartTime"]), ts(sj["EndTime"])
        out.append(
            {"job": f"{backbone}-fold{fold}", "device": metrics["cuda_visible_devices"], "start": start, "end": end}
        )
    return out


def family(server: MlflowServer) -> tuple:
    """(the one workflow parent run, its child runs)."""
    runs = runs_of(server)
    parents = [r for r in runs if r.data.tags.get("step") == "workflow"]
    assert len(parents) == 1, [(r.info.run_name, r.data.tags.get("step")) for r in runs]
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children


# --- the tests -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm_run(slurm, server, competition, tmp_path_factory):
    wd = tmp_path_factory.mktemp("wf-slurm")
    r = run_workflow(wd, tiny_config(competition, backbones=BACKBONES), server)
    r.slurm_jobs = slurm.jobs()
    return wd, r


def test_slurm_runs_the_dag_to_a_valid_submission(slurm_run, competition):
    wd, r = slurm_run
    assert_complete_outputs(wd, competition)
    out = r.stdout + r.stderr
    assert "SLURM jobid" in out, out[-3000:]  # the jobs went through sbatch, not the local executor


def test_slurm_concurrent_training_jobs_get_different_gpus(slurm_run):
    wd, r = slurm_run
    jobs = training_jobs(wd, r.slurm_jobs)
    assert len(jobs) == 2
    assert {j["device"] for j in jobs} == {"0", "1"}, jobs  # Slurm's gres set CUDA_VISIBLE_DEVICES
    overlapping = [
        (a, b) for a, b in itertools.combinations(jobs, 2) if a["start"] < b["end"] and b["start"] < a["end"]
    ]
    assert overlapping, f"no two training jobs ran at once: {jobs}"
    for a, b in overlapping:
        assert a["device"] != b["device"], (a, b)


def test_slurm_job_asks_for_its_backbones_gpus_memory_and_time(slurm, slurm_run, server, tmp_path_factory):
    """A backbone entry's gpus, mem_mb and runtime reach sbatch through the train rule's resource functions: read
    back from Slurm's record of the submitted job. Its two leased (fake) GPUs are used by two processes (DDP; gloo
    on CPU). In a copy of the finished run, so prepare and folds are not run again."""
    import shutil

    wd = tmp_path_factory.mktemp("wf-slurm-gpus") / "run"
    shutil.copytree(slurm_run[0], wd, symlinks=True)
    cfg = yaml.safe_load((wd / "config.yaml").read_text())
    cfg["backbones"] = [*cfg["backbones"], {"name": "test_efficientnet", "gpus": 2, "mem_mb": 1500, "runtime": 7}]
    cfg["mlflow"] = {**cfg.get("mlflow", {}), "enabled": False}  # the module's server holds slurm_run's family only
    target = "results/tiny/models/test_efficientnet/fold0/metrics.json"
    r = run_workflow(wd, cfg, server, target)
    assert "localrule prepare" not in r.stdout + r.stderr and "rule prepare:" not in r.stdout + r.stderr
    job = [j for j in slurm.jobs() if "/rule_train/test_efficientnet_0/" in j.get("StdOut", "")]
    assert len(job) == 1, [j.get("StdOut") for j in slurm.jobs()]
    job = job[0]
    tres = dict(kv.split("=", 1) for kv in (job.get("ReqTRES") or job["TRES"]).split(","))
    # GPUs show in the TRES list only where AccountingStorageTRES tracks gres/gpu; the request itself is always in
    # TresPerJob or TresPerNode ("gres:gpu:2", "gres/gpu:2" on newer Slurm)
    per = job.get("TresPerJob") or job.get("TresPerNode") or ""
    gpus = tres.get("gres/gpu") or (re.search(r"gpu[:=](\d+)$", per) or [None, None])[1]
    assert gpus == "2" and tres["mem"] == "1500M", job
    assert job["TimeLimit"] == "00:07:00" and job["JobState"] == "COMPLETED", job
    metrics = json.loads((wd / target).read_text())
    assert metrics["processes"] == 2 and metrics["cuda_visible_devices"] == "0,1", metrics


def test_mlflow_server_holds_the_parent_with_every_child(slurm_run, server):
    wd, _ = slurm_run
    parent, children = family(server)
    assert parent.info.status == "FINISHED"
    scores = json.loads((wd / "results/tiny/scores.json").read_text())
    assert parent.data.metrics["cv_ensemble"] == pytest.approx(scores["ensemble"]["cv"])
    names = [c.info.run_name for c in children]
    assert sorted(names) == sorted(JOBS), names  # one child per job, none twice
    assert {c.info.status for c in children} == {"FINISHED"}
    assert all(c.data.tags["kagglecv.job"] == c.info.run_name for c in children)
    train = next(c for c in children if c.info.run_name == "test_convnext-fold1")
    assert train.data.tags["backbone"] == "test_convnext" and train.data.params["img_size"] == "32"
    assert "cv_fold" in train.data.metrics and "train_loss" in train.data.metrics
    assert "kagglecv.sha256.metrics.json" in train.data.tags
    # nothing for the backfill to do after a run with the server up
    r = backfill(wd, server)
    assert "0 run(s) were created [], 0 were completed []" in r.stdout, r.stdout


def backfill(wd: Path, server: MlflowServer, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [sys.executable, "-m", "kagglecv", "backfill", "results/tiny", *args],
        cwd=wd,
        env=workflow_env(server),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def wait_for_first(wd: Path, proc: subprocess.Popen, timeout: float = 600) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = sorted((wd / "results/tiny/models").glob("*/fold*/metrics.json"))
        if done:
            return done[0]
        assert proc.poll() is None, f"snakemake ended ({proc.returncode}) before any training job finished"
        time.sleep(0.5)
    raise TimeoutError("no training job finished")


@pytest.mark.xdist_group("mlflow-server-killed")  # needs no Slurm: may run beside the Slurm tests
def test_mlflow_server_killed_mid_run_then_backfill(competition, tmp_path_factory):
    """The server dies while the DAG runs (on the local executor: what is under test is the tracking, which is
    the same in a Slurm job); the run finishes, and a backfill puts in what the server missed."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-killed")).start()
    try:
        wd = tmp_path_factory.mktemp("wf-killed")
        cfg = tiny_config(competition, backbones=BACKBONES)
        t0 = time.perf_counter()
        with open(wd.parent / f"{wd.name}.snakemake.log", "w") as log:
            proc = subprocess.Popen(
                workflow_cmd(wd, cfg, "--cores", "2", profile=LOCAL_PROFILE),
                cwd=wd,
                env=workflow_env(server),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                first = wait_for_first(wd, proc)
                server.kill()  # SIGKILL, server and workers: as if its machine went away
                killed_at = time.perf_counter() - t0
                rc = proc.wait(timeout=900)
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=60)
        wall = time.perf_counter() - t0
        out = Path(log.name).read_text()
        assert rc == 0, out[-6000:]
        print(
            f"\nserver killed {killed_at:.0f} s in (after {first.parent.parent.name}/{first.parent.name}); "
            f"the run finished anyway after {wall:.0f} s"
        )
        assert_complete_outputs(wd, competition)  # tracking never costs a result

        # the jobs that ran without the server warned once each, and went on
        logs = wd / "results/tiny/logs"
        for name in ("ensemble.log", "submission.log"):
            text = (logs / name).read_text()
            assert text.count(WARNING) == 1, text[-3000:]

        server.start()  # the same store, the same address
        before = runs_of(server)
        missing = JOBS - {r.info.run_name for r in before if r.info.status == "FINISHED"}
        assert {"ensemble", "submission"} <= missing  # they ran after the kill

        r = backfill(wd, server, "--close-parents")
        print(r.stdout.strip())
        parent, children = family(server)
        names = [c.info.run_name for c in children]
        assert sorted(names) == sorted(JOBS), names  # every job once: orphans completed, not duplicated
        assert {c.info.status for c in children} == {"FINISHED"}
        assert parent.info.status == "FINISHED"  # --close-parents: its own onsuccess could not close it
        scores = json.loads((wd / "results/tiny/scores.json").read_text())
        assert parent.data.metrics["cv_ensemble"] == pytest.approx(scores["ensemble"]["cv"])
        c = client_for(server)
        for child in children:
            if child.data.tags.get("step") == "train":
                assert len(c.get_metric_history(child.info.run_id, "train_loss")) == 1  # 1 epoch, once
                arts = {Path(a.path).name for a in c.list_artifacts(child.info.run_id)}
                assert {"metrics.json", "config.json", "history.csv"} <= arts, (child.info.run_name, arts)
                m = json.loads(
                    (
                        wd
                        / "results/tiny/models"
                        / child.data.tags["backbone"]
                        / f"fold{child.data.tags['fold']}"
                        / "metrics.json"
                    ).read_text()
                )
                assert child.data.metrics["cv_fold"] == pytest.approx(m["score"])
        ens = next(ch for ch in children if ch.info.run_name == "ensemble")
        assert ens.data.tags.get("kagglecv.backfilled") == "created"
        assert ens.data.metrics["cv_ensemble"] == pytest.approx(scores["ensemble"]["cv"])

        n_runs = len(runs_of(server))
        again = backfill(wd, server, "--close-parents")
        assert "0 run(s) were created [], 0 were completed []" in again.stdout, again.stdout
        assert len(runs_of(server)) == n_runs

        rule = backfill_rule(wd, cfg, server)
        assert "0 run(s) were created [], 0 were completed []" in rule, rule
        assert len(runs_of(server)) == n_runs + 1  # only that invocation's own run, renamed "backfill"
        assert len([r for r in runs_of(server) if r.data.tags.get("step") == "backfill"]) == 1
    finally:
        server.stop()


def backfill_rule(wd: Path, cfg: dict, server: MlflowServer) -> str:
    """`snakemake backfill` (rules/mlflow.smk); until the Snakefile includes it, through a wrapper Snakefile."""
    snakefile = REPO / "Snakefile"
    if "rules/mlflow.smk" not in snakefile.read_text():
        wrapper = wd.parent / f"{wd.name}-wrapper"
        wrapper.mkdir(exist_ok=True)
        (wrapper / "Snakefile").write_text(f'include: "{REPO / "Snakefile"}"\ninclude: "{REPO / "rules/mlflow.smk"}"\n')
        if not (wrapper / "schemas").exists():
            (wrapper / "schemas").symlink_to(REPO / "schemas")  # common.smk reads it from workflow.basedir
        snakefile = wrapper / "Snakefile"
    r = subprocess.run(
        workflow_cmd(wd, cfg, "backfill", profile="none", snakefile=snakefile) + ["--cores", "1"],
        cwd=wd,
        env=workflow_env(server),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return (wd / "results/tiny/logs/backfill.log").read_text()
