/* tests/ref/loss_ref.h -- naive double-precision losses on plain (N, C, P)
 * arrays, P = H*W: softmax cross-entropy with ignore label 255 and class
 * weights (PyTorch semantics) and the SAF/MESA KL term (docs/algorithms.md
 * §11-12). */
#ifndef DG_REF_LOSS_H
#define DG_REF_LOSS_H

#include <stdint.h>

/* Returns scale * sum_i w[y_i] nll_i / sum_i w[y_i] over pixels whose label
 * is not 255 (0 when none); grad (N, C, P), when not NULL, receives its
 * derivative with respect to logits (N, C, P). weights (C) may be NULL. */
double ref_ce(int64_t n, int64_t c, int64_t p, const double *logits, const int32_t *label,
        const double *weights, double scale, double *grad);

/* Returns lambda * tau^2 * sum_u KL(softmax(t_u/tau) || softmax(z_u/tau))
 * / n_valid over units whose label is not 255 (all when label is NULL);
 * grad (N, C, P), when not NULL, receives its derivative with respect to
 * the student logits z (0 at unselected units). */
double ref_kl(int64_t n, int64_t c, int64_t p, const double *teacher, const double *student,
        const int32_t *label, double tau, double lambda, double *grad);

#endif
