"""The study's typed config tree: unknown keys, wrong types and bad ranges are one-line errors naming
the file and key; the grid preset is a real choice; paths resolve against the TOML's folder."""

import re
from dataclasses import replace

import pytest

from forensics.cli import main
from forensics.errors import InputError
from forensics.study.config_file import load_config
from forensics.study.grids import preset


def write(root, body: str, name: str = "study.toml"):
    path = root / name
    path.write_text(
        f"""{body.split("#models")[0]}
[models]
original = "{root}/w/checkpoints/original"
never_learned = "{root}/w/checkpoints/never_learned"
[models.unlearned]
same = "{root}/w/checkpoints/original"
[facts]
path = "{root}/w/facts.jsonl"
forget = ["forget_0", "forget_1", "forget_2"]
retain = ["retain"]
{body.split("#models")[1] if "#models" in body else ""}
"""
    )
    return path


@pytest.fixture
def root(micro_world, tmp_path):
    (tmp_path / "w").symlink_to(micro_world)
    return tmp_path


@pytest.mark.parametrize(
    "body, message",
    [
        ('seed = "abc"', r"'seed': expected an integer, got str 'abc'"),
        ("#models\n[lenses.relearn]\nlrs = 0.001", r"\[lenses.relearn\]: 'lrs': expected a list of float"),
        ('#models\n[lenses.relearn]\nepochs = "two"', r"\[lenses.relearn\]: 'epochs': expected an integer"),
        ("#models\n[lenses.probes]\nfolds = 0", r"\[lenses.probes\]: 'folds' must be at least 2"),
        ("#models\n[lenses.probes]\nCs = [-1]", r"\[lenses.probes\]: 'Cs': L2 strengths must be positive"),
        ("#models\n[lenses.relearn]\nepoch = 3", r"\[lenses.relearn\]: unknown key 'epoch'"),
        ("#models\n[lenses.relearn]\nseed = 3", r"\[lenses.relearn\]: unknown key 'seed'"),
        ('scorrer = "letter"', r"unknown key 'scorrer'"),
        ('#models\n[lenses]\nrn = ["accuracy"]', r"unknown key 'rn' in \[lenses\]"),
        ('#models\ndrop_duplicates = "no"', r"\[facts\]: 'drop_duplicates': expected true or false"),
        ('grid = "tiny"', r"'grid': unknown grid 'tiny' \(choose from full, demo, real, paper\)"),
        ('scorer = "vibes"', r"unknown scorer 'vibes'"),
        ("seed = true", r"'seed': expected an integer, got bool"),
        ("seed = 1\nseeds = [1]", r"give 'seed' or 'seeds', not both"),
        ("seeds = []", r"'seeds': at least one seed"),
        ("cache_max_gb = 0", r"'cache_max_gb' must be positive"),
        ("#models\n[lenses.quantize]\nbits = [1]", r"'bits': each must be in 2..16"),
        ("#models\n[lenses.relearn]\nlrs = [1e-3, nan]", r"'lrs'\[1\]: expected a finite number"),
        # issue #28: seeds checked where they are read (one check for every list of seeds)
        # the seeds are the study's (every lens that takes seeds shares them): not a lens table's key
        ("#models\n[lenses.incontext]\nseeds = [4]", r"\[lenses.incontext\]: unknown key 'seeds'"),
        ("#models\n[lenses.incontext]\nshots = 0", r"\[lenses.incontext\]: 'shots' must be at least 1"),
        ("seeds = [1, 2, 1]", r"'seeds': seed 1 given twice"),
        ("seed = -3", r"'seeds': seed -3 is negative"),
        # issue #28: the lenses a study runs
        ("#models\n[lenses]\nrun = []", r"\[lenses\] 'run': an empty list"),
        ('#models\n[lenses]\nrun = ["accuracy", "relearn", "accuracy"]', r"lens 'accuracy' named twice"),
        ('#models\n[lenses]\nrun = ["relearn"]', r"\[lenses\] 'run': 'accuracy' is needed"),
        # issue #28: a never-learned model and a fact control at once
        ('#models\ncontrol = ["retain"]', r"'never_learned' and \[facts\] 'control' both given: choose one"),
    ],
)
def test_bad_key_or_type_is_one_line_naming_file_and_key(root, capsys, body, message):
    path = write(root, body)
    with pytest.raises(InputError, match=message) as err:
        load_config(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    assert main(["study", str(path), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), lines
    assert not (root / "runs").exists()


def test_grid_preset_is_a_choice_and_tables_override_it(root):
    demo = load_config(write(root, 'grid = "demo"\nseed = 4'))
    relearn = demo.lens_settings("relearn")
    assert demo.seeds == (4,) and relearn == replace(preset("demo").of("relearn"), seeds=(4,))
    assert demo.lens_settings("localize").rotations == 1 and demo.lens_settings("probes").seed == 4
    assert load_config(write(root, 'grid = "demo"')).lens_settings("relearn").seeds == (0,)
    both = load_config(write(root, "seeds = [3, 5]"))
    # one rule for every lens that takes seeds: the study's, when it gives them
    assert both.lens_settings("localize").seeds == (3, 5) and both.lens_settings("incontext").seeds == (3, 5)
    plain = load_config(write(root, ""))
    assert plain.study_seeds == (0, 1, 2) and plain.lens_settings("incontext").seeds == (0, 1, 2)
    # a copy (as `forensics study` makes one with its flags) shares what was given, no more
    demo = load_config(write(root, 'grid = "demo"'))
    assert replace(demo, workers=1).lens_settings("incontext").seeds == (0, 1, 2)
    full = load_config(write(root, "#models\n[lenses.relearn]\nepochs = 2"))
    assert full.lens_settings("relearn") == replace(preset("full").of("relearn"), epochs=2)
    assert full.lens_settings("relearn").lrs == (1e-4, 3e-4, 1e-3)
    rotated = load_config(write(root, "#models\n[lenses.relearn]\nrotations = 2"))
    assert rotated.lens_settings("relearn").rotations == 2


def test_default_out_is_beside_the_toml_and_names_are_made_safe(root, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    cfg = load_config(write(root, 'name = "../../escaped"'))
    assert cfg.out.parent == root.resolve() / "runs"
    assert ".." not in cfg.out.name and "/" not in cfg.out.name
    assert load_config(write(root, 'name = "plain"')).out == root.resolve() / "runs" / "plain"


def test_cli_defaults_are_the_dataclass_defaults():
    from forensics.attacks.relearn import RelearnSettings
    from forensics.cli import build_parser
    from forensics.measure.probing import ProbeSettings

    p = build_parser()
    relearn = p.parse_args(["relearn", "--world", "w"])
    assert relearn.lrs == RelearnSettings().lrs and relearn.epochs == RelearnSettings().epochs
    assert p.parse_args(["probe", "--world", "w"]).Cs == ProbeSettings().Cs
    assert p.parse_args(["localize", "--world", "w"]).lrs == preset("full").of("localize").lrs
