/* tests/ref/loss_ref.c -- see loss_ref.h. Written for clarity, not speed. */
#include "loss_ref.h"

#include <math.h>

/* log(sum_c exp(x[c*p] * a)) for classes p apart, shifted by the max. */
static double lse(const double *x, int64_t c, int64_t p, double a) {
    double m = -INFINITY, s = 0.0;
    for (int64_t k = 0; k < c; k++) m = fmax(m, x[k * p] * a);
    for (int64_t k = 0; k < c; k++) s += exp(x[k * p] * a - m);
    return m + log(s);
}

double ref_ce(int64_t n, int64_t c, int64_t p, const double *logits, const int32_t *label,
        const double *weights, double scale, double *grad) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < p; j++) {
            int32_t y = label[i * p + j];
            if (c < 255 && y == 255) continue; /* 255 is a class from C = 255 on */
            double w = weights ? weights[y] : 1.0;
            const double *z = logits + i * c * p + j;
            num += w * (lse(z, c, p, 1.0) - z[y * p]);
            den += w;
        }
    if (grad)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < p; j++) {
                int32_t y = label[i * p + j];
                const double *z = logits + i * c * p + j;
                double l = lse(z, c, p, 1.0);
                for (int64_t k = 0; k < c; k++) {
                    double g = 0.0;
                    if ((c >= 255 || y != 255) && den > 0.0) {
                        double w = weights ? weights[y] : 1.0;
                        g = scale * w * (exp(z[k * p] - l) - (k == y ? 1.0 : 0.0)) / den;
                    }
                    grad[i * c * p + k * p + j] = g;
                }
            }
    return den > 0.0 ? scale * num / den : 0.0;
}

double ref_kl(int64_t n, int64_t c, int64_t p, const double *teacher, const double *student,
        const int32_t *label, double tau, double lambda, double *grad) {
    int64_t n_valid = 0;
    for (int64_t i = 0; i < n * p; i++) n_valid += !label || c >= 255 || label[i] != 255;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < p; j++) {
            int on = !label || c >= 255 || label[i * p + j] != 255;
            const double *t = teacher + i * c * p + j, *z = student + i * c * p + j;
            double lt = lse(t, c, p, 1.0 / tau), lz = lse(z, c, p, 1.0 / tau);
            for (int64_t k = 0; k < c; k++) {
                double lp = t[k * p] / tau - lt, lq = z[k * p] / tau - lz;
                double pk = exp(lp), qk = exp(lq);
                if (on) sum += pk * (lp - lq);
                if (grad)
                    grad[i * c * p + k * p + j] =
                            on ? lambda * tau * (qk - pk) / (double)n_valid : 0.0;
            }
        }
    return n_valid ? lambda * tau * tau * sum / (double)n_valid : 0.0;
}
