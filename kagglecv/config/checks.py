"""Every check a job makes of its settings, made when the workflow reads its config (rules/common.smk), so that
`snakemake -n` refuses, in one line and before any job, what a job would refuse after prepare and folds (or, on
Slurm, after the queue).

  check_config        all of it, for the members the workflow trains
  check_member        one member: its training settings (kagglecv.config.train.check_settings), mixup against the
                      task, metadata and teachers (check_mixup), and its model code (a factory file that exists)
  check_meta_columns  data.meta_columns naming the id, a target or the group column (the model would learn the
                      label from a column beside it, or read the id as a feature)
  check_kaggle        what the kernel job refuses of kaggle.*: a student kernel without a student, wheels that
                      are not .whl files

The jobs keep their own checks (the library is used without the workflow too); both call the same functions.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import zipfile
from pathlib import Path

from kagglecv.config.members import teacher_of
from kagglecv.config.train import TrainConfig, check_mixup, check_settings
from kagglecv.core.errors import InputError
from kagglecv.core.precision import check_amp_dtype


def train_config(member: str, settings: dict, config: dict) -> TrainConfig:
    """The TrainConfig a training job of `member` computes with (as kagglecv.jobs.training builds it; scheduling
    settings such as mem_mb and runtime are not training settings)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig.from_dict(
        {
            **{k: v for k, v in settings.items() if k in names},
            "backbone": member,
            "seed": config["seed"],
            "metric": config["metric"],
        }
    )


def check_member(member: str, settings: dict, config: dict) -> None:
    cfg = train_config(member, settings, config)
    check_settings(cfg)
    if cfg.device == "cpu":  # auto may still find a GPU when the job runs
        check_amp_dtype("cpu", cfg)
    check_mixup(
        cfg, config.get("task"), meta=bool(config["data"].get("meta_columns")), teacher=teacher_of(member) is not None
    )
    model = str(cfg.model or "")
    if ":" in model or model.endswith(".py"):  # the user's factory (kagglecv.inference.models.load_factory)
        where, _, function = model.rpartition(":")
        if not where or not function:
            raise InputError(f"backbones: {member}: model {model!r} is not FILE.py:FUNCTION or MODULE:FUNCTION")
        if where.endswith(".py") and not Path(where).expanduser().is_file():
            raise InputError(
                f"backbones: {member}: model file {where} not found (relative to the working "
                f"directory, {Path.cwd()}); fix the path"
            )


NO_STUDENT = (
    "kaggle.kernel_models: student needs a distilled student (distill.student) in this run; set "
    "distill.student, or kernel_models: ensemble"
)


def not_a_wheel(w) -> InputError:
    return InputError(
        f"kaggle.kernel_wheels: {w} is not a wheel file; list .whl files (e.g. from "
        f"`pip download --no-deps -d wheels/ albumentations==2.0.8`)"
    )


def check_kaggle(config: dict) -> None:
    """The kaggle.* settings the kernel job refuses (kagglecv.kaggle.kernel_dataset, with these messages): a student
    kernel without a student, wheels that are no wheels (whether each file is there is checked when the kernel is
    built: it may be downloaded after training)."""
    kaggle = config.get("kaggle") or {}
    if kaggle.get("kernel_models") == "student" and not (config.get("distill") or {}).get("student"):
        raise InputError(NO_STUDENT)
    for w in kaggle.get("kernel_wheels") or []:
        if not str(w).endswith(".whl"):
            raise not_a_wheel(w)


def check_config(config: dict, members: dict[str, dict]) -> None:
    """Everything a job would refuse of its settings (see the module docstring), for every member."""
    check_meta_columns(config["data"])
    check_kaggle(config)
    for member, settings in members.items():
        try:
            check_member(member, settings, config)
        except InputError as e:  # which entry, when the line does not say
            raise InputError(str(e) if str(e).startswith("backbones:") else f"backbones: {member}: {e}") from None


def check_meta_columns(data: dict, template: list[str] | None = None) -> None:
    """data.meta_columns must not name the id, a target or the group column: those set in `data` (id_column,
    target_column, group_column), and the submission template's (`template`: its header; else read from a local
    competition folder or zip when there is one, see template_header)."""
    columns = list(data.get("meta_columns") or [])
    if not columns:
        return
    template = template if template is not None else template_header(data)
    roles: dict[str, str] = {}
    if template:
        roles[template[0].lower()] = "the id column (the submission template's first)"
        roles.update({t.lower(): "a target column (the submission template's)" for t in template[1:]})
    for key, role in (
        ("id_column", "the id column (data.id_column)"),
        ("target_column", "the target column (data.target_column)"),
        ("group_column", "the group column (data.group_column)"),
    ):
        if data.get(key):
            roles[str(data[key]).lower()] = role
    for name in columns:
        role = roles.get(str(name).lower())
        if role:
            raise InputError(
                f"data.meta_columns: {name!r} is {role}; the model must not read it beside the image "
                f"(the label, or a row's name, is no feature): remove it from data.meta_columns"
            )


def template_header(data: dict) -> list[str] | None:
    """The columns of the competition's submission template when it can be read cheaply now (a local folder or
    zip, the template at its top or one folder down; data.id_column moved first), else None (prepare checks)."""
    path, name = data.get("path"), data.get("sample_submission") or "sample_submission.csv"
    if not path or data.get("source") == "kaggle":
        return None
    try:
        text = _template_text(Path(path), name)
        header = next(csv.reader(io.StringIO(text)), None) if text is not None else None
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile, csv.Error):
        return None
    if not header:
        return None
    header = [h.strip() for h in header]
    id_col = data.get("id_column")
    if id_col and id_col in header:
        header = [id_col, *[h for h in header if h != id_col]]
    return header


def _template_text(path: Path, name: str) -> str | None:
    """The first line of the template in a folder or zip (at its top, or one folder down), or None."""
    if path.is_dir():
        for p in [path / name, *sorted(path.glob(f"*/{name}"))]:
            if p.is_file():
                with open(p, encoding="utf-8-sig") as f:
                    return f.readline()
        return None
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            hits = sorted(
                (n for n in zf.namelist() if n == name or (n.endswith(f"/{name}") and n.count("/") == 1)),
                key=lambda n: n.count("/"),
            )
            if hits:
                with zf.open(hits[0]) as f:
                    return f.readline().decode("utf-8-sig")
    return None
