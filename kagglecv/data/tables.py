"""A competition's CSVs read as text, and its submission template.

Ids, labels and column names are text exactly as written: "00017", "001", "NA" and "ETT - Abnormal" stay what
they are. Every refusal is one line naming the file, the column and the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kagglecv.config.data import DataConfig
from kagglecv.core.errors import InputError, first_line
from kagglecv.data.archive import files_below

INDEX_COLUMN = "Unnamed: 0"  # what pandas calls a CSV's leading column with an empty header (its own index)


def read_csv(path: Path, **kw) -> pd.DataFrame:
    """A competition CSV as text: ids and labels exactly as written ("00017", "001", "NA", "None" stay)."""
    if not path.exists():
        raise InputError(f"{path}: file not found; the competition is incomplete, download it again")
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head.strip():
        raise InputError(f"{path}: the file is empty; download the competition again")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head:
        raise InputError(f"{path}: not UTF-8 text (UTF-16?); save it as a UTF-8 CSV")
    try:
        return pd.read_csv(path, **{"dtype": str, "keep_default_na": False, **kw})
    except Exception as e:  # noqa: BLE001 - pandas raises many types for broken CSVs
        raise InputError(f"{path}: cannot read CSV ({first_line(e)}); download it again") from e


def require_rows(df: pd.DataFrame, path: Path, what: str) -> None:
    if df.empty:
        raise InputError(f"{path}: no rows, only a header; {what}")


def refuse_duplicates(ids: pd.Series, path: Path, column: str) -> None:
    dup = ids[ids.duplicated()]
    if len(dup):
        raise InputError(
            f"{path}: id {dup.iloc[0]!r} appears {int((ids == dup.iloc[0]).sum())} times in column "
            f"{column!r}; ids must be unique, drop the repeated rows"
        )


def refuse_missing(labels: pd.Series, ids, path: Path, column: str) -> None:
    missing = (labels.str.strip() == "").to_numpy()
    if missing.any():
        bad = list(ids)[int(np.flatnonzero(missing)[0])]
        raise InputError(f"{path}: id {bad!r} has no value in column {column!r}; fill or drop the row")


def find_column(columns, want: str) -> str | None:
    """`want` among `columns`: exactly, else case-insensitively (Digit Recognizer: `Label` vs `label`)."""
    columns = [str(c) for c in columns]
    if want in columns:
        return want
    folded = {c.lower(): c for c in columns}
    return folded.get(want.lower())


def match_column(df: pd.DataFrame, want: str, path: Path, what: str, hint: str) -> str:
    found = find_column(df.columns, want)
    if found is None:
        raise InputError(f"{path}: no {what} column {want!r} (columns: {', '.join(map(str, df.columns[:8]))}); {hint}")
    return found


def find_root(path: Path, cfg: DataConfig) -> Path:
    """The folder holding the submission template (Kaggle zips sometimes nest one folder deep)."""
    if (path / cfg.sample_submission).exists():
        return path
    hits = sorted(
        (p for p in files_below(path, depth=4) if p.name == cfg.sample_submission), key=lambda p: (len(p.parts), str(p))
    )
    if not hits:
        raise InputError(
            f"{path}: no {cfg.sample_submission} found; point data.path at the competition folder "
            "or archive, or set data.sample_submission"
        )
    return hits[0].parent


@dataclass
class Template:
    """The submission template, checked: the test ids in their order, and the target columns."""

    path: Path
    frame: pd.DataFrame = field(repr=False)
    id_column: str
    targets: list[str]
    index_column: str | None = None  # a leading unnamed column of row numbers, kept as it is in a submission

    @property
    def ids(self) -> list[str]:
        return self.frame[self.id_column].tolist()

    def tokens(self, classes=()) -> int:
        """How many space-separated words each cell of the one target column holds when every row holds the same
        number and no cell is one of `classes` (Whale's five ids: a top-5 submission), else 1 (Plant Seedlings'
        'Sugar beet' is one class)."""
        if len(self.targets) != 1:
            return 1
        cells = self.frame[self.targets[0]].astype(str)
        counts = {len(v.split()) for v in cells}
        return counts.pop() if len(counts) == 1 and not set(cells) & set(classes) else 1


def is_index(frame: pd.DataFrame, column: str) -> bool:
    """A leading column of whole numbers with an empty header: the index pandas writes unless told not to (the
    rows' numbers, or their positions in a frame they were taken from: MLE-bench's iWildCam template)."""
    return column == INDEX_COLUMN and frame[column].str.fullmatch(r"\d+").all()


def read_template(root: Path, cfg: DataConfig) -> Template:
    path = root / cfg.sample_submission
    sample = read_csv(path)
    require_rows(sample, path, "it must list every test id; download the competition again")
    index = sample.columns[0] if is_index(sample, sample.columns[0]) else None
    columns = [c for c in sample.columns if c != index]
    id_col = find_column(columns, cfg.id_column) if cfg.id_column else columns[0] if columns else None
    if id_col is None:
        raise InputError(f"{path}: no id column {cfg.id_column!r}; fix data.id_column")
    refuse_duplicates(sample[id_col], path, id_col)
    targets = [c for c in columns if c != id_col]
    if not targets:
        raise InputError(f"{path}: no target column beside {id_col!r}; it is not a submission template")
    return Template(path, sample, id_col, targets, index)
