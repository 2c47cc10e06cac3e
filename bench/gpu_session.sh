#!/usr/bin/env bash
# The GPU calls of the 2026-12-03 session, as run (the device tool carries at most 64 MiB a call, so the
# two data sets travel in different calls and what each call starts is kept in /tmp/keep on the machine):
#   PART=a: .bin/ddpm.xz + .data/mnist: the conditional MNIST model trains in the background while the
#           sampler study of the bundled MNIST model runs.
#   PART=b: .bin/guidance.xz + .data/f: the Fashion-MNIST classifier (15 epochs), then the conditional
#           Fashion-MNIST model in the background while the sampler study of models/fashion-mnist runs.
#   PART=c: the guidance study of both conditional models; brings the models back.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
K=/tmp/keep; mkdir -p $K
unxz() { python3 -c "import lzma,shutil,sys;shutil.copyfileobj(lzma.open(sys.argv[1]),open(sys.argv[2],'wb'))" "$1" "$2" && chmod +x "$2"; }
case ${PART:?} in
a)
  unxz .bin/ddpm.xz $K/ddpm; cp -r .data/mnist $K/
  mkdir -p .bin && cp $K/ddpm .bin/ddpm; cp bench/gpu_cond.sh $K/
  (ONLY=mnist B=$K/ddpm MNIST_DIR=$K/mnist OUT=$K/cond-out setsid nohup bash $K/gpu_cond.sh > $K/cond-mnist.log 2>&1 < /dev/null &)
  DATA=$K/mnist bash bench/gpu_samplers.sh models/mnist mnist
  tail -3 /tmp/cond/mnist-cond-train.txt ;;
b)
  [ -x $K/ddpm ] || { echo "no $K/ddpm: run PART=a first on this machine"; exit 1; }
  mkdir -p .bin && cp $K/ddpm .bin/ddpm; unxz .bin/guidance.xz $K/guidance
  cp -r .data/f/fashion-mnist $K/
  t0=$EPOCHREALTIME
  $K/ddpm classifier train --data fashion-mnist --data-dir $K/fashion-mnist --epochs 15 --out $K/classifier-fashion-mnist 2>&1 | grep -v "^ *[0-9]*% " | tee "$OUT/classifier-fashion.txt"
  echo "classifier wall $(awk "BEGIN{print $EPOCHREALTIME - $t0}") s" | tee -a "$OUT/classifier-fashion.txt"
  cp $K/classifier-fashion-mnist/classifier.safetensors "$OUT/classifier-fashion-mnist.safetensors"
  (ONLY=fashion SKIP_CLASSIFIER=1 B=$K/ddpm FASHION_DIR=$K/fashion-mnist OUT=$K/cond-out setsid nohup bash $K/gpu_cond.sh > $K/cond-fashion.log 2>&1 < /dev/null &)
  DATA=$K/fashion-mnist bash bench/gpu_samplers.sh models/fashion-mnist fashion-mnist $K/classifier-fashion-mnist
  tail -3 /tmp/cond/fashion-cond-train.txt ;;
c)
  mkdir -p .bin && cp $K/ddpm .bin/ddpm && cp $K/guidance .bin/guidance
  for i in $(seq 1 60); do [ -f $K/cond-out/fashion-cond.tar.gz ] && [ -f $K/cond-out/mnist-cond.tar.gz ] && break; sleep 5; done
  cat $K/cond-out/summary.txt; cp $K/cond-out/mnist-cond.tar.gz $K/cond-out/fashion-cond.tar.gz "$OUT/"
  mkdir -p $K/cond && for f in $K/cond-out/*-cond.tar.gz; do tar -C $K/cond -xzf $f; done
  cp -r $K/classifier-fashion-mnist $K/cond/
  COND_DIR=$K/cond MNIST_DIR=$K/mnist FASHION_DIR=$K/fashion-mnist bash bench/gpu_guidance.sh ;;
esac
ls -la "$OUT"
