/* eval/seg_infer.h -- segmentation inference on one image at its own
 * resolution (docs/datasets.md §7.5): logits (K, H, W) from a normalised image
 * (3, H, W), with any weight vector laid out like the caller's parameter
 * store (the trainer's live, slow or averaged weights; a checkpoint).
 *
 * Modes:
 *  - whole image (the protocol's mode): one inference instance of exactly
 *    H x W, batch 1;
 *  - sliding window (mmsegmentation's EncoderDecoder.slide_inference):
 *    windows WH x WW at steps SH, SW; per axis
 *      grids = max(H - WH + SH - 1, 0) / SH + 1, y1 = i * SH,
 *      y2 = min(y1 + WH, H), y1 = max(y2 - WH, 0),
 *    so the last window is aligned to the border; each pixel's logits are
 *    the mean of the windows covering it (sum / count). A window cut short
 *    by an image smaller than the window is padded with 0 (bottom/right of
 *    the network input) and the padding is cropped from its logits. One
 *    instance of WH x WW serves every image size.
 *  - horizontal flip (optional, either mode): the same inference on the
 *    flipped image, its logits flipped back; the result is the mean of the
 *    two passes. In sliding mode the flipped pass slides over the flipped
 *    image (the window grid is not symmetric in general).
 *
 * Parameter layout (the choice this module makes). An inference instance
 * (dg_model_opts.training = false) folds every BN into its convolution at
 * each forward but registers exactly the tensors a training instance
 * registers, in the same order (nets/cbr.h); the auxiliary head is
 * registered last (nets/deeplab.c). So the inference instance WITHOUT the
 * auxiliary head has a parameter and statistics layout that is a prefix of
 * the training instance's with the head: same names, same shapes, same
 * offsets. This module builds its instances without the head (the head's
 * compute would be wasted) and runs them directly on the caller's buffers,
 * nothing copied. It does not rely on the prefix property silently: when
 * an instance is built, every tensor and statistic it registers is looked
 * up BY NAME in the layout given at init and must have the same shape and
 * offset there; a mismatch is reported by tensor name and the instance is
 * not used (tests/test_eval.c proves agreement for deeplabv3plus-r18 at
 * output stride 16 and 8 against training instances with the head). Any
 * layout that has the inference tensors at those offsets works: a training
 * instance with or without the head, or an inference instance's own store.
 *
 * Instances are cached per input size (one per distinct H x W in whole
 * mode, one WH x WW in sliding mode); memory (model, activations, the
 * coverage counts) is allocated only when a new size appears, so repeated
 * runs at a known size allocate nothing. Each instance keeps only its
 * tensor table: its own weight, gradient and statistics buffers are
 * released once it is built (it always runs on the caller's buffers).
 *
 * Owns: the instances, a copy of the layout's tensor tables, the coverage
 * counts. Borrows: ctx (must outlive the evaluator); params, stats, the
 * image and the logits buffer for the duration of a run.
 *
 * Shape letters: K classes, H x W image, WH x WW window, SH, SW window
 * steps, d trainable parameters and n_stats statistics of the layout. */
#ifndef DG_EVAL_SEG_INFER_H
#define DG_EVAL_SEG_INFER_H

#include "nets/model.h"

typedef enum dg_seg_infer_mode {
    DG_SEG_INFER_WHOLE = 0, /* one pass on the whole image */
    DG_SEG_INFER_SLIDE = 1  /* sliding window */
} dg_seg_infer_mode;

typedef struct dg_seg_infer_cfg {
    const char *model;          /* "deeplabv3plus-r18" | -r50 | -r101 (copied) */
    int64_t classes;            /* K */
    int output_stride;          /* 16 or 8 (0 = 16) */
    dg_seg_infer_mode mode;
    int64_t win_h, win_w;       /* slide: WH, WW > 0 */
    int64_t stride_h, stride_w; /* slide: SH, SW, 0 < SH <= WH, 0 < SW <= WW */
    bool flip;                  /* mean with the flipped image's logits */
} dg_seg_infer_cfg;

/* One cached inference instance. */
typedef struct dg_seg_infer_inst {
    int64_t h, w;     /* its input size */
    dg_model m;       /* owned: batch 1, training false, no auxiliary head */
    dg_port logits_p; /* m.logits as plain (1, K, h, w) */
} dg_seg_infer_inst;

typedef struct dg_seg_infer {
    dg_seg_infer_cfg cfg;           /* cfg.model points to `model` */
    char *model;                    /* owned copy of the model name */
    dg_ctx *ctx;                    /* borrowed */
    dg_param_tensor *tensors;       /* owned (n_tensors) copy of the layout */
    size_t n_tensors;
    dg_param_tensor *stat_tensors;  /* owned (n_stat_tensors) */
    size_t n_stat_tensors;
    size_t d, n_stats;              /* sizes of the caller's buffers */
    dg_seg_infer_inst **inst;       /* owned (n_inst) */
    size_t n_inst;
    int32_t *cover_h;               /* owned (cap_h): windows covering row y */
    int32_t *cover_w;               /* owned (cap_w): windows covering column x */
    int64_t cap_h, cap_w;
    uint64_t weights_version;       /* held (dg_seg_infer_hold), or 0 */
} dg_seg_infer;

/* Checks cfg and copies it and the tensor tables of `layout` (the layout
 * of the params/stats every run will pass; its buffers are not read and it
 * need not outlive the evaluator). No instance is built yet.
 * Returns DG_STATUS_OK, or DG_STATUS_ERR_CONFIG (logged, naming the field)
 * for an unknown or non-segmentation model, K < 1, or a bad window or step
 * in sliding mode; s is then zeroed. */
dg_status dg_seg_infer_init(dg_seg_infer *s, dg_ctx *ctx, const dg_seg_infer_cfg *cfg,
        const dg_param_set *layout);

/* Changes the inference settings (mode, window, steps, flip) between
 * runs; model, classes and output stride must be those of init. Cached
 * instances are kept: they depend only on the input size. Returns
 * DG_STATUS_OK or DG_STATUS_ERR_CONFIG (logged; s unchanged). */
dg_status dg_seg_infer_configure(dg_seg_infer *s, const dg_seg_infer_cfg *cfg);

/* Logits (K, H, W) plain of image src (3, H, W) plain (already normalised,
 * docs/datasets.md §0), with weights params (d) and BN running statistics
 * stats (n_stats) in the init layout (read only). Overwrites logits.
 * Builds and caches an instance when the size is new. Returns DG_STATUS_OK
 * or DG_STATUS_ERR_SHAPE (logged, naming the tensor) when a new instance's
 * tensors do not sit at the same offsets with the same shapes in the
 * layout; logits are then untouched. */
dg_status dg_seg_infer_run(dg_seg_infer *s, const float *params, const float *stats,
        const float *src, int64_t h, int64_t w, float *logits);

/* hold = true: every run until the next dg_seg_infer_hold(s, false) passes
 * params and stats with the same values (one evaluation over a dataset), so
 * each instance prepares the weights (BN folded in, layouts converted) at
 * its first run only. Without it, each run prepares them once for all its
 * windows and flips. */
void dg_seg_infer_hold(dg_seg_infer *s, bool hold);

/* Number of cached instances (distinct input sizes built so far). */
size_t dg_seg_infer_n_instances(const dg_seg_infer *s);

/* Frees every cached instance (e.g. after an evaluation, before training
 * goes on); the next run builds again. */
void dg_seg_infer_release(dg_seg_infer *s);

/* Frees everything and zeroes s; safe on a zeroed struct. */
void dg_seg_infer_free(dg_seg_infer *s);

#endif
