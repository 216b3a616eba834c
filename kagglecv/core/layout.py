"""Where everything lives under results/<competition>/: the one place that spells the layout.

The rules (rules/common.smk), the jobs, predict, backfill, the kernel and the report ask a `Layout` for their
paths; the files inside each folder are named once, on its `Folder` class (PreparedFiles, ModelFiles, ...).
Paths may hold Snakemake wildcards ("{backbone}", "{fold}"): they are plain strings until Snakemake fills them.

    results/
      mlflow.db, mlartifacts/                    the default tracking store (kagglecv.tracking.tracker)
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
    Each step also writes `<run name>.mlflow.json` beside its outputs: what it logged (kagglecv.tracking.tracker).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RECORD_SUFFIX = ".mlflow.json"


class Name:
    """A file's name in a folder class: its name on the class, its path on an instance of it.

    ModelFiles.oof                -> "oof.csv"
    ModelFiles(Path("m/fold0")).oof -> Path("m/fold0/oof.csv")
    """

    def __init__(self, name: str, output: bool = True):
        self.name, self.output = name, output  # output: a declared output of the rule that writes the folder

    def __get__(self, folder, owner=None):
        return self.name if folder is None else folder.path / self.name


@dataclass(frozen=True)
class Folder:
    """A folder of results whose files are named once, as `Name`s on its class."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def names(cls, outputs_only: bool = True) -> dict[str, str]:
        """{attribute: file name}, in the order they are declared (outputs only, unless told otherwise)."""
        found = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, Name) and (value.output or not outputs_only):
                    found[attr] = value.name
        return found

    def files(self) -> list[Path]:
        """Every declared output file of the folder."""
        return [self.path / name for name in self.names().values()]


class PreparedFiles(Folder):
    """prepared/: the image cache and the tables every later step reads (kagglecv.data.prepare)."""

    train_images = Name("train_images.npy")  # uint8 N x H x W x C, memory-mapped by training
    test_images = Name("test_images.npy")
    train = Name("train.csv")  # id, label, y (and group)
    test = Name("test.csv")  # id, in cache order
    meta = Name("meta.json")  # classes, task, image shape, how the competition was read; written last
    sample_submission = Name("sample_submission.csv")  # the competition's template, byte for byte


class ModelFiles(Folder):
    """models/<backbone>/fold<k>/: one training job's outputs (kagglecv.training.train). What each file holds, and
    which a rule of the user's must write, is the model-folder contract in docs/extending.md."""

    oof = Name("oof.csv")
    test = Name("test.csv")
    metrics = Name("metrics.json")
    config = Name("config.json")
    history = Name("history.csv")
    model = Name("model.pt")
    resume = Name("resume.pt", output=False)  # end-of-epoch state while the job runs; removed once it finishes


class LrFindFiles(Folder):
    """lr_find/<backbone>/: the LR range test (kagglecv.training.lr_finder)."""

    json = Name("lr_find.json")
    png = Name("lr_find.png")


class ReportFiles(Folder):
    """report/: the Snakemake report's figures (kagglecv.report), made in the default run."""

    cv_table = Name("cv_table.png")
    cv_table_html = Name("cv_table.html")
    training_curves = Name("training_curves.png")
    job_time = Name("job_time.png")
    confusion_matrix = Name("confusion_matrix.png")
    oof_errors = Name("oof_errors.png")
    class_balance = Name("class_balance.png")
    lr_find = Name("lr_find.png", output=False)  # only when some backbone has an LR range test
    leaderboard = Name("leaderboard.png", output=False)  # only once something was submitted


class DownloadFiles(Folder):
    """data/kaggle/<competition>/: a competition downloaded through the Kaggle API (kagglecv.kaggle.download)."""

    marker = Name(".complete")  # the download rule's output: Snakemake deletes it before it reruns the rule
    manifest = Name("manifest.json", output=False)  # the same record, Snakemake's to keep: survives any rerun
    files = Name("files", output=False)  # the unpacked competition


def downloaded(competition: str, data: str | Path = "data") -> DownloadFiles:
    """Where the download rule puts `competition`."""
    return DownloadFiles(Path(data) / "kaggle" / competition)


class KernelDatasetFiles(Folder):
    """kernel-dataset/: what the code competition's notebook reads (kagglecv.kaggle.kernel); a results folder itself."""

    metadata = Name("dataset-metadata.json")
    manifest = Name("manifest.json")  # every file with its size and sha256, tested versions, the rerun's budget
    wheels = Name("wheels", output=False)  # a folder of .whl files
    prior = Name("prior.json")  # the training labels' prior: the prediction for an unreadable image


class KernelFiles(Folder):
    """kernel/: the notebook Kaggle runs (kagglecv.kaggle.kernel)."""

    code = Name("kernel.py")
    metadata = Name("kernel-metadata.json")
    submission = Name("submission.csv", output=False)  # what the notebook writes into its working folder


class TuneFiles(Folder):
    """tune/: what a study leaves (kagglecv.tuning): study.json (its name, direction and storage, redacted), study.db
    (Optuna's SQLite storage unless tune.storage names another), slots/slot<k>.json (what trial slot k ended
    with), trials/trial<n>/fold<k>/ (a trial's training outputs), trials.csv, best.yaml and the report's figures."""

    study = Name("study.json")
    db = Name("study.db", output=False)
    trials = Name("trials.csv")
    best = Name("best.yaml")
    history = Name("history.png")
    importances = Name("importances.png")

    def slot(self, slot: int | str) -> Path:
        """What trial slot `slot` (a Snakemake job) ended with."""
        return self.path / "slots" / f"slot{slot}.json"

    def trial(self, number: int) -> Path:
        """Trial `number`'s training outputs, one folder per fold (ModelFiles)."""
        return self.path / "trials" / f"trial{int(number):04d}"


@dataclass(frozen=True)
class Layout:
    root: Path  # results/<competition>

    @classmethod
    def of(cls, competition: str, results: str | Path = "results") -> Layout:
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
    def prepared(self) -> PreparedFiles:
        return PreparedFiles(self.root / "prepared")

    @property
    def meta(self) -> Path:
        return self.prepared.meta

    @property
    def folds(self) -> Path:
        return self.root / "folds.csv"

    # ---------------------------------------------------------------- training
    def model(self, backbone: str, fold: int | str) -> ModelFiles:
        return ModelFiles(self.root / "models" / str(backbone) / f"fold{fold}")

    def folds_of(self, backbone: str, n_folds: int) -> list[ModelFiles]:
        return [self.model(backbone, k) for k in range(n_folds)]

    def model_folders(self) -> list[Path]:
        """Every models/<backbone>/fold<k> folder that exists."""
        return sorted(d for d in (self.root / "models").glob("*/fold*") if d.is_dir())

    def teacher(self, name: str, fold: int | str) -> Path:
        """teachers/<round2|student>/fold<k>.csv: what a pseudo-label round or the student learns from
        (kagglecv.training.teachers)."""
        return self.root / "teachers" / str(name) / f"fold{fold}.csv"

    def lr_find(self, backbone: str) -> LrFindFiles:
        return LrFindFiles(self.root / "lr_find" / str(backbone))

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

    # ---------------------------------------------------------------- code competitions (kagglecv.kaggle.kernel)
    @property
    def kernel_dataset(self) -> KernelDatasetFiles:
        return KernelDatasetFiles(self.root / "kernel-dataset")

    @property
    def tune(self) -> TuneFiles:
        return TuneFiles(self.root / "tune")

    @property
    def kernel(self) -> KernelFiles:
        return KernelFiles(self.root / "kernel")

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
    def report(self) -> ReportFiles:
        return ReportFiles(self.root / "report")

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
    """What a job logged to MLflow, written beside its outputs in `folder` (kagglecv.tracking.tracker.Tracker)."""
    return Path(folder) / f"{run_name}{RECORD_SUFFIX}"
