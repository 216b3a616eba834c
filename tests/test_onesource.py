"""Each piece of knowledge in one place: defaults, the results layout, config layering, the library's entry
points, and environments that mean what they say."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import subprocess
import sys
import textwrap

import pytest
import yaml

from kagglecv.config import schema as kconfig_schema
from kagglecv.config.members import backbone_settings
from kagglecv.core import layout
from kagglecv.kaggle import client, download, submit
from kagglecv.data.archive import ArchiveLimits
from kagglecv.core.errors import InputError
from kagglecv.core.layout import Layout
from kagglecv.training.lr_finder import LRFindConfig
from kagglecv.config.data import DataConfig
from kagglecv.tracking.summary import run_summary
from kagglecv.config.train import TrainConfig

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
            if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") == "default_of"
                    and [a.value for a in call.args] == [want]) and name not in only_in_class:
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


# ---------------------------------------------------------------- the results layout


LAYOUT_NAMES = ("scores.json", "ensemble_oof.csv", "ensemble_test.csv", "folds.csv", "submission.csv",
                "holdout.json", "leaderboard.csv", "models", "prepared", "lr_find", "predictions")


def spelled_paths(path) -> list[str]:
    """Results paths a Python file builds itself: `x / "scores.json"`, or a literal like "results/..."."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant):
            if str(node.right.value).rstrip("/") in LAYOUT_NAMES:
                out.append(node.right.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and " " not in node.value:
            if node.value.startswith("results/") or any(f"/{n}" in node.value for n in LAYOUT_NAMES[:7]):
                out.append(node.value)
    return out


MODULES = sorted(str(p.relative_to(REPO / "kagglecv")) for p in (REPO / "kagglecv").rglob("*.py")
                 if p.name != "layout.py")


@pytest.mark.parametrize("module", MODULES)
def test_library_asks_the_layout_for_paths(module):
    spelled = spelled_paths(REPO / "kagglecv" / module)
    assert not spelled, f"kagglecv/{module} spells results paths {spelled}; ask kagglecv.core.layout"


def test_rules_ask_the_layout_for_paths():
    for smk in sorted((REPO / "rules").glob("*.smk")):
        code = "\n".join(line.split("#")[0] for line in smk.read_text().splitlines())
        quoted = re.findall(r'"([^"\n]*)"', code)
        spelled = [q for q in quoted if q.startswith("results") or "{RES}" in q or "{PREP}" in q or any(
            q.endswith(f"/{n}") for n in LAYOUT_NAMES if "." in n)]
        assert not spelled, f"{smk.name} spells results paths {spelled}; use L (kagglecv.core.layout.Layout)"


def test_layout_paths():
    L = Layout.of("comp")
    model = L.model("{backbone}", "{fold}")
    assert str(model.path) == "results/comp/models/{backbone}/fold{fold}"
    assert str(model.oof) == "results/comp/models/{backbone}/fold{fold}/oof.csv" and layout.ModelFiles.oof == "oof.csv"
    assert [p.name for p in model.files()] == list(layout.ModelFiles.names().values())
    assert "resume.pt" not in layout.ModelFiles.names().values()  # not a declared output: it outlives a kill
    assert [p.name for p in L.prepared.files()][-2:] == ["meta.json", "sample_submission.csv"]
    assert L.meta == L.prepared.meta and L.results.name == "results" and L.competition == "comp"
    assert layout.record_file(L.model("b", 0).path, "b-fold0").name == "b-fold0.mlflow.json"


def test_each_results_file_is_named_once():
    """A file of the results is spelled in kagglecv/core/layout.py and nowhere else in the library or the rules."""
    names = {n for cls in (layout.PreparedFiles, layout.ModelFiles, layout.LrFindFiles, layout.ReportFiles,
                           layout.KernelDatasetFiles, layout.KernelFiles) for n in cls.names(outputs_only=False).values()}
    names -= {"train.csv", "test.csv", "sample_submission.csv", "wheels"}  # also the competition's own names
    for path in [*(REPO / "kagglecv").rglob("*.py"), *(REPO / "rules").glob("*.smk"), REPO / "Snakefile"]:
        if path.name == "layout.py":
            continue
        spelled = sorted(n for n in names if f'"{n}"' in path.read_text() or f"'{n}'" in path.read_text())
        assert not spelled, f"{path.relative_to(REPO)} spells {spelled}; name them through kagglecv.core.layout"


# ---------------------------------------------------------------- config layering


def test_layering_puts_configfiles_over_the_schema_not_over_the_demo(tmp_path):
    demo = {"competition": "digits-demo", "train": {"epochs": 6, "img_size": 16}}
    mine = tmp_path / "mine.yaml"
    mine.write_text("competition: mine\ndata: {source: local, path: /x.zip}\nbackbones: [resnet18]\n")
    cfg = kconfig_schema.resolve(kconfig_schema.layered(demo, [mine], {"seed": 7}))
    train = kconfig_schema.defaults()["train"]
    assert cfg["competition"] == "mine" and cfg["seed"] == 7
    assert cfg["train"] == train  # not the demo's epochs 6 / img_size 16
    assert kconfig_schema.resolve(kconfig_schema.layered(demo, [], {}))["train"]["epochs"] == 6  # no --configfile: the demo
    later = tmp_path / "later.yaml"
    later.write_text("train: {epochs: 2}\n")
    assert kconfig_schema.resolve(kconfig_schema.layered(demo, [mine, later], {}))["train"]["epochs"] == 2  # later files win


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
    assert kconfig_schema.resolve({"backbones": ["convnext_tiny.fb_in22k", "resnet18"]})["backbones"][0].startswith("conv")


def test_command_line_values_are_typed_by_the_schema():
    """Snakemake reads `--config train='{epochs: 3}'` with YAML's base loader: every nested value is text."""
    text = {"train": {"epochs": "3", "lr": "auto", "moms": ["0.9", "0.8", "0.9"], "img_size": "null",
                      "amp": "false"},
            "backbones": ["resnet18", {"name": "resnet10t", "lr": "0.01"}], "competition": "007",
            "kaggle": {"code_competition": "true", "message": "{metric} {cv}"}, "data": {"id_column": "001"}}
    cfg = kconfig_schema.resolve(kconfig_schema.layered({}, [], text))
    assert cfg["train"] | {"epochs": 3, "lr": "auto", "moms": [0.9, 0.8, 0.9], "img_size": None, "amp": False} \
        == cfg["train"]
    assert cfg["backbones"][1] == {"name": "resnet10t", "lr": 0.01} and cfg["competition"] == "007"
    assert cfg["kaggle"]["code_competition"] is True and cfg["kaggle"]["message"] == "{metric} {cv}"
    assert cfg["data"]["id_column"] == "001"  # a name stays text
    with pytest.raises(InputError, match=r"config: train.epochs: 'three' is not of type 'integer'"):
        kconfig_schema.resolve(kconfig_schema.layered({}, [], {"train": {"epochs": "three"}}))


@pytest.mark.workflow
def test_snakemake_config_on_the_command_line_is_typed(tmp_path):
    """The usual way to try a setting: `snakemake --config train='{epochs: 3}'`, through the real CLI."""
    write_csv_images_competition(tmp_path / "tiny.zip")
    cfg = {"competition": "tiny", "data": {"source": "local", "path": str(tmp_path / "tiny.zip")},
           "backbones": ["test_resnet"], "folds": 2}
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
    return subprocess.run([sys.executable, "-m", "kagglecv", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_kagglecv_config_prints_what_the_jobs_see(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("competition: mine\ndata: {source: local, path: /x.zip}\n"
                    "backbones: [test_resnet, {name: test_convnext, img_size: 48}]\n")
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
    for cmd in ("config", "predict", "backfill", "download"):
        r = kagglecv(cmd, "--help")
        assert r.returncode == 0 and r.stdout.startswith(f"usage: kagglecv {cmd}"), (cmd, r.stdout, r.stderr)
    r = kagglecv("frobnicate")
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr


@pytest.mark.workflow
def test_a_config_naming_only_competition_data_and_backbones_trains_with_the_defaults(tmp_path):
    """The config file names only these; a second one sets epochs to 1 (the default 10 would only cost time;
    Snakemake's --config gives nested values as text), so every other training setting the job used is the
    schema's default."""
    write_csv_images_competition(tmp_path / "tiny.zip")
    cfg = {"competition": "tiny", "data": {"source": "local", "path": str(tmp_path / "tiny.zip")},
           "backbones": ["test_resnet"]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "one_epoch.yaml").write_text(yaml.safe_dump({"train": {"epochs": 1}}))
    # the target after a plain flag: --configfile takes every word after it
    run_snakemake(tmp_path, None, "--configfile", "config.yaml", "one_epoch.yaml", "-p",
                  "results/tiny/models/test_resnet/fold0/config.json")
    fold0 = tmp_path / "results/tiny/models/test_resnet/fold0"
    used = json.loads((fold0 / "config.json").read_text())
    train = kconfig_schema.defaults()["train"]
    assert train["epochs"] > 1 and used["epochs"] == 1 and len((fold0 / "history.csv").read_text().splitlines()) == 2
    assert used["img_size"] == 160  # the model's own input size, not the demo's 16
    for key in ("batch_size", "lr", "augment", "tta", "tta_n", "weight_decay", "pretrained"):
        assert used[key] == train[key], key
    assert used["n_train"] + used["n_valid"] == 24 and json.loads(
        (tmp_path / "results/tiny/prepared/meta.json").read_text())["image_shape"] == [8, 8, 1]


# ---------------------------------------------------------------- the run summary


def test_run_summary(tmp_path):
    L = Layout(tmp_path / "results" / "c")
    L.root.mkdir(parents=True)
    assert run_summary(L, "sqlite:///x.db") is None  # no scores: nothing to say
    L.scores.write_text(json.dumps({
        "metric": "accuracy", "models": {"resnet18": {"cv": 0.9, "folds": [0.89, 0.91]}},
        "methods": {"mean": {"cv": 0.9}}, "ensemble": {"method": "mean", "cv": 0.9}}))
    L.holdout.write_text(json.dumps({"metric": "accuracy", "score": 0.875}))
    text = run_summary(L, "sqlite:///x.db")
    assert "resnet18" in text and "<- chosen" in text
    assert "held-aside labels: accuracy = 0.87500" in text
    assert f"submission: {L.submission}" in text and "mlflow ui --backend-store-uri sqlite:///x.db" in text


# ---------------------------------------------------------------- environments

NO_TORCH = """
import importlib, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "timm", "torchvision", "albumentations"):
            raise ImportError(f"{name} is not in the data env")
sys.meta_path.insert(0, Block())
"""


def data_env_rules() -> set[str]:
    """The rules that run in envs/data.yaml (DATA_ENV)."""
    rules = set()
    for smk in (REPO / "rules").glob("*.smk"):
        for rule in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            if "conda:\n        DATA_ENV" in rule:
                rules.add(rule.split(":")[0])
    return rules


def job_imports(rules: set[str]) -> set[str]:
    """The kagglecv modules the jobs of `rules` import (kagglecv/jobs/, one function per rule)."""
    found = set()
    for fn in (f for m in (REPO / "kagglecv" / "jobs").glob("*.py") for f in ast.parse(m.read_text()).body):
        if isinstance(fn, ast.FunctionDef) and fn.name in rules:
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kagglecv"):
                    for name in (f"{node.module}.{a.name}" for a in node.names):  # a module, or a name in one
                        is_module = (REPO / name.replace(".", "/")).with_suffix(".py").is_file()
                        found.add(name if is_module else node.module)
    return found


def test_data_env_jobs_run_without_torch(tmp_path):
    rules = data_env_rules()
    assert {"prepare", "folds", "ensemble", "submission", "download", "kernel", "submit", "report_cv"} <= rules
    assert "train" not in rules and "predict" not in rules
    modules = sorted(job_imports(rules) | {"kagglecv.jobs"})
    assert "kagglecv.kaggle.download" in modules and "kagglecv.scoring.ensemble" in modules
    write_csv_images_competition(tmp_path / "tiny.zip")
    code = NO_TORCH + textwrap.dedent(f"""
        for m in {modules!r}:
            importlib.import_module(m)
        from kagglecv.config.schema import resolve
        from kagglecv.jobs import Files, Job
        from kagglecv.jobs.data import folds, prepare
        config = resolve({{"competition": "tiny", "mlflow": {{"enabled": False}}}})
        prepare(Job("prepare", config, params=Files(path={str(tmp_path / 'tiny.zip')!r}, data={{}}, task="auto",
                                                     metric="accuracy"), threads=2))
        folds(Job("folds", config, params=Files(folds=2, seed=0)))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "results/tiny/folds.csv").exists()


def test_conda_envs_pin_what_the_lock_pins():
    lock = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "requirements.lock").read_text(), flags=re.M))
    lock = {k.lower(): v for k, v in lock.items()}
    for env in ("data", "train"):
        spec = yaml.safe_load((REPO / "envs" / f"{env}.yaml").read_text())
        pins = dict(re.match(r"([A-Za-z0-9_.-]+)==(\S+)", p).groups() for p in spec["dependencies"][-1]["pip"]
                    if "==" in p)
        assert pins and all(lock[k.lower()] == v for k, v in pins.items()), (env, pins)
        assert ("torch" in pins) == (env == "train")
