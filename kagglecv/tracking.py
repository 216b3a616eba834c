"""MLflow tracking that never costs a result: every call is guarded, the first failure warns once,
and the job carries on writing its own files (metrics.json and friends stay the source of truth)."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

PARENT_ENV = "KAGGLECV_PARENT_RUN_ID"  # set by the workflow, never a rule param (it would trigger reruns)


def tracking_uri(results_dir: str | Path = "results") -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite store at an absolute path under results/.

    Absolute because every Snakemake job (and `mlflow ui`) must reach the same file."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(Path(results_dir) / 'mlflow.db').resolve()}"


def _create_experiment(client, name: str, results_dir: Path) -> str:
    """Artifacts of the default SQLite store go under results/ too; a server decides for itself."""
    kw = {}
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        kw["artifact_location"] = (Path(results_dir) / "mlartifacts").resolve().as_uri()
    try:
        return client.create_experiment(name, **kw)
    except Exception:  # noqa: BLE001 - another job created it first
        return client.get_experiment_by_name(name).experiment_id


class Tracker:
    """One MLflow run for one job. Use as a context manager; all methods are no-ops after a failure."""

    def __init__(self, experiment: str, run_name: str, results_dir: str | Path = "results",
                 tags: dict | None = None, enabled: bool = True):
        self.experiment, self.run_name, self.tags = experiment, run_name, tags or {}
        self.results_dir = Path(results_dir)
        self.enabled, self.run_id, self._warned = enabled, None, False

    def _fail(self, what: str, err: Exception) -> None:
        if not self._warned:
            warnings.warn(f"MLflow {what} failed ({type(err).__name__}: {err}); continuing without tracking, "
                          "results are still written to disk and can be backfilled", stacklevel=3)
            self._warned = True
        self.enabled = False

    def _call(self, what: str, fn, *args, **kw):
        if not self.enabled:
            return None
        try:
            return fn(*args, **kw)
        except Exception as e:  # noqa: BLE001 - tracking must never fail the job
            self._fail(what, e)
            return None

    def __enter__(self) -> "Tracker":
        if self.enabled:
            self._call("start", self._start)
        return self

    def _start(self) -> None:
        import mlflow

        uri = tracking_uri(self.results_dir)
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp else _create_experiment(client, self.experiment, self.results_dir)
        parent = os.environ.get(PARENT_ENV) or None
        run = mlflow.start_run(experiment_id=exp_id, run_name=self.run_name, parent_run_id=parent,
                               tags=self.tags)
        self.run_id = run.info.run_id

    def __exit__(self, exc_type, exc, tb) -> None:
        import mlflow

        self._call("end_run", mlflow.end_run, status="FAILED" if exc_type else "FINISHED")

    def log_params(self, params: dict) -> None:
        import mlflow

        flat = {k: (str(v)[:500]) for k, v in _flatten(params).items()}
        self._call("log_params", mlflow.log_params, flat)

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        import mlflow

        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        self._call("log_metrics", mlflow.log_metrics, clean, step=step)

    def log_artifact(self, path: str | Path) -> None:
        import mlflow

        if Path(path).exists():
            self._call("log_artifact", mlflow.log_artifact, str(path))


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def start_parent(experiment: str, results_dir: str | Path = "results", name: str = "workflow") -> str | None:
    """Create the parent run of one `snakemake` invocation and export its id to the jobs' environment.

    The run stays RUNNING after this returns; `finish_parent` closes it. Returns None if tracking is down."""
    t = Tracker(experiment, name, results_dir)
    try:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri(results_dir))
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else _create_experiment(client, experiment, results_dir)
        run = client.create_run(exp_id, run_name=name, tags={"step": "workflow"})
    except Exception as e:  # noqa: BLE001 - tracking must never stop the workflow
        t._fail("parent run", e)
        return None
    os.environ[PARENT_ENV] = run.info.run_id
    return run.info.run_id


def finish_parent(ok: bool, metrics: dict | None = None) -> None:
    run_id = os.environ.get(PARENT_ENV)
    if not run_id:
        return
    try:
        import mlflow

        client = mlflow.MlflowClient()
        for k, v in (metrics or {}).items():
            client.log_metric(run_id, k, float(v))
        client.set_terminated(run_id, "FINISHED" if ok else "FAILED")
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"MLflow: could not close the parent run {run_id} ({e})", stacklevel=2)
