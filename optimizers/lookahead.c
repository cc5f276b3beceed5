/* optimizers/lookahead.c -- Lookahead (Zhang, Lucas, Hinton, Ba; arXiv
 * 1907.08610; michaelrzhang/lookahead) and large-LR Lookahead for DG with
 * its regularised variants LA+WA and LA+HA (Zhang, Qi, Shi, Gao; arXiv
 * 2309.06337; koncle/Lookahead-Large-LR), one rule: docs/algorithms.md §5.3.
 *
 * k fast steps of the base optimizer (optionally with the gradient of
 * la_reg_strength * mean_i (w_i - a_i)^2 added, anchor a = phi or h), then a
 * sync: w <- (1 - alpha) phi + alpha e (e = w, or the cycle mean h), and
 * phi <- w, h <- w. Evaluated weights: phi.
 *
 * Owns: buf[0] = phi (d, slow weights), buf[1] = h (d, running mean of the
 * cycle's post-step iterates; only with la_endpoint = mean or la_reg =
 * history), priv = counters. Checkpoint names (§13): optim.lookahead.slow,
 * .hist, .j, .c, plus .sync_epoch (the epoch of the previous sync, which
 * decides the per-epoch BN refresh). */
#include <string.h>

#include "method_impl.h"

#define LA_PAR_MIN 65536 /* element-wise loops below this run serially */

typedef struct la_state {
    long j;          /* inner index 0 .. k-1 */
    long c;          /* completed cycles */
    long sync_epoch; /* sampler epoch at the previous sync (or of the first
                        batch); -1 before the first step */
} la_state;

/* docs/algorithms.md §5.3 step 2: g += (2 c / d) (w - a). */
static void la_reg_grad(float *g, const float *w, const float *a, float coef, size_t d) {
#pragma omp parallel for simd schedule(static) if (d >= LA_PAR_MIN)
    for (size_t i = 0; i < d; i++) g[i] = g[i] + coef * (w[i] - a[i]);
}

/* Step 4: h <- (j h + w)/(j + 1), exactly w when j = 0. */
static void la_hist_update(float *h, const float *w, float j, size_t d) {
    const float j1 = j + 1.f;
#pragma omp parallel for simd schedule(static) if (d >= LA_PAR_MIN)
    for (size_t i = 0; i < d; i++) h[i] = (j * h[i] + w[i]) / j1;
}

/* Step 8: w <- (1 - alpha) phi + alpha e. */
static void la_interpolate(float *w, const float *phi, const float *e, float one_minus_alpha,
        float alpha, size_t d) {
#pragma omp parallel for simd schedule(static) if (d >= LA_PAR_MIN)
    for (size_t i = 0; i < d; i++) w[i] = one_minus_alpha * phi[i] + alpha * e[i];
}

static void la_step(dg_method *m, dg_param_set *ps, const dg_closure *cl, float lr) {
    la_state *st = m->priv;
    const dg_method_cfg *cfg = &m->cfg;
    float *w = ps->data, *phi = m->buf[0], *h = m->buf[1]; /* (d) each; h may be NULL */
    const size_t d = ps->d;
    if (st->sync_epoch < 0) st->sync_epoch = cl->epoch;

    cl->eval(cl->ctx, DG_DOMAIN_ALL, DG_CLOSURE_BN_UPDATE);
    if (cfg->la_reg != DG_LA_REG_NONE && cfg->la_reg_strength > 0.0) {
        const float *a = cfg->la_reg == DG_LA_REG_AVERAGE ? phi : h;
        const float coef = (float)(2.0 * cfg->la_reg_strength / (double)d);
        la_reg_grad(ps->grad, w, a, coef, d);
    }
    m->base->ops->update(m->base, w, ps->grad, lr);
    if (h) la_hist_update(h, w, (float)st->j, d);
    st->j++;
    m->t++;
    if (st->j < cfg->la_k) return;

    /* sync, steps 7-11 */
    const float *e = cfg->la_endpoint == DG_LA_ENDPOINT_MEAN ? h : w;
    la_interpolate(w, phi, e, (float)(1.0 - cfg->la_alpha), (float)cfg->la_alpha, d);
    dg_vec_copy(phi, w, d);
    if (h) dg_vec_copy(h, w, d);
    st->j = 0;
    st->c++;
    if (cfg->la_momentum == DG_LA_MOMENTUM_RESET) m->base->ops->reset(m->base);
    if (cl->epoch > st->sync_epoch) {
        st->sync_epoch = cl->epoch;
        if (cfg->la_bn_refresh && cl->bn_refresh)
            cl->bn_refresh(cl->ctx, w, 2 * cfg->la_k, DG_BN_REFRESH_MOMENTUM);
    }
}

static bool la_eval_weights(const dg_method *m, const float **params, const float **stats) {
    *params = m->buf[0];
    *stats = m->base->layout->stats;
    return true;
}

/* la_schedule_per_cycle: the schedule advances once per cycle (horizon T). */
static long la_sched_step(const dg_method *m, long t) {
    return m->cfg.la_schedule_per_cycle ? t / m->cfg.la_k : t;
}

static void la_finish(dg_method *m, dg_param_set *ps, const dg_closure *cl) {
    (void)ps;
    if (m->cfg.la_bn_refresh && cl->bn_refresh && m->cfg.la_bn_refresh_final > 0)
        cl->bn_refresh(cl->ctx, m->buf[0], m->cfg.la_bn_refresh_final, DG_BN_REFRESH_MOMENTUM);
}

static dg_status la_state_save(const dg_method *m, dg_tensor_writer *w) {
    const la_state *st = m->priv;
    const int64_t shape[1] = {(int64_t)m->base->d};
    dg_tensor_writer_add_f32(w, "optim.lookahead.slow", 1, shape, m->buf[0]);
    if (m->buf[1]) dg_tensor_writer_add_f32(w, "optim.lookahead.hist", 1, shape, m->buf[1]);
    dg_tensor_writer_add_scalar_i64(w, "optim.lookahead.j", st->j);
    dg_tensor_writer_add_scalar_i64(w, "optim.lookahead.c", st->c);
    dg_tensor_writer_add_scalar_i64(w, "optim.lookahead.sync_epoch", st->sync_epoch);
    return DG_STATUS_OK;
}

static dg_status la_state_load(dg_method *m, const dg_tensor_reader *r) {
    la_state *st = m->priv;
    const int64_t shape[1] = {(int64_t)m->base->d};
    int64_t j, c, e;
    dg_status s = dg_tensor_reader_read_f32(r, "optim.lookahead.slow", 1, shape, m->buf[0]);
    if (s == DG_STATUS_OK && m->buf[1])
        s = dg_tensor_reader_read_f32(r, "optim.lookahead.hist", 1, shape, m->buf[1]);
    if (s == DG_STATUS_OK) s = dg_tensor_reader_read_i64(r, "optim.lookahead.j", 0, NULL, &j);
    if (s == DG_STATUS_OK) s = dg_tensor_reader_read_i64(r, "optim.lookahead.c", 0, NULL, &c);
    if (s == DG_STATUS_OK)
        s = dg_tensor_reader_read_i64(r, "optim.lookahead.sync_epoch", 0, NULL, &e);
    if (s != DG_STATUS_OK) return s;
    if (j < 0 || j >= m->cfg.la_k) {
        dg_log_error("optim.lookahead.j = %lld: not an inner index for la_k = %ld",
                (long long)j, m->cfg.la_k);
        return DG_STATUS_ERR_FORMAT;
    }
    st->j = (long)j;
    st->c = (long)c;
    st->sync_epoch = (long)e;
    return DG_STATUS_OK;
}

static const dg_method_ops la_ops = {
    .name = "lookahead",
    .step = la_step,
    .eval_weights = la_eval_weights,
    .sched_step = la_sched_step,
    .finish = la_finish,
    .state_save = la_state_save,
    .state_load = la_state_load,
};

static dg_status la_check(const dg_method_cfg *cfg) {
    if (cfg->la_k < 1) {
        dg_log_error("optim.la_k = %ld: must be >= 1", cfg->la_k);
        return DG_STATUS_ERR_CONFIG;
    }
    if (!(cfg->la_alpha >= 0.0 && cfg->la_alpha <= 1.0)) {
        dg_log_error("optim.la_alpha = %g: must be in [0, 1]", cfg->la_alpha);
        return DG_STATUS_ERR_CONFIG;
    }
    if (!(cfg->la_reg_strength >= 0.0)) {
        dg_log_error("optim.la_reg_strength = %g: must be >= 0", cfg->la_reg_strength);
        return DG_STATUS_ERR_CONFIG;
    }
    if (cfg->la_bn_refresh_final < 0) {
        dg_log_error("optim.la_bn_refresh_final = %ld: must be >= 0", cfg->la_bn_refresh_final);
        return DG_STATUS_ERR_CONFIG;
    }
    if ((unsigned)cfg->la_endpoint > DG_LA_ENDPOINT_MEAN ||
            (unsigned)cfg->la_reg > DG_LA_REG_HISTORY ||
            (unsigned)cfg->la_momentum > DG_LA_MOMENTUM_RESET) {
        dg_log_error("optim.la_endpoint / la_reg / la_momentum: value out of range");
        return DG_STATUS_ERR_CONFIG;
    }
    return DG_STATUS_OK;
}

dg_status dg_method_init_lookahead(dg_method *m, const dg_param_set *ps) {
    const dg_status s = la_check(&m->cfg);
    if (s != DG_STATUS_OK) return s;
    m->ops = &la_ops;
    la_state *st = dg_xcalloc(1, sizeof(*st));
    st->sync_epoch = -1;
    m->priv = st;
    m->buf[0] = dg_method_new_buf(ps->d);
    dg_vec_copy(m->buf[0], ps->data, ps->d); /* phi <- w */
    if (m->cfg.la_endpoint == DG_LA_ENDPOINT_MEAN || m->cfg.la_reg == DG_LA_REG_HISTORY) {
        m->buf[1] = dg_method_new_buf(ps->d);
        dg_vec_copy(m->buf[1], ps->data, ps->d); /* h <- w */
    }
    return DG_STATUS_OK;
}
