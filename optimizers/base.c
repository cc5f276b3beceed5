/* optimizers/base.c -- the base optimizers of docs/algorithms.md §3, with
 * PyTorch torch.optim semantics: SGD (coupled decay, momentum with
 * dampening 0, optional Nesterov), Adam (coupled L2 decay, bias correction,
 * no amsgrad) and AdamW (decoupled decay). Flat loops over the parameter
 * store's layout with per-tensor decay; OpenMP over fixed spans of at most
 * DG_OPTIM_SPAN elements, SIMD inside a span, so results are independent
 * of the thread count.
 *
 * Owns: the state buffers (d floats each: SGD momentum, only when mu != 0;
 * Adam exp_avg and exp_avg_sq) and the span table. Borrows: the layout.
 * Scalars (bias corrections, step sizes) are computed in double and cast
 * to f32 once per update, as PyTorch casts its Python-float scalars. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dg_optim.h"

bool dg_optim_decays(const dg_optim *o, const dg_param_tensor *t) {
    return o->hp.wd_all || !(t->flags & DG_PARAM_NO_DECAY);
}

/* docs/algorithms.md §3.1 */
static void sgd_update(dg_optim *o, float *w, const float *g, float lr) {
    const float mu = (float)o->hp.momentum;
    const float lambda = (float)o->hp.weight_decay;
    const bool nesterov = o->hp.nesterov;
    float *buf = o->state[0]; /* (d), NULL when mu == 0 */
    const dg_optim_span *sp = o->spans;
#pragma omp parallel for schedule(static) if (o->n_spans > 1)
    for (size_t k = 0; k < o->n_spans; k++) {
        const size_t lo = sp[k].offset, hi = sp[k].offset + sp[k].n;
        const float wd = sp[k].decay ? lambda : 0.f;
        if (!buf) {
#pragma omp simd
            for (size_t i = lo; i < hi; i++) w[i] = w[i] - lr * (g[i] + wd * w[i]);
        } else if (nesterov) {
#pragma omp simd
            for (size_t i = lo; i < hi; i++) {
                const float u = g[i] + wd * w[i];
                buf[i] = mu * buf[i] + u;
                w[i] = w[i] - lr * (u + mu * buf[i]);
            }
        } else {
#pragma omp simd
            for (size_t i = lo; i < hi; i++) {
                const float u = g[i] + wd * w[i];
                buf[i] = mu * buf[i] + u;
                w[i] = w[i] - lr * buf[i];
            }
        }
    }
    o->t++;
}

/* docs/algorithms.md §3.2 and §3.3: decoupled = AdamW (shrink decayed tensors
 * by 1 - lr*lambda, then Adam on the plain gradient). */
static void adam_core(dg_optim *o, float *w, const float *g, float lr, bool decoupled) {
    o->t++;
    const double c1 = 1.0 - pow(o->hp.beta1, (double)o->t);
    const double c2 = 1.0 - pow(o->hp.beta2, (double)o->t);
    const float step = (float)((double)lr / c1);
    const float c2_sqrt = (float)sqrt(c2);
    const float b1 = (float)o->hp.beta1, one_b1 = (float)(1.0 - o->hp.beta1);
    const float b2 = (float)o->hp.beta2, one_b2 = (float)(1.0 - o->hp.beta2);
    const float eps = (float)o->hp.eps;
    const float lambda = decoupled ? 0.f : (float)o->hp.weight_decay;
    const float shrink = (float)(1.0 - (double)lr * o->hp.weight_decay);
    float *m = o->state[0], *v = o->state[1]; /* (d) each */
    const dg_optim_span *sp = o->spans;
#pragma omp parallel for schedule(static) if (o->n_spans > 1)
    for (size_t k = 0; k < o->n_spans; k++) {
        const size_t lo = sp[k].offset, hi = sp[k].offset + sp[k].n;
        const float wd = sp[k].decay ? lambda : 0.f;
        if (decoupled && sp[k].decay) {
#pragma omp simd
            for (size_t i = lo; i < hi; i++) w[i] = w[i] * shrink;
        }
#pragma omp simd
        for (size_t i = lo; i < hi; i++) {
            const float u = g[i] + wd * w[i];
            m[i] = b1 * m[i] + one_b1 * u;
            v[i] = b2 * v[i] + one_b2 * u * u;
            const float denom = sqrtf(v[i]) / c2_sqrt + eps;
            w[i] = w[i] - step * m[i] / denom;
        }
    }
}

static void adam_update(dg_optim *o, float *w, const float *g, float lr) {
    adam_core(o, w, g, lr, false);
}

static void adamw_update(dg_optim *o, float *w, const float *g, float lr) {
    adam_core(o, w, g, lr, true);
}

static void optim_reset(dg_optim *o) {
    for (int i = 0; i < 2; i++)
        if (o->state[i]) memset(o->state[i], 0, o->d * sizeof(float));
    o->t = 0;
}

static const dg_optim_ops sgd_ops = {"sgd", sgd_update, optim_reset};
static const dg_optim_ops adam_ops = {"adam", adam_update, optim_reset};
static const dg_optim_ops adamw_ops = {"adamw", adamw_update, optim_reset};
static const dg_optim_ops *const optim_table[] = {&sgd_ops, &adam_ops, &adamw_ops};

/* Range checks of the keys the base optimizers read (docs/algorithms.md §16). */
static dg_status check_hparams(const dg_optim_ops *ops, const dg_optim_hparams *hp) {
    if (!(hp->weight_decay >= 0.0) || !isfinite(hp->weight_decay)) {
        dg_log_error("optim.weight_decay = %g: must be finite and >= 0", hp->weight_decay);
        return DG_STATUS_ERR_CONFIG;
    }
    if (ops == &sgd_ops) {
        if (!(hp->momentum >= 0.0 && hp->momentum < 1.0)) {
            dg_log_error("optim.momentum = %g: must be in [0, 1)", hp->momentum);
            return DG_STATUS_ERR_CONFIG;
        }
        if (hp->nesterov && hp->momentum == 0.0) {
            dg_log_error("optim.nesterov = true needs optim.momentum > 0");
            return DG_STATUS_ERR_CONFIG;
        }
        return DG_STATUS_OK;
    }
    if (!(hp->beta1 > 0.0 && hp->beta1 < 1.0) || !(hp->beta2 > 0.0 && hp->beta2 < 1.0)) {
        dg_log_error("optim.beta1 = %g, optim.beta2 = %g: both must be in (0, 1)", hp->beta1,
                hp->beta2);
        return DG_STATUS_ERR_CONFIG;
    }
    if (!(hp->eps > 0.0)) {
        dg_log_error("optim.eps = %g: must be > 0", hp->eps);
        return DG_STATUS_ERR_CONFIG;
    }
    return DG_STATUS_OK;
}

/* Splits every tensor into spans of at most DG_OPTIM_SPAN elements. */
static void build_spans(dg_optim *o) {
    const dg_param_set *ps = o->layout;
    size_t n = 0;
    for (size_t k = 0; k < ps->n_tensors; k++)
        n += (ps->tensors[k].n + DG_OPTIM_SPAN - 1) / DG_OPTIM_SPAN;
    o->spans = dg_xcalloc(n ? n : 1, sizeof(*o->spans));
    o->n_spans = 0;
    for (size_t k = 0; k < ps->n_tensors; k++) {
        const dg_param_tensor *t = &ps->tensors[k];
        for (size_t off = 0; off < t->n; off += DG_OPTIM_SPAN) {
            dg_optim_span *s = &o->spans[o->n_spans++];
            s->offset = t->offset + off;
            s->n = DG_MIN((size_t)DG_OPTIM_SPAN, t->n - off);
            s->decay = dg_optim_decays(o, t);
            s->asam_scaled = (t->flags & DG_PARAM_ASAM_SCALED) != 0;
        }
    }
}

dg_status dg_optim_create(const char *name, const dg_optim_hparams *hp,
        const dg_param_set *ps, dg_optim **out) {
    *out = NULL;
    const dg_optim_ops *ops = NULL;
    for (size_t i = 0; i < DG_ARRAY_LEN(optim_table); i++)
        if (!strcmp(name, optim_table[i]->name)) ops = optim_table[i];
    if (!ops) {
        dg_log_error("optim.base: unknown base optimizer '%s' (valid: sgd, adam, adamw)", name);
        return DG_STATUS_ERR_CONFIG;
    }
    const dg_status st = check_hparams(ops, hp);
    if (st != DG_STATUS_OK) return st;
    DG_ASSERT(dg_params_is_allocated(ps));

    dg_optim *o = dg_xcalloc(1, sizeof(*o));
    o->ops = ops;
    o->hp = *hp;
    o->layout = ps;
    o->d = ps->d;
    if (ops != &sgd_ops || hp->momentum != 0.0)
        o->state[0] = dg_xcalloc(ps->d ? ps->d : 1, sizeof(float));
    if (ops != &sgd_ops) o->state[1] = dg_xcalloc(ps->d ? ps->d : 1, sizeof(float));
    build_spans(o);
    *out = o;
    return DG_STATUS_OK;
}

void dg_optim_free(dg_optim *o) {
    if (!o) return;
    dg_free(o->state[0]);
    dg_free(o->state[1]);
    dg_free(o->spans);
    memset(o, 0, sizeof(*o));
    dg_free(o);
}

/* State names of §13: optim.<base>.<name>. */
static const char *state_name(const dg_optim *o, int i) {
    if (o->ops == &sgd_ops) return i == 0 ? "momentum" : NULL;
    return i == 0 ? "exp_avg" : "exp_avg_sq";
}

void dg_optim_state_save(const dg_optim *o, dg_tensor_writer *w) {
    char key[96];
    const int64_t shape[1] = {(int64_t)o->d};
    for (int i = 0; i < 2; i++) {
        if (!o->state[i]) continue;
        snprintf(key, sizeof(key), "optim.%s.%s", o->ops->name, state_name(o, i));
        dg_tensor_writer_add_f32(w, key, 1, shape, o->state[i]);
    }
    snprintf(key, sizeof(key), "optim.%s.step", o->ops->name);
    dg_tensor_writer_add_scalar_i64(w, key, (int64_t)o->t);
}

dg_status dg_optim_state_load(dg_optim *o, const dg_tensor_reader *r) {
    char key[96];
    const int64_t shape[1] = {(int64_t)o->d};
    for (int i = 0; i < 2; i++) {
        if (!o->state[i]) continue;
        snprintf(key, sizeof(key), "optim.%s.%s", o->ops->name, state_name(o, i));
        const dg_status st = dg_tensor_reader_read_f32(r, key, 1, shape, o->state[i]);
        if (st != DG_STATUS_OK) return st;
    }
    snprintf(key, sizeof(key), "optim.%s.step", o->ops->name);
    int64_t t = 0;
    const dg_status st = dg_tensor_reader_read_i64(r, key, 0, NULL, &t);
    if (st != DG_STATUS_OK) return st;
    o->t = (long)t;
    return DG_STATUS_OK;
}
