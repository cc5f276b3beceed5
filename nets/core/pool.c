/* nets/core/pool.c -- see pool.h. Follows oneDNN's cnn_training_f32
 * example: pooling dst in the src layout, backward hinted by the forward pd,
 * max-pool workspace from the forward pd's workspace descriptor. */
#include "pool.h"

#include <string.h>

#include "conv.h"

/* Right padding for which oneDNN's (in + pl + pr - k)/s + 1 equals `out`:
 * the last window ends exactly at the last element it may read. Never
 * negative (oneDNN's size check floors, so 0 gives the same windows). */
static int64_t pool_pad_r(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
    int64_t pr = (out - 1) * stride + k - in - pad;
    return pr > 0 ? pr : 0;
}

void dg_pool_init(dg_pool *l, dg_ctx *ctx, dnnl_memory_t src, const dg_pool_cfg *cfg) {
    memset(l, 0, sizeof(*l));
    l->cfg = *cfg;
    l->src = src;
    dg_mem_dims4(src, l->src_dims);
    const int64_t h = l->src_dims[2], w = l->src_dims[3];
    dnnl_dims_t kernel, strides, pad_l, pad_r;
    if (cfg->kind == DG_POOL_GLOBAL_AVG) {
        kernel[0] = strides[0] = h;
        kernel[1] = strides[1] = w;
        pad_l[0] = pad_l[1] = pad_r[0] = pad_r[1] = 0;
    } else {
        DG_ASSERT(cfg->k > 0 && cfg->stride > 0 && cfg->pad >= 0 && 2 * cfg->pad <= cfg->k);
        kernel[0] = kernel[1] = cfg->k;
        strides[0] = strides[1] = cfg->stride;
        pad_l[0] = pad_l[1] = cfg->pad;
    }
    memcpy(l->dst_dims, l->src_dims, sizeof(l->dst_dims));
    for (int i = 0; i < 2; i++) {
        const int64_t in = l->src_dims[2 + i];
        const int64_t out = dg_conv_out_size(in, kernel[i], strides[i], pad_l[i], 1);
        DG_ASSERT(out > 0);
        l->dst_dims[2 + i] = out;
        pad_r[i] = pool_pad_r(in, out, kernel[i], strides[i], pad_l[i]);
        DG_ASSERT(pad_r[i] <= pad_l[i]);
        l->pad_r[i] = pad_r[i];
    }

    const dnnl_alg_kind_t alg = cfg->kind == DG_POOL_MAX ? dnnl_pooling_max
                                                         : dnnl_pooling_avg_include_padding;
    dnnl_memory_desc_t src_md = dg_md_chw_compatible(dg_mem_md(src));
    dnnl_memory_desc_t dst_any = dg_md_any(4, l->dst_dims);
    dnnl_pooling_desc_t fd;
    DG_DNNL(dnnl_pooling_forward_desc_init(&fd,
            cfg->training ? dnnl_forward_training : dnnl_forward_inference, alg, &src_md,
            &dst_any, strides, kernel, pad_l, pad_r));
    l->fwd_pd = dg_pd_new(ctx, &fd, NULL, NULL);
    dg_prim_init(&l->fwd, ctx, l->fwd_pd);
    const dnnl_memory_desc_t *dst_md = dg_pd_md(l->fwd_pd, dnnl_query_dst_md, 0);
    l->dst = dg_mem_new(ctx, dst_md, DNNL_MEMORY_ALLOCATE);
    dg_port_bind_in(&l->src_p, ctx, src, &src_md);
    const dnnl_memory_desc_t *ws_md =
            dnnl_primitive_desc_query_md(l->fwd_pd, dnnl_query_workspace_md, 0);
    if (ws_md && dg_md_bytes(ws_md) > 0) l->ws = dg_mem_new(ctx, ws_md, DNNL_MEMORY_ALLOCATE);
    if (!cfg->training) return;

    dnnl_pooling_desc_t bd;
    DG_DNNL(dnnl_pooling_backward_desc_init(&bd, alg, &src_md, dst_md, strides, kernel,
            pad_l, pad_r));
    l->bwd_pd = dg_pd_new(ctx, &bd, NULL, l->fwd_pd);
    dg_prim_init(&l->bwd, ctx, l->bwd_pd);
    l->diff_src = dg_buf_mem(ctx, dg_pd_md(l->bwd_pd, dnnl_query_diff_src_md, 0),
            cfg->diff_slot);
}

void dg_pool_forward(dg_pool *l, dg_ctx *ctx, const dg_pass *p) {
    (void)p;
    dg_port_pull(&l->src_p, ctx);
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, l->src_p.mem},
        {DNNL_ARG_DST, l->dst},
        {DNNL_ARG_WORKSPACE, l->ws},
    };
    dg_prim_exec(&l->fwd, ctx, l->ws ? 3 : 2, args);
}

void dg_pool_backward(dg_pool *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst) {
    (void)p;
    DG_ASSERT(l->cfg.training);
    dg_port_bind_in_transient(&l->ddst_p, ctx, diff_dst,
            dg_pd_md(l->bwd_pd, dnnl_query_diff_dst_md, 0), DG_SLOT_DIFF_DST);
    dg_port_pull(&l->ddst_p, ctx);
    dg_buf_point(ctx, l->diff_src, l->cfg.diff_slot);
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_DIFF_DST, l->ddst_p.mem},
        {DNNL_ARG_DIFF_SRC, l->diff_src},
        {DNNL_ARG_WORKSPACE, l->ws},
    };
    dg_prim_exec(&l->bwd, ctx, l->ws ? 3 : 2, args);
}

void dg_pool_free(dg_pool *l) {
    dg_prim_free(&l->fwd);
    dg_prim_free(&l->bwd);
    dnnl_primitive_desc_destroy(l->fwd_pd);
    dnnl_primitive_desc_destroy(l->bwd_pd);
    dg_port_free(&l->src_p);
    dg_port_free(&l->ddst_p);
    dnnl_memory_destroy(l->dst);
    dnnl_memory_destroy(l->diff_src);
    dnnl_memory_destroy(l->ws);
    memset(l, 0, sizeof(*l));
}
