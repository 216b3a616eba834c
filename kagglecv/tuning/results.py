"""What a study leaves in tune/, made from its storage: trials.csv (every trial), best.yaml (the best trial as a
backbones: entry) and the parameter importances the report plots."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from kagglecv.core.errors import InputError
from kagglecv.core.files import atomic_path, write_csv
from kagglecv.tuning.space import place
from kagglecv.tuning.study import trial_row


def trials_frame(trials) -> pd.DataFrame:
    """Every trial, by number (kagglecv.tuning.study.trial_row)."""
    rows = [trial_row(t) for t in sorted(trials, key=lambda t: t.number)]
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else ["number", "state", "value"])


def write_trials(trials, path: str | Path) -> pd.DataFrame:
    df = trials_frame(trials)
    write_csv(path, df)
    return df


def best_trial(study, trials: list):
    """The best COMPLETE trial (`trials`: the study's); InputError saying what they ended as when none completed."""
    from optuna.trial import TrialState

    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if not done:
        states = pd.Series([t.state.name for t in trials]).value_counts().to_dict()
        errors = [t.user_attrs["error"] for t in trials if t.user_attrs.get("error")]
        raise InputError(
            f"tune: no trial of study {study.study_name} completed ({states}); "
            + (f"the first error: {errors[0]}" if errors else "see results/<competition>/logs/tune/")
        )
    return study.best_trial


def best_entry(tuning, trial) -> dict:
    """The best trial as a backbones: entry: the entry as the config writes it, the tuned values in place."""
    by_name = {p.name: trial.params[p.name] for p in tuning.space if p.name in trial.params}
    return {"name": tuning.backbone, **place(tuning.overrides, tuning.space, by_name)}


def write_best(tuning, study, path: str | Path, trials: list | None = None) -> dict:
    """best.yaml: a `backbones:` list of the one tuned entry, to include (--configfile) or paste, or to lay over the
    entry with tune.apply: true; a header says which trial of which study it is. `trials`: the study's, if read."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    trial = best_trial(study, trials)
    entry = best_entry(tuning, trial)
    folds = ", ".join(str(k) for k in tuning.folds)
    header = (
        f"# snakemake tune: trial {trial.number} of study {study.study_name}, the best of "
        f"{len(trials)} trial(s): {tuning.metric} {trial.value:.6g} (mean of fold(s) {folds}).\n"
        f"# tune.apply: true lays this entry over backbone {tuning.backbone!r}; or paste it into backbones:.\n"
    )
    with atomic_path(path) as tmp:
        tmp.write_text(header + yaml.safe_dump({"backbones": [entry]}, sort_keys=False, default_flow_style=False))
    return entry


def importances(study, trials: list | None = None) -> tuple[dict[str, float], str | None]:
    """({parameter: importance}, None), Optuna's default evaluator (PED-ANOVA in Optuna 5) over the COMPLETE trials;
    or ({}, why not) when the trials cannot tell (fewer than two completed, or one setting throughout)."""
    import optuna
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False) if trials is None else trials
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if len(done) < 2:
        return {}, f"{len(done)} completed trial(s): importances need at least 2"
    try:
        found = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError) as e:
        return {}, f"not computable from these trials ({type(e).__name__}: {str(e)[:120]})"
    if not found:
        return {}, "no parameter varied among the completed trials"
    return {k: float(v) for k, v in found.items()}, None
