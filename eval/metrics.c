/* eval/metrics.c -- see metrics.h. */
#include "eval/metrics.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void dg_confusion_init(dg_confusion *cm, int64_t k) {
    memset(cm, 0, sizeof(*cm));
    DG_ASSERT(k > 0);
    cm->k = k;
    cm->c = dg_xcalloc((size_t)(k * k), sizeof(*cm->c));
}

void dg_confusion_free(dg_confusion *cm) {
    dg_free(cm->c);
    memset(cm, 0, sizeof(*cm));
}

void dg_confusion_reset(dg_confusion *cm) {
    memset(cm->c, 0, (size_t)(cm->k * cm->k) * sizeof(*cm->c));
}

/* A label must be a class or the ignore value (docs/datasets.md §0). */
static bool counted(const dg_confusion *cm, int32_t gt) {
    if (gt == DG_METRICS_IGNORE) return false;
    DG_ASSERT(gt >= 0 && gt < cm->k);
    return true;
}

void dg_confusion_add(dg_confusion *cm, const int32_t *label, const int32_t *pred, int64_t p) {
    const int64_t k = cm->k;
    for (int64_t i = 0; i < p; i++) {
        if (!counted(cm, label[i])) continue;
        DG_ASSERT(pred[i] >= 0 && pred[i] < k);
        cm->c[label[i] * k + pred[i]]++;
    }
}

/* argmax over c values z[0], z[stride], ...: ties (and NaNs, which never
 * compare greater) go to the lowest index. */
static int32_t argmax_strided(const float *z, int64_t c, int64_t stride) {
    int32_t best = 0;
    float v = z[0];
    for (int64_t j = 1; j < c; j++)
        if (z[j * stride] > v) {
            v = z[j * stride];
            best = (int32_t)j;
        }
    return best;
}

void dg_confusion_add_logits(dg_confusion *cm, const float *logits, const int32_t *label,
        int64_t p) {
    const int64_t k = cm->k;
    for (int64_t i = 0; i < p; i++) {
        if (!counted(cm, label[i])) continue;
        cm->c[label[i] * k + argmax_strided(logits + i, k, p)]++;
    }
}

void dg_confusion_merge(dg_confusion *dst, const dg_confusion *src) {
    DG_ASSERT(dst->k == src->k);
    for (int64_t i = 0; i < dst->k * dst->k; i++) dst->c[i] += src->c[i];
}

dg_seg_scores dg_confusion_scores(const dg_confusion *cm, double *iou) {
    const int64_t k = cm->k;
    dg_seg_scores s = {.miou = NAN, .pixel_acc = NAN};
    int64_t diag = 0;
    double sum_iou = 0.0;
    for (int64_t c = 0; c < k; c++) {
        int64_t row = 0, col = 0;
        for (int64_t j = 0; j < k; j++) {
            row += cm->c[c * k + j]; /* labelled c: TP + FN */
            col += cm->c[j * k + c]; /* predicted c: TP + FP */
        }
        const int64_t tp = cm->c[c * k + c];
        const int64_t den = row + col - tp; /* TP + FP + FN */
        const double v = den > 0 ? (double)tp / (double)den : NAN;
        if (iou) iou[c] = v;
        if (den > 0) {
            sum_iou += v;
            s.n_classes++;
        }
        diag += tp;
        s.pixels += row;
    }
    if (s.n_classes > 0) s.miou = sum_iou / (double)s.n_classes;
    if (s.pixels > 0) s.pixel_acc = (double)diag / (double)s.pixels;
    return s;
}

void dg_metrics_argmax(const float *logits, int64_t c, int64_t p, int32_t *pred) {
    DG_ASSERT(c > 0);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < p; i++) pred[i] = argmax_strided(logits + i, c, p);
}

int64_t dg_metrics_count_correct(const float *logits, const int32_t *label, int64_t n,
        int64_t c) {
    DG_ASSERT(c > 0);
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i++) {
        DG_ASSERT(label[i] >= 0 && label[i] < c);
        correct += argmax_strided(logits + i * c, c, 1) == label[i];
    }
    return correct;
}

double dg_metrics_accuracy(const float *logits, const int32_t *label, int64_t n, int64_t c) {
    if (n == 0) return NAN;
    return (double)dg_metrics_count_correct(logits, label, n, c) / (double)n;
}

double dg_metrics_pct(double v) {
    return isfinite(v) ? round(v * 1e4) / 100.0 : v;
}

cJSON *dg_metrics_json_pct(double v) {
    cJSON *j = isfinite(v) ? cJSON_CreateNumber(dg_metrics_pct(v)) : cJSON_CreateNull();
    DG_ASSERT(j != NULL);
    return j;
}

cJSON *dg_metrics_json_pct_array(const double *v, int64_t n) {
    cJSON *a = cJSON_CreateArray();
    DG_ASSERT(a != NULL);
    for (int64_t i = 0; i < n; i++) cJSON_AddItemToArray(a, dg_metrics_json_pct(v[i]));
    return a;
}

void dg_metrics_format_pct(double v, char *buf, size_t size) {
    DG_ASSERT(size >= 8);
    if (!isfinite(v))
        snprintf(buf, size, "%s", "\xe2\x80\x94"); /* U+2014 em dash */
    else
        snprintf(buf, size, "%.2f", dg_metrics_pct(v));
}
