/* tests/test_groupnorm.c -- GroupNorm forward/backward against the double
 * reference of tests/ref/norm_ref, the reference against finite
 * differences, layouts (plain, blocked with padded channels, one that needs
 * a reorder), thread-count independence and allocation-free steps.
 * Shapes: N batch, C channels, G groups, H height, W width. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "common.h"
#include "nets/core/groupnorm.h"
#include "ref/norm_ref.h"

static dg_ctx ctx;
static void setup(void) { dg_ctx_init(&ctx); }
static void teardown(void) { dg_ctx_free(&ctx); }

typedef struct gn_case {
    int64_t n, c, g, h, w;
    dnnl_format_tag_t src_tag;  /* layout the input arrives in */
    dnnl_format_tag_t ddst_tag; /* layout diff_dst arrives in */
} gn_case;

static const gn_case cases[] = {
    {1, 8, 2, 5, 7, dnnl_nchw, dnnl_nchw},
    {2, 64, 8, 7, 7, dnnl_nChw16c, dnnl_nchw},
    {3, 6, 3, 1, 1, dnnl_nchw, dnnl_nchw},
    {2, 20, 5, 3, 5, dnnl_nChw16c, dnnl_nChw16c}, /* padded channels */
    {2, 12, 4, 4, 5, dnnl_nChw8c, dnnl_nhwc},
    {1, 24, 6, 5, 3, dnnl_nhwc, dnnl_nChw16c},
    {2, 10, 5, 3, 4, dnnl_Abcd8a, dnnl_nchw}, /* N-blocked: reordered to nchw */
    /* C a multiple of the block: the vectorized per-channel kernels, with a
     * group spanning two blocks, one block, and a quarter block */
    {2, 32, 1, 3, 5, dnnl_nChw16c, dnnl_nChw16c},
    {3, 24, 3, 4, 3, dnnl_nChw8c, dnnl_nchw},
    {2, 32, 8, 5, 2, dnnl_nChw16c, dnnl_nhwc},
};

typedef struct gn_fix {
    ref_norm r;
    size_t ns, c;
    float *src;          /* (N, C, H, W) nchw */
    double *s64;         /* (N, C, H, W) */
    dnnl_memory_t src_m; /* src in the case's layout */
    dg_param_set ps;
    dg_gn l;
    double *gamma, *beta; /* (C) */
} gn_fix;

/* relu: src is a ReLU's output (negatives clamped to 0) and the layer is
 * told so (relu_src). */
static void fix_init_relu(gn_fix *f, const gn_case *tc, bool training, uint64_t seed,
        bool relu) {
    memset(f, 0, sizeof(*f));
    f->r = (ref_norm){.n = tc->n, .c = tc->c, .h = tc->h, .w = tc->w, .g = tc->g, .eps = 1e-5};
    f->ns = (size_t)(tc->n * tc->c * tc->h * tc->w);
    f->c = (size_t)tc->c;
    f->src = dg_xmalloc(f->ns * sizeof(float));
    fill_uniform(f->src, f->ns, seed, -1.f, 2.f);
    for (size_t i = 0; relu && i < f->ns; i++) f->src[i] = f->src[i] > 0.f ? f->src[i] : 0.f;
    f->s64 = dup_double(f->src, f->ns);
    int64_t dims[4] = {tc->n, tc->c, tc->h, tc->w};
    f->src_m = make_tagged(&ctx, f->src, 4, dims, tc->src_tag);
    dg_params_init(&f->ps);
    dg_gn_cfg cfg = {.groups = tc->g, .training = training, .relu_src = relu};
    dg_gn_init(&f->l, &ctx, &f->ps, "gn", f->src_m, &cfg);
    dg_params_alloc(&f->ps);
    fill_uniform(f->ps.data + f->l.w_off, f->c, seed + 1, 0.5f, 1.5f);
    fill_uniform(f->ps.data + f->l.b_off, f->c, seed + 2, -0.5f, 0.5f);
    f->gamma = dup_double(f->ps.data + f->l.w_off, f->c);
    f->beta = dup_double(f->ps.data + f->l.b_off, f->c);
}

static void fix_init(gn_fix *f, const gn_case *tc, bool training, uint64_t seed) {
    fix_init_relu(f, tc, training, seed, false);
}

static void fix_free(gn_fix *f) {
    dg_gn_free(&f->l);
    dg_params_free(&f->ps);
    dnnl_memory_destroy(f->src_m);
    dg_free(f->src), dg_free(f->s64), dg_free(f->gamma), dg_free(f->beta);
}

/* Every padded channel (c >= C of the last block) of a blocked memory is 0. */
static void assert_padding_zero(dnnl_memory_t m) {
    const dnnl_memory_desc_t *md = dg_mem_md(m);
    dg_chw v;
    ck_assert(dg_chw_from_md(&v, md));
    int64_t cpad = md->padded_dims[1];
    const float *p = dg_mem_ptr(m);
    for (int64_t n = 0; n < v.n; n++)
        for (int64_t c = v.c; c < cpad; c++)
            for (int64_t h = 0; h < v.h; h++)
                for (int64_t w = 0; w < v.w; w++)
                    ck_assert_msg(p[dg_chw_at(&v, n, c, h, w)] == 0.f,
                            "padded channel %lld not zero", (long long)c);
}

START_TEST(gn_forward_backward_match_reference) {
    const gn_case *tc = &cases[_i];
    gn_fix f;
    fix_init(&f, tc, true, 10 + (uint64_t)_i);
    double *exp = dg_xmalloc(f.ns * sizeof(double));
    ref_gn_forward(&f.r, f.s64, f.gamma, f.beta, exp);

    dg_pass p = dg_pass_train(&f.ps);
    dg_gn_forward(&f.l, &ctx, &p);
    float *got = dg_xmalloc(f.ns * sizeof(float));
    read_plain(&ctx, f.l.dst, got);
    DG_ASSERT_CLOSE(got, exp, f.ns, 1e-5, 1e-4);
    assert_padding_zero(f.l.dst);
    /* dst keeps the layout GroupNorm worked in: src's, or nchw. */
    dnnl_memory_desc_t want = dg_md_chw_compatible(dg_mem_md(f.src_m));
    ck_assert(dnnl_memory_desc_equal(dg_mem_md(f.l.dst), &want));

    float *ddst = dg_xmalloc(f.ns * sizeof(float));
    fill_uniform(ddst, f.ns, 20 + (uint64_t)_i, -1.f, 1.f);
    double *dd64 = dup_double(ddst, f.ns), *eds = dg_xmalloc(f.ns * sizeof(double));
    double *edg = dg_xmalloc(f.c * sizeof(double)), *edb = dg_xmalloc(f.c * sizeof(double));
    ref_gn_backward(&f.r, f.s64, f.gamma, dd64, eds, edg, edb);
    for (size_t i = 0; i < f.ps.d; i++) f.ps.grad[i] = 100.f;
    dnnl_memory_t ddst_m = make_tagged(&ctx, ddst, 4, f.l.dims, tc->ddst_tag);
    dg_gn_backward(&f.l, &ctx, &p, ddst_m);
    read_plain(&ctx, f.l.diff_src, got);
    DG_ASSERT_CLOSE(got, eds, f.ns, 1e-5, 1e-4);
    DG_ASSERT_CLOSE(f.ps.grad + f.l.w_off, edg, f.c, 1e-5, 1e-4);
    DG_ASSERT_CLOSE(f.ps.grad + f.l.b_off, edb, f.c, 1e-5, 1e-4);
    assert_padding_zero(f.l.diff_src);

    dnnl_memory_destroy(ddst_m);
    dg_free(exp), dg_free(got), dg_free(ddst), dg_free(dd64), dg_free(eds), dg_free(edg);
    dg_free(edb);
    fix_free(&f);
}
END_TEST

/* relu_src: diff_src is the reference's times the ReLU's mask (src > 0),
 * exactly 0 where src is 0; the statistics and parameter gradients are
 * those of the clamped input. */
START_TEST(gn_relu_src_masks_diff_src) {
    const gn_case *tc = &cases[_i];
    gn_fix f;
    fix_init_relu(&f, tc, true, 40 + (uint64_t)_i, true);
    dg_pass p = dg_pass_train(&f.ps);
    dg_gn_forward(&f.l, &ctx, &p);
    float *ddst = dg_xmalloc(f.ns * sizeof(float)), *got = dg_xmalloc(f.ns * sizeof(float));
    fill_uniform(ddst, f.ns, 50 + (uint64_t)_i, -1.f, 1.f);
    double *dd64 = dup_double(ddst, f.ns), *eds = dg_xmalloc(f.ns * sizeof(double));
    double *edg = dg_xmalloc(f.c * sizeof(double)), *edb = dg_xmalloc(f.c * sizeof(double));
    ref_gn_backward(&f.r, f.s64, f.gamma, dd64, eds, edg, edb);
    size_t zeros = 0;
    for (size_t i = 0; i < f.ns; i++)
        if (!(f.src[i] > 0.f)) {
            eds[i] = 0.0;
            zeros++;
        }
    ck_assert_uint_gt(zeros, 0);
    dnnl_memory_t ddst_m = make_tagged(&ctx, ddst, 4, f.l.dims, tc->ddst_tag);
    dg_gn_backward(&f.l, &ctx, &p, ddst_m);
    read_plain(&ctx, f.l.diff_src, got);
    DG_ASSERT_CLOSE(got, eds, f.ns, 1e-5, 1e-4);
    for (size_t i = 0; i < f.ns; i++)
        if (!(f.src[i] > 0.f)) ck_assert_msg(got[i] == 0.f, "diff_src[%zu] = %g", i, got[i]);
    DG_ASSERT_CLOSE(f.ps.grad + f.l.w_off, edg, f.c, 1e-5, 1e-4);
    DG_ASSERT_CLOSE(f.ps.grad + f.l.b_off, edb, f.c, 1e-5, 1e-4);
    assert_padding_zero(f.l.diff_src);
    dnnl_memory_destroy(ddst_m);
    dg_free(got), dg_free(ddst), dg_free(dd64), dg_free(eds), dg_free(edg), dg_free(edb);
    fix_free(&f);
}
END_TEST

START_TEST(gn_eval_pass_and_inference_instance_equal_train_pass) {
    const gn_case tc = {2, 64, 8, 7, 7, dnnl_nChw16c, dnnl_nchw};
    gn_fix a, b;
    fix_init(&a, &tc, true, 30);
    fix_init(&b, &tc, false, 30);
    ck_assert_ptr_null(b.l.diff_src);
    dg_pass pt = dg_pass_train(&a.ps), pe = dg_pass_eval(&a.ps), pb = dg_pass_eval(&b.ps);
    float *yt = dg_xmalloc(a.ns * sizeof(float)), *ye = dg_xmalloc(a.ns * sizeof(float));
    float *yb = dg_xmalloc(a.ns * sizeof(float));
    dg_gn_forward(&a.l, &ctx, &pt);
    read_plain(&ctx, a.l.dst, yt);
    dg_gn_forward(&a.l, &ctx, &pe);
    read_plain(&ctx, a.l.dst, ye);
    dg_gn_forward(&b.l, &ctx, &pb);
    read_plain(&ctx, b.l.dst, yb);
    double *e = dup_double(yt, a.ns);
    DG_ASSERT_CLOSE(ye, e, a.ns, 0.0, 0.0);
    DG_ASSERT_CLOSE(yb, e, a.ns, 0.0, 0.0);
    dg_free(yt), dg_free(ye), dg_free(yb), dg_free(e);
    fix_free(&a), fix_free(&b);
}
END_TEST

/* Bitwise-identical outputs and gradients with 1 and 3 threads. */
START_TEST(gn_results_do_not_depend_on_thread_count) {
    const gn_case tc = {3, 32, 4, 9, 11, dnnl_nChw16c, dnnl_nchw};
    gn_fix f;
    fix_init(&f, &tc, true, 40);
    float *ddst = dg_xmalloc(f.ns * sizeof(float));
    fill_uniform(ddst, f.ns, 41, -1.f, 1.f);
    dnnl_memory_t ddst_m = make_plain(&ctx, ddst, 4, f.l.dims);
    size_t bytes = dg_md_bytes(dg_mem_md(f.l.dst));
    float *y[2], *dx[2], *g[2];
    int threads[2] = {1, 3};
    dg_pass p = dg_pass_train(&f.ps);
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(threads[k]);
        dg_gn_forward(&f.l, &ctx, &p);
        dg_gn_backward(&f.l, &ctx, &p, ddst_m);
        DG_DNNL(dnnl_stream_wait(ctx.stream));
        y[k] = dg_xmalloc(bytes), dx[k] = dg_xmalloc(bytes);
        g[k] = dg_xmalloc(f.ps.d * sizeof(float));
        memcpy(y[k], dg_mem_ptr(f.l.dst), bytes);
        memcpy(dx[k], dg_mem_ptr(f.l.diff_src), bytes);
        memcpy(g[k], f.ps.grad, f.ps.d * sizeof(float));
    }
    ck_assert(!memcmp(y[0], y[1], bytes));
    ck_assert(!memcmp(dx[0], dx[1], bytes));
    ck_assert(!memcmp(g[0], g[1], f.ps.d * sizeof(float)));
    for (int k = 0; k < 2; k++) dg_free(y[k]), dg_free(dx[k]), dg_free(g[k]);
    dnnl_memory_destroy(ddst_m);
    dg_free(ddst);
    fix_free(&f);
}
END_TEST

START_TEST(gn_registers_affine_params_without_stats) {
    const gn_case tc = {2, 32, 8, 3, 3, dnnl_nchw, dnnl_nchw};
    gn_fix f;
    fix_init(&f, &tc, true, 50);
    dg_params_init_values(&f.ps, 3);
    const dg_param_tensor *w = dg_params_find(&f.ps, "gn.weight");
    const dg_param_tensor *b = dg_params_find(&f.ps, "gn.bias");
    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(f.ps.n_tensors, 2);
    ck_assert_uint_eq(f.ps.n_stat_tensors, 0);
    ck_assert_uint_eq(f.ps.d, 64);
    ck_assert_uint_eq(w->flags, DG_PARAM_NO_DECAY | DG_PARAM_ASAM_SCALED);
    ck_assert_uint_eq(b->flags, DG_PARAM_NO_DECAY);
    ck_assert_uint_eq(w->offset, f.l.w_off);
    ck_assert_uint_eq(b->offset, f.l.b_off);
    for (size_t i = 0; i < 32; i++)
        ck_assert(f.ps.data[w->offset + i] == 1.f && f.ps.data[b->offset + i] == 0.f);
    fix_free(&f);
}
END_TEST

START_TEST(gn_steps_after_the_first_allocate_nothing) {
    const gn_case tc = {2, 10, 5, 3, 4, dnnl_Abcd8a, dnnl_nChw16c}; /* two ports reorder */
    gn_fix f;
    fix_init(&f, &tc, true, 60);
    float *ddst = dg_xmalloc(f.ns * sizeof(float));
    fill_uniform(ddst, f.ns, 61, -1.f, 1.f);
    dnnl_memory_t ddst_m = make_tagged(&ctx, ddst, 4, f.l.dims, tc.ddst_tag);
    dg_pass p = dg_pass_train(&f.ps);
    alloc_mark mark = alloc_mark_now();
    for (int step = 0; step < 3; step++) {
        if (step == 1) mark = alloc_mark_now();
        dg_gn_forward(&f.l, &ctx, &p);
        dg_gn_backward(&f.l, &ctx, &p, ddst_m);
    }
    assert_nothing_allocated_since(mark);
    dnnl_memory_destroy(ddst_m);
    dg_free(ddst);
    fix_free(&f);
}
END_TEST

/* Level 1: the reference's backward against its own forward. */
typedef struct fd_ctx {
    ref_norm r;
    const double *x, *gamma, *beta, *rw; /* rw: loss weights (N, C, H, W) */
    int which;                           /* 0: vary x, 1: gamma, 2: beta */
    double *y;
} fd_ctx;

static double gn_loss(void *vctx, const double *v) {
    fd_ctx *f = vctx;
    ref_gn_forward(&f->r, f->which == 0 ? v : f->x, f->which == 1 ? v : f->gamma,
            f->which == 2 ? v : f->beta, f->y);
    size_t n = (size_t)(f->r.n * f->r.c * f->r.h * f->r.w);
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += f->y[i] * f->rw[i];
    return s;
}

START_TEST(gn_reference_backward_matches_finite_differences) {
    enum { NS = 2 * 6 * 3 * 2, C = 6 };
    fd_ctx f;
    memset(&f, 0, sizeof(f));
    f.r = (ref_norm){.n = 2, .c = C, .h = 3, .w = 2, .g = 3, .eps = 1e-5};
    float tmp[NS];
    double x[NS], rw[NS], y[NS], gx[NS], fd[NS], gamma[C], beta[C], gg[C], gb[C];
    fill_uniform(tmp, NS, 1, -1, 2), to_double(x, tmp, NS);
    fill_uniform(tmp, NS, 2, -1, 1), to_double(rw, tmp, NS);
    fill_uniform(tmp, C, 3, 0.5f, 1.5f), to_double(gamma, tmp, C);
    fill_uniform(tmp, C, 4, -0.5f, 0.5f), to_double(beta, tmp, C);
    f.x = x, f.gamma = gamma, f.beta = beta, f.rw = rw, f.y = y;
    ref_gn_backward(&f.r, x, gamma, rw, gx, gg, gb);
    f.which = 0;
    fd_gradient(gn_loss, &f, x, NS, fd);
    DG_ASSERT_CLOSE64(gx, fd, NS, 1e-8, 1e-6);
    f.which = 1;
    fd_gradient(gn_loss, &f, gamma, C, fd);
    DG_ASSERT_CLOSE64(gg, fd, C, 1e-8, 1e-6);
    f.which = 2;
    fd_gradient(gn_loss, &f, beta, C, fd);
    DG_ASSERT_CLOSE64(gb, fd, C, 1e-8, 1e-6);
}
END_TEST

Suite *groupnorm_suite(void) {
    Suite *s = suite_create("groupnorm");
    TCase *tc = tcase_create("numerics");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, gn_relu_src_masks_diff_src, 0, (int)DG_ARRAY_LEN(cases));
    tcase_add_loop_test(tc, gn_forward_backward_match_reference, 0, (int)DG_ARRAY_LEN(cases));
    tcase_add_test(tc, gn_eval_pass_and_inference_instance_equal_train_pass);
    tcase_add_test(tc, gn_results_do_not_depend_on_thread_count);
    tcase_add_test(tc, gn_registers_affine_params_without_stats);
    tcase_add_test(tc, gn_steps_after_the_first_allocate_nothing);
    tcase_add_test(tc, gn_reference_backward_matches_finite_differences);
    suite_add_tcase(s, tc);
    return s;
}
