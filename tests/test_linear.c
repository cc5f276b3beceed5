/* tests/test_linear.c -- inner product forward/backward against a naive
 * double reference (src 2-D and 4-D, plain and blocked), the reference
 * against finite differences, and PyTorch's default initialisation.
 *
 * Shapes: N batch, IC input features (C*H*W for a 4-D src), OC outputs. */
#include <math.h>
#include <string.h>

#include "common.h"
#include "nets/core/linear.h"

static dg_ctx ctx;
static void setup(void) { dg_ctx_init(&ctx); }
static void teardown(void) { dg_ctx_free(&ctx); }

/* dst (N, OC) = src (N, IC) * w^T (OC, IC) + bias (OC, or NULL). */
static void ref_linear_forward(int64_t n, int64_t ic, int64_t oc, const double *src,
        const double *w, const double *bias, double *dst) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < oc; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int64_t k = 0; k < ic; k++) s += src[i * ic + k] * w[o * ic + k];
            dst[i * oc + o] = s;
        }
}

/* Gradients of the forward for diff_dst (N, OC); any output may be NULL. */
static void ref_linear_backward(int64_t n, int64_t ic, int64_t oc, const double *src,
        const double *w, const double *diff_dst, double *diff_src, double *diff_w,
        double *diff_b) {
    if (diff_src)
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < ic; k++) {
                double s = 0.0;
                for (int64_t o = 0; o < oc; o++) s += diff_dst[i * oc + o] * w[o * ic + k];
                diff_src[i * ic + k] = s;
            }
    if (diff_w)
        for (int64_t o = 0; o < oc; o++)
            for (int64_t k = 0; k < ic; k++) {
                double s = 0.0;
                for (int64_t i = 0; i < n; i++) s += diff_dst[i * oc + o] * src[i * ic + k];
                diff_w[o * ic + k] = s;
            }
    if (diff_b)
        for (int64_t o = 0; o < oc; o++) {
            double s = 0.0;
            for (int64_t i = 0; i < n; i++) s += diff_dst[i * oc + o];
            diff_b[o] = s;
        }
}

typedef struct linear_case {
    int ndims;
    int64_t dims[4]; /* (N, IC) or (N, C, H, W) */
    int64_t oc;
    bool bias, no_diff_src;
    dnnl_format_tag_t src_tag;  /* layout the input arrives in */
    dnnl_format_tag_t ddst_tag; /* layout diff_dst arrives in */
} linear_case;

static const linear_case cases[] = {
    {2, {3, 37}, 11, true, false, dnnl_nc, dnnl_nc},
    {2, {1, 5}, 3, false, false, dnnl_nc, dnnl_cn},              /* batch 1, no bias */
    {4, {2, 20, 1, 1}, 10, true, false, dnnl_nchw, dnnl_nc},     /* global-pooled */
    {4, {2, 20, 1, 1}, 10, true, false, dnnl_nChw16c, dnnl_cn},  /* padded channels */
    {4, {1, 3, 5, 7}, 6, true, false, dnnl_nchw, dnnl_nc},
    {4, {1, 3, 5, 7}, 6, true, false, dnnl_nChw16c, dnnl_nc},
    {4, {2, 17, 3, 2}, 19, false, false, dnnl_nhwc, dnnl_nc},
    {4, {3, 5, 2, 3}, 7, true, true, dnnl_nChw16c, dnnl_nc},     /* network input */
};

/* bf16 as in test_conv.c: the reference takes bf16-rounded inputs. */
static bool run_case(const linear_case *tc, uint64_t seed, bool bf16) {
    const int64_t n = tc->dims[0], oc = tc->oc;
    int64_t ic = 1;
    for (int i = 1; i < tc->ndims; i++) ic *= tc->dims[i];
    size_t ns = (size_t)(n * ic), nw = (size_t)(oc * ic), nd = (size_t)(n * oc);

    float *src = dg_xmalloc(ns * sizeof(float));
    float *ddst = dg_xmalloc(nd * sizeof(float));
    fill_uniform(src, ns, seed, -1.f, 1.f);
    fill_uniform(ddst, nd, seed + 1, -1.f, 1.f);
    dnnl_memory_t src_m = make_tagged(&ctx, src, tc->ndims, tc->dims, tc->src_tag);

    dg_param_set ps;
    dg_params_init(&ps);
    dg_linear l;
    dg_linear_cfg cfg = {.oc = oc, .bias = tc->bias, .no_diff_src = tc->no_diff_src,
            .training = true};
    ctx.compute_dt = bf16 ? dnnl_bf16 : dnnl_f32;
    dg_linear_init(&l, &ctx, &ps, "fc", src_m, &cfg);
    ctx.compute_dt = dnnl_f32;
    if (bf16 && !ctx.caps.bf16) { /* no abort: an unbuilt layer and the error status */
        ck_assert_int_eq(ctx.status, DG_STATUS_ERR_CONFIG);
        ck_assert_ptr_null(l.wl.fwd.prim);
        ck_assert_int_eq(dg_mem_md(l.dst)->dims[1], oc);
        ck_assert(tc->no_diff_src == (l.diff_src == NULL));
        ctx.status = DG_STATUS_OK;
        dg_linear_free(&l);
        dnnl_memory_destroy(src_m);
        dg_params_free(&ps);
        dg_free(src), dg_free(ddst);
        return false;
    }
    dg_params_alloc(&ps);
    fill_uniform(ps.data, ps.d, seed + 2, -0.5f, 0.5f);
    ck_assert_uint_eq(ps.d, nw + (tc->bias ? (size_t)oc : 0));
    if (bf16) ck_assert_int_eq(dg_pd_md(l.wl.fwd_pd, dnnl_query_src_md, 0)->data_type, dnnl_bf16);
    const dg_param_tensor *wt = dg_params_find(&ps, "fc.weight");
    ck_assert_ptr_nonnull(wt);
    ck_assert_int_eq(wt->ndims, 2);
    ck_assert_int_eq(wt->shape[0], oc);
    ck_assert_int_eq(wt->shape[1], ic);
    ck_assert_int_eq(l.dst_dims[0], n);
    ck_assert_int_eq(l.dst_dims[1], oc);

    double *s64 = dup_double_rounded(src, ns, bf16);
    double *w64 = dup_double_rounded(ps.data + l.w_off, nw, bf16);
    double *b64 = tc->bias ? dup_double(ps.data + l.b_off, (size_t)oc) : NULL;
    double *exp = dg_xmalloc(nd * sizeof(double));
    ref_linear_forward(n, ic, oc, s64, w64, b64, exp);

    dg_pass p = dg_pass_train(&ps);
    dg_linear_forward(&l, &ctx, &p);
    float *got = dg_xmalloc(nd * sizeof(float));
    read_plain(&ctx, l.dst, got);
    DG_ASSERT_CLOSE(got, exp, nd, 1e-5, 1e-4);

    /* Pre-fill the gradient to prove backward overwrites, never adds. */
    for (size_t i = 0; i < ps.d; i++) ps.grad[i] = 100.f;
    int64_t ddims[2] = {n, oc};
    dnnl_memory_t ddst_m = make_tagged(&ctx, ddst, 2, ddims, tc->ddst_tag);
    dg_linear_backward(&l, &ctx, &p, ddst_m);
    DG_DNNL(dnnl_stream_wait(ctx.stream));

    double *eds = dg_xmalloc(ns * sizeof(double)), *edw = dg_xmalloc(nw * sizeof(double));
    double *edb = dg_xmalloc((size_t)oc * sizeof(double));
    double *dd64 = dup_double_rounded(ddst, nd, bf16);
    ref_linear_backward(n, ic, oc, s64, w64, dd64, eds, edw, edb);
    DG_ASSERT_CLOSE(ps.grad + l.w_off, edw, nw, 1e-5, 1e-4);
    if (tc->bias) DG_ASSERT_CLOSE(ps.grad + l.b_off, edb, (size_t)oc, 1e-5, 1e-4);
    float *gds = dg_xmalloc(ns * sizeof(float));
    if (tc->no_diff_src) {
        ck_assert_ptr_null(l.diff_src);
    } else {
        const dnnl_memory_desc_t *dmd = dg_mem_md(l.diff_src);
        ck_assert_int_eq(dmd->ndims, tc->ndims);
        read_plain(&ctx, l.diff_src, gds);
        DG_ASSERT_CLOSE(gds, eds, ns, 1e-5, 1e-4);
    }

    /* A second step reuses the bound ports and still overwrites. */
    for (size_t i = 0; i < ps.d; i++) ps.grad[i] = -7.f;
    dg_linear_forward(&l, &ctx, &p);
    dg_linear_backward(&l, &ctx, &p, ddst_m);
    DG_DNNL(dnnl_stream_wait(ctx.stream));
    DG_ASSERT_CLOSE(ps.grad + l.w_off, edw, nw, 1e-5, 1e-4);

    dg_linear_free(&l);
    dnnl_memory_destroy(src_m);
    dnnl_memory_destroy(ddst_m);
    dg_params_free(&ps);
    dg_free(src), dg_free(ddst), dg_free(s64), dg_free(w64), dg_free(b64), dg_free(exp);
    dg_free(got), dg_free(eds), dg_free(edw), dg_free(edb), dg_free(dd64), dg_free(gds);
    return true;
}

START_TEST(linear_forward_backward_match_reference) {
    ck_assert(run_case(&cases[_i], 300 + (uint64_t)_i, false));
}
END_TEST

/* Without bf16 inner products the layer is left unbuilt with ctx.status
 * set instead of aborting (test_conv.c). */
START_TEST(linear_bf16_matches_reference_on_bf16_inputs) {
    if (!run_case(&cases[_i], 350 + (uint64_t)_i, true))
        DG_TEST_SKIPPED("bf16 numerics: no bf16 inner products at ISA %s (checked: the clear "
                        "error instead)", ctx.caps.isa_name);
}
END_TEST

/* Level 1: the reference's backward against its own forward. */
typedef struct fd_ctx {
    int64_t n, ic, oc;
    const double *src, *w, *b, *r;
    int which; /* 0: vary src, 1: vary weights, 2: vary bias */
    double *dst;
} fd_ctx;

static double linear_loss(void *vctx, const double *x) {
    fd_ctx *f = vctx;
    ref_linear_forward(f->n, f->ic, f->oc, f->which == 0 ? x : f->src,
            f->which == 1 ? x : f->w, f->which == 2 ? x : f->b, f->dst);
    double s = 0.0;
    for (int64_t i = 0; i < f->n * f->oc; i++) s += f->dst[i] * f->r[i];
    return s;
}

START_TEST(linear_reference_backward_matches_finite_differences) {
    fd_ctx f = {.n = 3, .ic = 7, .oc = 5};
    size_t ns = 21, nw = 35, nd = 15;
    float tmp[64];
    double src[64], w[64], b[8], r[64], dst[64], g_src[64], g_w[64], g_b[8], fd[64];
    fill_uniform(tmp, ns, 1, -1, 1), to_double(src, tmp, ns);
    fill_uniform(tmp, nw, 2, -1, 1), to_double(w, tmp, nw);
    fill_uniform(tmp, 5, 3, -1, 1), to_double(b, tmp, 5);
    fill_uniform(tmp, nd, 4, -1, 1), to_double(r, tmp, nd);
    f.src = src, f.w = w, f.b = b, f.r = r, f.dst = dst;
    ref_linear_backward(3, 7, 5, src, w, r, g_src, g_w, g_b);
    f.which = 0;
    fd_gradient(linear_loss, &f, src, ns, fd);
    DG_ASSERT_CLOSE64(g_src, fd, ns, 1e-8, 1e-6);
    f.which = 1;
    fd_gradient(linear_loss, &f, w, nw, fd);
    DG_ASSERT_CLOSE64(g_w, fd, nw, 1e-8, 1e-6);
    f.which = 2;
    fd_gradient(linear_loss, &f, b, 5, fd);
    DG_ASSERT_CLOSE64(g_b, fd, 5, 1e-8, 1e-6);
}
END_TEST

START_TEST(linear_inference_instance_matches_training_forward) {
    int64_t dims[4] = {2, 19, 3, 1};
    float src[114];
    fill_uniform(src, 114, 5, -1, 1);
    dnnl_memory_t m = make_tagged(&ctx, src, 4, dims, dnnl_nChw16c);
    dg_param_set ps, ps2;
    dg_params_init(&ps);
    dg_params_init(&ps2);
    dg_linear a, b;
    dg_linear_cfg cfg = {.oc = 9, .bias = true, .training = true};
    dg_linear_init(&a, &ctx, &ps, "a", m, &cfg);
    dg_params_alloc(&ps);
    dg_params_init_values(&ps, 7);
    cfg.training = false;
    dg_linear_init(&b, &ctx, &ps2, "a", m, &cfg);
    dg_params_alloc(&ps2);
    ck_assert_ptr_null(b.wl.bwd_w_pd);
    dg_pass p = dg_pass_train(&ps);
    dg_linear_forward(&a, &ctx, &p);
    dg_linear_forward(&b, &ctx, &p); /* same weights through the pass */
    float ga[18], gb[18];
    double e[18];
    read_plain(&ctx, a.dst, ga);
    read_plain(&ctx, b.dst, gb);
    to_double(e, ga, 18);
    DG_ASSERT_CLOSE(gb, e, 18, 1e-6, 1e-5);
    dg_linear_free(&a), dg_linear_free(&b);
    dg_params_free(&ps), dg_params_free(&ps2);
    dnnl_memory_destroy(m);
}
END_TEST

START_TEST(linear_init_is_uniform_default_bound) {
    int64_t dims[4] = {1, 64, 2, 2}; /* IC = 256 */
    dnnl_memory_desc_t md = dg_md_plain(4, dims, dnnl_nchw);
    dnnl_memory_t m = dg_mem_new(&ctx, &md, DNNL_MEMORY_ALLOCATE);
    dg_param_set ps;
    dg_params_init(&ps);
    dg_linear l;
    dg_linear_cfg cfg = {.oc = 300, .bias = true, .training = true};
    dg_linear_init(&l, &ctx, &ps, "head.fc", m, &cfg);
    dg_params_alloc(&ps);
    dg_params_init_values(&ps, 1);

    const dg_param_tensor *wt = dg_params_find(&ps, "head.fc.weight");
    const dg_param_tensor *bt = dg_params_find(&ps, "head.fc.bias");
    ck_assert_ptr_nonnull(wt);
    ck_assert_ptr_nonnull(bt);
    ck_assert_uint_eq(wt->flags, DG_PARAM_ASAM_SCALED);
    ck_assert_uint_eq(bt->flags, DG_PARAM_NO_DECAY);
    ck_assert_int_eq(wt->ndims, 2);
    ck_assert_int_eq(wt->shape[0], 300);
    ck_assert_int_eq(wt->shape[1], 256);
    ck_assert_int_eq(bt->ndims, 1);
    ck_assert_int_eq(bt->shape[0], 300);

    const double bound = 1.0 / 16.0; /* 1/sqrt(fan_in), fan_in = 256 */
    const float *w = ps.data + wt->offset;
    double s = 0, s2 = 0, mx = 0;
    size_t tail = 0;
    for (size_t i = 0; i < wt->n; i++) {
        s += w[i], s2 += (double)w[i] * w[i];
        if (fabs(w[i]) > mx) mx = fabs(w[i]);
        if (fabs(w[i]) > 0.9 * bound) tail++;
    }
    double nn = (double)wt->n, mean = s / nn, var = s2 / nn - mean * mean;
    ck_assert_msg(mx <= bound, "max |w| %g > bound %g", mx, bound);
    ck_assert_msg(mx > 0.999 * bound, "max |w| %g far below bound %g", mx, bound);
    ck_assert_msg(fabs(mean) < 0.01 * bound, "mean %g", mean);
    ck_assert_msg(fabs(var / (bound * bound / 3.0) - 1.0) < 0.02, "var %g want %g", var,
            bound * bound / 3.0);
    /* A uniform law puts 10 % of its mass in the outer tenth, a normal one
     * with the same variance about 8.3 %. */
    ck_assert_msg(fabs(tail / nn - 0.1) < 0.006, "tail fraction %g", tail / nn);

    const float *b = ps.data + bt->offset;
    size_t nonzero = 0;
    for (size_t i = 0; i < bt->n; i++) {
        ck_assert_msg(fabs(b[i]) <= bound, "bias[%zu] = %g", i, (double)b[i]);
        nonzero += b[i] != 0.f;
    }
    ck_assert_uint_eq(nonzero, bt->n);
    dg_linear_free(&l);
    dg_params_free(&ps);
    dnnl_memory_destroy(m);
}
END_TEST

START_TEST(linear_second_step_allocates_nothing) {
    int64_t dims[4] = {2, 20, 1, 1};
    float src[40], ddst[20];
    fill_uniform(src, 40, 8, -1, 1);
    fill_uniform(ddst, 20, 9, -1, 1);
    int64_t ddims[2] = {2, 10};
    dnnl_memory_t m = make_tagged(&ctx, src, 4, dims, dnnl_nChw16c);
    dnnl_memory_t dd = make_tagged(&ctx, ddst, 2, ddims, dnnl_cn);
    dg_param_set ps;
    dg_params_init(&ps);
    dg_linear l;
    dg_linear_cfg cfg = {.oc = 10, .bias = true, .training = true};
    dg_linear_init(&l, &ctx, &ps, "fc", m, &cfg);
    dg_params_alloc(&ps);
    dg_params_init_values(&ps, 3);
    dg_pass p = dg_pass_train(&ps);
    dg_linear_forward(&l, &ctx, &p);
    dg_linear_backward(&l, &ctx, &p, dd);
    const alloc_mark mark = alloc_mark_now();
    for (int step = 0; step < 2; step++) {
        dg_linear_forward(&l, &ctx, &p);
        dg_linear_backward(&l, &ctx, &p, dd);
    }
    DG_DNNL(dnnl_stream_wait(ctx.stream));
    assert_nothing_allocated_since(mark);
    dg_linear_free(&l);
    dg_params_free(&ps);
    dnnl_memory_destroy(m);
    dnnl_memory_destroy(dd);
}
END_TEST

START_TEST(linear_free_is_safe_on_zeroed_struct) {
    dg_linear l;
    memset(&l, 0, sizeof(l));
    dg_linear_free(&l);
    dg_linear_free(&l);
    ck_assert_ptr_null(l.wl.fwd_pd);
}
END_TEST

Suite *linear_suite(void) {
    Suite *s = suite_create("linear");
    TCase *tc = tcase_create("numerics");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, linear_forward_backward_match_reference, 0, (int)DG_ARRAY_LEN(cases));
    tcase_add_loop_test(tc, linear_bf16_matches_reference_on_bf16_inputs, 0,
            (int)DG_ARRAY_LEN(cases));
    tcase_add_test(tc, linear_reference_backward_matches_finite_differences);
    tcase_add_test(tc, linear_inference_instance_matches_training_forward);
    tcase_add_test(tc, linear_init_is_uniform_default_bound);
    tcase_add_test(tc, linear_second_step_allocates_nothing);
    tcase_add_test(tc, linear_free_is_safe_on_zeroed_struct);
    suite_add_tcase(s, tc);
    return s;
}
