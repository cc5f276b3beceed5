#!/usr/bin/python3
"""The growth factor behind the Winograd bars of tests/test_conv.c: F(4x4, 3x3) with the
points 0, 1, -1, 2, -2, infinity (nets/core/wino.c), emulated in float32 (transforms, the
element-wise products summed over channels, the output transform), against the exact
correlation in float64. Prints, over random tiles (inputs in [-1, 1], weights in [-0.5, 0.5]),
the largest error of an output divided by u * sum |w| |x| over its window (u = 2^-24), for
Winograd and, for scale, for a direct float32 sum.

    /usr/bin/python3 tests/reference/winograd_error.py [tiles] [channels]
"""
import sys

import numpy as np

BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float32)
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float32)
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]], np.float32)
U = 2.0 ** -24


def main():
    tiles = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    ch = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    rng = np.random.default_rng(0)
    worst_w = worst_d = 0.0
    for _ in range(tiles):
        d = rng.uniform(-1, 1, (ch, 6, 6)).astype(np.float32)
        g = rng.uniform(-0.5, 0.5, (ch, 3, 3)).astype(np.float32)
        d64, g64 = d.astype(np.float64), g.astype(np.float64)
        win = lambda i, j: (slice(None), slice(i, i + 3), slice(j, j + 3))
        exact = np.array([[(d64[win(i, j)] * g64).sum() for j in range(4)] for i in range(4)])
        bound = np.array([[np.abs(d64[win(i, j)] * g64).sum() for j in range(4)]
                          for i in range(4)])
        m = np.zeros((6, 6), np.float32)
        for c in range(ch):
            m += (G @ g[c] @ G.T) * (BT @ d[c] @ BT.T)
        y = AT @ m @ AT.T
        direct = np.array([[np.float32(0) + np.sum(d[win(i, j)] * g, dtype=np.float32)
                            for j in range(4)] for i in range(4)])
        worst_w = max(worst_w, float((np.abs(y - exact) / (U * bound)).max()))
        worst_d = max(worst_d, float((np.abs(direct - exact) / (U * bound)).max()))
    print("tiles %d, channels %d: largest |error| / (u sum|w||x|): Winograd %.1f, direct %.1f"
          % (tiles, ch, worst_w, worst_d))


if __name__ == "__main__":
    main()
