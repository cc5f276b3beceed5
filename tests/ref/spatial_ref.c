/* tests/ref/spatial_ref.c -- see spatial_ref.h. Pooling follows PyTorch's
 * aten/src/ATen/native/cpu/{MaxPoolKernel,AvgPoolKernel}.cpp, resize its
 * UpSample.h and UpSampleKernel.cpp. */
#include "spatial_ref.h"

#include <math.h>
#include <string.h>

void ref_pool_setup(ref_pool *r, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh,
        int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool max) {
    r->n = n, r->c = c, r->h = h, r->w = w, r->kh = kh, r->kw = kw;
    r->sh = sh, r->sw = sw, r->ph = ph, r->pw = pw, r->max = max;
    r->oh = (h + 2 * ph - kh) / sh + 1;
    r->ow = (w + 2 * pw - kw) / sw + 1;
}

/* One output window: the argmax (max) or the sum and divisor (average). */
static double pool_window(const ref_pool *r, const double *plane, int64_t oy, int64_t ox,
        int64_t *arg, double *div) {
    const int64_t y0 = oy * r->sh - r->ph, x0 = ox * r->sw - r->pw;
    const int64_t y1p = y0 + r->kh < r->h + r->ph ? y0 + r->kh : r->h + r->ph;
    const int64_t x1p = x0 + r->kw < r->w + r->pw ? x0 + r->kw : r->w + r->pw;
    *div = (double)((y1p - y0) * (x1p - x0));
    double acc = r->max ? -INFINITY : 0.0;
    *arg = -1;
    for (int64_t y = y0; y < y0 + r->kh; y++)
        for (int64_t x = x0; x < x0 + r->kw; x++) {
            if (y < 0 || y >= r->h || x < 0 || x >= r->w) continue;
            const double v = plane[y * r->w + x];
            if (!r->max) {
                acc += v;
            } else if (v > acc) {
                acc = v;
                *arg = y * r->w + x;
            }
        }
    return acc;
}

void ref_pool_forward(const ref_pool *r, const double *src, double *dst) {
    for (int64_t p = 0; p < r->n * r->c; p++) {
        const double *plane = src + p * r->h * r->w;
        for (int64_t oy = 0; oy < r->oh; oy++)
            for (int64_t ox = 0; ox < r->ow; ox++) {
                int64_t arg;
                double div;
                const double v = pool_window(r, plane, oy, ox, &arg, &div);
                dst[(p * r->oh + oy) * r->ow + ox] = r->max ? v : v / div;
            }
    }
}

void ref_pool_backward(const ref_pool *r, const double *src, const double *diff_dst,
        double *diff_src) {
    memset(diff_src, 0, sizeof(double) * (size_t)(r->n * r->c * r->h * r->w));
    for (int64_t p = 0; p < r->n * r->c; p++) {
        const double *plane = src + p * r->h * r->w;
        double *dplane = diff_src + p * r->h * r->w;
        for (int64_t oy = 0; oy < r->oh; oy++)
            for (int64_t ox = 0; ox < r->ow; ox++) {
                const double g = diff_dst[(p * r->oh + oy) * r->ow + ox];
                int64_t arg;
                double div;
                pool_window(r, plane, oy, ox, &arg, &div);
                if (r->max) {
                    if (arg >= 0) dplane[arg] += g;
                    continue;
                }
                const int64_t y0 = oy * r->sh - r->ph, x0 = ox * r->sw - r->pw;
                for (int64_t y = y0; y < y0 + r->kh; y++)
                    for (int64_t x = x0; x < x0 + r->kw; x++)
                        if (y >= 0 && y < r->h && x >= 0 && x < r->w)
                            dplane[y * r->w + x] += g / div;
            }
    }
}

/* PyTorch's source index: i0, i1 and the weight of i1 for output o. */
static void resize_coord(int64_t o, int64_t in, int64_t out, bool align_corners, int64_t *i0,
        int64_t *i1, double *lambda) {
    double s;
    if (align_corners) {
        s = out > 1 ? (double)o * (double)(in - 1) / (double)(out - 1) : 0.0;
    } else {
        s = ((double)o + 0.5) * (double)in / (double)out - 0.5;
        if (s < 0.0) s = 0.0;
    }
    *i0 = (int64_t)floor(s);
    if (*i0 > in - 1) *i0 = in - 1;
    *i1 = *i0 + 1 < in ? *i0 + 1 : in - 1;
    *lambda = s - (double)*i0;
}

void ref_resize_forward(const ref_resize *r, const double *src, double *dst) {
    for (int64_t p = 0; p < r->n * r->c; p++)
        for (int64_t oy = 0; oy < r->oh; oy++)
            for (int64_t ox = 0; ox < r->ow; ox++) {
                int64_t y0, y1, x0, x1;
                double ly, lx;
                resize_coord(oy, r->h, r->oh, r->align_corners, &y0, &y1, &ly);
                resize_coord(ox, r->w, r->ow, r->align_corners, &x0, &x1, &lx);
                const double *s = src + p * r->h * r->w;
                dst[(p * r->oh + oy) * r->ow + ox] =
                        (1 - ly) * ((1 - lx) * s[y0 * r->w + x0] + lx * s[y0 * r->w + x1])
                        + ly * ((1 - lx) * s[y1 * r->w + x0] + lx * s[y1 * r->w + x1]);
            }
}

void ref_resize_backward(const ref_resize *r, const double *diff_dst, double *diff_src) {
    memset(diff_src, 0, sizeof(double) * (size_t)(r->n * r->c * r->h * r->w));
    for (int64_t p = 0; p < r->n * r->c; p++)
        for (int64_t oy = 0; oy < r->oh; oy++)
            for (int64_t ox = 0; ox < r->ow; ox++) {
                int64_t y0, y1, x0, x1;
                double ly, lx;
                resize_coord(oy, r->h, r->oh, r->align_corners, &y0, &y1, &ly);
                resize_coord(ox, r->w, r->ow, r->align_corners, &x0, &x1, &lx);
                const double g = diff_dst[(p * r->oh + oy) * r->ow + ox];
                double *s = diff_src + p * r->h * r->w;
                s[y0 * r->w + x0] += (1 - ly) * (1 - lx) * g;
                s[y0 * r->w + x1] += (1 - ly) * lx * g;
                s[y1 * r->w + x0] += ly * (1 - lx) * g;
                s[y1 * r->w + x1] += ly * lx * g;
            }
}

void ref_concat_forward(int64_t n, int k, const int64_t *cs, int64_t h, int64_t w,
        const double *const *srcs, double *dst) {
    int64_t c = 0;
    for (int i = 0; i < k; i++) c += cs[i];
    for (int64_t b = 0; b < n; b++) {
        int64_t off = 0;
        for (int i = 0; i < k; i++) {
            const size_t plane = (size_t)(cs[i] * h * w);
            memcpy(dst + (b * c + off) * h * w, srcs[i] + (size_t)b * plane,
                    plane * sizeof(double));
            off += cs[i];
        }
    }
}

void ref_concat_backward(int64_t n, int k, const int64_t *cs, int64_t h, int64_t w,
        const double *diff_dst, double *const *diff_srcs) {
    int64_t c = 0;
    for (int i = 0; i < k; i++) c += cs[i];
    for (int64_t b = 0; b < n; b++) {
        int64_t off = 0;
        for (int i = 0; i < k; i++) {
            const size_t plane = (size_t)(cs[i] * h * w);
            memcpy(diff_srcs[i] + (size_t)b * plane, diff_dst + (b * c + off) * h * w,
                    plane * sizeof(double));
            off += cs[i];
        }
    }
}

void ref_add_forward(int64_t count, const double *a, const double *b, bool relu, double *dst) {
    for (int64_t i = 0; i < count; i++) {
        const double s = a[i] + b[i];
        dst[i] = relu && s < 0.0 ? 0.0 : s;
    }
}

void ref_add_backward(int64_t count, const double *a, const double *b, bool relu,
        const double *diff_dst, double *diff_a, double *diff_b) {
    for (int64_t i = 0; i < count; i++) {
        const double g = !relu || a[i] + b[i] > 0.0 ? diff_dst[i] : 0.0;
        diff_a[i] = g;
        diff_b[i] = g;
    }
}
