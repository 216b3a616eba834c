"""TrainConfig: the settings one training job computes with, what training builds from and inference rebuilds from.

A backbone entry merged over `train:` (kagglecv.config.members.members), plus what the job adds (its name, fold, the
run's seed and metric). Every key is described, with its default, in schemas/config.schema.yaml's `train` section;
the fields below take their defaults from there (`default_of`) and spell none of their own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kagglecv.config.schema import default_of
from kagglecv.core.errors import InputError


@dataclass
class TrainConfig:
    backbone: str  # the entry's name: a timm model name unless `model` says otherwise
    model: str | None = default_of("train.model")
    model_args: dict = default_of("train.model_args")
    head: str = default_of("train.head")
    gpus: int = default_of("train.gpus")
    fold: int = 0
    seed: int = default_of("seed")
    metric: str = default_of("metric")
    epochs: int = default_of("train.epochs")
    batch_size: int = default_of("train.batch_size")
    lr: float | str = default_of("train.lr")  # "auto": lr_find's suggestion, resolved by training (`with_lr`)
    weight_decay: float = default_of("train.weight_decay")
    pct_start: float = default_of("train.pct_start")
    div_factor: float = default_of("train.div_factor")
    final_div_factor: float = default_of("train.final_div_factor")
    moms: tuple[float, float, float] = default_of("train.moms")
    img_size: int | None = default_of("train.img_size")
    pretrained: bool = default_of("train.pretrained")
    pretrained_file: str | None = default_of("train.pretrained_file")
    augment: str = default_of("train.augment")
    tta: str = default_of("train.tta")
    tta_n: int = default_of("train.tta_n")
    tta_beta: float = default_of("train.tta_beta")
    label_smoothing: float = default_of("train.label_smoothing")
    mixup_alpha: float = default_of("train.mixup_alpha")
    cutmix_alpha: float = default_of("train.cutmix_alpha")
    ema_decay: float = default_of("train.ema_decay")
    precise_bn: int = default_of("train.precise_bn")
    stages: list = default_of("train.stages")
    time_budget: float | None = default_of("train.time_budget")
    valid_every: int = default_of("train.valid_every")
    average: str = default_of("train.average")
    average_epochs: int = default_of("train.average_epochs")
    grad_accum: int = default_of("train.grad_accum")
    freeze_epochs: int = default_of("train.freeze_epochs")
    lr_mult: float = default_of("train.lr_mult")
    lr_groups: int = default_of("train.lr_groups")
    data_path: str = default_of("train.data_path")
    drop_rate: float = default_of("train.drop_rate")
    amp: bool = default_of("train.amp")
    amp_dtype: str = default_of("train.amp_dtype")
    channels_last: bool | None = default_of("train.channels_last")
    num_workers: int | None = default_of("train.num_workers")
    threads: int | None = default_of("train.threads")
    device: str = default_of("train.device")
    extra: dict = default_of("train.extra")

    def __post_init__(self):
        self.moms = tuple(self.moms)  # a YAML list in the config; a tuple in config.json and model.pt as always

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"train config: unknown key(s) {unknown}; known keys: {sorted(names)}")
        lr = d.get("lr", 0.0)
        if lr != "auto" and (isinstance(lr, bool) or not isinstance(lr, (int, float))):
            raise InputError(f"train.lr: {lr!r}; give a number or auto (lr_find's suggestion)")
        return cls(**d)


STAGE_KEYS = ("img_size", "epochs", "lr", "batch_size")


def check_settings(cfg: TrainConfig) -> None:
    """Settings of one job that do not go together. The job refuses them before it builds anything, and the
    workflow when it reads its config (kagglecv.config.checks): `snakemake -n` refuses what a job would."""
    if cfg.average not in ("none", "last_k"):
        raise InputError(f"train.average: {cfg.average!r}; use none or last_k")
    if cfg.average == "last_k" and cfg.ema_decay > 0:
        raise InputError("train.average: last_k and train.ema_decay both choose the weights to predict with; set one")
    if cfg.time_budget and (cfg.freeze_epochs or cfg.gpus > 1):
        raise InputError(
            "train.time_budget: not with freeze_epochs or gpus > 1 (the epoch count is planned from "
            "one process's plain schedule); set epochs instead"
        )
    check_stages(cfg)
    factory = ":" in str(cfg.model or "") or str(cfg.model or "").endswith(".py")
    if factory and cfg.head != "linear":
        raise InputError(
            f"backbones: {cfg.backbone}: head: {cfg.head} is for timm bodies; a factory builds "
            "its own head (use head: linear)"
        )


def check_stages(cfg: TrainConfig) -> None:
    """train.stages (progressive resizing): each stage names img_size and epochs; not with freeze_epochs or
    time_budget."""
    if not cfg.stages:
        return
    if cfg.freeze_epochs or cfg.time_budget:
        raise InputError("train.stages: set their epochs and sizes only, not freeze_epochs or time_budget with them")
    for k, st in enumerate(cfg.stages):
        unknown = set(st) - set(STAGE_KEYS)
        if unknown or "img_size" not in st or "epochs" not in st:
            raise InputError(
                f"train.stages[{k}]: {st}: each stage names img_size and epochs (lr, batch_size "
                f"optional){f'; unknown: {sorted(unknown)}' if unknown else ''}"
            )


def check_mixup(cfg: TrainConfig, task: str | None = None, meta: bool = False, teacher: bool = False) -> None:
    """Mixup (train.mixup_alpha/cutmix_alpha) mixes images and their class labels: not with a task that has no
    classes (`task`: its kind, None when not known yet), metadata beside the image, or a teacher's targets."""
    if not (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0):
        return
    from kagglecv.core.tasks import CLASSIFICATION

    if task is not None and task != "auto" and task not in CLASSIFICATION:
        raise InputError(
            f"train.mixup_alpha/cutmix_alpha: mixup mixes class targets; this is a {task} task, set them to 0"
        )
    if meta:
        raise InputError(
            "train.mixup_alpha/cutmix_alpha: mixup mixes images, not their metadata; with "
            "data.meta_columns set them to 0"
        )
    if teacher:
        raise InputError(
            "train.mixup_alpha/cutmix_alpha: mixup mixes class labels, not the teachers' targets; set "
            "them to 0 with pseudo_labels or distill"
        )
