/* tests/ref/norm_ref.h -- naive double-precision batch and group
 * normalization (NCHW), written from PyTorch's definitions:
 *   y = gamma*(x - mean)/sqrt(var + eps) + beta, var biased.
 * Shapes: N batch, C channels, G groups, H height, W width. */
#ifndef DG_REF_NORM_H
#define DG_REF_NORM_H

#include <stdint.h>

typedef struct ref_norm {
    int64_t n, c, h, w;
    int64_t g;  /* groups (group norm only) */
    double eps;
} ref_norm;

/* Per-channel batch mean and biased variance over N, H, W. */
void ref_bn_stats(const ref_norm *r, const double *x, double *mean, double *var);
/* y (N, C, H, W) normalised with the given per-channel statistics (C). */
void ref_bn_forward(const ref_norm *r, const double *x, const double *gamma,
        const double *beta, const double *mean, const double *var, double *y);
/* Training-mode backward (statistics of x itself):
 *   diff_src = gamma*rstd/M*(M*dy - sum(dy) - xhat*sum(dy*xhat)), M = N*H*W,
 *   diff_gamma = sum(dy*xhat), diff_beta = sum(dy). Any output may be NULL. */
void ref_bn_backward(const ref_norm *r, const double *x, const double *gamma,
        const double *diff_dst, double *diff_src, double *diff_gamma, double *diff_beta);
/* Backward of the affine map with fixed statistics (eval mode, frozen BN):
 *   diff_src = dy*gamma/sqrt(var + eps); diff_gamma, diff_beta as above. */
void ref_bn_backward_global(const ref_norm *r, const double *x, const double *gamma,
        const double *mean, const double *var, const double *diff_dst, double *diff_src,
        double *diff_gamma, double *diff_beta);

/* Group norm: statistics per (n, group of C/G channels), biased variance. */
void ref_gn_forward(const ref_norm *r, const double *x, const double *gamma,
        const double *beta, double *y);
/* Any output may be NULL. */
void ref_gn_backward(const ref_norm *r, const double *x, const double *gamma,
        const double *diff_dst, double *diff_src, double *diff_gamma, double *diff_beta);

#endif
