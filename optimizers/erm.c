/* optimizers/erm.c -- ERM: one closure call on the whole batch (the only one
 * of the step, so it carries DG_CLOSURE_BN_UPDATE, docs/algorithms.md §2.3), one
 * base update. No state beyond the base optimizer's. */
#include "method_impl.h"

static void erm_step(dg_method *m, dg_param_set *ps, const dg_closure *cl, float lr) {
    cl->eval(cl->ctx, DG_DOMAIN_ALL, DG_CLOSURE_BN_UPDATE);
    m->base->ops->update(m->base, ps->data, ps->grad, lr);
    m->t++;
}

static const dg_method_ops erm_ops = {.name = "erm", .step = erm_step};

dg_status dg_method_init_erm(dg_method *m, const dg_param_set *ps) {
    (void)ps;
    m->ops = &erm_ops;
    return DG_STATUS_OK;
}
