"""The results files other steps read, typed: one reader each, so a key is spelled once and a file written by an
older version (without keys added since) reads the same everywhere.

  PreparedMeta   prepared/meta.json (kagglecv.data.prepare): the task, the classes, how the competition was read
                 and decoded; everything after prepare reads the task from it
  Scores         scores.json (kagglecv.scoring.ensemble.combine): every model's and method's CV, and the
                 `Ensemble` predict and the Kaggle kernel apply
  ModelRecord    a model folder's config.json and metrics.json (kagglecv.training): what one training job was
                 told and what it measured

`read(path)` reads the file (a missing one is one line naming it); `of(d)` builds one from its dict, every key
optional: the files of older versions, hand-made dicts (tests) and prepare's return value alike. `of` returns an
instance as it is: a function that takes a meta or scores calls it first and accepts either. `to_dict()` is the
dict again, its keys in the order the writer writes them, for a copy that must be written anew (the kernel's
student-only scores.json); a copy of the run's own file is copied, byte for byte.
Nothing heavy here (json, dataclasses, the layout's names): the Kaggle notebook imports this before torch.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from kagglecv.core.errors import InputError
from kagglecv.core.layout import ModelFiles


def _read(path, advice: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found; {advice}")
    return json.loads(path.read_text())


def _fields(cls, d: dict | None) -> dict:
    """`cls`'s fields from `d`: a key missing from it, or written as null, takes the field's default (what a file
    without it meant: `meta.get("submission") or {}` once at every reader); a key `cls` does not know is left out."""
    d, empty = d or {}, cls()
    return {f.name: getattr(empty, f.name) if d.get(f.name) is None else d[f.name] for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class PreparedMeta:
    """prepared/meta.json. The defaults are what a meta.json without the key meant: versions before data.meta_columns,
    data.group_column, the data description (`data`), the submission plan, archives, cache and decode timings."""

    layout: str | None = None
    id_column: str | None = None
    target_columns: list = field(default_factory=list)
    classes: list = field(default_factory=list)  # class / label names, ordinal grades; regression: none
    task: str = "multiclass"
    group_column: str | None = None
    meta_columns: list = field(default_factory=list)  # data.meta_columns' specs (kagglecv.data.meta)
    data: dict = field(default_factory=dict)  # the filled-in data description (DataConfig.of reads it)
    submission: dict = field(default_factory=dict)  # {format, top_k, range} (scoring.submission.plan_submission)
    archives: list = field(default_factory=list)
    n_train: int = 0
    n_test: int = 0
    image_shape: list = field(default_factory=list)  # [h, w, c] of the cache
    cache: dict = field(default_factory=dict)  # side, resize, max_image_pixels, distinct_sizes, smallest, largest
    decode: dict = field(default_factory=dict)  # workers, seconds, images_per_s, total_seconds

    @classmethod
    def read(cls, path) -> PreparedMeta:
        return cls.of(_read(path, "run the workflow first (its prepare step: snakemake)"))

    @classmethod
    def of(cls, d: dict | PreparedMeta) -> PreparedMeta:
        return d if isinstance(d, cls) else cls(**_fields(cls, d))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Ensemble:
    """scores.json's `ensemble`: the recipe predict and the kernel apply. params: the chosen method's fitted
    parameters (blend.to_json), None for a method that fits none; thresholds: per-label thresholds or ordinal
    cut points fitted on OOF, None where the metric decides nothing."""

    method: str | None = None
    chosen_by: str | None = None
    members: list = field(default_factory=list)
    cv: float | None = None
    params: object = None
    thresholds: list | None = None

    @classmethod
    def of(cls, d: dict | Ensemble | None) -> Ensemble:
        return d if isinstance(d, cls) else cls(**_fields(cls, d))

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        if self.thresholds is None:  # written only where the metric needs them
            del out["thresholds"]
        return out


@dataclass(frozen=True)
class Scores:
    """scores.json. models: {backbone: {cv, folds}}; methods: {method: {cv, folds, params}}."""

    metric: str | None = None
    greater_is_better: bool = True
    task: str = "multiclass"
    models: dict = field(default_factory=dict)
    methods: dict = field(default_factory=dict)
    ensemble: Ensemble = field(default_factory=Ensemble)

    @classmethod
    def read(cls, path) -> Scores:
        return cls.of(_read(path, "run the workflow first (its ensemble step: snakemake)"))

    @classmethod
    def of(cls, d: dict | Scores) -> Scores:
        return d if isinstance(d, cls) else cls(**{**_fields(cls, d), "ensemble": Ensemble.of(d.get("ensemble"))})

    def to_dict(self) -> dict:
        return {
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
            "ensemble": self.ensemble.to_dict(),
        }

    def n_folds(self, model: str) -> int:
        """How many folds `model` was scored on: the fold folders of it that predict and the kernel read."""
        return len(self.models[model]["folds"])


@dataclass(frozen=True)
class ModelRecord:
    """One model folder's config.json (the settings and what they resolved to) and metrics.json (what the job
    measured: scores, seconds, device)."""

    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    @classmethod
    def read(cls, path) -> ModelRecord:
        """The records of the model folder `path` (models/<backbone>/fold<k>)."""
        files, advice = ModelFiles(path), "run the workflow first (its training job of this fold)"
        return cls(config=_read(files.config, advice), metrics=_read(files.metrics, advice))

    @classmethod
    def of(cls, d: dict | ModelRecord) -> ModelRecord:
        return d if isinstance(d, cls) else cls(**_fields(cls, d))

    def to_dict(self) -> dict:
        return {"config": self.config, "metrics": self.metrics}
