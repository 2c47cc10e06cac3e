#!/usr/bin/env bash
# docs/benchmarks.md in one script: our binary and the PyTorch reference of the same network
# (bench/torch_bench.py: same UNet, same parameter count, same step and samplers) on one GPU, one JSON
# line per figure into $OUT/bench.jsonl, then the table (bench/table.py).
#
#   bash bench/gpu_bench.sh            # everything (about 15 minutes on an H200)
#   PART=ours bash bench/gpu_bench.sh  # our figures only; PART=torch for PyTorch's
#
# Needs .bin/ddpm (go build -o .bin/ddpm ./cmd/ddpm) and, for PyTorch, a python with torch 2.x
# ($PY, default /opt/torch/.venv/bin/python). Each run is a fresh process, timed from its start.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
PART=${PART:-all}
PY=${PY:-/opt/torch/.venv/bin/python}
B=./.bin/ddpm
J="$OUT/bench.jsonl"
peak() { # runs "$@", appends its JSON line with the peak GPU memory nvidia-smi saw meanwhile
  if [ "$SECONDS" -gt "${BUDGET:-1000000}" ]; then echo "SKIPPED (time budget): $*" | tee -a "$OUT/stderr.txt"; return; fi
  local f; f=$(mktemp)
  ( while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >> "$f"; sleep 0.1; done ) &
  local p=$!
  local line; line=$(timeout 300 "$@" 2>>"$OUT/stderr.txt" | tail -1)
  kill $p 2>/dev/null; wait $p 2>/dev/null
  local mem; mem=$(sort -n "$f" | tail -1); rm -f "$f"
  local tag=""; [ -n "${TAG:-}" ] && tag=",\"cache\":\"$TAG\""
  if [ -n "$line" ]; then echo "${line%\}},\"smi_peak_mib\":${mem:-0}$tag}" | tee -a "$J"; else echo "FAILED: $*" | tee -a "$OUT/stderr.txt"; fi
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
if [ "$PART" = all ] || [ "$PART" = ours ]; then
  FIX=${FIXTURE:-.fixtures/tiny-ddpm-cifar10}
  if [ -d "$FIX" ]; then  # correctness on this card first: exact float32, then what TF32 gives
    $B verify --fixture "$FIX" 2>&1 | tee "$OUT/verify.txt"
    $B verify --fixture "$FIX" --exact=false 2>&1 | tee -a "$OUT/verify.txt"
  fi
  export DDPM_CACHE=$(mktemp -d)  # cold autotune cache
  TAG=cold peak $B bench --what train --batch 64 --steps 1000 --steps-per-call 1
  TAG=warm peak $B bench --what train --batch 64 --steps 1000 --steps-per-call 1
  peak $B bench --what train --batch 64 --steps 1000 --steps-per-call 10
  peak $B bench --what train --batch 256 --steps 400 --steps-per-call 1
  peak $B bench --what train --batch 64 --steps 1000 --steps-per-call 1 --precision bf16
  peak $B bench --what sample --sampler ddpm --steps 1000 --batch 64
  peak $B bench --what sample --sampler ddim --steps 100 --batch 256
fi
if [ "$PART" = all ] || [ "$PART" = torch ]; then
  for mode in eager eager-bf16 compile cudagraphs; do
    peak $PY bench/torch_bench.py --what train --mode $mode --batch 64 --steps 500
  done
  for mode in eager compile cudagraphs; do
    peak $PY bench/torch_bench.py --what train --mode $mode --batch 256 --steps 200
    peak $PY bench/torch_bench.py --what sample --mode $mode --sampler ddpm --steps 1000 --n 64
    peak $PY bench/torch_bench.py --what sample --mode $mode --sampler ddim --steps 100 --n 256
  done
fi
$PY bench/table.py "$J" "$(cat "$OUT/card.txt")" | tee "$OUT/table.md"
