"""Put into MLflow what the jobs wrote while tracking was down.

    kagglecv backfill results/<competition> [--experiment NAME] [--close-parents] [--dry-run]
    (or kagglecv backfill, or snakemake backfill)

Every job keeps the record of what it logged (`<run name>.mlflow.json` beside its outputs, written by
kagglecv.tracking.tracker.Tracker whether MLflow was up or not): its params as logged, its metrics with their steps and
times, its artifacts with their content hashes, its tags. The backfill replays those records: it finds the jobs
whose runs are missing in MLflow and creates them from the records, so a backfilled run holds exactly what the
live run would have held. A record whose artifacts are gone or have changed since (a job rerun that failed
part-way) is stale and skipped.

Matching a job to a run: the run carries the tag `kagglecv.job` = the job's run name (older runs: the run name
plus the tags step/backbone/fold), is FINISHED, and the content hash of the job's key file (its first artifact;
tag `kagglecv.sha256.<file>`) equals the record's. So a result that was recomputed after its run was logged
counts as missing, and a second backfill finds everything and adds nothing.

A run the job started before the server died (still RUNNING, partly logged) is completed in place: what it
lacks is logged and it is marked FINISHED. A new run is made a child of the workflow's parent run of its time:
the newest run tagged step=workflow that had started before the job and had not ended before it finished;
failing that, of the current `snakemake backfill` invocation's parent, or of a new parent run for the backfill.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kagglecv.core.files import file_sha256
from kagglecv.core.layout import Layout
from kagglecv.tracking.tracker import (
    HASH_TAG,
    JOB_TAG,
    PARENT_ENV,
    create_experiment,
    display_uri,
    flatten,
    http_defaults,
    log_batch,
    mlflow_name,
    tracking_uri,
)

PARENT_TAG = "mlflow.parentRunId"
BACKFILL_TAG = "kagglecv.backfilled"  # "created" or "completed": what the backfill did to the run
SLACK_MS = 30_000  # clock skew between a job's machine, the file server and the tracking client


@dataclass
class Job:
    """One finished job as its files tell it."""

    name: str  # the run name, e.g. "prepare" or "resnet18-fold0"
    tags: dict  # step, and backbone/fold for training
    key_file: Path  # its content identifies the result
    start_ms: int
    end_ms: int
    params: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)  # (key, value, step, timestamp_ms)
    artifacts: list = field(default_factory=list)

    @property
    def step(self) -> str:
        return self.tags["step"]


def job_from_record(path: Path) -> Job | None:
    """The job a record describes; None when the record is stale (an artifact missing or changed since)."""
    rec = json.loads(path.read_text())
    artifacts = [path.parent / a["path"] for a in rec["artifacts"]]
    if not artifacts or any(
        not p.is_file() or file_sha256(p) != a["sha256"] for p, a in zip(artifacts, rec["artifacts"])
    ):
        return None
    tags = {k: v for k, v in rec["tags"].items() if k != JOB_TAG and not k.startswith(HASH_TAG)}
    # names as MLflow holds them: a record written before tracking cleaned them may have "cv_resnet18@r2"
    return Job(
        rec["run_name"],
        tags,
        artifacts[0],
        int(rec["start_ms"]),
        int(rec["end_ms"] or rec["start_ms"]),
        params={mlflow_name(k): v for k, v in rec["params"].items()},
        metrics=[(mlflow_name(k), *rest) for k, *rest in rec["metrics"]],
        artifacts=artifacts,
    )


def find_jobs(res: Path) -> list[Job]:
    """Every finished job under results/<competition> that left a current record, in the order they ran."""
    jobs = []
    for path in Layout(Path(res)).records():
        job = job_from_record(path)
        if job is None:
            print(f"backfill: {path} is stale (its outputs changed or are gone): skipped", file=sys.stderr)
        else:
            jobs.append(job)
    return sorted(jobs, key=lambda j: (j.start_ms, j.name))


# --- matching --------------------------------------------------------------------------------------------


def _same_job(run, job: Job) -> bool:
    tags = run.data.tags
    if JOB_TAG in tags:
        return tags[JOB_TAG] == job.name
    return run.info.run_name == job.name and all(tags.get(k) == v for k, v in job.tags.items())


def covers(run, job: Job, key_hash: str) -> bool:
    """Whether `run` is a complete record of this job's result as it is on disk now."""
    if run.info.status != "FINISHED" or not _same_job(run, job):
        return False
    recorded = run.data.tags.get(f"{HASH_TAG}{job.key_file.name}")
    if recorded is not None:
        return recorded == key_hash
    return True  # a finished run of this job from before hashes were recorded: nothing to tell them apart


def orphan_of(runs: list, job: Job, key_hash: str):
    """The newest RUNNING run of this job that started before its result was written (its process died or
    lost the server part-way) and does not record some other content; None if there is none."""
    cands = [
        r
        for r in runs
        if r.info.status == "RUNNING"
        and _same_job(r, job)
        and r.info.start_time <= job.end_ms + SLACK_MS
        and r.data.tags.get(f"{HASH_TAG}{job.key_file.name}", key_hash) == key_hash
    ]
    return max(cands, key=lambda r: r.info.start_time, default=None)


def parent_of_time(parents: list, job: Job):
    """The workflow invocation that was running when the job ran: started before it, not ended before it."""
    cands = [
        p
        for p in parents
        if p.info.start_time <= job.start_ms + SLACK_MS
        and (not p.info.end_time or p.info.end_time + SLACK_MS >= job.end_ms)
    ]
    return max(cands, key=lambda p: p.info.start_time, default=None)


# --- writing ---------------------------------------------------------------------------------------------


def _log(client, run_id: str, job: Job, params: dict, metrics: list, tags: dict, artifacts: list) -> None:
    from mlflow.entities import Metric

    log_batch(client, run_id, params, [Metric(k, v, ts, step) for k, v, step, ts in metrics], tags)
    for path in artifacts:
        client.log_artifact(run_id, str(path))


def _missing_metrics(client, run, job: Job) -> list:
    have = {}
    for key in {k for k, *_ in job.metrics} & set(run.data.metrics):
        have[key] = {m.step for m in client.get_metric_history(run.info.run_id, key)}
    return [m for m in job.metrics if m[2] not in have.get(m[0], set())]


def _missing_artifacts(client, run, job: Job) -> list:
    try:
        have = {Path(f.path).name for f in client.list_artifacts(run.info.run_id)}
    except Exception:  # noqa: BLE001 - an artifact store that cannot list: log them all
        have = set()
    return [p for p in job.artifacts if p.name not in have]


def _all_runs(client, exp_id: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([exp_id], max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def backfill(
    results: str | Path,
    experiment: str | None = None,
    parent_run_id: str | None = None,
    close_parents: bool = False,
    dry_run: bool = False,
    out=None,
) -> dict:
    """Create (or complete) the MLflow runs missing for the jobs under `results` (= results/<competition>).

    Returns {"created": [...], "completed": [...], "tracked": [...], "parents_closed": [...]} (run names)."""
    import mlflow

    res = Path(results)
    if not res.is_dir():
        raise FileNotFoundError(f"{res}: no such results folder (expected results/<competition>)")
    experiment = experiment or res.name
    http_defaults()
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # one line per run is noise here
    uri = tracking_uri(res.parent)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    jobs = find_jobs(res)
    exp = client.get_experiment_by_name(experiment)
    if exp is None and dry_run:
        exp_id, runs = None, []
    else:
        exp_id = exp.experiment_id if exp else create_experiment(client, experiment, res.parent)
        runs = _all_runs(client, exp_id)
    parents = [r for r in runs if r.data.tags.get("step") == "workflow"]
    by_id = {r.info.run_id: r for r in runs}
    current = os.environ.get(PARENT_ENV)  # set when this runs as the `backfill` rule of a snakemake invocation
    fallback = {"id": parent_run_id or (current if current in by_id else None)}
    report = {"created": [], "completed": [], "tracked": [], "parents_closed": []}
    touched_parents: dict[str, int] = {}  # parent run id -> the end of its latest backfilled job

    def fallback_parent(job: Job) -> str:
        if fallback["id"] is None:  # one new parent for all the jobs no workflow run was open for
            run = client.create_run(
                exp_id,
                start_time=job.start_ms,
                run_name="workflow",
                tags={"step": "workflow", JOB_TAG: "workflow", BACKFILL_TAG: "created"},
            )
            fallback["id"] = run.info.run_id
            touched_parents[run.info.run_id] = job.end_ms
        return fallback["id"]

    for job in jobs:
        key_hash = file_sha256(job.key_file)
        if any(covers(r, job, key_hash) for r in runs):
            report["tracked"].append(job.name)
            continue
        hashes = {f"{HASH_TAG}{p.name}": file_sha256(p) for p in job.artifacts}
        tags = {JOB_TAG: job.name, **job.tags, **hashes}
        orphan = orphan_of(runs, job, key_hash)
        if dry_run:
            report["completed" if orphan else "created"].append(job.name)
            continue
        if orphan is not None:
            have = orphan.data.params
            _log(
                client,
                orphan.info.run_id,
                job,
                {k: v for k, v in flatten(job.params).items() if k not in have},
                _missing_metrics(client, orphan, job),
                {**tags, BACKFILL_TAG: "completed"},
                _missing_artifacts(client, orphan, job),
            )
            client.set_terminated(orphan.info.run_id, "FINISHED", end_time=max(job.end_ms, orphan.info.start_time))
            run_id, parent = orphan.info.run_id, orphan.data.tags.get(PARENT_TAG)
            report["completed"].append(job.name)
        else:
            if parent_run_id:
                parent = parent_run_id
            else:
                p = parent_of_time(parents, job)
                parent = p.info.run_id if p else fallback_parent(job)
            run = client.create_run(
                exp_id,
                start_time=job.start_ms,
                run_name=job.name,
                tags={**tags, PARENT_TAG: parent, BACKFILL_TAG: "created"},
            )
            run_id = run.info.run_id
            _log(client, run_id, job, job.params, job.metrics, {}, job.artifacts)
            client.set_terminated(run_id, "FINISHED", end_time=job.end_ms)
            report["created"].append(job.name)
        if parent:
            touched_parents[parent] = max(touched_parents.get(parent, 0), job.end_ms)
            if job.step == "ensemble":  # the parent holds the ensemble CV; its own close may have failed
                prun = by_id.get(parent) or client.get_run(parent)
                cv = next((v for k, v, *_ in job.metrics if k == "cv_ensemble"), None)
                if "cv_ensemble" not in prun.data.metrics and cv is not None:
                    client.log_metric(parent, "cv_ensemble", float(cv), timestamp=job.end_ms)
        by_id[run_id] = client.get_run(run_id)
        runs = [r for r in runs if r.info.run_id != run_id] + [by_id[run_id]]

    if not dry_run:
        for pid, end_ms in touched_parents.items():
            prun = client.get_run(pid)
            created_here = prun.data.tags.get(BACKFILL_TAG) == "created" and pid == fallback["id"] and pid != current
            if prun.info.status == "RUNNING" and (close_parents or created_here):
                client.set_terminated(pid, "FINISHED", end_time=max(end_ms, prun.info.start_time))
                report["parents_closed"].append(pid)

    verb = "would be" if dry_run else "were"
    print(
        f"backfill {res} -> experiment {experiment!r} at {display_uri(uri)}: "
        f"{len(report['created'])} run(s) {verb} created {report['created']}, "
        f"{len(report['completed'])} {verb} completed {report['completed']}, "
        f"{len(report['tracked'])} already in MLflow"
        + (f", {len(report['parents_closed'])} parent run(s) closed" if report["parents_closed"] else ""),
        file=out or sys.stdout,
        flush=True,
    )
    return report
