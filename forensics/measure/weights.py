"""Streaming weight diff of two safetensors checkpoints, per tensor and per (layer, module).

Tensors are read through memory-mapped safetensors slices, one pair at a time, and large ones in
row blocks, so memory stays near one block whatever the model's size. Statistics per tensor:
‖ΔW‖_F, ‖ΔW‖_F/‖W‖_F, max |Δ|, fraction of entries changed and, for matrices, the top singular
values and stable rank of ΔW (from the Gram matrix of the smaller side, accumulated block by block).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors import safe_open

from forensics.errors import InputError
from forensics.models.arch import arch_of_checkpoint
from forensics.models.checkpoint import check_dir, read_json, weight_files

TOP_K = 8
BLOCK_BYTES = 16 << 20  # tensors above this are read in row blocks of about this size


def tensor_index(path: Path) -> dict[str, Path]:
    """Every tensor name of a checkpoint and the safetensors file holding it."""
    check_dir(path)
    index: dict[str, Path] = {}
    for f in weight_files(path):
        with safe_open(f, framework="pt") as handle:
            for name in handle.keys():
                index[name] = f
    return index


def check_pair(original: Path, unlearned: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Refuse two checkpoints that are not of one architecture with the same tensors and shapes."""
    a, b = read_json(Path(original) / "config.json"), read_json(Path(unlearned) / "config.json")
    if a.get("model_type") != b.get("model_type") or a.get("architectures") != b.get("architectures"):
        raise InputError(
            f"{unlearned}/config.json: architecture {b.get('model_type')} {b.get('architectures')} "
            f"differs from {original}'s {a.get('model_type')} {a.get('architectures')}"
        )
    ia, ib = tensor_index(original), tensor_index(unlearned)
    for name in ia:
        if name not in ib:
            raise InputError(f"{unlearned}: tensor '{name}' is missing (present in {ia[name]})")
    for name in ib:
        if name not in ia:
            raise InputError(f"{original}: tensor '{name}' is missing (present in {ib[name]})")
    for name in ia:
        with safe_open(ia[name], framework="pt") as fa, safe_open(ib[name], framework="pt") as fb:
            sa, sb = fa.get_slice(name).get_shape(), fb.get_slice(name).get_shape()
        if sa != sb:
            raise InputError(f"{ib[name]}: tensor '{name}' has shape {sb}, {ia[name]} has {sa}")
    return ia, ib


def _row_step(shape: list[int]) -> int:
    """Rows per block: about BLOCK_BYTES of float64, or every row when the tensor is smaller."""
    rows = shape[0] if shape else 1
    row_bytes = max(1, math.prod(shape[1:]) * 8)
    return max(1, BLOCK_BYTES // row_bytes) if rows * row_bytes > BLOCK_BYTES else rows


def _read(f: Path, name: str, shape: list[int], start: int, out: torch.Tensor) -> torch.Tensor:
    """Rows `start`… of tensor `name` of file `f` as float64 in `out` (a buffer reused block after
    block: fresh tensors per block leave freed blocks resident in the allocator, and the peak grows
    with them), checked finite. The file is opened afresh, so its mapped pages are released after."""
    with safe_open(f, framework="pt") as handle:
        t = handle.get_slice(name)[start : start + len(out)] if shape else handle.get_tensor(name)
        block = out[: len(t)] if shape else out
        block.copy_(t)
    if not torch.isfinite(block).all():
        raise InputError(f"{f}: tensor '{name}' holds NaN or Inf")
    return block


def stream_stats(name: str, files: tuple[Path, Path]) -> tuple[dict, list[int]]:
    """Statistics of one tensor, read in row blocks into two float64 buffers: the original's block,
    then (its squares summed) the unlearned one's, which becomes ΔW in place."""
    with safe_open(files[0], framework="pt") as handle:
        shape = handle.get_slice(name).get_shape()
    step = _row_step(shape)
    a, b = (torch.empty([step, *shape[1:]] if shape else [], dtype=torch.float64) for _ in range(2))
    sq_d = sq_w = max_abs = 0.0
    changed = 0
    tall = len(shape) == 2 and shape[0] >= shape[1]
    gram = wide = None
    if len(shape) == 2:
        side = shape[1] if tall else shape[0]
        gram = torch.zeros(side, side, dtype=torch.float64)
    if gram is not None and not tall:  # ΔW ΔWᵀ needs every row of ΔW, and wide matrices are small
        wide = torch.empty(shape, dtype=torch.float64)
    for start in range(0, shape[0] if shape else 1, step):
        W = _read(files[0], name, shape, start, a)
        sq_w += float(torch.square(W, out=b[: len(W)] if shape else b).sum())
        W2 = _read(files[1], name, shape, start, b)
        D = torch.sub(W2, W, out=W2 if wide is None else wide[start : start + len(W2)])
        sq_d += float(torch.square(D, out=W).sum())
        if D.numel():
            low, high = torch.aminmax(D)
            max_abs = max(max_abs, float(-low), float(high))
        changed += int(torch.count_nonzero(D))
        if tall:
            gram += D.T @ D
    if wide is not None:
        gram = wide @ wide.T
    return stats_from_parts(sq_d, sq_w, max_abs, changed, math.prod(shape), gram), list(shape)


def stats_from_parts(sq_delta: float, sq_w: float, max_abs: float, changed: int, numel: int, gram) -> dict:
    """The per-tensor statistics from accumulated sums (and the Gram matrix of ΔW for matrices)."""
    out = {
        "fro": math.sqrt(sq_delta),
        "w_norm": math.sqrt(sq_w),
        "rel": math.sqrt(sq_delta) / math.sqrt(sq_w) if sq_w > 0 else (0.0 if sq_delta == 0 else math.inf),
        "max_abs": max_abs,
        "frac_changed": changed / numel if numel else 0.0,
    }
    if gram is not None:
        eig = torch.linalg.eigvalsh(gram).flip(0).clamp(min=0)
        sv = eig[:TOP_K].sqrt()
        out["top_sv"] = sv.tolist()
        out["stable_rank"] = sq_delta / float(sv[0]) ** 2 if sv[0] > 0 else 0.0
    return out


def tensor_stats(W: torch.Tensor, W2: torch.Tensor) -> dict:
    """Statistics of one whole tensor pair (the plain, full-load reference computation)."""
    W, D = W.to(torch.float64), W2.to(torch.float64) - W.to(torch.float64)
    gram = None
    if D.ndim == 2:
        gram = D.T @ D if D.shape[0] >= D.shape[1] else D @ D.T
    return stats_from_parts(
        float((D**2).sum()),
        float((W**2).sum()),
        float(D.abs().max()) if D.numel() else 0.0,
        int((D != 0).sum()),
        D.numel(),
        gram,
    )


def group(tensors: list[dict]) -> dict:
    """Per layer and module kind (and "all" kinds): ‖ΔW‖_F, ‖ΔW‖/‖W‖, max |Δ|, fraction changed."""
    sums: dict = {}
    for t in tensors:
        layer = "none" if t["layer"] is None else str(t["layer"])
        for key in ((layer, t["kind"]), (layer, "all")):
            s = sums.setdefault(key, {"sq_d": 0.0, "sq_w": 0.0, "max_abs": 0.0, "changed": 0.0, "numel": 0})
            numel = math.prod(t["shape"]) if t["shape"] else 1
            s["sq_d"] += t["fro"] ** 2
            s["sq_w"] += t["w_norm"] ** 2
            s["max_abs"] = max(s["max_abs"], t["max_abs"])
            s["changed"] += t["frac_changed"] * numel
            s["numel"] += numel
    out: dict = {}
    for (layer, kind), s in sums.items():
        out.setdefault(layer, {})[kind] = {
            "fro": math.sqrt(s["sq_d"]),
            "rel": math.sqrt(s["sq_d"] / s["sq_w"]) if s["sq_w"] > 0 else 0.0,
            "max_abs": s["max_abs"],
            "frac_changed": s["changed"] / s["numel"],
        }
    return out


def diff(original: Path, unlearned: Path) -> dict:
    """The streaming diff of two checkpoints of one architecture: per tensor and grouped."""
    ia, ib = check_pair(original, unlearned)
    arch = arch_of_checkpoint(original)
    tensors = []
    for name in ia:
        stats, shape = stream_stats(name, (ia[name], ib[name]))
        layer, kind = arch.kind_of(name)
        tensors.append({"name": name, "layer": layer, "kind": kind, "shape": shape, **stats})
    return {
        "original": str(original),
        "unlearned": str(unlearned),
        "tensors": tensors,
        "layers": group(tensors),
    }


def full_load_diff(original: Path, unlearned: Path) -> dict:
    """The plain reference: load both state dicts whole, then the same statistics per tensor."""
    from safetensors.torch import load_file

    a, b = {}, {}
    for f in weight_files(original):
        a.update(load_file(f))
    for f in weight_files(unlearned):
        b.update(load_file(f))
    arch = arch_of_checkpoint(original)
    tensors = []
    for name, W in a.items():
        layer, kind = arch.kind_of(name)
        tensors.append({"name": name, "layer": layer, "kind": kind, "shape": list(W.shape)})
        tensors[-1].update(tensor_stats(W, b[name]))
    return {"tensors": tensors, "layers": group(tensors)}


def changed_layers(result: dict, tol: float = 0.0) -> list[int]:
    """Layers with any tensor whose ‖ΔW‖_F exceeds `tol`."""
    return sorted({t["layer"] for t in result["tensors"] if t["layer"] is not None and t["fro"] > tol})
