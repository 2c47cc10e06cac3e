#!/usr/bin/env bash
# bench/cpu_bench.sh: the CPU engine (package cpu, `--backend onednn`) beside PyTorch 1.13 on the CPU, the
# same network and weights (the bundled MNIST UNet; PyTorch's is bench/unet_torch.py), interleaved run by
# run, at 1 thread and at all cores:
#   forward ms per image at batch 1, 16, 64; training step ms per image at batch 64 (BenchmarkTrainStep of
#   package cpu); the default `ddpm sample` (64 images, DDIM 10 steps) end to end, in seconds.
# Each figure is the median of ROUNDS runs (default 3), as wall time and as CPU time (user + system, all
# threads): on a machine shared with other work the wall clock measures the load as much as the program.
# Prints one markdown table last.
#
#   bench/cpu_bench.sh                 # PY=/usr/bin/python3 (Debian's python3-torch), ROUNDS=3
#                                      # OMP_WAIT_POLICY (default PASSIVE, for both)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/usr/bin/python3}
ROUNDS=${ROUNDS:-3}
CORES=$(nproc)
# Both sides run on libgomp; passive waiting is their best setting on a loaded machine (measured here:
# PyTorch at batch 64 on 2 threads 175 -> 99 ms/image, ddpm sets it itself unless told otherwise).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
mkdir -p .bin
go build -o .bin/ddpm ./cmd/ddpm
go test -c -o .bin/cpu.test ./cpu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# ours_bench PATTERN THREADS BENCHTIME: "wall cpu" ms per image of a benchmark of package cpu.
ours_bench() {
	(cd cpu && DDPM_THREADS=$2 ../.bin/cpu.test -test.run '^$' -test.bench "$1" -test.benchtime "$3") |
		awk '/^Benchmark/ {w = "-"; c = "-"; for (i = 1; i < NF; i++) {if ($(i+1) == "ms/image") w = $i; if ($(i+1) == "cpu-ms/image") c = $i}; print w, c}'
}

# timed CMD...: "wall cpu" seconds of a command.
timed() {
	if /usr/bin/time -f '%e %U %S' -o "$tmp/time" "$@" >"$tmp/out" 2>&1; then
		awk '{printf "%.2f %.2f\n", $1, $2 + $3}' "$tmp/time"
	else
		echo "cpu_bench: failed: $*" >&2
		tail -3 "$tmp/out" >&2
		echo "- -"
	fi
}

# col K FILE: the median of column K of FILE's numbers ("-" when there are none).
col() { { [ -f "$2" ] && cut -d' ' -f"$1" <"$2" | grep -v -- '^-$' || true; } | median; }

# row NAME THREADS FILE_TORCH FILE_OURS: one table row from two files of "wall cpu" lines.
rows=()
row() {
	local tw tc ow oc
	tw=$(col 1 "$3"); tc=$(col 2 "$3"); ow=$(col 1 "$4"); oc=$(col 2 "$4")
	rows+=("$1|$2|$tw|$ow|$tc|$oc")
	echo "cpu_bench: $1, $2 threads: PyTorch $tw (CPU $tc), ddpm $ow (CPU $oc)" >&2
}

for th in 1 "$CORES"; do
	for b in 1 16 64; do
		bt=$((b == 1 ? 20 : b == 16 ? 5 : 3))
		for r in $(seq "$ROUNDS"); do
			nice "$PY" bench/cpu_torch.py --what forward --batch "$b" --threads "$th" --reps "$bt" >>"$tmp/t_f_${th}_$b"
			ours_bench "Forward/batch$b\$" "$th" "${bt}x" >>"$tmp/o_f_${th}_$b" || true
		done
		row "forward, batch $b, ms/image" "$th" "$tmp/t_f_${th}_$b" "$tmp/o_f_${th}_$b"
	done
	for r in $(seq "$ROUNDS"); do
		nice "$PY" bench/cpu_torch.py --what train --batch 64 --threads "$th" --reps 3 >>"$tmp/t_t_$th"
		ours_bench 'TrainStep$' "$th" 3x >>"$tmp/o_t_$th" || true
	done
	row "training step, batch 64, ms/image" "$th" "$tmp/t_t_$th" "$tmp/o_t_$th"
	for r in $(seq "$ROUNDS"); do
		nice "$PY" bench/cpu_torch.py --what sample --batch 64 --threads "$th" >>"$tmp/t_s_$th"
		timed nice .bin/ddpm sample --backend onednn --threads "$th" --out "$tmp/s.png" >>"$tmp/o_s_$th"
	done
	row "default \`ddpm sample\` (64 images, DDIM 10), s" "$th" "$tmp/t_s_$th" "$tmp/o_s_$th"
done

ratio() { if [[ "$1" == "-" || "$2" == "-" || -z "$1" || -z "$2" ]]; then echo -; else echo "$2 / $1" | bc -l | xargs printf '%.2fx'; fi; }
echo
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $CORES cores; load average at the end $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD)"
echo
echo "| | threads | PyTorch 1.13, wall | ddpm onednn, wall | ddpm / PyTorch | PyTorch, CPU time | ddpm, CPU time | ddpm / PyTorch |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for r in "${rows[@]}"; do
	IFS='|' read -r what th tw ow tc oc <<<"$r"
	echo "| $what | $th | $tw | ${ow:--} | $(ratio "$tw" "$ow") | $tc | ${oc:--} | $(ratio "$tc" "$oc") |"
done
