"""The report's files, for rules/report.smk (imported while Snakemake parses: nothing heavy here)."""

from __future__ import annotations

from kagglecv.core.layout import Layout


def lr_find_results(layout: Layout, backbones: dict, lr_find_rule: bool) -> dict[str, str]:
    """{backbone: lr_find.json} for the backbones whose LR range test exists or is part of the run
    (train.lr: auto); none unless the workflow includes the lr_find rule."""
    if not lr_find_rule:
        return {}
    out = {}
    for name, settings in backbones.items():
        path = layout.lr_find(name).json
        if path.exists() or str(settings.get("lr")) == "auto":
            out[name] = str(path)
    return out


def report_targets(layout: Layout, lr_find: dict) -> list[str]:
    """The report's files: the LR finder and leaderboard figures only when there is data."""
    report = layout.report
    targets = [str(p) for p in report.files()]  # always; the LR finder's and the leaderboard's with data
    if lr_find:
        targets.append(str(report.lr_find))
    if layout.leaderboard.exists():
        targets.append(str(report.leaderboard))
    return targets
