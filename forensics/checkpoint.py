"""HF causal-LM checkpoint directories: the one loader and saver, metadata, TransformerBridge boot.

Loading reads safetensors only, offline, and never enables remote code. Every problem with a
directory (missing files, corrupt or truncated safetensors, NaN/Inf weights) is an `InputError`
naming the file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from forensics.errors import InputError

METADATA = "forensics.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when there is one; asking for `cuda` where there is none is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device on this machine")
    if name != "cpu" and not name.startswith("cuda"):
        raise InputError(f"--device {name}: choose auto, cpu or cuda")
    return torch.device(name)


def resolve_dtype(name: str = "float32") -> torch.dtype:
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in dtypes:
        raise InputError(f"--dtype {name}: choose {', '.join(dtypes)}")
    return dtypes[name]


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint: the single file or every shard of the index."""
    path = Path(path)
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.exists():
        return [single]
    if index.exists():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError, UnicodeDecodeError):
            raise InputError(f"{index}: malformed safetensors index") from None
        for s in shards:
            if not isinstance(s, str) or Path(s).name != s or s in ("", ".", ".."):
                raise InputError(f"{index}: shard {s!r} is not a file name inside the checkpoint folder")
        files = [path / s for s in shards]
        for f in files:
            if not f.exists():
                raise InputError(f"{f}: shard named by {index.name} is missing")
        return files
    raise InputError(f"{path}: no model.safetensors (or index); only safetensors checkpoints load")


def check_dir(path: Path) -> None:
    """Refuse a directory that is not a complete HF causal-LM checkpoint, naming what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: checkpoint directory not found")
    config = path / "config.json"
    if not config.exists():
        raise InputError(f"{config}: missing (not an HF checkpoint directory)")
    read_json(config)
    if not any((path / f).exists() for f in TOKENIZER_FILES):
        raise InputError(f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    for f in weight_files(path):
        try:
            with safe_open(f, framework="pt") as handle:
                handle.keys()
        except Exception as e:  # safetensors raises its own error types for bad headers/sizes
            raise InputError(f"{f}: corrupt or truncated safetensors ({e})") from None


def load_tokenizer(path: Path):
    """The checkpoint's tokenizer, with a pad token (EOS when it defines none); never remote code."""
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as e:  # transformers raises many types for a tokenizer it cannot build
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{path}: cannot load the tokenizer ({first[:200]})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_checkpoint(path: Path, device: str = "cpu", dtype: str = "float32"):
    """(model, tokenizer) of an HF checkpoint directory, in eval mode, weights checked finite."""
    path = Path(path)
    check_dir(path)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            str(path),
            local_files_only=True,
            use_safetensors=True,
            trust_remote_code=False,
            dtype=resolve_dtype(dtype),
            output_loading_info=True,
        )
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot load checkpoint ({str(e).splitlines()[0]})") from None
    except RuntimeError:  # a tensor's shape disagrees with config.json
        raise InputError(_shape_mismatch(path)) from None
    for kind, what in (
        ("missing_keys", "missing from the safetensors (config.json's model needs it)"),
        ("unexpected_keys", "in the safetensors is not part of config.json's model"),
    ):
        if info.get(kind):
            names = sorted(info[kind])
            more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
            raise InputError(f"{path}: tensor '{names[0]}'{more} {what}")
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise InputError(f"{path}: tensor '{name}' holds NaN or Inf")
    model.to(resolve_device(device)).eval()
    return model, load_tokenizer(path)


def tensor_headers(path: Path) -> Iterator[tuple[Path, str, list[int]]]:
    """(file, tensor name, shape) of every tensor, read from the safetensors headers (no weights)."""
    for f in weight_files(path):
        with safe_open(f, framework="pt") as handle:
            for name in handle.keys():
                yield f, name, list(handle.get_slice(name).get_shape())


def _shape_mismatch(path: Path) -> str:
    """The first tensor whose stored shape disagrees with the model config.json describes."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    for f, name, shape in tensor_headers(path):
        if name in expected and shape != expected[name]:
            return f"{f}: tensor '{name}' has shape {shape}, config.json implies {expected[name]}"
    return f"{path}: the weights do not fit config.json"


def read_json(path: Path) -> dict:
    """A JSON file as a dict; an InputError naming the file when it is missing or malformed."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: malformed JSON ({e.msg})") from None


def read_metadata(path: Path) -> dict:
    """The forensics metadata beside a checkpoint ({} for a checkpoint made elsewhere)."""
    meta = Path(path) / METADATA
    return read_json(meta) if meta.exists() else {}


def write_json(data: dict, path: Path) -> None:
    """Write JSON atomically (temporary file + rename), so no reader sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def save_checkpoint(model, tokenizer, out: Path, metadata: dict) -> Path:
    """Save model (safetensors), tokenizer and metadata to `out`, atomically replacing it."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    write_json(metadata, tmp / METADATA)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def boot_bridge(path: Path, model=None, tokenizer=None, device: str = "cpu", dtype: str = "float32"):
    """A TransformerLens `TransformerBridge` over a checkpoint dir (reusing a loaded model if given)."""
    from transformer_lens.model_bridge import TransformerBridge

    if model is None:
        model, tokenizer = load_checkpoint(path, device, dtype)
    return TransformerBridge.boot_transformers(
        str(path),
        hf_model=model,
        tokenizer=tokenizer,
        device=str(resolve_device(device)),
        dtype=resolve_dtype(dtype),
        trust_remote_code=False,
    )
