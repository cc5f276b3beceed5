/* nets/core/concat.c -- see concat.h. */
#include "concat.h"

#include <string.h>

/* Concat pd for dst layout `dst_md`; NULL when oneDNN cannot build it. */
static dnnl_primitive_desc_t concat_pd(dg_ctx *ctx, const dnnl_memory_desc_t *dst_md, int n,
        const dnnl_memory_desc_t *src_mds) {
    dnnl_primitive_attr_t attr = dg_attr_new();
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_concat_primitive_desc_create(&pd, dst_md, n, 1, src_mds, attr, ctx->engine)
            != dnnl_success)
        pd = NULL;
    dnnl_primitive_attr_destroy(attr);
    return pd;
}

/* The dst layout tried first: the first input's, when it is one of the
 * dense 4-D tags (a blocked network then keeps nChw16c and the next
 * convolution needs no reorder); oneDNN's choice otherwise. */
static dnnl_memory_desc_t first_choice_md(const dnnl_memory_desc_t *src0, const int64_t *dims) {
    static const dnnl_format_tag_t tags[] = {dnnl_nChw16c, dnnl_nChw8c, dnnl_nchw, dnnl_nhwc};
    for (size_t i = 0; i < DG_ARRAY_LEN(tags); i++) {
        dnnl_memory_desc_t t = dg_md_plain(4, src0->dims, tags[i]);
        if (dnnl_memory_desc_equal(&t, src0)) return dg_md_plain(4, dims, tags[i]);
    }
    return dg_md_any(4, dims);
}

/* Fills subs[k] with the channel range of input k inside `parent`; false
 * when one of them is impossible in that layout. */
static bool channel_views(const dg_concat *l, const dnnl_memory_desc_t *parent,
        const dnnl_memory_desc_t *src_mds, dnnl_memory_desc_t *subs) {
    for (int k = 0; k < l->n_src; k++) {
        dnnl_dims_t dims, offs;
        memset(dims, 0, sizeof(dims));
        memset(offs, 0, sizeof(offs));
        for (int i = 0; i < 4; i++) dims[i] = src_mds[k].dims[i];
        offs[1] = l->c_off[k];
        if (dnnl_memory_desc_init_submemory(&subs[k], parent, dims, offs) != dnnl_success)
            return false;
    }
    return true;
}

void dg_concat_init(dg_concat *l, dg_ctx *ctx, int n_src, const dnnl_memory_t *srcs,
        const int *diff_slots) {
    memset(l, 0, sizeof(*l));
    DG_ASSERT(n_src >= 1 && n_src <= DG_CONCAT_MAX_SRC);
    l->n_src = n_src;
    dnnl_memory_desc_t src_mds[DG_CONCAT_MAX_SRC];
    int64_t c = 0;
    for (int k = 0; k < n_src; k++) {
        l->src[k] = srcs[k];
        src_mds[k] = *dg_mem_md(srcs[k]);
        int64_t d[4];
        dg_mem_dims4(srcs[k], d);
        DG_ASSERT(src_mds[k].ndims == 4);
        if (k == 0) memcpy(l->dst_dims, d, sizeof(d));
        DG_ASSERT(d[0] == l->dst_dims[0] && d[2] == l->dst_dims[2] && d[3] == l->dst_dims[3]);
        l->c_off[k] = c;
        c += d[1];
    }
    l->dst_dims[1] = c;

    /* Plain nchw when a channel range of the first choice cannot be
     * addressed as a sub-memory. */
    dnnl_memory_desc_t subs[DG_CONCAT_MAX_SRC];
    dnnl_memory_desc_t first = first_choice_md(&src_mds[0], l->dst_dims);
    l->fwd_pd = concat_pd(ctx, &first, n_src, src_mds);
    if (!l->fwd_pd
            || !channel_views(l, dg_pd_md(l->fwd_pd, dnnl_query_dst_md, 0), src_mds, subs)) {
        dnnl_primitive_desc_destroy(l->fwd_pd);
        dnnl_memory_desc_t dst_plain = dg_md_plain(4, l->dst_dims, dnnl_nchw);
        l->fwd_pd = concat_pd(ctx, &dst_plain, n_src, src_mds);
        DG_ASSERT(l->fwd_pd != NULL);
        DG_ASSERT(channel_views(l, &dst_plain, src_mds, subs));
        l->plain_dst = true;
    }
    dg_prim_init(&l->fwd, ctx, l->fwd_pd);
    l->dst = dg_mem_new(ctx, dg_pd_md(l->fwd_pd, dnnl_query_dst_md, 0), DNNL_MEMORY_ALLOCATE);

    for (int k = 0; k < n_src; k++) {
        l->ddst_view[k] = dg_mem_new(ctx, &subs[k], DNNL_MEMORY_NONE);
        /* diff_src[k] in input k's layout (plain nchw if that is a view). */
        dnnl_memory_desc_t dmd = src_mds[k].offset0 == 0
                ? src_mds[k]
                : dg_md_plain(4, src_mds[k].dims, dnnl_nchw);
        l->diff_slot[k] = diff_slots ? diff_slots[k] : DG_SLOT_OWN;
        l->diff_src[k] = dg_buf_mem(ctx, &dmd, l->diff_slot[k]);
        dnnl_primitive_attr_t attr = dg_attr_new();
        DG_DNNL(dnnl_reorder_primitive_desc_create(&l->split_pd[k], &subs[k], ctx->engine,
                &dmd, ctx->engine, attr));
        dnnl_primitive_attr_destroy(attr);
        dg_prim_init(&l->split[k], ctx, l->split_pd[k]);
    }
}

void dg_concat_forward(dg_concat *l, dg_ctx *ctx, const dg_pass *p) {
    (void)p;
    dnnl_exec_arg_t args[DG_CONCAT_MAX_SRC + 1];
    for (int k = 0; k < l->n_src; k++) {
        args[k].arg = DNNL_ARG_MULTIPLE_SRC + k;
        args[k].memory = l->src[k];
    }
    args[l->n_src].arg = DNNL_ARG_DST;
    args[l->n_src].memory = l->dst;
    dg_prim_exec(&l->fwd, ctx, l->n_src + 1, args);
}

void dg_concat_backward(dg_concat *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst) {
    (void)p;
    dg_port_bind_in_transient(&l->ddst_p, ctx, diff_dst, dg_mem_md(l->dst), DG_SLOT_DIFF_DST);
    dg_port_pull(&l->ddst_p, ctx);
    void *base = dg_mem_ptr(l->ddst_p.mem);
    for (int k = 0; k < l->n_src; k++) {
        /* The views carry their channel offset in offset0: they share the
         * parent's base pointer. */
        dg_mem_set_ptr(l->ddst_view[k], base);
        dg_buf_point(ctx, l->diff_src[k], l->diff_slot[k]);
        dnnl_exec_arg_t args[] = {
            {DNNL_ARG_FROM, l->ddst_view[k]},
            {DNNL_ARG_TO, l->diff_src[k]},
        };
        dg_prim_exec(&l->split[k], ctx, 2, args);
    }
}

void dg_concat_free(dg_concat *l) {
    dg_prim_free(&l->fwd);
    dnnl_primitive_desc_destroy(l->fwd_pd);
    for (int k = 0; k < DG_CONCAT_MAX_SRC; k++) {
        dg_prim_free(&l->split[k]);
        dnnl_primitive_desc_destroy(l->split_pd[k]);
        dnnl_memory_destroy(l->ddst_view[k]);
        dnnl_memory_destroy(l->diff_src[k]);
    }
    dg_port_free(&l->ddst_p);
    dnnl_memory_destroy(l->dst);
    memset(l, 0, sizeof(*l));
}

