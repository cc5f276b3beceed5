/* nets/core/dropout.h -- dropout (PyTorch nn.Dropout) and channel dropout
 * (nn.Dropout2d: one mask value per (n, c) plane, DeepLab's auxiliary head,
 * docs/datasets.md §7.1), hand-written on the dg_chw view.
 *
 * Train mode (pass->train): an element (or plane) is kept with probability
 * 1 - p and scaled: dst = src * scale, scale = (float)(1 / (1 - p)), as
 * PyTorch multiplies by its noise tensor filled with 1/(1 - p); dropped
 * elements are 0. Eval mode: dst = src exactly.
 *
 * Randomness is counter-based: mask value k (logical index, nchw order:
 * ((n*C + c)*H + h)*W + w for elements, n*C + c for planes, whatever the
 * physical layout) of forward number pass->counter is draw
 *   pass->counter * n_mask + k
 * of stream (pass->seed, DG_RNG_DROPOUT, cfg.ordinal); it is kept when
 * (draw >> 11) * 2^-53 >= p. Masks never depend on the thread count. A
 * replica of a data-parallel job (pass->replicas) draws for its sample n
 * what sample replicas->pos[n] of the whole batch draws there (n_mask and
 * k counted over the whole batch), so masks do not depend on the number of
 * replicas either.
 *
 * Owns: dst, diff_src (src's layout when dg_chw supports it, nchw
 * otherwise; padded channels stay zero), the mask of the last forward,
 * ports. Borrows: src, which must outlive the layer.
 *
 * Shapes: N batch, C channels, H height, W width. */
#ifndef DG_DROPOUT_H
#define DG_DROPOUT_H

#include "layer.h"

typedef enum dg_dropout_mode {
    DG_DROPOUT_ELEMENT = 0, /* nn.Dropout: one mask value per element */
    DG_DROPOUT_CHANNEL = 1  /* nn.Dropout2d: one mask value per (n, c) */
} dg_dropout_mode;

typedef struct dg_dropout_cfg {
    float p;               /* drop probability, 0 <= p < 1 */
    dg_dropout_mode mode;
    uint32_t ordinal;      /* layer ordinal: index of the DG_RNG_DROPOUT stream */
} dg_dropout_cfg;

typedef struct dg_dropout {
    dg_dropout_cfg cfg;
    int64_t dims[4];        /* (N, C, H, W); a 2-D src is (N, C, 1, 1) */
    int64_t n_mask;         /* N*C*H*W (element) or N*C (channel) */
    float scale;            /* 1 / (1 - p) */
    dg_chw v;               /* layout of dst, diff_src and the pulled src */
    dnnl_memory_t src;      /* borrowed (N, C, H, W), any layout */
    dnnl_memory_t dst;      /* owned (N, C, H, W), layout v */
    dnnl_memory_t diff_src; /* owned (N, C, H, W), layout v */
    uint8_t *mask;          /* owned (n_mask): 1 kept, 0 dropped, last forward */
    bool masked;            /* the last forward ran in train mode */
    dg_port src_p;          /* src in layout v */
    dg_port ddst_p;         /* diff_dst in layout v */
} dg_dropout;

/* Builds the layer on src (2-D or 4-D f32, any layout). */
void dg_dropout_init(dg_dropout *l, dg_ctx *ctx, dnnl_memory_t src, const dg_dropout_cfg *cfg);
/* dst = src * mask * scale (train) or src (eval). */
void dg_dropout_forward(dg_dropout *l, dg_ctx *ctx, const dg_pass *p);
/* diff_dst (N, C, H, W) in any layout; diff_src = diff_dst * mask * scale
 * with the mask of the last forward (identity after an eval forward). */
void dg_dropout_backward(dg_dropout *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst);
void dg_dropout_free(dg_dropout *l);

#endif
