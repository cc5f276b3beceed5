/* nets/network.h -- what every network implements (docs/design.md §3):
 * the model struct with its layers, parameter store and input memory, its
 * build options and its forward/backward operations. The networks
 * (nets/deeplab.c, nets/classifier.c, nets/mnist_cnn.c) fill it in; the
 * registry that builds one by name is nets/model.h.
 *
 * Shapes: N batch, C input channels, H, W input size, K classes. */
#ifndef DG_NETWORK_H
#define DG_NETWORK_H

#include "nets/core/layer.h"

typedef struct dg_model dg_model;
struct dg_onnx; /* nets/onnx.h */

typedef struct dg_model_ops {
    void (*forward)(dg_model *m, dg_ctx *ctx, const dg_pass *p);
    void (*backward)(dg_model *m, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_logits,
            dnnl_memory_t diff_aux_logits);
    void (*free)(dg_model *m);
    /* Adds the forward of an inference instance to ONNX graph g, from the
     * graph value x (N, C, H, W) to the returned logits (N, K, H, W) or
     * (N, K), with weights params (d) and statistics stats (n_stats) laid
     * out as m->ps: eval mode, BatchNorm folded into the convolutions,
     * dropout the identity, no auxiliary head. The node order mirrors
     * forward. */
    const char *(*onnx)(const dg_model *m, struct dg_onnx *g, const char *x, const float *params,
            const float *stats);
} dg_model_ops;

typedef struct dg_model_opts {
    int64_t batch;       /* N */
    int64_t in_channels; /* C */
    int64_t height, width;
    int64_t classes;     /* K */
    bool training;       /* false: inference-only instance */
    int output_stride;   /* segmentation: 16 or 8 (0 = 16) */
    bool aux;            /* segmentation: auxiliary head on layer3 */
    float aux_dropout;   /* its channel dropout probability (RobustNet: 0.1) */
    bool freeze_bn;      /* every BN in frozen mode (docs/algorithms.md §2.2) */
    float dropout;       /* classifiers: dropout before the linear head */
    int winograd;        /* dense 3x3 convolutions by Winograd (conv.h):
                            DG_WINOGRAD_AUTO (0) = the model's default: on for
                            inference instances and for the classifiers'
                            training (MNIST CNN, ResNets), off for DeepLab's
                            training (oneDNN's kernels where the CPU has
                            them, dgseg's elsewhere: conv.h);
                            DG_WINOGRAD_ON; DG_WINOGRAD_OFF */
    bool bf16;           /* convolutions and inner products compute in bf16
                            with f32 master weights (wlayer.h; train.dtype);
                            a configuration error on a CPU without bf16 */
    const char *sizes_from; /* where batch and input size come from, for the
                               out-of-memory error ("train.batch_size = 4
                               (per source) or data.crop_size = 512"); NULL:
                               "the batch size or the input size"; used
                               during dg_model_create only, not kept */
} dg_model_opts;

/* dg_model_opts.winograd, the indices of config key model.winograd. */
enum { DG_WINOGRAD_AUTO = 0, DG_WINOGRAD_ON = 1, DG_WINOGRAD_OFF = 2 };

struct dg_model {
    const dg_model_ops *ops;
    const char *name;         /* borrowed, static */
    const char *backbone;     /* static: prefix of the ImageNet trunk's tensors
                                 ("backbone.", "featurizer.network.") or NULL */
    dg_model_opts opts;
    dg_param_set ps;          /* owned */
    dnnl_memory_t src;        /* owned (N, C, H, W) nchw: the trainer writes it */
    dnnl_memory_t logits;     /* borrowed from the last layer: (N, K[, H, W]) */
    dnnl_memory_t aux_logits; /* borrowed: (N, K, H/16, W/16) or NULL */
    double flops_forward;     /* conv + inner-product FLOPs of one forward */
    double flops_backward;    /* of one backward (data + weights) */
    void *priv;               /* the model's layers */
};

#endif
