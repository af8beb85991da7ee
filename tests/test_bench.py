"""Smoke runs of every benchmark at its tiny size, so that none rots unnoticed (issue 21).

Each bench runs as `python -m bench.<name>` in a process of its own, and its JSON line is checked
for its keys and for the fields that say whether it computed the right thing. Timings and speed
ratios are never asserted: they belong to the benchmarks at their real sizes (docs/design.md §7).
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args: str) -> dict:
    """The last JSON line a bench prints. One thread: tiny problems gain nothing from a second,
    and beside other jobs on 2 cores OpenMP's waiting makes them several times slower."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def number(x, low: float = 0.0) -> bool:
    """A finite number ≥ `low` (timings are rounded: a tiny stage's may read 0)."""
    return isinstance(x, int | float) and math.isfinite(x) and x >= low


def test_cache_bench_runs_tiny():
    out = run_bench("bench.cache", "--tiny")
    assert out["bench"] == "cache" and out["device"] == "cpu"
    assert out["model"].startswith("llama 2x64") and out["batch"] == "4x16"
    assert set(out["tokens_per_s"]) == {"plain", "cache", "run_with_cache"}
    assert all(number(v) for v in out["tokens_per_s"].values())
    assert number(out["cache_over_plain"]) and number(out["cache_over_run_with_cache"])


def test_weights_bench_runs_tiny_and_agrees_with_the_plain_diff():
    out = run_bench("bench.weights", "--tiny", "--in-process")
    assert out["bench"] == "weights" and out["model"].startswith("llama 2x64")
    assert all(number(out[k]) for k in ("stream_s", "plain_s", "stream_peak_mb", "plain_peak_mb"))
    assert {"memory_ratio", "time_ratio"} <= set(out)
    assert 0 <= out["max_rel_diff_fro"] < 1e-12  # the streaming diff is the plain one


def test_probe_lens_bench_runs_tiny_and_reads_the_peers_hidden_states():
    out = run_bench("bench.probe_lens", "--tiny")
    assert out["bench"] == "probe_lens" and out["layers"] == 2 and out["facts"] > 0
    assert all(number(out[k]) for k in ("peer_s", "lens_s", "lens_over_peer"))
    assert all(number(v) for v in out["parts_s"].values())
    assert out["resid_max_abs_diff"] < 1e-4  # the lens reads the residuals HF returns


def test_probes_bench_runs_tiny():
    out = run_bench("bench.probes", "--tiny")
    layers, Cs = out["layers"], out["Cs"]
    assert out["bench"] == "probes" and (layers, out["d"], out["folds"]) == (3, 16, 3)
    for key in ("acc_sklearn", "acc_batched", "acc_ridge"):
        assert len(out[key]) == layers and all(0 <= a <= 1 for a in out[key])
    assert len(out["C_batched"]) == len(out["C_sklearn"]) == layers
    assert set(out["C_batched"]) <= set(Cs) and set(out["C_sklearn"]) <= set(Cs)
    assert out["max_abs_diff"] <= 0.05  # scikit-learn's probes, up to a near-tie's choice of C
    assert all(number(out[k]) for k in ("sklearn_s", "batched_s", "ridge_s"))


def test_scale_bench_runs_tiny():
    out = run_bench("bench.scale", "--sizes", "tiny", "--in-process")
    assert out["bench"] == "scale" and out["size"] == "tiny"
    assert (out["num_hidden_layers"], out["hidden_size"], out["vocab"]) == (2, 64, 1024)
    assert out["checkpoint_mb"] > 0
    for stage in ("cache", "probes", "diff", "divergence", "lora"):
        figures = out[stage]
        assert set(figures) == {"seconds", "peak_mb", "gpu_peak_mb", "disk_mb"}, stage
        assert number(figures["seconds"]) and figures["gpu_peak_mb"] is None, stage
    assert out["cache"]["disk_mb"] > 0  # the cache stage leaves its entry on disk


def test_rtt_bench_runs_tiny_and_trains_as_the_plain_loop():
    out = run_bench("bench.rtt", "--tiny", "--epochs", "2")
    assert out["bench"] == "rtt" and out["model"].startswith("llama 2x64") and out["examples"] == 8
    assert number(out["toolkit_s"]) and number(out["peer_s"]) and "toolkit_over_peer" in out
    # the same weights, batches and optimizer: the same training, up to float rounding
    assert abs(out["toolkit_loss"] - out["peer_loss"]) <= 1e-3 * out["peer_loss"], out
