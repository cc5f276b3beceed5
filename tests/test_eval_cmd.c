/* tests/test_eval_cmd.c -- `dgseg eval` and `dgseg predict --checkpoint`
 * on a real training checkpoint: a 3-step Lookahead run (DeepLabv3+ R18,
 * 32x32 crops, la_k = 2, so the live weights are one step past the slow
 * weights phi) on `dgseg synth` output, trained once per suite run and
 * shared by the tests (the folder is made by an unchecked fixture, the
 * training runs lazily in the first test's checked fixture: OpenMP only in
 * forked children).
 *
 *  - eval uses phi by default: its JSON equals an in-process evaluation of
 *    optim.lookahead.slow read from the file, differs from --weights live,
 *    which equals the evaluation of the stored model tensors;
 *  - end to end: eval's mIoU, per-class IoU and pixel accuracy on the
 *    Cityscapes-like target equal the confusion matrix this file counts
 *    from the label files (dataset reader) and the PNGs predict writes for
 *    the same images, for both weight choices;
 *  - a file holding only model weights is evaluated as stored; a file with
 *    the method's step but not its state, without its config, or with a
 *    config the method refuses exits 1 naming the file; a bad --weights
 *    value exits 2. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "app/config.h"
#include "app/eval_cmd.h"
#include "app/evaluate.h"
#include "app/predict.h"
#include "app/train.h"
#include "common.h"
#include "data/png_io.h"
#include "data/seg_dataset.h"
#include "eval/metrics.h"
#include "nets/core/weights.h"

static char dir[64];
static char synth_dir[128], cfg_path[160], ckpt[160], targets[256];

/* Unchecked (runs in the runner): only the folder and the paths. */
static void make_dir(void) {
    make_tmpdir(dir, "evalcmd");
    snprintf(synth_dir, sizeof(synth_dir), "%s/synth", dir);
    snprintf(cfg_path, sizeof(cfg_path), "%s/la.ini", dir);
    snprintf(ckpt, sizeof(ckpt), "%s/run/checkpoints/last.safetensors", dir);
    snprintf(targets, sizeof(targets), "data.targets=cityscapes:%s/cityscapes", synth_dir);
}
static void remove_dir(void) { remove_tree(dir, 10); }

/* Checked: synth data and the training run, once. */
static void train_once(void) { train_tiny_la_checkpoint(dir, 1); }

/* Runs `dgseg eval` on ckpt_path (--weights `weights` unless NULL) with the
 * JSON at json; returns the exit code, *log (when not NULL) the messages. */
static int eval_cmd(const char *ckpt_path, const char *weights, const char *json, char **log) {
    char *argv[12] = {"eval", cfg_path, "--checkpoint", (char *)ckpt_path, "--json",
            (char *)json, targets};
    int argc = 7;
    if (weights) {
        argv[argc++] = "--weights";
        argv[argc++] = (char *)weights;
    }
    capture cap;
    capture_begin(&cap);
    int rc = dg_eval_main(argc, argv);
    char *l = capture_end(&cap);
    if (log) *log = l;
    else dg_free(l);
    return rc;
}

/* eval's JSON of the training checkpoint with `weights` (NULL: the
 * default) at dir/<weights>.json, computed once and shared like the
 * checkpoint (the evaluations are deterministic). */
static const char *shared_json(const char *weights) {
    static char path[2][128];
    char *p = path[weights != NULL];
    snprintf(p, sizeof(path[0]), "%s/%s.json", dir, weights ? weights : "method");
    if (access(p, F_OK) == 0) return p;
    char *log;
    int rc = eval_cmd(ckpt, weights, p, &log);
    ck_assert_msg(rc == 0, "eval --weights %s rc %d:\n%s", weights ? weights : "(default)", rc,
            log);
    dg_free(log);
    return p;
}

/* The one target of an eval JSON (the row of `weights` label). */
typedef struct json_row {
    char label[64];
    double miou, pixel_acc;
    double iou[19]; /* NaN for null */
} json_row;

static double num_or_nan(const cJSON *v) { return cJSON_IsNumber(v) ? v->valuedouble : NAN; }

/* Reads row `row` of eval's JSON at path. */
static json_row read_row(const char *path, int row) {
    cJSON *j = read_json(path);
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "targets");
    ck_assert_int_gt(cJSON_GetArraySize(ts), row);
    const cJSON *t = cJSON_GetArrayItem(ts, row);
    json_row r;
    memset(&r, 0, sizeof(r));
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(t, "name")->valuestring, "cityscapes");
    r.miou = num_or_nan(cJSON_GetObjectItemCaseSensitive(t, "miou"));
    r.pixel_acc = num_or_nan(cJSON_GetObjectItemCaseSensitive(t, "pixel_acc"));
    const cJSON *iou = cJSON_GetObjectItemCaseSensitive(t, "per_class_iou");
    ck_assert_int_eq(cJSON_GetArraySize(iou), 19);
    for (int c = 0; c < 19; c++) r.iou[c] = num_or_nan(cJSON_GetArrayItem(iou, c));
    const cJSON *set = cJSON_GetObjectItemCaseSensitive(t, "settings");
    snprintf(r.label, sizeof(r.label), "%s",
            cJSON_GetObjectItemCaseSensitive(set, "weights")->valuestring);
    cJSON_Delete(j);
    return r;
}

static bool same_pct(double json, double frac) {
    return isnan(json) ? !isfinite(frac) : json == dg_metrics_pct(frac);
}

/* The JSON row holds exactly the scores of `res` (as percentages). */
static void expect_row_is(const json_row *r, const dg_seg_result *res, const char *what) {
    ck_assert_msg(same_pct(r->miou, res->miou), "%s: eval mIoU %.2f, expected %.6f", what,
            r->miou, 100 * res->miou);
    ck_assert_msg(same_pct(r->pixel_acc, res->pixel_acc), "%s: pixel acc %.2f vs %.6f", what,
            r->pixel_acc, 100 * res->pixel_acc);
    for (int c = 0; c < 19; c++)
        ck_assert_msg(same_pct(r->iou[c], res->iou[c]), "%s: class %d IoU %.2f vs %.6f", what,
                c, r->iou[c], 100 * res->iou[c]);
}

/* The checkpoint's model with its stored tensors (training layout: the
 * auxiliary head included). */
static void load_stored(dg_ctx *ctx, dg_model *m, dg_tensor_reader *rd) {
    ck_assert_int_eq(dg_tensor_reader_open(rd, ckpt), DG_STATUS_OK);
    ck_assert_str_eq(dg_tensor_reader_metadata(rd, "aux"), "true");
    dg_model_opts mo = {.batch = 1, .in_channels = 3, .height = 32, .width = 32,
            .classes = 19, .output_stride = 16, .aux = true};
    ck_assert_int_eq(dg_model_create(m, ctx, "deeplabv3plus-r18", &mo, 0), DG_STATUS_OK);
    ck_assert_int_eq(dg_weights_load_reader(rd, &m->ps, NULL), DG_STATUS_OK);
}

START_TEST(eval_uses_the_lookahead_slow_weights) {
    json_row m = read_row(shared_json(NULL), 0), l = read_row(shared_json("live"), 0);
    ck_assert_str_eq(m.label, "lookahead slow weights");
    ck_assert_str_eq(l.label, "live weights");
    ck_assert_msg(m.miou != l.miou, "slow and live weights give the same mIoU %.2f", m.miou);

    /* phi straight from the file, evaluated in-process */
    dg_ctx ctx;
    dg_ctx_init(&ctx);
    dg_model mod;
    dg_tensor_reader rd;
    load_stored(&ctx, &mod, &rd);
    float *phi = dg_xmalloc(mod.ps.d * sizeof(float));
    const int64_t shape[1] = {(int64_t)mod.ps.d};
    ck_assert_int_eq(dg_tensor_reader_read_f32(&rd, "optim.lookahead.slow", 1, shape, phi),
            DG_STATUS_OK);
    ck_assert_msg(memcmp(phi, mod.ps.data, mod.ps.d * sizeof(float)),
            "phi equals the live weights: the run ended on a sync");
    dg_config cfg;
    char *over[] = {targets};
    ck_assert_int_eq(dg_config_load_checked(&cfg, cfg_path, 1, over), 0);
    dg_eval_targets t = {0};
    ck_assert_int_eq(dg_eval_seg_targets(&cfg, &ctx, &mod.ps, phi, mod.ps.stats, "phi", &t),
            DG_STATUS_OK);
    ck_assert_int_eq(t.n, 1);
    expect_row_is(&m, &t.v[0].res, "phi");
    dg_eval_targets_free(&t);
    ck_assert_int_eq(dg_eval_seg_targets(&cfg, &ctx, &mod.ps, mod.ps.data, mod.ps.stats, "w",
            &t), DG_STATUS_OK);
    ck_assert_int_eq(t.n, 1);
    expect_row_is(&l, &t.v[0].res, "live");
    dg_eval_targets_free(&t);
    dg_config_free(&cfg);
    dg_free(phi);
    dg_tensor_reader_close(&rd);
    dg_model_free(&mod);
    dg_ctx_free(&ctx);
}
END_TEST

/* Base name without directory and extension (predict's <name>). */
static void stem_of(const char *path, char *buf, size_t size) {
    const char *b = strrchr(path, '/');
    snprintf(buf, size, "%s", b ? b + 1 : path);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf) *dot = '\0';
}

/* predict (weights `weights` or the default) on every image of the target,
 * then the confusion matrix of the label files against its PNGs; the
 * scores must be eval's. */
static void predict_matches_eval(const char *weights) {
    char out[128];
    snprintf(out, sizeof(out), "%s/pred-%s", dir, weights ? weights : "method");
    const json_row r = read_row(shared_json(weights), 0);

    char root[160];
    snprintf(root, sizeof(root), "%s/cityscapes", synth_dir);
    dg_seg_dataset ds;
    ck_assert_int_eq(dg_seg_dataset_open("cityscapes", root, "val", &ds), DG_STATUS_OK);
    ck_assert_int_eq(ds.n, 6);
    char **argv = dg_xcalloc(ds.n + 10, sizeof(char *));
    int argc = 0;
    argv[argc++] = "predict";
    argv[argc++] = "--checkpoint";
    argv[argc++] = ckpt;
    if (weights) {
        argv[argc++] = "--weights";
        argv[argc++] = (char *)weights;
    }
    argv[argc++] = "--out";
    argv[argc++] = out;
    argv[argc++] = "--input";
    for (size_t i = 0; i < ds.n; i++) argv[argc++] = ds.pairs[i].image;
    capture cap;
    capture_begin(&cap);
    int rc = dg_predict_main(argc, argv);
    char *log = capture_end(&cap);
    ck_assert_msg(rc == 0, "predict rc %d:\n%s", rc, log);
    dg_free(log);
    dg_free(argv);

    int64_t cm[19][19];
    memset(cm, 0, sizeof(cm));
    for (size_t i = 0; i < ds.n; i++) {
        dg_image lab;
        ck_assert_int_eq(dg_seg_dataset_load_label(&ds, i, &lab), DG_STATUS_OK);
        char stem[128], png[320];
        stem_of(ds.pairs[i].image, stem, sizeof(stem));
        snprintf(png, sizeof(png), "%s/%s.png", out, stem);
        dg_label_png p;
        ck_assert_int_eq(dg_label_read_png(png, &p), DG_STATUS_OK);
        ck_assert(p.paletted && p.h == lab.h && p.w == lab.w && p.data8);
        for (int k = 0; k < lab.h * lab.w; k++) {
            const int y = lab.data[k], q = p.data8[k];
            ck_assert_int_lt(q, 19);
            if (y != 255) cm[y][q]++;
        }
        dg_label_png_free(&p);
        dg_image_free(&lab);
    }
    dg_seg_dataset_free(&ds);
    dg_seg_result res;
    memset(&res, 0, sizeof(res));
    double sum = 0;
    int64_t diag = 0, total = 0;
    int present = 0;
    for (int c = 0; c < 19; c++) {
        int64_t row = 0, col = 0;
        for (int j = 0; j < 19; j++) {
            row += cm[c][j];
            col += cm[j][c];
        }
        const int64_t den = row + col - cm[c][c];
        res.iou[c] = den > 0 ? (double)cm[c][c] / (double)den : NAN;
        if (den > 0) {
            sum += res.iou[c];
            present++;
        }
        diag += cm[c][c];
        total += row;
    }
    ck_assert_int_gt(present, 1);
    res.miou = sum / present;
    res.pixel_acc = (double)diag / (double)total;
    expect_row_is(&r, &res, weights ? weights : "method");
}

START_TEST(eval_equals_the_confusion_of_predict_pngs) {
    predict_matches_eval(NULL);
    predict_matches_eval("live");
}
END_TEST

/* Copies ckpt to dst without the tensors whose names start with `drop`
 * (NULL: none), with metadata `key` set to `value` (NULL: removed) and,
 * when poison is not NULL, element 0 of F32 tensor `poison` set to pv. */
static void copy_ckpt_ex(const char *dst, const char *drop, const char *key, const char *value,
        const char *poison, float pv) {
    dg_tensor_reader rd;
    ck_assert_int_eq(dg_tensor_reader_open(&rd, ckpt), DG_STATUS_OK);
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    void **bufs = dg_xcalloc(rd.n_tensors + 1, sizeof(void *));
    for (size_t i = 0; i < rd.n_tensors; i++) {
        const dg_st_tensor *t = dg_tensor_reader_at(&rd, i);
        if (drop && !strncmp(t->name, drop, strlen(drop))) continue;
        bufs[i] = dg_xmalloc(t->end - t->begin + 1);
        ck_assert_int_eq(dg_tensor_reader_read_raw(&rd, t, bufs[i]), DG_STATUS_OK);
        if (poison && !strcmp(t->name, poison)) {
            ck_assert(t->dtype == DG_ST_F32 && t->numel > 0);
            memcpy(bufs[i], &pv, sizeof(pv));
        }
        dg_tensor_writer_add(&w, t->name, t->dtype, t->ndims, t->shape, bufs[i]);
    }
    for (size_t i = 0; i < rd.n_meta; i++)
        if (strcmp(rd.meta_keys[i], key))
            dg_tensor_writer_set_metadata(&w, rd.meta_keys[i], rd.meta_values[i]);
    if (value) dg_tensor_writer_set_metadata(&w, key, value);
    ck_assert_int_eq(dg_tensor_writer_write(&w, dst), DG_STATUS_OK);
    dg_tensor_writer_free(&w);
    for (size_t i = 0; i < rd.n_tensors; i++) dg_free(bufs[i]);
    dg_free(bufs);
    dg_tensor_reader_close(&rd);
}

static void copy_ckpt(const char *dst, const char *drop, const char *key, const char *value) {
    copy_ckpt_ex(dst, drop, key, value, NULL, 0.f);
}

static void expect_eval_fails(const char *file, const char *weights, int code, const char *a,
        const char *b) {
    char json[128];
    snprintf(json, sizeof(json), "%s/fail.json", dir);
    char *log;
    int rc = eval_cmd(file, weights, json, &log);
    ck_assert_msg(rc == code && strstr(log, a) && strstr(log, b),
            "%s: rc %d (expected %d), log lacks '%s' or '%s':\n%s", file, rc, code, a, b, log);
    ck_assert_int_ne(access(json, F_OK), 0);
    dg_free(log);
}

START_TEST(weights_only_files_and_broken_state) {
    /* only model weights (a `best` file): evaluated as stored = live */
    char best[128], stored[128], live[128];
    snprintf(best, sizeof(best), "%s/best.safetensors", dir);
    snprintf(stored, sizeof(stored), "%s/stored.json", dir);
    snprintf(live, sizeof(live), "%s/badlive.json", dir);
    copy_ckpt(best, "optim.", "step", "3");
    char *log;
    int rc = eval_cmd(best, NULL, stored, &log);
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    dg_free(log);
    json_row s = read_row(stored, 0), l = read_row(shared_json("live"), 0);
    ck_assert_str_eq(s.label, "weights as stored");
    ck_assert(s.miou == l.miou && s.pixel_acc == l.pixel_acc);

    /* the method's step without its state, config or a valid config */
    char bad[128];
    snprintf(bad, sizeof(bad), "%s/noslow.safetensors", dir);
    copy_ckpt(bad, "optim.lookahead.slow", "step", "3");
    expect_eval_fails(bad, NULL, 1, "optim.lookahead.slow", bad);
    snprintf(bad, sizeof(bad), "%s/noconfig.safetensors", dir);
    copy_ckpt(bad, NULL, "config", NULL);
    expect_eval_fails(bad, NULL, 1, "no metadata 'config'", bad);
    dg_tensor_reader rd;
    ck_assert_int_eq(dg_tensor_reader_open(&rd, ckpt), DG_STATUS_OK);
    char *text = dg_xstrdup(dg_tensor_reader_metadata(&rd, "config"));
    dg_tensor_reader_close(&rd);
    /* keys the method does not need are not read: a [data] key this dgseg
     * does not know (a checkpoint of another version) changes nothing */
    char *newer = dg_xasprintf("%s[data]\nfuture_key = 1\n", text);
    char other[128];
    snprintf(other, sizeof(other), "%s/newer.safetensors", dir);
    copy_ckpt(other, NULL, "config", newer);
    dg_free(newer);
    char *ok_json = dg_xasprintf("%s/newer.json", dir);
    ck_assert_int_eq(eval_cmd(other, NULL, ok_json, NULL), 0);
    json_row o = read_row(ok_json, 0), m0 = read_row(shared_json(NULL), 0);
    ck_assert(o.miou == m0.miou && o.pixel_acc == m0.pixel_acc);
    dg_free(ok_json);
    /* a bad value of a key it needs: one message naming the line and key */
    char *k = strstr(text, "la_k = 2\n");
    ck_assert_ptr_nonnull(k);
    k[7] = '0';
    snprintf(bad, sizeof(bad), "%s/lak0.safetensors", dir);
    copy_ckpt(bad, NULL, "config", text);
    dg_free(text);
    expect_eval_fails(bad, NULL, 1, "metadata 'config':", "[optim] la_k");
    /* ... which --weights live still evaluates */
    ck_assert_int_eq(eval_cmd(bad, "live", live, NULL), 0);
    expect_eval_fails(ckpt, "slow", 2, "--weights 'slow'", "live");
    /* metadata naming an output stride DeepLab does not have: refused by
     * name, not an abort while the model is built */
    static const char *const strides[] = {"12", "7", "16x", "99999999999"};
    for (size_t i = 0; i < DG_ARRAY_LEN(strides); i++) {
        snprintf(bad, sizeof(bad), "%s/os%zu.safetensors", dir, i);
        copy_ckpt(bad, NULL, "output_stride", strides[i]);
        expect_eval_fails(bad, NULL, 1, "metadata 'output_stride'", bad);
    }
}
END_TEST

/* A model holding NaN or Inf, or a BN variance below 0, evaluates to
 * numbers that mean nothing: eval (and predict) refuse it naming the
 * tensor and which weights hold it. */
START_TEST(non_finite_weights_and_negative_variances_are_refused_by_name) {
    char bad[128];
    snprintf(bad, sizeof(bad), "%s/nan-slow.safetensors", dir);
    copy_ckpt_ex(bad, NULL, "step", "3", "optim.lookahead.slow", NAN);
    expect_eval_fails(bad, NULL, 1, "lookahead slow weights", "holds nan");
    snprintf(bad, sizeof(bad), "%s/inf-live.safetensors", dir);
    copy_ckpt_ex(bad, NULL, "step", "3", "backbone.conv1.weight", INFINITY);
    expect_eval_fails(bad, "live", 1, "tensor backbone.conv1.weight of the live weights", bad);
    snprintf(bad, sizeof(bad), "%s/negvar.safetensors", dir);
    copy_ckpt_ex(bad, NULL, "step", "3", "backbone.bn1.running_var", -1.f);
    expect_eval_fails(bad, "live", 1, "backbone.bn1.running_var", "a variance below 0");
    /* predict opens checkpoints the same way */
    char out[128], root[160];
    snprintf(out, sizeof(out), "%s/pred-bad", dir);
    snprintf(root, sizeof(root), "%s/cityscapes", synth_dir);
    dg_seg_dataset ds;
    ck_assert_int_eq(dg_seg_dataset_open("cityscapes", root, "val", &ds), DG_STATUS_OK);
    char *argv[] = {"predict", "--checkpoint", bad, "--weights", "live", "--input",
            ds.pairs[0].image, "--out", out, NULL};
    capture cap;
    capture_begin(&cap);
    int rc = dg_predict_main(9, argv);
    char *log = capture_end(&cap);
    ck_assert_msg(rc == 1 && strstr(log, "backbone.bn1.running_var"), "predict rc %d: %s", rc,
            log);
    dg_free(log);
    dg_seg_dataset_free(&ds);
}
END_TEST

Suite *eval_cmd_suite(void) {
    Suite *s = suite_create("eval_cmd");
    TCase *tc = tcase_create("eval_cmd");
    tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
    tcase_add_checked_fixture(tc, train_once, NULL); /* OpenMP only in the forked child */
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, eval_uses_the_lookahead_slow_weights);
    tcase_add_test(tc, non_finite_weights_and_negative_variances_are_refused_by_name);
    tcase_add_test(tc, eval_equals_the_confusion_of_predict_pngs);
    tcase_add_test(tc, weights_only_files_and_broken_state);
    suite_add_tcase(s, tc);
    return s;
}
