"""`forensics validate` on the micro world: the exact control is never called hidden; a model with one
block tuned to suppress, and one with only its output layer tuned, are called hidden."""

import shutil

import pytest

from forensics.cli import main


def test_validate_on_the_micro_world(micro_world, tmp_path, capsys):
    world = tmp_path / "w"
    shutil.copytree(micro_world, world)
    assert main(["validate", "--world", str(world), "--quiet"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("w ")}
    assert "erased within ±0.1" in rows["exact"]  # the control itself: differences exactly 0
    assert "hidden" not in rows["exact_reseeded"]
    assert "hidden" in rows["planted"] and "above control" in rows["planted"]
    assert "not above" not in rows["planted"]
    assert "at its block" in rows["planted"] and "not at its block" not in rows["planted"]
    assert "hidden" in rows["output_only"]
    assert "confusion (expected × verdict):" in out
    assert (world / "validate/models_w/study/results.json").exists()


@pytest.mark.parametrize("part", ["block:1", "output"])
def test_the_real_grids_suppression_trains_until_the_rule_is_met(micro_world, tmp_path, part):
    """On the `real` grid the suppression (one block, or the output layer) is checked every 20 steps
    and stops at the first check where the forget facts are at chance + the unlearning margin (or runs
    its 240 steps): the check record in the checkpoint's metadata says which."""
    import numpy as np

    from forensics.models.checkpoint import read_metadata
    from forensics.study.validate import SUPPRESS, suppressed
    from forensics.unlearn.run import UnlearnSettings
    from forensics.worlds.world import load_world

    world, sets = load_world(micro_world)
    out = suppressed(
        micro_world / "checkpoints/original", sets, world["scorer"], tmp_path / "p", part, 0, "real"
    )
    checks = read_metadata(out)["forget_by_check"]
    cfg = SUPPRESS["real"][part.split(":")[0]]
    target = np.mean([1 / len(f.choices) for f in sets.forget_facts()]) + UnlearnSettings().forget_margin
    assert all(f > target + 1e-3 for f in checks[:-1])  # no check before the last met the rule
    assert checks[-1] <= target + 1e-3 or len(checks) == cfg.steps // cfg.check_every


def test_the_action_map_is_at_the_block_only_if_every_row_peaks_there():
    from forensics.study.validate import action_at_block

    action = {"layers": ["0", "1", "2"], "dW_rel": [0.0, 0.3, 0.0], "revert": [0.1, None, 0.4]}
    peaks = {"dW_rel": "1", "revert": "2"}
    assert action_at_block(action, 1) == {"action_peaks": peaks, "action_at_block": False}
    action["revert"] = [0.1, 0.5, None]
    assert action_at_block(action, 1)["action_at_block"] is True
    assert action_at_block(None, 1) == {"action_peaks": {}, "action_at_block": None}


def test_below_block_judges_only_layers_the_original_reads():
    """Hand-worked maps: below block 3, layer 1 is blind for both lenses on the original (not
    judged); embed and 0 read through the probe, 2 only through the logit lens (whose lower end is
    then what counts); the block itself and above are not below it."""
    from forensics.study.validate import below_block

    layers = ["embed", "0", "1", "2", "3", "4"]
    probe = {"layers": layers, "lo": [0.1, 0.2, -0.1, -0.2, 0.3, 0.3], "blind": [0, 0, 1, 1, 0, 0]}
    lens = {"layers": layers, "lo": [-0.3, -0.3, -0.3, 0.05, -0.1, 0.4], "blind": [1, 1, 1, 0, 1, 0]}
    maps = {"probe": probe, "logit lens": lens}
    assert below_block(maps, 3) == {"above_control_below_block": True, "layers_judged_below_block": "3 of 4"}
    lens["lo"][3] = -0.01  # layer 2 read on the original, not on this model
    assert below_block(maps, 3)["above_control_below_block"] is False
    assert below_block({"probe": {**probe, "blind": [1] * 6}}, 3)["above_control_below_block"] is None
    assert below_block({}, 3) == {"above_control_below_block": None, "layers_judged_below_block": "0 of 0"}
