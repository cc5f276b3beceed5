/* tests/test_network.c -- layers composed into networks: a tiny
 * conv-BN-ReLU-pool-linear net trained with plain SGD on a separable task,
 * whole-model directional derivatives (docs/style.md §11 level 3), and the proof
 * that training steps after the first allocate nothing. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "nets/core/batchnorm.h"
#include "nets/core/conv.h"
#include "nets/core/linear.h"
#include "nets/core/loss.h"
#include "nets/core/pool.h"
#include "nets/core/relu.h"
#include "nets/model.h"

static dg_ctx ctx;
static void setup(void) { dg_ctx_init(&ctx); }
static void teardown(void) { dg_ctx_free(&ctx); }

enum { TN = 16, TC = 3, TH = 12, TW = 12, TK = 2 };

typedef struct tiny_net {
    dg_param_set ps;
    dnnl_memory_t src; /* (TN, TC, TH, TW) nchw, owned */
    dg_conv conv;
    dg_bn bn;
    dg_relu relu;
    dg_pool pool;
    dg_linear fc;
    dg_loss_ce loss;
    int32_t label[TN];
} tiny_net;

static void tiny_init(tiny_net *t) {
    memset(t, 0, sizeof(*t));
    dg_params_init(&t->ps);
    int64_t dims[4] = {TN, TC, TH, TW};
    dnnl_memory_desc_t md = dg_md_plain(4, dims, dnnl_nchw);
    t->src = dg_mem_new(&ctx, &md, DNNL_MEMORY_ALLOCATE);
    dg_conv_cfg cc = {.oc = 8, .k = 3, .stride = 1, .pad = 1, .dilation = 1,
            .no_diff_src = true, .training = true};
    dg_conv_init(&t->conv, &ctx, &t->ps, "conv", t->src, &cc);
    dg_bn_cfg bc = {.training = true};
    dg_bn_init(&t->bn, &ctx, &t->ps, "bn", t->conv.dst, &bc);
    dg_relu_init(&t->relu, &ctx, t->bn.dst);
    dg_pool_cfg pc = {.kind = DG_POOL_MAX, .k = 3, .stride = 2, .pad = 1, .training = true};
    dg_pool_init(&t->pool, &ctx, t->relu.dst, &pc);
    dg_linear_cfg lc = {.oc = TK, .bias = true, .training = true};
    dg_linear_init(&t->fc, &ctx, &t->ps, "fc", t->pool.dst, &lc);
    dg_loss_ce_cfg ec = {.scale = 1.f};
    dg_loss_ce_init(&t->loss, &ctx, t->fc.dst, &ec);
    dg_params_alloc(&t->ps);
    dg_params_init_values(&t->ps, 11);
}

/* Class 0: a bright left half in channel 0; class 1: a bright right half;
 * plus uniform noise everywhere. */
static void tiny_data(tiny_net *t, uint64_t seed) {
    float *x = dg_mem_ptr(t->src);
    fill_uniform(x, TN * TC * TH * TW, seed, -0.5f, 0.5f);
    for (int n = 0; n < TN; n++) {
        t->label[n] = n % 2;
        for (int h = 0; h < TH; h++)
            for (int w = 0; w < TW; w++)
                if ((w < TW / 2) == (n % 2 == 0)) x[((n * TC + 0) * TH + h) * TW + w] += 1.f;
    }
}

static double tiny_step(tiny_net *t, const dg_pass *p, bool backward) {
    dg_conv_forward(&t->conv, &ctx, p);
    dg_bn_forward(&t->bn, &ctx, p);
    dg_relu_forward(&t->relu, &ctx, p);
    dg_pool_forward(&t->pool, &ctx, p);
    dg_linear_forward(&t->fc, &ctx, p);
    double loss = dg_loss_ce_compute(&t->loss, &ctx, t->label);
    if (backward) {
        dg_linear_backward(&t->fc, &ctx, p, t->loss.diff);
        dg_pool_backward(&t->pool, &ctx, p, t->fc.diff_src);
        dg_relu_backward(&t->relu, &ctx, p, t->pool.diff_src);
        dg_bn_backward(&t->bn, &ctx, p, t->relu.diff_src);
        dg_conv_backward(&t->conv, &ctx, p, t->bn.diff_src);
    }
    DG_DNNL(dnnl_stream_wait(ctx.stream));
    return loss;
}

static void tiny_free(tiny_net *t) {
    dg_loss_ce_free(&t->loss);
    dg_linear_free(&t->fc);
    dg_pool_free(&t->pool);
    dg_relu_free(&t->relu);
    dg_bn_free(&t->bn);
    dg_conv_free(&t->conv);
    dnnl_memory_destroy(t->src);
    dg_params_free(&t->ps);
}

START_TEST(tiny_net_trained_with_sgd_cuts_loss_tenfold) {
    tiny_net t;
    tiny_init(&t);
    dg_pass p = dg_pass_train(&t.ps);
    double first = 0, last = 0;
    for (int s = 0; s < 150; s++) {
        tiny_data(&t, 1000 + (uint64_t)s); /* a fresh batch every step */
        double l = tiny_step(&t, &p, true);
        if (s == 0) first = l;
        last = l;
        for (size_t i = 0; i < t.ps.d; i++) t.ps.data[i] -= 0.1f * t.ps.grad[i];
    }
    ck_assert_msg(first > 0.3, "first loss %g", first);
    ck_assert_msg(last < first / 10, "loss %g -> %g: fell less than 10x", first, last);
    /* Eval mode with the learned running statistics classifies too. */
    tiny_data(&t, 7);
    dg_pass e = dg_pass_eval(&t.ps);
    double le = tiny_step(&t, &e, false);
    ck_assert_msg(le < first / 5, "eval loss %g", le);
    tiny_free(&t);
}
END_TEST

/* Level 3: (L(w + h v) - L(w - h v)) / 2h against <g, v> for three random
 * unit directions v, rtol 1e-2. Running statistics must not move. */
typedef double (*loss_fn)(void *net, const dg_pass *p, bool backward);

static void check_directional_derivatives(void *net, loss_fn f, dg_param_set *ps, dg_pass *p,
        float h) {
    size_t d = ps->d;
    float *w0 = dg_xmalloc(d * sizeof(float)), *g = dg_xmalloc(d * sizeof(float));
    float *v = dg_xmalloc(d * sizeof(float));
    memcpy(w0, ps->data, d * sizeof(float));
    float *stats0 = dg_xmalloc(ps->n_stats * sizeof(float) + 4);
    memcpy(stats0, ps->stats, ps->n_stats * sizeof(float));
    p->update_stats = false;
    f(net, p, true);
    memcpy(g, ps->grad, d * sizeof(float));
    for (int k = 0; k < 3; k++) {
        fill_uniform(v, d, 77 + (uint64_t)k, -1, 1);
        double nv = 0, gv = 0;
        for (size_t i = 0; i < d; i++) nv += (double)v[i] * v[i];
        for (size_t i = 0; i < d; i++) v[i] = (float)(v[i] / sqrt(nv));
        for (size_t i = 0; i < d; i++) gv += (double)g[i] * v[i];
        for (size_t i = 0; i < d; i++) ps->data[i] = w0[i] + h * v[i];
        double lp = f(net, p, false);
        for (size_t i = 0; i < d; i++) ps->data[i] = w0[i] - h * v[i];
        double lm = f(net, p, false);
        memcpy(ps->data, w0, d * sizeof(float));
        double fd = (lp - lm) / (2.0 * h);
        ck_assert_msg(fabs(fd - gv) <= 1e-2 * fabs(gv) + 1e-5,
                "direction %d: finite difference %.6g, <g, v> %.6g", k, fd, gv);
    }
    ck_assert_mem_eq(stats0, ps->stats, ps->n_stats * sizeof(float));
    dg_free(w0), dg_free(g), dg_free(v), dg_free(stats0);
}

static double tiny_loss(void *net, const dg_pass *p, bool backward) {
    return tiny_step(net, p, backward);
}

START_TEST(tiny_net_gradient_matches_directional_derivatives) {
    tiny_net t;
    tiny_init(&t);
    tiny_data(&t, 3);
    dg_pass p = dg_pass_train(&t.ps);
    check_directional_derivatives(&t, tiny_loss, &t.ps, &p, 1e-2f);
    tiny_free(&t);
}
END_TEST

typedef struct model_run {
    dg_model m;
    dg_loss_ce loss;
    int32_t *label;
} model_run;

static double model_loss(void *vr, const dg_pass *p, bool backward) {
    model_run *r = vr;
    dg_model_forward(&r->m, &ctx, p);
    double l = dg_loss_ce_compute(&r->loss, &ctx, r->label);
    if (backward) dg_model_backward(&r->m, &ctx, p, r->loss.diff, NULL);
    DG_DNNL(dnnl_stream_wait(ctx.stream));
    return l;
}

/* Inputs of size x size (the network takes any size; small ones keep the
 * suite fast under valgrind). */
static void model_run_init(model_run *r, const char *name, int64_t batch, int64_t size) {
    memset(r, 0, sizeof(*r));
    dg_model_opts o = {.batch = batch, .in_channels = 1, .height = size, .width = size,
            .classes = 10, .training = true};
    ck_assert_int_eq(dg_model_create(&r->m, &ctx, name, &o, 3), DG_STATUS_OK);
    fill_uniform(dg_mem_ptr(r->m.src), (size_t)(batch * size * size), 5, 0, 1);
    r->label = dg_xmalloc((size_t)batch * sizeof(int32_t));
    for (int64_t i = 0; i < batch; i++) r->label[i] = (int32_t)(i * 7 % 10);
    dg_loss_ce_cfg lc = {.scale = 1.f};
    dg_loss_ce_init(&r->loss, &ctx, r->m.logits, &lc);
}

static void model_run_free(model_run *r) {
    dg_loss_ce_free(&r->loss);
    dg_model_free(&r->m);
    dg_free(r->label);
}

START_TEST(mnist_cnn_has_domainbed_parameter_count_and_names) {
    model_run r;
    model_run_init(&r, "mnist-cnn", 2, 28);
    ck_assert_uint_eq(r.m.ps.d, 371850); /* docs/datasets.md §10 */
    ck_assert_uint_eq(r.m.ps.n_stats, 0);
    ck_assert_ptr_nonnull(dg_params_find(&r.m.ps, "featurizer.conv4.bias"));
    ck_assert_ptr_nonnull(dg_params_find(&r.m.ps, "featurizer.bn3.weight"));
    ck_assert_ptr_nonnull(dg_params_find(&r.m.ps, "classifier.weight"));
    model_run_free(&r);
}
END_TEST

START_TEST(mnist_cnn_gradient_matches_directional_derivatives) {
    model_run r;
    model_run_init(&r, "mnist-cnn", 4, 28);
    dg_pass p = dg_pass_train(&r.m.ps);
    /* h = 1e-2 crosses enough ReLU kinks among 371,850 weights to bias the
     * difference by about 1.5% in a direction whose slope is only ~0.007;
     * the error shrinks linearly with h (measured: 1.5% at 1e-2, 0.7% at
     * 3e-3, 0.3% at 1e-3), the signature of kinks, not of a wrong gradient. */
    check_directional_derivatives(&r, model_loss, &r.m.ps, &p, 2e-3f);
    model_run_free(&r);
}
END_TEST

/* One SGD training step of a net given by its loss function. */
typedef struct sgd_run {
    void *net;
    loss_fn f;
    dg_param_set *ps;
    dg_pass p;
} sgd_run;

static void sgd_step(void *vr, int step) {
    sgd_run *r = vr;
    r->p.counter = (uint64_t)step;
    r->f(r->net, &r->p, true);
    for (size_t i = 0; i < r->ps->d; i++) r->ps->data[i] -= 1e-3f * r->ps->grad[i];
}

/* After the first step, a training step creates no oneDNN object and makes
 * no heap allocation from dgseg's code. */
static void assert_training_allocates_nothing(void *net, loss_fn f, dg_param_set *ps) {
    sgd_run r = {net, f, ps, dg_pass_train(ps)};
    assert_steps_allocate_nothing(sgd_step, &r, 3);
}

START_TEST(tiny_net_steps_after_the_first_allocate_nothing) {
    tiny_net t;
    tiny_init(&t);
    tiny_data(&t, 3);
    assert_training_allocates_nothing(&t, tiny_loss, &t.ps);
    tiny_free(&t);
}
END_TEST

START_TEST(mnist_cnn_steps_after_the_first_allocate_nothing) {
    model_run r;
    model_run_init(&r, "mnist-cnn", 2, 11);
    assert_training_allocates_nothing(&r, model_loss, &r.m.ps);
    model_run_free(&r);
}
END_TEST

START_TEST(unknown_model_name_is_a_config_error) {
    dg_model m;
    dg_model_opts o = {.batch = 1, .in_channels = 1, .height = 8, .width = 8, .classes = 2};
    ck_assert_int_eq(dg_model_create(&m, &ctx, "resnet-7", &o, 0), DG_STATUS_ERR_CONFIG);
    dg_model_free(&m);
}
END_TEST

Suite *network_suite(void) {
    Suite *s = suite_create("network");
    TCase *tc = tcase_create("network");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, tiny_net_trained_with_sgd_cuts_loss_tenfold);
    tcase_add_test(tc, tiny_net_gradient_matches_directional_derivatives);
    tcase_add_test(tc, mnist_cnn_has_domainbed_parameter_count_and_names);
    tcase_add_test(tc, mnist_cnn_gradient_matches_directional_derivatives);
    tcase_add_test(tc, tiny_net_steps_after_the_first_allocate_nothing);
    tcase_add_test(tc, mnist_cnn_steps_after_the_first_allocate_nothing);
    tcase_add_test(tc, unknown_model_name_is_a_config_error);
    suite_add_tcase(s, tc);
    return s;
}
