/* optimizers/lookbehind.c -- Lookbehind-SAM and Lookbehind-ASAM (Mordido et
 * al., arXiv 2307.16704; chandar-lab/Lookbehind-SAM lookbehind.py),
 * docs/algorithms.md §9.
 *
 * One step on one minibatch: phi <- w, theta <- w; k times: ascent gradient
 * at the chain point w (only the very first closure call of the step carries
 * DG_CLOSURE_BN_UPDATE), w <- w + eps through the shared helper dg_vec_axpy
 * (the chain accumulates, it is never undone inside the step), descent
 * gradient at w, base update of the fast weights theta; after the first
 * inner step theta1 <- theta when alpha is adaptive. Then per tensor
 * w <- alpha*theta + (1 - alpha)*phi, with alpha = lb_alpha or
 * (1 + cos(theta1 - phi, theta - phi))/2 (cosine in double, denominator
 * floored at 1e-8, so a zero displacement gives 0.5); an alpha of exactly 1
 * or 0 copies theta or phi, so the result is exact.
 *   LB-SAM:  eps = rho * g / (||g|| + 1e-12)            (sam_rho)
 *   LB-ASAM: eps_i = rho * T_i^2 g_i / (||T (.) g|| + 1e-12), T_i = |w_i| + eta
 *            on DG_PARAM_ASAM_SCALED tensors (w = the current chain point),
 *            built in place in ps->grad as optimizers/sam.c does (asam_rho,
 *            asam_eta)
 * With k = 1 and static alpha = 1 this is SAM's (ASAM's) arithmetic bit for
 * bit (§14 invariant 20). lb_reuse_ascent = true takes the ascent gradient
 * of inner steps i >= 2 from the descent call of step i - 1 (same point,
 * same minibatch): k + 1 closure calls instead of 2k.
 *
 * Owns: buf[0] = phi (d), buf[1] = theta (d), buf[2] = theta1 (d, adaptive
 * only), all scratch (between steps w = phi; nothing beyond the base state
 * and the step counter is checkpointed, §13); priv = per-span partial sums
 * and per-tensor alphas (sizes fixed at creation). Reductions sum each span
 * in double and add the spans of a tensor in order, so alpha does not depend
 * on the thread count. */
#include <math.h>

#include "method_impl.h"

typedef struct lb_priv {
    size_t *span_tensor; /* (n_spans) tensor index of each base span */
    double *part;        /* (n_spans, 3) <a,b>, ||a||^2, ||b||^2 per span */
    float *alpha;        /* (n_tensors) alpha_tau of the current step */
    float *beta;         /* (n_tensors) 1 - alpha_tau, computed in double */
    bool asam;           /* LB-ASAM (else LB-SAM) */
} lb_priv;

double dg_lookbehind_alpha_from_sums(double dot, double na2, double nb2) {
    const double den = fmax(sqrt(na2) * sqrt(nb2), 1e-8);
    double a = 0.5 * (1.0 + dot / den);
    if (a < 0.0) a = 0.0;
    if (a > 1.0) a = 1.0;
    return a;
}

double dg_lookbehind_alpha(const float *phi, const float *theta1, const float *theta,
        size_t n) {
    double dot = 0.0, na2 = 0.0, nb2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double a = (double)theta1[i] - (double)phi[i];
        const double b = (double)theta[i] - (double)phi[i];
        dot += a * b;
        na2 += a * a;
        nb2 += b * b;
    }
    return dg_lookbehind_alpha_from_sums(dot, na2, nb2);
}

/* w <- w + eps (SAM or ASAM form) from the gradient in g; w, g: (d). */
static void lb_ascend(dg_method *m, const lb_priv *p, float *w, float *g, size_t d) {
    if (p->asam) {
        const float eta = (float)m->cfg.asam_eta;
        dg_asam_scale(m->base, w, g, eta);                          /* T (.) g */
        const float c = (float)(m->cfg.asam_rho / (dg_vec_norm2(g, d) + 1e-12));
        dg_asam_scale(m->base, w, g, eta);                          /* T^2 (.) g */
        dg_vec_axpy(w, c, g, d);
    } else {
        const float c = (float)(m->cfg.sam_rho / (dg_vec_norm2(g, d) + 1e-12));
        dg_vec_axpy(w, c, g, d);
    }
}

/* p->alpha, p->beta per tensor: static lb_alpha, or adaptive from
 * a = theta1 - phi, b = theta - phi. */
static void lb_alphas(const dg_method *m, lb_priv *p, const float *phi, const float *theta,
        const float *theta1) {
    const dg_optim *o = m->base;
    const size_t nt = o->layout->n_tensors;
    if (!m->cfg.lb_alpha_adaptive) {
        for (size_t t = 0; t < nt; t++) {
            p->alpha[t] = (float)m->cfg.lb_alpha;
            p->beta[t] = (float)(1.0 - m->cfg.lb_alpha);
        }
        return;
    }
    const dg_optim_span *sp = o->spans;
    double *part = p->part;
#pragma omp parallel for schedule(static) if (o->n_spans > 1)
    for (size_t k = 0; k < o->n_spans; k++) {
        const size_t lo = sp[k].offset, hi = sp[k].offset + sp[k].n;
        double dot = 0.0, na2 = 0.0, nb2 = 0.0;
#pragma omp simd reduction(+ : dot, na2, nb2)
        for (size_t i = lo; i < hi; i++) {
            const double a = (double)theta1[i] - (double)phi[i];
            const double b = (double)theta[i] - (double)phi[i];
            dot += a * b;
            na2 += a * a;
            nb2 += b * b;
        }
        part[3 * k] = dot;
        part[3 * k + 1] = na2;
        part[3 * k + 2] = nb2;
    }
    size_t k = 0;
    for (size_t t = 0; t < nt; t++) {
        double dot = 0.0, na2 = 0.0, nb2 = 0.0;
        for (; k < o->n_spans && p->span_tensor[k] == t; k++) {
            dot += part[3 * k];
            na2 += part[3 * k + 1];
            nb2 += part[3 * k + 2];
        }
        const double a = dg_lookbehind_alpha_from_sums(dot, na2, nb2);
        p->alpha[t] = (float)a;
        p->beta[t] = (float)(1.0 - a);
    }
}

/* w <- alpha*theta + (1 - alpha)*phi per tensor; exact copies at 1 and 0. */
static void lb_interpolate(const dg_optim *o, const lb_priv *p, float *w, const float *phi,
        const float *theta) {
    const dg_optim_span *sp = o->spans;
#pragma omp parallel for schedule(static) if (o->n_spans > 1)
    for (size_t k = 0; k < o->n_spans; k++) {
        const float a = p->alpha[p->span_tensor[k]], b = p->beta[p->span_tensor[k]];
        const size_t lo = sp[k].offset, n = sp[k].n;
        if (a == 1.f && b == 0.f) {
            dg_vec_copy(w + lo, theta + lo, n);
        } else if (a == 0.f && b == 1.f) {
            dg_vec_copy(w + lo, phi + lo, n);
        } else {
#pragma omp simd
            for (size_t i = lo; i < lo + n; i++) w[i] = a * theta[i] + b * phi[i];
        }
    }
}

static void lb_step(dg_method *m, dg_param_set *ps, const dg_closure *cl, float lr) {
    lb_priv *p = m->priv;
    const size_t d = ps->d;
    const long k = m->cfg.lb_k;
    const bool adaptive = m->cfg.lb_alpha_adaptive, reuse = m->cfg.lb_reuse_ascent;
    float *w = ps->data, *g = ps->grad;
    float *phi = m->buf[0], *theta = m->buf[1], *theta1 = m->buf[2]; /* (d) each */
    dg_vec_copy(phi, w, d);
    dg_vec_copy(theta, w, d);
    for (long i = 1; i <= k; i++) {
        if (i == 1 || !reuse)
            cl->eval(cl->ctx, DG_DOMAIN_ALL, i == 1 ? DG_CLOSURE_BN_UPDATE : 0u); /* ascent */
        lb_ascend(m, p, w, g, d);                       /* w = phi + eps_1 + ... + eps_i */
        cl->eval(cl->ctx, DG_DOMAIN_ALL, 0u);           /* descent gradient at w */
        m->base->ops->update(m->base, theta, g, lr);
        if (i == 1 && adaptive) dg_vec_copy(theta1, theta, d);
    }
    lb_alphas(m, p, phi, theta, theta1);
    lb_interpolate(m->base, p, w, phi, theta);
    m->t++;
}

static void lb_free(dg_method *m) {
    lb_priv *p = m->priv;
    if (!p) return;
    dg_free(p->span_tensor);
    dg_free(p->part);
    dg_free(p->alpha);
    dg_free(p->beta);
}

static const dg_method_ops lb_sam_ops = {.name = "lookbehind-sam", .step = lb_step,
    .free = lb_free};
static const dg_method_ops lb_asam_ops = {.name = "lookbehind-asam", .step = lb_step,
    .free = lb_free};

static dg_status lb_init(dg_method *m, const dg_param_set *ps, bool asam) {
    const dg_method_cfg *c = &m->cfg;
    if (c->lb_k < 1) {
        dg_log_error("optim.lb_k = %ld: must be >= 1", c->lb_k);
        return DG_STATUS_ERR_CONFIG;
    }
    if (!c->lb_alpha_adaptive && !(c->lb_alpha > 0.0 && c->lb_alpha <= 1.0)) {
        dg_log_error("optim.lb_alpha = %g: must be 'adaptive' or in (0, 1]", c->lb_alpha);
        return DG_STATUS_ERR_CONFIG;
    }
    if (!asam && !(c->sam_rho >= 0.0)) {
        dg_log_error("optim.sam_rho = %g: must be >= 0", c->sam_rho);
        return DG_STATUS_ERR_CONFIG;
    }
    if (asam && (!(c->asam_rho >= 0.0) || !(c->asam_eta >= 0.0))) {
        dg_log_error("optim.asam_rho = %g, optim.asam_eta = %g: both must be >= 0",
                c->asam_rho, c->asam_eta);
        return DG_STATUS_ERR_CONFIG;
    }
    m->ops = asam ? &lb_asam_ops : &lb_sam_ops;
    m->buf[0] = dg_method_new_buf(ps->d);
    m->buf[1] = dg_method_new_buf(ps->d);
    if (c->lb_alpha_adaptive) m->buf[2] = dg_method_new_buf(ps->d);

    const dg_optim *o = m->base;
    const size_t nt = o->layout->n_tensors, ns = o->n_spans;
    lb_priv *p = dg_xcalloc(1, sizeof(*p));
    m->priv = p;
    p->asam = asam;
    p->span_tensor = dg_xcalloc(ns ? ns : 1, sizeof(*p->span_tensor));
    p->part = dg_xcalloc(ns ? 3 * ns : 1, sizeof(*p->part));
    p->alpha = dg_xcalloc(nt ? nt : 1, sizeof(*p->alpha));
    p->beta = dg_xcalloc(nt ? nt : 1, sizeof(*p->beta));
    for (size_t k = 0; k < ns; k++) {
        const size_t off = o->spans[k].offset;
        size_t t = 0;
        while (t < nt && !(off >= o->layout->tensors[t].offset &&
                       off < o->layout->tensors[t].offset + o->layout->tensors[t].n))
            t++;
        DG_ASSERT(t < nt);
        DG_ASSERT(k == 0 || t >= p->span_tensor[k - 1]); /* spans follow the tensor table */
        p->span_tensor[k] = t;
    }
    return DG_STATUS_OK;
}

dg_status dg_method_init_lookbehind_sam(dg_method *m, const dg_param_set *ps) {
    return lb_init(m, ps, false);
}

dg_status dg_method_init_lookbehind_asam(dg_method *m, const dg_param_set *ps) {
    return lb_init(m, ps, true);
}
