"""The model an RTT run trains: a full copy of the checkpoint, or LoRA adapters on the model itself
(their target modules checked against the checkpoint before any run starts)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from forensics.errors import InputError
from forensics.models.runtime import in_memory


def check_lora_targets(path: Path, targets: Sequence[str]) -> None:
    """Refuse LoRA target names that match no linear layer of the checkpoint (GPT-2's Conv1D
    included; peft's rule: a module whose name is the target or ends with `.target`), before any
    run starts."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    linear = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear | Conv1D)}
    for t in targets:
        if not any(n == t or n.endswith(f".{t}") for n in linear):
            names = sorted({n.rsplit(".", 1)[-1] for n in linear})
            raise InputError(
                f"lora_targets '{t}': no linear layer of {path} is named so (have: {', '.join(names)})"
            )


@contextmanager
def attackable(model, settings: Any, seed: int) -> Iterator:
    """The model RTT trains (`settings`: RelearnSettings): a full copy, or (`lora`) the model itself
    with fresh low-rank adapters (initialised from `seed`) that are removed again afterwards, leaving
    it as it was."""
    if settings.method == "full":
        in_memory(model, "full RTT")
        yield copy.deepcopy(model)
        return
    from peft import LoraConfig, get_peft_model

    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    targets = list(settings.lora_targets) if settings.lora_targets else "all-linear"
    config = LoraConfig(
        r=settings.lora_rank, lora_alpha=settings.lora_alpha, target_modules=targets, lora_dropout=0.0
    )
    torch.manual_seed(seed)  # the adapters' initialisation
    with warnings.catch_warnings():  # peft asks transformers about checkpointing the deprecated way
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        adapted = get_peft_model(model, config)
    try:
        yield adapted
    finally:
        adapted.unload()  # the model's own modules back in place, the adapters dropped
        for n, p in model.named_parameters():
            p.requires_grad_(grads[n])
        model.eval()
