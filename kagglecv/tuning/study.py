"""The study in its storage: opened by every tuning job, a trial slot's claim, and the trials as rows.

A trial slot is one Snakemake job (rules/tune.smk, `tune_trial`): it asks the study for one trial, tagged with the
slot (user attribute `slot`). A job killed mid-way (a node lost, Ctrl-C, a Slurm time limit) leaves its trial
RUNNING and its slot's output missing, so Snakemake runs the slot again; the new job first marks that stale
trial FAIL, then asks a new one. Only one job at a time runs a slot, so a RUNNING trial of one's own slot is
always stale: no heartbeat is needed to tell.
"""

from __future__ import annotations

import contextlib
import socket
from datetime import datetime

from kagglecv.core.errors import InputError, first_line
from kagglecv.core.files import locked
from kagglecv.core.secrets import redact

KILLED = "its job ended before the trial did (killed); the slot ran again"


def storage(url: str):
    """An Optuna RDBStorage for `url`: SQLite waits for a writer instead of failing at once (trials running side by
    side write at the same moments); a server connection is checked before use (a long trial outlives idle ones)."""
    import optuna

    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:  # noqa: BLE001 - an unreachable server, a bad URL, a missing driver: one line
        detail = first_line(e, empty="")[:300]
        raise InputError(redact(f"tune.storage: cannot open {url} ({type(e).__name__}: {detail})")) from None


def open_study(name: str, url: str, direction: str, sampler=None, pruner=None):
    """The study `name` in the storage at `url`, created if it is not there yet."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial is ours to print, with its slot
    return optuna.create_study(
        study_name=name, storage=storage(url), direction=direction, sampler=sampler, pruner=pruner, load_if_exists=True
    )


def slot_trials(study, slot: int) -> list:
    return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("slot") == slot]


def fail_stale(study, slot: int) -> list[int]:
    """Mark FAIL the trials of `slot` still RUNNING (a killed job's; see the module docstring): their numbers."""
    from optuna.trial import TrialState

    stale = [t for t in slot_trials(study, slot) if t.state == TrialState.RUNNING]
    for t in stale:
        # Optuna has no public way to annotate another process's trial; its storage API is the documented one
        study._storage.set_trial_user_attr(t._trial_id, "error", KILLED)
        study.tell(t.number, state=TrialState.FAIL)
    return [t.number for t in stale]


def claiming(url: str):
    """Held while a slot claims its trial. Optuna hands an enqueued (WAITING) trial to one asker by a SELECT ... FOR
    UPDATE, which SQLite ignores: two slots asking at the same moment were both given the baseline trial, and the
    second tell failed. An SQLite study's claims therefore take turns on a lock file beside the database (a server
    such as PostgreSQL locks the row itself)."""
    from sqlalchemy.engine import make_url

    database = make_url(url).database if url.startswith("sqlite") else None
    return locked(database) if database and database != ":memory:" else contextlib.nullcontext()


def claim(study, slot: int, sampler_for, url: str) -> tuple:
    """A new trial for `slot`, after its stale ones are marked FAIL, with the sampler `sampler_for(slot, attempt)`
    (attempt: the trials this slot asked before); `url` the study's storage (see claiming). Returns (trial, numbers
    of the stale trials)."""
    with claiming(url):
        stale = fail_stale(study, slot)
        attempt = len(slot_trials(study, slot))
        study.sampler = sampler_for(slot, attempt)
        trial = study.ask()
    trial.set_user_attr("slot", slot)
    trial.set_user_attr("attempt", attempt)
    trial.set_user_attr("host", socket.gethostname())
    return trial, stale


def seconds(t) -> float | None:
    if t.datetime_start is None or t.datetime_complete is None:
        return None
    return round((t.datetime_complete - t.datetime_start).total_seconds(), 2)


def iso(d: datetime | None) -> str | None:
    return d.isoformat(timespec="seconds") if d else None


def trial_row(t) -> dict:
    """One row of trials.csv: number, state, value, seconds, epochs run, params (params_<name>, as Optuna's
    trials_dataframe names them), whether it is the baseline (the entry as configured), the slot and attempt, the
    error of a failed trial, and when it ran."""
    return {
        "number": t.number,
        "state": t.state.name,
        "value": t.value,
        "seconds": seconds(t),
        "epochs": t.user_attrs.get("epochs"),
        **{f"params_{k}": v for k, v in t.params.items()},
        "baseline": bool(t.user_attrs.get("baseline")),
        "slot": t.user_attrs.get("slot"),
        "attempt": t.user_attrs.get("attempt"),
        "error": t.user_attrs.get("error"),
        "started": iso(t.datetime_start),
        "finished": iso(t.datetime_complete),
    }


def most_at_once(trials) -> int:
    """The most trials that ran at the same time (from their start and end)."""
    events = []
    for t in trials:
        if t.datetime_start is not None and t.datetime_complete is not None:
            events += [(t.datetime_start, 1), (t.datetime_complete, -1)]
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak
