"""The network of a backbone entry: a timm name, or a factory of the user's; a head; metadata beside the image.

    backbones:
      - resnet18                                          timm by name, its own classifier (head: linear)
      - {name: effnet_gem, model: efficientnet_b0, head: gem}           timm body, GeM pooling with a learned p
      - {name: mynet, model: "nets/mynet.py:build", model_args: {width: 32}}     the user's code
    data:
      meta_columns: [sex, age_approx]                     an MLP over these beside the pooled image features

A factory is `file.py:function` (a path, relative to the working directory or absolute) or `package.module:function`
(importable). It is called as `function(num_outputs=, in_chans=, pretrained=, img_size=, **model_args)` and returns
an `nn.Module` mapping N x in_chans x img_size x img_size images to N x num_outputs. With metadata it is called with
num_outputs=0 and must return pooled features (N x F), as timm models do for num_classes=0.

Every place that builds a model (train, lr_find, predict, the report's runs, the Kaggle kernel) calls `build_model`
with the resolved config saved beside the weights, so a model is rebuilt exactly as it was trained. The output
width is checked with one forward pass before any epoch: a wrong factory is a one-line error naming the entry.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from kagglecv.core.errors import InputError, first_line

HEADS = ("linear", "gem", "multi_dropout")
MULTI_DROPOUT = (5, 0.5)  # masks averaged, dropout rate of each: the usual multi-sample dropout of Kaggle heads
GEM_P = 3.0  # GeM's initial p: between average (1) and max (inf) pooling, the retrieval papers' start
META_HIDDEN = 64  # width of the metadata MLP: a handful of columns needs no more
FUSION_HIDDEN = 256  # width of the layer over [image features, metadata features] before the head


# ---------------------------------------------------------------- factories


def load_factory(ref: str, entry: str, search: Path | None = None):
    """The callable `ref` names ("path/to/file.py:build" or "package.module:build"). A file is taken from `search`
    when it holds one of its name (a kernel dataset's backbone folder carries it, with the modules it imports, as
    they were when the weights were trained), else from where the reference says. Its folder goes on sys.path, so
    that it imports the modules beside it as when it is run from there."""
    where, sep, attr = str(ref).rpartition(":")
    if not sep or not where or not attr:
        raise InputError(f"backbones: {entry}: model {ref!r} is not FILE.py:FUNCTION or MODULE:FUNCTION")
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser().resolve()
            if search is not None and (Path(search) / path.name).is_file():
                path = (Path(search) / path.name).resolve()
            if not path.is_file():
                raise InputError(
                    f"backbones: {entry}: model file {where} not found (relative to the working "
                    f"directory, {Path.cwd()}); fix the path"
                )
            if str(path.parent) not in sys.path:
                sys.path.insert(0, str(path.parent))
            name = f"kagglecv_user_models.{path.stem}_{abs(hash(str(path))):x}"
            module = sys.modules.get(name)
            if module is None:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
        factory = getattr(module, attr)
    except InputError:
        raise
    except AttributeError:
        raise InputError(
            f"backbones: {entry}: {where} has no {attr!r}; name the function that builds the model"
        ) from None
    except Exception as e:  # noqa: BLE001 - the user's module may fail in any way while importing
        raise InputError(
            f"backbones: {entry}: cannot import model {ref!r} ({type(e).__name__}: {first_line(e, empty='')})"
        ) from e
    if not callable(factory):
        raise InputError(f"backbones: {entry}: {ref!r} is not callable")
    return factory


# ---------------------------------------------------------------- heads


class GeM(nn.Module):
    """Generalised-mean pooling over the feature map, p learned: (mean x^p)^(1/p)."""

    def __init__(self, p: float = GEM_P, eps: float = 1e-6):
        super().__init__()
        self.p, self.eps = nn.Parameter(torch.tensor(float(p))), eps

    def forward(self, x):
        if x.ndim != 4:
            raise InputError(
                f"head: gem pools a convolutional feature map (N x C x H x W); this body gives "
                f"{tuple(x.shape)}: use head: linear or multi_dropout"
            )
        return x.float().clamp(min=self.eps).pow(self.p).mean((-2, -1)).pow(1.0 / self.p).to(x.dtype)


class MultiDropout(nn.Module):
    """The classifier applied under several dropout masks and averaged: faster, steadier training of the head
    (in eval mode dropout is off, so it is the plain linear layer)."""

    def __init__(self, n_in: int, n_out: int, samples: int = MULTI_DROPOUT[0], p: float = MULTI_DROPOUT[1]):
        super().__init__()
        self.fc, self.drops = nn.Linear(n_in, n_out), nn.ModuleList(nn.Dropout(p) for _ in range(samples))

    def forward(self, x):
        if not self.training:
            return self.fc(x)
        return torch.stack([self.fc(d(x)) for d in self.drops]).mean(0)


def meta_mlp(n_meta: int) -> nn.Module:
    """The metadata branch: two layers, normalised, as the ISIC winners fused patient data with the CNN."""
    return nn.Sequential(
        nn.Linear(n_meta, META_HIDDEN),
        nn.BatchNorm1d(META_HIDDEN),
        nn.SiLU(),
        nn.Dropout(0.2),
        nn.Linear(META_HIDDEN, META_HIDDEN),
        nn.BatchNorm1d(META_HIDDEN),
        nn.SiLU(),
    )


def fusion_mlp(width: int) -> nn.Module:
    """Image features and metadata features, concatenated, through one hidden layer before the head."""
    return nn.Sequential(nn.Linear(width, FUSION_HIDDEN), nn.BatchNorm1d(FUSION_HIDDEN), nn.SiLU())


class Net(nn.Module):
    """A body giving pooled features (or a feature map, pooled by `pool`), optionally metadata features beside
    them, and a head. forward(x) or forward(x, meta)."""

    def __init__(
        self,
        body: nn.Module,
        n_features: int,
        n_outputs: int,
        head: str = "linear",
        pool: nn.Module | None = None,
        n_meta: int = 0,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        self.body, self.pool = body, pool or nn.Identity()
        self.meta = meta_mlp(n_meta) if n_meta else None
        # With metadata, a hidden layer over the concatenation: a linear head over [image, meta] can only add the
        # two (a logit from the image plus one from the metadata) and misses a target that depends on both at
        # once, e.g. a body site that changes what a lesion's look means.
        self.fuse = fusion_mlp(n_features + META_HIDDEN) if n_meta else None
        width = FUSION_HIDDEN if n_meta else n_features
        self.drop = nn.Dropout(drop_rate)
        self.head = MultiDropout(width, n_outputs) if head == "multi_dropout" else nn.Linear(width, n_outputs)

    def get_classifier(self) -> nn.Module:
        """What fastai's fine_tune trains first (train.plan_phases): the head, the fusion layer, the metadata branch."""
        return nn.ModuleList([m for m in (self.head, self.fuse, self.meta, self.pool) if m is not None])

    def forward(self, x, meta=None):
        f = self.pool(self.body(x))
        if self.meta is not None:
            if meta is None:
                raise ValueError("this model was built with metadata columns: call it as model(images, meta)")
            f = self.fuse(torch.cat([f, self.meta(meta.to(f.dtype))], 1))
        return self.head(self.drop(f))


# ---------------------------------------------------------------- building


def timm_model(cfg, pretrained: bool, **kw):
    """timm.create_model for the entry: its timm name (`model:`, else the entry's name), its model_args (over the
    older `extra`) and local weights."""
    import timm

    from kagglecv.config.members import model_kwargs

    kw |= model_kwargs({"extra": cfg.extra, "model_args": cfg.model_args})
    if cfg.pretrained_file:
        kw["pretrained_cfg_overlay"] = dict(file=str(Path(cfg.pretrained_file).resolve()))
    name = cfg.model or cfg.backbone
    try:
        return timm.create_model(name, pretrained=pretrained, **kw)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise InputError(f"backbones: unknown timm model {name!r}; see timm.list_models()") from e
        raise


def create(cfg, n_outputs: int, in_chans: int, n_meta: int = 0, search: Path | None = None) -> nn.Module:
    """The network `cfg` (a TrainConfig) describes, untrained (or with its pretrained weights); `search`: where
    else a factory's file may be (load_factory)."""
    pretrained = cfg.pretrained or bool(cfg.pretrained_file)
    if cfg.pretrained_file and not Path(cfg.pretrained_file).exists():
        raise InputError(
            f"{cfg.pretrained_file}: pretrained weights for {cfg.backbone} not found; "
            "fix pretrained_file or set pretrained: false"
        )
    if cfg.head not in HEADS:
        raise InputError(f"backbones: {cfg.backbone}: head {cfg.head!r} is not one of {', '.join(HEADS)}")
    if cfg.model and (":" in cfg.model or cfg.model.endswith(".py")):  # the user's factory (a file needs :FUNCTION)
        factory = load_factory(cfg.model, cfg.backbone, search)
        if cfg.head != "linear":
            raise InputError(
                f"backbones: {cfg.backbone}: head: {cfg.head} is for timm bodies; a factory builds "
                "its own head (use head: linear)"
            )
        kw = dict(
            num_outputs=0 if n_meta else n_outputs,
            in_chans=in_chans,
            pretrained=pretrained,
            img_size=cfg.img_size,
            **cfg.model_args,
        )
        try:
            model = factory(**kw)
        except Exception as e:  # noqa: BLE001 - the user's code
            raise InputError(
                f"backbones: {cfg.backbone}: model {cfg.model} failed to build ({type(e).__name__}: "
                f"{first_line(e, empty='')})"
            ) from e
        if not isinstance(model, nn.Module):
            raise InputError(
                f"backbones: {cfg.backbone}: model {cfg.model} returned {type(model).__name__}, not a torch.nn.Module"
            )
        return Net(model, feature_width(model, cfg, in_chans), n_outputs, n_meta=n_meta) if n_meta else model
    if cfg.head == "linear" and not n_meta:  # timm's own model, classifier and all
        return timm_model(cfg, pretrained, num_classes=n_outputs, in_chans=in_chans, drop_rate=cfg.drop_rate)
    body = timm_model(cfg, pretrained, num_classes=0, in_chans=in_chans)  # pooled features
    if cfg.head == "gem":  # the unpooled feature map, pooled by GeM
        body.reset_classifier(0, global_pool="")
    return Net(
        body, body.num_features, n_outputs, cfg.head, GeM() if cfg.head == "gem" else None, n_meta, cfg.drop_rate
    )


def feature_width(model: nn.Module, cfg, in_chans: int) -> int:
    """The width of what a factory model returns for one image (with metadata it must be pooled features)."""
    side = cfg.img_size or 224
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(2, in_chans, side, side))
    if out.ndim != 2:
        raise InputError(
            f"backbones: {cfg.backbone}: with data.meta_columns the model must return pooled "
            f"features N x F when called with num_outputs=0; it returned {tuple(out.shape)}"
        )
    return int(out.shape[1])


def data_config(model: nn.Module, cfg, in_chans: int) -> dict:
    """Input size and normalisation: the model's timm data config (factories without one: timm's defaults),
    the input size overridden by img_size; grey images get the channel means."""
    import timm

    from kagglecv.config.members import explicit_input_size

    inner = model.body if isinstance(model, Net) else model
    dc = timm.data.resolve_model_data_config(inner)
    size = explicit_input_size({"img_size": cfg.img_size, "extra": cfg.extra, "model_args": cfg.model_args})
    size = size or dc["input_size"][-1]
    mean, std = list(dc["mean"]), list(dc["std"])
    if in_chans == 1:  # grayscale: one channel with the average statistics
        mean, std = [float(np.mean(mean))], [float(np.mean(std))]
    return {"img_size": int(size), "mean": mean, "std": std}


def check_forward(model: nn.Module, cfg, in_chans: int, size: int, n_outputs: int, n_meta: int) -> None:
    """One batch through the model before any epoch: a size it cannot take, or a factory giving the wrong width,
    fails now with the fix named rather than deep inside the first epoch."""
    model.eval()
    x = torch.zeros(2, in_chans, size, size)
    try:
        with torch.no_grad():
            out = model(x, torch.zeros(2, n_meta)) if n_meta else model(x)
    except RuntimeError as e:
        raise InputError(
            f"backbones: {cfg.backbone} cannot take {size}x{size} input ({first_line(e)}); "
            f"raise img_size for this backbone"
        ) from e
    if tuple(out.shape) != (2, n_outputs):
        what = f"model {cfg.model}" if cfg.model else cfg.backbone
        raise InputError(
            f"backbones: {cfg.backbone}: {what} gives outputs of shape {tuple(out.shape[1:])} for one "
            f"image, the task needs ({n_outputs},); build it with num_outputs={n_outputs}"
        )


def build_model(
    cfg, n_outputs: int, in_chans: int, n_meta: int = 0, search: Path | None = None
) -> tuple[nn.Module, dict]:
    """(the model, the input size and normalisation to feed it), checked with one forward pass."""
    try:
        model = create(cfg, n_outputs, in_chans, n_meta, search)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - hub/network errors come in many types
        if not (cfg.pretrained or cfg.pretrained_file):
            raise
        raise InputError(
            f"backbones: pretrained weights for {cfg.backbone} not found ({type(e).__name__}); put "
            "them in the Hugging Face cache, set pretrained_file: /path/to/weights, or "
            "pretrained: false"
        ) from e
    dc = data_config(model, cfg, in_chans)
    check_forward(model, cfg, in_chans, dc["img_size"], n_outputs, n_meta)
    return model, dc


def forward(model, x, meta=None):
    """The model on a batch: images, and the metadata rows when it was built with them."""
    return model(x) if meta is None else model(x, meta)
