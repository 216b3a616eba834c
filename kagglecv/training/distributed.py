"""One training job on several devices: DistributedDataParallel, started by the job itself (`train.gpus` > 1).

The job leases its devices (kagglecv.core.gpus; under Slurm they are the job's), then starts one process per device
(`launch`); each trains the same model on its share of every batch and DDP averages their gradients, so the run is
the single-device run with the batch split across devices:

  batch_size  stays the GLOBAL batch: each of N processes takes batch_size / N rows of it (the same rows, in the
              same order, as one process would see), so
  lr          is unchanged (no linear scaling to do: the step sees as many rows as before).

What differs from one process: batch norm normalises each process's share (DDP's per-device statistics), and
random augmentation draws per process. Process 0 validates, predicts, writes every output and logs; the others
only train. Devices: cuda:<rank> when GPUs are visible (NCCL), else the CPU (gloo), which is how the tests run it.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from kagglecv.core.devices import world


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_log(log: str | os.PathLike, rank_: int) -> Path:
    """Where process `rank_` of a job logged to `log` writes: the log itself (rank 0), else `<log>.rank<k>` beside
    it (fold0.log -> fold0.rank1.log)."""
    log = Path(log)
    return log if rank_ == 0 else log.with_name(f"{log.stem}.rank{rank_}{log.suffix}")


def _worker(rank_: int, world_: int, port: int, fn, args: tuple) -> None:
    """One process of the job: its output redacted into the job's log (rank 0) or one of its own beside it, as
    the job's own output is (a spawned process writes to the job's real stdout and stderr otherwise)."""
    import logging

    from kagglecv.core.secrets import JOB_LOG_ENV, redacted_output

    log = os.environ.get(JOB_LOG_ENV)
    if not log:
        return _run(rank_, world_, port, fn, args)

    with redacted_output(rank_log(log, rank_)):
        logging.basicConfig(
            stream=sys.stderr,
            level=logging.INFO,
            force=True,
            format=f"%(asctime)s %(name)s [rank {rank_}]: %(message)s",
        )
        _run(rank_, world_, port, fn, args)


def _run(rank_: int, world_: int, port: int, fn, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = torch.cuda.is_available() and torch.cuda.device_count() >= world_
    if cuda:
        torch.cuda.set_device(rank_)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank_, world_size=world_)
    try:
        fn(*args)
    finally:
        dist.destroy_process_group()


def launch(world_: int, fn, *args) -> None:
    """Run fn(*args) in `world_` processes joined in one process group; returns once all have finished (an error
    in any of them is raised here)."""
    import torch.multiprocessing as mp

    # Spawned processes start fresh and would run this process's main script again (a Snakemake job's script,
    # which only works inside Snakemake): without a main file to re-run they import just what `fn` needs.
    main = sys.modules["__main__"]
    main_file = main.__dict__.pop("__file__", None)
    try:
        mp.start_processes(_worker, args=(world_, free_port(), fn, args), nprocs=world_, start_method="spawn")
    finally:
        if main_file is not None:
            main.__file__ = main_file


def wrap(model):
    """The model in DDP when several processes train it, else as it is."""
    if world() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    dev = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


def unwrap(model):
    return getattr(model, "module", model)
