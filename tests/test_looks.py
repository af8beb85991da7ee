"""Looks (docs/design.md §9, issue 40): more RTT rotations or seeds for rows still inconclusive, under a
budget, without more false alarms. The rule is checked on simulated per-fact outcomes whose truth is
known (no model), with the toolkit's own evidence and decision; the looks themselves on a real study."""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from forensics.api import Study
from forensics.outcomes import Reading
from forensics.study.grids import preset
from forensics.study.looks import planned, spent
from forensics.study.pipeline import budget_share
from forensics.study.readings import on
from forensics.study.verdict import VerdictSettings, decide, evidence
from tests.conftest import control_study

DRAWS, LOOKS, FACTS = 1000, 3, 68  # a V split of the real model's default design per look
BASE = VerdictSettings(n_boot=200)


def false_rate(
    settings: VerdictSettings, add: str, wrong: str, p_method: float, p_control: float, seed=0
) -> float:
    """How often a null is called `wrong` ("hidden" or "erased") at some look — each fact's outcome a
    coin of bias `p_method` or `p_control` — each look adding a V split of new facts (`add="rotation"`)
    or one more seed on the same facts (`add="seed"`), stopping at the first decided look as a study does."""
    rng = np.random.default_rng(seed)
    called = 0
    for draw in range(DRAWS):
        shape = (1, LOOKS * FACTS) if add == "rotation" else (LOOKS, FACTS)
        method = (rng.random(shape) < p_method).astype(np.uint8)
        control = (rng.random(shape) < p_control).astype(np.uint8)
        strata = np.repeat(np.arange(shape[1] // FACTS), FACTS)
        for look in range(1, LOOKS + 1):
            seen = (slice(None), slice(look * FACTS)) if add == "rotation" else (slice(look), slice(None))
            e = evidence(method[seen], control[seen], strata[seen[1]], None, replace(settings, seed=draw))
            verdict = decide({Reading("RTT"): e}, settings, controlled=True)["verdict"]
            if verdict != "inconclusive":
                called += verdict.startswith(wrong)
                break
    return called / DRAWS


def false_hidden(settings: VerdictSettings, add: str, seed: int = 0) -> float:
    """A null at the edge of *hidden*: method − control = min_effect exactly (0.55 against 0.50)."""
    return false_rate(settings, add, "hidden", 0.5 + BASE.min_effect, 0.5, seed)


def within_alpha(rate: float) -> bool:
    """The rate of a false verdict is at most alpha, within 2.58 Monte-Carlo standard errors."""
    return rate <= BASE.alpha + 2.58 * math.sqrt(BASE.alpha * (1 - BASE.alpha) / DRAWS)


NAIVE = pytest.param("naive", marks=pytest.mark.xfail(strict=True, reason="full alpha at every look"))


@pytest.mark.parametrize("rule", ["spent", NAIVE])  # the naive rule is what the test is there to catch
def test_looks_that_add_facts_keep_false_hidden_within_alpha(rule):
    settings = spent(BASE, LOOKS) if rule == "spent" else BASE
    assert within_alpha(false_hidden(settings, "rotation"))


def test_looks_that_add_seeds_keep_false_hidden_within_alpha():
    assert within_alpha(false_hidden(spent(BASE, LOOKS), "seed", seed=1))


@pytest.mark.parametrize("rule", ["spent", NAIVE])
def test_looks_keep_false_erased_within_alpha(rule):
    """A null at the edge of *erased*: |method − control| = margin exactly (0.65 against 0.35 at a margin
    of 0.3, where 68 facts a look can reach it; min_effect 0.99 so that no look stops at *hidden*)."""
    base = replace(BASE, margin=0.3, min_effect=0.99)
    settings = spent(base, LOOKS) if rule == "spent" else base
    assert within_alpha(false_rate(settings, "rotation", "erased", 0.65, 0.35, seed=2))


def test_alpha_is_split_over_the_planned_looks():
    assert spent(VerdictSettings(alpha=0.05), 3).alpha == pytest.approx(0.05 / 3)
    assert spent(VerdictSettings(alpha=0.05), 1).alpha == 0.05


# an attack that barely trains (each model keeps its own answers) and counts T fitted at any accuracy:
# the study's reference holds (the original knows V, the control does not) and nothing decides the row
LOOKED = """[lenses.relearn]
lrs = [1e-5]
epochs = 1
fit_t = 0.01
extend_rounds = 0
rotations = 2
looks = 3
budget_minutes = {budget}
[verdict]
min_effect = 0.99
margin = 0.001
"""


def _perturbed(src: Path, dst: Path) -> None:
    """A copy of a checkpoint with noise on every weight: other answers than its source's on some facts."""
    shutil.copytree(src, dst)
    weights = load_file(dst / "model.safetensors")
    noise = torch.Generator().manual_seed(0)
    save_file(
        {k: v + 0.3 * torch.randn(v.shape, generator=noise) for k, v in weights.items()},
        dst / "model.safetensors",
    )


def test_inconclusive_rows_get_a_rotation_then_a_seed_and_decided_rows_stay(micro_world, tmp_path):
    """No row can be hidden (min_effect 0.99) or erased (±0.001 around other answers), so the
    looks run: the third forget split as V, then a second seed, on the open row and its references only;
    the method that is not unlearned (the original's copy) is decided at the first look and untouched."""
    config = control_study(micro_world, tmp_path, "out", tail=LOOKED.format(budget=60))
    _perturbed(tmp_path / "never_learned", tmp_path / "m")
    shutil.copytree(tmp_path / "original", tmp_path / "o")
    text = config.read_text().replace('m = "never_learned"', 'm = "m"\no = "o"')
    config.write_text(text)
    results = Study.from_toml(config).run(progress=False).raw
    looks = results["looks"]
    assert looks["planned"] == 3 and looks["alpha_per_look"] == pytest.approx(0.05 / 3)
    first, second, third = looks["done"]
    assert first["v_splits"] == ["forget_0", "forget_1"] and first["seeds"] == [0]
    assert first["open"] == ["m"] and results["summary"]["o"]["verdict"] == "not unlearned"
    assert second["v_splits"] == ["forget_0", "forget_1", "forget_2"] and second["seeds"] == [0]
    assert third["seeds"] == [0, 1] and third["models"] == ["original", "never_learned", "m"]
    best = results["relearn"]["best"]
    assert sorted(best["m"]) == ["forget_0", "forget_1", "forget_2"]
    assert [len(b["seeds"]) for b in best["m"].values()] == [2, 2, 2]
    assert sorted(best["o"]) == ["forget_0", "forget_1"] and len(best["o"]["forget_0"]["seeds"]) == 1
    assert results["summary"]["m"]["look"] == 3 and "look" not in results["summary"]["o"]
    assert results["summary"]["m"]["lenses"]["RTT"]["facts"] == len(results["facts"]["splits"])

    # a rerun reads every run back and, counting the seconds they recorded, takes the same looks
    rerun = Study.from_toml(config).run(progress=False).raw
    assert rerun["looks"] == looks and rerun["summary"]["m"]["verdict"] == results["summary"]["m"]["verdict"]

    # the same study on a budget that the next look does not fit: the first look only, the runs reused
    config.write_text(text.replace("budget_minutes = 60", "budget_minutes = 0.001"))
    again = Study.from_toml(config).run(progress=False).raw
    assert "needs about" in again["looks"]["stopped"] and len(again["looks"]["done"]) == 1
    assert "look" not in again["summary"]["m"]


def test_real_hours_share_what_is_left_between_the_kinds_studies():
    """`forensics real --hours 2`: 30 minutes gone, two kinds → 45 minutes each; none left → no look."""
    now = time.perf_counter()
    assert budget_share(2, now - 30 * 60, 2) == pytest.approx(45, abs=0.01)
    assert budget_share(0.5, now - 60 * 60, 2) is None  # nothing left: no look, the full alpha
    grid = preset("real").budgeted(45)
    # the real grid plans two looks: the first forget split as V, then the other for rows left open
    assert grid.of("relearn").budget_minutes == 45 and planned(grid.of("relearn")) == 2
    assert planned(preset("real").of("relearn")) == 1  # no budget: one look at the full alpha


def test_a_model_is_read_on_the_facts_of_another_that_a_look_passed_by():
    """After a look gave the control a third V split, a method decided before is paired with the
    control on its own facts (the control's outcomes on them), not dropped."""
    rows = np.array([[1, 0, 1, 1, 0, 0]])
    assert on((rows, [0, 1, 2, 3, 4, 5]), [0, 1, 2, 3]).tolist() == [[1, 0, 1, 1]]
    assert on((rows, [0, 1, 2, 3, 4, 5]), [4, 5]).tolist() == [[0, 0]]
    assert on((rows[:, :4], [0, 1, 2, 3]), [0, 1, 4]) is None
