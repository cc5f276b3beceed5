/* nets/core/relu.c -- see relu.h. Follows docs/style.md §7 Snippet 1, with every
 * pd from dg_pd_new (shared scratchpad) and every memory from dg_mem_new. */
#include "relu.h"

#include <string.h>

void dg_relu_init(dg_relu *l, dg_ctx *ctx, dnnl_memory_t src) {
    memset(l, 0, sizeof(*l));
    l->src = src;
    const dnnl_memory_desc_t *src_md = dg_mem_md(src);

    dnnl_eltwise_desc_t fd, bd;
    DG_DNNL(dnnl_eltwise_forward_desc_init(&fd, dnnl_forward_training, dnnl_eltwise_relu,
            src_md, 0.f, 0.f));
    l->fwd_pd = dg_pd_new(ctx, &fd, NULL, NULL);
    /* A backward pd is always created with its forward pd as the hint. */
    DG_DNNL(dnnl_eltwise_backward_desc_init(&bd, dnnl_eltwise_relu,
            src_md /* diff_data */, src_md /* data */, 0.f, 0.f));
    l->bwd_pd = dg_pd_new(ctx, &bd, NULL, l->fwd_pd);
    dg_prim_init(&l->fwd, ctx, l->fwd_pd);
    dg_prim_init(&l->bwd, ctx, l->bwd_pd);

    l->dst = dg_mem_new(ctx, dg_pd_md(l->fwd_pd, dnnl_query_dst_md, 0), DNNL_MEMORY_ALLOCATE);
    l->diff_src = dg_mem_new(ctx, dg_pd_md(l->bwd_pd, dnnl_query_diff_src_md, 0),
            DNNL_MEMORY_ALLOCATE);
}

void dg_relu_forward(dg_relu *l, dg_ctx *ctx, const dg_pass *p) {
    (void)p;
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, l->src},
        {DNNL_ARG_DST, l->dst},
    };
    dg_prim_exec(&l->fwd, ctx, (int)DG_ARRAY_LEN(args), args);
}

void dg_relu_backward(dg_relu *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst) {
    (void)p;
    dg_port_bind_in(&l->ddst_p, ctx, diff_dst, dg_pd_md(l->bwd_pd, dnnl_query_diff_dst_md, 0));
    dg_port_pull(&l->ddst_p, ctx);
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, l->src},
        {DNNL_ARG_DIFF_DST, l->ddst_p.mem},
        {DNNL_ARG_DIFF_SRC, l->diff_src},
    };
    dg_prim_exec(&l->bwd, ctx, (int)DG_ARRAY_LEN(args), args);
}

void dg_relu_free(dg_relu *l) {
    /* Every destroy accepts NULL, so this is safe on a half-built layer. */
    dg_prim_free(&l->fwd);
    dg_prim_free(&l->bwd);
    dnnl_primitive_desc_destroy(l->fwd_pd);
    dnnl_primitive_desc_destroy(l->bwd_pd);
    dg_port_free(&l->ddst_p);
    dnnl_memory_destroy(l->dst);
    dnnl_memory_destroy(l->diff_src);
    memset(l, 0, sizeof(*l));
}
