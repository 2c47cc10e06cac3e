#!/usr/bin/env bash
# Classifier-free guidance measured on the GPU machine, in one call (issue 13, docs/guidance.md): for the
# conditional MNIST and Fashion-MNIST models of bench/gpu_cond.sh and guidance 0, 1, 2, 3, 5, 7, 10,000
# samples each (1,000 per class, DDIM 50 steps eta 1, the same seeds at every scale), scored with our
# classifier of the data set: the accuracy with which it recognises the requested class, the classifier
# FID against the real test split (10,000 images never trained on), and the FID of each class against
# that class's 1,000 test images (mean over classes). The two data sets run concurrently on the one GPU.
#
# Needs: .bin/guidance or .bin/guidance.gz (go build -o .bin/guidance ./bench/guidance); in $COND_DIR
# (default .data/cond) the folders of gpu_cond.sh's tars: mnist-cond/, fashion-cond/, and
# classifier-fashion-mnist/ (else models/classifier-fashion-mnist is used); the test split .gz files
# (t10k-images/labels) of MNIST in $MNIST_DIR (default .data/t10k/mnist) and of Fashion-MNIST in
# $FASHION_DIR (default .data/t10k/fashion-mnist): only the test files, to stay under the 64 MiB carry
# limit; models/classifier-mnist (in the repository).
# Brings back in $OUT: summary.txt, mnist.jsonl, fashion-mnist.jsonl (one JSON line per scale),
# mnist-guidance.png, fashion-mnist-guidance.png (rows = classes, 3 samples per scale, scales left to
# right). Then, on the development machine: python3 bench/guidance_doc.py OUTDIR prints the table for
# docs/guidance.md's "Measured" section and writes the plot and grids into docs/images.
# Expected GPU time on one H200: ~4 min (per data set 5M UNet evaluations of 28x28 images at batch
# 2,000, ~1 min, plus 3 compilations: S = 0, S = 1, and one graph for every other S, whose scale is an
# input); each data set stops at 500 s, keeping the scales it finished.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# The binary may travel compressed (the carry limit is 64 MiB): .bin/guidance.gz.
[ -x .bin/guidance ] || { gunzip -c .bin/guidance.gz > .bin/guidance && chmod +x .bin/guidance; }
C=${COND_DIR:-.data/cond}
M=${MNIST_DIR:-.data/t10k/mnist}
F=${FASHION_DIR:-.data/t10k/fashion-mnist}
# SAMPLER (any of ddpm sample's, default ddim), KARRAS=1 and STEPS choose the sampler.
SCALES=${SCALES:-0,1,2,3,5,7}
STEPS=${STEPS:-50}
S="$OUT/summary.txt"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "commit $(git rev-parse --short HEAD 2>/dev/null); scales $SCALES; DDIM $STEPS steps eta 1"; } | tee "$S"
for d in ${ONLY:-mnist fashion-mnist}; do rm -f "$OUT/$d.jsonl"; done
measure() { # data model-dir data-dir [classifier-dir]
  local t=$EPOCHREALTIME
  timeout 500 ./.bin/guidance --data "$1" --model "$2" --data-dir "$3" ${4:+--classifier "$4"} --split test \
    --scales "$SCALES" --per-class 1000 --batch 1000 --sampler "${SAMPLER:-ddim}" ${KARRAS:+--karras} --steps "$STEPS" --eta 1 \
    --json "$OUT/$1.jsonl" --grid "$OUT/$1-guidance.png" --grid-k 3 > "/tmp/guidance-$1.txt" 2>&1
  echo "$1: exit $?, wall $(awk "BEGIN{print $EPOCHREALTIME - $t}") s" >> "/tmp/guidance-$1.txt"
}
# ONLY=mnist or ONLY=fashion-mnist measures one data set.
ONLY=${ONLY:-}
[ "$ONLY" != fashion-mnist ] && measure mnist "$C/mnist-cond" "$M" &
# The Fashion-MNIST classifier: gpu_cond.sh's, else the bundled models/classifier-fashion-mnist.
FC=""; [ -d "$C/classifier-fashion-mnist" ] && FC="$C/classifier-fashion-mnist"
[ "$ONLY" != mnist ] && measure fashion-mnist "$C/fashion-cond" "$F" "$FC" &
wait
for d in ${ONLY:-mnist fashion-mnist}; do
  { echo "== $d"; grep -v '^{' "/tmp/guidance-$d.txt" | tail -12; } >> "$S"
done
ls -la "$OUT" >> "$S"
cat "$S"
echo "== table (data, guidance, accuracy, FID, mean class FID, sample s)"
cat "$OUT"/*.jsonl 2>/dev/null | python3 -c '
import json, sys
for l in sys.stdin:
    r = json.loads(l)
    print(f"{r[\"data\"]:14s} {r[\"guidance\"]:4g} {r[\"accuracy\"]:.4f} {r[\"fid\"]:8.2f} {r[\"mean_class_fid\"]:8.2f} {r[\"sample_s\"]:6.1f}")
' || cat "$OUT"/*.jsonl
