#!/bin/sh
# The targets table of docs/performance.md: dgseg bench against the PyTorch reference (tests/reference/
# torch_bench.py, Debian's python3-torch), interleaved, ROUNDS rounds (default 2), 2 threads:
# DeepLabv3+ R50 OS16, batch 2, 256x256 (f32 training and inference, bf16 training where the CPU
# has bf16; PyTorch in NCHW and channels_last) and the MNIST CNN at batch 320. Needs a Release
# build in build/ (or DGSEG=binary). Prints the CPU line of `dgseg --version`, then one JSON line
# per run, prefixed by what it is. ONEDNN_MAX_CPU_ISA=AVX2 in the environment caps both dgseg's
# and PyTorch's oneDNN (what an AVX2-only CPU runs).
cd "$(dirname "$0")/../.." || exit 1
B=${DGSEG:-./build/dgseg}
T="/usr/bin/python3 tests/reference/torch_bench.py"
R50="--model deeplabv3plus-r50 --size 256 --batch 2 --threads 2"
export OMP_NUM_THREADS=2
caps=$($B --version | tail -1)
echo "cpu: $caps (ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-unset})"
case "$caps" in *"bf16: no"*) bf16=;; *) bf16=1;; esac
run() { tag=$1; shift; printf '%s ' "$tag"; "$@" 2>/dev/null | tail -1; }
round=1
while [ "$round" -le "${ROUNDS:-2}" ]; do
  run "r$round train f32 dgseg" $B bench $R50 --steps 5 --json
  run "r$round train f32 torch-nchw" $T $R50 --steps 5
  run "r$round train f32 torch-cl" $T $R50 --steps 5 --memory-format channels_last
  run "r$round infer f32 dgseg" $B bench $R50 --steps 5 --mode infer --json
  run "r$round infer f32 torch-nchw" $T $R50 --steps 5 --mode infer
  run "r$round infer f32 torch-cl" $T $R50 --steps 5 --mode infer --memory-format channels_last
  if [ -n "$bf16" ]; then
    run "r$round train bf16 dgseg" $B bench $R50 --steps 5 --dtype bf16 --json
    run "r$round train bf16 torch-nchw" $T $R50 --steps 5 --dtype bf16
    run "r$round train bf16 torch-cl" $T $R50 --steps 5 --dtype bf16 --memory-format channels_last
  fi
  run "r$round mnist dgseg" $B bench --model mnist-cnn --size 28 --batch 320 --threads 2 --steps 10 --json
  run "r$round mnist torch" $T --model mnist-cnn --size 28 --batch 320 --threads 2 --steps 10
  round=$((round + 1))
done
