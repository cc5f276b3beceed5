/* nets/core/conv.c -- see conv.h. Follows oneDNN's cnn_training_f32 example:
 * format_tag_any for src/weights/dst, backward pds hinted by the forward pd,
 * reorders only where two layouts really differ. */
#include "conv.h"

#include <stdio.h>
#include <string.h>

int64_t dg_conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dilation) {
    return (in + 2 * pad - dilation * (k - 1) - 1) / stride + 1;
}

double dg_conv_flops_forward(const dg_conv *l) {
    return 2.0 * (double)(l->dst_dims[0] * l->dst_dims[1] * l->dst_dims[2] * l->dst_dims[3])
            * (double)(l->src_dims[1] * l->cfg.k * l->cfg.k);
}

double dg_conv_flops_backward(const dg_conv *l) {
    if (!l->cfg.training) return 0.0;
    return (l->cfg.no_diff_src ? 1.0 : 2.0) * dg_conv_flops_forward(l);
}

void dg_conv_init(dg_conv *l, dg_ctx *ctx, dg_param_set *ps, const char *name,
        dnnl_memory_t src, const dg_conv_cfg *cfg) {
    memset(l, 0, sizeof(*l));
    l->cfg = *cfg;
    l->src = src;
    dg_mem_dims4(src, l->src_dims);
    const int64_t n = l->src_dims[0], ic = l->src_dims[1];
    const int64_t oc = cfg->oc, k = cfg->k;
    DG_ASSERT(oc > 0 && k > 0 && cfg->stride > 0 && cfg->pad >= 0 && cfg->dilation > 0);
    int64_t oh = dg_conv_out_size(l->src_dims[2], k, cfg->stride, cfg->pad, cfg->dilation);
    int64_t ow = dg_conv_out_size(l->src_dims[3], k, cfg->stride, cfg->pad, cfg->dilation);
    DG_ASSERT(oh > 0 && ow > 0);
    int64_t dst_dims[4] = {n, oc, oh, ow};
    memcpy(l->dst_dims, dst_dims, sizeof(dst_dims));

    /* Parameters: torchvision's conv init, kaiming_normal_(mode="fan_out"). */
    char buf[256];
    int64_t w_dims[4] = {oc, ic, k, k};
    snprintf(buf, sizeof(buf), "%s.weight", name);
    l->w_off = dg_params_add(ps, buf, 4, w_dims, DG_PARAM_ASAM_SCALED, DG_INIT_NORMAL,
            dg_init_kaiming_std(oc * k * k));
    if (cfg->bias) {
        snprintf(buf, sizeof(buf), "%s.bias", name);
        l->b_off = dg_params_add(ps, buf, 1, &oc, DG_PARAM_NO_DECAY, DG_INIT_CONST, 0.f);
    }

    dnnl_memory_desc_t src_any = dg_md_any(4, l->src_dims);
    dnnl_memory_desc_t w_any = dg_md_any(4, w_dims);
    dnnl_memory_desc_t dst_any = cfg->dst_into ? *dg_mem_md(cfg->dst_into) : dg_md_any(4, dst_dims);
    dnnl_memory_desc_t w_plain = dg_md_plain(4, w_dims, dnnl_oihw);
    dnnl_memory_desc_t b_plain = dg_md_plain(1, &oc, dnnl_x);
    DG_ASSERT(!(cfg->folded && cfg->training));
    const bool prim_bias = cfg->bias || cfg->folded;
    const dnnl_memory_desc_t *b_md = prim_bias ? &b_plain : NULL;
    dnnl_dims_t strides = {cfg->stride, cfg->stride};
    dnnl_dims_t dil = {cfg->dilation - 1, cfg->dilation - 1}; /* oneDNN: 0 = dense */
    dnnl_dims_t pad = {cfg->pad, cfg->pad};

    /* oneDNN 2.6's brgconv kernels take a sum post-op but fall back to a
     * reference kernel for a binary add: the residual goes through sum. */
    DG_ASSERT(cfg->folded || (!cfg->accumulate && !cfg->dst_into));
    dnnl_post_ops_t po = NULL;
    if (cfg->relu || cfg->accumulate) DG_DNNL(dnnl_post_ops_create(&po));
    if (cfg->accumulate) DG_DNNL(dnnl_post_ops_append_sum(po, 1.f));
    if (cfg->relu) DG_DNNL(dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_relu, 0.f, 0.f));
    dnnl_convolution_desc_t fd;
    DG_DNNL(dnnl_dilated_convolution_forward_desc_init(&fd,
            cfg->training ? dnnl_forward_training : dnnl_forward_inference,
            dnnl_convolution_direct, &src_any, &w_any, b_md, &dst_any, strides, dil, pad, pad));
    l->fwd_pd = dg_pd_new(ctx, &fd, po, NULL);
    dnnl_post_ops_destroy(po);
    dg_prim_init(&l->fwd, ctx, l->fwd_pd);

    if (cfg->dst_into) {
        DG_ASSERT(dnnl_memory_desc_equal(dg_mem_md(cfg->dst_into),
                dg_pd_md(l->fwd_pd, dnnl_query_dst_md, 0)));
        l->dst = cfg->dst_into;
    } else {
        l->dst = dg_mem_new(ctx, dg_pd_md(l->fwd_pd, dnnl_query_dst_md, 0), DNNL_MEMORY_ALLOCATE);
    }
    l->w_user = dg_mem_new(ctx, &w_plain, DNNL_MEMORY_NONE);
    if (prim_bias) l->b_user = dg_mem_new(ctx, &b_plain, DNNL_MEMORY_NONE);
    dg_port_bind_in(&l->src_p, ctx, src, dg_pd_md(l->fwd_pd, dnnl_query_src_md, 0));
    dg_port_bind_in(&l->w_p, ctx, l->w_user, dg_pd_md(l->fwd_pd, dnnl_query_weights_md, 0));
    if (!cfg->training) return;

    dnnl_convolution_desc_t bwd;
    DG_DNNL(dnnl_dilated_convolution_backward_weights_desc_init(&bwd,
            dnnl_convolution_direct, &src_any, &w_any, b_md, &dst_any, strides, dil, pad, pad));
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
        dnnl_convolution_desc_t bdd;
        DG_DNNL(dnnl_dilated_convolution_backward_data_desc_init(&bdd,
                dnnl_convolution_direct, &src_any, &w_any, &dst_any, strides, dil, pad, pad));
        l->bwd_data_pd = dg_pd_new(ctx, &bdd, NULL, l->fwd_pd);
        dg_prim_init(&l->bwd_data, ctx, l->bwd_data_pd);
        l->diff_src = dg_mem_new(ctx, dg_pd_md(l->bwd_data_pd, dnnl_query_diff_src_md, 0),
                DNNL_MEMORY_ALLOCATE);
        dg_port_bind_in(&l->w_d_p, ctx, l->w_p.mem,
                dg_pd_md(l->bwd_data_pd, dnnl_query_weights_md, 0));
    }
    if (cfg->relu) {
        const dnnl_memory_desc_t *dmd = dg_mem_md(l->dst);
        dnnl_eltwise_desc_t ed;
        DG_DNNL(dnnl_eltwise_backward_desc_init(&ed, dnnl_eltwise_relu_use_dst_for_bwd,
                dmd, dmd, 0.f, 0.f));
        dnnl_eltwise_desc_t efd;
        DG_DNNL(dnnl_eltwise_forward_desc_init(&efd, dnnl_forward_training,
                dnnl_eltwise_relu_use_dst_for_bwd, dmd, 0.f, 0.f));
        dnnl_primitive_desc_t hint = dg_pd_new(ctx, &efd, NULL, NULL);
        l->relu_bwd_pd = dg_pd_new(ctx, &ed, NULL, hint);
        dnnl_primitive_desc_destroy(hint);
        dg_prim_init(&l->relu_bwd, ctx, l->relu_bwd_pd);
        l->diff_pre = dg_mem_new(ctx, dg_pd_md(l->relu_bwd_pd, dnnl_query_diff_src_md, 0),
                DNNL_MEMORY_ALLOCATE);
    }
}

static void conv_run(dg_conv *l, dg_ctx *ctx, const float *weights, const float *bias) {
    dg_mem_set_ptr(l->w_user, weights);
    if (l->b_user) dg_mem_set_ptr(l->b_user, bias);
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

void dg_conv_forward(dg_conv *l, dg_ctx *ctx, const dg_pass *p) {
    DG_ASSERT(!l->cfg.folded);
    conv_run(l, ctx, p->params + l->w_off, l->cfg.bias ? p->params + l->b_off : NULL);
}

void dg_conv_forward_folded(dg_conv *l, dg_ctx *ctx, const float *weights, const float *bias) {
    DG_ASSERT(l->cfg.folded);
    conv_run(l, ctx, weights, bias);
}

void dg_conv_backward(dg_conv *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst) {
    DG_ASSERT(l->cfg.training);
    if (l->cfg.relu) {
        dg_port_bind_in(&l->ddst_r_p, ctx, diff_dst, dg_mem_md(l->dst));
        dg_port_pull(&l->ddst_r_p, ctx);
        dnnl_exec_arg_t rargs[] = {
            {DNNL_ARG_DST, l->dst},
            {DNNL_ARG_DIFF_DST, l->ddst_r_p.mem},
            {DNNL_ARG_DIFF_SRC, l->diff_pre},
        };
        dg_prim_exec(&l->relu_bwd, ctx, 3, rargs);
        diff_dst = l->diff_pre;
    }
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
    dg_port_bind_in(&l->ddst_d_p, ctx, l->ddst_w_p.user,
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

void dg_conv_free(dg_conv *l) {
    dg_prim_free(&l->fwd);
    dg_prim_free(&l->bwd_data);
    dg_prim_free(&l->bwd_w);
    dg_prim_free(&l->relu_bwd);
    dnnl_primitive_desc_destroy(l->fwd_pd);
    dnnl_primitive_desc_destroy(l->bwd_data_pd);
    dnnl_primitive_desc_destroy(l->bwd_w_pd);
    dnnl_primitive_desc_destroy(l->relu_bwd_pd);
    dg_port *ports[] = {&l->src_p, &l->w_p, &l->src_w_p, &l->w_d_p, &l->ddst_d_p,
            &l->ddst_w_p, &l->dw_p, &l->ddst_r_p};
    for (size_t i = 0; i < DG_ARRAY_LEN(ports); i++) dg_port_free(ports[i]);
    if (l->cfg.dst_into) l->dst = NULL; /* borrowed */
    dnnl_memory_t mems[] = {l->dst, l->diff_src, l->diff_pre, l->w_user, l->b_user,
            l->dw_user, l->db_user};
    for (size_t i = 0; i < DG_ARRAY_LEN(mems); i++) dnnl_memory_destroy(mems[i]);
    memset(l, 0, sizeof(*l));
}
