"""Unlearning methods on the micro world: forget falls, retain holds; RMU touches only its layers."""

import pytest
import torch

from forensics.cli import main
from forensics.errors import InputError
from forensics.models.arch import arch_of_checkpoint
from forensics.models.checkpoint import boot_bridge, load_checkpoint, read_json
from forensics.models.scoring import score
from forensics.study.summary import UNLEARNING_FAILED
from forensics.unlearn import METHODS
from forensics.unlearn.run import UnlearnSettings, next_round, unlearn
from forensics.worlds.world import load_world

FAST = {
    "ga": UnlearnSettings(batch_size=16, budget=1, lrs=(1e-3,), steps=30),
    "gd": UnlearnSettings(batch_size=16, budget=2, lrs=(1e-3,), steps=60),
    "ria": UnlearnSettings(batch_size=16, budget=1, lrs=(1e-3,), steps=40),
    "npo": UnlearnSettings(batch_size=16, budget=1, lrs=(3e-3,), steps=60),
    "rmu": UnlearnSettings(batch_size=16, budget=2, lrs=(1e-2,), steps=100, fixed={"layer": 1}),
}


@pytest.fixture(scope="module")
def unlearned(micro_world, tmp_path_factory):
    """Every method run once on the micro world (one grid point each, to stay fast)."""
    _, sets = load_world(micro_world)
    out = tmp_path_factory.mktemp("unlearned")
    return {
        name: (
            unlearn(name, micro_world / "checkpoints/original", sets, out / name, FAST[name], progress=False),
            out / name,
        )
        for name in METHODS
    }


@pytest.mark.parametrize("name", [m for m in METHODS if m != "ga"])
def test_forget_falls_and_retain_holds(unlearned, name):
    """GA is left out: pure gradient ascent collapses retain with forget (the decided baseline), so
    whether one GA run lands above the floor depends on the machine; its selection rule is tested
    below and in test_sweep_picks_lowest_forget_above_the_floor."""
    meta, _ = unlearned[name]
    before, after = meta["original_accuracy"], meta["chosen"]["accuracy"]
    assert before["forget"] == 1.0
    assert after["forget"] <= 0.6, after
    # whether a run stopping early keeps 15 of the 16 retain facts (the rule's 0.9) or 14 is the
    # machine's float kernels, so the rule's outcome is not asserted; this floor is
    assert after["retain"] >= 0.85, after
    assert meta["chosen"] in meta["sweep"] and meta["unlearning_failed"] == (not meta["chosen"]["met"])


@pytest.fixture(scope="module")
def ga_sweep(micro_world, tmp_path_factory):
    """A three-run GA sweep (the grid only): lr 1e-5 barely moves (forget and retain stay 1.00), lr 3e-3
    loses retain (0.44 here, 0.50 under ATEN_CPU_CAPABILITY=default; the floor is 0.90); lr 1e-3 lands
    either side of the rule by machine, so what is asserted is the rule applied to the recorded runs."""
    _, sets = load_world(micro_world)
    folder = tmp_path_factory.mktemp("ga_sweep")
    settings = UnlearnSettings(batch_size=16, budget=3, lrs=(1e-5, 1e-3, 3e-3), steps=30)
    meta = unlearn("ga", micro_world / "checkpoints/original", sets, folder / "ga", settings, progress=False)
    return meta, folder


def test_ga_records_the_retain_rule(ga_sweep):
    meta, _ = ga_sweep
    runs = meta["sweep"]
    before = meta["original_accuracy"]
    floor, target = 0.9 * before["retain"], before["chance"] + 0.10  # the default settings' rule
    for r in runs:
        assert r["retain_ok"] == (r["accuracy"]["retain"] >= floor)
        assert r["met"] == (r["retain_ok"] and r["accuracy"]["forget"] <= target)
    # the runs differ on the rule: one kept retain (lr 1e-5: 1.00), one lost it (lr 3e-3: 0.44 / 0.50)
    kept = [r for r in runs if r["retain_ok"]]
    assert len(runs) == 3 and kept and len(kept) < len(runs)
    # the rule's pick: the rule-meeting run with the lowest forget; else the lowest-forget run that
    # kept retain; else the lowest-forget run; ties to the higher retain, then the earlier run
    pool = [r for r in runs if r["met"]] or kept
    pick = min(pool, key=lambda r: (r["accuracy"]["forget"], -r["accuracy"]["retain"], runs.index(r)))
    assert runs.index(meta["chosen"]) == runs.index(pick), [(r["params"], r["accuracy"]) for r in runs]
    assert meta["chosen"]["retain_ok"] and meta["unlearning_failed"] == (not pick["met"])


@pytest.mark.parametrize("name", ["ga", "gd", "ria", "npo"])
def test_checkpoint_reloads_through_the_bridge_and_scores_the_same(micro_world, unlearned, name):
    meta, path = unlearned[name]
    _, sets = load_world(micro_world)
    bridge = boot_bridge(path)
    tok = bridge.tokenizer
    assert score(bridge, tok, sets.forget_facts()).accuracy == meta["chosen"]["accuracy"]["forget"]
    assert score(bridge, tok, sets.retain).accuracy == meta["chosen"]["accuracy"]["retain"]


def test_rmu_changes_only_its_layers(micro_world, unlearned):
    _, path = unlearned["rmu"]
    original, _ = load_checkpoint(micro_world / "checkpoints/original")
    rmu, _ = load_checkpoint(path)
    before, after = original.state_dict(), rmu.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "RMU changed nothing"
    # layer ℓ = 1 updates layers max(0, ℓ-2)..ℓ = 0..1; embeddings, final norm, unembedding untouched
    layer_of = arch_of_checkpoint(path).layer_of
    assert all(layer_of(k) in (0, 1) for k in changed)
    for k in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert torch.equal(before[k], after[k])


def test_rmu_layer_zero_touches_only_layer_zero(micro_world, tmp_path):
    _, sets = load_world(micro_world)
    settings = UnlearnSettings(batch_size=16, budget=1, lrs=(1e-2,), steps=5, fixed={"layer": 0})
    unlearn("rmu", micro_world / "checkpoints/original", sets, tmp_path / "rmu0", settings, progress=False)
    before = load_checkpoint(micro_world / "checkpoints/original")[0].state_dict()
    after = load_checkpoint(tmp_path / "rmu0")[0].state_dict()
    layer_of = arch_of_checkpoint(tmp_path / "rmu0").layer_of
    assert {layer_of(k) for k in before if not torch.equal(before[k], after[k])} == {0}


def test_rmu_on_mlp_out_touches_only_the_mlp_output_projections(micro_world, tmp_path):
    """The paper's recipe: layers ℓ-2..ℓ's MLP output projections alone (ℓ = 1: blocks 0 and 1)."""
    _, sets = load_world(micro_world)
    fixed = {"layer": 1, "update": "mlp_out"}
    settings = UnlearnSettings(batch_size=16, budget=1, lrs=(1e-2,), steps=5, fixed=fixed)
    unlearn("rmu", micro_world / "checkpoints/original", sets, tmp_path / "r", settings, progress=False)
    before = load_checkpoint(micro_world / "checkpoints/original")[0].state_dict()
    after = load_checkpoint(tmp_path / "r")[0].state_dict()
    arch = arch_of_checkpoint(tmp_path / "r")
    changed = {arch.kind_of(k) for k in before if not torch.equal(before[k], after[k])}
    assert changed == {(0, "mlp_out"), (1, "mlp_out")}
    from forensics.unlearn.run import grid_for

    with pytest.raises(InputError, match="RMU update 'all': choose block, mlp_out"):
        grid_for("rmu", UnlearnSettings(fixed={"update": "all"}), 2)


def test_resume_does_not_redo(micro_world, unlearned):
    meta, path = unlearned["gd"]
    _, sets = load_world(micro_world)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    again = unlearn("gd", micro_world / "checkpoints/original", sets, path, FAST["gd"], progress=False)
    assert again == meta
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp


def test_sweep_keeps_the_rule_meeting_run_with_the_lowest_forget(ga_sweep):
    meta, folder = ga_sweep
    assert [r["params"]["lr"] for r in meta["sweep"]] == [1e-5, 1e-3, 3e-3]  # budget 3: the grid only
    rule = meta["rule"]
    for r in meta["sweep"]:
        assert r["retain_ok"] == (r["accuracy"]["retain"] >= rule["retain_at_least"])
        assert r["met"] == (r["retain_ok"] and r["accuracy"]["forget"] <= rule["forget_at_most"])
    met = [r for r in meta["sweep"] if r["met"]]
    assert meta["unlearning_failed"] == (not met)
    pool = met or [r for r in meta["sweep"] if r["retain_ok"]] or meta["sweep"]
    assert meta["chosen"]["accuracy"]["forget"] == min(r["accuracy"]["forget"] for r in pool)
    assert meta["cost"]["runs"] == 3 and meta["cost"]["rounds"] == 1
    assert not list(folder.glob(".*sweep"))  # the runs' models are gone, the chosen one kept
    assert (folder / "ga/model.safetensors").exists()


def test_runs_stop_at_the_first_check_where_the_whole_rule_holds(micro_world, tmp_path):
    """A run stops at the first check where forget is at the target *and* retain above the floor —
    not at the first where forget alone is (methods with a retain term lose retain first and repair
    it later). A generous rule (forget <= chance + 0.5, retain >= 0.5 x) is reached early by GD;
    a learning rate of 1e-6 reaches nothing and runs all its steps."""
    _, sets = load_world(micro_world)
    settings = UnlearnSettings(
        batch_size=16, light=True, lrs=(1e-6, 1e-3), steps=60, forget_margin=0.5, min_retain=0.5
    )  # light: GD's demo point (rc 3) at each learning rate
    meta = unlearn(
        "gd", micro_world / "checkpoints/original", sets, tmp_path / "gd", settings, progress=False
    )
    target, floor = meta["rule"]["forget_at_most"], meta["rule"]["retain_at_least"]
    slow, fast = meta["sweep"]
    assert not slow["stopped_early"] and slow["steps"] == 60 and not slow["met"]
    assert [c["step"] for c in slow["checks"]] == list(range(6, 61, 6))  # 10 checks
    assert fast["stopped_early"] and fast["met"] and fast["steps"] == fast["checks"][-1]["step"]
    for run in meta["sweep"]:
        holds = [c["forget"] <= target and c.get("retain", -1) >= floor for c in run["checks"]]
        assert holds[:-1] == [False] * (len(holds) - 1)  # no earlier check met the whole rule
        assert holds[-1] == run["stopped_early"]
        # retain is scored exactly when forget is at the target
        assert all(("retain" in c) == (c["forget"] <= target) for c in run["checks"])
    last = fast["checks"][-1]  # the stop's scores are the kept model's
    assert (last["forget"], last["retain"]) == (fast["accuracy"]["forget"], fast["accuracy"]["retain"])


def run(params, forget, retain, ok=0.9):
    return {"params": params, "accuracy": {"forget": forget, "retain": retain}, "retain_ok": retain >= ok}


def test_next_round_by_hand():
    """From the best run that kept retain, 3× the learning rate; from the best run that lost it, 3×
    the retain weight (GD's rc) or, for a method without one (GA), a third of the learning rate;
    points already run are skipped for the next best run of their kind."""
    runs = [
        run({"lr": 1e-3, "rc": 1.0}, forget=0.8, retain=0.95),
        run({"lr": 3e-4, "rc": 1.0}, forget=0.9, retain=0.97),
        run({"lr": 1e-2, "rc": 1.0}, forget=0.1, retain=0.5),
    ]
    assert next_round("gd", runs) == [{"lr": 3e-3, "rc": 1.0}, {"lr": 1e-2, "rc": 3.0}]
    ga = [run({"lr": 1e-3}, 0.8, 0.95), run({"lr": 3e-3}, 0.1, 0.5), run({"lr": 1e-4}, 0.9, 0.99)]
    # 3e-3 (from 1e-3) and 1e-3 (a third of 3e-3) were run: the next best of each kind instead
    assert next_round("ga", ga) == [{"lr": 3e-4}]


def test_a_method_that_cannot_unlearn_is_marked_failed_and_gets_no_verdict(micro_world, tmp_path):
    """Learning rates far too small for a few steps: no run meets the rule within the budget; the
    best run is kept, marked `unlearning_failed`, and the study says so instead of a verdict."""
    _, sets = load_world(micro_world)
    settings = UnlearnSettings(batch_size=16, budget=3, lrs=(1e-7,), steps=4)
    out = tmp_path / "m"
    meta = unlearn("ga", micro_world / "checkpoints/original", sets, out, settings, progress=False)
    assert meta["unlearning_failed"] and meta["cost"]["runs"] == 3
    assert [r["params"]["lr"] for r in meta["sweep"]] == pytest.approx([1e-7, 3e-7, 9e-7])
    assert [r["round"] for r in meta["sweep"]] == [1, 2, 3]
    config = tmp_path / "s.toml"
    config.write_text(
        f"""out = "s"
[models]
original = "{micro_world / "checkpoints/original"}"
[models.unlearned]
m = "m"
[facts]
path = "{micro_world / "facts.jsonl"}"
forget = ["forget_0", "forget_1", "forget_2"]
retain = ["retain"]
[lenses]
run = ["accuracy"]
"""
    )
    assert main(["study", str(config), "--quiet", "--fail-on", "hidden"]) == 3
    results = read_json(tmp_path / "s/results.json")
    assert results["unlearning"]["m"]["failed"] and results["summary"]["m"]["verdict"] == UNLEARNING_FAILED
    assert "met no run of the rule" in results["summary"]["m"]["evidence"]
    # the report's frontier: every run of the sweep as (forget, retain), and the rule's corner
    record = results["unlearning"]["m"]
    assert [(r["forget"], r["retain"]) for r in record["runs"]] == [
        (r["accuracy"]["forget"], r["accuracy"]["retain"]) for r in meta["sweep"]
    ]
    assert record["corner"] == {k: meta["rule"][k] for k in ("forget_at_most", "retain_at_least")}
    page = (tmp_path / "s/report/index.html").read_text()
    assert "id='fig-unlearning'" in page and "m: 3 runs, failed" in page
    # RTT leaves it out (no verdict reads an attack on it) and says so; the original is attacked
    rtt = "[lenses.relearn]\nlrs = [1e-2]\nepochs = 1\nrotations = 1\nextend_rounds = 0\n"
    text = config.read_text().replace('out = "s"', 'out = "s2"\nseeds = [0]')
    text = text.replace('"accuracy"]', '"accuracy", "relearn"]')
    config.write_text(text + rtt)
    assert main(["study", str(config), "--quiet"]) == 0
    section = read_json(tmp_path / "s2/results.json")["relearn"]
    assert section["skipped"] == ["m"] and list(section["grid"]) == ["original"]


def test_sweep_points_in_worker_processes_choose_the_same(micro_world, tmp_path):
    """Each sweep point a job in a worker process: the same runs and choice as in this process on
    the workers' threads, and the chosen checkpoint is the one the metadata names."""
    import os

    import torch

    from forensics.models.checkpoint import load_checkpoint
    from forensics.models.executor import Executor
    from forensics.models.scoring import accuracy_table

    _, sets = load_world(micro_world)
    settings = UnlearnSettings(batch_size=16, budget=1, lrs=(1e-5, 1e-3, 3e-3), steps=30)
    original = micro_world / "checkpoints/original"
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    try:
        here = unlearn("gd", original, sets, tmp_path / "here", settings, progress=False)
    finally:
        torch.set_num_threads(before)
    pooled = unlearn("gd", original, sets, tmp_path / "pool", settings, False, executor=Executor(workers=2))

    def runs(meta):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in meta["sweep"]]

    assert runs(pooled) == runs(here)
    assert pooled["chosen"]["params"] == here["chosen"]["params"]
    model, tok = load_checkpoint(tmp_path / "pool")
    assert accuracy_table(model, tok, sets, "choice") == pooled["chosen"]["accuracy"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "forgetful"], "unknown method 'forgetful'"),
        (
            ["--method", "rmu", "--rmu-layer", "7"],
            r"RMU layer 7 out of range \(the model has layers 0\.\.1\)",
        ),
        (["--method", "gd", "--lr", "0"], "learning rates must be positive"),
    ],
)
def test_bad_input_world(micro_world, tmp_path, capsys, args, message):
    import re
    import shutil

    world = tmp_path / "w"
    shutil.copytree(micro_world, world)
    before = sorted(p.name for p in (world / "checkpoints").iterdir())
    assert main(["unlearn", "--world", str(world), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err
    assert sorted(p.name for p in (world / "checkpoints").iterdir()) == before


def test_forget_overlapping_retain(micro_world, tmp_path, capsys):
    args = [
        "unlearn",
        "--method",
        "ga",
        "--original",
        str(micro_world / "checkpoints/original"),
        "--facts",
        str(micro_world / "facts.jsonl"),
        "--out",
        str(tmp_path / "o"),
        "--quiet",
    ]
    assert main([*args, "--forget", "forget_0,forget_1", "--retain", "forget_1,retain"]) == 2
    assert "split 'forget_1' is in both forget and retain" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(InputError, match="unknown method"):
        unlearn("nope", micro_world / "checkpoints/original", load_world(micro_world)[1], tmp_path / "x")


def test_rmu_weight_diff_is_zero_outside_its_layers(micro_world, unlearned):
    from forensics.measure.weights import changed_layers, diff

    result = diff(micro_world / "checkpoints/original", unlearned["rmu"][1])
    assert changed_layers(result) == [0, 1]
    outside = [t for t in result["tensors"] if t["layer"] not in (0, 1)]
    assert outside and all(t["fro"] == 0 and t["frac_changed"] == 0 for t in outside)
