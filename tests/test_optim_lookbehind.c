/* tests/test_optim_lookbehind.c -- Lookbehind-SAM and Lookbehind-ASAM
 * (optimizers/lookbehind.c) against docs/algorithms.md §9, §14 invariants 20,
 * 21, 24 and the §15.5 toy: k = 1 with static alpha = 1 equals SAM (ASAM)
 * bit for bit, the hand-worked chain points, fast and slow weights for
 * static and adaptive alpha, the adaptive-alpha helper values, per-tensor
 * alpha over tensors longer than one span, the closure call pattern and BN
 * flags (with and without ascent reuse), state save -> load -> continue bit
 * for bit, no allocation in a step, configuration errors.
 *
 * The closure is a weighted quadratic L(w) = 1/2 sum_i c_i (w_i - a_i)^2
 * (g = c (.) (w - a)), written in C. d = number of parameters. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "optim_toy.h"
#include "optimizers/dg_optim.h"
#include "optimizers/method_impl.h"

/* d = 15 over three tensors (scaled, unscaled no-decay, scaled) with random
 * w0, a, c. */
#define MIX_D 15
static float mix_a[MIX_D], mix_c[MIX_D], mix_w0[MIX_D];

static void make_mix(dg_param_set *ps) {
    static const size_t n[3] = {7, 3, 5};
    static const unsigned fl[3] = {DG_PARAM_ASAM_SCALED, DG_PARAM_NO_DECAY,
        DG_PARAM_ASAM_SCALED};
    toy_make_ps(ps, 3, n, fl);
    fill_uniform(mix_w0, MIX_D, 301, -1.f, 1.f);
    fill_uniform(mix_a, MIX_D, 302, -1.f, 1.f);
    fill_uniform(mix_c, MIX_D, 303, 0.5f, 2.f);
    memcpy(ps->data, mix_w0, sizeof(mix_w0));
}

#define ASSERT_BITWISE(got, exp, n, what) do { \
    for (size_t i_ = 0; i_ < (size_t)(n); i_++) \
        ck_assert_msg((got)[i_] == (exp)[i_], "%s: [%zu] %.9g != %.9g", (what), i_, \
                (double)(got)[i_], (double)(exp)[i_]); \
} while (0)

static void assert_close2(const float *got, double e0, double e1, double tol, const char *what) {
    const double exp[2] = {e0, e1};
    ck_assert_msg(dg_compare_f32(got, exp, 2, tol, tol).ok, "%s: (%.9g, %.9g), expected (%.9g, %.9g)",
            what, (double)got[0], (double)got[1], e0, e1);
}

static dg_method_cfg lb_cfg(double momentum, long k, bool adaptive, double alpha) {
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    cfg.momentum = momentum;
    cfg.weight_decay = 0.01;
    cfg.wd_all = false;
    cfg.lb_k = k;
    cfg.lb_alpha_adaptive = adaptive;
    cfg.lb_alpha = alpha;
    return cfg;
}

/* n steps of `method` on the mix problem; final weights into w (MIX_D). */
static void run_mix(const char *method, const char *base, const dg_method_cfg *cfg, int n,
        float *w) {
    dg_param_set ps;
    make_mix(&ps);
    toy t;
    dg_closure cl;
    toy_init(&t, &cl, &ps, mix_a, mix_c);
    dg_method *m = toy_make_method(method, base, cfg, &ps);
    for (int s = 0; s < n; s++) dg_method_step(m, &ps, &cl, 0.05f);
    memcpy(w, ps.data, sizeof(float) * MIX_D);
    dg_method_free(m);
    dg_params_free(&ps);
}

/* The state files live in a directory made by the unchecked fixture. */
static char state_dir[64];
static void make_state_dir(void) { make_tmpdir(state_dir, "optim_lookbehind"); }
static void remove_state_dir(void) { remove_tree(state_dir, 0); }

/* ---- tests ------------------------------------------------------------------ */

START_TEST(k1_alpha1_equals_sam_and_asam_bitwise) {
    const char *bases[3] = {"sgd", "adam", "adamw"};
    for (int b = 0; b < 3; b++) {
        for (int reuse = 0; reuse < 2; reuse++) {
            dg_method_cfg cfg = lb_cfg(0.9, 1, false, 1.0);
            cfg.lb_reuse_ascent = reuse;
            cfg.sam_rho = 0.2;
            cfg.asam_rho = 0.5;
            cfg.asam_eta = 0.05;
            float lb[MIX_D], ref[MIX_D], erm[MIX_D];
            run_mix("lookbehind-sam", bases[b], &cfg, 6, lb);
            run_mix("sam", bases[b], &cfg, 6, ref);
            ASSERT_BITWISE(lb, ref, MIX_D, "lookbehind-sam vs sam");
            run_mix("erm", bases[b], &cfg, 6, erm);
            ck_assert(memcmp(erm, ref, sizeof(erm)) != 0); /* SAM differs from ERM */
            float sam_ref[MIX_D];
            memcpy(sam_ref, ref, sizeof(ref));
            run_mix("lookbehind-asam", bases[b], &cfg, 6, lb);
            run_mix("asam", bases[b], &cfg, 6, ref);
            ASSERT_BITWISE(lb, ref, MIX_D, "lookbehind-asam vs asam");
            ck_assert(memcmp(sam_ref, ref, sizeof(ref)) != 0); /* ASAM differs from SAM */
            /* k = 2 is a different method */
            cfg.lb_k = 2;
            run_mix("lookbehind-asam", bases[b], &cfg, 6, lb);
            ck_assert(memcmp(lb, ref, sizeof(ref)) != 0);
        }
    }
}
END_TEST

START_TEST(toy_matches_section_15_5) {
    static const float zero[2] = {0.f, 0.f}, one[2] = {1.f, 1.f};
    const size_t n2 = 2;
    const unsigned fl = DG_PARAM_ASAM_SCALED;
    for (int v = 0; v < 4; v++) {
        const bool adaptive = v & 1, reuse = v & 2;
        dg_param_set ps;
        toy_make_ps(&ps, 1, &n2, &fl);
        ps.data[0] = 3.f;
        ps.data[1] = 4.f;
        toy t;
        dg_closure cl;
        toy_init(&t, &cl, &ps, zero, one);
        dg_method_cfg cfg = lb_cfg(0.0, 2, adaptive, 0.5);
        cfg.weight_decay = 0.0;
        cfg.sam_rho = 0.05;
        cfg.lb_reuse_ascent = reuse;
        dg_method *m = toy_make_method("lookbehind-sam", "sgd", &cfg, &ps);
        dg_method_step(m, &ps, &cl, 0.1f);
        /* ascent at (3, 4), descent at (3.03, 4.04), ascent there (unless
         * reused), descent at (3.06, 4.08) */
        static const float pts_full[4][2] = {{3.f, 4.f}, {3.03f, 4.04f}, {3.03f, 4.04f},
            {3.06f, 4.08f}};
        static const float pts_reuse[3][2] = {{3.f, 4.f}, {3.03f, 4.04f}, {3.06f, 4.08f}};
        const int n_calls = reuse ? 3 : 4;
        ck_assert_int_eq(t.n_calls, n_calls);
        for (int i = 0; i < n_calls; i++) {
            const float *p = reuse ? pts_reuse[i] : pts_full[i];
            char what[32];
            snprintf(what, sizeof(what), "call %d", i);
            assert_close2(t.seen[i], p[0], p[1], 1e-6, what);
            ck_assert_int_eq(t.domain[i], DG_DOMAIN_ALL);
            ck_assert_uint_eq(t.flags[i], i == 0 ? (unsigned)DG_CLOSURE_BN_UPDATE : 0u);
        }
        assert_close2(m->buf[1], 2.391, 3.188, 1e-6, "theta2");
        if (adaptive) {
            assert_close2(m->buf[2], 2.697, 3.596, 1e-6, "theta1");
            /* parallel displacements: alpha = 1, slow weights = theta2 */
            const double a = dg_lookbehind_alpha(m->buf[0], m->buf[2], m->buf[1], 2);
            ck_assert_msg(fabs(a - 1.0) <= 1e-6, "alpha %.9g", a);
            assert_close2(ps.data, 2.391, 3.188, 1e-6, "slow (adaptive)");
        } else {
            assert_close2(ps.data, 2.6955, 3.594, 1e-6, "slow (alpha 0.5)");
        }
        assert_close2(m->buf[0], 3.0, 4.0, 0.0, "phi");
        dg_method_free(m);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(adaptive_alpha_helper_matches_section_15_5) {
    static const float phi[2] = {0.f, 0.f}, t1[2] = {1.f, 0.f};
    static const float th[4][2] = {{0.f, 2.f}, {-1.f, 0.f}, {3.f, 0.f}, {1.f, 1.f}};
    static const double exp[4] = {0.5, 0.0, 1.0, 0.8535534};
    for (int k = 0; k < 4; k++) {
        const double a = dg_lookbehind_alpha(phi, t1, th[k], 2);
        ck_assert_msg(fabs(a - exp[k]) <= 1e-7, "case %d: %.9g, expected %.9g", k, a, exp[k]);
    }
    ck_assert(fabs(dg_lookbehind_alpha(phi, t1, th[3], 2) - (1.0 + 1.0 / sqrt(2.0)) / 2.0)
            <= 1e-12);
    ck_assert(dg_lookbehind_alpha(phi, phi, th[0], 2) == 0.5); /* theta1 = phi */
    ck_assert(dg_lookbehind_alpha(phi, t1, phi, 2) == 0.5);    /* theta = phi */
    ck_assert(dg_lookbehind_alpha_from_sums(0.0, 0.0, 0.0) == 0.5);
    /* displacement from a nonzero phi */
    static const float phi2[2] = {1.f, 1.f}, t12[2] = {2.f, 1.f}, th2[2] = {1.f, 3.f};
    ck_assert(fabs(dg_lookbehind_alpha(phi2, t12, th2, 2) - 0.5) <= 1e-12);
}
END_TEST

START_TEST(adaptive_alpha_is_per_tensor_over_several_spans) {
    /* tensor 0 spans three base spans; its alpha comes from span sums in order */
    const size_t n[3] = {2 * DG_OPTIM_SPAN + 123, 5, 17};
    const unsigned fl[3] = {DG_PARAM_ASAM_SCALED, DG_PARAM_NO_DECAY, DG_PARAM_ASAM_SCALED};
    dg_param_set ps;
    toy_make_ps(&ps, 3, n, fl);
    const size_t d = ps.d;
    float *a = dg_xmalloc(d * sizeof(float)), *c = dg_xmalloc(d * sizeof(float));
    float *w = dg_xmalloc(d * sizeof(float));
    fill_uniform(ps.data, d, 311, -1.f, 1.f);
    fill_uniform(a, d, 312, -1.f, 1.f);
    fill_uniform(c, d, 313, 0.1f, 3.f);
    toy t;
    dg_closure cl;
    toy_init(&t, &cl, &ps, a, c);
    const char *names[2] = {"lookbehind-sam", "lookbehind-asam"};
    for (int v = 0; v < 2; v++) {
        dg_method_cfg cfg = lb_cfg(0.9, 3, true, 0.5);
        cfg.sam_rho = 0.5;
        cfg.asam_rho = 1.0;
        dg_method *m = toy_make_method(names[v], "sgd", &cfg, &ps);
        for (int s = 0; s < 3; s++) {
            dg_method_step(m, &ps, &cl, 0.3f);
            float alphas[3];
            for (size_t k = 0; k < 3; k++) {
                const dg_param_tensor *tt = &ps.tensors[k];
                const double al = dg_lookbehind_alpha(m->buf[0] + tt->offset,
                        m->buf[2] + tt->offset, m->buf[1] + tt->offset, tt->n);
                alphas[k] = (float)al;
                const float fa = (float)al, fb = (float)(1.0 - al);
                for (size_t i = tt->offset; i < tt->offset + tt->n; i++)
                    w[i] = fa * m->buf[1][i] + fb * m->buf[0][i];
            }
            /* alphas differ between tensors, so a global alpha would fail */
            ck_assert(alphas[0] != alphas[1] || alphas[1] != alphas[2]);
            for (size_t i = 0; i < d; i++)
                ck_assert_msg(fabsf(ps.data[i] - w[i]) <= 1e-6f + 1e-6f * fabsf(w[i]),
                        "%s step %d [%zu]: %.9g vs %.9g", names[v], s, i,
                        (double)ps.data[i], (double)w[i]);
        }
        dg_method_free(m);
    }
    dg_free(a);
    dg_free(c);
    dg_free(w);
    dg_params_free(&ps);
}
END_TEST

START_TEST(closure_calls_and_flags_per_step) {
    const char *names[2] = {"lookbehind-sam", "lookbehind-asam"};
    for (int v = 0; v < 8; v++) {
        const bool reuse = v & 1, adaptive = v & 2;
        const char *name = names[v >> 2];
        const long k = 3;
        dg_method_cfg cfg = lb_cfg(0.9, k, adaptive, 0.8);
        cfg.lb_reuse_ascent = reuse;
        dg_param_set ps;
        make_mix(&ps);
        toy t;
        dg_closure cl;
        toy_init(&t, &cl, &ps, mix_a, mix_c);
        dg_method *m = toy_make_method(name, "adam", &cfg, &ps);
        const int per = reuse ? (int)k + 1 : 2 * (int)k, steps = 4;
        for (int s = 0; s < steps; s++) {
            float w_pre[MIX_D];
            memcpy(w_pre, ps.data, sizeof(w_pre));
            dg_method_step(m, &ps, &cl, 0.05f);
            ck_assert_int_eq(t.n_calls, (s + 1) * per);
            for (int i = 0; i < per; i++) {
                const int c = s * per + i;
                ck_assert_int_eq(t.domain[c], DG_DOMAIN_ALL);
                ck_assert_uint_eq(t.flags[c], i == 0 ? (unsigned)DG_CLOSURE_BN_UPDATE : 0u);
                if (i == 0) {
                    ck_assert(t.seen[c][0] == w_pre[0] && t.seen[c][1] == w_pre[1]);
                } else {
                    ck_assert(t.seen[c][0] != w_pre[0]); /* on the chain */
                }
            }
            ASSERT_BITWISE(m->buf[0], w_pre, MIX_D, "phi = pre-step weights");
        }
        ck_assert_int_eq(m->t, steps);
        ck_assert_int_eq(m->base->t, steps * k); /* k base updates per step */
        const float *p, *st;
        dg_method_eval_weights(m, &ps, &p, &st);
        ck_assert(p == ps.data && st == ps.stats); /* slow weights = live w */
        dg_method_free(m);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(reuse_equals_no_reuse_for_a_deterministic_closure) {
    for (int adaptive = 0; adaptive < 2; adaptive++) {
        dg_method_cfg cfg = lb_cfg(0.9, 3, adaptive, 0.5);
        float a[MIX_D], b[MIX_D];
        run_mix("lookbehind-asam", "adamw", &cfg, 5, a);
        cfg.lb_reuse_ascent = true;
        run_mix("lookbehind-asam", "adamw", &cfg, 5, b);
        ASSERT_BITWISE(a, b, MIX_D, "reuse");
        ck_assert(memcmp(a, mix_w0, sizeof(a)) != 0);
    }
}
END_TEST

START_TEST(state_save_load_continues_bit_for_bit) {
    char path[128];
    snprintf(path, sizeof(path), "%s/lookbehind.safetensors", state_dir);
    const char *names[2] = {"lookbehind-sam", "lookbehind-asam"};
    for (int v = 0; v < 4; v++) {
        const char *name = names[v & 1];
        const char *base = v & 2 ? "sgd" : "adam";
        const dg_method_cfg cfg = lb_cfg(0.9, 2, !(v & 2), 0.5);
        dg_param_set ps;
        make_mix(&ps);
        toy t;
        dg_closure cl;
        toy_init(&t, &cl, &ps, mix_a, mix_c);
        dg_method *m = toy_make_method(name, base, &cfg, &ps);
        for (int s = 0; s < 4; s++) dg_method_step(m, &ps, &cl, 0.05f);
        float w_saved[MIX_D];
        memcpy(w_saved, ps.data, sizeof(w_saved));
        dg_tensor_writer w;
        dg_tensor_writer_init(&w);
        ck_assert_int_eq(dg_method_state_save(m, &w), DG_STATUS_OK);
        ck_assert_int_eq(dg_tensor_writer_write(&w, path), DG_STATUS_OK);
        dg_tensor_writer_free(&w);
        for (int s = 0; s < 5; s++) dg_method_step(m, &ps, &cl, 0.05f);
        float ref[MIX_D];
        memcpy(ref, ps.data, sizeof(ref));
        dg_method_free(m);

        dg_method *m2 = toy_make_method(name, base, &cfg, &ps);
        memcpy(ps.data, w_saved, sizeof(w_saved));
        dg_tensor_reader r;
        ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
        ck_assert_int_eq(dg_method_state_load(m2, &r), DG_STATUS_OK);
        char key[64];
        snprintf(key, sizeof(key), "optim.%s.step", name);
        ck_assert_ptr_nonnull(dg_tensor_reader_find(&r, key));
        snprintf(key, sizeof(key), "optim.%s.step", base);
        ck_assert_ptr_nonnull(dg_tensor_reader_find(&r, key));
        ck_assert_ptr_nonnull(dg_tensor_reader_find(&r, v & 2 ? "optim.sgd.momentum"
                                                              : "optim.adam.exp_avg"));
        dg_tensor_reader_close(&r);
        ck_assert_int_eq(m2->t, 4);
        if (!(v & 2)) ck_assert_int_eq(m2->base->t, 8); /* Adam counts updates */
        for (int s = 0; s < 5; s++) dg_method_step(m2, &ps, &cl, 0.05f);
        ASSERT_BITWISE(ps.data, ref, MIX_D, "continued");
        ck_assert(memcmp(ref, w_saved, sizeof(ref)) != 0);
        dg_method_free(m2);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(step_allocates_nothing) {
    const char *names[2] = {"lookbehind-sam", "lookbehind-asam"};
    for (int v = 0; v < 4; v++) {
        dg_method_cfg cfg = lb_cfg(0.9, 3, v & 2, 0.5);
        cfg.lb_reuse_ascent = v & 1;
        dg_param_set ps;
        make_mix(&ps);
        toy t;
        dg_closure cl;
        toy_init(&t, &cl, &ps, mix_a, mix_c);
        dg_method *m = toy_make_method(names[v & 1], "adam", &cfg, &ps);
        dg_method_step(m, &ps, &cl, 0.05f); /* warms the OpenMP pool */
        const alloc_mark mark = alloc_mark_now();
        for (int s = 0; s < 10; s++) dg_method_step(m, &ps, &cl, 0.05f);
        const float *p, *st;
        dg_method_eval_weights(m, &ps, &p, &st);
        dg_method_finish(m, &ps, &cl);
        assert_nothing_allocated_since(mark);
        ck_assert(p == ps.data);
        dg_method_free(m);
        dg_params_free(&ps);
    }
}
END_TEST

static void expect_config_error(const char *method, const dg_method_cfg *cfg,
        const char *expect) {
    dg_param_set ps;
    const size_t n = 2;
    const unsigned fl = 0;
    toy_make_ps(&ps, 1, &n, &fl);
    toy_expect_config_error(method, "sgd", cfg, &ps, expect);
    dg_params_free(&ps);
}

START_TEST(bad_values_are_config_errors) {
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    dg_method_cfg bad = cfg;
    bad.lb_k = 0;
    expect_config_error("lookbehind-sam", &bad, "optim.lb_k");
    bad = cfg;
    bad.lb_alpha_adaptive = false;
    bad.lb_alpha = 0.0;
    expect_config_error("lookbehind-sam", &bad, "optim.lb_alpha");
    bad.lb_alpha = 1.5;
    expect_config_error("lookbehind-asam", &bad, "optim.lb_alpha");
    bad = cfg;
    bad.sam_rho = -1.0;
    expect_config_error("lookbehind-sam", &bad, "optim.sam_rho");
    bad = cfg;
    bad.asam_eta = -0.1;
    expect_config_error("lookbehind-asam", &bad, "optim.asam_eta");
    /* adaptive alpha ignores lb_alpha; LB-SAM ignores the ASAM keys */
    dg_param_set ps;
    const size_t n = 2;
    const unsigned fl = 0;
    toy_make_ps(&ps, 1, &n, &fl);
    bad = cfg;
    bad.lb_alpha = 7.0;
    bad.asam_eta = -0.1;
    dg_method *m = toy_make_method("lookbehind-sam", "sgd", &bad, &ps);
    dg_method_free(m);
    dg_params_free(&ps);
}
END_TEST

Suite *optim_lookbehind_suite(void) {
    Suite *s = suite_create("optim_lookbehind");
    TCase *tc = tcase_create("lookbehind");
    tcase_set_timeout(tc, 30);
    tcase_add_unchecked_fixture(tc, make_state_dir, remove_state_dir);
    tcase_add_test(tc, k1_alpha1_equals_sam_and_asam_bitwise);
    tcase_add_test(tc, toy_matches_section_15_5);
    tcase_add_test(tc, adaptive_alpha_helper_matches_section_15_5);
    tcase_add_test(tc, adaptive_alpha_is_per_tensor_over_several_spans);
    tcase_add_test(tc, closure_calls_and_flags_per_step);
    tcase_add_test(tc, reuse_equals_no_reuse_for_a_deterministic_closure);
    tcase_add_test(tc, state_save_load_continues_bit_for_bit);
    tcase_add_test(tc, step_allocates_nothing);
    tcase_add_test(tc, bad_values_are_config_errors);
    suite_add_tcase(s, tc);
    return s;
}
