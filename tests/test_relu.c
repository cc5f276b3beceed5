/* tests/test_relu.c -- ReLU forward and backward, exact on half-integer
 * inputs (docs/style.md §11 Snippet 3), in plain and blocked layouts; and the
 * DG_DNNL check aborting on a failing oneDNN call.
 * Shapes: N batch, C channels, H height, W width. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "nets/core/relu.h"

static dg_ctx ctx;
static void setup(void) { dg_ctx_init(&ctx); }     /* checked: runs in the forked child */
static void teardown(void) { dg_ctx_free(&ctx); }

typedef struct relu_case {
    int64_t n, c, h, w;
    dnnl_format_tag_t src_tag;  /* layout the input arrives in */
    dnnl_format_tag_t ddst_tag; /* layout diff_dst arrives in */
} relu_case;

static const relu_case cases[] = {
    {2, 3, 5, 7, dnnl_nchw, dnnl_nchw},
    {1, 17, 9, 11, dnnl_nChw16c, dnnl_nChw16c}, /* padded channels */
    {3, 20, 4, 6, dnnl_nChw16c, dnnl_nchw},     /* diff_dst reordered */
    {2, 5, 3, 13, dnnl_nchw, dnnl_nhwc},
};

/* Forward and backward of one case; both must be exact (atol = rtol = 0). */
static void run_case(const relu_case *tc, uint64_t seed) {
    size_t n = (size_t)(tc->n * tc->c * tc->h * tc->w);
    int64_t dims[4] = {tc->n, tc->c, tc->h, tc->w};
    float *x = dg_xmalloc(n * sizeof(float)), *dy = dg_xmalloc(n * sizeof(float));
    float *got = dg_xmalloc(n * sizeof(float));
    double *exp = dg_xmalloc(n * sizeof(double));
    fill_halves(x, n, seed);
    fill_halves(dy, n, seed + 1);
    dnnl_memory_t src = make_tagged(&ctx, x, 4, dims, tc->src_tag);
    dnnl_memory_t ddst = make_tagged(&ctx, dy, 4, dims, tc->ddst_tag);
    dg_relu l;
    dg_relu_init(&l, &ctx, src);
    ck_assert(dnnl_memory_desc_equal(dg_mem_md(l.dst), dg_mem_md(src)));
    dg_pass p;
    memset(&p, 0, sizeof(p));
    p.train = true;

    dg_relu_forward(&l, &ctx, &p);
    read_plain(&ctx, l.dst, got);
    for (size_t i = 0; i < n; i++) exp[i] = x[i] > 0.f ? x[i] : 0.0;
    DG_ASSERT_CLOSE(got, exp, n, 0.0, 0.0);

    dg_relu_backward(&l, &ctx, &p, ddst);
    read_plain(&ctx, l.diff_src, got);
    /* PyTorch's threshold_backward: zero gradient where x <= 0 (x = 0 too). */
    for (size_t i = 0; i < n; i++) exp[i] = x[i] > 0.f ? dy[i] : 0.0;
    DG_ASSERT_CLOSE(got, exp, n, 0.0, 0.0);

    dg_relu_free(&l);
    dnnl_memory_destroy(src);
    dnnl_memory_destroy(ddst);
    dg_free(x), dg_free(dy), dg_free(got), dg_free(exp);
}

START_TEST(relu_forward_backward_are_exact) {
    run_case(&cases[_i], 1 + (uint64_t)_i);
}
END_TEST

START_TEST(relu_steps_after_the_first_allocate_nothing) {
    int64_t dims[4] = {2, 17, 5, 6};
    size_t n = 2 * 17 * 5 * 6;
    float *x = dg_xmalloc(n * sizeof(float)), *dy = dg_xmalloc(n * sizeof(float));
    fill_halves(x, n, 7);
    fill_halves(dy, n, 8);
    dnnl_memory_t src = make_tagged(&ctx, x, 4, dims, dnnl_nChw16c);
    dnnl_memory_t ddst = make_plain(&ctx, dy, 4, dims); /* the port reorders */
    dg_relu l;
    dg_relu_init(&l, &ctx, src);
    dg_pass p;
    memset(&p, 0, sizeof(p));
    alloc_mark mark = alloc_mark_now();
    for (int step = 0; step < 3; step++) {
        if (step == 1) mark = alloc_mark_now();
        dg_relu_forward(&l, &ctx, &p);
        dg_relu_backward(&l, &ctx, &p, ddst);
    }
    DG_DNNL(dnnl_stream_wait(ctx.stream));
    assert_nothing_allocated_since(mark);
    ck_assert_ptr_nonnull(l.ddst_p.buf); /* the reorder really ran */
    dg_relu_free(&l);
    dnnl_memory_destroy(src);
    dnnl_memory_destroy(ddst);
    dg_free(x), dg_free(dy);
}
END_TEST

/* A negative dimension: oneDNN returns invalid_arguments, DG_DNNL aborts. */
START_TEST(dnnl_failure_aborts) {
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {-1};
    DG_DNNL(dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_f32, dnnl_a));
}
END_TEST

Suite *relu_suite(void) {
    Suite *s = suite_create("relu");
    TCase *tc = tcase_create("numerics");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, relu_forward_backward_are_exact, 0, (int)DG_ARRAY_LEN(cases));
    tcase_add_test(tc, relu_steps_after_the_first_allocate_nothing);
    dg_tcase_add_abort_test(tc, dnnl_failure_aborts);
    suite_add_tcase(s, tc);
    return s;
}
