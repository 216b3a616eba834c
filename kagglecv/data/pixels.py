"""Images stored as pixel columns of a CSV (Digit Recognizer): read and checked in chunks, never all at once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kagglecv.core.errors import InputError


@dataclass
class PixelRows:
    """Images stored as pixel columns of a CSV (Digit Recognizer), read in chunks, never all at once. `of` checks
    every value first: numbers from 0 to 255, or from 0 to 1 (then scaled by `scale`: 255)."""

    path: Path
    columns: list[str]
    side: int
    n: int
    scale: float = 1.0

    @classmethod
    def of(cls, path: Path, columns: list[str], side: int, chunk: int = 4096) -> PixelRows:
        n, top = 0, 0.0
        try:
            for df in pd.read_csv(path, usecols=columns, chunksize=chunk):
                top, n = max(top, float(pixel_values(df[columns], path, first_row=n).max(initial=0.0))), n + len(df)
        except (pd.errors.ParserError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: cannot read CSV ({str(e).splitlines()[0]}); download it again") from e
        # an image on the 0-255 scale never stays below 2: values all within [0, 1] are on the 0-1 scale
        return cls(path, columns, side, n, 255.0 if top <= 1.0 else 1.0)

    def __len__(self) -> int:
        return self.n

    def chunks(self, size: int = 4096) -> Iterator[np.ndarray]:
        for df in pd.read_csv(self.path, usecols=self.columns, chunksize=size):
            values = df[self.columns].to_numpy(dtype=np.float64) * self.scale
            yield np.rint(values).astype(np.uint8).reshape(-1, self.side, self.side, 1)


def pixel_values(df: pd.DataFrame, path: Path, first_row: int = 0) -> np.ndarray:
    """A chunk of pixel columns as numbers; a one-line error naming the row (as numbered in the file, the header
    being row 1), the column and the value for text, a missing value, or a value outside 0-255."""
    numeric = df.apply(lambda col: col if col.dtype.kind in "biuf" else pd.to_numeric(col, errors="coerce"))
    values = numeric.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 0) | (values > 255)
    if bad.any():
        r, c = (int(k[0]) for k in np.nonzero(bad))
        raw = df.iat[r, c]
        why = "has no value" if pd.isna(raw) else f"holds '{raw}'"
        raise InputError(
            f"{path}: row {first_row + r + 2} column {df.columns[c]!r} {why}; pixels are numbers from "
            "0 to 255 (or 0 to 1), fix the file"
        )
    return values


def pixel_columns(path: Path, head: pd.DataFrame) -> tuple[list[str], int]:
    """(the pixel0..pixelN columns of a pixel CSV, the side of the square image they make)."""
    pixels = [c for c in head.columns if str(c).lower().startswith("pixel")]
    side = int(round(len(pixels) ** 0.5))
    if not pixels or side * side != len(pixels):
        raise InputError(f"{path}: {len(pixels)} pixel columns do not make a square image")
    return pixels, side
