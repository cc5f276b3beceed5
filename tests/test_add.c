/* tests/test_add.c -- element-wise add (and add + ReLU) forward and
 * backward, exact on halves, inputs and diff_dst in mixed layouts; the
 * gradient fan-out without copies when layouts agree; the gradient-sum use
 * (dg_add_sum); in place (dst = a) with the ReLU's gradient in a context
 * slot; the reference against finite differences.
 *
 * Shapes: (N, C, H, W) for a, b and dst alike. */
#include <math.h>
#include <string.h>

#include "common.h"
#include "nets/core/add.h"
#include "ref/spatial_ref.h"

static dg_ctx ctx;
static void setup(void) { dg_ctx_init(&ctx); }
static void teardown(void) { dg_ctx_free(&ctx); }
/* Caps oneDNN at AVX2 in the forked child before its first kernel; without
 * fork (CK_FORK=no) the cap fails once kernels exist and the tests run on
 * the machine's own ISA. */
static void setup_avx2(void) {
    dnnl_set_max_cpu_isa(dnnl_cpu_isa_avx2);
    dg_ctx_init(&ctx);
}

typedef struct add_case {
    int64_t n, c, h, w;
    dnnl_format_tag_t a_tag, b_tag, ddst_tag;
    bool relu;
} add_case;

static const add_case cases[] = {
    {2, 3, 13, 17, dnnl_nchw, dnnl_nchw, dnnl_nchw, false},
    {1, 20, 8, 9, dnnl_nChw16c, dnnl_nchw, dnnl_nChw16c, false},
    {2, 5, 9, 11, dnnl_nhwc, dnnl_nchw, dnnl_nchw, false},
    {2, 20, 7, 5, dnnl_nchw, dnnl_nChw16c, dnnl_nhwc, true},
    {1, 16, 5, 3, dnnl_nChw16c, dnnl_nChw16c, dnnl_nChw16c, true},
    {1, 17, 13, 7, dnnl_nChw16c, dnnl_nhwc, dnnl_nchw, true},
    {2, 24, 9, 7, dnnl_nChw8c, dnnl_nchw, dnnl_nChw8c, true}, /* fused: wrong on AVX-512 */
    {2, 17, 9, 7, dnnl_nchw, dnnl_nChw16c, dnnl_nchw, true},   /* plain: fused ReLU */
};

/* Blocked layouts with channel tails that oneDNN 2.6.3's fused binary +
 * eltwise kernel gets wrong below AVX-512. */
static const add_case tail_cases[] = {
    {1, 17, 13, 7, dnnl_nChw16c, dnnl_nChw16c, dnnl_nChw16c, true},
    {2, 20, 7, 5, dnnl_nChw16c, dnnl_nchw, dnnl_nchw, true},
    {2, 5, 9, 7, dnnl_nChw8c, dnnl_nChw8c, dnnl_nChw8c, true},
    {2, 3, 9, 7, dnnl_nChw16c, dnnl_nChw16c, dnnl_nChw16c, true},
};

/* in_place: dst is a's memory and diff_pre lives in DG_SLOT_GRAD_RELU. */
static void run_case(const add_case *tc, uint64_t seed, bool in_place) {
    const size_t n = (size_t)(tc->n * tc->c * tc->h * tc->w);
    int64_t dims[4] = {tc->n, tc->c, tc->h, tc->w};
    float *a = dg_xmalloc(n * sizeof(float)), *b = dg_xmalloc(n * sizeof(float));
    float *dd = dg_xmalloc(n * sizeof(float)), *got = dg_xmalloc(n * sizeof(float));
    fill_halves(a, n, seed);
    fill_halves(b, n, seed + 1);
    fill_halves(dd, n, seed + 2);
    double *a64 = dup_double(a, n), *b64 = dup_double(b, n), *dd64 = dup_double(dd, n);
    double *exp = dg_xmalloc(n * sizeof(double)), *eda = dg_xmalloc(n * sizeof(double));
    double *edb = dg_xmalloc(n * sizeof(double));
    ref_add_forward((int64_t)n, a64, b64, tc->relu, exp);
    ref_add_backward((int64_t)n, a64, b64, tc->relu, dd64, eda, edb);

    dnnl_memory_t am = make_tagged(&ctx, a, 4, dims, tc->a_tag);
    dnnl_memory_t bm = make_tagged(&ctx, b, 4, dims, tc->b_tag);
    dnnl_memory_t ddm = make_tagged(&ctx, dd, 4, dims, tc->ddst_tag);
    dg_add l;
    dg_add_cfg cfg = {.relu = tc->relu, .in_place = in_place,
            .diff_slot = in_place ? DG_SLOT_GRAD_RELU : DG_SLOT_OWN};
    dg_add_init(&l, &ctx, am, bm, &cfg);
    ck_assert(dnnl_memory_desc_equal(dg_mem_md(l.dst), dg_mem_md(am)));
    ck_assert(in_place == (l.dst == am));
    dg_param_set ps;
    dg_params_init(&ps);
    dg_pass p = dg_pass_train(&ps);
    dg_add_forward(&l, &ctx, &p);
    read_plain(&ctx, l.dst, got);
    DG_ASSERT_CLOSE(got, exp, n, 0.0, 0.0);

    dg_add_backward(&l, &ctx, &p, ddm);
    ck_assert(dnnl_memory_desc_equal(dg_mem_md(l.diff_a), dg_mem_md(am)));
    ck_assert(dnnl_memory_desc_equal(dg_mem_md(l.diff_b), dg_mem_md(bm)));
    if (in_place && tc->relu) ck_assert_ptr_eq(dg_mem_ptr(l.diff_pre), ctx.slot[DG_SLOT_GRAD_RELU]);
    read_plain(&ctx, l.diff_a, got);
    DG_ASSERT_CLOSE(got, eda, n, 0.0, 0.0);
    read_plain(&ctx, l.diff_b, got);
    DG_ASSERT_CLOSE(got, edb, n, 0.0, 0.0);

    dg_add_free(&l);
    dg_params_free(&ps);
    dnnl_memory_destroy(am), dnnl_memory_destroy(bm), dnnl_memory_destroy(ddm);
    dg_free(a), dg_free(b), dg_free(dd), dg_free(got), dg_free(a64), dg_free(b64);
    dg_free(dd64), dg_free(exp), dg_free(eda), dg_free(edb);
}

START_TEST(add_forward_backward_exact) {
    run_case(&cases[_i], 900 + 10 * (uint64_t)_i, false);
}
END_TEST

START_TEST(add_in_place_forward_backward_exact) {
    run_case(&cases[_i], 700 + 10 * (uint64_t)_i, true);
}
END_TEST

START_TEST(add_relu_blocked_channel_tails_exact_below_avx512) {
    run_case(&tail_cases[_i], 950 + 10 * (uint64_t)_i, false);
}
END_TEST

START_TEST(add_backward_makes_no_copy_when_layouts_agree) {
    int64_t dims[4] = {2, 20, 7, 5};
    const size_t n = 2 * 20 * 7 * 5;
    float *x = dg_xmalloc(n * sizeof(float));
    fill_halves(x, n, 3);
    dnnl_memory_t am = make_tagged(&ctx, x, 4, dims, dnnl_nChw16c);
    dnnl_memory_t bm = make_tagged(&ctx, x, 4, dims, dnnl_nChw16c);
    dnnl_memory_t ddm = make_tagged(&ctx, x, 4, dims, dnnl_nChw16c);
    dnnl_memory_t other = make_tagged(&ctx, x, 4, dims, dnnl_nchw);
    dg_param_set ps;
    dg_params_init(&ps);
    dg_pass p = dg_pass_train(&ps);
    dg_add l;
    dg_add_cfg cfg = {.relu = false};
    dg_add_init(&l, &ctx, am, bm, &cfg);
    dg_add_forward(&l, &ctx, &p);
    dg_add_backward(&l, &ctx, &p, ddm);
    ck_assert_ptr_eq(l.diff_a, ddm);
    ck_assert_ptr_eq(l.diff_b, ddm);
    dg_add_free(&l);
    cfg.relu = true;
    dg_add_init(&l, &ctx, am, bm, &cfg);
    dg_add_forward(&l, &ctx, &p);
    dg_add_backward(&l, &ctx, &p, ddm);
    ck_assert_ptr_eq(l.diff_a, l.diff_pre);
    ck_assert_ptr_eq(l.diff_b, l.diff_pre);
    dg_add_free(&l);
    cfg.relu = false; /* b in another layout: only diff_b is a copy */
    dg_add_init(&l, &ctx, am, other, &cfg);
    dg_add_forward(&l, &ctx, &p);
    dg_add_backward(&l, &ctx, &p, ddm);
    ck_assert_ptr_eq(l.diff_a, ddm);
    ck_assert_ptr_ne(l.diff_b, ddm);
    dg_add_free(&l);
    dg_params_free(&ps);
    dnnl_memory_destroy(am), dnnl_memory_destroy(bm), dnnl_memory_destroy(ddm);
    dnnl_memory_destroy(other);
    dg_free(x);
}
END_TEST

/* A residual block's input gets two gradients (conv1 and the shortcut),
 * each in its own layout; dg_add_sum adds them, and a second step with the
 * same memories allocates nothing. */
START_TEST(add_sums_two_gradients) {
    int64_t dims[4] = {2, 20, 9, 7};
    const size_t n = 2 * 20 * 9 * 7;
    float *g1 = dg_xmalloc(n * sizeof(float)), *g2 = dg_xmalloc(n * sizeof(float));
    float *got = dg_xmalloc(n * sizeof(float));
    fill_halves(g1, n, 4);
    fill_halves(g2, n, 5);
    double *exp = dg_xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) exp[i] = (double)g1[i] + (double)g2[i];
    dnnl_memory_t m1 = make_tagged(&ctx, g1, 4, dims, dnnl_nChw16c);
    dnnl_memory_t m2 = make_tagged(&ctx, g2, 4, dims, dnnl_nchw);
    dg_add l;
    dg_add_cfg cfg = {.relu = false};
    dg_add_init_md(&l, &ctx, dg_mem_md(m1), dg_mem_md(m2), &cfg);
    dg_add_sum(&l, &ctx, m1, m2);
    read_plain(&ctx, l.dst, got);
    DG_ASSERT_CLOSE(got, exp, n, 0.0, 0.0);
    const alloc_mark mark = alloc_mark_now();
    dg_add_sum(&l, &ctx, m1, m2);
    assert_nothing_allocated_since(mark);
    read_plain(&ctx, l.dst, got);
    DG_ASSERT_CLOSE(got, exp, n, 0.0, 0.0);
    dg_add_free(&l);
    /* in place: the sum lands in the first gradient's memory */
    cfg.in_place = true;
    dg_add_init_md(&l, &ctx, dg_mem_md(m1), dg_mem_md(m2), &cfg);
    dg_add_sum(&l, &ctx, m1, m2);
    ck_assert_ptr_eq(l.dst, m1);
    read_plain(&ctx, m1, got);
    DG_ASSERT_CLOSE(got, exp, n, 0.0, 0.0);
    dg_add_free(&l);
    dnnl_memory_destroy(m1), dnnl_memory_destroy(m2);
    dg_free(g1), dg_free(g2), dg_free(got), dg_free(exp);
}
END_TEST

START_TEST(add_second_step_allocates_nothing) {
    int64_t dims[4] = {2, 20, 9, 7};
    const size_t n = 2 * 20 * 9 * 7;
    float *x = dg_xmalloc(n * sizeof(float));
    fill_halves(x, n, 6);
    dnnl_memory_t am = make_tagged(&ctx, x, 4, dims, dnnl_nChw16c);
    dnnl_memory_t bm = make_tagged(&ctx, x, 4, dims, dnnl_nchw);
    dnnl_memory_t ddm = make_tagged(&ctx, x, 4, dims, dnnl_nhwc);
    dg_param_set ps;
    dg_params_init(&ps);
    dg_pass p = dg_pass_train(&ps);
    dg_add l;
    dg_add_cfg cfg = {.relu = true};
    dg_add_init(&l, &ctx, am, bm, &cfg);
    dg_add_forward(&l, &ctx, &p);
    dg_add_backward(&l, &ctx, &p, ddm);
    const alloc_mark mark = alloc_mark_now();
    dg_add_forward(&l, &ctx, &p);
    dg_add_backward(&l, &ctx, &p, ddm);
    assert_nothing_allocated_since(mark);
    dg_add_free(&l);
    dg_params_free(&ps);
    dnnl_memory_destroy(am), dnnl_memory_destroy(bm), dnnl_memory_destroy(ddm);
    dg_free(x);
}
END_TEST

/* Level 1: the reference's backward against its own forward, a + b kept
 * away from the ReLU kink. */
typedef struct fd_ctx {
    const double *b, *r;
    double *dst;
} fd_ctx;

enum { FD_N = 120 };

static double add_loss(void *vctx, const double *x) {
    fd_ctx *f = vctx;
    ref_add_forward(FD_N, x, f->b, true, f->dst);
    double s = 0.0;
    for (size_t i = 0; i < FD_N; i++) s += f->dst[i] * f->r[i];
    return s;
}

START_TEST(add_reference_backward_matches_finite_differences) {
    float tmp[FD_N];
    double a[FD_N], b[FD_N], r[FD_N], dst[FD_N], ga[FD_N], gb[FD_N], fd[FD_N];
    fill_away_from_zero(tmp, FD_N, 60, -1, 1, 0.2f), to_double(a, tmp, FD_N);
    fill_uniform(tmp, FD_N, 61, -0.05f, 0.05f), to_double(b, tmp, FD_N);
    fill_uniform(tmp, FD_N, 62, -1, 1), to_double(r, tmp, FD_N);
    fd_ctx f = {b, r, dst};
    ref_add_backward(FD_N, a, b, true, r, ga, gb);
    fd_gradient(add_loss, &f, a, FD_N, fd);
    DG_ASSERT_CLOSE64(ga, fd, FD_N, 1e-8, 1e-6);
    DG_ASSERT_CLOSE64(gb, fd, FD_N, 1e-8, 1e-6); /* symmetric in a and b */
}
END_TEST

Suite *add_suite(void) {
    Suite *s = suite_create("add");
    TCase *tc = tcase_create("numerics");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, add_forward_backward_exact, 0, (int)DG_ARRAY_LEN(cases));
    tcase_add_loop_test(tc, add_in_place_forward_backward_exact, 0, (int)DG_ARRAY_LEN(cases));
    tcase_add_test(tc, add_backward_makes_no_copy_when_layouts_agree);
    tcase_add_test(tc, add_sums_two_gradients);
    tcase_add_test(tc, add_second_step_allocates_nothing);
    tcase_add_test(tc, add_reference_backward_matches_finite_differences);
    suite_add_tcase(s, tc);
    TCase *isa = tcase_create("avx2");
    tcase_add_checked_fixture(isa, setup_avx2, teardown);
    tcase_set_timeout(isa, 30);
    tcase_add_loop_test(isa, add_relu_blocked_channel_tails_exact_below_avx512, 0,
            (int)DG_ARRAY_LEN(tail_cases));
    suite_add_tcase(s, isa);
    return s;
}
