#!/usr/bin/env bash
# The sampler quality study of issue 12 on one GPU, one data set per call (docs/samplers.md):
# classifier FID of 10,000 samples against held-out real images for DDIM (eta 0), DPM-Solver++ 2M,
# SDE-DPM-Solver++ 2M, Euler, Euler ancestral, Heun and DPM-Solver++ 2M Karras at 5, 10, 20, 50 and 100
# model evaluations (Heun: 5, 9, 19, 49, 99), plus DDPM-1000, each cell timed, all in ONE process
# (`ddpm samplers`: the model and its two step graphs stay compiled, batches of 5000), then the floor
# (unseen real images against the same reference).
#
#   bench/gpu_samplers.sh MODEL_DIR DATASET [CLASSIFIER_DIR]
#
#   MODEL_DIR       a diffusers pipeline directory or a `ddpm train` run directory (models/mnist, /tmp/fashion)
#   DATASET         mnist or fashion-mnist; the idx .gz files in $DATA (default .data/DATASET)
#   CLASSIFIER_DIR  the classifier whose features score (default: models/classifier-DATASET if bundled,
#                   else one is trained first with `ddpm classifier train`, ~1 minute)
#
# Reference: mnist:test for MNIST (the bundled model's table in ../shared/README.md uses it),
# DATASET:holdout (the 10% of train that neither `ddpm train --holdout 0.1` nor the classifier saw) otherwise;
# override with REF=... . Needs .bin/ddpm (go build -o .bin/ddpm ./cmd/ddpm). Writes $OUT/samplers-DATASET.jsonl
# (one JSON line per cell), $OUT/floor-DATASET.json and the log, and prints the table last.
# Estimated GPU time per data set on an H200: ~2300 model evaluations of 10,000 samples at ~12 us per
# sample-evaluation (DDPM-1000 of 5000 took 58.4 s, docs/fid.md) = ~270 s, plus ~1 minute of compilation
# (two step graphs at batch 5000) and a few seconds of features: ~6 minutes.
# The two calls (the device tool carries 64 MiB and .bin/ddpm is ~42 MB, so Fashion-MNIST's 30 MB of idx
# files do not fit beside it: without .data/fashion-mnist the reference is the committed statistics of its
# hold-out, bench/samplers/fashion-mnist-holdout-classifier-fashion-mnist-a07069eb7c08.safetensors, made on
# the CPU by `ddpm fid --images 'fashion-mnist:test[:6000]' --ref fashion-mnist:holdout --features classifier`,
# which also gave the floor, 52.82 on the CPU as on the GPU; the bundled models/classifier-fashion-mnist,
# retrained for 15 epochs on 2026-12-03, has that hash):
#   bench/gpu_samplers.sh models/mnist mnist                   # carry .bin .data/mnist
#   bench/gpu_samplers.sh models/fashion-mnist fashion-mnist   # carry .bin
# Then, here: .bin/ddpm samplers --report OUT1/samplers-mnist.jsonl,OUT1/floor-mnist.json,OUT2/samplers-fashion-mnist.jsonl,bench/samplers/floor-fashion-mnist.json --md docs/samplers.md
# (writes docs/images/samplers-*.png; bench/samplers/floor-fashion-mnist.json: 6000 test images against the hold-out, 52.82)
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
B=./.bin/ddpm
MODEL=${1:?usage: bench/gpu_samplers.sh MODEL_DIR DATASET [CLASSIFIER_DIR]}
DS=${2:?usage: bench/gpu_samplers.sh MODEL_DIR DATASET [CLASSIFIER_DIR]}
CLF=${3:-}
DATA=${DATA:-.data/$DS}
N=${N:-10000}   # SAMPLERS, EVALS, DDPM_STEPS override ddpm samplers' defaults (for a dry run)
BATCH=${BATCH:-5000}
STATS=bench/samplers/$DS-holdout-classifier-$DS-a07069eb7c08.safetensors
if [ "$DS" = mnist ]; then REF=${REF:-mnist:test}; FLOOR=${FLOOR:-mnist:holdout}
elif [ -f "$STATS" ] && [ ! -d "$DATA" ]; then REF=${REF:-$STATS}; FLOOR=${FLOOR:-none}
else REF=${REF:-$DS:holdout}; FLOOR=${FLOOR:-$DS:test[:6000]}; fi
SRC=(--model "$MODEL"); [ -f "$MODEL/train.json" ] && SRC=(--run "$MODEL")
LOG="$OUT/samplers-$DS.log"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  git log -1 --format='commit %H' 2>/dev/null
  if [ -z "$CLF" ]; then
    if [ -d "models/classifier-$DS" ]; then CLF="models/classifier-$DS"; else
      CLF=/tmp/clf-$DS
      echo "== training the $DS classifier"
      $B classifier train --data "$DS" --data-dir "$DATA" --out "$CLF" 2>&1 | grep -v "^ *[0-9]*% "
      cp "$CLF"/*.safetensors "$OUT/" 2>/dev/null
    fi
  fi
  echo "== study: ${SRC[*]}, $DS, ref $REF, classifier $CLF, N $N, batch $BATCH"
  s=$(date +%s.%N)
  $B samplers "${SRC[@]}" --dataset "$DS" --ref "$REF" --data-dir "$DATA" --features classifier --classifier "$CLF" \
    --n "$N" --batch "$BATCH" --seed 0 --out "$OUT/samplers-$DS.jsonl" \
    ${SAMPLERS:+--samplers "$SAMPLERS"} ${EVALS:+--evals "$EVALS"} ${DDPM_STEPS:+--ddpm-steps "$DDPM_STEPS"} >/dev/null
  echo "study wall $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N)-$s}")s"
  if [ "$FLOOR" != none ]; then
    echo "== floor: $FLOOR against $REF"
    $B fid --images "$FLOOR" --ref "$REF" --data-dir "$DATA" --features classifier --classifier "$CLF" --json 2>&1 \
      | grep -v "^ *[0-9]*% " | tee /dev/stderr | grep '^{' > "$OUT/floor-$DS.json"
  fi
} 2>&1 | tee "$LOG"
F="$OUT/samplers-$DS.jsonl"; [ -s "$OUT/floor-$DS.json" ] && F="$F,$OUT/floor-$DS.json"
[ "$DS" = fashion-mnist ] && [ ! -s "$OUT/floor-$DS.json" ] && F="$F,bench/samplers/floor-fashion-mnist.json"
$B samplers --report "$F" --md "$OUT/samplers-$DS.md" --images "$OUT" >/dev/null && cat "$OUT/samplers-$DS.md"
