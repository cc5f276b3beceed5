/* nets/core/linear.c -- see linear.h. The op descriptors are built here;
 * the primitives, wrappers and ports are dg_wlayer's, as for conv.c. */
#include "linear.h"

#include <stdio.h>
#include <string.h>

void dg_linear_init(dg_linear *l, dg_ctx *ctx, dg_param_set *ps, const char *name,
        dnnl_memory_t src, const dg_linear_cfg *cfg) {
    memset(l, 0, sizeof(*l));
    l->cfg = *cfg;
    l->src = src;
    const dnnl_memory_desc_t *smd = dg_mem_md(src);
    DG_ASSERT(smd->ndims == 2 || smd->ndims == 4);
    DG_ASSERT(cfg->oc > 0);
    l->src_ndims = smd->ndims;
    l->ic = 1;
    for (int i = 0; i < smd->ndims; i++) {
        l->src_dims[i] = smd->dims[i];
        if (i > 0) l->ic *= smd->dims[i];
    }
    const int64_t oc = cfg->oc;
    l->dst_dims[0] = l->src_dims[0];
    l->dst_dims[1] = oc;

    /* Parameters: PyTorch's nn.Linear default, U(-1/sqrt(IC), 1/sqrt(IC)). */
    char buf[256];
    const float bound = dg_init_default_bound(l->ic);
    int64_t w2[2] = {oc, l->ic};
    snprintf(buf, sizeof(buf), "%s.weight", name);
    l->w_off = dg_params_add(ps, buf, 2, w2, DG_PARAM_ASAM_SCALED, DG_INIT_UNIFORM, bound);
    if (cfg->bias) {
        snprintf(buf, sizeof(buf), "%s.bias", name);
        l->b_off = dg_params_add(ps, buf, 1, &oc, DG_PARAM_NO_DECAY, DG_INIT_UNIFORM, bound);
    }

    /* The primitive's weights have the src rank; the stored (OC, IC) slice
     * is the same bytes as oihw (OC, C, H, W). */
    const int nd = l->src_ndims;
    int64_t w_dims[4] = {oc, l->src_dims[1], l->src_dims[2], l->src_dims[3]};
    if (nd == 2) w_dims[1] = l->ic;
    /* src, weights and diff_dst in the compute type (wlayer.h), the rest f32. */
    const dnnl_data_type_t cdt = ctx->compute_dt;
    dnnl_memory_desc_t src_any = dg_md_any_dt(nd, l->src_dims, cdt);
    dnnl_memory_desc_t w_any = dg_md_any_dt(nd, w_dims, cdt);
    dnnl_memory_desc_t src_f32 = dg_md_any(nd, l->src_dims);
    dnnl_memory_desc_t w_f32 = dg_md_any(nd, w_dims);
    dnnl_memory_desc_t dst_any = dg_md_any(2, l->dst_dims);
    dnnl_memory_desc_t ddst_any = dg_md_any_dt(2, l->dst_dims, cdt);
    dnnl_memory_desc_t w_plain = dg_md_plain(nd, w_dims, nd == 4 ? dnnl_oihw : dnnl_oi);
    dnnl_memory_desc_t b_plain = dg_md_plain(1, &oc, dnnl_x);
    const dnnl_memory_desc_t *b_md = cfg->bias ? &b_plain : NULL;

    dnnl_inner_product_desc_t fd;
    DG_DNNL(dnnl_inner_product_forward_desc_init(&fd,
            cfg->training ? dnnl_forward_training : dnnl_forward_inference,
            &src_any, &w_any, b_md, &dst_any));
    dnnl_primitive_desc_t fwd_pd = dg_pd_try_new(ctx, &fd, NULL, NULL);
    dnnl_primitive_desc_t bwd_w_pd = NULL, bwd_data_pd = NULL;
    if (fwd_pd && cfg->training) {
        dnnl_inner_product_desc_t bwd;
        DG_DNNL(dnnl_inner_product_backward_weights_desc_init(&bwd, &src_any, &w_f32, b_md,
                &ddst_any));
        bwd_w_pd = dg_pd_try_new(ctx, &bwd, NULL, fwd_pd);
        if (!cfg->no_diff_src) {
            dnnl_inner_product_desc_t bdd;
            DG_DNNL(dnnl_inner_product_backward_data_desc_init(&bdd, &src_f32, &w_any,
                    &ddst_any));
            bwd_data_pd = dg_pd_try_new(ctx, &bdd, NULL, fwd_pd);
        }
    }
    if (!fwd_pd || (cfg->training && (!bwd_w_pd || (!cfg->no_diff_src && !bwd_data_pd)))) {
        char shape[96];
        snprintf(shape, sizeof(shape), "%lldx%lld -> %lld %s", (long long)l->src_dims[0],
                (long long)l->ic, (long long)oc, cdt == dnnl_bf16 ? "bf16" : "f32");
        const char *what = !fwd_pd ? "inner product forward"
                : !bwd_w_pd ? "inner product backward-weights" : "inner product backward-data";
        dnnl_primitive_desc_t pds[] = {fwd_pd, bwd_w_pd, bwd_data_pd};
        for (size_t i = 0; i < DG_ARRAY_LEN(pds); i++) dnnl_primitive_desc_destroy(pds[i]);
        const dnnl_memory_desc_t dst_plain = dg_md_plain(2, l->dst_dims, dnnl_nc);
        const dnnl_memory_desc_t src_plain = dg_md_plain(nd, l->src_dims,
                nd == 4 ? dnnl_nchw : dnnl_nc);
        dg_wlayer_init_unbuilt(&l->wl, ctx, name, what, shape, &dst_plain, NULL,
                cfg->training && !cfg->no_diff_src ? &src_plain : NULL, DG_SLOT_OWN);
        l->dst = l->wl.dst;
        l->diff_src = l->wl.diff_src;
        return;
    }
    dg_wlayer_init_forward(&l->wl, ctx, src, fwd_pd, &w_plain, b_md, NULL);
    l->dst = l->wl.dst;
    if (!cfg->training) return;
    dg_wlayer_init_backward(&l->wl, ctx, bwd_w_pd, bwd_data_pd, &w_plain, b_md,
            DG_SLOT_OWN);
    l->diff_src = l->wl.diff_src;
}

void dg_linear_forward(dg_linear *l, dg_ctx *ctx, const dg_pass *p) {
    dg_wlayer_forward(&l->wl, ctx, p->params + l->w_off,
            l->cfg.bias ? p->params + l->b_off : NULL, p->weights_version);
}

void dg_linear_backward(dg_linear *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst) {
    DG_ASSERT(l->cfg.training);
    dg_wlayer_backward(&l->wl, ctx, diff_dst, p->grad + l->w_off,
            l->cfg.bias ? p->grad + l->b_off : NULL);
}

void dg_linear_free(dg_linear *l) {
    dg_wlayer_free(&l->wl);
    memset(l, 0, sizeof(*l));
}
