#!/usr/bin/env bash
# Training speed levers on one GPU, each figure a fresh process: grouped loss reads with asynchronous
# launches (train.Run) against waiting for every execution, XLA's NHWC convolution layout, bf16; then
# the fp32 and bf16 loss curves of the same 5-epoch MNIST run. JSON lines into $OUT/probe.jsonl.
#
#   bash bench/gpu_speed_probe.sh    # needs .bin/ddpm and .data/mnist (the MNIST idx .gz files)
. "$(dirname "$0")/probe_lib.sh"
export DDPM_CACHE=$(mktemp -d)
T="$B bench --what train --steps-per-call 1"
NHWC="XLA_FLAGS=--xla_gpu_force_conv_nhwc=true"
run b64-async-cold X=1 $T --batch 64 --steps 2000
run b64-async-warm X=1 $T --batch 64 --steps 2000
run b64-sync-warm DDPM_XLA_SYNC=1 $T --batch 64 --steps 2000
run b64-nhwc-cold $NHWC $T --batch 64 --steps 2000
run b64-nhwc-warm $NHWC $T --batch 64 --steps 2000
run b256-async-cold X=1 $T --batch 256 --steps 500
run b256-async-warm X=1 $T --batch 256 --steps 500
run b256-nhwc-cold $NHWC $T --batch 256 --steps 500
run b64-bf16-cold X=1 $T --batch 64 --steps 2000 --precision bf16
run b64-bf16-warm X=1 $T --batch 64 --steps 2000 --precision bf16
run b256-bf16-cold X=1 $T --batch 256 --steps 500 --precision bf16
# The same run in fp32 and bf16: 5 epochs of MNIST, batch 64, same seed.
for p in fp32 bf16; do
  t0=$EPOCHREALTIME
  $B train --data mnist --data-dir .data/mnist --epochs 5 --precision $p --sample-every 0 --out "$OUT/runs/$p" > "$OUT/train-$p.txt" 2>&1
  echo "train $p rc=$? $(awk "BEGIN{print $EPOCHREALTIME - $t0}") s" | tee -a "$OUT/train-$p.txt"
  tail -3 "$OUT/train-$p.txt"
done
$B viz loss --run "$OUT/runs/fp32,$OUT/runs/bf16" --out "$OUT/precision-loss.png" | tee "$OUT/precision.txt"
rm -f "$OUT"/runs/*/checkpoints/*.safetensors "$OUT"/runs/*/unet/*.safetensors
