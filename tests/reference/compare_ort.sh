#!/bin/sh
# The deployment targets of docs/performance.md: `dgseg bench --mode infer`
# against ONNX Runtime (tests/reference/ort_bench.js, npm onnxruntime-node
# in build-ort/, which scripts/test installs) on the same network exported
# by `dgseg export`, interleaved, ROUNDS rounds (default 3), 2 threads:
# DeepLabv3+ R50 OS16, batch 2, 256x256. The network's weights come from a
# one-step training run on `dgseg synth` output in OUT (default
# /tmp/dgseg-ort-bench; timing does not depend on the values). Needs a
# Release build in build/ (or DGSEG=binary). Prints the CPU line, then one
# JSON line per run prefixed by what it is. ONEDNN_MAX_CPU_ISA=AVX2 caps
# dgseg's oneDNN (ONNX Runtime's MLAS picks its kernels from the CPU alone).
set -eu
cd "$(dirname "$0")/../.."
B=${DGSEG:-./build/dgseg}
out=${OUT:-/tmp/dgseg-ort-bench}
mkdir -p "$out"
if [ ! -f "$out/r50.onnx" ]; then
    [ -d "$out/synth" ] || $B synth --out "$out/synth" --width 128 --height 64 --per-domain 4 >/dev/null
    cat > "$out/r50.ini" <<INI
[data]
sources = gtav:$out/synth/gtav
crop_size = 64
workers = 0
[model]
name = deeplabv3plus-r50
[train]
iterations = 1
batch_size = 2
INI
    $B train "$out/r50.ini" output.dir="$out/run" >/dev/null 2>&1
    $B export --checkpoint "$out/run/checkpoints/last.safetensors" --onnx "$out/r50.onnx" >/dev/null
fi
export OMP_NUM_THREADS=2
echo "cpu: $($B --version | tail -1) (ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-unset})"
run() { tag=$1; shift; printf '%s ' "$tag"; "$@" 2>/dev/null | tail -1; }
round=1
while [ "$round" -le "${ROUNDS:-3}" ]; do
    run "r$round infer f32 dgseg" $B bench --model deeplabv3plus-r50 --size 256 --batch 2 \
        --threads 2 --steps 10 --mode infer --json
    run "r$round infer f32 onnxruntime" node tests/reference/ort_bench.js "$out/r50.onnx" 2 3 256 2 10
    round=$((round + 1))
done
