"""What a training job asks its scheduler for: threads, memory, time, DataLoader workers."""

from __future__ import annotations

import math
import os

BUDGET_MARGIN_S = 600  # a time-budgeted job's start-up and writing, on top of its budget, in its scheduler time limit


def train_runtime_minutes(settings: dict) -> int:
    """The time limit (minutes) a training job asks a scheduler for: from train.time_budget when set (the budget
    plus BUDGET_MARGIN_S), else train.runtime."""
    if settings.get("time_budget"):
        return int(math.ceil((float(settings["time_budget"]) + BUDGET_MARGIN_S) / 60))
    return int(settings["runtime"])


def allotted_threads(threads: int, environ=None) -> int:
    """A job's threads, at most the CPUs Slurm gave it. Inside an sbatch job Snakemake runs the job with `--cores
    all`, the node's CPUs where Slurm does not pin jobs to theirs (TaskPlugin=task/none), so the rules' thread
    counts would take every core of a node that other jobs share, and torch's threads spin on CPUs they do not
    have (a tuning trial under the test cluster trained many times slower). Outside Slurm, `threads` as
    Snakemake gave it."""
    env = os.environ if environ is None else environ
    threads = max(1, int(threads))
    given = (env.get("SLURM_CPUS_PER_TASK") or env.get("SLURM_CPUS_ON_NODE")) if env.get("SLURM_JOB_ID") else None
    try:
        return max(1, min(threads, int(given))) if given else threads
    except ValueError:  # a malformed variable is Slurm's business, not a reason to fail the job
        return threads


CLUSTER_THREADS = 8  # a training job's threads per device on a cluster node, where --cores says nothing of the node


def train_threads(configured: int | None, cores: int | None, gpu_slots: int | None, cluster: bool = False) -> int:
    """torch threads per training job. Configured wins; on a cluster, CLUSTER_THREADS; else the cores shared by the
    training jobs that may run at once: with `--cores N --resources gpu=G`, N // G (at least 1); without a gpu
    limit one job runs alone and gets all N. Snakemake then runs as many jobs at once as their threads fit in N."""
    if configured:
        return int(configured)
    if cluster:
        return CLUSTER_THREADS
    return max(1, int(cores or 1) // max(1, int(gpu_slots or 1)))


# What a training job holds (make bench-scale, bench/README.md): its runtime with its model, optimizer and
# tracking is 1.0-1.4 GB of RSS; CPU activations cost 0.6 (resnet18) to 2.2 (convnext_tiny) KB per input pixel
# per image in a batch. The CUDA runtime adds about 1 GB on the host; each DataLoader worker is a forked
# process (~400 MB) holding 2 prefetched float32 batches. Rounded up: a job killed for memory loses more than
# a generous request costs.
RUNTIME_MB = 1536


CUDA_MB = 1024


WORKER_MB = 400


ACTIVATION_KB_PER_PIXEL = 2.5  # CPU training only: on a GPU the activations live in device memory


def loader_workers(num_workers: int | None, threads: int | None, gpu: bool) -> int:
    """DataLoader worker processes: as configured, else 0 on CPU (workers would take the cores the model
    computes on) and, on a GPU, the job's threads but one (the training loop's), at most 8."""
    if num_workers is not None:
        return num_workers
    return max(1, min(8, (threads or 1) - 1)) if gpu else 0


def train_mem_mb(settings: dict, side: int, channels: int, workers: int, gpu: bool) -> int:
    """The memory (MB) to request for one training job: `train.mem_mb` when set, else the estimate above for
    this backbone's batch size and input side. It does not depend on the dataset's size (the cache is read
    by row and its pages handed back)."""
    if settings.get("mem_mb"):
        return int(settings["mem_mb"])
    batch = int(settings["batch_size"])
    batch_mb = batch * side * side * channels * 4 / 2**20
    mb = RUNTIME_MB + workers * (WORKER_MB + 2 * batch_mb)
    mb += CUDA_MB if gpu else batch * side * side * ACTIVATION_KB_PER_PIXEL / 1024
    return int(math.ceil(mb / 256) * 256)
