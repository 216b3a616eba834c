"""Jobs of the training stage: lr_find, train, pseudo_labels, distill_targets (rules/train.smk,
rules/lr_find.smk, rules/teachers.smk).

Library modules are imported inside each job: a small job must not pay for torch and timm.
"""

from __future__ import annotations

from kagglecv.jobs.harness import Job, job


def train_settings(job: Job) -> dict:
    """The backbone's training settings (the rule's `train` param) with the job's threads."""
    return {**job.params.train, "threads": job.threads}


@job
def lr_find(job: Job) -> dict:
    from kagglecv.training.lr_finder import run_lr_find

    L = job.layout
    return run_lr_find(
        train_settings(job), L.prepared.path, L.folds, L.lr_find(job.wildcards.backbone).path, job.params.lr_find
    )


def one_file(files) -> str | None:
    """A named input that is one file or none (an input function's [])."""
    if isinstance(files, str):
        return files
    return str(files[0]) if files else None


@job
def train(job: Job) -> dict:
    """One (member, fold): a backbone, a pseudo-label round's copy of it, or the student, which learn from their
    teacher file too (kagglecv.training.teachers). train.lr: auto trains at the lr_find rule's suggestion."""
    from kagglecv.config.train import TrainConfig
    from kagglecv.training.train import run

    L = job.layout
    return run(
        TrainConfig.from_dict(train_settings(job)),
        L.prepared.path,
        L.folds,
        L.model(job.wildcards.backbone, job.wildcards.fold).path,
        experiment=job.experiment,
        results_dir=L.results,
        track=job.track,
        teacher_csv=one_file(job.input.get("teacher")),
        lr_find=one_file(job.input.get("lr_find")),
    )


@job
def pseudo_labels(job: Job) -> None:
    """A pseudo-label round's targets for one fold: the test images as the previous round's fold models see them."""
    from kagglecv.core.results import PreparedMeta
    from kagglecv.core.tasks import Task
    from kagglecv.training.teachers import pseudo_labels as label

    L, w = job.layout, job.wildcards
    out = L.teacher(f"round{w.round}", w.fold)
    with job.tracker(f"pseudo_labels-round{w.round}-fold{w.fold}", out.parent, round=w.round, fold=w.fold) as t:
        rows = label(list(job.input.test), Task.of(PreparedMeta.read(L.meta)), out, **job.params.settings)
        t.log_params({"teachers": len(job.input.test), **job.params.settings})
        t.log_metrics({"test_rows": len(rows)})
        t.log_artifact(out)


@job
def distill_targets(job: Job) -> None:
    """The student's targets for one fold: its training rows' labels mixed with the other members' out-of-fold
    predictions, and the test images as the members' fold models see them."""
    from kagglecv.core.files import read_table
    from kagglecv.core.results import PreparedMeta
    from kagglecv.core.tasks import Task
    from kagglecv.training.teachers import distill_targets as targets

    L, fold, n = job.layout, int(job.wildcards.fold), job.config["folds"]
    out = L.teacher("student", fold)
    oofs = [[m.oof for m in L.folds_of(member, n)] for member in job.params.teachers]
    with job.tracker(f"distill_targets-fold{fold}", out.parent, fold=str(fold)) as t:
        rows = targets(
            oofs,
            list(job.input.test),
            read_table(L.folds),
            fold,
            Task.of(PreparedMeta.read(L.meta)),
            out,
            label_weight=job.params.label_weight,
        )
        t.log_params({"teachers": ",".join(job.params.teachers), "label_weight": job.params.label_weight})
        t.log_metrics({"rows": len(rows)})
        t.log_artifact(out)
