"""The workflow's configuration as the jobs see it: the schema, its defaults, layering and validation.

Layering, lowest first (`layered`, then `resolve`):
  1. the schema's defaults (schemas/config.schema.yaml): the base of every run, and the one place a default
     is spelled (the settings dataclasses take theirs from it: `default_of`);
  2. the workflow's config.yaml, the embedded demo's own choices, only when no --configfile is given; with
     --configfile F (or several), F is laid over the schema's defaults instead, so a competition config
     states only what differs from them and nothing of the demo leaks in;
  3. --config key=value on the command line, over either.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from pathlib import Path

import yaml

from kagglecv.core.errors import InputError, first_line

PACKAGE = Path(__file__).resolve().parents[1]  # kagglecv/
PACKAGED_SCHEMA = PACKAGE / "config.schema.yaml"  # a built wheel's copy (kagglecv.kaggle.kernel)
REPO_SCHEMA = PACKAGE.parent / "schemas" / "config.schema.yaml"  # the one that is edited
SCHEMA_PATH = REPO_SCHEMA if REPO_SCHEMA.is_file() or not PACKAGED_SCHEMA.is_file() else PACKAGED_SCHEMA


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


@functools.cache
def _schema_defaults() -> dict:
    return defaults(load_schema())


def default_value(key: str):
    """The schema's default for `key` ("pseudo_labels.min_confidence"), for a function's keyword default."""
    value = _schema_defaults()
    for part in key.split("."):
        value = value[part]
    return copy.deepcopy(value)


@functools.cache
def choices_of(key: str) -> tuple:
    """The values the schema allows for `key` ("data.layout"): its enum, for a check made without the schema."""
    node = load_schema()
    for part in key.split("."):
        node = node["properties"][part]
    return tuple(node["enum"])


def default_of(key: str):
    """A dataclass field whose default is the schema's for `key` ("train.lr", "seed"): the settings dataclasses
    (TrainConfig, DataConfig, ...) spell no default of their own. Lists become tuples where the field wants one
    (`tuple=True`); mappings and lists get a fresh copy per instance."""
    value = default_value(key)
    if isinstance(value, (dict, list)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value))
    return dataclasses.field(default=value)


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
        raise InputError(f"{path}: cannot read the config file ({first_line(e)})") from e
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
