"""Ready competition configs: valid, and complete enough that nothing from the demo's config.yaml leaks in.

`--configfile X` is merged over config.yaml, so every key config.yaml sets must be set again by X."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_snakemake

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def key_paths(d: dict, prefix=()) -> set[tuple]:
    out = set()
    for k, v in d.items():
        out |= key_paths(v, (*prefix, k)) if isinstance(v, dict) else {(*prefix, k)}
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_competition_config_overrides_every_demo_key(path: Path):
    demo = key_paths(yaml.safe_load((REPO / "config.yaml").read_text()))
    comp = yaml.safe_load(path.read_text())
    missing = sorted(".".join(k) for k in demo - key_paths(comp))
    assert not missing, f"{path.name} inherits {missing} from config.yaml; set them explicitly"
    assert comp["competition"] == path.stem


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_competition_config_plans_a_download(tmp_path, path: Path):
    r = run_snakemake(tmp_path, None, "-n", "--configfile", str(path), "--quiet", "rules")
    assert "download" in r.stdout and "train" in r.stdout
