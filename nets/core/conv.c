/* nets/core/conv.c -- see conv.h. The op descriptors (dilation, post-ops)
 * are built here; the primitives, wrappers and ports are dg_wlayer's. */
#include "conv.h"

#include <stdio.h>
#include <string.h>

int64_t dg_conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dilation) {
    return (in + 2 * pad - dilation * (k - 1) - 1) / stride + 1;
}

double dg_conv_flops_forward(const dg_conv *l) {
    const int64_t taps = l->tap >= 0 ? 1 : l->cfg.k * l->cfg.k;
    return 2.0 * (double)(l->dst_dims[0] * l->dst_dims[1] * l->dst_dims[2] * l->dst_dims[3])
            * (double)(l->src_dims[1] * taps);
}

/* Whether kernel offset i (0..k-1) of one axis reads at least one input
 * element (not only padding) for some output position. */
static bool tap_live(int64_t i, int64_t in, int64_t out, const dg_conv_cfg *c) {
    const int64_t off = i * c->dilation - c->pad; /* input index of output 0 */
    /* inputs off, off + stride, ..., off + (out - 1) * stride */
    if (off >= in || off + (out - 1) * c->stride < 0) return false;
    if (off >= 0) return true;
    const int64_t first = (-off + c->stride - 1) / c->stride; /* first output with input >= 0 */
    return first < out && off + first * c->stride < in;
}

/* The only kernel offset of one axis that reads any input, or -1. */
static int64_t only_live(int64_t in, int64_t out, const dg_conv_cfg *c) {
    int64_t live = -1;
    for (int64_t i = 0; i < c->k; i++)
        if (tap_live(i, in, out, c)) {
            if (live >= 0) return -1;
            live = i;
        }
    return live;
}

/* The flat index (i * k + j) of the only kernel tap that reads any input,
 * when it is the centre of a stride-1 "same" convolution, or -1. */
static int64_t single_live_tap(const dg_conv_cfg *c, int64_t h, int64_t w, int64_t oh,
        int64_t ow) {
    if (c->k == 1 || c->stride != 1 || oh != h || ow != w) return -1;
    const int64_t live_i = only_live(h, oh, c), live_j = only_live(w, ow, c);
    if (live_i < 0 || live_j < 0 || live_i * c->dilation != c->pad ||
            live_j * c->dilation != c->pad)
        return -1;
    return live_i * c->k + live_j;
}

double dg_conv_flops_backward(const dg_conv *l) {
    if (!l->cfg.training) return 0.0;
    return (l->cfg.no_diff_src ? 1.0 : 2.0) * dg_conv_flops_forward(l);
}

static void init_relu_backward(dg_conv *l, dg_ctx *ctx);

static bool use_winograd(const dg_ctx *ctx, const dg_conv_cfg *cfg, int64_t ic) {
    return ctx->winograd && ctx->caps.winograd && cfg->k == 3 && cfg->stride == 1 && cfg->dilation == 1 && ic >= 16 &&
            cfg->oc >= 16;
}

/* The (N, C, H/d, d, W/d, d) view of md, a 4-D layout blocked at most on
 * channels; batched: md is (d*d*N, C, H/d, W/d), phase (py, px) of image n
 * at batch index (py * d + px) * N + n. False where md has another form. */
static bool phase_view(const dnnl_memory_desc_t *md, int64_t d, int64_t n, bool batched,
        dnnl_memory_desc_t *v) {
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    if (md->ndims != 4 || md->format_kind != dnnl_blocked || md->offset0 != 0) return false;
    for (int i = 0; i < b->inner_nblks; i++)
        if (b->inner_idxs[i] != 1) return false;
    memset(v, 0, sizeof(*v));
    v->ndims = 6;
    v->data_type = md->data_type;
    v->format_kind = dnnl_blocked;
    const int64_t hq = batched ? md->dims[2] : md->dims[2] / d;
    const int64_t wq = batched ? md->dims[3] : md->dims[3] / d;
    const int64_t dims[6] = {n, md->dims[1], hq, d, wq, d};
    const int64_t *s = b->strides;
    const int64_t st_plain[6] = {s[0], s[1], s[2] * d, s[2], s[3] * d, s[3]};
    const int64_t st_batched[6] = {s[0], s[1], s[2], s[0] * d * n, s[3], s[0] * n};
    for (int i = 0; i < 6; i++) {
        v->dims[i] = v->padded_dims[i] = dims[i];
        v->format_desc.blocking.strides[i] = batched ? st_batched[i] : st_plain[i];
    }
    v->padded_dims[1] = md->padded_dims[1];
    v->format_desc.blocking.inner_nblks = b->inner_nblks;
    for (int i = 0; i < b->inner_nblks; i++) {
        v->format_desc.blocking.inner_blks[i] = b->inner_blks[i];
        v->format_desc.blocking.inner_idxs[i] = 1;
    }
    return true;
}

/* The phases form of the forward (conv.h), or false where it does not
 * apply (or oneDNN has no Winograd kernel for it). */
static bool init_phases(dg_conv *l, dg_ctx *ctx, const dnnl_memory_desc_t *w_plain,
        const dnnl_memory_desc_t *b_md, const_dnnl_post_ops_t po) {
    const dg_conv_cfg *cfg = &l->cfg;
    const int64_t d = cfg->dilation, n = l->src_dims[0], ic = l->src_dims[1];
    const int64_t h = l->src_dims[2], w = l->src_dims[3];
    const bool own = !ctx->caps.winograd; /* dgseg's Winograd on the phases */
    if (!ctx->winograd || cfg->training || cfg->accumulate || l->tap >= 0 || d < 2 ||
            cfg->k != 3 || cfg->stride != 1 || cfg->pad != d || h % d || w % d || ic < 16 ||
            cfg->oc < 16 || ctx->compute_dt != dnnl_f32 || (own && (ic % 8 || cfg->oc % 8)))
        return false;
    dnnl_memory_desc_t src_v, dst_v, ph_src_v, ph_dst_v;
    const int64_t ph_src_dims[4] = {d * d * n, ic, h / d, w / d};
    const int64_t ph_dst_dims[4] = {d * d * n, cfg->oc, h / d, w / d};
    dnnl_memory_desc_t ph_src_md = dg_md_plain(4, ph_src_dims, dnnl_nChw16c);
    dnnl_memory_desc_t ph_dst_md = dg_md_plain(4, ph_dst_dims, dnnl_nChw16c);
    dnnl_memory_desc_t dst_md = cfg->dst_into ? *dg_mem_md(cfg->dst_into)
                                              : dg_md_plain(4, l->dst_dims, dnnl_nChw16c);
    if (!phase_view(dg_mem_md(l->src), d, n, false, &src_v) ||
            !phase_view(&dst_md, d, n, false, &dst_v) ||
            !phase_view(&ph_src_md, d, n, true, &ph_src_v) ||
            !phase_view(&ph_dst_md, d, n, true, &ph_dst_v))
        return false;
    dnnl_primitive_desc_t fwd_pd = NULL;
    if (!own) {
        dnnl_memory_desc_t w_any = dg_md_any(4, w_plain->dims);
        const dnnl_dims_t one = {1, 1}, zero = {0, 0};
        dnnl_convolution_desc_t cd;
        DG_DNNL(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference,
                dnnl_convolution_winograd, &ph_src_md, &w_any, b_md, &ph_dst_md, one, zero,
                one, one));
        fwd_pd = dg_pd_try_new(ctx, &cd, po, NULL);
        if (!fwd_pd) return false;
    }
    l->phases = true;
    l->src_view = dg_mem_new(ctx, &src_v, DNNL_MEMORY_NONE);
    dg_port_bind_in(&l->ph_in, ctx, l->src_view, &ph_src_v);
    DG_ASSERT(l->ph_in.buf != NULL); /* the views never agree: the port owns a buffer */
    l->ph_src = dg_mem_new(ctx, &ph_src_md, dg_mem_ptr(l->ph_in.buf));
    l->dst_own = !cfg->dst_into;
    l->dst = l->dst_own ? dg_mem_new(ctx, &dst_md, DNNL_MEMORY_ALLOCATE) : cfg->dst_into;
    l->dst_view = dg_mem_new(ctx, &dst_v, dg_mem_ptr(l->dst));
    dg_port_bind_out(&l->ph_out, ctx, l->dst_view, &ph_dst_v);
    DG_ASSERT(l->ph_out.buf != NULL);
    l->ph_dst = dg_mem_new(ctx, &ph_dst_md, dg_mem_ptr(l->ph_out.buf));
    l->own_wino = own;
    if (own) dg_wino_init(&l->wino, ctx, l->ph_src, l->ph_dst, cfg->relu, false);
    else dg_wlayer_init_forward(&l->wl, ctx, l->ph_src, fwd_pd, w_plain, b_md, l->ph_dst);
    return true;
}

/* dgseg's own Winograd for a dense convolution of an inference instance
 * where oneDNN has none (conv.h), or false where it does not apply. */
static bool init_own_wino(dg_conv *l, dg_ctx *ctx) {
    const dg_conv_cfg *cfg = &l->cfg;
    const int64_t ic = l->src_dims[1];
    if (!ctx->winograd || ctx->caps.winograd || l->tap >= 0 || cfg->k != 3 ||
            cfg->stride != 1 || cfg->dilation != 1 || cfg->pad != 1 || ic < 16 ||
            cfg->oc < 16 || ic % 8 || cfg->oc % 8 || ctx->compute_dt != dnnl_f32 ||
            (cfg->dst_into && !dg_wino_layout_ok(dg_mem_md(cfg->dst_into))))
        return false;
    l->own_wino = true;
    l->dst_own = !cfg->dst_into;
    if (l->dst_own) {
        const dnnl_memory_desc_t md = dg_md_plain(4, l->dst_dims, dnnl_nChw8c);
        l->dst = dg_mem_new(ctx, &md, DNNL_MEMORY_ALLOCATE);
    } else {
        l->dst = cfg->dst_into;
    }
    if (!cfg->training) {
        dg_wino_init(&l->wino, ctx, l->src, l->dst, cfg->relu, cfg->accumulate);
        return true;
    }
    dg_wino_init_training(&l->wino, ctx, l->src, l->dst, cfg->relu);
    if (!cfg->no_diff_src) { /* the forward of diff_dst with the rotated weights */
        const dnnl_memory_desc_t md = dg_md_plain(4, l->src_dims, dnnl_nChw8c);
        l->diff_src = dg_buf_mem(ctx, &md, cfg->diff_slot);
        dg_wino_init(&l->wino_bd, ctx, l->dst, l->diff_src, false, false);
        dg_wino_profile_as(&l->wino_bd, "convolution backward-data");
        l->w_rot = dg_ctx_calloc(ctx, (size_t)(ic * cfg->oc * 9), sizeof(float),
                "rotated weights");
    }
    init_relu_backward(l, ctx);
    return true;
}

/* Whether oneDNN implements pd by `kind` ("gemm": im2col; "ref": its
 * reference loops). */
static bool pd_impl_is(const_dnnl_primitive_desc_t pd, const char *kind) {
    const char *impl = NULL;
    DG_DNNL(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
    return impl && strstr(impl, kind);
}

static size_t pd_scratch_size(const_dnnl_primitive_desc_t pd) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    return md ? dnnl_memory_desc_get_size(md) : 0;
}

/* The pd of the first of descs[0..n) that has an implementation, or NULL
 * when none has (a data type this CPU lacks: dg_wlayer_init_unbuilt). */
static dnnl_primitive_desc_t first_pd(const dg_ctx *ctx, const dnnl_convolution_desc_t *descs,
        int n, const_dnnl_post_ops_t po, const_dnnl_primitive_desc_t hint) {
    for (int a = 0; a < n; a++) {
        dnnl_primitive_desc_t pd = dg_pd_try_new(ctx, &descs[a], po, hint);
        if (pd) return pd;
    }
    return NULL;
}

/* "2x64x32x32 -> 64 k3x3 s1 d2 bf16" */
static void shape_text(const dg_conv *l, dnnl_data_type_t cdt, char *buf, size_t size) {
    snprintf(buf, size, "%lldx%lldx%lldx%lld -> %lld k%lldx%lld s%lld d%lld %s",
            (long long)l->src_dims[0], (long long)l->src_dims[1], (long long)l->src_dims[2],
            (long long)l->src_dims[3], (long long)l->cfg.oc, (long long)l->cfg.k,
            (long long)l->cfg.k, (long long)l->cfg.stride, (long long)l->cfg.dilation,
            cdt == dnnl_bf16 ? "bf16" : "f32");
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
    l->tap = single_live_tap(cfg, l->src_dims[2], l->src_dims[3], oh, ow);

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

    /* One live tap (a dilation at least the input's size: ASPP's rates on
     * small feature maps): the convolution is a 1x1 one with that tap's
     * weights, read in place through a strided view of the (OC, IC, K, K)
     * tensor; the other taps' gradients are zero (dg_conv_backward). */
    const int64_t kp = l->tap >= 0 ? 1 : k;
    dnnl_dims_t wp_dims = {oc, ic, kp, kp};
    dnnl_memory_desc_t w_plain = dg_md_plain(4, w_dims, dnnl_oihw);
    if (l->tap >= 0) {
        const dnnl_dims_t wstr = {ic * k * k, k * k, k, 1};
        DG_DNNL(dnnl_memory_desc_init_by_strides(&w_plain, 4, wp_dims, dnnl_f32, wstr));
    }
    /* src, weights and diff_dst in the compute type (wlayer.h), the rest f32. */
    const dnnl_data_type_t cdt = ctx->compute_dt;
    dnnl_memory_desc_t src_any = dg_md_any_dt(4, l->src_dims, cdt);
    dnnl_memory_desc_t w_any = dg_md_any_dt(4, wp_dims, cdt);
    dnnl_memory_desc_t src_f32 = dg_md_any(4, l->src_dims);
    dnnl_memory_desc_t w_f32 = dg_md_any(4, wp_dims);
    dnnl_memory_desc_t dst_any = cfg->dst_into ? *dg_mem_md(cfg->dst_into) : dg_md_any(4, dst_dims);
    dnnl_memory_desc_t ddst_any = dg_md_any_dt(4, dst_dims, cdt);
    dnnl_memory_desc_t b_plain = dg_md_plain(1, &oc, dnnl_x);
    DG_ASSERT(!(cfg->folded && cfg->training));
    const bool prim_bias = cfg->bias || cfg->folded;
    const dnnl_memory_desc_t *b_md = prim_bias ? &b_plain : NULL;
    dnnl_dims_t strides = {cfg->stride, cfg->stride};
    const int64_t d1 = l->tap >= 0 ? 0 : cfg->dilation - 1, p = l->tap >= 0 ? 0 : cfg->pad;
    dnnl_dims_t dil = {d1, d1}; /* oneDNN: 0 = dense */
    dnnl_dims_t pad = {p, p};

    /* oneDNN 2.6's brgconv kernels take a sum post-op but fall back to a
     * reference kernel for a binary add: the residual goes through sum. */
    DG_ASSERT(cfg->folded || (!cfg->accumulate && !cfg->dst_into));
    dnnl_post_ops_t po = NULL;
    if (cfg->relu || cfg->accumulate) DG_DNNL(dnnl_post_ops_create(&po));
    if (cfg->accumulate) DG_DNNL(dnnl_post_ops_append_sum(po, 1.f));
    if (cfg->relu) DG_DNNL(dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_relu, 0.f, 0.f));
    /* Winograd first where it applies (see conv.h), direct where it has no
     * implementation; each pass chooses on its own. */
    const int n_alg = l->tap < 0 && use_winograd(ctx, cfg, ic) ? 2 : 1;
    const dnnl_alg_kind_t algs[2] = {n_alg == 2 ? dnnl_convolution_winograd
                                                : dnnl_convolution_direct,
            dnnl_convolution_direct};
    dnnl_convolution_desc_t fd[2], bwd[2], bdd[2];
    for (int a = 0; a < n_alg; a++) {
        DG_DNNL(dnnl_dilated_convolution_forward_desc_init(&fd[a],
                cfg->training ? dnnl_forward_training : dnnl_forward_inference, algs[a],
                &src_any, &w_any, b_md, &dst_any, strides, dil, pad, pad));
        DG_DNNL(dnnl_dilated_convolution_backward_weights_desc_init(&bwd[a], algs[a], &src_any,
                &w_f32, b_md, &ddst_any, strides, dil, pad, pad));
        DG_DNNL(dnnl_dilated_convolution_backward_data_desc_init(&bdd[a], algs[a], &src_f32,
                &w_any, &ddst_any, strides, dil, pad, pad));
    }
    if (init_phases(l, ctx, &w_plain, b_md, po) || init_own_wino(l, ctx)) {
        dnnl_post_ops_destroy(po);
        return;
    }
    dnnl_primitive_desc_t fwd_pd = first_pd(ctx, fd, n_alg, po, NULL);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_desc_t bwd_w_pd = NULL, bwd_data_pd = NULL;
    if (fwd_pd && cfg->training) {
        bwd_w_pd = first_pd(ctx, bwd, n_alg, NULL, fwd_pd);
        if (!cfg->no_diff_src) bwd_data_pd = first_pd(ctx, bdd, n_alg, NULL, fwd_pd);
    }
    if (!fwd_pd || (cfg->training && (!bwd_w_pd || (!cfg->no_diff_src && !bwd_data_pd)))) {
        char shape[160];
        shape_text(l, ctx->compute_dt, shape, sizeof(shape));
        const char *what = !fwd_pd ? "convolution forward"
                : !bwd_w_pd ? "convolution backward-weights" : "convolution backward-data";
        dnnl_primitive_desc_t pds[] = {fwd_pd, bwd_w_pd, bwd_data_pd};
        for (size_t i = 0; i < DG_ARRAY_LEN(pds); i++) dnnl_primitive_desc_destroy(pds[i]);
        const dnnl_memory_desc_t dst_plain = dg_md_plain(4, dst_dims, dnnl_nchw);
        const dnnl_memory_desc_t src_plain = dg_md_plain(4, l->src_dims, dnnl_nchw);
        dg_wlayer_init_unbuilt(&l->wl, ctx, name, what, shape, &dst_plain, cfg->dst_into,
                cfg->training && !cfg->no_diff_src ? &src_plain : NULL, cfg->diff_slot);
        l->dst = l->wl.dst;
        l->diff_src = l->wl.diff_src;
        return;
    }
    dg_wlayer_init_forward(&l->wl, ctx, src, fwd_pd, &w_plain, prim_bias ? &b_plain : NULL,
            cfg->dst_into);
    /* the view's first element is the live tap: the wrapped pointers shift */
    l->wl.w_shift = l->tap >= 0 ? (size_t)l->tap : 0;
    l->dst = l->wl.dst;
    if (!cfg->training) return;
    /* oneDNN 2.6 has no JIT backward-data kernel for some dilated shapes
     * (ASPP's rates 12 and 18) and takes gemm, with a per-thread im2col
     * buffer of the whole image, IC*K*K*OH*OW floats (R50 at 768^2: 170 MB
     * a thread). At stride 1 with "same" padding the backward-data is a
     * forward convolution of diff_dst (wlayer.h), which oneDNN runs with JIT
     * kernels or with gemm on im2col blocks: taken when its scratchpad is
     * the smaller. */
    if (bwd_data_pd && cfg->stride == 1 && l->tap < 0 && 2 * p == cfg->dilation * (k - 1) &&
            pd_impl_is(bwd_data_pd, "gemm")) {
        dnnl_memory_desc_t ddst_src = dg_md_any_dt(4, dst_dims, cdt);
        const dnnl_dims_t rot_dims = {ic, oc, k, k};
        dnnl_memory_desc_t w_rot = dg_md_any_dt(4, rot_dims, cdt);
        dnnl_convolution_desc_t rd;
        DG_DNNL(dnnl_dilated_convolution_forward_desc_init(&rd, dnnl_forward_inference,
                dnnl_convolution_direct, &ddst_src, &w_rot, NULL, &src_f32, strides, dil, pad,
                pad));
        dnnl_primitive_desc_t rot_pd = dg_pd_try_new(ctx, &rd, NULL, NULL);
        if (rot_pd && !pd_impl_is(rot_pd, "ref") &&
                pd_scratch_size(rot_pd) < pd_scratch_size(bwd_data_pd)) {
            dnnl_primitive_desc_destroy(bwd_data_pd);
            bwd_data_pd = rot_pd;
        } else {
            dnnl_primitive_desc_destroy(rot_pd);
        }
    }
    dg_wlayer_init_backward(&l->wl, ctx, bwd_w_pd, bwd_data_pd, &w_plain, b_md,
            cfg->diff_slot);
    l->diff_src = l->wl.diff_src;
    init_relu_backward(l, ctx);
}

/* A training layer's fused ReLU's backward (unless the next layer applies
 * its mask), on dst. */
static void init_relu_backward(dg_conv *l, dg_ctx *ctx) {
    const dg_conv_cfg *cfg = &l->cfg;
    if (cfg->relu && !cfg->relu_grad_by_next) {
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

/* The forward on weights and bias, through the phases where they apply. */
static void forward(dg_conv *l, dg_ctx *ctx, const float *weights, const float *bias,
        uint64_t version) {
    if (!l->phases) {
        if (l->own_wino) dg_wino_forward(&l->wino, ctx, weights, bias, version);
        else dg_wlayer_forward(&l->wl, ctx, weights, bias, version);
        return;
    }
    /* the views follow src and dst if they move (setting a handle zeroes a
     * blocked layout's channel padding, so only when they do) */
    if (dg_mem_ptr(l->src_view) != dg_mem_ptr(l->src))
        dg_mem_set_ptr(l->src_view, dg_mem_ptr(l->src));
    dg_port_pull(&l->ph_in, ctx);
    if (l->own_wino) dg_wino_forward(&l->wino, ctx, weights, bias, version);
    else dg_wlayer_forward(&l->wl, ctx, weights, bias, version);
    if (dg_mem_ptr(l->dst_view) != dg_mem_ptr(l->dst))
        dg_mem_set_ptr(l->dst_view, dg_mem_ptr(l->dst));
    dg_port_push(&l->ph_out, ctx);
}

void dg_conv_forward(dg_conv *l, dg_ctx *ctx, const dg_pass *p) {
    DG_ASSERT(!l->cfg.folded);
    forward(l, ctx, p->params + l->w_off, l->cfg.bias ? p->params + l->b_off : NULL,
            p->weights_version);
}

bool dg_conv_keeps_weights(const dg_conv *l) {
    if (l->cfg.training) return false;
    if (l->own_wino) return true;
    return l->wl.inference && l->wl.w_p.buf && l->wl.w_p.slot == DG_SLOT_OWN;
}

void dg_conv_forward_folded(dg_conv *l, dg_ctx *ctx, const float *weights, const float *bias,
        uint64_t version) {
    DG_ASSERT(l->cfg.folded);
    forward(l, ctx, weights, bias, version);
}

void dg_conv_backward(dg_conv *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst) {
    DG_ASSERT(l->cfg.training);
    if (l->tap >= 0) { /* the taps that only read padding: zero gradient */
        const int64_t kk = l->cfg.k * l->cfg.k, rows = l->cfg.oc * l->src_dims[1];
        float *g = p->grad + l->w_off;
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t t = 0; t < kk; t++)
                if (t != l->tap) g[r * kk + t] = 0.f;
    }
    if (l->cfg.relu && !l->cfg.relu_grad_by_next) {
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
    if (!l->own_wino) {
        dg_wlayer_backward(&l->wl, ctx, diff_dst, p->grad + l->w_off,
                l->cfg.bias ? p->grad + l->b_off : NULL);
        return;
    }
    dg_wino_backward_weights(&l->wino, ctx, diff_dst, p->grad + l->w_off,
            l->cfg.bias ? p->grad + l->b_off : NULL);
    if (l->cfg.no_diff_src) return;
    /* w_rot[i][o] = w[o][i] rotated 180 degrees: backward-data is the
     * forward convolution of diff_dst with it (wlayer.h) */
    const int64_t ic = l->src_dims[1], oc = l->cfg.oc;
    const float *w = p->params + l->w_off;
    float *r = l->w_rot;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < oc; o++)
        for (int64_t i = 0; i < ic; i++)
            for (int t = 0; t < 9; t++) r[(i * oc + o) * 9 + 8 - t] = w[(o * ic + i) * 9 + t];
    dg_wino_set_src(&l->wino_bd, ctx, diff_dst);
    dg_buf_point(ctx, l->diff_src, l->cfg.diff_slot);
    dg_wino_forward(&l->wino_bd, ctx, r, NULL, 0);
}

dnnl_memory_t dg_conv_src_in_use(const dg_conv *l) {
    return l->own_wino ? l->wino.src_p.mem : l->wl.src_p.mem;
}

void dg_conv_free(dg_conv *l) {
    dg_wlayer_free(&l->wl);
    if (l->own_wino) {
        dg_wino_free(&l->wino);
        dg_wino_free(&l->wino_bd);
        dnnl_memory_destroy(l->diff_src); /* training's own (wl holds none) */
        dg_free(l->w_rot);
    }
    dg_prim_free(&l->relu_bwd);
    dnnl_primitive_desc_destroy(l->relu_bwd_pd);
    dg_port_free(&l->ddst_r_p);
    dnnl_memory_destroy(l->diff_pre);
    dg_port_free(&l->ph_in);
    dg_port_free(&l->ph_out);
    dnnl_memory_t mems[] = {l->src_view, l->dst_view, l->ph_src, l->ph_dst,
            l->dst_own ? l->dst : NULL};
    for (size_t i = 0; i < DG_ARRAY_LEN(mems); i++) dnnl_memory_destroy(mems[i]);
    memset(l, 0, sizeof(*l));
}
