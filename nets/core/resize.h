/* nets/core/resize.h -- bilinear resize of (N, C, H, W) to (N, C, OH, OW),
 * exactly PyTorch's F.interpolate(mode="bilinear", size=(OH, OW)):
 *   align_corners=True:  src = dst * (in - 1) / (out - 1)  (0 when out == 1)
 *   align_corners=False: src = max((dst + 0.5) * in / out - 0.5, 0)
 *   i0 = floor(src), i1 = min(i0 + 1, in - 1), lambda = src - i0,
 * separably in H and W. align_corners=False runs on oneDNN's linear
 * resampling (the same half-pixel rule); align_corners=True runs on the
 * hand-written kernels below, over the dg_chw view of plain and
 * channel-blocked layouts (dst in src's layout or cfg.tag's, padded
 * channels kept zero).
 * Their backward scatters dst gradients with the same weights, in parallel
 * over (n, channel block) so no two threads write the same element.
 *
 * Owns: pds, primitives, dst, diff_src, index tables, ports.
 * Borrows: src (the previous layer's dst), which must outlive the layer.
 * No parameters. Shapes: N, C, H, W input, OH, OW output. */
#ifndef DG_RESIZE_H
#define DG_RESIZE_H

#include "layer.h"

typedef struct dg_resize_cfg {
    int64_t oh, ow;     /* output size, >= 1 */
    bool align_corners;
    dnnl_format_tag_t tag; /* align_corners only: the layout of the kernels'
                          src and dst (dnnl_nhwc: a few channels without a
                          block's padding), or dnnl_format_tag_undef (0):
                          src's own */
    int dst_slot;       /* dst in this held slot of the context (dnnl_util.h:
                           only the next layer's forward reads it; the
                           backward does not), or DG_SLOT_OWN */
} dg_resize_cfg;

typedef struct dg_resize {
    dg_resize_cfg cfg;
    int64_t src_dims[4];     /* (N, C, H, W) */
    int64_t dst_dims[4];     /* (N, C, OH, OW) */
    /* oneDNN path (align_corners=False) */
    dnnl_primitive_desc_t fwd_pd, bwd_pd;
    dg_prim fwd, bwd;
    /* hand-written path (align_corners=True) */
    dg_chw src_v, dst_v;     /* views of the src and dst layouts */
    int64_t *h0, *h1;        /* (OH) source rows */
    float *lh;               /* (OH) weight of row h1 */
    int64_t *w0, *w1;        /* (OW) source columns */
    float *lw;               /* (OW) weight of column w1 */
    dnnl_memory_t src;       /* borrowed (N, C, H, W) */
    dnnl_memory_t dst;       /* (N, C, OH, OW), owned or in cfg.dst_slot */
    dnnl_memory_t diff_src;  /* owned (N, C, H, W), src_p's layout */
    dg_port src_p;           /* src in the layout the kernels read */
    dg_port ddst_p;          /* diff_dst in dst's layout */
} dg_resize;

/* Builds the layer on src (N, C, H, W) for output (cfg->oh, cfg->ow). */
void dg_resize_init(dg_resize *l, dg_ctx *ctx, dnnl_memory_t src, const dg_resize_cfg *cfg);
/* dst = resize(src); the same computation in train and eval passes. */
void dg_resize_forward(dg_resize *l, dg_ctx *ctx, const dg_pass *p);
/* diff_dst (N, C, OH, OW) in any layout; overwrites diff_src. */
void dg_resize_backward(dg_resize *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst);
void dg_resize_free(dg_resize *l);

/* PyTorch's source coordinate of output index `dst` for one axis. */
double dg_resize_src_coord(int64_t dst, int64_t in, int64_t out, bool align_corners);

#endif
