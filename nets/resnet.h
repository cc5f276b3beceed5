/* nets/resnet.h -- torchvision's ResNet-18/34 (BasicBlock) and ResNet-50/101
 * (Bottleneck v1.5: the stride sits on the 3x3 conv), without avgpool/fc,
 * with DeepLab's output strides (docs/datasets.md §7.1): at OS16 every block of
 * layer4, at OS8 every block of layer3 and layer4, runs its 3x3 conv(s) with
 * stride 1 and dilation 2 (layer4 at OS8: 4), padding = dilation, and its
 * projection shortcut with stride 1 -- the first block included, unlike
 * torchvision's replace_stride_with_dilation.
 *
 * Tensor names: "<prefix>.conv1.weight", "<prefix>.bn1.*",
 * "<prefix>.layerL.B.conv1..3", ".bn1..3", ".downsample.0" (conv),
 * ".downsample.1" (BN), as torchvision's state_dict.
 *
 * Owns: every layer. Borrows: src (N, 3, H, W), the network input. */
#ifndef DG_RESNET_H
#define DG_RESNET_H

#include "nets/cbr.h"
#include "nets/core/add.h"
#include "nets/core/pool.h"

typedef struct dg_resnet_cfg {
    int depth;         /* 18, 34, 50 or 101 */
    int output_stride; /* 32 (classification), 16 or 8 */
    bool frozen_bn;    /* every BN in frozen mode (DomainBed's freeze_bn) */
    bool training;     /* false: inference-only instance */
} dg_resnet_cfg;

typedef struct dg_resnet_block {
    dg_cbr c1, c2, c3;   /* c3 only in bottlenecks; ReLU fused except last */
    dg_cbr down;         /* projection shortcut (downsample.0/.1), if any */
    bool has_down, bottleneck;
    size_t first_off;    /* its first parameter's offset: the block's
                            parameters are [first_off, next block's) */
    dg_add add;          /* relu(main + shortcut) */
    dg_add gsum;         /* dL/dsrc = main-path gradient + shortcut gradient */
    dnnl_primitive_desc_t copy_pd;
    dg_prim copy;        /* inference, identity shortcut: src -> last conv's dst */
    dnnl_memory_t src;   /* borrowed (N, C_in, H, W) */
    dnnl_memory_t dst;   /* borrowed from add (training) or from the last
                            conv (inference): (N, C_out, H', W') */
} dg_resnet_block;

typedef struct dg_resnet {
    dg_resnet_cfg cfg;
    dg_cbr stem;                /* conv1 7x7 s2 + bn1 + ReLU */
    dg_pool maxpool;            /* 3x3 s2 p1 */
    dg_resnet_block *blocks;    /* owned (n_blocks) */
    int n_blocks;
    size_t stem_off;            /* the stem's first parameter offset (the
                                   backbone's parameters start there) */
    int layer_first[5];         /* blocks of layer L: [layer_first[L-1], layer_first[L]) */
    int64_t channels[4];        /* output channels of layer1..4 */
    dnnl_memory_t out[4];       /* borrowed: output of layer1..4 */
    dg_add tap[4];              /* extra gradient taken in at layer L's output */
    bool tap_ready[4];
    dnnl_memory_t diff_src;     /* NULL: the input gets no gradient */
    double flops_forward, flops_backward;
} dg_resnet;

/* Builds the trunk on src and registers its tensors under `prefix`
 * ("backbone" for DeepLab, "featurizer.network" for classifiers). */
void dg_resnet_init(dg_resnet *r, dg_ctx *ctx, dg_param_set *ps, const char *prefix,
        dnnl_memory_t src, const dg_resnet_cfg *cfg);
void dg_resnet_forward(dg_resnet *r, dg_ctx *ctx, const dg_pass *p);
/* diff_out[L] (may be NULL) is dL/d(output of layer L+1) coming from the
 * heads; diff_out[3] is required. Gradients flowing back through the trunk
 * are added to them at the layer boundaries. A training trunk passes its
 * gradients through the context's held slots DG_SLOT_GRAD_A/B/C/RELU (see
 * resnet.c): diff_out[3] may lie in any of them but RELU, diff_out[0..2] in
 * none of them. */
void dg_resnet_backward(dg_resnet *r, dg_ctx *ctx, const dg_pass *p, const dnnl_memory_t diff_out[4]);
void dg_resnet_free(dg_resnet *r);
struct dg_onnx;
/* Adds an inference instance's forward to ONNX graph g (nets/onnx.h) on
 * value x, its initializers named after prefix (the one it was built
 * with): out[L] gets layer L+1's output value. */
void dg_resnet_onnx(const dg_resnet *r, struct dg_onnx *g, const char *prefix, const char *x,
        const float *params, const float *stats, const char *out[4]);

#endif
