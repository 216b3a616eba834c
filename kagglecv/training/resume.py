"""Resuming a killed job from its last complete epoch (`resume.pt`), to end byte-identical to an uninterrupted one
on CPU: the checkpoint holds the weights, optimizers and schedules, the recipe's state, and every random state
the later epochs draw from. A checkpoint written for another config or other data is never resumed.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from kagglecv.core.files import atomic_path
from kagglecv.core.layout import PreparedFiles
from kagglecv.data.batches import rng_state, set_rng_state

if TYPE_CHECKING:
    from kagglecv.training.session import Session


def data_fingerprint(prepared: PreparedFiles, folds_csv, teacher_csv=None) -> str:
    """What a checkpoint was trained on: the content of folds.csv and the prepared tables, and the image cache
    files' size and modification time (rebuilding the cache changes them; hashing gigabytes every epoch would
    cost more than it saves)."""
    h = hashlib.sha256()
    for p in (Path(folds_csv), prepared.meta, prepared.train, *([Path(teacher_csv)] if teacher_csv else [])):
        h.update(p.read_bytes())
    for p in (prepared.train_images, prepared.test_images):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def save_resume(path: Path, epoch: int, history, s, resolved, fingerprint: str, recipe: dict | None = None) -> None:
    """End-of-epoch state of session `s`, so a killed job restarts from its last complete epoch and ends as an
    uninterrupted one would: weights, optimizers, schedules, the recipe's state, and every random state the next
    epochs draw from (torch's, numpy's, Python's, and the current stage's training batches' own: data.rng_state).
    Only tensors and plain values, so that it loads with weights_only=True (a checkpoint is never code)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "epoch": epoch,
        "history": history,
        "model": s.model.state_dict(),
        "scaler": s.scaler.state_dict(),
        "phases": [(p.optimizer.state_dict(), p.scheduler.state_dict() if p.scheduler else None) for p in s.phases],
        "ema": s.ema.state_dict() if s.ema is not None else None,
        "config": resolved,
        "data": fingerprint,
        "recipe": recipe,
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
        "batches_rng": {"stage": s.stage, **rng_state(s.train_batches)},
        "numpy_rng": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
    }
    with atomic_path(path, durable=False) as tmp:  # a torn checkpoint after a crash only means starting over
        torch.save(state, tmp)


def load_resume(path: Path, resolved, fingerprint: str, s) -> tuple[int, list, dict]:
    """(epochs already done, their history, the saved state) into session `s`; nothing when the config, the folds
    or the data changed since the checkpoint was written (the job then starts over)."""
    if not path.exists():
        return 0, [], {}
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unreadable or unsafe checkpoint: train from scratch
        print(f"{path}: cannot load the checkpoint ({type(e).__name__}); starting over", flush=True)
        return 0, [], {}
    saved = state.get("config") if isinstance(state.get("config"), dict) else {}
    checks = (
        (
            saved.get("factory_sha256"),
            resolved.get("factory_sha256"),  # the user's model code: said first
            f"other model code ({resolved.get('model')})",
        ),
        (state.get("config"), resolved, "another config"),
        (state.get("data"), fingerprint, "other data or folds"),
    )
    for then, now, what in checks:
        if then != now:
            print(f"{path}: saved with {what}; starting over", flush=True)
            return 0, [], {}
    misfit = not_fitting(state.get("model") or {}, s.model.state_dict()) or (
        not_fitting(state.get("ema") or {}, s.ema.state_dict()) if s.ema is not None and state.get("ema") else None
    )
    if misfit:
        print(f"{path}: saved for another model ({misfit}); starting over", flush=True)
        return 0, [], {}
    s.model.load_state_dict(state["model"]), s.scaler.load_state_dict(state["scaler"])
    restore_recipe(s, state.get("recipe"))  # the planned epochs first: the schedules are made for them
    for phase, (opt_state, sched_state) in zip(s.phases, state["phases"]):
        phase.optimizer.load_state_dict(opt_state)
        if sched_state is not None:
            if phase.scheduler is None:  # a later stage's: made as it was when the checkpoint was written
                phase.scheduler = phase.make(phase.optimizer, 1)
            phase.scheduler.load_state_dict(sched_state)
    if s.ema is not None and state["ema"] is not None:
        s.ema.load_state_dict(state["ema"])
    name, keys, pos, has_gauss, cached = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if state.get("python_rng") is not None:
        random.setstate(state["python_rng"])
    saved = state.get("batches_rng")
    if saved is not None and state["epoch"] < len(s.epochs) and s.epochs[state["epoch"]].stage == saved["stage"]:
        s.to_stage(saved["stage"])  # the next epoch goes on drawing from the batches the last one drew from
        set_rng_state(s.train_batches, saved)
    print(f"resuming from {path} after epoch {state['epoch']}", flush=True)
    return state["epoch"], state["history"], state


def not_fitting(saved: dict, current: dict) -> str | None:
    """Why weights `saved` do not load into a model whose state is `current` (a missing or extra tensor, another
    shape), else None: checked before anything is loaded, so the job can start over from its fresh model."""
    missing, extra = sorted(set(current) - set(saved)), sorted(set(saved) - set(current))
    if missing or extra:
        return f"{'no ' + missing[0] if missing else 'an extra ' + extra[0]} in the checkpoint"
    for name, t in current.items():
        if tuple(saved[name].shape) != tuple(t.shape):
            return f"{name}: {tuple(saved[name].shape)} in the checkpoint, {tuple(t.shape)} in the model"
    return None


def recipe_state(s: Session) -> dict:
    """What resuming needs beyond weights and optimizers: the planned epoch count, the time the epochs took (a
    time budget plans on from it), and the weight average."""
    return {
        "epochs": [p.epochs for p in s.phases],
        "budget": s.budget,
        "timing": s.timing,
        "average": s.average.state() if s.average is not None else None,
    }


def restore_recipe(s: Session, state: dict | None) -> None:
    if not state:
        return
    for phase, epochs in zip(s.phases, state["epochs"]):
        phase.epochs = epochs
    s.budget = state["budget"]
    s.timing = state.get("timing") or {}
    if s.average is not None:
        s.average.load(state["average"])
