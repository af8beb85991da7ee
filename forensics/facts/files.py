"""Fact files in the field's formats, read as records of the generic shape (`question`, `choices`,
`answer` index, optional `split`) that `facts` parses.

- lm-eval-style multiple choice (WMDP, MMLU: `question`, `choices`, `answer`) as JSONL or parquet;
  extra fields (`subject`, …) are ignored.
- TOFU (`question`, `answer`, `perturbed_answer` list) as JSON lines, a JSON array or parquet: the
  choices are the answer and its perturbations in an order drawn per question from the seed (with the
  answer always first, ties in the choice scorer would favour it), and the split names drop TOFU's
  `_perturbed` suffix (`forget10_perturbed.json` → `forget10`, `retain_perturbed.json` → `retain`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from forensics.errors import InputError

SUFFIXES = (".jsonl", ".json", ".parquet")
TOFU_SUFFIX = "_perturbed"


def split_name(path: Path) -> str:
    """The split a file's records belong to when they do not name one: the file's stem (TOFU's
    `_perturbed` files without the suffix)."""
    stem = Path(path).stem
    return stem[: -len(TOFU_SUFFIX)] if stem.endswith(TOFU_SUFFIX) and len(stem) > len(TOFU_SUFFIX) else stem


def read_records(path: Path, seed: int = 0) -> Iterator[tuple[str, dict]]:
    """(where, record) for every record of a JSONL, JSON or parquet file, TOFU records turned into
    multiple choice; `where` is `file:line` (`file:row N` for parquet and JSON arrays)."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise InputError(f"{path}: unknown fact file type (use {', '.join(SUFFIXES)})")
    rows = _parquet(path) if path.suffix == ".parquet" else read_json_lines(path)
    for where, record in rows:
        yield where, _tofu(record, where, seed) if "perturbed_answer" in record else record


def read_json_lines(path: Path) -> Iterator[tuple[str, dict]]:
    """(where, record) of a JSONL file (or of a `.json` file holding one JSON array)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: malformed JSON ({e.msg} at line {e.lineno})") from None
        for i, record in enumerate(rows):
            if not isinstance(record, dict):
                raise InputError(f"{path}:row {i}: malformed record (expected a JSON object)")
            yield f"{path}:row {i}", record
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{number}: malformed JSON line ({e.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: malformed line (expected a JSON object)")
        yield f"{path}:{number}", record


def _parquet(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except OSError as e:
        raise InputError(f"{path}: cannot read parquet ({str(e).splitlines()[0][:120]})") from None
    except Exception as e:  # pyarrow raises its own error types for corrupt files
        raise InputError(f"{path}: corrupt parquet ({type(e).__name__})") from None
    for i, record in enumerate(rows):
        yield f"{path}:row {i}", record


def _tofu(record: dict, where: str, seed: int) -> dict:
    """A TOFU record as multiple choice over its answer and perturbed answers (a perturbed answer
    that repeats the answer is refused with every other repeated choice, by `facts.check_choices`)."""
    question, answer, perturbed = record.get("question"), record.get("answer"), record["perturbed_answer"]
    if not isinstance(answer, str) or not answer.strip():
        raise InputError(f"{where}: TOFU 'answer' must be a non-empty string")
    if not isinstance(perturbed, list) or not perturbed or not all(isinstance(p, str) for p in perturbed):
        raise InputError(f"{where}: TOFU 'perturbed_answer' must be a non-empty list of strings")
    choices = [answer, *perturbed]
    random.Random(f"{seed}\0{question}").shuffle(choices)
    out = {k: v for k, v in record.items() if k not in ("answer", "perturbed_answer", "paraphrased_answer")}
    return {**out, "question": question, "choices": choices, "answer": choices.index(answer)}


def partition(splits: dict[str, list], n: int, seed: int) -> dict[str, list]:  # facts: `Fact`s
    """Each split dealt into `n` parts `{split}_{i}` in an order drawn from the seed (RTT needs several
    forget splits; a benchmark file is one)."""
    if n < 2:
        raise InputError(f"'partition' must be at least 2 (got {n})")
    out: dict[str, list] = {}
    for name, facts in splits.items():
        if len(facts) < n:
            raise InputError(f"split '{name}' has {len(facts)} questions: too few for {n} parts")
        order = list(facts)
        random.Random(f"{seed}\0{name}").shuffle(order)
        for i in range(n):
            out[f"{name}_{i}"] = [replace(f, split=f"{name}_{i}") for f in order[i::n]]
    return out
