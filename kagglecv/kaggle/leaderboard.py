"""leaderboard.csv: one row per submission (time, message, cv, scores, ref, status, file sha256), appended under
a lock and atomically, so parallel submit jobs never drop each other's row; cells are redacted."""

from __future__ import annotations

import contextlib
import csv
from datetime import UTC, datetime
from pathlib import Path

from kagglecv.core.files import atomic_path, locked
from kagglecv.core.secrets import redact

COLUMNS = ["time", "competition", "message", "cv", "public_score", "private_score", "ref", "status", "file_sha256"]
PENDING = "PENDING"  # a submission made but not scored yet: the next submit polls it instead of uploading again


@contextlib.contextmanager
def submitting(folder: Path, competition: str):
    """Held for the whole of a `snakemake submit` (kagglecv.jobs.kaggle.submit): an exclusive lock on `.submit.lock`
    in the competition's results `folder` (kagglecv.core.files.locked, without waiting). A second submit of the same
    results while one runs would upload again (the first one's submission is not in leaderboard.csv yet): refused in
    one line."""
    from kagglecv.core.errors import InputError

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(locked(folder / "submit", wait=False))
        except BlockingIOError:
            raise InputError(
                f"{folder / '.submit.lock'}: another `snakemake submit` of {competition} is running; wait for it to "
                "end (its row in leaderboard.csv), then submit again if you still need to"
            ) from None
        yield


def read_leaderboard(path: str | Path) -> list[dict]:
    """The rows of leaderboard.csv (none if it does not exist); files from before `status` read as complete."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def pending_submission(path: str | Path, competition: str, **match) -> dict | None:
    """The last leaderboard row for `competition` whose columns equal `match` (file_sha256=..., or a kernel
    and its version), if it is still PENDING."""
    rows = [
        r
        for r in read_leaderboard(path)
        if r.get("competition") == competition and all(r.get(k) == str(v) for k, v in match.items())
    ]
    return rows[-1] if rows and rows[-1].get("status") == PENDING and rows[-1].get("ref") else None


def append_leaderboard(path: Path, row: dict, *, replace_ref: bool = False) -> None:
    """Append `row` (time, competition, message, cv, public_score, private_score, ref, status, file_sha256)
    to a CSV, atomically and under a lock file beside it.

    With `replace_ref`, the existing row of the same competition and ref (a pending one, now scored) is
    replaced in place instead, keeping its time. Unknown keys become extra columns; `time` defaults to now
    (UTC). Cells are redacted.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {"time": datetime.now(UTC).isoformat(timespec="seconds"), **row}
    cells = {k: "" if v is None else redact(str(v)) for k, v in row.items()}
    with locked(path):  # parallel submit jobs cannot drop each other's row
        rows, columns = [], list(COLUMNS)
        if path.exists():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
                columns += [c for c in reader.fieldnames or [] if c not in columns]
        columns += [c for c in row if c not in columns]
        same = [
            i
            for i, r in enumerate(rows)
            if replace_ref and r.get("competition") == cells.get("competition") and r.get("ref") == cells.get("ref")
        ]
        if same:
            rows[same[-1]] = {**rows[same[-1]], **cells, "time": rows[same[-1]].get("time") or cells["time"]}
        else:
            rows.append(cells)
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)


def record_result(
    leaderboard: Path,
    competition: str,
    message: str,
    cv,
    result: dict,
    sha256: str,
    *,
    replace_ref: bool = False,
    **extra,
) -> None:
    """A submission's row in leaderboard.csv (any status, PENDING included); `extra` adds columns."""
    append_leaderboard(
        Path(leaderboard),
        {
            "competition": competition,
            "message": message,
            "cv": cv,
            "public_score": result["public_score"],
            "private_score": result["private_score"],
            "ref": result["ref"],
            "status": result["status"],
            "file_sha256": sha256,
            **extra,
        },
        replace_ref=replace_ref,
    )
