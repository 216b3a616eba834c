"""Ready competition configs: valid, and stating only what differs from the schema's defaults.

With --configfile, a config is laid over the schema's defaults, not over the demo's config.yaml
(kagglecv.config), so nothing of the demo can leak in and a config needs no copy of any default."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kagglecv.config.schema import defaults, resolve

from helpers import REPO, run_snakemake

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def leaves(d: dict, prefix=()) -> dict[tuple, object]:
    out = {}
    for k, v in d.items():
        out.update(leaves(v, (*prefix, k)) if isinstance(v, dict) else {(*prefix, k): v})
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_competition_config_states_only_what_differs(path: Path):
    comp = yaml.safe_load(path.read_text())
    assert comp["competition"] == path.stem
    resolve(comp)  # valid
    base = leaves(defaults())
    restated = sorted(".".join(k) for k, v in leaves(comp).items() if k in base and base[k] == v)
    assert not restated, f"{path.name} restates the schema's defaults for {restated}; drop them"


def test_the_demo_config_holds_only_the_demos_choices():
    demo = leaves(yaml.safe_load((REPO / "config.yaml").read_text()))
    base = leaves(defaults())
    # its identity (competition, data, backbones) stays explicit; every training choice differs from a default
    assert {k for k in demo if k[0] == "train"} == {("train", "epochs"), ("train", "img_size")}
    assert all(base[k] != v for k, v in demo.items() if k[0] == "train")


@pytest.mark.workflow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_competition_config_plans_a_download(tmp_path, path: Path):
    r = run_snakemake(tmp_path, None, "-n", "--configfile", str(path), "--quiet", "rules")
    assert "download" in r.stdout and "train" in r.stdout
