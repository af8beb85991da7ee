"""Stopping a run with worker processes (issue 21): Ctrl-C, SIGTERM and kill -9 of a `workers = 2`
RTT grid stop within 5 s, leave no process behind and keep every run that finished — each kept run
equal to the same run of an uninterrupted grid, so the resume gives the uninterrupted numbers."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from forensics.attacks.relearn import RelearnSettings, relearn
from forensics.models.checkpoint import read_json
from forensics.models.executor import Executor
from forensics.worlds.world import load_world

# enough runs that the signal arrives with most of them still to do (2 models × 3 V × 2 seeds)
GRID = RelearnSettings(lrs=(1e-3,), epochs=3, batch_size=4, seeds=(0, 1), extend_rounds=0)
FLAGS = ["--lrs", "1e-3", "--epochs", "3", "--batch-size", "4", "--seeds", "0,1", "--extend-rounds", "0"]


def runs(folder: Path) -> dict[str, dict]:
    """Every finished run file under `folder/relearn`, without its timing."""
    out = {}
    for f in sorted((folder / "relearn").rglob("*.json")):
        run = read_json(f)["run"]
        out[str(f.relative_to(folder))] = {k: v for k, v in run.items() if k != "seconds"}
    return out


@pytest.fixture(scope="module")
def uninterrupted(micro_world, tmp_path_factory):
    """The grid run to the end in this process on one thread (a worker's share on 2 cores)."""
    world = tmp_path_factory.mktemp("whole") / "w"
    shutil.copytree(micro_world, world)
    _, sets = load_world(world)
    models = {n: world / "checkpoints" / n for n in ("original", "never_learned")}
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    try:
        relearn(models, sets, world, GRID, progress=False)
    finally:
        torch.set_num_threads(before)
    return runs(world)


def start(world: Path) -> subprocess.Popen:
    """`forensics relearn` with two workers, in a session of its own (its own process group)."""
    cmd = [sys.executable, "-m", "forensics.cli", "relearn", "--world", str(world), "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [*cmd, *FLAGS, "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def wait_for_first_run(proc: subprocess.Popen, world: Path, limit: float = 240) -> None:
    deadline = time.monotonic() + limit
    while not list((world / "relearn").rglob("*.json")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no RTT run finished"
        time.sleep(0.1)


def gone(pids: list[int], limit: float) -> list[int]:
    """The processes of `pids` still alive after up to `limit` seconds (zombies count as gone)."""
    deadline = time.monotonic() + limit
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@pytest.mark.parametrize(
    "how, code",
    [("SIGINT", 128 + signal.SIGINT), ("SIGTERM", 128 + signal.SIGTERM), ("SIGKILL", None)],
)
def test_a_stopped_worker_pool_exits_at_once_and_keeps_what_finished(
    micro_world, uninterrupted, tmp_path, how, code
):
    world = tmp_path / "w"
    shutil.copytree(micro_world, world)
    proc = start(world)
    try:
        wait_for_first_run(proc, world)
        family = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert len(family) >= 2  # the two workers (and the resource tracker)
        stopped = time.monotonic()
        if how == "SIGINT":  # Ctrl-C in a terminal reaches the whole process group
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, getattr(signal, how))
        _, err = proc.communicate(timeout=30)
        waited = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert waited < 5, f"{how}: {waited:.1f} s to exit"
    assert not gone(family, 5), f"{how}: processes left behind"
    if code is not None:
        assert proc.returncode == code
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "stopped" in lines[0] and "kept" in lines[0], err
    kept = runs(world)
    assert kept and len(kept) < len(uninterrupted)  # stopped mid-grid, what finished is there
    assert all(kept[name] == uninterrupted[name] for name in kept)
    if how == "SIGTERM":  # the resume does only what is missing and ends as an uninterrupted grid
        stamps = {f: f.stat().st_mtime_ns for f in (world / "relearn").rglob("*.json")}
        _, sets = load_world(world)
        models = {n: world / "checkpoints" / n for n in ("original", "never_learned")}
        before = torch.get_num_threads()
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
        try:
            relearn(models, sets, world, GRID, progress=False, executor=Executor())
        finally:
            torch.set_num_threads(before)
        assert runs(world) == uninterrupted
        assert all(f.stat().st_mtime_ns == t for f, t in stamps.items())


def test_a_worker_killed_in_a_fresh_study_keeps_the_folder_and_its_runs(micro_world, tmp_path):
    """kill -9 of one worker of a `workers = 2` study writing into a new folder: one line, exit 1,
    and the folder with every run that finished stays (it is not bad input: nothing is cleaned up)."""
    from tests.conftest import accuracy_study

    for name in ("original", "never_learned"):
        (tmp_path / name).symlink_to(micro_world / "checkpoints" / name)
    (tmp_path / "facts.jsonl").symlink_to(micro_world / "facts.jsonl")
    config = accuracy_study(tmp_path, out="fresh")
    text = config.read_text().replace('run = ["accuracy"]', 'run = ["accuracy", "relearn"]')
    config.write_text("workers = 2\n" + text + "[lenses.relearn]\nlrs = [1e-3, 3e-3]\nepochs = 3\n")
    out = tmp_path / "fresh"
    cmd = [sys.executable, "-m", "forensics.cli", "study", str(config), "--quiet"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_first_run(proc, out)
        workers = [
            c for c in psutil.Process(proc.pid).children() if "resource_tracker" not in " ".join(c.cmdline())
        ]
        workers[0].kill()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "a worker process died" in lines[0] and "kept" in lines[0], err
    assert out.is_dir() and runs(out) and (out / "stages/accuracy.json").exists()
