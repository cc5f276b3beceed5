#!/bin/sh
# The targets table's (docs/performance.md) "full dgseg train vs bench" row: 40 steps of configs/demo-erm.ini
# with DeepLabv3+ R50, 256x256 crops, batch 2, on the demo's GTAV-style source alone (loader,
# logging and checkpoints included; the progress line's images/s), then `dgseg bench` with the
# same model, size and batch (20 steps), two rounds, 2 threads. Run after scripts/demo (it uses
# build/synth); DGSEG=binary overrides build/dgseg. Runs land in build/runs/train-vs-bench-N.
cd "$(dirname "$0")/../../build" || exit 1
D=${DGSEG:-./dgseg}
export OMP_NUM_THREADS=2
for r in 1 2; do
  rm -rf "runs/train-vs-bench-$r"
  $D train ../configs/demo-erm.ini model.name=deeplabv3plus-r50 model.aux=false \
     data.crop_size=256 train.batch_size=2 data.targets= data.sources=gtav:synth/gtav \
     train.iterations=40 train.log_every=40 output.dir="runs/train-vs-bench-$r" 2>&1 |
     grep "step 40/40" | sed 's/^/train /'
  $D bench --model deeplabv3plus-r50 --size 256 --batch 2 --threads 2 --steps 20 2>&1 |
     grep images/s | sed 's/^/bench /'
done
