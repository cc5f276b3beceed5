/* tests/test_optim_swad_dgsam.c -- SWAD (optimizers/swad.c) against
 * docs/algorithms.md §6, §14 invariants 14-16 and the §15.4 scripted losses:
 * the average equals the mean of the accepted iterates, the scripted
 * scenarios give the stated start and end segments, stop step and average,
 * the end-of-training rule and the cumulative BN refresh at the average,
 * state save -> load -> continue bit for bit, no allocation in a step or an
 * evaluation, configuration errors. DGSAM (optimizers/dgsam.c) against
 * §10, §14 invariants 18, 22-25 and the §15.6 two-domain toy: one domain
 * equals SAM bit for bit (and ERM without refresh), hand-worked steps for
 * both refresh settings and both orders, the closure call pattern and the
 * domain order drawn from the method's RNG stream, rho = 0 equals ERM,
 * state (the RNG) save -> load -> continue bit for bit, no allocation.
 *
 * Closures are toy C functions: a constant gradient -1 (with SGD at lr 1
 * the iterates are w_t = t from w = -1) or weighted quadratics
 * L(w) = 1/2 sum_i c_i (w_i - a_i)^2, one minimum a per source domain.
 * d = number of parameters, S = number of domains. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "alloc_hook.h"
#include "common.h"
#include "optim_toy.h"
#include "optimizers/dg_optim.h"

/* A store of one ASAM-scaled 1-D tensor of d elements, all zero. */
static void make_ps(dg_param_set *ps, size_t d) {
    const unsigned flags = DG_PARAM_ASAM_SCALED;
    toy_make_ps(ps, 1, &d, &flags);
}

#define MIX_D 15
static float mix_a[MIX_D], mix_c[MIX_D], mix_w0[MIX_D];

/* d = 15 with random w, a, c; the closure is the quadratic. */
static void make_mix(dg_param_set *ps, toy *t, dg_closure *cl) {
    make_ps(ps, MIX_D);
    fill_uniform(mix_w0, MIX_D, 201, -1.f, 1.f);
    fill_uniform(mix_a, MIX_D, 202, -1.f, 1.f);
    fill_uniform(mix_c, MIX_D, 203, 0.5f, 2.f);
    memcpy(ps->data, mix_w0, sizeof(mix_w0));
    toy_init(t, cl, ps, NULL, NULL);
    t->a = mix_a;
    t->c = mix_c;
}

#define ASSERT_BITWISE(got, exp, n, what) do { \
    for (size_t i_ = 0; i_ < (size_t)(n); i_++) \
        ck_assert_msg((got)[i_] == (exp)[i_], "%s: [%zu] %.9g != %.9g", (what), i_, \
                (double)(got)[i_], (double)(exp)[i_]); \
} while (0)

/* The state files live in a directory made by the unchecked fixture. */
static char state_dir[64];
static void make_state_dir(void) { make_tmpdir(state_dir, "optim_swad_dgsam"); }
static void remove_state_dir(void) { remove_tree(state_dir, 0); }


/* ---- SWAD (§6) -------------------------------------------------------------- */

/* §15.4's losses, one per evaluation. */
static const double losses_15_4[20] = {
    10, 8, 6, 4, 3.0, 3.2, 3.1, 3.5, 3.3, 3.4, 3.6, 3.9, 4.5, 5, 6, 7, 8, 9, 10, 11,
};

static dg_method_cfg swad_cfg(long every) {
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    cfg.momentum = 0.0;
    cfg.weight_decay = 0.0;
    cfg.swad_eval_every = every;
    cfg.swad_bn_batches = 37;
    return cfg;
}

/* Trainer loop steps t0 .. t1-1 of a T-step run with evaluations after t mod F = 0 and
 * t = T - 1, evaluation k (0-based) getting losses[k]; per_step, when not
 * NULL, receives w after each step, (T, d) in double. Returns the step after
 * which on_eval asked to stop, or -1. */
static long run_swad_to(dg_method *m, dg_param_set *ps, dg_closure *cl, long t0, long t1,
        long T, const double *losses, int n_losses, float lr, double *per_step) {
    const long F = m->cfg.swad_eval_every;
    for (long t = t0; t < t1; t++) {
        dg_method_step(m, ps, cl, lr);
        if (per_step)
            for (size_t i = 0; i < ps->d; i++) per_step[(size_t)t * ps->d + i] = ps->data[i];
        if (t % F == 0 || t == T - 1) {
            const long k = (t + F - 1) / F; /* evaluations before this one */
            /* no check assertion here: it would allocate inside the counted loop */
            if (dg_method_on_eval(m, t, k < n_losses ? losses[k] : NAN)) return t;
        }
    }
    return -1;
}

/* run_swad_to up to the end of training. */
static long run_swad(dg_method *m, dg_param_set *ps, dg_closure *cl, long t0, long T,
        const double *losses, int n_losses, float lr, double *per_step) {
    return run_swad_to(m, ps, cl, t0, T, T, losses, n_losses, lr, per_step);
}

static int64_t read_i64(const char *path, const char *name) {
    dg_tensor_reader r;
    int64_t v = 0;
    ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
    ck_assert_int_eq(dg_tensor_reader_read_i64(&r, name, 0, NULL, &v), DG_STATUS_OK);
    dg_tensor_reader_close(&r);
    return v;
}

typedef struct swad_scenario {
    long every;      /* F */
    long T;          /* steps */
    int n_losses;
    long stop;       /* step after which training stops, -1 = runs to T */
    long start, end; /* accepted segments, -1 = none */
    double avg;      /* A, worked out by hand */
} swad_scenario;

START_TEST(swad_scripted_losses_match_section_15_4) {
    /* w_t = t: SGD at lr 1 with g = -1 from w = -1. Hand-worked averages:
     * F = 1: segments = steps, accepted 3 .. 11, A = (3 + 11)/2 = 7.
     * F = 2: segment n = {2n-1, 2n}, accepted 3 .. 11 = steps 5 .. 22,
     *        A = (5 + 22)/2 = 13.5; segment 17 ends at step 34.
     * F = 1, T = 15: the end rule takes 10, 11, rejects 12 (4.5 > 4.03): 7.
     * six losses: no valley, A = the last segment {5} = 5. */
    static const swad_scenario sc[] = {
        {1, 100, 20, 17, 3, 11, 7.0},
        {2, 100, 20, 34, 3, 11, 13.5},
        {1, 15, 20, -1, 3, 11, 7.0},
        {1, 6, 6, -1, -1, -1, 5.0},
    };
    char path[128];
    snprintf(path, sizeof(path), "%s/scripted.safetensors", state_dir);
    for (size_t k = 0; k < DG_ARRAY_LEN(sc); k++) {
        dg_param_set ps;
        make_ps(&ps, 1);
        ps.data[0] = -1.f;
        toy t;
        dg_closure cl;
        toy_init(&t, &cl, &ps, NULL, NULL);
        t.ramp = true;
        const dg_method_cfg cfg = swad_cfg(sc[k].every);
        dg_method *m = toy_make_method("swad", "sgd", &cfg, &ps);
        const long stop = run_swad(m, &ps, &cl, 0, sc[k].T, losses_15_4, sc[k].n_losses, 1.f,
                NULL);
        ck_assert_msg(stop == sc[k].stop, "scenario %zu: stop %ld", k, stop);
        const float *p, *s;
        dg_method_eval_weights(m, &ps, &p, &s);
        ck_assert(p == ps.data); /* live weights until finish */
        ck_assert_int_eq(t.n_refresh, 0);
        dg_method_finish(m, &ps, &cl);
        dg_method_eval_weights(m, &ps, &p, &s);
        ck_assert(p != ps.data && s == ps.stats);
        ck_assert_msg(fabs(p[0] - sc[k].avg) <= 1e-6, "scenario %zu: A = %.9g, expected %g", k,
                (double)p[0], sc[k].avg);
        ck_assert_int_eq(t.n_refresh, 1); /* cumulative refresh at A */
        ck_assert(t.refresh_params[0] == p);
        ck_assert_int_eq(t.refresh_batches[0], 37);
        ck_assert_int_eq(t.refresh_mode[0], DG_BN_REFRESH_CUMULATIVE);
        toy_state_save(m, path);
        ck_assert_int_eq(read_i64(path, "optim.swad.start"), sc[k].start);
        ck_assert_int_eq(read_i64(path, "optim.swad.end"), sc[k].end);
        dg_method_free(m);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(swad_average_is_the_mean_of_the_accepted_iterates) {
    /* (1) rising losses, F = 2, T = 14: the window {0, 1, 2} converges at
     * once and every segment, the one-iterate segments 0 = {0} and 7 = {13}
     * included, is accepted: A = mean of all 14 iterates.
     * (2) §15.4's losses with F = 3: segments 3 .. 11 = steps 7 .. 33. */
    static const double rising[8] = {3.0, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 3.7};
    static const struct {
        long every, T;
        const double *losses;
        int n_losses;
        long first, last; /* accepted steps */
        long stop;
    } cases[] = {
        {2, 14, rising, 8, 0, 13, -1},
        {3, 100, losses_15_4, 20, 7, 33, 51},
    };
    for (size_t k = 0; k < DG_ARRAY_LEN(cases); k++) {
        dg_param_set ps;
        toy t;
        dg_closure cl;
        make_mix(&ps, &t, &cl);
        const dg_method_cfg cfg = swad_cfg(cases[k].every);
        dg_method *m = toy_make_method("swad", "adam", &cfg, &ps);
        double *iter = dg_xcalloc((size_t)cases[k].T * MIX_D, sizeof(double));
        const long stop = run_swad(m, &ps, &cl, 0, cases[k].T, cases[k].losses,
                cases[k].n_losses, 0.05f, iter);
        ck_assert_int_eq(stop, cases[k].stop);
        dg_method_finish(m, &ps, &cl);
        double exp[MIX_D] = {0};
        for (long s = cases[k].first; s <= cases[k].last; s++)
            for (size_t i = 0; i < MIX_D; i++) exp[i] += iter[(size_t)s * MIX_D + i];
        for (size_t i = 0; i < MIX_D; i++) exp[i] /= (double)(cases[k].last - cases[k].first + 1);
        const float *p, *s;
        dg_method_eval_weights(m, &ps, &p, &s);
        dg_cmp c = dg_compare_f32(p, exp, MIX_D, 1e-6, 1e-5);
        ck_assert_msg(c.ok, "case %zu: [%zu] got %.9g exp %.9g", k, c.first_bad,
                (double)p[c.first_bad], exp[c.first_bad]);
        /* the live weights are the last iterate, not the average */
        ck_assert(memcmp(ps.data, p, sizeof(float) * MIX_D) != 0);
        dg_free(iter);
        dg_method_free(m);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(swad_calls_the_closure_once_per_step_with_bn_update) {
    dg_param_set ps;
    toy t;
    dg_closure cl;
    make_mix(&ps, &t, &cl);
    const dg_method_cfg cfg = swad_cfg(2);
    dg_method *m = toy_make_method("swad", "sgd", &cfg, &ps);
    run_swad(m, &ps, &cl, 0, 5, losses_15_4, 20, 0.05f, NULL);
    ck_assert_int_eq(t.n_calls, 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(t.domain[i], DG_DOMAIN_ALL);
        ck_assert_uint_eq(t.flags[i], DG_CLOSURE_BN_UPDATE);
    }
    ck_assert_int_eq(m->t, 5);
    dg_method_free(m);
    dg_params_free(&ps);
}
END_TEST

START_TEST(swad_state_save_load_continues_bit_for_bit) {
    /* F = 2, §15.4 losses, T = 100 (stops after step 34); saved in the
     * search phase, mid-segment, at convergence, in the valley, dead. */
    static const long save_after[] = {1, 6, 11, 12, 19, 30, 33};
    char path[128];
    snprintf(path, sizeof(path), "%s/swad.safetensors", state_dir);
    for (size_t k = 0; k < DG_ARRAY_LEN(save_after); k++) {
        const long t0 = save_after[k];
        const dg_method_cfg cfg = swad_cfg(2);
        dg_param_set ps;
        toy t;
        dg_closure cl;
        make_mix(&ps, &t, &cl);
        dg_method *m = toy_make_method("swad", "adam", &cfg, &ps);
        ck_assert_int_eq(run_swad_to(m, &ps, &cl, 0, t0, 100, losses_15_4, 20, 0.05f, NULL), -1);
        float w_saved[MIX_D];
        memcpy(w_saved, ps.data, sizeof(w_saved));
        toy_state_save(m, path);
        const long stop = run_swad(m, &ps, &cl, t0, 100, losses_15_4, 20, 0.05f, NULL);
        dg_method_finish(m, &ps, &cl);
        float ref[MIX_D], ref_avg[MIX_D];
        const float *p, *s;
        memcpy(ref, ps.data, sizeof(ref));
        dg_method_eval_weights(m, &ps, &p, &s);
        memcpy(ref_avg, p, sizeof(ref_avg));
        dg_method_free(m);

        fill_uniform(ps.data, MIX_D, 999, -3.f, 3.f);
        dg_method *m2 = toy_make_method("swad", "adam", &cfg, &ps);
        memcpy(ps.data, w_saved, sizeof(w_saved));
        ck_assert_int_eq(toy_state_load(m2, path), DG_STATUS_OK);
        ck_assert_int_eq(m2->t, t0);
        const long stop2 = run_swad(m2, &ps, &cl, t0, 100, losses_15_4, 20, 0.05f, NULL);
        ck_assert_int_eq(stop2, stop);
        dg_method_finish(m2, &ps, &cl);
        ASSERT_BITWISE(ps.data, ref, MIX_D, "live weights");
        dg_method_eval_weights(m2, &ps, &p, &s);
        ASSERT_BITWISE(p, ref_avg, MIX_D, "average");
        dg_method_free(m2);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(swad_step_and_evaluation_allocate_nothing) {
    dg_param_set ps;
    toy t;
    dg_closure cl;
    make_mix(&ps, &t, &cl);
    const dg_method_cfg cfg = swad_cfg(2);
    dg_method *m = toy_make_method("swad", "adam", &cfg, &ps);
    run_swad(m, &ps, &cl, 0, 1, losses_15_4, 20, 0.05f, NULL); /* warms the OpenMP pool */
    const uint64_t a0 = dg_alloc_count();
    dg_alloc_hook_begin();
    const long stop = run_swad(m, &ps, &cl, 1, 100, losses_15_4, 20, 0.05f, NULL);
    dg_method_finish(m, &ps, &cl);
    const float *p, *s;
    dg_method_eval_weights(m, &ps, &p, &s);
    const dg_alloc_counts heap = dg_alloc_hook_end();
    ck_assert_int_eq(stop, 34); /* valley found, grown and dead on the way */
    ck_assert_uint_eq(dg_alloc_count(), a0);
    if (dg_alloc_hook_available())
        ck_assert_msg(heap.own == 0, "%llu allocations", (unsigned long long)heap.own);
    dg_method_free(m);
    dg_params_free(&ps);
}
END_TEST

/* dg_method_create must fail with DG_STATUS_ERR_CONFIG, logging `expect`. */
static void expect_config_error(const char *method, const dg_method_cfg *cfg,
        const char *expect) {
    dg_param_set ps;
    make_ps(&ps, 2);
    toy_expect_config_error(method, "sgd", cfg, &ps, expect);
    dg_params_free(&ps);
}

START_TEST(swad_bad_values_are_config_errors) {
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    dg_method_cfg bad = cfg;
    bad.swad_n_tolerance = 2; /* < n_converge = 3 */
    expect_config_error("swad", &bad, "optim.swad_n_tolerance");
    bad = cfg;
    bad.swad_n_converge = 0;
    expect_config_error("swad", &bad, "optim.swad_n_converge");
    bad = cfg;
    bad.swad_tolerance_ratio = -0.1;
    expect_config_error("swad", &bad, "optim.swad_tolerance_ratio");
    bad = cfg;
    bad.swad_eval_every = 0;
    expect_config_error("swad", &bad, "optim.swad_eval_every");
}
END_TEST


/* ---- DGSAM (§10) ------------------------------------------------------------- */

static float dom_a[TOY_DOMAINS][MIX_D];

/* make_mix with S domains whose minima are random (S = 1: domain 0 = mix_a). */
static void make_domains(dg_param_set *ps, toy *t, dg_closure *cl, int S) {
    make_mix(ps, t, cl);
    for (int k = 0; k < S; k++) {
        if (k == 0) memcpy(dom_a[0], mix_a, sizeof(mix_a));
        else fill_uniform(dom_a[k], MIX_D, 300 + (uint64_t)k, -1.5f, 1.5f);
        t->da[k] = dom_a[k];
    }
    t->n_dom = S;
    cl->n_domains = S;
}

static dg_method_cfg dgsam_cfg(double momentum, bool refresh, dg_dgsam_order order) {
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    cfg.momentum = momentum;
    cfg.weight_decay = 0.01;
    cfg.wd_all = false;
    cfg.dgsam_rho = 0.05;
    cfg.sam_rho = 0.05;
    cfg.dgsam_refresh_first = refresh;
    cfg.dgsam_order = order;
    return cfg;
}

/* n steps of `method` from the start point on S domains; w gets the result. */
static void run_domains(const char *method, const char *base, const dg_method_cfg *cfg, int S,
        int n, float *w) {
    dg_param_set ps;
    toy t;
    dg_closure cl;
    make_domains(&ps, &t, &cl, S);
    dg_method *m = toy_make_method(method, base, cfg, &ps);
    for (int s = 0; s < n; s++) dg_method_step(m, &ps, &cl, 0.05f);
    memcpy(w, ps.data, sizeof(float) * MIX_D);
    dg_method_free(m);
    dg_params_free(&ps);
}

START_TEST(dgsam_with_one_domain_equals_sam_bitwise) {
    const char *bases[3] = {"sgd", "adam", "adamw"};
    for (int k = 0; k < 3; k++) {
        for (int order = 0; order < 2; order++) {
            float a[MIX_D], b[MIX_D], e[MIX_D];
            dg_method_cfg cfg = dgsam_cfg(0.9, true, (dg_dgsam_order)order);
            run_domains("dgsam", bases[k], &cfg, 1, 6, a);
            run_domains("sam", bases[k], &cfg, 1, 6, b);
            ASSERT_BITWISE(a, b, MIX_D, bases[k]);
            ck_assert(memcmp(a, mix_w0, sizeof(a)) != 0);
            /* without refresh, one domain is plain ERM (§10 pitfall 3) */
            cfg.dgsam_refresh_first = false;
            run_domains("dgsam", bases[k], &cfg, 1, 6, a);
            run_domains("erm", bases[k], &cfg, 1, 6, e);
            ASSERT_BITWISE(a, e, MIX_D, "no refresh vs erm");
            ck_assert(memcmp(e, b, sizeof(e)) != 0); /* SAM and ERM differ */
        }
    }
}
END_TEST

typedef struct dgsam_toy_case {
    bool swap;        /* domain 0 = b: the fixed order is (2, 1) of §15.6 */
    bool refresh;
    double g[2];      /* G/S, the descent direction */
    int n_calls;
    float pts[3][2];  /* weights at each call (order (1, 2) only) */
} dgsam_toy_case;

START_TEST(dgsam_two_domain_toy_matches_section_15_6) {
    static const float a[2] = {3.f, 4.f}, b[2] = {-0.9f, 0.4f}, one[2] = {1.f, 1.f};
    /* (1, 2): g_1 = (-3, -4) at 0, theta_1 = (-0.3, -0.4); g_2 = (0.6, -0.8)
     * there, theta_2 = (0, -0.8); refreshed g_1' = (-3, -4.8).
     * refresh: ((-3, -4.8) + (0.6, -0.8))/2 = (-1.2, -2.8);
     * no refresh: ((-3, -4) + (0.6, -0.8))/2 = (-1.2, -2.4). */
    static const dgsam_toy_case cases[] = {
        {false, true, {-1.2, -2.8}, 3, {{0.f, 0.f}, {-0.3f, -0.4f}, {0.f, -0.8f}}},
        {false, false, {-1.2, -2.4}, 2, {{0.f, 0.f}, {-0.3f, -0.4f}, {0.f, 0.f}}},
        {true, true, {-0.7225125, -2.6169638}, 3, {{0.f}}},
        {true, false, {-0.8215471, -2.3015346}, 2, {{0.f}}},
    };
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    cfg.momentum = 0.0;
    cfg.weight_decay = 0.0;
    cfg.dgsam_rho = 0.5;
    cfg.sam_rho = 0.5;
    cfg.dgsam_order = DG_DGSAM_ORDER_FIXED;
    for (size_t k = 0; k < DG_ARRAY_LEN(cases); k++) {
        const dgsam_toy_case *tc = &cases[k];
        dg_param_set ps;
        make_ps(&ps, 2);
        toy t;
        dg_closure cl;
        toy_init(&t, &cl, &ps, NULL, NULL);
        t.c = one;
        t.n_dom = 2;
        t.da[0] = tc->swap ? b : a;
        t.da[1] = tc->swap ? a : b;
        cl.n_domains = 2;
        cfg.dgsam_refresh_first = tc->refresh;
        dg_method *m = toy_make_method("dgsam", "sgd", &cfg, &ps);
        dg_method_step(m, &ps, &cl, 0.1f);
        const double gexp[2] = {tc->g[0], tc->g[1]};
        const double wexp[2] = {-0.1 * tc->g[0], -0.1 * tc->g[1]};
        ck_assert_msg(dg_compare_f32(ps.grad, gexp, 2, 1e-6, 1e-6).ok,
                "case %zu: G/S = (%.9g, %.9g)", k, (double)ps.grad[0], (double)ps.grad[1]);
        ck_assert_msg(dg_compare_f32(ps.data, wexp, 2, 1e-6, 1e-6).ok,
                "case %zu: w1 = (%.9g, %.9g)", k, (double)ps.data[0], (double)ps.data[1]);
        ck_assert_int_eq(t.n_calls, tc->n_calls);
        for (int i = 0; i < tc->n_calls; i++) {
            ck_assert_int_eq(t.domain[i], i == 1 ? 1 : 0);
            ck_assert_uint_eq(t.flags[i], i == 0 ? (unsigned)DG_CLOSURE_BN_UPDATE : 0u);
            if (tc->swap) continue;
            const double p[2] = {tc->pts[i][0], tc->pts[i][1]};
            ck_assert_msg(dg_compare_f32(t.seen[i], p, 2, 1e-6, 1e-6).ok,
                    "case %zu call %d at (%.9g, %.9g)", k, i, (double)t.seen[i][0],
                    (double)t.seen[i][1]);
        }
        dg_method_free(m);

        /* SAM on the mean loss takes another step: (0.1265365, 0.2651241) */
        ps.data[0] = ps.data[1] = 0.f;
        dg_method *sam = toy_make_method("sam", "sgd", &cfg, &ps);
        dg_method_step(sam, &ps, &cl, 0.1f);
        const double sam_w[2] = {0.1265365, 0.2651241};
        ck_assert(dg_compare_f32(ps.data, sam_w, 2, 1e-6, 1e-6).ok);
        ck_assert(fabs(sam_w[0] - wexp[0]) + fabs(sam_w[1] - wexp[1]) > 1e-2);
        dg_method_free(sam);
        dg_params_free(&ps);
    }
    /* one domain (a): DGSAM with refresh = SAM on it, w1 = (0.33, 0.44) */
    for (int k = 0; k < 2; k++) {
        dg_param_set ps;
        make_ps(&ps, 2);
        toy t;
        dg_closure cl;
        toy_init(&t, &cl, &ps, NULL, NULL);
        t.c = one;
        t.a = a;
        cfg.dgsam_refresh_first = true;
        dg_method *m = toy_make_method(k ? "sam" : "dgsam", "sgd", &cfg, &ps);
        dg_method_step(m, &ps, &cl, 0.1f);
        const double wexp[2] = {0.33, 0.44};
        ck_assert_msg(dg_compare_f32(ps.data, wexp, 2, 1e-6, 1e-6).ok, "%s: (%.9g, %.9g)",
                k ? "sam" : "dgsam", (double)ps.data[0], (double)ps.data[1]);
        dg_method_free(m);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(dgsam_calls_follow_the_method_rng_and_update_from_pre_step_weights) {
    const int S = 3;
    for (int v = 0; v < 4; v++) {
        const bool refresh = v & 1;
        const dg_dgsam_order order = v & 2 ? DG_DGSAM_ORDER_FIXED : DG_DGSAM_ORDER_SHUFFLE;
        const dg_method_cfg cfg = dgsam_cfg(0.9, refresh, order);
        dg_param_set ps;
        toy t;
        dg_closure cl;
        make_domains(&ps, &t, &cl, S);
        dg_method *m = toy_make_method("dgsam", "sgd", &cfg, &ps);
        dg_optim_hparams hp = {.momentum = 0.9, .weight_decay = 0.01, .wd_all = false};
        dg_optim *twin = NULL;
        ck_assert_int_eq(dg_optim_create("sgd", &hp, &ps, &twin), DG_STATUS_OK);
        dg_rng r; /* the stream the method must draw from (seed 7) */
        dg_rng_init(&r, 7, DG_RNG_DGSAM, 0);
        const int per = S + (refresh ? 1 : 0), steps = 8;
        int firsts = 0; /* bit mask of first domains seen */
        for (int s = 0; s < steps; s++) {
            float w_pre[MIX_D];
            memcpy(w_pre, ps.data, sizeof(w_pre));
            int64_t pi[3] = {0, 1, 2};
            if (order == DG_DGSAM_ORDER_SHUFFLE) dg_rng_shuffle_i64(&r, pi, 3);
            dg_method_step(m, &ps, &cl, 0.05f);
            twin->ops->update(twin, w_pre, ps.grad, 0.05f); /* ps.grad = G/S */
            ASSERT_BITWISE(ps.data, w_pre, MIX_D, "base update from the pre-step weights");
            for (int i = 0; i < per; i++) {
                const int c = s * per + i;
                ck_assert_int_eq(t.domain[c], (int)pi[i % S]);
                ck_assert_uint_eq(t.flags[c], i == 0 ? (unsigned)DG_CLOSURE_BN_UPDATE : 0u);
                if (i > 0) ck_assert(t.seen[c][0] != t.seen[s * per][0]); /* perturbed */
            }
            firsts |= 1 << pi[0];
        }
        ck_assert_int_eq(t.n_calls, steps * per);
        if (order == DG_DGSAM_ORDER_SHUFFLE) ck_assert_int_ne(firsts, 1); /* orders vary */
        ck_assert(m->rng.state == r.state);
        dg_optim_free(twin);
        dg_method_free(m);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(dgsam_with_rho_zero_equals_erm) {
    for (int refresh = 0; refresh < 2; refresh++) {
        dg_method_cfg cfg = dgsam_cfg(0.9, refresh, DG_DGSAM_ORDER_SHUFFLE);
        cfg.dgsam_rho = 0.0;
        float a[MIX_D], e[MIX_D];
        run_domains("dgsam", "sgd", &cfg, 3, 5, a);
        run_domains("erm", "sgd", &cfg, 3, 5, e);
        double exp[MIX_D];
        for (size_t i = 0; i < MIX_D; i++) exp[i] = e[i];
        dg_cmp c = dg_compare_f32(a, exp, MIX_D, 1e-6, 1e-6);
        ck_assert_msg(c.ok, "refresh %d: [%zu] %.9g vs %.9g", refresh, c.first_bad,
                (double)a[c.first_bad], exp[c.first_bad]);
        cfg.dgsam_rho = 0.05; /* the comparison can fail */
        run_domains("dgsam", "sgd", &cfg, 3, 5, a);
        ck_assert(!dg_compare_f32(a, exp, MIX_D, 1e-6, 1e-6).ok);
    }
}
END_TEST

START_TEST(dgsam_state_save_load_continues_bit_for_bit) {
    char path[128];
    snprintf(path, sizeof(path), "%s/dgsam.safetensors", state_dir);
    for (int refresh = 0; refresh < 2; refresh++) {
        const dg_method_cfg cfg = dgsam_cfg(0.0, refresh, DG_DGSAM_ORDER_SHUFFLE);
        dg_param_set ps;
        toy t;
        dg_closure cl;
        make_domains(&ps, &t, &cl, 3);
        dg_method *m = toy_make_method("dgsam", "adam", &cfg, &ps);
        for (int s = 0; s < 5; s++) dg_method_step(m, &ps, &cl, 0.05f);
        float w_saved[MIX_D];
        memcpy(w_saved, ps.data, sizeof(w_saved));
        toy_state_save(m, path);
        for (int s = 0; s < 6; s++) dg_method_step(m, &ps, &cl, 0.05f);
        float ref[MIX_D];
        memcpy(ref, ps.data, sizeof(ref));
        const uint64_t rng_ref = m->rng.state;
        dg_method_free(m);

        dg_method *m2 = toy_make_method("dgsam", "adam", &cfg, &ps);
        memcpy(ps.data, w_saved, sizeof(w_saved));
        ck_assert_int_eq(toy_state_load(m2, path), DG_STATUS_OK);
        ck_assert_int_eq(m2->t, 5);
        for (int s = 0; s < 6; s++) dg_method_step(m2, &ps, &cl, 0.05f);
        ASSERT_BITWISE(ps.data, ref, MIX_D, "continued");
        ck_assert(m2->rng.state == rng_ref);
        dg_method_free(m2);

        dg_tensor_reader r;
        ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
        ck_assert_ptr_nonnull(dg_tensor_reader_find(&r, "optim.dgsam.rng"));
        ck_assert_ptr_nonnull(dg_tensor_reader_find(&r, "optim.dgsam.step"));
        ck_assert_ptr_nonnull(dg_tensor_reader_find(&r, "optim.adam.exp_avg"));
        dg_tensor_reader_close(&r);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(dgsam_step_allocates_nothing) {
    const dg_method_cfg cfg = dgsam_cfg(0.9, true, DG_DGSAM_ORDER_SHUFFLE);
    dg_param_set ps;
    toy t;
    dg_closure cl;
    make_domains(&ps, &t, &cl, 3);
    dg_method *m = toy_make_method("dgsam", "sgd", &cfg, &ps);
    dg_method_step(m, &ps, &cl, 0.05f); /* warms the OpenMP pool */
    const uint64_t a0 = dg_alloc_count();
    dg_alloc_hook_begin();
    for (int s = 0; s < 10; s++) dg_method_step(m, &ps, &cl, 0.05f);
    const float *p, *st;
    dg_method_eval_weights(m, &ps, &p, &st);
    dg_method_finish(m, &ps, &cl);
    const dg_alloc_counts heap = dg_alloc_hook_end();
    ck_assert(p == ps.data); /* live weights */
    ck_assert_uint_eq(dg_alloc_count(), a0);
    if (dg_alloc_hook_available())
        ck_assert_msg(heap.own == 0, "%llu allocations", (unsigned long long)heap.own);
    dg_method_free(m);
    dg_params_free(&ps);
}
END_TEST

START_TEST(dgsam_bad_values_are_config_errors) {
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    cfg.dgsam_rho = -0.05;
    expect_config_error("dgsam", &cfg, "optim.dgsam_rho");
}
END_TEST

Suite *optim_swad_dgsam_suite(void) {
    Suite *s = suite_create("optim_swad_dgsam");
    TCase *tc = tcase_create("swad");
    tcase_set_timeout(tc, 30);
    tcase_add_unchecked_fixture(tc, make_state_dir, remove_state_dir);
    tcase_add_test(tc, swad_scripted_losses_match_section_15_4);
    tcase_add_test(tc, swad_average_is_the_mean_of_the_accepted_iterates);
    tcase_add_test(tc, swad_calls_the_closure_once_per_step_with_bn_update);
    tcase_add_test(tc, swad_state_save_load_continues_bit_for_bit);
    tcase_add_test(tc, swad_step_and_evaluation_allocate_nothing);
    tcase_add_test(tc, swad_bad_values_are_config_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("dgsam");
    tcase_set_timeout(tc, 30);
    tcase_add_unchecked_fixture(tc, make_state_dir, remove_state_dir);
    tcase_add_test(tc, dgsam_with_one_domain_equals_sam_bitwise);
    tcase_add_test(tc, dgsam_two_domain_toy_matches_section_15_6);
    tcase_add_test(tc, dgsam_calls_follow_the_method_rng_and_update_from_pre_step_weights);
    tcase_add_test(tc, dgsam_with_rho_zero_equals_erm);
    tcase_add_test(tc, dgsam_state_save_load_continues_bit_for_bit);
    tcase_add_test(tc, dgsam_step_allocates_nothing);
    tcase_add_test(tc, dgsam_bad_values_are_config_errors);
    suite_add_tcase(s, tc);
    return s;
}
