#!/usr/bin/env bash
# Class-conditional models on the GPU machine, in one call (issue 13): the lesson's recipe (40 epochs,
# batch 64, T = 1000 linear, epsilon, AdamW 2e-4, EMA 0.999) plus labels and label dropout
# (`ddpm train --classes`, p_uncond 0.1, num_class_embeds 11 with the null label 10) on MNIST and on
# Fashion-MNIST, both on the whole training split, concurrently on the one GPU; beside them our
# Fashion-MNIST classifier (`ddpm classifier train`, 90% of train), which bench/gpu_guidance.sh needs.
# Then a grid per model (rows = classes, guidance 1 and 3) and an f16 export of each model.
#
# Needs: .bin/ddpm (go build -o .bin/ddpm ./cmd/ddpm), the MNIST .gz files in $MNIST_DIR (default
# .data/mnist) and the Fashion-MNIST ones in $FASHION_DIR (default .data/f/fashion-mnist).
# Brings back in $OUT (4 files, each well under 16 MiB):
#   summary.txt                         card, commit, wall times, the last lines of every log
#   mnist-cond.tar.gz                   mnist-cond/: the f16 pipeline (models/mnist-cond to be), loss.csv,
#   fashion-cond.tar.gz                 fashion-cond/: the same    train.json, samples/, train.txt
#   classifier-fashion-mnist.tar.gz     classifier-fashion-mnist/classifier.safetensors and its log
# Expected GPU time on one H200: ~5-6 min (one MNIST run alone took ~3 min at batch 64; two share the
# card; the classifier ~1 min); each training stops at 500 s with a checkpoint whatever happens.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
EPOCHS=${EPOCHS:-40}
M=${MNIST_DIR:-.data/mnist}
F=${FASHION_DIR:-.data/f/fashion-mnist}
B=${B:-./.bin/ddpm}
# ONLY=mnist or ONLY=fashion runs one half (the device tool carries at most 64 MiB a call: the two data
# sets and the binary do not travel together; the halves share $W on the machine).
ONLY=${ONLY:-}
W=/tmp/cond; [ -z "$ONLY" ] && rm -rf "$W"; mkdir -p "$W"
S="$OUT/summary.txt"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "commit $(git rev-parse --short HEAD 2>/dev/null)"; } | tee "$S"

t0=$EPOCHREALTIME
[ "$ONLY" != mnist ] && [ -z "${SKIP_CLASSIFIER:-}" ] && ( t=$EPOCHREALTIME
  "$B" classifier train --data fashion-mnist --data-dir "$F" --epochs "${CLS_EPOCHS:-15}" --out "$W/classifier-fashion-mnist" > "$W/classifier.txt" 2>&1
  echo "classifier wall $(awk "BEGIN{print $EPOCHREALTIME - $t}") s" >> "$W/classifier.txt" ) &
train() { # name data dir
  local t=$EPOCHREALTIME
  timeout 500 "$B" train --data "$2" --data-dir "$3" --classes --p-uncond 0.1 --out "$W/$1-run" \
    --epochs "$EPOCHS" --sample-every 10 2>&1 | grep -v "^ *[0-9]*%" > "$W/$1-train.txt"
  echo "train wall $(awk "BEGIN{print $EPOCHREALTIME - $t}") s" >> "$W/$1-train.txt"
}
[ "$ONLY" != fashion ] && train mnist-cond mnist "$M" &
[ "$ONLY" != mnist ] && train fashion-cond fashion-mnist "$F" &
wait
echo "all training wall $(awk "BEGIN{print $EPOCHREALTIME - $t0}") s" | tee -a "$S"

names="mnist-cond fashion-cond"; [ "$ONLY" = mnist ] && names=mnist-cond; [ "$ONLY" = fashion ] && names=fashion-cond
for name in $names; do
  run="$W/$name-run"; dst="$W/$name"
  for g in 1 3; do
    "$B" sample --run "$run" --class all --guidance $g --sampler ddim --steps 50 --eta 1 --seed 0 \
      --out "$run/samples/guidance$g.png" 2>&1 | tail -1 | tee -a "$W/$name-train.txt"
  done
  "$B" export --run "$run" --out "$dst" --dtype f16 2>&1 | tail -1
  cp "$run/loss.csv" "$run/train.json" "$W/$name-train.txt" "$dst/" 2>/dev/null
  cp -r "$run/samples" "$dst/" 2>/dev/null
  tar -C "$W" -czf "$OUT/$name.tar.gz" "$name"
done
cp "$W/classifier.txt" "$W/classifier-fashion-mnist/" 2>/dev/null
[ "$ONLY" != mnist ] && [ -z "${SKIP_CLASSIFIER:-}" ] && tar -C "$W" -czf "$OUT/classifier-fashion-mnist.tar.gz" classifier-fashion-mnist

for f in "$W/mnist-cond-train.txt" "$W/fashion-cond-train.txt" "$W/classifier.txt"; do
  { echo "== $(basename "$f")"; tail -6 "$f"; } >> "$S"
done
ls -la "$OUT" | tee -a "$S"
echo "== summary"; cat "$S"
