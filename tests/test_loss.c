/* tests/test_loss.c -- softmax cross-entropy and the SAF/MESA KL term
 * against the naive double references (tests/ref/loss_ref.c), the
 * references against finite differences, docs/algorithms.md §15.7, ignore and
 * abort behaviour, layouts and thread-count independence.
 *
 * Shapes: N batch, C classes, H height, W width, P = H*W. */
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <string.h>

#include "common.h"
#include "nets/core/loss.h"
#include "ref/loss_ref.h"

static dg_ctx ctx;
static void setup(void) { dg_ctx_init(&ctx); }
static void teardown(void) { dg_ctx_free(&ctx); }

/* Labels uniform in 0..C-1, about ignore_frac of them 255. */
static void fill_labels(int32_t *label, size_t n, uint64_t seed, int64_t c, double ignore_frac) {
    dg_rng r;
    dg_rng_init(&r, seed, 0, 1);
    for (size_t i = 0; i < n; i++) {
        bool ign = dg_rng_uniform(&r) < ignore_frac;
        int32_t y = (int32_t)dg_rng_below(&r, (uint64_t)c);
        label[i] = ign ? 255 : y;
    }
}

static int64_t count_valid(const int32_t *label, size_t n, int64_t c) {
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) v += c >= 255 || label[i] != 255;
    return v;
}

/* Every padded channel (C .. ceil(C/cb)*cb - 1) of diff is exactly 0. */
static void assert_padding_zero(const dg_chw *v, const float *d) {
    const int64_t cpad = (v->c + v->cb - 1) / v->cb * v->cb;
    for (int64_t n = 0; n < v->n; n++)
        for (int64_t c = v->c; c < cpad; c++)
            for (int64_t h = 0; h < v->h; h++)
                for (int64_t w = 0; w < v->w; w++)
                    ck_assert_msg(d[dg_chw_at(v, n, c, h, w)] == 0.f, "padding c %lld",
                            (long long)c);
}

typedef struct ce_case {
    int ndims;
    int64_t dims[4];           /* (N, C, H, W) or (N, C) */
    dnnl_format_tag_t tag;     /* layout the logits arrive in */
    bool weights;
    float scale;
    double ignore_frac;
    float amp;                 /* logits uniform in [-amp, amp] */
} ce_case;

static const ce_case ce_cases[] = {
    {4, {2, 19, 7, 9}, dnnl_nchw, false, 1.f, 0.3, 5.f},
    {4, {2, 19, 7, 9}, dnnl_nChw16c, true, 0.4f, 0.3, 5.f},   /* padded channels 19..31 */
    {4, {2, 19, 7, 9}, dnnl_nhwc, true, 1.f, 0.3, 5.f},
    {2, {5, 10}, dnnl_nc, false, 1.f, 0.0, 4.f},               /* classification */
    {4, {5, 10, 1, 1}, dnnl_nchw, true, 1.f, 0.2, 4.f},
    {4, {1, 3, 5, 70}, dnnl_nchw, false, 0.4f, 0.3, 100.f},    /* large logits, W > tile */
    {4, {2, 19, 3, 5}, dnnl_NChw16n16c, true, 1.f, 0.3, 5.f},  /* unsupported: nchw */
    {4, {1, 20, 2, 67}, dnnl_nChw8c, false, 1.f, 0.1, 5.f},
    {2, {6, 345}, dnnl_nc, true, 1.f, 0.0, 4.f},                 /* DomainNet: 255 is a class */
};

START_TEST(ce_matches_reference) {
    const ce_case *tc = &ce_cases[_i];
    const int64_t n = tc->dims[0], c = tc->dims[1];
    const int64_t p = tc->ndims == 4 ? tc->dims[2] * tc->dims[3] : 1;
    const size_t nz = (size_t)(n * c * p), nl = (size_t)(n * p);
    float *z = dg_xmalloc(nz * sizeof(float)), *got = dg_xmalloc(nz * sizeof(float));
    int32_t *label = dg_xmalloc(nl * sizeof(int32_t));
    fill_uniform(z, nz, 40 + (uint64_t)_i, -tc->amp, tc->amp);
    fill_labels(label, nl, 50 + (uint64_t)_i, c, tc->ignore_frac);
    if (c > 255) label[0] = 255; /* a class, not "no label" */
    float cw[512];
    double cw64[512];
    fill_uniform(cw, (size_t)c, 60, 0.2f, 3.f);
    to_double(cw64, cw, (size_t)c);

    dnnl_memory_t m = make_tagged(&ctx, z, tc->ndims, tc->dims, tc->tag);
    dg_loss_ce l;
    dg_loss_ce_cfg cfg = {.class_weights = tc->weights ? cw : NULL, .scale = tc->scale};
    dg_loss_ce_init(&l, &ctx, m, &cfg);
    double loss = dg_loss_ce_compute(&l, &ctx, label);

    double *z64 = dup_double(z, nz), *eg = dg_xmalloc(nz * sizeof(double));
    double el = ref_ce(n, c, p, z64, label, tc->weights ? cw64 : NULL, tc->scale, eg);
    DG_ASSERT_CLOSE64(&loss, &el, 1, 1e-7, 1e-6);
    ck_assert_int_eq(l.n_valid, count_valid(label, nl, c));
    read_plain(&ctx, l.diff, got);
    DG_ASSERT_CLOSE(got, eg, nz, 1e-8, 1e-4);

    dg_loss_view s = dg_loss_ce_view(&l);
    ck_assert_ptr_eq(s.label, label);
    ck_assert_int_eq(s.n_valid, l.n_valid);
    ck_assert_ptr_eq(s.diff_z, dg_mem_ptr(l.diff));
    ck_assert_int_eq(s.v.c, c);
    if (tc->tag == dnnl_NChw16n16c) ck_assert_int_eq(s.v.cb, 1);
    if (tc->tag == dnnl_nChw16c) ck_assert_int_eq(s.v.cb, 16);
    assert_padding_zero(&s.v, s.diff_z);
    /* z in the view holds the logits: spot-check (n, c) = (N-1, C-1). */
    const int64_t hw = tc->ndims == 4 ? tc->dims[3] : 1;
    ck_assert(s.z[dg_chw_at(&s.v, n - 1, c - 1, (p - 1) / hw, (p - 1) % hw)]
            == z[(n - 1) * c * p + (c - 1) * p + p - 1]);

    dg_loss_ce_free(&l);
    dnnl_memory_destroy(m);
    dg_free(z), dg_free(got), dg_free(label), dg_free(z64), dg_free(eg);
}
END_TEST

/* Level 1: the references' gradients against their own values. */
typedef struct fd_ctx {
    int64_t n, c, p;
    const int32_t *label;
    const double *weights, *teacher;
    double scale, tau, lambda;
    bool kl;
} fd_ctx;

static double loss_of(void *vctx, const double *x) {
    fd_ctx *f = vctx;
    if (f->kl) return ref_kl(f->n, f->c, f->p, f->teacher, x, f->label, f->tau, f->lambda, NULL);
    return ref_ce(f->n, f->c, f->p, x, f->label, f->weights, f->scale, NULL);
}

START_TEST(ce_reference_matches_finite_differences) {
    const int32_t label[6] = {1, 255, 3, 0, 2, 255};
    double w[4] = {0.5, 2.0, 1.0, 1.5};
    fd_ctx f = {.n = 2, .c = 4, .p = 3, .label = label, .scale = 0.4};
    float tmp[24];
    double z[24], g[24], fd[24];
    fill_uniform(tmp, 24, 70, -3.f, 3.f);
    to_double(z, tmp, 24);
    for (int weighted = 0; weighted < 2; weighted++) {
        f.weights = weighted ? w : NULL;
        ref_ce(2, 4, 3, z, label, f.weights, 0.4, g);
        fd_gradient(loss_of, &f, z, 24, fd);
        DG_ASSERT_CLOSE64(g, fd, 24, 1e-8, 1e-6);
    }
}
END_TEST

START_TEST(ce_all_ignored_gives_zero_loss_and_gradient) {
    int64_t dims[4] = {2, 19, 4, 5};
    const size_t nz = 760, nl = 40;
    float z[760];
    int32_t label[40];
    fill_uniform(z, nz, 80, -5.f, 5.f);
    fill_labels(label, nl, 81, 19, 0.2);
    dnnl_memory_t m = make_tagged(&ctx, z, 4, dims, dnnl_nChw16c);
    float cw[19];
    fill_uniform(cw, 19, 82, 0.5f, 2.f);
    dg_loss_ce l;
    dg_loss_ce_cfg cfg = {.class_weights = cw, .scale = 1.f};
    dg_loss_ce_init(&l, &ctx, m, &cfg);
    double first = dg_loss_ce_compute(&l, &ctx, label); /* leaves a non-zero gradient */
    ck_assert(first > 0.0);
    for (size_t i = 0; i < nl; i++) label[i] = 255;
    double loss = dg_loss_ce_compute(&l, &ctx, label);
    ck_assert_msg(loss == 0.0, "loss %g", loss);
    ck_assert(l.ce == 0.0);
    ck_assert_int_eq(l.n_valid, 0);
    /* The one place an all-zero output is expected: check it element-wise. */
    const float *d = dg_mem_ptr(l.diff);
    size_t bytes = dg_md_bytes(dg_mem_md(l.diff));
    for (size_t i = 0; i < bytes / sizeof(float); i++)
        ck_assert_msg(d[i] == 0.f && !signbit(d[i]), "diff[%zu] = %g", i, (double)d[i]);
    dg_loss_ce_free(&l);
    dnnl_memory_destroy(m);
}
END_TEST

START_TEST(ce_label_out_of_range_aborts) {
    int64_t dims[4] = {1, 5, 2, 3};
    float z[30];
    fill_uniform(z, 30, 90, -1.f, 1.f);
    int32_t label[6] = {0, 4, 255, 7, 1, 2}; /* 7 with C = 5 is a bug */
    dnnl_memory_t m = make_plain(&ctx, z, 4, dims);
    dg_loss_ce l;
    dg_loss_ce_cfg cfg = {.scale = 1.f};
    dg_loss_ce_init(&l, &ctx, m, &cfg);
    dg_loss_ce_compute(&l, &ctx, label);
}
END_TEST

START_TEST(loss_thread_count_does_not_change_result) {
    int64_t dims[4] = {2, 19, 33, 37};
    const size_t nz = 2 * 19 * 33 * 37, nl = 2 * 33 * 37;
    float *z = dg_xmalloc(nz * sizeof(float)), *t = dg_xmalloc(nz * sizeof(float));
    int32_t *label = dg_xmalloc(nl * sizeof(int32_t));
    fill_uniform(z, nz, 100, -6.f, 6.f);
    fill_uniform(t, nz, 101, -6.f, 6.f);
    fill_labels(label, nl, 102, 19, 0.3);
    float cw[19];
    fill_uniform(cw, 19, 103, 0.5f, 2.f);
    dnnl_memory_t m = make_tagged(&ctx, z, 4, dims, dnnl_nChw16c);
    dg_loss_ce l;
    dg_loss_ce_cfg cfg = {.class_weights = cw, .scale = 1.f};
    dg_loss_ce_init(&l, &ctx, m, &cfg);
    size_t bytes = dg_md_bytes(dg_mem_md(l.diff));
    float *g1 = dg_xmalloc(bytes);
    double ce[2], kl[2];
    for (int run = 0; run < 2; run++) {
        omp_set_num_threads(run + 1);
        ce[run] = dg_loss_ce_compute(&l, &ctx, label);
        dg_loss_view s = dg_loss_ce_view(&l);
        kl[run] = dg_loss_kl_add(&s, t, label, 5.0, 0.8);
        if (run == 0) memcpy(g1, s.diff_z, bytes);
        else ck_assert_int_eq(memcmp(g1, s.diff_z, bytes), 0);
    }
    ck_assert_msg(ce[0] == ce[1], "ce %.17g vs %.17g", ce[0], ce[1]);
    ck_assert_msg(kl[0] == kl[1], "kl %.17g vs %.17g", kl[0], kl[1]);
    ck_assert(ce[0] > 0.0 && kl[0] > 0.0);
    dg_loss_ce_free(&l);
    dnnl_memory_destroy(m);
    dg_free(z), dg_free(t), dg_free(label), dg_free(g1);
}
END_TEST

/* docs/algorithms.md §15.7: tau = 5, teacher (5 ln 3, 0), student (0, 0). */
START_TEST(kl_toy_matches_spec) {
    int64_t dims[2] = {1, 2};
    float z[2] = {0.f, 0.f};
    const float teacher[2] = {(float)(5.0 * log(3.0)), 0.f};
    int32_t ignore[1] = {255};
    dnnl_memory_t m = make_plain(&ctx, z, 2, dims);
    dg_loss_ce l;
    dg_loss_ce_cfg cfg = {.scale = 1.f};
    dg_loss_ce_init(&l, &ctx, m, &cfg);
    const double lambdas[2] = {1.0, 0.3};
    const double want_loss[2] = {3.2703009, 0.9810903};
    const double want_grad[2][2] = {{-1.25, 1.25}, {-0.375, 0.375}};
    for (int i = 0; i < 2; i++) {
        /* CE with every label ignored: zero gradient for the term to add to. */
        ck_assert(dg_loss_ce_compute(&l, &ctx, ignore) == 0.0);
        dg_loss_view s = dg_loss_ce_view(&l);
        double got = dg_loss_kl_add(&s, teacher, NULL, 5.0, lambdas[i]);
        /* "Close" as docs/algorithms.md §14; the f32 teacher logit 5 ln 3 alone
         * moves the loss by about 1e-7. */
        DG_ASSERT_CLOSE64(&got, &want_loss[i], 1, 1e-6, 1e-6);
        if (i == 0) {
            double kl = got / 25.0, want_kl = 0.1308120;
            DG_ASSERT_CLOSE64(&kl, &want_kl, 1, 1e-7, 1e-6);
        }
        DG_ASSERT_CLOSE(s.diff_z, want_grad[i], 2, 1e-6, 1e-6);
    }
    dg_loss_ce_free(&l);
    dnnl_memory_destroy(m);
}
END_TEST

typedef struct kl_case {
    int ndims;
    int64_t dims[4];
    dnnl_format_tag_t tag;
    bool use_label;
    double ignore_frac, tau, lambda;
} kl_case;

static const kl_case kl_cases[] = {
    {4, {2, 19, 7, 9}, dnnl_nChw16c, true, 0.3, 5.0, 0.8},  /* MESA, segmentation */
    {4, {2, 19, 7, 9}, dnnl_nchw, true, 0.3, 1.0, 0.8},
    {2, {5, 10}, dnnl_nc, false, 0.0, 5.0, 0.3},             /* SAF, classification */
    {4, {1, 13, 3, 70}, dnnl_nhwc, true, 0.2, 2.0, 1.0},
};

START_TEST(kl_matches_reference_and_adds_to_ce_gradient) {
    const kl_case *tc = &kl_cases[_i];
    const int64_t n = tc->dims[0], c = tc->dims[1];
    const int64_t p = tc->ndims == 4 ? tc->dims[2] * tc->dims[3] : 1;
    const size_t nz = (size_t)(n * c * p), nl = (size_t)(n * p);
    float *z = dg_xmalloc(nz * sizeof(float)), *t = dg_xmalloc(nz * sizeof(float));
    float *got = dg_xmalloc(nz * sizeof(float));
    int32_t *label = dg_xmalloc(nl * sizeof(int32_t));
    fill_uniform(z, nz, 110 + (uint64_t)_i, -8.f, 8.f);
    fill_uniform(t, nz, 120 + (uint64_t)_i, -8.f, 8.f);
    fill_labels(label, nl, 130 + (uint64_t)_i, c, tc->ignore_frac);

    dnnl_memory_t m = make_tagged(&ctx, z, tc->ndims, tc->dims, tc->tag);
    dg_loss_ce l;
    dg_loss_ce_cfg cfg = {.scale = 1.f};
    dg_loss_ce_init(&l, &ctx, m, &cfg);
    dg_loss_ce_compute(&l, &ctx, label);
    dg_loss_view s = dg_loss_ce_view(&l);
    double kl = dg_loss_kl_add(&s, t, tc->use_label ? s.label : NULL, tc->tau, tc->lambda);

    double *z64 = dup_double(z, nz), *t64 = dup_double(t, nz);
    double *g_ce = dg_xmalloc(nz * sizeof(double)), *g_kl = dg_xmalloc(nz * sizeof(double));
    ref_ce(n, c, p, z64, label, NULL, 1.0, g_ce);
    double want = ref_kl(n, c, p, t64, z64, tc->use_label ? label : NULL, tc->tau, tc->lambda,
            g_kl);
    DG_ASSERT_CLOSE64(&kl, &want, 1, 1e-12, 1e-9);
    for (size_t i = 0; i < nz; i++) g_ce[i] += g_kl[i];
    read_plain(&ctx, l.diff, got);
    DG_ASSERT_CLOSE(got, g_ce, nz, 1e-8, 1e-4);
    assert_padding_zero(&s.v, s.diff_z);

    dg_loss_ce_free(&l);
    dnnl_memory_destroy(m);
    dg_free(z), dg_free(t), dg_free(got), dg_free(label), dg_free(z64), dg_free(t64);
    dg_free(g_ce), dg_free(g_kl);
}
END_TEST

START_TEST(kl_reference_matches_finite_differences) {
    const int32_t label[6] = {1, 255, 3, 0, 2, 1};
    fd_ctx f = {.n = 2, .c = 4, .p = 3, .label = label, .tau = 2.0, .lambda = 0.7, .kl = true};
    float tmp[24];
    double z[24], t[24], g[24], fd[24];
    fill_uniform(tmp, 24, 140, -3.f, 3.f);
    to_double(z, tmp, 24);
    fill_uniform(tmp, 24, 141, -3.f, 3.f);
    to_double(t, tmp, 24);
    f.teacher = t;
    for (int masked = 0; masked < 2; masked++) {
        f.label = masked ? label : NULL;
        ref_kl(2, 4, 3, t, z, f.label, 2.0, 0.7, g);
        fd_gradient(loss_of, &f, z, 24, fd);
        DG_ASSERT_CLOSE64(g, fd, 24, 1e-8, 1e-6);
    }
}
END_TEST

START_TEST(kl_is_zero_for_equal_logits_and_ignored_units) {
    int64_t dims[4] = {2, 19, 3, 5};
    const size_t nz = 570, nl = 30;
    float z[570];
    int32_t label[30], ignore[30];
    fill_uniform(z, nz, 150, -5.f, 5.f);
    fill_labels(label, nl, 151, 19, 0.0);
    for (size_t i = 0; i < nl; i++) ignore[i] = 255;
    dnnl_memory_t m = make_plain(&ctx, z, 4, dims);
    dg_loss_ce l;
    dg_loss_ce_cfg cfg = {.scale = 1.f};
    dg_loss_ce_init(&l, &ctx, m, &cfg);
    dg_loss_ce_compute(&l, &ctx, label);
    dg_loss_view s = dg_loss_ce_view(&l);
    float before[570];
    memcpy(before, s.diff_z, sizeof(before));
    /* Teacher == student: KL and its gradient vanish exactly. */
    ck_assert(dg_loss_kl_add(&s, z, label, 5.0, 0.8) == 0.0);
    ck_assert_int_eq(memcmp(before, s.diff_z, sizeof(before)), 0);
    /* Every unit ignored: nothing selected, nothing added. */
    float t[570];
    fill_uniform(t, nz, 152, -5.f, 5.f);
    ck_assert(dg_loss_kl_add(&s, t, ignore, 5.0, 0.8) == 0.0);
    ck_assert_int_eq(memcmp(before, s.diff_z, sizeof(before)), 0);
    /* ... and a different teacher does change it (the checks above can fail). */
    ck_assert(dg_loss_kl_add(&s, t, label, 5.0, 0.8) > 0.0);
    ck_assert_int_ne(memcmp(before, s.diff_z, sizeof(before)), 0);
    dg_loss_ce_free(&l);
    dnnl_memory_destroy(m);
}
END_TEST

START_TEST(loss_second_compute_allocates_nothing) {
    int64_t dims[4] = {2, 19, 5, 6};
    float z[1140], t[1140];
    int32_t label[60];
    fill_uniform(z, 1140, 160, -3.f, 3.f);
    fill_uniform(t, 1140, 161, -3.f, 3.f);
    fill_labels(label, 60, 162, 19, 0.3);
    dnnl_memory_t m = make_tagged(&ctx, z, 4, dims, dnnl_NChw16n16c); /* ported */
    float cw[19];
    fill_uniform(cw, 19, 163, 0.5f, 2.f);
    dg_loss_ce l;
    dg_loss_ce_cfg cfg = {.class_weights = cw, .scale = 0.4f};
    dg_loss_ce_init(&l, &ctx, m, &cfg);
    double first = dg_loss_ce_compute(&l, &ctx, label);
    const alloc_mark mark = alloc_mark_now();
    for (int step = 0; step < 2; step++) {
        double again = dg_loss_ce_compute(&l, &ctx, label);
        ck_assert(again == first);
        dg_loss_view s = dg_loss_ce_view(&l);
        dg_loss_kl_add(&s, t, s.label, 5.0, 0.8);
    }
    assert_nothing_allocated_since(mark);
    dg_loss_ce_free(&l);
    dnnl_memory_destroy(m);
}
END_TEST

START_TEST(loss_free_is_safe_on_zeroed_struct) {
    dg_loss_ce l;
    memset(&l, 0, sizeof(l));
    dg_loss_ce_free(&l);
    ck_assert_ptr_null(l.diff);
}
END_TEST

Suite *loss_suite(void) {
    Suite *s = suite_create("loss");
    TCase *tc = tcase_create("numerics");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, ce_matches_reference, 0, (int)DG_ARRAY_LEN(ce_cases));
    tcase_add_test(tc, ce_reference_matches_finite_differences);
    tcase_add_test(tc, ce_all_ignored_gives_zero_loss_and_gradient);
    dg_tcase_add_abort_test(tc, ce_label_out_of_range_aborts);
    tcase_add_test(tc, loss_thread_count_does_not_change_result);
    tcase_add_test(tc, kl_toy_matches_spec);
    tcase_add_loop_test(tc, kl_matches_reference_and_adds_to_ce_gradient, 0,
            (int)DG_ARRAY_LEN(kl_cases));
    tcase_add_test(tc, kl_reference_matches_finite_differences);
    tcase_add_test(tc, kl_is_zero_for_equal_logits_and_ignored_units);
    tcase_add_test(tc, loss_second_compute_allocates_nothing);
    tcase_add_test(tc, loss_free_is_safe_on_zeroed_struct);
    suite_add_tcase(s, tc);
    return s;
}
