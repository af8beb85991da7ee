"""The executors: the micro world's RTT grid run in this process, in local worker processes and as
Ray tasks on a local cluster gives the same numbers, and each resumes what another left."""

import os

import pytest
import torch

from forensics.attacks.relearn import RelearnSettings, relearn
from forensics.errors import InputError
from forensics.models.executor import Executor, Job
from forensics.study.config_file import load_config
from forensics.study.run import run_study
from forensics.worlds.world import load_world
from tests.conftest import accuracy_study

SETTINGS = RelearnSettings(lrs=(1e-3, 3e-3), epochs=2, batch_size=4, seeds=(0, 1), extend_rounds=0)


def grid_numbers(result: dict) -> dict:
    """Every run's outcome (seconds aside): what must not depend on where it ran."""
    return {
        name: [{k: v for k, v in run.items() if k != "seconds"} for run in runs]
        for name, runs in result["grid"].items()
    }


def serial(models, sets, out, threads: int) -> dict:
    """The grid in this process on `threads` CPU threads (a worker's share), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return relearn(models, sets, out, SETTINGS, progress=False)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(micro_world):
    _, sets = load_world(micro_world)
    models = {n: micro_world / "checkpoints" / n for n in ("original", "never_learned")}
    return models, sets


def test_ray_tasks_give_the_local_numbers_and_resume_across(world, tmp_path):
    ray = pytest.importorskip("ray")
    models, sets = world
    local = serial(models, sets, tmp_path / "local", threads=1)  # a Ray task's share: one CPU
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = relearn(models, sets, tmp_path / "ray", SETTINGS, progress=False, executor=Executor("ray"))
        assert grid_numbers(on_ray) == grid_numbers(local)
        assert len(on_ray["grid"]["original"]) == 2 * 2 * 3  # lrs × seeds × V splits
        # the cluster resumes what the local executor left: no run is redone
        files = sorted((tmp_path / "local" / "relearn").rglob("*.json"))
        stamps = [f.stat().st_mtime_ns for f in files]
        again = relearn(models, sets, tmp_path / "local", SETTINGS, progress=False, executor=Executor("ray"))
        assert [f.stat().st_mtime_ns for f in files] == stamps
        assert grid_numbers(again) == grid_numbers(local)
    finally:
        ray.shutdown()


def test_worker_processes_give_the_local_numbers(world, tmp_path):
    models, sets = world
    workers = 2
    local = serial(models, sets, tmp_path / "local", threads=max(1, (os.cpu_count() or 1) // workers))
    pooled = relearn(models, sets, tmp_path / "pool", SETTINGS, progress=False, executor=Executor(workers=2))
    assert grid_numbers(pooled) == grid_numbers(local)


def _fails(x):
    raise InputError(f"bad job {x}")


def test_a_failing_job_reports_its_error_and_bad_settings(micro_world, tmp_path):
    with pytest.raises(InputError, match="bad job 3"):
        Executor(workers=2).run([Job(fn=_fails, kwargs={"x": 3})] * 2)
    with pytest.raises(InputError, match="choose local or ray"):
        Executor("dask")
    with pytest.raises(InputError, match="needs the ray executor"):
        Executor(address="ray://head:10001")
    config = accuracy_study(tmp_path)
    config.write_text('executor = "ray"\nworkers = 2\n' + config.read_text())
    for ckpt in ("original", "never_learned"):
        (tmp_path / ckpt).symlink_to(micro_world / "checkpoints" / ckpt)
    (tmp_path / "facts.jsonl").symlink_to(micro_world / "facts.jsonl")
    cfg = load_config(config)
    assert (cfg.jobs().kind, cfg.jobs().workers) == ("ray", 2)
    config.write_text(config.read_text().replace("workers = 2", "workers = 0"))
    with pytest.raises(InputError, match="'workers' must be at least 1"):
        load_config(config)


def test_a_study_on_ray_equals_the_local_study(micro_world, tmp_path):
    """The micro world's study (accuracy, RTT, localization) under the Ray executor: the same
    results as the local executor on the same threads per job, verdicts included."""
    ray = pytest.importorskip("ray")
    for ckpt in ("original", "never_learned"):
        (tmp_path / ckpt).symlink_to(micro_world / "checkpoints" / ckpt)
    (tmp_path / "facts.jsonl").symlink_to(micro_world / "facts.jsonl")
    config = accuracy_study(tmp_path)
    text = config.read_text().replace('run = ["accuracy"]', 'run = ["accuracy", "relearn", "localize"]')
    config.write_text('grid = "demo"\n' + text)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = run_study(load_config(config), progress=False)
    finally:
        torch.set_num_threads(before)
    config.write_text('executor = "ray"\n' + config.read_text().replace('out = "out"', 'out = "on-ray"'))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_study(load_config(config), progress=False)
    finally:
        ray.shutdown()
    assert grid_numbers(on_ray["relearn"]) == grid_numbers(local["relearn"])
    drop = {"seconds"}
    assert {k: v for k, v in on_ray["localize"]["m"].items() if k not in drop} == {
        k: v for k, v in local["localize"]["m"].items() if k not in drop
    }
    assert on_ray["summary"]["m"]["verdict"] == local["summary"]["m"]["verdict"]


def test_a_cluster_that_does_not_answer_is_one_line_at_once(micro_world, tmp_path, capsys):
    """executor = "ray" at an address where nothing listens: exit 2 within seconds (Ray itself
    retries for many minutes), nothing written."""
    import time

    from forensics.cli import main

    for ckpt in ("original", "never_learned"):
        (tmp_path / ckpt).symlink_to(micro_world / "checkpoints" / ckpt)
    (tmp_path / "facts.jsonl").symlink_to(micro_world / "facts.jsonl")
    config = accuracy_study(tmp_path)
    config.write_text('executor = "ray"\nray_address = "127.0.0.1:1"\nray_timeout = 5\n' + config.read_text())
    start = time.monotonic()
    assert main(["study", str(config), "--quiet"]) == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ray_address '127.0.0.1:1': cannot reach 127.0.0.1:1" in err[0]
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="expected host:port"):
        Executor("ray", "somewhere").start()


def test_more_workers_than_cores_are_capped_with_a_warning(capsys):
    from forensics.models.executor import capped

    cores = os.cpu_count() or 1
    assert capped(1000) == cores
    assert f"workers = 1000 capped at {cores}" in capsys.readouterr().err
    assert capped(1) == 1 and capsys.readouterr().err == ""


def test_lora_targets_that_match_nothing_are_refused_before_any_run(world, tmp_path):
    models, sets = world
    settings = RelearnSettings(
        lrs=(1e-3,), epochs=1, seeds=(0,), method="lora", lora_targets=("nonexistent",)
    )
    with pytest.raises(InputError, match="lora_targets 'nonexistent': no linear layer .* is named so"):
        relearn(models, sets, tmp_path, settings, progress=False)
    assert not (tmp_path / "relearn").exists()
    ok = RelearnSettings(lrs=(1e-3,), epochs=1, seeds=(0,), method="lora", lora_targets=("q_proj", "v_proj"))
    relearn({"original": models["original"]}, sets, tmp_path, ok, progress=False)  # real names pass
