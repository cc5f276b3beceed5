/* nets/model.h -- the models by name, as both trainers and `dgseg bench`
 * use them (docs/design.md §3): a model (nets/network.h) owns its layers,
 * its parameter store and its input memory; forward produces logits,
 * backward consumes dL/dlogits and fills ps.grad. The table in model.c is
 * the one list of models and of which are segmentation networks.
 *
 * Shapes: N batch, C input channels, H, W input size, K classes. */
#ifndef DG_MODEL_H
#define DG_MODEL_H

#include "nets/network.h"

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
