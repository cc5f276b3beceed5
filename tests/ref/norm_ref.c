/* tests/ref/norm_ref.c -- see norm_ref.h. */
#include "norm_ref.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define AT(n, c_, y, x_) ((((n) * r->c + (c_)) * r->h + (y)) * r->w + (x_))

void ref_bn_stats(const ref_norm *r, const double *x, double *mean, double *var) {
    const double m = (double)(r->n * r->h * r->w);
    for (int64_t c = 0; c < r->c; c++) {
        double s = 0.0, s2 = 0.0;
        for (int64_t n = 0; n < r->n; n++)
            for (int64_t i = 0; i < r->h * r->w; i++) s += x[AT(n, c, 0, 0) + i];
        mean[c] = s / m;
        for (int64_t n = 0; n < r->n; n++)
            for (int64_t i = 0; i < r->h * r->w; i++) {
                double d = x[AT(n, c, 0, 0) + i] - mean[c];
                s2 += d * d;
            }
        var[c] = s2 / m;
    }
}

void ref_bn_forward(const ref_norm *r, const double *x, const double *gamma,
        const double *beta, const double *mean, const double *var, double *y) {
    for (int64_t n = 0; n < r->n; n++)
        for (int64_t c = 0; c < r->c; c++)
            for (int64_t i = 0; i < r->h * r->w; i++) {
                int64_t k = AT(n, c, 0, 0) + i;
                y[k] = gamma[c] * (x[k] - mean[c]) / sqrt(var[c] + r->eps) + beta[c];
            }
}

/* Shared by both backward variants: when `batch`, the statistics are those
 * of x and the full derivative through them is taken. */
static void bn_backward(const ref_norm *r, const double *x, const double *gamma,
        const double *mean, const double *var, bool batch, const double *dy, double *dx,
        double *dgamma, double *dbeta) {
    const double m = (double)(r->n * r->h * r->w);
    for (int64_t c = 0; c < r->c; c++) {
        const double rstd = 1.0 / sqrt(var[c] + r->eps);
        double sd = 0.0, sdx = 0.0;
        for (int64_t n = 0; n < r->n; n++)
            for (int64_t i = 0; i < r->h * r->w; i++) {
                int64_t k = AT(n, c, 0, 0) + i;
                sd += dy[k];
                sdx += dy[k] * (x[k] - mean[c]) * rstd;
            }
        if (dgamma) dgamma[c] = sdx;
        if (dbeta) dbeta[c] = sd;
        if (!dx) continue;
        for (int64_t n = 0; n < r->n; n++)
            for (int64_t i = 0; i < r->h * r->w; i++) {
                int64_t k = AT(n, c, 0, 0) + i;
                double xhat = (x[k] - mean[c]) * rstd;
                dx[k] = batch ? gamma[c] * rstd / m * (m * dy[k] - sd - xhat * sdx)
                              : gamma[c] * rstd * dy[k];
            }
    }
}

void ref_bn_backward(const ref_norm *r, const double *x, const double *gamma,
        const double *diff_dst, double *diff_src, double *diff_gamma, double *diff_beta) {
    double *mean = malloc((size_t)r->c * sizeof(double));
    double *var = malloc((size_t)r->c * sizeof(double));
    ref_bn_stats(r, x, mean, var);
    bn_backward(r, x, gamma, mean, var, true, diff_dst, diff_src, diff_gamma, diff_beta);
    free(mean);
    free(var);
}

void ref_bn_backward_global(const ref_norm *r, const double *x, const double *gamma,
        const double *mean, const double *var, const double *diff_dst, double *diff_src,
        double *diff_gamma, double *diff_beta) {
    bn_backward(r, x, gamma, mean, var, false, diff_dst, diff_src, diff_gamma, diff_beta);
}

/* Mean and 1/sqrt(var + eps) of group (n, g). */
static void gn_stats(const ref_norm *r, const double *x, int64_t n, int64_t g,
        double *mean, double *rstd) {
    const int64_t cg = r->c / r->g;
    const double m = (double)(cg * r->h * r->w);
    double s = 0.0, s2 = 0.0;
    for (int64_t c = g * cg; c < (g + 1) * cg; c++)
        for (int64_t i = 0; i < r->h * r->w; i++) s += x[AT(n, c, 0, 0) + i];
    *mean = s / m;
    for (int64_t c = g * cg; c < (g + 1) * cg; c++)
        for (int64_t i = 0; i < r->h * r->w; i++) {
            double d = x[AT(n, c, 0, 0) + i] - *mean;
            s2 += d * d;
        }
    *rstd = 1.0 / sqrt(s2 / m + r->eps);
}

void ref_gn_forward(const ref_norm *r, const double *x, const double *gamma,
        const double *beta, double *y) {
    const int64_t cg = r->c / r->g;
    for (int64_t n = 0; n < r->n; n++)
        for (int64_t g = 0; g < r->g; g++) {
            double mean, rstd;
            gn_stats(r, x, n, g, &mean, &rstd);
            for (int64_t c = g * cg; c < (g + 1) * cg; c++)
                for (int64_t i = 0; i < r->h * r->w; i++) {
                    int64_t k = AT(n, c, 0, 0) + i;
                    y[k] = gamma[c] * (x[k] - mean) * rstd + beta[c];
                }
        }
}

void ref_gn_backward(const ref_norm *r, const double *x, const double *gamma,
        const double *diff_dst, double *diff_src, double *diff_gamma, double *diff_beta) {
    const int64_t cg = r->c / r->g, hw = r->h * r->w;
    const double m = (double)(cg * hw);
    if (diff_gamma) memset(diff_gamma, 0, (size_t)r->c * sizeof(double));
    if (diff_beta) memset(diff_beta, 0, (size_t)r->c * sizeof(double));
    for (int64_t n = 0; n < r->n; n++)
        for (int64_t g = 0; g < r->g; g++) {
            double mean, rstd;
            gn_stats(r, x, n, g, &mean, &rstd);
            /* dL/dxhat = dy*gamma; sums over the group. */
            double sg = 0.0, sgx = 0.0;
            for (int64_t c = g * cg; c < (g + 1) * cg; c++)
                for (int64_t i = 0; i < hw; i++) {
                    int64_t k = AT(n, c, 0, 0) + i;
                    double xhat = (x[k] - mean) * rstd;
                    sg += diff_dst[k] * gamma[c];
                    sgx += diff_dst[k] * gamma[c] * xhat;
                    if (diff_gamma) diff_gamma[c] += diff_dst[k] * xhat;
                    if (diff_beta) diff_beta[c] += diff_dst[k];
                }
            if (!diff_src) continue;
            for (int64_t c = g * cg; c < (g + 1) * cg; c++)
                for (int64_t i = 0; i < hw; i++) {
                    int64_t k = AT(n, c, 0, 0) + i;
                    double xhat = (x[k] - mean) * rstd;
                    diff_src[k] = rstd * (diff_dst[k] * gamma[c] - sg / m - xhat * sgx / m);
                }
        }
}
