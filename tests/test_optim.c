/* tests/test_optim.c -- the optimizer module (optimizers/dg_optim.h) against
 * docs/algorithms.md §14 (invariants) and §15 (toy problems): base optimizers
 * (closed forms in double, §15.1 values, decay exemptions, reset), schedules,
 * flat-vector helpers, Lookahead / LA for DG (§5.3, §15.3 cycles, hooks),
 * SAM and ASAM (§15.2, rho = 0, unscaled ASAM, restore by copy, call
 * pattern), state save -> load -> continue bit for bit, configuration
 * errors, no allocation in a step, thread-count independence.
 *
 * Closures are toy C functions on weighted quadratics
 * L(w) = 1/2 sum_i c_i (w_i - a_i)^2, g = c (.) (w - a), so no oneDNN is
 * involved. d = number of parameters. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "alloc_hook.h"
#include "common.h"
#include "optim_toy.h"
#include "optimizers/dg_optim.h"

/* ---- toy closure ----------------------------------------------------------- */

/* The §15 store: d = 2, one tensor, decay on, ASAM-scaled, w = (3, 4). */
static void make_ps_toy(dg_param_set *ps) {
    const size_t sizes[1] = {2};
    const unsigned flags[1] = {DG_PARAM_ASAM_SCALED};
    toy_make_ps(ps, 1, sizes, flags);
    ps->data[0] = 3.f;
    ps->data[1] = 4.f;
}

/* Three tensors (scaled weight, exempt bias, plain) with random w, a, c. */
static const size_t mix_sizes[3] = {7, 5, 3};
static const unsigned mix_flags[3] = {DG_PARAM_ASAM_SCALED, DG_PARAM_NO_DECAY, 0};
static float mix_a[15], mix_c[15], mix_w0[15];

static void make_ps_mix(dg_param_set *ps) {
    toy_make_ps(ps, 3, mix_sizes, mix_flags);
    fill_uniform(mix_w0, 15, 101, -1.f, 1.f);
    fill_uniform(mix_a, 15, 102, -1.f, 1.f);
    fill_uniform(mix_c, 15, 103, 0.5f, 2.f);
    memcpy(ps->data, mix_w0, sizeof(mix_w0));
}

/* Defaults with no momentum and no decay: the §15 setting. */
static dg_method_cfg cfg_plain(void) {
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    cfg.momentum = 0.0;
    cfg.weight_decay = 0.0;
    return cfg;
}

/* Steps t0 .. t0+n-1 at lr, the closure's epoch = t / 3. */
static void run_steps(dg_method *m, dg_param_set *ps, dg_closure *cl, long t0, long n,
        float lr) {
    for (long t = t0; t < t0 + n; t++) {
        cl->epoch = (int)(t / 3);
        dg_method_step(m, ps, cl, lr);
    }
}

#define ASSERT_BITWISE(got, exp, n, what) do { \
    for (size_t i_ = 0; i_ < (size_t)(n); i_++) \
        ck_assert_msg((got)[i_] == (exp)[i_], "%s: [%zu] %.9g != %.9g", (what), i_, \
                (double)(got)[i_], (double)(exp)[i_]); \
} while (0)

static void assert_close2(const float *got, double e0, double e1, double atol, double rtol,
        const char *what) {
    const double exp[2] = {e0, e1};
    dg_cmp c = dg_compare_f32(got, exp, 2, atol, rtol);
    ck_assert_msg(c.ok, "%s: got (%.9g, %.9g) exp (%.9g, %.9g)", what, (double)got[0],
            (double)got[1], e0, e1);
}

/* ---- base optimizers (§3, §14 invariants 1-6, §15.1) ---------------------- */

START_TEST(sgd_plain_step_is_w_minus_lr_g_bitwise) {
    dg_param_set ps;
    make_ps_mix(&ps);
    dg_method_cfg cfg = cfg_plain();
    dg_method *m = toy_make_method("erm", "sgd", &cfg, &ps);
    ck_assert_ptr_null(m->base->state[0]); /* no momentum buffer when mu = 0 */
    ck_assert_ptr_null(m->base->state[1]);
    toy t;
    dg_closure cl;
    toy_init(&t, &cl, &ps, mix_a, mix_c);
    float exp[15];
    for (int s = 0; s < 3; s++) {
        for (size_t i = 0; i < 15; i++) {
            const float g = mix_c[i] * (ps.data[i] - mix_a[i]);
            exp[i] = ps.data[i] - 0.3f * g;
        }
        dg_method_step(m, &ps, &cl, 0.3f);
        ASSERT_BITWISE(ps.data, exp, 15, "sgd");
    }
    dg_method_free(m);
    dg_params_free(&ps);
}
END_TEST

typedef struct toy_case {
    const char *base;
    double momentum;
    bool nesterov;
    double wd;
    double w1[2];
    double w2[2]; /* NAN: not given in §15.1 */
} toy_case;

START_TEST(base_toy_steps_match_section_15_1) {
    static const toy_case cases[] = {
        {"sgd", 0.0, false, 0.0, {2.7, 3.6}, {2.43, 3.24}},
        {"sgd", 0.0, false, 0.1, {2.67, 3.56}, {NAN, NAN}},
        {"sgd", 0.9, false, 0.0, {2.7, 3.6}, {2.16, 2.88}},
        {"sgd", 0.9, true, 0.0, {2.43, 3.24}, {1.7253, 2.3004}},
        {"adam", 0.0, false, 0.0, {2.90000000033, 3.90000000025},
                {2.80010270775, 3.80007399533}},
        {"adam", 0.0, false, 0.1, {2.90000000030, 3.90000000023},
                {2.80010270769, 3.80007399529}},
        {"adamw", 0.0, false, 0.1, {2.87000000033, 3.86000000025},
                {2.74143994124, 3.72150870073}},
    };
    for (size_t k = 0; k < DG_ARRAY_LEN(cases); k++) {
        const toy_case *tc = &cases[k];
        dg_param_set ps;
        make_ps_toy(&ps);
        dg_method_cfg cfg = cfg_plain();
        cfg.momentum = tc->momentum;
        cfg.nesterov = tc->nesterov;
        cfg.weight_decay = tc->wd;
        dg_method *m = toy_make_method("erm", tc->base, &cfg, &ps);
        toy t;
        dg_closure cl;
        toy_init(&t, &cl, &ps, NULL, NULL);
        char what[64];
        snprintf(what, sizeof(what), "case %zu (%s) w1", k, tc->base);
        dg_method_step(m, &ps, &cl, 0.1f);
        assert_close2(ps.data, tc->w1[0], tc->w1[1], 1e-7, 1e-6, what);
        if (!isnan(tc->w2[0])) {
            what[strlen(what) - 1] = '2';
            dg_method_step(m, &ps, &cl, 0.1f);
            assert_close2(ps.data, tc->w2[0], tc->w2[1], 1e-7, 1e-6, what);
        }
        dg_method_free(m);
        dg_params_free(&ps);
    }
}
END_TEST

/* The §3 update rules written out in double. */
typedef struct ref_optim {
    int kind; /* 0 sgd, 1 adam, 2 adamw */
    double mu, wd, b1, b2, eps;
    bool nesterov;
    double b[15], m[15], v[15];
    long t;
} ref_optim;

static void ref_update(ref_optim *r, double *w, const double *g, const bool *decays,
        double lr) {
    r->t++;
    const double c1 = 1.0 - pow(r->b1, (double)r->t), c2 = 1.0 - pow(r->b2, (double)r->t);
    for (size_t i = 0; i < 15; i++) {
        const double lambda = decays[i] ? r->wd : 0.0;
        if (r->kind == 0) {
            double u = g[i] + lambda * w[i];
            if (r->mu != 0.0) {
                r->b[i] = r->mu * r->b[i] + u;
                u = r->nesterov ? u + r->mu * r->b[i] : r->b[i];
            }
            w[i] -= lr * u;
            continue;
        }
        double u = g[i];
        if (r->kind == 1) u += lambda * w[i];
        else w[i] *= 1.0 - lr * lambda;
        r->m[i] = r->b1 * r->m[i] + (1.0 - r->b1) * u;
        r->v[i] = r->b2 * r->v[i] + (1.0 - r->b2) * u * u;
        w[i] -= (lr / c1) * r->m[i] / (sqrt(r->v[i]) / sqrt(c2) + r->eps);
    }
}

START_TEST(base_steps_match_double_closed_forms) {
    static const struct {
        const char *base;
        int kind;
        double mu;
        bool nesterov;
        double wd;
        bool wd_all;
    } cases[] = {
        {"sgd", 0, 0.9, false, 0.01, false}, {"sgd", 0, 0.9, true, 0.01, true},
        {"sgd", 0, 0.0, false, 0.1, false},  {"adam", 1, 0.0, false, 0.1, false},
        {"adam", 1, 0.0, false, 0.1, true},  {"adamw", 2, 0.0, false, 0.1, false},
        {"adamw", 2, 0.0, false, 0.1, true},
    };
    for (size_t k = 0; k < DG_ARRAY_LEN(cases); k++) {
        dg_param_set ps;
        make_ps_mix(&ps);
        dg_method_cfg cfg = cfg_plain();
        cfg.momentum = cases[k].mu;
        cfg.nesterov = cases[k].nesterov;
        cfg.weight_decay = cases[k].wd;
        cfg.wd_all = cases[k].wd_all;
        cfg.beta1 = 0.8; /* not the defaults, so a swapped beta shows */
        cfg.beta2 = 0.99;
        dg_method *m = toy_make_method("erm", cases[k].base, &cfg, &ps);
        toy t;
        dg_closure cl;
        toy_init(&t, &cl, &ps, mix_a, mix_c);
        ref_optim r;
        memset(&r, 0, sizeof(r));
        r.kind = cases[k].kind;
        r.mu = cases[k].mu;
        r.nesterov = cases[k].nesterov;
        r.wd = cases[k].wd;
        r.b1 = 0.8;
        r.b2 = 0.99;
        r.eps = 1e-8;
        double w[15], g[15];
        bool decays[15];
        for (size_t i = 0; i < 15; i++) {
            w[i] = mix_w0[i];
            decays[i] = cases[k].wd_all || !(i >= 7 && i < 12);
        }
        for (int s = 0; s < 3; s++) {
            const float lr = 0.05f * (float)(s + 1);
            for (size_t i = 0; i < 15; i++) g[i] = mix_c[i] * (w[i] - mix_a[i]);
            ref_update(&r, w, g, decays, lr);
            dg_method_step(m, &ps, &cl, lr);
            dg_cmp c = dg_compare_f32(ps.data, w, 15, 1e-6, 1e-5);
            ck_assert_msg(c.ok, "case %zu step %d: [%zu] got %.9g exp %.9g", k, s,
                    c.first_bad, (double)ps.data[c.first_bad], w[c.first_bad]);
        }
        ck_assert_int_eq(m->base->t, 3);
        dg_method_free(m);
        dg_params_free(&ps);
    }
}
END_TEST

/* Runs `steps` ERM steps of base `name` with cfg from w = mix_w0; out gets w. */
static void run_erm(const char *base, const dg_method_cfg *cfg, int steps, float *out) {
    dg_param_set ps;
    make_ps_mix(&ps);
    dg_method *m = toy_make_method("erm", base, cfg, &ps);
    toy t;
    dg_closure cl;
    toy_init(&t, &cl, &ps, mix_a, mix_c);
    run_steps(m, &ps, &cl, 0, steps, 0.01f);
    memcpy(out, ps.data, 15 * sizeof(float));
    dg_method_free(m);
    dg_params_free(&ps);
}

START_TEST(adamw_without_decay_equals_adam_bitwise) {
    dg_method_cfg cfg = cfg_plain();
    float a[15], b[15];
    run_erm("adam", &cfg, 10, a);
    run_erm("adamw", &cfg, 10, b);
    ASSERT_BITWISE(b, a, 15, "adamw vs adam");
    cfg.weight_decay = 0.1; /* the comparison can fail */
    run_erm("adamw", &cfg, 10, b);
    ck_assert(memcmp(a, b, sizeof(a)) != 0);
}
END_TEST

START_TEST(reset_reproduces_a_fresh_optimizer_bitwise) {
    const char *bases[3] = {"sgd", "adam", "adamw"};
    for (int k = 0; k < 3; k++) {
        dg_method_cfg cfg = cfg_plain();
        cfg.momentum = 0.9;
        cfg.weight_decay = 0.01;
        float fresh[15];
        run_erm(bases[k], &cfg, 4, fresh);
        dg_param_set ps;
        make_ps_mix(&ps);
        dg_method *m = toy_make_method("erm", bases[k], &cfg, &ps);
        toy t;
        dg_closure cl;
        toy_init(&t, &cl, &ps, mix_a, mix_c);
        run_steps(m, &ps, &cl, 0, 3, 0.01f);
        m->base->ops->reset(m->base);
        ck_assert_int_eq(m->base->t, 0);
        memcpy(ps.data, mix_w0, sizeof(mix_w0));
        run_steps(m, &ps, &cl, 0, 4, 0.01f);
        ASSERT_BITWISE(ps.data, fresh, 15, bases[k]);
        dg_method_free(m);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(no_decay_tensors_update_as_if_decay_were_zero) {
    const char *bases[3] = {"sgd", "adam", "adamw"};
    for (int k = 0; k < 3; k++) {
        dg_method_cfg cfg = cfg_plain();
        cfg.momentum = 0.9;
        float zero[15], exempt[15], all[15];
        run_erm(bases[k], &cfg, 3, zero);
        cfg.weight_decay = 0.1;
        cfg.wd_all = false;
        run_erm(bases[k], &cfg, 3, exempt);
        cfg.wd_all = true;
        run_erm(bases[k], &cfg, 3, all);
        /* tensor t1 (elements 7..11) carries DG_PARAM_NO_DECAY */
        ASSERT_BITWISE(exempt + 7, zero + 7, 5, bases[k]);
        ck_assert(memcmp(exempt, zero, 7 * sizeof(float)) != 0);
        ck_assert(memcmp(exempt + 12, zero + 12, 3 * sizeof(float)) != 0);
        ck_assert(memcmp(all + 7, zero + 7, 5 * sizeof(float)) != 0);
        ASSERT_BITWISE(all, exempt, 7, bases[k]);
    }
}
END_TEST

/* ---- schedules (§4, §14 invariant 7) ------------------------------------- */

START_TEST(schedules_match_closed_forms) {
    const double eta = 0.01;
    dg_sched s = {.kind = DG_SCHED_POLY, .lr = eta, .power = 0.9, .total = 100};
    ck_assert(dg_sched_lr(&s, 0) == (float)eta);
    ck_assert(dg_sched_lr(&s, 50) == (float)(eta * pow(0.5, 0.9)));
    ck_assert(dg_sched_lr(&s, 99) == (float)(eta * pow(0.01, 0.9)));
    s.kind = DG_SCHED_COSINE;
    s.lr_min = 0.001;
    ck_assert(dg_sched_lr(&s, 0) == (float)eta);
    ck_assert(fabsf(dg_sched_lr(&s, 50) - (float)((eta + 0.001) / 2)) <= 1e-9f);
    ck_assert(fabsf(dg_sched_lr(&s, 25) -
                    (float)(0.001 + (eta - 0.001) * (1 + cos(0.78539816339744830962)) / 2)) <= 1e-9f);
    s.kind = DG_SCHED_CONSTANT;
    ck_assert(dg_sched_lr(&s, 0) == (float)eta && dg_sched_lr(&s, 77) == (float)eta);
    /* warm-up W = 10: lr(0) = eta/W, lr(W-1) = eta, then the schedule on T - W */
    s.kind = DG_SCHED_POLY;
    s.warmup = 10;
    ck_assert(dg_sched_lr(&s, 0) == (float)(eta / 10));
    ck_assert(dg_sched_lr(&s, 4) == (float)(eta * 5 / 10));
    ck_assert(dg_sched_lr(&s, 9) == (float)eta);
    ck_assert(dg_sched_lr(&s, 10) == (float)eta);
    ck_assert(dg_sched_lr(&s, 55) == (float)(eta * pow(0.5, 0.9)));
    dg_sched_kind kind;
    ck_assert_int_eq(dg_sched_parse("cosine", &kind), DG_STATUS_OK);
    ck_assert_int_eq(kind, DG_SCHED_COSINE);
    capture cap;
    capture_begin(&cap);
    const dg_status st = dg_sched_parse("step", &kind);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(log, "poly, cosine, constant"));
    dg_free(log);
}
END_TEST

START_TEST(lookahead_per_cycle_schedule_is_constant_within_a_cycle) {
    dg_param_set ps;
    make_ps_toy(&ps);
    dg_method_cfg cfg = cfg_plain();
    cfg.la_k = 5;
    cfg.la_schedule_per_cycle = true;
    dg_method *m = toy_make_method("lookahead", "sgd", &cfg, &ps);
    const dg_sched s = {.kind = DG_SCHED_POLY, .lr = 0.05, .power = 0.9, .total = 40};
    for (long t = 0; t < 40; t++) {
        const float lr = dg_sched_lr(&s, dg_method_sched_step(m, t));
        ck_assert(lr == (float)(0.05 * pow(1.0 - (double)(t / 5) / 40.0, 0.9)));
        if (t % 5) ck_assert(lr == dg_sched_lr(&s, dg_method_sched_step(m, t - 1)));
    }
    dg_method_free(m);
    cfg.la_schedule_per_cycle = false;
    m = toy_make_method("lookahead", "sgd", &cfg, &ps);
    ck_assert_int_eq(dg_method_sched_step(m, 17), 17);
    dg_method_free(m);
    dg_params_free(&ps);
}
END_TEST

/* ---- flat vectors --------------------------------------------------------- */

START_TEST(vec_helpers_are_exact_and_thread_independent) {
    const size_t n = 300007;
    float *a = dg_xmalloc(n * sizeof(float)), *b = dg_xmalloc(n * sizeof(float));
    float *y = dg_xmalloc(n * sizeof(float));
    fill_uniform(a, n, 5, -1.f, 1.f);
    fill_uniform(b, n, 6, -1.f, 1.f);
    double ref = 0.0, ref2 = 0.0;
    for (size_t i = 0; i < n; i++) ref += (double)a[i] * b[i], ref2 += (double)a[i] * a[i];
    omp_set_num_threads(1);
    const double d1 = dg_vec_dot(a, b, n), n1 = dg_vec_norm2(a, n);
    omp_set_num_threads(2);
    const double d2 = dg_vec_dot(a, b, n), n2 = dg_vec_norm2(a, n);
    ck_assert(d1 == d2 && n1 == n2);
    ck_assert_msg(fabs(d1 - ref) <= 1e-12 * ref2, "dot %.17g ref %.17g", d1, ref);
    ck_assert(fabs(n1 - sqrt(ref2)) <= 1e-12 * sqrt(ref2));
    ck_assert(dg_vec_dot(a, b, 0) == 0.0);
    ck_assert(dg_vec_norm2(a, 1) == fabs((double)a[0]));
    memcpy(y, b, n * sizeof(float));
    dg_vec_axpy(y, 0.25f, a, n);
    for (size_t i = 0; i < n; i++) ck_assert(y[i] == b[i] + 0.25f * a[i]);
    dg_vec_copy(y, a, n);
    ck_assert(memcmp(y, a, n * sizeof(float)) == 0);
    dg_free(a), dg_free(b), dg_free(y);
}
END_TEST

/* ---- Lookahead (§5, §14 invariants 8-13, §15.3) --------------------------- */

/* Runs `steps` steps of method/base from mix_w0; out gets w, eval gets the
 * evaluated weights (both 15 floats). */
static void run_mix(const char *method, const char *base, const dg_method_cfg *cfg, int steps,
        float *out, float *eval) {
    dg_param_set ps;
    make_ps_mix(&ps);
    dg_method *m = toy_make_method(method, base, cfg, &ps);
    toy t;
    dg_closure cl;
    toy_init(&t, &cl, &ps, mix_a, mix_c);
    run_steps(m, &ps, &cl, 0, steps, 0.05f);
    memcpy(out, ps.data, 15 * sizeof(float));
    if (eval) {
        const float *p, *s;
        dg_method_eval_weights(m, &ps, &p, &s);
        ck_assert_ptr_eq(s, ps.stats);
        memcpy(eval, p, 15 * sizeof(float));
    }
    dg_method_free(m);
    dg_params_free(&ps);
}

static dg_method_cfg cfg_la(long k, double alpha, dg_la_endpoint e, dg_la_reg reg,
        double strength) {
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    cfg.weight_decay = 0.01;
    cfg.la_k = k;
    cfg.la_alpha = alpha;
    cfg.la_endpoint = e;
    cfg.la_reg = reg;
    cfg.la_reg_strength = strength;
    return cfg;
}

START_TEST(lookahead_alpha_one_equals_base_optimizer) {
    const char *bases[2] = {"sgd", "adam"};
    for (int k = 0; k < 2; k++) {
        dg_method_cfg cfg = cfg_la(4, 1.0, DG_LA_ENDPOINT_LAST, DG_LA_REG_NONE, 0.01);
        float la[15], la_eval[15], erm[15];
        run_mix("lookahead", bases[k], &cfg, 12, la, la_eval);
        run_mix("erm", bases[k], &cfg, 12, erm, NULL);
        ASSERT_BITWISE(la, erm, 15, bases[k]);
        ASSERT_BITWISE(la_eval, erm, 15, "phi after the sync");
        cfg.la_endpoint = DG_LA_ENDPOINT_MEAN; /* §5.3 pitfall 3: mean jumps */
        run_mix("lookahead", bases[k], &cfg, 12, la, NULL);
        ck_assert(memcmp(la, erm, sizeof(la)) != 0);
    }
}
END_TEST

START_TEST(lookahead_alpha_zero_returns_to_the_cycle_start) {
    dg_param_set ps;
    make_ps_mix(&ps);
    dg_method_cfg cfg = cfg_la(3, 0.0, DG_LA_ENDPOINT_MEAN, DG_LA_REG_NONE, 0.01);
    dg_method *m = toy_make_method("lookahead", "sgd", &cfg, &ps);
    toy t;
    dg_closure cl;
    toy_init(&t, &cl, &ps, mix_a, mix_c);
    for (long c = 0; c < 3; c++) {
        run_steps(m, &ps, &cl, 3 * c, 2, 0.05f);
        ck_assert(memcmp(ps.data, mix_w0, sizeof(mix_w0)) != 0); /* fast weights moved */
        run_steps(m, &ps, &cl, 3 * c + 2, 1, 0.05f);
        ASSERT_BITWISE(ps.data, mix_w0, 15, "after sync");
    }
    ck_assert_int_eq(m->base->t, 9); /* base state still evolves */
    bool nonzero = false;
    for (size_t i = 0; i < 15; i++) nonzero |= m->base->state[0][i] != 0.f;
    ck_assert(nonzero);
    dg_method_free(m);
    dg_params_free(&ps);
}
END_TEST

START_TEST(lookahead_mean_endpoint_with_k1_equals_last) {
    dg_method_cfg cfg = cfg_la(1, 0.3, DG_LA_ENDPOINT_MEAN, DG_LA_REG_NONE, 0.01);
    float mean[15], last[15], erm[15];
    run_mix("lookahead", "adam", &cfg, 5, mean, NULL);
    cfg.la_endpoint = DG_LA_ENDPOINT_LAST;
    run_mix("lookahead", "adam", &cfg, 5, last, NULL);
    ASSERT_BITWISE(mean, last, 15, "k = 1");
    run_mix("erm", "adam", &cfg, 5, erm, NULL);
    ck_assert(memcmp(mean, erm, sizeof(erm)) != 0);
}
END_TEST

START_TEST(lookahead_neutral_regularisers_equal_none) {
    float none[15], got[15];
    dg_method_cfg cfg = cfg_la(3, 0.5, DG_LA_ENDPOINT_MEAN, DG_LA_REG_NONE, 0.0);
    run_mix("lookahead", "sgd", &cfg, 7, none, NULL);
    for (int r = DG_LA_REG_AVERAGE; r <= DG_LA_REG_HISTORY; r++) {
        cfg.la_reg = (dg_la_reg)r; /* strength 0 */
        run_mix("lookahead", "sgd", &cfg, 7, got, NULL);
        ASSERT_BITWISE(got, none, 15, "strength 0");
    }
    for (long k = 1; k <= 2; k++) {
        cfg = cfg_la(k, 0.5, DG_LA_ENDPOINT_MEAN, DG_LA_REG_NONE, 0.5);
        run_mix("lookahead", "sgd", &cfg, 7, none, NULL);
        cfg.la_reg = DG_LA_REG_HISTORY;
        run_mix("lookahead", "sgd", &cfg, 7, got, NULL);
        ASSERT_BITWISE(got, none, 15, "history with k <= 2");
        cfg.la_reg = DG_LA_REG_AVERAGE; /* active from inner step 1: differs */
        run_mix("lookahead", "sgd", &cfg, 7, got, NULL);
        if (k == 2) ck_assert(memcmp(got, none, sizeof(none)) != 0);
    }
    cfg = cfg_la(3, 0.5, DG_LA_ENDPOINT_MEAN, DG_LA_REG_HISTORY, 0.5);
    run_mix("lookahead", "sgd", &cfg, 7, got, NULL);
    cfg.la_reg = DG_LA_REG_NONE;
    run_mix("lookahead", "sgd", &cfg, 7, none, NULL);
    ck_assert(memcmp(got, none, sizeof(none)) != 0); /* k = 3: history is active */
}
END_TEST

START_TEST(lookahead_regulariser_gradient_scales_as_one_over_d) {
    float a2[6], c2[6];
    const float a1[3] = {0.5f, -1.f, 2.f}, c1[3] = {1.f, 0.5f, 2.f};
    for (int i = 0; i < 6; i++) a2[i] = a1[i % 3], c2[i] = c1[i % 3];
    for (int r = DG_LA_REG_AVERAGE; r <= DG_LA_REG_HISTORY; r++) {
        float traj1[12][3], traj2[12][6];
        for (int dup = 0; dup < 2; dup++) {
            dg_param_set ps;
            const size_t sizes[2] = {3, 3};
            const unsigned flags[2] = {0, 0};
            toy_make_ps(&ps, dup ? 2 : 1, sizes, flags);
            for (size_t i = 0; i < ps.d; i++) ps.data[i] = 1.f - 0.25f * (float)(i % 3);
            dg_method_cfg cfg = cfg_la(4, 0.5, DG_LA_ENDPOINT_MEAN, (dg_la_reg)r,
                    dup ? 0.6 : 0.3);
            dg_method *m = toy_make_method("lookahead", "sgd", &cfg, &ps);
            toy t;
            dg_closure cl;
            toy_init(&t, &cl, &ps, dup ? a2 : a1, dup ? c2 : c1);
            for (long s = 0; s < 12; s++) {
                run_steps(m, &ps, &cl, s, 1, 0.3f);
                memcpy(dup ? traj2[s] : traj1[s], ps.data, ps.d * sizeof(float));
            }
            dg_method_free(m);
            dg_params_free(&ps);
        }
        for (long s = 0; s < 12; s++) {
            double exp[6];
            for (int i = 0; i < 6; i++) exp[i] = traj1[s][i % 3];
            DG_ASSERT_CLOSE(traj2[s], exp, 6, 1e-6, 1e-6);
        }
    }
}
END_TEST

/* One §15.3 configuration: fast weights seen by the closure at steps 2 and
 * 3 (w1, w2), the post-step w3 (alpha = 1, endpoint last), h (alpha = 1,
 * endpoint mean), and the slow weight after the sync (alpha = 0.5). */
static float la_toy_run(size_t d, double strength, dg_la_reg reg, dg_la_endpoint e,
        double alpha, float *w1, float *w2) {
    dg_param_set ps;
    const size_t sizes[1] = {d};
    const unsigned flags[1] = {0};
    toy_make_ps(&ps, 1, sizes, flags);
    for (size_t i = 0; i < d; i++) ps.data[i] = 1.f;
    dg_method_cfg cfg = cfg_plain();
    cfg.la_k = 3;
    cfg.la_alpha = alpha;
    cfg.la_endpoint = e;
    cfg.la_reg = reg;
    cfg.la_reg_strength = strength;
    dg_method *m = toy_make_method("lookahead", "sgd", &cfg, &ps);
    toy t;
    dg_closure cl;
    toy_init(&t, &cl, &ps, NULL, NULL);
    run_steps(m, &ps, &cl, 0, 3, 0.5f);
    ck_assert_int_eq(t.n_calls, 3);
    for (size_t i = 1; i < d; i++) ck_assert(ps.data[i] == ps.data[0]);
    if (w1) *w1 = t.seen[1][0];
    if (w2) *w2 = t.seen[2][0];
    const float *p, *s;
    dg_method_eval_weights(m, &ps, &p, &s);
    ck_assert(p[0] == ps.data[0]); /* after a sync w = phi */
    const float out = ps.data[0];
    dg_method_free(m);
    dg_params_free(&ps);
    return out;
}

START_TEST(lookahead_toy_cycles_match_section_15_3) {
    static const struct {
        dg_la_reg reg;
        dg_la_endpoint e;
        double w1, w2, w3, h, slow; /* h NAN: not allocated / not listed */
    } rows[] = {
        {DG_LA_REG_NONE, DG_LA_ENDPOINT_LAST, 0.5, 0.25, 0.125, NAN, 0.5625},
        {DG_LA_REG_NONE, DG_LA_ENDPOINT_MEAN, 0.5, 0.25, 0.125, 0.2916667, 0.6458333},
        {DG_LA_REG_HISTORY, DG_LA_ENDPOINT_LAST, 0.5, 0.25, 0.1875, NAN, 0.59375},
        {DG_LA_REG_HISTORY, DG_LA_ENDPOINT_MEAN, 0.5, 0.25, 0.1875, 0.3125, 0.65625},
        {DG_LA_REG_AVERAGE, DG_LA_ENDPOINT_LAST, 0.5, 0.5, 0.5, NAN, 0.75},
        {DG_LA_REG_AVERAGE, DG_LA_ENDPOINT_MEAN, 0.5, 0.5, 0.5, 0.5, 0.75},
    };
    for (size_t d = 1; d <= 2; d++) {
        const double strength = d == 2 ? 1.0 : 0.5;
        for (size_t k = 0; k < DG_ARRAY_LEN(rows); k++) {
            float got[5];
            const double exp[5] = {rows[k].w1, rows[k].w2, rows[k].w3,
                    isnan(rows[k].h) ? rows[k].w3 : rows[k].h, rows[k].slow};
            got[4] = la_toy_run(d, strength, rows[k].reg, rows[k].e, 0.5, &got[0], &got[1]);
            got[2] = la_toy_run(d, strength, rows[k].reg, DG_LA_ENDPOINT_LAST, 1.0, NULL, NULL);
            got[3] = isnan(rows[k].h) ? got[2]
                    : la_toy_run(d, strength, rows[k].reg, DG_LA_ENDPOINT_MEAN, 1.0, NULL, NULL);
            dg_cmp c = dg_compare_f32(got, exp, 5, 1e-6, 1e-6);
            ck_assert_msg(c.ok, "d %zu row %zu: item %zu got %.9g exp %.9g", d, k, c.first_bad,
                    (double)got[c.first_bad], exp[c.first_bad]);
        }
    }
}
END_TEST

START_TEST(lookahead_hooks_follow_section_5_3) {
    dg_param_set ps;
    make_ps_mix(&ps);
    dg_method_cfg cfg = cfg_la(2, 0.5, DG_LA_ENDPOINT_MEAN, DG_LA_REG_NONE, 0.01);
    cfg.la_bn_refresh_final = 37;
    dg_method *m = toy_make_method("lookahead", "sgd", &cfg, &ps);
    toy t;
    dg_closure cl;
    toy_init(&t, &cl, &ps, mix_a, mix_c);
    /* epochs: t / 3, syncs after steps 1, 3, 5, 7 (epochs 0, 1, 1, 2) */
    const float *p, *s;
    run_steps(m, &ps, &cl, 0, 3, 0.05f);
    dg_method_eval_weights(m, &ps, &p, &s);
    ck_assert_ptr_eq(p, m->buf[0]);
    ck_assert(memcmp(p, ps.data, 15 * sizeof(float)) != 0); /* mid-cycle: phi != w */
    ck_assert_int_eq(t.n_refresh, 0);
    run_steps(m, &ps, &cl, 3, 1, 0.05f); /* sync in epoch 1 */
    ck_assert_int_eq(t.n_refresh, 1);
    ck_assert_ptr_eq(t.refresh_params[0], ps.data);
    ck_assert(t.refresh_w0[0] == m->buf[0][0]);
    ck_assert_int_eq(t.refresh_batches[0], 4);
    ck_assert_int_eq(t.refresh_mode[0], DG_BN_REFRESH_MOMENTUM);
    run_steps(m, &ps, &cl, 4, 2, 0.05f); /* sync in epoch 1 again: none */
    ck_assert_int_eq(t.n_refresh, 1);
    run_steps(m, &ps, &cl, 6, 3, 0.05f); /* sync at step 7, epoch 2 */
    ck_assert_int_eq(t.n_refresh, 2);
    ck_assert_int_eq(t.n_calls, 9);
    for (int i = 0; i < 9; i++) {
        ck_assert_int_eq(t.domain[i], DG_DOMAIN_ALL);
        ck_assert_uint_eq(t.flags[i], DG_CLOSURE_BN_UPDATE);
    }
    dg_method_finish(m, &ps, &cl);
    ck_assert_int_eq(t.n_refresh, 3);
    ck_assert_ptr_eq(t.refresh_params[2], m->buf[0]);
    ck_assert_int_eq(t.refresh_batches[2], 37);
    dg_method_free(m);

    /* la_bn_refresh = false: no refresh; la_momentum = reset: state zeroed */
    memcpy(ps.data, mix_w0, sizeof(mix_w0));
    cfg.la_bn_refresh = false;
    cfg.la_momentum = DG_LA_MOMENTUM_RESET;
    m = toy_make_method("lookahead", "adam", &cfg, &ps);
    toy_init(&t, &cl, &ps, mix_a, mix_c);
    run_steps(m, &ps, &cl, 0, 1, 0.05f);
    ck_assert_int_eq(m->base->t, 1);
    run_steps(m, &ps, &cl, 1, 7, 0.05f); /* ends on the sync after step 7 */
    dg_method_finish(m, &ps, &cl);
    ck_assert_int_eq(t.n_refresh, 0);
    ck_assert_int_eq(m->base->t, 0);
    for (size_t i = 0; i < 15; i++) ck_assert(m->base->state[0][i] == 0.f);
    dg_method_free(m);
    dg_params_free(&ps);
}
END_TEST

/* ---- SAM and ASAM (§7, §8, §14 invariants 17-19, 24, §15.2) --------------- */

START_TEST(sam_and_asam_toy_steps_match_section_15_2) {
    static const struct {
        const char *method;
        double rho, eta;
        double perturbed[2], w1[2];
    } cases[] = {
        {"sam", 0.05, 0.0, {3.03, 4.04}, {2.697, 3.596}},
        {"asam", 0.5, 0.0, {3.7353919, 5.7431511}, {2.6264608, 3.4256849}},
        {"asam", 0.5, 0.01, {3.7383089, 5.7471598}, {2.6261691, 3.4252840}},
    };
    for (size_t k = 0; k < DG_ARRAY_LEN(cases); k++) {
        dg_param_set ps;
        make_ps_toy(&ps);
        dg_method_cfg cfg = cfg_plain();
        cfg.sam_rho = cases[k].rho;
        cfg.asam_rho = cases[k].rho;
        cfg.asam_eta = cases[k].eta;
        dg_method *m = toy_make_method(cases[k].method, "sgd", &cfg, &ps);
        toy t;
        dg_closure cl;
        toy_init(&t, &cl, &ps, NULL, NULL);
        dg_method_step(m, &ps, &cl, 0.1f);
        ck_assert_int_eq(t.n_calls, 2);
        assert_close2(t.seen[0], 3.0, 4.0, 0.0, 0.0, "first call at w0");
        assert_close2(t.seen[1], cases[k].perturbed[0], cases[k].perturbed[1], 1e-6, 1e-6,
                "w0 + eps");
        assert_close2(ps.data, cases[k].w1[0], cases[k].w1[1], 1e-6, 1e-6, "w1");
        dg_method_free(m);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(sam_with_rho_zero_equals_erm_bitwise) {
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg); /* momentum 0.9, decay 5e-4 */
    cfg.sam_rho = 0.0;
    cfg.asam_rho = 0.0;
    float erm[15], got[15];
    run_mix("erm", "sgd", &cfg, 5, erm, NULL);
    run_mix("sam", "sgd", &cfg, 5, got, NULL);
    ASSERT_BITWISE(got, erm, 15, "sam rho 0");
    run_mix("asam", "sgd", &cfg, 5, got, NULL);
    ASSERT_BITWISE(got, erm, 15, "asam rho 0");
    cfg.sam_rho = 0.05;
    run_mix("sam", "sgd", &cfg, 5, got, NULL);
    ck_assert(memcmp(got, erm, sizeof(erm)) != 0);
}
END_TEST

START_TEST(asam_on_unscaled_tensors_equals_sam_bitwise) {
    const size_t sizes[3] = {7, 5, 3};
    const unsigned flags[3] = {0, DG_PARAM_NO_DECAY, 0};
    float out[2][15];
    for (int k = 0; k < 2; k++) {
        dg_param_set ps;
        toy_make_ps(&ps, 3, sizes, flags);
        fill_uniform(ps.data, 15, 101, -1.f, 1.f);
        fill_uniform(mix_a, 15, 102, -1.f, 1.f);
        fill_uniform(mix_c, 15, 103, 0.5f, 2.f);
        dg_method_cfg cfg;
        dg_method_cfg_default(&cfg);
        cfg.sam_rho = 0.3;
        cfg.asam_rho = 0.3;
        dg_method *m = toy_make_method(k ? "asam" : "sam", "adam", &cfg, &ps);
        toy t;
        dg_closure cl;
        toy_init(&t, &cl, &ps, mix_a, mix_c);
        run_steps(m, &ps, &cl, 0, 4, 0.05f);
        memcpy(out[k], ps.data, sizeof(out[k]));
        dg_method_free(m);
        dg_params_free(&ps);
    }
    ASSERT_BITWISE(out[1], out[0], 15, "asam unscaled vs sam");
}
END_TEST

START_TEST(asam_at_zero_weights_equals_sam_with_radius_rho_eta) {
    const float a[2] = {3.f, 4.f};
    float out[2][2];
    for (int k = 0; k < 2; k++) {
        dg_param_set ps;
        make_ps_toy(&ps);
        ps.data[0] = ps.data[1] = 0.f;
        dg_method_cfg cfg = cfg_plain();
        cfg.sam_rho = 0.5 * 0.01;
        cfg.asam_rho = 0.5;
        cfg.asam_eta = 0.01;
        dg_method *m = toy_make_method(k ? "asam" : "sam", "sgd", &cfg, &ps);
        toy t;
        dg_closure cl;
        toy_init(&t, &cl, &ps, a, NULL);
        dg_method_step(m, &ps, &cl, 0.1f);
        memcpy(out[k], ps.data, sizeof(out[k]));
        dg_method_free(m);
        dg_params_free(&ps);
    }
    /* SAM radius 0.005: eps = -0.005 (0.6, 0.8); w1 = 0.1 (a - eps) */
    assert_close2(out[0], 0.3003, 0.4004, 1e-7, 1e-6, "sam");
    assert_close2(out[1], out[0][0], out[0][1], 1e-7, 1e-6, "asam vs sam");
}
END_TEST

START_TEST(sam_family_base_update_sees_pre_step_weights) {
    const char *methods[2] = {"sam", "asam"};
    for (int k = 0; k < 2; k++) {
        dg_param_set ps;
        make_ps_mix(&ps);
        dg_method_cfg cfg;
        dg_method_cfg_default(&cfg);
        cfg.sam_rho = 0.2;
        dg_method *m = toy_make_method(methods[k], "sgd", &cfg, &ps);
        dg_optim *twin = NULL;
        ck_assert_int_eq(dg_optim_create("sgd", &m->base->hp, &ps, &twin), DG_STATUS_OK);
        toy t;
        dg_closure cl;
        toy_init(&t, &cl, &ps, mix_a, mix_c);
        float w_pre[15];
        for (int s = 0; s < 3; s++) {
            memcpy(w_pre, ps.data, sizeof(w_pre));
            dg_method_step(m, &ps, &cl, 0.05f);
            /* ps.grad is the gradient at the perturbed point (second call) */
            twin->ops->update(twin, w_pre, ps.grad, 0.05f);
            ASSERT_BITWISE(ps.data, w_pre, 15, methods[k]);
            ck_assert(t.seen[2 * s + 1][0] != t.seen[2 * s][0]); /* perturbed */
        }
        ck_assert_int_eq(t.n_calls, 6);
        for (int i = 0; i < 6; i++) {
            ck_assert_int_eq(t.domain[i], DG_DOMAIN_ALL);
            ck_assert_uint_eq(t.flags[i], i % 2 ? 0u : (unsigned)DG_CLOSURE_BN_UPDATE);
        }
        dg_optim_free(twin);
        dg_method_free(m);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(erm_calls_the_closure_once_with_bn_update) {
    dg_param_set ps;
    make_ps_mix(&ps);
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    dg_method *m = toy_make_method("erm", "sgd", &cfg, &ps);
    toy t;
    dg_closure cl;
    toy_init(&t, &cl, &ps, mix_a, mix_c);
    run_steps(m, &ps, &cl, 0, 4, 0.05f);
    ck_assert_int_eq(t.n_calls, 4);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(t.domain[i], DG_DOMAIN_ALL);
        ck_assert_uint_eq(t.flags[i], DG_CLOSURE_BN_UPDATE);
    }
    ck_assert_int_eq(m->t, 4);
    const float *p, *s;
    dg_method_eval_weights(m, &ps, &p, &s);
    ck_assert(p == ps.data && s == ps.stats);
    dg_method_finish(m, &ps, &cl); /* no hook: nothing happens */
    ck_assert_int_eq(t.n_refresh, 0);
    dg_method_free(m);
    dg_params_free(&ps);
}
END_TEST

/* ---- the interface: names, state I/O, allocation, threads ------------------ */

typedef struct combo {
    const char *method;
    const char *base;
    void (*tweak)(dg_method_cfg *cfg);
} combo;

static void tweak_none(dg_method_cfg *cfg) { (void)cfg; }
static void tweak_la_hist(dg_method_cfg *cfg) {
    cfg->la_k = 4;
    cfg->la_alpha = 0.5;
    cfg->la_reg = DG_LA_REG_HISTORY;
    cfg->la_reg_strength = 0.3;
}
static void tweak_la_avg(dg_method_cfg *cfg) {
    cfg->la_k = 4;
    cfg->la_alpha = 0.3;
    cfg->la_endpoint = DG_LA_ENDPOINT_LAST;
    cfg->la_reg = DG_LA_REG_AVERAGE;
    cfg->la_reg_strength = 0.3;
    cfg->nesterov = true;
}
static void tweak_asam(dg_method_cfg *cfg) { cfg->momentum = 0.0; }

static const combo combos[] = {
    {"erm", "sgd", tweak_none},        {"erm", "adamw", tweak_none},
    {"lookahead", "adam", tweak_la_hist}, {"lookahead", "sgd", tweak_la_avg},
    {"sam", "adamw", tweak_none},      {"asam", "sgd", tweak_asam},
    {"asam", "adam", tweak_none},
};

static dg_method_cfg combo_cfg(const combo *c) {
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    cfg.weight_decay = 0.01;
    cfg.wd_all = false;
    c->tweak(&cfg);
    return cfg;
}

/* The state files live in a directory made by the unchecked fixture and
 * removed after the test case, even when a test fails. */
static char state_dir[64];
static void make_state_dir(void) { make_tmpdir(state_dir, "optim"); }
static void remove_state_dir(void) { remove_tree(state_dir, 0); }

START_TEST(state_save_load_continues_bit_for_bit) {
    char path[128];
    snprintf(path, sizeof(path), "%s/continue.safetensors", state_dir);
    for (size_t k = 0; k < DG_ARRAY_LEN(combos); k++) {
        const dg_method_cfg cfg = combo_cfg(&combos[k]);
        dg_param_set ps;
        make_ps_mix(&ps);
        dg_method *m = toy_make_method(combos[k].method, combos[k].base, &cfg, &ps);
        toy t;
        dg_closure cl;
        toy_init(&t, &cl, &ps, mix_a, mix_c);
        run_steps(m, &ps, &cl, 0, 6, 0.05f); /* mid-cycle for k = 4 */
        float w_saved[15];
        memcpy(w_saved, ps.data, sizeof(w_saved));
        dg_tensor_writer w;
        dg_tensor_writer_init(&w);
        ck_assert_int_eq(dg_method_state_save(m, &w), DG_STATUS_OK);
        ck_assert_int_eq(dg_tensor_writer_write(&w, path), DG_STATUS_OK);
        dg_tensor_writer_free(&w);
        run_steps(m, &ps, &cl, 6, 7, 0.05f);
        float ref[15], ref_eval[15];
        const float *p, *s;
        memcpy(ref, ps.data, sizeof(ref));
        dg_method_eval_weights(m, &ps, &p, &s);
        memcpy(ref_eval, p, sizeof(ref_eval));
        dg_method_free(m);

        /* a fresh method from other weights, then the checkpoint */
        fill_uniform(ps.data, 15, 999, -3.f, 3.f);
        dg_method *m2 = toy_make_method(combos[k].method, combos[k].base, &cfg, &ps);
        memcpy(ps.data, w_saved, sizeof(w_saved));
        dg_tensor_reader r;
        ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
        ck_assert_int_eq(dg_method_state_load(m2, &r), DG_STATUS_OK);
        char key[64];
        snprintf(key, sizeof(key), "optim.%s.step", combos[k].base);
        ck_assert_ptr_nonnull(dg_tensor_reader_find(&r, key));
        snprintf(key, sizeof(key), "optim.%s.step", combos[k].method);
        ck_assert_ptr_nonnull(dg_tensor_reader_find(&r, key));
        dg_tensor_reader_close(&r);
        ck_assert_int_eq(m2->t, 6);
        run_steps(m2, &ps, &cl, 6, 7, 0.05f);
        ASSERT_BITWISE(ps.data, ref, 15, combos[k].method);
        dg_method_eval_weights(m2, &ps, &p, &s);
        ASSERT_BITWISE(p, ref_eval, 15, "eval weights");
        dg_method_free(m2);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(state_load_reports_missing_and_misshapen_state) {
    char path[128];
    snprintf(path, sizeof(path), "%s/missing.safetensors", state_dir);
    dg_param_set ps;
    make_ps_mix(&ps);
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    dg_method *sam = toy_make_method("sam", "sgd", &cfg, &ps);
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    dg_method_state_save(sam, &w);
    ck_assert_int_eq(dg_tensor_writer_write(&w, path), DG_STATUS_OK);
    dg_tensor_writer_free(&w);
    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
    dg_method *la = toy_make_method("lookahead", "sgd", &cfg, &ps);
    capture cap;
    capture_begin(&cap);
    const dg_status st = dg_method_state_load(la, &r);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_MISSING);
    ck_assert_ptr_nonnull(strstr(log, "optim.lookahead"));
    dg_free(log);
    dg_method *adam = toy_make_method("sam", "adam", &cfg, &ps);
    capture_begin(&cap);
    ck_assert_int_eq(dg_method_state_load(adam, &r), DG_STATUS_ERR_MISSING);
    dg_free(capture_end(&cap));
    dg_tensor_reader_close(&r);
    dg_method_free(la);
    dg_method_free(adam);
    dg_method_free(sam);
    dg_params_free(&ps);

    /* the same names over a store of another size */
    make_ps_toy(&ps);
    dg_method *small = toy_make_method("sam", "sgd", &cfg, &ps);
    ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
    capture_begin(&cap);
    ck_assert_int_eq(dg_method_state_load(small, &r), DG_STATUS_ERR_SHAPE);
    dg_free(capture_end(&cap));
    dg_tensor_reader_close(&r);
    dg_method_free(small);
    dg_params_free(&ps);
}
END_TEST

/* dg_method_create must fail with DG_STATUS_ERR_CONFIG, logging `expect`. */
static void expect_config_error(const char *method, const char *base, const dg_method_cfg *cfg,
        const char *expect) {
    dg_param_set ps;
    make_ps_toy(&ps);
    toy_expect_config_error(method, base, cfg, &ps, expect);
    dg_params_free(&ps);
}

START_TEST(unknown_names_and_bad_values_are_config_errors) {
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    expect_config_error("foo", "sgd", &cfg, "valid: erm, lookahead, sam, asam");
    expect_config_error("saf", "sgd", &cfg, "n_samples");
    expect_config_error("erm", "rmsprop", &cfg, "valid: sgd, adam, adamw");
    expect_config_error("sam", "SGD", &cfg, "'SGD'");
    dg_method_cfg bad = cfg;
    bad.la_k = 0;
    expect_config_error("lookahead", "sgd", &bad, "optim.la_k");
    bad = cfg;
    bad.la_alpha = 1.5;
    expect_config_error("lookahead", "sgd", &bad, "optim.la_alpha");
    bad = cfg;
    bad.momentum = 1.0;
    expect_config_error("erm", "sgd", &bad, "optim.momentum");
    bad = cfg;
    bad.beta2 = 1.0;
    expect_config_error("erm", "adam", &bad, "optim.beta");
    bad = cfg;
    bad.sam_rho = -0.1;
    expect_config_error("sam", "sgd", &bad, "optim.sam_rho");
    bad = cfg;
    bad.weight_decay = -1.0;
    expect_config_error("asam", "adamw", &bad, "optim.weight_decay");
    /* keys of other methods are ignored */
    bad = cfg;
    bad.la_k = 0;
    dg_param_set ps;
    make_ps_toy(&ps);
    dg_method *m = toy_make_method("sam", "sgd", &bad, &ps);
    dg_method_free(m);
    dg_params_free(&ps);
}
END_TEST

START_TEST(defaults_follow_section_16) {
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    ck_assert(cfg.momentum == 0.9 && !cfg.nesterov && cfg.weight_decay == 5e-4 && cfg.wd_all);
    ck_assert(cfg.beta1 == 0.9 && cfg.beta2 == 0.999 && cfg.eps == 1e-8);
    ck_assert(cfg.la_k == 15 && cfg.la_alpha == 0.05 && cfg.la_endpoint == DG_LA_ENDPOINT_MEAN);
    ck_assert(cfg.la_reg == DG_LA_REG_NONE && cfg.la_reg_strength == 0.01);
    ck_assert(!cfg.la_schedule_per_cycle && cfg.la_momentum == DG_LA_MOMENTUM_KEEP);
    ck_assert(cfg.la_bn_refresh && cfg.la_bn_refresh_final == 500);
    ck_assert(cfg.sam_rho == 0.05 && cfg.asam_rho == 0.5 && cfg.asam_eta == 0.01);
    ck_assert(cfg.swad_n_converge == 3 && cfg.swad_n_tolerance == 6);
    ck_assert(cfg.lb_k == 2 && cfg.lb_alpha_adaptive && cfg.dgsam_rho == 0.05);
    ck_assert(cfg.saf_end_epoch == -1 && cfg.mesa_decay == 0.9998);
}
END_TEST

START_TEST(step_allocates_nothing) {
    for (size_t k = 0; k < DG_ARRAY_LEN(combos); k++) {
        const dg_method_cfg cfg = combo_cfg(&combos[k]);
        dg_param_set ps;
        make_ps_mix(&ps);
        dg_method *m = toy_make_method(combos[k].method, combos[k].base, &cfg, &ps);
        toy t;
        dg_closure cl;
        toy_init(&t, &cl, &ps, mix_a, mix_c);
        run_steps(m, &ps, &cl, 0, 1, 0.05f); /* warms the OpenMP pool */
        const uint64_t a0 = dg_alloc_count();
        dg_alloc_hook_begin();
        run_steps(m, &ps, &cl, 1, 11, 0.05f); /* includes syncs and refreshes */
        const float *p, *s;
        dg_method_eval_weights(m, &ps, &p, &s);
        (void)dg_method_sched_step(m, 11);
        dg_method_finish(m, &ps, &cl);
        const dg_alloc_counts heap = dg_alloc_hook_end();
        ck_assert_uint_eq(dg_alloc_count(), a0);
        if (dg_alloc_hook_available())
            ck_assert_msg(heap.own == 0, "%s: %llu allocations", combos[k].method,
                    (unsigned long long)heap.own);
        dg_method_free(m);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(results_do_not_depend_on_thread_count) {
    const size_t sizes[3] = {70001, 40000, 33};
    const unsigned flags[3] = {DG_PARAM_ASAM_SCALED, DG_PARAM_NO_DECAY, 0};
    const size_t d = 70001 + 40000 + 33;
    float *a = dg_xmalloc(d * sizeof(float)), *c = dg_xmalloc(d * sizeof(float));
    float *w0 = dg_xmalloc(d * sizeof(float));
    float *out[2], *ev[2];
    fill_uniform(a, d, 11, -1.f, 1.f);
    fill_uniform(c, d, 12, 0.5f, 2.f);
    fill_uniform(w0, d, 13, -1.f, 1.f);
    for (int k = 0; k < 2; k++) {
        out[k] = dg_xmalloc(d * sizeof(float));
        ev[k] = dg_xmalloc(d * sizeof(float));
    }
    for (size_t k = 0; k < DG_ARRAY_LEN(combos); k++) {
        const dg_method_cfg cfg = combo_cfg(&combos[k]);
        for (int th = 0; th < 2; th++) {
            omp_set_num_threads(th + 1);
            dg_param_set ps;
            toy_make_ps(&ps, 3, sizes, flags);
            memcpy(ps.data, w0, d * sizeof(float));
            dg_method *m = toy_make_method(combos[k].method, combos[k].base, &cfg, &ps);
            toy t;
            dg_closure cl;
            toy_init(&t, &cl, &ps, a, c);
            run_steps(m, &ps, &cl, 0, 6, 0.05f);
            const float *p, *s;
            dg_method_eval_weights(m, &ps, &p, &s);
            memcpy(out[th], ps.data, d * sizeof(float));
            memcpy(ev[th], p, d * sizeof(float));
            dg_method_free(m);
            dg_params_free(&ps);
        }
        ck_assert_msg(memcmp(out[0], out[1], d * sizeof(float)) == 0, "%s/%s",
                combos[k].method, combos[k].base);
        ck_assert(memcmp(ev[0], ev[1], d * sizeof(float)) == 0);
        ck_assert(memcmp(out[0], w0, d * sizeof(float)) != 0);
    }
    for (int k = 0; k < 2; k++) dg_free(out[k]), dg_free(ev[k]);
    dg_free(a), dg_free(c), dg_free(w0);
}
END_TEST

Suite *optim_suite(void) {
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("base");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, sgd_plain_step_is_w_minus_lr_g_bitwise);
    tcase_add_test(tc, base_toy_steps_match_section_15_1);
    tcase_add_test(tc, base_steps_match_double_closed_forms);
    tcase_add_test(tc, adamw_without_decay_equals_adam_bitwise);
    tcase_add_test(tc, reset_reproduces_a_fresh_optimizer_bitwise);
    tcase_add_test(tc, no_decay_tensors_update_as_if_decay_were_zero);
    tcase_add_test(tc, schedules_match_closed_forms);
    tcase_add_test(tc, vec_helpers_are_exact_and_thread_independent);
    suite_add_tcase(s, tc);

    tc = tcase_create("methods");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, lookahead_per_cycle_schedule_is_constant_within_a_cycle);
    tcase_add_test(tc, lookahead_alpha_one_equals_base_optimizer);
    tcase_add_test(tc, lookahead_alpha_zero_returns_to_the_cycle_start);
    tcase_add_test(tc, lookahead_mean_endpoint_with_k1_equals_last);
    tcase_add_test(tc, lookahead_neutral_regularisers_equal_none);
    tcase_add_test(tc, lookahead_regulariser_gradient_scales_as_one_over_d);
    tcase_add_test(tc, lookahead_toy_cycles_match_section_15_3);
    tcase_add_test(tc, lookahead_hooks_follow_section_5_3);
    tcase_add_test(tc, sam_and_asam_toy_steps_match_section_15_2);
    tcase_add_test(tc, sam_with_rho_zero_equals_erm_bitwise);
    tcase_add_test(tc, asam_on_unscaled_tensors_equals_sam_bitwise);
    tcase_add_test(tc, asam_at_zero_weights_equals_sam_with_radius_rho_eta);
    tcase_add_test(tc, sam_family_base_update_sees_pre_step_weights);
    tcase_add_test(tc, erm_calls_the_closure_once_with_bn_update);
    suite_add_tcase(s, tc);

    tc = tcase_create("interface");
    tcase_set_timeout(tc, 30);
    tcase_add_unchecked_fixture(tc, make_state_dir, remove_state_dir);
    tcase_add_test(tc, state_save_load_continues_bit_for_bit);
    tcase_add_test(tc, state_load_reports_missing_and_misshapen_state);
    tcase_add_test(tc, unknown_names_and_bad_values_are_config_errors);
    tcase_add_test(tc, defaults_follow_section_16);
    tcase_add_test(tc, step_allocates_nothing);
    tcase_add_test(tc, results_do_not_depend_on_thread_count);
    suite_add_tcase(s, tc);
    return s;
}
