"""Settings that cannot work together are refused when the workflow reads its config (kagglecv.config.checks), so
`snakemake -n` refuses, in one line and before any job, what a training job would refuse after prepare and folds
(or, on Slurm, after the queue)."""

from __future__ import annotations

import pytest

from kagglecv.config.checks import check_config, check_meta_columns
from kagglecv.config.members import backbone_settings, members
from kagglecv.config.schema import resolve
from kagglecv.core.errors import InputError

from helpers import run_snakemake, tiny_config, write_csv_images_competition


def refused(config: dict) -> str:
    """check_config's one line for a config laid over the schema's defaults."""
    cfg = resolve(config)
    with pytest.raises(InputError) as e:
        check_config(cfg, members(cfg, backbone_settings(cfg)))
    assert "\n" not in str(e.value)
    return str(e.value)


TINY = {"backbones": ["test_resnet"], "train": {"epochs": 1, "img_size": 16}}


@pytest.mark.parametrize(
    "train, data, extra, expected",
    [
        ({"average": "last_k", "ema_decay": 0.9}, {}, {}, "train.average: last_k and train.ema_decay both choose"),
        (
            {"time_budget": 60, "stages": [{"img_size": 16, "epochs": 1}]},
            {},
            {},
            "train.stages: set their epochs and sizes only, not freeze_epochs or time_budget",
        ),
        ({"time_budget": 60, "freeze_epochs": 1}, {}, {}, "train.time_budget: not with freeze_epochs or gpus > 1"),
        ({"stages": [{"img_size": 16, "epochs": 1}], "freeze_epochs": 1}, {}, {}, "train.stages: set their epochs"),
        ({"mixup_alpha": 0.4}, {"meta_columns": ["age"]}, {}, "mixup mixes images, not their metadata"),
        ({"mixup_alpha": 0.4}, {}, {"pseudo_labels": {"rounds": 1}}, "mixup mixes class labels, not the teachers'"),
        ({"cutmix_alpha": 1.0}, {}, {"task": "regression", "metric": "rmse"}, "this is a regression task"),
        ({"model": "nets/absent.py:build"}, {}, {}, "model file nets/absent.py not found"),
        ({"model": "nets/absent.py"}, {}, {}, "is not FILE.py:FUNCTION or MODULE:FUNCTION"),
        ({"model": "timm_like.module:build", "head": "gem"}, {}, {}, "head: gem is for timm bodies"),
    ],
)
def test_settings_a_job_would_refuse_are_refused_with_the_config(train, data, extra, expected):
    line = refused({**TINY, "train": {**TINY["train"], **train}, "data": data, **extra})
    assert expected in line and line.startswith("backbones: test_resnet"), line


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"kaggle": {"kernel_models": "student"}}, "kaggle.kernel_models: student needs a distilled student"),
        (
            {"kaggle": {"kernel_wheels": ["wheels/timm.tar.gz"]}},
            "kaggle.kernel_wheels: wheels/timm.tar.gz is not a wheel",
        ),
        ({"train": {"device": "cpu", "amp": True, "amp_dtype": "fp16"}}, "train.amp_dtype: fp16 needs a GPU"),
    ],
)
def test_kernel_and_device_settings_a_job_would_refuse_are_refused_with_the_config(config, expected):
    assert expected in refused({**TINY, **config, "train": {**TINY["train"], **config.get("train", {})}})


def test_a_backbone_override_is_refused_naming_the_backbone():
    line = refused({"backbones": ["test_resnet", {"name": "test_convnext", "time_budget": 60, "gpus": 2}]})
    assert line.startswith("backbones: test_convnext: train.time_budget: not with freeze_epochs or gpus > 1"), line


@pytest.mark.parametrize(
    "data, template, expected",
    [
        ({"meta_columns": ["age", "image_name"]}, ["image_name", "target"], "'image_name' is the id column"),
        ({"meta_columns": ["Target"]}, ["image_name", "target"], "'Target' is a target column"),
        ({"meta_columns": ["patient_id"], "group_column": "patient_id"}, None, "'patient_id' is the group column"),
        ({"meta_columns": ["x"], "id_column": "x"}, None, "'x' is the id column (data.id_column)"),
        ({"meta_columns": ["y"], "target_column": "y"}, None, "'y' is the target column (data.target_column)"),
    ],
)
def test_meta_columns_naming_the_id_a_target_or_the_group_are_refused(data, template, expected):
    with pytest.raises(InputError, match="data.meta_columns: ") as e:
        check_meta_columns(data, template)
    assert expected in str(e.value) and "remove it from data.meta_columns" in str(e.value)
    check_meta_columns({**data, "meta_columns": ["age"]}, template)  # any other column is fine


@pytest.mark.workflow
@pytest.mark.parametrize(
    "over, expected",
    [
        ({"train": {"average": "last_k", "ema_decay": 0.9}}, "train.average: last_k and train.ema_decay both choose"),
        (
            {"backbones": [{"name": "test_resnet", "time_budget": 60, "gpus": 2}]},
            "backbones: test_resnet: train.time_budget: not with freeze_epochs or gpus > 1",
        ),
        ({"data": {"meta_columns": ["label"]}}, "data.meta_columns: 'label' is a target column"),
        ({"data": {"meta_columns": ["id"]}}, "data.meta_columns: 'id' is the id column"),
    ],
)
def test_snakemake_dry_run_refuses_in_one_line_before_any_job(tmp_path, over, expected):
    write_csv_images_competition(tmp_path / "tiny.zip")
    cfg = tiny_config(tmp_path / "tiny.zip")
    for key, value in over.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    r = run_snakemake(tmp_path / "wd", cfg, "-n", check=False)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and expected in out, out[-3000:]
    assert sum(expected in line for line in out.splitlines()) == 1
    assert not (tmp_path / "wd" / "results").exists()  # no job ran, nothing was written
