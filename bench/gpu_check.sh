#!/usr/bin/env bash
# The GPU checks of DESIGN §10 in one run, ≤ 8 minutes on a machine with one GPU; JSON lines to
# stdout and to $OUT (default bench-out/). Run from a checkout whose environment has the CUDA build
# of torch and the `scale` extra (ray, peft, accelerate):
#   1. cache throughput vs a plain HF forward on the GPU (target ≥ 0.95×)
#   2. batched probes on the GPU vs a loop of scikit-learn fits (target ≥ 50×)
#   3. bench/scale.py's stages on a Llama-2-7B-shaped random-init bf16 checkpoint written on this
#      machine and loaded with device_map="auto": cache, probes, diff, divergence, one LoRA-RTT
#      epoch; time, peak RSS and peak GPU memory per stage
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device here; these checks need one (the CPU figures come from bench/*.py)" >&2
  exit 2
fi
$PY -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"
timeout 120 $PY -m bench.cache --device cuda | tee "$OUT/cache.json"
timeout 120 $PY -m bench.probes --device cuda | tee "$OUT/probes.json"
SCALE=${SCALE_DIR:-/tmp/forensics-scale}
timeout 300 $PY -m bench.scale --sizes llama7b --device cuda --device-map auto --keep "$SCALE" | tee "$OUT/scale.json"
rm -rf "$SCALE"
