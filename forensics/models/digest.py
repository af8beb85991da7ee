"""Content digests: the one place that says what a checkpoint, a fact list or a resume key is made of.

Every cache and resume key in the toolkit is built here, so a result is reused only when everything
that determines it is the same: the checkpoint's weights *and* config.json *and* tokenizer files,
the facts' content, the settings, and `CODE_VERSION` (bumped whenever a change moves results).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from forensics.models.checkpoint import TOKENIZER_FILES, weight_files

# Bump when a change to the code changes any number it writes: older cached results are then stale.
CODE_VERSION = 7  # 7: fused AdamW (float-level differences in every trained number); 6: batches by length
# Every file beside the weights that changes what a checkpoint computes or how its text is tokenized.
CONFIG_FILES = (
    "config.json",
    *TOKENIZER_FILES,
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
_FILE_HASHES: dict[tuple, str] = {}


def file_digest(path: Path) -> str:
    """blake2b of a file's bytes, remembered per (path, size, mtime) within the process."""
    path = Path(path)
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _FILE_HASHES:
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
        _FILE_HASHES[memo] = h.hexdigest()
    return _FILE_HASHES[memo]


def checkpoint_digest(path: Path) -> str:
    """Content hash of a checkpoint directory: every weight file, config.json and the tokenizer files."""
    path = Path(path)
    parts = [f"{f.name}:{file_digest(f)}" for f in weight_files(path)]
    parts += [f"{name}:{file_digest(path / name)}" for name in CONFIG_FILES if (path / name).is_file()]
    return key(parts)


def weights_digest(model) -> str:
    """Content hash of an in-memory model's parameters, buffers and config (not read from disk)."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    h.update(model.config.to_json_string().encode() if hasattr(model, "config") else b"")
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def facts_digest(facts: Iterable) -> str:
    """Content hash of facts in order: split, question, choices, answer, every statement and kind."""
    return key(
        [
            (
                f.split,
                f.question,
                f.choices,
                f.answer,
                f.statements,
                f.wrong_statements,
                f.fixed_wrong_statements,
                f.kind,
            )
            for f in facts
        ]
    )


def key(*parts) -> str:
    """A 32-hex-digit key of JSON-serialisable parts, with `CODE_VERSION` folded in."""
    blob = json.dumps([CODE_VERSION, *parts], sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()
