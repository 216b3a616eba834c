"""Predict a folder of new images with the trained ensemble, exactly as the submission was predicted.

    kagglecv predict --results results/<competition> DIR      (or: snakemake predict --config predict_dir=DIR)

writes results/<competition>/predictions/<DIR's name>.csv (`image`, one probability column per class name,
`label`) and <DIR's name>.json (what was done: method, members, folds, skipped files, notes).

The same steps as the submission:
  * every image is decoded by the decoder that made the training cache (kagglecv.data.images.Decoder): upright,
    converted to its channels (L or RGB) and fitted to its height and width by the same `data.resize`;
  * each fold's model.pt is rebuilt with `models.build_model` from the config saved in it, and predicted with
    `train.predict_tta` (the same normalisation, input size, TTA preset, passes, beta and seeds);
  * the folds of a backbone are averaged, and the backbones are combined by the method scores.json says was
    chosen, with the parameters the ensemble step fitted and stored there (`ensemble.params`), never refitted.
  * as a consistency check, the recipe is also applied to the stored per-fold test.csv files and compared
    with ensemble_test.csv: a difference means the results folder is stale (noted, not fatal).

Files that cannot be read as images are listed by name (log, stderr and the JSON) and skipped. Hidden files
and sub-folders are ignored. TTA `augment` seeds each image's random views by its pixels, so an image gets the
same views here as in the test set. rank_mean ranks within the predicted folder, as it ranked within the test
set: predicting the test images gives the submission's numbers; any other folder, ranks among its own images.

`ensemble_predict` is also what the Kaggle kernel runs (kagglecv.kaggle.kernel): one implementation.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kagglecv.core.errors import InputError, first_line
from kagglecv.core.files import read_table, write_csv, write_json
from kagglecv.core.layout import Layout, ModelFiles
from kagglecv.core.results import PreparedMeta, Scores
from kagglecv.core.tasks import Task
from kagglecv.data.meta import MetaEncoder
from kagglecv.scoring.submission import decisions

log = logging.getLogger("kagglecv.inference.predict")


# ---------------------------------------------------------------- images


def load_folder(
    folder: str | Path, image_shape, resize: str = "squash", max_pixels: int | None = None
) -> tuple[list[str], np.ndarray, list[dict]]:
    """(names, uint8 N x H x W x C array, skipped [{file, reason}]) for the files directly in `folder`."""
    from kagglecv.data.images import Decoder

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder; give the folder of images to predict")
    h, w, c = (int(v) for v in image_shape)
    decode = Decoder(h, w, c == 1, resize, max_pixels)  # exactly the training cache's decoder
    names, arrays, skipped = [], [], []
    for p in sorted(folder.iterdir(), key=lambda p: p.name):
        if p.name.startswith(".") or not p.is_file():
            continue
        try:
            arr = decode(p, p.name)
        except InputError as e:
            reason = first_line(e.__cause__ or e)
            skipped.append({"file": p.name, "reason": reason})
            continue
        names.append(p.name)
        arrays.append(arr)
    images = np.stack(arrays) if arrays else np.zeros((0, h, w, c), dtype=np.uint8)
    return names, images, skipped


# ---------------------------------------------------------------- models


def load_fold_model(model_pt: str | Path, in_chans: int, device_pref: str = "auto"):
    """(model on its device, TrainConfig, data config, device, amp dtype, task) rebuilt from one fold's model.pt;
    a model built with metadata carries its fitted encoder as `model.kagglecv_meta` (kagglecv.data.meta)."""
    import torch

    from kagglecv.config.train import TrainConfig
    from kagglecv.core.devices import autocast_dtype, pick_device, place_model
    from kagglecv.core.tasks import Task
    from kagglecv.inference.models import build_model

    model_pt = Path(model_pt)
    if not model_pt.exists():
        raise InputError(f"{model_pt}: not found; run the workflow (its training jobs) first")
    saved = torch.load(model_pt, map_location="cpu", weights_only=True)
    resolved = saved["config"]
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    # weights come from model.pt: no pretrained download or file; the device is this machine's choice
    cfg = TrainConfig.from_dict(
        {
            **{k: v for k, v in resolved.items() if k in names},
            "pretrained": False,
            "pretrained_file": None,
            "device": device_pref,
        }
    )
    # the task's activation, with the target scale this fold trained on (numeric tasks)
    task = Task(resolved.get("task", "multiclass"), scale=tuple(resolved.get("target_scale", (0.0, 1.0))))
    encoder = MetaEncoder.from_json(resolved["meta_encoder"]) if resolved.get("meta_encoder") else None
    model, dc = build_model(
        cfg,
        int(resolved.get("n_outputs", resolved.get("n_classes", 0))),
        in_chans,
        encoder.width if encoder else 0,
        search=model_pt.parent.parent,
    )  # the backbone's folder
    model.load_state_dict(saved["state_dict"])
    model.kagglecv_meta = encoder
    dc = {"img_size": int(resolved["img_size"]), "mean": list(resolved["mean"]), "std": list(resolved["std"])}
    device = pick_device(cfg)
    model = place_model(model, device, cfg)
    model.eval()
    return model, cfg, dc, device, autocast_dtype(device, cfg), task


def backbone_probs(
    fold_dirs: list[Path],
    images: np.ndarray,
    device_pref: str = "auto",
    meta_rows: pd.DataFrame | None = None,
    rows=None,
    progress=None,
) -> tuple[np.ndarray, dict]:
    """The fold models' TTA probabilities for `rows` of `images` (all when None) averaged over folds (as
    ensemble.load_backbone averages test.csv); `meta_rows`: the images' raw metadata (`meta:<column>` columns, one
    row per image), for models built with it; `progress.update()` after each fold."""
    from kagglecv.inference.tta import predict_tta, resolve_tta

    per_fold, info = [], {}
    for d in fold_dirs:
        model, cfg, dc, device, amp, task = load_fold_model(ModelFiles(d).model, images.shape[-1], device_pref)
        p = predict_tta(
            model,
            images,
            cfg,
            dc,
            device,
            amp,
            rows=rows,
            task=task,
            meta=fold_meta(model.kagglecv_meta, meta_rows, len(images)),
        )
        # test.csv holds float32 values; average them in float64 as the ensemble step does after reading it
        per_fold.append(np.asarray(p, dtype=np.float32).astype(np.float64))
        info = {
            "tta": resolve_tta(cfg.tta, cfg.augment),
            "tta_n": cfg.tta_n,
            "tta_beta": cfg.tta_beta,
            "img_size": dc["img_size"],
            "device": str(device),
        }
        if progress is not None:
            progress.update()
    return np.mean(per_fold, axis=0), info


# ---------------------------------------------------------------- the ensemble recipe


def fold_dirs_of(results_dir: Path, scores: Scores, backbone: str) -> list[Path]:
    return [f.path for f in Layout(Path(results_dir)).folds_of(backbone, Scores.of(scores).n_folds(backbone))]


def ensemble_recipe(scores: Scores) -> tuple[str, list[str], object]:
    """(method, members, params for blend.apply) exactly as the ensemble step applied them to the test set:
    the fitted parameters are stored in scores.json (blend.to_json), never fitted again."""
    from kagglecv.scoring import blend

    scores = Scores.of(scores)
    ens = scores.ensemble
    method, members = ens.method, list(ens.members or scores.models)
    if blend.METHODS.get(method, (None,))[0] is not None and ens.params is None:
        raise InputError(
            f"scores.json: no fitted parameters for the ensemble method {method!r} (written by an "
            f"older version); rerun the ensemble step: snakemake --forcerun ensemble"
        )
    return method, members, blend.from_json(ens.params)


def apply_recipe(method: str, preds: list[np.ndarray], params, kind: str = "multiclass") -> np.ndarray:
    from kagglecv.scoring import blend

    return np.asarray(blend.apply(method, preds, params, kind=kind))


def fold_meta(encoder: MetaEncoder | None, meta_rows: pd.DataFrame | None, n: int) -> np.ndarray | None:
    """The metadata of `n` images as a fold's encoder encodes it; none for a model built without it."""
    if encoder is None:
        return None
    if meta_rows is None or len(meta_rows) != n:
        names = ", ".join(c["name"] for c in encoder.columns)
        raise InputError(
            f"this run's models read metadata beside the image ({names}, data.meta_columns): give "
            f"each image's values (predict --meta FILE.csv, or the competition's test CSV)"
        )
    return encoder.transform(meta_rows)


def ensemble_predict(
    results_dir: str | Path,
    images: np.ndarray,
    device: str = "auto",
    meta_rows: pd.DataFrame | None = None,
    rows=None,
    progress=None,
    scores: Scores | None = None,
) -> tuple[np.ndarray, dict]:
    """The ensemble's predictions for `rows` of `images` (all when None; uint8 N x H x W x C, decoded as the
    training cache was): every fold of every member with its TTA, folds averaged, members combined by the stored
    recipe. The one implementation behind `snakemake predict` and the Kaggle kernel (kagglecv.kaggle.kernel);
    `results_dir` is results/<competition> or a kernel dataset, which has the same layout. `meta_rows`: see
    backbone_probs; `progress.update()` after each fold of each member; `scores`: its scores.json, if read."""
    scores = Scores.read(Layout(Path(results_dir)).scores) if scores is None else scores
    method, members, params = ensemble_recipe(scores)
    read = predicted_members(method, members, params)
    preds, settings = {}, {}
    n = len(images) if rows is None else len(rows)
    for m in read:
        preds[m], settings[m] = backbone_probs(
            fold_dirs_of(results_dir, scores, m), images, device, meta_rows, rows, progress
        )
        log.info("%s: predicted %d image(s) with %d fold(s)", m, n, scores.n_folds(m))
    if skipped := [m for m in members if m not in preds]:
        log.info("not predicted (the %s recipe gives them no weight): %s", method, ", ".join(skipped))
    shape = next(iter(preds.values())).shape
    probs = apply_recipe(method, [preds.get(m, np.zeros(shape)) for m in members], params, scores.task)
    return probs, {
        "method": method,
        "members": members,
        "predicted": read,
        "preprocessing": settings,
        "folds": {m: scores.n_folds(m) for m in read},
    }


def predicted_members(method: str, members: list[str], params) -> list[str]:
    """The members whose predictions the recipe (ensemble_recipe) reads (blend.used), in its order."""
    from kagglecv.scoring import blend

    return [members[i] for i in blend.used(method, params, len(members))]


def check_against_submission(results_dir: Path, scores: Scores, method: str, members: list[str], params) -> dict:
    """Apply the recipe to the stored per-fold test.csv files and compare with ensemble_test.csv."""
    from kagglecv.scoring.ensemble import load_backbone, prob_columns

    try:
        tests = [load_backbone(fold_dirs_of(results_dir, scores, m))[1] for m in members]
        ens = read_table(Layout(results_dir).ensemble_test)
    except (OSError, KeyError, ValueError) as e:
        return {"checked": False, "reason": str(e)}
    ours = apply_recipe(method, [t[prob_columns(t)].to_numpy() for t in tests], params, Scores.of(scores).task)
    diff = float(np.max(np.abs(ours - ens[prob_columns(ens)].to_numpy()))) if len(ens) else 0.0
    return {"checked": True, "max_abs_diff": diff, "ok": diff < 1e-6}


# ---------------------------------------------------------------- entry points


def require_folder(folder) -> str:
    """The `predict` rule's folder (config predict_dir), or a clear error when it is not set."""
    if not folder:
        raise InputError(
            "predict: name the folder of images, e.g. snakemake predict --config predict_dir=path/to/images"
        )
    return str(folder)


def output_name(folder: str | Path) -> str:
    folder = Path(folder)
    return folder.name or folder.resolve().name


def read_meta_csv(path: str | Path, names: list[str], meta: PreparedMeta) -> pd.DataFrame | None:
    """The metadata of images `names` from a CSV whose first column holds their file names (or names without
    the extension) and then the run's data.meta_columns, as `meta:<column>` columns; None for a run without."""
    from kagglecv.data import meta as metadata
    from kagglecv.data.tables import read_csv

    columns = [c["name"] for c in PreparedMeta.of(meta).meta_columns]
    if not columns:
        return None
    if not path:
        return None  # ensemble_predict says what is missing
    table = read_csv(Path(path))
    key = table.columns[0]
    rows = {str(v): i for i, v in enumerate(table[key])}
    missing = [n for n in names if n not in rows and Path(n).stem not in rows]
    if missing:
        raise InputError(f"{path}: no row for image {missing[0]!r} in column {key!r}; list every image")
    for c in columns:
        if c not in table.columns:
            raise InputError(f"{path}: no column {c!r}; the run's models read {', '.join(columns)}")
    picked = table.iloc[[rows.get(n, rows.get(Path(n).stem)) for n in names]].reset_index(drop=True)
    return pd.DataFrame({metadata.column(c): picked[c] for c in columns})


def predict_folder(
    results_dir: str | Path,
    folder: str | Path,
    out_csv: str | Path | None = None,
    out_json: str | Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    meta_csv: str | Path | None = None,
) -> pd.DataFrame:
    """Predict every image in `folder` (with their metadata from `meta_csv` when the run's models read some);
    write the CSV and the JSON summary; return the predictions."""
    t0 = time.perf_counter()
    results_dir = Path(results_dir)
    name = output_name(folder)
    layout = Layout(results_dir)
    out_csv = Path(out_csv) if out_csv else layout.prediction(name)
    out_json = Path(out_json) if out_json else out_csv.with_suffix(".json")
    scores_path, meta_path = layout.scores, layout.meta
    for p in (scores_path, meta_path):
        if not p.exists():
            raise InputError(
                f"{p}: not found; run the workflow for this competition first "
                f"(--results points at results/<competition>)"
            )
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))
    scores = Scores.read(scores_path)
    meta = PreparedMeta.read(meta_path)
    classes = [str(c) for c in meta.classes]

    names, images, skipped = load_folder(
        folder, meta.image_shape, meta.cache.get("resize", "squash"), meta.cache.get("max_image_pixels")
    )
    if skipped:
        msg = f"{folder}: skipped {len(skipped)} unreadable file(s): " + "; ".join(
            f"{s['file']} ({s['reason']})" for s in skipped
        )
        log.warning(msg)
    if not names:
        raise InputError(
            f"{folder}: no readable image to predict"
            + (f" ({len(skipped)} unreadable file(s) skipped)" if skipped else "")
        )

    method, members, params = ensemble_recipe(scores)
    check, notes = check_against_submission(results_dir, scores, method, members, params), []
    if check.get("checked") and not check["ok"]:
        notes.append(
            f"the recipe applied to the stored test predictions differs from ensemble_test.csv by "
            f"{check['max_abs_diff']:.3g}: results/ may be stale; rerun the workflow"
        )
        log.warning(notes[-1])
    probs, info = ensemble_predict(results_dir, images, device, read_meta_csv(meta_csv, names, meta), scores=scores)

    task = Task.of(meta)
    columns = [c if c not in ("image", "label") else f"p_{c}" for c in classes] or ["value"]
    out = pd.DataFrame(probs, columns=columns)
    out.insert(0, "image", names)
    if task.kind != "regression":  # the submission's answer: class, tags at the fitted thresholds, or grade
        answer = decisions(
            task, probs, "tags" if task.kind == "multilabel" else "label", scores.metric, scores.ensemble.thresholds
        )
        out["label"] = (
            [" ".join(c for c, f in zip(classes, row) if f) for row in np.asarray(answer)]
            if task.kind == "multilabel"
            else answer
        )
    write_csv(out_csv, out)
    write_json(
        out_json,
        {
            "folder": str(folder),
            "n_images": len(names),
            "skipped": skipped,
            "csv": str(out_csv),
            **info,
            "classes": meta.classes,
            "image_shape": meta.image_shape,
            "notes": notes,
            "consistency_check": check,
            "seconds": round(time.perf_counter() - t0, 2),
        },
    )
    log.info("%d prediction(s) written to %s", len(out), out_csv)
    return out
