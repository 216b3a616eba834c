"""results/<competition>/tune/: the files a study leaves, named once (as kagglecv.core.layout names the rest).

    tune/
      study.db                 the study (Optuna's SQLite storage) unless tune.storage names another
      study.json               the study's name, direction and storage (redacted): made before the first trial
      slots/slot<k>.json       what trial slot k ended with (its trial number, state, value, params)
      trials/trial<n>/fold<k>/ a trial's training outputs (oof.csv, metrics.json, history.csv, config.json)
      trials.csv best.yaml     every trial; the best as a backbones: entry
      history.png importances.png   the report's figures
"""

from __future__ import annotations

from pathlib import Path

from kagglecv.core.layout import Folder, Layout, Name


class TuneFiles(Folder):
    study = Name("study.json")
    db = Name("study.db", output=False)
    trials = Name("trials.csv")
    best = Name("best.yaml")
    history = Name("history.png")
    importances = Name("importances.png")

    @classmethod
    def of(cls, layout: Layout) -> TuneFiles:
        return cls(layout.root / "tune")

    def slot(self, slot: int | str) -> Path:
        """What trial slot `slot` (a Snakemake job) ended with."""
        return self.path / "slots" / f"slot{slot}.json"

    def trial(self, number: int) -> Path:
        """Trial `number`'s training outputs, one folder per fold (kagglecv.core.layout.ModelFiles)."""
        return self.path / "trials" / f"trial{int(number):04d}"
