"""One trial: the backbone entry trained on tune.folds with the settings the sampler asked for, as the final
run trains it (kagglecv.training.train, the same folds.csv, seed and metric), reporting as it goes.

Reports (Optuna's intermediate values): the fold's validation score after every validated epoch, and the fold's
score as the final run scores it (precise batch norm, TTA) after every fold; the step is the report's index
within the trial, so trials of one study report the same (fold, epoch) at the same step. After each report the
pruner may stop the trial (PRUNED). Anything a trial raises is recorded (FAIL, with the error's first line) and
the job still succeeds: one bad corner of the space must not stop the study.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import traceback

from kagglecv.core.errors import first_line
from kagglecv.core.secrets import redact


class Reporter:
    """`on_epoch` for kagglecv.training.train.run, and the fold's score after it: reports, then asks the pruner
    (after every report, or with prune_on="fold" after the folds' scores only)."""

    def __init__(self, trial, metric: str, prune_on: str = "epoch"):
        self.trial, self.key, self.step, self.epochs = trial, f"valid_{metric}", 0, 0
        self.on_epochs = prune_on == "epoch"

    def report(self, value: float, prune: bool = True) -> None:
        import optuna

        self.trial.report(float(value), self.step)
        self.step += 1
        if prune and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {self.step - 1} (value {value:.5g})")

    def epoch(self, epoch: int, row: dict) -> None:
        self.epochs += 1
        if self.key in row:
            self.report(row[self.key], prune=self.on_epochs)


def trial_settings(tuning, values: dict, fold: int, threads: int) -> dict:
    """The TrainConfig settings of one fold of the trial: the entry with the sampled values in place."""
    from kagglecv.config.train import TrainConfig
    from kagglecv.tuning.space import place

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    settings = {k: v for k, v in place(tuning.entry, tuning.space, values).items() if k in names}
    return {
        **settings,
        "backbone": tuning.backbone,
        "fold": fold,
        "seed": tuning.seed,
        "metric": tuning.metric,
        "threads": threads,
    }


def tidy(out) -> None:
    """What a trial's fold folder does not need to keep: the weights (tens of MB per trial; the final run retrains
    from best.yaml), test predictions, a resume checkpoint, and the record of a run that was never tracked (it
    would be replayed into MLflow as a training job by kagglecv.tracking.backfill)."""
    from kagglecv.core.layout import RECORD_SUFFIX

    for path in (out.model, out.test, out.resume, *out.path.glob(f"*{RECORD_SUFFIX}")):
        path.unlink(missing_ok=True)


def train_folds(tuning, trial, values: dict, layout, trial_dir, threads: int, reporter: Reporter) -> float:
    """Train every fold of the trial; the mean of the folds' scores."""
    from kagglecv.config.train import TrainConfig
    from kagglecv.core.layout import ModelFiles
    from kagglecv.training import train as trainer

    scores = []
    for k in tuning.folds:
        out = ModelFiles(trial_dir / f"fold{k}")
        cfg = TrainConfig.from_dict(trial_settings(tuning, values, k, threads))
        try:
            result = trainer.run(
                cfg,
                layout.prepared.path,
                layout.folds,
                out.path,
                experiment=layout.competition,
                results_dir=layout.results,
                track=False,
                on_epoch=reporter.epoch,
            )
        finally:
            tidy(out)
        scores.append(float(result["score"]))
        print(f"trial {trial.number} fold {k}: {tuning.metric} {scores[-1]:.5g}", flush=True)
        reporter.report(scores[-1])
    return sum(scores) / len(scores)


def run_trial(tuning, study, trial, layout, trial_dir, threads: int) -> dict:
    """Sample, train, tell; the trial's outcome (what the slot's file holds)."""
    import optuna
    from optuna.trial import TrialState

    from kagglecv.tuning.space import sample

    values = sample(trial, tuning.space)
    shutil.rmtree(trial_dir, ignore_errors=True)  # a trial of an earlier study (its numbers start at 0 too)
    print(f"trial {trial.number}: " + ", ".join(f"{k}={v!r}" for k, v in values.items()), flush=True)
    reporter, t0 = Reporter(trial, tuning.metric, tuning.prune_on), time.perf_counter()
    value, error = None, None
    try:
        value = train_folds(tuning, trial, values, layout, trial_dir, threads, reporter)
        state = TrialState.COMPLETE
    except optuna.TrialPruned as e:
        state = TrialState.PRUNED
        print(f"trial {trial.number}: {e}", flush=True)
    except Exception as e:  # noqa: BLE001 - a failed trial is recorded, not fatal (module docstring)
        traceback.print_exc()
        state, error = TrialState.FAIL, redact(f"{type(e).__name__}: {first_line(e, empty='')}")[:500]
    trial.set_user_attr("epochs", reporter.epochs)
    if error:
        trial.set_user_attr("error", error)
    # as told: a value without a state is COMPLETE, or FAIL when it is not a number (NaN); a pruned trial's value is
    # its last report
    frozen = study.tell(trial, value) if state == TrialState.COMPLETE else study.tell(trial, state=state)
    outcome = {
        "trial": trial.number,
        "state": frozen.state.name,
        "value": frozen.value,
        "params": values,
        "seconds": round(time.perf_counter() - t0, 2),
        "epochs": reporter.epochs,
        "error": error,
    }
    scored = f", {tuning.metric} {frozen.value:.5g}" if frozen.value is not None else ""
    print(
        f"trial {trial.number}: {frozen.state.name}{scored} in {outcome['seconds']:.1f} s, {reporter.epochs} epoch(s)",
        flush=True,
    )
    return outcome
