"""Where a grid's independent jobs run: in this process, in local worker processes side by side,
or as Ray tasks on a cluster (DESIGN §10). A job is a module-level function and its arguments; a
job that produces a result file writes it itself (the unit of resume), so a cluster run and a local
run leave the same files, and either resumes the other.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from forensics.errors import InputError

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Job:
    """`fn(*args)`, needing `num_gpus` GPUs (a fraction shares one) and `num_cpus` CPUs."""

    fn: Callable
    args: tuple = field(default_factory=tuple)
    num_gpus: float = 0
    num_cpus: float = 1


@dataclass(frozen=True)
class Executor:
    """`kind`: local or ray; `address`: an existing Ray cluster (default: start a local one);
    `workers`: local worker processes running jobs side by side (1: one after another in this
    process), each with its share of the CPU threads."""

    kind: str = "local"
    address: str | None = None
    workers: int = 1

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise InputError(f"executor '{self.kind}': choose {' or '.join(EXECUTORS)}")
        if self.address is not None and self.kind != "ray":
            raise InputError("a Ray address needs the ray executor")
        if self.workers < 1:
            raise InputError(f"'workers' must be at least 1 (got {self.workers})")

    def run(self, jobs: Sequence[Job]) -> list:
        """Every job's result, in job order."""
        if not jobs:
            return []
        if self.kind == "local" and self.workers == 1:
            return [job.fn(*job.args) for job in jobs]
        if self.kind == "local":
            pool = _pool(self.workers)
            try:
                return [f.result() for f in [pool.submit(_released, job.fn, None, *job.args) for job in jobs]]
            except BrokenProcessPool:
                _POOLS.pop(self.workers, None)
                raise InputError(
                    "a worker process died: out of memory, or a script that runs forensics with "
                    'workers > 1 outside `if __name__ == "__main__":` (worker processes import it)'
                ) from None
        ray = _ray(self.address)
        refs = [
            ray.remote(num_gpus=job.num_gpus, num_cpus=job.num_cpus, max_retries=0)(_released).remote(
                job.fn, max(1, int(job.num_cpus)), *job.args
            )
            for job in jobs
        ]
        return ray.get(refs)


_POOLS: dict[int, ProcessPoolExecutor] = {}


def _pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes kept for the whole run (they import torch once), `workers` of them."""
    if workers not in _POOLS:
        threads = max(1, (os.cpu_count() or 1) // workers)
        _POOLS[workers] = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(threads,),
        )
    return _POOLS[workers]


def _start_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _released(fn: Callable, threads: int | None, *args):
    """A job in a worker process, on `threads` CPU threads (its CPU share on a Ray node); the worker
    keeps no model afterwards (its memory, GPU memory included, goes back to the pool or cluster)."""
    from forensics.checkpoint import release_cached

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    try:
        return fn(*args)
    finally:
        release_cached()


def _ray(address: str | None):
    try:
        import ray
    except ImportError:
        raise InputError("executor 'ray' needs Ray: pip install 'unlearning-forensics[scale]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise InputError(
                f"ray_address {address!r}: cannot join the cluster ({str(e).splitlines()[0]})"
            ) from None
    return ray
