/* nets/core/resize.c -- see resize.h. Coordinates follow PyTorch's
 * aten/src/ATen/native/UpSample.h (area_pixel_compute_source_index). */
#include "resize.h"
#include "profile.h"

#include <math.h>
#include <string.h>

double dg_resize_src_coord(int64_t dst, int64_t in, int64_t out, bool align_corners) {
    if (align_corners) return out > 1 ? (double)dst * (double)(in - 1) / (double)(out - 1) : 0.0;
    double s = ((double)dst + 0.5) * (double)in / (double)out - 0.5;
    return s > 0.0 ? s : 0.0;
}

/* Index and weight tables of one axis. */
static void axis_table(int64_t in, int64_t out, bool align_corners, int64_t *i0, int64_t *i1,
        float *lambda) {
    for (int64_t o = 0; o < out; o++) {
        const double s = dg_resize_src_coord(o, in, out, align_corners);
        int64_t a = (int64_t)floor(s);
        if (a > in - 1) a = in - 1;
        i0[o] = a;
        i1[o] = a + 1 < in ? a + 1 : in - 1;
        lambda[o] = (float)(s - (double)a);
    }
}

/* A layout the kernels read and write: src's own when it is one of the
 * dense 4-D tags, plain nchw otherwise. */
static dnnl_format_tag_t kernel_tag(const dnnl_memory_desc_t *md) {
    static const dnnl_format_tag_t tags[] = {dnnl_nchw, dnnl_nhwc, dnnl_nChw16c, dnnl_nChw8c};
    for (size_t i = 0; i < DG_ARRAY_LEN(tags); i++) {
        dnnl_memory_desc_t t = dg_md_plain(4, md->dims, tags[i]);
        if (dnnl_memory_desc_equal(&t, md)) return tags[i];
    }
    return dnnl_nchw;
}

static void init_dnnl(dg_resize *l, dg_ctx *ctx) {
    const dnnl_memory_desc_t *src_md = dg_mem_md(l->src);
    dnnl_memory_desc_t dst_any = dg_md_any(4, l->dst_dims);
    dnnl_resampling_desc_t fd;
    DG_DNNL(dnnl_resampling_forward_desc_init(&fd, dnnl_forward_training,
            dnnl_resampling_linear, NULL, src_md, &dst_any));
    l->fwd_pd = dg_pd_new(ctx, &fd, NULL, NULL);
    dg_prim_init(&l->fwd, ctx, l->fwd_pd);
    const dnnl_memory_desc_t *src_want = dg_pd_md(l->fwd_pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *dst_md = dg_pd_md(l->fwd_pd, dnnl_query_dst_md, 0);
    l->dst = dg_mem_new(ctx, dst_md, DNNL_MEMORY_ALLOCATE);
    dg_port_bind_in(&l->src_p, ctx, l->src, src_want);

    dnnl_resampling_desc_t bd;
    DG_DNNL(dnnl_resampling_backward_desc_init(&bd, dnnl_resampling_linear, NULL, src_want,
            dst_md));
    l->bwd_pd = dg_pd_new(ctx, &bd, NULL, l->fwd_pd);
    dg_prim_init(&l->bwd, ctx, l->bwd_pd);
    l->diff_src = dg_mem_new(ctx, dg_pd_md(l->bwd_pd, dnnl_query_diff_src_md, 0),
            DNNL_MEMORY_ALLOCATE);
}

static void init_kernel(dg_resize *l, dg_ctx *ctx) {
    const int64_t h = l->src_dims[2], w = l->src_dims[3], oh = l->cfg.oh, ow = l->cfg.ow;
    const dnnl_format_tag_t tag = l->cfg.tag ? l->cfg.tag : kernel_tag(dg_mem_md(l->src));
    dnnl_memory_desc_t src_md = dg_md_plain(4, l->src_dims, tag);
    dnnl_memory_desc_t dst_md = dg_md_plain(4, l->dst_dims, tag);
    DG_ASSERT(dg_chw_from_md(&l->src_v, &src_md) && dg_chw_from_md(&l->dst_v, &dst_md));
    dg_port_bind_in(&l->src_p, ctx, l->src, &src_md);
    l->dst = dg_buf_mem(ctx, &dst_md, l->cfg.dst_slot);
    l->diff_src = dg_mem_new(ctx, &src_md, DNNL_MEMORY_ALLOCATE);

    l->h0 = dg_xmalloc((size_t)oh * sizeof(*l->h0));
    l->h1 = dg_xmalloc((size_t)oh * sizeof(*l->h1));
    l->lh = dg_xmalloc((size_t)oh * sizeof(*l->lh));
    l->w0 = dg_xmalloc((size_t)ow * sizeof(*l->w0));
    l->w1 = dg_xmalloc((size_t)ow * sizeof(*l->w1));
    l->lw = dg_xmalloc((size_t)ow * sizeof(*l->lw));
    axis_table(h, oh, true, l->h0, l->h1, l->lh);
    axis_table(w, ow, true, l->w0, l->w1, l->lw);
}

void dg_resize_init(dg_resize *l, dg_ctx *ctx, dnnl_memory_t src, const dg_resize_cfg *cfg) {
    memset(l, 0, sizeof(*l));
    l->cfg = *cfg;
    l->src = src;
    DG_ASSERT(cfg->oh > 0 && cfg->ow > 0 && dg_mem_md(src)->ndims == 4);
    dg_mem_dims4(src, l->src_dims);
    memcpy(l->dst_dims, l->src_dims, sizeof(l->dst_dims));
    l->dst_dims[2] = cfg->oh;
    l->dst_dims[3] = cfg->ow;
    DG_ASSERT(cfg->align_corners || (!cfg->tag && !cfg->dst_slot));
    if (cfg->align_corners)
        init_kernel(l, ctx);
    else
        init_dnnl(l, ctx);
}

/* The kernels work on runs of `cb` contiguous channels ("lanes"): the
 * layouts' channel block (nChw16c), or, when src and dst both keep
 * channels contiguous (nhwc; channel stride 1 in both), chunks of up to 64
 * channels, read as blocks of views with cb = scb = the chunk. *padded:
 * the layout pads its last block (its padding lanes are written as zeros;
 * a chunk's are the next pixel's). */
static void lane_views(const dg_resize *l, dg_chw *vs, dg_chw *vd, bool *padded) {
    *vs = l->src_v;
    *vd = l->dst_v;
    *padded = vs->cb > 1;
    if (vs->cb == 1 && vd->cb == 1 && vs->scb == 1 && vd->scb == 1 && vs->c > 1) {
        vs->cb = vs->scb = vd->cb = vd->scb = DG_MIN(vs->c, 64);
    }
}

/* dst = (1-lh)*((1-lw)*x00 + lw*x01) + lh*((1-lw)*x10 + lw*x11). */
static void bilinear_forward(const dg_resize *l, const float *src, float *dst) {
    bool padded;
    dg_chw vsv, vdv;
    lane_views(l, &vsv, &vdv, &padded);
    const dg_chw *vs = &vsv, *vd = &vdv;
    const int64_t cb = vs->cb, nblk = (vs->c + cb - 1) / cb;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < vs->n; n++)
        for (int64_t b = 0; b < nblk; b++) {
            const int64_t nl = DG_MIN(cb, vs->c - b * cb);
            const float *s = src + dg_chw_at(vs, n, b * cb, 0, 0);
            float *d = dst + dg_chw_at(vd, n, b * cb, 0, 0);
            for (int64_t oh = 0; oh < vd->h; oh++) {
                const float *r0 = s + l->h0[oh] * vs->sh, *r1 = s + l->h1[oh] * vs->sh;
                const float b1 = l->lh[oh], b0 = 1.f - b1;
                for (int64_t ow = 0; ow < vd->w; ow++) {
                    const int64_t x0 = l->w0[ow] * vs->sw, x1 = l->w1[ow] * vs->sw;
                    const float a1 = l->lw[ow], a0 = 1.f - a1;
                    float *o = d + oh * vd->sh + ow * vd->sw;
                    for (int64_t k = 0; k < nl; k++)
                        o[k] = b0 * (a0 * r0[x0 + k] + a1 * r0[x1 + k])
                                + b1 * (a0 * r1[x0 + k] + a1 * r1[x1 + k]);
                    if (padded)
                        for (int64_t k = nl; k < cb; k++) o[k] = 0.f;
                }
            }
        }
}

/* diff_src = sum over dst of the forward weights times diff_dst; each
 * (n, channel block) slice of diff_src belongs to one thread. */
static void bilinear_backward(const dg_resize *l, const float *diff_dst, float *diff_src) {
    bool padded;
    dg_chw vsv, vdv;
    lane_views(l, &vsv, &vdv, &padded);
    const dg_chw *vs = &vsv, *vd = &vdv;
    const int64_t cb = vs->cb, nblk = (vs->c + cb - 1) / cb;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < vs->n; n++)
        for (int64_t b = 0; b < nblk; b++) {
            const int64_t nl = DG_MIN(cb, vs->c - b * cb);
            float *s = diff_src + dg_chw_at(vs, n, b * cb, 0, 0);
            const float *d = diff_dst + dg_chw_at(vd, n, b * cb, 0, 0);
            const int64_t nz = padded ? cb : nl;
            for (int64_t h = 0; h < vs->h; h++)
                for (int64_t w = 0; w < vs->w; w++)
                    for (int64_t k = 0; k < nz; k++) s[h * vs->sh + w * vs->sw + k] = 0.f;
            for (int64_t oh = 0; oh < vd->h; oh++) {
                float *r0 = s + l->h0[oh] * vs->sh, *r1 = s + l->h1[oh] * vs->sh;
                const float b1 = l->lh[oh], b0 = 1.f - b1;
                for (int64_t ow = 0; ow < vd->w; ow++) {
                    const int64_t x0 = l->w0[ow] * vs->sw, x1 = l->w1[ow] * vs->sw;
                    const float a1 = l->lw[ow], a0 = 1.f - a1;
                    const float *g = d + oh * vd->sh + ow * vd->sw;
                    for (int64_t k = 0; k < nl; k++) {
                        r0[x0 + k] += b0 * a0 * g[k];
                        r0[x1 + k] += b0 * a1 * g[k];
                        r1[x0 + k] += b1 * a0 * g[k];
                        r1[x1 + k] += b1 * a1 * g[k];
                    }
                }
            }
        }
}

void dg_resize_forward(dg_resize *l, dg_ctx *ctx, const dg_pass *p) {
    (void)p;
    dg_port_pull(&l->src_p, ctx);
    dg_buf_point(ctx, l->dst, l->cfg.dst_slot);
    if (l->cfg.align_corners) {
        DG_DNNL(dnnl_stream_wait(ctx->stream));
        const double t0 = dg_profile_begin();
        bilinear_forward(l, dg_mem_ptr(l->src_p.mem), dg_mem_ptr(l->dst));
        dg_profile_end("resampling forward (align_corners)", t0);
        return;
    }
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, l->src_p.mem}, {DNNL_ARG_DST, l->dst}};
    dg_prim_exec(&l->fwd, ctx, 2, args);
}

void dg_resize_backward(dg_resize *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst) {
    (void)p;
    dg_port_bind_in_transient(&l->ddst_p, ctx, diff_dst, dg_mem_md(l->dst), DG_SLOT_DIFF_DST);
    dg_port_pull(&l->ddst_p, ctx);
    if (l->cfg.align_corners) {
        DG_DNNL(dnnl_stream_wait(ctx->stream));
        const double t0 = dg_profile_begin();
        bilinear_backward(l, dg_mem_ptr(l->ddst_p.mem), dg_mem_ptr(l->diff_src));
        dg_profile_end("resampling backward-data (align_corners)", t0);
        return;
    }
    dnnl_exec_arg_t args[] = {{DNNL_ARG_DIFF_DST, l->ddst_p.mem}, {DNNL_ARG_DIFF_SRC, l->diff_src}};
    dg_prim_exec(&l->bwd, ctx, 2, args);
}

void dg_resize_free(dg_resize *l) {
    dg_prim_free(&l->fwd);
    dg_prim_free(&l->bwd);
    dnnl_primitive_desc_destroy(l->fwd_pd);
    dnnl_primitive_desc_destroy(l->bwd_pd);
    dg_port_free(&l->src_p);
    dg_port_free(&l->ddst_p);
    dnnl_memory_destroy(l->dst);
    dnnl_memory_destroy(l->diff_src);
    dg_free(l->h0);
    dg_free(l->h1);
    dg_free(l->lh);
    dg_free(l->w0);
    dg_free(l->w1);
    dg_free(l->lw);
    memset(l, 0, sizeof(*l));
}
