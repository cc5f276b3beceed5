/* nets/model.h -- the model interface both trainers and `dgseg bench` use
 * (DESIGN.md §3): a model owns its layers, its parameter store and its input
 * memory; forward produces logits, backward consumes dL/dlogits and fills
 * ps.grad. Models are created by name (dg_model_create).
 *
 * Shapes: N batch, C input channels, H, W input size, K classes. */
#ifndef DG_MODEL_H
#define DG_MODEL_H

#include "nets/core/layer.h"

typedef struct dg_model dg_model;

typedef struct dg_model_ops {
    void (*forward)(dg_model *m, dg_ctx *ctx, const dg_pass *p);
    void (*backward)(dg_model *m, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_logits,
            dnnl_memory_t diff_aux_logits);
    void (*free)(dg_model *m);
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
    bool freeze_bn;      /* every BN in frozen mode (ALGORITHMS.md §2.2) */
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

/* Names dg_model_create accepts, NULL-terminated. */
extern const char *const dg_model_names[];
/* True when `name` is one of dg_model_names and a segmentation network
 * (DeepLabv3+: logits per pixel, output stride, optional auxiliary head);
 * false for the classifiers, unknown names and NULL. The one answer to
 * "is this a segmentation model?" for configs, checkpoints and commands. */
bool dg_model_is_segmentation(const char *name);
/* Builds model `name`, allocates and initialises its parameters from
 * stream seed `seed`. DG_STATUS_ERR_CONFIG (logged) for an unknown name, a
 * DeepLab output stride other than 8 or 16 (0: 16), for
 * options this CPU cannot run (dg_caps_check: bf16) and for a
 * layer oneDNN cannot build here (dg_wlayer_init_unbuilt names it and its
 * shape); the model is then left empty and the context usable. */
dg_status dg_model_create(dg_model *m, dg_ctx *ctx, const char *name,
        const dg_model_opts *o, uint64_t seed);
void dg_model_forward(dg_model *m, dg_ctx *ctx, const dg_pass *p);
/* diff_aux_logits is required when the model has an auxiliary head. */
void dg_model_backward(dg_model *m, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_logits,
        dnnl_memory_t diff_aux_logits);
void dg_model_free(dg_model *m);

/* model.pretrained: loads an ImageNet backbone published with torchvision/timm
 * names (no prefix; fc.* and *.num_batches_tracked ignored; F16/BF16/F64
 * converted) into the model's trunk; the heads keep their initialisation.
 * Every missing, unexpected or mis-shaped tensor is reported by name and
 * the model is left unchanged on error. Returns DG_STATUS_OK,
 * DG_STATUS_ERR_CONFIG (the model has no ImageNet trunk), or the statuses
 * of dg_weights_load. */
dg_status dg_model_load_pretrained(dg_model *m, const char *path);

#endif
