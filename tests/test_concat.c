/* tests/test_concat.c -- channel concatenation forward and backward, exact
 * against the reference (halves), for inputs in mixed layouts, the blocked
 * 256 + 48 decoder case (no fallback), offsets that force the plain dst
 * fallback, and the reference against finite differences.
 *
 * Shapes: N batch, C_k channels of input k, H, W shared. */
#include <string.h>

#include "common.h"
#include "nets/core/concat.h"
#include "ref/spatial_ref.h"

static dg_ctx ctx;
static void setup(void) { dg_ctx_init(&ctx); }
static void teardown(void) { dg_ctx_free(&ctx); }

enum { EXPECT_ANY = 0, EXPECT_BLOCKED = 1, EXPECT_PLAIN = 2 };

typedef struct concat_case {
    int64_t n, h, w;
    int k;
    int64_t c[5];
    dnnl_format_tag_t tag[5];    /* layouts the inputs arrive in */
    dnnl_format_tag_t ddst_tag;  /* layout diff_dst arrives in */
    int expect;                  /* dst layout: EXPECT_* */
} concat_case;

static const concat_case cases[] = {
    {2, 7, 9, 2, {3, 5}, {dnnl_nchw, dnnl_nChw16c}, dnnl_nchw, EXPECT_ANY},
    {1, 5, 7, 2, {256, 48}, {dnnl_nChw16c, dnnl_nChw16c}, dnnl_nchw, EXPECT_BLOCKED},
    {2, 3, 5, 2, {256, 48}, {dnnl_nChw16c, dnnl_nChw16c}, dnnl_nChw16c, EXPECT_BLOCKED},
    {2, 5, 3, 3, {16, 16, 16}, {dnnl_nChw16c, dnnl_nchw, dnnl_nhwc}, dnnl_nhwc, EXPECT_ANY},
    {2, 5, 3, 3, {16, 16, 16}, {dnnl_nChw16c, dnnl_nChw16c, dnnl_nChw16c}, dnnl_nchw,
            EXPECT_BLOCKED},
    {2, 7, 9, 2, {3, 5}, {dnnl_nChw16c, dnnl_nChw16c}, dnnl_nChw16c, EXPECT_PLAIN},
    {1, 3, 5, 5, {20, 20, 20, 20, 20}, {dnnl_nChw16c, dnnl_nChw16c, dnnl_nChw16c,
            dnnl_nChw16c, dnnl_nChw16c}, dnnl_nchw, EXPECT_PLAIN},  /* ASPP-like */
    {2, 5, 3, 3, {8, 16, 24}, {dnnl_nChw8c, dnnl_nchw, dnnl_nChw8c}, dnnl_nchw, EXPECT_ANY},
    {2, 5, 3, 2, {3, 5}, {dnnl_nChw8c, dnnl_nChw8c}, dnnl_nChw8c, EXPECT_PLAIN},
};

static void run_case(const concat_case *tc, uint64_t seed) {
    const int k = tc->k;
    int64_t ctot = 0;
    for (int i = 0; i < k; i++) ctot += tc->c[i];
    const size_t hw = (size_t)(tc->h * tc->w), nd = (size_t)tc->n * (size_t)ctot * hw;
    float *src[5];
    double *s64[5], *eds[5];
    dnnl_memory_t src_m[5];
    for (int i = 0; i < k; i++) {
        const size_t ns = (size_t)(tc->n * tc->c[i]) * hw;
        src[i] = dg_xmalloc(ns * sizeof(float));
        fill_halves(src[i], ns, seed + (uint64_t)i);
        s64[i] = dup_double(src[i], ns);
        eds[i] = dg_xmalloc(ns * sizeof(double));
        int64_t dims[4] = {tc->n, tc->c[i], tc->h, tc->w};
        src_m[i] = make_tagged(&ctx, src[i], 4, dims, tc->tag[i]);
    }
    dg_concat l;
    dg_concat_init(&l, &ctx, k, src_m, NULL);
    ck_assert_int_eq(l.dst_dims[1], ctot);
    int64_t ddims[4] = {tc->n, ctot, tc->h, tc->w};
    if (tc->expect == EXPECT_PLAIN) {
        dnnl_memory_desc_t want = dg_md_plain(4, ddims, dnnl_nchw);
        ck_assert(l.plain_dst);
        ck_assert(dnnl_memory_desc_equal(dg_mem_md(l.dst), &want));
    } else if (tc->expect == EXPECT_BLOCKED) {
        dnnl_memory_desc_t want = dg_md_plain(4, ddims, dnnl_nChw16c);
        ck_assert(!l.plain_dst);
        ck_assert(dnnl_memory_desc_equal(dg_mem_md(l.dst), &want));
    }

    double *exp = dg_xmalloc(nd * sizeof(double));
    ref_concat_forward(tc->n, k, tc->c, tc->h, tc->w, (const double *const *)s64, exp);
    dg_param_set ps;
    dg_params_init(&ps);
    dg_pass p = dg_pass_train(&ps);
    dg_concat_forward(&l, &ctx, &p);
    float *got = dg_xmalloc(nd * sizeof(float));
    read_plain(&ctx, l.dst, got);
    DG_ASSERT_CLOSE(got, exp, nd, 0.0, 0.0);

    float *ddst = dg_xmalloc(nd * sizeof(float));
    fill_halves(ddst, nd, seed + 10);
    double *dd64 = dup_double(ddst, nd);
    ref_concat_backward(tc->n, k, tc->c, tc->h, tc->w, dd64, eds);
    dnnl_memory_t ddst_m = make_tagged(&ctx, ddst, 4, ddims, tc->ddst_tag);
    for (int i = 0; i < k; i++) fill_mem_value(&ctx, l.diff_src[i], 100.f); /* backward overwrites */
    dg_concat_backward(&l, &ctx, &p, ddst_m);
    for (int i = 0; i < k; i++) {
        const size_t ns = (size_t)(tc->n * tc->c[i]) * hw;
        /* diff_src[k] leaves in input k's layout. */
        ck_assert(dnnl_memory_desc_equal(dg_mem_md(l.diff_src[i]), dg_mem_md(src_m[i])));
        float *gds = dg_xmalloc(ns * sizeof(float));
        read_plain(&ctx, l.diff_src[i], gds);
        DG_ASSERT_CLOSE(gds, eds[i], ns, 0.0, 0.0);
        dg_free(gds);
    }

    dg_concat_free(&l);
    dg_params_free(&ps);
    for (int i = 0; i < k; i++) {
        dnnl_memory_destroy(src_m[i]);
        dg_free(src[i]), dg_free(s64[i]), dg_free(eds[i]);
    }
    dnnl_memory_destroy(ddst_m);
    dg_free(exp), dg_free(got), dg_free(ddst), dg_free(dd64);
}

START_TEST(concat_forward_backward_exact) {
    run_case(&cases[_i], 700 + 20 * (uint64_t)_i);
}
END_TEST

/* Level 1: the reference's backward against its own forward. */
typedef struct fd_ctx {
    int64_t c[3];
    const double *r;
    double *dst;
} fd_ctx;

static double concat_loss(void *vctx, const double *x) {
    fd_ctx *f = vctx;
    const double *srcs[3] = {x, x + 2 * f->c[0] * 12, x + 2 * (f->c[0] + f->c[1]) * 12};
    ref_concat_forward(2, 3, f->c, 3, 4, srcs, f->dst);
    double s = 0.0;
    for (size_t i = 0; i < 2 * 12 * 9; i++) s += f->dst[i] * f->r[i];
    return s;
}

START_TEST(concat_reference_backward_matches_finite_differences) {
    enum { N = 2 * 12 * 9 }; /* N=2, C=2+3+4, H=3, W=4 */
    fd_ctx f = {{2, 3, 4}, NULL, NULL};
    float tmp[N];
    double x[N], r[N], dst[N], g[N], fd[N];
    fill_uniform(tmp, N, 50, -1, 1), to_double(x, tmp, N);
    fill_uniform(tmp, N, 51, -1, 1), to_double(r, tmp, N);
    f.r = r, f.dst = dst;
    double *gs[3] = {g, g + 2 * 2 * 12, g + 2 * 5 * 12};
    ref_concat_backward(2, 3, f.c, 3, 4, r, gs);
    fd_gradient(concat_loss, &f, x, N, fd);
    DG_ASSERT_CLOSE64(g, fd, N, 1e-8, 1e-6);
}
END_TEST

START_TEST(concat_second_step_allocates_nothing) {
    int64_t d0[4] = {1, 256, 5, 7}, d1[4] = {1, 48, 5, 7}, dd[4] = {1, 304, 5, 7};
    float *a = dg_xmalloc(256 * 35 * sizeof(float)), *b = dg_xmalloc(48 * 35 * sizeof(float));
    float *g = dg_xmalloc(304 * 35 * sizeof(float));
    fill_halves(a, 256 * 35, 1), fill_halves(b, 48 * 35, 2), fill_halves(g, 304 * 35, 3);
    dnnl_memory_t srcs[2] = {make_tagged(&ctx, a, 4, d0, dnnl_nChw16c),
            make_tagged(&ctx, b, 4, d1, dnnl_nChw16c)};
    dnnl_memory_t ddst = make_plain(&ctx, g, 4, dd); /* forces a port reorder */
    dg_concat l;
    dg_concat_init(&l, &ctx, 2, srcs, NULL);
    dg_param_set ps;
    dg_params_init(&ps);
    dg_pass p = dg_pass_train(&ps);
    dg_concat_forward(&l, &ctx, &p);
    dg_concat_backward(&l, &ctx, &p, ddst);
    const alloc_mark mark = alloc_mark_now();
    dg_concat_forward(&l, &ctx, &p);
    dg_concat_backward(&l, &ctx, &p, ddst);
    assert_nothing_allocated_since(mark);
    dg_concat_free(&l);
    dg_params_free(&ps);
    dnnl_memory_destroy(srcs[0]), dnnl_memory_destroy(srcs[1]), dnnl_memory_destroy(ddst);
    dg_free(a), dg_free(b), dg_free(g);
}
END_TEST

Suite *concat_suite(void) {
    Suite *s = suite_create("concat");
    TCase *tc = tcase_create("numerics");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, concat_forward_backward_exact, 0, (int)DG_ARRAY_LEN(cases));
    tcase_add_test(tc, concat_reference_backward_matches_finite_differences);
    tcase_add_test(tc, concat_second_step_allocates_nothing);
    suite_add_tcase(s, tc);
    return s;
}
