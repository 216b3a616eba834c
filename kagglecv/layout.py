"""Where everything lives under results/<competition>/: the one place that spells the layout.

The rules (rules/common.smk), predict, backfill and the report ask a `Layout` for their paths. Paths may hold
Snakemake wildcards ("{backbone}", "{fold}"): they are plain strings until Snakemake fills them.

    results/
      mlflow.db, mlartifacts/                    the default tracking store (kagglecv.tracking)
      <competition>/
        prepared/    train_images.npy test_images.npy train.csv test.csv meta.json sample_submission.csv
        folds.csv
        models/<backbone>/fold<k>/    oof.csv test.csv metrics.json config.json history.csv model.pt
        lr_find/<backbone>/           lr_find.json lr_find.png
        scores.json ensemble_oof.csv ensemble_test.csv submission.csv holdout.json leaderboard.csv
        kernel-dataset/ kernel/       (snakemake kernel) kernel-state.json kernel-runs/<version>/ (code submit)
        report/       the report's figures
        predictions/  <folder>.csv <folder>.json    (snakemake predict)
        logs/ benchmarks/             one per job
    Each step also writes `<run name>.mlflow.json` beside its outputs: what it logged (kagglecv.tracking).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PREPARED_FILES = ("train_images.npy", "test_images.npy", "train.csv", "test.csv", "meta.json",
                  "sample_submission.csv")
MODEL_FILES = ("oof.csv", "test.csv", "metrics.json", "config.json", "history.csv", "model.pt")
RECORD_SUFFIX = ".mlflow.json"


@dataclass(frozen=True)
class Layout:
    root: Path  # results/<competition>

    @classmethod
    def of(cls, competition: str, results: str | Path = "results") -> "Layout":
        return cls(Path(results) / competition)

    @property
    def results(self) -> Path:
        """The folder above every competition: the default MLflow store lives there."""
        return self.root.parent

    @property
    def competition(self) -> str:
        return self.root.name

    # ---------------------------------------------------------------- data
    @property
    def prepared(self) -> Path:
        return self.root / "prepared"

    def prepared_files(self) -> list[Path]:
        return [self.prepared / name for name in PREPARED_FILES]

    @property
    def meta(self) -> Path:
        return self.prepared / "meta.json"

    @property
    def folds(self) -> Path:
        return self.root / "folds.csv"

    # ---------------------------------------------------------------- training
    def model_dir(self, backbone: str, fold: int | str) -> Path:
        return self.root / "models" / str(backbone) / f"fold{fold}"

    def fold_dirs(self, backbone: str, n_folds: int) -> list[Path]:
        return [self.model_dir(backbone, k) for k in range(n_folds)]

    def model_folders(self) -> list[Path]:
        """Every models/<backbone>/fold<k> folder that exists."""
        return sorted(d for d in (self.root / "models").glob("*/fold*") if d.is_dir())

    def lr_find(self, backbone: str) -> Path:
        return self.root / "lr_find" / str(backbone)

    # ---------------------------------------------------------------- ensemble and submission
    @property
    def scores(self) -> Path:
        return self.root / "scores.json"

    @property
    def ensemble_oof(self) -> Path:
        return self.root / "ensemble_oof.csv"

    @property
    def ensemble_test(self) -> Path:
        return self.root / "ensemble_test.csv"

    @property
    def submission(self) -> Path:
        return self.root / "submission.csv"

    @property
    def holdout(self) -> Path:
        return self.root / "holdout.json"

    @property
    def leaderboard(self) -> Path:
        return self.root / "leaderboard.csv"

    # ---------------------------------------------------------------- code competitions (kagglecv.kernel)
    @property
    def kernel_dataset(self) -> Path:
        return self.root / "kernel-dataset"

    @property
    def kernel(self) -> Path:
        return self.root / "kernel"

    @property
    def kernel_runs(self) -> Path:
        """What `snakemake submit` fetched back from each kernel version it ran: <version>/ log and outputs."""
        return self.root / "kernel-runs"

    @property
    def kernel_state(self) -> Path:
        """The last dataset upload and kernel push of `snakemake submit`: lets a rerun resume, not redo."""
        return self.root / "kernel-state.json"

    # ---------------------------------------------------------------- report, predictions, logs
    @property
    def report(self) -> Path:
        return self.root / "report"

    def prediction(self, name: str) -> Path:
        return self.root / "predictions" / f"{name}.csv"

    def log(self, job: str) -> Path:
        return self.root / "logs" / f"{job}.log"

    def benchmark(self, job: str) -> Path:
        return self.root / "benchmarks" / f"{job}.tsv"

    # ---------------------------------------------------------------- tracking records
    def records(self) -> list[Path]:
        """Every job's record of what it logged (see record_file)."""
        return sorted(self.root.rglob(f"*{RECORD_SUFFIX}"))


def record_file(folder: str | Path, run_name: str) -> Path:
    """What a job logged to MLflow, written beside its outputs in `folder` (kagglecv.tracking.Tracker)."""
    return Path(folder) / f"{run_name}{RECORD_SUFFIX}"
