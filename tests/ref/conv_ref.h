/* tests/ref/conv_ref.h -- naive double-precision convolution (NCHW, OIHW). */
#ifndef DG_REF_CONV_H
#define DG_REF_CONV_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ref_conv {
    int64_t n, ic, h, w, oc, k, stride, pad, dil, oh, ow;
} ref_conv;

void ref_conv_setup(ref_conv *c, int64_t n, int64_t ic, int64_t h, int64_t w, int64_t oc,
        int64_t k, int64_t stride, int64_t pad, int64_t dil);
/* dst (N, OC, OH, OW) = conv(src, weights) + bias (bias may be NULL). */
void ref_conv_forward(const ref_conv *c, const double *src, const double *weights,
        const double *bias, double *dst);
/* Gradients for diff_dst; any output may be NULL. */
void ref_conv_backward(const ref_conv *c, const double *src, const double *weights,
        const double *diff_dst, double *diff_src, double *diff_weights, double *diff_bias);

#endif
