"""A backbone entry's own model code (`model: FILE.py:FUNCTION`, docs/extending.md): which files it is, and their hash.

  factory_sources  that file and every module of the user's it imports from its own folder, found by reading the
                   imports (never by running them), transitively: what a training job computes with besides its
                   settings, so the train and lr_find rules take them as inputs and the Kaggle kernel ships them
  factory_sha256   one hash of their names and contents: in each job's resolved config and resume checkpoint

Nothing here imports torch: rules/common.smk asks it while the DAG is built.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(level, dotted name) of every module an import statement names: `import a.b` (0, "a.b"), `from . import x`
    (1, "x"), `from .y import z` (1, "y")."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(0, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.module:
                out.append((node.level, node.module))
            else:
                out += [(node.level, a.name) for a in node.names]
    return out


def _package_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def factory_sources(ref) -> list[Path]:
    """The factory's file, then the modules and packages of its folder it imports (directly or through each other),
    sorted; paths as the reference spells the file (relative to the working directory, or absolute). Empty for a
    timm name or a module factory; just the file when it cannot be parsed (building it says what is wrong)."""
    where = str(ref or "").rpartition(":")[0]
    if not where.endswith(".py"):
        return []
    first = Path(where).expanduser()
    if not first.is_file():
        return [first]
    root = first.parent
    found, todo = {first}, [first]
    while todo:
        path = todo.pop()
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"), str(path))
        except (SyntaxError, ValueError, OSError):
            continue
        for level, name in _imported(tree):
            base = root if level == 0 else path.parent
            for _ in range(max(level - 1, 0)):
                base = base.parent
            if not base.resolve().is_relative_to(root.resolve()):
                continue
            top = name.split(".")[0]
            candidates = (
                [base / f"{top}.py"]
                if (base / f"{top}.py").is_file()
                else (_package_files(base / top) if (base / top).is_dir() else [])
            )
            for p in candidates:
                if p not in found:
                    found.add(p)
                    todo.append(p)
    return [first, *sorted(found - {first})]


def factory_sha256(ref) -> str | None:
    """A hash of the factory's sources (factory_sources): their paths relative to the factory's folder and their
    bytes; None for a timm name or a module factory."""
    sources = factory_sources(ref)
    if not sources:
        return None
    h = hashlib.sha256()
    for p in sources:
        h.update(p.relative_to(sources[0].parent).as_posix().encode() + b"\0")
        h.update(p.read_bytes() if p.is_file() else b"(missing)")
        h.update(b"\0")
    return h.hexdigest()
