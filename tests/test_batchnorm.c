/* tests/test_batchnorm.c -- BatchNorm2d (train, eval, frozen, fused ReLU,
 * inference instance) against the double reference of tests/ref/norm_ref,
 * the reference against finite differences, and PyTorch's running-statistics
 * rule (momentum 0.1, unbiased variance).
 * Shapes: N batch, C channels, H height, W width. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "common.h"
#include "nets/core/batchnorm.h"
#include "ref/norm_ref.h"

static dg_ctx ctx;
static void setup(void) { dg_ctx_init(&ctx); }
static void teardown(void) { dg_ctx_free(&ctx); }

typedef struct bn_case {
    int64_t n, c, h, w;
    bool relu;
    dnnl_format_tag_t src_tag;  /* layout the input arrives in */
    dnnl_format_tag_t ddst_tag; /* layout diff_dst arrives in */
} bn_case;

static const bn_case cases[] = {
    {1, 3, 5, 7, false, dnnl_nchw, dnnl_nchw},
    {2, 20, 9, 11, false, dnnl_nChw16c, dnnl_nchw},
    {3, 17, 4, 6, true, dnnl_nChw16c, dnnl_nChw16c},
    {2, 20, 9, 11, true, dnnl_nchw, dnnl_nChw16c},
    {3, 17, 4, 6, false, dnnl_nhwc, dnnl_nchw},
    {1, 3, 5, 7, true, dnnl_nChw16c, dnnl_nchw},
};

/* One layer on a tagged copy of a fresh input, with its parameter store. */
typedef struct bn_fix {
    ref_norm r;
    size_t ns, c;
    float *src;          /* (N, C, H, W) nchw */
    double *s64;         /* (N, C, H, W) */
    dnnl_memory_t src_m; /* src in the case's layout */
    dg_param_set ps;
    dg_bn l;
    double *gamma, *beta, *rmean, *rvar; /* (C) copies of the store */
} bn_fix;

static void fix_init(bn_fix *f, const bn_case *tc, const dg_bn_cfg *cfg, uint64_t seed) {
    memset(f, 0, sizeof(*f));
    f->r = (ref_norm){.n = tc->n, .c = tc->c, .h = tc->h, .w = tc->w, .eps = 1e-5};
    f->ns = (size_t)(tc->n * tc->c * tc->h * tc->w);
    f->c = (size_t)tc->c;
    f->src = dg_xmalloc(f->ns * sizeof(float));
    fill_uniform(f->src, f->ns, seed, -1.f, 2.f);
    f->s64 = dup_double(f->src, f->ns);
    int64_t dims[4] = {tc->n, tc->c, tc->h, tc->w};
    f->src_m = make_tagged(&ctx, f->src, 4, dims, tc->src_tag);
    dg_params_init(&f->ps);
    dg_bn_init(&f->l, &ctx, &f->ps, "bn", f->src_m, cfg);
    dg_params_alloc(&f->ps);
    dg_params_init_values(&f->ps, 1);
    fill_uniform(f->ps.data + f->l.w_off, f->c, seed + 1, 0.5f, 1.5f);
    fill_uniform(f->ps.data + f->l.b_off, f->c, seed + 2, -0.5f, 0.5f);
    fill_uniform(f->ps.stats + f->l.mean_off, f->c, seed + 3, -0.5f, 0.5f);
    fill_uniform(f->ps.stats + f->l.var_off, f->c, seed + 4, 0.5f, 2.f);
    f->gamma = dup_double(f->ps.data + f->l.w_off, f->c);
    f->beta = dup_double(f->ps.data + f->l.b_off, f->c);
    f->rmean = dup_double(f->ps.stats + f->l.mean_off, f->c);
    f->rvar = dup_double(f->ps.stats + f->l.var_off, f->c);
}

static void fix_free(bn_fix *f) {
    dg_bn_free(&f->l);
    dg_params_free(&f->ps);
    dnnl_memory_destroy(f->src_m);
    dg_free(f->src), dg_free(f->s64), dg_free(f->gamma), dg_free(f->beta);
    dg_free(f->rmean), dg_free(f->rvar);
}

/* Expected forward (ReLU applied when asked) with the given statistics. */
static double *expect_forward(const bn_fix *f, const double *mean, const double *var,
        bool relu) {
    double *e = dg_xmalloc(f->ns * sizeof(double));
    ref_bn_forward(&f->r, f->s64, f->gamma, f->beta, mean, var, e);
    if (relu)
        for (size_t i = 0; i < f->ns; i++) e[i] = e[i] > 0 ? e[i] : 0.0;
    return e;
}

/* diff_dst for a layer that may fuse ReLU: zero where the pre-ReLU output
 * lies within 1e-3 of the kink (so the mask decision cannot matter), and
 * dd64 additionally masked by the reference ReLU. */
static void make_diff_dst(const bn_fix *f, const double *pre, bool relu, uint64_t seed,
        float *ddst, double *dd64) {
    fill_uniform(ddst, f->ns, seed, -1.f, 1.f);
    for (size_t i = 0; i < f->ns; i++) {
        if (relu && fabs(pre[i]) < 1e-3) ddst[i] = 0.f;
        dd64[i] = relu && pre[i] <= 0 ? 0.0 : ddst[i];
    }
}

static void check_dst(const bn_fix *f, const double *exp) {
    float *got = dg_xmalloc(f->ns * sizeof(float));
    read_plain(&ctx, f->l.dst, got);
    DG_ASSERT_CLOSE(got, exp, f->ns, 1e-5, 1e-4);
    dg_free(got);
}

/* Runs backward on ddst (in `tag`) with the gradient pre-filled with 100
 * and compares diff_src, diff_gamma, diff_beta. */
static void check_backward(bn_fix *f, const dg_pass *p, const float *ddst,
        dnnl_format_tag_t tag, const double *eds, const double *edg, const double *edb) {
    for (size_t i = 0; i < f->ps.d; i++) f->ps.grad[i] = 100.f;
    dnnl_memory_t ddst_m = make_tagged(&ctx, ddst, 4, f->l.dims, tag);
    dg_bn_backward(&f->l, &ctx, p, ddst_m);
    float *gds = dg_xmalloc(f->ns * sizeof(float));
    read_plain(&ctx, f->l.diff_src, gds);
    DG_ASSERT_CLOSE(gds, eds, f->ns, 1e-5, 1e-4);
    DG_ASSERT_CLOSE(f->ps.grad + f->l.w_off, edg, f->c, 1e-5, 1e-4);
    DG_ASSERT_CLOSE(f->ps.grad + f->l.b_off, edb, f->c, 1e-5, 1e-4);
    dg_free(gds);
    dnnl_memory_destroy(ddst_m);
}

START_TEST(bn_train_forward_backward_match_reference) {
    const bn_case *tc = &cases[_i];
    bn_fix f;
    dg_bn_cfg cfg = {.relu = tc->relu, .training = true};
    fix_init(&f, tc, &cfg, 10 + (uint64_t)_i);
    double *mean = dg_xmalloc(f.c * sizeof(double)), *var = dg_xmalloc(f.c * sizeof(double));
    ref_bn_stats(&f.r, f.s64, mean, var);
    double *pre = expect_forward(&f, mean, var, false);
    double *exp = expect_forward(&f, mean, var, tc->relu);

    dg_pass p = dg_pass_train(&f.ps);
    dg_bn_forward(&f.l, &ctx, &p);
    check_dst(&f, exp);

    float *ddst = dg_xmalloc(f.ns * sizeof(float));
    double *dd64 = dg_xmalloc(f.ns * sizeof(double)), *eds = dg_xmalloc(f.ns * sizeof(double));
    double *edg = dg_xmalloc(f.c * sizeof(double)), *edb = dg_xmalloc(f.c * sizeof(double));
    make_diff_dst(&f, pre, tc->relu, 20 + (uint64_t)_i, ddst, dd64);
    ref_bn_backward(&f.r, f.s64, f.gamma, dd64, eds, edg, edb);
    check_backward(&f, &p, ddst, tc->ddst_tag, eds, edg, edb);

    dg_free(mean), dg_free(var), dg_free(pre), dg_free(exp), dg_free(ddst), dg_free(dd64);
    dg_free(eds), dg_free(edg), dg_free(edb);
    fix_free(&f);
}
END_TEST

/* Running statistics; the layer keeps batch statistics in train mode. Half
 * of the cases use the eval pass of a normal layer, half a frozen layer in a
 * train pass; both normalise with the running statistics and take the
 * affine-map gradient. */
typedef struct global_case {
    bn_case shape;
    bool frozen;
} global_case;

static const global_case global_cases[] = {
    {{1, 3, 5, 7, false, dnnl_nchw, dnnl_nchw}, true},
    {{2, 20, 9, 11, true, dnnl_nChw16c, dnnl_nchw}, true},
    {{3, 17, 4, 6, false, dnnl_nChw16c, dnnl_nChw16c}, true},
    {{2, 20, 9, 11, false, dnnl_nchw, dnnl_nchw}, false},
    {{3, 17, 4, 6, true, dnnl_nChw16c, dnnl_nchw}, false},
};

START_TEST(bn_running_stats_forward_backward_match_affine_map) {
    const global_case *gc = &global_cases[_i];
    const bn_case *tc = &gc->shape;
    bn_fix f;
    dg_bn_cfg cfg = {.relu = tc->relu, .frozen = gc->frozen, .training = true};
    fix_init(&f, tc, &cfg, 30 + (uint64_t)_i);
    float *stats0 = dg_xmalloc(f.ps.n_stats * sizeof(float));
    memcpy(stats0, f.ps.stats, f.ps.n_stats * sizeof(float));
    double *pre = expect_forward(&f, f.rmean, f.rvar, false);
    double *exp = expect_forward(&f, f.rmean, f.rvar, tc->relu);

    dg_pass p = gc->frozen ? dg_pass_train(&f.ps) : dg_pass_eval(&f.ps);
    dg_bn_forward(&f.l, &ctx, &p);
    check_dst(&f, exp);
    ck_assert_msg(!memcmp(stats0, f.ps.stats, f.ps.n_stats * sizeof(float)),
            "running statistics changed");

    float *ddst = dg_xmalloc(f.ns * sizeof(float));
    double *dd64 = dg_xmalloc(f.ns * sizeof(double)), *eds = dg_xmalloc(f.ns * sizeof(double));
    double *edg = dg_xmalloc(f.c * sizeof(double)), *edb = dg_xmalloc(f.c * sizeof(double));
    make_diff_dst(&f, pre, tc->relu, 40 + (uint64_t)_i, ddst, dd64);
    ref_bn_backward_global(&f.r, f.s64, f.gamma, f.rmean, f.rvar, dd64, eds, edg, edb);
    check_backward(&f, &p, ddst, tc->ddst_tag, eds, edg, edb);
    ck_assert_msg(!memcmp(stats0, f.ps.stats, f.ps.n_stats * sizeof(float)),
            "running statistics changed by backward");

    dg_free(stats0), dg_free(pre), dg_free(exp), dg_free(ddst), dg_free(dd64);
    dg_free(eds), dg_free(edg), dg_free(edb);
    fix_free(&f);
}
END_TEST

/* PyTorch: running = 0.9*running + 0.1*batch, var term unbiased m/(m-1). */
static void expect_update(const bn_fix *f, const double *x, double *rm, double *rv) {
    double mean[32], var[32];
    ref_bn_stats(&f->r, x, mean, var);
    double m = (double)(f->r.n * f->r.h * f->r.w);
    for (size_t c = 0; c < f->c; c++) {
        rm[c] = 0.9 * rm[c] + 0.1 * mean[c];
        rv[c] = 0.9 * rv[c] + 0.1 * var[c] * m / (m - 1.0);
    }
}

START_TEST(bn_running_stats_follow_pytorch_after_one_and_two_forwards) {
    static const bn_case shapes[] = {
        {2, 5, 3, 4, false, dnnl_nchw, dnnl_nchw},
        {1, 19, 3, 5, true, dnnl_nChw16c, dnnl_nchw},
    };
    const bn_case *tc = &shapes[_i];
    bn_fix f;
    dg_bn_cfg cfg = {.relu = tc->relu, .training = true};
    fix_init(&f, tc, &cfg, 50 + (uint64_t)_i);
    /* The store's initial values: mean 0, variance 1. */
    dg_params_init_values(&f.ps, 1);
    double rm[32], rv[32];
    for (size_t c = 0; c < f.c; c++) rm[c] = 0.0, rv[c] = 1.0;
    dg_pass p = dg_pass_train(&f.ps);
    for (int step = 0; step < 2; step++) {
        if (step == 1) { /* a second batch with another distribution */
            fill_uniform(f.src, f.ns, 60, -3.f, 1.f);
            to_double(f.s64, f.src, f.ns);
            dnnl_memory_t m = make_plain(&ctx, f.src, 4, f.l.dims);
            dg_mem_copy(&ctx, f.src_m, m);
            dnnl_memory_destroy(m);
        }
        dg_bn_forward(&f.l, &ctx, &p);
        DG_DNNL(dnnl_stream_wait(ctx.stream));
        expect_update(&f, f.s64, rm, rv);
        DG_ASSERT_CLOSE(f.ps.stats + f.l.mean_off, rm, f.c, 1e-6, 1e-5);
        DG_ASSERT_CLOSE(f.ps.stats + f.l.var_off, rv, f.c, 1e-6, 1e-5);
    }
    fix_free(&f);
}
END_TEST

START_TEST(bn_update_stats_false_leaves_stats_unchanged) {
    const bn_case tc = {2, 20, 9, 11, false, dnnl_nChw16c, dnnl_nchw};
    bn_fix f;
    dg_bn_cfg cfg = {.training = true};
    fix_init(&f, &tc, &cfg, 70);
    float *stats0 = dg_xmalloc(f.ps.n_stats * sizeof(float));
    memcpy(stats0, f.ps.stats, f.ps.n_stats * sizeof(float));
    dg_pass p = dg_pass_train(&f.ps);
    p.update_stats = false;
    dg_bn_forward(&f.l, &ctx, &p);
    DG_DNNL(dnnl_stream_wait(ctx.stream));
    ck_assert_msg(!memcmp(stats0, f.ps.stats, f.ps.n_stats * sizeof(float)),
            "running statistics changed");
    /* Still a train forward: batch statistics. */
    double mean[20], var[20];
    ref_bn_stats(&f.r, f.s64, mean, var);
    double *exp = expect_forward(&f, mean, var, false);
    check_dst(&f, exp);
    /* The same pass with update_stats does change them. */
    p.update_stats = true;
    dg_bn_forward(&f.l, &ctx, &p);
    DG_DNNL(dnnl_stream_wait(ctx.stream));
    ck_assert_msg(memcmp(stats0, f.ps.stats, f.ps.n_stats * sizeof(float)),
            "update_stats had no effect");
    dg_free(exp), dg_free(stats0);
    fix_free(&f);
}
END_TEST

START_TEST(bn_fused_relu_matches_bn_then_relu) {
    const bn_case tc = {3, 17, 4, 6, false, dnnl_nChw16c, dnnl_nchw};
    bn_fix a, b;
    dg_bn_cfg ca = {.relu = true, .training = true}, cb = {.relu = false, .training = true};
    fix_init(&a, &tc, &ca, 80);
    fix_init(&b, &tc, &cb, 80);
    dg_pass pa = dg_pass_train(&a.ps), pb = dg_pass_train(&b.ps);
    dg_bn_forward(&a.l, &ctx, &pa);
    dg_bn_forward(&b.l, &ctx, &pb);
    float *ya = dg_xmalloc(a.ns * sizeof(float)), *yb = dg_xmalloc(a.ns * sizeof(float));
    read_plain(&ctx, a.l.dst, ya);
    read_plain(&ctx, b.l.dst, yb);
    double *e = dg_xmalloc(a.ns * sizeof(double));
    for (size_t i = 0; i < a.ns; i++) e[i] = yb[i] > 0.f ? yb[i] : 0.0;
    DG_ASSERT_CLOSE(ya, e, a.ns, 1e-6, 1e-6);

    /* Backward: the fused layer on dy equals the plain one on dy masked by
     * the ReLU (away from the kink). */
    float *da = dg_xmalloc(a.ns * sizeof(float)), *db = dg_xmalloc(a.ns * sizeof(float));
    fill_uniform(da, a.ns, 81, -1.f, 1.f);
    for (size_t i = 0; i < a.ns; i++) {
        if (fabsf(yb[i]) < 1e-3f) da[i] = 0.f;
        db[i] = yb[i] > 0.f ? da[i] : 0.f;
    }
    dnnl_memory_t dam = make_plain(&ctx, da, 4, a.l.dims), dbm = make_plain(&ctx, db, 4, b.l.dims);
    dg_bn_backward(&a.l, &ctx, &pa, dam);
    dg_bn_backward(&b.l, &ctx, &pb, dbm);
    float *ga = dg_xmalloc(a.ns * sizeof(float)), *gb = dg_xmalloc(a.ns * sizeof(float));
    read_plain(&ctx, a.l.diff_src, ga);
    read_plain(&ctx, b.l.diff_src, gb);
    to_double(e, gb, a.ns);
    DG_ASSERT_CLOSE(ga, e, a.ns, 1e-6, 1e-5);
    double eg[2 * 17];
    to_double(eg, b.ps.grad, b.ps.d);
    DG_ASSERT_CLOSE(a.ps.grad, eg, a.ps.d, 1e-6, 1e-5);

    dnnl_memory_destroy(dam), dnnl_memory_destroy(dbm);
    dg_free(ya), dg_free(yb), dg_free(e), dg_free(da), dg_free(db), dg_free(ga), dg_free(gb);
    fix_free(&a), fix_free(&b);
}
END_TEST

/* dst in a held slot, overwritten after the forward (as later layers do),
 * then written again by dg_bn_redo: bit for bit the forward's, for every
 * layout and ReLU case, after a batch-statistics forward (even = train
 * pass; the running statistics it updated are not what redo uses) and a
 * running-statistics one (odd = eval pass); the backward's ReLU mask is
 * unchanged by the redo. */
START_TEST(bn_redo_rewrites_the_forward_output_bit_for_bit) {
    const bn_case *tc = &cases[_i / 2];
    const bool train = _i % 2 == 0;
    bn_fix f;
    dg_bn_cfg cfg = {.relu = tc->relu, .training = true, .dst_slot = DG_SLOT_ACT};
    fix_init(&f, tc, &cfg, 90 + (uint64_t)_i);
    dg_pass p = train ? dg_pass_train(&f.ps) : dg_pass_eval(&f.ps);
    dg_bn_forward(&f.l, &ctx, &p);
    DG_DNNL(dnnl_stream_wait(ctx.stream));
    const size_t bytes = dg_md_bytes(dg_mem_md(f.l.dst));
    ck_assert_ptr_eq(dg_mem_ptr(f.l.dst), ctx.slot[DG_SLOT_ACT]);
    unsigned char *y = dg_xmalloc(bytes);
    memcpy(y, dg_mem_ptr(f.l.dst), bytes);
    const dnnl_memory_t ws = f.l.ws[f.l.last_mode];
    const size_t ws_bytes = ws ? dg_md_bytes(dg_mem_md(ws)) : 0;
    unsigned char *mask = dg_xmalloc(ws_bytes + 1);
    if (ws) memcpy(mask, dg_mem_ptr(ws), ws_bytes);
    memset(ctx.slot[DG_SLOT_ACT], 0x7f, bytes);
    dg_bn_redo(&f.l, &ctx, &p);
    DG_DNNL(dnnl_stream_wait(ctx.stream));
    ck_assert_msg(memcmp(dg_mem_ptr(f.l.dst), y, bytes) == 0, "redo differs from the forward");
    if (ws) ck_assert(memcmp(dg_mem_ptr(ws), mask, ws_bytes) == 0);
    dg_free(y), dg_free(mask);
    fix_free(&f);
}
END_TEST

START_TEST(bn_inference_instance_matches_eval_forward) {
    const bn_case tc = {2, 20, 9, 11, _i == 1, dnnl_nChw16c, dnnl_nchw};
    bn_fix a, b;
    dg_bn_cfg ca = {.relu = tc.relu, .training = true};
    dg_bn_cfg cb = {.relu = tc.relu, .frozen = _i == 1, .training = false};
    fix_init(&a, &tc, &ca, 90);
    fix_init(&b, &tc, &cb, 90);
    ck_assert_ptr_null(b.l.diff_src);
    dg_pass pa = dg_pass_eval(&a.ps);
    dg_pass pb = dg_pass_train(&b.ps); /* an inference instance ignores train */
    dg_bn_forward(&a.l, &ctx, &pa);
    dg_bn_forward(&b.l, &ctx, &pb);
    float *ya = dg_xmalloc(a.ns * sizeof(float)), *yb = dg_xmalloc(a.ns * sizeof(float));
    read_plain(&ctx, a.l.dst, ya);
    read_plain(&ctx, b.l.dst, yb);
    double *e = dup_double(ya, a.ns);
    DG_ASSERT_CLOSE(yb, e, a.ns, 1e-6, 1e-6);
    double *exp = expect_forward(&b, b.rmean, b.rvar, tc.relu);
    DG_ASSERT_CLOSE(yb, exp, a.ns, 1e-5, 1e-4);
    dg_free(ya), dg_free(yb), dg_free(e), dg_free(exp);
    fix_free(&a), fix_free(&b);
}
END_TEST

START_TEST(bn_registers_params_and_stats_like_pytorch) {
    int64_t dims[4] = {2, 6, 3, 3};
    dnnl_memory_desc_t md = dg_md_plain(4, dims, dnnl_nchw);
    dnnl_memory_t m = dg_mem_new(&ctx, &md, DNNL_MEMORY_ALLOCATE);
    dg_param_set ps;
    dg_params_init(&ps);
    dg_bn l;
    dg_bn_cfg cfg = {.training = true};
    dg_bn_init(&l, &ctx, &ps, "layer1.0.bn1", m, &cfg);
    dg_params_alloc(&ps);
    dg_params_init_values(&ps, 3);
    const dg_param_tensor *w = dg_params_find(&ps, "layer1.0.bn1.weight");
    const dg_param_tensor *b = dg_params_find(&ps, "layer1.0.bn1.bias");
    const dg_param_tensor *rm = dg_params_find_stat(&ps, "layer1.0.bn1.running_mean");
    const dg_param_tensor *rv = dg_params_find_stat(&ps, "layer1.0.bn1.running_var");
    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(rm);
    ck_assert_ptr_nonnull(rv);
    ck_assert_uint_eq(ps.n_tensors, 2);
    ck_assert_uint_eq(ps.n_stat_tensors, 2); /* no num_batches_tracked */
    ck_assert_uint_eq(ps.d, 12);
    ck_assert_uint_eq(ps.n_stats, 12);
    ck_assert_uint_eq(w->flags, DG_PARAM_NO_DECAY | DG_PARAM_ASAM_SCALED);
    ck_assert_uint_eq(b->flags, DG_PARAM_NO_DECAY);
    ck_assert(w->ndims == 1 && w->shape[0] == 6 && rv->ndims == 1 && rv->shape[0] == 6);
    ck_assert_uint_eq(w->offset, l.w_off);
    ck_assert_uint_eq(b->offset, l.b_off);
    ck_assert_uint_eq(rm->offset, l.mean_off);
    ck_assert_uint_eq(rv->offset, l.var_off);
    for (size_t i = 0; i < 6; i++) {
        ck_assert(ps.data[w->offset + i] == 1.f && ps.data[b->offset + i] == 0.f);
        ck_assert(ps.stats[rm->offset + i] == 0.f && ps.stats[rv->offset + i] == 1.f);
    }
    dg_bn_free(&l);
    dg_params_free(&ps);
    dnnl_memory_destroy(m);
}
END_TEST

START_TEST(bn_steps_after_the_first_allocate_nothing) {
    const bn_case tc = {2, 20, 5, 7, true, dnnl_nChw16c, dnnl_nchw};
    bn_fix f;
    dg_bn_cfg cfg = {.relu = true, .training = true};
    fix_init(&f, &tc, &cfg, 100);
    float *ddst = dg_xmalloc(f.ns * sizeof(float));
    fill_uniform(ddst, f.ns, 101, -1.f, 1.f);
    dnnl_memory_t ddst_m = make_plain(&ctx, ddst, 4, f.l.dims); /* port reorders */
    dg_pass pt = dg_pass_train(&f.ps), pe = dg_pass_eval(&f.ps);
    alloc_mark mark = alloc_mark_now();
    for (int step = 0; step < 3; step++) {
        if (step == 1) mark = alloc_mark_now();
        dg_bn_forward(&f.l, &ctx, &pt);
        dg_bn_backward(&f.l, &ctx, &pt, ddst_m);
        dg_bn_forward(&f.l, &ctx, &pe);
        dg_bn_backward(&f.l, &ctx, &pe, ddst_m);
    }
    DG_DNNL(dnnl_stream_wait(ctx.stream));
    assert_nothing_allocated_since(mark);
    dnnl_memory_destroy(ddst_m);
    dg_free(ddst);
    fix_free(&f);
}
END_TEST

/* ---- replicas (data parallelism) ------------------------------------------ */

/* Two replicas, each a thread with its own context, parameter store and
 * layer on half of the batch; their sum adds the two buffers in replica
 * order, so both get the same bits, as MPI_Allreduce gives two ranks. */
typedef struct pair {
    pthread_barrier_t bar;
    double *buf[2];
    int calls[2];
} pair;

typedef struct replica {
    pair *pr;
    int me;
    const bn_case *tc;
    bool sync;
    const float *src, *ddst, *gamma, *beta, *rmean, *rvar; /* whole batch, nchw; (C) */
    float *dst, *diff_src, *dgamma, *dbeta, *rm_out, *rv_out; /* this replica's half; (C) */
} replica;

static void pair_sum(double *buf, size_t len, void *user) {
    replica *r = user;
    pair *pr = r->pr;
    pr->buf[r->me] = buf;
    pr->calls[r->me]++;
    pthread_barrier_wait(&pr->bar);
    double *t = dg_xmalloc(len * sizeof(double));
    for (size_t i = 0; i < len; i++) t[i] = pr->buf[0][i] + pr->buf[1][i];
    pthread_barrier_wait(&pr->bar);
    memcpy(buf, t, len * sizeof(double));
    dg_free(t);
}

static void *replica_run(void *arg) {
    replica *r = arg;
    const bn_case *tc = r->tc;
    const int64_t hn = tc->n / 2, per = tc->c * tc->h * tc->w, dims[4] = {hn, tc->c, tc->h, tc->w};
    const size_t ns = (size_t)(hn * per), c = (size_t)tc->c;
    dg_ctx cx;
    dg_ctx_init(&cx);
    dnnl_memory_t src_m = make_tagged(&cx, r->src + r->me * ns, 4, dims, tc->src_tag);
    dg_param_set ps;
    dg_params_init(&ps);
    dg_bn l;
    dg_bn_cfg cfg = {.relu = tc->relu, .training = true};
    dg_bn_init(&l, &cx, &ps, "bn", src_m, &cfg);
    dg_params_alloc(&ps);
    memcpy(ps.data + l.w_off, r->gamma, c * sizeof(float));
    memcpy(ps.data + l.b_off, r->beta, c * sizeof(float));
    memcpy(ps.stats + l.mean_off, r->rmean, c * sizeof(float));
    memcpy(ps.stats + l.var_off, r->rvar, c * sizeof(float));
    dg_replicas rep = {.n = 2, .sync_bn = r->sync, .sum = pair_sum, .user = r};
    dg_pass p = dg_pass_train(&ps);
    p.replicas = &rep;
    dg_bn_forward(&l, &cx, &p);
    dnnl_memory_t ddst_m = make_tagged(&cx, r->ddst + r->me * ns, 4, dims, tc->ddst_tag);
    dg_bn_backward(&l, &cx, &p, ddst_m);
    read_plain(&cx, l.dst, r->dst + r->me * ns);
    read_plain(&cx, l.diff_src, r->diff_src + r->me * ns);
    memcpy(r->dgamma, ps.grad + l.w_off, c * sizeof(float));
    memcpy(r->dbeta, ps.grad + l.b_off, c * sizeof(float));
    memcpy(r->rm_out, ps.stats + l.mean_off, c * sizeof(float));
    memcpy(r->rv_out, ps.stats + l.var_off, c * sizeof(float));
    dnnl_memory_destroy(ddst_m);
    dg_bn_free(&l);
    dg_params_free(&ps);
    dnnl_memory_destroy(src_m);
    dg_ctx_free(&cx);
    return NULL;
}

/* Blocked layouts with C a multiple of the block take the vector kernels,
 * the others (C = 17 in nChw16c, nchw, nhwc) the scalar ones. */
static const bn_case replica_cases[] = {
    {4, 24, 5, 6, true, dnnl_nChw8c, dnnl_nchw},
    {2, 32, 4, 3, false, dnnl_nChw16c, dnnl_nChw16c},
    {2, 17, 4, 6, true, dnnl_nChw16c, dnnl_nchw},
    {4, 20, 3, 5, false, dnnl_nchw, dnnl_nchw},
    {2, 12, 4, 4, true, dnnl_nhwc, dnnl_nhwc},
    {4, 16, 1, 1, true, dnnl_nChw8c, dnnl_nchw}, /* ASPP's image pooling: M = N */
    {4, 8, 2, 2, false, dnnl_nchw, dnnl_nchw},
};

typedef struct replica_run_out {
    float *dst, *diff_src, *dgamma[2], *dbeta[2], *rm[2], *rv[2];
    int calls[2];
} replica_run_out;

static void run_replicas(const bn_fix *f, const bn_case *tc, bool sync, const float *ddst,
        replica_run_out *o) {
    pair pr = {0};
    pthread_barrier_init(&pr.bar, NULL, 2);
    o->dst = dg_xmalloc(f->ns * sizeof(float));
    o->diff_src = dg_xmalloc(f->ns * sizeof(float));
    replica r[2];
    pthread_t th[2];
    for (int k = 0; k < 2; k++) {
        o->dgamma[k] = dg_xmalloc(f->c * sizeof(float));
        o->dbeta[k] = dg_xmalloc(f->c * sizeof(float));
        o->rm[k] = dg_xmalloc(f->c * sizeof(float));
        o->rv[k] = dg_xmalloc(f->c * sizeof(float));
        r[k] = (replica){.pr = &pr, .me = k, .tc = tc, .sync = sync, .src = f->src,
                .ddst = ddst, .gamma = f->ps.data + f->l.w_off, .beta = f->ps.data + f->l.b_off,
                .rmean = f->ps.stats + f->l.mean_off, .rvar = f->ps.stats + f->l.var_off,
                .dst = o->dst, .diff_src = o->diff_src, .dgamma = o->dgamma[k],
                .dbeta = o->dbeta[k], .rm_out = o->rm[k], .rv_out = o->rv[k]};
        ck_assert_int_eq(pthread_create(&th[k], NULL, replica_run, &r[k]), 0);
    }
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    pthread_barrier_destroy(&pr.bar);
    o->calls[0] = pr.calls[0];
    o->calls[1] = pr.calls[1];
}

static void replica_out_free(replica_run_out *o) {
    dg_free(o->dst), dg_free(o->diff_src);
    for (int k = 0; k < 2; k++) dg_free(o->dgamma[k]), dg_free(o->dbeta[k]), dg_free(o->rm[k]),
            dg_free(o->rv[k]);
}

/* sync_bn: two replicas of half the batch compute what one layer computes
 * on the whole batch -- the output, diff_src of the whole batch's loss, the
 * running statistics (the same bits on both), and gamma/beta gradients
 * whose sum over the replicas is the whole batch's -- against the double
 * reference of the whole batch (tolerances as for one layer). */
START_TEST(bn_sync_replicas_of_half_batches_compute_the_whole_batch) {
    const bn_case *tc = &replica_cases[_i];
    bn_fix f;
    dg_bn_cfg cfg = {.relu = tc->relu, .training = true};
    fix_init(&f, tc, &cfg, 300 + (uint64_t)_i);
    double *mean = dg_xmalloc(f.c * sizeof(double)), *var = dg_xmalloc(f.c * sizeof(double));
    ref_bn_stats(&f.r, f.s64, mean, var);
    double *pre = expect_forward(&f, mean, var, false);
    double *exp = expect_forward(&f, mean, var, tc->relu);
    float *ddst = dg_xmalloc(f.ns * sizeof(float));
    double *dd64 = dg_xmalloc(f.ns * sizeof(double)), *eds = dg_xmalloc(f.ns * sizeof(double));
    double *edg = dg_xmalloc(f.c * sizeof(double)), *edb = dg_xmalloc(f.c * sizeof(double));
    make_diff_dst(&f, pre, tc->relu, 310 + (uint64_t)_i, ddst, dd64);
    ref_bn_backward(&f.r, f.s64, f.gamma, dd64, eds, edg, edb);

    replica_run_out o;
    run_replicas(&f, tc, true, ddst, &o);
    ck_assert_int_eq(o.calls[0], 2); /* statistics, then the backward's sums */
    ck_assert_int_eq(o.calls[1], 2);
    DG_ASSERT_CLOSE(o.dst, exp, f.ns, 1e-5, 1e-4);
    DG_ASSERT_CLOSE(o.diff_src, eds, f.ns, 1e-5, 1e-4);
    float *sg = dg_xmalloc(f.c * sizeof(float)), *sb = dg_xmalloc(f.c * sizeof(float));
    for (size_t i = 0; i < f.c; i++) {
        sg[i] = o.dgamma[0][i] + o.dgamma[1][i];
        sb[i] = o.dbeta[0][i] + o.dbeta[1][i];
    }
    DG_ASSERT_CLOSE(sg, edg, f.c, 1e-5, 1e-4);
    DG_ASSERT_CLOSE(sb, edb, f.c, 1e-5, 1e-4);
    const double m = (double)(tc->n * tc->h * tc->w);
    double *erm = dg_xmalloc(f.c * sizeof(double)), *erv = dg_xmalloc(f.c * sizeof(double));
    for (size_t i = 0; i < f.c; i++) {
        erm[i] = 0.9 * f.rmean[i] + 0.1 * mean[i];
        erv[i] = 0.9 * f.rvar[i] + 0.1 * var[i] * m / (m - 1);
    }
    DG_ASSERT_CLOSE(o.rm[0], erm, f.c, 1e-6, 1e-5);
    DG_ASSERT_CLOSE(o.rv[0], erv, f.c, 1e-6, 1e-5);
    ck_assert(!memcmp(o.rm[0], o.rm[1], f.c * sizeof(float)));
    ck_assert(!memcmp(o.rv[0], o.rv[1], f.c * sizeof(float)));

    replica_out_free(&o);
    dg_free(sg), dg_free(sb), dg_free(erm), dg_free(erv);
    dg_free(mean), dg_free(var), dg_free(pre), dg_free(exp), dg_free(ddst), dg_free(dd64);
    dg_free(eds), dg_free(edg), dg_free(edb);
    fix_free(&f);
}
END_TEST

/* Without sync_bn each replica normalises its half with the half's own
 * statistics (its output and gradients are one layer's on that half), and
 * the running statistics, the same bits on both, follow the replicas' mean
 * batch mean and mean unbiased batch variance. */
START_TEST(bn_unsynced_replicas_normalise_alone_and_share_running_stats) {
    const bn_case *tc = &replica_cases[_i];
    bn_fix f;
    dg_bn_cfg cfg = {.relu = tc->relu, .training = true};
    fix_init(&f, tc, &cfg, 400 + (uint64_t)_i);
    const size_t hs = f.ns / 2;
    ref_norm hr = f.r;
    hr.n = tc->n / 2;
    double *mean[2], *var[2], *exp = dg_xmalloc(f.ns * sizeof(double));
    for (int k = 0; k < 2; k++) {
        mean[k] = dg_xmalloc(f.c * sizeof(double));
        var[k] = dg_xmalloc(f.c * sizeof(double));
        ref_bn_stats(&hr, f.s64 + k * hs, mean[k], var[k]);
        ref_bn_forward(&hr, f.s64 + k * hs, f.gamma, f.beta, mean[k], var[k], exp + k * hs);
    }
    for (size_t i = 0; i < f.ns; i++)
        if (tc->relu && exp[i] < 0) exp[i] = 0;
    float *ddst = dg_xmalloc(f.ns * sizeof(float));
    fill_uniform(ddst, f.ns, 410 + (uint64_t)_i, -1.f, 1.f);
    replica_run_out o;
    run_replicas(&f, tc, false, ddst, &o);
    ck_assert_int_eq(o.calls[0], 1); /* the running statistics only */
    DG_ASSERT_CLOSE(o.dst, exp, f.ns, 1e-5, 1e-4);
    const double m = (double)(hr.n * tc->h * tc->w);
    double *erm = dg_xmalloc(f.c * sizeof(double)), *erv = dg_xmalloc(f.c * sizeof(double));
    for (size_t i = 0; i < f.c; i++) {
        erm[i] = 0.9 * f.rmean[i] + 0.1 * (mean[0][i] + mean[1][i]) / 2;
        erv[i] = 0.9 * f.rvar[i] + 0.1 * (var[0][i] + var[1][i]) / 2 * m / (m - 1);
    }
    DG_ASSERT_CLOSE(o.rm[0], erm, f.c, 1e-6, 1e-5);
    DG_ASSERT_CLOSE(o.rv[0], erv, f.c, 1e-6, 1e-5);
    ck_assert(!memcmp(o.rm[0], o.rm[1], f.c * sizeof(float)));
    ck_assert(!memcmp(o.rv[0], o.rv[1], f.c * sizeof(float)));
    replica_out_free(&o);
    for (int k = 0; k < 2; k++) dg_free(mean[k]), dg_free(var[k]);
    dg_free(exp), dg_free(ddst), dg_free(erm), dg_free(erv);
    fix_free(&f);
}
END_TEST

/* Level 1: the reference's backward against its own forward. */
typedef struct fd_ctx {
    ref_norm r;
    const double *x, *gamma, *beta, *rw; /* rw: loss weights (N, C, H, W) */
    const double *mean, *var;            /* NULL: batch statistics */
    int which;                           /* 0: vary x, 1: gamma, 2: beta */
    double *y, *bm, *bv;
} fd_ctx;

static double bn_loss(void *vctx, const double *v) {
    fd_ctx *f = vctx;
    const double *x = f->which == 0 ? v : f->x;
    const double *mean = f->mean, *var = f->var;
    if (!mean) {
        ref_bn_stats(&f->r, x, f->bm, f->bv);
        mean = f->bm, var = f->bv;
    }
    ref_bn_forward(&f->r, x, f->which == 1 ? v : f->gamma, f->which == 2 ? v : f->beta, mean,
            var, f->y);
    size_t n = (size_t)(f->r.n * f->r.c * f->r.h * f->r.w);
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += f->y[i] * f->rw[i];
    return s;
}

START_TEST(bn_reference_backward_matches_finite_differences) {
    bool global = _i == 1;
    enum { NS = 2 * 3 * 3 * 4, C = 3 };
    fd_ctx f;
    memset(&f, 0, sizeof(f));
    f.r = (ref_norm){.n = 2, .c = C, .h = 3, .w = 4, .eps = 1e-5};
    float tmp[NS];
    double x[NS], rw[NS], y[NS], gx[NS], fd[NS], gamma[C], beta[C], gg[C], gb[C];
    double mean[C] = {0.3, -0.2, 0.1}, var[C] = {0.8, 1.3, 0.5}, bm[C], bv[C];
    fill_uniform(tmp, NS, 1, -1, 2), to_double(x, tmp, NS);
    fill_uniform(tmp, NS, 2, -1, 1), to_double(rw, tmp, NS);
    fill_uniform(tmp, C, 3, 0.5f, 1.5f), to_double(gamma, tmp, C);
    fill_uniform(tmp, C, 4, -0.5f, 0.5f), to_double(beta, tmp, C);
    f.x = x, f.gamma = gamma, f.beta = beta, f.rw = rw, f.y = y, f.bm = bm, f.bv = bv;
    if (global) {
        f.mean = mean, f.var = var;
        ref_bn_backward_global(&f.r, x, gamma, mean, var, rw, gx, gg, gb);
    } else {
        ref_bn_backward(&f.r, x, gamma, rw, gx, gg, gb);
    }
    f.which = 0;
    fd_gradient(bn_loss, &f, x, NS, fd);
    DG_ASSERT_CLOSE64(gx, fd, NS, 1e-8, 1e-6);
    f.which = 1;
    fd_gradient(bn_loss, &f, gamma, C, fd);
    DG_ASSERT_CLOSE64(gg, fd, C, 1e-8, 1e-6);
    f.which = 2;
    fd_gradient(bn_loss, &f, beta, C, fd);
    DG_ASSERT_CLOSE64(gb, fd, C, 1e-8, 1e-6);
}
END_TEST

Suite *batchnorm_suite(void) {
    Suite *s = suite_create("batchnorm");
    TCase *tc = tcase_create("numerics");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, bn_train_forward_backward_match_reference, 0,
            (int)DG_ARRAY_LEN(cases));
    tcase_add_loop_test(tc, bn_running_stats_forward_backward_match_affine_map, 0,
            (int)DG_ARRAY_LEN(global_cases));
    tcase_add_loop_test(tc, bn_running_stats_follow_pytorch_after_one_and_two_forwards, 0, 2);
    tcase_add_test(tc, bn_update_stats_false_leaves_stats_unchanged);
    tcase_add_test(tc, bn_fused_relu_matches_bn_then_relu);
    tcase_add_loop_test(tc, bn_inference_instance_matches_eval_forward, 0, 2);
    tcase_add_loop_test(tc, bn_redo_rewrites_the_forward_output_bit_for_bit, 0,
            2 * (int)DG_ARRAY_LEN(cases));
    tcase_add_test(tc, bn_registers_params_and_stats_like_pytorch);
    tcase_add_test(tc, bn_steps_after_the_first_allocate_nothing);
    tcase_add_loop_test(tc, bn_reference_backward_matches_finite_differences, 0, 2);
    tcase_add_loop_test(tc, bn_sync_replicas_of_half_batches_compute_the_whole_batch, 0,
            (int)DG_ARRAY_LEN(replica_cases));
    tcase_add_loop_test(tc, bn_unsynced_replicas_normalise_alone_and_share_running_stats, 0,
            (int)DG_ARRAY_LEN(replica_cases));
    suite_add_tcase(s, tc);
    return s;
}
