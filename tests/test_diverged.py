"""A loss that stops being finite ends its run at once (the training loop), and a model whose every RTT
run did so cannot fit T: the grid does not grow for it, and without a working reference the study
cannot decide. float16 on CPU is such a case on every model, deterministically: AdamW's ε = 1e-8 is 0
in float16, so a parameter with a zero gradient (an embedding row no batch uses) steps by 0/0 and the
second step's loss is NaN, whatever the learning rate."""

import math

import pytest
import torch

from forensics.attacks.adequacy import assess, extended, words
from forensics.attacks.relearn import RelearnSettings, relearn
from forensics.attacks.selection import best_per_v
from forensics.facts.formats import examples
from forensics.models.checkpoint import load_checkpoint, read_json
from forensics.models.runtime import Runtime
from forensics.models.train import TrainConfig, nll_loss, train
from forensics.worlds.world import load_world
from tests.conftest import control_study
from tests.test_adequacy import run


def test_training_stops_at_the_first_loss_that_is_not_finite(micro_world):
    """A loss that turns infinite at the third step: two steps are taken, not the third; the last
    record says so, `on_epoch` saw the model as the two steps left it, and the history still ends
    with a step and a loss (what the unlearning sweep reads)."""
    _, sets = load_world(micro_world)
    data = {"qa": examples(list(sets.retain), "qa")}
    cfg = TrainConfig(lr=1e-3, epochs=4, batch_size=4, check_every=1, seed=0)
    calls = []

    def overflows_at_3(model, batches):
        calls.append(None)
        value = nll_loss(model, batches)
        return value * math.inf if len(calls) == 3 else value

    def weights(model):
        return {k: v.clone() for k, v in model.state_dict().items()}

    model, tok = load_checkpoint(micro_world / "checkpoints/original")
    seen = []
    history = train(
        model,
        tok,
        data,
        cfg,
        loss=overflows_at_3,
        on_epoch=lambda e, m: seen.append(weights(m)) or {"checked": e},
        progress=False,
    )
    assert len(calls) == 3 and len(history) == 3
    assert [r["step"] for r in history] == [1, 2, 2]  # the third step was not taken
    last = history[-1]
    assert last["diverged"] == {"at_step": 3, "dtype": "float32"} and math.isinf(last["loss"])
    assert last["checked"] == 3 and all("diverged" not in r for r in history[:-1])
    two, _ = load_checkpoint(micro_world / "checkpoints/original")
    train(two, tok, data, TrainConfig(lr=1e-3, steps=2, batch_size=4, seed=0), progress=False)
    assert all(torch.equal(seen[-1][k], v) for k, v in weights(two).items())
    assert all(torch.equal(v, seen[-2][k]) for k, v in weights(model).items())


def diverged(v, lr, dtype="float16"):
    """A run (tests.test_adequacy.run) that stopped at its second step on a loss that is not finite."""
    return {**run(v, lr, [0.25], t=0.25), "diverged": {"at_step": 2, "dtype": dtype}}


def test_a_model_whose_every_run_diverged_cannot_fit_t_and_grows_nothing():
    grid = {
        "original": [run("a", 1e-3, [1.0, 1.0]), run("a", 1e-2, [1.0])],
        "m": [diverged("a", 1e-3), diverged("a", 1e-2)],
        "partly": [run("a", 1e-3, [0.25, 0.5, 0.5]), diverged("a", 1e-2)],  # the top rate alone
    }
    a = assess(grid, best_per_v(grid), 3, 0.9, 0.05)
    assert a["m"]["not_finite"] == "float16" and a["m"]["fitted"] is False and not a["m"]["adequate"]
    assert words(a["m"]).startswith("cannot fit T: the loss is not finite in float16")
    assert a["partly"]["not_finite"] is None and a["partly"]["fitted"]  # judged as ever
    assert a["original"]["not_finite"] is None and a["original"]["adequate"]
    settings = RelearnSettings(lrs=(1e-3, 1e-2), epochs=3)
    assert extended(settings, {n: a[n] for n in ("original", "m")}, max_lr=1e-1) is None
    weak = {**a["original"], "fitted": False, "adequate": False}  # T not fitted, its loss finite
    grown = extended(settings, {"original": weak, "m": a["m"]}, max_lr=1e-1)
    assert grown.lrs == pytest.approx((1e-3, 1e-2, 3e-2))


def test_a_float16_study_on_cpu_stops_at_once_and_cannot_decide(micro_world, tmp_path):
    from forensics.cli import main

    top = 'grid = "demo"\ndtype = "float16"\ndevice = "cpu"'
    config = control_study(micro_world, tmp_path, "f16", top=top, tail="")
    assert main(["study", str(config), "--quiet"]) == 0
    results = read_json(tmp_path / "f16" / "results.json")
    rtt = results["relearn"]
    assert len(rtt["rounds"]) == 1 and rtt["grid_run"]["epochs"] == 8  # the grid did not grow
    for model, runs in rtt["grid"].items():
        assert all(r["diverged"]["dtype"] == "float16" and r["steps"] < 2 for r in runs), model
        a = rtt["adequacy"][model]
        assert a["not_finite"] == "float16" and a["fitted"] is False
    assert not results["reference"]["ok"]
    reason = "RTT cannot fit T on the original: the loss is not finite in float16"
    assert any(r.startswith(reason) for r in results["reference"]["reasons"])
    row = results["summary"]["m"]
    assert row["verdict"] == "cannot decide" and reason in row["evidence"]
    summary = (tmp_path / "f16" / "summary.md").read_text()
    assert "cannot fit T: the loss is not finite in float16" in summary


def test_a_run_cached_in_another_dtype_is_not_reused(micro_world, tmp_path):
    """RTT's run key holds the dtype it trains in: a float32 run is not read back as a float16 one
    (nor one cached before runs stopped on a loss that is not finite)."""
    _, sets = load_world(micro_world)
    models = {"original": micro_world / "checkpoints/original"}
    grid = RelearnSettings(lrs=(1e-3,), epochs=1, batch_size=4, seeds=(0,), rotations=1, extend_rounds=0)
    f32 = relearn(models, sets, tmp_path, grid, progress=False, runtime=Runtime("cpu", "float32"))
    assert "diverged" not in f32["grid"]["original"][0]
    f16 = relearn(models, sets, tmp_path, grid, progress=False, runtime=Runtime("cpu", "float16"))
    assert f16["grid"]["original"][0]["diverged"]["dtype"] == "float16"
