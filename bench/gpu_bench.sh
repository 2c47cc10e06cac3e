#!/usr/bin/env bash
# docs/benchmarks.md in one script: our binary and the PyTorch reference of the same network
# (bench/torch_bench.py: same UNet, same parameter count, same step and samplers) on one GPU, one JSON
# line per figure into $OUT/bench.jsonl, then the table (bench/table.py).
#
#   bash bench/gpu_bench.sh            # everything (about 15 minutes on an H200)
#   PART=ours bash bench/gpu_bench.sh  # our figures only (~7 min); PART=torch for PyTorch's (~10 min)
#   PART=torch MODES=cudagraphs WHAT=sample bash bench/gpu_bench.sh   # a subset of PyTorch's
#
# Needs .bin/ddpm (go build -o .bin/ddpm ./cmd/ddpm), MNIST's idx .gz files in .data/mnist for the
# real recipe run, and, for PyTorch, a python with torch 2.x ($PY, default /opt/torch/.venv/bin/python).
# Each figure is a fresh process. "cold": ddpm's cache directory is empty (XLA compiles and autotunes);
# "warm": the same command again (executables come from the cache).
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
  local t0=$EPOCHREALTIME
  local line; line=$(timeout 300 "$@" 2>>"$OUT/stderr.txt" | tail -1)
  local proc; proc=$(awk "BEGIN{print $EPOCHREALTIME - $t0}")
  kill $p 2>/dev/null; wait $p 2>/dev/null
  local mem; mem=$(sort -n "$f" | tail -1); rm -f "$f"
  local tag=""; [ -n "${TAG:-}" ] && tag=",\"cache\":\"$TAG\""
  if [ -n "$line" ]; then echo "${line%\}},\"smi_peak_mib\":${mem:-0},\"process_s\":$proc$tag}" | tee -a "$J"; else echo "FAILED: $*" | tee -a "$OUT/stderr.txt"; fi
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
if [ "$PART" = all ] || [ "$PART" = ours ]; then
  FIX=${FIXTURE:-.fixtures/tiny-ddpm-cifar10}
  [ -d "$FIX" ] || FIX=.fixtures-min/tiny-ddpm-cifar10  # the safetensors weights alone
  if [ -d "$FIX" ]; then  # correctness on this card first: exact float32, then what TF32 gives
    $B verify --fixture "$FIX" 2>&1 | tee "$OUT/verify.txt"
    $B verify --fixture "$FIX" --exact=false 2>&1 | tee -a "$OUT/verify.txt"
  fi
  export DDPM_CACHE=$(mktemp -d)  # an empty cache: the cold figures
  for tag in cold warm; do
    TAG=$tag peak $B bench --what train --batch 64 --steps 2000
    TAG=$tag peak $B bench --what train --batch 256 --steps 500
    TAG=$tag peak $B bench --what sample --sampler ddpm --steps 1000 --batch 64
    TAG=$tag peak $B bench --what sample --sampler ddim --steps 100 --batch 256
  done
  TAG=cold peak $B bench --what train --batch 64 --steps 2000 --precision bf16
  TAG=cold peak $B bench --what train --batch 256 --steps 500 --precision bf16
  if [ -d .data/mnist ]; then  # the lesson's recipe for real: 40 epochs, then 64 DDPM-1000 samples
    R=$(mktemp -d)/run
    t0=$EPOCHREALTIME
    $B train --data mnist --data-dir .data/mnist --out "$R" --sample-every 0 > "$OUT/recipe.txt" 2>&1 &&
      $B sample --run "$R" --sampler ddpm --steps 1000 --n 64 --out "$OUT/recipe-samples.png" >> "$OUT/recipe.txt" 2>&1
    rc=$?
    s=$(awk "BEGIN{print $EPOCHREALTIME - $t0}")
    echo "{\"what\":\"recipe\",\"backend\":\"xla:cuda\",\"rc\":$rc,\"wall_s\":$s}" | tee -a "$J"
    cp "$R/loss.csv" "$OUT/recipe-loss.csv" 2>/dev/null
    grep -h "first call\|trained\|steady" "$OUT/recipe.txt"
  fi
fi
if [ "$PART" = all ] || [ "$PART" = torch ]; then
  MODES=${MODES:-eager compile cudagraphs}  # a subset reruns what a time budget skipped
  WHAT=${WHAT:-train sample}
  for mode in $MODES; do
    case " $WHAT " in *" train "*)
      peak $PY bench/torch_bench.py --what train --mode $mode --batch 64 --steps 500
      [ $mode = eager ] || peak $PY bench/torch_bench.py --what train --mode $mode-bf16 --batch 64 --steps 500
      [ $mode = eager ] && peak $PY bench/torch_bench.py --what train --mode eager-bf16 --batch 64 --steps 500
      peak $PY bench/torch_bench.py --what train --mode $mode --batch 256 --steps 200 ;;
    esac
    case " $WHAT " in *" sample "*)
      peak $PY bench/torch_bench.py --what sample --mode $mode --sampler ddpm --steps 1000 --n 64
      peak $PY bench/torch_bench.py --what sample --mode $mode --sampler ddim --steps 100 --n 256 ;;
    esac
  done
fi
$PY bench/table.py "$J" "$(cat "$OUT/card.txt")" | tee "$OUT/table.md"
