"""DataConfig: how a competition is laid out and read, the workflow's `data:` section.

One description of a competition: where ids, labels, groups and metadata come from (a CSV, JSON annotations,
folder or file names), where each image is, and what a submission row holds. A key left null (or auto) is
recognised from the files (kagglecv.data.competition fills it in); a config sets any key to override what was
recognised. `kagglecv inspect PATH` prints the description and the config line for each key; prepare writes
the filled-in description into meta.json (`data`), and the Kaggle kernel reads the hidden test set with it.
The schema describes each key and holds its default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kagglecv.config.schema import choices_of, default_of
from kagglecv.core.errors import InputError

LAYOUTS = tuple(v for v in choices_of("data.layout") if v != "auto")
SUBMISSIONS = tuple(v for v in choices_of("data.submission") if v != "auto")


@dataclass
class DataConfig:
    layout: str = default_of("data.layout")
    sample_submission: str = default_of("data.sample_submission")
    id_column: str | None = default_of("data.id_column")
    target_column: str | None = default_of("data.target_column")
    label_columns: list[str] | None = default_of("data.label_columns")
    train_csv: str | None = default_of("data.train_csv")
    test_csv: str | None = default_of("data.test_csv")
    train_json: str | None = default_of("data.train_json")
    test_json: str | None = default_of("data.test_json")
    train_dir: str | None = default_of("data.train_dir")
    test_dir: str | None = default_of("data.test_dir")
    image_column: str | None = default_of("data.image_column")
    tags: bool | None = default_of("data.tags")
    submission: str = default_of("data.submission")
    top_k: int | None = default_of("data.top_k")
    target_range: list[float] | None = default_of("data.target_range")
    image_size: int | None = default_of("data.image_size")
    resize: str = default_of("data.resize")
    max_image_pixels: int | None = default_of("data.max_image_pixels")
    group_column: str | None = default_of("data.group_column")
    meta_columns: list[str] = default_of("data.meta_columns")
    label_normalise: bool = default_of("data.label_normalise")

    def __post_init__(self):
        if self.layout != "auto" and self.layout not in LAYOUTS:
            raise InputError(f"data.layout: unknown layout {self.layout!r}; use auto, {', '.join(LAYOUTS)}")
        if self.submission != "auto" and self.submission not in SUBMISSIONS:
            raise InputError(f"data.submission: unknown format {self.submission!r}; use auto, {', '.join(SUBMISSIONS)}")

    @property
    def test_table(self) -> str:
        """data.test_csv, or test.csv where it is left null (the schema's description says so)."""
        return self.test_csv or "test.csv"

    @classmethod
    def of(cls, settings: dict) -> DataConfig:
        """The dataclass from a `data:` section or a meta.json's `data` (keys of older versions left out)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in settings.items() if k in names})

    def filled(self, **found) -> DataConfig:
        """This description with what was recognised filled in where the config left a key open."""
        open_ = {k: v for k, v in found.items() if getattr(self, k) in (None, "auto")}
        return dataclasses.replace(self, **open_)
