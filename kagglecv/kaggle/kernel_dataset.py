"""What the kernel builder puts in the kernel dataset: every fold's model and config, the ensemble (or the student
alone), kagglecv's wheel, the factory sources a member was trained with; its size checked, and every shipped model
loaded from the dataset alone before the build finishes."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from kagglecv.config.checks import NO_STUDENT, not_a_wheel
from kagglecv.core.errors import InputError
from kagglecv.core.files import atomic_path, read_table, write_json
from kagglecv.core.layout import KernelDatasetFiles, Layout, ModelFiles
from kagglecv.core.results import Ensemble, ModelRecord, PreparedMeta, Scores

FOLD_FILES = (ModelFiles.model, ModelFiles.config)  # what prediction reads (model.pt carries the config too)


def _place(src: Path, dest: Path) -> None:
    """dest as a hard link to src (weights are large; the kernel rule reruns whenever they change), else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def student_scores(layout: Layout, scores: Scores, student: str | None) -> Scores:
    """scores.json with the distilled student as the whole ensemble: its folds averaged, its own thresholds or cut
    points fitted on its out-of-fold predictions where the metric decides."""
    from kagglecv.scoring import metrics, thresholds
    from kagglecv.scoring.ensemble import load_backbone, prob_columns, results_task

    scores = Scores.of(scores)
    if not student or student not in scores.models:
        raise InputError(NO_STUDENT)
    ens = Ensemble(
        method="mean", chosen_by="kaggle.kernel_models", members=[student], cv=scores.models[student]["cv"], params=None
    )
    task = results_task(layout, scores.task)
    if metrics.needs_thresholds(scores.metric, task.kind):
        oof, _ = load_backbone([m.path for m in layout.folds_of(student, scores.n_folds(student))])
        folds = read_table(layout.folds)  # the labels as the task reads them (tags, grades), in folds.csv's order
        oof = folds.merge(oof[["id", *prob_columns(oof)]], on="id", validate="one_to_one")
        ens = dataclasses.replace(
            ens,
            thresholds=[
                float(t)
                for t in thresholds.fit(
                    scores.metric, task.targets(oof), oof[prob_columns(oof)].to_numpy(), task.grades
                )
            ],
        )
    return dataclasses.replace(scores, ensemble=ens)


def place_factory(layout: Layout, member: str, out: Layout, n_folds: int = 1) -> None:
    """A member built by a factory file of the user's: the file and the modules it imports from its folder
    (kagglecv.config.factories), beside the member's folds where prediction looks for them
    (kagglecv.inference.models.load_factory), so the kernel runs from the dataset alone. Refused when they are not
    the code the folds were trained with (their config's factory_sha256)."""
    from kagglecv.config.factories import factory_sha256, factory_sources

    resolved = ModelRecord.read(layout.model(member, 0).path).config
    sources = factory_sources(resolved.get("model"))
    if not sources:
        return
    if not sources[0].is_file():
        raise InputError(f"backbones: {member}: its model file {sources[0]} is gone; the kernel dataset must carry it")
    now = factory_sha256(resolved.get("model"))
    for k in range(n_folds):
        trained = ModelRecord.read(layout.model(member, k).path).config.get("factory_sha256")
        if trained is not None and trained != now:
            raise InputError(
                f"backbones: {member}: {sources[0]} (or a module it imports) changed since fold {k} was "
                f"trained; retrain it (snakemake), then snakemake kernel"
            )
    folder = out.model(member, 0).path.parent
    for source in sources:
        dest = folder / source.relative_to(sources[0].parent)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)


LOAD_CHECK = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from kagglecv.inference.predict import load_fold_model
folder, in_chans = Path(sys.argv[2]), int(sys.argv[3])
for name in json.loads(sys.argv[4]):
    try:
        load_fold_model(folder / name, in_chans, "cpu")
    except Exception as e:
        cause = e.__cause__ or e
        why = str(cause).splitlines()
        print(json.dumps({"model": name, "error": f"{type(cause).__name__}: {why[0] if why else ''}"}))
        sys.exit(3)
"""


def check_loads(folder: Path, models: list[str], in_chans: int, repo: str | Path) -> None:
    """Every shipped model.pt rebuilt and loaded from the dataset `folder` alone, as the kernel will: in a fresh,
    isolated Python (no PYTHONPATH, no user site, an empty working folder) that sees kagglecv and the installed
    packages but none of the user's files outside the dataset. A factory importing what the dataset lacks is one
    line here, not a failed submission hours later."""
    package = Path(repo) / "kagglecv"
    if not package.is_dir():
        import kagglecv

        package = Path(kagglecv.__file__).parent
    with tempfile.TemporaryDirectory(prefix="kagglecv-load-check-") as tmp:
        (Path(tmp) / "path").mkdir()
        (Path(tmp) / "path" / "kagglecv").symlink_to(package.resolve(), target_is_directory=True)
        (Path(tmp) / "cwd").mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        args = [str(Path(tmp) / "path"), str(Path(folder).resolve()), str(in_chans), json.dumps(models)]
        done = subprocess.run(
            [sys.executable, "-I", "-c", LOAD_CHECK, *args],
            cwd=Path(tmp) / "cwd",
            env=env,
            capture_output=True,
            text=True,
        )
    if done.returncode == 0:
        return
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode == 3 and lines:
        failed = json.loads(lines[-1])
        raise InputError(
            f"kernel: {failed['model']} does not load from the kernel dataset alone ({failed['error']}); "
            "keep what a model factory imports in its folder (it is shipped with it), or add the "
            "package's wheel to kaggle.kernel_wheels"
        )
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise InputError(f"kernel: checking that the shipped models load failed ({tail})")


def build_wheel(repo: str | Path, out_dir: Path) -> Path:
    """kagglecv's wheel, built by its own build backend (setuptools) from a copy of the sources, so the
    checkout gets no build/ or egg-info folders."""
    repo, out_dir = Path(repo), Path(out_dir)
    if not (repo / "pyproject.toml").is_file() or not (repo / "kagglecv").is_dir():
        raise InputError(f"{repo}: no pyproject.toml and kagglecv/ here; run from the workflow's checkout")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kagglecv-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        shutil.copy(repo / "pyproject.toml", src)
        for extra in ("README.md", "LICENSE"):
            if (repo / extra).is_file():
                shutil.copy(repo / extra, src)
        shutil.copytree(
            repo / "kagglecv", src / "kagglecv", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        )
        # the defaults every module reads (kagglecv.config): the wheel carries its own copy of the schema
        shutil.copy(repo / "schemas" / "config.schema.yaml", src / "kagglecv" / "config.schema.yaml")
        code = "import sys; from setuptools import build_meta as b; print(b.build_wheel(sys.argv[1]))"
        out = subprocess.run(
            [sys.executable, "-c", code, str(Path(tmp) / "dist")], cwd=src, capture_output=True, text=True
        )
        if out.returncode != 0:
            tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
            raise InputError(
                f"building kagglecv's wheel failed ({tail}); is setuptools installed? (pip install 'setuptools>=68')"
            )
        wheel = Path(tmp) / "dist" / out.stdout.strip().splitlines()[-1]
        dest = out_dir / wheel.name
        shutil.copyfile(wheel, dest)
    return dest


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def check_size(folder: Path, max_bytes: int | None) -> int:
    """The folder's size; a one-line error when it is above `max_bytes` (kaggle.dataset_max_bytes)."""
    size = folder_bytes(folder)
    if max_bytes is not None and size > max_bytes:
        raise InputError(
            f"{folder}: {size / 2**30:.2f} GiB is above the Kaggle dataset limit of "
            f"{max_bytes / 2**30:.2f} GiB (kaggle.dataset_max_bytes); use fewer backbones or folds, "
            f"or raise the limit if your Kaggle quota allows"
        )
    return size


def fold_records(layout: Layout, scores: Scores, members: list[str]) -> dict[str, list[ModelRecord]]:
    """{member: [metrics.json and config.json of each fold]}: what each fold's training job measured."""
    scores, out = Scores.of(scores), {}
    for m in members:
        out[m] = []
        for k, d in enumerate(layout.folds_of(m, scores.n_folds(m))):
            for path in (d.metrics, d.config):
                if not path.is_file():
                    raise InputError(f"{path}: not found; rerun the training job of {m} fold {k}")
            out[m].append(ModelRecord.read(d.path))
    return out


def write_dataset(
    folder: Path, layout: Layout, scores: Scores, meta: PreparedMeta, members: list[str], repo, wheels: list[str] | None
) -> None:
    """Everything the notebook reads but the manifest and the metadata: scores, meta, every fold's weights and
    config, the training labels' prior, kagglecv's wheel and kaggle.kernel_wheels. meta.json, and scores.json
    unless `scores` is not the run's (kaggle.kernel_models: student), are the run's files byte for byte."""
    from kagglecv.core.tasks import Task

    scores, meta, out, ds = Scores.of(scores), PreparedMeta.of(meta), Layout(folder), KernelDatasetFiles(folder)
    if scores == Scores.read(layout.scores):
        with atomic_path(out.scores) as tmp:
            shutil.copyfile(layout.scores, tmp)
    else:
        write_json(out.scores, scores.to_dict())
    with atomic_path(out.meta) as tmp:
        shutil.copyfile(layout.meta, tmp)
    for m in members:
        for k, d in enumerate(layout.folds_of(m, scores.n_folds(m))):
            for name in FOLD_FILES:
                if not (d.path / name).is_file():
                    raise InputError(f"{d.path / name}: not found; rerun the training job of {m} fold {k}")
                _place(d.path / name, out.model(m, k).path / name)
        place_factory(layout, m, out, scores.n_folds(m))
    prior = Task.of(meta).prior(read_table(layout.prepared.train))
    write_json(ds.prior, {"task": meta.task, "prior": prior.tolist(), "rows": int(meta.n_train)})
    build_wheel(repo, ds.wheels)
    for w in wheels or []:
        w = Path(w)
        if not w.is_file() or w.suffix != ".whl":
            raise not_a_wheel(w)
        shutil.copyfile(w, ds.wheels / w.name)
