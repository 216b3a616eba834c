"""The notebook of a code competition: what runs on Kaggle, on the hidden test set, with the internet off.

`kernel_code` is the notebook's script, which the kernel builder (kagglecv.kaggle.kernel) writes: it installs
the dataset's wheels offline when kagglecv is missing, then calls `main`.
`run` is the rest of the notebook. Before it decodes anything it prints the versions it runs with and checks them
against the tested ones, each dataset file against the manifest and the free disk. It reads the competition's test side
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
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kagglecv.core.errors import InputError
from kagglecv.core.files import write_csv
from kagglecv.core.layout import KernelDatasetFiles, KernelFiles, Layout, PreparedFiles
from kagglecv.core.results import PreparedMeta, Scores
from kagglecv.kaggle import rerun

log = logging.getLogger("kagglecv.kaggle.notebook")


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
    the versions it was built with, which no offline index holds: it installs without them (kagglecv.kaggle.notebook
    then checks the versions it needs, naming any wheel to add); the others install with their dependencies, found in
    wheels/ or already installed."""
    # where kagglecv.kaggle.notebook.find_input looks: it cannot be imported before it is installed
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

from kagglecv.kaggle.notebook import main  # noqa: E402

main(COMPETITION, DATASET, INPUT, WORKING)
'''


def find_input(input_dir: Path, name: str) -> Path:
    """<input>/<name>, as Kaggle mounts a competition or dataset; also one or two levels deeper
    (e.g. <input>/competitions/<name>, <input>/datasets/<owner>/<name>)."""
    input_dir = Path(input_dir)
    for candidate in [input_dir / name, *sorted(input_dir.glob(f"*/{name}")), *sorted(input_dir.glob(f"*/*/{name}"))]:
        if candidate.is_dir():
            return candidate
    present = sorted(p.name for p in input_dir.iterdir()) if input_dir.is_dir() else []
    raise InputError(
        f"{input_dir}/{name}: not found (present: {present or 'nothing'}); attach it to the "
        f"notebook, or point KAGGLE_INPUT at the folder holding it"
    )


def read_test_set(competition_dir: Path, meta: PreparedMeta, scratch: Path):
    """(the competition's test side, its DataConfig, [(id, why)] of the ids without an image, the test rows'
    metadata as prediction reads it (`meta:<column>` columns, from the hidden test CSV) or None), read as meta.json
    describes it (the layout prepare recognised, the file names it used): nothing of the training side, which a
    hidden rerun does not have."""
    from kagglecv.config.data import DataConfig
    from kagglecv.data.archive import unpacked
    from kagglecv.data.competition import read_test_side
    from kagglecv.data.meta import read_test_meta
    from kagglecv.data.tables import find_root

    meta = PreparedMeta.of(meta)
    cfg = DataConfig.of(meta.data)
    if cfg.layout == "auto":  # meta.json of an older version: the setting, not the layout found
        cfg = dataclasses.replace(cfg, layout=meta.layout)
    # some competitions mount train.zip/test.zip as they ship them: unpacked into scratch, the input is read-only
    root = find_root(unpacked(Path(competition_dir), Path(scratch) / "competition")[0], cfg)
    missing: list = []
    _, side = read_test_side(root, cfg, missing=missing)
    rows = read_test_meta(root, cfg, side.template, missing=missing)  # an id without metadata: the prior
    if rows is not None:
        from kagglecv.data.meta import column, report_unparsed

        for spec in meta.meta_columns:  # values of a number column that are not numbers: missing
            if spec["kind"] == "number":
                report_unparsed(rows[spec["name"]], spec["name"], cfg.test_table)
        rows = rows.rename(columns=column)
    return side, cfg, missing, rows


def decode_test_set(side, cfg, meta: PreparedMeta, cache: Path, workers: int) -> list[tuple[int, str, str]]:
    """Decode the test images into `cache` exactly as prepare decoded the workflow's (same decoder and shape);
    [(row, id, why)] of those that could not be read (zero rows in the cache)."""
    from kagglecv.data import images
    from kagglecv.data.pixels import PixelRows
    from kagglecv.data.prepare import write_images

    ids = side.template.ids
    h, w, c = (int(v) for v in PreparedMeta.of(meta).image_shape)
    rerun.check_disk(
        cache.parent, len(ids) * h * w * c + (64 << 20), f"the decoded test set ({len(ids):,} images of {h}x{w}x{c})"
    )
    decoder = images.Decoder(h, w, c == 1, cfg.resize, cfg.max_image_pixels)
    bad: list = []
    with images.Pool(workers) as pool:
        if isinstance(side.images, PixelRows):
            write_images(cache, side.images, ids, decoder, pool, "decode test")
        else:
            images.write_cache(
                cache,
                side.images,
                ids,
                decoder,
                pool,
                progress=rerun.Progress("decode test", len(ids), "images"),
                bad=bad,
            )
    return bad


def unreadable(missing: list, bad: list, ids: list[str], limit: float) -> list[int]:
    """The rows predicted with the prior (no image, one that could not be read, or no metadata row), each logged;
    more than `limit` (kaggle.max_bad_test_images, a fraction of the rows) is an error."""
    row, found = {i: k for k, i in enumerate(ids)}, {}
    for k, i, why in [(row[i], i, why) for i, why in missing] + list(bad):  # one row may lack image and metadata
        found[k] = (k, i, f"{found[k][2]}; {why}" if k in found else why)
    found = sorted(found.values())
    for k, i, why in found:
        log.warning("test id %r (row %d): %s; predicted with the training prior", i, k + 2, why)
    if len(found) > limit * len(ids):
        raise InputError(
            f"kernel: {len(found)} of {len(ids)} test images have no readable image, more than "
            f"kaggle.max_bad_test_images ({limit:g} of the rows); first: {found[0][1]!r} "
            f"({found[0][2]}); check the decoder's settings (meta.json) against the hidden images"
        )
    return [k for k, _, _ in found]


def predict_test_set(bundle: Path, scores: Scores, cache: Path, bad_rows: list[int], device: str, meta_rows=None):
    """The ensemble's predictions of every row of `cache`; rows in `bad_rows` get the training labels' prior."""
    import numpy as np

    from kagglecv.data.batches import open_cache
    from kagglecv.inference.predict import ensemble_predict, ensemble_recipe, predicted_members

    images = open_cache(cache)
    prior = np.asarray(json.loads(KernelDatasetFiles(bundle).prior.read_text())["prior"], dtype=np.float64)
    probs = np.tile(prior, (len(images), 1))
    good = np.setdiff1d(np.arange(len(images)), bad_rows)
    passes = sum(scores.n_folds(m) for m in predicted_members(*ensemble_recipe(scores)))
    info = {"method": scores.ensemble.method, "members": []}
    if len(good):
        progress = rerun.Progress("predict", passes, "fold passes")
        probs[good], info = ensemble_predict(
            bundle, images, device, meta_rows, rows=good if bad_rows else None, progress=progress, scores=scores
        )
    return probs, info


def main(competition: str, dataset: str, input_dir=None, working_dir=None) -> None:
    """The notebook's entry point: `run`, bad input as one `ERROR: ...` line and exit status 1."""
    try:
        run(competition, dataset, input_dir, working_dir)
    except InputError as e:
        print(f"ERROR: {e}", file=sys.stderr, flush=True)
        sys.exit(1)


def run(
    competition: str,
    dataset: str,
    input_dir: str | Path | None = None,
    working_dir: str | Path | None = None,
    device: str = "auto",
    workers: int | None = None,
) -> Path:
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
    meta, scores = PreparedMeta.read(Layout(bundle).meta), Scores.read(Layout(bundle).scores)
    working_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kagglecv-") as tmp:  # not in working/: it would become an output
        side, cfg, missing, meta_rows = read_test_set(comp_dir, meta, Path(tmp))
        ids = side.template.ids
        log_projection(settings.get("budget"), len(ids))
        cache = PreparedFiles(tmp).test_images
        bad = decode_test_set(side, cfg, meta, cache, workers or os.cpu_count() or 1)
        bad_rows = unreadable(missing, bad, ids, settings.get("max_bad_test_images", 0.0))
        probs, info = predict_test_set(bundle, scores, cache, bad_rows, device, meta_rows)
        preds = pd.DataFrame(probs, columns=[f"p{k}" for k in range(probs.shape[1])])
        preds.insert(0, "id", ids)
        out = submission_frame(
            preds, meta, side.template.path, scores.metric, scores.ensemble.thresholds, source=f"{dataset} predictions"
        )
    dest = KernelFiles(working_dir).submission
    write_csv(dest, out)  # as the workflow's submission step writes it
    seconds = time.perf_counter() - t0
    log.info(
        "%s: %d rows written to %s in %.1f s (%.3g s per image; %s of %s); %d unreadable test image(s) "
        "predicted with the training prior",
        competition,
        len(out),
        dest,
        seconds,
        seconds / len(out),
        info["method"],
        ", ".join(info["members"]),
        len(bad_rows),
    )
    return dest


def log_projection(plan: dict | None, rows: int) -> None:
    if plan:
        seconds = rows * plan["seconds_per_image"]
        end = datetime.now(UTC) + timedelta(seconds=seconds)
        log.info(
            "%d test rows: projected ~%.0f s (%.3g s per image on a %s kernel, from snakemake kernel's "
            "timings); ends ~%s UTC",
            rows,
            seconds,
            plan["seconds_per_image"],
            plan["target"],
            end.strftime("%H:%M:%S"),
        )
