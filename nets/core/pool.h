/* nets/core/pool.h -- 2-D pooling on oneDNN: max pooling (the ResNet stem's
 * 3x3 stride 2 pad 1), average pooling with PyTorch's default
 * count_include_pad=True (dnnl_pooling_avg_include_padding) and global
 * average pooling (kernel = H x W, output (N, C, 1, 1)).
 *
 * Output size is PyTorch's (ceil_mode=False): OH = floor((H + 2p - k)/s) + 1;
 * oneDNN gets the left padding p and the right padding that makes its own
 * output size equal OH. Max pooling in training mode keeps the workspace
 * (argmax indices) that its backward reads.
 *
 * Owns: pds, primitives, dst, diff_src, workspace, ports.
 * Borrows: src (the previous layer's dst), which must outlive the layer.
 * No parameters. Shapes: N batch, C channels, H, W input, OH, OW output. */
#ifndef DG_POOL_H
#define DG_POOL_H

#include "layer.h"

typedef enum dg_pool_kind {
    DG_POOL_MAX = 0,       /* max over the window, padding never wins */
    DG_POOL_AVG = 1,       /* mean over k*k, padded zeros counted */
    DG_POOL_GLOBAL_AVG = 2 /* mean over H x W; k, stride, pad ignored */
} dg_pool_kind;

typedef struct dg_pool_cfg {
    dg_pool_kind kind;
    int64_t k;      /* square window KH = KW */
    int64_t stride;
    int64_t pad;    /* symmetric as in PyTorch, 2 * pad <= k */
    bool training;  /* false: inference-only instance, no backward */
    int diff_slot;  /* diff_src in this held slot of the context
                       (dnnl_util.h), or DG_SLOT_OWN */
} dg_pool_cfg;

typedef struct dg_pool {
    dg_pool_cfg cfg;
    int64_t src_dims[4];      /* (N, C, H, W) */
    int64_t dst_dims[4];      /* (N, C, OH, OW) */
    int64_t pad_r[2];         /* right padding given to oneDNN (H, W) */
    dnnl_primitive_desc_t fwd_pd, bwd_pd;
    dg_prim fwd, bwd;
    dnnl_memory_t src;        /* borrowed (N, C, H, W) */
    dnnl_memory_t dst;        /* owned (N, C, OH, OW), src's layout */
    dnnl_memory_t diff_src;   /* (N, C, H, W), src's layout, owned or in
                                 cfg.diff_slot; or NULL */
    dnnl_memory_t ws;         /* owned max-pool workspace, or NULL */
    dg_port src_p;            /* src in a layout pooling accepts */
    dg_port ddst_p;           /* diff_dst in dst's layout */
} dg_pool;

/* Builds the layer on src (N, C, H, W). Asserts a valid window. */
void dg_pool_init(dg_pool *l, dg_ctx *ctx, dnnl_memory_t src, const dg_pool_cfg *cfg);
/* dst = pool(src); the same computation in train and eval passes. */
void dg_pool_forward(dg_pool *l, dg_ctx *ctx, const dg_pass *p);
/* diff_dst (N, C, OH, OW) in any layout; overwrites diff_src. Max pooling
 * routes each gradient to the argmax the last forward recorded. */
void dg_pool_backward(dg_pool *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst);
void dg_pool_free(dg_pool *l);

#endif
