/* eval/metrics.h -- segmentation and classification metrics (docs/datasets.md
 * §8): the dataset-level confusion histogram C[gt][pred] (int64), per-class
 * IoU, mIoU and pixel accuracy from it in double, the argmax of logits with
 * ties going to the lowest class index, classification accuracy with the
 * same argmax rule, and the formatting of percentages for the JSON and
 * Markdown reports (docs/design.md §4: IoU x100 with two decimals, NaN as null
 * in JSON and an em dash in tables).
 *
 * The histogram equals cityscapesScripts' evalPixelLevelSemanticLabeling.py
 * on 19-class predictions and mmsegmentation's / RobustNet's histogram with
 * nanmean (docs/datasets.md §8). Counts are integers, so sums and merges are
 * exact and independent of order and thread count.
 *
 * Owns: the histogram of a dg_confusion. Every other function borrows its
 * arrays for the duration of the call.
 *
 * Shape letters: K classes of the histogram, C classes of logits, P pixels,
 * N samples. */
#ifndef DG_EVAL_METRICS_H
#define DG_EVAL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "nets/core/common.h"

#define DG_METRICS_IGNORE 255 /* label value that is never counted */

typedef struct dg_confusion {
    int64_t k;  /* K classes */
    int64_t *c; /* owned (K, K): c[gt * K + pred] pixel counts */
} dg_confusion;

/* Seg scores of a histogram (docs/datasets.md §8 steps 3-5). */
typedef struct dg_seg_scores {
    double miou;          /* mean of the non-NaN IoUs; NaN when all are NaN */
    double pixel_acc;     /* sum_c C[c][c] / sum C; NaN when sum C = 0 */
    int64_t n_classes;    /* classes with a non-NaN IoU (in the mean) */
    int64_t pixels;       /* sum C: counted (non-ignored) pixels */
} dg_seg_scores;

/* A zeroed K x K histogram, K > 0 (asserted). */
void dg_confusion_init(dg_confusion *cm, int64_t k);
/* Releases the histogram and zeroes cm; safe on a zeroed struct. */
void dg_confusion_free(dg_confusion *cm);
/* Zeroes every count (once per target set). */
void dg_confusion_reset(dg_confusion *cm);
/* For i < p with label[i] != 255: C[label[i]][pred[i]] += 1.
 * label (P): 0 .. K-1 or 255; pred (P): 0 .. K-1. Any other value is a
 * bug upstream (a reader, an argmax) and aborts. */
void dg_confusion_add(dg_confusion *cm, const int32_t *label, const int32_t *pred, int64_t p);
/* Same with pred = dg_metrics_argmax of logits (K, P) plain (channel
 * planes), computed on the fly without a prediction buffer. */
void dg_confusion_add_logits(dg_confusion *cm, const float *logits, const int32_t *label,
        int64_t p);
/* dst += src; both must have the same K (asserted). */
void dg_confusion_merge(dg_confusion *dst, const dg_confusion *src);
/* Per class c, in double: TP = C[c][c], FP = sum_g C[g][c] - TP,
 * FN = sum_p C[c][p] - TP, iou[c] = TP / (TP + FP + FN), NaN when the
 * denominator is 0 (absent from the labels and never predicted); a class
 * predicted but absent from the labels gets 0. iou: (K) or NULL. */
dg_seg_scores dg_confusion_scores(const dg_confusion *cm, double *iou);

/* pred[i] = argmax_c logits[c * P + i] for logits (C, P) plain, pred (P);
 * ties (and NaNs) go to the lowest index. OpenMP over pixels. */
void dg_metrics_argmax(const float *logits, int64_t c, int64_t p, int32_t *pred);
/* Samples whose argmax over logits (N, C) row-major (same tie rule) equals
 * label (N) (0 .. C-1, asserted). */
int64_t dg_metrics_count_correct(const float *logits, const int32_t *label, int64_t n,
        int64_t c);
/* dg_metrics_count_correct / N; NaN when N = 0. */
double dg_metrics_accuracy(const float *logits, const int32_t *label, int64_t n, int64_t c);

/* A fraction as a percentage rounded to two decimals:
 * round(v * 10^4) / 100 (halves away from zero); NaN and Inf stay. */
double dg_metrics_pct(double v);
/* JSON value of a fraction: the number dg_metrics_pct(v), or null when v is
 * not finite. The caller owns the item (cJSON_Delete, or add it to a parent). */
cJSON *dg_metrics_json_pct(double v);
/* JSON array of dg_metrics_json_pct(v[i]) for v (n) ("per_class_iou"). */
cJSON *dg_metrics_json_pct_array(const double *v, int64_t n);
/* Markdown cell text of a fraction into buf (size bytes, >= 8): "%.2f" of
 * dg_metrics_pct(v) (so it agrees with the JSON value), or "—" when not finite. */
void dg_metrics_format_pct(double v, char *buf, size_t size);

#endif
