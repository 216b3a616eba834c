"""The package's house rules: wings by stage whose imports all point down, inference apart from training, modules
that fit in a reader's head, and a docstring on every wing saying what it owns."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers import REPO

PACKAGE = REPO / "kagglecv"
# bottom to top: a module may import its own wing and the wings below it, never one above
WINGS = [
    "core",
    "scoring",
    "config",
    "tracking",
    "data",
    "inference",
    "training",
    "kaggle",
    "tuning",
    "report",
    "jobs",
    "cli",
    "__main__",
]
MAX_LINES = 420  # "about 400": one screenful of functions per concern, not a second program in the file


def wing(module: str) -> str:
    """kagglecv.training.train -> training; kagglecv.cli -> cli."""
    return module.split(".")[1] if module.count(".") else module


def imports(path: Path) -> set[str]:
    """The kagglecv modules `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kagglecv"):
            found |= {f"{node.module}.{a.name}" if node.module == "kagglecv" else node.module for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("kagglecv")}
    return {m for m in found if m != "kagglecv"}


MODULES = sorted(PACKAGE.rglob("*.py"))


def name_of(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_import_points_down(path):
    here = wing(name_of(path)) if name_of(path) != "kagglecv" else None
    if here is None:
        return
    assert here in WINGS, f"{path}: a new wing? add it to WINGS in its place"
    up = sorted(m for m in imports(path) if WINGS.index(wing(m)) > WINGS.index(here))
    assert not up, f"{path.relative_to(REPO)} ({here}) imports {up}, above it"


def test_inference_never_imports_training():
    for path in (PACKAGE / "inference").rglob("*.py"):
        assert not [m for m in imports(path) if wing(m) == "training"], path


def test_a_wing_below_imports_nothing_heavy_at_the_top():
    """core must stay importable by the data-side jobs, which have no torch (envs/data.yaml): torch only where a
    device is asked for."""
    for path in (PACKAGE / "core").glob("*.py"):
        tree = ast.parse(path.read_text())
        top = {a.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for a in node.names}
        top |= {(node.module or "").split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom)}
        heavy = top & {"timm", "albumentations", "mlflow", "snakemake"}
        assert not heavy, f"{path.name} imports {heavy}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_fit_in_a_readers_head(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(REPO)} has {n} lines; split it by concern"


@pytest.mark.parametrize(
    "folder", sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()), ids=lambda p: p.name
)
def test_each_wing_says_what_it_owns(folder):
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
    modules = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}  # _x: internals
    assert len(doc.splitlines()) >= 3, f"{folder.name}/__init__.py: a docstring naming what the wing owns"
    missing = sorted(m for m in modules if m not in doc)
    assert not missing, f"{folder.name}/__init__.py does not mention {missing}"
    assert folder.name in doc or folder.name in (PACKAGE / "__init__.py").read_text()


def test_the_library_never_imports_snakemake():
    for path in MODULES:
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not [n for n in names if n.split(".")[0] == "snakemake"], path
