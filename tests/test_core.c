/* tests/test_core.c -- the engine core: SplitMix64 streams (docs/datasets.md
 * §12.2), the parameter store and its initialisers, ports, the shared
 * scratchpad and the checking macros. */
#include <math.h>
#include <signal.h>
#include <string.h>

#include "common.h"
#include "nets/core/layer.h"

static dg_ctx ctx;
static void setup(void) { dg_ctx_init(&ctx); }
static void teardown(void) { dg_ctx_free(&ctx); }

START_TEST(rng_matches_reference_splitmix64_vectors) {
    /* Published SplitMix64 outputs (Vigna's splitmix64.c): seed 1234567. */
    static const uint64_t want[5] = {
        UINT64_C(6457827717110365317), UINT64_C(3203168211198807973),
        UINT64_C(9817491932198370423), UINT64_C(4593380528125082431),
        UINT64_C(16408922859458223821),
    };
    ck_assert_uint_eq(dg_rng_mix(0), UINT64_C(0xE220A8397B1DCDAF));
    dg_rng r = {.state = 1234567};
    for (int i = 0; i < 5; i++) ck_assert_uint_eq(dg_rng_next(&r), want[i]);
}
END_TEST

START_TEST(rng_stream_init_and_peek_follow_the_registry) {
    dg_rng a, b;
    dg_rng_init(&a, 42, DG_RNG_INIT, 7);
    uint64_t s0 = dg_rng_mix(42 ^ dg_rng_mix(((uint64_t)DG_RNG_INIT << 32) | 7));
    ck_assert_uint_eq(a.state, s0);
    b = a;
    for (uint64_t k = 0; k < 100; k++) ck_assert_uint_eq(dg_rng_peek(&a, k), dg_rng_next(&b));
    dg_rng c;
    dg_rng_init(&c, 42, DG_RNG_INIT, 8);
    ck_assert_uint_ne(c.state, a.state);
}
END_TEST

START_TEST(rng_derived_draws_have_the_right_ranges_and_moments) {
    dg_rng r;
    dg_rng_init(&r, 1, 0, 0);
    double s = 0, s2 = 0;
    int counts[7] = {0};
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double u = dg_rng_uniform(&r);
        ck_assert(u >= 0.0 && u < 1.0);
        counts[dg_rng_below(&r, 7)]++;
        double z = dg_rng_normal(&r);
        s += z, s2 += z * z;
    }
    for (int k = 0; k < 7; k++) ck_assert_msg(fabs(counts[k] / (double)n - 1.0 / 7) < 0.005, "%d", k);
    ck_assert_msg(fabs(s / n) < 0.01, "normal mean %g", s / n);
    ck_assert_msg(fabs(s2 / n - 1.0) < 0.02, "normal var %g", s2 / n);
    /* A shuffle is a permutation, and the same stream gives the same one. */
    int64_t a[50], b[50];
    for (int i = 0; i < 50; i++) a[i] = b[i] = i;
    dg_rng r1, r2;
    dg_rng_init(&r1, 9, DG_RNG_SAMPLER, 0);
    r2 = r1;
    dg_rng_shuffle_i64(&r1, a, 50);
    dg_rng_shuffle_i64(&r2, b, 50);
    int seen[50] = {0}, moved = 0;
    for (int i = 0; i < 50; i++) {
        ck_assert_int_eq(a[i], b[i]);
        seen[a[i]]++;
        moved += a[i] != i;
    }
    for (int i = 0; i < 50; i++) ck_assert_int_eq(seen[i], 1);
    ck_assert_int_gt(moved, 40);
}
END_TEST

START_TEST(rng_shuffle_follows_the_spec_loop) {
    /* docs/datasets.md §12.2: for i = n-1 down to 1: j = below(i+1), swap. */
    int64_t a[5] = {0, 1, 2, 3, 4}, e[5] = {0, 1, 2, 3, 4};
    dg_rng r, q;
    dg_rng_init(&r, 3, DG_RNG_FMNIST_POOL, 0);
    q = r;
    dg_rng_shuffle_i64(&r, a, 5);
    for (int i = 4; i >= 1; i--) {
        uint64_t n = (uint64_t)i + 1, t = (0 - n) % n, x;
        do x = dg_rng_next(&q); while (x < t);
        int j = (int)(x % n);
        int64_t tmp = e[i];
        e[i] = e[j];
        e[j] = tmp;
    }
    for (int i = 0; i < 5; i++) ck_assert_int_eq(a[i], e[i]);
}
END_TEST

START_TEST(params_pack_tensors_contiguously_with_identical_grad_layout) {
    dg_param_set ps;
    dg_params_init(&ps);
    int64_t w[4] = {8, 3, 3, 3}, b[1] = {8}, l[2] = {10, 8};
    size_t o1 = dg_params_add(&ps, "conv.weight", 4, w, DG_PARAM_ASAM_SCALED, DG_INIT_NORMAL, 0.1f);
    size_t o2 = dg_params_add(&ps, "conv.bias", 1, b, DG_PARAM_NO_DECAY, DG_INIT_CONST, 0.f);
    size_t o3 = dg_params_add(&ps, "fc.weight", 2, l, DG_PARAM_ASAM_SCALED, DG_INIT_UNIFORM, 0.5f);
    size_t s1 = dg_params_add_stat(&ps, "bn.running_mean", 1, b, 0.f);
    size_t s2 = dg_params_add_stat(&ps, "bn.running_var", 1, b, 1.f);
    ck_assert_uint_eq(o1, 0);
    ck_assert_uint_eq(o2, 216);
    ck_assert_uint_eq(o3, 224);
    ck_assert_uint_eq(ps.d, 304);
    ck_assert_uint_eq(s1, 0);
    ck_assert_uint_eq(s2, 8);
    ck_assert_uint_eq(ps.n_stats, 16);
    ck_assert(!dg_params_is_allocated(&ps));
    dg_params_alloc(&ps);
    ck_assert_uint_eq((uintptr_t)ps.data % 64, 0);
    ck_assert_uint_eq((uintptr_t)ps.grad % 64, 0);
    dg_params_init_values(&ps, 5);
    const dg_param_tensor *t = dg_params_find(&ps, "conv.bias");
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(t->flags, DG_PARAM_NO_DECAY);
    ck_assert_ptr_null(dg_params_find(&ps, "conv.running_mean"));
    for (size_t i = 216; i < 224; i++) ck_assert_float_eq(ps.data[i], 0.f);
    for (size_t i = 224; i < 304; i++) ck_assert(fabsf(ps.data[i]) <= 0.5f);
    for (size_t i = 0; i < 8; i++) ck_assert_float_eq(ps.stats[i], 0.f);
    for (size_t i = 8; i < 16; i++) ck_assert_float_eq(ps.stats[i], 1.f);
    for (size_t i = 0; i < ps.d; i++) ck_assert_float_eq(ps.grad[i], 0.f);
    /* Tensor i draws from stream (seed, INIT, i): reproduce fc.weight. */
    dg_rng r;
    float e[80];
    dg_rng_init(&r, 5, DG_RNG_INIT, 2);
    dg_init_fill_uniform(e, 80, 0.5f, &r);
    ck_assert_mem_eq(e, ps.data + 224, sizeof(e));
    dg_params_free(&ps);
    dg_params_free(&ps); /* safe twice */
}
END_TEST

START_TEST(params_init_depends_on_seed_only) {
    dg_param_set a, b;
    int64_t w[2] = {64, 64};
    float first[4096];
    for (int k = 0; k < 3; k++) {
        dg_param_set *ps = k < 2 ? &a : &b;
        dg_params_init(ps);
        dg_params_add(ps, "w", 2, w, 0, DG_INIT_NORMAL, 1.f);
        dg_params_alloc(ps);
        dg_params_init_values(ps, k < 2 ? 1 : 2);
        if (k == 0) memcpy(first, ps->data, sizeof(first));
        if (k == 1) ck_assert_mem_eq(first, ps->data, sizeof(first));
        if (k == 2) ck_assert(memcmp(first, ps->data, sizeof(first)) != 0);
        dg_params_free(ps);
    }
}
END_TEST

START_TEST(init_values_follow_torch_formulas) {
    ck_assert_float_eq_tol(dg_init_kaiming_std(576), (float)sqrt(2.0 / 576), 1e-9f);
    ck_assert_float_eq_tol(dg_init_default_bound(128), (float)(1 / sqrt(128.0)), 1e-9f);
}
END_TEST

START_TEST(port_reorders_only_when_layouts_differ) {
    int64_t dims[4] = {2, 19, 5, 7};
    float x[2 * 19 * 35], y[2 * 19 * 35];
    fill_uniform(x, DG_ARRAY_LEN(x), 1, -1, 1);
    dnnl_memory_t plain = make_plain(&ctx, x, 4, dims);
    dnnl_memory_desc_t blocked = dg_md_plain(4, dims, dnnl_nChw16c);
    dg_port p;
    memset(&p, 0, sizeof(p));
    dg_port_bind_in(&p, &ctx, plain, dg_mem_md(plain));
    ck_assert_ptr_eq(p.mem, plain);
    ck_assert_ptr_null(p.buf);
    dg_port_bind_in(&p, &ctx, plain, &blocked);
    ck_assert_ptr_nonnull(p.buf);
    dg_dnnl_counts c0 = dg_dnnl_counts_now();
    dg_port_bind_in(&p, &ctx, plain, &blocked); /* same binding: nothing new */
    dg_dnnl_counts c1 = dg_dnnl_counts_now();
    ck_assert_uint_eq(c0.memories, c1.memories);
    ck_assert_uint_eq(c0.primitives, c1.primitives);
    dg_port_pull(&p, &ctx);
    read_plain(&ctx, p.mem, y);
    double e[2 * 19 * 35];
    to_double(e, x, DG_ARRAY_LEN(x));
    DG_ASSERT_CLOSE(y, e, DG_ARRAY_LEN(x), 0.0, 0.0);
    /* dg_chw addresses the blocked buffer the way oneDNN laid it out. */
    dg_chw v;
    ck_assert(dg_chw_from_md(&v, &blocked));
    ck_assert_int_eq(v.cb, 16);
    const float *b = dg_mem_ptr(p.mem);
    for (int64_t n = 0; n < 2; n++)
        for (int64_t c = 0; c < 19; c++)
            for (int64_t h = 0; h < 5; h++)
                for (int64_t w = 0; w < 7; w++)
                    ck_assert_float_eq(b[dg_chw_at(&v, n, c, h, w)],
                            x[((n * 19 + c) * 5 + h) * 7 + w]);
    dg_port_free(&p);
    dnnl_memory_destroy(plain);
}
END_TEST

START_TEST(chw_view_accepts_plain_and_channel_blocked_layouts_only) {
    int64_t dims[4] = {2, 3, 4, 5};
    dg_chw v;
    dnnl_memory_desc_t md = dg_md_plain(4, dims, dnnl_nhwc);
    ck_assert(dg_chw_from_md(&v, &md));
    ck_assert_int_eq(dg_chw_at(&v, 1, 2, 3, 4), ((1 * 4 + 3) * 5 + 4) * 3 + 2);
    md = dg_md_plain(4, dims, dnnl_NChw16n16c);
    ck_assert(!dg_chw_from_md(&v, &md));
    dnnl_memory_desc_t ok = dg_md_chw_compatible(&md);
    ck_assert(dg_chw_from_md(&v, &ok));
    ck_assert_int_eq(v.cb, 1);
}
END_TEST

START_TEST(scratchpad_is_shared_and_sized_for_the_largest_primitive) {
    ck_assert_uint_eq(ctx.scratch_size, 0);
    int64_t dims[4] = {1, 3, 33, 33};
    dnnl_memory_desc_t a = dg_md_plain(4, dims, dnnl_nchw);
    dnnl_memory_desc_t b = dg_md_plain(4, dims, dnnl_nChw8c);
    dnnl_primitive_desc_t pd;
    dnnl_primitive_attr_t attr = dg_attr_new();
    DG_DNNL(dnnl_reorder_primitive_desc_create(&pd, &a, ctx.engine, &b, ctx.engine, attr));
    dnnl_primitive_attr_destroy(attr);
    dg_prim p;
    dg_prim_init(&p, &ctx, pd);
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t want = smd ? dg_md_bytes(smd) : 0;
    ck_assert_uint_eq(ctx.scratch_size, want);
    dg_prim_free(&p);
    dnnl_primitive_desc_destroy(pd);
}
END_TEST

START_TEST(assert_aborts_with_file_and_line) { DG_ASSERT(1 + 1 == 3); }
END_TEST

START_TEST(failing_dnnl_call_aborts) {
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {-1};
    DG_DNNL(dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_f32, dnnl_a));
}
END_TEST

START_TEST(status_strings_name_every_status) {
    ck_assert_str_eq(dg_status_str(DG_STATUS_OK), "ok");
    ck_assert_str_eq(dg_status_str(DG_STATUS_ERR_IO), "io error");
    ck_assert_str_eq(dg_status_str(DG_STATUS_ERR_NUMERIC), "numeric error");
    ck_assert_str_eq(dg_status_str(DG_STATUS_ERR_MEMORY), "out of memory");
    ck_assert_str_eq(dg_status_str((dg_status)-99), "unknown status");
}
END_TEST

Suite *core_suite(void) {
    Suite *s = suite_create("core");
    TCase *pure = tcase_create("pure");
    tcase_add_test(pure, rng_matches_reference_splitmix64_vectors);
    tcase_add_test(pure, rng_stream_init_and_peek_follow_the_registry);
    tcase_add_test(pure, rng_derived_draws_have_the_right_ranges_and_moments);
    tcase_add_test(pure, rng_shuffle_follows_the_spec_loop);
    tcase_add_test(pure, params_pack_tensors_contiguously_with_identical_grad_layout);
    tcase_add_test(pure, params_init_depends_on_seed_only);
    tcase_add_test(pure, init_values_follow_torch_formulas);
    tcase_add_test(pure, status_strings_name_every_status);
    dg_tcase_add_abort_test(pure, assert_aborts_with_file_and_line);
    suite_add_tcase(s, pure);
    TCase *dnnl = tcase_create("dnnl");
    tcase_add_checked_fixture(dnnl, setup, teardown);
    tcase_set_timeout(dnnl, 30);
    tcase_add_test(dnnl, port_reorders_only_when_layouts_differ);
    tcase_add_test(dnnl, chw_view_accepts_plain_and_channel_blocked_layouts_only);
    tcase_add_test(dnnl, scratchpad_is_shared_and_sized_for_the_largest_primitive);
    dg_tcase_add_abort_test(dnnl, failing_dnnl_call_aborts);
    suite_add_tcase(s, dnnl);
    return s;
}
