#!/bin/sh
# Interleaved dgseg bench / PyTorch runs of DeepLabv3+ R50 OS16, batch 2, 256x256, 2 threads
# (README, Performance). Needs a Release build in build/ and python3-torch.
cd "$(dirname "$0")/../.." || exit 1
for round in 1 2; do
  for mode in train infer; do
    echo "round $round $mode"
    OMP_NUM_THREADS=2 ./build/dgseg bench --model deeplabv3plus-r50 --size 256 --batch 2 --threads 2 --steps 5 --mode $mode --json
    /usr/bin/python3 tests/reference/torch_bench.py --model deeplabv3plus-r50 --size 256 --batch 2 --threads 2 --steps 5 --mode $mode --memory-format nchw
    /usr/bin/python3 tests/reference/torch_bench.py --model deeplabv3plus-r50 --size 256 --batch 2 --threads 2 --steps 5 --mode $mode --memory-format channels_last
  done
done
