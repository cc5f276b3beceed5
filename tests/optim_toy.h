/* tests/optim_toy.h -- the toy closure the optimizer suites share: weighted
 * quadratics L(w) = 1/2 sum_i c_i (w_i - a_i)^2 (a = 0, c = 1 when NULL),
 * optionally one minimum per source domain (DG_DOMAIN_ALL then averages
 * the domains' losses), or a constant gradient -1 ("ramp"). It records the
 * domain, flags and first weights of every call and every BN refresh.
 * d = number of parameters. */
#ifndef DG_TESTS_OPTIM_TOY_H
#define DG_TESTS_OPTIM_TOY_H

#include "optimizers/dg_optim.h"

#define TOY_CALLS 64
#define TOY_SEEN 4
#define TOY_REFRESH 16
#define TOY_DOMAINS 4

typedef struct toy {
    dg_param_set *ps;
    const float *a;   /* (d) minimum, NULL = 0 */
    const float *c;   /* (d) curvature, NULL = 1 */
    bool ramp;        /* g = -1 everywhere, loss 0 */
    int n_dom;        /* domains with their own minima da[k]; 0 = use a */
    const float *da[TOY_DOMAINS]; /* (d) each: domain k's minimum */
    int n_calls;      /* every call counts; the first TOY_CALLS are recorded */
    int domain[TOY_CALLS];
    unsigned flags[TOY_CALLS];
    float seen[TOY_CALLS][TOY_SEEN]; /* first weights at each call */
    int n_refresh;
    const float *refresh_params[TOY_REFRESH];
    float refresh_w0[TOY_REFRESH]; /* params[0] at the call */
    long refresh_batches[TOY_REFRESH];
    int refresh_mode[TOY_REFRESH];
} toy;

/* Zeroes t and sets cl up to call it (eval and bn_refresh, one domain). */
void toy_init(toy *t, dg_closure *cl, dg_param_set *ps, const float *a, const float *c);
/* A parameter store of n 1-D tensors "t0", "t1", ... of sizes[i], flags[i],
 * all zero. */
void toy_make_ps(dg_param_set *ps, int n, const size_t *sizes, const unsigned *flags);
/* dg_method_create with seed 7; fails the test on an error. */
dg_method *toy_make_method(const char *name, const char *base, const dg_method_cfg *cfg,
        const dg_param_set *ps);

/* Writes m's state (dg_method_state_save) to path; fails the test on error. */
void toy_state_save(const dg_method *m, const char *path);
/* Reads path into m (dg_method_state_load) and returns its status. */
dg_status toy_state_load(dg_method *m, const char *path);

/* dg_method_create(method, base, cfg) over ps must fail with
 * DG_STATUS_ERR_CONFIG, leave its output NULL and log `expect`. */
void toy_expect_config_error(const char *method, const char *base, const dg_method_cfg *cfg,
        const dg_param_set *ps, const char *expect);

#endif
