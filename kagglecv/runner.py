"""Run one library call as a workflow job: output to the job's log, bad input as one line and exit 1."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from pathlib import Path

from .errors import InputError


def run_logged(log_path: str | Path | None, fn, *args, **kwargs):
    """Call fn(*args, **kwargs) with stdout/stderr going to `log_path`.

    An InputError becomes a single `ERROR: ...` line, in the log and on the terminal, and exit status 1;
    any other exception keeps its traceback in the log (that is a bug, not bad input)."""
    terminal = sys.__stderr__
    log_file = open(log_path, "a", buffering=1) if log_path else sys.stderr
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(stream=log_file, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        force=True)
    try:
        with contextlib.redirect_stdout(log_file), contextlib.redirect_stderr(log_file):
            try:
                return fn(*args, **kwargs)
            except InputError as e:
                print(f"ERROR: {e}", file=log_file, flush=True)
                if terminal is not None and log_path:
                    print(f"ERROR: {e}", file=terminal, flush=True)
                sys.exit(1)
            except Exception:
                traceback.print_exc(file=log_file)
                raise
    finally:
        if log_path:
            log_file.close()
