/* tests/test_predict.c -- `dgseg predict` in-process on real files: the
 * PNG holds the argmax of the logits, the .npy the logits (C, H, W) of an
 * eval-mode forward on the ImageNet-normalised image, checkpoints supply the
 * model from their metadata (a file without optimizer state runs its
 * stored weights, with or without --weights live), --overlay writes the
 * input beside its 50/50 blend with the class colours, and bad inputs give
 * exit 1 (runtime) or 2 (usage) with nothing written. Method weights of
 * training checkpoints: tests/test_eval_cmd.c. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/predict.h"
#include "common.h"
#include "data/image_cv.h"
#include "data/npy.h"
#include "data/png_io.h"
#include "nets/core/weights.h"
#include "nets/model.h"
#include "ref/fixture_weights.h"

static dg_ctx ctx;
static char dir[64];
static void setup(void) {
    dg_ctx_init(&ctx);
    make_tmpdir(dir, "predict");
}
static void teardown(void) {
    remove_tree(dir, 1);
    dg_ctx_free(&ctx);
}

enum { PH = 37, PW = 53 };

static int run(int argc, char **argv) {
    capture c;
    capture_begin(&c);
    int rc = dg_predict_main(argc, argv);
    dg_free(capture_end(&c));
    return rc;
}

/* Weights of deeplabv3plus-r18 (19 classes, aux head) by the fixture rule,
 * saved to dir/weights.safetensors with `meta`; an RGB test image to
 * dir/street.png. */
static void write_inputs(const dg_weights_meta *meta, size_t n_meta) {
    dg_model m;
    dg_model_opts o = {.batch = 1, .in_channels = 3, .height = PH, .width = PW, .classes = 19,
            .output_stride = 16, .aux = true};
    ck_assert_int_eq(dg_model_create(&m, &ctx, "deeplabv3plus-r18", &o, 0), DG_STATUS_OK);
    fixture_fill_weights(&m.ps, 2024);
    char path[128];
    snprintf(path, sizeof(path), "%s/weights.safetensors", dir);
    ck_assert_int_eq(dg_weights_save(path, &m.ps, meta, n_meta), DG_STATUS_OK);
    dg_model_free(&m);
    dg_image img;
    dg_image_init(&img, PH, PW, 3);
    for (int i = 0; i < PH * PW * 3; i++) img.data[i] = (uint8_t)((i * 37 + (i / 7) * 11) % 256);
    snprintf(path, sizeof(path), "%s/street.png", dir);
    ck_assert_int_eq(dg_image_write_png(path, &img), DG_STATUS_OK);
    dg_image_free(&img);
}

/* The logits predict must produce: the same network, in-process. */
static float *expected_logits(void) {
    dg_model m;
    dg_model_opts o = {.batch = 1, .in_channels = 3, .height = PH, .width = PW, .classes = 19,
            .output_stride = 16};
    ck_assert_int_eq(dg_model_create(&m, &ctx, "deeplabv3plus-r18", &o, 0), DG_STATUS_OK);
    fixture_fill_weights(&m.ps, 2024);
    char path[128];
    snprintf(path, sizeof(path), "%s/street.png", dir);
    dg_image img;
    ck_assert_int_eq(dg_image_read(path, &img), DG_STATUS_OK);
    dg_image_to_tensor(&img, dg_mem_ptr(m.src), DG_IMAGENET_MEAN, DG_IMAGENET_STD);
    dg_image_free(&img);
    dg_pass p = dg_pass_eval(&m.ps);
    dg_model_forward(&m, &ctx, &p);
    float *z = dg_xmalloc(19 * PH * PW * sizeof(float));
    read_plain(&ctx, m.logits, z);
    dg_model_free(&m);
    return z;
}

static void check_outputs(const char *out) {
    float *z = expected_logits();
    char path[160];
    snprintf(path, sizeof(path), "%s/street.npy", out);
    dg_npy a;
    ck_assert_int_eq(dg_npy_read_f32(path, &a), DG_STATUS_OK);
    ck_assert_int_eq(a.ndims, 3);
    ck_assert(a.shape[0] == 19 && a.shape[1] == PH && a.shape[2] == PW);
    double *e = dup_double(z, 19 * PH * PW);
    DG_ASSERT_CLOSE(a.data, e, (size_t)(19 * PH * PW), 1e-5, 1e-4);
    snprintf(path, sizeof(path), "%s/street.png", out);
    dg_label_png l;
    ck_assert_int_eq(dg_label_read_png(path, &l), DG_STATUS_OK);
    ck_assert(l.paletted && l.h == PH && l.w == PW);
    ck_assert_mem_eq(l.palette[13], DG_CITYSCAPES_PALETTE[13], 3); /* car */
    int classes_seen = 0, seen[19] = {0};
    for (int i = 0; i < PH * PW; i++) {
        int best = 0;
        for (int k = 1; k < 19; k++)
            if (a.data[k * PH * PW + i] > a.data[best * PH * PW + i]) best = k;
        ck_assert_int_eq(l.data8[i], best);
        classes_seen += !seen[best]++;
    }
    ck_assert_int_gt(classes_seen, 1);
    dg_label_png_free(&l);
    dg_npy_free(&a);
    dg_free(e);
    dg_free(z);
}

START_TEST(predict_writes_argmax_png_and_logits_npy) {
    write_inputs(NULL, 0);
    char w[128], in[128], out[128];
    snprintf(w, sizeof(w), "%s/weights.safetensors", dir);
    snprintf(in, sizeof(in), "%s/street.png", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    char *argv[] = {"predict", "--model", "deeplabv3plus-r18", "--weights", w, "--classes", "19",
            "--input", in, "--out", out, "--logits", NULL};
    ck_assert_int_eq(run(12, argv), 0);
    check_outputs(out);
}
END_TEST

START_TEST(predict_takes_the_model_from_checkpoint_metadata) {
    const dg_weights_meta meta[] = {{"model", "deeplabv3plus-r18"}, {"classes", "19"},
            {"output_stride", "16"}, {"aux", "true"}};
    write_inputs(meta, DG_ARRAY_LEN(meta));
    char w[128], in[128], out[128];
    snprintf(w, sizeof(w), "%s/weights.safetensors", dir);
    snprintf(in, sizeof(in), "%s/street.png", dir);
    snprintf(out, sizeof(out), "%s/ckpt", dir);
    char *argv[] = {"predict", "--checkpoint", w, "--input", in, "--out", out, "--logits", NULL};
    ck_assert_int_eq(run(8, argv), 0);
    check_outputs(out);
    snprintf(out, sizeof(out), "%s/live", dir);
    char *live[] = {"predict", "--checkpoint", w, "--weights", "live", "--input", in, "--out",
            out, "--logits", NULL};
    ck_assert_int_eq(run(10, live), 0);
    check_outputs(out);
}
END_TEST

START_TEST(predict_overlay_is_input_beside_the_blend) {
    write_inputs(NULL, 0);
    char w[128], in[128], out[128];
    snprintf(w, sizeof(w), "%s/weights.safetensors", dir);
    snprintf(in, sizeof(in), "%s/street.png", dir);
    snprintf(out, sizeof(out), "%s/ov", dir);
    char *argv[] = {"predict", "--model", "deeplabv3plus-r18", "--weights", w, "--classes", "19",
            "--input", in, "--out", out, "--overlay", NULL};
    ck_assert_int_eq(run(12, argv), 0);
    char path[160];
    snprintf(path, sizeof(path), "%s/street.png", out);
    dg_label_png l;
    ck_assert_int_eq(dg_label_read_png(path, &l), DG_STATUS_OK);
    dg_image src, ov;
    ck_assert_int_eq(dg_image_read(in, &src), DG_STATUS_OK);
    snprintf(path, sizeof(path), "%s/street_overlay.png", out);
    ck_assert_int_eq(dg_image_read(path, &ov), DG_STATUS_OK);
    ck_assert(ov.h == PH && ov.w == 2 * PW && ov.c == 3);
    int differ = 0;
    for (int y = 0; y < PH; y++)
        for (int x = 0; x < PW; x++) {
            const uint8_t *a = src.data + (y * PW + x) * 3, *left = ov.data + (y * 2 * PW + x) * 3;
            const uint8_t *right = left + PW * 3, *col = DG_CITYSCAPES_PALETTE[l.data8[y * PW + x]];
            for (int k = 0; k < 3; k++) {
                ck_assert_int_eq(left[k], a[k]);
                ck_assert_int_eq(right[k], (a[k] + col[k] + 1) / 2);
                differ += right[k] != a[k];
            }
        }
    ck_assert_int_gt(differ, PH * PW); /* the right half is not the input */
    dg_image_free(&src);
    dg_image_free(&ov);
    dg_label_png_free(&l);
}
END_TEST

START_TEST(predict_bad_inputs_exit_nonzero_and_write_nothing) {
    write_inputs(NULL, 0);
    char w[128], in[128], out[128], missing[128], bad[128];
    snprintf(w, sizeof(w), "%s/weights.safetensors", dir);
    snprintf(in, sizeof(in), "%s/street.png", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    snprintf(missing, sizeof(missing), "%s/nothing.png", dir);
    snprintf(bad, sizeof(bad), "%s/bad.png", dir);
    write_file(bad, "not a png", 9);
    /* Usage errors: 2. */
    char *a1[] = {"predict", "--input", in, "--out", out, NULL};
    ck_assert_int_eq(run(5, a1), 2);
    char *a2[] = {"predict", "--model", "mnist-cnn", "--weights", w, "--classes", "10",
            "--input", in, "--out", out, NULL};
    ck_assert_int_eq(run(11, a2), 2);
    char *a3[] = {"predict", "--model", "deeplabv3plus-r18", "--weights", w, "--classes", "19",
            "--input", in, in, "--out", out, NULL};
    ck_assert_int_eq(run(12, a3), 2); /* two inputs writing street.png */
    /* Runtime errors: 1. */
    char *a4[] = {"predict", "--model", "deeplabv3plus-r18", "--weights", w, "--classes", "7",
            "--input", in, "--out", out, NULL};
    ck_assert_int_eq(run(11, a4), 1); /* classifier of the wrong shape */
    char *a5[] = {"predict", "--model", "deeplabv3plus-r18", "--weights", missing, "--classes",
            "19", "--input", in, "--out", out, NULL};
    ck_assert_int_eq(run(11, a5), 1);
    char *a6[] = {"predict", "--model", "deeplabv3plus-r18", "--weights", w, "--classes", "19",
            "--input", bad, "--out", out, NULL};
    ck_assert_int_eq(run(11, a6), 1);
    char *a7[] = {"predict", "--checkpoint", w, "--input", in, "--out", out, NULL};
    ck_assert_int_eq(run(7, a7), 1); /* plain weights have no model metadata */
    char *a8[] = {"predict", "--checkpoint", w, "--weights", "slow", "--input", in, "--out", out,
            NULL};
    ck_assert_int_eq(run(9, a8), 2); /* with --checkpoint, --weights is live or method */
    char ovl[128];
    snprintf(ovl, sizeof(ovl), "%s/street_overlay.png", dir);
    write_file(ovl, "", 0);
    char *a9[] = {"predict", "--model", "deeplabv3plus-r18", "--weights", w, "--classes", "19",
            "--input", in, ovl, "--out", out, "--overlay", NULL};
    ck_assert_int_eq(run(13, a9), 2); /* street's overlay would replace street_overlay.png */
    char png[160];
    snprintf(png, sizeof(png), "%s/street.png", out);
    ck_assert_int_ne(access(png, F_OK), 0);
    /* an --out that cannot be made: the reason, not only the folder */
    char deep[160];
    snprintf(deep, sizeof(deep), "%s/no-such-parent/out", dir);
    char *a10[] = {"predict", "--model", "deeplabv3plus-r18", "--weights", w, "--classes", "19",
            "--input", in, "--out", deep, NULL};
    capture c;
    capture_begin(&c);
    const int rc = dg_predict_main(11, a10);
    char *log = capture_end(&c);
    ck_assert_msg(rc == 1 && strstr(log, deep) && strstr(log, "No such file or directory"),
            "rc %d: %s", rc, log);
    dg_free(log);
}
END_TEST

Suite *predict_suite(void) {
    Suite *s = suite_create("predict");
    TCase *tc = tcase_create("predict");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, predict_writes_argmax_png_and_logits_npy);
    tcase_add_test(tc, predict_takes_the_model_from_checkpoint_metadata);
    tcase_add_test(tc, predict_overlay_is_input_beside_the_blend);
    tcase_add_test(tc, predict_bad_inputs_exit_nonzero_and_write_nothing);
    suite_add_tcase(s, tc);
    return s;
}
