"""Activation cache vs a plain HF forward and TransformerLens' run_with_cache (docs/design.md §7).

Run: `python -m bench.cache [--device cuda] [--tiny]`. A 12-layer d_model 768 Llama with random
weights and a 32k vocabulary, batches of 16 × 64 tokens (`--tiny`: bench/models.py's tiny model, two
batches of 4 × 16 tokens, once: the smoke test's size). Prints one JSON line: tokens/s of each, and
the cache's ratio to both. The cache extracts the embedding and every layer's residual at the final
position; run_with_cache caches every hook (its default).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from bench.models import describe, llama_config
from forensics.models.cache import extract_ids
from forensics.models.checkpoint import boot_bridge
from forensics.models.runtime import Runtime, torch_device
from forensics.worlds.world import build_tokenizer

# (batch, tokens, batches, repeats): the benchmark's size and the smoke test's
SIZES = {"full": (16, 64, 4, 3), "tiny": (4, 16, 2, 1)}


def build(out: Path, tiny: bool, tokens: int) -> str:
    """A random-init checkpoint with a tokenizer in `out`; returns the model's description."""
    cfg = llama_config(tiny, max_position_embeddings=tokens)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    tok = build_tokenizer([f"ship {i} was launched in {1800 + i % 200}" for i in range(500)], 512)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return describe(cfg)


def timed(fn, device) -> float:
    """Wall seconds of one call of `fn` (CUDA work included)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def tokens_per_s(bridge, device, batch: int, tokens: int, n_batches: int, repeats: int) -> dict[str, float]:
    """Tokens/s of a plain HF forward, the cache and run_with_cache: each its best of `repeats`."""
    model = bridge.original_model
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 500, (n_batches * batch, tokens), generator=gen)
    batches = [ids[i : i + batch].to(device) for i in range(0, len(ids), batch)]
    ones = torch.ones(batch, tokens, dtype=torch.long, device=device)
    rows = ids.tolist()

    @torch.no_grad()
    def plain():
        for b in batches:
            model(b, attention_mask=ones)

    def cache():
        extract_ids(bridge, rows, batch_size=batch)

    @torch.no_grad()
    def tl_cache():
        for b in batches:
            _, c = bridge.run_with_cache(b, attention_mask=ones)
            del c

    runs = {"plain": plain, "cache": cache, "run_with_cache": tl_cache}
    plain()  # warm-up
    times = {name: [] for name in runs}
    for _ in range(repeats):  # interleaved, so that other jobs' load slows all three alike
        for name, fn in runs.items():
            times[name].append(timed(fn, device))
    return {name: len(ids) * tokens / min(t) for name, t in times.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--tiny", action="store_true", help="the smoke test's size (a tiny model, two batches)")
    a = p.parse_args()
    batch, tokens, n_batches, repeats = SIZES["tiny" if a.tiny else "full"]
    device = torch_device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        model_name = build(Path(tmp), a.tiny, tokens)
        bridge = boot_bridge(Path(tmp), runtime=Runtime(device=str(device)))
    tps = tokens_per_s(bridge, device, batch, tokens, n_batches, repeats)
    print(
        json.dumps(
            {
                "bench": "cache",
                "device": str(device),
                "threads": torch.get_num_threads(),
                "model": f"{model_name}, random weights",
                "batch": f"{batch}x{tokens}",
                "tokens_per_s": {k: round(v, 1) for k, v in tps.items()},
                "cache_over_plain": round(tps["cache"] / tps["plain"], 3),
                "cache_over_run_with_cache": round(tps["cache"] / tps["run_with_cache"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
