/* nets/core/linear.c -- see linear.h. Built like conv.c: format_tag_any for
 * src/weights/dst, backward pds hinted by the forward pd, reorders only
 * where two layouts really differ. */
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
    dnnl_memory_desc_t src_any = dg_md_any(nd, l->src_dims);
    dnnl_memory_desc_t w_any = dg_md_any(nd, w_dims);
    dnnl_memory_desc_t dst_any = dg_md_any(2, l->dst_dims);
    dnnl_memory_desc_t w_plain = dg_md_plain(nd, w_dims, nd == 4 ? dnnl_oihw : dnnl_oi);
    dnnl_memory_desc_t b_plain = dg_md_plain(1, &oc, dnnl_x);
    const dnnl_memory_desc_t *b_md = cfg->bias ? &b_plain : NULL;

    dnnl_inner_product_desc_t fd;
    DG_DNNL(dnnl_inner_product_forward_desc_init(&fd,
            cfg->training ? dnnl_forward_training : dnnl_forward_inference,
            &src_any, &w_any, b_md, &dst_any));
    l->fwd_pd = dg_pd_new(ctx, &fd, NULL, NULL);
    dg_prim_init(&l->fwd, ctx, l->fwd_pd);

    l->dst = dg_mem_new(ctx, dg_pd_md(l->fwd_pd, dnnl_query_dst_md, 0), DNNL_MEMORY_ALLOCATE);
    l->w_user = dg_mem_new(ctx, &w_plain, DNNL_MEMORY_NONE);
    if (cfg->bias) l->b_user = dg_mem_new(ctx, &b_plain, DNNL_MEMORY_NONE);
    dg_port_bind_in(&l->src_p, ctx, src, dg_pd_md(l->fwd_pd, dnnl_query_src_md, 0));
    dg_port_bind_in(&l->w_p, ctx, l->w_user, dg_pd_md(l->fwd_pd, dnnl_query_weights_md, 0));
    if (!cfg->training) return;

    dnnl_inner_product_desc_t bwd;
    DG_DNNL(dnnl_inner_product_backward_weights_desc_init(&bwd, &src_any, &w_any, b_md,
            &dst_any));
    l->bwd_w_pd = dg_pd_new(ctx, &bwd, NULL, l->fwd_pd);
    dg_prim_init(&l->bwd_w, ctx, l->bwd_w_pd);
    l->dw_user = dg_mem_new(ctx, &w_plain, DNNL_MEMORY_NONE);
    if (cfg->bias) {
        DG_ASSERT(dnnl_memory_desc_equal(&b_plain,
                dg_pd_md(l->bwd_w_pd, dnnl_query_diff_weights_md, 1)));
        l->db_user = dg_mem_new(ctx, &b_plain, DNNL_MEMORY_NONE);
    }
    dg_port_bind_in(&l->src_w_p, ctx, l->src_p.mem, dg_pd_md(l->bwd_w_pd, dnnl_query_src_md, 0));
    dg_port_bind_out(&l->dw_p, ctx, l->dw_user,
            dg_pd_md(l->bwd_w_pd, dnnl_query_diff_weights_md, 0));

    if (!cfg->no_diff_src) {
        dnnl_inner_product_desc_t bdd;
        DG_DNNL(dnnl_inner_product_backward_data_desc_init(&bdd, &src_any, &w_any, &dst_any));
        l->bwd_data_pd = dg_pd_new(ctx, &bdd, NULL, l->fwd_pd);
        dg_prim_init(&l->bwd_data, ctx, l->bwd_data_pd);
        l->diff_src = dg_mem_new(ctx, dg_pd_md(l->bwd_data_pd, dnnl_query_diff_src_md, 0),
                DNNL_MEMORY_ALLOCATE);
        dg_port_bind_in(&l->w_d_p, ctx, l->w_p.mem,
                dg_pd_md(l->bwd_data_pd, dnnl_query_weights_md, 0));
    }
}

void dg_linear_forward(dg_linear *l, dg_ctx *ctx, const dg_pass *p) {
    dg_mem_set_ptr(l->w_user, p->params + l->w_off);
    if (l->b_user) dg_mem_set_ptr(l->b_user, p->params + l->b_off);
    dg_port_pull(&l->src_p, ctx);
    dg_port_pull(&l->w_p, ctx);
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, l->src_p.mem},
        {DNNL_ARG_WEIGHTS, l->w_p.mem},
        {DNNL_ARG_DST, l->dst},
        {DNNL_ARG_BIAS, l->b_user},
    };
    dg_prim_exec(&l->fwd, ctx, l->b_user ? 4 : 3, args);
}

void dg_linear_backward(dg_linear *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst) {
    DG_ASSERT(l->cfg.training);
    dg_port_bind_in(&l->ddst_w_p, ctx, diff_dst, dg_pd_md(l->bwd_w_pd, dnnl_query_diff_dst_md, 0));
    dg_port_pull(&l->ddst_w_p, ctx);
    dg_port_pull(&l->src_w_p, ctx);
    dg_mem_set_ptr(l->dw_user, p->grad + l->w_off);
    if (l->db_user) dg_mem_set_ptr(l->db_user, p->grad + l->b_off);
    dnnl_exec_arg_t wargs[] = {
        {DNNL_ARG_SRC, l->src_w_p.mem},
        {DNNL_ARG_DIFF_DST, l->ddst_w_p.mem},
        {DNNL_ARG_DIFF_WEIGHTS, l->dw_p.mem},
        {DNNL_ARG_DIFF_BIAS, l->db_user},
    };
    dg_prim_exec(&l->bwd_w, ctx, l->db_user ? 4 : 3, wargs);
    dg_port_push(&l->dw_p, ctx);
    if (l->cfg.no_diff_src) return;
    dg_port_bind_in(&l->ddst_d_p, ctx, diff_dst,
            dg_pd_md(l->bwd_data_pd, dnnl_query_diff_dst_md, 0));
    dg_port_pull(&l->ddst_d_p, ctx);
    dg_port_pull(&l->w_d_p, ctx);
    dnnl_exec_arg_t dargs[] = {
        {DNNL_ARG_DIFF_DST, l->ddst_d_p.mem},
        {DNNL_ARG_WEIGHTS, l->w_d_p.mem},
        {DNNL_ARG_DIFF_SRC, l->diff_src},
    };
    dg_prim_exec(&l->bwd_data, ctx, 3, dargs);
}

void dg_linear_free(dg_linear *l) {
    dg_prim_free(&l->fwd);
    dg_prim_free(&l->bwd_data);
    dg_prim_free(&l->bwd_w);
    dnnl_primitive_desc_destroy(l->fwd_pd);
    dnnl_primitive_desc_destroy(l->bwd_data_pd);
    dnnl_primitive_desc_destroy(l->bwd_w_pd);
    dg_port *ports[] = {&l->src_p, &l->w_p, &l->src_w_p, &l->w_d_p, &l->ddst_d_p,
            &l->ddst_w_p, &l->dw_p};
    for (size_t i = 0; i < DG_ARRAY_LEN(ports); i++) dg_port_free(ports[i]);
    dnnl_memory_t mems[] = {l->dst, l->diff_src, l->w_user, l->b_user, l->dw_user, l->db_user};
    for (size_t i = 0; i < DG_ARRAY_LEN(mems); i++) dnnl_memory_destroy(mems[i]);
    memset(l, 0, sizeof(*l));
}
