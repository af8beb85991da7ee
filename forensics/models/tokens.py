"""Prompt+target pairs to padded token batches with loss masks, and the per-sequence NLL.

Training and both scorers go through these, so a target is tokenized the same way everywhere:
prompt encoded with special tokens (BOS), target encoded without, then concatenated.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence

import torch
import torch.nn.functional as F

IGNORE = -100


def encode(tokenizer, prompt: str, target: str) -> tuple[list[int], int]:
    """Token ids of prompt+target and the number of prompt tokens."""
    head, (tail,) = encode_tails(tokenizer, prompt, [target])
    return head + tail, len(head)


def encode_tails(tokenizer, prompt: str, targets: Sequence[str]) -> tuple[list[int], list[list[int]]]:
    """`encode` of one prompt with several targets: the prompt's ids once, each target's ids
    (prompt + tail is what `encode(prompt, target)` gives)."""
    head = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    return head, [list(tokenizer(t, add_special_tokens=False)["input_ids"]) if t else [] for t in targets]


def collate(
    items: Sequence[tuple[list[int], int]], pad_id: int, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Right-padded `input_ids`, `attention_mask` and `labels` (IGNORE outside the targets)."""
    width = max(len(ids) for ids, _ in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, (ids, n_prompt) in enumerate(items):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
        labels[row, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:], dtype=torch.long)
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def logits_of(model, batch: dict[str, torch.Tensor], **kwargs) -> torch.Tensor:
    """Logits from an HF model or a TransformerBridge for a collated batch (`kwargs` go to the model)."""
    out = model(batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)
    return getattr(out, "logits", out)


@functools.lru_cache(maxsize=32)
def _forward_keeps(kind: type) -> bool:
    return "logits_to_keep" in inspect.signature(kind.forward).parameters


def keeps_logits(model) -> bool:
    """Whether the model's forward takes `logits_to_keep` (HF causal LMs; a peft wrapper passes it to
    the model it wraps; a TransformerBridge does not)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return _forward_keeps(type(inner))


def target_nll(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """`sequence_nll` of a collated batch, the unembedding run only from the position before its first
    target token on where the model allows it: most of a row is its prompt, and a ~50k-word output
    layer over every prompt position is a quarter of a small model's training step."""
    labels = batch["labels"]
    targets = (labels != IGNORE).any(0).nonzero()
    start = int(targets[0]) - 1 if len(targets) else 0
    if start < 1 or not keeps_logits(model):
        return sequence_nll(logits_of(model, batch), labels)
    logits = logits_of(model, batch, logits_to_keep=labels.shape[1] - start)
    return sequence_nll(logits, labels[:, start:])


def sequence_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token NLL of each row's target tokens, and how many target tokens each row has."""
    shifted = labels[:, 1:]
    nll = F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), shifted.flatten(), ignore_index=IGNORE, reduction="none"
    ).view_as(shifted)
    return nll.sum(1), (shifted != IGNORE).sum(1)


def pad_id(tokenizer) -> int:
    """The tokenizer's pad id, falling back to EOS (many causal LMs define no pad token)."""
    pid = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return 0 if pid is None else int(pid)
