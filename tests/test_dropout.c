/* tests/test_dropout.c -- element and channel dropout: eval identity, keep
 * rates, exact scaling, the documented counter-based mask, backward with the
 * forward's mask, layout and thread-count independence, padded channels.
 *
 * Shapes: N batch, C channels, H height, W width. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "common.h"
#include "nets/core/dropout.h"

static dg_ctx ctx;
static void setup(void) { dg_ctx_init(&ctx); }
static void teardown(void) { dg_ctx_free(&ctx); }

static size_t numel(const int64_t d[4]) { return (size_t)(d[0] * d[1] * d[2] * d[3]); }

static dg_pass train_pass(uint64_t seed, uint64_t counter) {
    dg_pass p;
    memset(&p, 0, sizeof(p));
    p.train = true;
    p.seed = seed;
    p.counter = counter;
    return p;
}

/* Runs one forward of a fresh layer on x (nchw data arriving in `tag`) and
 * returns dst in nchw order in out. */
static void run_forward(const float *x, const int64_t dims[4], dnnl_format_tag_t tag,
        const dg_dropout_cfg *cfg, const dg_pass *p, float *out) {
    dnnl_memory_t m = make_tagged(&ctx, x, 4, dims, tag);
    dg_dropout l;
    dg_dropout_init(&l, &ctx, m, cfg);
    dg_dropout_forward(&l, &ctx, p);
    read_plain(&ctx, l.dst, out);
    dg_dropout_free(&l);
    dnnl_memory_destroy(m);
}

START_TEST(dropout_eval_is_identity) {
    int64_t dims[4] = {2, 19, 7, 9};
    size_t n = numel(dims);
    float *x = dg_xmalloc(n * sizeof(float)), *got = dg_xmalloc(n * sizeof(float));
    double *exp = dg_xmalloc(n * sizeof(double));
    fill_uniform(x, n, 11, -2.f, 2.f);
    to_double(exp, x, n);
    dg_dropout_mode modes[2] = {DG_DROPOUT_ELEMENT, DG_DROPOUT_CHANNEL};
    for (int i = 0; i < 2; i++) {
        dg_dropout_cfg cfg = {.p = 0.5f, .mode = modes[i], .ordinal = 1};
        dg_pass p = train_pass(3, 4);
        p.train = false;
        dnnl_memory_t m = make_tagged(&ctx, x, 4, dims, dnnl_nChw16c);
        dg_dropout l;
        dg_dropout_init(&l, &ctx, m, &cfg);
        dg_dropout_forward(&l, &ctx, &p);
        read_plain(&ctx, l.dst, got);
        DG_ASSERT_CLOSE(got, exp, n, 0.0, 0.0);
        dg_dropout_backward(&l, &ctx, &p, m); /* identity backward too */
        read_plain(&ctx, l.diff_src, got);
        DG_ASSERT_CLOSE(got, exp, n, 0.0, 0.0);
        dg_dropout_free(&l);
        dnnl_memory_destroy(m);
    }
    dg_free(x), dg_free(got), dg_free(exp);
}
END_TEST

static const float keep_probs[] = {0.1f, 0.5f};

START_TEST(dropout_train_keep_rate_and_scaling) {
    const float pr = keep_probs[_i];
    int64_t dims[4] = {4, 25, 31, 33}; /* 102,300 elements */
    size_t n = numel(dims);
    float *x = dg_xmalloc(n * sizeof(float)), *got = dg_xmalloc(n * sizeof(float));
    fill_away_from_zero(x, n, 12, -3.f, 3.f, 0.01f);
    dg_dropout_cfg cfg = {.p = pr, .mode = DG_DROPOUT_ELEMENT, .ordinal = 2};
    dg_pass p = train_pass(99, 0);
    run_forward(x, dims, dnnl_nchw, &cfg, &p, got);

    const float scale = (float)(1.0 / (1.0 - (double)pr));
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (got[i] == 0.f) continue;
        kept++;
        ck_assert_msg(got[i] == x[i] * scale, "[%zu] got %.9g want %.9g", i, (double)got[i],
                (double)(x[i] * scale));
        double exact = (double)x[i] / (1.0 - (double)pr);
        ck_assert_msg(fabs(got[i] - exact) <= 1.2e-7 * fabs(exact), "[%zu] %.9g vs %.9g", i,
                (double)got[i], exact);
    }
    double mean = (double)n * (1.0 - pr), sd = sqrt((double)n * pr * (1.0 - pr));
    ck_assert_msg(fabs((double)kept - mean) <= 5.0 * sd, "kept %zu of %zu, expected %.0f +- %.0f",
            kept, n, mean, 5.0 * sd);
    dg_free(x), dg_free(got);
}
END_TEST

START_TEST(dropout_mask_is_the_documented_stream) {
    int64_t dims[4] = {2, 5, 3, 4};
    size_t n = numel(dims);
    float x[120], got[120];
    fill_away_from_zero(x, n, 13, -1.f, 1.f, 0.05f);
    const uint64_t seed = 42, counter = 3;
    dg_dropout_cfg cfg = {.p = 0.3f, .mode = DG_DROPOUT_ELEMENT, .ordinal = 5};
    dg_pass p = train_pass(seed, counter);
    run_forward(x, dims, dnnl_nChw16c, &cfg, &p, got);
    dg_rng r;
    dg_rng_init(&r, seed, DG_RNG_DROPOUT, 5);
    size_t kept = 0;
    for (size_t k = 0; k < n; k++) {
        double u = (double)(dg_rng_peek(&r, counter * n + k) >> 11) * 0x1.0p-53;
        bool keep = u >= (double)cfg.p;
        kept += keep;
        ck_assert_msg((got[k] != 0.f) == keep, "element %zu: got %g, keep %d", k,
                (double)got[k], keep);
    }
    ck_assert(kept > 0 && kept < n);

    /* Channel mode: draw n*C + c of the same stream decides a plane. */
    cfg.mode = DG_DROPOUT_CHANNEL;
    run_forward(x, dims, dnnl_nchw, &cfg, &p, got);
    const size_t planes = 10, hw = 12;
    for (size_t k = 0; k < planes; k++) {
        double u = (double)(dg_rng_peek(&r, counter * planes + k) >> 11) * 0x1.0p-53;
        bool keep = u >= (double)cfg.p;
        for (size_t j = 0; j < hw; j++)
            ck_assert_msg((got[k * hw + j] != 0.f) == keep, "plane %zu", k);
    }
}
END_TEST

START_TEST(dropout_mask_follows_seed_counter_and_ordinal) {
    int64_t dims[4] = {2, 16, 16, 16};
    size_t n = numel(dims);
    float *x = dg_xmalloc(n * sizeof(float));
    float *a = dg_xmalloc(n * sizeof(float)), *b = dg_xmalloc(n * sizeof(float));
    fill_away_from_zero(x, n, 14, -1.f, 1.f, 0.01f);
    dg_dropout_cfg cfg = {.p = 0.5f, .mode = DG_DROPOUT_ELEMENT, .ordinal = 0};
    dg_pass p = train_pass(7, 10);
    run_forward(x, dims, dnnl_nchw, &cfg, &p, a);
    run_forward(x, dims, dnnl_nchw, &cfg, &p, b);
    ck_assert_int_eq(memcmp(a, b, n * sizeof(float)), 0);

    /* Different counter, seed or ordinal: about half the mask changes. */
    for (int variant = 0; variant < 3; variant++) {
        dg_pass q = p;
        dg_dropout_cfg c2 = cfg;
        if (variant == 0) q.counter = 11;
        if (variant == 1) q.seed = 8;
        if (variant == 2) c2.ordinal = 1;
        run_forward(x, dims, dnnl_nchw, &c2, &q, b);
        size_t diff = 0;
        for (size_t i = 0; i < n; i++) diff += (a[i] == 0.f) != (b[i] == 0.f);
        ck_assert_msg(diff > 0.45 * (double)n && diff < 0.55 * (double)n,
                "variant %d: %zu of %zu mask values differ", variant, diff, n);
    }
    dg_free(x), dg_free(a), dg_free(b);
}
END_TEST

START_TEST(dropout_channel_mode_masks_whole_planes) {
    int64_t dims[4] = {3, 40, 5, 6};
    size_t n = numel(dims), hw = 30, planes = 120;
    float *x = dg_xmalloc(n * sizeof(float)), *got = dg_xmalloc(n * sizeof(float));
    fill_away_from_zero(x, n, 15, -1.f, 1.f, 0.01f);
    dg_dropout_cfg cfg = {.p = 0.5f, .mode = DG_DROPOUT_CHANNEL, .ordinal = 3};
    dg_pass p = train_pass(1, 2);
    run_forward(x, dims, dnnl_nChw16c, &cfg, &p, got);
    size_t kept_planes = 0;
    for (size_t k = 0; k < planes; k++) {
        bool keep = got[k * hw] != 0.f;
        kept_planes += keep;
        for (size_t j = 0; j < hw; j++) {
            size_t i = k * hw + j;
            float want = keep ? x[i] * 2.f : 0.f;
            ck_assert_msg(got[i] == want, "plane %zu [%zu]: got %g want %g", k, j,
                    (double)got[i], (double)want);
        }
    }
    /* 120 planes at p = 0.5: 60 +- 5 sd (sd 5.5). */
    ck_assert_msg(kept_planes > 32 && kept_planes < 88, "kept %zu planes", kept_planes);
    dg_free(x), dg_free(got);
}
END_TEST

START_TEST(dropout_backward_uses_forward_mask) {
    int64_t dims[4] = {2, 19, 6, 5};
    size_t n = numel(dims);
    float *x = dg_xmalloc(n * sizeof(float)), *dd = dg_xmalloc(n * sizeof(float));
    float *y = dg_xmalloc(n * sizeof(float)), *g = dg_xmalloc(n * sizeof(float));
    double *exp = dg_xmalloc(n * sizeof(double));
    fill_away_from_zero(x, n, 16, -1.f, 1.f, 0.01f);
    fill_away_from_zero(dd, n, 17, -1.f, 1.f, 0.01f);
    dnnl_memory_t src = make_tagged(&ctx, x, 4, dims, dnnl_nChw16c);
    dnnl_memory_t ddst = make_plain(&ctx, dd, 4, dims); /* another layout than dst */
    dg_dropout_mode modes[2] = {DG_DROPOUT_ELEMENT, DG_DROPOUT_CHANNEL};
    for (int mi = 0; mi < 2; mi++) {
        const float pr = mi == 0 ? 0.1f : 0.3f; /* 38 planes: some are dropped */
        dg_dropout_cfg cfg = {.p = pr, .mode = modes[mi], .ordinal = 4};
        const float scale = (float)(1.0 / (1.0 - (double)pr));
        dg_dropout l;
        dg_dropout_init(&l, &ctx, src, &cfg);
        for (uint64_t counter = 0; counter < 3; counter++) {
            dg_pass p = train_pass(5, counter);
            dg_dropout_forward(&l, &ctx, &p);
            read_plain(&ctx, l.dst, y);
            p.counter = 1000; /* backward ignores the pass: the mask is the forward's */
            dg_dropout_backward(&l, &ctx, &p, ddst);
            read_plain(&ctx, l.diff_src, g);
            size_t dropped = 0;
            for (size_t i = 0; i < n; i++) {
                exp[i] = y[i] != 0.f ? (double)(dd[i] * scale) : 0.0;
                dropped += y[i] == 0.f;
            }
            ck_assert_uint_gt(dropped, 0);
            DG_ASSERT_CLOSE(g, exp, n, 0.0, 0.0);
        }
        dg_dropout_free(&l);
    }
    dnnl_memory_destroy(src);
    dnnl_memory_destroy(ddst);
    dg_free(x), dg_free(dd), dg_free(y), dg_free(g), dg_free(exp);
}
END_TEST

START_TEST(dropout_mask_is_layout_independent) {
    int64_t dims[4] = {2, 21, 9, 7};
    size_t n = numel(dims);
    float *x = dg_xmalloc(n * sizeof(float));
    float *a = dg_xmalloc(n * sizeof(float)), *b = dg_xmalloc(n * sizeof(float));
    fill_away_from_zero(x, n, 18, -1.f, 1.f, 0.01f);
    dg_dropout_mode modes[2] = {DG_DROPOUT_ELEMENT, DG_DROPOUT_CHANNEL};
    /* nChw16n16c has two inner blocks: the layer ports it to nchw. */
    dnnl_format_tag_t tags[3] = {dnnl_nChw16c, dnnl_nhwc, dnnl_NChw16n16c};
    for (int mi = 0; mi < 2; mi++) {
        dg_dropout_cfg cfg = {.p = 0.5f, .mode = modes[mi], .ordinal = 6};
        dg_pass p = train_pass(21, 1);
        run_forward(x, dims, dnnl_nchw, &cfg, &p, a);
        for (int t = 0; t < 3; t++) {
            run_forward(x, dims, tags[t], &cfg, &p, b);
            ck_assert_msg(memcmp(a, b, n * sizeof(float)) == 0, "mode %d tag %d", mi, t);
        }
    }
    dg_free(x), dg_free(a), dg_free(b);
}
END_TEST

/* A replica of a data-parallel job holding samples {3, 0} of a batch of 4
 * (dg_replicas.pos) drops exactly what the whole batch drops there, in
 * both modes; an all-kept or all-dropped result could not tell. */
START_TEST(dropout_replica_masks_are_the_whole_batch_masks_of_its_samples) {
    int64_t dims[4] = {4, 5, 3, 2}, half[4] = {2, 5, 3, 2};
    const size_t n = numel(dims), per = n / 4;
    float *x = dg_xmalloc(n * sizeof(float)), *xs = dg_xmalloc(2 * per * sizeof(float));
    float *a = dg_xmalloc(n * sizeof(float)), *b = dg_xmalloc(2 * per * sizeof(float));
    fill_away_from_zero(x, n, 30, -1.f, 1.f, 0.01f);
    const int64_t pos[2] = {3, 0};
    for (int i = 0; i < 2; i++) memcpy(xs + i * per, x + pos[i] * (int64_t)per, per * sizeof(float));
    dg_dropout_mode modes[2] = {DG_DROPOUT_ELEMENT, DG_DROPOUT_CHANNEL};
    for (int mi = 0; mi < 2; mi++) {
        dg_dropout_cfg cfg = {.p = 0.5f, .mode = modes[mi], .ordinal = 2};
        dg_pass p = train_pass(31, 5);
        run_forward(x, dims, dnnl_nchw, &cfg, &p, a);
        dg_replicas r = {.n = 2, .batch = 4, .pos = pos};
        p.replicas = &r;
        run_forward(xs, half, dnnl_nChw8c, &cfg, &p, b);
        size_t zeros = 0;
        for (int i = 0; i < 2; i++) {
            ck_assert_msg(!memcmp(b + i * per, a + pos[i] * (int64_t)per, per * sizeof(float)),
                    "mode %d sample %d", mi, i);
            for (size_t k = 0; k < per; k++) zeros += b[i * per + k] == 0.f;
        }
        ck_assert(zeros > 0 && zeros < 2 * per);
    }
    dg_free(x), dg_free(xs), dg_free(a), dg_free(b);
}
END_TEST

START_TEST(dropout_unsupported_layout_uses_nchw) {
    int64_t dims[4] = {16, 16, 3, 3};
    float x[2304];
    fill_uniform(x, 2304, 19, -1.f, 1.f);
    dnnl_memory_t m = make_tagged(&ctx, x, 4, dims, dnnl_NChw16n16c);
    dg_dropout l;
    dg_dropout_cfg cfg = {.p = 0.5f, .mode = DG_DROPOUT_ELEMENT};
    dg_dropout_init(&l, &ctx, m, &cfg);
    dnnl_memory_desc_t nchw = dg_md_plain(4, dims, dnnl_nchw);
    ck_assert(dnnl_memory_desc_equal(dg_mem_md(l.dst), &nchw));
    ck_assert(dnnl_memory_desc_equal(dg_mem_md(l.diff_src), &nchw));
    dg_dropout_free(&l);
    dnnl_memory_destroy(m);
}
END_TEST

START_TEST(dropout_thread_count_does_not_change_output) {
    int64_t dims[4] = {3, 37, 19, 23};
    size_t n = numel(dims);
    float *x = dg_xmalloc(n * sizeof(float));
    float *a = dg_xmalloc(n * sizeof(float)), *b = dg_xmalloc(n * sizeof(float));
    fill_away_from_zero(x, n, 20, -1.f, 1.f, 0.01f);
    dg_dropout_mode modes[2] = {DG_DROPOUT_ELEMENT, DG_DROPOUT_CHANNEL};
    for (int mi = 0; mi < 2; mi++) {
        dg_dropout_cfg cfg = {.p = 0.1f, .mode = modes[mi], .ordinal = 7};
        dg_pass p = train_pass(31, 2);
        omp_set_num_threads(1);
        run_forward(x, dims, dnnl_nChw16c, &cfg, &p, a);
        omp_set_num_threads(2);
        run_forward(x, dims, dnnl_nChw16c, &cfg, &p, b);
        ck_assert_int_eq(memcmp(a, b, n * sizeof(float)), 0);
        size_t zeros = 0;
        for (size_t i = 0; i < n; i++) zeros += a[i] == 0.f;
        ck_assert(zeros > 0 && zeros < n);
    }
    dg_free(x), dg_free(a), dg_free(b);
}
END_TEST

START_TEST(dropout_keeps_padded_channels_zero) {
    int64_t dims[4] = {2, 19, 4, 3}; /* channels 19..31 are padding in nChw16c */
    size_t n = numel(dims);
    float x[456];
    fill_uniform(x, n, 22, -1.f, 1.f);
    dnnl_memory_t src = make_tagged(&ctx, x, 4, dims, dnnl_nChw16c);
    dg_chw sv, dv;
    ck_assert(dg_chw_from_md(&sv, dg_mem_md(src)));
    ck_assert_int_eq(sv.cb, 16);
    float *sp = dg_mem_ptr(src);
    for (int64_t i = 0; i < 2; i++)
        for (int64_t c = 19; c < 32; c++)
            for (int64_t h = 0; h < 4; h++)
                for (int64_t w = 0; w < 3; w++) sp[dg_chw_at(&sv, i, c, h, w)] = 7.f;
    dg_dropout l;
    dg_dropout_cfg cfg = {.p = 0.1f, .mode = DG_DROPOUT_ELEMENT};
    dg_dropout_init(&l, &ctx, src, &cfg);
    ck_assert(dg_chw_from_md(&dv, dg_mem_md(l.dst)));
    ck_assert_int_eq(dv.cb, 16);
    for (int train = 0; train < 2; train++) {
        dg_pass p = train_pass(1, 0);
        p.train = train;
        dg_dropout_forward(&l, &ctx, &p);
        dg_dropout_backward(&l, &ctx, &p, src);
        DG_DNNL(dnnl_stream_wait(ctx.stream));
        const float *d = dg_mem_ptr(l.dst), *g = dg_mem_ptr(l.diff_src);
        size_t logical_nonzero = 0;
        for (int64_t i = 0; i < 2; i++)
            for (int64_t c = 0; c < 32; c++)
                for (int64_t h = 0; h < 4; h++)
                    for (int64_t w = 0; w < 3; w++) {
                        int64_t o = dg_chw_at(&dv, i, c, h, w);
                        if (c < 19) {
                            logical_nonzero += d[o] != 0.f;
                            continue;
                        }
                        ck_assert_msg(d[o] == 0.f && g[o] == 0.f, "padding c %lld: %g %g",
                                (long long)c, (double)d[o], (double)g[o]);
                    }
        ck_assert_uint_gt(logical_nonzero, 0);
    }
    dg_dropout_free(&l);
    dnnl_memory_destroy(src);
}
END_TEST

START_TEST(dropout_second_step_allocates_nothing) {
    int64_t dims[4] = {2, 19, 5, 4};
    float x[760], dd[760];
    fill_uniform(x, 760, 23, -1.f, 1.f);
    fill_uniform(dd, 760, 24, -1.f, 1.f);
    dnnl_memory_t src = make_tagged(&ctx, x, 4, dims, dnnl_NChw16n16c); /* ported */
    dnnl_memory_t ddst = make_plain(&ctx, dd, 4, dims);
    dg_dropout l;
    dg_dropout_cfg cfg = {.p = 0.1f, .mode = DG_DROPOUT_CHANNEL};
    dg_dropout_init(&l, &ctx, src, &cfg);
    dg_pass p = train_pass(1, 0);
    dg_dropout_forward(&l, &ctx, &p);
    dg_dropout_backward(&l, &ctx, &p, ddst);
    const alloc_mark mark = alloc_mark_now();
    for (int step = 1; step < 3; step++) {
        p.counter = (uint64_t)step;
        p.train = step == 1;
        dg_dropout_forward(&l, &ctx, &p);
        dg_dropout_backward(&l, &ctx, &p, ddst);
    }
    assert_nothing_allocated_since(mark);
    dg_dropout_free(&l);
    dnnl_memory_destroy(src);
    dnnl_memory_destroy(ddst);
}
END_TEST

START_TEST(dropout_free_is_safe_on_zeroed_struct) {
    dg_dropout l;
    memset(&l, 0, sizeof(l));
    dg_dropout_free(&l);
    ck_assert_ptr_null(l.mask);
}
END_TEST

Suite *dropout_suite(void) {
    Suite *s = suite_create("dropout");
    TCase *tc = tcase_create("numerics");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, dropout_eval_is_identity);
    tcase_add_loop_test(tc, dropout_train_keep_rate_and_scaling, 0,
            (int)DG_ARRAY_LEN(keep_probs));
    tcase_add_test(tc, dropout_mask_is_the_documented_stream);
    tcase_add_test(tc, dropout_mask_follows_seed_counter_and_ordinal);
    tcase_add_test(tc, dropout_channel_mode_masks_whole_planes);
    tcase_add_test(tc, dropout_backward_uses_forward_mask);
    tcase_add_test(tc, dropout_mask_is_layout_independent);
    tcase_add_test(tc, dropout_replica_masks_are_the_whole_batch_masks_of_its_samples);
    tcase_add_test(tc, dropout_unsupported_layout_uses_nchw);
    tcase_add_test(tc, dropout_thread_count_does_not_change_output);
    tcase_add_test(tc, dropout_keeps_padded_channels_zero);
    tcase_add_test(tc, dropout_second_step_allocates_nothing);
    tcase_add_test(tc, dropout_free_is_safe_on_zeroed_struct);
    suite_add_tcase(s, tc);
    return s;
}
