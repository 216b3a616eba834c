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

import json
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


def launch(world_: int, fn, *args, while_running=None) -> None:
    """Run fn(*args) in `world_` processes joined in one process group; returns once all have finished (an error
    in any of them is raised here). `while_running()` is called every half second while they run and once after:
    what it raises stops them all and is raised here."""
    import torch.multiprocessing as mp

    # Spawned processes start fresh and would run this process's main script again (a Snakemake job's script,
    # which only works inside Snakemake): without a main file to re-run they import just what `fn` needs.
    main = sys.modules["__main__"]
    main_file = main.__dict__.pop("__file__", None)
    try:
        ctx = mp.start_processes(
            _worker, args=(world_, free_port(), fn, args), nprocs=world_, start_method="spawn", join=False
        )
        try:
            while not ctx.join(timeout=0.5):
                if while_running is not None:
                    while_running()
            if while_running is not None:
                while_running()
        except BaseException:
            for p in ctx.processes:  # a pruned trial, Ctrl-C, a failed rank: none keeps training alone
                if p.is_alive():
                    p.terminate()
            for p in ctx.processes:
                p.join()
            raise
    finally:
        if main_file is not None:
            main.__file__ = main_file


class EpochRelay:
    """`on_epoch` across processes. Process 0 of the job calls the relay after each epoch (it is picklable, so it
    travels to the spawned processes) and appends the epoch's row to a file; the launching process reads the new
    rows while they train (`deliver`, launch's while_running) and calls the caller's on_epoch with each, so that
    what it raises (a tuning trial's pruner, kagglecv.tuning.trial) stops the job as it stops one process."""

    def __init__(self, path: str | os.PathLike, on_epoch=None):
        self.path, self.on_epoch, self.offset = Path(path), on_epoch, 0

    def __getstate__(self) -> dict:
        return {"path": self.path}  # the caller's callback stays in the launching process

    def __setstate__(self, state: dict) -> None:
        self.path, self.on_epoch, self.offset = state["path"], None, 0

    def __call__(self, epoch: int, row: dict) -> None:
        with open(self.path, "a") as f:  # one write per row: the reader takes whole lines only
            f.write(json.dumps({"epoch": epoch, "row": row}, default=float) + "\n")

    def deliver(self) -> None:
        if not self.path.exists():
            return
        with open(self.path) as f:
            f.seek(self.offset)
            text = f.read()
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # being written: read again next time
            self.offset += len(line.encode())
            event = json.loads(line)
            self.on_epoch(event["epoch"], event["row"])


def wrap(model):
    """The model in DDP when several processes train it, else as it is."""
    if world() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    dev = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


def unwrap(model):
    return getattr(model, "module", model)
