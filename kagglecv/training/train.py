"""Train one (backbone, fold): timm model by name, albumentations, one-cycle, AMP on GPU, TTA.

The task (kagglecv.core.tasks) sets the head's width, the loss and what a prediction is: softmax probabilities
(binary, multiclass: cross-entropy), sigmoid probabilities (multilabel: BCE per label), or values (regression,
ordinal: Huber on standardised targets).

Writes into `out_dir`: oof.csv and test.csv (predictions, columns p0..), metrics.json, config.json,
history.csv (one row per epoch) and model.pt. Every file is written atomically.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kagglecv.config.train import TrainConfig
from kagglecv.core.devices import is_main, world
from kagglecv.core.files import atomic_path, read_table, write_csv, write_json
from kagglecv.core.gpus import lease_gpu
from kagglecv.core.layout import ModelFiles, PreparedFiles, record_file
from kagglecv.core.results import ModelRecord
from kagglecv.data.batches import open_cache
from kagglecv.inference.tta import predict, predict_tta
from kagglecv.scoring import metrics
from kagglecv.tracking.tracker import Tracker
from kagglecv.training import distributed
from kagglecv.training.budget import plan_budget, replan_budget
from kagglecv.training.loop import train_epoch
from kagglecv.training.lr_finder import with_lr
from kagglecv.training.resume import data_fingerprint, load_resume, recipe_state, save_resume
from kagglecv.training.schedule import set_frozen
from kagglecv.training.session import Session, finish, resolved_config, start

_IMPORTED = time.perf_counter()


def process_seconds() -> float:
    """Seconds since this process started: interpreter and imports included (Linux /proc), else since this
    module was imported. What a job costs besides its epochs is this minus the epochs' time."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime, in clock ticks
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


def fit(s: Session, history: list, start_epoch: int, log_epoch, n_test: int = 0) -> None:
    """Train the epochs not done yet; after each, `log_epoch(epoch, row)` (only the main process validates)."""
    cfg, data = s.cfg, s.data
    epoch, t_fit = start_epoch, time.perf_counter()
    # each validation pass's seconds, for the time budget's plans, and the seconds of the epochs before a resume
    valid_seconds: list[float] = list(s.timing.get("valid_seconds", []))
    before = float(s.timing.get("seconds", 0.0))
    while epoch < len(s.epochs):
        t0, phase = time.perf_counter(), s.epochs[epoch]
        s.enter(phase)
        set_frozen(s.model, phase.frozen)
        loss, img_s = train_epoch(
            s.trained,
            s.train_batches,
            phase,
            s.scaler,
            s.device,
            s.amp_dtype,
            cfg,
            ema=s.ema,
            mixup=s.mixup,
            task=data.task,
            desc=f"{cfg.backbone} fold {cfg.fold} epoch {epoch + 1}/{len(s.epochs)}",
        )
        if not math.isfinite(loss):
            raise RuntimeError(
                f"{cfg.backbone} fold {cfg.fold}: training loss is {loss} at epoch {epoch + 1}; lower train.lr"
            )
        if s.average is not None:  # a time budget's count may change: the average keeps the last epochs done
            s.average.update(s.model, epoch + 1, None if cfg.time_budget else len(s.epochs))
        epoch += 1
        if not is_main():
            continue
        row = {"epoch": epoch, "train_loss": loss}
        if epoch == 1 or epoch % cfg.valid_every == 0 or epoch == len(s.epochs):  # the first: the budget's plan
            t_val, y_va = time.perf_counter(), data.y[data.va_idx]
            probs = predict(s.final, s.val_batches, s.device, s.amp_dtype, task=data.task)
            valid_seconds.append(time.perf_counter() - t_val)
            if cfg.time_budget and epoch == 1:
                plan_budget(s, time.perf_counter() - t_fit, t_val - t0, valid_seconds, n_test)
            row |= {
                "valid_loss": data.task.valid_loss(y_va, probs),
                f"valid_{cfg.metric}": metrics.score(cfg.metric, y_va, probs, grades=data.task.grades),
            }
        row |= {"lr": phase.scheduler.get_last_lr()[-1], "seconds": time.perf_counter() - t0, "img_per_s": img_s}
        history.append(row)
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        # a resumed job plans on from the epochs before the kill (s.timing); the last epoch but one keeps the plan:
        # cut then, it would end before its anneal
        s.timing = {"seconds": before + time.perf_counter() - t_fit, "valid_seconds": valid_seconds}
        if cfg.time_budget and 1 < epoch < len(s.epochs) - 1:
            replan_budget(s, s.timing["seconds"], epoch, valid_seconds)
        log_epoch(epoch, row)  # after the plan: the resume checkpoint holds the schedule the next epoch follows


def run(
    cfg: TrainConfig,
    prepared_dir: str | Path,
    folds_csv: str | Path,
    out_dir: str | Path,
    experiment: str = "default",
    results_dir: str | Path = "results",
    track: bool = True,
    teacher_csv: str | Path | None = None,
    on_epoch=None,
    lr_find: str | Path | None = None,
) -> dict:
    """Train one (backbone, fold) and write its outputs (ModelFiles) into `out_dir`; its metrics.json. With
    `teacher_csv` (kagglecv.training.teachers), its training rows include what the teachers labelled.
    `on_epoch(epoch, row)`: called in the main process after each epoch's history row (with
    `valid_<metric>` when the epoch was validated) and its resume checkpoint; what it raises stops the job
    (a tuning trial's pruner, kagglecv.tuning). `lr_find`: the backbone's lr_find.json, for train.lr: auto."""
    cfg = with_lr(cfg, lr_find)
    if cfg.gpus > 1 and world() == 1:
        return run_distributed(
            cfg, prepared_dir, folds_csv, out_dir, experiment, results_dir, track, teacher_csv, on_epoch
        )
    prepared, out, main = PreparedFiles(prepared_dir), ModelFiles(out_dir), is_main()
    test_images, test_table = open_cache(prepared.test_images), read_table(prepared.test)
    s = start(cfg, prepared_dir, folds_csv, test_images.nbytes, teacher_csv)
    resolved = resolved_config(s)
    if main:
        write_json(out.config, resolved)
    # Not a declared output: survives a killed job, and is removed once the job has finished.
    fingerprint = data_fingerprint(prepared, folds_csv, teacher_csv)
    start_epoch, history, _ = load_resume(out.resume, resolved, fingerprint, s)
    run_name = f"{cfg.backbone}-fold{cfg.fold}"
    with Tracker(
        experiment,
        run_name,
        results_dir,
        enabled=track and main,
        record=record_file(out.path, run_name),
        tags={"step": "train", "backbone": cfg.backbone, "fold": str(cfg.fold)},
    ) as tracker:
        tracker.log_params(resolved)
        for row in history:  # epochs done before a resume: this run (and its record) holds the whole history
            tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        t_start, startup = time.perf_counter(), process_seconds()  # startup: imports, data, model, tracking

        def log_epoch(epoch: int, row: dict) -> None:
            tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
            save_resume(out.resume, epoch, history, s, resolved, fingerprint, recipe_state(s))
            if on_epoch is not None:
                on_epoch(epoch, row)

        fit(s, history, start_epoch, log_epoch, len(test_table))
        if not main:
            return {}
        done = finish(s)
        train_seconds = time.perf_counter() - t_start
        result = write_outputs(s, out, history, resolved, test_images, test_table) | done
        # Everything but the epochs (make bench's target: a few seconds per job): before the first batch,
        # the TTA passes, and the rest (writing outputs, tracking).
        result |= {
            "train_seconds": train_seconds,
            "startup_seconds": round(startup, 2),
            "fixed_seconds": round(process_seconds() - train_seconds, 2),
            # when the job's process ran (Unix time): which jobs shared the machine
            "started_at": round(time.time() - process_seconds(), 2),
            "finished_at": round(time.time(), 2),
        }
        if s.budget:  # planned against spent: the epochs, the final predictions, and both together
            result["time_budget"] = {
                **s.budget,
                "used_seconds": round(time.perf_counter() - t_start, 2),
                "epochs": len(history),
            }
        print(
            f"job time besides the epochs: {result['fixed_seconds']:.1f} s (start-up {startup:.1f} s, "
            f"TTA {result['tta_seconds']:.1f} s)",
            flush=True,
        )
        write_json(out.metrics, result)
        out.resume.unlink(missing_ok=True)
        tracker.log_metrics(
            {
                "cv_fold": result["score"],
                "cv_fold_no_tta": result["score_no_tta"] or 0.0,
                **(
                    {
                        "budget_planned_seconds": s.budget["planned_seconds"],
                        "budget_used_seconds": result["time_budget"]["used_seconds"],
                    }
                    if s.budget
                    else {}
                ),
            }
        )
        for path in (out.metrics, out.config, out.history):
            tracker.log_artifact(path)
    return result


def write_outputs(s: Session, out: ModelFiles, history: list, resolved: dict, test_images, test_table) -> dict:
    """The TTA predictions of the held-out rows and of the test set, the history and the weights; the result."""
    cfg, data = s.cfg, s.data
    va_idx, y_va = data.va_idx, data.y[data.va_idx]
    test_meta = None if data.encoder is None else data.encoder.transform(test_table)
    t_tta = time.perf_counter()
    oof = predict_tta(
        s.final, data.images, cfg, s.dc, s.device, s.amp_dtype, s.on_device, rows=va_idx, task=data.task, meta=data.meta
    )
    test = predict_tta(
        s.final, test_images, cfg, s.dc, s.device, s.amp_dtype, s.on_device, task=data.task, meta=test_meta
    )
    tta_seconds = time.perf_counter() - t_tta
    cols = [f"p{k}" for k in range(data.task.outputs)]
    oof_df = pd.DataFrame(oof, columns=cols)
    oof_df.insert(0, "fold", cfg.fold), oof_df.insert(0, "y", data.folds["y"].to_numpy()[va_idx])
    oof_df.insert(0, "id", data.folds["id"].to_numpy()[va_idx])
    test_df = pd.DataFrame(test, columns=cols)
    test_df.insert(0, "id", test_table["id"].to_numpy())
    write_csv(out.oof, oof_df)
    write_csv(out.test, test_df)
    write_csv(out.history, pd.DataFrame(history))
    with atomic_path(out.model) as tmp:
        torch.save({"state_dict": s.final.state_dict(), "config": resolved}, tmp)
    return {
        "backbone": cfg.backbone,
        "fold": cfg.fold,
        "metric": cfg.metric,
        "score": metrics.score(cfg.metric, y_va, oof, grades=data.task.grades),
        "score_no_tta": history[-1][f"valid_{cfg.metric}"] if history else None,
        "valid_loss": data.task.valid_loss(y_va, oof),
        "device": str(s.device),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # which GPU lease this job held
        "img_per_s": float(np.mean([h["img_per_s"] for h in history])) if history else None,
        "tta_seconds": round(tta_seconds, 2),
        "processes": world(),
    }


def run_distributed(
    cfg: TrainConfig, prepared_dir, folds_csv, out_dir, experiment, results_dir, track, teacher_csv=None, on_epoch=None
) -> dict:
    """`run` in one process per device (kagglecv.training.distributed), after leasing the devices; the main process's
    result. `on_epoch` is called here, in the launching process, with process 0's rows (distributed.EpochRelay)."""
    if cfg.device != "cpu":
        lease_gpu(count=cfg.gpus)  # CUDA_VISIBLE_DEVICES for the processes (Slurm's, when it set them)
    args = (cfg, prepared_dir, folds_csv, out_dir, experiment, results_dir, track, teacher_csv)
    if on_epoch is None:
        distributed.launch(cfg.gpus, run, *args)
        return ModelRecord.read(out_dir).metrics
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    fd, rows = tempfile.mkstemp(dir=out_dir, prefix=".epochs-", suffix=".jsonl")  # not an output: removed below
    os.close(fd)
    relay = distributed.EpochRelay(rows, on_epoch)
    try:
        distributed.launch(cfg.gpus, run, *args, relay, while_running=relay.deliver)
    finally:
        Path(rows).unlink(missing_ok=True)
    return ModelRecord.read(out_dir).metrics
