/* eval/flatness.c -- flatness measurements around a weight vector (see
 * flatness.h).
 *
 * Random filter-normalised directions: Li, Xu, Taylor, Studer, Goldstein,
 * "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018, §4
 * (tomgoldstein/loss-landscape net_plotter.py, normalize_directions_for_
 * weights with norm = 'filter', ignore = 'biasbn'):
 *   d_f <- d_f * ||w_f|| / ||d_f||  per filter f (slice along dim 0),
 *   d_b = 0                         for 1-D tensors (biases, BN affine).
 * Expected sharpness at radius r over M directions:
 *   S_r = 1/M sum_i [L(w + r d_i) - L(w)],  se = sd_i / sqrt(M) (ddof 1);
 * for a quadratic at its minimum S_r = 1/2 r^2 sum_f ||w_f||^2 tr(H_ff) / n_f.
 * Worst-case sharpness, SAM's objective (Foret et al., ICLR 2021, eq. 1):
 *   max_{||e|| <= rho} L(w + e) - L(w),
 * from SAM's first-order point e_0 = rho g / ||g|| (eq. 2) by projected
 * normalised gradient ascent e <- P(e + rho grad L(w + e) / ||.||); for a
 * quadratic at its minimum the maximum is 1/2 rho^2 lambda_max(H).
 *
 * Every evaluated point is formed element-wise in double and rounded to
 * float once (combine); every norm goes through dg_vec_norm2 (fixed blocks
 * summed in order); direction element k is computed from draws 2k, 2k+1 of
 * its stream (dg_rng_peek semantics), so nothing depends on the number of
 * OpenMP threads. Scratch is allocated once per call. */
#include "flatness.h"

#include <math.h>
#include <string.h>

#include "optimizers/dg_optim.h"

#define FLAT_PAR_MIN 65536      /* element-wise loops below this run serially */
#define FLAT_WORST_START 0xFFFFFFFFu /* stream index of the ascent's random start */

/* out[k] = (float)(a0 x0[k] + a1 x1[k] + a2 x2[k]) in double, one rounding; x1, x2 may be
 * NULL (their terms left out); out may alias x0. (n) each. */
static void combine(float *out, double a0, const float *x0, double a1, const float *x1,
        double a2, const float *x2, size_t n) {
    if (x2) {
#pragma omp parallel for simd schedule(static) if (n >= FLAT_PAR_MIN)
        for (size_t k = 0; k < n; k++)
            out[k] = (float)(a0 * (double)x0[k] + a1 * (double)x1[k] + a2 * (double)x2[k]);
    } else if (x1) {
#pragma omp parallel for simd schedule(static) if (n >= FLAT_PAR_MIN)
        for (size_t k = 0; k < n; k++) out[k] = (float)(a0 * (double)x0[k] + a1 * (double)x1[k]);
    } else {
#pragma omp parallel for simd schedule(static) if (n >= FLAT_PAR_MIN)
        for (size_t k = 0; k < n; k++) out[k] = (float)(a0 * (double)x0[k]);
    }
}

/* The k-th standard normal of stream r0 as a serial dg_rng_normal loop would draw it: that
 * loop's k-th call starts at draw 2k. */
static double normal_at(const dg_rng *r0, uint64_t k) {
    dg_rng r = {.state = r0->state + 2 * k * DG_RNG_GAMMA};
    return dg_rng_normal(&r);
}

/* x[k] = normal k of r0 for k < n; (n). */
static void gauss_fill(float *x, const dg_rng *r0, size_t n) {
#pragma omp parallel for schedule(static) if (n >= FLAT_PAR_MIN)
    for (size_t k = 0; k < n; k++) x[k] = (float)normal_at(r0, k);
}

/* One filter of m elements at offset lo: delta_f = (float)(z_f ||w_f|| / ||z_f||), z_f the
 * normals lo .. lo+m-1 of r0 in double, one rounding; 0 when ||w_f|| = 0 (or, never in
 * practice, ||z_f|| = 0). The normals are drawn twice (norm pass, write pass) rather than
 * stored as float and reloaded: nothing is rounded before the scaling, and no float value is
 * stored and reloaded as double within one function (GCC 12.2 at -O3 was seen to drop such
 * a rounding in a vectorised loop epilogue). */
static void direction_filter(const dg_rng *r0, const float *w, float *delta, size_t lo,
        size_t m) {
    double ww = 0.0, zz = 0.0;
    for (size_t k = 0; k < m; k++) ww += (double)w[lo + k] * (double)w[lo + k];
    if (ww == 0.0) return; /* delta is zero already */
    for (size_t k = 0; k < m; k++) {
        const double z = normal_at(r0, lo + k);
        zz += z * z;
    }
    if (!(zz > 0.0)) return;
    const double c = sqrt(ww) / sqrt(zz);
    for (size_t k = 0; k < m; k++) delta[lo + k] = (float)(c * normal_at(r0, lo + k));
}

void dg_flat_direction(const dg_param_set *layout, const float *w, uint64_t seed, uint32_t index,
        float *delta) {
    DG_ASSERT(layout && w && delta && w != delta);
    if (layout->d) memset(delta, 0, layout->d * sizeof(*delta));
    dg_rng r0;
    dg_rng_init(&r0, seed, DG_RNG_FLATNESS, index);
    for (size_t t = 0; t < layout->n_tensors; t++) {
        const dg_param_tensor *tn = &layout->tensors[t];
        if (tn->ndims < 2) continue; /* ignore = biasbn */
        const size_t nf = (size_t)tn->shape[0], m = tn->n / nf; /* filters, their size */
        /* One filter per iteration, each summed serially: thread-count independent. */
#pragma omp parallel for schedule(static) if (tn->n >= FLAT_PAR_MIN && nf > 1)
        for (size_t f = 0; f < nf; f++) direction_filter(&r0, w, delta, tn->offset + f * m, m);
    }
}

/* ---- shared checks -------------------------------------------------------- */

static void assert_objective(const dg_flat_objective *o) {
    DG_ASSERT(o && o->eval && o->layout && o->layout->d > 0);
    DG_ASSERT(o->n_groups == 0 || (o->n_groups >= 2 && o->n_groups <= DG_FLAT_MAX_GROUPS));
}

static bool finite_nonneg(double x) { return isfinite(x) && x >= 0.0; }

/* x <- P(x): if ||x|| > rho, x <- (float)(c x) with c = rho / ||x|| (1 - 2^-23). Each element
 * then rounds by at most 2^-24 relative, so ||x|| <= rho (1 - 2^-23)(1 + 2^-24) < rho holds
 * for the float vector. Returns ||x|| after. (n). */
static double into_ball(float *x, double rho, size_t n) {
    const double norm = dg_vec_norm2(x, n);
    if (!(norm > rho)) return norm;
    combine(x, rho / norm * (1.0 - 0x1p-23), x, 0.0, NULL, 0.0, NULL, n);
    return dg_vec_norm2(x, n);
}

/* mean and standard error sd / sqrt(n) (ddof 1; 0 for n = 1) of x[0], x[stride], ...,
 * x[(n-1) stride], two passes in double. */
static void mean_se(const double *x, size_t stride, int n, double *mean, double *se) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += x[(size_t)i * stride];
    const double mu = s / n;
    double ss = 0.0;
    for (int i = 0; i < n; i++) {
        const double e = x[(size_t)i * stride] - mu;
        ss += e * e;
    }
    *mean = mu;
    *se = n > 1 ? sqrt(ss / (n - 1)) / sqrt((double)n) : 0.0;
}

/* ---- expected sharpness --------------------------------------------------- */

dg_status dg_flat_expected_sharpness(const dg_flat_objective *o, const float *w, const float *q,
        const double *radii, int n_radii, int M, uint64_t seed, double *base_loss,
        double *base_metric, double *base_group, dg_flat_expected *out,
        void (*progress)(long done, long total, void *user), void *user) {
    assert_objective(o);
    DG_ASSERT(w && out && (radii || n_radii <= 0));
    if (n_radii < 1 || M < 1) {
        dg_log_error("flatness: %d radii and %d directions: both must be >= 1", n_radii, M);
        return DG_STATUS_ERR_CONFIG;
    }
    for (int k = 0; k < n_radii; k++) {
        if (!finite_nonneg(radii[k])) {
            dg_log_error("flatness: radius %g: must be finite and >= 0", radii[k]);
            return DG_STATUS_ERR_CONFIG;
        }
    }
    const size_t d = o->layout->d;
    const int G = o->n_groups;
    const long total = 1 + (long)M * n_radii;
    long evals = 0; /* objective evaluations so far, for progress */

    double L0, m0, gl0[DG_FLAT_MAX_GROUPS];
    dg_status s = o->eval(o->self, w, q, -1, &L0, &m0, G ? gl0 : NULL, NULL);
    if (s != DG_STATUS_OK) return s;
    if (!isfinite(L0)) {
        dg_log_error("flatness: the loss at w is %g: expected sharpness needs a finite one", L0);
        return DG_STATUS_ERR_NUMERIC;
    }
    if (progress) progress(++evals, total, user);
    if (base_loss) *base_loss = L0;
    if (base_metric) *base_metric = m0;
    if (base_group) memcpy(base_group, gl0, (size_t)G * sizeof(*base_group));

    /* v: (n_radii, M, 2 + G): L - L0, metric, L_g - L_g0 of radius k, direction i. */
    const size_t cols = 2 + (size_t)G;
    float *delta = dg_xmalloc(d * sizeof(float)); /* (d) */
    float *wp = dg_xmalloc(d * sizeof(float));    /* (d) w + r delta */
    double *v = dg_xmalloc((size_t)n_radii * (size_t)M * cols * sizeof(double));
    for (int i = 0; i < M; i++) {
        dg_flat_direction(o->layout, w, seed, (uint32_t)i, delta);
        for (int k = 0; k < n_radii; k++) {
            combine(wp, 1.0, w, radii[k], delta, 0.0, NULL, d);
            double L, m, gl[DG_FLAT_MAX_GROUPS];
            s = o->eval(o->self, wp, q, -1, &L, &m, G ? gl : NULL, NULL);
            if (s != DG_STATUS_OK) goto done;
            double *row = v + ((size_t)k * (size_t)M + (size_t)i) * cols;
            row[0] = L - L0;
            row[1] = m;
            for (int g = 0; g < G; g++) row[2 + g] = gl[g] - gl0[g];
            if (progress) progress(++evals, total, user);
        }
    }
    for (int k = 0; k < n_radii; k++) {
        const double *vk = v + (size_t)k * (size_t)M * cols;
        dg_flat_expected *e = &out[k];
        double unused;
        e->radius = radii[k];
        e->directions = M;
        mean_se(vk, cols, M, &e->mean, &e->se);
        mean_se(vk + 1, cols, M, &e->metric_mean, &unused);
        for (int g = 0; g < DG_FLAT_MAX_GROUPS; g++) {
            if (g < G) {
                mean_se(vk + 2 + g, cols, M, &e->group_mean[g], &e->group_se[g]);
            } else {
                e->group_mean[g] = NAN;
                e->group_se[g] = NAN;
            }
        }
    }
done:
    dg_free(delta);
    dg_free(wp);
    dg_free(v);
    return s;
}

/* ---- worst-case sharpness ------------------------------------------------- */

/* The loss of `group` (the whole loss for group < 0) at x into *value, its gradient into
 * grad when non-NULL. */
static dg_status group_value(const dg_flat_objective *o, const float *x, const float *q,
        int group, double *value, float *grad) {
    double L, m, gl[DG_FLAT_MAX_GROUPS];
    const dg_status s = o->eval(o->self, x, q, group, &L, &m, o->n_groups ? gl : NULL, grad);
    if (s == DG_STATUS_OK) *value = group < 0 ? L : gl[group];
    return s;
}

/* ||g|| in double, or an error when it is not finite. */
static dg_status grad_norm(const float *g, size_t d, int step, double *norm) {
    *norm = dg_vec_norm2(g, d);
    if (isfinite(*norm)) return DG_STATUS_OK;
    dg_log_error("flatness: gradient norm %g at ascent step %d: worst-case sharpness needs a "
                 "finite gradient", *norm, step);
    return DG_STATUS_ERR_NUMERIC;
}

dg_status dg_flat_worst_sharpness(const dg_flat_objective *o, const float *w, const float *q,
        double rho, int steps, int group, uint64_t seed, dg_flat_worst *out) {
    assert_objective(o);
    DG_ASSERT(w && out);
    if (!finite_nonneg(rho) || steps < 0) {
        dg_log_error("flatness: rho %g and %d steps: rho must be finite and >= 0, steps >= 0",
                rho, steps);
        return DG_STATUS_ERR_CONFIG;
    }
    if (group < -1 || group >= o->n_groups) {
        dg_log_error("flatness: group %d: the objective has %d groups (-1: the whole loss)", group,
                o->n_groups);
        return DG_STATUS_ERR_CONFIG;
    }
    const size_t d = o->layout->d;
    float *g = dg_xmalloc(d * sizeof(float));     /* (d) gradient */
    float *delta = dg_xmalloc(d * sizeof(float)); /* (d) the iterate */
    float *wp = dg_xmalloc(d * sizeof(float));    /* (d) w + delta */

    /* Call 1: L0 and g0 at w; delta_0 = rho g0 / ||g0|| (a random unit direction if g0 = 0). */
    double L0, gn;
    dg_status s = group_value(o, w, q, group, &L0, g);
    if (s != DG_STATUS_OK) goto done;
    if (!isfinite(L0)) {
        dg_log_error("flatness: the loss at w is %g: worst-case sharpness needs a finite one", L0);
        s = DG_STATUS_ERR_NUMERIC;
        goto done;
    }
    if ((s = grad_norm(g, d, 0, &gn)) != DG_STATUS_OK) goto done;
    if (gn > 0.0) {
        combine(delta, rho / gn, g, 0.0, NULL, 0.0, NULL, d);
    } else {
        dg_rng r0;
        dg_rng_init(&r0, seed, DG_RNG_FLATNESS, FLAT_WORST_START);
        gauss_fill(delta, &r0, d);
        combine(delta, rho / dg_vec_norm2(delta, d), delta, 0.0, NULL, 0.0, NULL, d);
    }
    double dn = into_ball(delta, rho, d);

    /* Calls 2 .. steps+1: the value of iterate s-1 and the gradient for step s. Call
     * steps+2: the value of the last iterate. */
    double best = -INFINITY, best_norm = 0.0, first = NAN;
    int taken = 0;
    for (int step = 1; step <= steps + 1; step++) {
        const bool last = step == steps + 1;
        double L;
        combine(wp, 1.0, w, 1.0, delta, 0.0, NULL, d);
        s = group_value(o, wp, q, group, &L, last ? NULL : g);
        if (s != DG_STATUS_OK) goto done;
        const double value = L - L0; /* of iterate step-1 */
        if (step == 1) first = value;
        /* A NaN value (a broken point) sticks: the result says so rather than hiding it. */
        if (!isnan(best) && (isnan(value) || value > best)) best = value, best_norm = dn;
        if (last) break;
        if ((s = grad_norm(g, d, step, &gn)) != DG_STATUS_OK) goto done;
        if (gn == 0.0) break; /* stationary: every further iterate would repeat this one */
        combine(delta, 1.0, delta, rho / gn, g, 0.0, NULL, d);
        dn = into_ball(delta, rho, d);
        taken = step;
    }
    out->rho = rho;
    out->group = group;
    out->steps = taken;
    out->sharpness = best;
    out->first_order = first;
    out->delta_norm = best_norm;
done:
    dg_free(g);
    dg_free(delta);
    dg_free(wp);
    return s;
}

/* ---- line and plane ------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

void dg_flat_interp_stats(const dg_param_set *layout, const float *qa, const float *qb,
        double t, float *out) {
    combine(out, 1.0 - t, qa, t, qb, 0.0, NULL, layout->n_stats);
    if (t >= 0.0 && t <= 1.0) return;
    for (size_t i = 0; i < layout->n_stat_tensors; i++) {
        const dg_param_tensor *v = &layout->stat_tensors[i];
        if (!ends_with(v->name, ".running_var")) continue;
        for (size_t k = v->offset; k < v->offset + v->n; k++) {
            const double a = qa[k], b = qb[k];
            out[k] = a > 0.0 && b > 0.0 ? (float)exp((1.0 - t) * log(a) + t * log(b)) : 0.f;
        }
    }
}

dg_status dg_flat_line(const dg_flat_objective *o, const float *wa, const float *qa,
        const float *wb, const float *qb, const double *t, int n, double *loss, double *metric) {
    assert_objective(o);
    DG_ASSERT(wa && wb && loss && (t || n <= 0));
    DG_ASSERT((qa == NULL) == (qb == NULL));
    if (n < 1) {
        dg_log_error("flatness: %d interpolation points: must be >= 1", n);
        return DG_STATUS_ERR_CONFIG;
    }
    for (int i = 0; i < n; i++) {
        if (!isfinite(t[i])) {
            dg_log_error("flatness: interpolation coefficient %g: must be finite", t[i]);
            return DG_STATUS_ERR_CONFIG;
        }
    }
    const size_t d = o->layout->d, ns = o->layout->n_stats;
    float *wt = dg_xmalloc(d * sizeof(float));                      /* (d) */
    float *qt = qa && ns ? dg_xmalloc(ns * sizeof(float)) : NULL; /* (n_stats) */
    dg_status s = DG_STATUS_OK;
    for (int i = 0; i < n; i++) {
        /* (1 - t) x + t y: at t = 0 and 1 exactly x and y (0 * finite = 0). */
        combine(wt, 1.0 - t[i], wa, t[i], wb, 0.0, NULL, d);
        if (qt) dg_flat_interp_stats(o->layout, qa, qb, t[i], qt);
        double m, gl[DG_FLAT_MAX_GROUPS];
        s = o->eval(o->self, wt, qt ? qt : qa, -1, &loss[i], &m, o->n_groups ? gl : NULL,
                NULL);
        if (s != DG_STATUS_OK) break;
        if (metric) metric[i] = m;
    }
    dg_free(wt);
    dg_free(qt);
    return s;
}

dg_status dg_flat_plane(const dg_flat_objective *o, const float *w, const float *q,
        const float *d1, const float *d2, const double *a, int na, const double *b, int nb,
        double *loss, double *metric, void (*progress)(long, long, void *), void *user) {
    assert_objective(o);
    DG_ASSERT(w && d1 && loss && (a || na <= 0) && (b || !d2 || nb <= 0));
    if (na < 1 || nb < 1 || (!d2 && nb != 1)) {
        dg_log_error("flatness: a %d x %d grid%s: both sizes must be >= 1%s", na, nb,
                d2 ? "" : " without a second direction", d2 ? "" : " and the second 1");
        return DG_STATUS_ERR_CONFIG;
    }
    for (int i = 0; i < na + (d2 ? nb : 0); i++) {
        const double x = i < na ? a[i] : b[i - na];
        if (!isfinite(x)) {
            dg_log_error("flatness: grid coordinate %g: must be finite", x);
            return DG_STATUS_ERR_CONFIG;
        }
    }
    const size_t d = o->layout->d;
    const long total = (long)na * nb;
    float *wp = dg_xmalloc(d * sizeof(float)); /* (d) w + a d1 + b d2 */
    dg_status s = DG_STATUS_OK;
    for (int j = 0; j < nb && s == DG_STATUS_OK; j++) {
        for (int i = 0; i < na; i++) {
            combine(wp, 1.0, w, a[i], d1, d2 ? b[j] : 0.0, d2, d);
            const size_t at = (size_t)j * (size_t)na + (size_t)i;
            double m, gl[DG_FLAT_MAX_GROUPS];
            s = o->eval(o->self, wp, q, -1, &loss[at], &m, o->n_groups ? gl : NULL, NULL);
            if (s != DG_STATUS_OK) break;
            if (metric) metric[at] = m;
            if (progress) progress((long)at + 1, total, user);
        }
    }
    dg_free(wp);
    return s;
}
