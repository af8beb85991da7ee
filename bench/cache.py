"""Activation cache vs a plain HF forward and TransformerLens' run_with_cache (DESIGN §7).

Run: `python -m bench.cache [--device cuda]`. A 12-layer d_model 768 Llama with random weights and
a 32k vocabulary, batches of 16 × 64 tokens. Prints one JSON line: tokens/s of each, and the
cache's ratio to both. The cache extracts the embedding and every layer's residual at the final
position; run_with_cache caches every hook (its default).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from bench.models import LAYERS, VOCAB, D, llama_config
from forensics.cache import extract_ids
from forensics.checkpoint import boot_bridge, resolve_device
from forensics.world import build_tokenizer

BATCH, TOKENS, BATCHES, REPEATS = 16, 64, 4, 3


def build(out: Path):
    cfg = llama_config(max_position_embeddings=TOKENS)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    tok = build_tokenizer([f"ship {i} was launched in {1800 + i % 200}" for i in range(500)], 512)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="auto")
    a = p.parse_args()
    device = resolve_device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        bridge = boot_bridge(Path(tmp), device=str(device))
    model = bridge.original_model
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 500, (BATCHES * BATCH, TOKENS), generator=gen)
    batches = [ids[i : i + BATCH].to(device) for i in range(0, len(ids), BATCH)]
    ones = torch.ones(BATCH, TOKENS, dtype=torch.long, device=device)
    rows = ids.tolist()

    @torch.no_grad()
    def plain():
        for b in batches:
            model(b, attention_mask=ones)

    def cache():
        extract_ids(bridge, rows, batch_size=BATCH)

    @torch.no_grad()
    def tl_cache():
        for b in batches:
            _, c = bridge.run_with_cache(b, attention_mask=ones)
            del c

    runs = {"plain": plain, "cache": cache, "run_with_cache": tl_cache}
    plain()  # warm-up
    best = {name: min(timed(fn, device) for _ in range(REPEATS)) for name, fn in runs.items()}
    tokens = BATCHES * BATCH * TOKENS
    tps = {name: tokens / t for name, t in best.items()}
    print(
        json.dumps(
            {
                "bench": "cache",
                "device": str(device),
                "threads": torch.get_num_threads(),
                "model": f"llama {LAYERS}x{D}, vocab {VOCAB}, random weights",
                "batch": f"{BATCH}x{TOKENS}",
                "tokens_per_s": {k: round(v, 1) for k, v in tps.items()},
                "cache_over_plain": round(tps["cache"] / tps["plain"], 3),
                "cache_over_run_with_cache": round(tps["cache"] / tps["run_with_cache"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
