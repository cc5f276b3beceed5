#!/bin/sh
# How far two Rotated Fashion-MNIST ERM runs drift apart when only rounding differs (docs/results.md;
# note on the reduced run's accuracy gaps): trial seed 2, test domain 75°, one thread each.
#   dgseg     build/dgseg, direct convolutions, resumed from step to step (resume is exact)
#   torch     rfmnist_reduced.py --match-dgseg: dgseg's initial weights and batches
#   torch-ulp the same with every initial weight moved by one float32 ulp
# 1,000 updates with evaluations every 100; the weights after 1, 3, 10, 30, 100, 300 and 1,000
# updates go to OUT/<run>/step-N.safetensors; then rfmnist_divergence.py prints the distances and
# the evaluations side by side. Takes about 80 minutes on two cores.
cd "$(dirname "$0")/../.." || exit 1
OUT=${1:-runs/rfmnist-divergence}
STEPS="1 3 10 30 100 300 1000"
mkdir -p "$OUT/dgseg" "$OUT/torch" "$OUT/torch-ulp"
export OMP_NUM_THREADS=1
ref() { # dir, extra args...
  dir=$1; shift
  /usr/bin/python3 tests/reference/rfmnist_reduced.py --match-dgseg --test-domains 5 \
      --steps 1000 --seed 2 --threads 1 --dump-steps "$(echo $STEPS | tr ' ' ,)" \
      --dump-dir "$OUT/$dir" --json "$OUT/$dir.json" "$@" > "$OUT/$dir.log" 2>&1 || echo "$dir: failed, see $OUT/$dir.log"
}
dgseg() {
  resume=""
  for n in $STEPS; do
    build/dgseg train configs/rfmnist-erm.ini data.test_domains=rot75 train.iterations="$n" \
        train.seed=2 model.winograd=off train.threads=1 output.dir="$OUT/dgseg/run" $resume \
        >> "$OUT/dgseg.log" 2>&1 || { echo "dgseg: failed, see $OUT/dgseg.log"; return; }
    cp "$OUT/dgseg/run/test-rot75/checkpoints/last.safetensors" "$OUT/dgseg/step-$n.safetensors"
    resume=--resume
  done
}
rm -rf "$OUT/dgseg/run" "$OUT/dgseg.log"
dgseg &
ref torch-ulp --perturb-ulp 1 &
ref torch
wait
/usr/bin/python3 tests/reference/rfmnist_divergence.py "$OUT" | tee "$OUT/table.md"
