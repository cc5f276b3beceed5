/* nets/core/chw_lanes.h -- vector kernels of the normalisation layers on a
 * channel-blocked dg_chw view (nChw16c, nChw8c; nets/core/dnnl_util.h):
 * the block's L channels are the lanes of GNU vector types, so the loops
 * compile to SIMD code whatever the auto-vectorizer decides. One block
 * (n, b) is one work item: its per-channel sums run serially in double
 * over (h, w), so callers that add them in a fixed order get results that
 * do not depend on the thread count. Used by GroupNorm (nets/core/groupnorm.c)
 * and the synchronised BatchNorm (nets/core/batchnorm.c). */
#ifndef DG_CHW_LANES_H
#define DG_CHW_LANES_H

#include "dnnl_util.h"

#define DG_MAX_LANES 16

/* GNU vector types: unaligned (aligned(4)), aliasing float/int data. L (8
 * or 16) is a constant at each call site. */
typedef float dg_v4f __attribute__((vector_size(16), aligned(4), may_alias));
typedef float dg_v8f __attribute__((vector_size(32), aligned(4), may_alias));
typedef int32_t dg_v8i __attribute__((vector_size(32), aligned(4), may_alias));
typedef double dg_v4d __attribute__((vector_size(32)));

/* Per channel of block (n, b), over (h, w): s1 = sum(x), s2 = sum(x^2)
 * (one pass; in double, var = s2/M - mean^2 loses nothing that matters for
 * float data). */
static inline __attribute__((always_inline)) void dg_lane_sums(const dg_chw *v, const float *p,
        const int L, double *s1, double *s2) {
    dg_v4d a[DG_MAX_LANES / 4] = {{0}}, b[DG_MAX_LANES / 4] = {{0}};
    for (int64_t h = 0; h < v->h; h++)
        for (int64_t w = 0; w < v->w; w++) {
            const float *q = p + h * v->sh + w * v->sw;
            for (int j = 0; j < L / 4; j++) {
                const dg_v4d x = __builtin_convertvector(*(const dg_v4f *)(q + 4 * j), dg_v4d);
                a[j] += x;
                b[j] += x * x;
            }
        }
    for (int j = 0; j < L; j++) {
        s1[j] = a[j / 4][j % 4];
        s2[j] = b[j / 4][j % 4];
    }
}

/* Per channel of block (n, b): sd = sum(dy), sdx = sum(dy * x). */
static inline __attribute__((always_inline)) void dg_lane_sums2(const dg_chw *v, const float *x,
        const float *dy, const int L, double *sd, double *sdx) {
    dg_v4d a[DG_MAX_LANES / 4] = {{0}}, b[DG_MAX_LANES / 4] = {{0}};
    for (int64_t h = 0; h < v->h; h++)
        for (int64_t w = 0; w < v->w; w++) {
            const int64_t o = h * v->sh + w * v->sw;
            for (int j = 0; j < L / 4; j++) {
                const dg_v4d d = __builtin_convertvector(*(const dg_v4f *)(dy + o + 4 * j), dg_v4d);
                const dg_v4d xx = __builtin_convertvector(*(const dg_v4f *)(x + o + 4 * j), dg_v4d);
                a[j] += d;
                b[j] += d * xx;
            }
        }
    for (int j = 0; j < L; j++) {
        sd[j] = a[j / 4][j % 4];
        sdx[j] = b[j / 4][j % 4];
    }
}

static inline dg_v8f dg_load8(const float *p) { return *(const dg_v8f *)p; }

/* y = (x - mean[lane])*k[lane] + beta[lane], the scalar path's expression. */
static inline __attribute__((always_inline)) void dg_lane_affine(const dg_chw *v, const float *x,
        float *y, const int L, const float *mean, const float *k, const float *beta) {
    dg_v8f m[DG_MAX_LANES / 8], kk[DG_MAX_LANES / 8], bt[DG_MAX_LANES / 8];
    for (int j = 0; j < L / 8; j++) {
        m[j] = dg_load8(mean + 8 * j);
        kk[j] = dg_load8(k + 8 * j);
        bt[j] = dg_load8(beta + 8 * j);
    }
    for (int64_t h = 0; h < v->h; h++)
        for (int64_t w = 0; w < v->w; w++) {
            const int64_t o = h * v->sh + w * v->sw;
            for (int j = 0; j < L / 8; j++)
                *(dg_v8f *)(y + o + 8 * j) = (dg_load8(x + o + 8 * j) - m[j]) * kk[j] + bt[j];
        }
}

/* dx = gr*dy - a - b*((x - mf)*rf), per lane; with relu: 0 where x <= 0
 * (the ReLU that produced x; oneDNN's use_dst_for_bwd rule), by masking the
 * bits, so the result is exactly 0 there. */
static inline __attribute__((always_inline)) void dg_lane_dx(const dg_chw *v, const float *x,
        const float *dy, float *dx, const int L, const bool relu, const float *gr,
        const float *a, const float *b, const float *mf, const float *rf) {
    dg_v8f g8[DG_MAX_LANES / 8], a8[DG_MAX_LANES / 8], b8[DG_MAX_LANES / 8],
            m8[DG_MAX_LANES / 8], r8[DG_MAX_LANES / 8];
    for (int j = 0; j < L / 8; j++) {
        g8[j] = dg_load8(gr + 8 * j);
        a8[j] = dg_load8(a + 8 * j);
        b8[j] = dg_load8(b + 8 * j);
        m8[j] = dg_load8(mf + 8 * j);
        r8[j] = dg_load8(rf + 8 * j);
    }
    const dg_v8f zero = {0};
    for (int64_t h = 0; h < v->h; h++)
        for (int64_t w = 0; w < v->w; w++) {
            const int64_t o = h * v->sh + w * v->sw;
            for (int j = 0; j < L / 8; j++) {
                const dg_v8f xx = dg_load8(x + o + 8 * j);
                dg_v8f g = g8[j] * dg_load8(dy + o + 8 * j) - a8[j] - b8[j] * ((xx - m8[j]) * r8[j]);
                if (relu) g = (dg_v8f)((dg_v8i)g & (xx > zero));
                *(dg_v8f *)(dx + o + 8 * j) = g;
            }
        }
}

/* Block (n, b)'s first element. */
static inline int64_t dg_block_at(const dg_chw *v, int64_t n, int64_t b) {
    return v->off0 + n * v->sn + b * v->scb;
}

#endif
