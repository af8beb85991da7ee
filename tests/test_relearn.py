"""RTT: metrics on a hand-worked grid, the control stays near chance, a GA model recovers, bad input."""

import json

import pytest

from forensics.attacks.relearn import RelearnSettings, relearn
from forensics.attacks.selection import best_per_v, rtt_metrics
from forensics.cli import main
from forensics.errors import InputError
from forensics.facts.core import select
from forensics.unlearn.run import UnlearnSettings, unlearn
from forensics.worlds.world import load_world


def run(v, lr, accs):
    return {
        "v": v,
        "lr": lr,
        "before": {"acc_v": 0.1},
        "epochs": [{"epoch": i + 1, "acc_v": a, "acc_t": 1.0, "retain": 1.0} for i, a in enumerate(accs)],
    }


def test_metrics_on_a_hand_worked_grid():
    grid = {
        "original": [run("a", 1e-3, [0.8, 1.0]), run("b", 1e-3, [0.9, 0.8]), run("b", 1e-4, [0.5, 0.6])],
        "never_learned": [run("a", 1e-3, [0.2, 0.3]), run("b", 1e-3, [0.25, 0.2])],
        "gd": [run("a", 1e-3, [0.4, 0.7]), run("a", 1e-4, [0.75, 0.5]), run("b", 1e-3, [0.6, 0.45])],
    }
    best = best_per_v(grid)
    assert (
        best["gd"]["a"]["acc_v"] == 0.75 and best["gd"]["a"]["lr"] == 1e-4 and best["gd"]["a"]["epoch"] == 1
    )
    assert best["original"]["b"]["acc_v"] == 0.9 and best["original"]["b"]["epoch"] == 1
    m = rtt_metrics(best, chance=0.25)["gd"]
    # recovery: 0.75/1.0 and 0.6/0.9
    assert m["recovery"]["per_v"] == pytest.approx([0.75, 0.6 / 0.9])
    assert m["recovery"]["mean"] == pytest.approx((0.75 + 0.6 / 0.9) / 2)
    assert m["recovery"]["std"] == pytest.approx(abs(0.75 - 0.6 / 0.9) / 2)
    # above chance: (0.75-0.25)/(1.0-0.25) = 2/3 and (0.6-0.25)/(0.9-0.25) = 0.35/0.65
    assert m["recovery_above_chance"]["per_v"] == pytest.approx([2 / 3, 0.35 / 0.65])
    # hidden: 0.75-0.3 and 0.6-0.25
    assert m["hidden"]["per_v"] == pytest.approx([0.45, 0.35])
    assert rtt_metrics(best, 0.25)["original"]["recovery"]["mean"] == 1.0


@pytest.fixture(scope="module")
def attacked(micro_world, tmp_path_factory):
    """RTT on the micro world's original, never-learned control and a GA model."""
    _, sets = load_world(micro_world)
    out = tmp_path_factory.mktemp("rtt")
    ga = unlearn(
        "ga",
        micro_world / "checkpoints/original",
        sets,
        out / "ga",
        UnlearnSettings(batch_size=16, budget=1, lrs=(1e-3,), steps=30),
        progress=False,
    )
    models = {
        "original": micro_world / "checkpoints/original",
        "never_learned": micro_world / "checkpoints/never_learned",
        "ga": out / "ga",
    }
    settings = RelearnSettings(lrs=(1e-3, 3e-3), epochs=8, batch_size=4, seeds=(0,))
    return relearn(models, sets, out, settings, progress=False), ga, out


def test_rtt_recovers_ga_but_not_the_control(attacked):
    result, ga, _ = attacked
    chance = result["chance"]
    acc = {name: m["acc_v"]["mean"] for name, m in result["metrics"].items()}
    assert acc["original"] >= 0.9
    assert acc["never_learned"] <= chance + 0.2
    assert ga["chosen"]["accuracy"]["forget"] <= 0.5
    assert acc["ga"] >= acc["never_learned"] + 0.2
    assert result["metrics"]["ga"]["hidden"]["mean"] >= 0.2


def test_rtt_resumes_and_writes_relearn_json(attacked, micro_world):
    result, _, out = attacked
    assert json.loads((out / "relearn.json").read_text())["metrics"] == result["metrics"]
    stamps = {p: p.stat().st_mtime_ns for p in (out / "relearn").rglob("*.json")}
    grids = {(lr, r["epochs"]) for r in result["rounds"] for lr in r["lrs"]}  # every round's runs
    assert len(stamps) == 3 * 3 * len(grids) and len(grids) >= 2  # models × V × (lr, epochs)
    _, sets = load_world(micro_world)
    again = relearn(
        result["models"],
        sets,
        out,
        RelearnSettings(lrs=(1e-3, 3e-3), epochs=8, batch_size=4, seeds=(0,)),
        progress=False,
    )
    assert again["metrics"] == result["metrics"]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # a run does not depend on how many V splits or seeds the grid has: fewer rotations, or a seed more,
    # read back every run already done and train only the new seed's
    more = relearn(
        result["models"],
        sets,
        out,
        RelearnSettings(lrs=(1e-3, 3e-3), epochs=8, batch_size=4, seeds=(0, 1), rotations=1),
        progress=False,
    )
    assert more["v_splits"] == result["v_splits"][:1]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert any(p.name.endswith("_s1.json") for p in (out / "relearn").rglob("*.json"))


def test_a_world_study_rotates_rtt_over_the_splits_it_asks_for(micro_world, tmp_path):
    """`forensics real --rotations`: every RTT lens (full and LoRA) takes that many V splits; layer RTT
    keeps its one."""
    from forensics.study.from_world import world_study
    from forensics.study.grids import preset

    world = json.loads((micro_world / "world.json").read_text())
    models = {"ga": micro_world / "checkpoints/original"}
    asked = world_study("w", micro_world, world, models, tmp_path, grid="real", rotations=3).settings
    assert asked.of("relearn").rotations == asked.of("relearn_lora").rotations == 3
    assert asked.of("localize") == preset("real").of("localize")
    default = world_study("w", micro_world, world, models, tmp_path, grid="real").settings
    assert default.of("relearn").rotations == preset("real").of("relearn").rotations == 1


def test_bad_input(micro_world, tmp_path, capsys):
    args = ["relearn", "--world", str(micro_world), "--quiet"]
    assert main([*args, "--v", "retain"]) == 2
    assert "V split 'retain' is not a forget split" in capsys.readouterr().err
    assert main([*args, "--lrs", ""]) == 2
    assert "at least one learning rate" in capsys.readouterr().err
    assert not (micro_world / "relearn.json").exists()
    from forensics.facts.core import load_jsonl

    single = select(load_jsonl(micro_world / "facts.jsonl"), ["forget_0"], ["retain"])
    with pytest.raises(InputError, match="at least 2 forget splits"):
        relearn({"original": micro_world / "checkpoints/original"}, single, tmp_path)


def test_lora_rtt_trains_adapters_only_and_leaves_the_model_as_it_was(micro_world, tmp_path):
    """LoRA RTT: adapters on every linear layer, the model's own weights and flags untouched after
    the run, the adapter settings recorded, the same numbers for the same seed."""
    import torch

    from forensics.attacks.relearn import run_one
    from forensics.models.checkpoint import load_checkpoint

    _, sets = load_world(micro_world)
    model, tok = load_checkpoint(micro_world / "checkpoints/original")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    settings = RelearnSettings(
        lrs=(3e-3,), epochs=2, batch_size=4, seeds=(0,), method="lora", lora_rank=4, extend_rounds=0
    )
    seen = {}

    def count(epoch, m):
        seen[epoch] = sum(p.numel() for p in m.parameters() if p.requires_grad)

    first = run_one(model, tok, sets, "forget_0", 3e-3, settings, 1.0, False, on_epoch=count, seed=7)
    assert 0 < seen[1] < sum(p.numel() for p in model.parameters()) / 5  # adapters only
    assert {k: v for k, v in model.state_dict().items()}.keys() == state.keys()  # no adapter left behind
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert all(p.requires_grad for p in model.parameters())
    again = run_one(model, tok, sets, "forget_0", 3e-3, settings, 1.0, False, seed=7)
    assert [e["v_correct"] for e in again["epochs"]] == [e["v_correct"] for e in first["epochs"]]
    models = {"original": micro_world / "checkpoints/original"}
    result = relearn(models, sets, tmp_path, settings, progress=False)
    assert (result["settings"]["method"], result["settings"]["lora_rank"]) == ("lora", 4)
    with pytest.raises(InputError, match="unknown RTT method 'qlora'"):
        RelearnSettings(method="qlora")


def test_a_model_named_twice_trains_each_run_once(micro_world, tmp_path, monkeypatch):
    """The exact control named as a method too (same content): each of its runs is trained once and
    written for both names, equal record for record."""
    import forensics.attacks.relearn as rtt

    trained = []
    real_job = rtt.rtt_job
    monkeypatch.setattr(rtt, "rtt_job", lambda **kw: trained.append(kw["file"]) or real_job(**kw))
    _, sets = load_world(micro_world)
    control = micro_world / "checkpoints/never_learned"
    models = {"original": micro_world / "checkpoints/original", "never_learned": control, "m": control}
    settings = RelearnSettings(lrs=(1e-3,), epochs=1, seeds=(0,), rotations=1, extend_rounds=0)
    result = relearn(models, sets, tmp_path, settings, progress=False)
    assert len(trained) == 2  # the original's run and the control's, not a third
    twin = json.loads(next((tmp_path / "relearn" / "m").iterdir()).read_text())
    assert "same_run_as" in twin and twin["from"] == str(control)
    assert result["grid"]["m"] == result["grid"]["never_learned"]


def test_t_is_scored_until_it_is_fitted_and_early_stop_then_reads_v_alone(micro_world):
    """The original knows T: fitted at its first epoch (fit_t 0.5), T is not scored again, and early
    stop (patience 1) then reads V alone: every epoch but the last raised V, and a run that ended before
    its limit ended on one that did not."""
    from forensics.attacks.relearn import run_one
    from forensics.models.checkpoint import load_checkpoint

    _, sets = load_world(micro_world)
    model, tok = load_checkpoint(micro_world / "checkpoints/original")
    settings = RelearnSettings(lrs=(1e-4,), epochs=6, seeds=(0,), patience=1, fit_t=0.5, score_retain=False)
    got = run_one(model, tok, sets, "forget_0", 1e-4, settings, before=1.0, progress=False)
    epochs = got["epochs"]
    assert epochs[0]["acc_t"] >= 0.5 and not any("acc_t" in e for e in epochs[1:])
    v = [e["acc_v"] for e in epochs]
    assert all(v[i] > max(v[:i]) for i in range(1, len(v) - 1))
    assert len(v) == 6 or v[-1] <= max(v[:-1])
