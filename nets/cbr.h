/* nets/cbr.h -- convolution + BatchNorm (+ ReLU fused into the BN), the
 * unit ResNet and DeepLab heads are made of.
 *
 * Owns: the two layers. Borrows: src. Parameters, with conv = "<prefix>.<conv_name>"
 * and bn = "<prefix>.<bn_name>": "<conv>.weight" (and "<conv>.bias" when cc asks),
 * "<bn>.weight", "<bn>.bias", statistics "<bn>.running_mean", "<bn>.running_var". */
#ifndef DG_CBR_H
#define DG_CBR_H

#include "nets/core/batchnorm.h"
#include "nets/core/conv.h"

typedef struct dg_cbr {
    dg_conv conv;
    dg_bn bn;
    dnnl_memory_t dst;      /* borrowed from bn: (N, OC, OH, OW) */
    dnnl_memory_t diff_src; /* borrowed from conv: (N, IC, H, W), or NULL */
} dg_cbr;

/* cc: the convolution; relu: ReLU after BN; frozen: BN in frozen mode;
 * cc->training decides whether backward exists. */
void dg_cbr_init(dg_cbr *u, dg_ctx *ctx, dg_param_set *ps, const char *prefix,
        const char *conv_name, const char *bn_name, dnnl_memory_t src, const dg_conv_cfg *cc,
        bool relu, bool frozen);
void dg_cbr_forward(dg_cbr *u, dg_ctx *ctx, const dg_pass *p);
void dg_cbr_backward(dg_cbr *u, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst);
void dg_cbr_free(dg_cbr *u);

#endif
