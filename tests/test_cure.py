"""`forensics cure` on the micro world: UNDO noises and trains only its blocks, the map's rule ranks
blocks by where the information rises, and the whole job (diagnosis, cures, their study) runs, reports
and resumes. No training outcome is asserted: which cure RTT breaks is what the command measures."""

import pytest
import torch

from forensics.cli import main
from forensics.errors import InputError
from forensics.models.checkpoint import load_checkpoint, read_metadata
from forensics.models.tokens import collate, encode, pad_id
from forensics.study.cure import choices, rank_blocks
from forensics.unlearn import CURES, METHODS, undo
from forensics.unlearn.run import UnlearnSettings, streams, unlearn
from forensics.worlds.world import load_world


@pytest.fixture(scope="module")
def teacher(micro_world, tmp_path_factory):
    """GD's model of the micro world (one short run): what the cures start from and distil."""
    _, sets = load_world(micro_world)
    out = tmp_path_factory.mktemp("teacher") / "gd"
    settings = UnlearnSettings(batch_size=16, budget=1, lrs=(1e-3,), steps=30)
    unlearn("gd", micro_world / "checkpoints/original", sets, out, settings, progress=False)
    return out


def test_undo_is_a_cure_not_a_method_of_the_demo():
    assert "undo" in CURES and "undo" not in METHODS


def test_undo_noises_and_trains_only_its_blocks(micro_world, teacher, tmp_path):
    _, sets = load_world(micro_world)
    original = micro_world / "checkpoints/original"
    settings = UnlearnSettings(
        batch_size=16,
        steps=10,
        budget=1,
        light=True,
        fixed={"blocks": [1], "alpha": 0.5},
        baseline=str(original),
    )
    meta = unlearn("undo", teacher, sets, tmp_path / "cure", settings, progress=False)
    assert meta["chosen"]["params"]["blocks"] == [1]
    assert meta["original_accuracy"] == read_metadata(teacher)["original_accuracy"]  # the rule's baseline
    assert "baseline_weights" in meta["request"]
    before, _ = load_checkpoint(teacher)
    after, _ = load_checkpoint(tmp_path / "cure")
    old = dict(before.named_parameters())
    for name, p in after.named_parameters():
        same = torch.equal(p, old[name])
        assert same == (".layers.1." not in name), name


def test_prepare_mixes_the_blocks_with_a_fresh_initialisation(teacher):
    model, _ = load_checkpoint(teacher)
    kept = {n: p.clone() for n, p in model.named_parameters()}
    undo.prepare(model, {"blocks": [0], "alpha": 1.0}, seed=0)
    for name, p in model.named_parameters():
        if ".layers.0." not in name:
            assert torch.equal(p, kept[name])
        elif p.ndim == 1:
            assert torch.equal(p, torch.ones_like(p))  # RMS norms start at one
        else:
            assert abs(p.std().item() - model.config.initializer_range) < 0.2 * model.config.initializer_range
    half, _ = load_checkpoint(teacher)
    undo.prepare(half, {"blocks": [0], "alpha": 0.5}, seed=0)
    fresh = dict(model.named_parameters())
    for name, p in half.named_parameters():
        torch.testing.assert_close(
            p, 0.5 * kept[name] + 0.5 * fresh[name] if ".layers.0." in name else kept[name]
        )


def test_the_distillation_loss_is_zero_on_the_teacher_itself(micro_world, teacher):
    _, sets = load_world(micro_world)
    model, tok = load_checkpoint(teacher)
    rows = streams(sets, "qa")["retain"][:8]
    batch = collate([encode(tok, e.prompt, e.target) for e in rows], pad_id(tok))
    loss = undo.loss({}, {"reference": model})(model, {"retain": batch})
    assert abs(loss.item()) < 1e-6


def test_undo_refuses_blocks_and_strengths_out_of_range():
    with pytest.raises(InputError, match="UNDO blocks"):
        undo.resolve({"blocks": [5], "alpha": 0.5}, 2)
    with pytest.raises(InputError, match="UNDO alpha"):
        undo.resolve({"blocks": None, "alpha": 1.5}, 2)
    assert undo.resolve({"blocks": None, "alpha": 0.5}, 3)["blocks"] == [0, 1, 2]


def _map(lo: list[float], blind: list[bool] | None = None) -> dict:
    layers = ["embed", *map(str, range(len(lo) - 1))]
    blind = blind or [False] * len(lo)
    return {"probe": {"layers": layers, "lo": lo, "diff": lo, "hi": lo, "blind": blind}}


def test_blocks_rank_by_where_the_information_rises():
    # embed 0, then 0.05, 0.30, 0.35, 0.20: block 1 writes the most, block 2 some, block 3 loses it
    ranking = rank_blocks(_map([0.0, 0.05, 0.30, 0.35, 0.20]), 4)
    assert [r["block"] for r in ranking] == [1, 0, 2, 3]
    assert ranking[0]["rise"] == pytest.approx(0.25) and ranking[-1]["rise"] == pytest.approx(-0.15)
    # a layer where the lens is blind on the original counts as reading nothing; below zero counts as zero
    blind = rank_blocks(_map([-0.2, 0.05, 0.30, 0.35, 0.20], [False, False, True, False, False]), 4)
    assert [(r["block"], r["score"]) for r in blind][:2] == [(2, 0.35), (0, 0.05)]
    picks = choices(ranking, 2, draws=3, seed=0)
    assert picks["located"] == [0, 1] and picks["lowest"] == [2, 3] and picks["global"] is None
    assert [len(picks[f"random_{d}"]) for d in (1, 2, 3)] == [2, 2, 2]
    assert choices(ranking, 2, draws=3, seed=0) == picks  # seeded


def test_a_map_that_reads_nothing_says_its_choice_is_the_tie_break():
    from forensics.study.cure import cure_words

    flat = rank_blocks(_map([-0.1, -0.2, -0.05]), 2)
    assert [r["block"] for r in flat] == [0, 1] and not any(r["score"] > 0 for r in flat)
    words = cure_words({}, {}, ranks=False)
    assert words.startswith("the map reads nothing above the control at any block")
    assert "tie-break" not in cure_words({}, {}, ranks=True)


def test_the_located_blocks_the_map_does_not_point_at_are_named():
    from forensics.study.cure import cure_words, tie_break

    # rises: block 1 +0.25, block 0 +0.05, blocks 2 and 3 below zero; k = 3 takes block 2 by the ranking
    ranking = rank_blocks(_map([0.0, 0.05, 0.30, 0.35, 0.20]), 4)
    records = {"located": {"blocks": choices(ranking, 3, draws=1, seed=0)["located"]}}
    assert records["located"]["blocks"] == [0, 1, 2] and tie_break(ranking, records) == []
    ranking = rank_blocks(_map([0.0, 0.05, 0.30, 0.30, 0.20]), 4)  # block 2 now rises by 0
    assert tie_break(ranking, records) == [2]
    assert "located block 2: the tie-break's" in cure_words(records, {}, True, [2])


def test_cure_runs_reports_and_resumes_on_a_held_out_world(tmp_path, capsys):
    """On a micro world of another seed than the fixtures' (nothing in the cure is tuned to one world)."""
    from forensics.worlds.world import build_world
    from tests.conftest import micro_config

    world = tmp_path / "w"
    build_world(world, micro_config(seed=1), progress=False)
    out = tmp_path / "cure"
    args = ["cure", "--world", str(world), "--out", str(out), "--lenses", "accuracy,relearn"]
    args += ["--steps", "20", "--draws", "2", "--quiet"]
    # staged: the located cure and global UNDO first, then the other controls beside what ran
    assert main([*args, "--controls", "global"]) == 0
    first = load_results(out)["cure"]
    assert set(first["cures"]) == {"located", "global"} and set(first["against"]) == {"global"}
    ran = {p: p.stat().st_mtime_ns for p in out.glob("**/*.safetensors")}
    rtt = {p: p.stat().st_mtime_ns for p in out.glob("study/relearn/*/*.json")}
    assert "original" in {p.parent.name for p in rtt}  # a cure that failed its retain is not attacked
    ran |= rtt
    capsys.readouterr()
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in ran} == ran  # checkpoints and RTT runs reused
    printed = capsys.readouterr().out
    for name in ("located", "lowest", "random_1", "random_2", "global"):
        assert f"\n{name} " in printed or printed.startswith(f"{name} ")
    results = load_results(out)
    cure = results["cure"]
    assert set(cure["cures"]) == {"located", "lowest", "random_1", "random_2", "global"}
    assert cure["cures"]["global"]["blocks"] == [0, 1] and cure["cures"]["global"]["cap"] == 80
    assert cure["cures"]["located"]["blocks"] == [cure["ranking"][0]["block"]]
    assert set(cure["against"]) == {"lowest", "random", "global"} and cure["words"]
    report = (out / "study" / "report" / "index.html").read_text()
    assert "id='cures'" in report and "id='cure-words'" in report
    assert "## Cures" in (out / "study" / "summary.md").read_text()
    made = {p: p.stat().st_mtime_ns for p in out.glob("checkpoints/*/model.safetensors")}
    assert main(args) == 0  # resumed: no checkpoint is made again
    assert {p: p.stat().st_mtime_ns for p in out.glob("checkpoints/*/model.safetensors")} == made


def load_results(out):
    import json

    return json.loads((out / "study" / "results.json").read_text())


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--method", "undo"], "--method undo: choose"),
        (["--alpha", "2"], "'alpha' must be in (0, 1]"),
        (["--k", "2"], "--k 2: a cure of every block"),
        (["--grid", "huge"], "--grid huge: choose"),
        (["--lenses", "relearn"], "accuracy"),
        (["--controls", "lowest,best"], "--controls best: choose"),
    ],
)
def test_cure_refuses_bad_input_in_one_line_and_writes_nothing(micro_world, tmp_path, capsys, extra, words):
    out = tmp_path / "cure"
    assert main(["cure", "--world", str(micro_world), "--out", str(out), "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cure_refuses_a_missing_world(tmp_path, capsys):
    assert main(["cure", "--world", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "nowhere").exists()


def test_the_api_checks_its_arguments_as_the_command_does(micro_world, tmp_path):
    import forensics

    with pytest.raises(InputError, match="'alpha'"):
        forensics.cure(micro_world, tmp_path / "c", alpha="strong")
    with pytest.raises(InputError, match="unknown key 'blocks'"):
        forensics.cure(micro_world, tmp_path / "c", blocks=[0])
    with pytest.raises(InputError, match="'lenses'"):
        forensics.cure(micro_world, tmp_path / "c", lenses="accuracy")
    assert not (tmp_path / "c").exists()
