/* eval/flatness.h -- flatness of a minimum around a weight vector, measured
 * through an abstract objective (the engine of `dgseg flatness`).
 *
 * The objective is the mean loss over FIXED data (the same batches, no
 * augmentation, no dropout, BN in eval mode) as a function of the weights,
 * so every measurement below is a deterministic function of its arguments.
 * Tests drive the engine with toy objectives whose answers are known
 * (tests/test_flatness.c); the command drives it with a network.
 *
 * Measurements:
 *  - expected sharpness (random-direction sharpness): for a radius r,
 *      E_i[L(w + r delta_i) - L(w)],
 *    delta_i a random filter-normalised direction (Li, Xu, Taylor, Studer,
 *    Goldstein, "Visualizing the Loss Landscape of Neural Nets", NeurIPS
 *    2018, §4), estimated over M directions with its standard error. Near a
 *    minimum it is 1/2 r^2 E[delta^T H delta] = 1/2 r^2 sum_f ||w_f||^2
 *    tr(H_ff) / n_f (filters f of n_f elements): a curvature average that
 *    filter normalisation makes invariant to the per-filter rescaling a BN
 *    network does not notice.
 *  - worst-case sharpness, the quantity SAM minimises (Foret, Kleiner,
 *    Mobahi, Neyshabur, "Sharpness-Aware Minimization for Efficiently
 *    Improving Generalization", ICLR 2021, eq. 1):
 *      max_{||delta||_2 <= rho} L(w + delta) - L(w),
 *    estimated from below by projected normalised gradient ascent started at
 *    SAM's first-order solution rho g / ||g||. Near a minimum it is
 *    1/2 rho^2 lambda_max(H).
 *  - the loss and metric along a line between two weight vectors and on a
 *    1-D or 2-D grid around w (the plots of Li et al. §5-6).
 *
 * How points are formed (the tests rely on it): every evaluated point is
 * computed element-wise in double from the float inputs and rounded to
 * float once:
 *   w + r delta            (float)((double)w[k] + r * (double)delta[k])
 *   w + a d1 + b d2        (float)((double)w[k] + a * d1[k] + b * d2[k])
 *   (1 - t) wa + t wb      (float)((1 - t) * wa[k] + t * wb[k])
 * so t = 0 and t = 1 give wa and wb exactly and radii are never rounded to
 * float. Element-wise loops are OpenMP-parallel; norms go through
 * dg_vec_norm2 (fixed blocks summed in order); the random directions are
 * computed per element from the stream's draw index. Every result is
 * therefore independent of the OpenMP thread count (the objective's own
 * arithmetic aside).
 *
 * Cost: every measurement is a number of objective evaluations (each a pass
 * over the fixed data); the engine's own work is O(d) per evaluation. Each
 * call allocates its scratch vectors once (at most three of d floats plus
 * n_stats floats for a line) and nothing per evaluation.
 *
 * Errors: invalid arguments (M < 1, a negative or non-finite radius, ...)
 * are logged and returned as DG_STATUS_ERR_CONFIG; a non-finite loss at w
 * or a non-finite gradient norm as DG_STATUS_ERR_NUMERIC; an error of the
 * objective is returned at once, all scratch released. Outputs are
 * complete only on DG_STATUS_OK (on an error, out is not written; base
 * values, and a line's or plane's points before the failing one, may be).
 * Null pointers where a value is required are programming errors
 * (asserted). The objective is called from the calling thread, one call at
 * a time.
 *
 * Shape letters: d trainable parameters (layout->d), n_stats statistics
 * entries (layout->n_stats), G groups (n_groups), M directions. */
#ifndef DG_EVAL_FLATNESS_H
#define DG_EVAL_FLATNESS_H

#include "nets/core/params.h"

#define DG_FLAT_MAX_GROUPS 8

/* What the measurements evaluate: the mean loss over FIXED data at weights w. */
typedef struct dg_flat_objective {
    /* Mean loss at weights w (d) with BN statistics q (n_stats; NULL: the objective's own).
     * *metric gets accuracy or mIoU in [0, 1] (NAN if the objective has none); group_loss, when
     * non-NULL, gets the n_groups per-group (per-source-domain) mean losses; grad (d), when
     * non-NULL, gets the gradient of the loss (group < 0) or of group `group`'s loss at w.
     * Returns DG_STATUS_OK or an error (already logged), which the engine returns at once.
     * The engine passes group_loss whenever n_groups > 0, grad only where it needs it, and
     * never modifies w or q through this call (both are the engine's scratch or the caller's
     * vectors; the objective must not write them). */
    dg_status (*eval)(void *self, const float *w, const float *q, int group, double *loss,
            double *metric, double *group_loss, float *grad);
    void *self;
    int n_groups;               /* 0: no groups; else 2 .. DG_FLAT_MAX_GROUPS */
    const dg_param_set *layout; /* d = layout->d; its tensors define the filters */
} dg_flat_objective;

/* A random filter-normalised direction delta (d) for weights w (d) (Li et al. 2018 §4):
 *  1. z[k] = the k-th standard normal of stream (seed, DG_RNG_FLATNESS, index) in double,
 *     i.e. element k uses draws 2k and 2k+1 as dg_rng_normal does: exactly the values a
 *     serial loop of dg_rng_normal over the whole vector gives, but computed per element
 *     (dg_rng_peek semantics), so in parallel and independent of the thread count;
 *  2. every tensor with ndims >= 2 is cut into filters, its slices along dim 0 (n / shape[0]
 *     contiguous elements), and each filter is scaled to the norm of w's filter:
 *       delta_f = (float)(z_f * ||w_f|| / ||z_f||)   (all in double, one rounding)
 *     so ||delta_f|| = ||w_f|| to float rounding (a filter with ||w_f|| = 0 gets 0);
 *  3. tensors with ndims <= 1 (biases, BN and GN affine) get 0: Li et al.'s ignore = biasbn.
 * Elements covered by no tensor get 0. delta must not alias w. Cost: two normal draws per
 * element of a filter with ||w_f|| > 0 (a norm pass and a write pass), O(d) in all,
 * parallel over the filters of each tensor. */
void dg_flat_direction(const dg_param_set *layout, const float *w, uint64_t seed, uint32_t index,
        float *delta);

/* Expected sharpness at one radius. */
typedef struct dg_flat_expected {
    double radius;      /* r: the perturbation is r * delta_i, delta_i filter-normalised */
    int directions;     /* M */
    double mean, se;    /* mean over i of L(w + r delta_i) - L(w), its standard error
                           sd / sqrt(M) (sd with ddof 1; se = 0 when M = 1) */
    double metric_mean; /* mean metric at the perturbed points (NAN if none) */
    double group_mean[DG_FLAT_MAX_GROUPS], group_se[DG_FLAT_MAX_GROUPS]; /* the same for each
                           group's loss, L_g(w + r delta_i) - L_g(w); NAN beyond n_groups */
} dg_flat_expected;

/* Expected sharpness at w (d) with statistics q (n_stats, or NULL: the objective's) for
 * each of radii[0 .. n_radii-1] (each >= 0), into out[0 .. n_radii-1], over M >= 1
 * directions. Direction i is dg_flat_direction(o->layout, w, seed, i); each direction is
 * drawn once and evaluated at every radius, so the estimates at different radii use the
 * same directions (their differences are paired). base_loss, base_metric and base_group
 * (G values) may be NULL; they get L(w), its metric and L_g(w). Differences are
 * accumulated in double; mean and sd are computed in two passes over the stored values.
 * progress may be NULL: it is called after every evaluation with (done, total, user),
 * total = 1 + M * n_radii.
 * Cost: 1 + M * n_radii loss-only evaluations, M direction draws; scratch 2 d floats and
 * (2 + G) * M * n_radii doubles. */
dg_status dg_flat_expected_sharpness(const dg_flat_objective *o, const float *w, const float *q,
        const double *radii, int n_radii, int M, uint64_t seed, double *base_loss,
        double *base_metric, double *base_group, dg_flat_expected *out,
        void (*progress)(long done, long total, void *user), void *user);

/* Worst-case sharpness. */
typedef struct dg_flat_worst {
    double rho;         /* ||delta||_2 <= rho, plain Euclidean norm over all d parameters */
    int group;          /* -1: the whole loss; g: group g's loss */
    int steps;          /* ascent steps taken after the first (fewer than asked only when a
                           gradient vanished: the iterate is then stationary) */
    double sharpness;   /* max over the iterates of L(w + delta) - L(w) (of the group's loss
                           for group >= 0) */
    double first_order; /* the value at SAM's first-order point delta = rho g / ||g|| (0-th
                           iterate) */
    double delta_norm;  /* ||delta|| of the best iterate */
} dg_flat_worst;

/* Worst-case sharpness at w (d) with statistics q (n_stats or NULL) within the ball
 * ||delta|| <= rho (rho >= 0), of the whole loss (group = -1) or of group `group`'s loss
 * (0 <= group < n_groups), by projected normalised gradient ascent:
 *   g0 = grad L(w); delta_0 = rho g0 / ||g0||   (SAM's first-order point; if ||g0|| = 0,
 *        e.g. exactly at a minimum: rho u / ||u||, u[k] = (float) normal k of stream
 *        (seed, DG_RNG_FLATNESS, 0xFFFFFFFF), drawn as dg_flat_direction step 1 draws);
 *   for s = 1 .. steps:
 *        g = grad L(w + delta_{s-1});
 *        delta_s = P(delta_{s-1} + rho g / ||g||),  P(x) = x if ||x|| <= rho,
 *                  else rho x / ||x|| aimed 2^-23 inside the ball,
 *   sharpness = max_s L(w + delta_s) - L(w), the 0-th iterate included.
 * delta_0 is pulled into the ball the same way when rounding to float left it outside, so
 * every iterate satisfies ||delta|| <= rho as stored (the evaluated point is
 * (float)(w + delta), exact when w = 0). Steps stop early when a gradient norm is exactly 0
 * (a stationary iterate would only repeat). The result is a lower bound of the true maximum
 * (ascent finds a local one) and at least first_order, the value SAM's one-step
 * approximation of the maximum perceives.
 * Cost: steps + 2 evaluations (1 + steps with a gradient: each also returns the loss at its
 * point, the value of the previous iterate; one final loss-only call for the last iterate);
 * scratch 3 d floats. */
dg_status dg_flat_worst_sharpness(const dg_flat_objective *o, const float *w, const float *q,
        double rho, int steps, int group, uint64_t seed, dg_flat_worst *out);

/* The BN running statistics of an interpolation point: (1 - t) qa + t qb for every
 * entry, except that beyond the ends (t < 0 or t > 1) a running variance (a statistics
 * tensor named "*.running_var") is extrapolated in log space, qa^(1 - t) qb^t, where the
 * linear rule would make it negative (at t = 1.5, 1.5 qb - 0.5 qa < 0 once qa > 3 qb)
 * and the evaluation NaN; a zero variance at either end extrapolates to 0. Between the
 * ends every entry is linear, as the line is. out: (layout->n_stats). */
void dg_flat_interp_stats(const dg_param_set *layout, const float *qa, const float *qb,
        double t, float *out);

/* L and metric at (1 - t) wa + t wb (d each) with statistics dg_flat_interp_stats
 * (n_stats each; both NULL: the objective's), for each of t[0 .. n-1] (any finite t: t
 * outside [0, 1] extrapolates), into loss[0 .. n-1] and metric[0 .. n-1] (metric may
 * be NULL).
 * Interpolating BN running statistics linearly is an approximation: the network is
 * evaluated in eval mode with the interpolated statistics, not with the statistics the
 * interpolated weights would produce (Garipov et al., "Loss Surfaces, Mode Connectivity,
 * and Fast Ensembling of DNNs", NeurIPS 2018, recompute them at each point where that
 * matters). Cost: n evaluations; scratch d + n_stats floats. */
dg_status dg_flat_line(const dg_flat_objective *o, const float *wa, const float *qa,
        const float *wb, const float *qb, const double *t, int n, double *loss, double *metric);

/* L and metric at w + a[i] d1 + b[j] d2 (w, d1, d2: (d)) with statistics q (n_stats or NULL)
 * for i < na, j < nb, into loss[j * na + i] and metric[j * na + i] (metric may be NULL);
 * d2 NULL: 1-D, nb must be 1 and b is ignored (may be NULL). d1 and d2 are used as given:
 * pass dg_flat_direction outputs for Li et al.'s filter-normalised plots. progress may be
 * NULL: called after every evaluation with (done, na * nb, user). Cost: na * nb
 * evaluations; scratch d floats. */
dg_status dg_flat_plane(const dg_flat_objective *o, const float *w, const float *q,
        const float *d1, const float *d2, const double *a, int na, const double *b, int nb,
        double *loss, double *metric, void (*progress)(long, long, void *), void *user);

#endif
