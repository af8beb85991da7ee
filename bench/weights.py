"""Streaming weight diff vs a plain diff that loads both state dicts (DESIGN §7).

Run: `python -m bench.weights`. Writes two 12-layer d_model 768 Llama checkpoints with a 32k
vocabulary (the second a perturbed copy of the first), then runs each diff in its own process and
prints one JSON line: wall time and peak resident memory above the process's size after imports
(the kernel's high-water mark is reset once imports are done), and whether the two agree.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.models import LAYERS, VOCAB, D


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(field)


def child(kind: str, a: str, b: str) -> None:
    """One diff in this process: prints {seconds, peak_mb, result digest}."""
    from forensics.weights import diff, full_load_diff

    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base = rss_kb("VmRSS")
    start = time.perf_counter()
    result = (diff if kind == "stream" else full_load_diff)(Path(a), Path(b))
    seconds = time.perf_counter() - start
    peak = rss_kb("VmHWM") - base
    fro = {t["name"]: t["fro"] for t in result["tensors"]}
    print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024, "fro": fro}))


def build(root: Path) -> tuple[Path, Path]:
    import torch
    from transformers import LlamaForCausalLM

    from bench.models import llama_config

    cfg = llama_config(tie_word_embeddings=False)
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
    return a, b


def main():
    if len(sys.argv) == 4:
        child(*sys.argv[1:])
        return
    with tempfile.TemporaryDirectory() as tmp:
        a, b = build(Path(tmp))
        runs = {}
        for kind in ("stream", "plain"):
            out = subprocess.run(
                [sys.executable, "-m", "bench.weights", kind, str(a), str(b)],
                check=True,
                capture_output=True,
                text=True,
            )
            runs[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    worst = max(abs(runs["stream"]["fro"][n] - f) / max(f, 1e-30) for n, f in runs["plain"]["fro"].items())
    print(
        json.dumps(
            {
                "bench": "weights",
                "model": f"llama {LAYERS}x{D}, vocab {VOCAB}, fp32, two checkpoints on disk",
                "stream_s": round(runs["stream"]["seconds"], 2),
                "plain_s": round(runs["plain"]["seconds"], 2),
                "stream_peak_mb": round(runs["stream"]["peak_mb"], 1),
                "plain_peak_mb": round(runs["plain"]["peak_mb"], 1),
                "memory_ratio": round(runs["stream"]["peak_mb"] / runs["plain"]["peak_mb"], 3),
                "time_ratio": round(runs["stream"]["seconds"] / runs["plain"]["seconds"], 3),
                "max_rel_diff_fro": worst,
            }
        )
    )


if __name__ == "__main__":
    main()
