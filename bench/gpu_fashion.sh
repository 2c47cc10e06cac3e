#!/usr/bin/env bash
# Fashion-MNIST on the GPU machine, in one call: the lesson's recipe (40 epochs, batch 64, T = 1000
# linear, epsilon, AdamW 2e-4, EMA 0.999) on 90% of the training split (--holdout 0.1, the split that
# `fid --ref fashion-mnist:holdout` scores against), and beside it on the same card our classifier
# trained on the same 90%, for classifier FID. Needs .bin/ddpm and the .gz files in .data/f/fashion-mnist.
# Brings back the run (EMA weights exported as f16, loss.csv, grids) and the classifier in $OUT.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
EPOCHS=${EPOCHS:-40}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
git rev-parse --short HEAD 2>/dev/null | tee "$OUT/commit.txt"
D=.data/f/fashion-mnist
rm -rf /tmp/fashion /tmp/classifier-fashion
( t0=$EPOCHREALTIME
  ./.bin/ddpm classifier train --data fashion-mnist --data-dir $D --out /tmp/classifier-fashion > "$OUT/classifier.txt" 2>&1
  echo "classifier wall $(awk "BEGIN{print $EPOCHREALTIME - $t0}") s" >> "$OUT/classifier.txt" ) &
t0=$EPOCHREALTIME
timeout 540 ./.bin/ddpm train --data fashion-mnist --data-dir $D --holdout 0.1 --out /tmp/fashion \
  --epochs "$EPOCHS" --sample-every 10 2>&1 | grep -v "^ *[0-9]*%" > "$OUT/train.txt"
echo "train wall $(awk "BEGIN{print $EPOCHREALTIME - $t0}") s" | tee -a "$OUT/train.txt"
wait
tail -3 "$OUT/train.txt" "$OUT/classifier.txt"
./.bin/ddpm sample --run /tmp/fashion --sampler ddpm --steps 1000 --n 64 --seed 0 --out /tmp/fashion/samples/ddpm1000.png 2>&1 | tail -2
./.bin/ddpm sample --run /tmp/fashion --sampler ddim --steps 100 --n 64 --seed 0 --out /tmp/fashion/samples/ddim100.png 2>&1 | tail -2
./.bin/ddpm export --run /tmp/fashion --out /tmp/fashion-f16 --dtype f16 2>&1 | tail -2
cp /tmp/fashion/loss.csv /tmp/fashion/config.json /tmp/fashion-f16/ 2>/dev/null
cp -r /tmp/fashion/samples /tmp/fashion-f16/ 2>/dev/null
tar -C /tmp -czf "$OUT/fashion.tar.gz" fashion-f16 classifier-fashion
ls -la "$OUT" /tmp/fashion
