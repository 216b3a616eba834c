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

`run` is the notebook. Before it decodes anything it prints the versions it runs with and checks them against
the tested ones, each dataset file against the manifest and the free disk. It reads the competition's test side
only, as meta.json describes it (the hidden rerun has no training side), decodes it exactly as `prepare` did
(same decoder, same cache shape), predicts it with `predict.ensemble_predict` (the code behind `snakemake
predict`: every fold and backbone, the same TTA, seeded per image, and the stored ensemble) and writes the
submission with `submission.submission_frame` (the workflow's own, checked against the hidden template). An
image that cannot be read is predicted with the training prior, listed in the log and counted (above
kaggle.max_bad_test_images, an error). Inputs come from $KAGGLE_INPUT (default /kaggle/input: the competition
and the dataset under their slugs), the output goes to $KAGGLE_WORKING (default /kaggle/working), so the same
code runs here and on Kaggle.
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
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from kagglecv.kaggle import rerun
from kagglecv.core.errors import InputError
from kagglecv.core.files import file_sha256, read_table, write_csv, write_json
from kagglecv.core.layout import KernelDatasetFiles, KernelFiles, Layout, ModelFiles, PreparedFiles

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


def student_scores(layout: Layout, scores: dict, student: str | None) -> dict:
    """scores.json with the distilled student as the whole ensemble: its folds averaged, its own thresholds or cut
    points fitted on its out-of-fold predictions where the metric decides."""
    from kagglecv.scoring import metrics
    from kagglecv.scoring import thresholds
    from kagglecv.scoring.ensemble import load_backbone, prob_columns, results_task

    if not student or student not in scores["models"]:
        raise InputError("kaggle.kernel_models: student needs a distilled student (distill.student) in this run; set "
                         "distill.student, or kernel_models: ensemble")
    cv = scores["models"][student]["cv"]
    ens = {"method": "mean", "chosen_by": "kaggle.kernel_models", "members": [student], "cv": cv, "params": None}
    task = results_task(layout, scores.get("task", "multiclass"))
    if metrics.needs_thresholds(scores["metric"], task.kind):
        oof, _ = load_backbone([m.path for m in layout.folds_of(student, len(scores["models"][student]["folds"]))])
        folds = read_table(layout.folds)  # the labels as the task reads them (tags, grades), in folds.csv's order
        oof = folds.merge(oof[["id", *prob_columns(oof)]], on="id", validate="one_to_one")
        ens["thresholds"] = [float(t) for t in thresholds.fit(scores["metric"], task.targets(oof),
                                                               oof[prob_columns(oof)].to_numpy(), task.grades)]
    return {**scores, "ensemble": ens}


def place_factory(layout: Layout, member: str, out: Layout) -> None:
    """A member built by a factory file of the user's: the file, beside the member's folds, where prediction
    looks for it (kagglecv.inference.models.load_factory), so the kernel runs from the dataset alone."""
    from kagglecv.inference.models import factory_file

    resolved = json.loads(layout.model(member, 0).config.read_text())
    source = factory_file(resolved.get("model"))
    if source is None:
        return
    if not source.is_file():
        raise InputError(f"backbones: {member}: its model file {source} is gone; the kernel dataset must carry it")
    dest = out.model(member, 0).path.parent / source.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)


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


def kernel_code(competition: str, dataset: str) -> str:
    """The notebook (a script kernel): install the wheels offline if kagglecv is missing, then `main`."""
    return f'''"""Predict {competition}'s test set with the ensemble in the {dataset} dataset (built by kagglecv).

Reads $KAGGLE_INPUT (default /kaggle/input) and writes submission.csv into $KAGGLE_WORKING (default
/kaggle/working), so it runs unchanged on Kaggle (internet off) and locally.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

COMPETITION = {competition!r}
DATASET = {dataset!r}
INPUT = Path(os.environ.get("KAGGLE_INPUT", "/kaggle/input"))
WORKING = Path(os.environ.get("KAGGLE_WORKING", "/kaggle/working"))
UPLOAD = ("the dataset was uploaded without its folders (the kaggle client skips them without --dir-mode): upload "
          "it again with `kaggle datasets version -p results/" + COMPETITION + "/kernel-dataset --dir-mode zip "
          "-m update`, or let `snakemake submit` upload it")


def fail(message):
    sys.exit("ERROR: " + message)


def pip_install(args, wheels):
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links",
                           str(wheels), *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        fail(f"pip could not install {{wheels}} offline ({{why}}); add the missing wheels to kaggle.kernel_wheels "
             "(pip download -d wheels/ PACKAGE==VERSION), then snakemake kernel")


def install_wheels():
    """Internet is off: kagglecv and kaggle.kernel_wheels come with the dataset, in wheels/. kagglecv's wheel pins
    the versions it was built with, which no offline index holds: it installs without them (kagglecv.kaggle.kernel then
    checks the versions it needs, naming any wheel to add); the others install with their dependencies, found in
    wheels/ or already installed."""
    # where kagglecv.kaggle.kernel.find_input looks: it cannot be imported before it is installed
    places = [INPUT / DATASET, *sorted(INPUT.glob("*/" + DATASET)), *sorted(INPUT.glob("*/*/" + DATASET))]
    found = [p for p in places if p.is_dir()]
    if not found:
        fail(f"{{INPUT / DATASET}}: not found; attach the dataset to the notebook")
    wheels = found[0] / "wheels"
    ours = sorted(wheels.glob("kagglecv-*.whl"))
    if not ours:
        fail(f"{{wheels}}: {{'no kagglecv wheel in it' if wheels.is_dir() else 'not found'}}; {{UPLOAD}}")
    pip_install(["--no-deps", *ours], wheels)
    others = sorted(set(wheels.glob("*.whl")) - set(ours))
    if others:
        pip_install(others, wheels)


if importlib.util.find_spec("kagglecv") is None:
    install_wheels()

from kagglecv.kaggle.kernel import main  # noqa: E402

main(COMPETITION, DATASET, INPUT, WORKING)
'''


def finished_run(layout: Layout) -> tuple[dict, dict]:
    """(scores.json, meta.json) of the finished run that the kernel is built from."""
    for p in (layout.scores, layout.meta, layout.prepared.train):
        if not p.is_file():
            raise InputError(f"{p}: not found; run the workflow first (snakemake), then snakemake kernel")
    scores, meta = json.loads(layout.scores.read_text()), json.loads(layout.meta.read_text())
    if "data" not in meta:
        raise InputError(f"{layout.meta}: written by an older version (no `data` settings); "
                         f"rerun it: snakemake --forcerun prepare")
    return scores, meta


def fold_records(layout: Layout, scores: dict, members: list[str]) -> dict[str, list[tuple[dict, dict]]]:
    """{member: [(metrics.json, config.json) of each fold]}: what each fold's training job measured."""
    out = {}
    for m in members:
        out[m] = []
        for k, d in enumerate(layout.folds_of(m, len(scores["models"][m]["folds"]))):
            for path in (d.metrics, d.config):
                if not path.is_file():
                    raise InputError(f"{path}: not found; rerun the training job of {m} fold {k}")
            out[m].append((json.loads(d.metrics.read_text()), json.loads(d.config.read_text())))
    return out


RERUN_KEYS = ("max_bad_test_images", "hidden_test_rows", "kernel_time_limit", "kernel_time_safety",
              "kernel_speed_factor")


def rerun_settings(kaggle: dict | None) -> dict:
    """The kaggle.* settings of the hidden rerun, the schema's defaults under those given."""
    from kagglecv.config.schema import defaults

    return {k: v for k, v in {**defaults()["kaggle"], **(kaggle or {})}.items() if k in RERUN_KEYS}


def budget(layout: Layout, scores: dict, meta: dict, members: list[str], settings: dict, enable_gpu: bool) -> dict:
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


def write_dataset(folder: Path, layout: Layout, scores: dict, meta: dict, members: list[str], repo,
                  wheels: list[str] | None) -> None:
    """Everything the notebook reads but the manifest and the metadata: scores, meta, every fold's weights and
    config, the training labels' prior, kagglecv's wheel and kaggle.kernel_wheels."""
    from kagglecv.core.tasks import Task

    out, ds = Layout(folder), KernelDatasetFiles(folder)
    write_json(out.scores, scores)
    write_json(out.meta, meta)
    for m in members:
        for k, d in enumerate(layout.folds_of(m, len(scores["models"][m]["folds"]))):
            for name in FOLD_FILES:
                if not (d.path / name).is_file():
                    raise InputError(f"{d.path / name}: not found; rerun the training job of {m} fold {k}")
                _place(d.path / name, out.model(m, k).path / name)
        place_factory(layout, m, out)
    prior = Task.of(meta).prior(read_table(layout.prepared.train))
    write_json(ds.prior, {"task": meta["task"], "prior": prior.tolist(), "rows": int(meta["n_train"])})
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
    manifest = json.loads(KernelDatasetFiles(dataset_dir).manifest.read_text())
    code = json.loads(KernelFiles(kernel_dir).metadata.read_text())["code_file"]
    uploads = [*manifest["files"], KernelDatasetFiles.manifest]
    out = []
    for src, meta_name, names in ((dataset_dir, KernelDatasetFiles.metadata, uploads),
                                  (kernel_dir, KernelFiles.metadata, [code])):
        copy = Path(dest) / src.name
        for name in names:
            if name != meta_name:
                _place(src / name, copy / name)
        meta = json.loads((src / meta_name).read_text())
        meta["id"] = f"{owner}/{meta['id'].split('/', 1)[-1]}"
        if "dataset_sources" in meta:
            meta["dataset_sources"] = [f"{owner}/{s.split('/', 1)[-1]}" for s in meta["dataset_sources"]]
        write_json(copy / meta_name, meta)
        out.append(copy)
    return out[0], out[1]


# ---------------------------------------------------------------- the notebook


def find_input(input_dir: Path, name: str) -> Path:
    """<input>/<name>, as Kaggle mounts a competition or dataset; also one or two levels deeper
    (e.g. <input>/competitions/<name>, <input>/datasets/<owner>/<name>)."""
    input_dir = Path(input_dir)
    for candidate in [input_dir / name, *sorted(input_dir.glob(f"*/{name}")), *sorted(input_dir.glob(f"*/*/{name}"))]:
        if candidate.is_dir():
            return candidate
    present = sorted(p.name for p in input_dir.iterdir()) if input_dir.is_dir() else []
    raise InputError(f"{input_dir}/{name}: not found (present: {present or 'nothing'}); attach it to the "
                     f"notebook, or point KAGGLE_INPUT at the folder holding it")


def unpacked(competition_dir: Path, scratch: Path) -> Path:
    """The competition's files with its zips unpacked, as the download step unpacks them: some competitions
    mount train.zip/test.zip as they ship them. The input is read-only, so zips unpack into `scratch` (each X.zip
    into X/, or its single top folder X/ kept) and everything else is linked beside them. A folder without zips
    is used as it is."""
    from kagglecv.data.archive import safe_extract

    competition_dir = Path(competition_dir)
    zips = sorted(competition_dir.glob("*.zip"))
    if not zips:
        return competition_dir
    out = Path(scratch) / competition_dir.name
    out.mkdir(parents=True)
    for entry in competition_dir.iterdir():
        if entry in zips:
            staging = safe_extract(entry, Path(scratch) / f".{entry.stem}")
            inner = list(staging.iterdir())
            single = len(inner) == 1 and inner[0].is_dir() and inner[0].name == entry.stem
            os.replace(inner[0] if single else staging, out / entry.stem)
        elif not (out / entry.name).exists():
            (out / entry.name).symlink_to(entry.resolve())
    return out


def read_test_set(competition_dir: Path, meta: dict, scratch: Path):
    """(the competition's test side, its DataConfig, [(id, why)] of the ids without an image, the test rows'
    metadata as prediction reads it (`meta:<column>` columns, from the hidden test CSV) or None), read as meta.json
    describes it (the layout prepare recognised, the file names it used): nothing of the training side, which a
    hidden rerun does not have."""
    from kagglecv.data.prepare import DataConfig, find_root, read_test_meta, read_test_side

    known = {f.name for f in dataclasses.fields(DataConfig)}
    data = {k: v for k, v in meta["data"].items() if k in known}
    if data.get("layout", "auto") == "auto":  # meta.json of an older version: the setting, not the layout found
        data["layout"] = meta["layout"]
    cfg = DataConfig(**data)
    root = find_root(unpacked(Path(competition_dir), Path(scratch) / "competition"), cfg)
    missing: list = []
    side = read_test_side(root, cfg, cfg.layout, missing=missing)
    rows = read_test_meta(root, cfg, side.template)
    if rows is not None:
        from kagglecv.data.meta import column

        rows = rows.rename(columns=column)
    return side, cfg, missing, rows


def decode_test_set(side, cfg, meta: dict, cache: Path, workers: int) -> list[tuple[int, str, str]]:
    """Decode the test images into `cache` exactly as prepare decoded the workflow's (same decoder and shape);
    [(row, id, why)] of those that could not be read (zero rows in the cache)."""
    from kagglecv.data import images
    from kagglecv.data.prepare import PixelRows, write_images

    ids = side.template.ids
    h, w, c = (int(v) for v in meta["image_shape"])
    rerun.check_disk(cache.parent, len(ids) * h * w * c + (64 << 20),
                     f"the decoded test set ({len(ids):,} images of {h}x{w}x{c})")
    decoder = images.Decoder(h, w, c == 1, cfg.resize, cfg.max_image_pixels)
    bad: list = []
    with images.Pool(workers) as pool:
        if isinstance(side.images, PixelRows):
            write_images(cache, side.images, ids, decoder, pool, "decode test")
        else:
            images.write_cache(cache, side.images, ids, decoder, pool,
                               progress=rerun.Progress("decode test", len(ids), "images"), bad=bad)
    return bad


def unreadable(missing: list, bad: list, ids: list[str], limit: float) -> list[int]:
    """The rows predicted with the prior (no image, or one that could not be read), each logged; more than
    `limit` (kaggle.max_bad_test_images, a fraction of the rows) is an error."""
    row = {i: k for k, i in enumerate(ids)}
    found = sorted([(row[i], i, why) for i, why in missing] + list(bad))
    for k, i, why in found:
        log.warning("test id %r (row %d): %s; predicted with the training prior", i, k + 2, why)
    if len(found) > limit * len(ids):
        raise InputError(f"kernel: {len(found)} of {len(ids)} test images have no readable image, more than "
                         f"kaggle.max_bad_test_images ({limit:g} of the rows); first: {found[0][1]!r} "
                         f"({found[0][2]}); check the decoder's settings (meta.json) against the hidden images")
    return [k for k, _, _ in found]


def predict_test_set(bundle: Path, cache: Path, bad_rows: list[int], device: str, meta_rows=None):
    """The ensemble's predictions of every row of `cache`; rows in `bad_rows` get the training labels' prior."""
    import numpy as np

    from kagglecv.data.batches import open_cache
    from kagglecv.inference.predict import ensemble_predict, ensemble_recipe, predicted_members

    images, scores = open_cache(cache), json.loads(Layout(bundle).scores.read_text())
    prior = np.asarray(json.loads(KernelDatasetFiles(bundle).prior.read_text())["prior"], dtype=np.float64)
    probs = np.tile(prior, (len(images), 1))
    good = np.setdiff1d(np.arange(len(images)), bad_rows)
    passes = sum(len(scores["models"][m]["folds"]) for m in predicted_members(*ensemble_recipe(scores)))
    info = {"method": scores["ensemble"]["method"], "members": []}
    if len(good):
        progress = rerun.Progress("predict", passes, "fold passes")
        probs[good], info = ensemble_predict(bundle, images, device, meta_rows, rows=good if bad_rows else None,
                                             progress=progress)
    return probs, info


def main(competition: str, dataset: str, input_dir=None, working_dir=None) -> None:
    """The notebook's entry point: `run`, bad input as one `ERROR: ...` line and exit status 1."""
    try:
        run(competition, dataset, input_dir, working_dir)
    except InputError as e:
        print(f"ERROR: {e}", file=sys.stderr, flush=True)
        sys.exit(1)


def run(competition: str, dataset: str, input_dir: str | Path | None = None, working_dir: str | Path | None = None,
        device: str = "auto", workers: int | None = None) -> Path:
    """The notebook: check the environment and the dataset, predict the competition's test set with the
    dataset's ensemble (unreadable images: the training prior), write submission.csv."""
    import pandas as pd

    from kagglecv.scoring.submission import submission_frame

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    t0 = time.perf_counter()
    input_dir = Path(input_dir or os.environ.get("KAGGLE_INPUT", "/kaggle/input"))
    working_dir = Path(working_dir or os.environ.get("KAGGLE_WORKING", "/kaggle/working"))
    bundle = find_input(input_dir, dataset)
    manifest = rerun.read_manifest(KernelDatasetFiles(bundle).manifest)
    rerun.check_environment(manifest.get("environment"))
    rerun.verify_files(bundle, manifest, skip={KernelDatasetFiles.metadata})  # Kaggle keeps no metadata file
    settings = manifest.get("kernel_run", {})
    comp_dir = find_input(input_dir, competition)
    meta, scores = (json.loads(p.read_text()) for p in (Layout(bundle).meta, Layout(bundle).scores))
    working_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kagglecv-") as tmp:  # not in working/: it would become an output
        side, cfg, missing, meta_rows = read_test_set(comp_dir, meta, Path(tmp))
        ids = side.template.ids
        log_projection(settings.get("budget"), len(ids))
        cache = PreparedFiles(tmp).test_images
        bad = decode_test_set(side, cfg, meta, cache, workers or os.cpu_count() or 1)
        bad_rows = unreadable(missing, bad, ids, settings.get("max_bad_test_images", 0.0))
        probs, info = predict_test_set(bundle, cache, bad_rows, device, meta_rows)
        preds = pd.DataFrame(probs, columns=[f"p{k}" for k in range(probs.shape[1])])
        preds.insert(0, "id", ids)
        out = submission_frame(preds, meta, side.template.path, scores["metric"],
                               scores["ensemble"].get("thresholds"), source=f"{dataset} predictions")
    dest = KernelFiles(working_dir).submission
    write_csv(dest, out)  # as the workflow's submission step writes it
    seconds = time.perf_counter() - t0
    log.info("%s: %d rows written to %s in %.1f s (%.3g s per image; %s of %s); %d unreadable test image(s) "
             "predicted with the training prior", competition, len(out), dest, seconds, seconds / len(out),
             info["method"], ", ".join(info["members"]), len(bad_rows))
    return dest


def log_projection(plan: dict | None, rows: int) -> None:
    if plan:
        seconds = rows * plan["seconds_per_image"]
        end = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        log.info("%d test rows: projected ~%.0f s (%.3g s per image on a %s kernel, from snakemake kernel's "
                 "timings); ends ~%s UTC", rows, seconds, plan["seconds_per_image"], plan["target"],
                 end.strftime("%H:%M:%S"))
