/* tests/test_resize.c -- bilinear resize (align_corners false and true,
 * integer and non-integer factors, 1 -> 5) against a double reference of
 * PyTorch's F.interpolate formulas, forward and backward, inputs nchw,
 * nChw16c and nhwc; the reference against finite differences; padded
 * channels of blocked layouts; independence from the thread count.
 *
 * Shapes: N batch, C channels, H, W input, OH, OW output. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "common.h"
#include "nets/core/resize.h"
#include "ref/spatial_ref.h"

static dg_ctx ctx;
static void setup(void) { dg_ctx_init(&ctx); }
static void teardown(void) { dg_ctx_free(&ctx); }

typedef struct resize_case {
    int64_t n, c, h, w, oh, ow;
    bool align_corners;
    dnnl_format_tag_t src_tag; /* layout the input arrives in */
} resize_case;

static const resize_case cases[] = {
    {2, 3, 17, 13, 65, 33, false, dnnl_nchw},     /* up, non-integer factors */
    {1, 20, 65, 33, 17, 13, false, dnnl_nChw16c}, /* down */
    {2, 3, 17, 13, 65, 33, true, dnnl_nChw16c},
    {1, 20, 65, 33, 17, 13, true, dnnl_nchw},
    {2, 17, 13, 33, 33, 13, true, dnnl_nChw16c},  /* up in H, down in W */
    {1, 5, 33, 13, 13, 33, false, dnnl_nhwc},
    {1, 6, 33, 13, 13, 33, true, dnnl_nhwc},
    {2, 80, 9, 7, 13, 11, true, dnnl_nhwc},       /* two lane chunks, 64 + 16 */
    {2, 20, 1, 1, 5, 5, false, dnnl_nChw16c},     /* 1 -> 5 (ASPP pool) */
    {2, 20, 1, 1, 5, 5, true, dnnl_nChw16c},
    {1, 3, 1, 7, 5, 7, true, dnnl_nchw},          /* 1 -> 5, same width */
    {2, 20, 1, 1, 5, 5, true, dnnl_nchw},         /* nchw 1x1: channel stride 1, dst's not */
    {1, 4, 7, 9, 1, 1, true, dnnl_nchw},          /* out == 1 */
    {2, 16, 8, 8, 32, 32, false, dnnl_nChw16c},   /* integer factor 4 */
    {2, 16, 8, 8, 32, 32, true, dnnl_nChw16c},
    {2, 13, 17, 13, 65, 33, true, dnnl_nChw8c},   /* AVX2's blocking */
    {2, 13, 65, 33, 17, 13, false, dnnl_nChw8c},
};

static void run_case(const resize_case *tc, uint64_t seed) {
    ref_resize rr = {tc->n, tc->c, tc->h, tc->w, tc->oh, tc->ow, tc->align_corners};
    const size_t ns = (size_t)(tc->n * tc->c * tc->h * tc->w);
    const size_t nd = (size_t)(tc->n * tc->c * tc->oh * tc->ow);
    float *src = dg_xmalloc(ns * sizeof(float)), *ddst = dg_xmalloc(nd * sizeof(float));
    fill_uniform(src, ns, seed, -1.f, 1.f);
    fill_uniform(ddst, nd, seed + 1, -1.f, 1.f);
    int64_t sdims[4] = {tc->n, tc->c, tc->h, tc->w};
    dnnl_memory_t src_m = make_tagged(&ctx, src, 4, sdims, tc->src_tag);

    dg_resize l;
    dg_resize_cfg cfg = {.oh = tc->oh, .ow = tc->ow, .align_corners = tc->align_corners};
    dg_resize_init(&l, &ctx, src_m, &cfg);

    double *s64 = dup_double(src, ns), *dd64 = dup_double(ddst, nd);
    double *exp = dg_xmalloc(nd * sizeof(double)), *eds = dg_xmalloc(ns * sizeof(double));
    ref_resize_forward(&rr, s64, exp);
    ref_resize_backward(&rr, dd64, eds);

    dg_param_set ps;
    dg_params_init(&ps);
    dg_pass p = dg_pass_train(&ps);
    dg_resize_forward(&l, &ctx, &p);
    float *got = dg_xmalloc(nd * sizeof(float)), *gds = dg_xmalloc(ns * sizeof(float));
    read_plain(&ctx, l.dst, got);
    DG_ASSERT_CLOSE(got, exp, nd, 1e-5, 1e-4);

    fill_mem_value(&ctx, l.diff_src, 100.f); /* backward overwrites, never adds */
    dnnl_memory_t ddst_m = make_plain(&ctx, ddst, 4, l.dst_dims);
    dg_resize_backward(&l, &ctx, &p, ddst_m);
    read_plain(&ctx, l.diff_src, gds);
    DG_ASSERT_CLOSE(gds, eds, ns, 1e-5, 1e-4);

    dg_resize_free(&l);
    dg_params_free(&ps);
    dnnl_memory_destroy(src_m);
    dnnl_memory_destroy(ddst_m);
    dg_free(src), dg_free(ddst), dg_free(s64), dg_free(dd64), dg_free(exp), dg_free(eds);
    dg_free(got), dg_free(gds);
}

START_TEST(resize_forward_backward_match_reference) {
    run_case(&cases[_i], 500 + (uint64_t)_i);
}
END_TEST

START_TEST(resize_source_coordinates_are_pytorch_formulas) {
    /* align_corners=True: dst*(in-1)/(out-1); 0 when out == 1. */
    ck_assert_double_eq_tol(dg_resize_src_coord(64, 17, 65, true), 16.0, 1e-12);
    ck_assert_double_eq_tol(dg_resize_src_coord(5, 17, 65, true), 1.25, 1e-12);
    ck_assert_double_eq_tol(dg_resize_src_coord(3, 65, 17, true), 12.0, 1e-12);
    ck_assert_double_eq_tol(dg_resize_src_coord(0, 9, 1, true), 0.0, 1e-12);
    /* align_corners=False: max((dst+0.5)*in/out - 0.5, 0). */
    ck_assert_double_eq_tol(dg_resize_src_coord(0, 17, 65, false), 0.0, 1e-12);
    ck_assert_double_eq_tol(dg_resize_src_coord(10, 17, 65, false),
            10.5 * 17.0 / 65.0 - 0.5, 1e-12);
    ck_assert_double_eq_tol(dg_resize_src_coord(1, 65, 17, false), 1.5 * 65.0 / 17.0 - 0.5,
            1e-12);
    ck_assert_double_eq_tol(dg_resize_src_coord(0, 1, 5, false), 0.0, 1e-12); /* clamped */
    ck_assert_double_eq_tol(dg_resize_src_coord(4, 1, 5, false), 0.4, 1e-12);
}
END_TEST

/* Level 1: the reference's backward against its own forward. */
typedef struct fd_ctx {
    ref_resize rr;
    const double *r;
    double *dst;
} fd_ctx;

static double resize_loss(void *vctx, const double *x) {
    fd_ctx *f = vctx;
    ref_resize_forward(&f->rr, x, f->dst);
    const size_t nd = (size_t)(f->rr.n * f->rr.c * f->rr.oh * f->rr.ow);
    double s = 0.0;
    for (size_t i = 0; i < nd; i++) s += f->dst[i] * f->r[i];
    return s;
}

START_TEST(resize_reference_backward_matches_finite_differences) {
    const int64_t shapes[][4] = {{5, 4, 13, 9}, {13, 9, 5, 4}, {1, 3, 5, 7}};
    for (int ac = 0; ac < 2; ac++)
        for (size_t t = 0; t < DG_ARRAY_LEN(shapes); t++) {
            fd_ctx f;
            ref_resize rr = {2, 3, shapes[t][0], shapes[t][1], shapes[t][2], shapes[t][3],
                    ac == 1};
            f.rr = rr;
            const size_t ns = (size_t)(2 * 3 * rr.h * rr.w), nd = (size_t)(2 * 3 * rr.oh * rr.ow);
            float tmp[1024];
            double x[1024], r[1024], dst[1024], g[1024], fd[1024];
            fill_uniform(tmp, ns, 30 + t, -1, 1), to_double(x, tmp, ns);
            fill_uniform(tmp, nd, 40 + t, -1, 1), to_double(r, tmp, nd);
            f.r = r, f.dst = dst;
            ref_resize_backward(&f.rr, r, g);
            fd_gradient(resize_loss, &f, x, ns, fd);
            DG_ASSERT_CLOSE64(g, fd, ns, 1e-8, 1e-6);
        }
}
END_TEST

START_TEST(resize_blocked_padded_channels_stay_zero) {
    int64_t dims[4] = {2, 20, 13, 17};
    const size_t ns = 2 * 20 * 13 * 17, nd = 2 * 20 * 33 * 9;
    float *src = dg_xmalloc(ns * sizeof(float)), *dd = dg_xmalloc(nd * sizeof(float));
    fill_uniform(src, ns, 8, -1, 1);
    fill_uniform(dd, nd, 9, -1, 1);
    dnnl_memory_t m = make_tagged(&ctx, src, 4, dims, dnnl_nChw16c);
    dg_resize l;
    dg_resize_cfg cfg = {.oh = 33, .ow = 9, .align_corners = true};
    dg_resize_init(&l, &ctx, m, &cfg);
    dnnl_memory_t ddst = make_tagged(&ctx, dd, 4, l.dst_dims, dnnl_nChw16c);
    dg_param_set ps;
    dg_params_init(&ps);
    dg_pass p = dg_pass_train(&ps);
    const dg_chw *vd = &l.dst_v, *vs = &l.src_v;
    ck_assert_int_eq(vd->cb, 16);
    float *d = dg_mem_ptr(l.dst), *s = dg_mem_ptr(l.diff_src);
    /* Poison channels 20..31 of the second block: forward and backward
     * must write them back to zero. */
    for (int64_t n = 0; n < 2; n++)
        for (int64_t c = 20; c < 32; c++) {
            for (int64_t h = 0; h < 33; h++)
                for (int64_t w = 0; w < 9; w++) d[dg_chw_at(vd, n, c, h, w)] = 7.f;
            for (int64_t h = 0; h < 13; h++)
                for (int64_t w = 0; w < 17; w++) s[dg_chw_at(vs, n, c, h, w)] = 7.f;
        }
    dg_resize_forward(&l, &ctx, &p);
    dg_resize_backward(&l, &ctx, &p, ddst);
    size_t nonzero = 0, real = 0;
    for (int64_t n = 0; n < 2; n++)
        for (int64_t h = 0; h < 33; h++)
            for (int64_t w = 0; w < 9; w++) {
                for (int64_t c = 20; c < 32; c++) nonzero += d[dg_chw_at(vd, n, c, h, w)] != 0.f;
                real += d[dg_chw_at(vd, n, 19, h, w)] != 0.f;
            }
    for (int64_t n = 0; n < 2; n++)
        for (int64_t h = 0; h < 13; h++)
            for (int64_t w = 0; w < 17; w++)
                for (int64_t c = 20; c < 32; c++) nonzero += s[dg_chw_at(vs, n, c, h, w)] != 0.f;
    ck_assert_uint_eq(nonzero, 0);
    ck_assert_uint_gt(real, 0);
    dg_resize_free(&l);
    dg_params_free(&ps);
    dnnl_memory_destroy(m), dnnl_memory_destroy(ddst);
    dg_free(src), dg_free(dd);
}
END_TEST

/* Forward and backward of the hand-written kernels, bitwise, with 1 and 4
 * threads (each diff_src slice has one writer, in a fixed order). */
START_TEST(resize_align_corners_independent_of_thread_count) {
    int64_t dims[4] = {2, 40, 17, 13};
    const size_t ns = 2 * 40 * 17 * 13, nd = 2 * 40 * 65 * 33;
    float *src = dg_xmalloc(ns * sizeof(float)), *dd = dg_xmalloc(nd * sizeof(float));
    fill_uniform(src, ns, 11, -1, 1);
    fill_uniform(dd, nd, 12, -1, 1);
    dnnl_memory_t m = make_tagged(&ctx, src, 4, dims, dnnl_nChw16c);
    dg_resize l;
    dg_resize_cfg cfg = {.oh = 65, .ow = 33, .align_corners = true};
    dg_resize_init(&l, &ctx, m, &cfg);
    dnnl_memory_t ddst = make_plain(&ctx, dd, 4, l.dst_dims);
    dg_param_set ps;
    dg_params_init(&ps);
    dg_pass p = dg_pass_train(&ps);
    float *out[2][2];
    const int threads[2] = {1, 4};
    const int saved = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(threads[t]);
        dg_resize_forward(&l, &ctx, &p);
        dg_resize_backward(&l, &ctx, &p, ddst);
        out[t][0] = dg_xmalloc(nd * sizeof(float));
        out[t][1] = dg_xmalloc(ns * sizeof(float));
        read_plain(&ctx, l.dst, out[t][0]);
        read_plain(&ctx, l.diff_src, out[t][1]);
    }
    omp_set_num_threads(saved);
    ck_assert_int_eq(memcmp(out[0][0], out[1][0], nd * sizeof(float)), 0);
    ck_assert_int_eq(memcmp(out[0][1], out[1][1], ns * sizeof(float)), 0);
    double *e = dup_double(out[0][1], ns);
    DG_ASSERT_CLOSE(out[1][1], e, ns, 0.0, 0.0); /* zero trust */
    dg_resize_free(&l);
    dg_params_free(&ps);
    dnnl_memory_destroy(m), dnnl_memory_destroy(ddst);
    for (int t = 0; t < 2; t++) dg_free(out[t][0]), dg_free(out[t][1]);
    dg_free(src), dg_free(dd), dg_free(e);
}
END_TEST

START_TEST(resize_second_step_allocates_nothing) {
    int64_t dims[4] = {1, 20, 17, 13};
    const size_t ns = 20 * 17 * 13, nd = 20 * 33 * 9;
    float *src = dg_xmalloc(ns * sizeof(float)), *dd = dg_xmalloc(nd * sizeof(float));
    fill_uniform(src, ns, 13, -1, 1);
    fill_uniform(dd, nd, 14, -1, 1);
    dnnl_memory_t m = make_tagged(&ctx, src, 4, dims, dnnl_nChw16c);
    dg_param_set ps;
    dg_params_init(&ps);
    dg_pass p = dg_pass_train(&ps);
    for (int ac = 0; ac < 2; ac++) {
        dg_resize l;
        dg_resize_cfg cfg = {.oh = 33, .ow = 9, .align_corners = ac == 1};
        dg_resize_init(&l, &ctx, m, &cfg);
        dnnl_memory_t ddst = make_plain(&ctx, dd, 4, l.dst_dims); /* forces a port */
        dg_resize_forward(&l, &ctx, &p);
        dg_resize_backward(&l, &ctx, &p, ddst);
        const alloc_mark mark = alloc_mark_now();
        dg_resize_forward(&l, &ctx, &p);
        dg_resize_backward(&l, &ctx, &p, ddst);
        assert_nothing_allocated_since(mark);
        dg_resize_free(&l);
        dnnl_memory_destroy(ddst);
    }
    dg_params_free(&ps);
    dnnl_memory_destroy(m);
    dg_free(src), dg_free(dd);
}
END_TEST

Suite *resize_suite(void) {
    Suite *s = suite_create("resize");
    TCase *tc = tcase_create("numerics");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, resize_forward_backward_match_reference, 0, (int)DG_ARRAY_LEN(cases));
    tcase_add_test(tc, resize_source_coordinates_are_pytorch_formulas);
    tcase_add_test(tc, resize_reference_backward_matches_finite_differences);
    tcase_add_test(tc, resize_blocked_padded_channels_stay_zero);
    tcase_add_test(tc, resize_align_corners_independent_of_thread_count);
    tcase_add_test(tc, resize_second_step_allocates_nothing);
    suite_add_tcase(s, tc);
    return s;
}
