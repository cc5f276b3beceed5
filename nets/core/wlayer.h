/* nets/core/wlayer.h -- the cached primitives every layer with weights
 * shares (convolution, inner product): forward, backward-data and
 * backward-weights primitives built from the caller's pds, the weights and
 * bias wrapped from the parameter store in their plain layouts, and the
 * ports between those, the neighbours' layouts and the primitives'.
 * Reorders exist only where two layouts differ; backward-weights
 * overwrites the gradient slices.
 *
 * Owns: the pds given to it, primitives, dst (unless borrowed), diff_src,
 * wrappers and ports. Borrows: src. */
#ifndef DG_WLAYER_H
#define DG_WLAYER_H

#include "layer.h"

typedef struct dg_wlayer {
    dnnl_primitive_desc_t fwd_pd, bwd_data_pd, bwd_w_pd;
    dg_prim fwd, bwd_data, bwd_w;
    dnnl_memory_t dst;            /* fwd_pd's dst: owned, or borrowed */
    bool dst_borrowed;
    dnnl_memory_t diff_src;       /* bwd_data_pd's diff_src, owned or in the
                                     held slot diff_slot, or NULL */
    int diff_slot;
    dnnl_memory_t w_user, b_user; /* wrap the weights/bias to use (plain) */
    dnnl_memory_t dw_user, db_user; /* wrap the gradient slices (plain) */
    dg_port src_p, w_p;           /* forward inputs */
    dg_port src_w_p, w_d_p;       /* backward-weights src, backward-data weights */
    dg_port ddst_d_p, ddst_w_p;   /* diff_dst for backward data / weights */
    dg_port dw_p;                 /* diff_weights -> plain gradient */
    size_t w_shift;               /* elements from the weights (and gradient)
                                     pointer to w_plain's first element */
    bool inference;               /* fwd_pd is forward_inference: w_p keeps
                                     its own buffer between forwards */
    uint64_t w_version;           /* inference: dg_pass.weights_version of
                                     the weights in w_p (0: none) */
    bool bwd_data_rot;            /* bwd_data_pd is a forward convolution of
                                     diff_dst with the weights rotated
                                     (dg_wlayer_init_backward) */
    float *w_rot;                 /* those weights, (IC, OC, K, K), plain */
    dnnl_memory_t w_rot_user;     /* wraps w_rot */
} dg_wlayer;

/* The data type convolutions and inner products compute in is the
 * context's compute_dt when they are built: dnnl_f32 (the default) or
 * dnnl_bf16 (AVX512-BF16 dot products where the CPU has them). In bf16 the
 * primitives take src, weights and diff_dst in bf16 (the ports round them,
 * round to nearest even) and write dst, diff_src and the weight and bias
 * gradients in f32; the parameters (the master weights), the optimizer and
 * every layer between these stay f32. dg_model_create sets it from
 * dg_model_opts.bf16 for each model it builds. */

/* Takes fwd_pd; wraps weights (w_plain) and, when b_plain is not NULL, a
 * bias; dst_into (or NULL) is a memory to write instead of an own dst. */
void dg_wlayer_init_forward(dg_wlayer *wl, dg_ctx *ctx, dnnl_memory_t src,
        dnnl_primitive_desc_t fwd_pd, const dnnl_memory_desc_t *w_plain,
        const dnnl_memory_desc_t *b_plain, dnnl_memory_t dst_into);
/* Takes bwd_w_pd and bwd_data_pd (NULL: no gradient for src). b_plain as
 * for the forward, or NULL when the bias is not trained. diff_slot: a held
 * slot of ctx for diff_src (dnnl_util.h), or DG_SLOT_OWN. bwd_data_pd may
 * instead be a forward-inference convolution pd (src: diff_dst, dst:
 * diff_src) of a stride-1 convolution with "same" padding: its backward-data
 * is the forward convolution of diff_dst with the weights transposed
 * (in <-> out channels) and rotated 180 degrees, at the same dilation and
 * padding; the layer then rotates the weights before each backward. */
void dg_wlayer_init_backward(dg_wlayer *wl, dg_ctx *ctx, dnnl_primitive_desc_t bwd_w_pd,
        dnnl_primitive_desc_t bwd_data_pd, const dnnl_memory_desc_t *w_plain,
        const dnnl_memory_desc_t *b_plain, int diff_slot);
/* A layer oneDNN cannot build on this CPU (a pd of it is unimplemented: a
 * data type or algorithm the CPU lacks): logs "layer NAME: oneDNN cannot
 * create WHAT for SHAPE on this CPU (ISA ...)", sets ctx->status to
 * DG_STATUS_ERR_CONFIG and gives the layer a dst of layout dst_md (or
 * dst_into) and a diff_src of diff_src_md (NULL: none; in diff_slot), both
 * concrete (plain) layouts, so the
 * layers after it still build and the model can be freed; it must never
 * run (dg_model_create fails). */
void dg_wlayer_init_unbuilt(dg_wlayer *wl, dg_ctx *ctx, const char *name, const char *what,
        const char *shape, const dnnl_memory_desc_t *dst_md, dnnl_memory_t dst_into,
        const dnnl_memory_desc_t *diff_src_md, int diff_slot);
/* dst = op(src; weights, bias): weights and bias (or NULL) in plain layout.
 * An inference layer skips converting the weights to the primitive's layout
 * when `version` (dg_pass.weights_version) is nonzero and that of its last
 * conversion; training layers convert every time. */
void dg_wlayer_forward(dg_wlayer *wl, dg_ctx *ctx, const float *weights, const float *bias,
        uint64_t version);
/* Writes diff_weights/diff_bias (overwritten; plain) and diff_src. */
void dg_wlayer_backward(dg_wlayer *wl, dg_ctx *ctx, dnnl_memory_t diff_dst, float *diff_weights,
        float *diff_bias);
void dg_wlayer_free(dg_wlayer *wl);

#endif
