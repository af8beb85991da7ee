"""Attack adequacy (docs/design.md §13): T fitted and the grid saturated on hand-worked grids, how the grid
grows, and the verdict that follows; on the micro world, an attack that cannot train gives no verdict,
a cut-off attack is never called erased, and the extension finds what a too-small grid missed."""

import pytest
from scipy.stats import binomtest

from forensics.attacks.adequacy import assess, extended, rule, sign_p, words
from forensics.attacks.relearn import RelearnSettings
from forensics.attacks.selection import best_per_v
from forensics.outcomes import Reading
from forensics.study.summary import judge
from forensics.study.verdict import VerdictSettings


def run(v, lr, accs, t=1.0, before=0.25, size=8):
    """A run over `accs` (V accuracy per epoch) of a V of `size` facts, T accuracy `t` throughout."""
    return {
        "v": v,
        "lr": lr,
        "seed": 0,
        "before": {"acc_v": before},
        "epochs": [
            {
                "epoch": i + 1,
                "acc_v": a,
                "acc_t": t,
                "v_correct": "1" * round(a * size) + "0" * (size - round(a * size)),
            }
            for i, a in enumerate(accs)
        ],
        "epoch_limit": 3,
        "steps": 3 * len(accs),
        "examples": 24 * len(accs),
        "seconds": 1.0,
    }


def judged(grid, epochs=3, fit_t=0.9):
    return assess(grid, best_per_v(grid), epochs, fit_t, 0.05)


def test_saturated_when_the_best_run_is_inside_the_grid():
    grid = {
        "original": [run("a", 1e-4, [1.0, 1.0]), run("a", 1e-3, [0.5, 0.25])],
        "m": [run("a", 1e-4, [0.5, 0.75, 0.5]), run("a", 1e-3, [0.25, 0.5, 0.5])],
    }
    a = judged(grid)
    assert a["m"] == {**a["m"], "fitted": True, "saturated": True, "at_top_lr": 0, "at_epoch_limit": 0}
    assert a["m"]["adequate"] and a["original"]["adequate"]


def test_the_top_learning_rate_or_the_epoch_limit_is_the_grids_edge():
    # the best V at the largest lr, five facts (of 16) above the smaller lr, none lost: a larger one
    # might do more (sign test p = 1/32)
    top = {
        "original": [run("a", 1e-4, [1.0])],
        "m": [run("a", 1e-4, [0.5, 0.5], size=16), run("a", 1e-3, [0.5, 0.8125], size=16)],
    }
    a = judged(top)["m"]
    assert (a["at_top_lr"], a["saturated"], a["adequate"]) == (1, False, False)
    # at the epoch limit (3), V still rising by five facts
    cut = {
        "original": [run("a", 1e-4, [1.0])],
        "m": [run("a", 1e-4, [0.25, 0.5, 0.8125], size=16), run("a", 1e-3, [0.5], size=16)],
    }
    a = judged(cut)["m"]
    assert (a["at_epoch_limit"], a["at_top_lr"], a["saturated"]) == (1, 0, False)
    # one fact more is what chance does: not a trend
    noise = {"original": [run("a", 1e-4, [1.0])], "m": [run("a", 1e-4, [0.5, 0.5]), run("a", 1e-3, [0.625])]}
    assert judged(noise)["m"]["saturated"]
    # a V answered perfectly is saturated wherever it was reached
    full = {"original": [run("a", 1e-4, [1.0])], "m": [run("a", 1e-4, [0.25, 0.5, 1.0])]}
    assert judged(full)["m"]["saturated"]
    assert "cut off in 1/1" in words(judged(cut)["m"]) and "best at the top lr in 1/1" in words(
        judged(top)["m"]
    )


def outcomes(v, lr, rows):
    """A run whose epochs have these per-fact V outcomes (0/1 strings)."""
    r = run(v, lr, [s.count("1") / len(s) for s in rows], size=len(rows[0]))
    for e, row in zip(r["epochs"], rows, strict=True):
        e["v_correct"] = row
    return r


def test_a_gain_at_the_edge_within_chance_flips_is_not_a_trend():
    """The never-learned control on SmolLM2: its best cell at the top rate 3 facts (of 24) above the
    rest, with 7 facts gained and 4 lost (sign test p = 0.27): noise. The same 3 facts gained with none
    lost are still within chance (p = 1/8); 6 gained with none lost are not (p = 1/64)."""
    lower = "110000100100010000000000"  # 5 of 24
    flips = "101111011010000000000000"  # 7 gained, 4 lost: 8 of 24
    # 11 facts changed, 7 of them gained: (C(11,7) + … + C(11,11)) / 2^11 = 562 / 2048, as scipy has it
    assert sign_p(flips, lower) == pytest.approx(562 / 2048)
    assert sign_p(flips, lower) == pytest.approx(binomtest(7, 11, 0.5, alternative="greater").pvalue)
    assert sign_p(lower, lower) == 1.0  # nothing changed: no evidence of a gain
    orig = [run("a", 1e-4, [1.0])]
    grid = {"original": orig, "m": [outcomes("a", 1e-4, [lower]), outcomes("a", 1e-3, [flips])]}
    a = judged(grid)["m"]
    assert (a["at_top_lr"], a["saturated"]) == (0, True)
    assert assess(grid, best_per_v(grid), 3, 0.9, 0.05, alpha=None)["m"]["at_top_lr"] == 1  # the count alone
    assert "sign test" in rule(0.9, 0.05) and "sign test" not in rule(0.9, 0.05, 1, None)
    three = lower[:20] + "1110"
    assert judged({"original": orig, "m": [outcomes("a", 1e-4, [lower]), outcomes("a", 1e-3, [three])]})["m"][
        "saturated"
    ]
    six = "110000100100010000111111"
    assert not judged({"original": orig, "m": [outcomes("a", 1e-4, [lower]), outcomes("a", 1e-3, [six])]})[
        "m"
    ]["saturated"]


def test_results_written_before_adequacy_are_judged_from_their_grid():
    """A relearn section with its grid but no adequacy (an older results.json): judged from the runs;
    runs that never scored T are *not measured*, and an erased reading under them is not erased."""
    from forensics.lenses import REGISTRY
    from forensics.study.summary import inadequate

    grid = {
        "original": [run("a", 1e-4, [1.0, 1.0])],
        "m": [run("a", 1e-4, [0.25, 0.25]), run("a", 1e-3, [0.25])],
    }
    for r in grid["m"]:
        for e in r["epochs"]:
            del e["acc_t"]
    section = {"settings": {"epochs": 3}, "grid": grid, "best": best_per_v(grid)}
    found = REGISTRY["relearn"].adequacy({"relearn": section}, "m")["RTT"]
    assert found["fitted"] is None and not found["adequate"] and found["compute"]["runs"] == 2
    assert inadequate({"RTT": found}) == "inconclusive — attack adequacy not measured (T was not scored)"
    assert REGISTRY["relearn"].adequacy({"relearn": section}, "original")["RTT"]["adequate"]


def test_t_fitted_by_the_rule_and_the_original_by_the_absolute_rule_only():
    grid = {
        "original": [run("a", 1e-4, [1.0, 1.0], t=0.8)],
        "never_learned": [run("a", 1e-4, [0.25, 0.25], t=0.76)],
        "m": [run("a", 1e-4, [0.25, 0.25], t=0.7)],
    }
    a = judged(grid)
    # 0.8 < 0.9: not fitted (nothing to be near); 0.76 is within 0.05 of it; 0.7 is not
    assert (a["original"]["fitted"], a["never_learned"]["fitted"], a["m"]["fitted"]) == (False, True, False)
    assert a["m"]["t_accuracy"] == pytest.approx(0.7) and "T not fitted (0.70)" in words(a["m"])


def test_the_grid_grows_by_lr_x3_and_epochs_x2_within_its_cap():
    s = RelearnSettings(lrs=(1e-4, 3e-4), epochs=3)
    ok = {"fitted": True, "at_top_lr": 0, "at_epoch_limit": 0, "adequate": True}
    assert extended(s, {"m": ok}, max_lr=1e-2) is None
    top = {**ok, "at_top_lr": 1, "adequate": False}
    grown = extended(s, {"m": ok, "n": top}, max_lr=1e-2)
    assert grown.lrs == pytest.approx((1e-4, 3e-4, 9e-4)) and grown.epochs == 3
    cut = {**ok, "at_epoch_limit": 1, "adequate": False}
    assert extended(s, {"m": cut}, max_lr=1e-2) == RelearnSettings(lrs=(1e-4, 3e-4), epochs=6)
    unfit = {**ok, "fitted": False, "adequate": False}
    assert extended(s, {"m": unfit}, max_lr=1e-2).lrs == pytest.approx((1e-4, 3e-4, 9e-4))
    # the lr cap reached: train longer instead
    assert extended(s, {"m": unfit}, max_lr=5e-4) == RelearnSettings(lrs=(1e-4, 3e-4), epochs=6)


def test_the_smallest_learning_rate_is_an_edge_too():
    """Best at the smallest rate, five facts (of 16) above every larger one, none lost (p = 1/32): a
    smaller rate might do better (a pretrained model's knowledge is perturbed by the larger ones), so
    the grid is not saturated and grows downward; one fact above is chance."""
    low = {
        "original": [run("a", 1e-4, [1.0])],
        "m": [run("a", 1e-4, [0.5, 0.8125], size=16), run("a", 1e-3, [0.5, 0.5], size=16)],
    }
    a = judged(low)["m"]
    assert (a["at_bottom_lr"], a["at_top_lr"], a["saturated"], a["adequate"]) == (1, 0, False, False)
    assert "best at the smallest lr in 1/1" in words(a)
    grown = extended(RelearnSettings(lrs=(1e-4, 1e-3), epochs=3), judged(low), max_lr=1e-2)
    assert grown.lrs == pytest.approx((3.33333e-5, 1e-4, 1e-3)) and grown.epochs == 3  # six digits
    noise = {"original": [run("a", 1e-4, [1.0])], "m": [run("a", 1e-4, [0.625]), run("a", 1e-3, [0.5, 0.5])]}
    assert judged(noise)["m"]["saturated"]
    # the original knows V (1.0 before the attack) and keeps it at the smallest rate: nothing lies below
    # (on SmolLM2's implanted kind it held 1.0 at 1e-4 and lost 11 of 68 facts at 3e-4; the grid grew down)
    knows = {
        "original": [
            run("a", 1e-4, [1.0], before=1.0, size=16),
            run("a", 3e-4, [0.6875], before=1.0, size=16),
        ]
    }
    assert judged(knows)["original"]["saturated"]


def test_t_not_fitted_grows_what_the_runs_point_to():
    """T not fitted and still rising at the epoch limit: more epochs, not a larger rate (a fictional
    comets world grew the rate three rounds while T rose at the limit, and ended *cannot decide*); T
    not fitted and flat: a larger rate, as before."""
    s = RelearnSettings(lrs=(1e-4, 3e-4), epochs=3)

    def unfit(ts):
        r = run("a", 3e-4, [0.25] * len(ts))
        for e, t in zip(r["epochs"], ts, strict=True):
            e["acc_t"] = t
        return {"original": [run("a", 1e-4, [1.0, 1.0, 1.0])], "m": [run("a", 1e-4, [0.25] * 3, t=0.3), r]}

    rising = judged(unfit([0.4, 0.55, 0.7]))
    assert not rising["m"]["fitted"] and rising["m"]["t_rising"]
    assert extended(s, rising, max_lr=1e-2) == RelearnSettings(lrs=(1e-4, 3e-4), epochs=6)
    flat = judged(unfit([0.5, 0.6, 0.6]))
    assert not flat["m"]["fitted"] and not flat["m"]["t_rising"]
    grown = extended(s, flat, max_lr=1e-2)
    assert grown.lrs == pytest.approx((1e-4, 3e-4, 9e-4)) and grown.epochs == 3


def evidence(diff):
    return {
        "diff": diff,
        "ci95": [diff - 0.03, diff + 0.03],
        "ci90": [diff - 0.02, diff + 0.02],
        "p_hidden": 0.9,
        "method": 0.3 + diff,
        "control": 0.3,
        "facts": 40,
        "seeds": 1,
    }


def test_no_erased_from_an_inadequate_attack():
    row = {"forget": 0.25, "chance": 0.25, "retain": 1.0}
    reference = {"ok": True, "reasons": [], "against": "the never-learned control"}
    lenses = {Reading("RTT"): evidence(0.0), Reading("int8 quantization"): evidence(0.01)}
    settings = VerdictSettings()
    adequate = {"fitted": True, "saturated": True, "adequate": True, "compute": {"steps": 90}}
    assert judge({**row, "attack": {"RTT": adequate}}, lenses, True, settings, reference)[
        "verdict"
    ].startswith("erased")
    cut = {**adequate, "saturated": False, "adequate": False, "at_epoch_limit": 2, "choices": 3}
    j = judge({**row, "attack": {"RTT": cut}}, lenses, True, settings, reference)
    assert j["verdict"] == "inconclusive — attack not saturated" and j["deciding"] == "RTT"
    assert "RTT's attack is not adequate: cut off in 2/3" in j["evidence"]
    unfit = {**adequate, "fitted": False, "t_accuracy": 0.4, "adequate": False}
    j = judge({**row, "attack": {"RTT": unfit}}, lenses, True, settings, reference)
    assert j["verdict"] == "inconclusive — attack did not fit T"
    # hidden stands: a weak attack that brings the facts back has shown they were there
    hidden = {Reading("RTT"): {**evidence(0.5), "p_hidden": 0.0005}}
    assert judge({**row, "attack": {"RTT": cut}}, hidden, True, settings, reference)["verdict"] == "hidden"


def with_gd(built, root):
    """A world's original, never-learned control and facts copied into `root`, and a GD model of them."""
    import shutil

    from forensics.unlearn.run import UnlearnSettings, unlearn
    from forensics.worlds.world import load_world

    for name in ("original", "never_learned"):
        shutil.copytree(built / "checkpoints" / name, root / name)
    shutil.copy(built / "facts.jsonl", root / "facts.jsonl")
    _, sets = load_world(built)
    unlearn("gd", root / "original", sets, root / "gd", UnlearnSettings(light=True), progress=False)
    return root


@pytest.fixture(scope="module")
def world(micro_world, tmp_path_factory):
    """The micro world's original, never-learned control and a GD model, with the facts."""
    return with_gd(micro_world, tmp_path_factory.mktemp("adequacy"))


@pytest.fixture(scope="module")
def larger(tmp_path_factory):
    """The same with 36 forget facts (3 splits of 12): on the micro world's 12 the extension test's
    verdict sat one fact from the line (GD recovered 7 or 8 of 12 over seeds 0–3 under
    ATEN_CPU_CAPABILITY=default, hidden from 8); at 36 it recovered 0.72–0.83 against the control's
    0.33–0.39, hidden in seeds 0–5 with the interval's lower end +0.17 to +0.31."""
    from forensics.worlds.world import build_world
    from tests.conftest import micro_config

    built = tmp_path_factory.mktemp("larger_world")
    build_world(built, micro_config(n_people=48, n_forget=36), progress=False)
    return with_gd(built, tmp_path_factory.mktemp("adequacy_larger"))


def study(root, out: str, relearn: str) -> dict:
    """A study of the GD model with accuracy and RTT only, RTT's settings `relearn` (TOML lines)."""
    from forensics.cli import main
    from forensics.models.checkpoint import read_json
    from tests.test_verdict_study import study as write_study

    tables = f"[lenses.relearn]\nbatch_size = 4\n{relearn}\n"
    config = write_study(root, out, {"gd": "gd"}, '["accuracy", "relearn"]', tables)
    assert main(["study", config, "--quiet"]) == 0
    return read_json(root / out / "results.json")


def test_an_attack_that_cannot_train_gives_no_verdict(world):
    results = study(world, "frozen", "lrs = [1e-7]\nepochs = 2\nextend_rounds = 1")
    rtt = results["relearn"]
    assert [r["lrs"] for r in rtt["rounds"]] == [[1e-7], [1e-7, 3e-7]]  # it grew, within its cap
    assert rtt["adequacy"]["never_learned"]["fitted"] is False
    row = results["summary"]["gd"]
    assert row["verdict"] == "cannot decide" and "RTT cannot fit T on the never_learned" in row["evidence"]
    assert not results["reference"]["ok"]


def test_a_cut_off_attack_is_never_called_erased(world):
    results = study(world, "cut", "lrs = [1e-3]\nepochs = 1\nextend_rounds = 0")
    for a in results["relearn"]["adequacy"].values():
        assert a["compute"]["epochs"] == [1] and a["compute"]["runs"] == 3
    assert not results["summary"]["gd"]["verdict"].startswith("erased")


def test_the_extension_finds_what_the_first_grid_missed(larger):
    """The first grid's one learning rate (1e-5) is too small to train on any model; the rounds grow it
    ×3 until every attack is adequate, the same grid on every model, and GD is found hidden. The grown
    study runs in the first one's folder: its first round is the runs done, read back."""
    first = study(larger, "grown", "lrs = [1e-5]\nepochs = 4\nextend_rounds = 0")
    assert first["summary"]["gd"]["verdict"] == "cannot decide"  # before: too small to say anything
    grown = study(larger, "grown", "lrs = [1e-5]\nepochs = 4\nextend_rounds = 6")
    rtt = grown["relearn"]
    assert len(rtt["rounds"]) > 1 and max(rtt["grid_run"]["lrs"]) > 1e-4
    assert all(rtt["adequacy"][m]["adequate"] for m in ("original", "never_learned", "gd"))
    lrs = {m: {r["lr"] for r in runs} for m, runs in rtt["grid"].items()}
    assert lrs["original"] == lrs["never_learned"] == lrs["gd"]  # the same grid on every model
    assert grown["summary"]["gd"]["verdict"] == "hidden"
    assert grown["summary"]["gd"]["attack"]["RTT"]["compute"]["steps"] > 0
    # every place that shows the verdict shows the attack: summary.md, the report (table and grid figure)
    summary = (larger / "grown" / "summary.md").read_text()
    assert "RTT's attack per model" in summary and "- never_learned: adequate (" in summary
    assert "- rounds: lr 1e-05 × 4 epochs (not adequate: " in summary
    html = (larger / "grown" / "report" / "index.html").read_text()
    assert (
        "<table id='attack'>" in html
        and "id='fig-attack'" in html
        and "grid: V (solid) and T (dashed)" in html
    )


def test_the_cli_table_shows_each_models_attack(world, capsys):
    study(world, "small", "lrs = [1e-5]\nepochs = 4\nextend_rounds = 0")
    out = capsys.readouterr().out
    assert "RTT attack" in out and "T not fitted (" in out
    assert (
        "RTT attack on the original: adequate (" in out
        and "RTT attack on the never_learned: T not fitted" in out
    )


def test_growing_the_epochs_redoes_only_the_runs_cut_off(world, micro_world, tmp_path):
    """A run that early stop ended before the epoch limit is carried to a longer limit, not redone, and
    equals that run done afresh, epoch by epoch; its compute is counted once."""
    from forensics.attacks.relearn import relearn
    from forensics.worlds.world import load_world

    _, sets = load_world(micro_world)
    models = {"original": world / "original", "never_learned": world / "never_learned"}
    grid = {"lrs": (1e-3, 1e-2), "patience": 1, "batch_size": 4, "seeds": (0,), "score_retain": False}
    grid |= {"extend_rounds": 0}
    relearn(models, sets, tmp_path / "grown", RelearnSettings(epochs=3, **grid), progress=False)
    grown = relearn(models, sets, tmp_path / "grown", RelearnSettings(epochs=6, **grid), progress=False)
    fresh = relearn(models, sets, tmp_path / "fresh", RelearnSettings(epochs=6, **grid), progress=False)
    carried = [r for runs in grown["grid"].values() for r in runs if "same_as" in r]
    assert carried, "no run stopped early: the test shows nothing"
    for name, runs in grown["grid"].items():
        for mine, theirs in zip(runs, fresh["grid"][name], strict=True):
            assert mine["epochs"] == theirs["epochs"] and mine["steps"] == theirs["steps"]
            assert mine["epoch_limit"] == theirs["epoch_limit"] == 6
        ran = [r for r in runs if "same_as" not in r]
        assert grown["adequacy"][name]["compute"]["runs"] == len(ran)
        assert grown["adequacy"][name]["compute"]["steps"] == sum(r["steps"] for r in ran)
