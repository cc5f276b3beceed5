#!/bin/sh
# The reduced Rotated Fashion-MNIST measurement of docs/results.md (docs/datasets.md §12.6 with test domains
# 0° and 75°, 1,000 steps, one trial, seed 0): dgseg ERM, the PyTorch reference of the same protocol
# (tests/reference/rfmnist_reduced.py, Debian's python3-torch; once with its own random init and
# batches, once with dgseg's init and batches, --match-dgseg), then dgseg large-LR Lookahead, one
# after the other with 2 threads each. Writes OUT (default runs/rfmnist-reduced): <name>.log, the
# run folders, torch.json, and <name>.time (GNU time). Takes about 2-3 hours on two cores.
cd "$(dirname "$0")/../.." || exit 1
OUT=${1:-runs/rfmnist-reduced}
mkdir -p "$OUT"
export OMP_NUM_THREADS=2
run() { # name, command...
  name=$1; shift
  start=$(date +%s)
  "$@" > "$OUT/$name.log" 2>&1
  echo "$name: exit $? in $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
}
run erm build/dgseg train configs/rfmnist-erm.ini data.test_domains=rot0,rot75 \
    train.iterations=1000 output.dir="$OUT/erm"
run torch-erm /usr/bin/python3 tests/reference/rfmnist_reduced.py --test-domains 0 5 \
    --steps 1000 --threads 2 --json "$OUT/torch.json"
run torch-erm-matched /usr/bin/python3 tests/reference/rfmnist_reduced.py --match-dgseg \
    --test-domains 0 5 --steps 1000 --threads 2 --json "$OUT/torch-matched.json"
run la build/dgseg train configs/rfmnist-la.ini data.test_domains=rot0,rot75 \
    train.iterations=1000 output.dir="$OUT/la"
