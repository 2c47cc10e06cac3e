#!/usr/bin/env bash
# The hardened executable cache (backend/execcache.go, issue 15.5) on a GPU, each figure a fresh process:
# cold (compiles, stores entries with the new header), warm (loads them), every entry damaged (compiled
# again and replaced), a 1 MB cap (evicts), and `ddpm verify` with no flags (the bundled fixture, from /).
# Needs .bin/ddpm (go build -o .bin/ddpm ./cmd/ddpm). One JSON line per run into $OUT/probe.jsonl; a
# table last.
. "$(dirname "$0")/probe_lib.sh"
C=$(mktemp -d); CAP=$(mktemp -d)
T="$B bench --what train --batch 64 --steps 200 --steps-per-call 1"
run cold DDPM_CACHE=$C $T
run warm DDPM_CACHE=$C $T
n=0; for f in $C/*/executables/*.pjrt; do printf '\xff' | dd of="$f" bs=1 seek=100 conv=notrunc status=none; n=$((n+1)); done
echo "damaged $n entries" | tee -a "$OUT/stderr.txt"
run damaged DDPM_CACHE=$C $T
run after-damage DDPM_CACHE=$C $T
run cap1M-cold DDPM_CACHE=$CAP DDPM_CACHE_MAX=1M $T
run cap1M-again DDPM_CACHE=$CAP DDPM_CACHE_MAX=1M $T
ls -la $C/*/executables $CAP/*/executables > "$OUT/entries.txt" 2>&1
head -c 8 $(ls $C/*/executables/*.pjrt | head -1) | od -c | head -1 | tee -a "$OUT/entries.txt"
BIN=$(readlink -f $B)
(cd / && DDPM_CACHE=$C $BIN verify) > "$OUT/verify.txt" 2>&1; echo "verify (no flags, from /) rc=$?" | tee -a "$OUT/verify.txt"
grep -h "programs:\|backend:\|synchronous\|cache:" "$OUT/stderr.txt" | sort | uniq -c | head -20
python3 - "$J" <<'PY'
import json, sys
print(f"{'run':14} {'compiled':>8} {'loaded':>7} {'compile_s':>9} {'problem'}")
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"{r['label']:14} {r.get('compiled','-'):>8} {r.get('loaded','-'):>7} {r.get('compile_s',0):9.1f} {r.get('cache_problem','')[:70]}")
PY
