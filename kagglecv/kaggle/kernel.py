"""Code competitions: the trained ensemble as a Kaggle notebook that predicts the hidden test set.

Kaggle scores a code competition by running a notebook on its hidden test set with the internet off, so
everything the notebook needs comes from a dataset attached to it. `build` (the `kernel` rule) writes both,
once the hidden rerun's projected time fits the limit (kagglecv.kaggle.rerun):

  results/<competition>/kernel-dataset/   what `kaggle datasets create|version -p` uploads; a small results
      dataset-metadata.json                 folder, so predict's code reads it as it reads results/<competition>:
      scores.json                           the ensemble: members, method, its fitted params, thresholds
      prepared/meta.json                    classes, task, image shape, how the test side is read (meta.data)
      models/<backbone>/fold<k>/            model.pt (weights + resolved config) and config.json of every fold
      prior.json                            the training labels' prior: the prediction for an unreadable image
      wheels/                               kagglecv's wheel (+ kaggle.kernel_wheels): installed offline
      manifest.json                         every file with its size and sha256, the package versions tested,
                                            kaggle.max_bad_test_images and the rerun's projection
  results/<competition>/kernel/           what `kaggle kernels push -p` uploads
      kernel-metadata.json                  competition_sources, dataset_sources, enable_internet false, enable_gpu
      kernel.py                             the code_file: installs the wheels if needed, calls `main` below

The notebook itself, what runs on Kaggle, is kagglecv.kaggle.notebook.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from kagglecv.kaggle import rerun
from kagglecv.kaggle.notebook import kernel_code
from kagglecv.core.errors import InputError
from kagglecv.core.files import atomic_path, file_sha256, read_json, read_table, write_json
from kagglecv.core.layout import KernelDatasetFiles, KernelFiles, Layout, ModelFiles
from kagglecv.core.results import Ensemble, ModelRecord, PreparedMeta, Scores

log = logging.getLogger("kagglecv.kaggle.kernel")

FOLD_FILES = (ModelFiles.model, ModelFiles.config)  # what prediction reads (model.pt carries the config too)
DEFAULT_OWNER = "kagglecv"  # stands in until the submit step, which stamps the authenticated user's name


def slug(text: str, max_len: int = 50) -> str:
    """A Kaggle slug: lower-case letters, digits and dashes, at most `max_len` (50: Kaggle's title limit)."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_len].strip("-")
    if len(out) < 6:  # Kaggle titles (which slugs come from) need 6 characters
        out = (out + "-kagglecv")[:max_len]
    return out


def default_slug(competition: str) -> str:
    return slug(f"{competition}-kagglecv")


def credential_username() -> str | None:
    """The Kaggle user name the local credentials name, without any network call (None for a bare token); the
    kaggle.json places are the client's, as kagglecv.core.secrets lists them."""
    from kagglecv.core.secrets import json_values, kaggle_config_dirs

    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    for d in kaggle_config_dirs():
        if name := next(iter(json_values(d / "kaggle.json", "username") - {""}), None):
            return name
    return None


# ---------------------------------------------------------------- building the two folders


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
    from kagglecv.scoring import metrics
    from kagglecv.scoring import thresholds
    from kagglecv.scoring.ensemble import load_backbone, prob_columns, results_task

    scores = Scores.of(scores)
    if not student or student not in scores.models:
        raise InputError("kaggle.kernel_models: student needs a distilled student (distill.student) in this run; set "
                         "distill.student, or kernel_models: ensemble")
    ens = Ensemble(method="mean", chosen_by="kaggle.kernel_models", members=[student],
                   cv=scores.models[student]["cv"], params=None)
    task = results_task(layout, scores.task)
    if metrics.needs_thresholds(scores.metric, task.kind):
        oof, _ = load_backbone([m.path for m in layout.folds_of(student, scores.n_folds(student))])
        folds = read_table(layout.folds)  # the labels as the task reads them (tags, grades), in folds.csv's order
        oof = folds.merge(oof[["id", *prob_columns(oof)]], on="id", validate="one_to_one")
        ens = dataclasses.replace(ens, thresholds=[float(t) for t in thresholds.fit(
            scores.metric, task.targets(oof), oof[prob_columns(oof)].to_numpy(), task.grades)])
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
            raise InputError(f"backbones: {member}: {sources[0]} (or a module it imports) changed since fold {k} was "
                             f"trained; retrain it (snakemake), then snakemake kernel")
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
        done = subprocess.run([sys.executable, "-I", "-c", LOAD_CHECK, *args], cwd=Path(tmp) / "cwd", env=env,
                              capture_output=True, text=True)
    if done.returncode == 0:
        return
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode == 3 and lines:
        failed = json.loads(lines[-1])
        raise InputError(f"kernel: {failed['model']} does not load from the kernel dataset alone ({failed['error']}); "
                         "keep what a model factory imports in its folder (it is shipped with it), or add the "
                         "package's wheel to kaggle.kernel_wheels")
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
        shutil.copytree(repo / "kagglecv", src / "kagglecv",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        # the defaults every module reads (kagglecv.config): the wheel carries its own copy of the schema
        shutil.copy(repo / "schemas" / "config.schema.yaml", src / "kagglecv" / "config.schema.yaml")
        code = "import sys; from setuptools import build_meta as b; print(b.build_wheel(sys.argv[1]))"
        out = subprocess.run([sys.executable, "-c", code, str(Path(tmp) / "dist")], cwd=src, capture_output=True,
                             text=True)
        if out.returncode != 0:
            tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
            raise InputError(f"building kagglecv's wheel failed ({tail}); is setuptools installed? "
                             f"(pip install 'setuptools>=68')")
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
        raise InputError(f"{folder}: {size / 2**30:.2f} GiB is above the Kaggle dataset limit of "
                         f"{max_bytes / 2**30:.2f} GiB (kaggle.dataset_max_bytes); use fewer backbones or folds, "
                         f"or raise the limit if your Kaggle quota allows")
    return size


def finished_run(layout: Layout) -> tuple[Scores, PreparedMeta]:
    """(scores.json, meta.json) of the finished run that the kernel is built from."""
    for p in (layout.scores, layout.meta, layout.prepared.train):
        if not p.is_file():
            raise InputError(f"{p}: not found; run the workflow first (snakemake), then snakemake kernel")
    scores, meta = Scores.read(layout.scores), PreparedMeta.read(layout.meta)
    if not meta.data:
        raise InputError(f"{layout.meta}: written by an older version (no `data` settings); "
                         f"rerun it: snakemake --forcerun prepare")
    return scores, meta


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


RERUN_KEYS = ("max_bad_test_images", "hidden_test_rows", "kernel_time_limit", "kernel_time_safety",
              "kernel_speed_factor")


def rerun_settings(kaggle: dict | None) -> dict:
    """The kaggle.* settings of the hidden rerun, the schema's defaults under those given."""
    from kagglecv.config.schema import defaults

    return {k: v for k, v in {**defaults()["kaggle"], **(kaggle or {})}.items() if k in RERUN_KEYS}


def budget(layout: Layout, scores: Scores, meta: PreparedMeta, members: list[str], settings: dict,
           enable_gpu: bool) -> dict:
    """The hidden rerun's projection (kagglecv.kaggle.rerun.project); refused with one line when it does not fit."""
    plan = rerun.project(fold_records(layout, scores, members), meta, enable_gpu=enable_gpu,
                         hidden_test_rows=settings["hidden_test_rows"], speed_factor=settings["kernel_speed_factor"])
    if plan is None:
        log.warning("the training jobs did not time their predictions (an older run): the hidden rerun's time is "
                    "not projected; retrain to have it checked")
        return {}
    rerun.check_budget(plan, settings["kernel_time_limit"], settings["kernel_time_safety"])
    log.info("the hidden rerun: ~%.0f s for %d images (%.3g s per image on a %s kernel), within %g x %g s",
             plan["projected_seconds"], plan["rows"], plan["seconds_per_image"], plan["target"],
             settings["kernel_time_safety"], settings["kernel_time_limit"])
    return plan


def write_dataset(folder: Path, layout: Layout, scores: Scores, meta: PreparedMeta, members: list[str], repo,
                  wheels: list[str] | None) -> None:
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
        place_factory(layout, m, out, len(scores["models"][m]["folds"]))
    prior = Task.of(meta).prior(read_table(layout.prepared.train))
    write_json(ds.prior, {"task": meta.task, "prior": prior.tolist(), "rows": int(meta.n_train)})
    build_wheel(repo, ds.wheels)
    for w in wheels or []:
        w = Path(w)
        if not w.is_file() or w.suffix != ".whl":
            raise InputError(f"kaggle.kernel_wheels: {w} is not a wheel file; list .whl files (e.g. from "
                             f"`pip download --no-deps -d wheels/ albumentations==2.0.8`)")
        shutil.copyfile(w, ds.wheels / w.name)


def build(results_dir: str | Path, dataset_dir: str | Path, kernel_dir: str | Path, *, competition: str,
          repo: str | Path, owner: str | None = None, dataset: str | None = None, kernel: str | None = None,
          enable_gpu: bool = True, wheels: list[str] | None = None, max_bytes: int | None = None,
          is_private: bool = True, models: str = "ensemble", student: str | None = None,
          rerun_config: dict | None = None) -> dict:
    """Write the kernel dataset and the kernel folders for the finished run in `results_dir`; return the
    manifest. models: "ensemble" (its recipe in scores.json), or "student" (kaggle.kernel_models: the distilled
    `student` alone, which predicts in a fraction of the ensemble's time). `rerun_config`: the kaggle.* settings of
    the hidden rerun (see rerun_settings); a rerun projected above the time limit is refused before anything is
    written. Both folders are written to temporary names and
    renamed into place: never half-written."""
    from kagglecv.inference.predict import ensemble_recipe, predicted_members

    layout = Layout(Path(results_dir))
    dataset_dir, kernel_dir = Path(dataset_dir), Path(kernel_dir)
    scores, meta = finished_run(layout)
    if models == "student":
        scores = student_scores(layout, scores, student)
    method, members, params = ensemble_recipe(scores)  # refuses a scores.json without the fitted params
    shipped = predicted_members(method, members, params)  # a member of weight 0 is neither shipped nor predicted
    settings = rerun_settings(rerun_config)
    plan = budget(layout, scores, meta, shipped, settings, enable_gpu)
    owner = owner or credential_username() or DEFAULT_OWNER
    dataset, kernel = slug(dataset or default_slug(competition)), slug(kernel or default_slug(competition))
    ds_tmp, k_tmp = (Path(tempfile.mkdtemp(dir=d.parent, prefix=f".{d.name}-")) for d in (dataset_dir, kernel_dir))
    try:
        write_dataset(ds_tmp, layout, scores, meta, shipped, repo, wheels)
        models = [Layout(ds_tmp).model(m, k).model.relative_to(ds_tmp).as_posix() for m in shipped
                  for k in range(len(scores["models"][m]["folds"]))]
        check_loads(ds_tmp, models, int(meta["image_shape"][-1]), repo)
        ds = KernelDatasetFiles(ds_tmp)
        write_json(ds.metadata, {"title": dataset, "id": f"{owner}/{dataset}", "licenses": [{"name": "CC0-1.0"}]})
        files = sorted(p for p in ds_tmp.rglob("*") if p.is_file())
        manifest = {"competition": competition, "dataset": f"{owner}/{dataset}", "kernel": f"{owner}/{kernel}",
                    "method": method, "members": members, "shipped": shipped,
                    "files": {p.relative_to(ds_tmp).as_posix(): {"bytes": p.stat().st_size,
                                                                 "sha256": file_sha256(p)} for p in files},
                    "environment": rerun.tested_environment(),
                    "kernel_run": {"max_bad_test_images": settings["max_bad_test_images"], "budget": plan}}
        manifest["bytes"] = sum(f["bytes"] for f in manifest["files"].values())
        write_json(ds.manifest, manifest)
        try:  # a warning here (submit refuses to upload it): `submit` builds these folders for file competitions too
            check_size(ds_tmp, max_bytes)
        except InputError as e:
            log.warning("%s", str(e).replace(str(ds_tmp), str(dataset_dir)))
        write_notebook(KernelFiles(k_tmp), competition, owner, dataset, kernel, enable_gpu, is_private)
        for tmp, final in ((ds_tmp, dataset_dir), (k_tmp, kernel_dir)):
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
    finally:
        for tmp in (ds_tmp, k_tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("kernel dataset %s (%d files, %.1f MB) in %s; kernel %s in %s", manifest["dataset"],
             len(manifest["files"]), manifest["bytes"] / 1e6, dataset_dir, manifest["kernel"], kernel_dir)
    return manifest


def write_notebook(nb: KernelFiles, competition: str, owner: str, dataset: str, kernel: str, enable_gpu: bool,
                   is_private: bool) -> None:
    nb.code.write_text(kernel_code(competition, dataset))
    write_json(nb.metadata, {
        "id": f"{owner}/{kernel}", "title": kernel, "code_file": KernelFiles.code, "language": "python",
        "kernel_type": "script", "is_private": is_private, "enable_gpu": bool(enable_gpu),
        "enable_internet": False, "dataset_sources": [f"{owner}/{dataset}"],
        "competition_sources": [competition], "kernel_sources": [], "model_sources": []})


def stamp_owner(dataset_dir: Path, kernel_dir: Path, owner: str, dest: Path) -> tuple[Path, Path]:
    """Copies of both folders (files hard-linked) under `dest`, their ids naming `owner`: the authenticated
    user pushes under their own name without the outputs of the kernel rule being edited. The copies hold what
    is uploaded and nothing else: the files the dataset's manifest lists (and the manifest), the kernel's code
    file; not e.g. the .snakemake_timestamp marker Snakemake leaves in every directory output."""
    dataset_dir, kernel_dir = Path(dataset_dir), Path(kernel_dir)
    manifest = read_json(KernelDatasetFiles(dataset_dir).manifest)
    code = read_json(KernelFiles(kernel_dir).metadata)["code_file"]
    uploads = [*manifest["files"], KernelDatasetFiles.manifest]
    out = []
    for src, meta_name, names in ((dataset_dir, KernelDatasetFiles.metadata, uploads),
                                  (kernel_dir, KernelFiles.metadata, [code])):
        copy = Path(dest) / src.name
        for name in names:
            if name != meta_name:
                _place(src / name, copy / name)
        meta = read_json(src / meta_name)
        meta["id"] = f"{owner}/{meta['id'].split('/', 1)[-1]}"
        if "dataset_sources" in meta:
            meta["dataset_sources"] = [f"{owner}/{s.split('/', 1)[-1]}" for s in meta["dataset_sources"]]
        write_json(copy / meta_name, meta)
        out.append(copy)
    return out[0], out[1]


# ---------------------------------------------------------------- the notebook


