"""Persona training on a CPU with several cores: one process per core, each computing part of every batch (DDP).

A training step of a small model is thousands of small operations; spread over two OpenMP threads, each one
waits for the other (`OMP_WAIT_POLICY=PASSIVE` puts the waiting thread to sleep, OpenMP's default spins and
steals the core from everything else on the machine). Two single-threaded processes each take half of the batch
and only meet once per step, to average the LoRA gradients (torch.distributed over gloo, a few hundred KB).
The batch and the optimizer steps stay those of one process: `batch_size` examples per step in all, not per
process. `rolechat train` starts them (the environment torch.distributed reads: RANK, WORLD_SIZE, MASTER_PORT...)
when `train.cpu_processes` says so (0 = one per core torch may use, at most 4, a divisor of batch_size) and waits
for them; the Trainer does the rest, as on several GPUs. A Ctrl-C (or the app's stop button) reaches the starting
process, which passes it on once to each worker: they record the interruption and keep their checkpoint.
As in any DDP run, each process draws its own share of the shuffled examples, and when an epoch's batches do not
divide evenly between the processes, its last step repeats a share from the epoch's start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["SPLIT", "MOST_AUTO", "cpu_processes", "device_batch", "environment", "run_workers"]

SPLIT = "ROLECHAT_TRAIN_SPLIT"  # set by `rolechat train` for its processes: they split each batch between them
MOST_AUTO = 4  # auto never starts more processes than this (each holds a copy of the model)


def cpu_processes(cfg: Any, device: str, threads: int) -> int:
    """How many processes train on this device: 1 off the CPU or inside a launched process; else the setting,
    or with 0 the largest divisor of batch_size up to min(threads, MOST_AUTO)."""
    if not device.startswith("cpu") or "RANK" in os.environ or cfg.qlora:
        return 1
    if cfg.cpu_processes:
        return cfg.cpu_processes
    return max(n for n in range(1, max(min(threads, MOST_AUTO), 1) + 1) if cfg.batch_size % n == 0)


def device_batch(cfg: Any, world: int) -> int:
    """Examples per process per step: the batch's share in processes `rolechat train` started, else batch_size
    (a user's own torchrun / accelerate launch on GPUs keeps the per-device meaning)."""
    if world > 1 and os.environ.get(SPLIT) == "1":
        return max(cfg.batch_size // world, 1)
    return cfg.batch_size


def environment(processes: int, threads: int, rank: int, port: int) -> dict[str, str]:
    """Worker `rank`'s environment: its place in the group, the batch split, the cores shared out as threads."""
    each = str(max(threads // processes, 1))
    return {
        **os.environ,
        SPLIT: "1",
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(processes),
        "LOCAL_WORLD_SIZE": str(processes),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "OMP_NUM_THREADS": each,
        "MKL_NUM_THREADS": each,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(argv: Sequence[str], processes: int, threads: int, *, grace: float = 30.0) -> int:
    """Run `python -m rolechat ARGV` as `processes` workers and return the run's exit status: rank 0's, else the
    first failure's. Workers are in their own process group, so a Ctrl-C reaches only this process, which passes
    SIGINT on to each once. When one worker fails, the others (waiting for it in a collective) get `grace`
    seconds, then are stopped."""
    port = free_port()
    command = [sys.executable, "-m", "rolechat", *argv]
    workers = [
        subprocess.Popen(command, env=environment(processes, threads, rank, port), process_group=0)
        for rank in range(processes)
    ]
    interrupted, failed_at = False, None
    while any(w.poll() is None for w in workers):
        try:
            time.sleep(0.1)
        except KeyboardInterrupt:
            if not interrupted:
                interrupted = True
                for w in workers:
                    if w.poll() is None:
                        w.send_signal(signal.SIGINT)
            continue
        if failed_at is None and any(w.returncode not in (None, 0) for w in workers):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > grace:
            for w in workers:
                if w.poll() is None:
                    w.kill()
    codes = [w.returncode if w.returncode >= 0 else 128 - w.returncode for w in workers]
    return codes[0] or next((c for c in codes if c), 0)
