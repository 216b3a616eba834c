"""A job's session: everything one training job trains with, built in the order that fixes its random draws,
and the final weights it predicts with."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import timm
import torch

from kagglecv.config.train import TrainConfig, check_settings
from kagglecv.core.devices import autocast_dtype, inputs, pick_device, place_model
from kagglecv.data.batches import loader_workers, use_device_path
from kagglecv.inference.models import build_model, check_forward, forward
from kagglecv.inference.tta import resolve_tta
from kagglecv.training import distributed
from kagglecv.training.averaging import AVERAGE_BN_BATCHES, WeightAverage, precise_bn
from kagglecv.training.fold import Fold, fold_batches, load_fold
from kagglecv.training.schedule import Phase, Stage, optimizer_steps, plan_phases, stages_of


def setup_model(cfg: TrainConfig, n_outputs: int, in_chans: int, n_meta: int = 0):
    """(model on its device, data config, device, autocast dtype)."""
    device = pick_device(cfg)
    model, dc = build_model(cfg, n_outputs, in_chans, n_meta)
    return place_model(model, device, cfg), dc, device, autocast_dtype(device, cfg)


@dataclass
class Session:
    """Everything one job trains with, built in the order that fixes its random draws (see `start`)."""

    cfg: TrainConfig
    data: Fold
    model: torch.nn.Module  # on its device; `trained` is what the optimizer steps (DDP wraps it across processes)
    trained: torch.nn.Module
    dc: dict  # input size and normalisation of the current stage (the last one's after training)
    device: torch.device
    amp_dtype: torch.dtype | None
    on_device: bool  # the device data path (data.DeviceBatches) rather than a DataLoader
    train_batches: object  # the current stage's
    val_batches: object
    phases: list[Phase]
    scaler: torch.amp.GradScaler
    stages: list[Stage]
    ema: object | None = None  # timm.utils.ModelEmaV3
    mixup: object | None = None  # timm.data.Mixup
    average: WeightAverage | None = None  # train.average: last_k
    stage: int = 0  # the stage the batches and dc are for
    budget: dict = field(default_factory=dict)  # train.time_budget: what was planned and spent
    timing: dict = field(default_factory=dict)  # the epochs' seconds so far and each validation pass's (resumed too)

    @property
    def final(self) -> torch.nn.Module:
        """What predicts: the EMA weights when kept, else the model."""
        return self.ema.module if self.ema else self.model

    @property
    def epochs(self) -> list[Phase]:
        """The phase of each epoch (its count may change once: train.time_budget)."""
        return [p for p in self.phases for _ in range(p.epochs)]

    def batches(self, shard: bool = True) -> tuple:
        """(training batches, validation batches) of the current stage."""
        cfg = dataclasses.replace(self.cfg, batch_size=self.stages[self.stage].batch_size)
        return fold_batches(cfg, self.data, self.dc, self.device, self.on_device, shard)

    def to_stage(self, stage: int) -> None:
        if stage != self.stage:
            self.stage = stage
            self.dc = {**self.dc, "img_size": self.stages[stage].img_size}
            self.train_batches, self.val_batches = self.batches()

    def enter(self, phase: Phase) -> None:
        """The batches, input size and schedule of the phase's stage (progressive resizing)."""
        self.to_stage(phase.stage)
        phase.schedule(optimizer_steps(self.cfg, len(self.train_batches)))


def check_recipe(cfg: TrainConfig) -> None:
    """Settings that do not go together, refused before anything is built (the workflow refuses them earlier,
    when it reads its config: kagglecv.config.checks)."""
    check_settings(cfg)


def start(cfg: TrainConfig, prepared_dir, folds_csv, test_bytes: int, teacher_csv=None) -> Session:
    """The job's data, model, batches and optimizers. The order is the job's seed order: the fold's seeds, then the
    model's initial weights, then everything else; changing it changes every result."""
    check_recipe(cfg)
    data = load_fold(cfg, prepared_dir, folds_csv, teacher_csv)
    model, dc, device, amp_dtype = setup_model(cfg, data.task.outputs, data.images.shape[-1], data.n_meta)
    stages = stages_of(cfg, dc["img_size"])
    for size in sorted({st.img_size for st in stages} - {dc["img_size"]}):  # every stage's size, before any epoch
        check_forward(model, cfg, data.images.shape[-1], size, data.task.outputs, data.n_meta)
    dc = {**dc, "img_size": stages[0].img_size}
    on_device = use_device_path(cfg.data_path, device, data.images.nbytes + test_bytes)
    first = dataclasses.replace(cfg, batch_size=stages[0].batch_size)
    train_batches, val_batches = fold_batches(first, data, dc, device, on_device)
    phases = plan_phases(model, cfg, len(train_batches), stages if cfg.stages else None)
    scaler = torch.amp.GradScaler(enabled=amp_dtype == torch.float16)
    ema = timm.utils.ModelEmaV3(model, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
    mixup = (
        timm.data.Mixup(
            mixup_alpha=cfg.mixup_alpha,
            cutmix_alpha=cfg.cutmix_alpha,
            label_smoothing=cfg.label_smoothing,
            num_classes=data.task.outputs,
        )
        if cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0
        else None
    )
    average = WeightAverage(cfg.average_epochs) if cfg.average == "last_k" else None
    return Session(
        cfg,
        data,
        model,
        distributed.wrap(model),
        dc,
        device,
        amp_dtype,
        on_device,
        train_batches,
        val_batches,
        phases,
        scaler,
        stages,
        ema,
        mixup,
        average,
    )


def resolved_config(s: Session) -> dict:
    """config.json: the settings and what they resolved to here (also inside model.pt: predict rebuilds from it).
    img_size is the last stage's: what the model predicts at."""
    from kagglecv.config.factories import factory_sha256

    cfg, data = s.cfg, s.data
    code = factory_sha256(cfg.model)  # the user's model code: an edit is another model (kagglecv.config.factories)
    return {
        **dataclasses.asdict(cfg),
        **s.dc,
        "img_size": s.stages[-1].img_size,
        "device": str(s.device),
        "amp_dtype_used": str(s.amp_dtype),
        "tta_used": resolve_tta(cfg.tta, cfg.augment),
        "channels_last_used": bool(getattr(s.model, "kagglecv_channels_last", False)),
        "data_path_used": "device" if s.on_device else "loader",
        "num_workers_used": 0 if s.on_device else loader_workers(cfg.num_workers, cfg.threads, s.device),
        "n_train": len(data.tr_idx),
        "n_valid": len(data.va_idx),
        "task": data.task.kind,
        "n_outputs": data.task.outputs,
        "target_scale": list(data.task.scale),  # predict.py rebuilds the task's activation from these
        **({"factory_sha256": code} if code else {}),
        **({"meta_encoder": data.encoder.to_json()} if data.encoder else {}),  # and the metadata's encoding
        **({"teacher_rows": len(data.train_rows) - len(data.tr_idx)} if data.train_rows is not None else {}),
    }


def finish(s: Session) -> dict:
    """The final weights: averaged (train.average), then batch norm recomputed for them (train.precise_bn; always
    after averaging). What was done, for metrics.json."""
    averaged = s.average.apply(s.model) if s.average is not None else 0
    bn_batches = max(s.cfg.precise_bn, AVERAGE_BN_BATCHES if averaged else 0)

    def run_batch(x):
        x, meta = inputs(s.final, x, s.device)
        with torch.autocast(s.device.type, dtype=s.amp_dtype, enabled=s.amp_dtype is not None):
            forward(s.final, x, meta)

    # every row of a batch, as one process trains (several processes each trained on their share)
    batches = s.train_batches if distributed.world() == 1 else s.batches(shard=False)[0]
    return {"averaged_epochs": averaged, "precise_bn_batches": precise_bn(s.final, batches, run_batch, bn_batches)}
