#!/usr/bin/env bash
# Several GPUs of one host (issue 17, docs/scaling.md), in one call on a machine with 2, 4 or 8 GPUs:
#   1. check: the sharded step against the plain one on every mesh size (the test binary, tiny model);
#   2. loss: `ddpm train` 300 steps at global batch 256 on MNIST with 1, 2, 4 (8) GPUs, same seed: the
#      loss curves must agree to float noise; then a run of 150 steps on the most GPUs resumed on 1 GPU
#      to step 300 (checkpoints are device-independent): it must track the 1-GPU run too;
#   3. speed: `ddpm bench --what train --devices N` for the mnist and cifar10 presets at 64 and 256
#      images per GPU, and PyTorch DDP (bench/torch_ddp.py, torchrun, same network) on the same machine;
# then one table (bench/multi_table.py).
#
#   bash bench/gpu_multi.sh                       # everything
#   PART=check,loss bash bench/gpu_multi.sh       # a subset: check, loss, speed, torch
#   PRESETS=cifar10 BATCHES=64 COUNTS="1 2" MODES="eager compile" bash bench/gpu_multi.sh
# Within the device tool's 10 minutes per command, run it in parts with the same DDPM_CACHE:
# PART=check,loss; PART=speed PRESETS=mnist; PART=speed PRESETS=cifar10; PART=torch (each figure is
# cut at FIGURE_TIMEOUT seconds, default 300; BUDGET=s skips figures once the script has run s seconds).
#
# Needs, built here (cgo on) and carried: .bin/ddpm (go build -o .bin/ddpm ./cmd/ddpm), .bin/train.test
# (go test -c -o .bin/train.test ./train), MNIST's four idx .gz files in .data/mnist (for PART=loss), and
# a python with torch 2.x ($PY, default /opt/torch/.venv/bin/python) for PART=torch. Writes under $OUT.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
PART=${PART:-check,loss,speed,torch}
PY=${PY:-/opt/torch/.venv/bin/python}
PRESETS=${PRESETS:-mnist cifar10}
BATCHES=${BATCHES:-64 256}       # images per GPU
MODES=${MODES:-eager}            # PyTorch: eager and/or compile
B=./.bin/ddpm
J="$OUT/multi.jsonl"
has() { case ",$PART," in *",$1,"*) return 0;; esac; return 1; }
NGPU=$(nvidia-smi -L | wc -l)
if [ -z "${COUNTS:-}" ]; then COUNTS=""; for n in 1 2 4 8; do [ "$n" -le "$NGPU" ] && COUNTS="$COUNTS $n"; done; fi
MAXN=$(echo $COUNTS | tr ' ' '\n' | sort -n | tail -1)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
nvidia-smi topo -m > "$OUT/topo.txt" 2>&1  # NVLink or PCIe between the GPUs: it decides the all-reduce cost
$B backends 2>&1 | tee "$OUT/backends.txt"
export DDPM_CACHE=${DDPM_CACHE:-$(mktemp -d)}
# json LABEL COMMAND...: runs one figure in a fresh process, appends its last output line (JSON) to $J
# with the label.
json() {
  local label=$1; shift
  if [ "$SECONDS" -gt "${BUDGET:-1000000}" ]; then echo "SKIPPED (time budget): $label" | tee -a "$OUT/stderr.txt"; return; fi
  local line; line=$(timeout "${FIGURE_TIMEOUT:-300}" "$@" 2>>"$OUT/stderr.txt" | tail -1)
  case "$line" in
    \{*) echo "${line%\}},\"label\":\"$label\"}" | tee -a "$J" ;;
    *) echo "FAILED: $label: $*" | tee -a "$OUT/stderr.txt" ;;
  esac
}

if has check; then  # the sharded program equals the plain step (mesh of 1, 2, 4, 8: every power of 2 present)
  [ -x .bin/train.test ] || echo "FAILED: no .bin/train.test (go test -c -o .bin/train.test ./train)" | tee -a "$OUT/stderr.txt"
  DDPM_SHARD_BACKEND=cuda ./.bin/train.test -test.run 'ShardedStepMatchesPlain|SetDevices' -test.v 2>&1 | tee "$OUT/check.txt" | grep -E "^(---|ok|FAIL|PASS)"
fi

if has loss && ! [ -d .data/mnist ]; then echo "FAILED: no .data/mnist for PART=loss" | tee -a "$OUT/stderr.txt"; fi
if has loss && [ -d .data/mnist ]; then
  L="$OUT/loss"; mkdir -p "$L"
  common="--data mnist --data-dir .data/mnist --batch 256 --seed 0 --sample-every 0 --sample-steps 1 --log-every 1"
  for n in $COUNTS; do
    rm -rf /tmp/loss$n
    $B train $common --out /tmp/loss$n --max-steps 300 --devices $n 2>&1 | grep -v "^ *[0-9]*%" > "$L/train$n.txt"
    cp /tmp/loss$n/loss.csv "$L/loss$n.csv" 2>/dev/null || echo "FAILED: loss run on $n GPUs" | tee -a "$OUT/stderr.txt"
  done
  if [ "$MAXN" -gt 1 ]; then  # 150 steps on MAXN GPUs, then resumed on 1 GPU to step 300
    rm -rf /tmp/resume
    $B train $common --out /tmp/resume --max-steps 150 --checkpoint-every 150 --devices $MAXN 2>&1 | grep -v "^ *[0-9]*%" > "$L/resume_a.txt"
    $B train --resume /tmp/resume --max-steps 300 --devices 1 2>&1 | grep -v "^ *[0-9]*%" > "$L/resume_b.txt"
    cp /tmp/resume/loss.csv "$L/resume${MAXN}to1.csv" 2>/dev/null || echo "FAILED: resume run" | tee -a "$OUT/stderr.txt"
  fi
fi

if has speed; then
  for p in $PRESETS; do
    steps=500; [ "$p" = cifar10 ] && steps=150
    for pb in $BATCHES; do
      for n in $COUNTS; do
        json "ours $p $pb x$n" $B bench --what train --preset $p --batch $((pb * n)) --devices $n --steps $steps
      done
    done
  done
fi

if has torch; then
  for mode in $MODES; do
    for p in $PRESETS; do
      steps=300; [ "$p" = cifar10 ] && steps=100
      for pb in $BATCHES; do
        for n in $COUNTS; do
          json "torch-$mode $p $pb x$n" $PY -m torch.distributed.run --standalone --nproc_per_node $n \
            bench/torch_ddp.py --preset $p --batch $pb --steps $steps --mode $mode
        done
      done
    done
  done
fi

$PY bench/multi_table.py "$OUT" 2>&1 | tee "$OUT/table.txt" || python3 bench/multi_table.py "$OUT" | tee "$OUT/table.txt"
