"""Where and in what precision models run: the one place that knows devices, dtypes and
accelerate's `device_map` (docs/design.md §10). Every model is loaded through `checkpoint.load_checkpoint`
with a `Runtime`; inputs go to `input_device(model)`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from forensics.errors import InputError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEVICE_MAPS = ("auto",)
_MEMORY = re.compile(r"^\d+(\.\d+)?(KB|MB|GB|KiB|MiB|GiB)$")


@dataclass(frozen=True)
class Runtime:
    """`device`: auto (CUDA when present), cpu, cuda or cuda:N. `dtype`: auto (the checkpoint's
    own, float32 when it declares none), float32, bfloat16 or float16. `device_map = "auto"` lets
    accelerate place the layers over the GPUs, then CPU memory, then disk, within `max_memory`
    (e.g. {"0": "70GiB", "cpu": "64GiB"}): for models larger than one device."""

    device: str = "auto"
    dtype: str = "auto"
    device_map: str | None = None
    max_memory: dict[str, str] | None = None
    quantize: str | None = None  # "nf4": load 4-bit through bitsandbytes (CUDA only; the quantization attack)

    def __post_init__(self):
        device = torch_device(self.device)  # refuses cuda where there is none, at once
        if self.quantize is not None:
            if self.quantize != "nf4":
                raise InputError(f"'quantize' {self.quantize}: only nf4")
            if device.type != "cuda":
                raise InputError("nf4 quantization (bitsandbytes) needs a CUDA device")
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise InputError(f"'dtype' {self.dtype}: choose auto, {', '.join(DTYPES)}")
        if self.device_map is not None and self.device_map not in DEVICE_MAPS:
            raise InputError(f"'device_map' {self.device_map}: choose auto (or leave it out)")
        if self.max_memory is not None:
            if self.device_map is None:
                raise InputError("'max_memory' needs device_map = \"auto\"")
            for where, amount in self.max_memory.items():
                if not (where in ("cpu", "disk") or where.isdigit()):
                    raise InputError(f"'max_memory' key {where!r}: a GPU index, cpu or disk")
                if not isinstance(amount, str) or not _MEMORY.match(amount):
                    raise InputError(f"'max_memory' {where} = {amount!r}: an amount like \"24GiB\"")

    def torch_dtype(self, checkpoint: Path | None = None) -> torch.dtype:
        """The dtype to load `checkpoint` in (`auto`: what its config.json declares)."""
        if self.dtype != "auto":
            return DTYPES[self.dtype]
        return declared_dtype(checkpoint) if checkpoint is not None else torch.float32

    def load_kwargs(self, checkpoint: Path, offload_folder: Path | None) -> dict:
        """Keyword arguments of `from_pretrained` for this runtime."""
        kwargs: dict = {"dtype": self.torch_dtype(checkpoint)}
        if self.quantize == "nf4":
            try:
                import bitsandbytes  # noqa: F401
            except ImportError:
                raise InputError("nf4 needs bitsandbytes: pip install 'unlearning-forensics[gpu]'") from None
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=kwargs["dtype"]
            )
            kwargs["device_map"] = {"": str(torch_device(self.device))}  # bitsandbytes places it itself
        if self.device_map is not None:
            kwargs["device_map"] = self.device_map
            if self.max_memory is not None:
                kwargs["max_memory"] = {int(k) if k.isdigit() else k: v for k, v in self.max_memory.items()}
            kwargs["offload_folder"] = str(offload_folder) if offload_folder else None
        return kwargs

    def gpus(self) -> int:
        """GPUs a job on this runtime needs (for the Ray executor's scheduling)."""
        return 0 if torch_device(self.device).type == "cpu" else 1

    def as_json(self) -> dict:
        return {
            "device": str(torch_device(self.device)),
            "dtype": self.dtype,
            "device_map": self.device_map,
            "max_memory": self.max_memory,
            "quantize": self.quantize,
        }


def torch_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when there is one; asking for `cuda` where there is none is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise InputError(f"device {name!r}: choose auto, cpu, cuda or cuda:N")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device {name}: no CUDA device on this machine")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise InputError(f"device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


def declared_dtype(checkpoint: Path) -> torch.dtype:
    """The dtype a checkpoint's config.json declares (`dtype` or the older `torch_dtype`)."""
    try:
        config = json.loads((Path(checkpoint) / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return torch.float32  # check_dir reports a bad config.json, naming it
    name = config.get("dtype") or config.get("torch_dtype") or "float32"
    return DTYPES.get(name, torch.float32)


def in_memory(model, what: str) -> None:
    """Refuse to edit or copy the weights of a model whose weights were offloaded to disk (they
    are loaded only inside accelerate's hooks): `what` names the lens that needs them."""
    if any(p.device.type == "meta" for p in model.parameters()):
        raise InputError(
            f"{what} changes the model's weights, and some were offloaded to disk: give max_memory "
            'room for the whole model on GPUs and CPU (or use relearn method = "lora" for RTT)'
        )


def input_device(model) -> torch.device:
    """Where a model's inputs go: its input embedding's device (accelerate's hooks move activations
    on from there); CPU when the embedding was offloaded to disk. Works on HF models and bridges."""
    hf = getattr(model, "original_model", model)  # a TransformerBridge wraps the HF model
    device = hf.get_input_embeddings().weight.device
    return torch.device("cpu") if device.type == "meta" else device
