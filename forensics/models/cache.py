"""Batched activation cache: TransformerLens hooks read at the final prompt position, one forward per batch.

Each hook writes only the row it needs (the final prompt token) into preallocated CPU tensors in the
model's dtype (pinned, with non-blocking copies, on CUDA), and the forward pass stops after the last
requested hook, so extracting residuals costs less than the model's own forward. Results are kept
under a content hash of (weights, prompts, hooks, dtype): a second request with the same key runs no
forward pass. Past a memory budget, rows go to safetensors shards. Statistics over every position
are streamed batch by batch (`stream_ids`), never stored.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from forensics.errors import InputError, warn
from forensics.models.arch import StopForward
from forensics.models.digest import key, weights_digest
from forensics.models.tokens import encode, pad_id

RESID = "blocks.{}.hook_resid_post"
# the residual stream entering block 0: the embeddings summed and scaled as the model does them
EMBED = "blocks.0.hook_resid_pre"
DONE = "done.json"


def default_hooks(n_layers: int) -> list[str]:
    """The residual stream entering the first block (the embeddings), then after every block."""
    return [EMBED, *(RESID.format(layer) for layer in range(n_layers))]


def cache_key(weights: str, prompts: Sequence, hooks: Sequence[str], dtype: torch.dtype) -> str:
    """Content address of one extraction (the checkpoint digest covers weights, config and tokenizer)."""
    return key("activations", weights, list(prompts), list(hooks), "final", str(dtype))


@dataclass
class Activations:
    """Cached final-position activations: `acts[hook]` is [n, d], in memory or read from shards."""

    hooks: list[str]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    shards: list[Path] = field(default_factory=list)
    forward_passes: int = 0

    def __getitem__(self, hook: str) -> torch.Tensor:
        if hook in self.tensors:
            return self.tensors[hook]
        if hook not in self.hooks:
            raise KeyError(hook)
        parts = []
        for shard in self.shards:
            with safe_open(shard, framework="pt") as f:
                parts.append(f.get_tensor(hook))
        return torch.cat(parts)

    def stack(self, hooks: Sequence[str] | None = None) -> torch.Tensor:
        """[hooks, n, d] of the final-position activations (the probes' input)."""
        return torch.stack([self[h] for h in hooks or self.hooks])


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
                raise StopForward
            return act

        return fn

    with bridge.hooks(fwd_hooks=[(h, make(h)) for h in hooks]):
        try:
            bridge(ids, attention_mask=attention)
        except StopForward:
            pass
    if pending:
        raise InputError(f"hook(s) {', '.join(sorted(pending))} never ran in the forward pass")


def extract(bridge, prompts: Sequence[str], **kwargs) -> Activations:
    """Activations of text prompts (tokenized as the scorers do); see `extract_ids`."""
    return extract_ids(bridge, _encode_prompts(bridge.tokenizer, prompts), **kwargs)


def _batches(ids: list[list[int]], batch_size: int, pad: int, device):
    """Length-sorted right-padded batches: (positions in `ids`, input ids, attention mask)."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # little padding
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        rows = [ids[i] for i in idx]
        length = max(map(len, rows))
        batch = torch.full((len(rows), length), pad, dtype=torch.long)
        attention = torch.zeros(len(rows), length, dtype=torch.long)
        for r, row in enumerate(rows):
            batch[r, : len(row)] = torch.tensor(row)
            attention[r, : len(row)] = 1
        yield idx, batch.to(device), attention.to(device)


def model_dtype(bridge) -> torch.dtype:
    """The dtype of the model's parameters (what its residual stream is computed in)."""
    return next(bridge.parameters()).dtype


@torch.no_grad()
def extract_ids(
    bridge,
    ids: Sequence[Sequence[int]],
    hooks: Sequence[str] | None = None,
    batch_size: int = 32,
    memory_budget: int = 2 << 30,
    cache_dir: Path | None = None,
    weights: str | None = None,
    dtype: torch.dtype | None = None,
) -> Activations:
    """Activations of token-id prompts at their final position at `hooks` (default: embedding +
    every resid_post), stored in `dtype` (default: the model's own, so a bf16 model caches half
    the bytes of float32).

    `cache_dir` + `weights` (a content hash of the checkpoint; hashed from memory when absent) make
    the result reusable: a second call with the same key loads it instead of running the model.
    Past `memory_budget` bytes, rows go to safetensors shards under `cache_dir`.
    """
    hooks = _check_hooks(bridge, hooks)
    dtype = dtype or model_dtype(bridge)
    ids = [list(map(int, row)) for row in ids]
    key = cache_key(weights or weights_digest(bridge), ids, hooks, dtype) if cache_dir else ""
    folder = Path(cache_dir) / key if cache_dir else None
    if folder and (found := cached(folder, hooks, len(ids))):
        return found
    n, d = len(ids), bridge.cfg.d_model
    row_bytes = len(hooks) * d * torch.finfo(dtype).bits // 8
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
        members = list(range(shard_start, min(n, shard_start + rows_per_shard)))
        buf = {h: torch.zeros((len(members), d), dtype=dtype, pin_memory=pin) for h in hooks}
        for idx, batch, attention in _batches([ids[i] for i in members], batch_size, pad, device):
            rows = torch.tensor(idx)
            last = attention.sum(1) - 1

            def write(name, act, buf=buf, rows=rows, last=last):
                act = act[torch.arange(act.shape[0], device=act.device), last]
                buf[name].index_copy_(0, rows, act.to(dtype).to(buf[name].device, non_blocking=pin))

            forward_until(bridge, batch, attention, hooks, write)
            passes += 1
        if pin:
            torch.cuda.synchronize()
        if tmp:
            save_file(buf, str(tmp / f"shard_{shard_no:05d}.safetensors"))
    if tmp:
        _finish(tmp, folder, hooks, dtype, n)
    out = Activations(hooks, forward_passes=passes)
    if folder:
        out.shards = sorted(folder.glob("shard_*.safetensors"))
    if not spill:
        out.tensors = {h: buf[h] for h in hooks}
    return out


def _finish(tmp: Path, folder: Path, hooks: list[str], dtype: torch.dtype, rows: int) -> None:
    """Mark the shards in `tmp` done and move them into place as the entry `folder`."""
    (tmp / DONE).write_text(json.dumps({"hooks": hooks, "dtype": str(dtype), "rows": rows}))
    shutil.rmtree(folder, ignore_errors=True)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished the same entry first: theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)


def store(
    cache_dir: Path, weights: str, tokenizer, prompts: Sequence[str], acts: dict[str, torch.Tensor]
) -> None:
    """Keep final-position activations read in another pass (rows that extend these prompts: causal
    attention leaves a prompt's last position as it is) under the key `extract` gives the prompts,
    so a later `extract` of them runs no forward pass. `acts[hook]` is [prompts, d], in the model's
    dtype."""
    hooks = list(acts)
    dtype = acts[hooks[0]].dtype
    folder = Path(cache_dir) / cache_key(weights, _encode_prompts(tokenizer, prompts), hooks, dtype)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({h: a.contiguous() for h, a in acts.items()}, str(tmp / "shard_00000.safetensors"))
    _finish(tmp, folder, hooks, dtype, len(prompts))


@torch.no_grad()
def stream_ids(
    bridge,
    ids: Sequence[Sequence[int]],
    reduce: Callable[[dict[str, torch.Tensor], torch.Tensor, list[int]], torch.Tensor],
    hooks: Sequence[str] | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """A statistic over every position of every prompt, computed batch by batch and never stored
    whole (all positions of a 32-layer d 4096 model would be tens of GB per prompt set).

    `reduce(acts, attention, rows)` gets one batch's activations (hook → [b, T, d], pads included),
    its attention mask [b, T] and the rows' positions in `ids`, and returns [..., b]; the batches'
    results are put back in prompt order: [..., len(ids)].
    """
    hooks = _check_hooks(bridge, hooks)
    ids = [list(map(int, row)) for row in ids]
    device = next(bridge.parameters()).device
    parts, order = [], []
    for idx, batch, attention in _batches(ids, batch_size, pad_id(bridge.tokenizer), device):
        acts: dict[str, torch.Tensor] = {}
        forward_until(bridge, batch, attention, hooks, acts.__setitem__)
        parts.append(reduce(acts, attention, idx))
        order += idx
    out = torch.cat(parts, dim=-1)
    return out[..., torch.argsort(torch.tensor(order))]


def _check_hooks(bridge, hooks: Sequence[str] | None) -> list[str]:
    hooks = list(hooks or default_hooks(bridge.cfg.n_layers))
    unknown = [h for h in hooks if h not in bridge.hook_dict]
    if unknown:
        raise InputError(f"unknown hook(s) {', '.join(unknown)} (e.g. {RESID.format(0)}, {EMBED})")
    return hooks


def lookup(
    cache_dir: Path, weights: str, tokenizer, prompts: Sequence[str], hooks: list[str], dtype: torch.dtype
) -> Activations | None:
    """What `extract` stored for these text prompts, found without a model (None when absent)."""
    ids = _encode_prompts(tokenizer, prompts)
    return cached(Path(cache_dir) / cache_key(weights, ids, hooks, dtype), hooks, len(ids))


def cached(folder: Path, hooks: list[str], rows: int) -> Activations | None:
    """The finished extraction in `folder` (a cache directory / `cache_key(...)`), or None when there
    is none or it is corrupt (with a warning: it is then recomputed). Needs no model."""
    if not (folder / DONE).exists():
        return None
    try:
        return _load(folder, hooks, rows)
    except InputError as e:
        warn(f"{folder}: corrupt cache entry, recomputing ({e})")
        return None


def _load(folder: Path, hooks: list[str], rows: int) -> Activations:
    """A finished extraction read back from its shards (per hook, on demand), after checking that
    every shard opens and holds every hook, and that the rows add up; marks the entry as used."""
    shards = sorted(folder.glob("shard_*.safetensors"))
    total = 0
    for shard in shards:
        try:
            with safe_open(shard, framework="pt") as f:
                if not set(hooks) <= set(f.keys()):
                    raise InputError(f"{shard.name} lacks a hook")
                total += f.get_slice(hooks[0]).get_shape()[0]
        except InputError:
            raise
        except Exception as e:  # safetensors raises its own types for truncated or corrupt files
            raise InputError(f"{shard.name}: {e}") from None
    if not shards or total != rows:
        raise InputError(f"{rows} rows expected, {total} found")
    os.utime(folder / DONE)  # least recently used goes first when the cache is over its cap
    return Activations(hooks, shards=shards)


def entries(cache_dir: Path) -> list[dict]:
    """Every finished cache entry: key, size in bytes, last use (oldest first)."""
    out = []
    for done in Path(cache_dir).glob(f"*/{DONE}"):
        folder = done.parent
        size = _bytes(folder)
        out.append({"key": folder.name, "path": folder, "bytes": size, "used": done.stat().st_mtime})
    return sorted(out, key=lambda e: e["used"])


def enforce_cap(cache_dir: Path, max_gb: float) -> list[str]:
    """Delete least recently used entries until the cache holds at most `max_gb`; returns their keys."""
    found = entries(cache_dir)
    total, removed = sum(e["bytes"] for e in found), []
    for e in found:
        if total <= max_gb * 2**30:
            break
        _remove(e["path"])
        total -= e["bytes"]
        removed.append(e["key"])
    return removed


def _bytes(entry: Path) -> int:
    """The bytes of the regular files inside a cache entry, links not followed (an entry that is
    itself a link holds nothing of this cache)."""
    if entry.is_symlink():
        return 0
    if entry.is_file():
        return entry.stat().st_size
    total = 0
    for below, _, files in os.walk(entry):  # os.walk does not follow links
        for name in files:
            info = os.lstat(os.path.join(below, name))
            total += info.st_size if stat.S_ISREG(info.st_mode) else 0
    return total


def _remove(entry: Path) -> int:
    """Delete one cache entry without following any link (a link is removed, never what it points
    to: rmtree unlinks the links inside); returns the bytes of the regular files actually removed.
    What cannot be removed is left."""
    entry, before = Path(entry), _bytes(entry)
    if entry.is_symlink() or not entry.is_dir():
        with contextlib.suppress(OSError):
            entry.unlink()
    else:
        shutil.rmtree(entry, ignore_errors=True)
    return before - (_bytes(entry) if entry.is_dir() and not entry.is_symlink() else 0)


ENTRY = re.compile(r"[0-9a-f]{32}")  # a finished entry's folder: its key
UNFINISHED = re.compile(r"\.[0-9a-f]{32}\.\d+\.tmp")  # an extraction still being written (or killed)


def check_cache_folder(cache_dir: Path) -> None:
    """Refuse a folder that is not an activation cache: one that holds anything but cache entries
    (a study's or world's output folder, someone's own files), so that clearing it deletes nothing
    else."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        raise InputError(f"{cache_dir}: no such cache folder")
    for item in sorted(cache_dir.iterdir()):
        if not (item.is_dir() and (ENTRY.fullmatch(item.name) or UNFINISHED.fullmatch(item.name))):
            hint = f" (its cache is {cache_dir / 'cache'})" if (cache_dir / "cache").is_dir() else ""
            raise InputError(
                f"{cache_dir}: not an activation cache folder: '{item.name}' is not a cache entry{hint}; "
                "nothing deleted"
            )


def clear(cache_dir: Path) -> int:
    """Delete every entry (and any unfinished one) of an activation cache folder, after checking that
    it holds nothing else (`check_cache_folder`); returns the bytes freed."""
    check_cache_folder(cache_dir)
    return sum(_remove(entry) for entry in Path(cache_dir).iterdir())
