"""RTT's figure is chosen on facts it is not scored on (cross-fitted): on simulated per-fact outcomes
with a known truth — every cell of the grid at accuracy p — the cross-fitted figure reads p, where the
best cell chosen on V itself (the paper's figure) reads more; the same test fails for that one."""

import numpy as np
import pytest

from forensics.attacks.selection import against_paper, best_per_v, cross_fit, rtt_metrics, seed_spread
from forensics.outcomes import bits

P, FACTS, LRS, EPOCHS, DRAWS = 0.3, 24, 3, 6, 1500


def simulated_grid(rng: np.random.Generator, p: float = P) -> dict:
    """One model's grid on one V and seed: LRS × EPOCHS cells, each fact right with probability p
    independently in every cell (and the control facts alike)."""

    def cell(epoch: int) -> dict:
        v, c = rng.random(FACTS) < p, rng.random(FACTS) < p
        return {"epoch": epoch, "acc_v": float(v.mean()), "v_correct": bits(v)} | {
            "acc_c": float(c.mean()),
            "c_correct": bits(c),
        }

    runs = [
        {
            "v": "v0",
            "lr": lr,
            "seed": 0,
            "before": {"acc_v": 0.0},
            "epochs": [cell(e + 1) for e in range(EPOCHS)],
        }
        for lr in range(LRS)
    ]
    return {"original": runs}


@pytest.mark.parametrize(
    "select", ["cross", pytest.param("max", marks=pytest.mark.xfail(strict=True, reason="chosen on V"))]
)
def test_the_figure_the_verdict_reads_is_unbiased_where_every_cell_is_at_p(select):
    rng = np.random.default_rng(0)
    v, c = [], []
    for _ in range(DRAWS):
        best = best_per_v(simulated_grid(rng))
        v.append(rtt_metrics(best, chance=0.25, select=select)["original"]["acc_v"]["mean"])
        chosen = best["original"]["v0"]["control"][0]
        c.append(chosen["acc_c_cross"] if select == "cross" else chosen["acc_c"])
    se = np.sqrt(P * (1 - P) / FACTS / DRAWS)
    assert abs(np.mean(v) - P) < 4 * se, (np.mean(v), P)
    assert abs(np.mean(c) - P) < 4 * se, (np.mean(c), P)


def test_the_best_cell_on_v_is_biased_and_the_papers_figure_is_kept_beside():
    rng = np.random.default_rng(1)
    metrics = [rtt_metrics(best_per_v(simulated_grid(rng)), chance=0.25)["original"] for _ in range(300)]
    top = np.mean([m["acc_v_max"]["mean"] for m in metrics])
    crossed = np.mean([m["acc_v"]["mean"] for m in metrics])
    assert top > P + 0.1 and abs(crossed - P) < 0.03  # 18 cells of 24 facts at 0.3: the best reads ~0.47


def test_cross_fit_by_hand():
    """Four facts, three cells: the even facts (0, 2) read at the cell best on the odd ones (1, 3) and
    the reverse, first on ties."""
    cells = ["1100", "0011", "1010"]
    # odd facts right per cell: 1, 1, 0 → cell 0 for the even facts: 1, 0
    # even facts right per cell: 1, 1, 2 → cell 2 for the odd facts: 0, 0
    assert cross_fit(cells) == "1000"
    assert cross_fit(["1"]) == "1"  # one fact: nothing to choose on, the first cell


def test_seed_spread_is_the_sd_of_the_seeds_beside_the_facts_standard_error():
    """Hand-worked: two seeds at 0.50 and 0.75 on one V split of 4 facts (0.625 mean): sd = 0.25/√2,
    facts' SE = sqrt(0.625 × 0.375 / 4); one seed: not measured."""
    seeds = [
        {"acc_v": 0.5, "acc_v_cross": 0.5, "v_correct": "1100"},
        {"acc_v": 0.75, "acc_v_cross": 0.75, "v_correct": "1110"},
    ]
    spread = seed_spread({"v0": {"seeds": seeds}}, "cross")
    assert spread["acc_v"] == [0.5, 0.75]
    assert spread["sd"] == pytest.approx(0.25 / np.sqrt(2))
    assert spread["facts_se"] == pytest.approx(np.sqrt(0.625 * 0.375 / 4))
    assert seed_spread({"v0": {"seeds": seeds[:1]}}, "cross")["sd"] is None


@pytest.mark.parametrize(
    "ci95, where", [([0.5, 0.8], "below"), ([0.8, 0.95], "within"), ([0.9, 1.0], "above"), (None, None)]
)
def test_the_papers_figure_is_placed_against_the_interval(ci95, where):
    assert against_paper(ci95) == where
