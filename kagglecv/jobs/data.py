"""Jobs of the data stage: demo_competition, download, prepare, folds (rules/data.smk, rules/kaggle.smk).

Library modules are imported inside each job: a small job must not pay for torch and timm.
"""

from __future__ import annotations

from pathlib import Path

from kagglecv.jobs.harness import Job, job


@job
def demo_competition(job: Job) -> None:
    from kagglecv.data.demo import make_digits_competition

    make_digits_competition(job.output.zip, job.output.solution)


@job
def download(job: Job) -> Path:
    """The competition through the Kaggle API. Retry settings and archive limits come from the config, not
    params: changing them must never download a competition again."""
    from kagglecv.data.archive import ArchiveLimits
    from kagglecv.kaggle.download import download_competition

    k = job.config["kaggle"]
    return download_competition(
        job.wildcards.competition,
        Path(job.output.marker).parent,
        retries=k["retries"],
        backoff=k["backoff"],
        http_timeout=k["http_timeout"],
        limits=ArchiveLimits(**job.config["archive"]),
    )


@job
def prepare(job: Job) -> dict:
    """Read, validate and decode the competition into prepared/. Archive limits come from the config, not
    params: changing them must not rebuild the cache."""
    from kagglecv.config.data import DataConfig
    from kagglecv.data import prepare as prep
    from kagglecv.data.archive import ArchiveLimits

    p, out = job.params, job.layout.prepared
    with job.tracker("prepare", out.path) as t:
        meta = prep.prepare(
            p.path,
            out.path,
            DataConfig(**p.data),
            workers=job.threads,
            limits=ArchiveLimits(**job.config["archive"]),
            task=p.task,
            metric=p.metric,
        )
        t.log_params(
            {
                "data_path": str(p.path),
                **{k: v for k, v in meta.items() if k != "classes"},
                "n_classes": len(meta["classes"]),
            }
        )
        t.log_artifact(out.meta)
    return meta


@job
def folds(job: Job) -> None:
    from kagglecv.core.results import PreparedMeta
    from kagglecv.data import folds as kfold

    L, p = job.layout, job.params
    with job.tracker("folds", L.root) as t:
        task = PreparedMeta.read(L.prepared.meta).task
        df = kfold.make_folds(L.prepared.train, L.folds, p.folds, p.seed, task=task)
        t.log_params({"folds": p.folds, "seed": p.seed})
        t.log_metrics({f"fold{k}_size": int(n) for k, n in df["fold"].value_counts().sort_index().items()})
        t.log_artifact(L.folds)
