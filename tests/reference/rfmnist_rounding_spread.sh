#!/bin/sh
# How far rounding alone moves one Rotated Fashion-MNIST trial's test accuracy in PyTorch itself,
# against which docs/results.md sets dgseg's gap to PyTorch: one trial and test domain, 1,000 updates,
# one thread per process, two processes at a time.
#   torch     rfmnist_reduced.py --match-dgseg (dgseg's initial weights and batches)
#   ulp-P     the same with every initial weight moved one float32 ulp, directions from seed P
#   dgseg     build/dgseg with direct convolutions (rounds as PyTorch's convolutions do)
# then rfmnist_rounding_spread.py prints each run's test accuracy at the selected and the last
# step beside the unperturbed PyTorch run's.
# Usage: rfmnist_rounding_spread.sh [OUT [TRIAL [DOMAIN [N]]]]
#   defaults runs/rfmnist-spread, trial 0, domain 5 (75°), N = 3 perturbations; about 2.5 hours
#   on two cores.
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/../.." || exit 1
if [ "$1" = --job ]; then # --job NAME OUT TRIAL DOMAIN
  name=$2 out=$3 trial=$4 dom=$5
  export OMP_NUM_THREADS=1
  case $name in
    dgseg)
      rm -rf "$out/dgseg"
      build/dgseg train configs/rfmnist-erm.ini data.test_domains=rot$((dom * 15)) \
          train.iterations=1000 train.seed="$trial" model.winograd=off train.threads=1 \
          output.dir="$out/dgseg" > "$out/dgseg.log" 2>&1 ;;
    torch|ulp-*)
      perturb=""
      case $name in ulp-*) perturb="--perturb-ulp 1 --perturb-seed ${name#ulp-}" ;; esac
      # shellcheck disable=SC2086
      /usr/bin/python3 tests/reference/rfmnist_reduced.py --match-dgseg --test-domains "$dom" \
          --steps 1000 --seed "$trial" --threads 1 --json "$out/$name.json" $perturb \
          > "$out/$name.log" 2>&1 ;;
  esac || echo "$name: failed, see $out/$name.log"
  exit 0
fi
OUT=${1:-runs/rfmnist-spread} TRIAL=${2:-0} DOMAIN=${3:-5} N=${4:-3}
mkdir -p "$OUT"
# The two slowest first; dgseg (about half PyTorch's time) fills the gap before the last one.
jobs="ulp-1 ulp-2 torch dgseg"
p=3
while [ "$p" -le "$N" ]; do jobs="$jobs ulp-$p"; p=$((p + 1)); done
# shellcheck disable=SC2086
printf '%s\n' $jobs | xargs -P 2 -I{} sh "$self" --job {} "$OUT" "$TRIAL" "$DOMAIN"
/usr/bin/python3 tests/reference/rfmnist_rounding_spread.py "$OUT" | tee "$OUT/table.md"
