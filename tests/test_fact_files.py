"""The field's data formats: lm-eval-style multiple choice (JSONL, parquet), TOFU, seeded partitions,
each through a micro study on the micro world's models."""

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forensics.cli import main
from forensics.errors import InputError
from forensics.facts.core import select
from forensics.facts.load import load_facts
from forensics.models.checkpoint import load_checkpoint, read_json
from forensics.models.scoring import score
from forensics.worlds.world import load_world


def mc_records(facts, subject):
    """lm-eval / WMDP / MMLU style: question, choices, answer index (and a field we ignore)."""
    return [
        {"question": f.question, "choices": list(f.choices), "answer": f.answer, "subject": subject}
        for f in facts
    ]


def tofu_records(facts):
    """TOFU style: the answer text and its perturbations (here the other choices)."""
    return [
        {
            "question": f.question,
            "answer": f.answer_text,
            "paraphrased_answer": f.answer_text,
            "perturbed_answer": [c for i, c in enumerate(f.choices) if i != f.answer],
        }
        for f in facts
    ]


def write_jsonl(records, path):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def write_parquet(records, path):
    pq.write_table(pa.Table.from_pylist(records), path)


def test_lm_eval_jsonl_and_parquet_load_the_same_facts(micro_world, tmp_path):
    _, sets = load_world(micro_world)
    records = mc_records(sets.forget_facts(), "bio")
    write_jsonl(records, tmp_path / "wmdp-bio.jsonl")
    write_parquet(records, tmp_path / "wmdp-bio.parquet")
    a, b = load_facts(tmp_path / "wmdp-bio.jsonl"), load_facts(tmp_path / "wmdp-bio.parquet")
    assert a.names() == b.names() == ["wmdp-bio"]
    strip = [(f.question, f.choices, f.answer) for f in sets.forget_facts()]
    assert [(f.question, f.choices, f.answer) for f in a.facts()] == strip
    assert [(f.question, f.choices, f.answer) for f in b.facts()] == strip
    assert b.facts()[2].source.endswith("wmdp-bio.parquet:row 2")


def test_tofu_choices_are_the_answer_and_its_perturbations_in_a_seeded_order(micro_world, tmp_path):
    _, sets = load_world(micro_world)
    facts = sets.forget_facts()
    write_jsonl(tofu_records(facts), tmp_path / "forget10_perturbed.json")
    (tmp_path / "array").mkdir()
    (tmp_path / "array/forget10_perturbed.json").write_text(json.dumps(tofu_records(facts)))
    loaded = load_facts(tmp_path / "forget10_perturbed.json")
    assert loaded.names() == ["forget10"]  # TOFU's split name, without `_perturbed`
    for f, g in zip(facts, loaded.facts(), strict=True):
        assert g.answer_text == f.answer_text and sorted(g.choices) == sorted(f.choices)
    positions = [g.answer for g in loaded.facts()]
    assert len(set(positions)) > 1  # not always first: choice-scorer ties would favour it
    again = load_facts(tmp_path / "array")  # a folder of files; a JSON array this time
    assert [g.choices for g in again.facts()] == [g.choices for g in loaded.facts()]
    other = load_facts(tmp_path / "forget10_perturbed.json", seed=1)
    assert [g.choices for g in other.facts()] != [g.choices for g in loaded.facts()]


def test_seeded_partition(micro_world, tmp_path):
    _, sets = load_world(micro_world)
    write_jsonl(mc_records(sets.forget_facts(), "bio"), tmp_path / "wmdp.jsonl")
    parts = load_facts(tmp_path / "wmdp.jsonl", partition=3, seed=7)
    assert parts.names() == ["wmdp_0", "wmdp_1", "wmdp_2"]
    assert all(f.split == name for name, fs in parts.splits.items() for f in fs)
    questions = [f.question for f in parts.facts()]
    assert sorted(questions) == sorted(f.question for f in sets.forget_facts())
    assert [len(fs) for fs in parts.splits.values()] == [4, 4, 4]
    same = load_facts(tmp_path / "wmdp.jsonl", partition=3, seed=7)
    assert [f.question for f in same.facts()] == questions
    assert [f.question for f in load_facts(tmp_path / "wmdp.jsonl", partition=3, seed=8).facts()] != questions


@pytest.mark.parametrize(
    "name, text, message",
    [
        (
            "f_perturbed.json",
            '{"question": "q", "answer": "a", "perturbed_answer": "b"}\n',
            r"f_perturbed.json:1: TOFU 'perturbed_answer' must be a non-empty list",
        ),
        (
            "f_perturbed.json",
            '{"question": "q", "answer": 3, "perturbed_answer": ["b"]}\n',
            r":1: TOFU 'answer' must be a non-empty string",
        ),
        (
            "f_perturbed.json",
            '{"question": "q", "answer": "a", "perturbed_answer": ["b", ""]}\n',
            r"f_perturbed.json:1: choice \d is empty",
        ),
        ("f.json", "[3]", r"f.json:row 0: malformed record"),
        ("f.parquet", "not parquet", r"f.parquet: corrupt parquet"),
        ("f.csv", "q,a", r"f.csv: unknown fact file type"),
    ],
)
def test_bad_files_are_named(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=message):
        load_facts(tmp_path / name)


@pytest.mark.parametrize("copy", ["Paris", " Paris", "Paris\n", "Paris  "])
def test_tofu_perturbed_answer_repeating_the_answer_is_refused(tmp_path, copy):
    """A perturbed answer equal to the answer up to whitespace is a repeated choice, refused (or left
    out with --drop-duplicates) by the check every format goes through."""
    forget = {"question": "Capital?", "answer": "Paris", "perturbed_answer": ["Lyon", copy]}
    write_jsonl([forget, {**forget, "question": "Other?", "perturbed_answer": ["Lyon"]}], tmp_path / "f.json")
    write_jsonl([{"question": "R?", "answer": "x", "perturbed_answer": ["y"]}], tmp_path / "r.json")
    facts = load_facts(tmp_path)
    with pytest.raises(InputError, match=r"f\.json:1: choice '.*Paris.*' repeats choice '.*Paris.*'"):
        select(facts, ["f"], ["r"])
    assert [f.question for f in select(facts, ["f"], ["r"], drop_duplicates=True).forget_facts()] == [
        "Other?"
    ]


def test_two_files_giving_one_split_are_refused(tmp_path):
    """`good.jsonl` beside `good.parquet` would count split `good` twice: refused, naming both files."""
    records = [{"question": f"q{i}", "choices": ["a", "b"], "answer": 0} for i in range(3)]
    write_jsonl(records, tmp_path / "good.jsonl")
    write_parquet(records, tmp_path / "good.parquet")
    with pytest.raises(InputError, match=r"good\.jsonl and .*good\.parquet: both files give split 'good'"):
        load_facts(tmp_path)
    (tmp_path / "good.parquet").rename(tmp_path / "good_perturbed.json")  # TOFU's name for split `good`
    with pytest.raises(InputError, match=r"both files give split 'good'"):
        load_facts(tmp_path)


def test_a_split_named_in_records_may_span_files(tmp_path):
    """Records that name their split may come from several files (shards); a question copied into
    two of them is still refused when the sets are chosen (asked twice in one split)."""
    shard = [{"question": f"q{i}", "choices": ["a", "b"], "answer": 0, "split": "s"} for i in range(4)]
    write_jsonl(shard[:2] + [{**shard[0], "question": "r", "split": "r"}], tmp_path / "part-0.jsonl")
    write_jsonl(shard[2:], tmp_path / "part-1.jsonl")
    facts = load_facts(tmp_path)
    assert {n: len(f) for n, f in facts.splits.items()} == {"s": 4, "r": 1}
    write_jsonl(shard[:2], tmp_path / "part-2.jsonl")
    with pytest.raises(InputError, match=r"part-2\.jsonl:1: question 'q0' appears twice in one split"):
        select(load_facts(tmp_path), ["s"], ["r"])


def test_too_many_parts_is_refused(tmp_path):
    write_jsonl(
        [{"question": f"q{i}", "choices": ["a", "b"], "answer": 0} for i in range(3)], tmp_path / "x.jsonl"
    )
    with pytest.raises(InputError, match=r"split 'x' has 3 questions: too few for 4 parts"):
        load_facts(tmp_path / "x.jsonl", partition=4)


@pytest.mark.parametrize("kind", ["lm_eval_jsonl", "lm_eval_parquet", "tofu"])
def test_a_micro_study_on_each_format(micro_world, tmp_path, kind):
    """Forget facts in one benchmark file and retain facts in another, partitioned into RTT splits
    by seed; the study's accuracies equal the model's own on the same questions."""
    _, sets = load_world(micro_world)
    data = tmp_path / "data"
    data.mkdir()
    forget, retain = sets.forget_facts(), list(sets.retain)
    if kind == "tofu":
        write_jsonl(tofu_records(forget), data / "forget10_perturbed.json")
        write_jsonl(tofu_records(retain), data / "retain_perturbed.json")
        names = ("forget10", "retain")
    else:
        write = write_parquet if kind.endswith("parquet") else write_jsonl
        suffix = "parquet" if kind.endswith("parquet") else "jsonl"
        write(mc_records(forget, "bio"), data / f"wmdp-bio.{suffix}")
        write(mc_records(retain, "history"), data / f"mmlu.{suffix}")
        names = ("wmdp-bio", "mmlu")
    for name in ("original", "never_learned"):
        shutil.copytree(micro_world / "checkpoints" / name, tmp_path / name)
    (tmp_path / "s.toml").write_text(
        f"""out = "out"
[models]
original = "original"
[models.unlearned]
m = "never_learned"
[facts]
path = "data"
partition = 3
seed = 0
forget = {json.dumps([f"{names[0]}_{i}" for i in range(3)])}
retain = {json.dumps([f"{names[1]}_{i}" for i in range(3)])}
[lenses]
run = ["accuracy", "relearn"]
[lenses.relearn]
lrs = [1e-3]
epochs = 1
"""
    )
    assert main(["study", str(tmp_path / "s.toml"), "--quiet"]) == 0
    results = read_json(tmp_path / "out/results.json")
    model, tok = load_checkpoint(tmp_path / "original")
    assert results["accuracy"]["original"]["forget"] == pytest.approx(score(model, tok, forget).accuracy)
    assert results["accuracy"]["original"]["retain"] == pytest.approx(score(model, tok, retain).accuracy)
    assert set(results["relearn"]["metrics"]) == {"original", "m"}
