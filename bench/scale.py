"""How the lenses scale with the model (docs/design.md §10): per stage, wall time, peak memory and disk at
two model sizes, and the growth ratio between them.

Run: `python -m bench.scale [--sizes small,large] [--device auto] [--dtype auto]`. Each size is a
random-init Llama written as bf16 safetensors in 200 MB shards, plus a perturbed copy (the
"unlearned" model). Every stage runs in its own process on the same facts (a world of 88 forget
facts in 4 splits, so one RTT epoch trains on 66): `cache` (final-position residuals of every
fact, into a fresh cache folder), `probes` (logistic probes on them, trained on T + retain,
tested on V), `diff` (the streaming weight diff), `divergence` (both models' residuals, from the
cache), `lora` (one LoRA-RTT epoch). Prints one JSON line per size and one with the ratios. Peak
memory is the process's resident high-water mark above its size after imports (and peak GPU
memory on CUDA); disk is what the stage left on disk.

Sizes: small = 12 layers × d 768, large = 24 × d 1024, llama7b = 32 × d 4096 (Llama-2-7B's
shape: bench/gpu_check.sh uses it); all with a 32k vocabulary. tiny = 2 × d 64 with a 1024 vocabulary
(the world tokenizer's): the smoke test's size (`--sizes tiny`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {
    "tiny": dict(num_hidden_layers=2, hidden_size=64, intermediate_size=256, num_attention_heads=1),
    "small": dict(num_hidden_layers=12, hidden_size=768, intermediate_size=3072, num_attention_heads=12),
    "large": dict(num_hidden_layers=24, hidden_size=1024, intermediate_size=4096, num_attention_heads=16),
    "llama7b": dict(num_hidden_layers=32, hidden_size=4096, intermediate_size=11008, num_attention_heads=32),
}
STAGES = ("cache", "probes", "diff", "divergence", "lora")
VOCAB = 32000
VOCABS = {"tiny": 1024}  # the world tokenizer's; every other size has VOCAB


def world_config():
    from forensics.worlds.spec import WorldConfig

    return WorldConfig(n_people=120, n_ships=60, n_forget=88, n_forget_splits=4, vocab_size=1024)


def build(root: Path, size: str, device: str) -> None:
    """The size's random-init checkpoint and a perturbed copy, bf16, sharded, with a tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from forensics.worlds.spec import generate_facts, world_texts
    from forensics.worlds.world import build_tokenizer

    facts, _ = generate_facts(world_config())
    tok = build_tokenizer(world_texts(facts.facts()), 1024)
    cfg = LlamaConfig(
        num_key_value_heads=SIZES[size]["num_attention_heads"],
        max_position_embeddings=256,
        tie_word_embeddings=False,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        vocab_size=VOCABS.get(size, VOCAB),
        **SIZES[size],
    )
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it is fastest (a 7B model on the GPU)
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    for name in ("original", "unlearned"):
        model.save_pretrained(str(root / name), safe_serialization=True, max_shard_size="200MB")
        tok.save_pretrained(str(root / name))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 1e-3)


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(field)


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def child(stage: str, root: Path, device: str, dtype: str, device_map: str) -> dict:
    """One stage in this process: {seconds, peak_mb, gpu_peak_mb, disk_mb}."""
    import numpy as np
    import torch

    from forensics.attacks.relearn import RelearnSettings, run_one
    from forensics.facts.core import select
    from forensics.measure.probing import features, labels
    from forensics.measure.weights import diff
    from forensics.models.checkpoint import boot_bridge, load_checkpoint
    from forensics.models.digest import checkpoint_digest
    from forensics.models.runtime import Runtime, torch_device
    from forensics.worlds.spec import generate_facts
    from probes.divergence import divergence
    from probes.linear import LogisticProbe

    facts, roles = generate_facts(world_config())
    sets = select(facts, roles["forget"], roles["retain"], roles["near_retain"])
    every = [*sets.forget_facts(), *sets.near_retain, *sets.retain]
    runtime = Runtime(device=device, dtype=dtype, device_map=device_map or None)
    original, unlearned, cache = root / "original", root / "unlearned", root / "cache"
    cuda = runtime.gpus() > 0
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base = rss_kb("VmRSS")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    left = None
    if stage == "cache":
        shutil.rmtree(cache, ignore_errors=True)
        features(boot_bridge(original, runtime=runtime), every, "choice", cache, checkpoint_digest(original))
        left = cache
    elif stage in ("probes", "divergence"):  # from the cache alone: no model is loaded
        X = from_cache(original, every, cache, runtime)
        if stage == "probes":
            splits = np.array([f.split for f in every])
            v = roles["forget"][0]
            y, allowed, _ = labels(every, "choice")
            train, test = splits != v, splits == v
            probe = LogisticProbe(Cs=(1.0,), max_iter=100, device=str(torch_device(device)))
            probe.fit(X[:, train], y[train], allowed[train]).score(X[:, test], y[test], allowed[test])
        else:
            features(
                boot_bridge(unlearned, runtime=runtime), every, "choice", cache, checkpoint_digest(unlearned)
            )
            divergence(X, from_cache(unlearned, every, cache, runtime))
            left = cache
    elif stage == "diff":
        diff(original, unlearned)
    elif stage == "lora":
        model, tok = load_checkpoint(original, runtime)
        settings = RelearnSettings(lrs=(1e-3,), epochs=1, batch_size=8, method="lora", score_retain=False)
        run_one(model, tok, sets, roles["forget"][0], 1e-3, settings, float("nan"), False, seed=0)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 2),
        "peak_mb": round((rss_kb("VmHWM") - base) / 1024, 1),
        "gpu_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        "disk_mb": round(disk_mb(left), 1) if left else 0.0,
    }


def from_cache(checkpoint: Path, facts, cache: Path, runtime):
    """[layers + 1, n, d] residuals of `facts` read from the cache entry the `cache` stage wrote."""
    import torch

    from forensics.measure.probing import feature_prompts
    from forensics.models.arch import arch_of_checkpoint
    from forensics.models.cache import default_hooks, lookup
    from forensics.models.checkpoint import load_tokenizer
    from forensics.models.digest import checkpoint_digest

    hooks = default_hooks(arch_of_checkpoint(checkpoint).n_layers)
    prompts = feature_prompts(facts, "choice")
    dtype = runtime.torch_dtype(checkpoint)
    found = lookup(cache, checkpoint_digest(checkpoint), load_tokenizer(checkpoint), prompts, hooks, dtype)
    if found is None:
        raise SystemExit(f"{checkpoint}: no cache entry (run the cache stage first)")
    return found.stack().to(torch.float32)


def stage_process(stage: str, root: Path, device: str, dtype: str, device_map: str) -> dict:
    """`child` in a process of its own (its peak memory is then the stage's alone)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--child", stage, str(root), device, dtype, device_map],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise SystemExit(f"{root.name} {stage} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_size(
    size: str, device: str, dtype: str, device_map: str, keep: Path | None, in_process: bool = False
) -> dict:
    """Build the size's checkpoints (unless `keep` has them) and run every stage on them."""
    root = Path(keep or tempfile.mkdtemp(prefix=f"scale-{size}-"))
    try:
        start = time.perf_counter()
        if not (root / "unlearned" / "config.json").exists():
            from forensics.models.runtime import torch_device

            build(root, size, str(torch_device(device)))
        out = {"size": size, **SIZES[size], "vocab": VOCABS.get(size, VOCAB)}
        out["build_s"] = round(time.perf_counter() - start, 1)
        out["checkpoint_mb"] = round(disk_mb(root / "original"), 1)
        for stage in STAGES:
            out[stage] = (child if in_process else stage_process)(stage, root, device, dtype, device_map)
        return out
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], Path(sys.argv[3]), *sys.argv[4:7])))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="small,large", help=f"comma-separated, of {', '.join(SIZES)}")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", help="auto (the checkpoints' bf16), float32, …")
    p.add_argument("--device-map", default="", help="auto: load through accelerate's device_map")
    p.add_argument("--keep", help="build (or reuse) the checkpoints here instead of a temporary folder")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="every stage in this process, not one process each: seconds of imports fewer, but each "
        "stage's peak then includes what the earlier ones left (the smoke test: --sizes tiny)",
    )
    a = p.parse_args()
    rows = []
    for size in a.sizes.split(","):
        keep = Path(a.keep) / size if a.keep else None
        rows.append(run_size(size, a.device, a.dtype, a.device_map, keep, a.in_process))
        setting = {"device": a.device, "dtype": a.dtype, "device_map": a.device_map or None}
        print(json.dumps({"bench": "scale", **setting, **rows[-1]}), flush=True)
    if len(rows) == 2:
        small, large = rows
        ratio = {
            stage: {
                k: round(large[stage][k] / small[stage][k], 2)
                for k in ("seconds", "peak_mb", "gpu_peak_mb", "disk_mb")
                if small[stage].get(k) and large[stage].get(k)
            }
            for stage in STAGES
        }
        params = {s["size"]: s["checkpoint_mb"] for s in rows}
        print(
            json.dumps(
                {
                    "bench": "scale",
                    "growth": f"{large['size']}/{small['size']}",
                    "ratio": ratio,
                    "checkpoint_mb": params,
                }
            )
        )


if __name__ == "__main__":
    main()
