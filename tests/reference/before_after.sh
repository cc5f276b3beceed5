#!/bin/bash
# Behaviour before and after a change, for refactorings that must change nothing: the same
# short runs with two dgseg binaries, then every output compared. Usage, from the repository
# root (with `build/dgseg synth --out synth` done):
#   tests/reference/before_after.sh OLD_DGSEG OLD_OUT   # e.g. a build of the previous commit
#   tests/reference/before_after.sh NEW_DGSEG NEW_OUT
#   tests/reference/before_after.sh --compare OLD_OUT NEW_OUT
# Runs: the demo config cut to 40 steps (validation, best.safetensors, targets), the same killed
# at step 25 and resumed, resumed again once complete; Rotated Fashion-MNIST Lookahead (60 steps,
# killed at 45 and resumed), MESA (teacher row), SWAD (eval every 10); dgseg eval of the
# segmentation and classification checkpoints; dgseg predict --overlay of two images.
# About 30 minutes per binary on 2 cores. The comparison ignores timings (img/s) and the paths
# that name the two output folders or source trees (config metadata split_dir, output.dir).
set -u
here=$(cd "$(dirname "$0")" && pwd)
if [ "${1:-}" = "--compare" ]; then
    a=$2 b=$3 rc=0
    for f in $(cd "$a" && find . -name '*.safetensors' | sort); do
        python3 "$here/safetensors_same.py" "$a/$f" "$b/$f" || rc=1
    done
    for f in $(cd "$a" && find . -name 'results.json' -o -name 'results.md' -o -name '*.png' | sort); do
        cmp -s "$a/$f" "$b/$f" && echo "IDENTICAL $f" || { echo "DIFFERENT $f"; rc=1; }
    done
    for f in $(cd "$a" && find . -name metrics.jsonl | sort); do
        diff -q <(sed 's/"img_s":[^,}]*//' "$a/$f") <(sed 's/"img_s":[^,}]*//' "$b/$f") >/dev/null \
            && echo "IDENTICAL $f (img/s aside)" || { echo "DIFFERENT $f"; rc=1; }
    done
    for f in eval.json evalc.json; do
        diff -q <(grep -v '"checkpoint"' "$a/$f") <(grep -v '"checkpoint"' "$b/$f") >/dev/null \
            && echo "IDENTICAL $f (checkpoint path aside)" || { echo "DIFFERENT $f"; rc=1; }
    done
    exit $rc
fi
BIN=$1 O=$2
rm -rf "$O"; mkdir -p "$O"
SEG="configs/demo.ini train.iterations=40 train.checkpoint_every=20 train.eval_every=20 eval.val_images=4 optim.la_k=5 optim.la_bn_refresh_final=5 train.log_every=10 data.workers=1 train.threads=1"
$BIN train $SEG output.dir=$O/seg > $O/seg.out 2> $O/seg.err; echo "seg rc $?"
DGSEG_FAULT_KILL=step:25 $BIN train $SEG output.dir=$O/res > /dev/null 2>&1; echo "killed rc $?"
$BIN train $SEG output.dir=$O/res --resume > $O/res.out 2> $O/res.err; echo "resumed rc $?"
$BIN train $SEG output.dir=$O/res --resume > $O/res2.out 2> $O/res2.err; echo "complete rc $?"
CLS="configs/rfmnist-la.ini data.test_domains=rot15 train.iterations=60 train.eval_every=20 train.checkpoint_every=30 train.log_every=20 train.threads=1"
$BIN train $CLS output.dir=$O/cls > $O/cls.out 2> $O/cls.err; echo "cls rc $?"
DGSEG_FAULT_KILL=step:45 $BIN train $CLS output.dir=$O/clsr > /dev/null 2>&1; echo "killed rc $?"
$BIN train $CLS output.dir=$O/clsr --resume > $O/clsr.out 2> $O/clsr.err; echo "resumed rc $?"
$BIN train configs/rfmnist-mesa.ini data.test_domains=rot15 train.iterations=40 train.eval_every=20 train.checkpoint_every=20 train.log_every=20 train.threads=1 output.dir=$O/mesa > $O/mesa.out 2> $O/mesa.err; echo "mesa rc $?"
$BIN train configs/rfmnist-swad.ini data.test_domains=rot15 train.iterations=60 optim.swad_eval_every=10 train.checkpoint_every=20 train.log_every=20 train.threads=1 output.dir=$O/swad > $O/swad.out 2> $O/swad.err; echo "swad rc $?"
$BIN eval configs/demo.ini --checkpoint $O/seg/checkpoints/last.safetensors --json $O/eval.json > $O/eval.out 2> $O/eval.err; echo "eval rc $?"
$BIN eval configs/rfmnist-la.ini --checkpoint $O/cls/test-rot15/checkpoints/last.safetensors data.test_domains=rot15 --json $O/evalc.json > $O/evalc.out 2> $O/evalc.err; echo "evalc rc $?"
set -- synth/cityscapes/leftImg8bit/val/*/*_leftImg8bit.png
$BIN predict --checkpoint $O/seg/checkpoints/last.safetensors --out $O/pred --overlay --input "$1" "$2" > $O/pred.out 2>&1; echo "pred rc $?"
