"""The workflow's configuration as the jobs see it: layered, validated, backbones merged, and what follows.

Layering, lowest first (`layered`, then `resolve`):
  1. the schema's defaults (schemas/config.schema.yaml): the base of every run;
  2. the workflow's config.yaml, the embedded demo's own choices, only when no --configfile is given; with
     --configfile F (or several), F is laid over the schema's defaults instead, so a competition config
     states only what differs from them and nothing of the demo leaks in;
  3. --config key=value on the command line, over either.

rules/common.smk asks this module (the library never imports snakemake, so all of it is unit-tested):
  layered, resolve   the configuration above, validated (a bad key or value fails before any job starts)
  backbone_settings  {backbone: train settings}: each backbone's overrides merged over `train`, validated
  input_size         the side a backbone trains at: its img_size, else its timm pretrained config's
  cache_side         the side of the image cache: the largest input size of any backbone, plus a margin
  prepare_side       that side, or the previous one when the cache would come out the same (no rebuild)
  train_threads      torch threads per training job: the cores shared by the jobs that run at once
  train_mem_mb       the memory a training job asks a cluster for
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import yaml

from kagglecv.core.errors import InputError

PACKAGED_SCHEMA = Path(__file__).resolve().parent / "config.schema.yaml"  # a built wheel's copy (kagglecv.kaggle.kernel)
REPO_SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"  # the one that is edited
SCHEMA_PATH = REPO_SCHEMA if REPO_SCHEMA.is_file() or not PACKAGED_SCHEMA.is_file() else PACKAGED_SCHEMA


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def merge(base: dict, over: dict) -> dict:
    """`over` laid over `base`, nested mappings merged key by key (as Snakemake merges config files)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def load_yaml(path: str | Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"{path}: cannot read the config file ({str(e).splitlines()[0]})") from e
    if not isinstance(data, dict):
        raise InputError(f"{path}: a config file is a mapping of keys to values")
    return data


def layered(workflow_config: dict, configfiles, overrides: dict, schema: dict | None = None) -> dict:
    """The configuration before defaults (see the module docstring). `workflow_config` is config.yaml as
    Snakemake loaded it, `configfiles` the --configfile paths, `overrides` the --config values, typed by the
    schema (see `typed`)."""
    overrides = typed(dict(overrides or {}), schema or load_schema())
    if not configfiles:
        return merge(workflow_config, dict(overrides or {}))
    out: dict = {}
    for f in configfiles:
        out = merge(out, load_yaml(f))
    return merge(out, dict(overrides or {}))


def typed(value, node: dict, schema: dict | None = None):
    """--config values as the schema types them. Snakemake reads `--config train='{epochs: 3}'` with YAML's base
    loader, so every nested value is text ('3', 'true', 'null'); a text that the schema refuses where its YAML
    reading fits becomes that reading (3, True, None); text the schema accepts stays text ('auto', '001').
    A backbone's {name, <train key>: value} overrides are typed as `train` keys."""
    import jsonschema

    schema = schema or node
    if isinstance(value, dict):
        props = branch(node, "object").get("properties", {})
        if node is schema.get("properties", {}).get("backbones", {}).get("items"):
            props = {**schema["properties"]["train"]["properties"], **props}
        return {k: typed(v, props.get(k, {}), schema) for k, v in value.items()}
    if isinstance(value, list):
        items = branch(node, "array").get("items", {})
        return [typed(v, items, schema) for v in value]
    if not isinstance(value, str) or not node:
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if jsonschema.Draft202012Validator(node).is_valid(parsed) else value


def branch(node: dict, kind: str) -> dict:
    """The part of a schema node that describes a value of JSON type `kind` (its oneOf/anyOf branch, if any)."""
    for sub in node.get("oneOf", node.get("anyOf", [])):
        if sub.get("type") == kind:
            return sub
    return node


def defaults(schema: dict | None = None) -> dict:
    """The schema's defaults as a config: every key with its default, nested sections filled in."""
    schema = schema or load_schema()

    def of(node: dict):
        if node.get("type") == "object" and "properties" in node:
            return {k: of(v) for k, v in node["properties"].items() if "default" in v or "properties" in v}
        return copy.deepcopy(node.get("default"))

    return of(schema)


def resolve(raw: dict, schema: dict | None = None) -> dict:
    """`raw` over the schema's defaults, validated: what every job sees. Raises InputError naming the key."""
    import jsonschema

    schema = schema or load_schema()
    config = merge(defaults(schema), raw)
    try:
        jsonschema.validate(config, schema)
    except jsonschema.ValidationError as e:
        where = ".".join(str(p) for p in e.absolute_path) or "config"
        raise InputError(f"config: {where}: {e.message}") from None
    if config["task"] != "auto":  # else prepare checks the metric against the task it recognises
        from kagglecv.scoring.metrics import check_metric

        check_metric(config["metric"], config["task"])
    return config


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
    them (<backbone>@r2, ...: kagglecv.training.teachers), and the distilled student (<name>@student). A member that is not a
    backbone names its timm model (or factory) in `model`, so it builds what its base builds."""
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


def explicit_input_size(settings: dict) -> int | None:
    """The side the settings ask for: the largest stage's (progressive resizing), else `img_size`, else the
    `img_size` given to timm.create_model (a ViT built for another size), else None (the model's own)."""
    if settings.get("stages"):  # progressive resizing: the cache serves the largest stage
        return max(int(st["img_size"]) for st in settings["stages"])
    if settings.get("img_size"):
        return int(settings["img_size"])
    extra = (settings.get("extra") or {}).get("img_size")
    if extra:
        return int(extra if isinstance(extra, int) else max(extra))
    return None


def input_size(name: str, settings: dict) -> int:
    """The side entry `name` trains at: explicit_input_size, else timm's pretrained config for its timm name
    (`model:` or the name itself: what kagglecv.inference.models.build_model resolves from the built model); a factory of the
    user's without img_size trains at timm's default, 224. Imports timm only when it has to."""
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
        meta = json.loads(Path(meta_path).read_text())
        h, w, _ = meta["image_shape"]
        cache = meta["cache"]
        native = cache["distinct_sizes"] == 1 and list(cache["largest"]) == [w, h]
        if native and cache["side"] and max(h, w) <= min(wanted, cache["side"]):
            return int(cache["side"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return wanted


BUDGET_MARGIN_S = 600  # a time-budgeted job's start-up and writing, on top of its budget, in its scheduler time limit


def train_runtime_minutes(settings: dict) -> int:
    """The time limit (minutes) a training job asks a scheduler for: from train.time_budget when set (the budget
    plus BUDGET_MARGIN_S), else train.runtime."""
    if settings.get("time_budget"):
        return int(math.ceil((float(settings["time_budget"]) + BUDGET_MARGIN_S) / 60))
    return int(settings["runtime"])


CLUSTER_THREADS = 8  # a training job's threads per device on a cluster node, where --cores says nothing of the node


def train_threads(configured: int | None, cores: int | None, gpu_slots: int | None, cluster: bool = False) -> int:
    """torch threads per training job. Configured wins; on a cluster, CLUSTER_THREADS; else the cores shared by the
    training jobs that may run at once: with `--cores N --resources gpu=G`, N // G (at least 1); without a gpu
    limit one job runs alone and gets all N. Snakemake then runs as many jobs at once as their threads fit in N."""
    if configured:
        return int(configured)
    if cluster:
        return CLUSTER_THREADS
    return max(1, int(cores or 1) // max(1, int(gpu_slots or 1)))


# Measured on a 2-core CPU VM (torch 2.15, timm 1.0): a training job's runtime with its model, optimizer and
# tracking is 1.0-1.4 GB of RSS; CPU activations cost 0.6 (resnet18) to 2.2 (convnext_tiny) KB per input pixel
# per image in a batch. The CUDA runtime adds about 1 GB on the host; each DataLoader worker is a forked
# process (~400 MB) holding 2 prefetched float32 batches. Rounded up: a job killed for memory loses more than
# a generous request costs.
RUNTIME_MB = 1536
CUDA_MB = 1024
WORKER_MB = 400
ACTIVATION_KB_PER_PIXEL = 2.5  # CPU training only: on a GPU the activations live in device memory


def loader_workers(num_workers: int | None, threads: int | None, gpu: bool) -> int:
    """DataLoader worker processes: as configured, else 0 on CPU (workers would take the cores the model
    computes on) and, on a GPU, the job's threads but one (the training loop's), at most 8."""
    if num_workers is not None:
        return num_workers
    return max(1, min(8, (threads or 1) - 1)) if gpu else 0


def train_mem_mb(settings: dict, side: int, channels: int, workers: int, gpu: bool) -> int:
    """The memory (MB) to request for one training job: `train.mem_mb` when set, else the estimate above for
    this backbone's batch size and input side. It does not depend on the dataset's size (the cache is read
    by row and its pages handed back)."""
    if settings.get("mem_mb"):
        return int(settings["mem_mb"])
    batch = int(settings["batch_size"])
    batch_mb = batch * side * side * channels * 4 / 2**20
    mb = RUNTIME_MB + workers * (WORKER_MB + 2 * batch_mb)
    mb += CUDA_MB if gpu else batch * side * side * ACTIVATION_KB_PER_PIXEL / 1024
    return int(math.ceil(mb / 256) * 256)
