#!/usr/bin/env bash
# The executable cache and asynchronous launches (backend/execcache.go), A/B on one GPU, each figure a
# fresh process: cold (empty cache dir) vs warm, waiting for each execution (DDPM_XLA_SYNC=1, go-xla's
# behaviour) vs not. One JSON line per run into $OUT/probe.jsonl.
. "$(dirname "$0")/probe_lib.sh"
C1=$(mktemp -d); C2=$(mktemp -d)
T64="$B bench --what train --batch 64 --steps 1000 --steps-per-call 1"
S64="$B bench --what sample --sampler ddpm --steps 1000 --batch 64"
run train64-sync-nocache DDPM_CACHE=$C1 DDPM_XLA_SYNC=1 DDPM_EXEC_CACHE=off $T64
run train64-sync-cold DDPM_CACHE=$C2 DDPM_XLA_SYNC=1 $T64
run train64-sync-warm DDPM_CACHE=$C2 DDPM_XLA_SYNC=1 $T64
run train64-async-warm DDPM_CACHE=$C2 $T64
run sample64-sync-nocache DDPM_CACHE=$C1 DDPM_XLA_SYNC=1 DDPM_EXEC_CACHE=off $S64
run sample64-async-cold DDPM_CACHE=$C2 $S64
run sample64-async-warm DDPM_CACHE=$C2 $S64
run sample64-sync-warm DDPM_CACHE=$C2 DDPM_XLA_SYNC=1 $S64
run train256-async-cold DDPM_CACHE=$C2 $B bench --what train --batch 256 --steps 400 --steps-per-call 1
run train256-async-warm DDPM_CACHE=$C2 $B bench --what train --batch 256 --steps 400 --steps-per-call 1
run train64-k10-async-cold DDPM_CACHE=$C2 $B bench --what train --batch 64 --steps 1000 --steps-per-call 10
run train64-k10-async-warm DDPM_CACHE=$C2 $B bench --what train --batch 64 --steps 1000 --steps-per-call 10
run sample64-k10-async-cold DDPM_CACHE=$C2 $S64 --steps-per-call 10
run sample64-k10-async-warm DDPM_CACHE=$C2 $S64 --steps-per-call 10
DDPM_CACHE=$C2 $B verify --fixture .fixtures/tiny-ddpm-cifar10 > "$OUT/verify.txt" 2>&1; echo "verify rc=$?" | tee -a "$OUT/verify.txt"
du -sh $C2/*/*/* 2>/dev/null | tee "$OUT/cache_du.txt"
grep -h "programs:\|compile cache\|backend:" "$OUT/stderr.txt" | sort | uniq -c | head -20
