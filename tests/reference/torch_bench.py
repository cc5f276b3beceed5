#!/usr/bin/python3
"""PyTorch reference for `dgseg bench` (Debian's python3-torch, PyTorch 1.13).

Times the same model definition (tests/reference/dg_models.py) on random data with the same
protocol as dgseg bench: 2 untimed warm-up steps, then N timed steps; a training step is forward,
mean cross-entropy (ignore 255), backward and a plain SGD update. Prints one JSON object with the
keys of `dgseg bench --json`, plus "memory_format". --dtype bf16 runs forward and loss under CPU
autocast to bfloat16 (convolutions and linear layers in bf16, f32 weights and gradients).

    /usr/bin/python3 tests/reference/torch_bench.py --model deeplabv3plus-r50 --size 256 \
        --batch 2 --threads 2 --steps 5 --mode train --memory-format channels_last
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dg_models  # noqa: E402

MODELS = {
    "deeplabv3plus-r18": (lambda: dg_models.DeepLabV3Plus(18, 19, output_stride=16), 3, 19),
    "deeplabv3plus-r50": (lambda: dg_models.DeepLabV3Plus(50, 19, output_stride=16), 3, 19),
    "deeplabv3plus-r101": (lambda: dg_models.DeepLabV3Plus(101, 19, output_stride=16), 3, 19),
    "mnist-cnn": (lambda: dg_models.MnistCNN(1, 10), 1, 10),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, choices=sorted(MODELS))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    ap.add_argument("--memory-format", choices=["nchw", "channels_last"], default="nchw")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32",
                    help="bf16: torch.autocast('cpu', dtype=torch.bfloat16) around forward and "
                         "loss, f32 master weights (PyTorch's mixed-precision recipe)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    build, channels, classes = MODELS[a.model]
    model = build()
    x = torch.rand(a.batch, channels, a.size, a.size)
    seg = a.model.startswith("deeplab")
    y = (torch.randint(0, classes, (a.batch, a.size, a.size)) if seg
         else torch.randint(0, classes, (a.batch,)))
    if a.memory_format == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    if a.mode == "train":
        model.train()
    else:
        model.eval()

    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.dtype == "bf16")

    def step():
        if a.mode == "infer":
            with torch.no_grad(), autocast:
                model(x)
            return
        opt.zero_grad(set_to_none=True)
        with autocast:
            out = model(x)
            loss = F.cross_entropy(out, y, ignore_index=255)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = (time.perf_counter() - t0) / a.steps
    print(json.dumps({
        "model": a.model, "mode": a.mode, "dtype": a.dtype, "batch": a.batch, "size": a.size,
        "threads": a.threads, "steps": a.steps, "images_per_s": a.batch / dt,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "memory_format": a.memory_format}))


if __name__ == "__main__":
    main()
