"""`forensics import`: a GGUF causal LM to a checkpoint directory (named so: `import` is a keyword)."""

from __future__ import annotations

import argparse
from pathlib import Path

from forensics.cli.args import FORCE
from forensics.errors import InputError


def cmd_import(a: argparse.Namespace) -> None:
    from forensics.models.checkpoint import check_writable, read_metadata
    from forensics.models.gguf import import_gguf

    if not a.out.strip():
        raise InputError("--out: an empty path; name the checkpoint folder to write")
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if out.is_symlink() and not out.exists():
        raise InputError(f"{out}: a link to nothing; name a folder")
    if out.is_dir() and any(out.iterdir()) and not a.force:
        if read_metadata(out).get("made_by") != "forensics import":
            raise InputError(
                f"{out}: not empty and not a checkpoint forensics import made; choose another, or --force"
            )
    check_writable(out)
    meta = import_gguf(Path(a.gguf), out, a.dtype)
    print(
        f"imported {a.gguf} ({meta['architecture']}, {meta['source_quantization']}, "
        f"{meta['parameters'] / 1e6:.1f}M parameters) into {out} as {meta['dtype']} in {meta['seconds']} s"
    )


def add(subparsers) -> None:
    im = subparsers.add_parser("import", help="a GGUF causal LM → a checkpoint directory (safetensors)")
    im.add_argument("gguf", help="a .gguf file (any quantization: dequantized on import)")
    im.add_argument("--out", required=True, help="the checkpoint directory to write")
    im.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    im.add_argument("--force", **FORCE)
    im.set_defaults(func=cmd_import)
