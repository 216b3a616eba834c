"""MLflow tracking that never costs a result: every call is guarded, the first failure warns once,
and the job carries on writing its own files (metrics.json and friends stay the source of truth)."""

from __future__ import annotations

import logging
import os
import random
import re
import time
import warnings
from pathlib import Path

from kagglecv.core.files import file_sha256
from kagglecv.core.secrets import redact

log = logging.getLogger(__name__)

PARENT_ENV = "KAGGLECV_PARENT_RUN_ID"  # set by the workflow, never a rule param (it would trigger reruns)
JOB_TAG = "kagglecv.job"  # the job's run name: what kagglecv.tracking.backfill matches a job's outputs on
HASH_TAG = "kagglecv.sha256."  # + file name: the content of each logged artifact, as the backfill compares it

# MLflow's HTTP client retries 7 times with exponential backoff and a 120 s timeout by default: a dead server
# would stall every job for minutes. These cost seconds; a user's own settings win. MLflow prints each run's URL
# built from the tracking URI, credentials and all, to stdout (the job's log): not printed (and the job
# harness redacts what is, kagglecv.jobs.run_logged).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
# What MLflow accepts in a param or metric name; a member's name has "@" ("resnet18@r2", "resnet10t@student")
_NOT_IN_NAME = re.compile(r"[^\w.\- :/]")
_down = False  # once a tracking call failed in this process, every later one is skipped
# A SQLite store shared by many concurrent jobs answers "database is locked" when its writers collide (MLflow
# already waits up to 20 s per statement); such a call is retried $KAGGLECV_MLFLOW_BUSY_RETRIES (default 4) times
# with jittered exponential backoff.
BUSY_RETRIES_ENV = "KAGGLECV_MLFLOW_BUSY_RETRIES"
BUSY_BACKOFF = 1.0  # seconds before the first retry; doubled for each further one
BUSY_HINT = (
    "with many concurrent jobs, use an MLflow server instead of the SQLite store "
    "(MLFLOW_TRACKING_URI=http://HOST:5000, see docs/cluster.md)"
)


def http_defaults() -> None:
    """Set HTTP_DEFAULTS for whatever the user has not set (the workflow's jobs inherit them)."""
    for k, v in HTTP_DEFAULTS.items():
        os.environ.setdefault(k, v)


def display_uri(uri: str) -> str:
    """`uri` fit to print or log: the user:password of https://user:password@host (and any other known
    credential) replaced by ***."""
    return redact(uri)


def is_busy(err: BaseException) -> bool:
    """Whether `err` (or an exception it wraps) is SQLite's "database is locked"/busy."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = str(err).lower()
        if "database is locked" in text or "database table is locked" in text or "sqlite_busy" in text:
            return True
        err = err.__cause__ or err.__context__
    return False


def busy_retries() -> int:
    try:
        return max(0, int(os.environ.get(BUSY_RETRIES_ENV, "4")))
    except ValueError:
        return 4


def retry_busy(fn, *args, **kw):
    """fn(*args, **kw), retried with jittered exponential backoff while the SQLite store is locked."""
    retries = busy_retries()
    for attempt in range(retries + 1):
        try:
            return fn(*args, **kw)
        except Exception as e:  # noqa: BLE001 - only busy errors are retried; the rest go up unchanged
            if not is_busy(e) or attempt == retries:
                raise
            wait = BUSY_BACKOFF * 2**attempt * random.uniform(0.5, 1.5)
            log.warning("MLflow store busy (database is locked); retrying in %.1fs (%d/%d)", wait, attempt + 1, retries)
            time.sleep(wait)


def log_batch(client, run_id: str, params: dict | None = None, metrics: list | None = None, tags: dict | None = None):
    """A run's params (param_values, as Tracker.log_params logs them), metrics (MLflow Metric
    entities) and tags, through one client. MLflow takes 1000 metrics a call (it splits params and tags itself):
    each call of up to 1000 is retried alone while SQLite is busy, so that a retry never logs a metric twice."""
    from mlflow.entities import Param, RunTag

    ps = [Param(k, v) for k, v in param_values(params).items()]
    ts = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    ms = list(metrics or [])
    for k in range(0, max(len(ms), 1), 1000):
        retry_busy(
            client.log_batch, run_id, metrics=ms[k : k + 1000], params=ps if k == 0 else [], tags=ts if k == 0 else []
        )


def warn_down(what: str, err: Exception, stacklevel: int = 3) -> None:
    global _down
    if not _down:
        hint = f"the store stayed locked after {busy_retries()} retries: {BUSY_HINT}; " if is_busy(err) else ""
        detail = (str(err).strip().splitlines() or [""])[0][:300]  # SQLAlchemy appends the SQL and a help link
        warnings.warn(
            redact(
                f"MLflow {what} failed ({type(err).__name__}: {detail}); {hint}continuing without "
                "tracking, results are still written to disk and can be backfilled "
                "(kagglecv backfill)"
            ),
            stacklevel=stacklevel + 1,
        )
    _down = True


def _forget_active_run() -> None:
    """Drop the fluent API's active run locally: its atexit hook would otherwise call the dead server again."""
    try:
        from mlflow.tracking import fluent

        fluent._active_run_stack.get().clear()
        os.environ.pop("MLFLOW_RUN_ID", None)
    except Exception:  # noqa: BLE001 - private API; at worst the atexit hook costs a few more seconds
        pass


def tracking_uri(results_dir: str | Path = "results") -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite store at an absolute path under results/.

    Absolute because every Snakemake job (and `mlflow ui`) must reach the same file."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(Path(results_dir) / 'mlflow.db').resolve()}"


def tracks_live(config: dict, before_ensemble: bool = False) -> bool:
    """Whether a job logs to MLflow while it runs, from the workflow's (validated) config. Jobs read it from
    the config, never from a rule param: tracking changes no result, so turning it on or off must not rerun
    anything. mlflow.live: false keeps MLflow out of the jobs before the ensemble (prepare, folds, training)."""
    m = config["mlflow"]
    return bool(m["enabled"] and (m["live"] or not before_ensemble))


def replays_records(config: dict) -> bool:
    """Whether the ensemble step puts the records of the jobs before it into MLflow (they ran without it)."""
    m = config["mlflow"]
    return bool(m["enabled"] and not m["live"])


def create_experiment(client, name: str, results_dir: Path) -> str:
    """Artifacts of the default SQLite store go under results/ too; a server decides for itself."""
    kw = {}
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        kw["artifact_location"] = (Path(results_dir) / "mlartifacts").resolve().as_uri()
    try:
        return client.create_experiment(name, **kw)
    except Exception:  # noqa: BLE001 - another job created it first
        return client.get_experiment_by_name(name).experiment_id


def now_ms() -> int:
    return int(time.time() * 1000)


class Tracker:
    """One MLflow run for one job. Use as a context manager; all MLflow calls are no-ops after a failure.

    With `record`, the tracker also keeps what it logs (params as logged, metrics with their step and time,
    artifacts with their content hash, tags) and, when the job succeeds, writes it to that file beside the
    job's outputs, whether MLflow was up or not: `kagglecv.tracking.backfill` replays exactly that record."""

    def __init__(
        self,
        experiment: str,
        run_name: str,
        results_dir: str | Path = "results",
        tags: dict | None = None,
        enabled: bool = True,
        record: str | Path | None = None,
    ):
        self.experiment, self.run_name, self.tags = experiment, run_name, tags or {}
        self.results_dir = Path(results_dir)
        self.enabled, self.run_id, self._warned = enabled, None, False
        self.record_path = Path(record) if record else None
        self.record = {
            "run_name": run_name,
            "experiment": experiment,
            "tags": {JOB_TAG: run_name, **self.tags},
            "params": {},
            "metrics": [],
            "artifacts": [],
            "start_ms": now_ms(),
            "end_ms": None,
        }

    def _fail(self, what: str, err: Exception) -> None:
        if not self._warned:
            warn_down(f"{what} ({display_uri(tracking_uri(self.results_dir))})", err, stacklevel=3)
            self._warned = True
        self.enabled = False
        if self.run_id:
            _forget_active_run()

    def _call(self, what: str, fn, *args, **kw):
        if not self.enabled:
            return None
        if _down:  # another tracking call in this process failed already: do not wait on the server again
            self.enabled = False
            return None
        try:
            return retry_busy(fn, *args, **kw)
        except Exception as e:  # noqa: BLE001 - tracking must never fail the job
            self._fail(what, e)
            return None

    def __enter__(self) -> Tracker:
        if self.enabled:
            self._call("start", self._start)
        return self

    def _start(self) -> None:
        import mlflow

        http_defaults()
        uri = tracking_uri(self.results_dir)
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp else create_experiment(client, self.experiment, self.results_dir)
        parent = os.environ.get(PARENT_ENV) or None
        run = mlflow.start_run(
            experiment_id=exp_id,
            run_name=self.run_name,
            parent_run_id=parent,
            tags={JOB_TAG: self.run_name, **self.tags},
        )
        self.run_id = run.info.run_id

    def __exit__(self, exc_type, exc, tb) -> None:
        self._call("end_run", _mlflow("end_run"), status="FAILED" if exc_type else "FINISHED")
        if exc_type is None and self.record_path is not None:
            from kagglecv.core.files import write_json

            write_json(self.record_path, {**self.record, "end_ms": now_ms()})

    def log_params(self, params: dict) -> None:
        # no credential reaches MLflow
        flat = param_values(params)
        self.record["params"].update(flat)
        self._call("log_params", _mlflow("log_params"), flat)

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        clean = numbers(metrics)
        at = now_ms()
        self.record["metrics"] += [[k, v, step or 0, at] for k, v in clean.items()]
        self._call("log_metrics", _mlflow("log_metrics"), clean, step=step)

    def log_artifact(self, path: str | Path) -> None:
        path = Path(path)
        if path.exists():
            digest = file_sha256(path)
            where = self.record_path.parent if self.record_path else path.parent
            self.record["artifacts"].append({"path": os.path.relpath(path, where), "sha256": digest})
            self.record["tags"][f"{HASH_TAG}{path.name}"] = digest
            self._call("log_artifact", _mlflow("log_artifact"), str(path))
            self._call("set_tag", _mlflow("set_tag"), f"{HASH_TAG}{path.name}", digest)


def _mlflow(name: str):
    """mlflow.<name>, imported when first called: a disabled Tracker (mlflow.enabled: false, or tracking down)
    never imports mlflow, which costs a job seconds of start-up."""

    def call(*args, **kw):
        import mlflow

        return getattr(mlflow, name)(*args, **kw)

    return call


def mlflow_name(key: str) -> str:
    """`key` as an MLflow param or metric name: "cv_resnet18@r2" -> "cv_resnet18_r2". MLflow refuses the run's
    whole batch over one bad name, which would end a job's tracking as if the server were down."""
    return _NOT_IN_NAME.sub("_", key)


def param_values(params: dict | None) -> dict[str, str]:
    """The params MLflow takes: flattened (train.lr), under names it accepts, as text cut to its 500 characters, and
    with no credential in them."""
    return {mlflow_name(k): redact(str(v))[:500] for k, v in flatten(params or {}).items()}


def numbers(metrics: dict | None) -> dict[str, float]:
    """The metrics MLflow takes, under names it accepts: numbers as floats (a bool or a pending None left out)."""
    return {
        mlflow_name(k): float(v)
        for k, v in (metrics or {}).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def start_parent(experiment: str, results_dir: str | Path = "results", name: str = "workflow") -> str | None:
    """Create the parent run of one `snakemake` invocation and export its id to the jobs' environment.

    The run stays RUNNING after this returns; `finish_parent` closes it. Returns None if tracking is down."""
    http_defaults()  # exported with the parent id: every job inherits them
    try:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri(results_dir))
        client = mlflow.MlflowClient()
        exp = retry_busy(client.get_experiment_by_name, experiment)
        exp_id = exp.experiment_id if exp else retry_busy(create_experiment, client, experiment, results_dir)
        run = retry_busy(client.create_run, exp_id, run_name=name, tags={"step": "workflow", JOB_TAG: name})
    except Exception as e:  # noqa: BLE001 - tracking must never stop the workflow
        warn_down(f"parent run ({display_uri(tracking_uri(results_dir))})", e, stacklevel=2)
        return None
    os.environ[PARENT_ENV] = run.info.run_id
    return run.info.run_id


def parent_run_id() -> str | None:
    """The parent run of this snakemake invocation (from the environment), if tracking was up at its start."""
    return os.environ.get(PARENT_ENV) or None


def log_to_parent(
    metrics: dict | None = None,
    params: dict | None = None,
    tags: dict | None = None,
    results_dir: str | Path = "results",
) -> bool:
    """Log to the invocation's parent run from any job (e.g. the public score after `submit`).

    Guarded like Tracker: warns once, never raises, and is skipped once tracking failed in this process.
    Non-numeric metric values (a pending score: None) are left out. Returns whether it was logged."""
    run_id = parent_run_id()
    if not run_id or _down:
        return False
    try:
        import mlflow
        from mlflow.entities import Metric
        from mlflow.utils.time import get_current_time_millis

        http_defaults()
        mlflow.set_tracking_uri(tracking_uri(results_dir))
        now = get_current_time_millis()
        log_batch(
            mlflow.MlflowClient(), run_id, params, [Metric(k, v, now, 0) for k, v in numbers(metrics).items()], tags
        )
    except Exception as e:  # noqa: BLE001 - tracking must never fail the job
        warn_down(f"logging to the parent run ({display_uri(tracking_uri(results_dir))})", e, stacklevel=2)
        return False
    return True


def finish_parent(ok: bool, metrics: dict | None = None) -> None:
    run_id = parent_run_id()
    if not run_id:
        return
    if _down:
        warnings.warn(
            f"MLflow: the parent run {run_id} stays open (tracking failed earlier in this process); "
            "kagglecv backfill --close-parents closes it",
            stacklevel=2,
        )
        return
    try:
        import mlflow

        http_defaults()
        client = mlflow.MlflowClient()
        for k, v in (metrics or {}).items():
            retry_busy(client.log_metric, run_id, mlflow_name(k), float(v))
        retry_busy(client.set_terminated, run_id, "FINISHED" if ok else "FAILED")
    except Exception as e:  # noqa: BLE001
        warnings.warn(
            redact(
                f"MLflow: could not close the parent run {run_id} ({e}); kagglecv backfill --close-parents closes it"
            ),
            stacklevel=2,
        )
