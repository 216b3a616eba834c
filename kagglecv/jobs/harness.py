"""The harness every rule's job runs in.

Each rule runs scripts/job.py, which calls `run(snakemake)`: the harness builds a `Job` (the rule's input, output,
params, config, threads and wildcards, and the competition's `Layout`), sends the job's output to its log, turns
bad input into one `ERROR:` line with exit status 1, and calls the function registered under the rule's name
(`@job`, in the module of the rule's stage). Tracking is decided here once (`Job.track`), from the config, never
from a param: turning it on, off or live reruns nothing.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kagglecv.core.errors import InputError
from kagglecv.core.layout import Layout, record_file

# Jobs that, with mlflow.live: false, only write their record; the ensemble step replays it into MLflow.
BEFORE_ENSEMBLE = {"prepare", "folds", "train", "pseudo_labels", "distill_targets", "tune_study", "tune_trial"}
JOBS: dict[str, Callable[[Job], object]] = {}
log = logging.getLogger("kagglecv.jobs")


class Files(dict):
    """A rule's named input, output, params or wildcards: `job.input.folds` or `job.input["folds"]`."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no {name!r} here; named: {', '.join(self) or 'none'}") from None


@dataclass
class Job:
    """What one job of a rule receives."""

    rule: str
    config: dict  # the workflow's resolved config (rules/common.smk)
    input: Files = field(default_factory=Files)
    output: Files = field(default_factory=Files)
    params: Files = field(default_factory=Files)
    wildcards: Files = field(default_factory=Files)
    threads: int = 1
    log: str | None = None

    @classmethod
    def of(cls, smk) -> Job:
        """The job Snakemake hands a script (its global `snakemake` object); its threads at most the CPUs of its
        Slurm job (kagglecv.config.resources.allotted_threads)."""
        from kagglecv.config.resources import allotted_threads

        return cls(
            smk.rule,
            smk.config,
            Files(smk.input.items()),
            Files(smk.output.items()),
            Files(smk.params.items()),
            Files(smk.wildcards.items()),
            allotted_threads(smk.threads),
            smk.log[0] if smk.log else None,
        )

    @property
    def layout(self) -> Layout:
        return Layout.of(self.config["competition"])

    @property
    def experiment(self) -> str:
        """The MLflow experiment: the rule's `experiment` param. It equals the competition, and stays a param of
        the rules of the default run because Snakemake records params by value: without it, every job of an
        existing run would rerun once."""
        return self.params.get("experiment") or self.config["competition"]

    @property
    def track(self) -> bool:
        """Whether this job logs to MLflow while it runs (kagglecv.tracking.tracker.tracks_live)."""
        from kagglecv.tracking.tracker import tracks_live

        return tracks_live(self.config, before_ensemble=job_of(self.rule).__name__ in BEFORE_ENSEMBLE)

    def tracker(self, run_name: str, folder, **tags):
        """The job's MLflow run, with its record written beside its outputs in `folder`."""
        from kagglecv.tracking.tracker import Tracker

        return Tracker(
            self.experiment,
            run_name,
            self.layout.results,
            enabled=self.track,
            tags={"step": self.rule, **tags},
            record=record_file(folder, run_name),
        )


def job(fn: Callable[[Job], object]) -> Callable[[Job], object]:
    """Register `fn` as the job of the rule of the same name."""
    JOBS[fn.__name__] = fn
    return fn


# ---------------------------------------------------------------- the harness


def run_logged(log_path: str | Path | None, fn, *args, **kwargs):
    """Call fn(*args, **kwargs) with stdout/stderr going to `log_path`.

    An InputError becomes a single `ERROR: ...` line, in the log and on the terminal, and exit status 1;
    any other exception keeps its traceback in the log (that is a bug, not bad input). Everything the job
    prints or logs is redacted on its way (kagglecv.core.secrets): libraries print URLs with their credentials."""
    import os

    from kagglecv.core.secrets import JOB_LOG_ENV, RedactedStream, redact

    terminal = sys.__stderr__
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get(JOB_LOG_ENV)
    if log_path:  # the processes a multi-device job starts write here too (kagglecv.training.distributed)
        os.environ[JOB_LOG_ENV] = str(Path(log_path).resolve())
    raw = open(log_path, "a", buffering=1) if log_path else sys.stderr
    log_file = RedactedStream(raw)
    logging.basicConfig(stream=log_file, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)
    try:
        with contextlib.redirect_stdout(log_file), contextlib.redirect_stderr(log_file):
            try:
                return fn(*args, **kwargs)
            except InputError as e:
                print(f"ERROR: {e}", file=log_file, flush=True)
                if terminal is not None and log_path:
                    print(f"ERROR: {redact(str(e), log_file.known)}", file=terminal, flush=True)
                sys.exit(1)
            except Exception:
                traceback.print_exc(file=log_file)
                raise
    finally:
        log_file.flush()
        if log_path:
            raw.close()
            if previous is None:
                os.environ.pop(JOB_LOG_ENV, None)
            else:
                os.environ[JOB_LOG_ENV] = previous


def job_of(rule: str) -> Callable[[Job], object]:
    """The job of `rule`: the function of that name, or for a rule reusing one of ours (`use rule train as
    train_mynet`, docs/extending.md) the job whose name, with "_", begins its name."""
    if rule in JOBS:
        return JOBS[rule]
    base = max((name for name in JOBS if rule.startswith(f"{name}_")), key=len, default=None)
    if base is None:
        raise KeyError(
            f"rule {rule!r} has no job in kagglecv.jobs (known: {', '.join(sorted(JOBS))}); a rule reusing "
            f"one of ours is named <its name>_<anything>, e.g. train_mynet"
        )
    return JOBS[base]


def run(smk):
    """scripts/job.py: the job of the rule Snakemake is running, logged. A bug's traceback is in the log; the
    terminal gets it too, redacted as the log is (Python would print it as it is), and the job exits 1."""
    job_ = Job.of(smk)
    try:
        return run_logged(job_.log, job_of(job_.rule), job_)
    except Exception:  # noqa: BLE001 - any bug: shown, redacted, and the job fails
        from kagglecv.core.secrets import redact

        print(redact(traceback.format_exc()), file=sys.__stderr__ or sys.stderr, flush=True)
        sys.exit(1)
