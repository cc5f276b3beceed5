#!/usr/bin/python3
"""PyTorch reference for the Rotated Fashion-MNIST protocol (docs/datasets.md §12), DomainBed style.

What a PyTorch user of DomainBed would run, written from the specification (not from dgseg's C):

* data: Debian's dataset-fashion-mnist IDX files, the 70,000-image pool permuted with SplitMix64
  stream (1, 0), six rotation domains (0°, 15°, …, 75°; bilinear, zero outside, rounded to bytes),
  the 80/20 in/out split of every domain on stream (2, domain) seeded by the trial seed (§12.2-12.4),
  so both implementations train and evaluate on the same images;
* model: DomainBed's MNIST_CNN + linear (tests/reference/dg_models.py, PyTorch's default init);
* training: ERM, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0), one cross-entropy over
  the concatenated per-domain batches (64 per training domain), per-domain epochs of shuffled
  in-splits that all restart together after floor(min n_in / 64) steps (§12.5; shuffles from
  torch's generator seeded by the trial seed, not dgseg's streams);
* --match-dgseg: instead, dgseg's initial weights (every tensor of the state dict, in order, from
  SplitMix64 stream (6, ordinal) seeded by the trial seed: U(-b, b) as float32(b·(2u − 1)) with
  b = 1/√fan_in, GroupNorm 1 and 0) and dgseg's batches (training slot k's in-split positions
  shuffled on the continuing stream (3, k) at the start of every epoch, domain-major batches), so
  the two implementations differ only in floating-point rounding;
* --perturb-ulp N: every initial weight moved by N units in the last place (float32, direction
  from torch's generator seeded by --perturb-seed, default the trial seed): the same run with
  different rounding, to measure how far two runs that differ only by rounding drift apart
  (rfmnist_divergence.sh, rfmnist_rounding_spread.sh);
* --dump-steps/--dump-dir: the weights after the given updates as safetensors files
  (step-N.safetensors, dgseg's tensor names), comparable with dgseg's checkpoints;
* evaluation (eval mode) after update 1, every --eval-every updates from there and after the last:
  mean accuracy over the training domains' out-splits (training-domain validation) and the test
  domain's in-split; the selected step is the first maximum of the validation score.

Usage (the reduced run of docs/results.md: test domains 0° and 75°, 1,000 steps, one trial):
    /usr/bin/python3 tests/reference/rfmnist_reduced.py --test-domains 0 5 --steps 1000 \
        --threads 2 --json out.json
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dg_models import MnistCNN  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from make_fixtures import write_safetensors  # noqa: E402

ANGLES = [0, 15, 30, 45, 60, 75]
M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix(x):
    z = (x + GOLDEN) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class SplitMix64:
    """docs/datasets.md §12.2: state = mix(seed ^ mix(stream)), stream = purpose << 32 | index."""

    def __init__(self, seed, purpose, index):
        self.state = mix((seed ^ mix((purpose << 32) | index)) & M64)

    def next(self):
        r = mix(self.state)
        self.state = (self.state + GOLDEN) & M64
        return r

    def below(self, n):
        t = ((1 << 64) - n) % n
        while True:
            r = self.next()
            if r >= t:
                return r % n

    def shuffle(self, a):
        for i in range(len(a) - 1, 0, -1):
            j = self.below(i + 1)
            a[i], a[j] = a[j], a[i]


def read_idx(path, magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    got = struct.unpack(">I", data[:4])[0]
    if got != magic:
        sys.exit(f"{path}: magic {got}, expected {magic}")
    if magic == 2051:
        n, rows, cols = struct.unpack(">III", data[4:16])
        return np.frombuffer(data, np.uint8, n * rows * cols, 16).reshape(n, rows, cols)
    n = struct.unpack(">I", data[4:8])[0]
    return np.frombuffer(data, np.uint8, n, 8)


def rotate(images, degrees):
    """§12.3 step 4, vectorised over the images of one domain."""
    if degrees == 0:
        return images.copy()
    th = math.radians(degrees)
    c = 13.5
    y, x = np.mgrid[0:28, 0:28].astype(np.float64)
    dx, dy = x - c, y - c
    xs = c + math.cos(th) * dx - math.sin(th) * dy
    ys = c + math.sin(th) * dx + math.cos(th) * dy
    x0, y0 = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    fx, fy = xs - x0, ys - y0
    src = images.astype(np.float64)
    out = np.zeros(images.shape, np.float64)
    for oy, ox, w in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)),
                      (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + ox, y0 + oy
        inside = (xi >= 0) & (xi < 28) & (yi >= 0) & (yi < 28)
        v = src[:, np.clip(yi, 0, 27), np.clip(xi, 0, 27)]
        out += np.where(inside, w, 0.0) * v
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def build_domains(root, data_seed):
    imgs = np.concatenate([read_idx(f"{root}/train-images-idx3-ubyte.gz", 2051),
                           read_idx(f"{root}/t10k-images-idx3-ubyte.gz", 2051)])
    labels = np.concatenate([read_idx(f"{root}/train-labels-idx1-ubyte.gz", 2049),
                             read_idx(f"{root}/t10k-labels-idx1-ubyte.gz", 2049)])
    perm = list(range(len(imgs)))
    SplitMix64(data_seed, 1, 0).shuffle(perm)
    perm = np.array(perm)
    domains = []
    for i, angle in enumerate(ANGLES):
        idx = perm[i::len(ANGLES)]
        x = torch.from_numpy(rotate(imgs[idx], angle)).float().div_(255).unsqueeze(1)
        domains.append((x, torch.from_numpy(labels[idx].astype(np.int64))))
    return domains


def holdout(n, domain, trial_seed):
    order = list(range(n))
    SplitMix64(trial_seed, 2, domain).shuffle(order)
    n_out = n // 5
    return torch.tensor(order[n_out:]), torch.tensor(order[:n_out])  # in, out


@torch.no_grad()
def accuracy(model, x, y, batch=512):
    model.eval()
    correct = 0
    for s in range(0, len(x), batch):
        correct += (model(x[s:s + batch]).argmax(1) == y[s:s + batch]).sum().item()
    model.train()
    return correct / len(x)


def uniform(r):
    return (r.next() >> 11) * 2.0 ** -53


@torch.no_grad()
def dgseg_init(model, seed):
    """dgseg's parameter initialisation (nets/core/params.c, docs/datasets.md §12.2 purpose 6)."""
    # dgseg's parameter order (its checkpoints' order): each conv, then its GroupNorm.
    names = []
    for i in range(1, 5):
        names += [f"featurizer.conv{i}.weight", f"featurizer.conv{i}.bias",
                  f"featurizer.bn{i - 1}.weight", f"featurizer.bn{i - 1}.bias"]
    names += ["classifier.weight", "classifier.bias"]
    sd = model.state_dict()
    assert sorted(names) == sorted(sd), "MnistCNN's tensors changed"
    for ordinal, name in enumerate(names):
        t = sd[name]
        if ".bn" in name:  # GroupNorm: gamma 1, beta 0
            t.fill_(1.0 if name.endswith("weight") else 0.0)
            continue
        layer = dict(model.named_modules())[name.rsplit(".", 1)[0]]
        fan_in = layer.weight[0].numel()
        b = float(np.float32(1.0 / math.sqrt(fan_in)))
        r = SplitMix64(seed, 6, ordinal)
        v = np.array([b * (2.0 * uniform(r) - 1.0) for _ in range(t.numel())], np.float32)
        t.copy_(torch.from_numpy(v).view_as(t))


@torch.no_grad()
def perturb_ulp(model, ulps, seed):
    """Move every parameter element by `ulps` float32 ulps, up or down at random."""
    gen = torch.Generator().manual_seed(seed)
    for t in model.state_dict().values():
        v = t.numpy()
        up = torch.randint(0, 2, t.shape, generator=gen).numpy().astype(bool)
        for _ in range(ulps):
            v[...] = np.where(up, np.nextafter(v, np.float32(np.inf)),
                              np.nextafter(v, np.float32(-np.inf)))


def dgseg_epoch_orders(n_in, seed):
    """Per training slot k, the in-split positions of each epoch (continuing stream (3, k))."""
    rngs = [SplitMix64(seed, 3, k) for k in range(len(n_in))]

    def next_epoch():
        out = []
        for k, n in enumerate(n_in):
            a = list(range(n))
            rngs[k].shuffle(a)
            out.append(torch.tensor(a))
        return out
    return next_epoch


def run(domains, test, args):
    torch.manual_seed(args.seed)
    splits = [holdout(len(d[1]), i, args.seed) for i, d in enumerate(domains)]
    train_doms = [i for i in range(len(domains)) if i != test]
    per = args.batch_size
    steps_per_epoch = min(len(splits[i][0]) for i in train_doms) // per
    gen = torch.Generator().manual_seed(args.seed)
    model = MnistCNN(1, 10)
    if args.match_dgseg:
        dgseg_init(model, args.seed)
        next_epoch = dgseg_epoch_orders([len(splits[i][0]) for i in train_doms], args.seed)
    if args.perturb_ulp:
        perturb_ulp(model, args.perturb_ulp,
                    args.seed if args.perturb_seed is None else args.perturb_seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8,
                           weight_decay=0)
    evals = []
    t0 = time.perf_counter()
    order = None
    for t in range(args.steps):
        e, k = divmod(t, steps_per_epoch)
        if k == 0 and args.match_dgseg:
            order = [splits[i][0][pos] for i, pos in zip(train_doms, next_epoch())]
        elif k == 0:
            order = [splits[i][0][torch.randperm(len(splits[i][0]), generator=gen)]
                     for i in train_doms]
        xs, ys = [], []
        for j, i in enumerate(train_doms):
            sel = order[j][k * per:(k + 1) * per]
            xs.append(domains[i][0][sel])
            ys.append(domains[i][1][sel])
        loss = F.cross_entropy(model(torch.cat(xs)), torch.cat(ys))
        opt.zero_grad()
        loss.backward()
        opt.step()
        done = t + 1
        if done in args.dump_steps:
            os.makedirs(args.dump_dir, exist_ok=True)
            write_safetensors(os.path.join(args.dump_dir, f"step-{done}.safetensors"),
                              [(k, v.numpy(), "F32") for k, v in model.state_dict().items()],
                              {"step": done})
        if (done - 1) % args.eval_every == 0 or done == args.steps:
            val = sum(accuracy(model, domains[i][0][splits[i][1]], domains[i][1][splits[i][1]])
                      for i in train_doms) / len(train_doms)
            acc = accuracy(model, domains[test][0][splits[test][0]],
                           domains[test][1][splits[test][0]])
            evals.append({"step": done, "val_acc": val, "test_acc": acc, "loss": loss.item()})
            print(f"rot{ANGLES[test]} step {done}: loss {loss.item():.4f} validation "
                  f"{100 * val:.2f}% test {100 * acc:.2f}%", flush=True)
    wall = time.perf_counter() - t0
    best = max(range(len(evals)), key=lambda i: (evals[i]["val_acc"], -i))
    return {"test_domain": f"rot{ANGLES[test]}", "trial": args.seed,
            "selected_step": evals[best]["step"], "val_acc": evals[best]["val_acc"],
            "acc_selected": evals[best]["test_acc"], "last_step": evals[-1]["step"],
            "acc_last": evals[-1]["test_acc"], "train_eval_seconds": wall, "evals": evals}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fmnist-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--test-domains", type=int, nargs="+", default=list(range(6)),
                    help="domain indices (0 = 0°, …, 5 = 75°)")
    ap.add_argument("--steps", type=int, default=5001)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=64, help="per training domain")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0, help="trial seed")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--match-dgseg", action="store_true",
                    help="dgseg's initial weights and batches (only rounding differs)")
    ap.add_argument("--perturb-ulp", type=int, default=0,
                    help="move every initial weight by this many float32 ulps (random signs)")
    ap.add_argument("--perturb-seed", type=int,
                    help="seed of --perturb-ulp's directions (default: --seed)")
    ap.add_argument("--dump-steps", type=lambda v: {int(x) for x in v.split(",")}, default=set(),
                    help="comma-separated update counts after which to write the weights")
    ap.add_argument("--dump-dir", default=".", help="where --dump-steps writes")
    ap.add_argument("--dump-init", help="write the initial state dict here (torch.save) and stop")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    domains = build_domains(args.fmnist_dir, args.data_seed)
    build_s = time.perf_counter() - t0
    if args.dump_init:
        m = MnistCNN(1, 10)
        dgseg_init(m, args.seed)
        torch.save(m.state_dict(), args.dump_init)
        return
    runs = [run(domains, d, args) for d in args.test_domains]
    total = time.perf_counter() - t0
    print("| test domain | selected step | val acc | test acc (selected) | test acc (last) |")
    print("|---|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r['test_domain']} | {r['selected_step']} | {100 * r['val_acc']:.1f} | "
              f"{100 * r['acc_selected']:.1f} | {100 * r['acc_last']:.1f} |")
    print(f"wall time {total:.1f} s (data construction {build_s:.1f} s), torch "
          f"{torch.__version__}, {args.threads} threads")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": args.threads, "steps": args.steps,
                       "wall_seconds": total, "data_seconds": build_s, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
