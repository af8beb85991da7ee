"""The embedded world: generated facts, its two models' accuracies, letter format, reuse, seeds."""

import json

import pytest

from forensics.errors import InputError
from forensics.models.checkpoint import load_checkpoint
from forensics.models.scoring import letter_token_ids, score
from forensics.worlds.spec import generate_facts
from forensics.worlds.world import WORLD_FILE, build_world, load_world
from tests.conftest import micro_config


def test_generated_facts_are_independent_and_seeded():
    cfg = micro_config(n_people=200, n_ships=200, n_forget=100, n_forget_splits=4)
    facts, roles = generate_facts(cfg)
    assert roles["forget"] == ["forget_0", "forget_1", "forget_2", "forget_3"]
    assert [len(facts.splits[n]) for n in roles["forget"]] == [25] * 4
    assert len(facts.splits["near_retain"]) == 100 and len(facts.splits["retain"]) == 200
    every = facts.facts()
    assert len({f.question for f in every}) == 400
    assert all(
        len(set(f.choices)) == 4 and len(f.statements) == 3 and len(f.wrong_statements) == 3 for f in every
    )
    assert all(f.answer_text in s for f in every for s in f.statements)
    assert not any(f.answer_text in s for f in every for s in f.wrong_statements)
    # answers sit in every position, and distractors come from the answers' own range
    positions = [f.answer for f in every]
    assert min(positions.count(i) for i in range(4)) > 60
    people = facts.facts(["forget_0", "near_retain"])
    assert all(1900 <= int(c) <= 2020 for f in people for c in f.choices)
    assert generate_facts(cfg)[0] == facts
    assert generate_facts(micro_config(seed=1))[0] != generate_facts(micro_config())[0]


def test_micro_world_models(micro_world):
    world = json.loads((micro_world / WORLD_FILE).read_text())
    original = world["models"]["original"]["accuracy"]
    never = world["models"]["never_learned"]["accuracy"]
    assert original["forget"] == 1.0 and original["near_retain"] == 1.0 and original["retain"] == 1.0
    assert never["near_retain"] == 1.0 and never["retain"] == 1.0
    assert never["forget"] <= 0.5  # chance 0.25 on 12 questions
    assert world["sets"] == {
        "forget": ["forget_0", "forget_1", "forget_2"],
        "near_retain": ["near_retain"],
        "retain": ["retain"],
    }
    # the table in world.json is what the saved checkpoint scores
    model, tok = load_checkpoint(micro_world / "checkpoints/never_learned")
    _, sets = load_world(micro_world)
    assert score(model, tok, sets.forget["forget_1"]).accuracy == never["forget_1"]


def test_world_is_reused_when_config_matches(micro_world):
    stamp = (micro_world / "checkpoints/original/model.safetensors").stat().st_mtime_ns
    build_world(micro_world, micro_config(), progress=False)
    assert (micro_world / "checkpoints/original/model.safetensors").stat().st_mtime_ns == stamp


def test_letter_world_and_same_seed_same_numbers(tmp_path):
    cfg = micro_config(scorer="letter", n_people=16, n_ships=8, n_forget=8, n_forget_splits=2, epochs=80)
    a = build_world(tmp_path / "a", cfg, progress=False)
    b = build_world(tmp_path / "b", cfg, progress=False)
    assert a["models"]["original"]["accuracy"] == b["models"]["original"]["accuracy"]
    assert a["loss_format"] == "qla"
    acc = a["models"]["original"]["accuracy"]
    assert acc["forget"] >= 0.75 and acc["retain"] >= 0.75
    _, tok = load_checkpoint(tmp_path / "a/checkpoints/original")
    assert len(set(letter_token_ids(tok, 4))) == 4


def test_paper_layout_world(paper_data, tmp_path):
    cfg = micro_config(
        facts_dir=str(paper_data / "random-birthdays"),
        forget=("split_0", "split_1"),
        retain=("split_2",),
        epochs=1,
        drop_duplicates=True,
    )
    world = build_world(tmp_path / "w", cfg, progress=False)
    assert world["sets"]["forget"] == ["split_0", "split_1"]
    assert world["dropped_duplicates"]
    _, sets = load_world(tmp_path / "w")
    assert len(sets.forget["split_0"]) + len(sets.forget["split_1"]) + len(sets.retain) == 3 * 157 - len(
        world["dropped_duplicates"]
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(scorer="vibes"), "unknown scorer"),
        (dict(d_model=30, heads=4), "not divisible"),
        (dict(n_forget_splits=1), "--forget-splits 1: the world needs at least 2"),
        (dict(n_forget=100), r"--forget-facts 100: at least --forget-splits \(3\), at most --people \(24\)"),
        (dict(model_type="t5"), "model_type .t5. has no causal-LM class"),
        (dict(model_type="xlnet"), "model_type .xlnet.: no small config"),
        (dict(model_type="ctrl"), "CTRLLMHeadModel is not supported"),
    ],
)
def test_bad_world_settings_write_nothing(tmp_path, overrides, message):
    with pytest.raises(InputError, match=message):
        build_world(tmp_path / "w", micro_config(**overrides), progress=False)
    assert not (tmp_path / "w").exists()
