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
# The second session (2026-12-03, afternoon): Fashion-MNIST's data (30.6 MB) and the binaries (17 MB
# compressed) do not travel together beside the 35 MB tree, so three back-to-back calls on one warm machine:
#   PART=data:  .data/f: the idx files into /tmp/keep.
#   PART=train: .bin/ddpm.xz .bin/guidance.xz .data/t10k: the conditional Fashion-MNIST model trains in the
#               background; in front, the Fashion-MNIST classifier (15 epochs), then the first half of the
#               Fashion-MNIST sampler study (DDPM-1000, DDIM, DPM-Solver++ 2M) beside MNIST's guidance
#               study (the bundled mnist-cond, clip_sample false).
#   PART=study: (nothing carried) the rest of the sampler study and the floor, beside Fashion-MNIST's
#               guidance study. Each part stops its own work before the 600 s a call may run.
data) mkdir -p $K && cp -r .data/f/fashion-mnist $K/ && ls -la $K/fashion-mnist ;;
train)
  T0=$(date +%s); left() { echo $(( T0 + ${1:-585} - $(date +%s) )); }
  unxz .bin/ddpm.xz $K/ddpm; unxz .bin/guidance.xz $K/guidance
  mkdir -p .bin $K/cond && cp $K/ddpm .bin/ddpm && cp $K/guidance .bin/guidance && cp bench/gpu_cond.sh $K/
  (ONLY=fashion SKIP_CLASSIFIER=1 B=$K/ddpm FASHION_DIR=$K/fashion-mnist OUT=$K/cond-out setsid nohup bash $K/gpu_cond.sh > $K/cond-fashion.log 2>&1 < /dev/null &)
  t0=$EPOCHREALTIME
  timeout 200 $K/ddpm classifier train --data fashion-mnist --data-dir $K/fashion-mnist --epochs 15 --out $K/cond/classifier-fashion-mnist 2>&1 | grep -v "^ *[0-9]*% " | tee "$OUT/classifier-fashion.txt"
  echo "classifier wall $(awk "BEGIN{print $EPOCHREALTIME - $t0}") s" | tee -a "$OUT/classifier-fashion.txt"
  cp $K/cond/classifier-fashion-mnist/classifier.safetensors "$OUT/classifier-fashion-mnist.safetensors"
  (OUT=$OUT/g ONLY=mnist COND_DIR=models MNIST_DIR=.data/t10k/mnist timeout $(left 560) bash bench/gpu_guidance.sh > $K/guidance-mnist.log 2>&1 &)
  SAMPLERS=ddim,dpmsolver++ OUT=$K/sA DATA=$K/fashion-mnist FLOOR=none timeout $(left 540) bash bench/gpu_samplers.sh models/fashion-mnist fashion-mnist $K/cond/classifier-fashion-mnist > /dev/null 2>&1
  cp $K/sA/samplers-fashion-mnist.jsonl "$OUT/samplers-A.jsonl"; tail -3 $K/sA/samplers-fashion-mnist.log
  for i in $(seq 1 200); do [ -f $K/cond-out/fashion-cond.tar.gz ] && [ -z "$(pgrep -f gpu_guidance)" ] && break; [ "$(left)" -le 5 ] && break; sleep 2; done
  cat $K/cond-out/summary.txt $K/guidance-mnist.log | tail -40
  cp $K/cond-out/fashion-cond.tar.gz "$OUT/" && tar -C $K/cond -xzf $K/cond-out/fashion-cond.tar.gz ;;
study)
  T0=$(date +%s); left() { echo $(( T0 + ${1:-585} - $(date +%s) )); }
  mkdir -p .bin && cp $K/ddpm .bin/ddpm && cp $K/guidance .bin/guidance
  (OUT=$OUT/g ONLY=fashion-mnist COND_DIR=$K/cond FASHION_DIR=$K/fashion-mnist timeout $(left 560) bash bench/gpu_guidance.sh > $K/guidance-fashion.log 2>&1 &)
  # What the first half did not finish (a sampler with fewer than 5 cells, DDPM-1000 if absent), then the rest.
  REST=$(python3 - $K/sA/samplers-fashion-mnist.jsonl <<'PY'
import json, sys
done = {}
try:
    for l in open(sys.argv[1]):
        r = json.loads(l); done[r["sampler"]] = done.get(r["sampler"], 0) + 1
except OSError:
    pass
want = "sde-dpmsolver++,euler,euler_ancestral,heun,dpmsolver++:karras,ddim,dpmsolver++".split(",")
print(",".join(s for s in want if done.get(s, 0) < 5), "1000" if "ddpm" not in done else "0")
PY
)
  echo "rest: $REST"
  SAMPLERS=${REST% *} DDPM_STEPS=${REST#* } OUT=$K/sB DATA=$K/fashion-mnist timeout $(left 560) bash bench/gpu_samplers.sh models/fashion-mnist fashion-mnist $K/cond/classifier-fashion-mnist > /dev/null 2>&1
  cp $K/sB/samplers-fashion-mnist.jsonl "$OUT/samplers-B.jsonl"; cp $K/sB/floor-fashion-mnist.json $K/sB/samplers-fashion-mnist.log "$OUT/"
  for i in $(seq 1 200); do [ -z "$(pgrep -f gpu_guidance)" ] && break; [ "$(left)" -le 5 ] && break; sleep 2; done
  tail -30 $K/guidance-fashion.log ;;
# PART=noclip (.bin/ddpm.xz alone; the reference is the committed hold-out statistics): does DDIM's and
# DDPM's clamp of x0Hat (clip_sample, true in models/fashion-mnist's scheduler) cost them on
# Fashion-MNIST? DDIM at 20, 50, 100 and DDPM-1000 again, with clip_sample false.
noclip)
  unxz .bin/ddpm.xz $K/ddpm; mkdir -p .bin && cp $K/ddpm .bin/ddpm
  rm -rf /tmp/fm-noclip && cp -r models/fashion-mnist /tmp/fm-noclip
  sed -i 's/"clip_sample": true/"clip_sample": false/' /tmp/fm-noclip/scheduler/scheduler_config.json
  grep clip_sample /tmp/fm-noclip/scheduler/scheduler_config.json
  SAMPLERS=ddim EVALS=20,50,100 timeout 560 bash bench/gpu_samplers.sh /tmp/fm-noclip fashion-mnist > /dev/null 2>&1
  mv "$OUT/samplers-fashion-mnist.jsonl" "$OUT/samplers-fashion-mnist-noclip.jsonl"
  grep FID "$OUT/samplers-fashion-mnist.log" ;;
esac
ls -la "$OUT"
