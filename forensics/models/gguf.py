"""`forensics import`: a GGUF causal LM → a checkpoint directory the toolkit loads (docs/design.md §11).

Small pretrained models are commonly shipped as GGUF. transformers reads GGUF through the `gguf`
package and dequantizes every tensor to float; a GGUF-loaded model counts as quantized and refuses
`save_pretrained`, so the weights go into a fresh model built from its config, saved as safetensors
with the tokenizer and metadata naming the source file, its digest and its quantization type.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from forensics.errors import InputError, check_stop
from forensics.models.checkpoint import save_checkpoint
from forensics.models.digest import file_digest
from forensics.models.runtime import DTYPES

MAGIC = b"GGUF"


def gguf_info(path: Path) -> dict:
    """What the GGUF file's header says: its architecture, name and quantization type; one-line
    errors for a file that is not GGUF or holds no language model transformers can read."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such GGUF file")
    with open(path, "rb") as f:
        if f.read(4) != MAGIC:
            raise InputError(f"{path}: not a GGUF file (no GGUF magic number)")
    try:
        import gguf
    except ImportError:
        raise InputError("forensics import needs the gguf package: pip install gguf") from None
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:  # the reader raises its own types for truncated or corrupt files
        raise InputError(
            f"{path}: unreadable GGUF ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None

    def field(name: str):
        f = reader.fields.get(name)
        return None if f is None else f.contents()

    architecture = field("general.architecture")
    file_type = field("general.file_type")
    try:
        quantization = gguf.LlamaFileType(file_type).name if file_type is not None else "unknown"
    except ValueError:
        quantization = f"file type {file_type}"
    info = {
        "architecture": architecture,
        "name": field("general.name"),
        "type": field("general.type") or "model",
        "quantization": quantization,
        "tensors": [t.name for t in reader.tensors],
    }
    _check_causal_lm(path, info)
    return info


def _check_causal_lm(path: Path, info: dict) -> None:
    """Refuse a GGUF that is not a model (an adapter, a projector), or whose architecture transformers
    does not read as a causal LM."""
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    arch = info["architecture"]
    if info["type"] != "model":
        raise InputError(f"{path}: a GGUF {info['type']}, not a model")
    readable = [a for a in GGUF_CONFIG_MAPPING if a not in ("general", "tokenizer")]
    if arch not in readable:
        raise InputError(
            f"{path}: GGUF architecture '{arch}' is not one transformers reads ({', '.join(readable)})"
        )
    model_type = {"qwen2_moe": "qwen2_moe", "gemma4": "gemma3"}.get(arch, arch)
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or arch in ("t5", "umt5"):
        raise InputError(f"{path}: GGUF architecture '{arch}' is not a causal language model")


def import_gguf(path: Path, out: Path, dtype: str = "float32") -> dict:
    """Dequantize the GGUF at `path` into a checkpoint directory `out` (safetensors in `dtype`,
    config.json, tokenizer, forensics.json); returns the metadata written. Every tensor the
    architecture needs comes from the file, the tokenizer from the file's own vocabulary."""
    path = Path(path).resolve()
    if dtype not in DTYPES:
        raise InputError(f"--dtype {dtype}: choose {', '.join(DTYPES)}")
    info = gguf_info(path)
    start = time.perf_counter()
    tokenizer, loaded = _read(path)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantized: the fresh model is a plain one
    config.dtype = dtype
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    _check_tensors(path, info, model, loaded)
    model.load_state_dict(loaded.state_dict(), assign=True)
    if model.config.tie_word_embeddings:
        model.tie_weights()
    model = model.to(DTYPES[dtype]).eval()
    metadata = {
        "made_by": "forensics import",
        "source": str(path),
        "source_digest": file_digest(path),
        "source_quantization": info["quantization"],
        "architecture": info["architecture"],
        "name": info["name"],
        "dtype": dtype,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": round(time.perf_counter() - start, 1),
    }
    check_stop()  # a stop a finalizer swallowed while reading still stops before anything is written
    save_checkpoint(model, tokenizer, Path(out), metadata)
    return metadata


def _read(path: Path):
    """(tokenizer, model) as transformers reads the GGUF, from a folder holding nothing but a link to
    it: a tokenizer.json or config.json lying beside the file is never taken for the file's own."""
    alone = Path(tempfile.mkdtemp(prefix="forensics-gguf-"))
    try:
        (alone / path.name).symlink_to(path)
        where = {"pretrained_model_name_or_path": str(alone), "gguf_file": path.name}
        with contextlib.redirect_stderr(io.StringIO()):  # transformers' own tqdm bar, never disabled
            tokenizer = AutoTokenizer.from_pretrained(**where)
            loaded = AutoModelForCausalLM.from_pretrained(**where, dtype=torch.float32)
    except Exception as e:  # transformers raises many types for a GGUF config or vocabulary it rejects
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{path}: transformers cannot read this GGUF ({first[:200]})") from None
    finally:
        shutil.rmtree(alone, ignore_errors=True)  # made here: holds only the link
    return tokenizer, loaded


def _check_tensors(path: Path, info: dict, model, loaded) -> None:
    """Refuse a GGUF that lacks a tensor the architecture needs (transformers would initialise it at
    random; a tied output excepted, as llama.cpp does), holds one it does not (transformers drops it
    unread), or holds NaN or Inf, naming the tensor."""
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
    )

    arch, stored = info["architecture"], info["tensors"]
    processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)(config=model.config.to_dict())
    to_hf = get_gguf_hf_weights_map(model, processor)
    extra = sorted(n for n in stored if n not in to_hf)
    if extra:
        raise InputError(f"{path}: tensor '{extra[0]}' is not part of a {arch} model of this shape")
    from_file = {to_hf[n] for n in stored}
    tied = {k for k in model.state_dict() if model.config.tie_word_embeddings and k.startswith("lm_head.")}
    by_name = {hf: g for g, hf in to_hf.items()}
    for name in model.state_dict():
        if name not in from_file and name not in tied:
            raise InputError(f"{path}: tensor '{by_name.get(name, name)}' is missing ({name} of {arch})")
    for name, tensor in loaded.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise InputError(f"{path}: tensor '{by_name.get(name, name)}' holds NaN or Inf")
