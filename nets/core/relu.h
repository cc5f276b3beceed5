/* nets/core/relu.h -- ReLU on oneDNN eltwise (docs/style.md §7 Snippet 1):
 * dst = max(src, 0); backward diff_src = diff_dst where src > 0, else 0
 * (PyTorch's threshold_backward: the gradient at src == 0 is 0).
 * Primitives built once in init; dst and diff_src keep src's layout.
 *
 * Owns: pds, primitives, dst, diff_src, the diff_dst port.
 * Borrows: src (the previous layer's dst), which must outlive the layer.
 * Shapes: N batch, C channels, H height, W width. */
#ifndef DG_RELU_H
#define DG_RELU_H

#include "layer.h"

typedef struct dg_relu {
    dnnl_primitive_desc_t fwd_pd, bwd_pd;
    dg_prim fwd, bwd;
    dnnl_memory_t src;      /* borrowed (N, C, H, W), any layout */
    dnnl_memory_t dst;      /* owned (N, C, H, W), fwd_pd's dst_md */
    dnnl_memory_t diff_src; /* owned (N, C, H, W), bwd_pd's diff_src_md */
    dg_port ddst_p;         /* diff_dst in bwd_pd's diff_dst layout */
} dg_relu;

/* Builds forward and backward on src (any layout oneDNN accepts, any rank). */
void dg_relu_init(dg_relu *l, dg_ctx *ctx, dnnl_memory_t src);
/* dst = max(src, 0); the pass is not used (ReLU has no parameters). */
void dg_relu_forward(dg_relu *l, dg_ctx *ctx, const dg_pass *p);
/* diff_dst (shape of src) in any layout; writes diff_src. */
void dg_relu_backward(dg_relu *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst);
void dg_relu_free(dg_relu *l);

#endif
