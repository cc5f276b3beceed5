/* Profiling (nets/core/profile.h, `dgseg bench --profile`): the FLOPs the
 * profile attributes to convolutions and inner products add up to the
 * model's own count (computed from its layers, independently), every
 * primitive execution is counted once per step, regions do not count the
 * primitives inside them twice, and nothing is timed while it is off. */
#include <math.h>
#include <string.h>

#include "app/bench.h"
#include "common.h"
#include "nets/core/loss.h"
#include "nets/core/profile.h"
#include "nets/model.h"

static dg_ctx ctx;

static void setup(void) { dg_ctx_init(&ctx); }
static void teardown(void) {
    dg_profile_free();
    dg_ctx_free(&ctx);
}

/* Sums flops * calls and calls over the slots of phase `phase` whose kind
 * starts with `prefix` (NULL: any). */
static double phase_flops(const char *phase, const char *prefix, long *calls) {
    int n;
    const dg_profile_row *r = dg_profile_rows(&n);
    double f = 0;
    *calls = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(dg_profile_phase(r[i].kind), phase)) continue;
        if (prefix && strncmp(r[i].kind, prefix, strlen(prefix))) continue;
        f += r[i].flops * (double)r[i].calls;
        *calls += r[i].calls;
    }
    return f;
}

/* Two training steps of `model` after a reset: forward FLOPs and backward
 * FLOPs (data + weights) equal twice the model's per-step counts. */
static void check_model(const char *model, int64_t size, int64_t channels, int64_t classes,
        int convs) {
    dg_profile_enable(true);
    dg_model m;
    dg_model_opts mo = {.batch = 2, .in_channels = channels, .height = size, .width = size,
            .classes = classes, .training = true, .output_stride = 16};
    ck_assert_int_eq(dg_model_create(&m, &ctx, model, &mo, 0), DG_STATUS_OK);
    int64_t ld[4];
    dg_mem_dims4(m.logits, ld);
    const size_t nl = (size_t)(ld[0] * ld[2] * ld[3]);
    int32_t *label = dg_xcalloc(nl, sizeof(*label));
    dg_loss_ce loss;
    dg_loss_ce_cfg lc = {.scale = 1.f};
    dg_loss_ce_init(&loss, &ctx, m.logits, &lc);
    dg_pass p = dg_pass_train(&m.ps);
    for (int s = 0; s < 3; s++) {
        if (s == 1) dg_profile_reset(); /* the first step creates the lazy reorders */
        dg_model_forward(&m, &ctx, &p);
        const double t = dg_profile_begin();
        dg_loss_ce_compute(&loss, &ctx, label);
        dg_profile_end("loss", t);
        dg_model_backward(&m, &ctx, &p, loss.diff, NULL);
    }
    long calls_f, calls_d, calls_w, calls_conv;
    const double f = phase_flops("forward", NULL, &calls_f);
    const double bd = phase_flops("backward-data", NULL, &calls_d);
    const double bw = phase_flops("backward-weights", NULL, &calls_w);
    phase_flops("forward", "convolution", &calls_conv);
    ck_assert_msg(fabs(f - 2 * m.flops_forward) <= 1e-9 * f, "%s forward: %.0f vs 2 x %.0f",
            model, f, m.flops_forward);
    ck_assert_msg(fabs(bd + bw - 2 * m.flops_backward) <= 1e-9 * (bd + bw),
            "%s backward: %.0f + %.0f vs 2 x %.0f", model, bd, bw, m.flops_backward);
    ck_assert_msg(calls_conv == 2 * convs, "%s: %ld convolution forward executions in 2 steps",
            model, calls_conv);
    long calls_loss;
    phase_flops("loss", NULL, &calls_loss);
    ck_assert_int_eq(calls_loss, 2);
    dg_loss_ce_free(&loss);
    dg_free(label);
    dg_model_free(&m);
}

START_TEST(flops_match_the_models_count) {
    check_model("mnist-cnn", 28, 1, 10, 4);
    dg_profile_free();
    check_model("resnet18", 32, 3, 7, 20);
}
END_TEST

static void busy(double seconds) {
    const double until = dg_now() + seconds;
    while (dg_now() < until) {
    }
}

/* A region of about 10 ms around a "primitive" of about 5 ms (timed and
 * added as dnnl_util does) gets the other 5 ms: region + primitive = the
 * region's wall time within 1 ms (a preempted test loses time between the
 * calls; counting the primitive twice would be 5 ms off). Then the phase names. */
START_TEST(regions_are_exclusive_and_phases_named) {
    ck_assert_int_eq(dg_profile_slot("convolution forward", "", 1), 0); /* off: no slot */
    dg_profile_enable(true);
    const int conv = dg_profile_slot("convolution forward", "2x3x8x8->4 k3x3 s1 d1", 10.0);
    ck_assert_int_gt(conv, 0);
    ck_assert_int_eq(dg_profile_slot("convolution forward", "2x3x8x8->4 k3x3 s1 d1", 10.0), conv);
    const double wall0 = dg_now();
    const double t0 = dg_profile_begin();
    busy(0.005);
    const double p0 = dg_now();
    busy(0.005);
    dg_profile_add(conv, dg_now() - p0);
    dg_profile_end("optimizer", t0);
    const double wall = dg_now() - wall0;
    int n;
    const dg_profile_row *r = dg_profile_rows(&n);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(r[0].calls, 1);
    ck_assert_str_eq(r[1].kind, "optimizer");
    ck_assert_msg(r[0].seconds >= 0.005 && r[1].seconds >= 0.005 &&
                    fabs(r[0].seconds + r[1].seconds - wall) < 1e-3,
            "primitive %g s + region %g s vs %g s", r[0].seconds, r[1].seconds, wall);
    dg_profile_reset();
    r = dg_profile_rows(&n);
    ck_assert(r[0].seconds == 0 && r[0].calls == 0 && r[1].seconds == 0);

    const char *pairs[][2] = {{"convolution forward", "forward"},
            {"convolution backward-data", "backward-data"},
            {"convolution backward-weights", "backward-weights"},
            {"inner_product backward-weights", "backward-weights"},
            {"pooling backward-data", "backward-data"}, {"reorder", "reorder"},
            {"batch_normalization backward", "bn/relu/elementwise"},
            {"eltwise forward", "bn/relu/elementwise"},
            {"group_normalization backward", "bn/relu/elementwise"},
            {"binary", "bn/relu/elementwise"}, {"concat", "forward"},
            {"resampling forward (align_corners)", "forward"}, {"loss", "loss"},
            {"optimizer", "optimizer"}};
    for (size_t i = 0; i < DG_ARRAY_LEN(pairs); i++)
        ck_assert_str_eq(dg_profile_phase(pairs[i][0]), pairs[i][1]);
}
END_TEST

/* Primitives created while profiling is off are never timed. */
START_TEST(off_means_untimed) {
    dg_model m;
    dg_model_opts mo = {.batch = 2, .in_channels = 1, .height = 28, .width = 28, .classes = 10,
            .training = false};
    ck_assert_int_eq(dg_model_create(&m, &ctx, "mnist-cnn", &mo, 0), DG_STATUS_OK);
    dg_profile_enable(true);
    dg_pass p = dg_pass_eval(&m.ps);
    dg_model_forward(&m, &ctx, &p);
    int n;
    const dg_profile_row *r = dg_profile_rows(&n);
    for (int i = 0; i < n; i++)
        ck_assert_msg(strstr(r[i].kind, "normalization") != NULL, "timed: %s", r[i].kind);
    dg_model_free(&m);
}
END_TEST

/* Rows of the model built with `winograd` (DG_WINOGRAD_*) whose shape names
 * a Winograd convolution (" wino"), after one forward. */
static int wino_rows(const char *model, bool training, int winograd) {
    dg_profile_enable(true);
    const bool seg = !strncmp(model, "deeplab", 7);
    dg_model m;
    dg_model_opts mo = {.batch = 2, .in_channels = seg ? 3 : 1, .height = seg ? 64 : 28,
            .width = seg ? 64 : 28, .classes = seg ? 19 : 10, .training = training,
            .output_stride = 16, .winograd = winograd};
    ck_assert_int_eq(dg_model_create(&m, &ctx, model, &mo, 0), DG_STATUS_OK);
    dg_pass p = training ? dg_pass_train(&m.ps) : dg_pass_eval(&m.ps);
    dg_model_forward(&m, &ctx, &p);
    int n, wino = 0;
    const dg_profile_row *r = dg_profile_rows(&n);
    for (int i = 0; i < n; i++) wino += strstr(r[i].shape, " wino") != NULL;
    dg_model_free(&m);
    dg_profile_free();
    return wino;
}

/* model.winograd=auto: Winograd for every inference instance and for the
 * classifiers' training, direct for DeepLab's training (its gradient
 * fixtures need it); on and off force it; the profile names the choice.
 * The same with oneDNN's Winograd kernels (loop 0, where the CPU has them)
 * and with dgseg's own (loop 1: oneDNN's hidden, as on an AVX2 CPU). */
START_TEST(winograd_auto_choice) {
    if (_i == 1) ctx.caps.winograd = false;
    ck_assert_int_eq(wino_rows("deeplabv3plus-r18", true, DG_WINOGRAD_AUTO), 0);
    ck_assert_int_gt(wino_rows("deeplabv3plus-r18", false, DG_WINOGRAD_AUTO), 0);
    ck_assert_int_gt(wino_rows("deeplabv3plus-r18", true, DG_WINOGRAD_ON), 0);
    ck_assert_int_eq(wino_rows("deeplabv3plus-r18", false, DG_WINOGRAD_OFF), 0);
    ck_assert_int_gt(wino_rows("mnist-cnn", true, DG_WINOGRAD_AUTO), 0);
    ck_assert_int_eq(wino_rows("mnist-cnn", true, DG_WINOGRAD_OFF), 0);
}
END_TEST

/* bench --profile runs (the table goes to stdout) and refuses a method
 * other than ERM with a usage error. */
START_TEST(bench_profile_command) {
    char *ok[] = {"bench", "--model", "mnist-cnn", "--batch", "4", "--steps", "1", "--threads",
            "1", "--profile", "--json", NULL};
    ck_assert_int_eq(dg_bench_main(11, ok), 0);
    ck_assert(!dg_profile_enabled());
    char *bad[] = {"bench", "--model", "mnist-cnn", "--profile", "--optimizer", "sam", NULL};
    capture cap;
    capture_begin(&cap);
    const int rc = dg_bench_main(6, bad);
    char *log = capture_end(&cap);
    ck_assert_msg(rc == 2 && strstr(log, "--profile"), "rc %d: %s", rc, log);
    dg_free(log);
}
END_TEST

/* bench --dtype bf16 runs bf16 convolutions (the profile names them) and
 * any other --dtype is a usage error. */
START_TEST(bench_dtype_bf16) {
    char *ok[] = {"bench", "--model", "mnist-cnn", "--batch", "4", "--steps", "1", "--threads",
            "1", "--dtype", "bf16", "--profile", NULL};
    capture cap;
    if (ctx.caps.bf16) {
        capture_out_begin(&cap);
        ck_assert_int_eq(dg_bench_main(12, ok), 0);
        char *out = capture_end(&cap);
        ck_assert_msg(strstr(out, "dtype bf16") && strstr(out, "k3x3 s1 d1 bf16") &&
                strstr(out, ":bf16"), "%s", out);
        dg_free(out);
    } else { /* exit 2 with the reason, not an abort */
        capture_begin(&cap);
        const int rc = dg_bench_main(12, ok);
        char *log = capture_end(&cap);
        ck_assert_msg(rc == 2 && strstr(log, "--dtype bf16") && strstr(log, ctx.caps.isa_name),
                "rc %d: %s", rc, log);
        dg_free(log);
        DG_TEST_SKIPPED("bf16 bench: no bf16 at ISA %s (checked: exit 2 with the reason)",
                ctx.caps.isa_name);
    }
    char *bad[] = {"bench", "--model", "mnist-cnn", "--dtype", "f16", NULL};
    capture_begin(&cap);
    const int rc = dg_bench_main(5, bad);
    char *log = capture_end(&cap);
    ck_assert_msg(rc == 2 && strstr(log, "--dtype") && strstr(log, "f16"), "rc %d: %s", rc, log);
    dg_free(log);
}
END_TEST

Suite *profile_suite(void) {
    Suite *s = suite_create("profile");
    TCase *tc = tcase_create("profile");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, flops_match_the_models_count);
    tcase_add_test(tc, regions_are_exclusive_and_phases_named);
    tcase_add_test(tc, off_means_untimed);
    tcase_add_loop_test(tc, winograd_auto_choice, 0, 2);
    tcase_add_test(tc, bench_profile_command);
    tcase_add_test(tc, bench_dtype_bf16);
    suite_add_tcase(s, tc);
    return s;
}
