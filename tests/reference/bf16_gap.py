#!/usr/bin/python3
"""How far PyTorch's own bf16 autocast is from its f32 pass on the four model fixtures of
tests/fixtures (same models, weights and inputs as make_fixtures.py): the loss's relative
difference and the gradient's relative L2 distance over every parameter. The bars of the fixtures
suite's bf16 test (tests/test_fixtures.c, bf16_model_tracks_pytorch_f32_fixture) come from these.

    /usr/bin/python3 tests/reference/bf16_gap.py

PyTorch 1.13 results (2 threads): deeplab_r18_os16_aux 1.10e-04 / 0.472, deeplab_r18_os8
3.40e-03 / 0.881, resnet50_cls 2.04e-01 / 1.22; mnist_cnn fails under autocast (GroupNorm gets
bf16 input and f32 weights). The fixtures' batches are tiny (BatchNorm over 2-12 values per
channel in the deep layers), so small input perturbations move their gradients a lot; the f32
passes agree to ~1e-3.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
import dg_models  # noqa: E402
import make_fixtures as mf  # noqa: E402


def loss_and_grads(build, make_input, seed, is_seg, bf16):
    torch.manual_seed(0)
    model = build()
    mf.load_generated(model)
    x_np, y_np = make_input(seed)
    x = torch.from_numpy(x_np.copy())
    y = torch.from_numpy(y_np.copy()).long()
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(x)
        loss = dg_models.deeplab_loss(out, y)[0] if is_seg else F.cross_entropy(out, y)
    loss.backward()
    return loss.item(), {n: p.grad.double().numpy().ravel() for n, p in model.named_parameters()}


def main():
    torch.set_num_threads(2)

    def deeplab(os_, aux, **kw):
        return lambda: dg_models.DeepLabV3Plus(18, 19, output_stride=os_, aux=aux, **kw)

    cases = [
        ("deeplab_r18_os16_aux", deeplab(16, True, aux_dropout=0.0),
         lambda s: mf.make_seg_input(s, n=4, h=49, w=65), 1601, True),
        ("deeplab_r18_os8", deeplab(8, False), mf.make_seg_input, 801, True),
        ("mnist_cnn", lambda: dg_models.MnistCNN(1, 10), mf.make_mnist_input, 3633, False),
        ("resnet50_cls", lambda: dg_models.ResNetClassifier(50, 7), mf.make_cls_input, 5001,
         False),
    ]
    for name, build, make_input, seed, is_seg in cases:
        l32, g32 = loss_and_grads(build, make_input, seed, is_seg, False)
        try:
            l16, g16 = loss_and_grads(build, make_input, seed, is_seg, True)
        except RuntimeError as e:
            print("%s: bf16 autocast fails: %s" % (name, str(e).splitlines()[0]))
            continue
        d2 = sum(float(np.sum((g16[k] - g32[k]) ** 2)) for k in g32)
        n2 = sum(float(np.sum(g32[k] ** 2)) for k in g32)
        print("%s: loss rel %.2e, gradient rel L2 %.3g" % (name, abs(l16 - l32) / abs(l32),
                                                          np.sqrt(d2 / n2)))


if __name__ == "__main__":
    main()
