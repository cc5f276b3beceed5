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
    dg_bn bn;               /* training instances only */
    bool folded;            /* inference instance: BN folded into the conv */
    dg_bn_tensors bnt;      /* the BN's tensors (folded instances) */
    float *fold_w;          /* owned (OC, IC, KH, KW): weights * gamma/sigma, or
                               NULL: they are folded into fold_mem */
    dnnl_memory_t fold_mem; /* owned, data in the context's DG_SLOT_FOLD, or
                               NULL: when the convolution keeps its own
                               prepared copy (dg_conv_keeps_weights), the
                               folded weights live only until it is made */
    float *fold_b;          /* owned (OC): folded bias */
    uint64_t fold_version;  /* dg_pass.weights_version folded (0: none) */
    dnnl_memory_t dst;      /* borrowed: (N, OC, OH, OW) */
    dnnl_memory_t diff_src; /* borrowed from conv: (N, IC, H, W), or NULL */
} dg_cbr;

/* cc: the convolution; bc: the BN's relu (ReLU after BN), frozen and
 * dst_slot (training is cc->training, and the BN's diff_src lives in
 * DG_SLOT_BN_DIFF: the convolution reads it at once); cc->training decides
 * whether backward exists. An inference instance
 * (cc->training false) folds the BN's running statistics and affine
 * parameters into the convolution's weights and bias at every forward
 * (w' = w*gamma/sqrt(var+eps), b' = beta + (b - mean)*gamma/sqrt(var+eps))
 * and runs the ReLU as a post-op: one primitive instead of two passes. The
 * registered tensors are the same in both kinds of instance. */
void dg_cbr_init(dg_cbr *u, dg_ctx *ctx, dg_param_set *ps, const char *prefix,
        const char *conv_name, const char *bn_name, dnnl_memory_t src, const dg_conv_cfg *cc,
        const dg_bn_cfg *bc);
void dg_cbr_forward(dg_cbr *u, dg_ctx *ctx, const dg_pass *p);
void dg_cbr_backward(dg_cbr *u, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst);
/* Before the backward of `reader`, the convolution that reads dst: writes
 * dst again (dg_bn_redo) when it lives in a held slot (bc->dst_slot
 * DG_SLOT_ACT) and reader's backward reads it there, that is unless reader
 * keeps its own copy of its input (bf16 compute converts it). */
void dg_cbr_redo(dg_cbr *u, dg_ctx *ctx, const dg_pass *p, const dg_conv *reader);
void dg_cbr_free(dg_cbr *u);
/* An inference instance's folded weights and bias from params and stats:
 * w' = w * s (OC, IC, KH, KW) and b' = beta + (b - mean) * s (OC), with
 * s = gamma / sqrt(var + eps). */
void dg_cbr_fold(const dg_cbr *u, const float *params, const float *stats, float *w, float *b);
struct dg_onnx;
/* Adds an inference instance's folded convolution (initializers
 * name.weight, name.bias) to ONNX graph g on value x, and its ReLU unless
 * the unit accumulates (ResNet's last unit of a block: the caller adds the
 * shortcut, then the ReLU). Returns the output value. */
const char *dg_cbr_onnx(const dg_cbr *u, struct dg_onnx *g, const char *name, const char *x,
        const float *params, const float *stats);

#endif
