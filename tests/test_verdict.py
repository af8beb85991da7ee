"""Verdict statistics against hand-worked cases: the paired stratified bootstrap, Holm, and the three
outcomes (a study with too few facts says inconclusive)."""

import numpy as np
import pytest

from forensics.study.verdict import (
    VerdictSettings,
    decide,
    evidence,
    facts_for_precision,
    facts_to_settle,
    holm,
    paired_bootstrap,
)


def test_constant_paired_differences_give_a_point_interval():
    method = np.array([[1, 1, 0, 1, 0, 1]])
    assert np.all(paired_bootstrap(method, method, ["a"] * 6) == 0)
    assert np.all(paired_bootstrap(np.ones((2, 5)), np.zeros((2, 5)), ["a"] * 5) == 1)


def test_strata_keep_their_size():
    """Stratum a: every difference 1; stratum b: every difference 0. Resampling within strata keeps
    half of the facts in each, so every draw is exactly 0.5 (an unstratified bootstrap would vary)."""
    method = np.array([1.0] * 10 + [0.0] * 10)
    draws = paired_bootstrap(method, np.zeros(20), ["a"] * 10 + ["b"] * 10, n_boot=500)
    assert np.allclose(draws, 0.5)


def test_bernoulli_interval_matches_the_normal_approximation():
    """n = 400 facts, half right, control 0: the mean is 0.5 and its standard error √(.25/400) = 0.025,
    so the 95% interval is 0.5 ± 1.96 × 0.025 = [0.451, 0.549] (to bootstrap error)."""
    method = np.array([1, 0] * 200)
    e = evidence(method, np.zeros(400), ["v"] * 400, None, VerdictSettings(n_boot=4000))
    assert e["diff"] == 0.5
    assert e["ci95"] == pytest.approx([0.451, 0.549], abs=0.006)
    assert e["ci90"] == pytest.approx([0.5 - 1.645 * 0.025, 0.5 + 1.645 * 0.025], abs=0.006)


def test_seeds_are_resampled_too():
    """Two seeds that disagree on every fact: seed resampling alone moves the mean between 0 and 1."""
    method = np.array([[1] * 50, [0] * 50])
    draws = paired_bootstrap(method, np.zeros((2, 50)), ["v"] * 50, n_boot=1000)
    assert set(np.round(draws, 6)) == {0.0, 0.5, 1.0}


def test_holm_by_hand():
    # sorted: 0.01 <= 0.05/3 rejected; 0.03 > 0.05/2 stops; 0.04 is not tested
    assert holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]
    # 0.001 <= 0.0167, 0.02 <= 0.025, 0.04 <= 0.05: all rejected
    assert holm([0.04, 0.001, 0.02], 0.05) == [True, True, True]
    assert holm([0.2, 0.3], 0.05) == [False, False]


def lens(method, control, n):
    strata = ["v0", "v1"] * (n // 2)
    return evidence(np.array(method[:n]), np.array(control[:n]), strata, None, VerdictSettings())


def test_three_outcomes():
    s = VerdictSettings()
    rng = np.random.default_rng(0)
    same = rng.integers(0, 2, 400)
    erased = decide({"rtt": lens(same, same, 400)}, s, controlled=True)
    assert erased["verdict"] == "erased within ±0.1"
    kept = (rng.random(400) < 0.8).astype(int)
    low = (rng.random(400) < 0.25).astype(int)
    hidden = decide({"rtt": lens(kept, low, 400), "probe": lens(same, same, 400)}, s, controlled=True)
    assert hidden["verdict"] == "hidden" and hidden["deciding"] == "rtt"


def test_too_few_facts_is_inconclusive_with_the_facts_that_would_settle_it():
    s = VerdictSettings()
    method, control = [1, 0, 1, 0, 0, 0, 1, 0], [0, 0, 1, 0, 0, 0, 1, 0]  # +0.125 on 8 facts
    e = lens(method, control, 8)
    out = decide({"rtt": e}, s, controlled=False)
    assert out["verdict"] == "inconclusive" and out["suffix"].startswith(" (uncontrolled")
    assert out["facts_needed"] == facts_to_settle(e, s) and out["facts_needed"] > 8


def test_a_clear_effect_stays_hidden_among_a_hundred_layers():
    """With 2 × 60 layered lenses Holm's strictest step is alpha/120: the bootstrap must draw enough
    for its smallest p-value to pass it. Layer 7's probe reads every fact, the control none."""
    from forensics.study.summary import summarize

    n, layers = 40, [str(i) for i in range(60)]
    splits = ["v0"] * 20 + ["v1"] * 20
    zeros, ones = "0" * n, "1" * n
    probes = {
        "layers": layers,
        "models": {
            "m": {
                "probe_correct": [ones if x == "7" else zeros for x in layers],
                "lens_correct": [zeros] * 60,
            },
            "never_learned": {"probe_correct": [zeros] * 60, "lens_correct": [zeros] * 60},
        },
    }
    table = {"forget": 0.0, "retain": 1.0}
    results = {
        "facts": {"splits": splits, "chance": [0.25] * n},
        "models": {"original": "", "never_learned": "", "m": ""},
        "accuracy": {"original": {"forget": 1.0, "retain": 1.0}, "never_learned": table, "m": table},
        "probes": probes,
    }
    row = summarize(results, ["m"], VerdictSettings())["m"]
    assert row["verdict"] == "hidden" and row["deciding"] == "probe @7"
    assert len(row["lenses"]) == 120 and row["lenses"]["probe @7"]["ci95"] == [1.0, 1.0]
    assert "damaged" in row and not row["damaged"]


def rtt_results(outcomes: dict[str, str], original_forget: str, probe: dict[str, str] | None = None) -> dict:
    """A hand-built study: 20 forget facts in two V splits (chance 0.25), RTT outcomes per model
    (one seed), the original's per-fact forget accuracy and, optionally, a probe at one layer."""
    splits = ["v0"] * 10 + ["v1"] * 10
    results = {
        "facts": {"splits": splits, "chance": [0.25] * 20},
        "models": {name: name for name in outcomes},
        "accuracy": {
            name: {"forget": 0.2, "retain": 1.0, "chance": 0.25} for name in outcomes if name != "original"
        },
        "relearn": {
            "best": {
                name: {
                    v: {"seeds": [{"v_correct": bits[i * 10 : (i + 1) * 10]}]}
                    for i, v in enumerate(("v0", "v1"))
                }
                for name, bits in outcomes.items()
            }
        },
    }
    results["accuracy"]["original"] = {
        "forget": original_forget.count("1") / 20,
        "forget_correct": original_forget,
        "retain": 1.0,
        "chance": 0.25,
    }
    if probe:
        results["probes"] = {"layers": ["3"], "models": {n: {"probe_correct": [b]} for n, b in probe.items()}}
    return results


def test_no_verdict_without_a_working_reference():
    """The original + RTT recovers nothing beyond the control (all 0, as float16 training on CPU
    gives): no method gets hidden or erased, and the reason is given."""
    from forensics.study.summary import CANNOT_DECIDE, summarize

    zero, high = "0" * 20, "1" * 18 + "00"
    results = rtt_results({"original": zero, "never_learned": zero, "gd": zero}, original_forget="1" * 20)
    row = summarize(results, ["gd"], VerdictSettings())["gd"]
    assert row["verdict"] == CANNOT_DECIDE and row["deciding"] is None
    assert "the original + RTT recovers V at 0.00, not above the never-learned control" in row["evidence"]
    # an original that does not know its forget facts (4 of 20, chance 0.25): no verdict either
    results = rtt_results(
        {"original": high, "never_learned": zero, "gd": high}, original_forget="1111" + "0" * 16
    )
    row = summarize(results, ["gd"], VerdictSettings())["gd"]
    assert row["verdict"] == CANNOT_DECIDE
    assert "the original answers 0.20 of its forget facts" in row["evidence"]
    assert "not above chance (0.25)" in row["evidence"]
    # the same study with a working reference decides
    results = rtt_results({"original": high, "never_learned": zero, "gd": high}, original_forget="1" * 20)
    assert summarize(results, ["gd"], VerdictSettings())["gd"]["verdict"] == "hidden"


def test_a_lens_blind_on_the_original_is_left_out_of_the_verdict():
    """A probe that reads nothing of the original beyond the control (5 of 20 right on both) says
    nothing: the method's probe (20 of 20) would call it hidden, but the lens is left out, and the
    RTT lens (the method at the control's level) decides: erased."""
    from forensics.study.summary import reference_check, summarize

    same, high = "10" * 10, "1" * 20
    low = "1" + "0" * 3
    probe = {"original": low * 5, "never_learned": low * 5, "gd": high}
    results = rtt_results({"original": high, "never_learned": same, "gd": same}, high, probe)
    check = reference_check(results, VerdictSettings())
    assert check["ok"] and check["blind"] == ["probe @3"]
    row = summarize(results, ["gd"], VerdictSettings())["gd"]
    assert row["blind"] == ["probe @3"] and row["lenses"]["probe @3"]["diff"] == 0.75
    assert row["verdict"] == "erased within ±0.1" and row["deciding"] == "RTT"
    assert row["information_map"]["probe"]["blind"] == [True]
    assert row["where"] == "every layered lens is left out (probe blind on the original at layer 3)"


def test_the_information_map_in_words_names_the_surest_layer_or_nothing():
    """Hand-worked: the probe's surest layer is the one with the highest lower end (layer 1: +0.30
    [+0.20, +0.40], not layer 2's larger but looser +0.40 [+0.05, +0.75]); the logit lens's intervals
    all reach 0, so it reads nothing; its embedding layer is confounded and named."""
    from forensics.study.summary import map_words

    info = {
        "probe": {
            "layers": ["0", "1", "2"],
            "diff": [0.1, 0.3, 0.4],
            "lo": [-0.1, 0.2, 0.05],
            "hi": [0.3, 0.4, 0.75],
            "blind": [False] * 3,
        },
        "logit lens": {
            "layers": ["embed", "0"],
            "diff": [0.5, 0.1],
            "lo": [0.3, -0.02],
            "hi": [0.7, 0.22],
            "blind": [True, False],
        },
    }
    assert map_words(info, "the control", confounded=["logit lens @embed"]) == (
        "probe reads the most above the control at layer 1, +0.30 [+0.20, +0.40]; logit lens reads "
        "nothing beyond the control at any layer (the most: layer 0, +0.10 [-0.02, +0.22]); "
        "left out: logit lens confounded at layer embed"
    )
    assert map_words({}, "the control") is None


def test_a_control_of_other_facts_is_bootstrapped_independently():
    """Method on 400 forget facts (half right), control on 400 other facts (a quarter right): the
    difference is 0.25 with standard error √(.5·.5/400 + .25·.75/400) = 0.0331, so
    the 95% interval is 0.25 ± 1.96 × 0.0331 = [0.185, 0.315]; constant outcomes give a point."""
    from forensics.study.verdict import independent_bootstrap

    method, control = np.array([1, 0] * 200), np.array([1, 0, 0, 0] * 100)
    e = evidence(method, control, ["v"] * 400, ["c"] * 400, VerdictSettings(n_boot=4000))
    assert e["diff"] == 0.25 and e["facts"] == 400
    assert e["ci95"] == pytest.approx([0.25 - 1.96 * 0.0331, 0.25 + 1.96 * 0.0331], abs=0.008)
    # a paired bootstrap of the same numbers would be wrong here: the facts are not the same facts
    draws = independent_bootstrap(np.ones((2, 20)), ["a"] * 20, np.zeros((2, 30)), ["b"] * 30, n_boot=200)
    assert np.all(draws == 1)
    # strata are kept within each side: every draw of (stratum a all 1, stratum b all 0) is 0.5
    half = np.array([1.0] * 10 + [0.0] * 10)
    draws = independent_bootstrap(half, ["a"] * 10 + ["b"] * 10, np.zeros(7), ["c"] * 7, n_boot=300)
    assert np.allclose(draws, 0.5)


def test_a_fact_control_is_confounded_for_a_lens_that_reads_at_the_embedding():
    """Hand-worked: under a fact control, a lens reading the forget facts beyond the control facts on
    the original at the embedding (before any block) is left out at every layer — the questions
    differ, not the knowledge; a lens blind at the embedding, an unlayered lens and a never-learned
    control are untouched. The report says which."""
    from forensics.outcomes import Reading
    from forensics.study.summary import FACT_CONTROL, MODEL_CONTROL, confounded
    from reports.html import reference_note

    lenses = {
        Reading("probe", "embed"): {"ci95": [0.04, 0.54]},
        Reading("probe", "3"): {"ci95": [-0.10, 0.30]},
        Reading("logit lens", "embed"): {"ci95": [-0.20, 0.20]},
        Reading("logit lens", "3"): {"ci95": [0.10, 0.60]},
        Reading("RTT"): {"ci95": [0.50, 0.90]},
    }
    assert confounded(lenses, FACT_CONTROL) == ["probe @embed", "probe @3"]
    assert confounded(lenses, MODEL_CONTROL) == []
    ref = {"ok": True, "reasons": [], "blind": [], "confounded": ["probe @embed", "probe @3"], "against": "x"}
    assert "Confounded by the control facts" in reference_note({"reference": ref})
    assert "probe @embed, 3" in reference_note({"reference": ref})


def test_control_facts_the_original_knows_are_refused():
    """Issue #28, hand-worked: under a fact control the control facts must be facts the original
    does not know. 12 control facts at chance 0.25: 12 of 12 right is 1.00, every bootstrap draw
    1.00, so (accuracy − chance) has the interval [0.75, 0.75], above 0: cannot decide, with the
    reason. 3 of 12 (0.25, exactly chance) and 0 of 12 are accepted: the interval of the difference
    reaches 0 (a resample of 3/12 drops below 0.25 as often as it rises above)."""
    from forensics.study.summary import CANNOT_DECIDE, FACT_CONTROL, reference_check, summarize

    high = "1" * 18 + "00"
    for known, ok in (("1" * 12, False), ("111" + "0" * 9, True), ("0" * 12, True)):
        results = rtt_results({"original": high, "gd": high}, original_forget="1" * 20)
        results["facts"].update(control_splits=["c0"] * 6 + ["c1"] * 6, control_chance=[0.25] * 12)
        results["accuracy"]["original"].update(control=known.count("1") / 12, control_correct=known)
        check = reference_check(results, VerdictSettings())
        assert check["against"] == FACT_CONTROL and check["ok"] == ok, check["reasons"]
        if not ok:
            (reason,) = check["reasons"]
            assert reason.startswith(
                "the original answers 1.00 of the control facts [95% CI 1.00, 1.00], above chance (0.25)"
            )
            row = summarize(results, ["gd"], VerdictSettings())["gd"]
            assert row["verdict"] == CANNOT_DECIDE and "of the control facts" in row["evidence"]


def test_a_reading_is_shown_as_its_label_and_parsed_back():
    from forensics.outcomes import Reading

    for reading, shown in [(Reading("RTT"), "RTT"), (Reading("logit lens", "embed"), "logit lens @embed")]:
        assert str(reading) == shown and Reading.parse(shown) == reading
    assert Reading("probe", "3") != "probe @3"  # a key is typed, not a string that happens to match


def test_facts_for_precision_scale_the_interval_as_one_over_root_n():
    """Hand-worked: ±0.24 over 48 facts → ±0.12 at 48 × (0.24 / 0.12)² = 192; ±0.10 needs none."""
    settings = VerdictSettings()
    assert facts_for_precision([0.26, 0.74], 48, settings) == 192
    assert facts_for_precision([0.40, 0.60], 48, settings) is None
    assert facts_for_precision(None, 48, settings) is None
