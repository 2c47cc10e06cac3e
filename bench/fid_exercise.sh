#!/usr/bin/env bash
# The lesson's FID exercise on the GPU machine, in one call: DDPM with all T = 1000 steps against DDIM
# with 100 steps (eta 0), from the same EMA weights, N = 5000 samples each, scored against 5000 real
# images the model never saw, with pytorch-fid's Inception and with our classifier. Each sampler's
# samples are drawn once (--save-samples) and scored by both extractors. A last pair of rows scores N
# other unseen real images the same way: the FID that a perfect model would get at this N.
#
#   MNIST (default: the bundled model)   reference mnist:test, all 10000 (the model was trained on all of
#                                        train); the floor: the 10% hold-out of train, unseen by the
#                                        classifier. (The first and last 5000 test images come from
#                                        different writers: never compare one half with the other.)
#   DATA=fashion-mnist MODEL=runs/fmnist reference fashion-mnist:holdout[:5000], the 10% hold-out of the
#                                        training split (seed 1234) that `ddpm train --holdout 0.1` skips
#
# Needs (no Go there): .bin/ddpm (go build -o .bin/ddpm ./cmd/ddpm), the data set's four .gz files in
# .data/$DATA, and pytorch-fid's pt_inception-2015-12-05-6726825d.pth (91 MB) at $INCEPTION, or in
# pieces $INCEPTION.part-* (split -b 45M: one carry is 64 MiB at most), or where FindInceptionWeights
# looks. Trains the classifier first when models/classifier-$DATA is missing (its weights are copied
# to $OUT to bring back). Prints one table last; JSON lines go to $OUT/fid_exercise.jsonl, logs to $OUT.
#
# Settings (environment): DATA, MODEL (a pipeline or ddpm-train run directory; empty: the bundled
# MNIST model), N (5000), BATCH (sampling batch, 1000), SEED (0), INCEPTION, CLASSIFIER, and for a
# smoke test elsewhere DDPM_STEPS (1000) and DDIM_STEPS (100).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
DATA=${DATA:-mnist}
MODEL=${MODEL:-}
N=${N:-5000}
BATCH=${BATCH:-1000}
SEED=${SEED:-0}
DDPM_STEPS=${DDPM_STEPS:-1000}
DDIM_STEPS=${DDIM_STEPS:-100}
INCEPTION=${INCEPTION:-.data/pt_inception-2015-12-05-6726825d.pth}
CLASSIFIER=${CLASSIFIER:-models/classifier-$DATA}
DDPM=./.bin/ddpm
SAMPLES=/tmp/fid_exercise; mkdir -p "$SAMPLES"
JSONL="$OUT/fid_exercise.jsonl"; : > "$JSONL"

# REAL: other unseen real images, scored like samples: the FID that N alone leaves (the floor).
case "$DATA" in
  mnist) REF="mnist:test"; REAL="mnist:holdout[:$N]" ;;
  fashion-mnist) REF="fashion-mnist:holdout[:$N]"; REAL="fashion-mnist:test[:$N]" ;;
  *) echo "DATA=$DATA: want mnist or fashion-mnist" >&2; exit 2 ;;
esac
SRC=()
if [ -n "$MODEL" ]; then
  if [ -f "$MODEL/train.json" ]; then SRC=(--run "$MODEL"); else SRC=(--model "$MODEL"); fi
elif [ "$DATA" != mnist ]; then
  echo "DATA=$DATA needs MODEL=dir (the bundled model is MNIST's)" >&2; exit 2
fi

# Inception weights: whole, or joined from pieces and checked against the hash prefix in their name.
INC=()
if [ ! -f "$INCEPTION" ] && ls "$INCEPTION".part-* >/dev/null 2>&1; then
  cat "$INCEPTION".part-* > "$INCEPTION.tmp" && mv "$INCEPTION.tmp" "$INCEPTION"
  sha256sum "$INCEPTION" | grep -q '^6726825d' || { echo "$INCEPTION: SHA-256 does not start with 6726825d" >&2; exit 1; }
fi
[ -f "$INCEPTION" ] && INC=(--inception-weights "$INCEPTION")

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
$DDPM backends 2>&1 | tee "$OUT/backends.txt"
T0=$(date +%s)
since() { awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $1 }"; }

# Our classifier, trained once per data set (3 epochs, batch 128, 10 steps per compiled call).
if [ ! -f "$CLASSIFIER/classifier.safetensors" ]; then
  t0=$(date +%s.%N)
  timeout 300 $DDPM classifier train --data "$DATA" --data-dir ".data/$DATA" --out "$CLASSIFIER" 2>&1 \
    | grep -v "^ *[0-9]*% " | tee "$OUT/classifier_$DATA.txt"
  echo "classifier train wall $(since "$t0")s" | tee -a "$OUT/classifier_$DATA.txt"
  mkdir -p "$OUT/classifier-$DATA" && cp "$CLASSIFIER/classifier.safetensors" "$OUT/classifier-$DATA/"
fi

# fid ARGS...: one ddpm fid run; its JSON line goes to $JSONL with the wall time of the process.
fid() {
  local log="$OUT/fid_$1.txt"; shift
  local t0; t0=$(date +%s.%N)
  timeout 420 $DDPM fid --ref "$REF" --data-dir ".data/$DATA" --json "$@" 2>&1 | grep -v "^ *[0-9]*% " | tee "$log"
  local wall; wall=$(since "$t0")
  grep '^{' "$log" | tail -1 | sed "s/}\$/,\"process_s\":$wall}/" >> "$JSONL"
}

for run in "ddpm $DDPM_STEPS" "ddim $DDIM_STEPS"; do
  set -- $run
  x="$SAMPLES/$DATA-$1$2.safetensors"
  fid "${DATA}_$1$2_inception" "${SRC[@]}" --sampler "$1" --steps "$2" --eta 0 --n "$N" --batch "$BATCH" \
    --seed "$SEED" --save-samples "$x" --features inception "${INC[@]}"
  fid "${DATA}_$1$2_classifier" --images "$x" --features classifier --classifier "$CLASSIFIER"
done
fid "${DATA}_real_inception" --images "$REAL" --features inception "${INC[@]}"
fid "${DATA}_real_classifier" --images "$REAL" --features classifier --classifier "$CLASSIFIER"
echo "total wall $(( $(date +%s) - T0 ))s" | tee "$OUT/total.txt"

# The table (sampling seconds of a classifier row: those of the Inception row that drew the samples).
python3 - "$JSONL" <<'EOF' | tee "$OUT/fid_exercise_table.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'dataset':14} {'sampler':7} {'steps':>5} {'extractor':36} {'N':>5} {'FID':>9} {'sample_s':>8} {'(1st)':>6} {'feat_s':>7} {'ref_s':>6} {'dist_s':>6} {'proc_s':>7}")
last = {}
for r in rows:
    r.setdefault("sampler", "real")
    key = (r.get("sampler"), r.get("steps"))
    if r.get("sample_s"):
        last[key] = r
    s = last.get(key, {})
    name = r["extractor"]
    name = "inception (pytorch-fid)" if name.startswith("inception") else name.split(" ")[0] + " (ours)"
    ext = name + " " + r["weights_sha256"][:8]
    print(f"{r.get('dataset',''):14} {r.get('sampler',''):7} {r.get('steps') or '-':>5} {ext:36} {r['n']:>5} {r['fid']:>9.3f} "
          f"{s.get('sample_s',0):>8.1f} {s.get('sample_first_batch_s',0):>6.1f} {r['features_s']:>7.1f} "
          f"{r['ref_s']:>6.1f} {r['distance_s']:>6.1f} {r.get('process_s',0):>7.1f}")
print(f"card: {open(sys.argv[1].rsplit('/',1)[0] + '/card.txt').read().strip()}; ref {rows[0]['ref'] if rows else ''}; backend {rows[0]['device'] if rows else ''}")
EOF
