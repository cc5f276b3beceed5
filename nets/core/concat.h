/* nets/core/concat.h -- channel concatenation of K inputs (N, C_k, H, W)
 * with equal N, H, W on oneDNN's concat primitive; input k occupies
 * channels [sum_{j<k} C_j, sum_{j<=k} C_j) of dst, so the order of the
 * inputs is the order of the channels (DeepLab: ASPP pool, b0..b3; decoder:
 * ASPP output first, then the 48 low-level channels).
 *
 * Backward splits diff_dst: each diff_src[k] is a reorder from a sub-memory
 * of diff_dst (dnnl_memory_desc_init_submemory) into input k's layout.
 * dst takes the first input's layout (nChw16c in a blocked network, so the
 * next convolution needs no reorder); when a sub-memory is impossible in it
 * (a channel offset or count that is not a multiple of the channel block),
 * dst falls back to plain nchw, where every channel range is a sub-memory.
 *
 * Owns: pd, primitives, dst, diff_src[k], sub-memory views, ports.
 * Borrows: src[k] (the producers' dst memories), which must outlive it.
 * No parameters. Shapes: N, H, W shared; C_k per input, C = sum C_k. */
#ifndef DG_CONCAT_H
#define DG_CONCAT_H

#include "layer.h"

#define DG_CONCAT_MAX_SRC 8

typedef struct dg_concat {
    int n_src;                                   /* K, 1..DG_CONCAT_MAX_SRC */
    int64_t dst_dims[4];                         /* (N, C, H, W) */
    int64_t c_off[DG_CONCAT_MAX_SRC];            /* first channel of input k */
    bool plain_dst;                              /* dst fell back to nchw */
    dnnl_primitive_desc_t fwd_pd;
    dg_prim fwd;
    dnnl_primitive_desc_t split_pd[DG_CONCAT_MAX_SRC];
    dg_prim split[DG_CONCAT_MAX_SRC];            /* diff_dst view k -> diff_src[k] */
    dnnl_memory_t src[DG_CONCAT_MAX_SRC];        /* borrowed (N, C_k, H, W) */
    dnnl_memory_t dst;                           /* owned (N, C, H, W) */
    dnnl_memory_t ddst_view[DG_CONCAT_MAX_SRC];  /* owned views (N, C_k, H, W)
                                                    into ddst_p.mem, no buffer */
    dnnl_memory_t diff_src[DG_CONCAT_MAX_SRC];   /* (N, C_k, H, W), src[k]'s
                                                    layout: owned or in
                                                    diff_slot[k] */
    int diff_slot[DG_CONCAT_MAX_SRC];
    dg_port ddst_p;                              /* diff_dst in dst's layout */
} dg_concat;

/* Builds the layer on srcs[0 .. n_src-1], each (N, C_k, H, W) in any
 * layout. diff_slots: NULL, or n_src held slots of the context
 * (dnnl_util.h) or DG_SLOT_OWN for the diff_src[k]. */
void dg_concat_init(dg_concat *l, dg_ctx *ctx, int n_src, const dnnl_memory_t *srcs,
        const int *diff_slots);
/* dst = cat(src[0], ..., src[K-1]) along channels; same in train and eval. */
void dg_concat_forward(dg_concat *l, dg_ctx *ctx, const dg_pass *p);
/* diff_dst (N, C, H, W) in any layout; overwrites every diff_src[k]. */
void dg_concat_backward(dg_concat *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst);
void dg_concat_free(dg_concat *l);

#endif
