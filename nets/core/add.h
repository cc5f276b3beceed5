/* nets/core/add.h -- element-wise dst = a + b (optionally relu(a + b),
 * ResNet's `out += identity; out = relu(out)`) on oneDNN's binary add, and
 * its gradient fan-out: diff_a = diff_b = diff_dst (times [dst > 0] with the
 * ReLU, computed by an eltwise relu_use_dst_for_bwd backward on dst).
 * The ReLU is fused as a post-op of the binary for plain layouts; for
 * channel-blocked layouts it runs as an in-place eltwise on dst, because
 * oneDNN 2.6.3's fused binary + eltwise kernel is wrong (and writes past
 * dst) there whenever the vector width differs from the channel block.
 *
 * a and b may arrive in different layouts: dst takes a's layout and b is
 * reordered into it. After backward, diff_a and diff_b hold the gradients in
 * a's and b's layouts; when a layout already agrees no copy is made and the
 * field simply points at diff_dst (or the ReLU's diff_pre), so the fields are
 * borrowed views valid until the next backward.
 *
 * Second use, summing gradients: a tensor consumed twice (a residual
 * block's input feeds conv1 and the shortcut) gets two gradients, and every
 * oneDNN backward primitive overwrites its output, so the model sums them
 * explicitly: build an instance with dg_add_init_md on the two gradients'
 * layouts (relu false) and call dg_add_sum(l, ctx, g1, g2) in backward;
 * l->dst then holds g1 + g2 in g1's layout.
 *
 * In place (cfg.in_place): dst is a itself, which must be a dense tensor
 * (not a view): ResNet's add overwrites the last BN's output, which no
 * backward reads, and the gradient sum accumulates into its first operand.
 *
 * Owns: pds, primitives, dst (unless in place), diff_pre (unless in a
 * slot), ports. Borrows: a and b (the producers' memories), which must
 * outlive the layer.
 * No parameters. Shapes: (N, C, H, W) for a, b and dst alike. */
#ifndef DG_ADD_H
#define DG_ADD_H

#include "layer.h"

typedef struct dg_add_cfg {
    bool relu;     /* dst = relu(a + b) */
    bool in_place; /* dst is a's memory (borrowed) */
    int diff_slot; /* diff_pre in this held slot of the context
                      (dnnl_util.h), or DG_SLOT_OWN */
} dg_add_cfg;

typedef struct dg_add {
    dg_add_cfg cfg;
    int64_t dims[4];             /* (N, C, H, W) */
    dnnl_memory_desc_t a_md;     /* layout of a and of diff_a */
    dnnl_memory_desc_t b_md;     /* layout of b and of diff_b */
    bool fused_relu;             /* ReLU is a post-op of fwd */
    dnnl_primitive_desc_t fwd_pd, relu_fwd_pd, relu_bwd_pd;
    dg_prim fwd;                 /* binary add (+ fused ReLU) */
    dg_prim relu_fwd;            /* in-place ReLU on dst when not fused */
    dg_prim relu_bwd;
    dnnl_memory_t a;             /* borrowed (N, C, H, W), NULL after init_md */
    dnnl_memory_t b;             /* borrowed (N, C, H, W), NULL after init_md */
    dnnl_memory_t dst;           /* (N, C, H, W), a's layout: owned, or a
                                    (in place; after dg_add_init_md, the a of
                                    the last dg_add_sum) */
    dnnl_memory_t diff_pre;      /* (N, C, H, W) dL/d(a + b), ReLU only: owned
                                    or in cfg.diff_slot */
    dnnl_memory_t diff_a;        /* view (N, C, H, W) in a_md after backward */
    dnnl_memory_t diff_b;        /* view (N, C, H, W) in b_md after backward */
    dg_port a_p, b_p;            /* a and b in dst's layout */
    dg_port ddst_p;              /* diff_dst in dst's layout (ReLU only) */
    dg_port da_p, db_p;          /* gradient in a's and b's layouts */
} dg_add;

/* Builds dst = a + b on the memories a and b (N, C, H, W), any layouts. */
void dg_add_init(dg_add *l, dg_ctx *ctx, dnnl_memory_t a, dnnl_memory_t b, const dg_add_cfg *cfg);
/* Same, with the layouts only; inputs are given to dg_add_sum per call. */
void dg_add_init_md(dg_add *l, dg_ctx *ctx, const dnnl_memory_desc_t *a_md,
        const dnnl_memory_desc_t *b_md, const dg_add_cfg *cfg);
/* dst = a + b (relu'd) on the memories given at dg_add_init; the same
 * computation in train and eval passes. */
void dg_add_forward(dg_add *l, dg_ctx *ctx, const dg_pass *p);
/* dst = a + b (relu'd) on a and b (N, C, H, W) given now, in any layout
 * (the gradient sum). The same memories on every step cost no allocation. */
void dg_add_sum(dg_add *l, dg_ctx *ctx, dnnl_memory_t a, dnnl_memory_t b);
/* diff_dst (N, C, H, W) in any layout; sets diff_a and diff_b. */
void dg_add_backward(dg_add *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst);
void dg_add_free(dg_add *l);

#endif
