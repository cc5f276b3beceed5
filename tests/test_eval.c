/* tests/test_eval.c -- the evaluation module (eval/): the confusion
 * histogram, IoU / mIoU / pixel accuracy on hand-made cases and against an
 * independent per-class computation (docs/datasets.md §8), argmax ties,
 * classification accuracy and report formatting; segmentation inference on
 * deeplabv3plus-r18 (K = 19) at tiny sizes: the inference layout against
 * the trainer's (training instance with the auxiliary head), whole-image
 * logits against a plain eval-mode forward, sliding windows against a
 * window-by-window reference, flip averaging, other weight vectors, and
 * allocation-free repeated runs. Target evaluation (app/evaluate.h) on
 * label PNGs written here: label values outside the reader's range are
 * counted and warned about once per dataset, and the results say how many
 * classes each mIoU averages and which target the mean leaves out.
 *
 * Shapes: K classes, P pixels, N samples, H x W image, WH x WW window. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "app/config.h"
#include "app/evaluate.h"
#include "data/fsutil.h"
#include "app/metrics_log.h"
#include "app/results.h"
#include "common.h"
#include "data/image_cv.h"
#include "data/png_io.h"
#include "eval/metrics.h"
#include "eval/seg_infer.h"
#include "nets/model.h"

enum { K = 19 };

/* ---- metrics -------------------------------------------------------- */

/* K = 4. Class 2 is predicted but absent from the labels (IoU 0); class 3
 * is neither labelled nor predicted on valid pixels (NaN), although it is
 * predicted on the two ignored pixels. */
START_TEST(confusion_scores_on_a_hand_made_case) {
    const int32_t gt[] = {0, 0, 0, 0, 1, 1, 1, 255, 255, 0};
    const int32_t pred[] = {0, 0, 0, 1, 1, 1, 2, 3, 3, 2};
    dg_confusion cm;
    dg_confusion_init(&cm, 4);
    dg_confusion_add(&cm, gt, pred, (int64_t)DG_ARRAY_LEN(gt));
    const int64_t want[16] = {3, 1, 1, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 16; i++) ck_assert_int_eq(cm.c[i], want[i]);
    double iou[4];
    dg_seg_scores s = dg_confusion_scores(&cm, iou);
    ck_assert_double_eq_tol(iou[0], 3.0 / 5.0, 1e-15); /* FN 2 */
    ck_assert_double_eq_tol(iou[1], 2.0 / 4.0, 1e-15); /* FP 1, FN 1 */
    ck_assert(iou[2] == 0.0);
    ck_assert(isnan(iou[3]));
    ck_assert_double_eq_tol(s.miou, (0.6 + 0.5 + 0.0) / 3.0, 1e-15);
    ck_assert_double_eq_tol(s.pixel_acc, 5.0 / 8.0, 1e-15);
    ck_assert_int_eq(s.n_classes, 3);
    ck_assert_int_eq(s.pixels, 8);
    /* Empty histogram: everything NaN, nothing counted. */
    dg_confusion_reset(&cm);
    s = dg_confusion_scores(&cm, iou);
    ck_assert(isnan(s.miou) && isnan(s.pixel_acc) && isnan(iou[0]));
    ck_assert_int_eq(s.pixels, 0);
    dg_confusion_free(&cm);
}
END_TEST

/* Labels and predictions with 10 % ignore; classes 5 and 7 never in the
 * labels, class 7 never predicted either. */
static void random_case(int32_t *gt, int32_t *pred, int64_t p, uint64_t seed) {
    dg_rng r;
    dg_rng_init(&r, seed, 0, 0);
    for (int64_t i = 0; i < p; i++) {
        int32_t g = (int32_t)dg_rng_below(&r, K);
        if (g == 5 || g == 7) g = 6;
        gt[i] = dg_rng_below(&r, 10) == 0 ? 255 : g;
        int32_t q = dg_rng_below(&r, 2) ? g : (int32_t)dg_rng_below(&r, K);
        pred[i] = q == 7 ? 8 : q;
    }
}

START_TEST(merge_of_two_halves_equals_one_pass) {
    enum { P = 3001 };
    int32_t *gt = dg_xmalloc(P * sizeof(int32_t)), *pred = dg_xmalloc(P * sizeof(int32_t));
    random_case(gt, pred, P, 11);
    dg_confusion all, a, b;
    dg_confusion_init(&all, K);
    dg_confusion_init(&a, K);
    dg_confusion_init(&b, K);
    dg_confusion_add(&all, gt, pred, P);
    dg_confusion_add(&a, gt, pred, 1000);
    dg_confusion_add(&b, gt + 1000, pred + 1000, P - 1000);
    dg_confusion_merge(&a, &b);
    ck_assert_mem_eq(a.c, all.c, K * K * sizeof(int64_t));
    int64_t total = 0;
    for (int i = 0; i < K * K; i++) total += all.c[i];
    int64_t valid = 0;
    for (int i = 0; i < P; i++) valid += gt[i] != 255;
    ck_assert_int_eq(total, valid);
    ck_assert_int_lt(valid, P);
    dg_confusion_free(&all);
    dg_confusion_free(&a);
    dg_confusion_free(&b);
    dg_free(gt);
    dg_free(pred);
}
END_TEST

/* docs/datasets.md §8 computed another way: per class, |gt = c and pred = c|
 * over |gt = c or pred = c| on valid pixels, straight from the arrays;
 * nanmean; correct / valid. */
START_TEST(miou_equals_an_independent_computation) {
    enum { P = 5000 };
    int32_t *gt = dg_xmalloc(P * sizeof(int32_t)), *pred = dg_xmalloc(P * sizeof(int32_t));
    random_case(gt, pred, P, 12);
    double exp_iou[K], sum = 0.0;
    int n_valid_classes = 0;
    for (int c = 0; c < K; c++) {
        int64_t inter = 0, uni = 0;
        for (int i = 0; i < P; i++) {
            if (gt[i] == 255) continue;
            inter += gt[i] == c && pred[i] == c;
            uni += gt[i] == c || pred[i] == c;
        }
        exp_iou[c] = uni ? (double)inter / (double)uni : NAN;
        if (uni) sum += exp_iou[c], n_valid_classes++;
    }
    int64_t correct = 0, valid = 0;
    for (int i = 0; i < P; i++)
        if (gt[i] != 255) valid++, correct += gt[i] == pred[i];
    dg_confusion cm;
    dg_confusion_init(&cm, K);
    dg_confusion_add(&cm, gt, pred, P);
    double iou[K];
    dg_seg_scores s = dg_confusion_scores(&cm, iou);
    for (int c = 0; c < K; c++) {
        if (isnan(exp_iou[c])) {
            ck_assert_msg(isnan(iou[c]), "class %d: %g, want NaN", c, iou[c]);
            continue;
        }
        ck_assert_msg(fabs(iou[c] - exp_iou[c]) <= 1e-12, "class %d: %.15g, want %.15g", c,
                iou[c], exp_iou[c]);
    }
    ck_assert(isnan(iou[7]));
    ck_assert(iou[5] == 0.0);
    ck_assert_int_eq(s.n_classes, n_valid_classes);
    ck_assert_int_eq(s.n_classes, K - 1);
    ck_assert_double_eq_tol(s.miou, sum / n_valid_classes, 1e-12);
    ck_assert_double_eq_tol(s.pixel_acc, (double)correct / (double)valid, 1e-12);
    dg_confusion_free(&cm);
    dg_free(gt);
    dg_free(pred);
}
END_TEST

/* Ties go to the lowest index, for segmentation logits (C, P) and for
 * classification logits (N, C); add_logits counts the same argmax. */
START_TEST(argmax_ties_go_to_the_lowest_index) {
    /* C = 3 planes of P = 5 pixels: argmax 0, 1, 0, 2, 1. */
    const float z[3 * 5] = {
        1, 0, -1, 0, 0,
        1, 2, -3, 0, 7,
        1, 2, -1, 5, 7,
    };
    int32_t pred[5];
    dg_metrics_argmax(z, 3, 5, pred);
    const int32_t want[5] = {0, 1, 0, 2, 1};
    for (int i = 0; i < 5; i++) ck_assert_int_eq(pred[i], want[i]);
    const int32_t gt[5] = {0, 0, 0, 0, 255};
    dg_confusion a, b;
    dg_confusion_init(&a, 3);
    dg_confusion_init(&b, 3);
    dg_confusion_add_logits(&a, z, gt, 5);
    dg_confusion_add(&b, gt, pred, 5);
    ck_assert_mem_eq(a.c, b.c, 9 * sizeof(int64_t));
    ck_assert_int_eq(a.c[0], 2); /* pixels 0 and 2 */
    ck_assert_int_eq(a.c[1], 1);
    ck_assert_int_eq(a.c[2], 1);
    dg_confusion_free(&a);
    dg_confusion_free(&b);
    /* The same numbers as N = 5 rows of C = 3 (transposed): argmax per row. */
    float rows[5 * 3];
    for (int n = 0; n < 5; n++)
        for (int c = 0; c < 3; c++) rows[n * 3 + c] = z[c * 5 + n];
    const int32_t label[5] = {0, 2, 0, 2, 1}; /* pixel 1 ties 1 and 2: predicted 1 */
    ck_assert_int_eq(dg_metrics_count_correct(rows, label, 5, 3), 4);
    ck_assert_double_eq_tol(dg_metrics_accuracy(rows, label, 5, 3), 0.8, 1e-15);
    ck_assert(isnan(dg_metrics_accuracy(rows, label, 0, 3)));
}
END_TEST

START_TEST(classification_accuracy_counts_argmax_hits) {
    /* N = 6, C = 4. */
    const float z[6 * 4] = {
        0.1f, 0.7f, 0.1f, 0.1f, /* 1 */
        2.0f, 1.0f, 0.0f, -1.f, /* 0 */
        0.0f, 0.0f, 0.0f, 3.0f, /* 3 */
        -1.f, -2.f, -0.5f, -4.f, /* 2 */
        5.0f, 5.0f, 1.0f, 1.0f, /* 0 (tie) */
        0.0f, 0.0f, 9.0f, 0.0f, /* 2 */
    };
    const int32_t label[6] = {1, 0, 2, 2, 1, 2};
    ck_assert_int_eq(dg_metrics_count_correct(z, label, 6, 4), 4);
    ck_assert_double_eq_tol(dg_metrics_accuracy(z, label, 6, 4), 4.0 / 6.0, 1e-15);
}
END_TEST

START_TEST(percentages_are_rounded_and_nan_is_null_or_a_dash) {
    const double v[5] = {0.123456, NAN, 0.0, 1.0, 0.56786};
    cJSON *a = dg_metrics_json_pct_array(v, 5);
    char *text = cJSON_PrintUnformatted(a);
    ck_assert_str_eq(text, "[12.35,null,0,100,56.79]");
    cJSON_free(text);
    cJSON_Delete(a);
    char buf[16];
    dg_metrics_format_pct(v[0], buf, sizeof(buf));
    ck_assert_str_eq(buf, "12.35");
    dg_metrics_format_pct(v[1], buf, sizeof(buf));
    ck_assert_str_eq(buf, "\xe2\x80\x94");
    dg_metrics_format_pct(v[2], buf, sizeof(buf));
    ck_assert_str_eq(buf, "0.00");
    dg_metrics_format_pct(v[3], buf, sizeof(buf));
    ck_assert_str_eq(buf, "100.00");
    ck_assert(isnan(dg_metrics_pct(NAN)));
}
END_TEST

START_TEST(label_outside_classes_and_ignore_aborts) {
    const int32_t gt[1] = {7}, pred[1] = {0};
    dg_confusion cm;
    dg_confusion_init(&cm, 4);
    dg_confusion_add(&cm, gt, pred, 1);
}
END_TEST

START_TEST(prediction_outside_classes_aborts) {
    const int32_t gt[1] = {0}, pred[1] = {4};
    dg_confusion cm;
    dg_confusion_init(&cm, 4);
    dg_confusion_add(&cm, gt, pred, 1);
}
END_TEST

/* ---- segmentation inference ------------------------------------------ */

static dg_ctx ctx;
static void setup(void) { dg_ctx_init(&ctx); }
static void teardown(void) { dg_ctx_free(&ctx); }

static const char *const MODEL = "deeplabv3plus-r18";

/* Non-trivial BN affine parameters, biases and running statistics (the
 * folding must matter); convolutions keep their Kaiming initialisation. */
static void perturb(dg_param_set *ps) {
    for (size_t i = 0; i < ps->n_tensors; i++) {
        const dg_param_tensor *t = &ps->tensors[i];
        if (t->ndims != 1) continue;
        const bool bias = strstr(t->name, ".bias") != NULL;
        fill_uniform(ps->data + t->offset, t->n, 100 + i, bias ? -0.1f : 0.8f,
                bias ? 0.1f : 1.2f);
    }
    for (size_t i = 0; i < ps->n_stat_tensors; i++) {
        const dg_param_tensor *t = &ps->stat_tensors[i];
        const bool var = strstr(t->name, "running_var") != NULL;
        fill_uniform(ps->stats + t->offset, t->n, 500 + i, var ? 0.5f : -0.1f,
                var ? 1.5f : 0.1f);
    }
}

/* The trainer's instance: deeplabv3plus-r18, K = 19, batch 1, training
 * mode with the auxiliary head, at h x w. */
static void make_trainer(dg_model *m, int64_t h, int64_t w, int os) {
    dg_model_opts o = {.batch = 1, .in_channels = 3, .height = h, .width = w, .classes = K,
            .training = true, .output_stride = os, .aux = true, .aux_dropout = 0.1f};
    ck_assert_int_eq(dg_model_create(m, &ctx, MODEL, &o, 3), DG_STATUS_OK);
    perturb(&m->ps);
}

/* Plain eval-mode forward of m on x (3, H, W) with the given buffers;
 * z (K, H, W). */
static void model_logits(dg_model *m, const float *params, const float *stats, const float *x,
        float *z) {
    const int64_t h = m->opts.height, w = m->opts.width;
    memcpy(dg_mem_ptr(m->src), x, (size_t)(3 * h * w) * sizeof(float));
    dg_pass p = dg_pass_eval(&m->ps);
    p.params = params;
    p.stats = (float *)stats;
    dg_model_forward(m, &ctx, &p);
    read_plain(&ctx, m->logits, z);
}

static float *new_image(int64_t h, int64_t w, uint64_t seed) {
    float *x = dg_xmalloc((size_t)(3 * h * w) * sizeof(float));
    fill_uniform(x, (size_t)(3 * h * w), seed, -1.5f, 1.5f);
    return x;
}

static float *new_f32(int64_t n) { return dg_xmalloc((size_t)n * sizeof(float)); }

/* Mirror of planes (C, H, W) along W into dst. */
static void mirror(const float *src, int64_t c, int64_t h, int64_t w, float *dst) {
    for (int64_t i = 0; i < c * h; i++)
        for (int64_t x = 0; x < w; x++) dst[i * w + x] = src[i * w + w - 1 - x];
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m;
}

static dg_seg_infer_cfg whole_cfg(int os) {
    dg_seg_infer_cfg c = {.model = MODEL, .classes = K, .output_stride = os,
            .mode = DG_SEG_INFER_WHOLE};
    return c;
}

static dg_seg_infer_cfg slide_cfg(int os, int64_t wh, int64_t ww, int64_t sh, int64_t sw) {
    dg_seg_infer_cfg c = whole_cfg(os);
    c.mode = DG_SEG_INFER_SLIDE;
    c.win_h = wh, c.win_w = ww, c.stride_h = sh, c.stride_w = sw;
    return c;
}

/* The evaluator's instance (inference, no auxiliary head) registers a
 * prefix of the trainer's tables: same names, shapes and offsets; the
 * trainer's extra tensors are the head's. */
static void assert_prefix_layout(const dg_param_set *inst, const dg_param_set *tr) {
    ck_assert_uint_lt(inst->n_tensors, tr->n_tensors);
    for (size_t i = 0; i < inst->n_tensors; i++) {
        const dg_param_tensor *a = &inst->tensors[i], *b = &tr->tensors[i];
        ck_assert_str_eq(a->name, b->name);
        ck_assert_int_eq(a->ndims, b->ndims);
        for (int k = 0; k < a->ndims; k++) ck_assert_int_eq(a->shape[k], b->shape[k]);
        ck_assert_uint_eq(a->offset, b->offset);
    }
    for (size_t i = inst->n_tensors; i < tr->n_tensors; i++)
        ck_assert_msg(!strncmp(tr->tensors[i].name, "aux.", 4), "extra tensor %s",
                tr->tensors[i].name);
    ck_assert_uint_lt(inst->n_stat_tensors, tr->n_stat_tensors);
    for (size_t i = 0; i < inst->n_stat_tensors; i++) {
        const dg_param_tensor *a = &inst->stat_tensors[i], *b = &tr->stat_tensors[i];
        ck_assert_str_eq(a->name, b->name);
        ck_assert_uint_eq(a->n, b->n);
        ck_assert_uint_eq(a->offset, b->offset);
    }
    for (size_t i = inst->n_stat_tensors; i < tr->n_stat_tensors; i++)
        ck_assert_msg(!strncmp(tr->stat_tensors[i].name, "aux.", 4), "extra statistic %s",
                tr->stat_tensors[i].name);
}

enum { H = 64, W = 96 };

/* Absolute tolerance against the trainer's unfolded BN: f32 rounding of
 * w*gamma/sigma versus BN after the convolution, accumulated over the
 * network, scales with the logits (measured: 2.7e-5 at max |z| = 9). */
static double unfolded_atol(const double *e, int64_t n) {
    double big = 0.0;
    for (int64_t i = 0; i < n; i++) big = fmax(big, fabs(e[i]));
    return 1e-5 * fmax(1.0, big);
}

/* Whole-image inference on the trainer's buffers (training instance with
 * the head) equals the trainer's own eval-mode forward (BN unfolded), for
 * the live weights and for another weight vector (weights x 0.9,
 * statistics x 1.1) once the trainer's buffers hold that vector. */
START_TEST(whole_image_runs_on_the_trainer_layout_with_any_weight_vector) {
    const int64_t n = K * H * W;
    dg_model tr;
    make_trainer(&tr, H, W, 16);
    dg_seg_infer s;
    dg_seg_infer_cfg c = whole_cfg(16);
    ck_assert_int_eq(dg_seg_infer_init(&s, &ctx, &c, &tr.ps), DG_STATUS_OK);
    float *x = new_image(H, W, 2), *z1 = new_f32(n), *z2 = new_f32(n), *e = new_f32(n);
    ck_assert_int_eq(dg_seg_infer_run(&s, tr.ps.data, tr.ps.stats, x, H, W, z1), DG_STATUS_OK);
    ck_assert_uint_eq(dg_seg_infer_n_instances(&s), 1);
    assert_prefix_layout(&s.inst[0]->m.ps, &tr.ps);
    model_logits(&tr, tr.ps.data, tr.ps.stats, x, e);
    double *ed = dup_double(e, (size_t)n);
    DG_ASSERT_CLOSE(z1, ed, (size_t)n, unfolded_atol(ed, n), 1e-4);
    /* The logits are not trivially flat: several classes win somewhere. */
    int32_t *pred = dg_xmalloc(H * W * sizeof(int32_t));
    dg_metrics_argmax(z1, K, H * W, pred);
    int seen[K] = {0}, n_seen = 0;
    for (int i = 0; i < H * W; i++) n_seen += !seen[pred[i]]++;
    ck_assert_int_gt(n_seen, 1);

    float *p2 = new_f32((int64_t)tr.ps.d), *s2 = new_f32((int64_t)tr.ps.n_stats);
    for (size_t i = 0; i < tr.ps.d; i++) p2[i] = 0.9f * tr.ps.data[i];
    for (size_t i = 0; i < tr.ps.n_stats; i++) s2[i] = 1.1f * tr.ps.stats[i];
    ck_assert_int_eq(dg_seg_infer_run(&s, p2, s2, x, H, W, z2), DG_STATUS_OK);
    ck_assert_double_gt(max_abs_diff(z1, z2, n), 1e-2);
    memcpy(tr.ps.data, p2, tr.ps.d * sizeof(float));
    memcpy(tr.ps.stats, s2, tr.ps.n_stats * sizeof(float));
    model_logits(&tr, tr.ps.data, tr.ps.stats, x, e);
    to_double(ed, e, (size_t)n);
    DG_ASSERT_CLOSE(z2, ed, (size_t)n, unfolded_atol(ed, n), 1e-4);
    dg_free(s2), dg_free(p2), dg_free(pred), dg_free(ed);
    dg_free(e), dg_free(z2), dg_free(z1), dg_free(x);
    dg_seg_infer_free(&s);
    dg_model_free(&tr);
}
END_TEST

/* Held runs (one evaluation: the weights prepared at the first image only)
 * give the unheld runs' logits bit for bit, in sliding mode with flips too;
 * after the hold ends, a run on other weights prepares them anew. */
START_TEST(held_runs_match_unheld_runs_and_release_the_weights) {
    const int64_t n = K * H * W;
    dg_model tr;
    make_trainer(&tr, H, W, 16);
    dg_seg_infer s;
    dg_seg_infer_cfg c = whole_cfg(16);
    c.mode = DG_SEG_INFER_SLIDE, c.win_h = 48, c.win_w = 64, c.stride_h = 32, c.stride_w = 32;
    c.flip = true;
    ck_assert_int_eq(dg_seg_infer_init(&s, &ctx, &c, &tr.ps), DG_STATUS_OK);
    float *x1 = new_image(H, W, 2), *x2 = new_image(H, W, 3);
    float *e1 = new_f32(n), *e2 = new_f32(n), *z = new_f32(n), *e3 = new_f32(n);
    ck_assert_int_eq(dg_seg_infer_run(&s, tr.ps.data, tr.ps.stats, x1, H, W, e1), DG_STATUS_OK);
    ck_assert_int_eq(dg_seg_infer_run(&s, tr.ps.data, tr.ps.stats, x2, H, W, e2), DG_STATUS_OK);
    dg_seg_infer_hold(&s, true);
    for (int rep = 0; rep < 2; rep++) {
        ck_assert_int_eq(dg_seg_infer_run(&s, tr.ps.data, tr.ps.stats, x1, H, W, z), DG_STATUS_OK);
        ck_assert_msg(!memcmp(z, e1, (size_t)n * sizeof(float)), "held run %d, image 1", rep);
        ck_assert_int_eq(dg_seg_infer_run(&s, tr.ps.data, tr.ps.stats, x2, H, W, z), DG_STATUS_OK);
        ck_assert_msg(!memcmp(z, e2, (size_t)n * sizeof(float)), "held run %d, image 2", rep);
    }
    dg_seg_infer_hold(&s, false);
    float *p2 = new_f32((int64_t)tr.ps.d), *s2 = new_f32((int64_t)tr.ps.n_stats);
    for (size_t i = 0; i < tr.ps.d; i++) p2[i] = 0.9f * tr.ps.data[i];
    for (size_t i = 0; i < tr.ps.n_stats; i++) s2[i] = 1.1f * tr.ps.stats[i];
    ck_assert_int_eq(dg_seg_infer_run(&s, p2, s2, x1, H, W, z), DG_STATUS_OK);
    ck_assert_double_gt(max_abs_diff(z, e1, n), 1e-2);
    dg_seg_infer s_new; /* a fresh evaluator's logits on the other weights */
    ck_assert_int_eq(dg_seg_infer_init(&s_new, &ctx, &c, &tr.ps), DG_STATUS_OK);
    ck_assert_int_eq(dg_seg_infer_run(&s_new, p2, s2, x1, H, W, e3), DG_STATUS_OK);
    ck_assert_msg(!memcmp(z, e3, (size_t)n * sizeof(float)), "after the hold: stale weights");
    dg_seg_infer_free(&s_new);
    dg_free(s2), dg_free(p2), dg_free(e3), dg_free(z), dg_free(e2), dg_free(e1);
    dg_free(x2), dg_free(x1);
    dg_seg_infer_free(&s);
    dg_model_free(&tr);
}
END_TEST

/* Window origins along one axis, enumerated as a set: 0, s, 2s, ... while
 * the window ends inside the image, then the border-aligned last one. */
static int origins(int64_t size, int64_t win, int64_t step, int64_t *o) {
    int n = 0;
    for (int64_t a = 0; a + win < size; a += step) o[n++] = a;
    const int64_t last = size > win ? size - win : 0;
    if (n == 0 || o[n - 1] != last) o[n++] = last;
    return n;
}

/* Sliding-window reference by hand: every window of x (3, h, w) run
 * through m (a WH x WW model, eval mode, its own buffers), zero-padded at
 * the bottom/right and cropped, summed per pixel in double and divided by
 * the number of windows covering the pixel; out (K, h, w). Returns the
 * number of windows and, in *max_count, the largest coverage. */
static int slide_reference(dg_model *m, const float *x, int64_t h, int64_t w, int64_t sh,
        int64_t sw, double *out, int *max_count) {
    const int64_t wh = m->opts.height, ww = m->opts.width;
    int *count = dg_xcalloc((size_t)(h * w), sizeof(int));
    float *win = new_f32(3 * wh * ww), *zw = new_f32(K * wh * ww);
    memset(out, 0, (size_t)(K * h * w) * sizeof(double));
    int64_t oy[64], ox[64];
    const int ny = origins(h, wh, sh, oy), nx = origins(w, ww, sw, ox);
    for (int a = 0; a < ny; a++)
        for (int b = 0; b < nx; b++) {
            const int64_t rows = DG_MIN(wh, h - oy[a]), cols = DG_MIN(ww, w - ox[b]);
            memset(win, 0, (size_t)(3 * wh * ww) * sizeof(float));
            for (int64_t ch = 0; ch < 3; ch++)
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t q = 0; q < cols; q++)
                        win[(ch * wh + r) * ww + q] = x[(ch * h + oy[a] + r) * w + ox[b] + q];
            model_logits(m, m->ps.data, m->ps.stats, win, zw);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t q = 0; q < cols; q++) {
                    const int64_t y = oy[a] + r, xx = ox[b] + q;
                    count[y * w + xx]++;
                    for (int64_t k = 0; k < K; k++)
                        out[(k * h + y) * w + xx] += zw[(k * wh + r) * ww + q];
                }
        }
    *max_count = 0;
    for (int64_t i = 0; i < h * w; i++) {
        ck_assert_int_gt(count[i], 0);
        *max_count = DG_MAX(*max_count, count[i]);
    }
    for (int64_t k = 0; k < K; k++)
        for (int64_t i = 0; i < h * w; i++) out[k * h * w + i] /= count[i];
    dg_free(zw), dg_free(win), dg_free(count);
    return ny * nx;
}

enum { WH = 48, WW = 64, SH = 24, SW = 40 };

typedef struct slide_image {
    int64_t h, w;
    int windows;   /* the reference's window count */
    int max_count; /* largest coverage of a pixel */
} slide_image;

static const slide_image slide_images[] = {
    {80, 112, 9, 9}, /* 3 x 3 windows, the last row and column border-aligned */
    {40, 112, 3, 3}, /* shorter than the window: bottom padding, 1 x 3 windows */
};

/* Each output pixel is the mean of the logits of the windows covering it;
 * with the window as large as the image, sliding equals whole-image
 * inference exactly (output stride 8: the layout is checked there too). */
START_TEST(sliding_window_logits_are_the_mean_of_the_covering_windows) {
    dg_model tr;
    make_trainer(&tr, WH, WW, 8);
    dg_seg_infer s;
    dg_seg_infer_cfg c = slide_cfg(8, WH, WW, SH, SW);
    ck_assert_int_eq(dg_seg_infer_init(&s, &ctx, &c, &tr.ps), DG_STATUS_OK);
    for (size_t i = 0; i < DG_ARRAY_LEN(slide_images); i++) {
        const int64_t h = slide_images[i].h, w = slide_images[i].w, n = K * h * w;
        float *x = new_image(h, w, 4 + i), *z = new_f32(n);
        double *e = dg_xmalloc((size_t)n * sizeof(double));
        ck_assert_int_eq(dg_seg_infer_run(&s, tr.ps.data, tr.ps.stats, x, h, w, z),
                DG_STATUS_OK);
        int max_count;
        ck_assert_int_eq(slide_reference(&tr, x, h, w, SH, SW, e, &max_count),
                slide_images[i].windows);
        ck_assert_int_eq(max_count, slide_images[i].max_count);
        DG_ASSERT_CLOSE(z, e, (size_t)n, unfolded_atol(e, n), 1e-4);
        dg_free(e), dg_free(z), dg_free(x);
    }
    ck_assert_uint_eq(dg_seg_infer_n_instances(&s), 1);
    assert_prefix_layout(&s.inst[0]->m.ps, &tr.ps);
    /* Window = image: one window, the same numbers as whole-image mode. */
    const int64_t n = K * WH * WW;
    float *x = new_image(WH, WW, 9), *zs = new_f32(n), *zw = new_f32(n);
    ck_assert_int_eq(dg_seg_infer_run(&s, tr.ps.data, tr.ps.stats, x, WH, WW, zs),
            DG_STATUS_OK);
    c = whole_cfg(8);
    ck_assert_int_eq(dg_seg_infer_configure(&s, &c), DG_STATUS_OK);
    ck_assert_int_eq(dg_seg_infer_run(&s, tr.ps.data, tr.ps.stats, x, WH, WW, zw),
            DG_STATUS_OK);
    ck_assert_uint_eq(dg_seg_infer_n_instances(&s), 1); /* same size, same instance */
    double *ed = dup_double(zw, (size_t)n);
    DG_ASSERT_CLOSE(zs, ed, (size_t)n, 0.0, 0.0);
    dg_free(ed), dg_free(zw), dg_free(zs), dg_free(x);
    dg_seg_infer_free(&s);
    dg_model_free(&tr);
}
END_TEST

typedef struct infer_run {
    dg_seg_infer *s;
    const dg_model *tr;
    const float *x[3];
    float *z;
    int64_t h[3], w[3];
    dg_seg_infer_cfg cfg[3];
    dg_status st;
} infer_run;

/* Step k: setting k % 3 on image k % 3; no Check assertion inside (Check
 * itself allocates when it records one). */
static void infer_step(void *v, int step) {
    infer_run *r = v;
    const int i = step % 3;
    dg_status st = dg_seg_infer_configure(r->s, &r->cfg[i]);
    if (st == DG_STATUS_OK)
        st = dg_seg_infer_run(r->s, r->tr->ps.data, r->tr->ps.stats, r->x[i], r->h[i], r->w[i],
                r->z);
    if (st != DG_STATUS_OK) r->st = st;
}

/* Flip averaging equals the mean of the plain pass and the mirrored pass
 * on the mirrored image, sliding (an asymmetric window grid: columns
 * [0, 64), [40, 104), [48, 112)) and whole. Then, with those instances
 * cached plus a second whole-image size, repeated runs at known sizes
 * allocate nothing, and a released evaluator builds again. */
START_TEST(flip_averaging_is_the_mean_of_the_two_passes_and_reruns_allocate_nothing) {
    const slide_image *si = &slide_images[1];
    dg_model tr;
    make_trainer(&tr, WH, WW, 16);
    dg_seg_infer s;
    dg_seg_infer_cfg cs = slide_cfg(16, WH, WW, SH, SW), cw = whole_cfg(16);
    cs.flip = cw.flip = true;
    ck_assert_int_eq(dg_seg_infer_init(&s, &ctx, &cs, &tr.ps), DG_STATUS_OK);
    float *x[2] = {new_image(si->h, si->w, 10), new_image(WH, WW, 11)};
    for (int whole = 0; whole < 2; whole++) {
        const int64_t h = whole ? WH : si->h, w = whole ? WW : si->w, n = K * h * w;
        ck_assert_int_eq(dg_seg_infer_configure(&s, whole ? &cw : &cs), DG_STATUS_OK);
        float *xm = new_f32(3 * h * w), *z = new_f32(n);
        float *a = new_f32(n), *b = new_f32(n), *bm = new_f32(n);
        double *ea = dg_xmalloc((size_t)n * sizeof(double));
        double *eb = dg_xmalloc((size_t)n * sizeof(double));
        mirror(x[whole], 3, h, w, xm);
        ck_assert_int_eq(dg_seg_infer_run(&s, tr.ps.data, tr.ps.stats, x[whole], h, w, z),
                DG_STATUS_OK);
        int max_count;
        slide_reference(&tr, x[whole], h, w, SH, SW, ea, &max_count);
        slide_reference(&tr, xm, h, w, SH, SW, eb, &max_count);
        for (int64_t i = 0; i < n; i++) a[i] = (float)ea[i], b[i] = (float)eb[i];
        mirror(b, K, h, w, bm);
        for (int64_t i = 0; i < n; i++) ea[i] = 0.5 * ((double)a[i] + (double)bm[i]);
        DG_ASSERT_CLOSE(z, ea, (size_t)n, unfolded_atol(ea, n), 1e-4);
        ck_assert_double_gt(max_abs_diff(z, a, n), 1e-3); /* the flip mattered */
        dg_free(eb), dg_free(ea), dg_free(bm), dg_free(b), dg_free(a), dg_free(z), dg_free(xm);
    }
    ck_assert_uint_eq(dg_seg_infer_n_instances(&s), 1); /* window = the whole image's size */

    float *xc = new_image(32, 48, 12), *z = new_f32(K * si->h * si->w);
    dg_seg_infer_cfg cp = whole_cfg(16); /* no flip */
    infer_run r = {&s, &tr, {x[0], x[1], xc}, z, {si->h, WH, 32}, {si->w, WW, 48},
            {cs, cw, cp}, DG_STATUS_OK};
    infer_step(&r, 2); /* the new size */
    ck_assert_int_eq(r.st, DG_STATUS_OK);
    ck_assert_uint_eq(dg_seg_infer_n_instances(&s), 2);
    assert_steps_allocate_nothing(infer_step, &r, 3);
    ck_assert_int_eq(r.st, DG_STATUS_OK);
    ck_assert_uint_eq(dg_seg_infer_n_instances(&s), 2);
    dg_seg_infer_release(&s);
    ck_assert_uint_eq(dg_seg_infer_n_instances(&s), 0);
    infer_step(&r, 2);
    ck_assert_int_eq(r.st, DG_STATUS_OK);
    ck_assert_uint_eq(dg_seg_infer_n_instances(&s), 1);
    dg_seg_infer_free(&s);
    dg_free(z), dg_free(xc), dg_free(x[1]), dg_free(x[0]);
    dg_model_free(&tr);
}
END_TEST

/* A layout whose tensor disagrees with the instance is reported by name
 * (nothing is run); bad settings are refused at init and at configure. */
START_TEST(layout_mismatch_and_bad_settings_are_reported) {
    dg_param_set lay;
    dg_params_init(&lay);
    const int64_t shape[4] = {64, 3, 3, 3}; /* the stem is 7x7 */
    dg_params_add(&lay, "backbone.conv1.weight", 4, shape, 0, DG_INIT_CONST, 0.f);
    dg_params_alloc(&lay);
    dg_seg_infer s;
    dg_seg_infer_cfg c = whole_cfg(16);
    ck_assert_int_eq(dg_seg_infer_init(&s, &ctx, &c, &lay), DG_STATUS_OK);
    float *x = new_image(32, 32, 1), *z = new_f32(K * 32 * 32);
    for (int64_t i = 0; i < K * 32 * 32; i++) z[i] = 7.f;
    capture cap;
    capture_begin(&cap);
    dg_status st = dg_seg_infer_run(&s, lay.data, lay.data, x, 32, 32, z);
    char *text = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_SHAPE);
    ck_assert_msg(strstr(text, "'backbone.conv1.weight'") && strstr(text, "(64, 3, 7, 7)")
            && strstr(text, "(64, 3, 3, 3)"), "message: %s", text);
    ck_assert_uint_eq(dg_seg_infer_n_instances(&s), 0);
    ck_assert(z[0] == 7.f && z[K * 32 * 32 - 1] == 7.f); /* logits untouched */
    dg_free(text);
    /* configure keeps model, classes and output stride. */
    dg_seg_infer_cfg other = whole_cfg(8);
    capture_begin(&cap);
    st = dg_seg_infer_configure(&s, &other);
    dg_free(capture_end(&cap));
    ck_assert_int_eq(st, DG_STATUS_ERR_CONFIG);
    dg_seg_infer_free(&s);
    const dg_seg_infer_cfg bad[] = {
        {.model = "resnet18", .classes = K},
        {.model = "deeplabv3plus-r19", .classes = K},
        {.model = MODEL, .classes = 0},
        {.model = MODEL, .classes = K, .output_stride = 4},
        slide_cfg(16, 32, 32, 33, 16),
        slide_cfg(16, 32, 0, 16, 16),
    };
    for (size_t i = 0; i < DG_ARRAY_LEN(bad); i++) {
        capture_begin(&cap);
        st = dg_seg_infer_init(&s, &ctx, &bad[i], &lay);
        text = capture_end(&cap);
        ck_assert_int_eq(st, DG_STATUS_ERR_CONFIG);
        ck_assert_msg(strstr(text, "evaluation:"), "case %zu logged: %s", i, text);
        dg_free(text);
        dg_seg_infer_free(&s);
    }
    dg_free(z), dg_free(x);
    dg_params_free(&lay);
}
END_TEST


/* ---- target evaluation ----------------------------------------------- */

static char tdir[64];
static void make_tdir(void) { make_tmpdir(tdir, "evaltgt"); }
static void remove_tdir(void) { remove_tree(tdir, 10); }

static void mkdirs_of(const char *path) {
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        mkdir(buf, 0755);
        *p = '/';
    }
}

/* A Cityscapes val frame `stem` of H x W: a grey image; gray labelIds 7
 * (road) over the top half and 26 (car) below, with the first `bad`
 * pixels holding 200 (outside the Cityscapes range 0 .. 33). */
static void cs_frame(const char *root, const char *stem, int bad) {
    char p[512];
    snprintf(p, sizeof(p), "%s/leftImg8bit/val/x/%s_leftImg8bit.png", root, stem);
    mkdirs_of(p);
    dg_image img;
    dg_image_init(&img, H, W, 3);
    for (size_t i = 0; i < (size_t)H * W * 3; i++) img.data[i] = (uint8_t)(i % 251);
    ck_assert_int_eq(dg_image_write_png(p, &img), DG_STATUS_OK);
    dg_image_free(&img);
    uint8_t *lab = dg_xmalloc((size_t)H * W);
    for (int i = 0; i < H * W; i++) lab[i] = i < bad ? 200 : i < H * W / 2 ? 7 : 26;
    snprintf(p, sizeof(p), "%s/gtFine/val/x/%s_gtFine_labelIds.png", root, stem);
    mkdirs_of(p);
    ck_assert_int_eq(dg_png_write_gray8(p, lab, H, W), DG_STATUS_OK);
    dg_free(lab);
}

/* A BDD100K val frame whose label is all ignore (255): no valid pixel. */
static void bdd_frame_all_ignore(const char *root) {
    char p[512];
    snprintf(p, sizeof(p), "%s/images/10k/val/b1.jpg", root);
    mkdirs_of(p);
    dg_image img;
    dg_image_init(&img, H, W, 3);
    ck_assert_int_eq(dg_image_write_jpeg(p, &img, 90), DG_STATUS_OK);
    dg_image_free(&img);
    uint8_t *lab = dg_xmalloc((size_t)H * W);
    memset(lab, 255, (size_t)H * W);
    snprintf(p, sizeof(p), "%s/labels/sem_seg/masks/val/b1.png", root);
    mkdirs_of(p);
    ck_assert_int_eq(dg_png_write_gray8(p, lab, H, W), DG_STATUS_OK);
    dg_free(lab);
}

/* Two Cityscapes frames with 10 and 5 out-of-range label pixels and a
 * BDD100K frame with no valid pixel, evaluated twice as a trainer's
 * periodic evaluation would: one warning, at the end of the first pass,
 * with the count (15 pixels in 2 of 2 labels), none for the second. The
 * printed table and results.json say how many classes the Cityscapes mIoU
 * averages, that the mean leaves BDD100K out, and the count. */
START_TEST(eval_warns_once_per_dataset_with_the_out_of_range_count_and_says_what_means_cover) {
    char cs[128], bdd[128], list[300], json[128];
    snprintf(cs, sizeof(cs), "%s/cs", tdir);
    snprintf(bdd, sizeof(bdd), "%s/bdd", tdir);
    snprintf(json, sizeof(json), "%s/r.json", tdir);
    cs_frame(cs, "x_000000_000001", 10);
    cs_frame(cs, "x_000000_000002", 5);
    bdd_frame_all_ignore(bdd);
    snprintf(list, sizeof(list), "cityscapes:%s, bdd100k:%s", cs, bdd);
    dg_config cfg;
    dg_config_defaults(&cfg);
    ck_assert_int_eq(dg_config_set(&cfg, "model.name=deeplabv3plus-r18"), DG_STATUS_OK);
    ck_assert_int_eq(dg_config_set(&cfg, "data.workers=1"), DG_STATUS_OK);
    dg_model tr;
    make_trainer(&tr, H, W, 16);
    for (int pass = 0; pass < 2; pass++) {
        dg_eval_targets ev = {0};
        capture cap, out;
        capture_begin(&cap);
        capture_out_begin(&out);
        dg_status st = dg_eval_seg_list(&cfg, &ctx, &tr.ps, tr.ps.data, tr.ps.stats, "final",
                "data.targets", list, NULL, 0, &ev);
        const dg_eval_target *t = ev.v;
        const int n = ev.n;
        dg_free(capture_end(&out));
        char *log = capture_end(&cap);
        ck_assert_int_eq(st, DG_STATUS_OK);
        ck_assert_int_eq(n, 2);
        if (pass == 0) {
            ck_assert_msg(strstr(log, "dgseg: warning: ") && !strstr(strstr(log,
                    "dgseg: warning: ") + 1, "dgseg: warning: "), "want one warning:\n%s", log);
            ck_assert_msg(strstr(log, "15 label pixels in 2 of 2 labels"), "%s", log);
            ck_assert_msg(strstr(log, "outside the cityscapes id range (0..33)"), "%s", log);
            ck_assert_msg(strstr(log, "x_000000_000001_gtFine_labelIds.png"), "%s", log);
        } else {
            ck_assert_msg(!strstr(log, "warning"), "second pass warned again:\n%s", log);
        }
        dg_free(log);
        ck_assert(isfinite(t[0].res.miou));
        ck_assert(isnan(t[1].res.miou));
        int n_cls = 0;
        for (int c = 0; c < K; c++) n_cls += !isnan(t[0].res.iou[c]);
        ck_assert_int_lt(n_cls, K);

        /* the table printed at the end of eval and train */
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        dg_eval_print_seg(f, t, n);
        fclose(f);
        char want[128];
        snprintf(want, sizeof(want), "averages %d of 19 classes", n_cls);
        ck_assert_msg(strstr(text, want), "lacks '%s':\n%s", want, text);
        ck_assert_msg(strstr(text, "mean of 1 of 2 targets") &&
                        strstr(text, "bdd100k has no valid label pixel"),
                "%s", text);
        free(text);

        /* results.json */
        dg_seg_result *res = dg_eval_targets_results(&ev);
        dg_seg_report rep = {.results = res, .n_results = n};
        ck_assert_int_eq(dg_report_seg_write_json(&rep, json), DG_STATUS_OK);
        cJSON *j = read_json(json);
        const cJSON *t0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "targets"), 0);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(t0, "miou_classes");
        ck_assert_msg(cJSON_IsNumber(v) && v->valueint == n_cls, "miou_classes");
        v = cJSON_GetObjectItemCaseSensitive(t0, "out_of_range_label_pixels");
        ck_assert_msg(cJSON_IsNumber(v) && v->valuedouble == 15, "out_of_range_label_pixels");
        v = cJSON_GetObjectItemCaseSensitive(t0, "out_of_range_label_images");
        ck_assert_msg(cJSON_IsNumber(v) && v->valuedouble == 2, "out_of_range_label_images");
        cJSON_Delete(j);
        dg_free(res);
        dg_eval_targets_free(&ev);
    }
    dg_model_free(&tr);
    dg_config_free(&cfg);
}
END_TEST

/* A configuration may list any number of targets: 20 entries (one small
 * Cityscapes folder) give 20 evaluations, each in the table and in
 * results.json; none is dropped. */
START_TEST(every_listed_target_is_evaluated_beyond_sixteen) {
    enum { N_TARGETS = 20 };
    char cs[128], json[128];
    snprintf(cs, sizeof(cs), "%s/many", tdir);
    snprintf(json, sizeof(json), "%s/many.json", tdir);
    cs_frame(cs, "x_000000_000001", 0);
    char *list = dg_xstrdup("");
    for (int i = 0; i < N_TARGETS; i++) {
        char *next = dg_xasprintf("%s%scityscapes:%s", list, i ? ", " : "", cs);
        dg_free(list);
        list = next;
    }
    dg_config cfg;
    dg_config_defaults(&cfg);
    ck_assert_int_eq(dg_config_set(&cfg, "model.name=deeplabv3plus-r18"), DG_STATUS_OK);
    ck_assert_int_eq(dg_config_set(&cfg, "data.workers=0"), DG_STATUS_OK);
    dg_model tr;
    make_trainer(&tr, H, W, 16);
    dg_eval_targets ev = {0};
    capture out;
    capture_out_begin(&out);
    ck_assert_int_eq(dg_eval_seg_list(&cfg, &ctx, &tr.ps, tr.ps.data, tr.ps.stats, "w",
            "data.targets", list, NULL, 0, &ev), DG_STATUS_OK);
    dg_free(capture_end(&out));
    ck_assert_int_eq(ev.n, N_TARGETS);
    for (int i = 0; i < ev.n; i++) ck_assert(isfinite(ev.v[i].res.miou));
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    dg_eval_print_seg(f, ev.v, ev.n);
    fclose(f);
    int cols = 0;
    for (const char *p = strstr(text, "| weights |"); p && (p = strstr(p, " cityscapes |")); p++)
        cols++;
    ck_assert_msg(cols == N_TARGETS, "%d target columns in:\n%s", cols, text);
    free(text);
    dg_seg_result *res = dg_eval_targets_results(&ev);
    dg_seg_report rep = {.results = res, .n_results = ev.n};
    ck_assert_int_eq(dg_report_seg_write_json(&rep, json), DG_STATUS_OK);
    cJSON *j = read_json(json);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "targets")),
            N_TARGETS);
    cJSON_Delete(j);
    dg_free(res);
    dg_eval_targets_free(&ev);
    ck_assert_int_eq(ev.n, 0);
    dg_free(list);
    dg_model_free(&tr);
    dg_config_free(&cfg);
}
END_TEST

Suite *eval_suite(void) {
    Suite *s = suite_create("eval");
    TCase *m = tcase_create("metrics");
    tcase_add_test(m, confusion_scores_on_a_hand_made_case);
    tcase_add_test(m, merge_of_two_halves_equals_one_pass);
    tcase_add_test(m, miou_equals_an_independent_computation);
    tcase_add_test(m, argmax_ties_go_to_the_lowest_index);
    tcase_add_test(m, classification_accuracy_counts_argmax_hits);
    tcase_add_test(m, percentages_are_rounded_and_nan_is_null_or_a_dash);
    dg_tcase_add_abort_test(m, label_outside_classes_and_ignore_aborts);
    dg_tcase_add_abort_test(m, prediction_outside_classes_aborts);
    suite_add_tcase(s, m);

    TCase *tc = tcase_create("seg_infer");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, whole_image_runs_on_the_trainer_layout_with_any_weight_vector);
    tcase_add_test(tc, held_runs_match_unheld_runs_and_release_the_weights);
    tcase_add_test(tc, sliding_window_logits_are_the_mean_of_the_covering_windows);
    tcase_add_test(tc, flip_averaging_is_the_mean_of_the_two_passes_and_reruns_allocate_nothing);
    tcase_add_test(tc, layout_mismatch_and_bad_settings_are_reported);
    suite_add_tcase(s, tc);

    TCase *tt = tcase_create("targets");
    tcase_add_unchecked_fixture(tt, make_tdir, remove_tdir);
    tcase_add_checked_fixture(tt, setup, teardown);
    tcase_set_timeout(tt, 60);
    tcase_add_test(tt, eval_warns_once_per_dataset_with_the_out_of_range_count_and_says_what_means_cover);
    tcase_add_test(tt, every_listed_target_is_evaluated_beyond_sixteen);
    suite_add_tcase(s, tt);
    return s;
}
