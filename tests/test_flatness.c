/* tests/test_flatness.c -- the flatness engine (eval/flatness.h) on problems
 * with known answers, no network involved:
 *  - filter-normalised directions (Li et al. 2018 §4): filter norms, zero
 *    biases and zero filters, the documented stream, determinism, thread
 *    count;
 *  - quadratics L(w) = 1/2 (w - w*)^T H (w - w*) in double, measured at
 *    w = w*: expected sharpness 1/2 r^2 sum_f ||w*_f||^2 tr(H_ff) / n_f
 *    (exactly per direction when every filter is one element and H is
 *    diagonal; in mean, with the analytic standard error, otherwise),
 *    worst-case sharpness 1/2 rho^2 lambda_max(H) (SAM's objective), per
 *    group with two groups;
 *  - softmax regression (W (K, D), b (K), fixed data, mean cross-entropy,
 *    accuracy): expected sharpness against a naive recomputation, worst-case
 *    sharpness between SAM's first-order value and the Hessian bound, line
 *    and plane evaluations against direct ones;
 *  - errors: an objective error is returned at once (no leak under ASan),
 *    bad arguments are configuration errors before any evaluation.
 *
 * Exact comparisons rely on the engine's documented point formulas (one
 * rounding to float of a double expression; -std=c11 contracts nothing into
 * FMA). d = number of parameters, M = directions. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "eval/flatness.h"

/* ---- helpers ---------------------------------------------------------------- */

static void add_tensor(dg_param_set *ps, const char *name, int ndims, int64_t s0, int64_t s1,
        int64_t s2, int64_t s3) {
    const int64_t shape[4] = {s0, s1, s2, s3};
    dg_params_add(ps, name, ndims, shape, 0, DG_INIT_CONST, 0.f);
}

/* Sum of squares in double of x[lo .. lo+n-1]. */
static double sumsq(const float *x, size_t lo, size_t n) {
    double s = 0.0;
    for (size_t k = lo; k < lo + n; k++) s += (double)x[k] * (double)x[k];
    return s;
}

/* Q (n, n) orthogonal, from Gram-Schmidt (twice) on a uniform random matrix. */
static void random_orthogonal(double *Q, size_t n, uint64_t seed) {
    float *a = dg_xmalloc(n * n * sizeof(float));
    fill_uniform(a, n * n, seed, -1.f, 1.f);
    for (size_t i = 0; i < n * n; i++) Q[i] = a[i];
    dg_free(a);
    for (size_t j = 0; j < n; j++) { /* column j */
        for (int pass = 0; pass < 2; pass++) {
            for (size_t i = 0; i < j; i++) {
                double dot = 0.0;
                for (size_t k = 0; k < n; k++) dot += Q[k * n + i] * Q[k * n + j];
                for (size_t k = 0; k < n; k++) Q[k * n + j] -= dot * Q[k * n + i];
            }
        }
        double nn = 0.0;
        for (size_t k = 0; k < n; k++) nn += Q[k * n + j] * Q[k * n + j];
        for (size_t k = 0; k < n; k++) Q[k * n + j] /= sqrt(nn);
    }
}

/* H (n, n) = Q diag(lambda) Q^T, Q random orthogonal from seed. */
static void spd_from_eigenvalues(double *H, const double *lambda, size_t n, uint64_t seed) {
    double *Q = dg_xmalloc(n * n * sizeof(double));
    random_orthogonal(Q, n, seed);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0.0;
            for (size_t k = 0; k < n; k++) s += Q[i * n + k] * lambda[k] * Q[j * n + k];
            H[i * n + j] = s;
        }
    dg_free(Q);
}

/* lambda_max of a symmetric positive definite H (n, n) by power iteration in double. */
static double lambda_max(const double *H, size_t n) {
    double v[64], hv[64], lam = 0.0;
    DG_ASSERT(n <= 64);
    for (size_t i = 0; i < n; i++) v[i] = 1.0 + 0.1 * (double)i;
    for (int it = 0; it < 5000; it++) {
        double nn = 0.0, vhv = 0.0, vv = 0.0;
        for (size_t i = 0; i < n; i++) {
            hv[i] = 0.0;
            for (size_t k = 0; k < n; k++) hv[i] += H[i * n + k] * v[k];
            vhv += v[i] * hv[i];
            vv += v[i] * v[i];
            nn += hv[i] * hv[i];
        }
        lam = vhv / vv;
        for (size_t i = 0; i < n; i++) v[i] = hv[i] / sqrt(nn);
    }
    return lam;
}

typedef struct progress_log {
    long calls, last_done, last_total;
    bool in_order; /* every done was the previous one + 1 */
} progress_log;

static void progress_cb(long done, long total, void *user) {
    progress_log *p = user;
    if (done != p->last_done + 1) p->in_order = false;
    p->calls++;
    p->last_done = done;
    p->last_total = total;
}

/* ---- quadratic objective ------------------------------------------------------
 * L_h(w) = c_h + 1/2 (w - w*)^T H_h (w - w*), grad H_h (w - w*), in double; with two groups
 * L = (L_0 + L_1) / 2. H_h full (d, d) or diagonal (d); the constants c_h (0 unless set)
 * make the base losses nonzero. No metric (NAN). */

typedef struct quad {
    size_t d;
    int n_groups;          /* 0: one quadratic; 2: two, the loss their mean */
    const double *H[2];    /* (d, d) full Hessians, or NULL where diag is used */
    const double *diag[2]; /* (d) diagonal Hessians */
    const double *wstar;   /* (d) the minimum */
    double offset[2];      /* c_h */
    double *x, *hx[2];     /* (d) scratch */
    int calls;
} quad;

static void quad_init(quad *qd, size_t d, int n_groups, const double *wstar) {
    memset(qd, 0, sizeof(*qd));
    qd->d = d;
    qd->n_groups = n_groups;
    qd->wstar = wstar;
    qd->x = dg_xmalloc(d * sizeof(double));
    for (int h = 0; h < 2; h++) qd->hx[h] = dg_xmalloc(d * sizeof(double));
}

static void quad_free(quad *qd) {
    dg_free(qd->x);
    for (int h = 0; h < 2; h++) dg_free(qd->hx[h]);
}

static dg_status quad_eval(void *self, const float *w, const float *q, int group, double *loss,
        double *metric, double *group_loss, float *grad) {
    quad *qd = self;
    (void)q;
    qd->calls++;
    const size_t d = qd->d;
    const int nh = qd->n_groups ? 2 : 1;
    double l[2] = {qd->offset[0], qd->offset[1]};
    for (size_t k = 0; k < d; k++) qd->x[k] = (double)w[k] - qd->wstar[k];
    for (int h = 0; h < nh; h++) {
        for (size_t i = 0; i < d; i++) {
            double s = 0.0;
            if (qd->H[h]) {
                for (size_t k = 0; k < d; k++) s += qd->H[h][i * d + k] * qd->x[k];
            } else {
                s = qd->diag[h][i] * qd->x[i];
            }
            qd->hx[h][i] = s;
            l[h] += 0.5 * qd->x[i] * s;
        }
    }
    *loss = nh == 2 ? 0.5 * (l[0] + l[1]) : l[0];
    *metric = NAN;
    if (group_loss)
        for (int h = 0; h < nh; h++) group_loss[h] = l[h];
    if (grad) {
        ck_assert_msg(group < nh, "gradient of group %d asked of %d groups", group, nh);
        for (size_t i = 0; i < d; i++) {
            const double g = group >= 0 ? qd->hx[group][i]
                                        : (nh == 2 ? 0.5 * (qd->hx[0][i] + qd->hx[1][i])
                                                   : qd->hx[0][i]);
            grad[i] = (float)g;
        }
    }
    return DG_STATUS_OK;
}

static dg_flat_objective quad_objective(quad *qd, const dg_param_set *layout) {
    ck_assert(layout->d == qd->d);
    return (dg_flat_objective){
            .eval = quad_eval, .self = qd, .n_groups = qd->n_groups, .layout = layout};
}

/* 1/2 x^T H x in double, x = w - w*, for a full H (d, d). */
static double quad_value_d(const double *H, const double *x, size_t d) {
    double s = 0.0;
    for (size_t i = 0; i < d; i++)
        for (size_t k = 0; k < d; k++) s += x[i] * H[i * d + k] * x[k];
    return 0.5 * s;
}

/* ---- softmax regression objective -------------------------------------------
 * W (K, D) "fc.weight", b (K) "fc.bias", N fixed samples; L = 1/N sum_n
 * [logsumexp(z_n) - z_n,y_n], z_n = W x_n + b; metric = accuracy (argmax, ties to the lowest
 * class); gradient by hand: dz = p - onehot(y), dW = 1/N sum dz x^T, db = 1/N sum dz. All in
 * double. The layout has one statistics tensor (2) that the loss ignores; the objective
 * records the statistics it was given. */
#define SM_K 3
#define SM_D 5
#define SM_N 64
#define SM_DIM (SM_K * SM_D + SM_K)

typedef struct softmax {
    double x[SM_N][SM_D];
    int y[SM_N];
    int calls;
    bool got_q;   /* the last call had statistics */
    float q[2];   /* and these */
} softmax;

static void softmax_init(softmax *sm, dg_param_set *ps) {
    memset(sm, 0, sizeof(*sm));
    float x[SM_N * SM_D];
    fill_uniform(x, SM_N * SM_D, 11, -1.5f, 1.5f);
    dg_rng r;
    dg_rng_init(&r, 12, 0, 0);
    for (int n = 0; n < SM_N; n++) {
        for (int j = 0; j < SM_D; j++) sm->x[n][j] = x[n * SM_D + j];
        sm->y[n] = (int)dg_rng_below(&r, SM_K);
    }
    dg_params_init(ps);
    add_tensor(ps, "fc.weight", 2, SM_K, SM_D, 0, 0);
    add_tensor(ps, "fc.bias", 1, SM_K, 0, 0, 0);
    const int64_t stat_shape[1] = {2};
    dg_params_add_stat(ps, "bn.running_mean", 1, stat_shape, 0.f);
    dg_params_alloc(ps);
    ck_assert(ps->d == SM_DIM && ps->n_stats == 2);
    fill_uniform(ps->data, ps->d, 13, -0.6f, 0.6f);
}

/* Loss, accuracy and (grad non-NULL) gradient at w (SM_DIM) in double. */
static double sm_loss_d(const softmax *sm, const double *w, double *acc, double *grad) {
    const double *W = w, *b = w + SM_K * SM_D;
    double loss = 0.0;
    int correct = 0;
    if (grad) memset(grad, 0, SM_DIM * sizeof(double));
    for (int n = 0; n < SM_N; n++) {
        double z[SM_K], zmax = -INFINITY;
        int arg = 0;
        for (int k = 0; k < SM_K; k++) {
            z[k] = b[k];
            for (int j = 0; j < SM_D; j++) z[k] += W[k * SM_D + j] * sm->x[n][j];
            if (z[k] > zmax) zmax = z[k], arg = k;
        }
        double se = 0.0;
        for (int k = 0; k < SM_K; k++) se += exp(z[k] - zmax);
        loss += zmax + log(se) - z[sm->y[n]];
        correct += arg == sm->y[n];
        if (grad) {
            for (int k = 0; k < SM_K; k++) {
                const double dz = (exp(z[k] - zmax) / se - (k == sm->y[n])) / SM_N;
                for (int j = 0; j < SM_D; j++) grad[k * SM_D + j] += dz * sm->x[n][j];
                grad[SM_K * SM_D + k] += dz;
            }
        }
    }
    if (acc) *acc = (double)correct / SM_N;
    return loss / SM_N;
}

/* The loss at float weights, as the objective sees them. Kept out of line on purpose: the
 * tests build points in float and evaluate them here, and GCC 12.2 at -O3 was seen to
 * forward the unrounded double values of such a float array into an inlined reload as double
 * (vectorised loop epilogue; wrong code, reproduced in isolation), evaluating another point
 * than the one stored. */
__attribute__((noinline)) static double sm_loss(const softmax *sm, const float *w,
        double *acc) {
    double wd[SM_DIM];
    for (int i = 0; i < SM_DIM; i++) wd[i] = w[i];
    return sm_loss_d(sm, wd, acc, NULL);
}

static double sm_fd(void *ctx, const double *w) { return sm_loss_d(ctx, w, NULL, NULL); }

static dg_status sm_eval(void *self, const float *w, const float *q, int group, double *loss,
        double *metric, double *group_loss, float *grad) {
    softmax *sm = self;
    (void)group;
    ck_assert_msg(group_loss == NULL, "group losses asked of an objective without groups");
    sm->calls++;
    sm->got_q = q != NULL;
    if (q) memcpy(sm->q, q, sizeof(sm->q));
    double wd[SM_DIM], g[SM_DIM];
    for (int i = 0; i < SM_DIM; i++) wd[i] = w[i];
    *loss = sm_loss_d(sm, wd, metric, grad ? g : NULL);
    if (grad)
        for (int i = 0; i < SM_DIM; i++) grad[i] = (float)g[i];
    return DG_STATUS_OK;
}

static dg_flat_objective sm_objective(softmax *sm, const dg_param_set *ps) {
    return (dg_flat_objective){.eval = sm_eval, .self = sm, .n_groups = 0, .layout = ps};
}

/* ---- an objective that fails --------------------------------------------------- */

typedef struct failing {
    const dg_flat_objective *inner;
    int calls, fail_at; /* the fail_at-th call returns DG_STATUS_ERR_IO */
} failing;

static dg_status failing_eval(void *self, const float *w, const float *q, int group,
        double *loss, double *metric, double *group_loss, float *grad) {
    failing *f = self;
    if (++f->calls == f->fail_at) {
        dg_log_error("test: objective fails at call %d", f->calls);
        return DG_STATUS_ERR_IO;
    }
    return f->inner->eval(f->inner->self, w, q, group, loss, metric, group_loss, grad);
}

/* ---- directions ---------------------------------------------------------------- */

START_TEST(direction_is_filter_normalised_and_skips_biases) {
    dg_param_set ps;
    dg_params_init(&ps);
    add_tensor(&ps, "conv.weight", 4, 4, 3, 3, 3); /* 4 filters of 27 */
    add_tensor(&ps, "conv.bias", 1, 4, 0, 0, 0);
    add_tensor(&ps, "fc.weight", 2, 10, 7, 0, 0); /* 10 filters of 7 */
    dg_params_alloc(&ps);
    const size_t d = ps.d;
    ck_assert_uint_eq(d, 108 + 4 + 70);
    float *w = ps.data;
    fill_uniform(w, d, 21, -1.f, 1.f);
    memset(w + 2 * 27, 0, 27 * sizeof(float)); /* conv filter 2 is zero */

    float *delta = dg_xmalloc(d * sizeof(float)), *again = dg_xmalloc(d * sizeof(float));
    double *z = dg_xmalloc(d * sizeof(double));
    dg_flat_direction(&ps, w, 5, 3, delta);
    /* The documented stream: a serial dg_rng_normal loop over the whole vector. */
    dg_rng r;
    dg_rng_init(&r, 5, DG_RNG_FLATNESS, 3);
    for (size_t k = 0; k < d; k++) z[k] = dg_rng_normal(&r);

    const struct { size_t offset, nf, m; } filt[2] = {{0, 4, 27}, {112, 10, 7}};
    for (int t = 0; t < 2; t++) {
        for (size_t f = 0; f < filt[t].nf; f++) {
            const size_t lo = filt[t].offset + f * filt[t].m, m = filt[t].m;
            const double wn = sqrt(sumsq(w, lo, m)), dn = sqrt(sumsq(delta, lo, m));
            if (wn == 0.0) {
                for (size_t k = lo; k < lo + m; k++)
                    ck_assert_msg(delta[k] == 0.f, "zero filter: delta[%zu] = %g", k,
                            (double)delta[k]);
                continue;
            }
            ck_assert_msg(fabs(dn - wn) <= 1e-5 * wn, "filter at %zu: ||delta_f|| %.9g, "
                    "||w_f|| %.9g", lo, dn, wn);
            double zn = 0.0;
            for (size_t k = lo; k < lo + m; k++) zn += z[k] * z[k];
            for (size_t k = lo; k < lo + m; k++) {
                const double exp = z[k] * wn / sqrt(zn);
                ck_assert_msg(fabs(delta[k] - exp) <= 1e-6 * wn, "delta[%zu] = %.9g, the "
                        "stream's normal rescaled %.9g", k, (double)delta[k], exp);
            }
        }
    }
    for (size_t k = 108; k < 112; k++)
        ck_assert_msg(delta[k] == 0.f, "bias delta[%zu] = %g", k, (double)delta[k]);

    dg_flat_direction(&ps, w, 5, 3, again);
    ck_assert_msg(memcmp(delta, again, d * sizeof(float)) == 0, "same (seed, index) differs");
    dg_flat_direction(&ps, w, 5, 4, again);
    ck_assert_msg(memcmp(delta, again, d * sizeof(float)) != 0, "index 4 equals index 3");
    dg_flat_direction(&ps, w, 6, 3, again);
    ck_assert_msg(memcmp(delta, again, d * sizeof(float)) != 0, "seed 6 equals seed 5");
    dg_free(delta), dg_free(again), dg_free(z);
    dg_params_free(&ps);
}
END_TEST

/* ---- quadratics at their minimum ------------------------------------------------ */

/* Layout of n one-element filters ((n, 1) tensor "w") and a bias "b" (nb). */
static void make_single_element_filters(dg_param_set *ps, int64_t n, int64_t nb) {
    dg_params_init(ps);
    add_tensor(ps, "w", 2, n, 1, 0, 0);
    add_tensor(ps, "b", 1, nb, 0, 0, 0);
    dg_params_alloc(ps);
}

START_TEST(expected_sharpness_of_a_diagonal_quadratic_is_half_r2_sum_h_w2) {
    /* Every filter is one element, so delta_i = +-|w*_i| and every direction gives
     * 1/2 r^2 sum_i h_i w*_i^2 (the bias gets no perturbation). w* = k/2 and radii powers
     * of two keep w* + r delta exact in float. */
    enum { N = 12, NB = 3, D = N + NB, M = 16 };
    dg_param_set ps;
    make_single_element_filters(&ps, N, NB);
    double wstar[D], h[D];
    float h32[D];
    fill_halves(ps.data, D, 31);
    fill_uniform(h32, D, 32, 0.5f, 2.f);
    for (int i = 0; i < D; i++) wstar[i] = ps.data[i], h[i] = h32[i];
    quad qd;
    quad_init(&qd, D, 0, wstar);
    qd.diag[0] = h;
    const dg_flat_objective o = quad_objective(&qd, &ps);

    const double radii[3] = {0.5, 0.25, 2.0};
    dg_flat_expected out[3];
    double base = -1.0, base_metric = 0.0;
    progress_log pl = {.in_order = true};
    ck_assert_int_eq(dg_flat_expected_sharpness(&o, ps.data, NULL, radii, 3, M, 9, &base,
                             &base_metric, NULL, out, progress_cb, &pl),
            DG_STATUS_OK);
    ck_assert_msg(base == 0.0 && isnan(base_metric), "L(w*) = %g, metric %g", base, base_metric);
    ck_assert_msg(pl.calls == 1 + M * 3 && pl.last_total == 1 + M * 3 && pl.in_order,
            "progress: %ld calls, last %ld of %ld", pl.calls, pl.last_done, pl.last_total);
    ck_assert_int_eq(qd.calls, 1 + M * 3);
    double shw = 0.0;
    for (int i = 0; i < N; i++) shw += h[i] * wstar[i] * wstar[i];
    for (int k = 0; k < 3; k++) {
        const double exp = 0.5 * radii[k] * radii[k] * shw;
        ck_assert_msg(exp > 0.0 && fabs(out[k].mean - exp) <= 1e-9 * exp,
                "r = %g: mean %.12g, 1/2 r^2 sum h w^2 = %.12g", radii[k], out[k].mean, exp);
        ck_assert_msg(out[k].se < 1e-12, "r = %g: se %g, every direction is the same",
                radii[k], out[k].se);
        ck_assert_msg(out[k].radius == radii[k] && out[k].directions == M, "r %g, M %d",
                out[k].radius, out[k].directions);
        ck_assert_msg(isnan(out[k].metric_mean) && isnan(out[k].group_mean[0]),
                "no metric and no groups: %g, %g", out[k].metric_mean, out[k].group_mean[0]);
    }
    quad_free(&qd);
    dg_params_free(&ps);
}
END_TEST

START_TEST(expected_sharpness_matches_trace_formula) {
    /* Filters of 4 and 3 elements and a bias, H = Q diag(lambda) Q^T not diagonal. With
     * delta_f = ||w_f|| u_f, u_f uniform on the unit sphere of R^{n_f}, independent:
     *   E[v] = 1/2 r^2 sum_f s_f tr(H_ff) / n_f,   s_f = ||w*_f||^2,
     *   Var[v] = (r^2/2)^2 [sum_f s_f^2 2 / (n_f (n_f + 2)) (tr(H_ff^2) - tr(H_ff)^2 / n_f)
     *            + 4 sum_{f<g} s_f s_g / (n_f n_g) ||H_fg||_F^2]
     * (E[(u^T A u)^2] = (tr(A)^2 + 2 tr(A^2)) / (n (n + 2)) on the sphere). */
    enum { D = 23, M = 4000, NF = 5 };
    dg_param_set ps;
    dg_params_init(&ps);
    add_tensor(&ps, "a.weight", 2, 3, 4, 0, 0);
    add_tensor(&ps, "b.weight", 2, 2, 3, 0, 0);
    add_tensor(&ps, "c.bias", 1, 5, 0, 0, 0);
    dg_params_alloc(&ps);
    ck_assert_uint_eq(ps.d, D);
    const size_t flo[NF] = {0, 4, 8, 12, 15}, fn[NF] = {4, 4, 4, 3, 3};

    double wstar[D], lam[D], *H = dg_xmalloc(D * D * sizeof(double));
    float lam32[D];
    fill_uniform(ps.data, D, 41, -1.f, 1.f);
    fill_uniform(lam32, D, 42, 0.2f, 3.f);
    for (int i = 0; i < D; i++) wstar[i] = ps.data[i], lam[i] = lam32[i];
    spd_from_eigenvalues(H, lam, D, 43);
    quad qd;
    quad_init(&qd, D, 0, wstar);
    qd.H[0] = H;
    const dg_flat_objective o = quad_objective(&qd, &ps);

    const double r = 0.3, radii[2] = {r, 2 * r};
    dg_flat_expected out[2];
    ck_assert_int_eq(dg_flat_expected_sharpness(&o, ps.data, NULL, radii, 2, M, 44, NULL, NULL,
                             NULL, out, NULL, NULL),
            DG_STATUS_OK);

    double mean = 0.0, var = 0.0;
    for (int f = 0; f < NF; f++) {
        const double s = sumsq(ps.data, flo[f], fn[f]), n = (double)fn[f];
        double tr = 0.0, tr2 = 0.0;
        for (size_t i = flo[f]; i < flo[f] + fn[f]; i++) {
            tr += H[i * D + i];
            for (size_t k = flo[f]; k < flo[f] + fn[f]; k++) tr2 += H[i * D + k] * H[k * D + i];
        }
        mean += s * tr / n;
        var += s * s * 2.0 / (n * (n + 2.0)) * (tr2 - tr * tr / n);
        for (int g = f + 1; g < NF; g++) {
            double fro = 0.0;
            for (size_t i = flo[f]; i < flo[f] + fn[f]; i++)
                for (size_t k = flo[g]; k < flo[g] + fn[g]; k++) fro += H[i * D + k] * H[i * D + k];
            var += 4.0 * s * sumsq(ps.data, flo[g], fn[g]) / (n * (double)fn[g]) * fro;
        }
    }
    mean *= 0.5 * r * r;
    const double se = 0.5 * r * r * sqrt(var) / sqrt((double)M);
    ck_assert_msg(fabs(out[0].mean - mean) <= 4.0 * out[0].se,
            "mean %.6g, trace formula %.6g, se %.3g", out[0].mean, mean, out[0].se);
    ck_assert_msg(fabs(out[0].se / se - 1.0) < 0.1, "se %.6g, analytic %.6g", out[0].se, se);
    /* At a minimum every direction's value scales as r^2: the radii share directions. */
    ck_assert_msg(fabs(out[1].mean / out[0].mean - 4.0) < 1e-5 &&
                    fabs(out[1].se / out[0].se - 4.0) < 1e-5,
            "2r / r: mean ratio %.9g, se ratio %.9g (paired directions give 4, 4)",
            out[1].mean / out[0].mean, out[1].se / out[0].se);
    quad_free(&qd);
    dg_free(H);
    dg_params_free(&ps);
}
END_TEST

START_TEST(worst_case_sharpness_at_a_minimum_is_half_rho2_lambda_max) {
    /* w = w* = 0: the gradient is exactly 0, the ascent starts from the random unit
     * direction of stream (seed, DG_RNG_FLATNESS, 0xFFFFFFFF) and converges to the top
     * eigenvector; every point w + delta = delta is exact in float. */
    enum { D = 8 };
    dg_param_set ps;
    dg_params_init(&ps);
    add_tensor(&ps, "w", 2, 2, 4, 0, 0);
    dg_params_alloc(&ps);
    const double lam[D] = {10, 3, 1, 0.5, 0.4, 0.3, 0.2, 0.1};
    double wstar[D] = {0}, H[D * D];
    spd_from_eigenvalues(H, lam, D, 51);
    quad qd;
    quad_init(&qd, D, 0, wstar);
    qd.H[0] = H;
    const dg_flat_objective o = quad_objective(&qd, &ps);

    const double rho = 0.05, top = 0.5 * rho * rho * lam[0];
    dg_flat_worst res;
    ck_assert_int_eq(dg_flat_worst_sharpness(&o, ps.data, NULL, rho, 30, -1, 52, &res),
            DG_STATUS_OK);
    ck_assert_msg(res.sharpness >= 0.99 * top && res.sharpness <= top * (1.0 + 1e-9),
            "sharpness %.12g, 1/2 rho^2 lambda_max %.12g", res.sharpness, top);
    ck_assert_msg(res.steps == 30 && res.rho == rho && res.group == -1, "steps %d", res.steps);
    ck_assert_msg(res.delta_norm <= rho && res.delta_norm >= 0.99 * rho, "||delta|| %.12g",
            res.delta_norm);
    ck_assert_msg(qd.calls == 30 + 2, "%d objective calls for 30 steps (steps + 2)", qd.calls);
    /* The 0-th iterate: rho u / ||u||, u the stream's normals. */
    double u[D], uu = 0.0;
    dg_rng r;
    dg_rng_init(&r, 52, DG_RNG_FLATNESS, 0xFFFFFFFFu);
    for (int i = 0; i < D; i++) u[i] = (float)dg_rng_normal(&r), uu += u[i] * u[i];
    for (int i = 0; i < D; i++) u[i] *= rho / sqrt(uu);
    const double first = quad_value_d(H, u, D);
    ck_assert_msg(fabs(res.first_order - first) <= 1e-5 * first && first < 0.9 * top,
            "first-order value %.9g, at the random start %.9g", res.first_order, first);

    /* Away from the minimum: delta_0 = rho g / ||g||, the SAM point. */
    float w0[D];
    double x[D], g[D], xp[D], gg = 0.0;
    fill_uniform(w0, D, 53, -1.f, 1.f);
    for (int i = 0; i < D; i++) x[i] = w0[i];
    for (int i = 0; i < D; i++) {
        g[i] = 0.0;
        for (int k = 0; k < D; k++) g[i] += H[i * D + k] * x[k];
        gg += g[i] * g[i];
    }
    for (int i = 0; i < D; i++) xp[i] = x[i] + rho * g[i] / sqrt(gg);
    const double sam = quad_value_d(H, xp, D) - quad_value_d(H, x, D);
    dg_flat_worst away;
    ck_assert_int_eq(dg_flat_worst_sharpness(&o, w0, NULL, rho, 30, -1, 52, &away), DG_STATUS_OK);
    ck_assert_msg(sam > 0.0 && fabs(away.first_order - sam) <= 1e-5 * sam,
            "first-order value %.9g, L(w + rho g/||g||) - L(w) = %.9g", away.first_order, sam);
    const double bound = rho * sqrt(gg) + top;
    ck_assert_msg(away.sharpness >= away.first_order && away.sharpness <= bound * (1.0 + 1e-6),
            "sharpness %.9g, first order %.9g, rho ||g|| + 1/2 rho^2 lambda_max = %.9g",
            away.sharpness, away.first_order, bound);
    /* No ascent steps: the first-order value, two calls. */
    qd.calls = 0;
    ck_assert_int_eq(dg_flat_worst_sharpness(&o, w0, NULL, rho, 0, -1, 52, &away), DG_STATUS_OK);
    ck_assert_msg(away.sharpness == away.first_order && away.steps == 0 && qd.calls == 2,
            "steps 0: sharpness %.9g, first %.9g, %d calls", away.sharpness, away.first_order,
            qd.calls);
    quad_free(&qd);
    dg_params_free(&ps);
}
END_TEST

START_TEST(group_expected_sharpness_follows_each_group_and_the_whole_is_their_mean) {
    enum { N = 10, NB = 2, D = N + NB, M = 8 };
    dg_param_set ps;
    make_single_element_filters(&ps, N, NB);
    double wstar[D], h[2][D];
    float h32[D];
    fill_halves(ps.data, D, 61);
    for (int i = 0; i < D; i++) wstar[i] = ps.data[i];
    for (int g = 0; g < 2; g++) {
        fill_uniform(h32, D, 62 + (uint64_t)g, 0.2f + 2.f * (float)g, 1.f + 3.f * (float)g);
        for (int i = 0; i < D; i++) h[g][i] = h32[i];
    }
    quad qd;
    quad_init(&qd, D, 2, wstar);
    qd.diag[0] = h[0], qd.diag[1] = h[1];
    qd.offset[0] = 1.5, qd.offset[1] = -0.75; /* L_g(w*) */
    const dg_flat_objective o = quad_objective(&qd, &ps);

    const double radii[2] = {0.5, 1.0};
    dg_flat_expected out[2];
    double base_group[2] = {-1.0, -1.0}, base = 0.0;
    ck_assert_int_eq(dg_flat_expected_sharpness(&o, ps.data, NULL, radii, 2, M, 63, &base, NULL,
                             base_group, out, NULL, NULL),
            DG_STATUS_OK);
    ck_assert_msg(base_group[0] == 1.5 && base_group[1] == -0.75 && base == 0.375,
            "L_g(w*) = %g, %g (1.5, -0.75), L(w*) = %g", base_group[0], base_group[1], base);
    for (int k = 0; k < 2; k++) {
        double e[2];
        for (int g = 0; g < 2; g++) {
            double s = 0.0;
            for (int i = 0; i < N; i++) s += h[g][i] * wstar[i] * wstar[i];
            e[g] = 0.5 * radii[k] * radii[k] * s;
            ck_assert_msg(fabs(out[k].group_mean[g] - e[g]) <= 1e-9 * e[g] &&
                            out[k].group_se[g] < 1e-12,
                    "r %g group %d: mean %.12g (se %g), formula %.12g", radii[k], g,
                    out[k].group_mean[g], out[k].group_se[g], e[g]);
        }
        ck_assert_msg(fabs(e[1] - e[0]) > 0.1 * e[0], "groups too alike: %g, %g", e[0], e[1]);
        const double whole = 0.5 * (e[0] + e[1]);
        ck_assert_msg(fabs(out[k].mean - whole) <= 1e-9 * whole, "r %g: mean %.12g, groups' "
                "mean %.12g", radii[k], out[k].mean, whole);
        ck_assert_msg(isnan(out[k].group_mean[2]) && isnan(out[k].group_se[2]),
                "group 2 of 2: %g", out[k].group_mean[2]);
    }
    quad_free(&qd);
    dg_params_free(&ps);
}
END_TEST

START_TEST(group_worst_case_sharpness_uses_the_groups_gradient) {
    /* Two quadratics with different top eigenvalues and eigenvectors, both minimal at 0:
     * group g's worst case is 1/2 rho^2 lambda_max(H_g); the whole loss's is that of
     * (H_0 + H_1) / 2. Ascending the wrong loss lands on the wrong eigenvector. */
    enum { D = 6 };
    dg_param_set ps;
    make_single_element_filters(&ps, D - 1, 1);
    const double lam0[D] = {10, 3, 1, 0.5, 0.3, 0.1}, lam1[D] = {4, 2, 1.5, 1, 0.5, 0.2};
    double wstar[D] = {0}, H0[D * D], H1[D * D], Hm[D * D];
    spd_from_eigenvalues(H0, lam0, D, 71);
    spd_from_eigenvalues(H1, lam1, D, 72);
    for (int i = 0; i < D * D; i++) Hm[i] = 0.5 * (H0[i] + H1[i]);
    quad qd;
    quad_init(&qd, D, 2, wstar);
    qd.H[0] = H0, qd.H[1] = H1;
    const dg_flat_objective o = quad_objective(&qd, &ps);

    const double rho = 0.1;
    const double exp[3] = {0.5 * rho * rho * lambda_max(Hm, D), 0.5 * rho * rho * lam0[0],
            0.5 * rho * rho * lam1[0]};
    for (int group = -1; group < 2; group++) {
        dg_flat_worst res;
        ck_assert_int_eq(dg_flat_worst_sharpness(&o, ps.data, NULL, rho, 30, group, 73, &res),
                DG_STATUS_OK);
        const double e = exp[group + 1];
        ck_assert_msg(res.group == group && res.sharpness >= 0.99 * e &&
                        res.sharpness <= e * (1.0 + 1e-9),
                "group %d: sharpness %.12g, 1/2 rho^2 lambda_max %.12g", group, res.sharpness, e);
    }
    quad_free(&qd);
    dg_params_free(&ps);
}
END_TEST

START_TEST(results_do_not_depend_on_thread_count) {
    /* d = 70000 in one (70, 1000) tensor: the parallel paths of the direction, the point
     * formation and the blocked norms all run. A diagonal quadratic keeps it cheap. */
    enum { R = 70, C = 1000, D = R * C };
    dg_param_set ps;
    dg_params_init(&ps);
    add_tensor(&ps, "big.weight", 2, R, C, 0, 0);
    dg_params_alloc(&ps);
    double *wstar = dg_xmalloc(D * sizeof(double)), *h = dg_xmalloc(D * sizeof(double));
    float *tmp = dg_xmalloc(D * sizeof(float));
    fill_uniform(ps.data, D, 81, -1.f, 1.f);
    fill_uniform(tmp, D, 82, 0.1f, 2.f);
    for (int i = 0; i < D; i++) wstar[i] = 0.0, h[i] = tmp[i];
    quad qd;
    quad_init(&qd, D, 0, wstar);
    qd.diag[0] = h;
    const dg_flat_objective o = quad_objective(&qd, &ps);

    const int saved = omp_get_max_threads();
    const int threads[2] = {1, 3};
    float *dir[2];
    dg_flat_expected ex[2];
    dg_flat_worst wc[2];
    const double r = 0.1;
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(threads[t]);
        dir[t] = dg_xmalloc(D * sizeof(float));
        dg_flat_direction(&ps, ps.data, 83, 2, dir[t]);
        ck_assert_int_eq(dg_flat_expected_sharpness(&o, ps.data, NULL, &r, 1, 3, 83, NULL, NULL,
                                 NULL, &ex[t], NULL, NULL),
                DG_STATUS_OK);
        ck_assert_int_eq(dg_flat_worst_sharpness(&o, ps.data, NULL, 0.5, 3, -1, 83, &wc[t]),
                DG_STATUS_OK);
    }
    omp_set_num_threads(saved);
    ck_assert_msg(memcmp(dir[0], dir[1], D * sizeof(float)) == 0, "direction differs");
    ck_assert_msg(ex[0].mean == ex[1].mean && ex[0].se == ex[1].se && ex[0].mean > 0.0,
            "expected: %.17g / %.17g", ex[0].mean, ex[1].mean);
    ck_assert_msg(wc[0].sharpness == wc[1].sharpness && wc[0].sharpness > 0.0 &&
                    wc[0].delta_norm == wc[1].delta_norm,
            "worst: %.17g / %.17g", wc[0].sharpness, wc[1].sharpness);
    dg_free(dir[0]), dg_free(dir[1]), dg_free(wstar), dg_free(h), dg_free(tmp);
    quad_free(&qd);
    dg_params_free(&ps);
}
END_TEST

/* ---- softmax regression --------------------------------------------------------- */

START_TEST(expected_sharpness_of_softmax_regression_matches_direct_evaluation) {
    dg_param_set ps;
    softmax sm;
    softmax_init(&sm, &ps);
    const dg_flat_objective o = sm_objective(&sm, &ps);
    enum { M = 8, NR = 2 };
    const double radii[NR] = {0.1, 0.35};
    dg_flat_expected out[NR];
    double base, base_metric;
    ck_assert_int_eq(dg_flat_expected_sharpness(&o, ps.data, NULL, radii, NR, M, 91, &base,
                             &base_metric, NULL, out, NULL, NULL),
            DG_STATUS_OK);
    double acc0;
    const double L0 = sm_loss(&sm, ps.data, &acc0);
    ck_assert_msg(base == L0 && base_metric == acc0, "base %.17g acc %g, direct %.17g acc %g",
            base, base_metric, L0, acc0);

    /* Naive: regenerate the directions, form w + r delta as documented, evaluate L. */
    float delta[SM_DIM], wp[SM_DIM];
    double v[NR][M], acc[NR][M];
    for (int i = 0; i < M; i++) {
        dg_flat_direction(&ps, ps.data, 91, (uint32_t)i, delta);
        for (int k = 0; k < NR; k++) {
            for (int j = 0; j < SM_DIM; j++)
                wp[j] = (float)((double)ps.data[j] + radii[k] * (double)delta[j]);
            v[k][i] = sm_loss(&sm, wp, &acc[k][i]) - L0;
        }
    }
    for (int k = 0; k < NR; k++) {
        double mean = 0.0, am = 0.0, ss = 0.0;
        for (int i = 0; i < M; i++) mean += v[k][i] / M, am += acc[k][i] / M;
        for (int i = 0; i < M; i++) ss += (v[k][i] - mean) * (v[k][i] - mean);
        const double se = sqrt(ss / (M - 1)) / sqrt((double)M);
        ck_assert_msg(fabs(out[k].mean - mean) <= 1e-9 && fabs(out[k].se - se) <= 1e-9,
                "r %g: engine %.12g +- %.6g, direct %.12g +- %.6g", radii[k], out[k].mean,
                out[k].se, mean, se);
        ck_assert_msg(fabs(out[k].metric_mean - am) <= 1e-12, "r %g: metric %.9g, direct %.9g",
                radii[k], out[k].metric_mean, am);
        ck_assert_msg(se > 0.0 && mean != 0.0, "degenerate: mean %g se %g", mean, se);
    }
    ck_assert_int_eq(sm.calls, 1 + M * NR);
    dg_params_free(&ps);
}
END_TEST

START_TEST(worst_case_sharpness_of_softmax_regression_is_bounded_by_the_hessian) {
    /* Taylor with the Lagrange remainder: L(w + delta) - L(w) <= rho ||g|| + 1/2 rho^2
     * lambda_max(hess), and the Hessian of mean CE is mean_n J_n^T (diag p - p p^T) J_n with
     * ||diag p - p p^T|| <= 1/2 and ||J_n delta||^2 <= ||delta||^2 (||x_n||^2 + 1) for the
     * logits W x + b, so lambda_max <= 1/2 mean_n (||x_n||^2 + 1). */
    dg_param_set ps;
    softmax sm;
    softmax_init(&sm, &ps);
    const dg_flat_objective o = sm_objective(&sm, &ps);
    double w[SM_DIM], g[SM_DIM], gfd[SM_DIM], gg = 0.0, xx = 0.0;
    for (int i = 0; i < SM_DIM; i++) w[i] = ps.data[i];
    const double L0 = sm_loss_d(&sm, w, NULL, g);
    fd_gradient(sm_fd, &sm, w, SM_DIM, gfd);
    for (int i = 0; i < SM_DIM; i++) {
        ck_assert_msg(fabs(g[i] - gfd[i]) <= 1e-6, "hand gradient [%d] %.9g, differences %.9g",
                i, g[i], gfd[i]);
        gg += g[i] * g[i];
    }
    for (int n = 0; n < SM_N; n++) {
        xx += 1.0;
        for (int j = 0; j < SM_D; j++) xx += sm.x[n][j] * sm.x[n][j];
    }
    const double rho = 0.2, hess = 0.5 * xx / SM_N;
    const double bound = rho * sqrt(gg) + 0.5 * rho * rho * hess;

    dg_flat_worst res;
    ck_assert_int_eq(dg_flat_worst_sharpness(&o, ps.data, NULL, rho, 20, -1, 92, &res),
            DG_STATUS_OK);
    ck_assert_msg(res.first_order <= res.sharpness && res.sharpness <= bound * (1.0 + 1e-9) &&
                    res.sharpness > 0.0,
            "first order %.9g <= sharpness %.9g <= rho ||g|| + 1/2 rho^2 hess = %.9g",
            res.first_order, res.sharpness, bound);
    ck_assert_msg(res.delta_norm <= rho && res.delta_norm > 0.0, "||delta|| %.12g",
            res.delta_norm);
    double wp[SM_DIM];
    for (int i = 0; i < SM_DIM; i++) wp[i] = w[i] + rho * g[i] / sqrt(gg);
    const double sam = sm_loss_d(&sm, wp, NULL, NULL) - L0;
    ck_assert_msg(fabs(res.first_order - sam) <= 1e-5 * fabs(sam), "first order %.9g, "
            "L(w + rho g/||g||) - L(w) = %.9g", res.first_order, sam);
    dg_params_free(&ps);
}
END_TEST

START_TEST(line_between_two_points_hits_both_ends) {
    dg_param_set ps;
    softmax sm;
    softmax_init(&sm, &ps);
    const dg_flat_objective o = sm_objective(&sm, &ps);
    float wa[SM_DIM], wb[SM_DIM], mid[SM_DIM];
    memcpy(wa, ps.data, sizeof(wa));
    fill_uniform(wb, SM_DIM, 101, -2.f, 2.f);
    for (int j = 0; j < SM_DIM; j++) mid[j] = (float)(0.5 * wa[j] + 0.5 * (double)wb[j]);
    const float qa[2] = {1.f, 2.f}, qb[2] = {3.f, -2.f};
    const double t[4] = {0.0, 1.0, 0.5, 0.25};
    double loss[4], metric[4];
    ck_assert_int_eq(dg_flat_line(&o, wa, qa, wb, qb, t, 4, loss, metric), DG_STATUS_OK);
    double acc_a, acc_b;
    const double la = sm_loss(&sm, wa, &acc_a), lb = sm_loss(&sm, wb, &acc_b);
    ck_assert_msg(loss[0] == la && loss[1] == lb && metric[0] == acc_a && metric[1] == acc_b,
            "ends: %.17g, %.17g; direct %.17g, %.17g", loss[0], loss[1], la, lb);
    ck_assert_msg(fabs(la - lb) > 0.1, "the ends are too alike: %g, %g", la, lb);
    const double lm = sm_loss(&sm, mid, NULL);
    ck_assert_msg(fabs(loss[2] - lm) <= 1e-12 * lm, "midpoint %.17g, L((wa + wb)/2) %.17g",
            loss[2], lm);
    /* The statistics of the last point (t = 0.25) are interpolated too. */
    ck_assert_msg(sm.got_q && sm.q[0] == 1.5f && sm.q[1] == 1.f, "q at t = 0.25: (%g, %g)",
            (double)sm.q[0], (double)sm.q[1]);
    ck_assert_int_eq(dg_flat_line(&o, wa, NULL, wb, NULL, t, 1, loss, NULL), DG_STATUS_OK);
    ck_assert_msg(!sm.got_q && loss[0] == la, "without statistics: q passed %d", sm.got_q);
    dg_params_free(&ps);
}
END_TEST

/* Beyond the ends of a line a BN running variance is extrapolated in log
 * space, never below zero (linearly, 1.5 * 1 - 0.5 * 4 = -0.5 at t = 1.5,
 * and the network's eval-mode BN would be NaN); running means, and every
 * entry between the ends, stay linear. */
START_TEST(extrapolated_running_variance_stays_positive) {
    dg_param_set ps;
    dg_params_init(&ps);
    const int64_t c = 2;
    dg_params_add_stat(&ps, "bn.running_mean", 1, &c, 0.f);
    dg_params_add_stat(&ps, "bn.running_var", 1, &c, 1.f);
    dg_params_alloc(&ps);
    ck_assert_uint_eq(ps.n_stats, 4);
    const size_t mean_at = ps.stat_tensors[0].offset, var_at = ps.stat_tensors[1].offset;
    float qa[4], qb[4], out[4];
    qa[mean_at] = 1.f, qa[mean_at + 1] = -3.f, qa[var_at] = 4.f, qa[var_at + 1] = 2.f;
    qb[mean_at] = 3.f, qb[mean_at + 1] = 5.f, qb[var_at] = 1.f, qb[var_at + 1] = 0.f;
    dg_flat_interp_stats(&ps, qa, qb, 1.5, out);
    ck_assert_msg(out[mean_at] == 4.f && out[mean_at + 1] == 9.f, "means (%g, %g)",
            (double)out[mean_at], (double)out[mean_at + 1]);
    ck_assert_msg(fabs(out[var_at] - 0.5) < 1e-6 && out[var_at + 1] == 0.f,
            "variances at t = 1.5: (%g, %g), want (4^-0.5 * 1^1.5, 0)", (double)out[var_at],
            (double)out[var_at + 1]);
    dg_flat_interp_stats(&ps, qa, qb, -0.5, out);
    ck_assert_msg(fabs(out[var_at] - 8.0) < 1e-5 && out[mean_at] == 0.f, "t = -0.5: var %g, "
            "mean %g", (double)out[var_at], (double)out[mean_at]);
    dg_flat_interp_stats(&ps, qa, qb, 0.25, out);
    ck_assert_msg(out[var_at] == 3.25f && out[var_at + 1] == 1.5f && out[mean_at] == 1.5f,
            "t = 0.25 is linear: var (%g, %g)", (double)out[var_at], (double)out[var_at + 1]);
    dg_params_free(&ps);
}
END_TEST

START_TEST(plane_at_origin_is_the_base_loss) {
    dg_param_set ps;
    softmax sm;
    softmax_init(&sm, &ps);
    const dg_flat_objective o = sm_objective(&sm, &ps);
    const float *w = ps.data;
    float d1[SM_DIM], d2[SM_DIM], wp[SM_DIM];
    dg_flat_direction(&ps, w, 111, 0, d1);
    dg_flat_direction(&ps, w, 111, 1, d2);
    enum { NA = 3, NB = 4 };
    const double a[NA] = {-0.5, 0.0, 0.5}, b[NB] = {-0.25, 0.0, 0.25, 1.0};
    double loss[NA * NB], metric[NA * NB];
    progress_log pl = {.in_order = true};
    ck_assert_int_eq(dg_flat_plane(&o, w, NULL, d1, d2, a, NA, b, NB, loss, metric,
                             progress_cb, &pl),
            DG_STATUS_OK);
    ck_assert_msg(pl.calls == NA * NB && pl.last_total == NA * NB && pl.in_order,
            "progress: %ld calls of %ld", pl.calls, pl.last_total);
    double acc0;
    const double L0 = sm_loss(&sm, w, &acc0);
    ck_assert_msg(loss[1 * NA + 1] == L0 && metric[1 * NA + 1] == acc0,
            "(0, 0): %.17g, L(w) %.17g", loss[1 * NA + 1], L0);
    for (int j = 0; j < NB; j++)
        for (int i = 0; i < NA; i++) {
            for (int k = 0; k < SM_DIM; k++)
                wp[k] = (float)((double)w[k] + a[i] * d1[k] + b[j] * d2[k]);
            const double l = sm_loss(&sm, wp, NULL);
            ck_assert_msg(loss[j * NA + i] == l, "(%g, %g): %.17g, L(w + a d1 + b d2) %.17g",
                    a[i], b[j], loss[j * NA + i], l);
        }
    ck_assert_msg(loss[0] != L0 && loss[NA * NB - 1] != L0, "the grid does not move");

    /* 1-D at a = r is L(w + r d1), the point expected sharpness evaluates for its direction
     * 0: one direction at radius r gives exactly the plane's value minus L(w). */
    const double r = 0.4;
    double l1;
    ck_assert_int_eq(dg_flat_plane(&o, w, NULL, d1, NULL, &r, 1, NULL, 1, &l1, NULL, NULL,
                             NULL),
            DG_STATUS_OK);
    for (int k = 0; k < SM_DIM; k++) wp[k] = (float)((double)w[k] + r * (double)d1[k]);
    const double lr = sm_loss(&sm, wp, NULL);
    dg_flat_expected ex;
    ck_assert_int_eq(dg_flat_expected_sharpness(&o, w, NULL, &r, 1, 1, 111, NULL, NULL, NULL,
                             &ex, NULL, NULL),
            DG_STATUS_OK);
    ck_assert_msg(l1 == lr && ex.mean == l1 - L0 && ex.se == 0.0 && l1 != L0,
            "1-D: %.17g, L(w + r d1) %.17g, expected sharpness M = 1 %.17g (+- %g), L(w) %.17g",
            l1, lr, ex.mean, ex.se, L0);
    dg_params_free(&ps);
}
END_TEST

/* ---- errors ----------------------------------------------------------------------- */

START_TEST(an_objective_error_is_returned_at_once) {
    dg_param_set ps;
    softmax sm;
    softmax_init(&sm, &ps);
    const dg_flat_objective inner = sm_objective(&sm, &ps);
    failing f = {.inner = &inner, .fail_at = 3};
    const dg_flat_objective o = {.eval = failing_eval, .self = &f, .layout = &ps};
    const double r = 0.1, t[4] = {0, 0.3, 0.6, 1};
    dg_flat_expected ex;
    dg_flat_worst wc = {.sharpness = -7.0};
    double loss[4];
    capture cap;
    capture_begin(&cap);
    const dg_status s1 = dg_flat_expected_sharpness(&o, ps.data, NULL, &r, 1, 4, 1, NULL, NULL,
            NULL, &ex, NULL, NULL);
    const int c1 = f.calls;
    f.calls = 0;
    const dg_status s2 = dg_flat_worst_sharpness(&o, ps.data, NULL, 0.1, 5, -1, 1, &wc);
    const int c2 = f.calls;
    f.calls = 0;
    const dg_status s3 = dg_flat_line(&o, ps.data, NULL, ps.data, NULL, t, 4, loss, NULL);
    const int c3 = f.calls;
    f.calls = 0;
    const dg_status s4 = dg_flat_plane(&o, ps.data, NULL, ps.data, NULL, t, 4, NULL, 1, loss,
            NULL, NULL, NULL);
    const int c4 = f.calls;
    char *log = capture_end(&cap);
    ck_assert_msg(s1 == DG_STATUS_ERR_IO && s2 == DG_STATUS_ERR_IO && s3 == DG_STATUS_ERR_IO &&
                    s4 == DG_STATUS_ERR_IO,
            "statuses %d %d %d %d", s1, s2, s3, s4);
    ck_assert_msg(c1 == 3 && c2 == 3 && c3 == 3 && c4 == 3, "calls after the failure: %d %d "
            "%d %d (each stops at the 3rd)", c1, c2, c3, c4);
    ck_assert_msg(wc.sharpness == -7.0, "the result was written: %g", wc.sharpness);
    ck_assert_msg(strstr(log, "objective fails at call 3"), "log: %s", log);
    dg_free(log);
    dg_params_free(&ps);
}
END_TEST

START_TEST(bad_arguments_are_config_errors_before_any_evaluation) {
    dg_param_set ps;
    softmax sm;
    softmax_init(&sm, &ps);
    const dg_flat_objective o = sm_objective(&sm, &ps);
    const double r_bad = -0.1, r = 0.1, t_bad = NAN;
    dg_flat_expected ex;
    dg_flat_worst wc;
    double loss;
    capture cap;
    capture_begin(&cap);
    const dg_status s[6] = {
            dg_flat_expected_sharpness(&o, ps.data, NULL, &r, 1, 0, 1, NULL, NULL, NULL, &ex,
                    NULL, NULL),
            dg_flat_expected_sharpness(&o, ps.data, NULL, &r_bad, 1, 4, 1, NULL, NULL, NULL,
                    &ex, NULL, NULL),
            dg_flat_worst_sharpness(&o, ps.data, NULL, 0.1, 5, 0, 1, &wc), /* no groups */
            dg_flat_worst_sharpness(&o, ps.data, NULL, -1.0, 5, -1, 1, &wc),
            dg_flat_line(&o, ps.data, NULL, ps.data, NULL, &t_bad, 1, &loss, NULL),
            dg_flat_plane(&o, ps.data, NULL, ps.data, NULL, &r, 1, &r, 2, &loss, NULL, NULL,
                    NULL), /* 1-D with two rows */
    };
    char *log = capture_end(&cap);
    for (int i = 0; i < 6; i++)
        ck_assert_msg(s[i] == DG_STATUS_ERR_CONFIG, "case %d: status %d", i, s[i]);
    ck_assert_msg(sm.calls == 0, "%d evaluations before the argument checks", sm.calls);
    ck_assert_msg(strstr(log, "radius -0.1") && strstr(log, "group 0"), "log: %s", log);
    dg_free(log);
    dg_params_free(&ps);
}
END_TEST

Suite *flatness_suite(void) {
    Suite *s = suite_create("flatness");
    TCase *tc = tcase_create("directions");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, direction_is_filter_normalised_and_skips_biases);
    tcase_add_test(tc, results_do_not_depend_on_thread_count);
    suite_add_tcase(s, tc);

    tc = tcase_create("quadratic");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, expected_sharpness_of_a_diagonal_quadratic_is_half_r2_sum_h_w2);
    tcase_add_test(tc, expected_sharpness_matches_trace_formula);
    tcase_add_test(tc, worst_case_sharpness_at_a_minimum_is_half_rho2_lambda_max);
    tcase_add_test(tc, group_expected_sharpness_follows_each_group_and_the_whole_is_their_mean);
    tcase_add_test(tc, group_worst_case_sharpness_uses_the_groups_gradient);
    suite_add_tcase(s, tc);

    tc = tcase_create("softmax");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, expected_sharpness_of_softmax_regression_matches_direct_evaluation);
    tcase_add_test(tc, worst_case_sharpness_of_softmax_regression_is_bounded_by_the_hessian);
    tcase_add_test(tc, line_between_two_points_hits_both_ends);
    tcase_add_test(tc, extrapolated_running_variance_stays_positive);
    tcase_add_test(tc, plane_at_origin_is_the_base_loss);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, an_objective_error_is_returned_at_once);
    tcase_add_test(tc, bad_arguments_are_config_errors_before_any_evaluation);
    suite_add_tcase(s, tc);
    return s;
}
