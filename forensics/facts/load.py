"""Facts from wherever they are: a paper-layout folder, a folder of fact files or one file."""

from __future__ import annotations

from pathlib import Path

from forensics.errors import InputError
from forensics.facts import files as fact_files
from forensics.facts.core import FactSet, load_jsonl
from forensics.facts.files import SUFFIXES
from forensics.facts.paper import load_paper_dir


def load_facts(path: Path, partition: int | None = None, seed: int = 0) -> FactSet:
    """Load a paper-layout folder, a folder of fact files (one split per file) or one fact file,
    whichever `path` is; with `partition`, every split is dealt into that many parts in an order drawn
    from `seed` (`{split}_{i}`)."""
    path = Path(path)
    if path.is_dir() and any(path.glob("split_*.jsonl")):
        facts = load_paper_dir(path)
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
        if not files:
            raise InputError(f"{path}: no fact files ({', '.join(SUFFIXES)}) and no split_N.jsonl")
        facts = load_jsonl(files, seed)
    elif not path.exists():
        raise InputError(f"{path}: no such file or directory")
    else:
        facts = load_jsonl(path, seed)
    if partition is None:
        return facts
    parts = fact_files.partition({n: list(f) for n, f in facts.splits.items()}, partition, seed)
    return FactSet({n: tuple(f) for n, f in parts.items()}, unmatched=facts.unmatched)
