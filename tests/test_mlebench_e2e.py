"""Each of MLE-bench's 19 image competitions, end to end as a new user runs it: its public folder (a stand-in in
exactly that layout, tests/standins), configs/<slug>.yaml with a run size laid over it, `snakemake submission`;
the submission graded as MLE-bench's grader grades it (tests/standins/graders.py, written from its grade.py),
and scoring above both the sample submission and the class prior (or the training mean)."""

from __future__ import annotations

import pytest

from standins import SLUGS
from standins.run import run_standin

pytestmark = pytest.mark.workflow


@pytest.mark.parametrize("slug", [pytest.param(s, marks=pytest.mark.xdist_group(f"mlebench-{s}")) for s in SLUGS])
def test_the_competition_runs_and_beats_its_baselines(tmp_path, slug):
    g = run_standin(slug, tmp_path)
    assert g.beats_baselines, (
        f"{slug}: {g.score:.4f} against sample {g.sample:.4f} and prior {g.prior:.4f} "
        f"({'lower' if g.lower_is_better else 'higher'} is better)"
    )


@pytest.mark.xdist_group("mlebench-zipped")
@pytest.mark.parametrize("slug", ["iwildcam-2019-fgvc6", "invasive-species-monitoring"])
def test_the_competition_zipped_as_kaggle_downloads_it(tmp_path, slug):
    """The whole public folder as one zip, its inner archives (zip, 7z, csv.zip) inside it."""
    g = run_standin(slug, tmp_path, zipped=True)
    assert g.meta["archives"] and g.beats_baselines
