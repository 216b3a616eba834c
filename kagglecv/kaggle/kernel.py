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

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from kagglecv.core.errors import InputError
from kagglecv.core.files import file_sha256, read_json, write_json
from kagglecv.core.layout import KernelDatasetFiles, KernelFiles, Layout
from kagglecv.core.results import PreparedMeta, Scores
from kagglecv.kaggle import rerun
from kagglecv.kaggle.kernel_dataset import _place, check_loads, check_size, fold_records, student_scores, write_dataset
from kagglecv.kaggle.notebook import kernel_code

log = logging.getLogger("kagglecv.kaggle.kernel")

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


def finished_run(layout: Layout) -> tuple[Scores, PreparedMeta]:
    """(scores.json, meta.json) of the finished run that the kernel is built from."""
    for p in (layout.scores, layout.meta, layout.prepared.train):
        if not p.is_file():
            raise InputError(f"{p}: not found; run the workflow first (snakemake), then snakemake kernel")
    scores, meta = Scores.read(layout.scores), PreparedMeta.read(layout.meta)
    if not meta.data:
        raise InputError(
            f"{layout.meta}: written by an older version (no `data` settings); rerun it: snakemake --forcerun prepare"
        )
    return scores, meta


RERUN_KEYS = (
    "max_bad_test_images",
    "hidden_test_rows",
    "kernel_time_limit",
    "kernel_time_safety",
    "kernel_speed_factor",
)


# the kaggle.* settings the kernel is built from: the kernel rule's one `kaggle` param (a change rebuilds the kernel)
KERNEL_KEYS = (
    "owner",
    "dataset",
    "kernel",
    "enable_gpu",
    "kernel_wheels",
    "dataset_max_bytes",
    "kernel_models",
    *RERUN_KEYS,
)


def rerun_settings(kaggle: dict | None) -> dict:
    """The kaggle.* settings of the hidden rerun, the schema's defaults under those given."""
    from kagglecv.config.schema import defaults

    return {k: v for k, v in {**defaults()["kaggle"], **(kaggle or {})}.items() if k in RERUN_KEYS}


def budget(
    layout: Layout, scores: Scores, meta: PreparedMeta, members: list[str], settings: dict, enable_gpu: bool
) -> dict:
    """The hidden rerun's projection (kagglecv.kaggle.rerun.project); refused with one line when it does not fit."""
    plan = rerun.project(
        fold_records(layout, scores, members),
        meta,
        enable_gpu=enable_gpu,
        hidden_test_rows=settings["hidden_test_rows"],
        speed_factor=settings["kernel_speed_factor"],
    )
    if plan is None:
        log.warning(
            "the training jobs did not time their predictions (an older run): the hidden rerun's time is "
            "not projected; retrain to have it checked"
        )
        return {}
    rerun.check_budget(plan, settings["kernel_time_limit"], settings["kernel_time_safety"])
    log.info(
        "the hidden rerun: ~%.0f s for %d images (%.3g s per image on a %s kernel), within %g x %g s",
        plan["projected_seconds"],
        plan["rows"],
        plan["seconds_per_image"],
        plan["target"],
        settings["kernel_time_safety"],
        settings["kernel_time_limit"],
    )
    return plan


def build(
    results_dir: str | Path,
    dataset_dir: str | Path,
    kernel_dir: str | Path,
    *,
    competition: str,
    repo: str | Path,
    kaggle: dict,
    student: str | None = None,
    is_private: bool = True,
) -> dict:
    """Write the kernel dataset and the kernel folders for the finished run in `results_dir`; return the
    manifest. `kaggle`: the config's kaggle section (KERNEL_KEYS are read): owner, dataset and kernel slugs,
    enable_gpu, kernel_wheels, dataset_max_bytes, kernel_models ("ensemble": its recipe in scores.json, or
    "student": the distilled `student` alone, which predicts in a fraction of the ensemble's time) and the hidden
    rerun's settings (see rerun_settings; a rerun projected above the time limit is refused before anything is
    written). Both folders are written to temporary names and renamed into place: never half-written."""
    owner, dataset, kernel = kaggle["owner"], kaggle["dataset"], kaggle["kernel"]
    enable_gpu, wheels, max_bytes = kaggle["enable_gpu"], kaggle["kernel_wheels"], kaggle["dataset_max_bytes"]
    from kagglecv.inference.predict import ensemble_recipe, predicted_members

    layout = Layout(Path(results_dir))
    dataset_dir, kernel_dir = Path(dataset_dir), Path(kernel_dir)
    scores, meta = finished_run(layout)
    if kaggle["kernel_models"] == "student":
        scores = student_scores(layout, scores, student)
    method, members, params = ensemble_recipe(scores)  # refuses a scores.json without the fitted params
    shipped = predicted_members(method, members, params)  # a member of weight 0 is neither shipped nor predicted
    settings = rerun_settings(kaggle)
    plan = budget(layout, scores, meta, shipped, settings, enable_gpu)
    owner = owner or credential_username() or DEFAULT_OWNER
    dataset, kernel = slug(dataset or default_slug(competition)), slug(kernel or default_slug(competition))
    ds_tmp, k_tmp = (Path(tempfile.mkdtemp(dir=d.parent, prefix=f".{d.name}-")) for d in (dataset_dir, kernel_dir))
    try:
        write_dataset(ds_tmp, layout, scores, meta, shipped, repo, wheels)
        models = [
            Layout(ds_tmp).model(m, k).model.relative_to(ds_tmp).as_posix()
            for m in shipped
            for k in range(scores.n_folds(m))
        ]
        check_loads(ds_tmp, models, int(meta.image_shape[-1]), repo)
        ds = KernelDatasetFiles(ds_tmp)
        write_json(ds.metadata, {"title": dataset, "id": f"{owner}/{dataset}", "licenses": [{"name": "CC0-1.0"}]})
        files = sorted(p for p in ds_tmp.rglob("*") if p.is_file())
        manifest = {
            "competition": competition,
            "dataset": f"{owner}/{dataset}",
            "kernel": f"{owner}/{kernel}",
            "method": method,
            "members": members,
            "shipped": shipped,
            "files": {
                p.relative_to(ds_tmp).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in files
            },
            "environment": rerun.tested_environment(),
            "kernel_run": {"max_bad_test_images": settings["max_bad_test_images"], "budget": plan},
        }
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
    log.info(
        "kernel dataset %s (%d files, %.1f MB) in %s; kernel %s in %s",
        manifest["dataset"],
        len(manifest["files"]),
        manifest["bytes"] / 1e6,
        dataset_dir,
        manifest["kernel"],
        kernel_dir,
    )
    return manifest


def write_notebook(
    nb: KernelFiles, competition: str, owner: str, dataset: str, kernel: str, enable_gpu: bool, is_private: bool
) -> None:
    nb.code.write_text(kernel_code(competition, dataset))
    write_json(
        nb.metadata,
        {
            "id": f"{owner}/{kernel}",
            "title": kernel,
            "code_file": KernelFiles.code,
            "language": "python",
            "kernel_type": "script",
            "is_private": is_private,
            "enable_gpu": bool(enable_gpu),
            "enable_internet": False,
            "dataset_sources": [f"{owner}/{dataset}"],
            "competition_sources": [competition],
            "kernel_sources": [],
            "model_sources": [],
        },
    )


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
    for src, meta_name, names in (
        (dataset_dir, KernelDatasetFiles.metadata, uploads),
        (kernel_dir, KernelFiles.metadata, [code]),
    ):
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
