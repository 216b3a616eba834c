"""The configuration: defaults spelled once (the schema), layering, validation, each backbone's settings, and the
`kagglecv` command line that shows what the jobs will see."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import subprocess
import sys
import textwrap

import pytest
import yaml

from kagglecv.config import schema as kconfig_schema
from kagglecv.config.data import DataConfig
from kagglecv.config.members import backbone_settings
from kagglecv.config.train import TrainConfig
from kagglecv.core.errors import InputError
from kagglecv.data.archive import ArchiveLimits
from kagglecv.kaggle import client, download, submit
from kagglecv.training.lr_finder import LRFindConfig

from helpers import REPO, run_snakemake, write_csv_images_competition

# ---------------------------------------------------------------- defaults

# The schema is the one place a default is spelled: each settings dataclass takes every default from it
# (kagglecv.config.schema.default_of). Keys on one side only are listed with the reason.
SOURCES = {
    "train": (TrainConfig, {"backbone", "fold"}, {"mem_mb", "runtime"}),  # per job; scheduling
    "data": (DataConfig, set(), {"source", "path", "cache_margin"}),  # the workflow's, not prepare's
    "lr_find": (LRFindConfig, set(), set()),
    "archive": (ArchiveLimits, set(), set()),
}
TOP_LEVEL = {"seed", "metric"}  # TrainConfig fields whose defaults are the run's (top-level keys)


@pytest.mark.parametrize("section", SOURCES)
def test_dataclass_defaults_come_from_the_schema(section):
    """Every field of the dataclass is the schema key of its name, with a default written as default_of(that key):
    a literal default (a second spelling) fails, and so does a schema key without a field."""
    cls, only_in_class, only_in_schema = SOURCES[section]
    schema = kconfig_schema.defaults()[section]
    fields = {f.name for f in dataclasses.fields(cls)}
    assert fields - only_in_class - TOP_LEVEL == set(schema) - only_in_schema, "keys differ between schema and class"
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    spelled = {}
    for node in tree.body[0].body:
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            name = node.target.id
            want = name if name in TOP_LEVEL else f"{section}.{name}"
            call = node.value
            if (
                not (
                    isinstance(call, ast.Call)
                    and getattr(call.func, "id", "") == "default_of"
                    and [a.value for a in call.args] == [want]
                )
                and name not in only_in_class
            ):
                spelled[name] = ast.unparse(call)
    assert not spelled, f"{cls.__name__} spells defaults of its own: {spelled}"
    instance = cls(**({"backbone": "x"} if cls is TrainConfig else {}))
    for name in fields - only_in_class:
        value = getattr(instance, name)
        expect = kconfig_schema.defaults()[name] if name in TOP_LEVEL else schema[name]
        assert (list(value) if isinstance(value, tuple) else value) == expect, name


def test_top_level_defaults_reach_the_train_config():
    d = kconfig_schema.defaults()
    assert (TrainConfig.seed, TrainConfig.metric) == (d["seed"], d["metric"])


def test_kaggle_defaults_come_from_the_schema():
    k = kconfig_schema.defaults()["kaggle"]

    def default(fn, name):
        return inspect.signature(fn).parameters[name].default

    assert default(download.download_competition, "retries") == k["retries"]
    assert default(download.download_competition, "backoff") == k["backoff"]
    assert default(submit.submit, "poll_interval") == k["poll_interval"]
    assert default(submit.submit, "timeout") == k["timeout"]
    assert client.HTTP_TIMEOUT == k["http_timeout"] and submit.DEFAULT_MESSAGE == k["message"]


def test_lr_finder_defaults_come_from_its_config():
    from kagglecv.training.lr_finder import lr_find

    sig = inspect.signature(lr_find).parameters
    for f in dataclasses.fields(LRFindConfig):
        assert sig[f.name].default == f.default


# ---------------------------------------------------------------- config layering


def test_layering_puts_configfiles_over_the_schema_not_over_the_demo(tmp_path):
    demo = {"competition": "digits-demo", "train": {"epochs": 6, "img_size": 16}}
    mine = tmp_path / "mine.yaml"
    mine.write_text("competition: mine\ndata: {source: local, path: /x.zip}\nbackbones: [resnet18]\n")
    cfg = kconfig_schema.resolve(kconfig_schema.layered(demo, [mine], {"seed": 7}))
    train = kconfig_schema.defaults()["train"]
    assert cfg["competition"] == "mine" and cfg["seed"] == 7
    assert cfg["train"] == train  # not the demo's epochs 6 / img_size 16
    assert (
        kconfig_schema.resolve(kconfig_schema.layered(demo, [], {}))["train"]["epochs"] == 6
    )  # no --configfile: the demo
    later = tmp_path / "later.yaml"
    later.write_text("train: {epochs: 2}\n")
    assert (
        kconfig_schema.resolve(kconfig_schema.layered(demo, [mine, later], {}))["train"]["epochs"] == 2
    )  # later files win


def test_resolve_refuses_bad_keys_and_values():
    with pytest.raises(InputError, match="config: train: Additional properties.*'epochz'"):
        kconfig_schema.resolve({"train": {"epochz": 3}})
    with pytest.raises(InputError, match="config: folds: 1 is less than the minimum of 2"):
        kconfig_schema.resolve({"folds": 1})


@pytest.mark.parametrize("name", [".", "..", "-x", ".hidden"])
def test_backbone_names_cannot_name_a_folder_above_models(name):
    with pytest.raises(InputError, match=r"config: backbones\.0: '.*' does not match '\^\[A-Za-z0-9\]"):
        kconfig_schema.resolve({"backbones": [name]})
    with pytest.raises(InputError, match=r"config: backbones\.0\.name: '.*' does not match '\^\[A-Za-z0-9\]"):
        kconfig_schema.resolve({"backbones": [{"name": name}]})
    assert kconfig_schema.resolve({"backbones": ["convnext_tiny.fb_in22k", "resnet18"]})["backbones"][0].startswith(
        "conv"
    )


def test_command_line_values_are_typed_by_the_schema():
    """Snakemake reads `--config train='{epochs: 3}'` with YAML's base loader: every nested value is text."""
    text = {
        "train": {"epochs": "3", "lr": "auto", "moms": ["0.9", "0.8", "0.9"], "img_size": "null", "amp": "false"},
        "backbones": ["resnet18", {"name": "resnet10t", "lr": "0.01"}],
        "competition": "007",
        "kaggle": {"code_competition": "true", "message": "{metric} {cv}"},
        "data": {"id_column": "001"},
    }
    cfg = kconfig_schema.resolve(kconfig_schema.layered({}, [], text))
    assert (
        cfg["train"] | {"epochs": 3, "lr": "auto", "moms": [0.9, 0.8, 0.9], "img_size": None, "amp": False}
        == cfg["train"]
    )
    assert cfg["backbones"][1] == {"name": "resnet10t", "lr": 0.01} and cfg["competition"] == "007"
    assert cfg["kaggle"]["code_competition"] is True and cfg["kaggle"]["message"] == "{metric} {cv}"
    assert cfg["data"]["id_column"] == "001"  # a name stays text
    with pytest.raises(InputError, match=r"config: train.epochs: 'three' is not of type 'integer'"):
        kconfig_schema.resolve(kconfig_schema.layered({}, [], {"train": {"epochs": "three"}}))


@pytest.mark.workflow
def test_snakemake_config_on_the_command_line_is_typed(tmp_path):
    """The usual way to try a setting: `snakemake --config train='{epochs: 3}'`, through the real CLI."""
    write_csv_images_competition(tmp_path / "tiny.zip")
    cfg = {
        "competition": "tiny",
        "data": {"source": "local", "path": str(tmp_path / "tiny.zip")},
        "backbones": ["test_resnet"],
        "folds": 2,
    }
    r = run_snakemake(tmp_path, cfg, "-n", "--config", "train={epochs: 3, img_size: 16, lr: auto}", check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "lr_find" in r.stdout + r.stderr  # lr: auto reached the DAG as the word, epochs as a number


def test_backbone_settings_merge_and_validate():
    cfg = kconfig_schema.resolve({"backbones": ["resnet18", {"name": "efficientnet_b0", "lr": 0.001, "img_size": 64}]})
    b = backbone_settings(cfg)
    assert list(b) == ["resnet18", "efficientnet_b0"]
    assert b["resnet18"]["lr"] == cfg["train"]["lr"] and b["efficientnet_b0"]["lr"] == 0.001
    assert b["efficientnet_b0"]["epochs"] == cfg["train"]["epochs"]  # the rest from `train`
    with pytest.raises(InputError, match="'resnet18' is listed twice"):
        backbone_settings({**cfg, "backbones": ["resnet18", "resnet18"]})
    with pytest.raises(InputError, match="override for 'resnet18' is invalid"):
        backbone_settings({**cfg, "backbones": [{"name": "resnet18", "lr": -1}]})


def kagglecv(*args, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kagglecv", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_kagglecv_config_prints_what_the_jobs_see(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "competition: mine\ndata: {source: local, path: /x.zip}\n"
        "backbones: [test_resnet, {name: test_convnext, img_size: 48}]\n"
    )
    r = kagglecv("config", "--configfile", str(mine), "--config", "train.epochs=3")
    assert r.returncode == 0, r.stderr
    shown = yaml.safe_load(r.stdout)
    assert "train" not in shown  # merged into each backbone
    resnet, convnext = shown["backbones"]["test_resnet"], shown["backbones"]["test_convnext"]
    assert resnet["epochs"] == convnext["epochs"] == 3
    assert resnet["batch_size"] == kconfig_schema.defaults()["train"]["batch_size"]
    assert resnet["input_size"] == 160 and convnext["input_size"] == 48  # the model's own size; the override
    assert shown["data"]["image_size"] == 180  # 160 x 1.125: the cache side


def test_kagglecv_command_line():
    assert kagglecv().returncode == 2
    for cmd in ("config", "inspect", "predict", "backfill", "download", "submit"):
        r = kagglecv(cmd, "--help")
        assert r.returncode == 0 and r.stdout.startswith(f"usage: kagglecv {cmd}"), (cmd, r.stdout, r.stderr)
    r = kagglecv("frobnicate")
    assert r.returncode == 2 and "invalid choice: 'frobnicate'" in r.stderr


@pytest.mark.workflow
def test_a_config_naming_only_competition_data_and_backbones_trains_with_the_defaults(tmp_path):
    """The config file names only these; a second one sets epochs to 1 (the default 10 would only cost time;
    Snakemake's --config gives nested values as text), so every other training setting the job used is the
    schema's default."""
    write_csv_images_competition(tmp_path / "tiny.zip")
    cfg = {
        "competition": "tiny",
        "data": {"source": "local", "path": str(tmp_path / "tiny.zip")},
        "backbones": ["test_resnet"],
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "one_epoch.yaml").write_text(yaml.safe_dump({"train": {"epochs": 1}}))
    # the target after a plain flag: --configfile takes every word after it
    run_snakemake(
        tmp_path,
        None,
        "--configfile",
        "config.yaml",
        "one_epoch.yaml",
        "-p",
        "results/tiny/models/test_resnet/fold0/config.json",
    )
    fold0 = tmp_path / "results/tiny/models/test_resnet/fold0"
    used = json.loads((fold0 / "config.json").read_text())
    train = kconfig_schema.defaults()["train"]
    assert train["epochs"] > 1 and used["epochs"] == 1 and len((fold0 / "history.csv").read_text().splitlines()) == 2
    assert used["img_size"] == 160  # the model's own input size, not the demo's 16
    for key in ("batch_size", "lr", "augment", "tta", "tta_n", "weight_decay", "pretrained"):
        assert used[key] == train[key], key
    assert used["n_train"] + used["n_valid"] == 24 and json.loads(
        (tmp_path / "results/tiny/prepared/meta.json").read_text()
    )["image_shape"] == [8, 8, 1]


def test_kagglecv_config_never_prints_a_password(tmp_path):
    """tune.storage (or any URL a config holds) may carry user:password: shown redacted, like everything printed."""
    r = kagglecv("config", "--config", "tune.storage=postgresql+psycopg://tuner:hunter2pw@db/optuna", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "hunter2pw" not in r.stdout and "postgresql+psycopg://***@db/optuna" in r.stdout
