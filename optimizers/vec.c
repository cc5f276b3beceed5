/* optimizers/vec.c -- flat-vector helpers of the optimizer module
 * (docs/algorithms.md §0): dot product and L2 norm accumulated in double, the
 * shared perturbation helper axpy, copy.
 *
 * Reductions split the vector into at most DG_VEC_MAX_BLOCKS blocks whose
 * boundaries depend only on n; each block is summed in double and the
 * partial sums are added in block order, so the result is independent of
 * the number of OpenMP threads. Element-wise loops are independent per
 * element and therefore thread-count independent too. */
#include <math.h>
#include <string.h>

#include "dg_optim.h"

#define DG_VEC_BLOCK 8192
#define DG_VEC_MAX_BLOCKS 512
#define DG_VEC_PAR_MIN 65536 /* element-wise loops below this run serially */

double dg_vec_dot(const float *a, const float *b, size_t n) {
    double part[DG_VEC_MAX_BLOCKS];
    if (n == 0) return 0.0;
    size_t nb = (n + DG_VEC_BLOCK - 1) / DG_VEC_BLOCK;
    if (nb > DG_VEC_MAX_BLOCKS) nb = DG_VEC_MAX_BLOCKS;
    const size_t per = (n + nb - 1) / nb;
#pragma omp parallel for schedule(static) if (nb > 1)
    for (size_t k = 0; k < nb; k++) {
        const size_t lo = k * per;
        const size_t hi = DG_MIN(n, lo + per);
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (size_t i = lo; i < hi; i++) s += (double)a[i] * (double)b[i];
        part[k] = s;
    }
    double s = 0.0;
    for (size_t k = 0; k < nb; k++) s += part[k];
    return s;
}

double dg_vec_norm2(const float *x, size_t n) { return sqrt(dg_vec_dot(x, x, n)); }

void dg_vec_axpy(float *y, float a, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= DG_VEC_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = y[i] + a * x[i];
}

void dg_vec_copy(float *dst, const float *src, size_t n) {
    if (n) memcpy(dst, src, n * sizeof(*dst));
}
