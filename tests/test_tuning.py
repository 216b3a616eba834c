"""Hyperparameter search (`snakemake tune`, kagglecv.tuning; docs/tuning.md).

Library: the space checked against each setting's schema (one line naming the key), the section against the rest
of the config, the sampler and pruner built from it, the study's identity, trials.csv and best.yaml, tune.apply,
a stale RUNNING trial marked failed and its slot asked again, the pruner stopping a trial, a storage URL's password.
Workflow: a study of one-epoch trials on the demo through the real `snakemake tune` (two trials at once, a rerun
that continues the study and whose new trial is pruned, MLflow, the report, tune.apply training with best.yaml);
the same with a real PostgreSQL server as storage; and under the real single-node Slurm.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kagglecv.config.schema import load_schema, resolve
from kagglecv.core.errors import InputError
from kagglecv.core.layout import Layout, TuneFiles
from kagglecv.core.secrets import redact
from kagglecv.tuning import results
from kagglecv.tuning import study as studies
from kagglecv.tuning.settings import Tuning, applied, read_best
from kagglecv.tuning.trial import Reporter

from helpers import REPO, killed_snakemake, run_snakemake

pytestmark = pytest.mark.timeout(120)
SCHEMA = load_schema(REPO / "schemas" / "config.schema.yaml")
SPACE = {
    "lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
    "label_smoothing": {"low": 0.0, "high": 0.2},
    "augment": {"choices": ["none", "light", "flip"]},
}


def tuning_of(tune: dict | None = None, **config) -> Tuning:
    cfg = {
        "backbones": ["resnet18", {"name": "mynet", "model": "nets/mynet.py:build", "model_args": {"width": 32}}],
        "tune": {"space": SPACE, **(tune or {})},
        **config,
    }
    return Tuning.of(resolve(cfg, SCHEMA), SCHEMA)


# ---------------------------------------------------------------- the space and the section


def test_space_of_floats_integers_choices_and_model_args():
    t = tuning_of(
        {
            "backbone": "mynet",
            "space": {
                **SPACE,
                "epochs": {"low": 2, "high": 6, "step": 2},
                "width": {"low": 16, "high": 64},
                "model_args.width": {"choices": [8]},
                "drop_rate": {"low": "0", "high": "5e-1"},
            },
        }
    )  # --config gives text
    by = {p.name: p for p in t.space}
    assert (by["lr"].kind, by["lr"].low, by["lr"].high, by["lr"].log) == ("float", 1e-4, 1e-2, True)
    assert (by["label_smoothing"].kind, by["label_smoothing"].log) == ("float", False)
    assert by["augment"].kind == "choice" and by["augment"].choices == ("none", "light", "flip")
    assert (by["epochs"].kind, by["epochs"].step) == ("int", 2)  # the setting is an integer
    assert (by["width"].kind, by["width"].setting, by["width"].in_model_args) == ("int", "width", True)
    assert by["model_args.width"].in_model_args and by["drop_rate"].high == 0.5
    assert t.backbone == "mynet" and tuning_of().backbone == "resnet18"  # null: the first entry


def test_the_baseline_is_the_entrys_own_values_that_the_space_holds():
    from kagglecv.tuning.space import configured

    t = tuning_of(
        {
            "backbone": "mynet",
            "space": {
                "lr": SPACE["lr"],
                "label_smoothing": {"low": 0.05, "high": 0.2},
                "augment": SPACE["augment"],
                "epochs": {"low": 5, "high": 20},
                "width": {"low": 8, "high": 64},
            },
        }
    )
    assert configured(t.entry, t.space) == {"lr": 0.003, "augment": "none", "epochs": 10, "width": 32}
    assert t.baseline and not tuning_of({"baseline": False}).baseline  # label_smoothing 0 is outside its range


@pytest.mark.parametrize(
    "space, message",
    [
        (
            {"lrr": {"low": 0.1, "high": 0.2}},
            r"tune\.space\.lrr: 'lrr' is not a training setting \(a train: key\) nor a "
            r"key of backbone 'resnet18''s model_args",
        ),
        ({"threads": {"low": 1, "high": 4}}, r"tune\.space\.threads: 'threads' says how a job is scheduled"),
        ({"stages": {"choices": [1]}}, r"tune\.space\.stages: 'stages' is not a single value"),
        (
            {"label_smoothing": {"low": 0.0, "high": 1.5}},
            r"tune\.space\.label_smoothing\.high: 1\.5 is greater than the "
            r"maximum of 1",
        ),
        ({"augment": {"choices": ["none", "blur"]}}, r"tune\.space\.augment\.choices\.1: 'blur' is not one of"),
        (
            {"augment": {"low": 0, "high": 1}},
            r"tune\.space\.augment: 'augment' is not a number; search it with choices",
        ),
        ({"lr": {"low": 0.0, "high": 0.1, "log": True}}, r"tune\.space\.lr: log: true needs low above 0"),
        ({"lr": {"low": 0.1, "high": 0.01}}, r"tune\.space\.lr: low \(0\.1\) is above high \(0\.01\)"),
        ({"lr": {"low": "small", "high": 0.01}}, r"tune\.space\.lr\.low: 'small' is not a number"),
        ({"epochs": {"low": 1.5, "high": 4}}, r"tune\.space\.epochs\.low: 1\.5 is not an integer"),
        ({"lr": {"high": 0.01}}, r"tune\.space\.lr: a range needs low"),
        ({"augment": {"choices": ["none"], "low": 1}}, r"tune\.space\.augment: choices go alone, without low"),
        (
            {"model_args.depth": {"low": 1, "high": 3}},
            r"tune\.space\.model_args\.depth: 'depth' is not a key of backbone "
            r"'resnet18''s model_args \(its keys: none\)",
        ),
    ],
)
def test_a_bad_space_key_is_one_line_naming_it(space, message):
    with pytest.raises(InputError, match=message) as e:
        tuning_of({"space": space})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "tune, config, message",
    [
        (
            {"backbone": "resnet50"},
            {},
            r"tune\.backbone: 'resnet50' is not a backbones entry \(entries: resnet18, mynet\)",
        ),
        ({"folds": [0, 5]}, {}, r"tune\.folds: fold 5 does not exist with folds: 5 \(0 to 4\)"),
        ({"storage": "results/study.db"}, {}, r"tune\.storage: not a database URL"),
        (
            {"space": {"label_smoothing": {"low": 0, "high": 0.1}}},
            {"train": {"lr": "auto"}},
            r"tune\.space: backbone 'resnet18' has lr: auto; search lr",
        ),
    ],
)
def test_the_section_is_checked_against_the_rest_of_the_config(tune, config, message):
    with pytest.raises(InputError, match=message):
        tuning_of(tune, **config)


def test_a_config_without_tuning_passes_whatever_its_entries():
    cfg = resolve({"backbones": [{"name": "resnet18", "lr": "auto"}]}, SCHEMA)  # lr_find's entry, no tune.space
    assert Tuning.of(cfg, SCHEMA).space == ()


def test_the_schema_refuses_unknown_keys_of_the_section_and_of_a_range():
    with pytest.raises(InputError, match=r"config: tune: Additional properties .*'trails'"):
        resolve({"tune": {"trails": 3}}, SCHEMA)
    with pytest.raises(InputError, match=r"config: tune\.space\.lr: Additional properties .*'lo'"):
        resolve({"tune": {"space": {"lr": {"lo": 0.1, "high": 0.2}}}}, SCHEMA)
    with pytest.raises(InputError, match=r"config: tune\.pruner: 'asha' is not one of"):
        resolve({"tune": {"pruner": "asha"}}, SCHEMA)


# ---------------------------------------------------------------- sampler, pruner, identity


def test_sampler_and_pruner_are_built_from_the_section():
    import optuna

    t = tuning_of({"startup_trials": 3, "warmup_steps": 2, "seed": 7})
    sampler = t.sampler_for(0, 0)
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._n_startup_trials == 3
    assert isinstance(tuning_of({"sampler": "random"}).sampler_for(0, 0), optuna.samplers.RandomSampler)
    median = t.make_pruner()
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert (median._n_startup_trials, median._n_warmup_steps) == (3, 2)
    assert isinstance(tuning_of({"pruner": "hyperband"}).make_pruner(), optuna.pruners.HyperbandPruner)
    assert isinstance(tuning_of({"pruner": "none"}).make_pruner(), optuna.pruners.NopPruner)
    assert t.seed == 7 and tuning_of(seed=3).seed == 3  # null: the config's seed

    def first(tuning, slot, attempt):  # every job is a new process: seeded per slot and attempt, reproducibly
        s = optuna.create_study(sampler=tuning.sampler_for(slot, attempt))
        return s.ask().suggest_float("x", 0, 1)

    assert first(t, 0, 0) == first(t, 0, 0)
    assert len({first(t, 0, 0), first(t, 1, 0), first(t, 0, 1)}) == 3


def test_the_study_name_changes_with_what_a_value_means_only():
    defaults = resolve({}, SCHEMA)["train"]
    name = tuning_of().study_name(defaults)
    assert name.startswith("digits-demo.resnet18.")
    same = [
        tuning_of(
            {
                "trials": 40,
                "pruner": "hyperband",
                "sampler": "random",
                "space": {**SPACE, "drop_rate": {"low": 0, "high": 0.3}},
            }
        ),
        tuning_of(train={"lr": 0.01}),  # lr is searched: the base value does not matter
        tuning_of(train={"threads": 4, "mem_mb": 4000}),
    ]  # scheduling
    assert {t.study_name(defaults) for t in same} == {name}
    width = [
        tuning_of(
            {"backbone": "mynet", "space": {"width": {"low": 8, "high": 64}}},
            backbones=[{"name": "mynet", "model": "nets/mynet.py:build", "model_args": {"width": w, "depth": 2}}],
        )
        for w in (16, 32)
    ]
    assert width[0].study_name(defaults) == width[1].study_name(defaults)  # a searched model_args key, too
    other = [
        tuning_of(train={"epochs": 3}),
        tuning_of({"folds": [0, 1]}),
        tuning_of(metric="log_loss"),
        tuning_of(seed=1),
        tuning_of({"backbone": "mynet"}),
    ]
    assert len({t.study_name(defaults) for t in other} | {name}) == 6


# ---------------------------------------------------------------- a study's files


def sqlite_study(tmp_path, tuning: Tuning, name: str = "s"):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    return studies.open_study(name, url, tuning.direction), url


def told(study, params: dict, value=None, state=None, reports=(), epochs=1):
    """A finished trial with these params added to `study` (Optuna's create_trial and add_trial)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    known = {
        "lr": FloatDistribution(1e-4, 1e-2, log=True),
        "width": IntDistribution(8, 64),
        "augment": CategoricalDistribution(["none", "light", "flip"]),
    }
    state = state or optuna.trial.TrialState.COMPLETE
    study.add_trial(
        optuna.trial.create_trial(
            params=params,
            distributions={k: known[k] for k in params},
            value=value,
            state=state,
            intermediate_values=dict(enumerate(reports)),
            user_attrs={"epochs": epochs},
        )
    )
    return study.trials[-1]


def test_trials_csv_holds_every_trial_and_best_yaml_is_a_backbones_entry(tmp_path):
    from optuna.trial import TrialState

    t = tuning_of(
        {
            "backbone": "mynet",
            "space": {"lr": SPACE["lr"], "augment": SPACE["augment"], "width": {"low": 8, "high": 64}},
        },
        train={"epochs": 2},
    )
    study, _ = sqlite_study(tmp_path, t)
    told(study, {"lr": 0.001, "augment": "none", "width": 16}, 0.80, reports=[0.7, 0.8], epochs=2)
    told(study, {"lr": 0.005, "augment": "flip", "width": 48}, 0.90, reports=[0.75, 0.9], epochs=2)
    told(study, {"lr": 0.0002, "augment": "light", "width": 8}, 0.3, state=TrialState.PRUNED, reports=[0.3])
    told(study, {"lr": 0.003, "augment": "none", "width": 32}, state=TrialState.FAIL, epochs=0)
    df = results.write_trials(study.trials, tmp_path / "trials.csv")
    csv = pd.read_csv(tmp_path / "trials.csv")
    assert list(csv.columns[:8]) == [
        "number",
        "state",
        "value",
        "seconds",
        "epochs",
        "params_lr",
        "params_augment",
        "params_width",
    ]
    assert csv["state"].tolist() == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    assert csv["value"].tolist()[:3] == [0.8, 0.9, 0.3] and pd.isna(csv["value"][3])  # pruned: its last report
    assert csv["epochs"].tolist() == [2, 2, 1, 0] and len(df) == 4
    entry = results.write_best(t, study, tmp_path / "best.yaml")
    text = (tmp_path / "best.yaml").read_text()
    assert text.startswith("# snakemake tune: trial 1 of study s, the best of 4 trial(s): accuracy 0.9")
    best = yaml.safe_load(text)
    assert best == {"backbones": [entry]}
    assert entry == {
        "name": "mynet",
        "model": "nets/mynet.py:build",
        "model_args": {"width": 48},
        "lr": 0.005,
        "augment": "flip",
    }
    cfg = resolve({"backbones": best["backbones"]}, SCHEMA)  # includable as a config file as it is
    assert cfg["backbones"][0]["lr"] == 0.005


def test_best_is_the_lowest_for_a_loss_metric_and_none_completed_is_one_line(tmp_path):
    from optuna.trial import TrialState

    t = tuning_of(metric="log_loss")
    assert t.direction == "minimize"
    study, _ = sqlite_study(tmp_path, t)
    told(study, {"lr": 0.001, "augment": "none"}, state=TrialState.FAIL)
    with pytest.raises(InputError, match=r"no trial of study s completed \(\{'FAIL': 1\}\)"):
        results.write_best(t, study, tmp_path / "best.yaml")
    told(study, {"lr": 0.001, "augment": "none"}, 0.5)
    told(study, {"lr": 0.002, "augment": "none"}, 0.3)
    assert results.write_best(t, study, tmp_path / "best.yaml")["lr"] == 0.002
    found, why = results.importances(study)
    assert found == {} or set(found) <= {"lr", "augment"}, (found, why)


def test_apply_lays_best_yaml_over_its_entry_and_a_missing_one_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = resolve(
        {
            "backbones": ["resnet10t", {"name": "resnet18", "img_size": 32, "model_args": {"a": 1}}],
            "tune": {"backbone": "resnet18", "apply": True, "space": SPACE},
        },
        SCHEMA,
    )
    from kagglecv.config.members import backbone_settings

    base, layout = backbone_settings(cfg, SCHEMA), Layout.of("digits-demo")
    with pytest.raises(
        InputError,
        match=r"tune\.apply: true, but results/digits-demo/tune/best\.yaml does not exist "
        r"yet: run `snakemake tune",
    ):
        applied(base, cfg, layout, SCHEMA)
    best = layout.tune.best
    best.parent.mkdir(parents=True)
    best.write_text("backbones:\n- {name: resnet18, img_size: 32, lr: 0.0042, augment: flip, model_args: {b: 2}}\n")
    out = applied(base, cfg, layout, SCHEMA)
    assert out["resnet10t"] == base["resnet10t"]
    assert (out["resnet18"]["lr"], out["resnet18"]["augment"], out["resnet18"]["img_size"]) == (0.0042, "flip", 32)
    assert out["resnet18"]["model_args"] == {"a": 1, "b": 2}
    assert applied(base, {**cfg, "tune": {**cfg["tune"], "apply": False}}, layout, SCHEMA) is base
    best.write_text("backbones:\n- {name: resnet18, label_smoothing: 3}\n")
    with pytest.raises(InputError, match=r"best\.yaml: backbone 'resnet18': 3 is greater than the maximum of 1"):
        applied(base, cfg, layout, SCHEMA)
    best.write_text("backbones:\n- {name: resnet10t}\n")
    with pytest.raises(InputError, match=r"its entry is not backbone 'resnet18'"):
        read_best(best, "resnet18")


# ---------------------------------------------------------------- slots, reports, secrets


def test_a_stale_running_trial_is_marked_failed_and_its_slot_asked_again(tmp_path):
    from optuna.trial import TrialState

    t = tuning_of()
    study, url = sqlite_study(tmp_path, t)
    killed, _ = studies.claim(study, 0, t.sampler_for, url)  # slot 0's job dies: its trial stays RUNNING
    other, _ = studies.claim(study, 1, t.sampler_for, url)  # slot 1's job is still running
    again = studies.open_study("s", url, t.direction)  # slot 0 again, in a new process
    trial, stale = studies.claim(again, 0, t.sampler_for, url)
    assert stale == [killed.number] and trial.number == 2
    states = {f.number: f for f in again.get_trials()}
    assert states[killed.number].state == TrialState.FAIL
    assert states[killed.number].user_attrs["error"] == studies.KILLED
    assert states[other.number].state == TrialState.RUNNING  # another slot's trial is not this job's to judge
    assert (states[2].user_attrs["slot"], states[2].user_attrs["attempt"]) == (0, 1)
    assert trial.params == {} and t.space  # the new trial samples afresh (attempt 1 seeds its sampler)


def _claim_at_once(url: str, slot: int, barrier, numbers) -> None:
    """A slot job's claim (kagglecv.jobs.tuning.tune_trial) in its own process, released with the others."""
    t = tuning_of()
    study = studies.open_study("s", url, t.direction)
    barrier.wait()
    trial, _ = studies.claim(study, slot, t.sampler_for, url)
    numbers[slot] = trial.number


def test_slots_asking_at_once_never_share_a_trial(tmp_path):
    """The baseline is an enqueued trial; slots started together (as Slurm starts them) once both took it, and the
    second tell failed ("Cannot tell a COMPLETE trial")."""
    import multiprocessing as mp

    t = tuning_of()
    ctx = mp.get_context("fork")
    for round_ in range(4):
        study, url = sqlite_study(tmp_path, t)
        study.enqueue_trial({"lr": 0.003})
        slots, barrier, numbers = 4, ctx.Barrier(4), ctx.Manager().dict()
        procs = [
            ctx.Process(target=_claim_at_once, args=(url, round_ * slots + k, barrier, numbers)) for k in range(slots)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        assert [proc.exitcode for proc in procs] == [0] * slots
        assert len(set(numbers.values())) == slots, dict(numbers)  # one trial each


def test_the_reporter_reports_validated_epochs_and_folds_and_prunes(tmp_path):
    import optuna

    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    )
    done = study.ask()
    for step, v in enumerate([0.8, 0.85, 0.9]):
        done.report(v, step)
    study.tell(done, 0.9)
    good = Reporter(study.ask(), "accuracy")
    good.epoch(1, {"train_loss": 1.0})  # not validated: counted, not reported
    good.epoch(2, {"valid_accuracy": 0.82})
    good.report(0.86)  # the fold's score
    assert (good.step, good.epochs, good.trial.number) == (2, 2, 1)
    bad = Reporter(study.ask(), "accuracy")
    with pytest.raises(optuna.TrialPruned, match="pruned at step 0"):
        bad.epoch(1, {"valid_accuracy": 0.1})
    by_fold = Reporter(study.ask(), "accuracy", prune_on="fold")
    by_fold.epoch(1, {"valid_accuracy": 0.1})  # reported, the pruner not asked
    with pytest.raises(optuna.TrialPruned, match="pruned at step 1"):
        by_fold.report(0.2)  # the fold's score: asked


def test_a_storage_password_is_redacted_and_an_unreachable_server_is_one_line():
    url = "postgresql+psycopg://tuner:s3cret-pw@127.0.0.1:9/optuna"
    assert "s3cret-pw" not in redact(url) and redact(url) == "postgresql+psycopg://***@127.0.0.1:9/optuna"
    with pytest.raises(InputError) as e:
        studies.open_study("s", url, "maximize")
    assert str(e.value).startswith("tune.storage: cannot open postgresql+psycopg://***@127.0.0.1:9/optuna (")
    assert "s3cret" not in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- the real `snakemake tune`

# Two-epoch trials of the tiny timm test model at 16 px on the demo (digits), fold 0 of 2. No pruner while trials run
# side by side (which one finishes first is a race); the rerun's median pruner needs one completed trial and prunes
# from the first report on, so its trial, far behind the others, is pruned at its first epoch, whatever the timing.
TUNE_SPACE = {
    "lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True},
    "label_smoothing": {"low": 0.0, "high": 0.1},
    "augment": {"choices": ["none", "flip"]},
}
BAD_LR = {"lr": {"low": 1.0e-7, "high": 2.0e-7, "log": True}}  # an epoch at this lr stays at chance (0.1); the
# first two trials' first epoch scored 0.44 and 0.64 (an epoch's validation comes before precise batch norm: with
# batches of 32 it was at chance for every trial, the reason for tune.warmup_steps' default of 1)


def demo_config(**tune) -> dict:
    return {
        "competition": "digits-demo",
        "data": {"source": "demo"},
        "folds": 2,
        "seed": 1,
        "backbones": ["test_resnet"],
        "train": {"epochs": 2, "img_size": 16, "batch_size": 16},
        "mlflow": {"live": False},
        "tune": {"trials": 2, "startup_trials": 1, "warmup_steps": 0, "pruner": "none", "space": TUNE_SPACE, **tune},
    }


def tune_dir(wd: Path) -> TuneFiles:
    return TuneFiles(wd / "results" / "digits-demo" / "tune")


def stored_trials(url: str, name: str) -> list:
    import optuna

    return optuna.load_study(study_name=name, storage=url).get_trials()


def overlap(a, b) -> bool:
    return a.datetime_start < b.datetime_complete and b.datetime_start < a.datetime_complete


def jobs_run(r, rule: str) -> int:
    """How many jobs of `rule` Snakemake's job stats list (0 when none ran)."""
    found = re.search(rf"^{rule}\s+(\d+)$", r.stdout + r.stderr, re.M)
    return int(found.group(1)) if found else 0


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    """`snakemake tune` with 2 trials on 2 cores, then a rerun asking for 3 whose space holds only a hopeless lr."""
    wd = tmp_path_factory.mktemp("tune")
    first = run_snakemake(wd, demo_config(), "tune")
    files = tune_dir(wd)
    name = json.loads(files.study.read_text())["study"]
    url = f"sqlite:///{files.db}"
    before = stored_trials(url, name)
    trials_csv = files.trials.read_text()
    second = run_snakemake(wd, demo_config(trials=3, pruner="median", space={**TUNE_SPACE, **BAD_LR}), "tune")
    return {
        "wd": wd,
        "files": files,
        "name": name,
        "url": url,
        "first": first,
        "second": second,
        "before": before,
        "first_csv": trials_csv,
    }


@pytest.mark.workflow
@pytest.mark.timeout(600)
def test_a_study_runs_two_trials_at_once_and_leaves_its_files(study_run):
    files, before = study_run["files"], study_run["before"]
    assert len(before) == 2 and {t.state.name for t in before} == {"COMPLETE"}
    assert overlap(*before), [(t.datetime_start, t.datetime_complete) for t in before]  # side by side on 2 cores
    assert {t.user_attrs["slot"] for t in before} == {0, 1}
    baseline = min(before, key=lambda t: t.number)  # the entry as configured, enqueued by tune_study
    assert baseline.user_attrs["baseline"] and baseline.params == {
        "lr": 0.003,
        "label_smoothing": 0.0,
        "augment": "none",
    }
    csv = pd.read_csv(pd.io.common.StringIO(study_run["first_csv"]))
    assert csv["number"].tolist() == [0, 1] and (csv["epochs"] == 2).all()
    assert {"params_lr", "params_label_smoothing", "params_augment", "seconds", "value"} <= set(csv.columns)
    assert csv["baseline"].tolist() == [True, False]
    for t in before:  # a trial's fold kept what the study needs, not the weights nor an MLflow record
        fold = files.trial(t.number) / "fold0"
        assert {p.name for p in fold.iterdir()} == {"oof.csv", "metrics.json", "config.json", "history.csv"}
        assert json.loads((fold / "metrics.json").read_text())["score"] == pytest.approx(t.value)
    slot = json.loads(files.slot(0).read_text())
    assert slot["slot"] == 0 and slot["study"] == study_run["name"] and slot["state"] in ("COMPLETE", "PRUNED")
    for png in (files.history, files.importances):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.workflow
@pytest.mark.timeout(600)
def test_a_rerun_continues_the_study_and_its_hopeless_trial_is_pruned(study_run):
    second, files = study_run["second"], study_run["files"]
    assert jobs_run(second, "tune_trial") == 1 and jobs_run(second, "prepare") == 0  # one new slot, nothing else
    after = stored_trials(study_run["url"], study_run["name"])
    assert [(t.number, t.value) for t in after[:2]] == [(t.number, t.value) for t in study_run["before"]]
    pruned = after[2]
    assert pruned.state.name == "PRUNED" and pruned.user_attrs["slot"] == 2, (pruned.state, pruned.intermediate_values)
    assert list(pruned.intermediate_values) == [0] and pruned.user_attrs["epochs"] == 1  # stopped at its first report,
    assert not (files.trial(2) / "fold0" / "metrics.json").exists()  # after its first epoch of 2: the fold unfinished
    assert pruned.value < min(t.value for t in after[:2])
    csv = pd.read_csv(files.trials)
    assert csv["state"].tolist() == ["COMPLETE", "COMPLETE", "PRUNED"]
    best = yaml.safe_load(files.best.read_text())["backbones"][0]
    top = max(after[:2], key=lambda t: t.value)
    assert best == {"name": "test_resnet", **top.params}
    assert f"trial {top.number} of study {study_run['name']}, the best of 3" in files.best.read_text()


@pytest.mark.workflow
@pytest.mark.timeout(600)
def test_the_study_is_an_mlflow_parent_with_a_child_per_trial(study_run):
    with sqlite3.connect(study_run["wd"] / "results" / "mlflow.db") as db:
        runs = db.execute("SELECT r.run_uuid, r.name, r.status FROM runs r").fetchall()
        tags = {(u, k): v for u, k, v in db.execute("SELECT run_uuid, key, value FROM tags")}
        metrics = db.execute("SELECT run_uuid, key, value, step FROM metrics").fetchall()
        params = db.execute("SELECT run_uuid, key, value FROM params").fetchall()
    parent = [u for u, name, _ in runs if name == "tune-test_resnet"]
    assert len(parent) == 1, runs  # one parent, found again by the rerun
    children = {name: (u, status) for u, name, status in runs if tags.get((u, "mlflow.parentRunId")) == parent[0]}
    assert {k: s for k, (_, s) in children.items()} == {
        "trial-000": "FINISHED",
        "trial-001": "FINISHED",
        "trial-002": "KILLED",
    }
    u = children["trial-002"][0]
    assert tags[(u, "optuna.state")] == "PRUNED" and {k for r, k, *_ in metrics if r == u} == {
        "accuracy_report",
        "epochs",
        "seconds",
    }
    assert {k for r, k, _ in params if r == u} == {"lr", "label_smoothing", "augment", "slot", "attempt"}
    best = {k: v for r, k, v, _ in metrics if r == parent[0]}
    assert best["trials_complete"] == 2 and best["trials_pruned"] == 1
    assert best["best_value"] == pytest.approx(max(t.value for t in study_run["before"]))


@pytest.mark.workflow
@pytest.mark.timeout(600)
def test_with_live_tracking_a_trial_is_in_mlflow_as_its_job_ends(tmp_path):
    """mlflow.live: the study's parent run is made by tune_study and a trial's child run by the trial's own job, so
    a study can be watched while it runs; here the slot's job alone, before any tune_results."""
    config = {**demo_config(trials=1), "mlflow": {"live": True}}
    slot = tune_dir(tmp_path).slot(0)
    run_snakemake(tmp_path, config, str(slot.relative_to(tmp_path)))
    assert slot.exists() and not tune_dir(tmp_path).trials.exists()  # no tune_results ran
    with sqlite3.connect(tmp_path / "results" / "mlflow.db") as db:
        runs = {u: (name, status) for u, name, status in db.execute("SELECT run_uuid, name, status FROM runs")}
        tags = {(u, k): v for u, k, v in db.execute("SELECT run_uuid, key, value FROM tags")}
        metrics = {(u, k): v for u, k, v in db.execute("SELECT run_uuid, key, value FROM metrics")}
    parent = [u for u, (name, _) in runs.items() if name == "tune-test_resnet"]
    trial = [u for u, (name, _) in runs.items() if name == "trial-000"]
    assert len(parent) == 1 and len(trial) == 1, runs
    assert tags[(trial[0], "mlflow.parentRunId")] == parent[0] and runs[trial[0]][1] == "FINISHED"
    assert metrics[(parent[0], "trials_complete")] == 1 and (trial[0], "accuracy") in metrics


@pytest.mark.workflow
@pytest.mark.timeout(600)
def test_the_report_holds_the_study_and_apply_trains_with_best_yaml(study_run):
    wd = study_run["wd"]
    out = wd / "report.html"
    r = run_snakemake(wd, demo_config(trials=3), "tune", "--report", str(out))
    html = out.read_text()
    assert "Tuning" in html and "history.png" in html and "importances.png" in html, r.stderr[-2000:]
    best = yaml.safe_load(study_run["files"].best.read_text())["backbones"][0]
    target = "results/digits-demo/models/test_resnet/fold0/config.json"
    run_snakemake(wd, demo_config(trials=3, apply=True), target)
    trained = json.loads((wd / target).read_text())
    assert {k: trained[k] for k in ("lr", "label_smoothing", "augment")} == {
        k: best[k] for k in ("lr", "label_smoothing", "augment")
    }


@pytest.mark.workflow
@pytest.mark.timeout(300)
def test_bad_tuning_input_stops_with_one_line_before_training(tmp_path):
    r = run_snakemake(
        tmp_path / "a", demo_config(space={"lrate": {"low": 0.1, "high": 0.2}}), "tune", "-n", check=False
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "tune.space.lrate: 'lrate' is not a training setting" in out, out[-2000:]
    assert not (tmp_path / "a" / "results").exists()
    r = run_snakemake(tmp_path / "b", demo_config(space={}), "results/digits-demo/tune/study.json", check=False)
    assert r.returncode != 0 and "ERROR: tune.space: empty; name the settings to search" in r.stderr, r.stderr[-3000:]
    r = run_snakemake(tmp_path / "c", demo_config(apply=True), "-n", check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "tune.apply: true, but results/digits-demo/tune/best.yaml does not exist yet" in out, (
        out[-2000:]
    )


def running_trial_reported(db: Path) -> bool:
    """Whether the study's storage holds a RUNNING trial that has reported (read with SQL: cheap to poll)."""
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return bool(
                con.execute(
                    "SELECT 1 FROM trials t JOIN trial_intermediate_values v ON v.trial_id = "
                    "t.trial_id WHERE t.state = 'RUNNING' LIMIT 1"
                ).fetchall()
            )
    except sqlite3.Error:  # not created yet, or being written
        return False


@pytest.mark.workflow
@pytest.mark.xdist_group("tune-killed")
@pytest.mark.timeout(600)
def test_a_trial_killed_mid_way_is_marked_failed_and_its_slot_runs_again(tmp_path):
    """SIGKILL to snakemake and its jobs while the one trial trains; then --unlock and the same command."""
    wd = tmp_path / "killed"
    cfg = demo_config(trials=1)
    cfg["train"] = {**cfg["train"], "epochs": 6}  # a few seconds of training to be killed in
    files = tune_dir(wd)
    trains = functools.partial(running_trial_reported, files.db)  # a trial has started training
    killed_snakemake(wd, cfg, "tune", ready=trains, timeout=400, poll=0.2, log=wd / "killed.log")
    assert not files.slot(0).exists()
    run_snakemake(wd, cfg, "--unlock")
    r = run_snakemake(wd, cfg, "tune")
    name = json.loads(files.study.read_text())["study"]
    killed, retried = stored_trials(f"sqlite:///{files.db}", name)
    assert killed.state.name == "FAIL" and killed.user_attrs["error"] == studies.KILLED
    assert retried.state.name == "COMPLETE" and retried.user_attrs["epochs"] == 6
    assert [(t.user_attrs["slot"], t.user_attrs["attempt"]) for t in (killed, retried)] == [(0, 0), (0, 1)]
    assert pd.read_csv(files.trials)["state"].tolist() == ["FAIL", "COMPLETE"] and jobs_run(r, "tune_trial") == 1
    log = (wd / "results" / "digits-demo" / "logs" / "tune" / "slot0.log").read_text()
    assert f"slot 0: trial(s) [{killed.number}] left RUNNING by a killed job, marked FAIL" in log


# ---------------------------------------------------------------- a PostgreSQL study, a Slurm study


@pytest.mark.workflow
@pytest.mark.postgres
@pytest.mark.xdist_group("tune-postgres")  # independent of the module's study: either worker may take it
@pytest.mark.timeout(600)
def test_two_trial_jobs_share_a_study_in_postgresql_and_its_password_is_never_written(tmp_path, monkeypatch):
    from postgres_local import PostgresServer, Unavailable

    try:
        server = PostgresServer().start()
    except Unavailable as e:
        pytest.skip(f"no PostgreSQL here: {e}")
    try:
        wd = tmp_path / "pg"
        r = run_snakemake(wd, demo_config(storage=server.url()), "tune")
        files = tune_dir(wd)
        name = json.loads(files.study.read_text())["study"]
        trials = stored_trials(server.url(), name)
        assert len(trials) == 2 and {t.state.name for t in trials} == {"COMPLETE"} and overlap(*trials)
        assert not files.db.exists()  # the study is in the server, not in the SQLite default
        assert json.loads(files.study.read_text())["storage"] == redact(server.url())
        assert server.password not in r.stdout + r.stderr
        leaks = [
            p
            for p in wd.rglob("*")
            if p.is_file() and server.password.encode() in p.read_bytes() and p != wd / "config.yaml"
        ]  # the user's own file: the one place it was written
        assert not leaks, leaks  # logs, Snakemake's records, study.json, trials.csv, best.yaml, mlflow.db
        # the way docs/tuning.md advises: no password in the URL, libpq's PGPASSWORD in the environment
        monkeypatch.setenv("PGPASSWORD", server.password)
        bare = server.url().replace(f":{server.password}@", "@")
        assert len(studies.open_study(name, bare, "maximize").trials) == 2
    finally:
        server.stop()


@pytest.mark.slurm
@pytest.mark.workflow
@pytest.mark.timeout(1800)
def test_each_trial_is_a_slurm_job(tmp_path_factory):
    import importlib.util
    import os
    import subprocess
    import sys

    from helpers import SNAKEMAKE
    from slurm_local import Unavailable, slurm_cluster

    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm is not installed")
    try:
        cm = slurm_cluster(tmp_path_factory.mktemp("slurm"))
        cluster = cm.__enter__()
    except Unavailable as e:
        pytest.skip(f"no Slurm here: {e}")
    try:
        wd = tmp_path_factory.mktemp("tune-slurm")
        (wd / "config.yaml").write_text(yaml.safe_dump(demo_config()))
        # --cores 1: the node has 2 CPUs, and a cluster's training job would ask for 8 (kagglecv.config.train_threads)
        cmd = [
            *SNAKEMAKE,
            "tune",
            "--cores",
            "1",
            "--slurm-init-seconds-before-status-checks",
            "3",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(wd),
            "--workflow-profile",
            str(REPO / "profiles" / "slurm"),
            "--configfile",
            str(wd / "config.yaml"),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KAGGLECV_", "SLURM_"))}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", ""), "/usr/sbin", "/sbin"]),
            }
        )
        r = subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True, timeout=1500)
        assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
        jobs = [j for j in cluster.jobs() if "/rule_tune_trial/" in j.get("StdOut", "")]
        assert len(jobs) == 2 and {j["JobState"] for j in jobs} == {"COMPLETED"}, jobs  # one sbatch job per trial
        csv = pd.read_csv(tune_dir(wd).trials)
        assert sorted(csv["slot"]) == [0, 1] and set(csv["state"]) <= {"COMPLETE", "PRUNED"}
        # each trial trained on the one CPU its sbatch job had (the job step's `--cores all` is the node's two)
        used = [json.loads(p.read_text())["threads"] for p in tune_dir(wd).path.glob("trials/*/fold*/config.json")]
        assert used == [1, 1], used
    finally:
        cm.__exit__(None, None, None)
