"""The results layout: every path under results/<competition>/ named once, by kagglecv.core.layout; the run's
summary read from it."""

from __future__ import annotations

import ast
import json
import re

import pytest

from kagglecv.core import layout
from kagglecv.core.layout import Layout
from kagglecv.tracking.summary import run_summary

from helpers import REPO

# ---------------------------------------------------------------- the results layout


LAYOUT_NAMES = (
    "scores.json",
    "ensemble_oof.csv",
    "ensemble_test.csv",
    "folds.csv",
    "submission.csv",
    "holdout.json",
    "leaderboard.csv",
    "models",
    "prepared",
    "lr_find",
    "predictions",
)


def spelled_paths(path) -> list[str]:
    """Results paths a Python file builds itself: `x / "scores.json"`, or a literal like "results/..."."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant):
            if str(node.right.value).rstrip("/") in LAYOUT_NAMES:
                out.append(node.right.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and " " not in node.value:
            if node.value.startswith("results/") or any(f"/{n}" in node.value for n in LAYOUT_NAMES[:7]):
                out.append(node.value)
    return out


MODULES = sorted(
    str(p.relative_to(REPO / "kagglecv")) for p in (REPO / "kagglecv").rglob("*.py") if p.name != "layout.py"
)


@pytest.mark.parametrize("module", MODULES)
def test_library_asks_the_layout_for_paths(module):
    spelled = spelled_paths(REPO / "kagglecv" / module)
    assert not spelled, f"kagglecv/{module} spells results paths {spelled}; ask kagglecv.core.layout"


def test_rules_ask_the_layout_for_paths():
    for smk in sorted((REPO / "rules").glob("*.smk")):
        code = "\n".join(line.split("#")[0] for line in smk.read_text().splitlines())
        quoted = re.findall(r'"([^"\n]*)"', code)
        spelled = [
            q
            for q in quoted
            if q.startswith("results")
            or "{RES}" in q
            or "{PREP}" in q
            or any(q.endswith(f"/{n}") for n in LAYOUT_NAMES if "." in n)
        ]
        assert not spelled, f"{smk.name} spells results paths {spelled}; use L (kagglecv.core.layout.Layout)"


def test_layout_paths():
    L = Layout.of("comp")
    model = L.model("{backbone}", "{fold}")
    assert str(model.path) == "results/comp/models/{backbone}/fold{fold}"
    assert str(model.oof) == "results/comp/models/{backbone}/fold{fold}/oof.csv" and layout.ModelFiles.oof == "oof.csv"
    assert [p.name for p in model.files()] == list(layout.ModelFiles.names().values())
    assert "resume.pt" not in layout.ModelFiles.names().values()  # not a declared output: it outlives a kill
    assert [p.name for p in L.prepared.files()][-2:] == ["meta.json", "sample_submission.csv"]
    assert L.meta == L.prepared.meta and L.results.name == "results" and L.competition == "comp"
    assert layout.record_file(L.model("b", 0).path, "b-fold0").name == "b-fold0.mlflow.json"


def test_each_results_file_is_named_once():
    """A file of the results is spelled in kagglecv/core/layout.py and nowhere else in the library or the rules."""
    names = {
        n
        for cls in (
            layout.PreparedFiles,
            layout.ModelFiles,
            layout.LrFindFiles,
            layout.ReportFiles,
            layout.KernelDatasetFiles,
            layout.KernelFiles,
        )
        for n in cls.names(outputs_only=False).values()
    }
    names -= {"train.csv", "test.csv", "sample_submission.csv", "wheels"}  # also the competition's own names
    for path in [*(REPO / "kagglecv").rglob("*.py"), *(REPO / "rules").glob("*.smk"), REPO / "Snakefile"]:
        if path.name == "layout.py":
            continue
        spelled = sorted(n for n in names if f'"{n}"' in path.read_text() or f"'{n}'" in path.read_text())
        assert not spelled, f"{path.relative_to(REPO)} spells {spelled}; name them through kagglecv.core.layout"


# ---------------------------------------------------------------- the run summary


def test_run_summary(tmp_path):
    L = Layout(tmp_path / "results" / "c")
    L.root.mkdir(parents=True)
    assert run_summary(L, "sqlite:///x.db") is None  # no scores: nothing to say
    L.scores.write_text(
        json.dumps(
            {
                "metric": "accuracy",
                "models": {"resnet18": {"cv": 0.9, "folds": [0.89, 0.91]}},
                "methods": {"mean": {"cv": 0.9}},
                "ensemble": {"method": "mean", "cv": 0.9},
            }
        )
    )
    L.holdout.write_text(json.dumps({"metric": "accuracy", "score": 0.875}))
    text = run_summary(L, "sqlite:///x.db")
    assert "resnet18" in text and "<- chosen" in text
    assert "held-aside labels: accuracy = 0.87500" in text
    assert f"submission: {L.submission}" in text and "mlflow ui --backend-store-uri sqlite:///x.db" in text
