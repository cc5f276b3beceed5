/* nets/core/linear.h -- fully connected layer (PyTorch nn.Linear) on oneDNN
 * inner product: forward training or inference, backward data, backward
 * weights, optional bias.
 *
 * src is (N, IC) or (N, C, H, W); a 4-D src is flattened in PyTorch order
 * (C, H, W), so IC = C*H*W. The weight is stored 2-D as (OC, IC) whatever
 * the src rank: for a 4-D src it is wrapped with an oihw (OC, C, H, W) user
 * descriptor, which has the same bytes. dst is (N, OC).
 *
 * Owns: pds, primitives, dst, diff_src, ports and reorder buffers.
 * Borrows: src (the previous layer's dst), which must outlive the layer.
 * Parameters: "<name>.weight" (OC, IC) oi, "<name>.bias" (OC) x.
 *
 * Shapes: N batch, IC input features, OC output features, C, H, W the
 * dimensions of a 4-D src. */
#ifndef DG_LINEAR_H
#define DG_LINEAR_H

#include "wlayer.h"

typedef struct dg_linear_cfg {
    int64_t oc;        /* output features */
    bool bias;
    bool no_diff_src;  /* the input is the network input: skip backward data */
    bool training;     /* false: inference-only instance, no backward */
} dg_linear_cfg;

typedef struct dg_linear {
    dg_linear_cfg cfg;
    int src_ndims;                /* 2 or 4 */
    int64_t src_dims[4];          /* (N, IC) or (N, C, H, W) */
    int64_t ic;                   /* IC = C*H*W for a 4-D src */
    int64_t dst_dims[2];          /* (N, OC) */
    size_t w_off, b_off;          /* offsets of weight and bias in params */
    dg_wlayer wl;                 /* primitives, weight wrappers, ports */
    dnnl_memory_t src;            /* borrowed (N, IC) or (N, C, H, W) */
    dnnl_memory_t dst;            /* wl.dst: (N, OC), fwd_pd's layout */
    dnnl_memory_t diff_src;       /* wl.diff_src: src's shape, or NULL */
} dg_linear;

/* Builds the layer on src (2-D or 4-D, any layout) and registers
 * "<name>.weight" (OC, IC) with flag DG_PARAM_ASAM_SCALED and, with
 * cfg->bias, "<name>.bias" (OC) with DG_PARAM_NO_DECAY, both initialised
 * U(-1/sqrt(IC), 1/sqrt(IC)) as PyTorch's nn.Linear default. */
void dg_linear_init(dg_linear *l, dg_ctx *ctx, dg_param_set *ps, const char *name,
        dnnl_memory_t src, const dg_linear_cfg *cfg);
/* dst (N, OC) = src_flat (N, IC) * weight^T + bias, with the weights of p. */
void dg_linear_forward(dg_linear *l, dg_ctx *ctx, const dg_pass *p);
/* diff_dst (N, OC) in any layout; writes diff_src (unless no_diff_src) and
 * the weight/bias gradients (overwritten, never accumulated) into p->grad. */
void dg_linear_backward(dg_linear *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst);
void dg_linear_free(dg_linear *l);

#endif
