# Sourced by the bench/gpu_*_probe.sh scripts: $OUT, $B, $J, and run LABEL [VAR=value ...] COMMAND...,
# which runs one figure in a fresh process and appends its JSON line to $J with the label and the
# process's wall time.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
B=./.bin/ddpm
J="$OUT/probe.jsonl"
run() {
  local label=$1; shift
  local t0=$EPOCHREALTIME
  local line; line=$(env "$@" 2>>"$OUT/stderr.txt" | tail -1)
  local proc; proc=$(awk "BEGIN{print $EPOCHREALTIME - $t0}")
  if [ -n "$line" ]; then echo "${line%\}},\"label\":\"$label\",\"process_s\":$proc}" | tee -a "$J"; else echo "FAILED: $label" | tee -a "$OUT/stderr.txt"; fi
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
