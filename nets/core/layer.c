/* nets/core/layer.c -- see layer.h. */
#include "layer.h"

#include <stdatomic.h>
#include <string.h>

uint64_t dg_weights_version_new(void) {
    static atomic_uint_fast64_t last;
    return (uint64_t)atomic_fetch_add(&last, 1) + 1;
}

dg_pass dg_pass_train(const dg_param_set *ps) {
    dg_pass p;
    memset(&p, 0, sizeof(p));
    p.params = ps->data;
    p.stats = ps->stats;
    p.grad = ps->grad;
    p.train = true;
    p.update_stats = true;
    return p;
}

void dg_pass_grad_ready(const dg_pass *p, dg_ctx *ctx, size_t lo) {
    if (!p->grad_ready) return;
    DG_DNNL(dnnl_stream_wait(ctx->stream));
    p->grad_ready(p->grad_user, lo);
}

dg_pass dg_pass_eval(const dg_param_set *ps) {
    dg_pass p = dg_pass_train(ps);
    p.train = false;
    p.update_stats = false;
    return p;
}

void dg_mem_dims4(const_dnnl_memory_t m, int64_t dims[4]) {
    const dnnl_memory_desc_t *md = dg_mem_md(m);
    DG_ASSERT(md->ndims == 4 || md->ndims == 2);
    for (int i = 0; i < 4; i++) dims[i] = i < md->ndims ? md->dims[i] : 1;
}
