"""Batched activation cache: TransformerLens hooks read at chosen positions in one forward per batch.

Each hook writes only the rows it needs (the final prompt token, or every token with a mask) into
preallocated CPU tensors (pinned, with non-blocking copies, on CUDA), and the forward pass stops
after the last requested hook, so extracting residuals costs less than the model's own forward.
Results are kept under a content hash of (weights, prompts, hooks, positions): a second request
with the same key runs no forward pass. Past a memory budget, rows go to safetensors shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from forensics.checkpoint import weight_files
from forensics.errors import InputError
from forensics.tokens import encode, pad_id

RESID = "blocks.{}.hook_resid_post"
EMBED = "hook_embed"
POSITIONS = ("final", "all")
MASK = "__mask__"
_FILE_HASHES: dict[tuple, str] = {}


def default_hooks(n_layers: int) -> list[str]:
    """The embedding output, then the residual stream after every block."""
    return [EMBED, *(RESID.format(layer) for layer in range(n_layers))]


def hook_layer(name: str) -> int:
    """Residual-stream index of a hook: -1 for the embedding, ℓ for `blocks.ℓ.*`."""
    return int(name.split(".")[1]) if name.startswith("blocks.") else -1


def file_digest(path: Path) -> str:
    """blake2b of a file's bytes, remembered per (path, size, mtime) within the process."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


def weights_digest(model) -> str:
    """Content hash of a model's parameters and buffers (for models not read from disk)."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cache_key(weights: str, prompts: Sequence, hooks: Sequence[str], positions: str, dtype) -> str:
    """Content address of one extraction."""
    blob = json.dumps([weights, list(prompts), list(hooks), positions, str(dtype)])
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


@dataclass
class Activations:
    """Cached activations: `acts[hook]` is [n, d] (final) or [n, T, d] with `mask` [n, T] (all)."""

    hooks: list[str]
    positions: str
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    mask: torch.Tensor | None = None
    shards: list[Path] = field(default_factory=list)
    forward_passes: int = 0

    def __getitem__(self, hook: str) -> torch.Tensor:
        if hook in self.tensors:
            return self.tensors[hook]
        if hook not in self.hooks and hook != MASK:
            raise KeyError(hook)
        parts = []
        for shard in self.shards:
            with safe_open(shard, framework="pt") as f:
                parts.append(f.get_tensor(hook))
        return torch.cat(parts)

    def stack(self, hooks: Sequence[str] | None = None) -> torch.Tensor:
        """[hooks, n, d] of the final-position activations (the probes' input)."""
        return torch.stack([self[h] for h in hooks or self.hooks])


class _Stop(Exception):
    """Raised by the last requested hook: nothing after it is needed."""


def _encode_prompts(tok, prompts: Sequence[str]) -> list[list[int]]:
    ids = [encode(tok, p, "")[0] for p in prompts]
    for p, i in zip(prompts, ids, strict=True):
        if not i:
            raise InputError(f"prompt {p!r} tokenizes to nothing")
    return ids


def forward_until(bridge, ids: torch.Tensor, attention: torch.Tensor, hooks: list[str], write) -> None:
    """One forward pass; `write(hook, activation)` per hook; stops after the last hook in the stream."""
    last = max(hooks, key=hook_layer)

    def make(name):
        def fn(act, hook=None):
            write(name, act)
            if name == last:
                raise _Stop
            return act

        return fn

    with bridge.hooks(fwd_hooks=[(h, make(h)) for h in hooks]):
        try:
            bridge(ids, attention_mask=attention)
        except _Stop:
            pass


def extract(bridge, prompts: Sequence[str], **kwargs) -> Activations:
    """Activations of text prompts (tokenized as the scorers do); see `extract_ids`."""
    return extract_ids(bridge, _encode_prompts(bridge.tokenizer, prompts), **kwargs)


@torch.no_grad()
def extract_ids(
    bridge,
    ids: Sequence[Sequence[int]],
    hooks: Sequence[str] | None = None,
    positions: str = "final",
    batch_size: int = 32,
    memory_budget: int = 2 << 30,
    cache_dir: Path | None = None,
    weights: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Activations:
    """Activations of token-id prompts at `hooks` (default: embedding + every resid_post).

    `positions`: "final" (last prompt token) or "all" (every token, right-padded, with a mask).
    `cache_dir` + `weights` (a content hash of the checkpoint; hashed from memory when absent) make
    the result reusable: a second call with the same key loads it instead of running the model.
    Past `memory_budget` bytes, rows go to safetensors shards under `cache_dir`.
    """
    hooks = list(hooks or default_hooks(bridge.cfg.n_layers))
    if positions not in POSITIONS:
        raise InputError(f"positions '{positions}': choose {' or '.join(POSITIONS)}")
    unknown = [h for h in hooks if h not in bridge.hook_dict]
    if unknown:
        raise InputError(f"unknown hook(s) {', '.join(unknown)} (e.g. {RESID.format(0)}, {EMBED})")
    ids = [list(map(int, row)) for row in ids]
    key = cache_key(weights or weights_digest(bridge), ids, hooks, positions, dtype) if cache_dir else ""
    folder = Path(cache_dir) / key if cache_dir else None
    if folder and (folder / "done.json").exists():
        return _load(folder, hooks, positions)
    n, d = len(ids), bridge.cfg.d_model
    width = max(map(len, ids))
    row_bytes = len(hooks) * (width if positions == "all" else 1) * d * torch.finfo(dtype).bits // 8
    rows_per_shard = max(1, memory_budget // max(row_bytes, 1))
    spill = n > rows_per_shard
    if spill and folder is None:
        raise InputError(f"activations need {n * row_bytes} bytes, over the budget: give a cache_dir")
    pad = pad_id(bridge.tokenizer)
    device = next(bridge.parameters()).device
    pin = device.type == "cuda"
    tmp = folder.with_name(f".{folder.name}.tmp") if folder else None
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    passes = 0
    for shard_no, shard_start in enumerate(range(0, n, rows_per_shard)):
        members = range(shard_start, min(n, shard_start + rows_per_shard))
        order = sorted(members, key=lambda i: len(ids[i]))  # length-sorted batches: little padding
        m = len(order)
        shape = (m, d) if positions == "final" else (m, width, d)
        buf = {h: torch.zeros(shape, dtype=dtype, pin_memory=pin) for h in hooks}
        mask = torch.zeros(m, width, dtype=torch.bool)
        for start in range(0, m, batch_size):
            rows = [ids[i] for i in order[start : start + batch_size]]
            length = max(map(len, rows))
            batch = torch.full((len(rows), length), pad, dtype=torch.long)
            attention = torch.zeros(len(rows), length, dtype=torch.long)
            for r, row in enumerate(rows):
                batch[r, : len(row)] = torch.tensor(row)
                attention[r, : len(row)] = 1
            sl = slice(start, start + len(rows))
            mask[sl, :length] = attention.bool()
            last = (attention.sum(1) - 1).to(device)
            keep = attention.to(device)[..., None]

            def write(name, act, buf=buf, sl=sl, last=last, keep=keep, length=length):
                if positions == "final":
                    act = act[torch.arange(act.shape[0], device=act.device), last]
                    buf[name][sl].copy_(act.to(dtype), non_blocking=pin)
                else:
                    buf[name][sl, :length].copy_((act * keep).to(dtype), non_blocking=pin)  # pads: 0

            forward_until(bridge, batch.to(device), attention.to(device), hooks, write)
            passes += 1
        if pin:
            torch.cuda.synchronize()
        inverse = torch.argsort(torch.tensor(order))  # back to prompt order within the shard
        buf = {h: t[inverse] for h, t in buf.items()}
        buf[MASK] = mask[inverse]
        if tmp:
            save_file(buf, str(tmp / f"shard_{shard_no:05d}.safetensors"))
    if tmp:
        (tmp / "done.json").write_text(json.dumps({"hooks": hooks, "positions": positions, "rows": n}))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    out = Activations(hooks, positions, forward_passes=passes)
    if folder:
        out.shards = sorted(folder.glob("shard_*.safetensors"))
    if not spill:
        out.tensors = {h: buf[h] for h in hooks}
        out.mask = buf[MASK] if positions == "all" else None
    elif positions == "all":
        out.mask = out[MASK]
    return out


def _load(folder: Path, hooks: list[str], positions: str) -> Activations:
    """A finished extraction read back from its shards (per hook, on demand)."""
    out = Activations(hooks, positions, shards=sorted(folder.glob("shard_*.safetensors")))
    if positions == "all":
        out.mask = out[MASK]
    return out


def checkpoint_digest(path: Path) -> str:
    """Content hash of a checkpoint directory's weights (every safetensors file)."""
    return hashlib.blake2b("".join(file_digest(f) for f in weight_files(path)).encode()).hexdigest()[:32]
