"""`forensics validate` on the micro world: the exact control is never called hidden; a model with one
block tuned to suppress, and one with only its output layer tuned, are called hidden."""

import shutil

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
    assert "hidden" in rows["output_only"]
    assert "confusion (expected × verdict):" in out
    assert (world / "validate/models_w/study/results.json").exists()
