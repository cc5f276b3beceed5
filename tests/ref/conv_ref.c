/* tests/ref/conv_ref.c -- see conv_ref.h. */
#include "conv_ref.h"

#include <string.h>

void ref_conv_setup(ref_conv *c, int64_t n, int64_t ic, int64_t h, int64_t w, int64_t oc,
        int64_t k, int64_t stride, int64_t pad, int64_t dil) {
    c->n = n, c->ic = ic, c->h = h, c->w = w, c->oc = oc, c->k = k;
    c->stride = stride, c->pad = pad, c->dil = dil;
    c->oh = (h + 2 * pad - dil * (k - 1) - 1) / stride + 1;
    c->ow = (w + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

#define SRC(n, c_, y, x) src[(((n) * c->ic + (c_)) * c->h + (y)) * c->w + (x)]
#define WEI(o, i, ky, kx) weights[(((o) * c->ic + (i)) * c->k + (ky)) * c->k + (kx)]
#define DST(a, n, o, y, x) a[(((n) * c->oc + (o)) * c->oh + (y)) * c->ow + (x)]

void ref_conv_forward(const ref_conv *c, const double *src, const double *weights,
        const double *bias, double *dst) {
    for (int64_t n = 0; n < c->n; n++)
    for (int64_t o = 0; o < c->oc; o++)
    for (int64_t y = 0; y < c->oh; y++)
    for (int64_t x = 0; x < c->ow; x++) {
        double s = bias ? bias[o] : 0.0;
        for (int64_t i = 0; i < c->ic; i++)
        for (int64_t ky = 0; ky < c->k; ky++)
        for (int64_t kx = 0; kx < c->k; kx++) {
            int64_t iy = y * c->stride - c->pad + ky * c->dil;
            int64_t ix = x * c->stride - c->pad + kx * c->dil;
            if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w) continue;
            s += SRC(n, i, iy, ix) * WEI(o, i, ky, kx);
        }
        DST(dst, n, o, y, x) = s;
    }
}

void ref_conv_backward(const ref_conv *c, const double *src, const double *weights,
        const double *diff_dst, double *diff_src, double *diff_weights, double *diff_bias) {
    if (diff_src) memset(diff_src, 0, sizeof(double) * (size_t)(c->n * c->ic * c->h * c->w));
    if (diff_weights)
        memset(diff_weights, 0, sizeof(double) * (size_t)(c->oc * c->ic * c->k * c->k));
    if (diff_bias) memset(diff_bias, 0, sizeof(double) * (size_t)c->oc);
    for (int64_t n = 0; n < c->n; n++)
    for (int64_t o = 0; o < c->oc; o++)
    for (int64_t y = 0; y < c->oh; y++)
    for (int64_t x = 0; x < c->ow; x++) {
        double g = DST(diff_dst, n, o, y, x);
        if (diff_bias) diff_bias[o] += g;
        for (int64_t i = 0; i < c->ic; i++)
        for (int64_t ky = 0; ky < c->k; ky++)
        for (int64_t kx = 0; kx < c->k; kx++) {
            int64_t iy = y * c->stride - c->pad + ky * c->dil;
            int64_t ix = x * c->stride - c->pad + kx * c->dil;
            if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w) continue;
            if (diff_src) diff_src[(((n * c->ic + i) * c->h + iy) * c->w + ix)] += g * WEI(o, i, ky, kx);
            if (diff_weights)
                diff_weights[(((o * c->ic + i) * c->k + ky) * c->k + kx)] += g * SRC(n, i, iy, ix);
        }
    }
}
