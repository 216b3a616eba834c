"""What follows from the backbones: each entry's settings, the members each stage trains, input and cache sides.

backbone_settings  {backbone: train settings}: each backbone's overrides merged over `train`, validated
members            every model trained: the backbones, pseudo-label rounds' copies, the distilled student
input_size         the side a backbone trains at: its img_size, else its timm pretrained config's
cache_side         the side of the image cache: the largest input size of any backbone, plus a margin
prepare_side       that side, or the previous one when the cache would come out the same (no rebuild)
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

from kagglecv.config.schema import load_schema
from kagglecv.core.errors import InputError
from kagglecv.core.results import PreparedMeta


def backbone_settings(config: dict, schema: dict | None = None) -> dict[str, dict]:
    """{name: train config} with each backbone's overrides merged over `train`, each validated against the
    schema's `train` section (so a bad override fails before any job starts)."""
    import jsonschema

    train_schema = (schema or load_schema())["properties"]["train"]
    out: dict[str, dict] = {}
    for item in config["backbones"]:
        item = {"name": item} if isinstance(item, str) else dict(item)
        name = item.pop("name")
        if name in out:
            raise InputError(f"backbones: {name!r} is listed twice")
        merged = {**copy.deepcopy(config["train"]), **item}
        try:
            jsonschema.validate(merged, train_schema)
        except jsonschema.ValidationError as e:
            raise InputError(f"backbones: override for {name!r} is invalid: {e.message}") from None
        out[name] = merged
    return out


def round_member(backbone: str, r: int) -> str:
    """The member a pseudo-label round trains for `backbone` (round 1 is the backbone itself)."""
    return backbone if r == 1 else f"{backbone}@r{r}"


STUDENT_SUFFIX = "@student"


def members(config: dict, backbones: dict[str, dict], schema: dict | None = None) -> dict[str, dict]:
    """Every model the workflow trains, {member: train settings}: the backbones, each pseudo-label round's copy of
    them (<backbone>@r2, ...: kagglecv.training.teachers), and the distilled student (<name>@student). A member that
    is not a backbone names its timm model (or factory) in `model`, so it builds what its base builds."""
    out = dict(backbones)
    for r in range(2, config["pseudo_labels"]["rounds"] + 2):
        for name, settings in backbones.items():
            out[round_member(name, r)] = {**settings, "model": settings.get("model") or name}
    student = config["distill"]["student"]
    if student is not None:
        name, settings = next(iter(backbone_settings({**config, "backbones": [student]}, schema).items()))
        out[f"{name}{STUDENT_SUFFIX}"] = {**settings, "model": settings.get("model") or name}
    return out


def member_base(member: str) -> str:
    """The backbone (or student entry) a member was made from."""
    return member.split("@", 1)[0]


def teacher_of(member: str) -> str | None:
    """Which teacher file a member learns from: "round<r>" (a pseudo-label round), "student", or None."""
    if member.endswith(STUDENT_SUFFIX):
        return "student"
    if "@r" in member:
        return f"round{member.rsplit('@r', 1)[1]}"
    return None


def model_kwargs(settings: dict) -> dict:
    """timm.create_model's keyword arguments of an entry: its model_args over the older spelling, extra."""
    return {**(settings.get("extra") or {}), **(settings.get("model_args") or {})}


def explicit_input_size(settings: dict) -> int | None:
    """The side the settings ask for: the largest stage's (progressive resizing), else `img_size`, else the
    `img_size` given to timm.create_model in model_args or extra (a ViT built for another size), else None (the
    model's own)."""
    if settings.get("stages"):  # progressive resizing: the cache serves the largest stage
        return max(int(st["img_size"]) for st in settings["stages"])
    if settings.get("img_size"):
        return int(settings["img_size"])
    built = model_kwargs(settings).get("img_size")
    if built:
        return int(built if isinstance(built, int) else max(built))
    return None


def input_size(name: str, settings: dict) -> int:
    """The side entry `name` trains at: explicit_input_size, else timm's pretrained config for its timm name
    (`model:` or the name itself: what kagglecv.inference.models.build_model resolves from the built model); a
    factory of the user's without img_size trains at timm's default, 224. Imports timm only when it has to."""
    if size := explicit_input_size(settings):
        return size
    if ":" in str(settings.get("model") or ""):
        return 224
    name = settings.get("model") or name
    import timm

    try:
        cfg = timm.get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - timm raises RuntimeError or returns None for unknown names
        cfg = None
    if cfg is None or not getattr(cfg, "input_size", None):
        if name.split(".")[0] not in timm.list_models():
            raise InputError(f"backbones: unknown timm model {name!r}; see timm.list_models()")
        return 224  # a model without a pretrained config: timm's default input size
    return int(cfg.input_size[-1])


def cache_side(backbones: dict[str, dict], data: dict) -> int:
    """The image cache's side: `data.image_size` when set, else the largest input size of any backbone plus
    `data.cache_margin` (room for zoom and random-resized crops to sample real pixels). Adding a backbone that
    trains larger rebuilds the cache; one that trains smaller does not."""
    if data.get("image_size"):
        return int(data["image_size"])
    largest = max(input_size(name, s) for name, s in backbones.items())
    return int(math.ceil(largest * (1.0 + float(data.get("cache_margin", 0.0)))))


def prepare_side(wanted: int, meta_path: str | Path) -> int:
    """The side to pass to prepare. When the previous cache (its meta.json) kept the images at their own size and
    `wanted` would keep them too, the cache would come out byte for byte the same: pass the previous side, so that
    Snakemake sees unchanged params and neither rebuilds the cache nor retrains every model (digits, MNIST or
    Cactus tiles are smaller than any backbone's input). Otherwise `wanted`."""
    try:
        meta = PreparedMeta.read(meta_path)
        h, w, _ = meta.image_shape
        cache = meta.cache
        native = cache["distinct_sizes"] == 1 and list(cache["largest"]) == [w, h]
        if native and cache["side"] and max(h, w) <= min(wanted, cache["side"]):
            return int(cache["side"])
    except (InputError, OSError, ValueError, KeyError, TypeError):  # none yet, or one without these keys
        pass
    return wanted
