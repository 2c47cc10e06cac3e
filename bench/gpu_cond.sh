#!/usr/bin/env bash
# Class-conditional models on the GPU machine, in one call (issue 13): the lesson's recipe (40 epochs,
# batch 64, T = 1000 linear, epsilon, AdamW 2e-4, EMA 0.999) plus labels and label dropout
# (`ddpm train --classes`, p_uncond 0.1, num_class_embeds 11 with the null label 10) on MNIST and on
# Fashion-MNIST, both on the whole training split, concurrently on the one GPU; beside them our
# Fashion-MNIST classifier (`ddpm classifier train`, 90% of train), which bench/gpu_guidance.sh needs.
# Then a grid per model (rows = classes, guidance 3; the run's own grids are guidance 1) and an f16
# export of each model. In the background meanwhile, bench/check_guidance_diffusers.py (guided runs of
# diffusers with other embedding types, prediction types and samplers against ddpm sample), when the
# venv has diffusers.
#
# Needs: .bin/ddpm or .bin/ddpm.gz (go build -o .bin/ddpm ./cmd/ddpm), the MNIST .gz files in
# $MNIST_DIR (default .data/mnist) and the Fashion-MNIST ones in $FASHION_DIR (default
# .data/f/fashion-mnist): 14 + 12 + 30 MB with the binary compressed, under the 64 MiB carry limit.
# Brings back in $OUT (4 files, each well under 16 MiB):
#   summary.txt                         card, commit, wall times, the diffusers check, the last lines of every log
#   mnist-cond.tar.gz                   mnist-cond/: the f16 pipeline (models/mnist-cond to be), loss.csv,
#   fashion-cond.tar.gz                 fashion-cond/: the same    train.json, samples/, train.txt
#   classifier-fashion-mnist.tar.gz     classifier-fashion-mnist/classifier.safetensors and its log
# Expected GPU time on one H200: ~7-8 min: one MNIST run alone took ~3 min (188 s with 64 DDPM-1000
# samples, README); two processes share the card by time-slicing (~2x each), the classifier ~1 min beside
# them; then ~1 min of grids and exports. Each training stops at $TRAIN_TIMEOUT = 430 s with a checkpoint
# and its EMA weights whatever happens (the loss log says how far it got). If that cuts the 40 epochs
# short, run it twice, ONLY=mnist then ONLY=fashion-mnist (~4 min each).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# The binary may travel compressed (the carry limit is 64 MiB): .bin/ddpm.gz.
[ -x .bin/ddpm ] || { gunzip -c .bin/ddpm.gz > .bin/ddpm && chmod +x .bin/ddpm; }
EPOCHS=${EPOCHS:-40}
ONLY=${ONLY:-}                        # mnist or fashion-mnist: train only that one (and still the classifier)
TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-430}   # seconds; training stops there with a checkpoint and its EMA weights
M=${MNIST_DIR:-.data/mnist}
F=${FASHION_DIR:-.data/f/fashion-mnist}
W=/tmp/cond; rm -rf "$W"; mkdir -p "$W"
S="$OUT/summary.txt"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "commit $(git rev-parse --short HEAD 2>/dev/null)"; } | tee "$S"

# Outside-CI check of guided runs against diffusers (if the venv has it; CPU torch, seconds).
PY=/opt/torch/.venv/bin/python; [ -x "$PY" ] || PY=python3
( timeout 300 $PY bench/check_guidance_diffusers.py --ddpm ./.bin/ddpm --work "$W/check" > "$W/check.txt" 2>&1 ) &
t0=$EPOCHREALTIME
( t=$EPOCHREALTIME
  ./.bin/ddpm classifier train --data fashion-mnist --data-dir "$F" --out "$W/classifier-fashion-mnist" > "$W/classifier.txt" 2>&1
  echo "classifier wall $(awk "BEGIN{print $EPOCHREALTIME - $t}") s" >> "$W/classifier.txt" ) &
model() { # name data dir: train, a guided grid, the f16 export, the tar
  local t=$EPOCHREALTIME run="$W/$1-run" dst="$W/$1"
  timeout "$TRAIN_TIMEOUT" ./.bin/ddpm train --data "$2" --data-dir "$3" --classes --p-uncond 0.1 --out "$run" \
    --epochs "$EPOCHS" --sample-every 10 2>&1 | grep -v "^ *[0-9]*%" > "$W/$1-train.txt"
  echo "train wall $(awk "BEGIN{print $EPOCHREALTIME - $t}") s" >> "$W/$1-train.txt"
  ./.bin/ddpm sample --run "$run" --class all --guidance 3 --sampler ddim --steps 50 --eta 1 --seed 0 \
    --out "$run/samples/guidance3.png" 2>&1 | tail -1 >> "$W/$1-train.txt"
  ./.bin/ddpm export --run "$run" --out "$dst" --dtype f16 2>&1 | tail -1 >> "$W/$1-train.txt"
  cp "$run/loss.csv" "$run/train.json" "$W/$1-train.txt" "$dst/" 2>/dev/null
  cp -r "$run/samples" "$dst/" 2>/dev/null
  tar -C "$W" -czf "$OUT/$1.tar.gz" "$1"
}
case "$ONLY" in
  ""|mnist) model mnist-cond mnist "$M" & ;;
esac
case "$ONLY" in
  ""|fashion-mnist) model fashion-cond fashion-mnist "$F" & ;;
esac
wait
echo "all wall $(awk "BEGIN{print $EPOCHREALTIME - $t0}") s" | tee -a "$S"

cp "$W/classifier.txt" "$W/classifier-fashion-mnist/" 2>/dev/null
tar -C "$W" -czf "$OUT/classifier-fashion-mnist.tar.gz" classifier-fashion-mnist

for f in "$W/check.txt" "$W/mnist-cond-train.txt" "$W/fashion-cond-train.txt" "$W/classifier.txt"; do
  { echo "== $(basename "$f")"; tail -6 "$f"; } >> "$S"
done
ls -la "$OUT" | tee -a "$S"
echo "== summary"; cat "$S"
