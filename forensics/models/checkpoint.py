"""HF causal-LM checkpoint directories: the one loader and saver, metadata, TransformerBridge boot.

Loading reads safetensors only, offline, and never enables remote code. Every problem with a
directory (missing files, corrupt or truncated safetensors, NaN/Inf weights) is an `InputError`
naming the file.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from forensics.errors import InputError, check_stop
from forensics.models.runtime import Runtime, input_device, torch_device
from forensics.outdir import file_mode, write_atomic

METADATA = "forensics.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()


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
    """The checkpoint's tokenizer as it declares it (tokenizer_config.json's `tokenizer_class`, which
    AutoTokenizer would override with the model family's own class), with a pad token (EOS when it
    defines none); never remote code."""
    import transformers

    declared = _declared_tokenizer_class(Path(path))
    loader = getattr(transformers, declared, None) if declared else None
    try:
        tok = (loader or AutoTokenizer).from_pretrained(
            str(path), local_files_only=True, trust_remote_code=False
        )
    except Exception as e:  # transformers raises many types for a tokenizer it cannot build
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{path}: cannot load the tokenizer ({first[:200]})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _declared_tokenizer_class(path: Path) -> str | None:
    config = path / "tokenizer_config.json"
    if not config.exists():
        return None
    cls = read_json(config).get("tokenizer_class")
    if cls is not None and not (isinstance(cls, str) and cls.isidentifier()):
        raise InputError(f"{config}: 'tokenizer_class' must be a class name (got {cls!r})")
    return cls


def load_checkpoint(path: Path, runtime: Runtime = Runtime()):
    """(model, tokenizer) of an HF checkpoint directory, in eval mode, weights checked finite, placed
    as `runtime` says: on its device in its dtype, or spread by accelerate's `device_map`."""
    path = Path(path)
    check_dir(path)
    offload = _offload_folder() if runtime.device_map else None
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            str(path),
            local_files_only=True,
            use_safetensors=True,
            trust_remote_code=False,
            output_loading_info=True,
            **runtime.load_kwargs(path, offload),
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
    offloaded = set()
    for name, tensor in model.state_dict().items():
        if tensor.device.type == "meta":  # on disk under accelerate: checked as stored, below
            offloaded.add(name)
        elif tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise InputError(f"{path}: tensor '{name}' holds NaN or Inf")
    for f, name, tensor in _stored_tensors(path, offloaded):
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise InputError(f"{f}: tensor '{name}' holds NaN or Inf")
    placed = set(map(str, (getattr(model, "hf_device_map", None) or {}).values()))
    if placed == {"disk"}:
        raise InputError(f"{path}: max_memory leaves nothing of the model in memory (all of it on disk)")
    if not runtime.device_map and not runtime.quantize:
        model.to(torch_device(runtime.device))
    return model.eval(), load_tokenizer(path)


_LAST: dict = {}


def cached_checkpoint(path: Path, runtime: Runtime, digest: str):
    """`load_checkpoint`, keeping the last one loaded in this process: consecutive jobs on one
    checkpoint (same digest, same runtime) load it once. Callers must not change the model."""
    memo = (str(path), repr(runtime), digest)
    if memo not in _LAST:
        _LAST.clear()
        _LAST[memo] = load_checkpoint(path, runtime)
    return _LAST[memo]


def release_cached() -> None:
    """Drop the model `cached_checkpoint` keeps."""
    _LAST.clear()


def _stored_tensors(path: Path, names: set[str]) -> Iterator[tuple[Path, str, torch.Tensor]]:
    """The named tensors as stored, one at a time (only weights offloaded to disk are read again)."""
    if not names:
        return
    for f in weight_files(path):
        with safe_open(f, framework="pt") as handle:
            for name in handle.keys():
                if name in names:
                    yield f, name, handle.get_tensor(name)


_OFFLOAD: list[str] = []


def _offload_folder() -> Path:
    """A fresh folder for one model's disk-offloaded weights, removed when the process exits."""
    if not _OFFLOAD:
        _OFFLOAD.append(tempfile.mkdtemp(prefix="forensics-offload-"))
        atexit.register(shutil.rmtree, _OFFLOAD[0], True)
    return Path(tempfile.mkdtemp(dir=_OFFLOAD[0]))


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
    """A JSON file holding an object, as a dict; an InputError naming the file when it is missing,
    malformed (not UTF-8 text, a number too long to read or nesting too deep included) or holds
    anything but an object at the top."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: malformed JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: malformed JSON (not UTF-8 text: {e.reason} at byte {e.start})") from None
    except ValueError as e:  # after its subclasses above: an integer past Python's digit limit
        raise InputError(f"{path}: malformed JSON ({str(e).partition(':')[0]})") from None
    except RecursionError:
        raise InputError(f"{path}: malformed JSON (nested too deeply to read)") from None
    if not isinstance(data, dict):
        words = {list: "a list", str: "a string", bool: "true/false", type(None): "null"}
        got = words.get(type(data), "a number")
        raise InputError(f"{path}: malformed JSON (an object is expected, not {got})")
    return data


def read_metadata(path: Path) -> dict:
    """The forensics metadata beside a checkpoint ({} for a checkpoint made elsewhere); an InputError
    naming the file when it is unreadable or not an object."""
    meta = Path(path) / METADATA
    return read_json(meta) if meta.exists() else {}


def write_json(data: dict, path: Path) -> None:
    """Write JSON atomically (a temporary file of its own, renamed), so no reader sees half a file."""
    write_atomic(Path(path), json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def save_checkpoint(model, tokenizer, out: Path, metadata: dict) -> Path:
    """Save model (safetensors), tokenizer and metadata to `out`: written in a fresh folder beside it,
    then moved in (`install_checkpoint`). A disk that fills or refuses is one line, `out` untouched."""
    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        try:
            model.save_pretrained(str(tmp), safe_serialization=True)
            tokenizer.save_pretrained(str(tmp))
        except Exception as e:  # OSError, or safetensors' own error type for the same failed write
            raise InputError(f"{out}: cannot write the checkpoint ({_reason(e)})") from None
        write_json(
            {**metadata, "files": sorted({p.name for p in tmp.iterdir()} | {METADATA})}, tmp / METADATA
        )
        return install_checkpoint(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # made here; gone already when moved in whole


def _reason(e: Exception) -> str:
    """The first line of what a failed write said (errno's words where there is an errno)."""
    return getattr(e, "strerror", None) or (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def install_checkpoint(src: Path, out: Path, metadata: dict | None = None) -> Path:
    """Move the checkpoint a save wrote in `src` (every file its metadata's `files` lists; `metadata`,
    when given, replaces the rest of that metadata) into `out`: a new `out` whole, an existing one file
    by file, all or nothing — a failed move puts the old files back. Files an earlier save listed are
    replaced (those the new one lacks removed); a same-named file no save listed, or a folder in a
    file's place, is refused before anything moves; nothing else in `out` is touched."""
    src, out = Path(src), Path(out).absolute()
    written = read_metadata(src)["files"]
    if metadata is not None:
        write_json({**metadata, "files": written}, src / METADATA)
    for name in written:
        os.chmod(src / name, file_mode())
    if not out.exists():
        os.chmod(src, file_mode(folder=True))
        os.replace(src, out)
        return out
    earlier, listed = saved_files(out), listed_files(out)
    for name in written:
        target = out / name
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise InputError(f"{target}: is not a plain file; not replacing it")
        if target.exists() and name not in earlier:
            raise InputError(f"{target}: exists and was not written by forensics; not overwriting it")
    check_stop()  # a stop swallowed by a finalizer during the save still stops before the move
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    moved: list[str] = []
    try:
        for name in [*(n for n in written if n != METADATA), METADATA]:
            if (out / name).exists():
                os.replace(out / name, old / name)
            moved.append(name)
            os.replace(src / name, out / name)
    except BaseException:
        for name in reversed(moved):  # back as it was: the new files out, the old ones in
            if (out / name).exists() and not (src / name).exists():
                os.replace(out / name, src / name)
            if (old / name).exists():
                os.replace(old / name, out / name)
        with contextlib.suppress(OSError):  # an old file that could not go back stays there
            old.rmdir()
        raise
    shutil.rmtree(old)  # the replaced files of the earlier save, nothing else
    for name in (listed or set()) - set(written):  # only checkpoint files a save demonstrably wrote
        stale = out / name
        if LEGACY_FILES.fullmatch(name) and stale.is_file() and not stale.is_symlink():
            stale.unlink()
    return out


LEGACY_FILES = re.compile(
    r"(config|generation_config|special_tokens_map|added_tokens|vocab|tokenizer(_config)?)\.json"
    r"|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json|merges\.txt"
    r"|tokenizer\.model|chat_template\.jinja"
)


def check_writable(out: Path) -> None:
    """Refuse, before any work, a checkpoint folder holding a checkpoint file (config, weights,
    tokenizer) that no forensics save wrote: `save_checkpoint` would refuse to replace it."""
    out = Path(out)
    if not out.is_dir():
        return
    ours = saved_files(out)
    for p in sorted(out.iterdir()):
        if (LEGACY_FILES.fullmatch(p.name) or p.name == METADATA) and p.name not in ours:
            raise InputError(f"{p}: exists and was not written by forensics; not overwriting it")


def saved_files(folder: Path) -> set[str]:
    """The files an earlier `save_checkpoint` wrote in `folder`, which a new save may replace: those
    its metadata lists, or, for a save from before the list was kept, the standard checkpoint files
    beside its metadata; none where there is no forensics metadata."""
    listed = listed_files(folder)
    if listed is not None:
        return listed
    if not (Path(folder) / METADATA).is_file():
        return set()
    return {p.name for p in Path(folder).iterdir() if LEGACY_FILES.fullmatch(p.name)} | {METADATA}


def listed_files(folder: Path) -> set[str] | None:
    """The files the metadata in `folder` lists as its save's (None where it lists none): the only
    files a save may remove."""
    folder = Path(folder)
    if not (folder / METADATA).is_file():
        return None
    listed = read_metadata(folder).get("files")
    if listed is None:
        return None
    if not isinstance(listed, list) or not all(isinstance(n, str) and Path(n).name == n for n in listed):
        raise InputError(f"{folder / METADATA}: 'files' must be a list of file names")
    return set(listed) - {"", ".", ".."}


def boot_bridge(path: Path, model=None, tokenizer=None, runtime: Runtime = Runtime()):
    """A TransformerLens `TransformerBridge` over a checkpoint dir, or over a copy of `model` where it
    is (booting rewires the model it wraps: its parameters get the bridge's names, GPT-2's fused
    QKV split ones; a model the caller still uses must stay as it is)."""
    from transformer_lens.model_bridge import TransformerBridge

    if model is None:
        model, tokenizer = load_checkpoint(path, runtime)
    else:
        model = copy.deepcopy(model)
    tokenizer = tokenizer or load_tokenizer(path)
    bridge = TransformerBridge.boot_transformers(
        str(path),
        hf_model=model,
        tokenizer=tokenizer,
        device=None if getattr(model, "hf_device_map", None) else str(input_device(model)),
        dtype=next(model.parameters()).dtype,
        trust_remote_code=False,
    )
    # the bridge reloads the tokenizer through AutoTokenizer with a BOS added, which can pick the
    # family's class over the one the checkpoint declares (a Qwen2 model with its own BPE) or add a
    # BOS the model never saw (GPT-2): prompts are encoded by the checkpoint's own tokenizer, as the
    # scorers encode them. (The public setter would re-run that reload.)
    bridge._tokenizer = tokenizer
    if bridge.tokenizer is not tokenizer:
        raise RuntimeError("TransformerBridge keeps its tokenizer elsewhere: update boot_bridge")
    return bridge
