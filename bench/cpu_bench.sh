#!/usr/bin/env bash
# bench/cpu_bench.sh: the CPU engine (package cpu, `--backend onednn`) beside PyTorch 1.13 on the CPU, the
# same network and weights (the bundled MNIST UNet; PyTorch's is bench/unet_torch.py), interleaved run by
# run, at 1 thread and at all cores:
#   forward ms per image at batch 1, 16, 64; training step ms per image at batch 64 (when package cpu
#   has BenchmarkTrainStep); the default `ddpm sample` (64 images, DDIM 10 steps) end to end, in seconds.
# Each figure is the median of ROUNDS runs (default 3); prints one markdown table last.
#
#   bench/cpu_bench.sh                 # PY=/usr/bin/python3 (Debian's python3-torch), ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/usr/bin/python3}
ROUNDS=${ROUNDS:-3}
CORES=$(nproc)
mkdir -p .bin
go build -o .bin/ddpm ./cmd/ddpm
go test -c -o .bin/cpu.test ./cpu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
has_train=$(.bin/cpu.test -test.list 'BenchmarkTrainStep' | grep -c TrainStep || true)

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# ours_bench PATTERN THREADS BENCHTIME: the ms/image metric of a benchmark of package cpu.
ours_bench() {
	(cd cpu && DDPM_THREADS=$2 ../.bin/cpu.test -test.run '^$' -test.bench "$1" -test.benchtime "$3") |
		awk '{for (i = 1; i < NF; i++) if ($(i+1) == "ms/image") print $i}'
}

# seconds CMD...: wall seconds of a command.
seconds() {
	local t0 t1
	t0=$(date +%s.%N)
	"$@" >/dev/null 2>&1
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l | xargs printf '%.2f\n'
}

rows=()
for th in 1 "$CORES"; do
	for b in 1 16 64; do
		bt=$((b == 1 ? 20 : b == 16 ? 5 : 3))
		for r in $(seq "$ROUNDS"); do
			nice "$PY" bench/cpu_torch.py --what forward --batch "$b" --threads "$th" --reps "$bt" >>"$tmp/t_f_${th}_$b"
			ours_bench "Forward/batch$b\$" "$th" "${bt}x" >>"$tmp/o_f_${th}_$b"
		done
		rows+=("forward, batch $b, ms/image|$th|$(median <"$tmp/t_f_${th}_$b")|$(median <"$tmp/o_f_${th}_$b")")
	done
	for r in $(seq "$ROUNDS"); do
		nice "$PY" bench/cpu_torch.py --what train --batch 64 --threads "$th" --reps 3 >>"$tmp/t_t_$th"
		if [ "$has_train" -gt 0 ]; then
			ours_bench 'TrainStep$' "$th" 3x >>"$tmp/o_t_$th"
		fi
	done
	rows+=("training step, batch 64, ms/image|$th|$(median <"$tmp/t_t_$th")|$(median <"$tmp/o_t_$th" 2>/dev/null || echo -)")
	for r in $(seq "$ROUNDS"); do
		nice "$PY" bench/cpu_torch.py --what sample --batch 64 --threads "$th" >>"$tmp/t_s_$th"
		seconds nice .bin/ddpm sample --backend onednn --threads "$th" --out "$tmp/s.png" >>"$tmp/o_s_$th"
	done
	rows+=("default \`ddpm sample\` (64 images, DDIM 10), s|$th|$(median <"$tmp/t_s_$th")|$(median <"$tmp/o_s_$th")")
done

echo
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $CORES cores; load average $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD)"
echo
echo "| | threads | PyTorch 1.13 | ddpm (onednn) | ddpm / PyTorch |"
echo "| --- | --- | --- | --- | --- |"
for row in "${rows[@]}"; do
	IFS='|' read -r what th pt ours <<<"$row"
	ratio=-
	if [[ "$pt" != "-" && "$ours" != "-" && -n "$ours" ]]; then
		ratio=$(echo "$ours / $pt" | bc -l | xargs printf '%.2fx')
	fi
	echo "| $what | $th | $pt | ${ours:--} | $ratio |"
done
