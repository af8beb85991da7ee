"""Facts: independent multiple-choice questions grouped in splits, their loaders and the forget/retain sets.

Two on-disk layouts load into the same `FactSet`: the Deeb & Roger (2024) folder layout
(`split_N.jsonl` + `corpus_`/`whp_corpus_`/`fwf_corpus_split_N.jsonl` + `dev.jsonl`) and a generic
JSONL of `{"question", "choices", "answer"}` lines (WMDP/MMLU style, optional `split`).
"""

from __future__ import annotations

import json
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from forensics.errors import InputError
from forensics.facts.files import read_records, split_name
from forensics.outdir import write_atomic

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Fact:
    """One multiple-choice question; `source` is `file:line`, used in error messages."""

    question: str
    choices: tuple[str, ...]
    answer: int
    split: str
    statements: tuple[str, ...] = ()
    wrong_statements: tuple[str, ...] = ()
    fixed_wrong_statements: tuple[str, ...] = ()
    source: str = ""
    kind: str = ""  # how the model came to know it: e.g. "pretrained" or "implanted" (docs/design.md §3)

    @property
    def answer_text(self) -> str:
        return self.choices[self.answer]

    def to_json(self) -> dict:
        """The generic JSONL record of this fact (what `load_jsonl` reads back)."""
        record = {
            "question": self.question,
            "choices": list(self.choices),
            "answer": self.answer,
            "split": self.split,
        }
        for name in ("statements", "wrong_statements", "fixed_wrong_statements"):
            if getattr(self, name):
                record[name] = list(getattr(self, name))
        if self.kind:
            record["kind"] = self.kind
        return record


@dataclass(frozen=True)
class FactSet:
    """Facts by split name, in file order."""

    splits: Mapping[str, tuple[Fact, ...]]
    unmatched: tuple[str, ...] = ()  # `file:line` of corpus statements that fit no question

    def names(self) -> list[str]:
        return list(self.splits)

    def facts(self, names: Sequence[str] | None = None) -> list[Fact]:
        names = self.names() if names is None else names
        return [f for n in names for f in self.splits[n]]


@dataclass(frozen=True)
class Sets:
    """The experiment's sets: forget splits (rotated as T/V), near-retain and retain facts, and,
    where no model that never learned the forget facts can exist (pretrained knowledge), control
    splits: facts of the same kind the original does not know, one split beside each forget split,
    scored by the same lens runs as V (what a lens finds where there is nothing to find)."""

    forget: Mapping[str, tuple[Fact, ...]]
    retain: tuple[Fact, ...]
    near_retain: tuple[Fact, ...] = ()
    dropped: tuple[Fact, ...] = field(default=())
    control: Mapping[str, tuple[Fact, ...]] = field(default_factory=dict)

    def forget_facts(self) -> list[Fact]:
        return [f for facts in self.forget.values() for f in facts]

    def control_facts(self) -> list[Fact]:
        return [f for facts in self.control.values() for f in facts]

    def control_of(self, v: str) -> list[Fact]:
        """The control split beside forget split `v` (the same position in their orders)."""
        return list(list(self.control.values())[list(self.forget).index(v)])

    def rotations(self) -> Iterator[tuple[str, list[Fact], list[Fact]]]:
        """Yield (V split name, T facts, V facts) with every forget split taking its turn as V."""
        for v in self.forget:
            t = [f for name, facts in self.forget.items() if name != v for f in facts]
            yield v, t, list(self.forget[v])


def write_jsonl(facts: Sequence[Fact], path: Path) -> None:
    """Write facts as generic JSONL (one record per line, with its split), atomically."""
    write_atomic(Path(path), "".join(json.dumps(f.to_json(), ensure_ascii=False) + "\n" for f in facts))


def _str_list(record: dict, key: str, where: str) -> tuple[str, ...]:
    value = record.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: '{key}' must be a list of strings")
    for v in value:
        check_unicode(v, where)
    return tuple(value)


def check_unicode(text: str, where: str) -> None:
    """Refuse text that is not valid Unicode (a lone surrogate from a JSON escape such as "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{where}: text {text[:40]!r} holds a lone surrogate (not valid Unicode)") from None


def normalized(question: str) -> str:
    """A question as the leak check compares it: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", question).casefold().split())


def parse_question(record: dict, split: str, where: str) -> Fact:
    for key in ("question", "choices", "answer"):
        if key not in record:
            raise InputError(f"{where}: malformed line (missing '{key}')")
    question, choices, answer = record["question"], record["choices"], record["answer"]
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{where}: 'question' must be a non-empty string")
    if not isinstance(choices, list) or not all(isinstance(c, str | int) for c in choices):
        raise InputError(f"{where}: 'choices' must be a list of strings or integers")
    if len(choices) < 2:
        raise InputError(f"{where}: fewer than 2 choices ({len(choices)})")
    if len(choices) > len(LETTERS):
        raise InputError(f"{where}: more than {len(LETTERS)} choices ({len(choices)})")
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise InputError(f"{where}: 'answer' must be an integer index")
    if not 0 <= answer < len(choices):
        raise InputError(f"{where}: answer {answer} out of range for {len(choices)} choices")
    texts = tuple(str(c) for c in choices)
    for value in (question, *texts):
        check_unicode(value, where)
    empty = [i for i, text in enumerate(texts) if not text.strip()]
    if empty:
        raise InputError(f"{where}: choice {empty[0]} is empty (every choice must hold some text)")
    kind = record.get("kind", "")
    if not isinstance(kind, str):
        raise InputError(f"{where}: 'kind' must be a string")
    return Fact(
        kind=kind,
        question=question,
        choices=texts,
        answer=answer,
        split=split,
        source=where,
        statements=_str_list(record, "statements", where),
        wrong_statements=_str_list(record, "wrong_statements", where),
        fixed_wrong_statements=_str_list(record, "fixed_wrong_statements", where),
    )


def _choice_key(text: str) -> str:
    """A choice as the repeat check compares it: surrounding whitespace stripped, inner runs collapsed.

    Case counts: `CO` and `Co`, `NO` and `No` are different answers (WMDP chemistry).
    """
    return " ".join(text.split())


def _repeated_choice(fact: Fact) -> tuple[str, str] | None:
    """(first copy, second copy) of the first choice `fact` gives twice (by `_choice_key`), or None.

    A repeated choice cannot be scored: a copy of the answer is never the one picked on a tie.
    """
    seen: dict[str, str] = {}
    for text in fact.choices:
        if _choice_key(text) in seen:
            return seen[_choice_key(text)], text
        seen[_choice_key(text)] = text
    return None


def repeats_a_choice(fact: Fact) -> bool:
    """True when `fact` gives one choice twice (it cannot be scored)."""
    return _repeated_choice(fact) is not None


def check_choices(facts: Iterable[Fact], remedy: str) -> None:
    """Refuse the first fact whose choices repeat, naming its `file:line`, the choice and `remedy`."""
    for f in facts:
        copies = _repeated_choice(f)
        if copies is not None:
            first, second = copies
            raise InputError(
                f"{f.source}: choice {second!r} repeats choice {first!r} (compared with surrounding and "
                f"repeated whitespace ignored; case counts), so the question cannot be scored; {remedy}"
            )


def _one_file_per_split(paths: Sequence[Path]) -> None:
    """Refuse two files whose names give the same split (`good.jsonl` beside `good.parquet`): the same
    facts would be counted twice in it."""
    first: dict[str, Path] = {}
    for path in paths:
        name = split_name(path)
        if name in first:
            raise InputError(
                f"{first[name]} and {path}: both files give split '{name}' (from their names); keep one"
            )
        first[name] = path


def load_jsonl(paths: Path | Sequence[Path], seed: int = 0) -> FactSet:
    """Load fact files (generic or lm-eval-style JSONL, parquet, TOFU JSON; see `fact_files`); a
    record's `split` field names its split, else the file's name does.

    Two files whose names give one split are refused; a split that records name in their `split`
    field may gather records of several files (a data set in shards), and a question copied among
    them is refused by `select` as asked twice in one split.
    """
    paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    _one_file_per_split(paths)
    splits: dict[str, list[Fact]] = {}
    for path in paths:
        before = sum(map(len, splits.values()))
        for where, record in read_records(path, seed):
            split = record.get("split", split_name(path))
            if not isinstance(split, str) or not split:
                raise InputError(f"{where}: 'split' must be a non-empty string")
            check_unicode(split, where)
            splits.setdefault(split, []).append(parse_question(record, split, where))
        if sum(map(len, splits.values())) == before:
            raise InputError(f"{path}: split '{split_name(path)}' is empty (no questions)")
    return FactSet({n: tuple(f) for n, f in splits.items()})


def assign_kinds(facts: FactSet, kinds: Mapping[str, Sequence[str]]) -> FactSet:
    """`facts` with each split named in `kinds` (kind -> splits) given that kind; a split that is not
    there, or is given two kinds, is refused."""
    owner: dict[str, str] = {}
    for kind, splits in kinds.items():
        for split in splits:
            if split not in facts.splits:
                raise InputError(
                    f"kind '{kind}': split '{split}' not found (have: {', '.join(facts.names())})"
                )
            if split in owner:
                raise InputError(f"split '{split}' is given two kinds ('{owner[split]}' and '{kind}')")
            owner[split] = kind
    return FactSet(
        {
            n: tuple(replace(f, kind=owner[n]) if n in owner else f for f in fs)
            for n, fs in facts.splits.items()
        },
        unmatched=facts.unmatched,
    )


def select(
    facts: FactSet,
    forget: Sequence[str],
    retain: Sequence[str],
    near_retain: Sequence[str] = (),
    drop_duplicates: bool = False,
    control: Sequence[str] = (),
) -> Sets:
    """Build the experiment's sets from split names, refusing a question asked twice (a T/V leak)
    and a question whose choices repeat (it cannot be scored).

    With `drop_duplicates`, every copy of a repeated question, and every question whose choices
    repeat, is left out instead and recorded in `Sets.dropped` (the paper's own files repeat a few
    questions across splits, and `random-birthdays` lists a year twice among the choices of a few).
    """
    groups = {
        "forget": list(forget),
        "retain": list(retain),
        "near_retain": list(near_retain),
        "control": list(control),
    }
    if not groups["forget"]:
        raise InputError("no forget splits given")
    if control and len(control) != len(forget):
        raise InputError(f"{len(control)} control splits for {len(forget)} forget splits (one beside each)")
    if not groups["retain"]:
        raise InputError("no retain splits given")
    seen: dict[str, str] = {}
    for group, names in groups.items():
        for name in names:
            if name not in facts.splits:
                raise InputError(f"{group} split '{name}' not found (have: {', '.join(facts.names())})")
            if name in seen:
                raise InputError(f"split '{name}' is in both {seen[name]} and {group}")
            seen[name] = group
    chosen = facts.facts(list(seen))
    by_question: dict[str, list[Fact]] = defaultdict(list)
    for f in chosen:
        by_question[normalized(f.question)].append(f)
    repeated = {q for q, fs in by_question.items() if len(fs) > 1}
    if repeated and not drop_duplicates:
        q = next(q for q in by_question if q in repeated)
        a, b = by_question[q][:2]
        kind = "in two splits: a T/V leak" if a.split != b.split else "twice in one split"
        raise InputError(
            f"{b.source}: question {b.question!r} appears {kind} (also {a.source}, as {a.question!r}); "
            "remove it, or drop repeated questions (--drop-duplicates)"
        )
    if not drop_duplicates:
        check_choices(chosen, "remove the copy, or drop such questions (--drop-duplicates)")

    def left_out(f: Fact) -> bool:
        return normalized(f.question) in repeated or repeats_a_choice(f)

    def keep(names: list[str]) -> dict[str, tuple[Fact, ...]]:
        return {n: tuple(f for f in facts.splits[n] if not left_out(f)) for n in names}

    forget_sets = keep(groups["forget"])
    for name, kept in forget_sets.items():
        if not kept:
            raise InputError(f"forget split '{name}' is empty after dropping duplicates")
    retain_facts = tuple(f for fs in keep(groups["retain"]).values() for f in fs)
    if not retain_facts:
        raise InputError("retain set is empty after dropping duplicates")
    control_sets = keep(groups["control"])
    for name, kept in control_sets.items():
        if not kept:
            raise InputError(f"control split '{name}' is empty after dropping duplicates")
    return Sets(
        forget=forget_sets,
        retain=retain_facts,
        near_retain=tuple(f for fs in keep(groups["near_retain"]).values() for f in fs),
        dropped=tuple(f for f in chosen if left_out(f)),
        control=control_sets,
    )
