"""Batched activation cache: TransformerLens hooks read at chosen positions in one forward per batch.

Each hook writes only the rows it needs (the final prompt token, or every token with a mask) into
preallocated CPU tensors (pinned, with non-blocking copies, on CUDA), and the forward pass stops
after the last requested hook, so extracting residuals costs less than the model's own forward.
Results are kept under a content hash of (weights, prompts, hooks, positions): a second request
with the same key runs no forward pass. Past a memory budget, rows go to safetensors shards.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from forensics.digest import key, weights_digest
from forensics.errors import InputError, warn
from forensics.tokens import encode, pad_id

RESID = "blocks.{}.hook_resid_post"
EMBED = "hook_embed"
POSITIONS = ("final", "all")
MASK = "__mask__"
DONE = "done.json"


def default_hooks(n_layers: int) -> list[str]:
    """The embedding output, then the residual stream after every block."""
    return [EMBED, *(RESID.format(layer) for layer in range(n_layers))]


def cache_key(weights: str, prompts: Sequence, hooks: Sequence[str], positions: str, dtype) -> str:
    """Content address of one extraction (the checkpoint digest covers weights, config and tokenizer)."""
    return key("activations", weights, list(prompts), list(hooks), positions, str(dtype))


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
    """One forward pass; `write(hook, activation)` per hook; stops once every hook has fired, which is
    after the last of them in the model's own forward order (whatever their names say)."""
    pending = set(hooks)

    def make(name):
        def fn(act, hook=None):
            write(name, act)
            pending.discard(name)
            if not pending:
                raise _Stop
            return act

        return fn

    with bridge.hooks(fwd_hooks=[(h, make(h)) for h in hooks]):
        try:
            bridge(ids, attention_mask=attention)
        except _Stop:
            pass
    if pending:
        raise InputError(f"hook(s) {', '.join(sorted(pending))} never ran in the forward pass")


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
    if folder and (folder / DONE).exists():
        try:
            return _load(folder, hooks, positions, len(ids))
        except InputError as e:
            warn(f"{folder}: corrupt cache entry, recomputing ({e})")
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
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp") if folder else None
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
        (tmp / DONE).write_text(json.dumps({"hooks": hooks, "positions": positions, "rows": n}))
        shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same entry first: theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
    out = Activations(hooks, positions, forward_passes=passes)
    if folder:
        out.shards = sorted(folder.glob("shard_*.safetensors"))
    if not spill:
        out.tensors = {h: buf[h] for h in hooks}
        out.mask = buf[MASK] if positions == "all" else None
    elif positions == "all":
        out.mask = out[MASK]
    return out


def _load(folder: Path, hooks: list[str], positions: str, rows: int) -> Activations:
    """A finished extraction read back from its shards (per hook, on demand), after checking that
    every shard opens and holds every hook, and that the rows add up; marks the entry as used."""
    shards = sorted(folder.glob("shard_*.safetensors"))
    total = 0
    for shard in shards:
        try:
            with safe_open(shard, framework="pt") as f:
                if not set(hooks) | {MASK} <= set(f.keys()):
                    raise InputError(f"{shard.name} lacks a hook")
                total += f.get_slice(MASK).get_shape()[0]
        except InputError:
            raise
        except Exception as e:  # safetensors raises its own types for truncated or corrupt files
            raise InputError(f"{shard.name}: {e}") from None
    if not shards or total != rows:
        raise InputError(f"{rows} rows expected, {total} found")
    os.utime(folder / DONE)  # least recently used goes first when the cache is over its cap
    out = Activations(hooks, positions, shards=shards)
    if positions == "all":
        out.mask = out[MASK]
    return out


def entries(cache_dir: Path) -> list[dict]:
    """Every finished cache entry: key, size in bytes, last use (oldest first)."""
    out = []
    for done in Path(cache_dir).glob(f"*/{DONE}"):
        folder = done.parent
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        out.append({"key": folder.name, "path": folder, "bytes": size, "used": done.stat().st_mtime})
    return sorted(out, key=lambda e: e["used"])


def enforce_cap(cache_dir: Path, max_gb: float) -> list[str]:
    """Delete least recently used entries until the cache holds at most `max_gb`; returns their keys."""
    found = entries(cache_dir)
    total, removed = sum(e["bytes"] for e in found), []
    for e in found:
        if total <= max_gb * 2**30:
            break
        shutil.rmtree(e["path"], ignore_errors=True)
        total -= e["bytes"]
        removed.append(e["key"])
    return removed


def clear(cache_dir: Path) -> int:
    """Delete every entry (and any unfinished one) of a cache folder; returns the bytes freed."""
    freed = 0
    for folder in Path(cache_dir).iterdir() if Path(cache_dir).is_dir() else []:
        if folder.is_dir():
            freed += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            shutil.rmtree(folder, ignore_errors=True)
    return freed
