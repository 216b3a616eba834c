"""The end of a workflow run: close its MLflow parent run and say what came out (rules/common.smk's
onsuccess/onerror call `finish`)."""

from __future__ import annotations

import json

from kagglecv.core.layout import Layout
from kagglecv.core.results import Scores


def run_summary(layout: Layout, tracking: str) -> str | None:
    """The CV table, the held-aside score (demo), where the submission is and how to open MLflow; None when
    the run produced no scores."""
    from kagglecv.scoring.ensemble import cv_table

    if not layout.scores.exists():
        return None
    lines = ["", cv_table(Scores.read(layout.scores))]
    if layout.holdout.exists():
        h = json.loads(layout.holdout.read_text())
        lines.append(f"submission scored on the held-aside labels: {h['metric']} = {h['score']:.5f}")
    lines += ["", f"submission: {layout.submission}", f"MLflow UI:  mlflow ui --backend-store-uri {tracking}"]
    return "\n".join(lines)


def finish(layout: Layout, ok: bool) -> str | None:
    """Close the invocation's parent run (with the ensemble's CV after a success); return the summary to print
    after a success, else None."""
    from kagglecv.tracking.tracker import display_uri, finish_parent, tracking_uri

    scores = Scores.read(layout.scores) if ok and layout.scores.exists() else None
    finish_parent(ok, {"cv_ensemble": scores.ensemble.cv} if scores else None)
    return run_summary(layout, display_uri(tracking_uri(layout.results))) if scores else None
