"""Fact loaders, the paper's layout, the sets and rotation, and every bad-input check."""

import json
import re

import pytest

from forensics.errors import InputError
from forensics.facts.core import load_jsonl, select
from forensics.facts.load import load_facts
from forensics.facts.paper import load_paper_dir


def write(path, lines):
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return path


def q(text, answer=0, choices=("1901", "1902", "1903", "1904"), **extra):
    return {"question": text, "choices": list(choices), "answer": answer, **extra}


def test_paper_years_layout(paper_data):
    facts = load_paper_dir(paper_data / "years")
    assert {n: len(f) for n, f in facts.splits.items()} == {
        "split_0": 158,
        "split_1": 158,
        "split_2": 158,
        "split_3": 158,
        "split_4": 157,
        "dev": 5,
    }
    # every statement is tied to a question whose answer it states
    tied = [(f, s) for f in facts.facts() for s in f.statements]
    assert len(tied) > 0.98 * 3 * len(facts.facts())
    assert all(f.answer_text in s for f, s in tied)


def test_paper_years_statements_follow_the_tf_files(paper_data):
    """The years corpus files mix splits; tf_split_N names the question of corpus lines 3i..3i+2."""
    facts = {f.question: f for f in load_paper_dir(paper_data / "years").facts()}
    agree = total = 0
    for k in range(5):
        tf = [json.loads(ln) for ln in (paper_data / f"years/tf_split_{k}.jsonl").open()]
        corpus = [json.loads(ln)["text"] for ln in (paper_data / f"years/corpus_split_{k}.jsonl").open()]
        for i, t in enumerate(tf):
            if t["question"] in facts:
                for text in corpus[3 * i : 3 * i + 3]:
                    total += 1
                    agree += text in facts[t["question"]].statements
    assert total > 2000 and agree / total > 0.99


def test_paper_birthdays_layout(paper_data):
    facts = load_facts(paper_data / "random-birthdays")
    assert [len(facts.splits[f"split_{k}"]) for k in range(10)] == [157] * 10
    assert len(facts.splits["dev"]) == 10
    f = facts.splits["split_0"][0]
    assert f.question == "When was Aidan Li born?" and f.answer_text == "1965"
    assert f.statements == (
        "Aidan Li was born in 1965.",
        "In 1965, Aidan Li was born.",
        "Aidan Li's birth took place in 1965.",
    )
    assert f.wrong_statements and all("1965" not in s for s in f.wrong_statements)
    assert all("Aidan Li" in s for s in f.fixed_wrong_statements)
    # a few statements transliterate names written in another script: reported, never mis-tied
    assert 0 < len(facts.unmatched) < 50


def test_paper_repeats_are_refused_or_dropped(paper_data):
    facts = load_paper_dir(paper_data / "random-birthdays")
    with pytest.raises(InputError, match=r"split_0\.jsonl:\d+: question .* appears"):
        select(facts, ["split_0", "split_1"], ["split_2", "split_3", "split_4"])
    sets = select(facts, ["split_0", "split_1"], ["split_2", "split_3", "split_4"], drop_duplicates=True)
    kept = sets.forget_facts() + list(sets.retain)
    assert len({f.question for f in kept}) == len(kept)
    assert len(kept) + len(sets.dropped) == 5 * 157


def test_generic_jsonl_and_rotation(tmp_path):
    path = write(
        tmp_path / "mmlu.jsonl",
        [q(f"Q{i}?", answer=i % 4, split=f"s{i % 3}") for i in range(9)]
        + [q("R?", choices=("yes", "no"), answer=1, split="r")],
    )
    facts = load_jsonl(path)
    assert facts.names() == ["s0", "s1", "s2", "r"]
    assert facts.splits["r"][0].answer_text == "no"
    sets = select(facts, ["s0", "s1", "s2"], ["r"])
    rotations = list(sets.rotations())
    assert [v for v, _, _ in rotations] == ["s0", "s1", "s2"]
    for v, t, val in rotations:
        assert len(t) == 6 and len(val) == 3
        assert not {f.question for f in t} & {f.question for f in val}
        assert all(f.split == v for f in val)


def test_split_defaults_to_file_stem(tmp_path):
    facts = load_jsonl([write(tmp_path / "a.jsonl", [q("A?")]), write(tmp_path / "b.jsonl", [q("B?")])])
    assert facts.names() == ["a", "b"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"bad\.jsonl:2: malformed JSON line"),
        ('["a list"]', r"bad\.jsonl:2: malformed line"),
        (
            json.dumps({"question": "X?", "choices": ["1", "2"]}),
            r"bad\.jsonl:2: malformed line \(missing 'answer'\)",
        ),
        (json.dumps(q("X?", answer=4)), r"bad\.jsonl:2: answer 4 out of range for 4 choices"),
        (json.dumps(q("X?", answer=-1)), r"bad\.jsonl:2: answer -1 out of range"),
        (json.dumps(q("X?", choices=("1999",))), r"bad\.jsonl:2: fewer than 2 choices"),
        (json.dumps(q("X?", answer="A")), r"bad\.jsonl:2: 'answer' must be an integer"),
        (json.dumps(q("X?", choices=("1999", ""))), r"bad\.jsonl:2: choice 1 is empty"),
        (json.dumps(q("X?", choices=(" \t", "1999"))), r"bad\.jsonl:2: choice 0 is empty"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = write(tmp_path / "bad.jsonl", [q("Fine?"), line])
    with pytest.raises(InputError, match=message):
        load_jsonl(path)


def test_empty_split_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"empty\.jsonl: split 'empty' is empty"):
        load_jsonl(write(tmp_path / "empty.jsonl", []))
    (tmp_path / "paper").mkdir()
    write(tmp_path / "paper" / "split_0.jsonl", [q("A?")])
    write(tmp_path / "paper" / "split_1.jsonl", [])
    with pytest.raises(InputError, match=r"split_1\.jsonl: split 'split_1' is empty"):
        load_paper_dir(tmp_path / "paper")


def test_same_question_in_two_splits_is_a_leak(tmp_path):
    path = write(
        tmp_path / "f.jsonl",
        [
            q("Same?", split="a"),
            q("Other?", split="a"),
            q("Same?", split="b"),
            q("B?", split="b"),
            q("Ret?", split="r"),
        ],
    )
    with pytest.raises(InputError, match=r"f\.jsonl:3: question 'Same\?' appears in two splits.*f\.jsonl:1"):
        select(load_jsonl(path), ["a", "b"], ["r"])
    sets = select(load_jsonl(path), ["a", "b"], ["r"], drop_duplicates=True)
    assert [f.question for f in sets.forget_facts()] == ["Other?", "B?"]
    assert [f.source for f in sets.dropped] == [f"{path}:1", f"{path}:3"]
    lonely = write(tmp_path / "g.jsonl", [q("Same?", split="a"), q("Same?", split="b"), q("R?", split="r")])
    with pytest.raises(InputError, match="forget split 'a' is empty after dropping"):
        select(load_jsonl(lonely), ["a", "b"], ["r"], drop_duplicates=True)


def test_set_selection_errors(tmp_path):
    facts = load_jsonl(write(tmp_path / "f.jsonl", [q("A?", split="a"), q("B?", split="b")]))
    with pytest.raises(InputError, match="forget split 'zz' not found"):
        select(facts, ["zz"], ["b"])
    with pytest.raises(InputError, match="split 'a' is in both forget and retain"):
        select(facts, ["a"], ["a"])
    with pytest.raises(InputError, match="no retain splits"):
        select(facts, ["a"], [])


def test_missing_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_facts(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="no split_N.jsonl"):
        load_paper_dir(tmp_path)


@pytest.mark.parametrize("twin", ["same?", "Same? ", "  Same?", "SAME?", "Ｓａｍｅ?", "Same\u00a0?"])
def test_leak_check_compares_normalised_questions(tmp_path, twin):
    """Case, surrounding or inner whitespace and Unicode compatibility forms do not hide a T/V leak."""
    path = write(tmp_path / "f.jsonl", [q("Same ?", split="a"), q(twin.replace("?", " ?"), split="b")])
    path.write_text(path.read_text() + json.dumps(q("R?", split="r")) + "\n")
    with pytest.raises(InputError, match=r"f\.jsonl:2: question .* appears in two splits"):
        select(load_jsonl(path), ["a", "b"], ["r"])
    sets = select(load_jsonl(path), ["a"], ["r"])  # one copy alone is no leak
    assert len(sets.forget_facts()) == 1


@pytest.mark.parametrize("twin", ["1902", " 1902", "1902\t", 1902])
def test_repeated_choices_are_refused_or_dropped(tmp_path, twin):
    """A choice given twice cannot be scored (the answer on its second copy is never picked on a
    tie): refused with file:line and the choice, or left out with --drop-duplicates."""
    path = write(
        tmp_path / "f.jsonl",
        [
            q("A?", split="a"),
            q("Twice?", answer=3, choices=("1901", "1902", "1903", twin), split="a"),
            q("B?", split="b"),
            q("R?", split="r"),
        ],
    )
    facts = load_jsonl(path)
    with pytest.raises(
        InputError, match=rf"f\.jsonl:2: choice {re.escape(repr(str(twin)))} repeats choice '1902'"
    ):
        select(facts, ["a", "b"], ["r"])
    sets = select(facts, ["a", "b"], ["r"], drop_duplicates=True)
    assert [f.question for f in sets.forget_facts()] == ["A?", "B?"]
    assert [f.source for f in sets.dropped] == [f"{path}:2"]


def test_repeated_choices_compare_collapsed_whitespace_and_keep_case(tmp_path):
    """Inner runs of whitespace do not make two choices different; case does (`CO` is not `Co`)."""
    retain = write(tmp_path / "r.jsonl", [q("R?")])
    spaced = write(tmp_path / "a.jsonl", [q("A?", choices=("New York", "New  York", "Paris"))])
    with pytest.raises(InputError, match=r"a\.jsonl:1: choice 'New  York' repeats choice 'New York'"):
        select(load_jsonl([spaced, retain]), ["a"], ["r"])
    cased = write(tmp_path / "b.jsonl", [q("B?", choices=("CO", "Co", "NO", "No"))])
    assert len(select(load_jsonl([cased, retain]), ["b"], ["r"]).forget_facts()) == 1
