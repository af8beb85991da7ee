"""Streaming weight diff vs a plain diff that loads both state dicts (docs/design.md §7).

Run: `python -m bench.weights [--tiny]`. Writes two 12-layer d_model 768 Llama checkpoints with a 32k
vocabulary (the second a perturbed copy of the first; `--tiny`: bench/models.py's tiny model, the
smoke test's size), then runs each diff in its own process and prints one JSON line: wall time and
peak resident memory above the process's size after imports (the kernel's high-water mark is reset
once imports are done), and whether the two agree.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_kb(field: str) -> int:
    """A field of /proc/self/status (VmRSS, VmHWM) in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(field)


def child(kind: str, a: str, b: str) -> dict:
    """One diff in this process: {seconds, peak_mb, fro (‖ΔW‖_F per tensor)}."""
    from forensics.measure.weights import diff, full_load_diff
    from forensics.models.arch import arch_of_checkpoint

    # Both diffs name each tensor's module through the architecture's layout, which imports
    # TransformerLens' adapters on first use: an import (≈160 MB whatever the model's size), so
    # done before the reset, like the others.
    arch_of_checkpoint(Path(a))
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base = rss_kb("VmRSS")
    start = time.perf_counter()
    result = (diff if kind == "stream" else full_load_diff)(Path(a), Path(b))
    seconds = time.perf_counter() - start
    peak = rss_kb("VmHWM") - base
    fro = {t["name"]: t["fro"] for t in result["tensors"]}
    return {"seconds": seconds, "peak_mb": peak / 1024, "fro": fro}


def diff_process(kind: str, a: str, b: str) -> dict:
    """`child` in a process of its own (its peak memory is then the diff's alone)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.weights", "--child", kind, a, b],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def build(root: Path, tiny: bool) -> tuple[Path, Path, str]:
    """The original checkpoint and a perturbed copy under `root`, and the model's description."""
    import torch
    from transformers import LlamaForCausalLM

    from bench.models import describe, llama_config

    cfg = llama_config(tiny, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    a, b = root / "original", root / "unlearned"
    model.save_pretrained(str(a), safe_serialization=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    model.save_pretrained(str(b), safe_serialization=True)
    for path in (a, b):  # the diff needs no tokenizer, but check_dir wants a complete checkpoint
        (path / "tokenizer.json").write_text("{}")
    return a, b, describe(cfg)


def ratio(a: float, b: float) -> float | None:
    """a / b to 3 decimals; None where b is 0 (a tiny in-process diff may raise no new peak)."""
    return round(a / b, 3) if b > 0 else None


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(*sys.argv[2:5])))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="the smoke test's size (a tiny model)")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="both diffs in this process, not one process each: seconds of imports fewer, but the "
        "second's peak then includes what the first left (the smoke test: with --tiny)",
    )
    a = p.parse_args()
    run = child if a.in_process else diff_process
    with tempfile.TemporaryDirectory() as tmp:
        original, unlearned, model_name = build(Path(tmp), a.tiny)
        runs = {kind: run(kind, str(original), str(unlearned)) for kind in ("stream", "plain")}
    worst = max(abs(runs["stream"]["fro"][n] - f) / max(f, 1e-30) for n, f in runs["plain"]["fro"].items())
    print(
        json.dumps(
            {
                "bench": "weights",
                "model": f"{model_name}, fp32, two checkpoints on disk",
                "stream_s": round(runs["stream"]["seconds"], 2),
                "plain_s": round(runs["plain"]["seconds"], 2),
                "stream_peak_mb": round(runs["stream"]["peak_mb"], 1),
                "plain_peak_mb": round(runs["plain"]["peak_mb"], 1),
                "memory_ratio": ratio(runs["stream"]["peak_mb"], runs["plain"]["peak_mb"]),
                "time_ratio": ratio(runs["stream"]["seconds"], runs["plain"]["seconds"]),
                "max_rel_diff_fro": worst,
            }
        )
    )


if __name__ == "__main__":
    main()
