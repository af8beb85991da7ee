"""Where a grid's independent jobs run: in this process, in local worker processes side by side,
or as Ray tasks on a cluster (docs/design.md §10). A job is a module-level function and its arguments; a
job that produces a result file writes it itself (the unit of resume), so a cluster run and a local
run leave the same files, and either resumes the other.

Stopping is prompt and leaves nothing behind: on Ctrl-C, SIGTERM or a job's error the jobs not yet
started are cancelled, and on an interrupt the worker processes are killed at once (what they had
finished is on disk); a worker whose parent dies (even by kill -9) exits within a second.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from forensics.errors import InputError, RunFailed, check_stop, warn

EXECUTORS = ("local", "ray")
RESUME = "the runs that finished are kept: rerun the same command to resume"


@dataclass(frozen=True, kw_only=True)
class Job:
    """`fn(**kwargs)`, needing `num_gpus` GPUs (a fraction shares one) and `num_cpus` CPUs."""

    fn: Callable
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    num_gpus: float = 0
    num_cpus: float = 1


@dataclass(frozen=True)
class Executor:
    """`kind`: local or ray; `address`: an existing Ray cluster (default: start a local one);
    `workers`: local worker processes running jobs side by side (1: one after another in this
    process), each with its share of the CPU threads, at most one per core; `timeout`: seconds to
    wait for a Ray cluster to answer before giving up."""

    kind: str = "local"
    address: str | None = None
    workers: int = 1
    timeout: float = 60.0

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise InputError(f"executor '{self.kind}': choose {' or '.join(EXECUTORS)}")
        if self.address is not None and self.kind != "ray":
            raise InputError("a Ray address needs the ray executor")
        if self.workers < 1:
            raise InputError(f"'workers' must be at least 1 (got {self.workers})")
        if not self.timeout > 0:
            raise InputError(f"'ray_timeout' must be positive seconds (got {self.timeout})")

    def start(self) -> None:
        """Join the Ray cluster now (before any work), so an address that does not answer stops the
        run before anything is written; nothing to do for the local executor."""
        if self.kind == "ray":
            _ray(self.address, self.timeout)

    def run(self, jobs: Sequence[Job]) -> list:
        """Every job's result, in job order."""
        if not jobs:
            return []
        if self.kind == "local" and self.workers == 1:
            return [job.fn(**job.kwargs) for job in jobs]
        if self.kind == "local":
            return _run_pool(jobs, capped(self.workers))
        return _run_ray(jobs, self.address, self.timeout)


def capped(workers: int) -> int:
    """`workers`, at most one per core (more only split the cores and multiply the memory), with a
    warning when that lowers it."""
    cores = os.cpu_count() or 1
    if workers > cores:
        key = (workers, cores)
        if key not in _WARNED:
            _WARNED.add(key)
            warn(f"workers = {workers} capped at {cores}, the cores of this machine")
        return cores
    return workers


_WARNED: set = set()
_POOLS: dict[int, ProcessPoolExecutor] = {}


def _run_pool(jobs: Sequence[Job], workers: int) -> list:
    pool = _pool(workers)
    futures = [pool.submit(_released, job.fn, None, job.kwargs) for job in jobs]
    try:
        return [_result(f) for f in futures]
    except BrokenProcessPool:
        _discard(workers)
        raise RunFailed(
            "a worker process died (out of memory or killed; or a script that runs forensics with "
            f'workers > 1 outside `if __name__ == "__main__":`); {RESUME}'
        ) from None
    except Exception:  # a job's error: the jobs not started are cancelled, the running ones finish
        for f in futures:
            f.cancel()
        raise
    except BaseException:  # Ctrl-C, SIGTERM: stop now; the workers' finished files are on disk
        _discard(workers, kill=True)
        raise


def _result(future):
    """A job's result, checking between short waits whether a stop was requested (a signal whose
    exception Python swallowed, raised inside a finalizer, still stops the run)."""
    while True:
        check_stop()
        try:
            return future.result(timeout=0.25)
        except FuturesTimeout:
            continue


def _pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes kept for the whole run (they import torch once), `workers` of them."""
    if workers not in _POOLS:
        threads = max(1, (os.cpu_count() or 1) // workers)
        _POOLS[workers] = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(threads, os.getpid()),
        )
    return _POOLS[workers]


def _discard(workers: int, kill: bool = False) -> None:
    """Forget a pool; with `kill`, kill its processes first (an interrupt: nothing waits for them)."""
    pool = _POOLS.pop(workers, None)
    if pool is None:
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)  # shutdown() forgets it: read it first
    if kill:
        for p in processes:
            p.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    if kill:  # the pool's own thread notices the dead workers and releases its queues and locks
        for p in processes:
            p.join(timeout=5)
        if manager is not None:  # before exit: its wake-up pipe is written to by the exit handler
            manager.join(timeout=5)


def _start_worker(threads: int, parent: int) -> None:
    """A worker: its share of the threads; Ctrl-C is the parent's to handle (it kills the workers);
    a watchdog ends the worker when its parent is gone."""
    import torch
    from tqdm.std import tqdm

    torch.set_num_threads(threads)
    # tqdm's default lock is a multiprocessing semaphore; a worker killed on an interrupt would leave
    # it to the resource tracker, which complains of a leak: a worker's progress bars need no more
    # than a thread lock
    tqdm.set_lock(threading.RLock())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _released(fn: Callable, threads: int | None, kwargs: Mapping[str, Any]):
    """A job in a worker process, on `threads` CPU threads (its CPU share on a Ray node); the worker
    keeps no model afterwards (its memory, GPU memory included, goes back to the pool or cluster)."""
    from forensics.models.checkpoint import release_cached

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    try:
        return fn(**kwargs)
    finally:
        release_cached()


def _run_ray(jobs: Sequence[Job], address: str | None, timeout: float) -> list:
    ray = _ray(address, timeout)
    refs = [
        ray.remote(num_gpus=job.num_gpus, num_cpus=job.num_cpus, max_retries=0)(_released).remote(
            job.fn, max(1, int(job.num_cpus)), job.kwargs
        )
        for job in jobs
    ]
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, InputError | RunFailed):
            raise cause from None
        raise RunFailed(f"a Ray task failed: {_first_line(cause or e)}; {RESUME}") from None
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as e:
        raise RunFailed(f"a Ray worker died ({_first_line(e)}); {RESUME}") from None
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _ray(address: str | None, timeout: float):
    """Ray, joined to the cluster at `address` (a local one when None), within `timeout` seconds."""
    try:
        import ray
    except ImportError:
        raise InputError("executor 'ray' needs Ray: pip install 'unlearning-forensics[scale]'") from None
    if ray.is_initialized():
        return ray
    if address not in (None, "auto", "local"):
        _reachable(address, timeout)
    failure: list[BaseException] = []

    def join():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except BaseException as e:  # handed to the caller's thread below
            failure.append(e)

    worker = threading.Thread(target=join, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise InputError(
            f"ray_address {address!r}: the cluster did not answer within {timeout:g} s (ray_timeout)"
        )
    if failure:
        raise InputError(f"ray_address {address!r}: cannot join the cluster ({_first_line(failure[0])})")
    return ray


def _reachable(address: str, timeout: float) -> None:
    """Refuse a cluster address whose host and port accept no connection within `timeout` seconds
    (Ray itself retries such an address for many minutes)."""
    where = address.split("://", 1)[-1]
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"ray_address {address!r}: expected host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        reason = "no answer" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise InputError(f"ray_address {address!r}: cannot reach {host}:{port} ({reason})") from None
