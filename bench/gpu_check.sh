#!/usr/bin/env bash
# Do the GPU fast paths change results? Same seed, same command, each a fresh process:
#   sync + no executable cache (go-xla's plain path) / async + cold cache / async + warm cache.
# Sampling must agree bit for bit; training losses are compared over 300 steps (XLA's GPU reductions
# may use atomics, so two plain runs are compared too). Then XLA's cost analysis of the steps.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
PY=${PY:-/opt/torch/.venv/bin/python}
B=./.bin/ddpm
C=$(mktemp -d)
for s in "ddim 50" "ddpm 1000"; do
  set -- $s
  DDPM_CACHE=$C DDPM_XLA_SYNC=1 DDPM_EXEC_CACHE=off $B sample --sampler $1 --steps $2 --out "$OUT/$1-plain.safetensors" 2>>"$OUT/stderr.txt"
  DDPM_CACHE=$C $B sample --sampler $1 --steps $2 --out "$OUT/$1-cold.safetensors" 2>>"$OUT/stderr.txt"
  DDPM_CACHE=$C $B sample --sampler $1 --steps $2 --out "$OUT/$1-warm.safetensors" 2>>"$OUT/stderr.txt"
  $PY bench/compare_samples.py "$OUT/$1-plain.safetensors" "$OUT/$1-cold.safetensors" "$OUT/$1-warm.safetensors"
done
grep -h "first call\|backend:" "$OUT/stderr.txt" | head -4
for r in plain plain2 async; do
  env $([ $r = async ] || echo DDPM_XLA_SYNC=1 DDPM_EXEC_CACHE=off) DDPM_CACHE=$C $B train --data mnist --data-dir .data/mnist \
    --max-steps 300 --sample-every 0 --out "$OUT/train-$r" > "$OUT/train-$r.txt" 2>&1 || tail -3 "$OUT/train-$r.txt"
done
$PY - "$OUT" <<'PY'
import csv, sys
out = sys.argv[1]
runs = {r: [float(row["loss"]) for row in csv.DictReader(open(f"{out}/train-{r}/loss.csv"))] for r in ("plain", "plain2", "async")}
for a, b in (("plain", "plain2"), ("plain", "async")):
    d = [abs(x - y) for x, y in zip(runs[a], runs[b])]
    first = next((i + 1 for i, v in enumerate(d) if v > 0), None)
    print(f"train losses {a} vs {b}: {len(d)} steps, first differing step {first}, max |diff| {max(d):.3g}, "
          f"mean of the last 100: {sum(runs[a][-100:]) / 100:.5f} vs {sum(runs[b][-100:]) / 100:.5f}")
PY
rm -rf "$OUT"/train-*/checkpoints "$OUT"/train-*/unet "$OUT"/*.safetensors
DDPM_CACHE=$C $B bench --what train --batch 64 --steps 1000 2>/dev/null | tee -a "$OUT/cost.jsonl"
DDPM_CACHE=$C $B bench --what train --batch 256 --steps 300 2>/dev/null | tee -a "$OUT/cost.jsonl"
DDPM_CACHE=$C $B bench --what sample --sampler ddpm --steps 1000 --batch 64 2>/dev/null | tee -a "$OUT/cost.jsonl"
