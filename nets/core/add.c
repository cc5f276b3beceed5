/* nets/core/add.c -- see add.h. */
#include "add.h"

#include <string.h>

/* A descriptor that owns its buffer: md itself unless md is a view into a
 * larger tensor (then plain nchw). */
static dnnl_memory_desc_t dense_md(const dnnl_memory_desc_t *md) {
    if (md->format_kind == dnnl_blocked && md->offset0 == 0) return *md;
    return dg_md_plain(md->ndims, md->dims, md->ndims == 4 ? dnnl_nchw : dnnl_nc);
}

void dg_add_init_md(dg_add *l, dg_ctx *ctx, const dnnl_memory_desc_t *a_md,
        const dnnl_memory_desc_t *b_md, const dg_add_cfg *cfg) {
    memset(l, 0, sizeof(*l));
    l->cfg = *cfg;
    DG_ASSERT(a_md->ndims == b_md->ndims && (a_md->ndims == 4 || a_md->ndims == 2));
    for (int i = 0; i < 4; i++) {
        l->dims[i] = i < a_md->ndims ? a_md->dims[i] : 1;
        DG_ASSERT(i >= a_md->ndims || a_md->dims[i] == b_md->dims[i]);
    }
    l->a_md = dense_md(a_md);
    l->b_md = dense_md(b_md);
    DG_ASSERT(!cfg->in_place || dnnl_memory_desc_equal(&l->a_md, a_md));

    /* oneDNN 2.6.3's jit binary with an eltwise post-op writes wrong values
     * and past the end of dst on channel-blocked layouts whenever the vector
     * width differs from the block (nChw16c on AVX2/AVX/SSE4.1, nChw8c on
     * AVX-512). Plain layouts fuse; blocked ones run the ReLU in place after
     * the add, which is correct on every ISA. */
    l->fused_relu = cfg->relu && l->a_md.format_desc.blocking.inner_nblks == 0;
    dnnl_post_ops_t po = NULL;
    if (l->fused_relu) {
        DG_DNNL(dnnl_post_ops_create(&po));
        DG_DNNL(dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_relu, 0.f, 0.f));
    }
    dnnl_binary_desc_t fd;
    DG_DNNL(dnnl_binary_desc_init(&fd, dnnl_binary_add, &l->a_md, &l->a_md, &l->a_md));
    l->fwd_pd = dg_pd_new(ctx, &fd, po, NULL);
    dnnl_post_ops_destroy(po);
    dg_prim_init(&l->fwd, ctx, l->fwd_pd);
    const dnnl_memory_desc_t *dst_md = dg_pd_md(l->fwd_pd, dnnl_query_dst_md, 0);
    DG_ASSERT(dnnl_memory_desc_equal(dst_md, &l->a_md));
    if (!cfg->in_place) l->dst = dg_mem_new(ctx, dst_md, DNNL_MEMORY_ALLOCATE);
    if (!cfg->relu) return;

    /* relu_use_dst_for_bwd: the backward reads dst, not the sum. */
    dnnl_eltwise_desc_t efd, ebd;
    DG_DNNL(dnnl_eltwise_forward_desc_init(&efd, dnnl_forward_training,
            dnnl_eltwise_relu_use_dst_for_bwd, dst_md, 0.f, 0.f));
    l->relu_fwd_pd = dg_pd_new(ctx, &efd, NULL, NULL);
    if (!l->fused_relu) dg_prim_init(&l->relu_fwd, ctx, l->relu_fwd_pd);
    DG_DNNL(dnnl_eltwise_backward_desc_init(&ebd, dnnl_eltwise_relu_use_dst_for_bwd, dst_md,
            dst_md, 0.f, 0.f));
    l->relu_bwd_pd = dg_pd_new(ctx, &ebd, NULL, l->relu_fwd_pd);
    dg_prim_init(&l->relu_bwd, ctx, l->relu_bwd_pd);
    l->diff_pre = dg_buf_mem(ctx, dg_pd_md(l->relu_bwd_pd, dnnl_query_diff_src_md, 0),
            cfg->diff_slot);
}

void dg_add_init(dg_add *l, dg_ctx *ctx, dnnl_memory_t a, dnnl_memory_t b, const dg_add_cfg *cfg) {
    dg_add_init_md(l, ctx, dg_mem_md(a), dg_mem_md(b), cfg);
    l->a = a;
    l->b = b;
    if (cfg->in_place) l->dst = a;
    dg_port_bind_in(&l->a_p, ctx, a, &l->a_md);
    dg_port_bind_in(&l->b_p, ctx, b, &l->a_md);
}

void dg_add_sum(dg_add *l, dg_ctx *ctx, dnnl_memory_t a, dnnl_memory_t b) {
    if (l->cfg.in_place) {
        DG_ASSERT(dnnl_memory_desc_equal(dg_mem_md(a), &l->a_md));
        l->dst = a;
    }
    dg_port_bind_in(&l->a_p, ctx, a, &l->a_md);
    dg_port_bind_in(&l->b_p, ctx, b, &l->a_md);
    dg_port_pull(&l->a_p, ctx);
    dg_port_pull(&l->b_p, ctx);
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC_0, l->a_p.mem},
        {DNNL_ARG_SRC_1, l->b_p.mem},
        {DNNL_ARG_DST, l->dst},
    };
    dg_prim_exec(&l->fwd, ctx, 3, args);
    if (l->relu_fwd.prim) {
        dnnl_exec_arg_t rargs[] = {{DNNL_ARG_SRC, l->dst}, {DNNL_ARG_DST, l->dst}};
        dg_prim_exec(&l->relu_fwd, ctx, 2, rargs);
    }
}

void dg_add_forward(dg_add *l, dg_ctx *ctx, const dg_pass *p) {
    (void)p;
    DG_ASSERT(l->a != NULL && l->b != NULL);
    dg_add_sum(l, ctx, l->a, l->b);
}

void dg_add_backward(dg_add *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst) {
    (void)p;
    dnnl_memory_t g = diff_dst;
    if (l->cfg.relu) {
        dg_port_bind_in(&l->ddst_p, ctx, diff_dst, dg_mem_md(l->dst));
        dg_port_pull(&l->ddst_p, ctx);
        dg_buf_point(ctx, l->diff_pre, l->cfg.diff_slot);
        dnnl_exec_arg_t args[] = {
            {DNNL_ARG_DST, l->dst},
            {DNNL_ARG_DIFF_DST, l->ddst_p.mem},
            {DNNL_ARG_DIFF_SRC, l->diff_pre},
        };
        dg_prim_exec(&l->relu_bwd, ctx, 3, args);
        g = l->diff_pre;
    }
    dg_port_bind_in(&l->da_p, ctx, g, &l->a_md);
    dg_port_bind_in(&l->db_p, ctx, g, &l->b_md);
    dg_port_pull(&l->da_p, ctx);
    dg_port_pull(&l->db_p, ctx);
    l->diff_a = l->da_p.mem;
    l->diff_b = l->db_p.mem;
}

void dg_add_free(dg_add *l) {
    dg_prim_free(&l->fwd);
    dg_prim_free(&l->relu_fwd);
    dg_prim_free(&l->relu_bwd);
    dnnl_primitive_desc_destroy(l->fwd_pd);
    dnnl_primitive_desc_destroy(l->relu_fwd_pd);
    dnnl_primitive_desc_destroy(l->relu_bwd_pd);
    dg_port *ports[] = {&l->a_p, &l->b_p, &l->ddst_p, &l->da_p, &l->db_p};
    for (size_t i = 0; i < DG_ARRAY_LEN(ports); i++) dg_port_free(ports[i]);
    if (!l->cfg.in_place) dnnl_memory_destroy(l->dst);
    dnnl_memory_destroy(l->diff_pre);
    memset(l, 0, sizeof(*l));
}
