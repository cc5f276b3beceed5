/* optimizers/sam.c -- SAM (Foret et al., arXiv 2010.01412; davda54/sam
 * sam.py), docs/algorithms.md §7, and ASAM (Kwon et al., arXiv 2102.11600;
 * SamsungLabs/ASAM asam.py), §8.
 *
 * One step: gradient at w (the only call with DG_CLOSURE_BN_UPDATE),
 * perturbation w + eps through the shared helper dg_vec_axpy, gradient at
 * the perturbed point with BN statistics untouched, exact restore of w by
 * copy, base update with the perturbed gradient.
 *   SAM:  eps = rho * g / (||g|| + 1e-12)
 *   ASAM: T_i = |w_i| + eta on DG_PARAM_ASAM_SCALED tensors, 1 elsewhere;
 *         eps_i = rho * T_i^2 * g_i / (||T (.) g|| + 1e-12)
 * Owns: buf[0] = w0 (d), the saved weights (scratch, not checkpointed).
 * ASAM builds T (.) g and then T^2 (.) g in place in ps->grad, which the
 * second closure call overwrites anyway; with every T_i = 1 it performs
 * exactly SAM's arithmetic (docs/algorithms.md §14 invariant 19). */
#include <math.h>

#include "method_impl.h"

void dg_asam_scale(const dg_optim *o, const float *w, float *g, float eta) {
    const dg_optim_span *sp = o->spans;
#pragma omp parallel for schedule(static) if (o->n_spans > 1)
    for (size_t k = 0; k < o->n_spans; k++) {
        if (!sp[k].asam_scaled) continue;
        const size_t lo = sp[k].offset, hi = sp[k].offset + sp[k].n;
#pragma omp simd
        for (size_t i = lo; i < hi; i++) g[i] = g[i] * (fabsf(w[i]) + eta);
    }
}

/* Shared tail of both steps: w0 <- w; w <- w + c*v; g at w; w <- w0; BASE. */
static void perturb_descend(dg_method *m, dg_param_set *ps, const dg_closure *cl, float lr,
        float c, const float *v) {
    float *w0 = m->buf[0]; /* (d) */
    dg_vec_copy(w0, ps->data, ps->d);
    dg_vec_axpy(ps->data, c, v, ps->d);
    cl->eval(cl->ctx, DG_DOMAIN_ALL, 0);
    dg_vec_copy(ps->data, w0, ps->d); /* exact restore, never w - eps */
    m->base->ops->update(m->base, ps->data, ps->grad, lr);
    m->t++;
}

static void sam_step(dg_method *m, dg_param_set *ps, const dg_closure *cl, float lr) {
    cl->eval(cl->ctx, DG_DOMAIN_ALL, DG_CLOSURE_BN_UPDATE);
    const float c = (float)(m->cfg.sam_rho / (dg_vec_norm2(ps->grad, ps->d) + 1e-12));
    perturb_descend(m, ps, cl, lr, c, ps->grad);
}

static void asam_step(dg_method *m, dg_param_set *ps, const dg_closure *cl, float lr) {
    const float eta = (float)m->cfg.asam_eta;
    cl->eval(cl->ctx, DG_DOMAIN_ALL, DG_CLOSURE_BN_UPDATE);
    dg_asam_scale(m->base, ps->data, ps->grad, eta);                 /* T (.) g */
    const float c = (float)(m->cfg.asam_rho / (dg_vec_norm2(ps->grad, ps->d) + 1e-12));
    dg_asam_scale(m->base, ps->data, ps->grad, eta);                 /* T^2 (.) g */
    perturb_descend(m, ps, cl, lr, c, ps->grad);
}

static const dg_method_ops sam_ops = {.name = "sam", .step = sam_step};
static const dg_method_ops asam_ops = {.name = "asam", .step = asam_step};

dg_status dg_method_init_sam(dg_method *m, const dg_param_set *ps) {
    if (!(m->cfg.sam_rho >= 0.0)) {
        dg_log_error("optim.sam_rho = %g: must be >= 0", m->cfg.sam_rho);
        return DG_STATUS_ERR_CONFIG;
    }
    m->ops = &sam_ops;
    m->buf[0] = dg_method_new_buf(ps->d);
    return DG_STATUS_OK;
}

dg_status dg_method_init_asam(dg_method *m, const dg_param_set *ps) {
    if (!(m->cfg.asam_rho >= 0.0) || !(m->cfg.asam_eta >= 0.0)) {
        dg_log_error("optim.asam_rho = %g, optim.asam_eta = %g: both must be >= 0",
                m->cfg.asam_rho, m->cfg.asam_eta);
        return DG_STATUS_ERR_CONFIG;
    }
    m->ops = &asam_ops;
    m->buf[0] = dg_method_new_buf(ps->d);
    return DG_STATUS_OK;
}
