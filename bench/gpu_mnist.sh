#!/usr/bin/env bash
# The lesson's recipe on the GPU machine, in one call: a training-speed smoke test (1 and 10 steps
# per compiled call), then MNIST 40 epochs at batch 64, then 8x8 grids of EMA samples with DDPM-1000
# and DDIM-100 and a reverse trajectory. Needs .bin/ddpm (go build -o .bin/ddpm ./cmd/ddpm) and the
# MNIST .gz files in .data/mnist. Results go to $OUT (the device tool brings them back).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
EPOCHS=${EPOCHS:-40}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
./.bin/ddpm backends 2>&1 | tee "$OUT/backends.txt"
for k in 1 10; do
  rm -rf /tmp/smoke$k
  t0=$(date +%s.%N); ./.bin/ddpm train --data mnist --data-dir .data/mnist \
    --out /tmp/smoke$k --max-steps 500 --steps-per-call $k --sample-every 0 --sample-steps 10 2>&1 | grep -v "^ *[0-9]*%" | tee -a "$OUT/smoke.txt"
  echo "smoke K=$k wall $(echo "$(date +%s.%N) - $t0" | bc)s" | tee -a "$OUT/smoke.txt"
done
rm -rf /tmp/mnist
timeout 480 ./.bin/ddpm train --data mnist --data-dir .data/mnist --out /tmp/mnist --epochs "$EPOCHS" \
  --steps-per-call 10 --sample-every 10 2>&1 | tee "$OUT/train.txt" | grep -v "^ *[0-9]*%"
./.bin/ddpm sample --run /tmp/mnist --sampler ddpm --steps 1000 --n 64 --seed 0 --out /tmp/mnist/samples/ddpm1000.png \
  --trajectory /tmp/mnist/samples/trajectory.png 2>&1 | tee -a "$OUT/sample.txt"
./.bin/ddpm sample --run /tmp/mnist --sampler ddim --steps 100 --n 64 --seed 0 --out /tmp/mnist/samples/ddim100.png \
  --trajectory /tmp/mnist/samples/trajectory.gif 2>&1 | tee -a "$OUT/sample.txt"
tar -C /tmp -czf "$OUT/mnist_run.tar.gz" --exclude=checkpoints mnist
ls -la /tmp/mnist /tmp/mnist/samples
