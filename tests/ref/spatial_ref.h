/* tests/ref/spatial_ref.h -- naive double-precision references for the
 * spatial layers: pooling (max, average with count_include_pad=True, global
 * average), bilinear resize (PyTorch's F.interpolate formulas), channel
 * concatenation and element-wise add (optionally followed by ReLU).
 * Every tensor is plain NCHW. Shapes: N, C, H, W input; OH, OW output. */
#ifndef DG_REF_SPATIAL_H
#define DG_REF_SPATIAL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ref_pool {
    int64_t n, c, h, w;
    int64_t kh, kw, sh, sw, ph, pw; /* window, stride, symmetric padding */
    int64_t oh, ow;                 /* floor((H + 2p - k)/s) + 1 */
    bool max;                       /* max pooling, else average */
} ref_pool;

void ref_pool_setup(ref_pool *r, int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh,
        int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool max);
/* dst (N, C, OH, OW). Max: padding never wins (PyTorch pads with -inf),
 * the first maximum in window order is taken. Average: PyTorch's
 * count_include_pad=True divisor (window clipped to H + p, W + p). */
void ref_pool_forward(const ref_pool *r, const double *src, double *dst);
/* diff_src (N, C, H, W) from diff_dst (N, C, OH, OW); src is read by max. */
void ref_pool_backward(const ref_pool *r, const double *src, const double *diff_dst,
        double *diff_src);

typedef struct ref_resize {
    int64_t n, c, h, w, oh, ow;
    bool align_corners;
} ref_resize;

/* dst (N, C, OH, OW) = F.interpolate(src, size=(OH, OW), mode="bilinear",
 * align_corners=...). */
void ref_resize_forward(const ref_resize *r, const double *src, double *dst);
/* diff_src (N, C, H, W): the transpose of the forward map. */
void ref_resize_backward(const ref_resize *r, const double *diff_dst, double *diff_src);

/* dst (N, sum C_k, H, W) = cat(srcs[k] (N, C_k, H, W)) along channels. */
void ref_concat_forward(int64_t n, int k, const int64_t *cs, int64_t h, int64_t w,
        const double *const *srcs, double *dst);
/* diff_srcs[k] (N, C_k, H, W) = the channel slices of diff_dst. */
void ref_concat_backward(int64_t n, int k, const int64_t *cs, int64_t h, int64_t w,
        const double *diff_dst, double *const *diff_srcs);

/* dst (count) = a + b, then max(., 0) when relu. */
void ref_add_forward(int64_t count, const double *a, const double *b, bool relu, double *dst);
/* diff_a = diff_b = diff_dst * [a + b > 0 or !relu]. */
void ref_add_backward(int64_t count, const double *a, const double *b, bool relu,
        const double *diff_dst, double *diff_a, double *diff_b);

#endif
