/* nets/core/wlayer.c -- see wlayer.h. Follows oneDNN's cnn_training_f32
 * example: format_tag_any in the op descriptors, backward pds hinted by the
 * forward pd, reorders only where layouts differ. */
#include "wlayer.h"

#include <string.h>


void dg_wlayer_init_forward(dg_wlayer *wl, dg_ctx *ctx, dnnl_memory_t src,
        dnnl_primitive_desc_t fwd_pd, const dnnl_memory_desc_t *w_plain,
        const dnnl_memory_desc_t *b_plain, dnnl_memory_t dst_into) {
    memset(wl, 0, sizeof(*wl));
    wl->fwd_pd = fwd_pd;
    dg_prim_init(&wl->fwd, ctx, fwd_pd);
    const dnnl_memory_desc_t *dst_md = dg_pd_md(fwd_pd, dnnl_query_dst_md, 0);
    if (dst_into) {
        DG_ASSERT(dnnl_memory_desc_equal(dg_mem_md(dst_into), dst_md));
        wl->dst = dst_into;
        wl->dst_borrowed = true;
    } else {
        wl->dst = dg_mem_new(ctx, dst_md, DNNL_MEMORY_ALLOCATE);
    }
    wl->w_user = dg_mem_new(ctx, w_plain, DNNL_MEMORY_NONE);
    if (b_plain) wl->b_user = dg_mem_new(ctx, b_plain, DNNL_MEMORY_NONE);
    dg_port_bind_in(&wl->src_p, ctx, src, dg_pd_md(fwd_pd, dnnl_query_src_md, 0));
    dnnl_prop_kind_t prop;
    DG_DNNL(dnnl_primitive_desc_query(fwd_pd, dnnl_query_prop_kind, 0, &prop));
    wl->inference = prop == dnnl_forward_inference;
    const dnnl_memory_desc_t *w_md = dg_pd_md(fwd_pd, dnnl_query_weights_md, 0);
    if (wl->inference) /* kept for the next forward on the same weights */
        dg_port_bind_in(&wl->w_p, ctx, wl->w_user, w_md);
    else
        dg_port_bind_in_transient(&wl->w_p, ctx, wl->w_user, w_md, DG_SLOT_WEIGHTS);
}

void dg_wlayer_init_backward(dg_wlayer *wl, dg_ctx *ctx, dnnl_primitive_desc_t bwd_w_pd,
        dnnl_primitive_desc_t bwd_data_pd, const dnnl_memory_desc_t *w_plain,
        const dnnl_memory_desc_t *b_plain, int diff_slot) {
    wl->bwd_w_pd = bwd_w_pd;
    dg_prim_init(&wl->bwd_w, ctx, bwd_w_pd);
    wl->dw_user = dg_mem_new(ctx, w_plain, DNNL_MEMORY_NONE);
    if (b_plain) {
        DG_ASSERT(dnnl_memory_desc_equal(b_plain,
                dg_pd_md(bwd_w_pd, dnnl_query_diff_weights_md, 1)));
        wl->db_user = dg_mem_new(ctx, b_plain, DNNL_MEMORY_NONE);
    }
    dg_port_bind_in(&wl->src_w_p, ctx, wl->src_p.mem, dg_pd_md(bwd_w_pd, dnnl_query_src_md, 0));
    dg_port_bind_out_transient(&wl->dw_p, ctx, wl->dw_user,
            dg_pd_md(bwd_w_pd, dnnl_query_diff_weights_md, 0), DG_SLOT_DIFF_W);
    if (!bwd_data_pd) return;
    wl->bwd_data_pd = bwd_data_pd;
    dnnl_prop_kind_t prop;
    DG_DNNL(dnnl_primitive_desc_query(bwd_data_pd, dnnl_query_prop_kind, 0, &prop));
    wl->bwd_data_rot = prop == dnnl_forward_inference;
    /* profiled as backward-data, with its own (diff_dst -> diff_src) shape */
    dg_prim_init_as(&wl->bwd_data, ctx, bwd_data_pd,
            wl->bwd_data_rot ? "convolution backward-data" : NULL);
    wl->diff_slot = diff_slot;
    wl->diff_src = dg_buf_mem(ctx, dg_pd_md(bwd_data_pd, wl->bwd_data_rot ? dnnl_query_dst_md
            : dnnl_query_diff_src_md, 0), diff_slot);
    const dnnl_memory_desc_t *wd_md = dg_pd_md(bwd_data_pd, dnnl_query_weights_md, 0);
    if (!wl->bwd_data_rot) { /* from the plain weights the last forward used (w_user) */
        dg_port_bind_in_transient(&wl->w_d_p, ctx, wl->w_user, wd_md, DG_SLOT_WEIGHTS);
        return;
    }
    DG_ASSERT(w_plain->ndims == 4 && wl->w_shift == 0);
    const int64_t *wd = w_plain->dims;
    DG_ASSERT(wd[0] == wd_md->dims[1] && wd[1] == wd_md->dims[0] && wd[2] == wd[3]);
    const int64_t rot_dims[4] = {wd[1], wd[0], wd[2], wd[3]};
    dnnl_memory_desc_t rot_md = dg_md_plain(4, rot_dims, dnnl_oihw);
    wl->w_rot = dg_ctx_calloc(ctx, dnnl_memory_desc_get_size(&rot_md), 1, "rotated weights");
    wl->w_rot_user = dg_mem_new(ctx, &rot_md, wl->w_rot);
    dg_port_bind_in_transient(&wl->w_d_p, ctx, wl->w_rot_user, wd_md, DG_SLOT_WEIGHTS);
}

void dg_wlayer_init_unbuilt(dg_wlayer *wl, dg_ctx *ctx, const char *name, const char *what,
        const char *shape, const dnnl_memory_desc_t *dst_md, dnnl_memory_t dst_into,
        const dnnl_memory_desc_t *diff_src_md, int diff_slot) {
    memset(wl, 0, sizeof(*wl));
    dg_log_error("layer %s: oneDNN %s cannot create a %s for %s on this CPU (ISA %s)", name,
            ctx->caps.dnnl_version, what, shape, ctx->caps.isa_name);
    ctx->status = DG_STATUS_ERR_CONFIG;
    if (dst_into) {
        wl->dst = dst_into;
        wl->dst_borrowed = true;
    } else {
        wl->dst = dg_mem_new(ctx, dst_md, DNNL_MEMORY_ALLOCATE);
    }
    if (diff_src_md) {
        wl->diff_slot = diff_slot;
        wl->diff_src = dg_buf_mem(ctx, diff_src_md, diff_slot);
    }
}

/* w_rot[i][o][y][x] = w[o][i][K-1-y][K-1-x], w being the plain weights the
 * last forward used. */
static void rotate_weights(dg_wlayer *wl) {
    const dnnl_memory_desc_t *md = dg_mem_md(wl->w_rot_user);
    const int64_t ic = md->dims[0], oc = md->dims[1], kk = md->dims[2] * md->dims[3];
    const float *w = dg_mem_ptr(wl->w_user);
    float *r = wl->w_rot;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < oc; o++)
        for (int64_t i = 0; i < ic; i++)
            for (int64_t t = 0; t < kk; t++)
                r[(i * oc + o) * kk + kk - 1 - t] = w[(o * ic + i) * kk + t];
}

void dg_wlayer_forward(dg_wlayer *wl, dg_ctx *ctx, const float *weights, const float *bias,
        uint64_t version) {
    dg_mem_set_ptr(wl->w_user, weights + wl->w_shift);
    if (wl->b_user) dg_mem_set_ptr(wl->b_user, bias);
    dg_port_pull(&wl->src_p, ctx);
    if (!wl->inference || !version || version != wl->w_version) {
        dg_port_pull(&wl->w_p, ctx);
        wl->w_version = wl->inference ? version : 0;
    }
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, wl->src_p.mem},
        {DNNL_ARG_WEIGHTS, wl->w_p.mem},
        {DNNL_ARG_DST, wl->dst},
        {DNNL_ARG_BIAS, wl->b_user},
    };
    dg_prim_exec(&wl->fwd, ctx, wl->b_user ? 4 : 3, args);
}

void dg_wlayer_backward(dg_wlayer *wl, dg_ctx *ctx, dnnl_memory_t diff_dst, float *diff_weights,
        float *diff_bias) {
    DG_ASSERT(wl->bwd_w.prim != NULL);
    dg_port_bind_in_transient(&wl->ddst_w_p, ctx, diff_dst,
            dg_pd_md(wl->bwd_w_pd, dnnl_query_diff_dst_md, 0), DG_SLOT_DIFF_DST);
    dg_port_pull(&wl->ddst_w_p, ctx);
    dg_port_pull(&wl->src_w_p, ctx);
    dg_mem_set_ptr(wl->dw_user, diff_weights + wl->w_shift);
    if (wl->db_user) dg_mem_set_ptr(wl->db_user, diff_bias);
    dnnl_exec_arg_t wargs[] = {
        {DNNL_ARG_SRC, wl->src_w_p.mem},
        {DNNL_ARG_DIFF_DST, wl->ddst_w_p.mem},
        {DNNL_ARG_DIFF_WEIGHTS, dg_port_out_mem(&wl->dw_p, ctx)},
        {DNNL_ARG_DIFF_BIAS, wl->db_user},
    };
    dg_prim_exec(&wl->bwd_w, ctx, wl->db_user ? 4 : 3, wargs);
    dg_port_push(&wl->dw_p, ctx);
    if (!wl->bwd_data.prim) return;
    /* Where both passes want diff_dst alike (bf16: the same rounding), the
     * backward-weights port's copy serves both. */
    const dnnl_memory_desc_t *want_d = dg_pd_md(wl->bwd_data_pd,
            wl->bwd_data_rot ? dnnl_query_src_md : dnnl_query_diff_dst_md, 0);
    const bool share = dnnl_memory_desc_equal(want_d, &wl->ddst_w_p.want);
    dg_port_bind_in_transient(&wl->ddst_d_p, ctx, share ? wl->ddst_w_p.mem : diff_dst, want_d,
            DG_SLOT_DIFF_DST2);
    dg_port_pull(&wl->ddst_d_p, ctx);
    if (wl->bwd_data_rot) rotate_weights(wl);
    dg_port_pull(&wl->w_d_p, ctx);
    dg_buf_point(ctx, wl->diff_src, wl->diff_slot);
    dnnl_exec_arg_t dargs[] = {
        {wl->bwd_data_rot ? DNNL_ARG_SRC : DNNL_ARG_DIFF_DST, wl->ddst_d_p.mem},
        {DNNL_ARG_WEIGHTS, wl->w_d_p.mem},
        {wl->bwd_data_rot ? DNNL_ARG_DST : DNNL_ARG_DIFF_SRC, wl->diff_src},
    };
    dg_prim_exec(&wl->bwd_data, ctx, 3, dargs);
}

void dg_wlayer_free(dg_wlayer *wl) {
    dg_prim_free(&wl->fwd);
    dg_prim_free(&wl->bwd_data);
    dg_prim_free(&wl->bwd_w);
    dnnl_primitive_desc_destroy(wl->fwd_pd);
    dnnl_primitive_desc_destroy(wl->bwd_data_pd);
    dnnl_primitive_desc_destroy(wl->bwd_w_pd);
    dg_port *ports[] = {&wl->src_p, &wl->w_p, &wl->src_w_p, &wl->w_d_p, &wl->ddst_d_p,
            &wl->ddst_w_p, &wl->dw_p};
    for (size_t i = 0; i < DG_ARRAY_LEN(ports); i++) dg_port_free(ports[i]);
    if (wl->dst_borrowed) wl->dst = NULL;
    dnnl_memory_t mems[] = {wl->dst, wl->diff_src, wl->w_user, wl->b_user, wl->dw_user,
            wl->db_user, wl->w_rot_user};
    for (size_t i = 0; i < DG_ARRAY_LEN(mems); i++) dnnl_memory_destroy(mems[i]);
    dg_free(wl->w_rot);
    memset(wl, 0, sizeof(*wl));
}
