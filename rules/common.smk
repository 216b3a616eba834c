# Helpers and config validation: everything here runs before any job starts.
# Each piece of knowledge is the library's: kagglecv.config (layering, defaults, validation, what follows
# from the backbones), kagglecv.core.layout (every path and file name under results/<competition>/),
# kagglecv.tracking.summary; every rule's job is kagglecv.jobs.<rule name>, run by scripts/job.py.
import re
from pathlib import Path

from snakemake.utils import validate

from kagglecv.config.members import (
    backbone_settings,
    cache_side,
    member_base,
    members,
    round_member,
    teacher_of,
    input_size,
    prepare_side,
)
from kagglecv.config.checks import check_config
from kagglecv.config.factories import factory_sources
from kagglecv.config.resources import (
    loader_workers,
    train_mem_mb,
    train_runtime_minutes,
    train_threads,
)
from kagglecv.config.schema import defaults, layered, load_schema, resolve
from kagglecv.core.gpus import visible_devices
from kagglecv.kaggle.kernel import KERNEL_KEYS  # the kaggle.* settings a kernel is built from
from kagglecv.core.layout import DownloadFiles, Layout, downloaded

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

# Every rule's script and environments, as absolute paths: a rule reused elsewhere (`use rule train as ...` in
# rules/backbones/, docs/extending.md) resolves relative paths from its new file, not from here.
JOB = str(Path(workflow.basedir, "scripts", "job.py"))  # kagglecv.jobs.<rule name>
DATA_ENV = str(Path(workflow.basedir, "envs", "data.yaml"))  # the data-side jobs: no torch
TRAIN_ENV = str(Path(workflow.basedir, "envs", "train.yaml"))

COMP = config["competition"]
L = Layout.of(COMP)  # every path under results/<competition>/
PREPARED = L.prepared  # prepared/: the image cache and tables (kagglecv.core.layout.PreparedFiles)
PREPARED_FILES = [str(p) for p in PREPARED.files()]
MODEL = L.model("{backbone}", "{fold}")  # one training job's files (wildcards left open)


def global_resource(name):
    """A --resources limit (e.g. gpu=2), or None when none is set."""
    res = workflow.global_resources.get(name)
    return getattr(res, "value", res)


# {name: train settings}: each backbone's overrides merged over `train`, validated
BACKBONES = backbone_settings(config, SCHEMA)
from kagglecv.tuning.settings import applied  # tune.apply: tune/best.yaml over its entry

BACKBONES = applied(BACKBONES, config, L, SCHEMA)
# {member: settings}: every model trained; the backbones, their pseudo-label rounds (<backbone>@r2, ...) and the
# distilled student (<name>@student), kagglecv.config.members.members
MEMBERS = members(config, BACKBONES, SCHEMA)
ROUNDS = (
    config["pseudo_labels"]["rounds"] + 1
)  # training rounds: 1, then one per pseudo-label round
STUDENT = next((m for m in MEMBERS if teacher_of(m) == "student"), None)
# What each training job would refuse of its settings, refused now (kagglecv.config.checks): `snakemake -n` too.
check_config(config, MEMBERS)
# What the largest member needs, plus the margin; the previous side when the cache would not change.
CACHE_SIDE = prepare_side(cache_side(MEMBERS, config["data"]), L.meta)
TRAIN_THREADS = train_threads(
    config["train"]["threads"],
    workflow.cores,
    global_resource("gpu"),
    cluster=workflow.non_local_exec,
)
LOCAL_GPUS = bool(visible_devices())


# What a training job asks the scheduler for follows its backbone entry (gpus, threads, mem_mb, runtime); none of
# it is a param, so changing it reruns nothing (gpus is also a training setting: DDP across the devices).
def train_threads_of(wildcards):
    """The entry's threads, else the share of the cores one job gets, times the devices it uses."""
    s = MEMBERS[wildcards.backbone]
    if s["threads"]:
        return int(s["threads"])
    return min(TRAIN_THREADS * s["gpus"], max(workflow.cores or 1, TRAIN_THREADS))


def train_gpus(wildcards):
    return int(MEMBERS[wildcards.backbone]["gpus"])


def train_runtime(wildcards):
    """Minutes (Slurm's time limit of the job): train.runtime, or what train.time_budget needs."""
    return train_runtime_minutes(MEMBERS[wildcards.backbone])


def train_mem(wildcards):
    """mem_mb for one training job of this backbone. Called at DAG time, once the executor is known: on a
    cluster the job gets a GPU (the rule asks for one), locally it does when this machine has some.
    """
    s = MEMBERS[wildcards.backbone]
    gpu = workflow.non_local_exec or LOCAL_GPUS
    workers = loader_workers(s["num_workers"], train_threads_of(wildcards), gpu)
    return train_mem_mb(s, input_size(wildcards.backbone, s), 3, workers, gpu)


wildcard_constraints:
    backbone="[A-Za-z0-9][A-Za-z0-9_.-]*",
    fold=r"\d+",


# Backbones trained by their own rules/backbones/<name>.smk (docs/extending.md), which the Snakefile includes;
# the train rule leaves them alone.
BACKBONE_RULES = sorted(Path(workflow.basedir, "rules", "backbones").glob("*.smk"))
OWN_RULE = {p.stem for p in BACKBONE_RULES}
OWN_RULES = "|".join(re.escape(b) for b in sorted(OWN_RULE))
# A wildcard's regex sits inside the whole path's: a name is refused by what follows it, the "/" of models/<name>/.
# Members of later stages carry "@" (resnet18@r2, resnet10t@student): the train rule trains them too.
TRAIN_BACKBONE = f"(?!(?:{OWN_RULES})/)[A-Za-z0-9_.@-]+" if OWN_RULE else "[A-Za-z0-9_.@-]+"


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


# Backbone settings that only say what a job asks the scheduler for: never params, so changing them reruns nothing.
SCHEDULING = ("mem_mb", "runtime")
TRAIN_DEFAULTS = defaults(SCHEMA)["train"]


def prepare_params():
    """What the cache is made of: the data settings that differ from the schema's defaults (as for training, see
    train_params), and image_size, the resolved side: a larger backbone changes it (a rebuild)."""
    data_defaults = defaults(SCHEMA)["data"]
    return {
        **{
            k: v
            for k, v in config["data"].items()
            if k not in ("source", "path", "cache_margin") and v != data_defaults[k]
        },
        "image_size": CACHE_SIDE,
    }


def train_params(wildcards):
    """What the training job computes with: the backbone's settings that differ from the schema's defaults (the
    job fills in the rest, kagglecv.config.train.TrainConfig), so a setting added to the schema, or a default changed,
    retrains nothing that was trained already."""
    settings = MEMBERS[wildcards.backbone]
    return {
        **{
            k: v
            for k, v in settings.items()
            if k not in SCHEDULING and (k not in TRAIN_DEFAULTS or v != TRAIN_DEFAULTS[k])
        },
        "backbone": wildcards.backbone,
        "fold": int(wildcards.fold),
        "seed": config["seed"],
        "metric": config["metric"],
    }


def lr_find_input(wildcards):
    """lr_find.json when the member's train.lr is auto (the train job then reads its base's suggestion), else
    nothing."""
    if MEMBERS[wildcards.backbone]["lr"] == "auto":
        return str(L.lr_find(member_base(wildcards.backbone)).json)
    return []


def factory_input(wildcards):
    """A member's model code when it is a file of the user's, with the modules it imports from its folder
    (kagglecv.config.factories): editing it reruns the jobs that build the model. Nothing for timm models, so the
    inputs of their jobs stay as they were."""
    return [str(p) for p in factory_sources(MEMBERS[wildcards.backbone].get("model"))]


def teacher_input(wildcards):
    """The teacher file a pseudo-label round's or the student's job learns from (kagglecv.training.teachers), else nothing."""
    teacher = teacher_of(wildcards.backbone)
    return str(L.teacher(teacher, wildcards.fold)) if teacher else []


def round_members(r):
    """The members trained in round `r` (1: the backbones)."""
    return [round_member(b, r) for b in BACKBONES]


def pseudo_sources(wildcards):
    """A pseudo-label round's teachers: the previous round's fold models' test predictions."""
    return [str(L.model(m, wildcards.fold).test) for m in round_members(int(wildcards.round) - 1)]


def teachers_of_student():
    """Every member but the student: the models the student learns from."""
    return [m for m in MEMBERS if m != STUDENT]


def fold_dirs(backbone):
    return [str(m.path) for m in L.folds_of(backbone, config["folds"])]


def fold_outputs(backbone, name):
    """One file (a ModelFiles name) of every fold of `backbone`."""
    return [str(getattr(m, name)) for m in L.folds_of(backbone, config["folds"])]


def all_fold_outputs(name):
    return [f for b in MEMBERS for f in fold_outputs(b, name)]


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
    from kagglecv.tracking.summary import finish

    summary = finish(L, ok)
    if summary:
        print(summary)


onstart:
    # One MLflow parent run per invocation; jobs find its id in their environment (never a param).
    if config["mlflow"]["enabled"]:
        from kagglecv.tracking.tracker import start_parent

        start_parent(COMP)


onsuccess:
    finish_run(ok=True)


onerror:
    finish_run(ok=False)
