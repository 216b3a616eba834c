# Helpers and config validation: everything here runs before any job starts.
# Each piece of knowledge is the library's: kagglecv.config (layering, defaults, validation, what follows
# from the backbones), kagglecv.layout (every path and file name under results/<competition>/),
# kagglecv.summary; every rule's job is kagglecv.jobs.<rule name>, run by scripts/job.py.
from pathlib import Path

from snakemake.utils import validate

from kagglecv.config import (
    backbone_settings,
    cache_side,
    input_size,
    layered,
    load_schema,
    loader_workers,
    prepare_side,
    resolve,
    train_mem_mb,
    train_threads,
)
from kagglecv.gpu import visible_devices
from kagglecv.kernel import RERUN_KEYS  # the kaggle.* settings of a hidden rerun
from kagglecv.layout import DownloadFiles, Layout, downloaded

# The schema's defaults, then config.yaml (the demo's choices) or, with --configfile, those files instead,
# then --config: see kagglecv.config. The same in every job (they get the same command-line config).
SCHEMA = load_schema(Path(workflow.basedir, "schemas", "config.schema.yaml"))
_resolved = resolve(
    layered(
        config,
        workflow.config_settings.configfiles,
        workflow.config_settings.config,
        SCHEMA,
    ),
    SCHEMA,
)
config.clear()
config.update(_resolved)
validate(
    config, "../schemas/config.schema.yaml"
)  # Snakemake's own check, on what the jobs will see

COMP = config["competition"]
L = Layout.of(COMP)  # every path under results/<competition>/
PREPARED = L.prepared  # prepared/: the image cache and tables (kagglecv.layout.PreparedFiles)
PREPARED_FILES = [str(p) for p in PREPARED.files()]
MODEL = L.model("{backbone}", "{fold}")  # one training job's files (wildcards left open)


def global_resource(name):
    """A --resources limit (e.g. gpu=2), or None when none is set."""
    res = workflow.global_resources.get(name)
    return getattr(res, "value", res)


# {name: train settings}: each backbone's overrides merged over `train`, validated
BACKBONES = backbone_settings(config, SCHEMA)
# What the largest backbone needs, plus the margin; the previous side when the cache would not change.
CACHE_SIDE = prepare_side(cache_side(BACKBONES, config["data"]), L.meta)
TRAIN_THREADS = train_threads(config["train"]["threads"], workflow.cores, global_resource("gpu"))
LOCAL_GPUS = bool(visible_devices())


def train_mem(wildcards):
    """mem_mb for one training job of this backbone. Called at DAG time, once the executor is known: on a
    cluster the job gets a GPU (the rule asks for one), locally it does when this machine has some.
    """
    s = BACKBONES[wildcards.backbone]
    gpu = workflow.non_local_exec or LOCAL_GPUS
    workers = loader_workers(s["num_workers"], TRAIN_THREADS, gpu)
    return train_mem_mb(s, input_size(wildcards.backbone, s), 3, workers, gpu)


wildcard_constraints:
    backbone="[A-Za-z0-9][A-Za-z0-9_.-]*",
    fold=r"\d+",


def data_input():
    """What prepare waits for: the demo zip, a local folder/zip, or the download's completion marker."""
    source, path = config["data"]["source"], config["data"]["path"]
    if source == "demo":
        return path or f"data/demo/{COMP}.zip"
    if source == "kaggle":
        return str(downloaded(COMP).marker)
    if not path:
        raise ValueError(
            "data.path: required with data.source: local (a competition folder or zip)"
        )
    return path


def competition_path(wildcards, input):
    """The competition prepare reads: its input, or for a download the files beside the marker."""
    data = Path(input.data)
    return str(DownloadFiles(data.parent).files) if data.name == DownloadFiles.marker else str(data)


def train_params(wildcards):
    """What the training job computes with. Scheduling settings (mem_mb) are not params: changing them
    must not retrain anything."""
    return {
        **{k: v for k, v in BACKBONES[wildcards.backbone].items() if k != "mem_mb"},
        "backbone": wildcards.backbone,
        "fold": int(wildcards.fold),
        "seed": config["seed"],
        "metric": config["metric"],
    }


def lr_find_input(wildcards):
    """lr_find.json when the backbone's train.lr is auto (the train job then reads its suggestion), else nothing."""
    if BACKBONES[wildcards.backbone]["lr"] == "auto":
        return str(L.lr_find(wildcards.backbone).json)
    return []


def fold_dirs(backbone):
    return [str(m.path) for m in L.folds_of(backbone, config["folds"])]


def fold_outputs(backbone, name):
    """One file (a ModelFiles name) of every fold of `backbone`."""
    return [str(getattr(m, name)) for m in L.folds_of(backbone, config["folds"])]


def all_fold_outputs(name):
    return [f for b in BACKBONES for f in fold_outputs(b, name)]


def kernel_inputs():
    """The kernel folders for `submit`, unless the competition takes files (kaggle.code_competition: false):
    with auto, whether Kaggle wants a notebook is only known once the submit job asks it."""
    if config["kaggle"]["code_competition"] is False:
        return []
    return [str(L.kernel_dataset.path), str(L.kernel.path)]


def default_targets():
    targets = [str(L.scores), str(L.submission)]
    if config["data"]["source"] == "demo":
        targets.append(str(L.holdout))
    return targets


def finish_run(ok):
    from kagglecv.summary import finish

    summary = finish(L, ok)
    if summary:
        print(summary)


onstart:
    # One MLflow parent run per invocation; jobs find its id in their environment (never a param).
    if config["mlflow"]["enabled"]:
        from kagglecv.tracking import start_parent

        start_parent(COMP)


onsuccess:
    finish_run(ok=True)


onerror:
    finish_run(ok=False)
