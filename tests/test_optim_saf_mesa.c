/* tests/test_optim_saf_mesa.c -- SAF (optimizers/saf.c, docs/algorithms.md §11)
 * and MESA (optimizers/mesa.c, §12) against §14 invariants 24 and 26-29 and
 * the §15.7 KL toy: a hand-computed first active SAF step, the KL term and
 * its gradient through the real interface (dg_method_loss_term called from
 * the closure), zero term for equal logits, lambda = 0 and the epochs before
 * E_start + 1 equal ERM bit for bit, MESA's teacher with beta = 0 and 1
 * (statistics included), the teacher forward before the update and the EMA
 * after it, SAF's bank slots and tags (a sample skipped in epoch e - E
 * contributes nothing), MESA over the valid pixels of a segmentation batch,
 * the closure call pattern, second weights, state save -> load -> continue
 * bit for bit, no allocation in a step, thread-count independence and
 * configuration errors.
 *
 * The closure is a toy classifier: logits z[n][c][p] = sum_j W[c][j]
 * x[id_n][j][p] + s[c] with W = ps->data (C, D) and an untrained "BN shift"
 * s = ps->stats (C, optional) that a DG_CLOSURE_BN_UPDATE call moves toward
 * the batch mean of W x; loss = mean CE over the valid units (label != 255)
 * + the method's loss term, with the exact gradient. Rows of the data set
 * are addressed by sample id. Shape letters: N rows of the data set, B
 * samples in a batch, C classes, D inputs, P pixels per sample. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "alloc_hook.h"
#include "common.h"
#include "optim_toy.h"
#include "optimizers/dg_optim.h"

/* ---- the toy classifier closure ------------------------------------------- */

#define CLS_MAX_B 8
#define CLS_MAX_C 8
#define CLS_CALLS 64
#define CLS_SEEN 32

typedef struct cls_toy {
    dg_param_set *ps;     /* W = ps->data (C, D); s = ps->stats (C) or none */
    dg_method *m;         /* its loss term joins the loss (NULL: none) */
    const dg_closure *cl; /* the closure: its epoch goes to the loss term */
    int c, dim, rows, nb; /* C, D, N, B */
    long p;               /* P */
    const float *x;       /* (N, D, P) inputs, borrowed */
    const int32_t *label; /* (N, P) labels, 255 = ignore, borrowed */
    int64_t ids[CLS_MAX_B]; /* (B) sample ids of the current batch */
    int32_t *label_b;     /* (B, P) labels of the batch */
    float *z;             /* (B, C, P) logits of the last eval */
    float *diff;          /* (B, C, P) dL/dz after the loss term */
    float *diff_ce;       /* (B, C, P) dL/dz of the CE alone */
    float *zt;            /* (B, C, P) what the last infer wrote */
    double loss, term;    /* of the last eval */
    long n_valid;
    int n_eval, n_infer, n_seq;
    char seq[CLS_CALLS];  /* 'I' infer, 'E' eval, in call order */
    int domain[CLS_CALLS];
    unsigned flags[CLS_CALLS];
    const float *infer_params;  /* params of the last infer */
    const float *infer_stats;
    float infer_w[CLS_SEEN];    /* their first values at that call */
    float infer_s[CLS_MAX_C];
} cls_toy;

/* out <- W x + s for the batch; out: (B, C, P). */
static void cls_forward(const cls_toy *t, const float *W, const float *s, float *out) {
    const long P = t->p;
    for (int n = 0; n < t->nb; n++) {
        const float *xn = t->x + (size_t)t->ids[n] * t->dim * P;
        for (int c = 0; c < t->c; c++) {
            for (long p = 0; p < P; p++) {
                double acc = s ? s[c] : 0.0;
                for (int j = 0; j < t->dim; j++)
                    acc += (double)W[(size_t)c * t->dim + j] * xn[(size_t)j * P + p];
                out[((size_t)n * t->c + c) * P + p] = (float)acc;
            }
        }
    }
}

static double cls_eval(void *ctx, int domain, unsigned flags) {
    cls_toy *t = ctx;
    dg_param_set *ps = t->ps;
    const long P = t->p;
    const size_t C = (size_t)t->c, units = (size_t)t->nb * P;
    float *s = ps->n_stats ? ps->stats : NULL;
    if (t->n_seq < CLS_CALLS) t->seq[t->n_seq++] = 'E';
    if (t->n_eval < CLS_CALLS) {
        t->domain[t->n_eval] = domain;
        t->flags[t->n_eval] = flags;
    }
    t->n_eval++;
    cls_forward(t, ps->data, s, t->z);
    if (s && (flags & DG_CLOSURE_BN_UPDATE)) {
        for (size_t c = 0; c < C; c++) {
            double mean = 0.0;
            for (size_t u = 0; u < units; u++)
                mean += t->z[((u / P) * C + c) * P + u % P] - s[c];
            s[c] = 0.9f * s[c] + 0.1f * (float)(mean / (double)units);
        }
    }
    long n_valid = 0;
    for (size_t u = 0; u < units; u++) n_valid += t->label_b[u] != 255;
    double loss = 0.0;
    for (size_t u = 0; u < units; u++) {
        const size_t at = (u / P) * C * P + u % P;
        const int32_t y = t->label_b[u];
        if (y == 255) {
            for (size_t c = 0; c < C; c++) t->diff[at + c * P] = 0.f;
            continue;
        }
        double mx = -INFINITY, se = 0.0;
        for (size_t c = 0; c < C; c++) mx = fmax(mx, t->z[at + c * P]);
        for (size_t c = 0; c < C; c++) se += exp(t->z[at + c * P] - mx);
        loss += mx + log(se) - t->z[at + (size_t)y * P];
        for (size_t c = 0; c < C; c++) {
            const double q = exp(t->z[at + c * P] - mx) / se;
            t->diff[at + c * P] = (float)((q - (c == (size_t)y)) / (double)n_valid);
        }
    }
    memcpy(t->diff_ce, t->diff, units * C * sizeof(float));
    const dg_logits lz = {
        .z = t->z, .diff_z = t->diff, .label = t->label_b, .sample_id = t->ids,
        .n = t->nb, .c = t->c, .p = P, .n_valid = n_valid,
    };
    t->term = t->m ? dg_method_loss_term(t->m, &lz, t->cl->epoch) : 0.0;
    for (size_t c = 0; c < C; c++) {
        for (int j = 0; j < t->dim; j++) {
            double acc = 0.0;
            for (size_t u = 0; u < units; u++) {
                const size_t n = u / P, p = u % P;
                acc += (double)t->diff[(n * C + c) * P + p] *
                        t->x[((size_t)t->ids[n] * t->dim + j) * P + p];
            }
            ps->grad[c * t->dim + j] = (float)acc;
        }
    }
    t->n_valid = n_valid;
    t->loss = loss / (double)n_valid + t->term;
    return t->loss;
}

static void cls_infer(void *ctx, const float *params, const float *stats, float *logits) {
    cls_toy *t = ctx;
    if (t->n_seq < CLS_CALLS) t->seq[t->n_seq++] = 'I';
    t->n_infer++;
    t->infer_params = params;
    t->infer_stats = stats;
    for (size_t i = 0; i < CLS_SEEN && i < t->ps->d; i++) t->infer_w[i] = params[i];
    for (size_t i = 0; i < t->ps->n_stats; i++) t->infer_s[i] = stats[i];
    cls_forward(t, params, t->ps->n_stats ? stats : NULL, logits);
    memcpy(t->zt, logits, (size_t)t->nb * t->c * t->p * sizeof(float));
}

/* A store with W (C, D), all zero, and s (C) when with_stats. */
static void cls_make_ps(dg_param_set *ps, int C, int D, bool with_stats) {
    dg_params_init(ps);
    const int64_t wshape[2] = {C, D}, sshape[1] = {C};
    dg_params_add(ps, "w", 2, wshape, DG_PARAM_ASAM_SCALED, DG_INIT_CONST, 0.f);
    if (with_stats) dg_params_add_stat(ps, "s", 1, sshape, 0.f);
    dg_params_alloc(ps);
}

/* Sets t and cl up; batches of nb rows. */
static void cls_init(cls_toy *t, dg_closure *cl, dg_param_set *ps, int C, int D, long P, int rows,
        const float *x, const int32_t *label, int nb) {
    DG_ASSERT(nb <= CLS_MAX_B && C <= CLS_MAX_C && (size_t)C * D == ps->d);
    memset(t, 0, sizeof(*t));
    t->ps = ps;
    t->cl = cl;
    t->c = C;
    t->dim = D;
    t->p = P;
    t->rows = rows;
    t->nb = nb;
    t->x = x;
    t->label = label;
    const size_t n = (size_t)nb * C * P;
    t->label_b = dg_xcalloc((size_t)nb * P, sizeof(*t->label_b));
    t->z = dg_xcalloc(n, sizeof(float));
    t->diff = dg_xcalloc(n, sizeof(float));
    t->diff_ce = dg_xcalloc(n, sizeof(float));
    t->zt = dg_xcalloc(n, sizeof(float));
    memset(cl, 0, sizeof(*cl));
    cl->eval = cls_eval;
    cl->infer = cls_infer;
    cl->ctx = t;
    cl->n_domains = 1;
}

static void cls_free(cls_toy *t) {
    dg_free(t->label_b);
    dg_free(t->z);
    dg_free(t->diff);
    dg_free(t->diff_ce);
    dg_free(t->zt);
}

/* The batch: ids[0 .. nb-1] (nb <= the size given at init). */
static void cls_set_ids(cls_toy *t, const int64_t *ids, int nb) {
    t->nb = nb;
    for (int n = 0; n < nb; n++) {
        t->ids[n] = ids[n];
        memcpy(t->label_b + (size_t)n * t->p, t->label + (size_t)ids[n] * t->p,
                (size_t)t->p * sizeof(int32_t));
    }
}

/* Global steps g0 .. g1-1, `per` steps an epoch: step g is in epoch g/per
 * and takes rows (s*B + k + 3e) mod N, s = g mod per (every row once an epoch
 * when per*B = N). */
static void cls_run(cls_toy *t, dg_method *m, dg_closure *cl, long g0, long g1, int per,
        float lr) {
    const int nb = t->nb;
    for (long g = g0; g < g1; g++) {
        const int e = (int)(g / per), s = (int)(g % per);
        int64_t ids[CLS_MAX_B];
        for (int k = 0; k < nb; k++) ids[k] = (s * nb + k + 3 * e) % t->rows;
        cls_set_ids(t, ids, nb);
        cl->epoch = e;
        dg_method_step(m, t->ps, cl, lr);
    }
}

/* dg_method_create with seed 7; fails the test on an error. */
static dg_method *make_method(const char *name, const char *base, const dg_method_cfg *cfg,
        const dg_param_set *ps) {
    dg_method *m = NULL;
    const dg_status st = dg_method_create(name, base, cfg, ps, 7, &m);
    ck_assert_msg(st == DG_STATUS_OK, "%s/%s: %s", name, base, dg_status_str(st));
    ck_assert_ptr_nonnull(m);
    return m;
}

/* ---- the standard problem: N = 8 rows, B = 4, C = 3, D = 4, P = 1 ---------- */

#define STD_N 8
#define STD_C 3
#define STD_D 4
#define STD_B 4
static float std_x[STD_N * STD_D], std_w0[STD_C * STD_D];
static int32_t std_label[STD_N];

static dg_method_cfg std_cfg(void) {
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    cfg.weight_decay = 1e-3;
    cfg.n_samples = STD_N;
    cfg.n_classes = STD_C;
    cfg.logits_numel = STD_B * STD_C;
    return cfg;
}

/* The standard store (W random; s = (0.1, -0.2, 0.3) when with_stats) and
 * toy. */
static void std_make_ex(dg_param_set *ps, cls_toy *t, dg_closure *cl, bool with_stats) {
    fill_uniform(std_x, STD_N * STD_D, 401, -1.f, 1.f);
    fill_uniform(std_w0, STD_C * STD_D, 402, -0.5f, 0.5f);
    for (int i = 0; i < STD_N; i++) std_label[i] = (i * 7 + 1) % STD_C;
    cls_make_ps(ps, STD_C, STD_D, with_stats);
    memcpy(ps->data, std_w0, sizeof(std_w0));
    if (with_stats) ps->stats[0] = 0.1f, ps->stats[1] = -0.2f, ps->stats[2] = 0.3f;
    cls_init(t, cl, ps, STD_C, STD_D, 1, STD_N, std_x, std_label, STD_B);
}

static void std_make(dg_param_set *ps, cls_toy *t, dg_closure *cl) {
    std_make_ex(ps, t, cl, true);
}

/* Result of a standard run: weights and statistics. */
typedef struct std_result {
    float w[STD_C * STD_D];
    float s[STD_C];
} std_result;

/* `method` on the standard problem, epochs 0 .. n_epochs-1, two steps each;
 * n_infer gets the infer calls. */
static std_result std_run(const char *method, const char *base, const dg_method_cfg *cfg,
        int n_epochs, int *n_infer) {
    dg_param_set ps;
    cls_toy t;
    dg_closure cl;
    std_make(&ps, &t, &cl);
    dg_method *m = make_method(method, base, cfg, &ps);
    t.m = m;
    cls_run(&t, m, &cl, 0, 2L * n_epochs, 2, 0.1f);
    std_result r;
    memcpy(r.w, ps.data, sizeof(r.w));
    memcpy(r.s, ps.stats, sizeof(r.s));
    if (n_infer) *n_infer = t.n_infer;
    dg_method_free(m);
    cls_free(&t);
    dg_params_free(&ps);
    return r;
}

#define ASSERT_BITWISE(got, exp, n, what) do { \
    for (size_t i_ = 0; i_ < (size_t)(n); i_++) \
        ck_assert_msg((got)[i_] == (exp)[i_], "%s: [%zu] %.9g != %.9g", (what), i_, \
                (double)(got)[i_], (double)(exp)[i_]); \
} while (0)

/* diff - diff_ce (the loss term's gradient) in double; out: (B, C, P). */
static void term_grad(const cls_toy *t, double *out) {
    const size_t n = (size_t)t->nb * t->c * t->p;
    for (size_t i = 0; i < n; i++) out[i] = (double)t->diff[i] - (double)t->diff_ce[i];
}

/* Naive reference: tau^2 KL(softmax(a/tau) || softmax(b/tau)) over C entries
 * with stride st, and tau (q - p) into g (stride st). Plain sums of exp. */
static double ref_kl(const float *a, const float *b, size_t st, int C, double tau, double *g) {
    double sa = 0.0, sb = 0.0, kl = 0.0;
    for (int k = 0; k < C; k++) {
        sa += exp(a[k * st] / tau);
        sb += exp(b[k * st] / tau);
    }
    for (int k = 0; k < C; k++) {
        const double p = exp(a[k * st] / tau) / sa, q = exp(b[k * st] / tau) / sb;
        kl += p * log(p / q);
        g[k * st] = tau * (q - p);
    }
    return tau * tau * kl;
}

/* ---- §15.7 and the first active SAF step ------------------------------------ */

/* Rows of the 1-D problem (C = 2, D = 1): row 5: x = 1, label 0; row 9:
 * x = 2, label 1. */
static float kl_x[12];
static int32_t kl_label[12];

static void kl_make(dg_param_set *ps, cls_toy *t, dg_closure *cl, int nb) {
    memset(kl_x, 0, sizeof(kl_x));
    memset(kl_label, 0, sizeof(kl_label));
    kl_x[5] = 1.f;
    kl_x[9] = 2.f;
    kl_label[9] = 1;
    cls_make_ps(ps, 2, 1, false);
    cls_init(t, cl, ps, 2, 1, 1, 12, kl_x, kl_label, nb);
    static const int64_t ids[2] = {5, 9};
    cls_set_ids(t, ids, nb);
}

static dg_method_cfg kl_cfg(void) {
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    cfg.momentum = 0.0;
    cfg.weight_decay = 0.0;
    cfg.saf_lambda = 0.3;
    cfg.saf_tau = 5.0;
    cfg.saf_epochs_back = 1;
    cfg.saf_start_epoch = 0;
    cfg.mesa_lambda = 0.3;
    cfg.mesa_tau = 5.0;
    cfg.mesa_decay = 0.5;
    cfg.mesa_start_epoch = 0;
    cfg.n_samples = 12;
    cfg.n_classes = 2;
    cfg.logits_numel = 4;
    return cfg;
}

START_TEST(saf_first_active_step_matches_hand_computation) {
    /* Epoch 0 (lr 0) at W = (5 ln 3, 0) stores row 5's logits (5 ln 3, 0),
     * p = (3/4, 1/4), and row 9's (10 ln 3, 0), p = (9/10, 1/10). Epoch 1 at
     * W = 0: q = (1/2, 1/2) for both.
     * Row 5 (§15.7): tau^2 KL = 3.2703009, tau (q - p) = (-1.25, 1.25).
     * Row 9: KL = 0.9 ln 1.8 + 0.1 ln 0.2, tau (q - p) = (-2, 2).
     * One sample (row 5): term 0.3 * 3.2703009 = 0.9810903, its gradient
     * 0.3 * (-1.25, 1.25) = (-0.375, 0.375); CE gradient (-0.5, 0.5); SGD
     * lr 0.1: W1 = -0.1 (-0.875, 0.875) = (0.0875, -0.0875).
     * Both rows (B = 2): term 0.15 (3.2703009 + 25 KL_9); gradients
     * 0.15 (-1.25, 1.25) = (-0.1875, 0.1875) and 0.15 (-2, 2) = (-0.3, 0.3);
     * CE (-0.25, 0.25) and (0.25, -0.25); dW = 1 (-0.4375, 0.4375) +
     * 2 (-0.05, 0.05) = (-0.5375, 0.5375): W1 = (0.05375, -0.05375). */
    const double kl9 = 25.0 * (0.9 * log(1.8) + 0.1 * log(0.2));
    for (int nb = 1; nb <= 2; nb++) {
        dg_param_set ps;
        cls_toy t;
        dg_closure cl;
        kl_make(&ps, &t, &cl, nb);
        const dg_method_cfg cfg = kl_cfg();
        dg_method *m = make_method("saf", "sgd", &cfg, &ps);
        t.m = m;
        ps.data[0] = (float)(5.0 * log(3.0));
        ps.data[1] = 0.f;
        cl.epoch = 0;
        dg_method_step(m, &ps, &cl, 0.f);
        ck_assert(t.term == 0.0); /* E_start = 0 is not < 0 */
        ASSERT_BITWISE(t.diff, t.diff_ce, 2 * nb, "no term at epoch 0");

        ps.data[0] = ps.data[1] = 0.f;
        cl.epoch = 1;
        dg_method_step(m, &ps, &cl, 0.1f);
        double g[4];
        term_grad(&t, g);
        if (nb == 1) {
            const double term = 0.9810903, gexp[2] = {-0.375, 0.375};
            ck_assert_msg(fabs(t.term - term) <= 1e-6 + 1e-6 * term, "term %.9g", t.term);
            DG_ASSERT_CLOSE64(g, gexp, 2, 1e-6, 1e-6);
            ck_assert_msg(fabs(t.term / 0.3 - 3.2703009) <= 1e-6, "tau^2 KL %.9g", t.term / 0.3);
            const double w1[2] = {0.0875, -0.0875};
            DG_ASSERT_CLOSE(ps.data, w1, 2, 1e-6, 1e-6);
        } else {
            const double term = 0.15 * (3.2703009 + kl9);
            const double gexp[4] = {-0.1875, 0.1875, -0.3, 0.3};
            ck_assert_msg(fabs(t.term - term) <= 1e-6 + 1e-6 * term, "term %.9g vs %.9g", t.term,
                    term);
            DG_ASSERT_CLOSE64(g, gexp, 4, 1e-6, 1e-6);
            const double w1[2] = {0.05375, -0.05375};
            DG_ASSERT_CLOSE(ps.data, w1, 2, 1e-6, 1e-6);
        }
        ck_assert_msg(fabs(t.loss - (log(2.0) + t.term)) <= 1e-6, "loss %.9g", t.loss);
        ck_assert_int_eq(t.n_infer, 0);
        dg_method_free(m);
        cls_free(&t);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(mesa_kl_term_matches_section_15_7) {
    /* Teacher (copied at creation) W_T = (5 ln 3, 0), student W = 0, one
     * sample x = 1: z_T = (5 ln 3, 0), z = (0, 0): §15.7 with lambda 0.3. */
    dg_param_set ps;
    cls_toy t;
    dg_closure cl;
    kl_make(&ps, &t, &cl, 1);
    const dg_method_cfg cfg = kl_cfg();
    ps.data[0] = (float)(5.0 * log(3.0));
    dg_method *m = make_method("mesa", "sgd", &cfg, &ps);
    t.m = m;
    ps.data[0] = 0.f;
    cl.epoch = 1;
    dg_method_step(m, &ps, &cl, 0.1f);
    ck_assert_int_eq(t.n_infer, 1);
    const double zt[2] = {5.0 * log(3.0), 0.0};
    DG_ASSERT_CLOSE(t.zt, zt, 2, 1e-6, 1e-6);
    double g[2];
    term_grad(&t, g);
    const double gexp[2] = {-0.375, 0.375};
    ck_assert_msg(fabs(t.term - 0.9810903) <= 1e-6 + 1e-6 * 0.9810903, "term %.9g", t.term);
    DG_ASSERT_CLOSE64(g, gexp, 2, 1e-6, 1e-6);
    const double w1[2] = {0.0875, -0.0875};
    DG_ASSERT_CLOSE(ps.data, w1, 2, 1e-6, 1e-6);
    dg_method_free(m);
    cls_free(&t);
    dg_params_free(&ps);
}
END_TEST

START_TEST(kl_term_and_gradient_are_zero_for_equal_logits) {
    /* SAF at lr 0 without statistics: every epoch's logits equal the stored
     * ones. MESA: the teacher (statistics included) equals the student at
     * creation, so z_T = z at the first step. */
    dg_method_cfg cfg = std_cfg();
    cfg.saf_epochs_back = 1;
    cfg.saf_start_epoch = 0;
    cfg.mesa_start_epoch = 0;
    dg_param_set ps;
    cls_toy t;
    dg_closure cl;
    std_make_ex(&ps, &t, &cl, false);
    dg_method *m = make_method("saf", "sgd", &cfg, &ps);
    t.m = m;
    for (long g = 0; g < 8; g++) {
        cls_run(&t, m, &cl, g, g + 1, 2, 0.f);
        ck_assert_msg(t.term == 0.0, "step %ld: term %.9g", g, t.term);
        ASSERT_BITWISE(t.diff, t.diff_ce, STD_B * STD_C, "saf gradient");
    }
    cls_run(&t, m, &cl, 8, 9, 2, 0.5f); /* the weights move ... */
    cls_run(&t, m, &cl, 9, 11, 2, 0.f);  /* ... and the term is no longer zero */
    ck_assert(t.term > 1e-6);
    dg_method_free(m);

    cls_free(&t);
    dg_params_free(&ps);
    std_make(&ps, &t, &cl);
    m = make_method("mesa", "sgd", &cfg, &ps);
    t.m = m;
    cls_run(&t, m, &cl, 2, 3, 2, 0.5f); /* epoch 1: active */
    ck_assert_int_eq(t.n_infer, 1);
    ck_assert(t.term == 0.0);
    ASSERT_BITWISE(t.diff, t.diff_ce, STD_B * STD_C, "mesa gradient");
    ASSERT_BITWISE(t.zt, t.z, STD_B * STD_C, "teacher logits");
    cls_run(&t, m, &cl, 3, 4, 2, 0.5f);
    ck_assert(t.term > 1e-6);
    dg_method_free(m);
    cls_free(&t);
    dg_params_free(&ps);
}
END_TEST

/* ---- invariant 26 ------------------------------------------------------------ */

START_TEST(lambda_zero_and_epochs_before_start_equal_erm_bitwise) {
    const char *bases[2] = {"sgd", "adam"};
    for (int k = 0; k < 2; k++) {
        dg_method_cfg cfg = std_cfg();
        const std_result erm = std_run("erm", bases[k], &cfg, 6, NULL);
        ck_assert(memcmp(erm.w, std_w0, sizeof(erm.w)) != 0);
        int n_infer = 0;
        /* lambda = 0, window open from epoch 2 (SAF) or 1 (MESA) */
        cfg.saf_lambda = 0.0;
        cfg.saf_start_epoch = 1;
        cfg.mesa_lambda = 0.0;
        cfg.mesa_start_epoch = 0;
        cfg.mesa_decay = 0.5;
        std_result r = std_run("saf", bases[k], &cfg, 6, NULL);
        ASSERT_BITWISE(r.w, erm.w, STD_C * STD_D, "saf lambda 0");
        ASSERT_BITWISE(r.s, erm.s, STD_C, "saf lambda 0 stats");
        r = std_run("mesa", bases[k], &cfg, 6, &n_infer);
        ck_assert_int_eq(n_infer, 10); /* epochs 1 .. 5, two steps each */
        ASSERT_BITWISE(r.w, erm.w, STD_C * STD_D, "mesa lambda 0");
        ASSERT_BITWISE(r.s, erm.s, STD_C, "mesa lambda 0 stats");
        /* default lambdas, E_start = 5: epochs 0 .. 5 are ERM */
        cfg = std_cfg();
        r = std_run("saf", bases[k], &cfg, 6, NULL);
        ASSERT_BITWISE(r.w, erm.w, STD_C * STD_D, "saf before start");
        r = std_run("mesa", bases[k], &cfg, 6, &n_infer);
        ck_assert_int_eq(n_infer, 0);
        ASSERT_BITWISE(r.w, erm.w, STD_C * STD_D, "mesa before start");
        /* the comparison can fail: open windows with lambda > 0 */
        cfg.saf_start_epoch = 1;
        cfg.mesa_start_epoch = 1;
        cfg.mesa_decay = 0.5;
        r = std_run("saf", bases[k], &cfg, 6, NULL);
        ck_assert(memcmp(r.w, erm.w, sizeof(r.w)) != 0);
        r = std_run("mesa", bases[k], &cfg, 6, NULL);
        ck_assert(memcmp(r.w, erm.w, sizeof(r.w)) != 0);
    }
}
END_TEST

/* ---- invariant 27 and the order of MESA's step ----------------------------- */

START_TEST(mesa_teacher_is_the_model_with_beta_zero_and_frozen_with_beta_one) {
    for (int k = 0; k < 2; k++) {
        dg_method_cfg cfg = std_cfg();
        cfg.mesa_decay = k;
        cfg.mesa_start_epoch = 1;
        dg_param_set ps;
        cls_toy t;
        dg_closure cl;
        std_make(&ps, &t, &cl);
        float w_init[STD_C * STD_D], s_init[STD_C];
        memcpy(w_init, ps.data, sizeof(w_init));
        memcpy(s_init, ps.stats, sizeof(s_init));
        dg_method *m = make_method("mesa", "sgd", &cfg, &ps);
        t.m = m;
        for (long g = 0; g < 10; g++) {
            cls_run(&t, m, &cl, g, g + 1, 2, 0.2f);
            const char *label;
            const float *tp, *ts;
            ck_assert(dg_method_second_weights(m, &label, &tp, &ts));
            ck_assert_str_eq(label, "teacher");
            ck_assert(tp != ps.data && ts != ps.stats);
            if (k == 0) {
                ASSERT_BITWISE(tp, ps.data, STD_C * STD_D, "beta 0 teacher");
                ASSERT_BITWISE(ts, ps.stats, STD_C, "beta 0 teacher stats");
            } else {
                ASSERT_BITWISE(tp, w_init, STD_C * STD_D, "beta 1 teacher");
                ASSERT_BITWISE(ts, s_init, STD_C, "beta 1 teacher stats");
            }
        }
        /* the model and its statistics did move */
        ck_assert(memcmp(ps.data, w_init, sizeof(w_init)) != 0);
        ck_assert(memcmp(ps.stats, s_init, sizeof(s_init)) != 0);
        ck_assert_int_eq(t.n_infer, 6); /* epochs 2, 3, 4 */
        dg_method_free(m);
        cls_free(&t);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(mesa_teacher_forward_precedes_the_update_and_the_ema_follows_it) {
    /* beta 0.7, window 1 < e < 4: infer at epochs 2 and 3 only, always before
     * the step's closure call and with the pre-step teacher; the EMA runs
     * after the update in every step. */
    dg_method_cfg cfg = std_cfg();
    cfg.mesa_decay = 0.7;
    cfg.mesa_start_epoch = 1;
    cfg.mesa_end_epoch = 4;
    dg_param_set ps;
    cls_toy t;
    dg_closure cl;
    std_make(&ps, &t, &cl);
    dg_method *m = make_method("mesa", "adam", &cfg, &ps);
    t.m = m;
    const char *label;
    const float *tp, *ts;
    ck_assert(dg_method_second_weights(m, &label, &tp, &ts));
    const size_t d = STD_C * STD_D;
    for (long g = 0; g < 12; g++) {
        const int e = (int)(g / 2);
        const bool active = e > 1 && e < 4;
        float t_pre[STD_C * STD_D], s_pre[STD_C];
        memcpy(t_pre, tp, sizeof(t_pre));
        memcpy(s_pre, ts, sizeof(s_pre));
        const int n_infer = t.n_infer, n_seq = t.n_seq;
        cls_run(&t, m, &cl, g, g + 1, 2, 0.05f);
        ck_assert_int_eq(t.n_infer, n_infer + (active ? 1 : 0));
        if (active) {
            ck_assert(t.seq[n_seq] == 'I' && t.seq[n_seq + 1] == 'E');
            ck_assert(t.infer_params == tp && t.infer_stats == ts);
            ASSERT_BITWISE(t.infer_w, t_pre, d, "infer saw the pre-step teacher");
            ASSERT_BITWISE(t.infer_s, s_pre, STD_C, "infer saw the pre-step statistics");
            ck_assert(t.term > 0.0);
        } else {
            ck_assert(t.seq[n_seq] == 'E');
            ck_assert(t.term == 0.0);
            ASSERT_BITWISE(t.diff, t.diff_ce, STD_B * STD_C, "inactive: no gradient");
        }
        /* w_T = 0.7 w_T + 0.3 w with the post-update w and statistics */
        double w_exp[STD_C * STD_D], s_exp[STD_C];
        for (size_t i = 0; i < d; i++) w_exp[i] = 0.7 * t_pre[i] + 0.3 * ps.data[i];
        for (size_t i = 0; i < STD_C; i++) s_exp[i] = 0.7 * s_pre[i] + 0.3 * ps.stats[i];
        DG_ASSERT_CLOSE(tp, w_exp, d, 1e-6, 1e-6);
        DG_ASSERT_CLOSE(ts, s_exp, STD_C, 1e-6, 1e-6);
        ck_assert(memcmp(tp, t_pre, sizeof(t_pre)) != 0);
    }
    ck_assert_int_eq(t.n_infer, 4);
    dg_method_free(m);
    cls_free(&t);
    dg_params_free(&ps);
}
END_TEST

/* ---- invariant 29 ------------------------------------------------------------ */

/* Rows of epoch e: all six but the skipped ones (e, row): (1, 3), (2, 2),
 * (3, 1), (5, 4). */
static int bank_batch(int e, int64_t *ids) {
    static const int skip[4][2] = {{1, 3}, {2, 2}, {3, 1}, {5, 4}};
    int n = 0;
    for (int r = 0; r < 6; r++) {
        bool skipped = false;
        for (int k = 0; k < 4; k++) skipped |= skip[k][0] == e && skip[k][1] == r;
        if (!skipped) ids[n++] = r;
    }
    return n;
}

START_TEST(saf_bank_reads_slot_e_minus_E_and_writes_slot_e) {
    /* E = 2, E_start = 1: epochs 2 .. 6 read slot (e - 2) mod 3, written in
     * epoch e - 2. Row 3 skipped in epoch 1 has an empty slot 1 at epoch 3;
     * row 2 skipped in epoch 2 has an empty slot 2 at epoch 4; row 1 skipped
     * in epoch 3 still holds epoch 0's logits in slot 0 at epoch 5 (tag 0,
     * not 3); row 4 skipped in epoch 5 holds epoch 2's logits in slot 2 at
     * the end. Those contribute nothing; the others follow the naive
     * reference. */
    enum { R = 6, C = 3, D = 2, E_MAX = 7 };
    static float x[R * D];
    static int32_t label[R];
    fill_uniform(x, R * D, 501, -1.f, 1.f);
    for (int r = 0; r < R; r++) label[r] = r % C;
    dg_param_set ps;
    cls_make_ps(&ps, C, D, false);
    fill_uniform(ps.data, C * D, 502, -1.f, 1.f);
    cls_toy t;
    dg_closure cl;
    cls_init(&t, &cl, &ps, C, D, 1, R, x, label, R);
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    cfg.momentum = 0.0;
    cfg.weight_decay = 0.0;
    cfg.saf_lambda = 0.5;
    cfg.saf_tau = 2.0;
    cfg.saf_epochs_back = 2;
    cfg.saf_start_epoch = 1;
    cfg.n_samples = R;
    cfg.n_classes = C;
    dg_method *m = make_method("saf", "sgd", &cfg, &ps);
    t.m = m;
    static float hist[E_MAX][R][C];
    static bool seen[E_MAX][R];
    memset(seen, 0, sizeof(seen));
    int n_skipped_active = 0;
    for (int e = 0; e < E_MAX; e++) {
        int64_t ids[R];
        const int nb = bank_batch(e, ids);
        cls_set_ids(&t, ids, nb);
        cl.epoch = e;
        dg_method_step(m, &ps, &cl, 0.5f);
        double exp_term = 0.0, g[R * C], gexp[R * C];
        term_grad(&t, g);
        for (int b = 0; b < nb; b++) {
            const int64_t id = ids[b];
            const float *zb = t.z + (size_t)b * C;
            const bool active = e >= 2 && seen[e - 2][id];
            for (int c = 0; c < C; c++) gexp[b * C + c] = 0.0;
            if (active) {
                exp_term += ref_kl(hist[e - 2][id], zb, 1, C, 2.0, gexp + b * C);
                for (int c = 0; c < C; c++) gexp[b * C + c] *= 0.5 / nb;
            } else {
                ASSERT_BITWISE(t.diff + b * C, t.diff_ce + b * C, C, "inactive sample");
                if (e >= 2) n_skipped_active++;
            }
            memcpy(hist[e][id], zb, sizeof(hist[e][id]));
            seen[e][id] = true;
        }
        exp_term *= 0.5 / nb;
        if (e < 2) {
            ck_assert(t.term == 0.0);
            continue;
        }
        ck_assert_msg(fabs(t.term - exp_term) <= 1e-7 + 1e-6 * exp_term,
                "epoch %d: term %.9g, expected %.9g", e, t.term, exp_term);
        ck_assert(exp_term > 1e-4);
        dg_cmp cmp = dg_compare_f64(g, gexp, (size_t)nb * C, 1e-7, 1e-5);
        ck_assert_msg(cmp.ok, "epoch %d: gradient [%zu] %.9g vs %.9g", e, cmp.first_bad,
                g[cmp.first_bad], gexp[cmp.first_bad]);
    }
    ck_assert_int_eq(n_skipped_active, 3); /* rows 3 @ 3, 2 @ 4, 1 @ 5 */

    /* the bank after epoch 6: slot 0 = epoch 6, slot 1 = epoch 4, slot 2 =
     * epoch 5, except row 4's slot 2 (epoch 2) */
    char dir[64], path[128];
    make_tmpdir(dir, "optim_saf_bank");
    snprintf(path, sizeof(path), "%s/saf.safetensors", dir);
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    ck_assert_int_eq(dg_method_state_save(m, &w), DG_STATUS_OK);
    ck_assert_int_eq(dg_tensor_writer_write(&w, path), DG_STATUS_OK);
    dg_tensor_writer_free(&w);
    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
    const dg_st_tensor *tt = dg_tensor_reader_find(&r, "optim.saf.tag");
    ck_assert_ptr_nonnull(tt);
    ck_assert_int_eq(tt->dtype, DG_ST_I32);
    ck_assert_int_eq(tt->ndims, 2);
    ck_assert(tt->shape[0] == R && tt->shape[1] == 3);
    int32_t tag[R][3];
    float bank[R][3][C];
    ck_assert_int_eq(dg_tensor_reader_read_raw(&r, tt, tag), DG_STATUS_OK);
    const int64_t bshape[3] = {R, 3, C};
    ck_assert_int_eq(dg_tensor_reader_read_f32(&r, "optim.saf.bank", 3, bshape, &bank[0][0][0]),
            DG_STATUS_OK);
    dg_tensor_reader_close(&r);
    remove_tree(dir, 0);
    for (int id = 0; id < R; id++) {
        const int want[3] = {6, 4, id == 4 ? 2 : 5};
        for (int s = 0; s < 3; s++) {
            ck_assert_msg(tag[id][s] == want[s], "row %d slot %d: tag %d, expected %d", id, s,
                    tag[id][s], want[s]);
            ASSERT_BITWISE(bank[id][s], hist[want[s]][id], C, "bank row");
        }
    }
    dg_method_free(m);
    cls_free(&t);
    dg_params_free(&ps);
}
END_TEST

/* ---- segmentation ------------------------------------------------------------ */

START_TEST(mesa_segmentation_averages_over_valid_pixels_only) {
    /* B = 2 samples of P = 6 pixels, 4 of the 12 labelled 255: n_valid = 8. */
    enum { C = 3, D = 2, P = 6, NB = 2 };
    static float x[NB * D * P];
    static const int32_t label[NB * P] = {0, 255, 2, 1, 255, 0, 1, 1, 255, 2, 0, 255};
    fill_uniform(x, NB * D * P, 601, -1.f, 1.f);
    dg_param_set ps;
    cls_make_ps(&ps, C, D, true);
    fill_uniform(ps.data, C * D, 602, -1.f, 1.f);
    cls_toy t;
    dg_closure cl;
    cls_init(&t, &cl, &ps, C, D, P, NB, x, label, NB);
    dg_method_cfg cfg;
    dg_method_cfg_default(&cfg);
    cfg.mesa_start_epoch = 0;
    cfg.mesa_decay = 0.9;
    cfg.logits_numel = NB * C * P;
    cfg.segmentation = true;
    dg_method *m = make_method("mesa", "sgd", &cfg, &ps);
    t.m = m;
    static const int64_t ids[NB] = {0, 1};
    cls_set_ids(&t, ids, NB);
    cl.epoch = 0;
    dg_method_step(m, &ps, &cl, 0.5f); /* inactive; teacher and student part */
    ck_assert(t.term == 0.0);
    cl.epoch = 1;
    dg_method_step(m, &ps, &cl, 0.5f);
    ck_assert_int_eq(t.n_valid, 8);
    double g[NB * C * P], gexp[NB * C * P], exp_term = 0.0;
    term_grad(&t, g);
    for (size_t u = 0; u < NB * P; u++) {
        const size_t at = (u / P) * C * P + u % P;
        for (int c = 0; c < C; c++) gexp[at + (size_t)c * P] = 0.0;
        if (label[u] == 255) {
            for (int c = 0; c < C; c++) {
                ck_assert(t.diff[at + (size_t)c * P] == 0.f); /* untouched CE zero */
                ck_assert(t.diff_ce[at + (size_t)c * P] == 0.f);
            }
            continue;
        }
        exp_term += ref_kl(t.zt + at, t.z + at, P, C, 5.0, gexp + at);
        for (int c = 0; c < C; c++) gexp[at + (size_t)c * P] *= 0.8 / 8;
    }
    exp_term *= 0.8 / 8;
    ck_assert_msg(fabs(t.term - exp_term) <= 1e-7 + 1e-6 * exp_term, "term %.9g, expected %.9g",
            t.term, exp_term);
    ck_assert(exp_term > 1e-4);
    dg_cmp cmp = dg_compare_f64(g, gexp, NB * C * P, 1e-7, 1e-5);
    ck_assert_msg(cmp.ok, "gradient [%zu] %.9g vs %.9g", cmp.first_bad, g[cmp.first_bad],
            gexp[cmp.first_bad]);
    dg_method_free(m);
    cls_free(&t);
    dg_params_free(&ps);
}
END_TEST

/* ---- invariant 24, weights reported -------------------------------------------- */

START_TEST(saf_and_mesa_call_the_closure_once_per_step_with_bn_update) {
    const char *methods[2] = {"saf", "mesa"};
    for (int k = 0; k < 2; k++) {
        dg_method_cfg cfg = std_cfg();
        cfg.saf_epochs_back = 1;
        cfg.saf_start_epoch = 1;
        cfg.mesa_start_epoch = 1;
        dg_param_set ps;
        cls_toy t;
        dg_closure cl;
        std_make(&ps, &t, &cl);
        dg_method *m = make_method(methods[k], "sgd", &cfg, &ps);
        t.m = m;
        cls_run(&t, m, &cl, 0, 8, 2, 0.1f);
        ck_assert_int_eq(t.n_eval, 8);
        for (int i = 0; i < 8; i++) {
            ck_assert_int_eq(t.domain[i], DG_DOMAIN_ALL);
            ck_assert_uint_eq(t.flags[i], DG_CLOSURE_BN_UPDATE);
        }
        /* MESA: one teacher forward before the closure call in epochs 2, 3 */
        ck_assert_int_eq(t.n_infer, k ? 4 : 0);
        ck_assert_int_eq(t.n_seq, 8 + t.n_infer);
        if (k) ck_assert_str_eq(t.seq, "EEEEIEIEIEIE");
        ck_assert_int_eq(m->t, 8);
        dg_method_free(m);
        cls_free(&t);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(second_weights_and_evaluated_weights) {
    dg_param_set ps;
    cls_toy t;
    dg_closure cl;
    std_make(&ps, &t, &cl);
    dg_method_cfg cfg = std_cfg();
    const char *label;
    const float *p, *s, *sp, *ss;
    for (int teacher = 0; teacher < 2; teacher++) {
        cfg.mesa_eval_teacher = teacher;
        dg_method *m = make_method("mesa", "sgd", &cfg, &ps);
        dg_method_eval_weights(m, &ps, &p, &s);
        ck_assert(dg_method_second_weights(m, &label, &sp, &ss));
        if (teacher) {
            ck_assert(p != ps.data && s != ps.stats);
            ck_assert_str_eq(label, "student");
            ck_assert(sp == ps.data && ss == ps.stats);
        } else {
            ck_assert(p == ps.data && s == ps.stats);
            ck_assert_str_eq(label, "teacher");
            ck_assert(sp != ps.data && ss != ps.stats);
        }
        dg_method_free(m);
    }
    cfg = std_cfg();
    const char *others[] = {"erm", "saf", "sam", "asam", "lookahead", "swad", "dgsam",
        "lookbehind-sam", "lookbehind-asam"};
    for (size_t k = 0; k < DG_ARRAY_LEN(others); k++) {
        dg_method *m = make_method(others[k], "sgd", &cfg, &ps);
        label = "x";
        ck_assert_msg(!dg_method_second_weights(m, &label, &sp, &ss), "%s", others[k]);
        ck_assert(label == NULL && sp == NULL && ss == NULL);
        dg_method_free(m);
    }
    /* a method without a loss term returns 0 and leaves diff_z alone */
    dg_method *erm = make_method("erm", "sgd", &cfg, &ps);
    float diff[4] = {1.f, -2.f, 3.f, -4.f};
    const float z[4] = {0.5f, 1.f, 2.f, 3.f};
    const int32_t lab[2] = {0, 1};
    const int64_t id[2] = {0, 1};
    const dg_logits lz = {z, diff, lab, id, 2, 2, 1, 2};
    ck_assert(dg_method_loss_term(erm, &lz, 9) == 0.0);
    const float keep[4] = {1.f, -2.f, 3.f, -4.f};
    ASSERT_BITWISE(diff, keep, 4, "erm");
    dg_method_free(erm);
    cls_free(&t);
    dg_params_free(&ps);
}
END_TEST

/* ---- state, allocation, threads ---------------------------------------------- */

static char state_dir[64];
static void make_state_dir(void) { make_tmpdir(state_dir, "optim_saf_mesa"); }
static void remove_state_dir(void) { remove_tree(state_dir, 0); }


START_TEST(saf_and_mesa_state_save_load_continues_bit_for_bit) {
    /* saved mid-epoch 2 (step 5) with the windows open from epoch 2 */
    static const struct {
        const char *method, *base;
        bool eval_teacher;
    } cases[] = {{"saf", "adam", false}, {"mesa", "sgd", false}, {"mesa", "adam", true}};
    char path[128];
    snprintf(path, sizeof(path), "%s/state.safetensors", state_dir);
    for (size_t k = 0; k < DG_ARRAY_LEN(cases); k++) {
        dg_method_cfg cfg = std_cfg();
        cfg.saf_start_epoch = 1;
        cfg.mesa_start_epoch = 1;
        cfg.mesa_decay = 0.8;
        cfg.mesa_eval_teacher = cases[k].eval_teacher;
        dg_param_set ps;
        cls_toy t;
        dg_closure cl;
        std_make(&ps, &t, &cl);
        dg_method *m = make_method(cases[k].method, cases[k].base, &cfg, &ps);
        t.m = m;
        cls_run(&t, m, &cl, 0, 5, 2, 0.1f);
        std_result saved, ref;
        memcpy(saved.w, ps.data, sizeof(saved.w));
        memcpy(saved.s, ps.stats, sizeof(saved.s));
        toy_state_save(m, path);
        cls_run(&t, m, &cl, 5, 12, 2, 0.1f);
        memcpy(ref.w, ps.data, sizeof(ref.w));
        memcpy(ref.s, ps.stats, sizeof(ref.s));
        const char *label;
        const float *p, *s;
        float ref_eval[STD_C * STD_D], ref_second[STD_C * STD_D];
        dg_method_eval_weights(m, &ps, &p, &s);
        memcpy(ref_eval, p, sizeof(ref_eval));
        const bool second = dg_method_second_weights(m, &label, &p, &s);
        if (second) memcpy(ref_second, p, sizeof(ref_second));
        dg_method_free(m);

        /* a fresh method from other weights, then the checkpoint */
        for (int load = 1; load >= 0; load--) {
            fill_uniform(ps.data, STD_C * STD_D, 999, -3.f, 3.f);
            dg_method *m2 = make_method(cases[k].method, cases[k].base, &cfg, &ps);
            t.m = m2;
            memcpy(ps.data, saved.w, sizeof(saved.w));
            memcpy(ps.stats, saved.s, sizeof(saved.s));
            if (load) {
                ck_assert_int_eq(toy_state_load(m2, path), DG_STATUS_OK);
                ck_assert_int_eq(m2->t, 5);
            }
            cls_run(&t, m2, &cl, 5, 12, 2, 0.1f);
            if (!load) { /* the restored state matters: without it the run differs */
                ck_assert(memcmp(ps.data, ref.w, sizeof(ref.w)) != 0);
                dg_method_free(m2);
                continue;
            }
            ASSERT_BITWISE(ps.data, ref.w, STD_C * STD_D, cases[k].method);
            ASSERT_BITWISE(ps.stats, ref.s, STD_C, "statistics");
            dg_method_eval_weights(m2, &ps, &p, &s);
            ASSERT_BITWISE(p, ref_eval, STD_C * STD_D, "evaluated weights");
            ck_assert(dg_method_second_weights(m2, &label, &p, &s) == second);
            if (second) ASSERT_BITWISE(p, ref_second, STD_C * STD_D, "second weights");
            dg_method_free(m2);
        }
        cls_free(&t);
        dg_params_free(&ps);
    }

    /* the names and the errors: a SAF state over another N is misshapen, a
     * MESA state has no bank */
    dg_param_set ps;
    cls_toy t;
    dg_closure cl;
    std_make(&ps, &t, &cl);
    dg_method_cfg cfg = std_cfg();
    dg_method *saf = make_method("saf", "sgd", &cfg, &ps);
    toy_state_save(saf, path);
    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
    static const char *const names[] = {"optim.saf.bank", "optim.saf.tag", "optim.saf.step",
        "optim.sgd.momentum"};
    for (size_t i = 0; i < DG_ARRAY_LEN(names); i++)
        ck_assert_msg(dg_tensor_reader_find(&r, names[i]) != NULL, "%s", names[i]);
    dg_tensor_reader_close(&r);
    cfg.n_samples = STD_N + 1;
    dg_method *other = make_method("saf", "sgd", &cfg, &ps);
    capture cap;
    capture_begin(&cap);
    ck_assert_int_eq(toy_state_load(other, path), DG_STATUS_ERR_SHAPE);
    char *log = capture_end(&cap);
    ck_assert_msg(strstr(log, "optim.saf.bank") != NULL, "%s", log);
    dg_free(log);
    dg_method_free(other);
    cfg = std_cfg();
    dg_method *mesa = make_method("mesa", "sgd", &cfg, &ps);
    toy_state_save(mesa, path);
    ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
    ck_assert_ptr_nonnull(dg_tensor_reader_find(&r, "optim.mesa.teacher"));
    ck_assert_ptr_nonnull(dg_tensor_reader_find(&r, "optim.mesa.teacher_stats"));
    dg_tensor_reader_close(&r);
    /* a method named like SAF but fed a MESA file finds no step counter */
    capture_begin(&cap);
    ck_assert_int_eq(toy_state_load(saf, path), DG_STATUS_ERR_MISSING);
    dg_free(capture_end(&cap));
    dg_method_free(mesa);
    dg_method_free(saf);
    cls_free(&t);
    dg_params_free(&ps);
}
END_TEST

START_TEST(mesa_state_without_statistics_round_trips) {
    /* GroupNorm nets have no statistics: n_stats = 0 */
    char path[128];
    snprintf(path, sizeof(path), "%s/nostats.safetensors", state_dir);
    dg_param_set ps0;
    cls_toy t0;
    dg_closure cl0;
    std_make_ex(&ps0, &t0, &cl0, false);
    ck_assert_uint_eq(ps0.n_stats, 0);
    dg_method_cfg cfg = std_cfg();
    cfg.mesa_start_epoch = 0;
    dg_method *m = make_method("mesa", "sgd", &cfg, &ps0);
    t0.m = m;
    cls_run(&t0, m, &cl0, 0, 4, 2, 0.1f);
    float saved[STD_C * STD_D], ref[STD_C * STD_D];
    memcpy(saved, ps0.data, sizeof(saved));
    toy_state_save(m, path);
    cls_run(&t0, m, &cl0, 4, 6, 2, 0.1f);
    memcpy(ref, ps0.data, sizeof(ref));
    dg_method_free(m);
    m = make_method("mesa", "sgd", &cfg, &ps0);
    t0.m = m;
    memcpy(ps0.data, saved, sizeof(saved));
    ck_assert_int_eq(toy_state_load(m, path), DG_STATUS_OK);
    cls_run(&t0, m, &cl0, 4, 6, 2, 0.1f);
    ASSERT_BITWISE(ps0.data, ref, STD_C * STD_D, "no statistics");
    dg_method_free(m);
    cls_free(&t0);
    dg_params_free(&ps0);
}
END_TEST

START_TEST(saf_and_mesa_steps_allocate_nothing) {
    const char *methods[2] = {"saf", "mesa"};
    for (int k = 0; k < 2; k++) {
        dg_method_cfg cfg = std_cfg();
        cfg.saf_start_epoch = 1;
        cfg.mesa_start_epoch = 1;
        dg_param_set ps;
        cls_toy t;
        dg_closure cl;
        std_make(&ps, &t, &cl);
        dg_method *m = make_method(methods[k], "adam", &cfg, &ps);
        t.m = m;
        cls_run(&t, m, &cl, 0, 1, 2, 0.1f); /* warms the OpenMP pool */
        const uint64_t a0 = dg_alloc_count();
        dg_alloc_hook_begin();
        cls_run(&t, m, &cl, 1, 12, 2, 0.1f); /* windows open from epoch 2 */
        const float *p, *s;
        const char *label;
        dg_method_eval_weights(m, &ps, &p, &s);
        (void)dg_method_second_weights(m, &label, &p, &s);
        dg_method_finish(m, &ps, &cl);
        const dg_alloc_counts heap = dg_alloc_hook_end();
        ck_assert_uint_eq(dg_alloc_count(), a0);
        if (dg_alloc_hook_available())
            ck_assert_msg(heap.own == 0, "%s: %llu allocations", methods[k],
                    (unsigned long long)heap.own);
        ck_assert(t.term != 0.0);
        ck_assert_int_eq(t.n_infer, k ? 8 : 0);
        dg_method_free(m);
        cls_free(&t);
        dg_params_free(&ps);
    }
}
END_TEST

START_TEST(mesa_results_do_not_depend_on_thread_count) {
    /* (a) d = 3 * 25000 >= the parallel threshold of the EMA; (b) P = 5000
     * pixels, 10000 units: three blocks of the loss term. */
    static const struct {
        int D;
        long P;
        int rows;
    } cases[2] = {{25000, 1, 4}, {2, 5000, 2}};
    for (int k = 0; k < 2; k++) {
        const int D = cases[k].D, rows = cases[k].rows;
        const long P = cases[k].P;
        const size_t d = (size_t)STD_C * D, nz = (size_t)rows * STD_C * P;
        float *x = dg_xmalloc((size_t)rows * D * P * sizeof(float));
        int32_t *label = dg_xmalloc((size_t)rows * P * sizeof(int32_t));
        fill_uniform(x, (size_t)rows * D * P, 701, -1.f, 1.f);
        for (size_t u = 0; u < (size_t)rows * P; u++) label[u] = u % 7 == 3 ? 255 : (int32_t)(u % 3);
        float *out[2], *teach[2], *diff[2];
        double term[2];
        for (int th = 0; th < 2; th++) {
            omp_set_num_threads(th + 1);
            dg_param_set ps;
            cls_make_ps(&ps, STD_C, D, true);
            fill_uniform(ps.data, d, 702, -0.05f, 0.05f);
            cls_toy t;
            dg_closure cl;
            cls_init(&t, &cl, &ps, STD_C, D, P, rows, x, label, rows);
            dg_method_cfg cfg;
            dg_method_cfg_default(&cfg);
            cfg.mesa_start_epoch = 0;
            cfg.mesa_decay = 0.6;
            cfg.logits_numel = nz;
            cfg.segmentation = P > 1;
            dg_method *m = make_method("mesa", "sgd", &cfg, &ps);
            t.m = m;
            cls_run(&t, m, &cl, 0, 3, 1, 0.5f);
            const char *lab;
            const float *tp, *ts;
            ck_assert(dg_method_second_weights(m, &lab, &tp, &ts));
            out[th] = dg_xmalloc(d * sizeof(float));
            teach[th] = dg_xmalloc(d * sizeof(float));
            diff[th] = dg_xmalloc(nz * sizeof(float));
            memcpy(out[th], ps.data, d * sizeof(float));
            memcpy(teach[th], tp, d * sizeof(float));
            memcpy(diff[th], t.diff, nz * sizeof(float));
            term[th] = t.term;
            ck_assert(t.term > 0.0);
            dg_method_free(m);
            cls_free(&t);
            dg_params_free(&ps);
        }
        ck_assert_msg(term[0] == term[1], "case %d: %.17g vs %.17g", k, term[0], term[1]);
        ck_assert(memcmp(out[0], out[1], d * sizeof(float)) == 0);
        ck_assert(memcmp(teach[0], teach[1], d * sizeof(float)) == 0);
        ck_assert(memcmp(diff[0], diff[1], nz * sizeof(float)) == 0);
        for (int th = 0; th < 2; th++) dg_free(out[th]), dg_free(teach[th]), dg_free(diff[th]);
        dg_free(x);
        dg_free(label);
    }
}
END_TEST

/* ---- configuration -------------------------------------------------------------- */

/* dg_method_create must fail with DG_STATUS_ERR_CONFIG, logging `expect`. */
static void expect_config_error(const char *method, const dg_method_cfg *cfg,
        const char *expect) {
    dg_param_set ps;
    cls_make_ps(&ps, STD_C, STD_D, true);
    toy_expect_config_error(method, "sgd", cfg, &ps, expect);
    dg_params_free(&ps);
}

START_TEST(saf_and_mesa_bad_values_are_config_errors) {
    const dg_method_cfg cfg = std_cfg();
    dg_method_cfg bad = cfg;
    bad.segmentation = true;
    expect_config_error("saf", &bad, "classification only");
    bad = cfg;
    bad.saf_epochs_back = 0;
    expect_config_error("saf", &bad, "optim.saf_epochs_back");
    bad = cfg;
    bad.saf_epochs_back = 3;
    bad.saf_start_epoch = 1; /* < E - 1 = 2 */
    expect_config_error("saf", &bad, "optim.saf_start_epoch");
    bad = cfg;
    bad.saf_end_epoch = 5; /* = start */
    expect_config_error("saf", &bad, "optim.saf_end_epoch");
    bad = cfg;
    bad.saf_lambda = -0.1;
    expect_config_error("saf", &bad, "optim.saf_lambda");
    bad = cfg;
    bad.saf_tau = 0.0;
    expect_config_error("saf", &bad, "optim.saf_tau");
    bad = cfg;
    bad.n_samples = 0;
    expect_config_error("saf", &bad, "n_samples = 0");
    bad = cfg;
    bad.n_classes = 0;
    expect_config_error("saf", &bad, "n_classes = 0");
    bad = cfg;
    bad.mesa_decay = 1.5;
    expect_config_error("mesa", &bad, "optim.mesa_decay");
    bad.mesa_decay = -0.01;
    expect_config_error("mesa", &bad, "optim.mesa_decay");
    bad = cfg;
    bad.mesa_tau = -1.0;
    expect_config_error("mesa", &bad, "optim.mesa_tau");
    bad = cfg;
    bad.mesa_lambda = -0.8;
    expect_config_error("mesa", &bad, "optim.mesa_lambda");
    bad = cfg;
    bad.mesa_end_epoch = 3; /* < start 5 */
    expect_config_error("mesa", &bad, "optim.mesa_end_epoch");
    bad = cfg;
    bad.logits_numel = 0;
    expect_config_error("mesa", &bad, "logits_numel");

    /* the boundary values are accepted; keys of the other method are ignored */
    dg_param_set ps;
    cls_make_ps(&ps, STD_C, STD_D, true);
    bad = cfg;
    bad.saf_epochs_back = 3;
    bad.saf_start_epoch = 2;
    bad.saf_end_epoch = 3;
    bad.mesa_decay = 7.0;
    dg_method_free(make_method("saf", "sgd", &bad, &ps));
    bad = cfg;
    bad.mesa_decay = 0.0;
    bad.mesa_start_epoch = 0;
    bad.mesa_end_epoch = 1;
    bad.segmentation = true;
    bad.saf_epochs_back = 0;
    dg_method_free(make_method("mesa", "sgd", &bad, &ps));
    bad.mesa_decay = 1.0;
    dg_method_free(make_method("mesa", "sgd", &bad, &ps));
    dg_params_free(&ps);
}
END_TEST

START_TEST(saf_and_mesa_defaults_follow_section_16) {
    dg_method_cfg cfg;
    memset(&cfg, 0x5a, sizeof(cfg));
    dg_method_cfg_default(&cfg);
    ck_assert(cfg.saf_lambda == 0.3 && cfg.saf_tau == 5.0 && cfg.saf_epochs_back == 2);
    ck_assert(cfg.saf_start_epoch == 5 && cfg.saf_end_epoch == -1);
    ck_assert(cfg.mesa_lambda == 0.8 && cfg.mesa_tau == 5.0 && cfg.mesa_decay == 0.9998);
    ck_assert(cfg.mesa_start_epoch == 5 && cfg.mesa_end_epoch == -1 && !cfg.mesa_eval_teacher);
    /* run facts: zero until the trainer sets them */
    ck_assert(cfg.n_samples == 0 && cfg.n_classes == 0 && cfg.logits_numel == 0);
    ck_assert(!cfg.segmentation);
}
END_TEST

Suite *optim_saf_mesa_suite(void) {
    Suite *s = suite_create("optim_saf_mesa");
    TCase *tc = tcase_create("terms");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, saf_first_active_step_matches_hand_computation);
    tcase_add_test(tc, mesa_kl_term_matches_section_15_7);
    tcase_add_test(tc, kl_term_and_gradient_are_zero_for_equal_logits);
    tcase_add_test(tc, lambda_zero_and_epochs_before_start_equal_erm_bitwise);
    tcase_add_test(tc, mesa_teacher_is_the_model_with_beta_zero_and_frozen_with_beta_one);
    tcase_add_test(tc, mesa_teacher_forward_precedes_the_update_and_the_ema_follows_it);
    tcase_add_test(tc, saf_bank_reads_slot_e_minus_E_and_writes_slot_e);
    tcase_add_test(tc, mesa_segmentation_averages_over_valid_pixels_only);
    suite_add_tcase(s, tc);

    tc = tcase_create("interface");
    tcase_set_timeout(tc, 30);
    tcase_add_unchecked_fixture(tc, make_state_dir, remove_state_dir);
    tcase_add_test(tc, saf_and_mesa_call_the_closure_once_per_step_with_bn_update);
    tcase_add_test(tc, second_weights_and_evaluated_weights);
    tcase_add_test(tc, saf_and_mesa_state_save_load_continues_bit_for_bit);
    tcase_add_test(tc, mesa_state_without_statistics_round_trips);
    tcase_add_test(tc, saf_and_mesa_steps_allocate_nothing);
    tcase_add_test(tc, mesa_results_do_not_depend_on_thread_count);
    tcase_add_test(tc, saf_and_mesa_bad_values_are_config_errors);
    tcase_add_test(tc, saf_and_mesa_defaults_follow_section_16);
    suite_add_tcase(s, tc);
    return s;
}
