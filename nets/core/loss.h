/* nets/core/loss.h -- the training losses, hand-written with double
 * accumulation:
 *  - softmax cross-entropy over logits with ignore label 255 and optional
 *    per-class weights (PyTorch nn.CrossEntropyLoss(weight, ignore_index=255,
 *    reduction="mean")), times a loss scale (0.4 for DeepLab's auxiliary
 *    head, docs/datasets.md §7.1);
 *  - the temperature-scaled KL term of SAF and MESA (docs/algorithms.md §11-12),
 *    added on top of the cross-entropy gradient.
 *
 * Both work on the dg_chw view of the logits (any plain or channel-blocked
 * layout; others are reordered to nchw), so the gradient lands in the
 * layout the network's last layer produced. Sums are combined in a fixed
 * order: values never depend on the thread count.
 *
 * Owns: the gradient memory, the class-weight copy, a port. Borrows: the
 * logits memory (must outlive the loss) and, between a compute and the
 * next, the label array.
 *
 * Shapes: N batch, C classes, H height, W width (H = W = 1, or a 2-D
 * (N, C) memory, for classification), P = H*W. */
#ifndef DG_LOSS_H
#define DG_LOSS_H

#include "layer.h"

#define DG_LOSS_IGNORE 255 /* label value that contributes nothing (nets with < 255 classes) */

/* 255 marks "no label" for nets with fewer than 255 classes (segmentation
 * labels); with 255 or more classes (DomainNet's 345) it is a class. */
static inline bool dg_loss_is_ignored(int32_t y, int64_t c) {
    return c < DG_LOSS_IGNORE && y == DG_LOSS_IGNORE;
}

/* What a loss term (SAF, MESA) sees and adds to: the logits and their
 * gradient in the loss's layout. Valid after dg_loss_ce_compute. */
typedef struct dg_loss_view {
    dg_chw v;              /* layout of z and diff_z, (N, C, H, W) */
    const float *z;        /* logits in layout v */
    float *diff_z;         /* dL/dlogits in layout v: terms add into it */
    const int32_t *label;  /* (N, H, W) labels of the last compute */
    int64_t n_valid;       /* pixels (samples) whose label is not 255 */
} dg_loss_view;

typedef struct dg_loss_ce_cfg {
    const float *class_weights; /* (C) per-class weights, copied; NULL: none */
    float scale;                /* > 0, multiplies loss and gradient */
} dg_loss_ce_cfg;

typedef struct dg_loss_ce {
    int64_t dims[4];        /* (N, C, H, W) */
    float scale;
    float *class_w;         /* owned (C), or NULL */
    dnnl_memory_t logits;   /* borrowed (N, C, H, W) or (N, C), any layout */
    dg_port logits_p;       /* logits in layout v */
    dg_chw v;               /* layout of the pulled logits and of diff */
    dnnl_memory_t diff;     /* owned (N, C, H, W) dL/dlogits, layout v,
                               padded channels zero */
    const int32_t *label;   /* borrowed (N, H, W), last compute */
    int64_t n_valid;        /* valid pixels of the last compute */
    double ce;              /* mean CE of the last compute, before scale */
} dg_loss_ce;

/* Builds the loss on logits (2-D (N, C) or 4-D (N, C, H, W) f32). */
void dg_loss_ce_init(dg_loss_ce *l, dg_ctx *ctx, dnnl_memory_t logits, const dg_loss_ce_cfg *cfg);
/* label (N, H, W): class ids 0..C-1 or 255 (ignore); anything else is a
 * bug and aborts. With per-pixel nll_i = logsumexp(z_i) - z_i[y_i]:
 *   CE = sum_i w[y_i] nll_i / sum_i w[y_i]   (w = 1 without class weights)
 * over valid pixels; CE = 0 when no pixel is valid (or their weights sum to
 * 0). Overwrites diff with d(scale*CE)/dlogits (0 at ignored pixels) and
 * returns scale*CE. */
double dg_loss_ce_compute(dg_loss_ce *l, dg_ctx *ctx, const int32_t *label);
/* A replica's part of the whole batch's loss in a data-parallel job
 * (nets/core/layer.h; r NULL or r->n < 2: dg_loss_ce_compute): the same
 * sum over this replica's valid pixels, divided by the weight sum_i w[y_i]
 * of the WHOLE batch's valid pixels (added over the replicas by r->sum,
 * which every replica calls here), so that the parts, and their
 * gradients, add up over the replicas to the whole batch's mean CE and
 * its gradient -- also when the replicas hold different numbers of valid
 * pixels. */
double dg_loss_ce_compute_part(dg_loss_ce *l, dg_ctx *ctx, const int32_t *label,
        const dg_replicas *r);
/* The view of the last compute: logits, diff and labels in layout v. */
dg_loss_view dg_loss_ce_view(const dg_loss_ce *l);
void dg_loss_ce_free(dg_loss_ce *l);

/* The temperature-scaled distillation term of one unit u (a sample or a
 * pixel), the ONE place SAF, MESA (through dg_method_kl_distill) and
 * dg_loss_kl_add take it from: with p = softmax(zt/tau) (the teacher) and
 * q = softmax(zs/tau) (the student) over c classes, in double with
 * log-sum-exp, adds (float)(coef*tau*(q_k - p_k)) to diff_k and returns
 * tau^2 * KL(p || q) (unscaled by coef). zt: class k at k * st; zs and
 * diff: class k at (k / cb) * scb + k % cb (cb 1, scb s: a constant stride
 * s; cb 8 or 16: a channel-blocked layout). Identical zt and zs give
 * exactly 0 and add exactly 0 (docs/algorithms.md §15.7: tau 5, zt (5 ln 3, 0),
 * zs (0, 0) give 3.2703009 and tau (q - p) = (-1.25, 1.25)). */
double dg_loss_kl_unit(const float *zt, size_t st, const float *zs, float *diff, int64_t cb,
        int64_t scb, int c, double tau, double coef);

/* KL term of SAF/MESA (docs/algorithms.md §11-12). For every unit u (pixel or
 * sample) whose label is not 255 (every unit when label is NULL):
 *   p = softmax(teacher_u / tau), q = softmax(z_u / tau),
 * returns lambda * tau^2 * sum_u KL(p || q) / n_valid and ADDS
 * lambda * tau * (q - p) / n_valid into s->diff_z, n_valid counting the
 * selected units; 0 and nothing added when none is selected.
 * teacher: (N, C, H*W) plain f32 host array; label: (N, H, W) or NULL. */
double dg_loss_kl_add(const dg_loss_view *s, const float *teacher, const int32_t *label,
        double tau, double lambda);

/* Downsamples a label map (N, H, W) to (N, OH, OW) with PyTorch's legacy
 * nearest rule, F.interpolate(mode="nearest"): source index
 * floor(i * (float)in / out), clamped (docs/datasets.md §7.1, the auxiliary
 * head's label). */
void dg_label_resize_nearest(const int32_t *src, int64_t n, int64_t h, int64_t w, int32_t *dst,
        int64_t oh, int64_t ow);

#endif
