/* nets/core/groupnorm.h -- group normalization (Wu & He, arXiv 1803.08494;
 * PyTorch's nn.GroupNorm), hand-written: oneDNN 2.6 has no such primitive.
 * DomainBed's MNIST_CNN uses it (domainbed/networks.py).
 *
 * For each sample n and group g of C/G consecutive channels, over the
 * M = (C/G)*H*W elements of that group:
 *   mean = sum(x)/M, var = sum((x - mean)^2)/M (biased), rstd = 1/sqrt(var + eps)
 *   y = gamma[c]*(x - mean)*rstd + beta[c],  eps = 1e-5.
 * No running statistics: train and eval passes compute the same thing.
 *
 * Works on the dg_chw view: src in nchw, nhwc, nChw16c or nChw8c is used as
 * it is; any other layout is reordered to nchw through a port. dst and
 * diff_src use the (possibly reordered) src's layout; the padded channels of
 * blocked layouts stay zero.
 *
 * Owns: dst, diff_src, per-(n, group) statistics, ports.
 * Borrows: src (the previous layer's dst), which must outlive the layer.
 * Parameters: "<name>.weight" (C) gamma, "<name>.bias" (C) beta.
 * Shapes: N batch, C channels, G groups, H height, W width. */
#ifndef DG_GROUPNORM_H
#define DG_GROUPNORM_H

#include "layer.h"

#define DG_GN_EPS 1e-5

typedef struct dg_gn_cfg {
    int64_t groups; /* G, divides C */
    bool training;  /* false: inference-only instance, no diff_src/backward */
    bool relu_src;  /* src is a ReLU's output (a convolution's fused ReLU with
                       relu_grad_by_next): backward writes the gradient at the
                       ReLU's input, diff_src masked by src > 0, so that layer
                       skips its own ReLU backward pass */
} dg_gn_cfg;

typedef struct dg_gn {
    dg_gn_cfg cfg;
    int64_t dims[4];          /* (N, C, H, W) */
    size_t w_off, b_off;      /* gamma, beta offsets in params/grad */
    dg_chw view;              /* layout of src_p.mem, dst, diff_src, ddst_p.mem */
    dnnl_memory_t src;        /* borrowed (N, C, H, W) */
    dnnl_memory_t dst;        /* owned (N, C, H, W), view's layout */
    dnnl_memory_t diff_src;   /* owned (N, C, H, W), view's layout, or NULL */
    double *mean;             /* (N, G) of the last forward, owned */
    double *rstd;             /* (N, G) 1/sqrt(var + eps), owned */
    bool lanes;               /* view is nChw16c/nChw8c with C a multiple of the
                                 block: the vectorized per-channel kernels */
    double *nc1, *nc2;        /* (N, C) per-channel sums of those kernels, owned */
    dg_port src_p;            /* src in a dg_chw layout */
    dg_port ddst_p;           /* diff_dst in dst's layout */
} dg_gn;

/* Builds the layer on src (N, C, H, W) and registers gamma ("<name>.weight",
 * 1, NO_DECAY | ASAM_SCALED) and beta ("<name>.bias", 0, NO_DECAY). */
void dg_gn_init(dg_gn *l, dg_ctx *ctx, dg_param_set *ps, const char *name,
        dnnl_memory_t src, const dg_gn_cfg *cfg);
/* Writes dst (and keeps the statistics for backward); train and eval
 * passes behave the same. */
void dg_gn_forward(dg_gn *l, dg_ctx *ctx, const dg_pass *p);
/* diff_dst (N, C, H, W) in any layout; writes diff_src and the gamma/beta
 * gradients (overwritten) into p->grad, for the last forward's src. */
void dg_gn_backward(dg_gn *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst);
void dg_gn_free(dg_gn *l);

#endif
