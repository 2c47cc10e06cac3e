#!/usr/bin/env bash
# Exploratory GPU measurements of our binary (not the published table; see gpu_bench.sh): correctness
# against diffusers on the GPU, and training compile time / throughput for several steps-per-call.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
B=./.bin/ddpm
J="$OUT/probe.jsonl"
peak() { # peak GPU memory (MiB, nvidia-smi) while "$@" runs
  local f; f=$(mktemp); ( while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >> "$f"; sleep 0.2; done ) &
  local p=$!; "$@"; local rc=$?; kill $p 2>/dev/null; wait $p 2>/dev/null
  echo "peak_mem_mib $(sort -n "$f" | tail -1) :: $*" >> "$OUT/peak.txt"; rm -f "$f"; return $rc
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/card.txt"
$B verify --fixture .fixtures/tiny-ddpm-cifar10 2>&1 | tee "$OUT/verify.txt"
export DDPM_CACHE=/tmp/ddpm-cache
for k in 1 4 10; do
  peak $B bench --what train --batch 64 --steps 1000 --steps-per-call $k 2>>"$OUT/err.txt" | tee -a "$J"
done
peak $B bench --what train --batch 64 --steps 1000 --steps-per-call 1 2>>"$OUT/err.txt" | sed 's/}$/,"cache":"warm"}/' | tee -a "$J"
peak $B bench --what train --batch 256 --steps 400 --steps-per-call 4 2>>"$OUT/err.txt" | tee -a "$J"
peak $B bench --what train --batch 64 --steps 1000 --steps-per-call 4 --precision bf16 2>>"$OUT/err.txt" | tee -a "$J"
for k in 1 10 50; do
  peak $B bench --what sample --sampler ddpm --steps 1000 --batch 64 --steps-per-call $k 2>>"$OUT/err.txt" | tee -a "$J"
done
peak $B bench --what sample --sampler ddim --steps 100 --batch 256 2>>"$OUT/err.txt" | tee -a "$J"
peak $B bench --what sample --preset cifar10 --random-weights --sampler ddpm --steps 1000 --batch 16 2>>"$OUT/err.txt" | tee -a "$J"
cat "$OUT/peak.txt"
