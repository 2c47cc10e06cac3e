#!/usr/bin/env bash
# The GPU calls of the 2026-12-03 session, as run. The device tool carries at most 64 MiB a call, so the
# two data sets travel in different calls, the binary is built without the models it does not need
# (models/models.go's embed line cut to mnist and classifier-mnist; the rest is read from the tree) and
# xz-compressed, and what a call starts is kept in /tmp/keep on the machine.
#   PART=a: .bin/ddpm.xz .bin/guidance.xz .data/mnist: the conditional MNIST model trains in the
#           background while the sampler study of the bundled MNIST model runs; then its guidance study.
#   PART=b: .data/f: the Fashion-MNIST classifier (15 epochs), then the conditional Fashion-MNIST model
#           in the background while the sampler study of models/fashion-mnist runs; then its guidance
#           study. Brings the models back.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
K=/tmp/keep; mkdir -p $K
unxz() { python3 -c "import lzma,shutil,sys;shutil.copyfileobj(lzma.open(sys.argv[1]),open(sys.argv[2],'wb'))" "$1" "$2" && chmod +x "$2"; }
waitfor() { for i in $(seq 1 100); do [ -f "$1" ] && return 0; sleep 3; done; echo "timed out waiting for $1"; }
case ${PART:?} in
a)
  unxz .bin/ddpm.xz $K/ddpm; unxz .bin/guidance.xz $K/guidance; cp -r .data/mnist $K/
  cp bench/gpu_cond.sh $K/
  (ONLY=mnist B=$K/ddpm MNIST_DIR=$K/mnist OUT=$K/cond-out setsid nohup bash $K/gpu_cond.sh > $K/cond-mnist.log 2>&1 < /dev/null &)
  mkdir -p .bin && cp $K/ddpm .bin/ddpm && cp $K/guidance .bin/guidance
  DATA=$K/mnist bash bench/gpu_samplers.sh models/mnist mnist
  waitfor $K/cond-out/mnist-cond.tar.gz; cat $K/cond-out/summary.txt
  mkdir -p $K/cond && tar -C $K/cond -xzf $K/cond-out/mnist-cond.tar.gz && cp $K/cond-out/mnist-cond.tar.gz "$OUT/"
  ONLY=mnist COND_DIR=$K/cond MNIST_DIR=$K/mnist bash bench/gpu_guidance.sh ;;
b)
  [ -x $K/ddpm ] || { echo "no $K/ddpm: run PART=a first on this machine"; exit 1; }
  mkdir -p .bin && cp $K/ddpm .bin/ddpm && cp $K/guidance .bin/guidance
  cp -r .data/f/fashion-mnist $K/
  t0=$EPOCHREALTIME
  $K/ddpm classifier train --data fashion-mnist --data-dir $K/fashion-mnist --epochs 15 --out $K/cond/classifier-fashion-mnist 2>&1 | grep -v "^ *[0-9]*% " | tee "$OUT/classifier-fashion.txt"
  echo "classifier wall $(awk "BEGIN{print $EPOCHREALTIME - $t0}") s" | tee -a "$OUT/classifier-fashion.txt"
  cp $K/cond/classifier-fashion-mnist/classifier.safetensors "$OUT/classifier-fashion-mnist.safetensors"
  (ONLY=fashion SKIP_CLASSIFIER=1 B=$K/ddpm FASHION_DIR=$K/fashion-mnist OUT=$K/cond-out setsid nohup bash $K/gpu_cond.sh > $K/cond-fashion.log 2>&1 < /dev/null &)
  EVALS=${FASHION_EVALS:-5,10,20,50,100} DATA=$K/fashion-mnist bash bench/gpu_samplers.sh models/fashion-mnist fashion-mnist $K/cond/classifier-fashion-mnist
  waitfor $K/cond-out/fashion-cond.tar.gz; cat $K/cond-out/summary.txt
  tar -C $K/cond -xzf $K/cond-out/fashion-cond.tar.gz && cp $K/cond-out/fashion-cond.tar.gz "$OUT/"
  ONLY=fashion-mnist COND_DIR=$K/cond FASHION_DIR=$K/fashion-mnist bash bench/gpu_guidance.sh ;;
esac
ls -la "$OUT"
