/* optimizers/dgsam.c -- DGSAM, sequential per-domain sharpness-aware
 * minimisation (Song et al., arXiv 2503.23430), docs/algorithms.md §10 (the
 * project's interpretation stated there).
 *
 * One step: domain order pi from the method's RNG stream (seed, DG_RNG_DGSAM,
 * 0) with dg_rng_shuffle_i64, or 0 .. S-1 when dgsam_order = fixed; w0 <- w,
 * G <- 0; for each domain in that order a sub-batch gradient at the point
 * perturbed by the domains before it (only the first call carries
 * DG_CLOSURE_BN_UPDATE), added to G (except the first domain's when
 * refreshing) and used for the next perturbation w <- w + rho g/(||g|| +
 * 1e-12) through the shared helper dg_vec_axpy; when refreshing, the first
 * domain's gradient again at the fully perturbed point joins G; then exact
 * restore w <- w0 by copy, g <- G/S and one base update. With S = 1 and
 * refreshing this is SAM's arithmetic, bit for bit.
 *
 * Owns: buf[0] = w0 (d), buf[1] = G (d), both scratch. Checkpoint names
 * (§13): optim.dgsam.rng (u64, the stream's state). The number of domains is
 * the closure's n_domains, at most DG_DGSAM_MAX_DOMAINS (the order lives on
 * the stack, so a step allocates nothing). */
#include <string.h>

#include "method_impl.h"

#define DG_DGSAM_MAX_DOMAINS 64
#define DGSAM_PAR_MIN 65536 /* element-wise loops below this run serially */

/* G <- G + g; G, g: (d). */
static void dgsam_accumulate(float *G, const float *g, size_t d) {
#pragma omp parallel for simd schedule(static) if (d >= DGSAM_PAR_MIN)
    for (size_t i = 0; i < d; i++) G[i] = G[i] + g[i];
}

/* g <- G / S; g, G: (d). */
static void dgsam_mean(float *g, const float *G, float s, size_t d) {
#pragma omp parallel for simd schedule(static) if (d >= DGSAM_PAR_MIN)
    for (size_t i = 0; i < d; i++) g[i] = G[i] / s;
}

/* w <- w + rho g/(||g|| + 1e-12), the factor in double cast once (as SAM). */
static void dgsam_perturb(float *w, const float *g, double rho, size_t d) {
    const float c = (float)(rho / (dg_vec_norm2(g, d) + 1e-12));
    dg_vec_axpy(w, c, g, d);
}

static void dgsam_step(dg_method *m, dg_param_set *ps, const dg_closure *cl, float lr) {
    const int S = cl->n_domains;
    DG_ASSERT(S >= 1 && S <= DG_DGSAM_MAX_DOMAINS);
    const bool refresh = m->cfg.dgsam_refresh_first;
    const double rho = m->cfg.dgsam_rho;
    const size_t d = ps->d;
    float *w = ps->data, *g = ps->grad, *w0 = m->buf[0], *G = m->buf[1]; /* (d) each */
    int64_t pi[DG_DGSAM_MAX_DOMAINS]; /* (S) domain order */
    for (int i = 0; i < S; i++) pi[i] = i;
    if (m->cfg.dgsam_order == DG_DGSAM_ORDER_SHUFFLE) dg_rng_shuffle_i64(&m->rng, pi, (size_t)S);

    dg_vec_copy(w0, w, d);
    if (d) memset(G, 0, d * sizeof(*G));
    for (int i = 0; i < S; i++) {
        cl->eval(cl->ctx, (int)pi[i], i == 0 ? DG_CLOSURE_BN_UPDATE : 0u);
        if (!(refresh && i == 0)) dgsam_accumulate(G, g, d);
        if (i < S - 1 || refresh) dgsam_perturb(w, g, rho, d);
    }
    if (refresh) {
        cl->eval(cl->ctx, (int)pi[0], 0u);
        dgsam_accumulate(G, g, d);
    }
    dg_vec_copy(w, w0, d); /* exact restore, never w - sum of perturbations */
    dgsam_mean(g, G, (float)S, d);
    m->base->ops->update(m->base, w, g, lr);
    m->t++;
}

static dg_status dgsam_state_save(const dg_method *m, dg_tensor_writer *w) {
    dg_tensor_writer_add_scalar_u64(w, "optim.dgsam.rng", m->rng.state);
    return DG_STATUS_OK;
}

static dg_status dgsam_state_load(dg_method *m, const dg_tensor_reader *r) {
    uint64_t state = 0;
    const dg_status s = dg_tensor_reader_read_u64(r, "optim.dgsam.rng", 0, NULL, &state);
    if (s != DG_STATUS_OK) return s;
    m->rng.state = state;
    return DG_STATUS_OK;
}

static const dg_method_ops dgsam_ops = {
    .name = "dgsam",
    .step = dgsam_step,
    .state_save = dgsam_state_save,
    .state_load = dgsam_state_load,
};

dg_status dg_method_init_dgsam(dg_method *m, const dg_param_set *ps) {
    if (!(m->cfg.dgsam_rho >= 0.0)) {
        dg_log_error("optim.dgsam_rho = %g: must be >= 0", m->cfg.dgsam_rho);
        return DG_STATUS_ERR_CONFIG;
    }
    if ((unsigned)m->cfg.dgsam_order > DG_DGSAM_ORDER_FIXED) {
        dg_log_error("optim.dgsam_order: value out of range (shuffle, fixed)");
        return DG_STATUS_ERR_CONFIG;
    }
    m->ops = &dgsam_ops;
    m->buf[0] = dg_method_new_buf(ps->d);
    m->buf[1] = dg_method_new_buf(ps->d);
    return DG_STATUS_OK;
}
