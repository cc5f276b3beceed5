/* nets/core/batchnorm.c -- see batchnorm.h. Follows oneDNN's
 * batch_normalization developer guide (v2.6): training forward outputs the
 * batch mean and biased variance, backward (dnnl_backward) reads them, or
 * the global statistics when dnnl_use_global_stats is set; running
 * statistics follow PyTorch's torch/nn/modules/batchnorm.py.
 * Shapes: N batch, C channels, H height, W width. */
#include "batchnorm.h"

#include <stdio.h>
#include <string.h>

/* Forward (and, for training instances, backward) pds of one mode. */
static void build_mode(dg_bn *l, dg_ctx *ctx, int mode, const dnnl_memory_desc_t *data_md) {
    unsigned flags = dnnl_use_scale | dnnl_use_shift;
    if (mode == DG_BN_GLOBAL) flags |= dnnl_use_global_stats;
    if (l->cfg.relu) flags |= dnnl_fuse_norm_relu;
    dnnl_batch_normalization_desc_t fd;
    DG_DNNL(dnnl_batch_normalization_forward_desc_init(&fd,
            l->cfg.training ? dnnl_forward_training : dnnl_forward_inference, data_md,
            DG_BN_EPS, flags));
    l->fwd_pd[mode] = dg_pd_new(ctx, &fd, NULL, NULL);
    dg_prim_init(&l->fwd[mode], ctx, l->fwd_pd[mode]);
    const dnnl_memory_desc_t *ws_md =
            dnnl_primitive_desc_query_md(l->fwd_pd[mode], dnnl_query_workspace_md, 0);
    if (ws_md && dnnl_memory_desc_get_size(ws_md) > 0)
        l->ws[mode] = dg_mem_new(ctx, ws_md, DNNL_MEMORY_ALLOCATE);
    if (!l->cfg.training) return;

    const dnnl_memory_desc_t *dst_md = dg_pd_md(l->fwd_pd[mode], dnnl_query_dst_md, 0);
    dnnl_batch_normalization_desc_t bd;
    DG_DNNL(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, dst_md, data_md,
            DG_BN_EPS, flags));
    l->bwd_pd[mode] = dg_pd_new(ctx, &bd, NULL, l->fwd_pd[mode]);
    dg_prim_init(&l->bwd[mode], ctx, l->bwd_pd[mode]);
}

dg_bn_tensors dg_bn_register(dg_param_set *ps, const char *name, int64_t c) {
    dg_bn_tensors t;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s.weight", name);
    t.w_off = dg_params_add(ps, buf, 1, &c, DG_PARAM_NO_DECAY | DG_PARAM_ASAM_SCALED,
            DG_INIT_CONST, 1.f);
    snprintf(buf, sizeof(buf), "%s.bias", name);
    t.b_off = dg_params_add(ps, buf, 1, &c, DG_PARAM_NO_DECAY, DG_INIT_CONST, 0.f);
    snprintf(buf, sizeof(buf), "%s.running_mean", name);
    t.mean_off = dg_params_add_stat(ps, buf, 1, &c, 0.f);
    snprintf(buf, sizeof(buf), "%s.running_var", name);
    t.var_off = dg_params_add_stat(ps, buf, 1, &c, 1.f);
    return t;
}

void dg_bn_init(dg_bn *l, dg_ctx *ctx, dg_param_set *ps, const char *name,
        dnnl_memory_t src, const dg_bn_cfg *cfg) {
    memset(l, 0, sizeof(*l));
    l->cfg = *cfg;
    l->src = src;
    dg_mem_dims4(src, l->dims);
    int64_t c = l->dims[1];

    dg_bn_tensors t = dg_bn_register(ps, name, c);
    l->w_off = t.w_off, l->b_off = t.b_off, l->mean_off = t.mean_off, l->var_off = t.var_off;

    /* The primitive normalises in the source's own layout when it is a
     * plain or channel-blocked one, otherwise in nchw behind a reorder. */
    const dnnl_memory_desc_t *src_md = dg_mem_md(src);
    DG_ASSERT(src_md->ndims == 4);
    dnnl_memory_desc_t data_md = dg_md_chw_compatible(src_md);
    dg_port_bind_in(&l->src_p, ctx, src, &data_md);

    bool batch = cfg->training && !cfg->frozen;
    if (batch) build_mode(l, ctx, DG_BN_BATCH, &data_md);
    build_mode(l, ctx, DG_BN_GLOBAL, &data_md);

    dnnl_memory_desc_t x_md = dg_md_plain(1, &c, dnnl_x);
    l->dst = dg_buf_mem(ctx, dg_pd_md(l->fwd_pd[DG_BN_GLOBAL], dnnl_query_dst_md, 0),
            cfg->dst_slot);
    l->scale = dg_mem_new(ctx, &x_md, DNNL_MEMORY_NONE);
    l->shift = dg_mem_new(ctx, &x_md, DNNL_MEMORY_NONE);
    l->run_mean = dg_mem_new(ctx, &x_md, DNNL_MEMORY_NONE);
    l->run_var = dg_mem_new(ctx, &x_md, DNNL_MEMORY_NONE);
    if (batch) {
        DG_ASSERT(dnnl_memory_desc_equal(dg_mem_md(l->dst),
                dg_pd_md(l->fwd_pd[DG_BN_BATCH], dnnl_query_dst_md, 0)));
        l->mean = dg_mem_new(ctx, &x_md, DNNL_MEMORY_ALLOCATE);
        l->var = dg_mem_new(ctx, &x_md, DNNL_MEMORY_ALLOCATE);
    }
    if (!cfg->training) return;

    const dnnl_memory_desc_t *dsrc_md =
            dg_pd_md(l->bwd_pd[DG_BN_GLOBAL], dnnl_query_diff_src_md, 0);
    if (batch) {
        DG_ASSERT(dnnl_memory_desc_equal(dsrc_md,
                dg_pd_md(l->bwd_pd[DG_BN_BATCH], dnnl_query_diff_src_md, 0)));
        DG_ASSERT(dnnl_memory_desc_equal(
                dg_pd_md(l->bwd_pd[DG_BN_GLOBAL], dnnl_query_diff_dst_md, 0),
                dg_pd_md(l->bwd_pd[DG_BN_BATCH], dnnl_query_diff_dst_md, 0)));
    }
    l->diff_src = dg_buf_mem(ctx, dsrc_md, cfg->diff_slot);
    l->diff_scale = dg_mem_new(ctx, &x_md, DNNL_MEMORY_NONE);
    l->diff_shift = dg_mem_new(ctx, &x_md, DNNL_MEMORY_NONE);
}

/* running <- (1 - momentum)*running + momentum*batch, the variance term
 * unbiased (docs/algorithms.md §2.1); C values, accumulated in double. momentum
 * is the pass's bn_momentum when set (cumulative refresh), else 0.1. */
static void update_running(const dg_bn *l, dg_ctx *ctx, float *stats, double momentum) {
    const int64_t c = l->dims[1];
    const double m = (double)(l->dims[0] * l->dims[2] * l->dims[3]);
    const double mu = momentum > 0 ? momentum : DG_BN_MOMENTUM, unbias = m / (m - 1.0);
    DG_ASSERT(stats != NULL);
    DG_DNNL(dnnl_stream_wait(ctx->stream));
    const float *bm = dg_mem_ptr(l->mean), *bv = dg_mem_ptr(l->var);
    float *rm = stats + l->mean_off, *rv = stats + l->var_off;
    for (int64_t i = 0; i < c; i++) {
        rm[i] = (float)((1.0 - mu) * rm[i] + mu * bm[i]);
        rv[i] = (float)((1.0 - mu) * rv[i] + mu * bv[i] * unbias);
    }
}

void dg_bn_forward(dg_bn *l, dg_ctx *ctx, const dg_pass *p) {
    int mode = p->train && l->fwd_pd[DG_BN_BATCH] ? DG_BN_BATCH : DG_BN_GLOBAL;
    dg_mem_set_ptr(l->scale, p->params + l->w_off);
    dg_mem_set_ptr(l->shift, p->params + l->b_off);
    dg_port_pull(&l->src_p, ctx);
    dg_buf_point(ctx, l->dst, l->cfg.dst_slot);
    dnnl_exec_arg_t args[7] = {
        {DNNL_ARG_SRC, l->src_p.mem},
        {DNNL_ARG_DST, l->dst},
        {DNNL_ARG_SCALE, l->scale},
        {DNNL_ARG_SHIFT, l->shift},
    };
    int nargs = 4;
    if (mode == DG_BN_BATCH) {
        /* m = 1 has no unbiased variance (PyTorch refuses it too). */
        DG_ASSERT(l->dims[0] * l->dims[2] * l->dims[3] > 1);
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_MEAN, l->mean};
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_VARIANCE, l->var};
    } else {
        DG_ASSERT(p->stats != NULL);
        dg_mem_set_ptr(l->run_mean, p->stats + l->mean_off);
        dg_mem_set_ptr(l->run_var, p->stats + l->var_off);
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_MEAN, l->run_mean};
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_VARIANCE, l->run_var};
    }
    if (l->ws[mode]) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, l->ws[mode]};
    dg_prim_exec(&l->fwd[mode], ctx, nargs, args);
    l->last_mode = mode;
    l->forwarded = true;
    if (mode == DG_BN_BATCH && p->update_stats) update_running(l, ctx, p->stats, p->bn_momentum);
}

void dg_bn_redo(dg_bn *l, dg_ctx *ctx, const dg_pass *p) {
    DG_ASSERT(l->cfg.training && l->forwarded);
    dg_mem_set_ptr(l->scale, p->params + l->w_off);
    dg_mem_set_ptr(l->shift, p->params + l->b_off);
    dnnl_memory_t mean = l->mean, var = l->var;
    if (l->last_mode == DG_BN_GLOBAL) {
        DG_ASSERT(p->stats != NULL);
        dg_mem_set_ptr(l->run_mean, p->stats + l->mean_off);
        dg_mem_set_ptr(l->run_var, p->stats + l->var_off);
        mean = l->run_mean;
        var = l->run_var;
    }
    dg_port_pull(&l->src_p, ctx);
    dg_buf_point(ctx, l->dst, l->cfg.dst_slot);
    /* The global-statistics primitive normalises with the given statistics
     * as the batch one does with those it computed; its workspace is its
     * own, so the batch forward's ReLU mask stays for the backward. */
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, l->src_p.mem},
        {DNNL_ARG_DST, l->dst},
        {DNNL_ARG_SCALE, l->scale},
        {DNNL_ARG_SHIFT, l->shift},
        {DNNL_ARG_MEAN, mean},
        {DNNL_ARG_VARIANCE, var},
        {DNNL_ARG_WORKSPACE, l->ws[DG_BN_GLOBAL]},
    };
    dg_prim_exec(&l->fwd[DG_BN_GLOBAL], ctx, l->ws[DG_BN_GLOBAL] ? 7 : 6, args);
}

void dg_bn_backward(dg_bn *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst) {
    DG_ASSERT(l->cfg.training && l->forwarded);
    const int mode = l->last_mode;
    dg_port_bind_in_transient(&l->ddst_p, ctx, diff_dst,
            dg_pd_md(l->bwd_pd[mode], dnnl_query_diff_dst_md, 0), DG_SLOT_DIFF_DST);
    dg_port_pull(&l->ddst_p, ctx);
    dg_mem_set_ptr(l->scale, p->params + l->w_off);
    dg_mem_set_ptr(l->shift, p->params + l->b_off);
    dg_mem_set_ptr(l->diff_scale, p->grad + l->w_off);
    dg_mem_set_ptr(l->diff_shift, p->grad + l->b_off);
    dnnl_memory_t mean = l->mean, var = l->var;
    if (mode == DG_BN_GLOBAL) {
        DG_ASSERT(p->stats != NULL);
        dg_mem_set_ptr(l->run_mean, p->stats + l->mean_off);
        dg_mem_set_ptr(l->run_var, p->stats + l->var_off);
        mean = l->run_mean;
        var = l->run_var;
    }
    dg_buf_point(ctx, l->diff_src, l->cfg.diff_slot);
    dnnl_exec_arg_t args[10] = {
        {DNNL_ARG_SRC, l->src_p.mem},
        {DNNL_ARG_MEAN, mean},
        {DNNL_ARG_VARIANCE, var},
        {DNNL_ARG_DIFF_DST, l->ddst_p.mem},
        {DNNL_ARG_SCALE, l->scale},
        {DNNL_ARG_SHIFT, l->shift},
        {DNNL_ARG_DIFF_SRC, l->diff_src},
        {DNNL_ARG_DIFF_SCALE, l->diff_scale},
        {DNNL_ARG_DIFF_SHIFT, l->diff_shift},
    };
    int nargs = 9;
    if (l->ws[mode]) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, l->ws[mode]};
    dg_prim_exec(&l->bwd[mode], ctx, nargs, args);
}

void dg_bn_free(dg_bn *l) {
    for (int m = 0; m < DG_BN_NMODES; m++) {
        dg_prim_free(&l->fwd[m]);
        dg_prim_free(&l->bwd[m]);
        dnnl_primitive_desc_destroy(l->fwd_pd[m]);
        dnnl_primitive_desc_destroy(l->bwd_pd[m]);
        dnnl_memory_destroy(l->ws[m]);
    }
    dg_port_free(&l->src_p);
    dg_port_free(&l->ddst_p);
    dnnl_memory_t mems[] = {l->dst, l->diff_src, l->mean, l->var, l->run_mean, l->run_var,
            l->scale, l->shift, l->diff_scale, l->diff_shift};
    for (size_t i = 0; i < DG_ARRAY_LEN(mems); i++) dnnl_memory_destroy(mems[i]);
    memset(l, 0, sizeof(*l));
}
