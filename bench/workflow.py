"""How a bench runs the workflow: the real `snakemake` CLI on this checkout's Snakefile, in a folder of its own with
its config written there, as a user runs it (Snakemake finds profiles/default beside the Snakefile)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def snakemake(work: Path, config: dict, *args: str, cores: int | None = None) -> float:
    """`snakemake ARGS` in `work` with `config` (written to work/config.yaml) and this checkout's kagglecv first on
    the path; its wall seconds. Its output goes to work/snakemake-<targets>.log; a failure ends the bench."""
    import yaml

    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", *args, "--snakefile", str(REPO / "Snakefile"), "--directory", str(work)]
    cmd += ["--configfile", str(work / "config.yaml"), *(["--cores", str(cores)] if cores else [])]
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=work, env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    targets = "-".join(a for a in args if not a.startswith("-") and "=" not in a) or "all"
    log = work / f"snakemake-{targets}.log"
    log.write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed ({r.returncode}); see {log}:\n{r.stderr[-3000:]}")
    return wall
