/* tests/test_pool.c -- max, average (count_include_pad=True) and global
 * average pooling against the naive double reference (inputs nchw, nChw16c
 * and nhwc; odd sizes, stride 2), the reference against finite differences,
 * PyTorch's output sizes and the max-pool workspace.
 *
 * Shapes: N batch, C channels, H, W input, OH, OW output. */
#include <math.h>
#include <string.h>

#include "common.h"
#include "nets/core/pool.h"
#include "ref/spatial_ref.h"

static dg_ctx ctx;
static void setup(void) { dg_ctx_init(&ctx); }
static void teardown(void) { dg_ctx_free(&ctx); }

typedef struct pool_case {
    int64_t n, c, h, w;
    dg_pool_kind kind;
    int64_t k, stride, pad;
    dnnl_format_tag_t src_tag; /* layout the input arrives in */
} pool_case;

static const pool_case cases[] = {
    {2, 3, 13, 17, DG_POOL_MAX, 3, 2, 1, dnnl_nchw},        /* ResNet stem */
    {1, 20, 8, 9, DG_POOL_MAX, 3, 2, 1, dnnl_nChw16c},
    {2, 5, 9, 11, DG_POOL_MAX, 2, 2, 0, dnnl_nhwc},         /* right edge dropped */
    {1, 20, 8, 9, DG_POOL_MAX, 3, 1, 1, dnnl_nChw16c},      /* stride 1 */
    {2, 3, 13, 17, DG_POOL_AVG, 3, 2, 1, dnnl_nchw},
    {1, 20, 8, 9, DG_POOL_AVG, 3, 2, 1, dnnl_nChw16c},
    {2, 5, 11, 7, DG_POOL_AVG, 2, 2, 0, dnnl_nchw},
    {1, 17, 7, 10, DG_POOL_AVG, 5, 3, 2, dnnl_nChw16c},
    {2, 3, 13, 17, DG_POOL_GLOBAL_AVG, 0, 0, 0, dnnl_nchw},
    {1, 20, 8, 9, DG_POOL_GLOBAL_AVG, 0, 0, 0, dnnl_nChw16c},
    {2, 13, 13, 17, DG_POOL_MAX, 3, 2, 1, dnnl_nChw8c},     /* AVX2's blocking */
    {2, 13, 13, 17, DG_POOL_AVG, 3, 2, 1, dnnl_nChw8c},
};

/* Distinct values spaced 2/n apart in [-1, 1), shuffled: max pooling sees
 * no ties and finite differences never cross one. */
static void fill_distinct(float *x, size_t n, uint64_t seed) {
    int64_t *perm = dg_xmalloc(n * sizeof(*perm));
    for (size_t i = 0; i < n; i++) perm[i] = (int64_t)i;
    dg_rng r;
    dg_rng_init(&r, seed, 0, 0);
    dg_rng_shuffle_i64(&r, perm, n);
    for (size_t i = 0; i < n; i++) x[i] = (float)(2.0 * (double)perm[i] / (double)n - 1.0);
    dg_free(perm);
}

static void ref_setup(ref_pool *r, const pool_case *tc) {
    if (tc->kind == DG_POOL_GLOBAL_AVG)
        ref_pool_setup(r, tc->n, tc->c, tc->h, tc->w, tc->h, tc->w, 1, 1, 0, 0, false);
    else
        ref_pool_setup(r, tc->n, tc->c, tc->h, tc->w, tc->k, tc->k, tc->stride, tc->stride,
                tc->pad, tc->pad, tc->kind == DG_POOL_MAX);
}

static void run_case(const pool_case *tc, uint64_t seed) {
    ref_pool rp;
    ref_setup(&rp, tc);
    const size_t ns = (size_t)(tc->n * tc->c * tc->h * tc->w);
    const size_t nd = (size_t)(tc->n * tc->c * rp.oh * rp.ow);
    float *src = dg_xmalloc(ns * sizeof(float)), *ddst = dg_xmalloc(nd * sizeof(float));
    fill_distinct(src, ns, seed);
    fill_uniform(ddst, nd, seed + 1, -1.f, 1.f);
    int64_t sdims[4] = {tc->n, tc->c, tc->h, tc->w};
    dnnl_memory_t src_m = make_tagged(&ctx, src, 4, sdims, tc->src_tag);

    dg_pool l;
    dg_pool_cfg cfg = {.kind = tc->kind, .k = tc->k, .stride = tc->stride, .pad = tc->pad,
            .training = true};
    dg_pool_init(&l, &ctx, src_m, &cfg);
    ck_assert_int_eq(l.dst_dims[2], rp.oh);
    ck_assert_int_eq(l.dst_dims[3], rp.ow);

    double *s64 = dup_double(src, ns), *dd64 = dup_double(ddst, nd);
    double *exp = dg_xmalloc(nd * sizeof(double)), *eds = dg_xmalloc(ns * sizeof(double));
    ref_pool_forward(&rp, s64, exp);
    ref_pool_backward(&rp, s64, dd64, eds);

    dg_param_set ps;
    dg_params_init(&ps);
    dg_pass p = dg_pass_train(&ps);
    dg_pool_forward(&l, &ctx, &p);
    float *got = dg_xmalloc(nd * sizeof(float)), *gds = dg_xmalloc(ns * sizeof(float));
    read_plain(&ctx, l.dst, got);
    DG_ASSERT_CLOSE(got, exp, nd, 1e-5, 1e-4);

    fill_mem_value(&ctx, l.diff_src, 100.f); /* backward overwrites, never adds */
    dnnl_memory_t ddst_m = make_plain(&ctx, ddst, 4, l.dst_dims);
    dg_pool_backward(&l, &ctx, &p, ddst_m);
    read_plain(&ctx, l.diff_src, gds);
    DG_ASSERT_CLOSE(gds, eds, ns, 1e-5, 1e-4);

    dg_pool_free(&l);
    dg_params_free(&ps);
    dnnl_memory_destroy(src_m);
    dnnl_memory_destroy(ddst_m);
    dg_free(src), dg_free(ddst), dg_free(s64), dg_free(dd64), dg_free(exp), dg_free(eds);
    dg_free(got), dg_free(gds);
}

START_TEST(pool_forward_backward_match_reference) {
    run_case(&cases[_i], 300 + (uint64_t)_i);
}
END_TEST

/* Level 1: the reference's backward against its own forward. */
typedef struct fd_ctx {
    ref_pool rp;
    const double *r;
    double *dst;
} fd_ctx;

static double pool_loss(void *vctx, const double *x) {
    fd_ctx *f = vctx;
    ref_pool_forward(&f->rp, x, f->dst);
    const size_t nd = (size_t)(f->rp.n * f->rp.c * f->rp.oh * f->rp.ow);
    double s = 0.0;
    for (size_t i = 0; i < nd; i++) s += f->dst[i] * f->r[i];
    return s;
}

START_TEST(pool_reference_backward_matches_finite_differences) {
    /* max 3x3/2 pad 1, average 3x3/2 pad 1, average 2x2/2, global average */
    const int64_t k[] = {3, 3, 2, 7}, s[] = {2, 2, 2, 1}, pad[] = {1, 1, 0, 0};
    const bool max[] = {true, false, false, false};
    enum { NS = 2 * 3 * 7 * 6 };
    for (int t = 0; t < 4; t++) {
        fd_ctx f;
        const int64_t kw = t == 3 ? 6 : k[t]; /* global: the whole 7 x 6 plane */
        ref_pool_setup(&f.rp, 2, 3, 7, 6, k[t], kw, s[t], s[t], pad[t], pad[t], max[t]);
        const size_t nd = (size_t)(2 * 3 * f.rp.oh * f.rp.ow);
        float tmp[NS];
        double x[NS], r[NS], dst[NS], g[NS], fd[NS];
        fill_distinct(tmp, NS, 10 + (uint64_t)t), to_double(x, tmp, NS);
        fill_uniform(tmp, nd, 20 + (uint64_t)t, -1, 1), to_double(r, tmp, nd);
        f.r = r, f.dst = dst;
        ref_pool_backward(&f.rp, x, r, g);
        fd_gradient(pool_loss, &f, x, NS, fd);
        DG_ASSERT_CLOSE64(g, fd, NS, 1e-8, 1e-6);
    }
}
END_TEST

START_TEST(pool_output_size_matches_pytorch) {
    /* floor((H + 2p - k)/s) + 1, ceil_mode=False, as torch.nn.MaxPool2d. */
    const int64_t h[] = {224, 13, 17, 8, 9, 1};
    const int64_t want3x3s2p1[] = {112, 7, 9, 4, 5, 1};
    const int64_t want2x2s2[] = {112, 6, 8, 4, 4, 0};
    for (size_t i = 0; i < DG_ARRAY_LEN(h); i++) {
        int64_t dims[4] = {1, 4, h[i], h[i] + 2};
        dnnl_memory_desc_t md = dg_md_plain(4, dims, dnnl_nchw);
        dnnl_memory_t m = dg_mem_new(&ctx, &md, DNNL_MEMORY_ALLOCATE);
        dg_pool l;
        dg_pool_cfg cfg = {.kind = DG_POOL_MAX, .k = 3, .stride = 2, .pad = 1, .training = true};
        dg_pool_init(&l, &ctx, m, &cfg);
        ck_assert_int_eq(l.dst_dims[2], want3x3s2p1[i]);
        ck_assert_int_eq(l.dst_dims[3], (h[i] + 2 + 2 - 3) / 2 + 1);
        ck_assert_int_le(l.pad_r[0], 1);
        dg_pool_free(&l);
        if (want2x2s2[i] > 0) {
            dg_pool_cfg c2 = {.kind = DG_POOL_AVG, .k = 2, .stride = 2, .training = true};
            dg_pool_init(&l, &ctx, m, &c2);
            ck_assert_int_eq(l.dst_dims[2], want2x2s2[i]);
            ck_assert_int_eq(l.pad_r[0], 0);
            dg_pool_free(&l);
        }
        dg_pool_cfg cg = {.kind = DG_POOL_GLOBAL_AVG, .training = true};
        dg_pool_init(&l, &ctx, m, &cg);
        ck_assert_int_eq(l.dst_dims[2], 1);
        ck_assert_int_eq(l.dst_dims[3], 1);
        dg_pool_free(&l);
        dnnl_memory_destroy(m);
    }
}
END_TEST

START_TEST(pool_max_training_keeps_workspace_inference_matches) {
    int64_t dims[4] = {2, 20, 13, 17};
    const size_t ns = 2 * 20 * 13 * 17;
    float *src = dg_xmalloc(ns * sizeof(float));
    fill_distinct(src, ns, 5);
    dnnl_memory_t m = make_tagged(&ctx, src, 4, dims, dnnl_nChw16c);
    dg_pool a, b;
    dg_pool_cfg cfg = {.kind = DG_POOL_MAX, .k = 3, .stride = 2, .pad = 1, .training = true};
    dg_pool_init(&a, &ctx, m, &cfg);
    ck_assert_ptr_nonnull(a.ws);
    cfg.training = false;
    dg_pool_init(&b, &ctx, m, &cfg);
    ck_assert_ptr_null(b.ws);
    ck_assert_ptr_null(b.diff_src);
    dg_param_set ps;
    dg_params_init(&ps);
    dg_pass p = dg_pass_eval(&ps);
    dg_pool_forward(&a, &ctx, &p);
    dg_pool_forward(&b, &ctx, &p);
    const size_t nd = 2 * 20 * 7 * 9;
    float *ga = dg_xmalloc(nd * sizeof(float)), *gb = dg_xmalloc(nd * sizeof(float));
    read_plain(&ctx, a.dst, ga);
    read_plain(&ctx, b.dst, gb);
    double *e = dup_double(ga, nd);
    DG_ASSERT_CLOSE(gb, e, nd, 0.0, 0.0);
    dg_pool_free(&a), dg_pool_free(&b);
    dg_params_free(&ps);
    dnnl_memory_destroy(m);
    dg_free(src), dg_free(ga), dg_free(gb), dg_free(e);
}
END_TEST

START_TEST(pool_second_step_allocates_nothing) {
    int64_t dims[4] = {2, 20, 13, 17};
    const size_t ns = 2 * 20 * 13 * 17;
    float *src = dg_xmalloc(ns * sizeof(float));
    fill_distinct(src, ns, 6);
    dnnl_memory_t m = make_tagged(&ctx, src, 4, dims, dnnl_nChw16c);
    dg_pool l;
    dg_pool_cfg cfg = {.kind = DG_POOL_MAX, .k = 3, .stride = 2, .pad = 1, .training = true};
    dg_pool_init(&l, &ctx, m, &cfg);
    int64_t ddims[4] = {2, 20, 7, 9};
    float *dd = dg_xmalloc(2 * 20 * 7 * 9 * sizeof(float));
    fill_uniform(dd, 2 * 20 * 7 * 9, 7, -1, 1);
    dnnl_memory_t ddst = make_plain(&ctx, dd, 4, ddims); /* forces a reorder port */
    dg_param_set ps;
    dg_params_init(&ps);
    dg_pass p = dg_pass_train(&ps);
    dg_pool_forward(&l, &ctx, &p);
    dg_pool_backward(&l, &ctx, &p, ddst);
    const alloc_mark mark = alloc_mark_now();
    dg_pool_forward(&l, &ctx, &p);
    dg_pool_backward(&l, &ctx, &p, ddst);
    assert_nothing_allocated_since(mark);
    dg_pool_free(&l);
    dg_params_free(&ps);
    dnnl_memory_destroy(m), dnnl_memory_destroy(ddst);
    dg_free(src), dg_free(dd);
}
END_TEST

Suite *pool_suite(void) {
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("numerics");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, pool_forward_backward_match_reference, 0, (int)DG_ARRAY_LEN(cases));
    tcase_add_test(tc, pool_reference_backward_matches_finite_differences);
    tcase_add_test(tc, pool_output_size_matches_pytorch);
    tcase_add_test(tc, pool_max_training_keeps_workspace_inference_matches);
    tcase_add_test(tc, pool_second_step_allocates_nothing);
    suite_add_tcase(s, tc);
    return s;
}
