/* tests/test_export.c -- `dgseg export --onnx` (app/export_cmd.c,
 * nets/onnx.c): the exported graph, run by ONNX Runtime, gives the logits
 * dgseg gives.
 *
 * ONNX Runtime is npm's onnxruntime-node (CPU), run by tests/ort/run.js
 * under node; scripts/test installs it into build-ort/ (DGSEG_ORT_MODULE
 * names another onnxruntime-node folder). Where node or the module is
 * missing the parity cases are skipped, with the reason.
 *
 * Tolerance: both engines compute in f32 from the same folded weights
 * (dgseg folds BatchNorm into its inference convolutions the same way), but
 * they sum each convolution's products in different orders and ONNX
 * Runtime's bilinear resize rounds its weights its own way: the bound is
 * 1e-4 of the largest logit's magnitude, the relative bar; a
 * wrong layer (a missing ReLU, an unfolded BatchNorm, a resize without
 * align_corners) moves logits by 1e-2 and more of it. */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/checkpoint.h"
#include "app/export_cmd.h"
#include "app/predict.h"
#include "app/train.h"
#include "common.h"
#include "data/fsutil.h"
#include "data/image_cv.h"
#include "data/npy.h"
#include "nets/core/safetensors.h"
#include "nets/model.h"
#include "proc.h"

static char node[256];   /* node on PATH */
static char ort[512];    /* the onnxruntime-node folder */

/* Why this machine cannot run ONNX Runtime (NULL: it can). */
static const char *cannot_run_ort(void) {
    if (!find_on_path("node", node, sizeof(node))) return "node is not installed (Debian: nodejs)";
    const char *env = getenv("DGSEG_ORT_MODULE");
    snprintf(ort, sizeof(ort), "%s", env && env[0] ? env
            : DG_SOURCE_DIR "/build-ort/node_modules/onnxruntime-node");
    char probe[600];
    snprintf(probe, sizeof(probe), "%s/package.json", ort);
    if (access(probe, R_OK) != 0)
        return "ONNX Runtime is not installed (scripts/test installs npm's onnxruntime-node "
               "into build-ort/; DGSEG_ORT_MODULE names another folder)";
    return NULL;
}

#define SKIP_WITHOUT_ORT() DG_TEST_SKIP_IF(cannot_run_ort(), "no exported graph run")

static void setup(void) { proc_setup("export"); }
static void teardown(void) { proc_teardown(); }

/* Runs in-process command `main` with argv (NULL-terminated); returns its
 * exit code, its stdout and then its stderr into *log (dg_free it). */
static int run_cmd(int (*main_fn)(int, char **), const char **argv, char **log) {
    int argc = 0;
    while (argv[argc]) argc++;
    capture out, err;
    capture_out_begin(&out);
    capture_begin(&err);
    const int rc = main_fn(argc, (char **)argv);
    fflush(stdout);
    char *e = capture_end(&err), *o = capture_end(&out);
    *log = dg_xasprintf("%s%s", o, e);
    dg_free(o);
    dg_free(e);
    return rc;
}

/* `dgseg export --checkpoint ck --onnx out [extra...]`, which must succeed. */
static void export_ok(const char *ck, const char *out, const char *e1, const char *e2,
        const char *e3) {
    const char *argv[] = {"export", "--checkpoint", ck, "--onnx", out, e1, e2, e3, NULL};
    char *log;
    const int rc = run_cmd(dg_export_main, argv, &log);
    ck_assert_msg(rc == 0 && strstr(log, "wrote "), "export: rc %d:\n%s", rc, log);
    dg_free(log);
}

/* ONNX Runtime on model with input x (n, c, h, w): the logits (numel
 * floats expected), allocated. */
static float *ort_run(const char *model, const float *x, int64_t n, int64_t c, int64_t h,
        int64_t w, size_t numel) {
    char in[256], out[256], dims[4][24];
    snprintf(in, sizeof(in), "%s/in.bin", proc_dir);
    snprintf(out, sizeof(out), "%s/out.bin", proc_dir);
    write_file(in, x, (size_t)(n * c * h * w) * sizeof(float));
    const int64_t d[4] = {n, c, h, w};
    for (int i = 0; i < 4; i++) snprintf(dims[i], sizeof(dims[i]), "%lld", (long long)d[i]);
    setenv("ORT_MODULE", ort, 1);
    const char *args[] = {DG_SOURCE_DIR "/tests/ort/run.js", model, in, dims[0], dims[1],
            dims[2], dims[3], out, NULL};
    const int rc = wait_exit(spawn_exe("ort", node, args), PROC_TIMEOUT_S);
    char *err = err_of("ort");
    ck_assert_msg(rc == 0, "ONNX Runtime: exit %d:\n%s", rc, err);
    dg_free(err);
    size_t bytes = 0;
    float *z = (float *)slurp(out, &bytes);
    ck_assert_msg(z && bytes == numel * sizeof(float), "%s: %zu bytes, want %zu", out, bytes,
            numel * sizeof(float));
    return z;
}

/* max |a - b| over n values, relative to max |b|; asserts the reference
 * is not all zeros (an all-zero pair would agree trivially). */
static double max_rel_diff(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - (double)b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    ck_assert_msg(m > 0, "the reference logits are all zero");
    return d / m;
}

/* ---- segmentation: DeepLabv3+ R18 at output stride 16 and 8 -------------- */

static const int strides[] = {16, 8};

/* A 64 x 48 RGB test image with structure in every channel. */
static void write_test_image(const char *path) {
    dg_image img;
    dg_image_init(&img, 48, 64, 3);
    for (int y = 0; y < 48; y++)
        for (int x = 0; x < 64; x++)
            for (int k = 0; k < 3; k++)
                img.data[(y * 64 + x) * 3 + k] = (uint8_t)((x * 7 + y * 13 + k * 71 +
                        ((x / 8 + y / 8) % 2) * 90) % 256);
    ck_assert_int_eq(dg_image_write_png(path, &img), DG_STATUS_OK);
    dg_image_free(&img);
}

/* The exported DeepLabv3+ (Lookahead's slow weights, BatchNorm folded)
 * against `dgseg predict --logits` of the same checkpoint on the same
 * image, at batch 1 and with the batch and size symbolic. */
START_TEST(deeplab_export_runs_in_onnx_runtime_as_predict_computes) {
    SKIP_WITHOUT_ORT();
    const int os = strides[_i];
    char dir[128], ck[256], png[256], outdir[192], npy[256], onnx[256];
    snprintf(dir, sizeof(dir), "%s/os%d", proc_dir, os);
    train_tiny_seg_checkpoint(dir, 1, os);
    snprintf(ck, sizeof(ck), "%s/run/checkpoints/last.safetensors", dir);
    snprintf(png, sizeof(png), "%s/img.png", proc_dir);
    snprintf(outdir, sizeof(outdir), "%s/pred", proc_dir);
    snprintf(npy, sizeof(npy), "%s/img.npy", outdir);
    snprintf(onnx, sizeof(onnx), "%s/os%d.onnx", proc_dir, os);
    write_test_image(png);
    const char *pargv[] = {"predict", "--checkpoint", ck, "--input", png, "--out", outdir,
            "--logits", NULL};
    char *log;
    int rc = run_cmd(dg_predict_main, pargv, &log);
    ck_assert_msg(rc == 0 && strstr(log, "lookahead slow weights"), "predict: rc %d:\n%s", rc,
            log);
    dg_free(log);
    export_ok(ck, onnx, NULL, NULL, NULL);
    dg_npy ref;
    ck_assert_int_eq(dg_npy_read_f32(npy, &ref), DG_STATUS_OK);
    ck_assert_int_eq(ref.ndims, 3);
    dg_image img;
    ck_assert_int_eq(dg_image_read(png, &img), DG_STATUS_OK);
    float *x = dg_xmalloc((size_t)(3 * img.h * img.w) * sizeof(float));
    dg_image_to_tensor(&img, x, DG_IMAGENET_MEAN, DG_IMAGENET_STD);
    float *z = ort_run(onnx, x, 1, 3, img.h, img.w, (size_t)ref.numel);
    const double rel = max_rel_diff(z, ref.data, (size_t)ref.numel);
    printf("export: deeplabv3plus-r18 OS%d, 64 x 48: ONNX Runtime vs predict, max |dz| / "
           "max |z| = %.3g\n", os, rel);
    ck_assert_msg(rel <= 1e-4, "OS%d: logits differ by %.3g of the largest", os, rel);
    dg_free(z);
    dg_free(x);
    dg_image_free(&img);
    dg_npy_free(&ref);
}
END_TEST

/* ---- classification: the MNIST CNN and the ResNet-18 classifier ---------- */

/* In-process logits of checkpoint ck's method weights on x (n, c, s, s):
 * the reference for a classifier's export. */
static float *dgseg_logits(const char *ck, const float *x, int64_t n, int64_t c, int64_t s,
        int64_t *classes) {
    dg_ckpt k;
    ck_assert_int_eq(dg_ckpt_open(&k, ck), DG_STATUS_OK);
    dg_ctx ctx;
    dg_ctx_init(&ctx);
    dg_model_opts mo = {.batch = n, .in_channels = c, .height = s, .width = s};
    ck_assert_int_eq(dg_ckpt_load_model(&k, &ctx, &mo, false), DG_STATUS_OK);
    memcpy(dg_mem_ptr(k.m.src), x, (size_t)(n * c * s * s) * sizeof(float));
    dg_pass p = dg_pass_eval(&k.m.ps);
    p.params = k.w.params;
    p.stats = (float *)k.w.stats;
    dg_model_forward(&k.m, &ctx, &p);
    DG_DNNL(dnnl_stream_wait(ctx.stream));
    *classes = k.m.opts.classes;
    float *z = dg_xmalloc((size_t)(n * *classes) * sizeof(float));
    const int64_t dims[2] = {n, *classes};
    dnnl_memory_desc_t md = dg_md_plain(2, dims, dnnl_nc);
    dnnl_memory_t plain = dg_mem_new(&ctx, &md, z);
    dg_mem_copy(&ctx, plain, k.m.logits);
    dnnl_memory_destroy(plain);
    dg_ckpt_close(&k);
    dg_ctx_free(&ctx);
    return z;
}

/* A 4-step Lookahead run of `model` on a DomainBed tree (3 domains x 2
 * classes x 5 images) at image_size s; returns its checkpoint (static). */
static const char *train_classifier(const char *model, int s) {
    static char ck[256];
    char root[128], cfg[128], out[160], text[1024];
    snprintf(root, sizeof(root), "%s/db", proc_dir);
    if (access(root, F_OK) != 0) make_tiny_domainbed(root);
    snprintf(text, sizeof(text),
            "[data]\ndataset = domainbed:%s\ntest_domains = env0\nimage_size = %d\nworkers = 0\n"
            "[model]\nname = %s\n[optim]\nmethod = lookahead\nla_k = 2\nlr = 0.05\n"
            "[train]\niterations = 4\nbatch_size = 2\nlog_every = 1\n[eval]\nbatch_size = 4\n",
            root, s, model);
    snprintf(cfg, sizeof(cfg), "%s/%s.ini", proc_dir, model);
    write_file(cfg, text, strlen(text));
    snprintf(out, sizeof(out), "output.dir=%s/%s", proc_dir, model);
    const char *argv[] = {"train", cfg, out, NULL};
    char *log;
    const int rc = run_cmd(dg_train_main, argv, &log);
    ck_assert_msg(rc == 0, "train %s: rc %d:\n%s", model, rc, log);
    dg_free(log);
    snprintf(ck, sizeof(ck), "%s/%s/test-env0/checkpoints/last.safetensors", proc_dir, model);
    return ck;
}

static const struct {
    const char *model;
    int size;
} classifiers[] = {{"mnist-cnn", 28}, {"resnet18", 32}};

/* Batch 3, the export's batch and size symbolic; and once more with them
 * fixed by --batch / --size. */
START_TEST(classifier_export_runs_in_onnx_runtime_as_dgseg_computes) {
    SKIP_WITHOUT_ORT();
    const char *model = classifiers[_i].model;
    const int64_t s = classifiers[_i].size, n = 3, c = 3;
    const char *ck = train_classifier(model, (int)s);
    float *x = dg_xmalloc((size_t)(n * c * s * s) * sizeof(float));
    fill_uniform(x, (size_t)(n * c * s * s), 11, -1.f, 1.f);
    int64_t k = 0;
    float *ref = dgseg_logits(ck, x, n, c, s, &k);
    char onnx[256], size[16];
    snprintf(onnx, sizeof(onnx), "%s/%s.onnx", proc_dir, model);
    snprintf(size, sizeof(size), "%lld", (long long)s);
    export_ok(ck, onnx, NULL, NULL, NULL);
    float *z = ort_run(onnx, x, n, c, s, s, (size_t)(n * k));
    const double rel = max_rel_diff(z, ref, (size_t)(n * k));
    dg_free(z);
    const char *argv[] = {"export", "--checkpoint", ck, "--onnx", onnx, "--batch", "3",
            "--size", size, size, NULL};
    char *log;
    ck_assert_int_eq(run_cmd(dg_export_main, argv, &log), 0);
    dg_free(log);
    z = ort_run(onnx, x, n, c, s, s, (size_t)(n * k));
    const double rel_fixed = max_rel_diff(z, ref, (size_t)(n * k));
    printf("export: %s, batch 3 at %lld: ONNX Runtime vs dgseg, max |dz| / max |z| = %.3g "
           "(symbolic), %.3g (fixed)\n", model, (long long)s, rel, rel_fixed);
    ck_assert_msg(rel <= 1e-4 && rel_fixed <= 1e-4, "%s: logits differ by %.3g / %.3g of the "
            "largest", model, rel, rel_fixed);
    dg_free(z);
    dg_free(ref);
    dg_free(x);
}
END_TEST

/* ---- requests export refuses ------------------------------------------- */

START_TEST(unusable_requests_are_clear_errors) {
    char bogus[256], onnx[256], *log;
    snprintf(onnx, sizeof(onnx), "%s/x.onnx", proc_dir);
    /* a safetensors file of a model dgseg does not have */
    snprintf(bogus, sizeof(bogus), "%s/unet.safetensors", proc_dir);
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    const float v[2] = {1, 2};
    const int64_t shape[1] = {2};
    dg_tensor_writer_add_f32(&w, "conv.weight", 1, shape, v);
    dg_tensor_writer_set_metadata(&w, "model", "unet");
    ck_assert_int_eq(dg_tensor_writer_write(&w, bogus), DG_STATUS_OK);
    dg_tensor_writer_free(&w);
    const char *a1[] = {"export", "--checkpoint", bogus, "--onnx", onnx, NULL};
    int rc = run_cmd(dg_export_main, a1, &log);
    ck_assert_msg(rc == 1 && strstr(log, "unet") && strstr(log, bogus), "rc %d:\n%s", rc, log);
    dg_free(log);
    /* a size output stride 16 does not divide */
    char dir[128], ck[256];
    snprintf(dir, sizeof(dir), "%s/os16", proc_dir);
    train_tiny_seg_checkpoint(dir, 1, 16);
    snprintf(ck, sizeof(ck), "%s/run/checkpoints/last.safetensors", dir);
    const char *a2[] = {"export", "--checkpoint", ck, "--onnx", onnx, "--size", "50", "64",
            NULL};
    rc = run_cmd(dg_export_main, a2, &log);
    ck_assert_msg(rc == 2 && strstr(log, "output stride 16"), "rc %d:\n%s", rc, log);
    dg_free(log);
    /* usage: --onnx missing, --size with one number */
    const char *a3[] = {"export", "--checkpoint", ck, NULL};
    rc = run_cmd(dg_export_main, a3, &log);
    ck_assert_msg(rc == 2 && strstr(log, "--onnx"), "rc %d:\n%s", rc, log);
    dg_free(log);
    const char *a4[] = {"export", "--checkpoint", ck, "--onnx", onnx, "--size", "64", NULL};
    rc = run_cmd(dg_export_main, a4, &log);
    ck_assert_msg(rc == 2 && strstr(log, "two numbers"), "rc %d:\n%s", rc, log);
    dg_free(log);
    ck_assert_msg(access(onnx, F_OK) != 0, "a refused export wrote %s", onnx);
}
END_TEST

Suite *export_suite(void) {
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("onnx");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_loop_test(tc, deeplab_export_runs_in_onnx_runtime_as_predict_computes, 0,
            (int)DG_ARRAY_LEN(strides));
    tcase_add_loop_test(tc, classifier_export_runs_in_onnx_runtime_as_dgseg_computes, 0,
            (int)DG_ARRAY_LEN(classifiers));
    tcase_add_test(tc, unusable_requests_are_clear_errors);
    suite_add_tcase(s, tc);
    return s;
}
