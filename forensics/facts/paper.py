"""The paper's layout (Deeb & Roger, 2024): split_N.jsonl questions, each matched to its corpus
statements (and wrong statements) by the words they share."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from forensics.errors import InputError
from forensics.facts.core import Fact, FactSet, check_unicode, parse_question
from forensics.facts.files import read_json_lines

_STOPWORDS = {
    "the",
    "was",
    "when",
    "did",
    "following",
    "event",
    "happen",
    "and",
    "born",
    "year",
    "its",
    "his",
    "her",
    "for",
    "with",
    "that",
    "this",
    "took",
    "place",
    "which",
    "from",
    "into",
    "came",
    "world",
    "birth",
    "occurred",
    "what",
}


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[^\W\d_]{3,}", text.lower()) if w not in _STOPWORDS}


def _match(
    record: dict,
    text: str,
    facts: list[Fact],
    words: list[set[str]],
    by_answer: dict[str, list[int]],
    hint: int,
) -> int:
    """Index of the question a corpus statement belongs to, or -1.

    Candidates are the questions whose correct answer the record names (`correct_answer`) or the
    text states; `original_question` narrows them further; the most words shared with the question
    picks among them (at least one when the question has any), ties going to the question nearest
    after the previous match (files list a fact's statements together).
    """
    if "correct_answer" in record:
        cands = list(by_answer.get(str(record["correct_answer"]), []))
    else:
        cands = [
            i
            for answer, idx in by_answer.items()
            if re.search(rf"(?<![\w]){re.escape(answer)}(?![\w])", text)
            for i in idx
        ]
    if "original_question" in record:
        cands = [i for i in cands if facts[i].question == record["original_question"]]
    text_words = _words(text)
    cands = [i for i in cands if not words[i] or words[i] & text_words]
    if not cands:
        return -1
    return max(cands, key=lambda i: (len(words[i] & text_words), -((i - hint) % len(facts))))


def _attach_corpus(facts: list[Fact], paths: list[Path], kind: str) -> tuple[list[Fact], list[str]]:
    """Tie each statement of the corpus files to its question, wherever that question's split is.

    The paper's `years` corpus files mix facts of every split, so statements are matched by content,
    not by file. Returns the facts with statements attached and the `file:line` of any that fit none.
    """
    words = [_words(f.question) for f in facts]
    by_answer: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(facts):
        by_answer[f.answer_text].append(i)
    found: list[list[str]] = [[] for _ in facts]
    unmatched: list[str] = []
    hint = 0
    for path in paths:
        for where, record in read_json_lines(path):
            text = record.get("text")
            if not isinstance(text, str):
                raise InputError(f"{where}: malformed line (missing 'text')")
            check_unicode(text, where)
            i = _match(record, text, facts, words, by_answer, hint)
            if i < 0:
                unmatched.append(where)
                continue
            found[i].append(text)
            hint = i
    return [replace(f, **{kind: tuple(s)}) for f, s in zip(facts, found, strict=True)], unmatched


def load_paper_dir(root: Path) -> FactSet:
    """Load the Deeb & Roger (2024) layout: `split_N.jsonl` (+ `dev.jsonl`) with statements attached."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    files = sorted(root.glob("split_*.jsonl"), key=lambda p: (len(p.stem), p.stem))
    if (root / "dev.jsonl").exists():
        files.append(root / "dev.jsonl")
    if not files:
        raise InputError(f"{root}: no split_N.jsonl files (not the paper's data layout)")
    facts: list[Fact] = []
    for path in files:
        split = [parse_question(r, path.stem, where) for where, r in read_json_lines(path)]
        if not split:
            raise InputError(f"{path}: split '{path.stem}' is empty")
        facts += split
    unmatched: list[str] = []
    for prefix, kind in (
        ("corpus_", "statements"),
        ("whp_corpus_", "wrong_statements"),
        ("fwf_corpus_", "fixed_wrong_statements"),
    ):
        paths = [root / f"{prefix}{p.name}" for p in files if (root / f"{prefix}{p.name}").exists()]
        facts, missed = _attach_corpus(facts, paths, kind)
        unmatched += missed
    splits: dict[str, list[Fact]] = defaultdict(list)
    for f in facts:
        splits[f.split].append(f)
    return FactSet({n: tuple(f) for n, f in splits.items()}, unmatched=tuple(unmatched))
