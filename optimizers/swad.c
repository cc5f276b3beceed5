/* optimizers/swad.c -- SWAD, dense stochastic weight averaging inside a
 * loss valley (Cha et al., arXiv 2102.08604; khanrc/swad domainbed/swad.py,
 * domainbed/trainer.py), docs/algorithms.md §6.
 *
 * step: one plain base-optimizer step (the only closure call carries
 * DG_CLOSURE_BN_UPDATE), then the post-step w joins the open segment's
 * running mean. on_eval(t, l): the open segment is closed as segment n with
 * loss l (the live weights' source validation loss); the convergence window
 * of N_s evaluations, the look-back and the look-ahead window of N_e
 * evaluations decide which segments join the count-weighted average A.
 * finish: the end-of-training rule (steps 15, 16), then a cumulative BN
 * refresh at A when the net has BN. Evaluated weights: A, once finish has
 * run (the live weights before). Parameters only are averaged.
 *
 * Decisions where §6 is silent: an on_eval with no step since the previous
 * one closes nothing; at finish an open segment (no evaluation after the
 * last step) is ignored, except when no segment was ever closed, in which
 * case A is the open segment's mean (or w when there is none either).
 *
 * Owns: buf[0] = the open segment's mean (d), buf[1] = A (d); priv = the
 * ring of the last N_e closed segments (segment n in slot n mod N_e: mean
 * (d), count, first and last step, loss) and the scalars. Checkpoint names
 * (§13): optim.swad.open, .seg0 .. .seg<N_e-1> (ring slots), .avg,
 * .seg_count, .seg_first, .seg_last (i64 [N_e]), .seg_loss (f64 [N_e]),
 * .tau (f64), .n_open, .open_first, .n_closed, .status, .next, .n_avg,
 * .start, .end, .finished (i64). */
#include <stdio.h>
#include <string.h>

#include "method_impl.h"

#define SWAD_PAR_MIN 65536 /* element-wise loops below this run serially */

enum { SWAD_SEARCH = 0, SWAD_VALLEY = 1, SWAD_DEAD = 2 };

typedef struct swad_state {
    float *seg;         /* (N_e, d) closed segment means, segment n in row n mod N_e */
    int64_t *count;     /* (N_e) iterates in the segment */
    int64_t *first;     /* (N_e) first step of the segment */
    int64_t *last;      /* (N_e) last step (the evaluated one) */
    double *loss;       /* (N_e) source validation loss of the segment's last iterate */
    double tau;         /* valley threshold */
    int64_t n_open;     /* iterates in the open segment */
    int64_t open_first; /* first step of the open segment */
    int64_t n_closed;   /* segments closed so far = index of the next one */
    int64_t status;     /* SWAD_SEARCH, SWAD_VALLEY, SWAD_DEAD */
    int64_t next;       /* next segment to decide in the valley */
    int64_t n_avg;      /* N_A, iterates averaged into A */
    int64_t start;      /* first accepted segment, -1 before convergence */
    int64_t end;        /* last accepted segment, -1 while the valley is open */
    int64_t finished;   /* 1 once finish has run: A is the evaluated weights */
} swad_state;

static size_t swad_slot(const dg_method *m, int64_t j) {
    return (size_t)(j % m->cfg.swad_n_tolerance);
}

static double swad_loss(const dg_method *m, int64_t j) {
    const swad_state *st = m->priv;
    DG_ASSERT(j >= 0 && j < st->n_closed && j >= st->n_closed - m->cfg.swad_n_tolerance);
    return st->loss[swad_slot(m, j)];
}

/* min(l_lo .. l_hi). */
static double swad_min_loss(const dg_method *m, int64_t lo, int64_t hi) {
    double v = swad_loss(m, lo);
    for (int64_t j = lo + 1; j <= hi; j++) {
        const double l = swad_loss(m, j);
        if (l < v) v = l;
    }
    return v;
}

/* mean <- mean + f (x - mean); mean, x: (d). */
static void swad_blend(float *mean, const float *x, float f, size_t d) {
#pragma omp parallel for simd schedule(static) if (d >= SWAD_PAR_MIN)
    for (size_t i = 0; i < d; i++) mean[i] = mean[i] + f * (x[i] - mean[i]);
}

/* "Add segment j to A": A <- A + (n_j / (N_A + n_j)) (mu_j - A). */
static void swad_accept(dg_method *m, int64_t j) {
    swad_state *st = m->priv;
    const size_t d = m->base->d, slot = swad_slot(m, j);
    const float *mu = st->seg + slot * d; /* (d) */
    const int64_t nj = st->count[slot];
    if (st->n_avg == 0) dg_vec_copy(m->buf[1], mu, d);
    else swad_blend(m->buf[1], mu, (float)((double)nj / (double)(st->n_avg + nj)), d);
    st->n_avg += nj;
    if (st->start < 0) st->start = j;
}

static void swad_step(dg_method *m, dg_param_set *ps, const dg_closure *cl, float lr) {
    swad_state *st = m->priv;
    float *w = ps->data, *open = m->buf[0]; /* (d) each */
    cl->eval(cl->ctx, DG_DOMAIN_ALL, DG_CLOSURE_BN_UPDATE);
    m->base->ops->update(m->base, w, ps->grad, lr);
    if (st->n_open == 0) st->open_first = m->t;
    st->n_open++;
    if (st->n_open == 1) dg_vec_copy(open, w, ps->d);
    else swad_blend(open, w, (float)(1.0 / (double)st->n_open), ps->d);
    m->t++;
}

static bool swad_on_eval(dg_method *m, long t, double loss) {
    swad_state *st = m->priv;
    const dg_method_cfg *cfg = &m->cfg;
    const int64_t ns = cfg->swad_n_converge, ne = cfg->swad_n_tolerance;
    const size_t d = m->base->d;
    if (st->n_open > 0) {
        /* step 3: close the open segment as segment n */
        const int64_t n = st->n_closed;
        const size_t slot = swad_slot(m, n);
        dg_vec_copy(st->seg + slot * d, m->buf[0], d);
        st->count[slot] = st->n_open;
        st->first[slot] = st->open_first;
        st->last[slot] = t;
        st->loss[slot] = loss;
        st->n_closed++;
        st->n_open = 0;
        if (st->status == SWAD_SEARCH) {
            if (n + 1 >= ns) { /* steps 4-9 */
                const int64_t c = n - ns + 1;
                const double lc = swad_loss(m, c);
                if (swad_min_loss(m, c, n) >= lc) {
                    double sum = 0.0;
                    for (int64_t j = c; j <= n; j++) sum += swad_loss(m, j);
                    st->tau = (1.0 + cfg->swad_tolerance_ratio) * (sum / (double)ns);
                    int64_t s = c;
                    const int64_t lo = DG_MAX(0, c - (ne - ns));
                    while (s - 1 >= lo && swad_loss(m, s - 1) <= st->tau) s--;
                    st->n_avg = 0;
                    for (int64_t j = s; j <= c; j++) swad_accept(m, j);
                    st->next = c + 1;
                    st->status = SWAD_VALLEY;
                    dg_log_info("swad: loss valley at step %ld: segments %lld..%lld accepted, "
                            "tau = %g", t, (long long)s, (long long)c, st->tau);
                }
            }
        } else if (st->status == SWAD_VALLEY) { /* steps 10-13 */
            while (st->next + ne - 1 <= n) {
                if (swad_min_loss(m, st->next, st->next + ne - 1) > st->tau) {
                    st->status = SWAD_DEAD;
                    st->end = st->next - 1;
                    dg_log_info("swad: the valley died at step %ld; segments %lld..%lld "
                            "averaged", t, (long long)st->start, (long long)st->end);
                    break;
                }
                swad_accept(m, st->next);
                st->next++;
            }
        }
    }
    return st->status == SWAD_DEAD && cfg->swad_early_stop; /* step 14 */
}

static bool swad_eval_weights(const dg_method *m, const float **params, const float **stats) {
    const swad_state *st = m->priv;
    if (!st->finished) return false;
    *params = m->buf[1];
    *stats = m->base->layout->stats;
    return true;
}

static void swad_finish(dg_method *m, dg_param_set *ps, const dg_closure *cl) {
    swad_state *st = m->priv;
    const size_t d = ps->d;
    if (st->finished) return;
    const int64_t n_last = st->n_closed - 1;
    if (st->status == SWAD_VALLEY) { /* step 15 */
        for (int64_t j = st->next; j <= n_last; j++) {
            if (swad_min_loss(m, j, n_last) > st->tau) break;
            swad_accept(m, j);
            st->next = j + 1;
        }
        st->end = st->next - 1;
        dg_log_info("swad: segments %lld..%lld averaged (%lld iterates)", (long long)st->start,
                (long long)st->end, (long long)st->n_avg);
    } else if (st->status == SWAD_SEARCH) { /* step 16 */
        if (n_last >= 0) {
            const size_t slot = swad_slot(m, n_last);
            dg_vec_copy(m->buf[1], st->seg + slot * d, d);
            st->n_avg = st->count[slot];
        } else if (st->n_open > 0) {
            dg_vec_copy(m->buf[1], m->buf[0], d);
            st->n_avg = st->n_open;
        } else {
            dg_vec_copy(m->buf[1], ps->data, d);
            st->n_avg = 1;
        }
        dg_log_warn("swad: no loss valley detected; evaluating the last segment's mean");
    }
    st->finished = 1;
    if (cl->bn_refresh && m->cfg.swad_bn_batches > 0)
        cl->bn_refresh(cl->ctx, m->buf[1], m->cfg.swad_bn_batches, DG_BN_REFRESH_CUMULATIVE);
}

static const char *const swad_scalar_names[] = {
    "n_open", "open_first", "n_closed", "status", "next", "n_avg", "start", "end", "finished",
};

static int64_t *swad_scalar(swad_state *st, size_t i) {
    int64_t *const p[] = {&st->n_open, &st->open_first, &st->n_closed, &st->status, &st->next,
        &st->n_avg, &st->start, &st->end, &st->finished};
    return p[i];
}

static dg_status swad_state_save(const dg_method *m, dg_tensor_writer *w) {
    swad_state *st = m->priv;
    const size_t d = m->base->d;
    const int64_t ne = m->cfg.swad_n_tolerance;
    const int64_t shape[1] = {(int64_t)d}, ring[1] = {ne};
    char key[64];
    dg_tensor_writer_add_f32(w, "optim.swad.open", 1, shape, m->buf[0]);
    for (int64_t i = 0; i < ne; i++) {
        snprintf(key, sizeof(key), "optim.swad.seg%lld", (long long)i);
        dg_tensor_writer_add_f32(w, key, 1, shape, st->seg + (size_t)i * d);
    }
    dg_tensor_writer_add_f32(w, "optim.swad.avg", 1, shape, m->buf[1]);
    dg_tensor_writer_add_i64(w, "optim.swad.seg_count", 1, ring, st->count);
    dg_tensor_writer_add_i64(w, "optim.swad.seg_first", 1, ring, st->first);
    dg_tensor_writer_add_i64(w, "optim.swad.seg_last", 1, ring, st->last);
    dg_tensor_writer_add(w, "optim.swad.seg_loss", DG_ST_F64, 1, ring, st->loss);
    dg_tensor_writer_add(w, "optim.swad.tau", DG_ST_F64, 0, NULL, &st->tau);
    for (size_t i = 0; i < DG_ARRAY_LEN(swad_scalar_names); i++) {
        snprintf(key, sizeof(key), "optim.swad.%s", swad_scalar_names[i]);
        dg_tensor_writer_add_scalar_i64(w, key, *swad_scalar(st, i));
    }
    return DG_STATUS_OK;
}

/* Reads f64 tensor `name` of numel n (ndims 0 or 1) bit-exactly into dst. */
static dg_status swad_read_f64(const dg_tensor_reader *r, const char *name, int ndims,
        int64_t n, double *dst) {
    const dg_st_tensor *t = dg_tensor_reader_find(r, name);
    if (!t) {
        dg_log_error("%s: missing from the checkpoint", name);
        return DG_STATUS_ERR_MISSING;
    }
    if (t->dtype != DG_ST_F64 || t->ndims != ndims || (ndims == 1 && t->shape[0] != n)) {
        dg_log_error("%s: expected f64 of %lld elements", name, (long long)n);
        return DG_STATUS_ERR_SHAPE;
    }
    return dg_tensor_reader_read_raw(r, t, dst);
}

static dg_status swad_state_load(dg_method *m, const dg_tensor_reader *r) {
    swad_state *st = m->priv;
    const size_t d = m->base->d;
    const int64_t ne = m->cfg.swad_n_tolerance;
    const int64_t shape[1] = {(int64_t)d}, ring[1] = {ne};
    char key[64];
    dg_status s = dg_tensor_reader_read_f32(r, "optim.swad.open", 1, shape, m->buf[0]);
    for (int64_t i = 0; i < ne && s == DG_STATUS_OK; i++) {
        snprintf(key, sizeof(key), "optim.swad.seg%lld", (long long)i);
        s = dg_tensor_reader_read_f32(r, key, 1, shape, st->seg + (size_t)i * d);
    }
    if (s == DG_STATUS_OK) s = dg_tensor_reader_read_f32(r, "optim.swad.avg", 1, shape, m->buf[1]);
    if (s == DG_STATUS_OK) s = dg_tensor_reader_read_i64(r, "optim.swad.seg_count", 1, ring, st->count);
    if (s == DG_STATUS_OK) s = dg_tensor_reader_read_i64(r, "optim.swad.seg_first", 1, ring, st->first);
    if (s == DG_STATUS_OK) s = dg_tensor_reader_read_i64(r, "optim.swad.seg_last", 1, ring, st->last);
    if (s == DG_STATUS_OK) s = swad_read_f64(r, "optim.swad.seg_loss", 1, ne, st->loss);
    if (s == DG_STATUS_OK) s = swad_read_f64(r, "optim.swad.tau", 0, 1, &st->tau);
    for (size_t i = 0; i < DG_ARRAY_LEN(swad_scalar_names) && s == DG_STATUS_OK; i++) {
        snprintf(key, sizeof(key), "optim.swad.%s", swad_scalar_names[i]);
        s = dg_tensor_reader_read_i64(r, key, 0, NULL, swad_scalar(st, i));
    }
    if (s != DG_STATUS_OK) return s;
    if (st->n_open < 0 || st->n_closed < 0 || st->status < SWAD_SEARCH ||
            st->status > SWAD_DEAD || st->n_avg < 0 ||
            (st->status == SWAD_VALLEY && (st->next < st->n_closed - ne + 1 ||
                    st->next > st->n_closed))) {
        dg_log_error("optim.swad: counters out of range (n_open %lld, n_closed %lld, "
                "status %lld, next %lld)", (long long)st->n_open, (long long)st->n_closed,
                (long long)st->status, (long long)st->next);
        return DG_STATUS_ERR_FORMAT;
    }
    return DG_STATUS_OK;
}

static void swad_free(dg_method *m) {
    swad_state *st = m->priv;
    if (!st) return;
    dg_free(st->seg);
    dg_free(st->count);
    dg_free(st->first);
    dg_free(st->last);
    dg_free(st->loss);
}

static const dg_method_ops swad_ops = {
    .name = "swad",
    .step = swad_step,
    .eval_weights = swad_eval_weights,
    .on_eval = swad_on_eval,
    .finish = swad_finish,
    .state_save = swad_state_save,
    .state_load = swad_state_load,
    .free = swad_free,
};

static dg_status swad_check(const dg_method_cfg *cfg) {
    if (cfg->swad_n_converge < 1 || cfg->swad_n_tolerance < cfg->swad_n_converge) {
        dg_log_error("optim.swad_n_converge = %ld, optim.swad_n_tolerance = %ld: need "
                "n_converge >= 1 and n_tolerance >= n_converge", cfg->swad_n_converge,
                cfg->swad_n_tolerance);
        return DG_STATUS_ERR_CONFIG;
    }
    if (!(cfg->swad_tolerance_ratio >= 0.0)) {
        dg_log_error("optim.swad_tolerance_ratio = %g: must be >= 0",
                cfg->swad_tolerance_ratio);
        return DG_STATUS_ERR_CONFIG;
    }
    if (cfg->swad_eval_every < 1 || cfg->swad_bn_batches < 0 || cfg->swad_val_images < 1) {
        dg_log_error("optim.swad_eval_every = %ld (>= 1), optim.swad_bn_batches = %ld (>= 0), "
                "optim.swad_val_images = %ld (>= 1): value out of range", cfg->swad_eval_every,
                cfg->swad_bn_batches, cfg->swad_val_images);
        return DG_STATUS_ERR_CONFIG;
    }
    return DG_STATUS_OK;
}

dg_status dg_method_init_swad(dg_method *m, const dg_param_set *ps) {
    const dg_status s = swad_check(&m->cfg);
    if (s != DG_STATUS_OK) return s;
    const size_t ne = (size_t)m->cfg.swad_n_tolerance, d = ps->d ? ps->d : 1;
    m->ops = &swad_ops;
    swad_state *st = dg_xcalloc(1, sizeof(*st));
    m->priv = st;
    st->seg = dg_xcalloc(ne * d, sizeof(float));
    st->count = dg_xcalloc(ne, sizeof(int64_t));
    st->first = dg_xcalloc(ne, sizeof(int64_t));
    st->last = dg_xcalloc(ne, sizeof(int64_t));
    st->loss = dg_xcalloc(ne, sizeof(double));
    st->status = SWAD_SEARCH;
    st->start = -1;
    st->end = -1;
    m->buf[0] = dg_method_new_buf(ps->d);
    m->buf[1] = dg_method_new_buf(ps->d);
    dg_vec_copy(m->buf[1], ps->data, ps->d);
    return DG_STATUS_OK;
}
