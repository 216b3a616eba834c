"""The `tune:` section, validated as the workflow reads its config (rules/tune.smk), and what follows from it:
the study's name and storage, its sampler and pruner, and `applied` (tune.apply: best.yaml over its entry).

The study's name carries a hash of what a trial's value means (`Tuning.identity`: the entry's settings besides the
searched ones, the folds, metric, seed and task): change one and `snakemake tune` starts a new study in the same
storage, since values scored another way cannot guide the sampler. The space, sampler, pruner and trial count
are not in it: changing them continues the study.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from kagglecv.core.errors import InputError
from kagglecv.core.layout import TuneFiles
from kagglecv.tuning.space import NOT_SEARCHED, Param, parse_space


@dataclass(frozen=True)
class Tuning:
    competition: str
    backbone: str
    entry: dict  # the entry's settings (train: merged with its overrides), before tune.apply
    overrides: dict  # the entry as the config's backbones: list writes it, without its name
    space: tuple[Param, ...]
    trials: int
    folds: tuple[int, ...]
    baseline: bool
    sampler: str
    startup_trials: int
    pruner: str
    warmup_steps: int
    prune_on: str
    storage: str | None
    seed: int
    metric: str
    task: str

    @classmethod
    def of(cls, config: dict, schema: dict) -> Tuning:
        """The section of a resolved config (schema-valid), checked against the rest of it; InputError naming the
        key otherwise. An empty space is valid here (nothing to tune): the study's first job refuses it."""
        from kagglecv.config.members import backbone_settings

        t = config["tune"]
        entries = backbone_settings(config, schema)
        backbone = tuned_backbone(t, entries)
        entry = entries[backbone]
        space = parse_space(t["space"], entry, schema["properties"]["train"], backbone)
        if space and entry.get("lr") == "auto" and "lr" not in {p.setting for p in space}:
            raise InputError(f"tune.space: backbone {backbone!r} has lr: auto; search lr, or give the entry a number")
        bad = [k for k in t["folds"] if k >= config["folds"]]
        if bad:
            raise InputError(
                f"tune.folds: fold {bad[0]} does not exist with folds: {config['folds']} (0 to {config['folds'] - 1})"
            )
        if t["storage"] is not None and "://" not in t["storage"]:
            raise InputError("tune.storage: not a database URL (sqlite:///path.db, postgresql+psycopg://user@host/db)")
        return cls(
            config["competition"],
            backbone,
            entry,
            entry_overrides(config, backbone),
            space,
            t["trials"],
            tuple(t["folds"]),
            t["baseline"],
            t["sampler"],
            t["startup_trials"],
            t["pruner"],
            t["warmup_steps"],
            t["prune_on"],
            t["storage"],
            config["seed"] if t["seed"] is None else t["seed"],
            config["metric"],
            config["task"],
        )

    # ------------------------------------------------------------ the study

    def identity(self, train_defaults: dict) -> dict:
        """What a trial's value means: the entry's settings that differ from the schema's defaults (besides the
        searched and the scheduling ones), the folds, metric, seed and task. A rule param of every trial job."""
        searched = {p.setting for p in self.space if not p.in_model_args}
        args = {
            k: v
            for k, v in (self.entry.get("model_args") or {}).items()
            if k not in {p.setting for p in self.space if p.in_model_args}
        }
        settings = {
            k: v
            for k, v in {**self.entry, "model_args": args}.items()
            if k not in searched and k not in NOT_SEARCHED and v != train_defaults.get(k)
        }
        return {
            "competition": self.competition,
            "backbone": self.backbone,
            "settings": settings,
            "folds": list(self.folds),
            "metric": self.metric,
            "seed": self.seed,
            "task": self.task,
        }

    def study_name(self, train_defaults: dict) -> str:
        digest = hashlib.sha256(json.dumps(self.identity(train_defaults), sort_keys=True, default=str).encode())
        return f"{self.competition}.{self.backbone}.{digest.hexdigest()[:8]}"

    def storage_url(self, files: TuneFiles) -> str:
        """tune.storage, else the SQLite file under tune/ (an absolute path: every job, local or on a node of a
        shared filesystem, opens the same file)."""
        return self.storage or f"sqlite:///{Path(files.db).resolve()}"

    @property
    def direction(self) -> str:
        from kagglecv.scoring.metrics import greater_is_better

        return "maximize" if greater_is_better(self.metric) else "minimize"

    def sampler_for(self, slot: int, attempt: int):
        """The sampler of one trial job, seeded by tune.seed, the slot and the slot's attempt: every job is a new
        process, and one seed for all would draw the same random trials in each."""
        import numpy as np
        import optuna

        seed = int(np.random.SeedSequence([self.seed, slot, attempt]).generate_state(1)[0])
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(n_startup_trials=self.startup_trials, seed=seed)

    def make_pruner(self):
        import optuna

        if self.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_steps)
        if self.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto", reduction_factor=3)
        return optuna.pruners.NopPruner()


def tuned_backbone(tune: dict, entries: dict) -> str:
    """tune.backbone, or the first backbones entry; InputError when it names none of them."""
    name = tune["backbone"] or next(iter(entries))
    if name not in entries:
        raise InputError(f"tune.backbone: {name!r} is not a backbones entry (entries: {', '.join(entries)})")
    return name


def entry_overrides(config: dict, backbone: str) -> dict:
    """The backbones: item of `backbone` as the config writes it, without its name."""
    for item in config["backbones"]:
        item = {"name": item} if isinstance(item, str) else item
        if item["name"] == backbone:
            return {k: copy.deepcopy(v) for k, v in item.items() if k != "name"}
    raise InputError(f"tune.backbone: {backbone!r} is not a backbones entry")


# ---------------------------------------------------------------- tune.apply


def read_best(path: Path, backbone: str) -> dict:
    """best.yaml's entry for `backbone` (without its name); InputError naming the file otherwise."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
        entry = data["backbones"][0]
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError) as e:
        raise InputError(f"{path}: not a best.yaml of `snakemake tune` ({type(e).__name__}); run it again") from None
    if not isinstance(entry, dict) or entry.get("name") != backbone:
        raise InputError(f"{path}: its entry is not backbone {backbone!r} (tune.backbone); run `snakemake tune` again")
    return {k: v for k, v in entry.items() if k != "name"}


def applied(backbones: dict[str, dict], config: dict, layout, schema: dict) -> dict[str, dict]:
    """`backbones` ({name: settings}, kagglecv.config.backbone_settings) with tune.apply: tune/best.yaml's entry laid
    over tune.backbone's settings, key by key (model_args merged), and validated; unchanged otherwise."""
    t = config["tune"]
    if not t["apply"]:
        return backbones
    import jsonschema

    name = tuned_backbone(t, backbones)
    best = layout.tune.best
    if not best.exists():
        raise InputError(
            f"tune.apply: true, but {best} does not exist yet: run `snakemake tune --config "
            f"tune='{{apply: false}}'` first"
        )
    tuned = read_best(best, name)
    merged = {**backbones[name], **tuned}
    if isinstance(tuned.get("model_args"), dict):
        merged["model_args"] = {**(backbones[name].get("model_args") or {}), **tuned["model_args"]}
    try:
        jsonschema.validate(merged, schema["properties"]["train"])
    except jsonschema.ValidationError as e:
        raise InputError(f"{best}: backbone {name!r}: {e.message}") from None
    return {**backbones, name: merged}
