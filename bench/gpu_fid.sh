#!/usr/bin/env bash
# The FID exercise as run on the lent GPU (bench/fid_exercise.sh is the general script): trains our
# MNIST classifier, samples 5000 with DDPM-1000 and 5000 with DDIM-100 (eta 0) from the bundled model's
# EMA weights, scores both and 5000 unseen real images against the first 5000 of MNIST's test split
# with the classifier features, and times pytorch-fid's Inception on 10,000 images with random weights
# (the real weights file cannot be downloaded there; its features would be meaningless, its speed is not).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
B=./.bin/ddpm
PY=${PY:-/opt/torch/.venv/bin/python}
REF='mnist:test[:5000]'
t() { local s; s=$(date +%s.%N); timeout 240 "$@"; echo "wall $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N)-$s}")s :: $*"; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "== pytorch-fid weights on this machine:"; find / -xdev -name 'pt_inception*' 2>/dev/null | head -3; ls ~/.cache/torch/hub/checkpoints 2>/dev/null
  t $B classifier train --data mnist --data-dir .data/mnist --out /tmp/clf 2>&1 | grep -v "^ *[0-9]*% "
  cp /tmp/clf/classifier.safetensors "$OUT/"
  t $B fid --sampler ddpm --steps 1000 --n 5000 --batch 5000 --seed 0 --ref "$REF" --data-dir .data/mnist \
    --features classifier --classifier /tmp/clf --save-samples /tmp/ddpm1000.safetensors --json 2>&1 | grep -v "^ *[0-9]*% "
  t $B fid --sampler ddim --steps 100 --eta 0 --n 5000 --batch 5000 --seed 0 --ref "$REF" --data-dir .data/mnist \
    --features classifier --classifier /tmp/clf --save-samples /tmp/ddim100.safetensors --json 2>&1 | grep -v "^ *[0-9]*% "
  t $B fid --images 'mnist:test[5000:10000]' --ref "$REF" --data-dir .data/mnist --features classifier --classifier /tmp/clf --json 2>&1 | grep -v "^ *[0-9]*% "
  $PY bench/random_inception.py /tmp/inception_random.pth
  t $B fid --images /tmp/ddpm1000.safetensors --ref "$REF" --data-dir .data/mnist --features inception \
    --inception-weights /tmp/inception_random.pth --json --no-cache 2>&1 | grep -v "^ *[0-9]*% "
} 2>&1 | tee "$OUT/log.txt"
cp /tmp/ddpm1000.safetensors /tmp/ddim100.safetensors "$OUT/" 2>/dev/null
