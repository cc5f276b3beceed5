/* tests/test_conv.c -- convolution forward/backward against the naive double
 * reference, and the reference against finite differences. */
#include <math.h>
#include <string.h>

#include "common.h"
#include "nets/core/conv.h"
#include "ref/conv_ref.h"

static dg_ctx ctx;
static void setup(void) { dg_ctx_init(&ctx); }
static void teardown(void) { dg_ctx_free(&ctx); }

typedef struct conv_case {
    int64_t n, ic, h, w, oc, k, stride, pad, dil;
    bool bias, relu;
    dnnl_format_tag_t src_tag; /* layout the input arrives in */
    bool rot; /* backward-data runs as the rotated forward (wlayer.h) */
} conv_case;

static const conv_case cases[] = {
    {1, 3, 13, 17, 5, 3, 1, 1, 1, true, false, dnnl_nchw, false},
    {2, 7, 15, 11, 20, 3, 2, 1, 1, false, false, dnnl_nchw, false},/* stride 2, odd */
    {2, 5, 14, 9, 6, 3, 1, 2, 2, false, false, dnnl_nchw, false},  /* dilation 2 */
    {1, 17, 10, 13, 19, 3, 1, 4, 4, true, true, dnnl_nChw16c, false}, /* blocked in, ReLU */
    {2, 9, 7, 5, 3, 1, 1, 0, 1, true, true, dnnl_nhwc, false},        /* 1x1 */
    {1, 3, 19, 21, 8, 7, 2, 3, 1, false, true, dnnl_nchw, false},  /* stem-like 7x7 */
    {2, 20, 6, 7, 24, 3, 1, 8, 8, true, true, dnnl_nChw16c, false},   /* one live tap: 1x1 */
    {2, 6, 5, 12, 7, 3, 1, 6, 6, false, false, dnnl_nchw, false},  /* dead rows only */
    /* a shape oneDNN 2.6 runs backward-data with gemm (its im2col buffer
     * of the whole image), run as the rotated forward (wlayer.h) */
    {2, 64, 12, 12, 16, 3, 1, 8, 8, true, true, dnnl_nChw16c, true},
};

/* bf16: the layer computes in bf16 (wlayer.h); the reference takes src,
 * weights and diff_dst rounded to bf16. Their products are exact in f32, so
 * what is left is f32 accumulation and the bars stay f32's. */
static bool run_case(const conv_case *tc, uint64_t seed, bool bf16) {
    ref_conv rc;
    ref_conv_setup(&rc, tc->n, tc->ic, tc->h, tc->w, tc->oc, tc->k, tc->stride, tc->pad, tc->dil);
    size_t ns = (size_t)(tc->n * tc->ic * tc->h * tc->w);
    size_t nw = (size_t)(tc->oc * tc->ic * tc->k * tc->k);
    size_t nd = (size_t)(tc->n * tc->oc * rc.oh * rc.ow);

    float *src = dg_xmalloc(ns * sizeof(float));
    float *ddst = dg_xmalloc(nd * sizeof(float));
    fill_uniform(src, ns, seed, -1.f, 1.f);
    fill_uniform(ddst, nd, seed + 1, -1.f, 1.f);

    int64_t sdims[4] = {tc->n, tc->ic, tc->h, tc->w};
    dnnl_memory_t src_m = make_tagged(&ctx, src, 4, sdims, tc->src_tag);
    dg_param_set ps;
    dg_params_init(&ps);
    dg_conv l;
    dg_conv_cfg cfg = {.oc = tc->oc, .k = tc->k, .stride = tc->stride, .pad = tc->pad,
            .dilation = tc->dil, .bias = tc->bias, .relu = tc->relu, .training = true};
    ctx.compute_dt = bf16 ? dnnl_bf16 : dnnl_f32;
    dg_conv_init(&l, &ctx, &ps, "conv", src_m, &cfg);
    ctx.compute_dt = dnnl_f32;
    if (bf16 && !ctx.caps.bf16) { /* no abort: an unbuilt layer and the error status */
        ck_assert_int_eq(ctx.status, DG_STATUS_ERR_CONFIG);
        ck_assert_ptr_null(l.wl.fwd.prim);
        ck_assert_ptr_null(l.wl.bwd_w.prim);
        int64_t dd[4], sd[4];
        dg_mem_dims4(l.dst, dd);
        dg_mem_dims4(l.diff_src, sd);
        ck_assert(!memcmp(dd, l.dst_dims, sizeof(dd)) && !memcmp(sd, sdims, sizeof(sd)));
        ctx.status = DG_STATUS_OK;
        dg_conv_free(&l);
        dnnl_memory_destroy(src_m);
        dg_params_free(&ps);
        dg_free(src), dg_free(ddst);
        return false;
    }
    dg_params_alloc(&ps);
    fill_uniform(ps.data, ps.d, seed + 2, -0.5f, 0.5f);
    ck_assert_uint_eq(ps.d, nw + (tc->bias ? (size_t)tc->oc : 0));
    /* Dilation reaching past the input on both axes leaves the centre tap. */
    const bool one_tap = tc->k > 1 && tc->stride == 1 && tc->pad == tc->dil &&
            tc->dil >= tc->h && tc->dil >= tc->w;
    ck_assert_int_eq(l.tap, one_tap ? tc->k * tc->k / 2 : -1);
    if (!bf16) ck_assert_int_eq(l.wl.bwd_data_rot, tc->rot);
    if (bf16) { /* compute, then f32 results, and f32 parameters */
        ck_assert_int_eq(dg_pd_md(l.wl.fwd_pd, dnnl_query_src_md, 0)->data_type, dnnl_bf16);
        ck_assert_int_eq(dg_pd_md(l.wl.fwd_pd, dnnl_query_weights_md, 0)->data_type, dnnl_bf16);
        ck_assert_int_eq(dg_mem_md(l.dst)->data_type, dnnl_f32);
        ck_assert_int_eq(dg_mem_md(l.diff_src)->data_type, dnnl_f32);
    }

    double *s64 = dup_double_rounded(src, ns, bf16), *w64 = dup_double_rounded(ps.data, nw, bf16);
    double *b64 = tc->bias ? dup_double(ps.data + nw, (size_t)tc->oc) : NULL;
    double *exp = dg_xmalloc(nd * sizeof(double));
    ref_conv_forward(&rc, s64, w64, b64, exp);
    double *dd64 = dup_double_rounded(ddst, nd, bf16);
    if (tc->relu)
        for (size_t i = 0; i < nd; i++) {
            if (exp[i] < 0) dd64[i] = 0.0;
            exp[i] = exp[i] > 0 ? exp[i] : 0.0;
        }

    dg_pass p = dg_pass_train(&ps);
    dg_conv_forward(&l, &ctx, &p);
    float *got = dg_xmalloc(nd * sizeof(float));
    read_plain(&ctx, l.dst, got);
    DG_ASSERT_CLOSE(got, exp, nd, 1e-5, 1e-4);

    /* Pre-fill the gradient to prove backward overwrites, never adds. */
    for (size_t i = 0; i < ps.d; i++) ps.grad[i] = 100.f;
    dnnl_memory_t ddst_m = make_plain(&ctx, ddst, 4, l.dst_dims);
    dg_conv_backward(&l, &ctx, &p, ddst_m);
    DG_DNNL(dnnl_stream_wait(ctx.stream));

    double *eds = dg_xmalloc(ns * sizeof(double)), *edw = dg_xmalloc(nw * sizeof(double));
    double edb[64];
    ref_conv_backward(&rc, s64, w64, dd64, eds, edw, edb);
    float *gds = dg_xmalloc(ns * sizeof(float));
    read_plain(&ctx, l.diff_src, gds);
    DG_ASSERT_CLOSE(gds, eds, ns, 1e-5, 1e-4);
    DG_ASSERT_CLOSE(ps.grad, edw, nw, 1e-5, 1e-4);
    if (tc->bias) DG_ASSERT_CLOSE(ps.grad + nw, edb, (size_t)tc->oc, 1e-5, 1e-4);

    dg_conv_free(&l);
    dnnl_memory_destroy(src_m);
    dnnl_memory_destroy(ddst_m);
    dg_params_free(&ps);
    dg_free(src), dg_free(ddst), dg_free(s64), dg_free(w64), dg_free(b64), dg_free(exp);
    dg_free(dd64), dg_free(got), dg_free(eds), dg_free(edw), dg_free(gds);
    return true;
}

START_TEST(conv_forward_backward_match_reference) {
    ck_assert(run_case(&cases[_i], 100 + (uint64_t)_i, false));
}
END_TEST

/* Where the CPU has no bf16 convolutions, the layer is left unbuilt with
 * ctx.status set (the error dg_model_create returns) instead of aborting. */
START_TEST(conv_bf16_matches_reference_on_bf16_inputs) {
    if (!run_case(&cases[_i], 150 + (uint64_t)_i, true))
        DG_TEST_SKIPPED("bf16 numerics: no bf16 convolutions at ISA %s (checked: the clear "
                        "error instead)", ctx.caps.isa_name);
}
END_TEST

/* Level 1: the reference's backward against its own forward. */
typedef struct fd_ctx {
    ref_conv rc;
    const double *src, *w, *r;
    int which; /* 0: vary src, 1: vary weights */
    double *dst;
} fd_ctx;

static double conv_loss(void *vctx, const double *x) {
    fd_ctx *f = vctx;
    ref_conv_forward(&f->rc, f->which == 0 ? x : f->src, f->which == 1 ? x : f->w, NULL, f->dst);
    size_t nd = (size_t)(f->rc.n * f->rc.oc * f->rc.oh * f->rc.ow);
    double s = 0.0;
    for (size_t i = 0; i < nd; i++) s += f->dst[i] * f->r[i];
    return s;
}

START_TEST(conv_reference_backward_matches_finite_differences) {
    fd_ctx f;
    ref_conv_setup(&f.rc, 2, 3, 7, 6, 4, 3, 2, 2, 2);
    size_t ns = 2 * 3 * 7 * 6, nw = 4 * 3 * 3 * 3;
    size_t nd = (size_t)(2 * 4 * f.rc.oh * f.rc.ow);
    float tmp[512];
    double src[512], w[512], r[512], dst[512], g_src[512], g_w[512], fd[512];
    fill_uniform(tmp, ns, 1, -1, 1), to_double(src, tmp, ns);
    fill_uniform(tmp, nw, 2, -1, 1), to_double(w, tmp, nw);
    fill_uniform(tmp, nd, 3, -1, 1), to_double(r, tmp, nd);
    f.src = src, f.w = w, f.r = r, f.dst = dst;
    ref_conv_backward(&f.rc, src, w, r, g_src, g_w, NULL);
    f.which = 0;
    fd_gradient(conv_loss, &f, src, ns, fd);
    DG_ASSERT_CLOSE64(g_src, fd, ns, 1e-8, 1e-6);
    f.which = 1;
    fd_gradient(conv_loss, &f, w, nw, fd);
    DG_ASSERT_CLOSE64(g_w, fd, nw, 1e-8, 1e-6);
}
END_TEST

/* Loop 0: a dense 3x3; 1: dilation 10 on a 9x9 input (one live tap); 2: the
 * same, folded (weights and bias given at the forward). */
START_TEST(conv_inference_instance_matches_training_forward) {
    int64_t dims[4] = {1, 4, 9, 9};
    float src[324];
    fill_uniform(src, 324, 5, -1, 1);
    dnnl_memory_t m = make_plain(&ctx, src, 4, dims);
    dg_param_set ps;
    dg_params_init(&ps);
    dg_conv a, b;
    const int64_t d = _i ? 10 : 1;
    dg_conv_cfg cfg = {.oc = 8, .k = 3, .stride = 1, .pad = d, .dilation = d, .bias = true,
            .relu = true, .training = true};
    dg_conv_init(&a, &ctx, &ps, "a", m, &cfg);
    ck_assert_int_eq(a.tap, _i ? 4 : -1);
    dg_params_alloc(&ps);
    dg_params_init_values(&ps, 7);
    for (size_t i = 0; i < 8; i++) ps.data[a.b_off + i] = 0.1f * (float)i - 0.3f;
    dg_param_set ps2;
    dg_params_init(&ps2);
    cfg.training = false;
    cfg.folded = _i == 2;
    dg_conv_init(&b, &ctx, &ps2, "a", m, &cfg);
    dg_params_alloc(&ps2);
    dg_pass p = dg_pass_train(&ps);
    dg_conv_forward(&a, &ctx, &p);
    if (cfg.folded)
        dg_conv_forward_folded(&b, &ctx, ps.data + a.w_off, ps.data + a.b_off, 0);
    else
        dg_conv_forward(&b, &ctx, &p); /* same weights through the pass */
    float ga[648], gb[648];
    double e[648];
    read_plain(&ctx, a.dst, ga);
    read_plain(&ctx, b.dst, gb);
    to_double(e, ga, 648);
    DG_ASSERT_CLOSE(gb, e, 648, 1e-6, 1e-5);
    dg_conv_free(&a), dg_conv_free(&b);
    dg_params_free(&ps), dg_params_free(&ps2);
    dnnl_memory_destroy(m);
}
END_TEST

/* Winograd's error model. Direct convolution's rounding error at an output
 * is bounded by a small multiple of u * sum |w| |x| over its window (u =
 * 2^-24, f32's unit roundoff); Winograd F(4x4, 3x3) computes the same sum
 * through transforms whose constants (1/24, 8, ...) multiply that bound by
 * a growth factor: at most 22 with 32 channels and 35 with 8 in a float32
 * emulation of the transforms on random tiles (tests/reference/
 * winograd_error.py, 2,000 and 4,000 tiles of 16 outputs; direct: 0.6 and
 * 1.2), so the bar is 64 u sum |w| |x| per output (plus 1e-7 for
 * outputs whose window is all but zero): element-wise, scaled to what each
 * output sums, not to the output's own size, which cancellation can make
 * arbitrarily small. */
static void assert_winograd_close(const float *got, const double *exp, const double *absconv,
        size_t n) {
    const double u = 0x1p-24;
    size_t bad = 0, first = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - exp[i]), bar = 64.0 * u * absconv[i] + 1e-7;
        if (!(d <= bar) && bad++ == 0) first = i;
        worst = fmax(worst, d / bar);
    }
    ck_assert_msg(bad == 0, "%zu/%zu off; first [%zu] got %.9g exp %.9g bar %.3g; worst %.3g bars",
            bad, n, first, (double)got[first], exp[first], 64.0 * u * absconv[first] + 1e-7,
            worst);
}

/* sum |w| |x| (+ |b|) over each output's window: the reference convolution
 * of the absolute values. */
static double *abs_conv(const ref_conv *rc, const double *x, size_t nx, const double *w,
        size_t nw, const double *b, size_t nb, size_t ny) {
    double *ax = dg_xmalloc(nx * sizeof(double)), *aw = dg_xmalloc(nw * sizeof(double));
    double *ab = b ? dg_xmalloc(nb * sizeof(double)) : NULL, *y = dg_xmalloc(ny * sizeof(double));
    for (size_t i = 0; i < nx; i++) ax[i] = fabs(x[i]);
    for (size_t i = 0; i < nw; i++) aw[i] = fabs(w[i]);
    for (size_t i = 0; b && i < nb; i++) ab[i] = fabs(b[i]);
    ref_conv_forward(rc, ax, aw, ab, y);
    dg_free(ax), dg_free(aw), dg_free(ab);
    return y;
}

/* Inference instances with Winograd on run a dilated 3x3 convolution on its
 * input's phases (conv.h) where the input splits evenly, and match the
 * training instance's direct dilated forward to Winograd's rounding. Loop:
 * dilation 2, then 3 folded and writing into a borrowed blocked dst, then
 * 2 on an input that does not split (the plain path), then 2 with Winograd
 * off (also plain). */
START_TEST(conv_phases_match_dilated_forward) {
    /* 4, 5: 0 and 1 with dgseg's own Winograd on the phases (oneDNN's
     * hidden, as on an AVX2 CPU) */
    const bool own = _i >= 4;
    if (own) ctx.caps.winograd = false;
    const int i = _i % 4;
    const int64_t d = i == 1 ? 3 : 2, hw = i == 2 ? 13 : 12, n = 2, ic = 32, oc = 16;
    const bool folded = i == 1, wino = i != 3;
    int64_t dims[4] = {n, ic, hw, hw};
    const size_t ns = (size_t)(n * ic * hw * hw), nd = (size_t)(n * oc * hw * hw);
    float *src = dg_xmalloc(ns * sizeof(float));
    fill_uniform(src, ns, 11 + (uint64_t)i, -1, 1);
    dnnl_memory_t m = make_tagged(&ctx, src, 4, dims, i == 0 ? dnnl_nchw : dnnl_nChw16c);
    dg_param_set ps, ps2;
    dg_params_init(&ps);
    dg_params_init(&ps2);
    dg_conv a, b;
    dg_conv_cfg cfg = {.oc = oc, .k = 3, .stride = 1, .pad = d, .dilation = d, .bias = true,
            .relu = true, .training = true};
    dg_conv_init(&a, &ctx, &ps, "a", m, &cfg);
    dg_params_alloc(&ps);
    dg_params_init_values(&ps, 9);
    for (int64_t i = 0; i < oc; i++) ps.data[a.b_off + (size_t)i] = 0.05f * (float)i - 0.4f;
    int64_t ddims[4] = {n, oc, hw, hw};
    dnnl_memory_desc_t into_md = dg_md_plain(4, ddims, dnnl_nChw16c);
    dnnl_memory_t into = folded ? dg_mem_new(&ctx, &into_md, DNNL_MEMORY_ALLOCATE) : NULL;
    cfg.training = false;
    cfg.folded = folded;
    cfg.dst_into = into;
    ctx.winograd = wino;
    dg_conv_init(&b, &ctx, &ps2, "a", m, &cfg);
    ctx.winograd = false;
    dg_params_alloc(&ps2);
    ck_assert_int_eq(b.phases, i < 2);
    ck_assert_int_eq(b.own_wino, i < 2 && !ctx.caps.winograd);
    if (folded) ck_assert_ptr_eq(b.dst, into);
    dg_pass p = dg_pass_train(&ps);
    dg_conv_forward(&a, &ctx, &p);
    for (int rep = 0; rep < 2; rep++) { /* the second forward reuses the prepared weights */
        if (folded)
            dg_conv_forward_folded(&b, &ctx, ps.data + a.w_off, ps.data + a.b_off, 1);
        else
            dg_conv_forward(&b, &ctx, &p);
    }
    float *ga = dg_xmalloc(nd * sizeof(float)), *gb = dg_xmalloc(nd * sizeof(float));
    double *e = dg_xmalloc(nd * sizeof(double));
    read_plain(&ctx, a.dst, ga);
    read_plain(&ctx, b.dst, gb);
    to_double(e, ga, nd);
    if (wino) { /* bars of Winograd's error model (the direct one is far inside them) */
        ref_conv rc;
        ref_conv_setup(&rc, n, ic, hw, hw, oc, 3, 1, d, d);
        double *x64 = dup_double(src, ns), *w64 = dup_double(ps.data + a.w_off, ps.d - oc);
        double *b64 = dup_double(ps.data + a.b_off, (size_t)oc);
        double *ac = abs_conv(&rc, x64, ns, w64, ps.d - oc, b64, (size_t)oc, nd);
        assert_winograd_close(gb, e, ac, nd);
        dg_free(x64), dg_free(w64), dg_free(b64), dg_free(ac);
    } else {
        DG_ASSERT_CLOSE(gb, e, nd, 1e-5, 1e-4);
    }
    dg_conv_free(&a), dg_conv_free(&b);
    dnnl_memory_destroy(m);
    dnnl_memory_destroy(into);
    dg_params_free(&ps), dg_params_free(&ps2);
    dg_free(src), dg_free(ga), dg_free(gb), dg_free(e);
}
END_TEST

/* dgseg's own Winograd F(4x4, 3x3) (wino.h; what inference instances run
 * where oneDNN has no Winograd, forced here on any CPU) against the double
 * reference: bias, ReLU, sizes that leave partial tiles, a second forward
 * on the same weights version reusing the transformed weights, new weights
 * under a new version; blocks of 8 tiles in loops 0 and 3 (the last one
 * partial). Loop: 0 plain src, own dst; 1 blocked src, folded
 * into a borrowed nChw16c dst with the residual accumulated; 2 a 2x3
 * image (one partial tile); 3 IC 24, OC 40 at 9x7. Bars: Winograd's error model (below). */
START_TEST(own_winograd_matches_reference) {
    ctx.caps.winograd = false;
    dg_wino_block_tiles = _i == 0 || _i == 3 ? 8 : 0; /* several blocks, the last partial */
    const int64_t n = 2, ic = _i == 3 ? 24 : 32, oc = _i == 3 ? 40 : 16;
    const int64_t h = _i == 2 ? 2 : _i == 3 ? 9 : 13, w = _i == 2 ? 3 : _i == 3 ? 7 : 11;
    const bool folded = _i == 1;
    const int64_t sdims[4] = {n, ic, h, w}, ddims[4] = {n, oc, h, w};
    const size_t ns = (size_t)(n * ic * h * w), nd = (size_t)(n * oc * h * w);
    float *src = dg_xmalloc(ns * sizeof(float)), *res = dg_xmalloc(nd * sizeof(float));
    fill_uniform(src, ns, 40 + (uint64_t)_i, -1, 1);
    fill_uniform(res, nd, 50 + (uint64_t)_i, -1, 1);
    dnnl_memory_t m = make_tagged(&ctx, src, 4, sdims, _i == 1 ? dnnl_nChw8c : dnnl_nchw);
    dnnl_memory_t into = folded ? make_tagged(&ctx, res, 4, ddims, dnnl_nChw16c) : NULL;
    dg_param_set ps;
    dg_params_init(&ps);
    dg_conv l;
    dg_conv_cfg cfg = {.oc = oc, .k = 3, .stride = 1, .pad = 1, .dilation = 1, .bias = true,
            .relu = true, .folded = folded, .accumulate = folded, .dst_into = into};
    ctx.winograd = true;
    dg_conv_init(&l, &ctx, &ps, "w", m, &cfg);
    ctx.winograd = false;
    dg_wino_block_tiles = 0;
    ck_assert(l.own_wino && !l.phases);
    ck_assert(_i == 1 || _i == 2 || l.wino.tb == 8);
    dg_params_alloc(&ps);
    ref_conv rc;
    ref_conv_setup(&rc, n, ic, h, w, oc, 3, 1, 1, 1);
    double *s64 = dup_double(src, ns), *exp = dg_xmalloc(nd * sizeof(double));
    float *got = dg_xmalloc(nd * sizeof(float));
    for (int version = 1; version <= 3; version++) {
        if (version != 2) /* 2: the same weights, version 1's transform reused */
            fill_uniform(ps.data, ps.d, 60 + (uint64_t)(_i * 4 + version), -0.5f, 0.5f);
        double *w64 = dup_double(ps.data + l.w_off, (size_t)(oc * ic * 9));
        double *b64 = dup_double(ps.data + l.b_off, (size_t)oc);
        ref_conv_forward(&rc, s64, w64, b64, exp);
        for (size_t k = 0; k < nd; k++) {
            if (folded) exp[k] += res[k];
            exp[k] = exp[k] > 0 ? exp[k] : 0.0;
        }
        if (folded) { /* the residual the layer adds to */
            dnnl_memory_t r = make_plain(&ctx, res, 4, ddims);
            dg_mem_copy(&ctx, into, r);
            dnnl_memory_destroy(r);
            dg_conv_forward_folded(&l, &ctx, ps.data + l.w_off, ps.data + l.b_off,
                    version == 2 ? 1 : (uint64_t)version);
        } else {
            dg_pass p = dg_pass_eval(&ps);
            p.weights_version = version == 2 ? 1 : (uint64_t)version;
            dg_conv_forward(&l, &ctx, &p);
        }
        read_plain(&ctx, l.dst, got);
        double *ac = abs_conv(&rc, s64, ns, w64, (size_t)(oc * ic * 9), b64, (size_t)oc, nd);
        for (size_t k = 0; folded && k < nd; k++) ac[k] += fabs(res[k]);
        assert_winograd_close(got, exp, ac, nd);
        size_t n_zero = 0; /* and not vacuously: ReLU leaves about half */
        for (size_t k = 0; k < nd; k++) n_zero += got[k] == 0.f;
        ck_assert_msg(n_zero < nd * 3 / 4, "%zu/%zu outputs are zero", n_zero, nd);
        dg_free(w64), dg_free(b64), dg_free(ac);
    }
    dg_conv_free(&l);
    dnnl_memory_destroy(m);
    dnnl_memory_destroy(into);
    dg_params_free(&ps);
    dg_free(src), dg_free(res), dg_free(s64), dg_free(exp), dg_free(got);
}
END_TEST

/* Training with dgseg's own Winograd (what the classifiers' training runs
 * where oneDNN has no Winograd, forced here on any CPU): forward,
 * backward-data (the forward of diff_dst with the rotated weights) and
 * backward-weights (the transforms' transposes) against the double
 * reference, at the bars of Winograd's error model; the bias gradient is a
 * plain sum (direct's bars). Gradients are overwritten, twice. Loop: 0
 * plain src, bias, blocks of 7 tiles (the last partial); 1 fused ReLU (its mask applied by the layer), blocked
 * src; 2 no diff_src, IC 16, OC 24, 5x6. */
START_TEST(own_winograd_training_matches_reference) {
    ctx.caps.winograd = false;
    dg_wino_block_tiles = _i == 0 ? 7 : 0; /* 0: several blocks, the last partial */
    const int64_t n = 2, ic = _i == 2 ? 16 : 32, oc = _i == 2 ? 24 : 16;
    const int64_t h = _i == 2 ? 5 : 13, w = _i == 2 ? 6 : 11;
    const bool relu = _i == 1, no_diff_src = _i == 2;
    const int64_t sdims[4] = {n, ic, h, w}, ddims[4] = {n, oc, h, w};
    const size_t ns = (size_t)(n * ic * h * w), nd = (size_t)(n * oc * h * w);
    const size_t nw = (size_t)(oc * ic * 9);
    float *src = dg_xmalloc(ns * sizeof(float)), *ddst = dg_xmalloc(nd * sizeof(float));
    fill_uniform(src, ns, 70 + (uint64_t)_i, -1, 1);
    fill_uniform(ddst, nd, 80 + (uint64_t)_i, -1, 1);
    dnnl_memory_t m = make_tagged(&ctx, src, 4, sdims, _i == 1 ? dnnl_nChw8c : dnnl_nchw);
    dg_param_set ps;
    dg_params_init(&ps);
    dg_conv l;
    dg_conv_cfg cfg = {.oc = oc, .k = 3, .stride = 1, .pad = 1, .dilation = 1, .bias = true,
            .relu = relu, .no_diff_src = no_diff_src, .training = true};
    ctx.winograd = true;
    dg_conv_init(&l, &ctx, &ps, "w", m, &cfg);
    ctx.winograd = false;
    dg_wino_block_tiles = 0;
    ck_assert(l.own_wino && (l.diff_src == NULL) == no_diff_src);
    ck_assert(_i != 0 || (l.wino.tb == 7 && l.wino.t % 7 != 0));
    dg_params_alloc(&ps);
    fill_uniform(ps.data, ps.d, 90 + (uint64_t)_i, -0.5f, 0.5f);

    ref_conv rc;
    ref_conv_setup(&rc, n, ic, h, w, oc, 3, 1, 1, 1);
    double *s64 = dup_double(src, ns), *w64 = dup_double(ps.data + l.w_off, nw);
    double *b64 = dup_double(ps.data + l.b_off, (size_t)oc), *dd64 = dup_double(ddst, nd);
    double *exp = dg_xmalloc(nd * sizeof(double));
    ref_conv_forward(&rc, s64, w64, b64, exp);
    for (size_t k = 0; relu && k < nd; k++) {
        if (exp[k] < 0) dd64[k] = 0.0;
        exp[k] = exp[k] > 0 ? exp[k] : 0.0;
    }
    double *ac = abs_conv(&rc, s64, ns, w64, nw, b64, (size_t)oc, nd);
    double *eds = dg_xmalloc(ns * sizeof(double)), *edw = dg_xmalloc(nw * sizeof(double));
    double *ads = dg_xmalloc(ns * sizeof(double)), *adw = dg_xmalloc(nw * sizeof(double));
    double edb[64], adb[64];
    ref_conv_backward(&rc, s64, w64, dd64, eds, edw, edb);
    { /* the same sums of absolute values: the backward passes' error scales */
        double *as = dg_xmalloc(ns * sizeof(double)), *aw = dg_xmalloc(nw * sizeof(double));
        double *ad = dg_xmalloc(nd * sizeof(double));
        for (size_t k = 0; k < ns; k++) as[k] = fabs(s64[k]);
        for (size_t k = 0; k < nw; k++) aw[k] = fabs(w64[k]);
        for (size_t k = 0; k < nd; k++) ad[k] = fabs(dd64[k]);
        ref_conv_backward(&rc, as, aw, ad, ads, adw, adb);
        dg_free(as), dg_free(aw), dg_free(ad);
    }
    float *got = dg_xmalloc(nd * sizeof(float)), *gds = dg_xmalloc(ns * sizeof(float));
    dnnl_memory_t ddst_m = make_plain(&ctx, ddst, 4, ddims);
    dg_pass p = dg_pass_train(&ps);
    for (int rep = 0; rep < 2; rep++) {
        dg_conv_forward(&l, &ctx, &p);
        read_plain(&ctx, l.dst, got);
        assert_winograd_close(got, exp, ac, nd);
        for (size_t i = 0; i < ps.d; i++) ps.grad[i] = 100.f;
        dg_conv_backward(&l, &ctx, &p, ddst_m);
        DG_DNNL(dnnl_stream_wait(ctx.stream));
        assert_winograd_close(ps.grad + l.w_off, edw, adw, nw);
        DG_ASSERT_CLOSE(ps.grad + l.b_off, edb, (size_t)oc, 1e-5, 1e-4);
        if (!no_diff_src) {
            read_plain(&ctx, l.diff_src, gds);
            assert_winograd_close(gds, eds, ads, ns);
        }
    }
    dg_conv_free(&l);
    dnnl_memory_destroy(m);
    dnnl_memory_destroy(ddst_m);
    dg_params_free(&ps);
    dg_free(src), dg_free(ddst), dg_free(s64), dg_free(w64), dg_free(b64), dg_free(dd64);
    dg_free(exp), dg_free(ac), dg_free(eds), dg_free(edw), dg_free(ads), dg_free(adw);
    dg_free(got), dg_free(gds);
}
END_TEST

START_TEST(conv_init_is_kaiming_normal_fan_out) {
    int64_t dims[4] = {1, 16, 8, 8};
    dnnl_memory_desc_t md = dg_md_plain(4, dims, dnnl_nchw);
    dnnl_memory_t m = dg_mem_new(&ctx, &md, DNNL_MEMORY_ALLOCATE);
    dg_param_set ps;
    dg_params_init(&ps);
    dg_conv l;
    dg_conv_cfg cfg = {.oc = 64, .k = 3, .stride = 1, .pad = 1, .dilation = 1, .training = true};
    dg_conv_init(&l, &ctx, &ps, "c", m, &cfg);
    dg_params_alloc(&ps);
    dg_params_init_values(&ps, 1);
    double s = 0, s2 = 0;
    for (size_t i = 0; i < ps.d; i++) s += ps.data[i], s2 += (double)ps.data[i] * ps.data[i];
    double mean = s / (double)ps.d, std = sqrt(s2 / (double)ps.d - mean * mean);
    double want = sqrt(2.0 / (64 * 9)); /* fan_out = OC*KH*KW */
    ck_assert_msg(fabs(mean) < 0.05 * want, "mean %g", mean);
    ck_assert_msg(fabs(std / want - 1.0) < 0.03, "std %g want %g", std, want);
    dg_conv_free(&l);
    dg_params_free(&ps);
    dnnl_memory_destroy(m);
}
END_TEST

Suite *conv_suite(void) {
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("numerics");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, conv_forward_backward_match_reference, 0, (int)DG_ARRAY_LEN(cases));
    tcase_add_loop_test(tc, conv_bf16_matches_reference_on_bf16_inputs, 0,
            (int)DG_ARRAY_LEN(cases));
    tcase_add_test(tc, conv_reference_backward_matches_finite_differences);
    tcase_add_loop_test(tc, conv_inference_instance_matches_training_forward, 0, 3);
    tcase_add_loop_test(tc, conv_phases_match_dilated_forward, 0, 6);
    tcase_add_loop_test(tc, own_winograd_matches_reference, 0, 4);
    tcase_add_loop_test(tc, own_winograd_training_matches_reference, 0, 3);
    tcase_add_test(tc, conv_init_is_kaiming_normal_fan_out);
    suite_add_tcase(s, tc);
    return s;
}
