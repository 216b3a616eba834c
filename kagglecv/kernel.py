"""Code competitions: the trained ensemble as a Kaggle notebook that predicts the hidden test set.

Kaggle scores a code competition by running a notebook on its hidden test set with the internet off, so
everything the notebook needs comes from a dataset attached to it. `build` (the `kernel` rule) writes both:

  results/<competition>/kernel-dataset/   what `kaggle datasets create|version -p` uploads; a small results
      dataset-metadata.json                 folder, so predict's code reads it as it reads results/<competition>:
      scores.json                           the ensemble: members, method, its fitted params, thresholds
      prepared/meta.json                    classes, task, image shape, how the competition is read (meta.data)
      models/<backbone>/fold<k>/            model.pt (weights + resolved config) and config.json of every fold
      wheels/                               kagglecv's wheel (+ kaggle.kernel_wheels): installed offline
      manifest.json                         every file with its size and sha256, and what built it
  results/<competition>/kernel/           what `kaggle kernels push -p` uploads
      kernel-metadata.json                  competition_sources, dataset_sources, enable_internet false, enable_gpu
      kernel.py                             the code_file: calls `run` below

`run` is the notebook: it reads the competition's test images exactly as `prepare` did (same reader, same
decoder, same cache shape), predicts them with `predict.ensemble_predict` (the code behind `snakemake
predict`: every fold and backbone, the same TTA, seeded per image, and the stored ensemble) and writes the
submission with `submission.submission_frame` (the workflow's own). Inputs come from $KAGGLE_INPUT (default
/kaggle/input: the competition and the dataset under their slugs), the output goes to $KAGGLE_WORKING
(default /kaggle/working), so the same code runs here and on Kaggle.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .errors import InputError
from .fsutil import file_sha256, write_csv, write_json
from .layout import KernelDatasetFiles, KernelFiles, Layout, ModelFiles, PreparedFiles

log = logging.getLogger("kagglecv.kernel")

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
    kaggle.json places are the client's, as kagglecv.secrets lists them."""
    from .secrets import json_values, kaggle_config_dirs

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
    """The notebook (a script kernel): install the wheels offline if kagglecv is missing, then `run`."""
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

if importlib.util.find_spec("kagglecv") is None:  # internet is off: the wheels come with the dataset
    wheels = sorted(str(p) for p in (INPUT / DATASET / "wheels").glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", *wheels],
                   check=True)

from kagglecv.kernel import run  # noqa: E402

run(COMPETITION, DATASET, INPUT, WORKING)
'''


def build(results_dir: str | Path, dataset_dir: str | Path, kernel_dir: str | Path, *, competition: str,
          repo: str | Path, owner: str | None = None, dataset: str | None = None, kernel: str | None = None,
          enable_gpu: bool = True, wheels: list[str] | None = None, max_bytes: int | None = None,
          is_private: bool = True) -> dict:
    """Write the kernel dataset and the kernel folders for the finished run in `results_dir`; return the
    manifest. Both folders are written to temporary names and renamed into place: never half-written."""
    layout = Layout(Path(results_dir))
    dataset_dir, kernel_dir = Path(dataset_dir), Path(kernel_dir)
    for p in (layout.scores, layout.meta):
        if not p.is_file():
            raise InputError(f"{p}: not found; run the workflow first (snakemake), then snakemake kernel")
    scores, meta = json.loads(layout.scores.read_text()), json.loads(layout.meta.read_text())
    if "data" not in meta:
        raise InputError(f"{layout.meta}: written by an older version (no `data` settings); "
                         f"rerun it: snakemake --forcerun prepare")
    from .predict import ensemble_recipe

    method, members, _ = ensemble_recipe(scores)  # refuses a scores.json without the fitted params
    owner = owner or credential_username() or DEFAULT_OWNER
    dataset, kernel = slug(dataset or default_slug(competition)), slug(kernel or default_slug(competition))
    ds_tmp, k_tmp = (Path(tempfile.mkdtemp(dir=d.parent, prefix=f".{d.name}-")) for d in (dataset_dir, kernel_dir))
    try:
        out = Layout(ds_tmp)
        write_json(out.scores, scores)
        write_json(out.meta, meta)
        for m in members:
            for k, d in enumerate(layout.folds_of(m, len(scores["models"][m]["folds"]))):
                for name in FOLD_FILES:
                    if not (d.path / name).is_file():
                        raise InputError(f"{d.path / name}: not found; rerun the training job of {m} fold {k}")
                    _place(d.path / name, out.model(m, k).path / name)
        ds = KernelDatasetFiles(ds_tmp)
        build_wheel(repo, ds.wheels)
        for w in wheels or []:
            w = Path(w)
            if not w.is_file() or w.suffix != ".whl":
                raise InputError(f"kaggle.kernel_wheels: {w} is not a wheel file; list .whl files (e.g. from "
                                 f"`pip download --no-deps -d wheels/ albumentations==2.0.8`)")
            shutil.copyfile(w, ds.wheels / w.name)
        write_json(ds.metadata, {"title": dataset, "id": f"{owner}/{dataset}",
                                               "licenses": [{"name": "CC0-1.0"}]})
        files = sorted(p for p in ds_tmp.rglob("*") if p.is_file())
        manifest = {"competition": competition, "dataset": f"{owner}/{dataset}", "kernel": f"{owner}/{kernel}",
                    "method": method, "members": members,
                    "files": {p.relative_to(ds_tmp).as_posix(): {"bytes": p.stat().st_size,
                                                                 "sha256": file_sha256(p)} for p in files}}
        manifest["bytes"] = sum(f["bytes"] for f in manifest["files"].values())
        write_json(ds.manifest, manifest)
        try:  # a warning here (submit refuses to upload it): `submit` builds these folders for file competitions too
            check_size(ds_tmp, max_bytes)
        except InputError as e:
            log.warning("%s", str(e).replace(str(ds_tmp), str(dataset_dir)))

        nb = KernelFiles(k_tmp)
        nb.code.write_text(kernel_code(competition, dataset))
        write_json(nb.metadata, {
            "id": f"{owner}/{kernel}", "title": kernel, "code_file": KernelFiles.code, "language": "python",
            "kernel_type": "script", "is_private": is_private, "enable_gpu": bool(enable_gpu),
            "enable_internet": False, "dataset_sources": [f"{owner}/{dataset}"],
            "competition_sources": [competition], "kernel_sources": [], "model_sources": []})
        for tmp, final in ((ds_tmp, dataset_dir), (k_tmp, kernel_dir)):
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
    finally:
        for tmp in (ds_tmp, k_tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("kernel dataset %s (%d files, %.1f MB) in %s; kernel %s in %s", manifest["dataset"],
             len(manifest["files"]), manifest["bytes"] / 1e6, dataset_dir, manifest["kernel"], kernel_dir)
    return manifest


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
    from .archive import safe_extract

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


def read_test_set(competition_dir: Path, meta: dict, cache: Path, workers: int) -> tuple[list[str], Path]:
    """Decode the competition's test images into `cache` exactly as prepare decoded the workflow's (same
    reader, settings, decoder and shape); return their ids in cache order and the submission template."""
    from . import images
    from .prepare import DataConfig, find_root, read_competition, write_images

    cfg = DataConfig(**meta["data"])
    root = find_root(unpacked(Path(competition_dir), Path(cache).parent / "competition"), cfg)
    comp = read_competition(root, cfg)
    if not comp.test_ids:
        raise InputError(f"{root}: no test images found; is this the competition's data?")
    h, w, c = (int(v) for v in meta["image_shape"])
    decoder = images.Decoder(h, w, c == 1, cfg.resize, cfg.max_image_pixels)
    with images.Pool(workers) as pool:
        write_images(cache, comp.test_images, comp.test_ids, decoder, pool, "decode test")
    return list(comp.test_ids), root / cfg.sample_submission


def run(competition: str, dataset: str, input_dir: str | Path | None = None, working_dir: str | Path | None = None,
        device: str = "auto", workers: int | None = None) -> Path:
    """The notebook: predict the competition's test set with the dataset's ensemble; write submission.csv."""
    import pandas as pd

    from .data import open_cache
    from .predict import ensemble_predict
    from .submission import submission_frame

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    t0 = time.perf_counter()
    input_dir = Path(input_dir or os.environ.get("KAGGLE_INPUT", "/kaggle/input"))
    working_dir = Path(working_dir or os.environ.get("KAGGLE_WORKING", "/kaggle/working"))
    bundle, comp_dir = find_input(input_dir, dataset), find_input(input_dir, competition)
    layout = Layout(bundle)
    meta, scores = json.loads(layout.meta.read_text()), json.loads(layout.scores.read_text())
    working_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kagglecv-") as tmp:  # not in working/: it would become an output
        cache = PreparedFiles(tmp).test_images
        ids, sample = read_test_set(comp_dir, meta, cache, workers or os.cpu_count() or 1)
        log.info("%s: %d test images decoded to %s", competition, len(ids), tuple(meta["image_shape"]))
        probs, info = ensemble_predict(bundle, open_cache(cache), device)
        preds = pd.DataFrame(probs, columns=[f"p{k}" for k in range(probs.shape[1])])
        preds.insert(0, "id", ids)
        out = submission_frame(preds, meta, sample, scores["metric"], scores["ensemble"].get("thresholds"),
                               source=f"{dataset} predictions")  # the template may lie in an unpacked zip
    dest = KernelFiles(working_dir).submission
    write_csv(dest, out)  # as the workflow's submission step writes it
    log.info("%s: %d rows written to %s in %.1f s (%s of %s)", competition, len(out), dest,
             time.perf_counter() - t0, info["method"], ", ".join(info["members"]))
    return dest

