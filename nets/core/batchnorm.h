/* nets/core/batchnorm.h -- 2-D batch normalization (PyTorch's BatchNorm2d)
 * on oneDNN's batch_normalization primitive with separate scale and shift
 * (dnnl_use_scale | dnnl_use_shift), optional fused ReLU
 * (dnnl_fuse_norm_relu, its mask kept in a workspace for backward).
 *
 * Statistics (docs/algorithms.md §2.1, §2.2):
 * - train pass, not frozen: batch statistics; oneDNN writes the batch mean
 *   and the BIASED batch variance into memories the layer owns (backward
 *   reads them). With pass->update_stats the running statistics in
 *   pass->stats become 0.9*running + 0.1*batch, the variance term being the
 *   unbiased batch variance biased*m/(m-1), m = N*H*W.
 * - eval pass, frozen layer (DomainBed's freeze_bn) or inference instance:
 *   the running statistics of pass->stats (dnnl_use_global_stats); they are
 *   never changed. Backward then treats them as constants, so it is the
 *   gradient of the affine map y = gamma*(x - mean)/sqrt(var + eps) + beta.
 * eps = 1e-5, momentum 0.1.
 *
 * Replicas (pass->replicas, a train pass of a data-parallel job whose n
 * processes each hold an equal share of the batch; nets/core/layer.h; a
 * job of one replica computes the same way, which tests compare with):
 * - sync_bn: the batch statistics are those of the whole batch: each
 *   replica sums x and x^2 per channel over its share (in double, per
 *   sample then in sample order), the sums are added over the replicas,
 *   mean = S1/M and var = S2/M - mean^2 (biased) with M = n*N*H*W, and the
 *   layer normalises with them (the global-statistics primitive). Backward
 *   is the batch-statistics gradient over the whole batch,
 *     diff_src = gamma*rstd*(dy - S(dy)/M - xhat*S(dy*xhat)/M),
 *   the two channel sums S added over the replicas as well; it is computed
 *   as the global-statistics backward, gamma*rstd*dy (which also gives the
 *   replica's own sums as diff_shift and diff_scale), minus the two mean
 *   terms. diff_scale and diff_shift stay the replica's own: the trainer
 *   adds every gradient over the replicas. So n replicas compute what one
 *   process computes on the whole batch, up to the order of the sums.
 * - not sync_bn: each replica normalises with its share's statistics
 *   (PyTorch DDP without SyncBatchNorm); the running statistics are still
 *   updated with the replicas' mean batch mean and mean unbiased batch
 *   variance, so they stay the same on every replica.
 * Both call replicas->sum once per layer and forward (sync_bn: once more
 * per backward), on every replica in the same order.
 *
 * Owns: pds, primitives, dst, diff_src, batch mean/variance, workspaces,
 * ports. Borrows: src (the previous layer's dst), which must outlive it.
 * Parameters: "<name>.weight" (C) gamma, "<name>.bias" (C) beta.
 * Statistics: "<name>.running_mean" (C), "<name>.running_var" (C).
 * Shapes: N batch, C channels, H height, W width. */
#ifndef DG_BATCHNORM_H
#define DG_BATCHNORM_H

#include "layer.h"

#define DG_BN_EPS 1e-5f
#define DG_BN_MOMENTUM 0.1

/* Index of the two statistics modes in dg_bn's per-mode arrays. */
enum { DG_BN_BATCH = 0, DG_BN_GLOBAL = 1, DG_BN_NMODES = 2 };

typedef struct dg_bn_cfg {
    bool relu;     /* fuse ReLU after the normalisation */
    bool frozen;   /* running statistics in training too, never updated */
    bool training; /* false: inference-only instance, no backward */
    int diff_slot; /* diff_src in this held slot of the context
                      (dnnl_util.h; dg_cbr: DG_SLOT_BN_DIFF, its convolution
                      reads it at once), or DG_SLOT_OWN */
    int dst_slot;  /* dst likewise: only where no backward reads it (the
                      next layer's forward is its only reader) */
} dg_bn_cfg;

typedef struct dg_bn {
    dg_bn_cfg cfg;
    int64_t dims[4];              /* (N, C, H, W) */
    size_t w_off, b_off;          /* gamma, beta offsets in params/grad */
    size_t mean_off, var_off;     /* running mean/var offsets in stats */
    /* Per mode ([DG_BN_BATCH], [DG_BN_GLOBAL]); NULL where not built. */
    dnnl_primitive_desc_t fwd_pd[DG_BN_NMODES], bwd_pd[DG_BN_NMODES];
    dg_prim fwd[DG_BN_NMODES], bwd[DG_BN_NMODES];
    dnnl_memory_t ws[DG_BN_NMODES]; /* owned ReLU workspace, or NULL */
    dnnl_memory_t src;            /* borrowed (N, C, H, W) */
    dnnl_memory_t dst;            /* (N, C, H, W), src_p.mem's layout: owned
                                     or in cfg.dst_slot */
    dnnl_memory_t diff_src;       /* (N, C, H, W) owned or in cfg.diff_slot,
                                     or NULL */
    dnnl_memory_t mean, var;      /* owned (C): batch mean, biased variance */
    dnnl_memory_t run_mean, run_var; /* (C) wrap pass->stats slices */
    dnnl_memory_t scale, shift;   /* (C) wrap pass->params slices */
    dnnl_memory_t diff_scale, diff_shift; /* (C) wrap pass->grad slices */
    dg_port src_p;                /* src in a layout the primitive takes */
    dg_port ddst_p;               /* diff_dst in the backward's layout */
    bool forwarded;               /* a forward has run since init */
    int last_mode;                /* DG_BN_BATCH or DG_BN_GLOBAL: last forward's */
    /* Replicas (training instances with batch statistics): */
    bool synced;                  /* the last forward normalised with the whole
                                     batch's statistics, held in mean/var, by
                                     the global-statistics primitive */
    double m_total;               /* its element count per channel, M */
    dg_chw view;                  /* layout of src_p.mem and diff_src */
    bool syncable;                /* view describes both (f32, a dg_chw layout):
                                     synchronised statistics can run */
    double *nc;                   /* (2, N, C) per-sample channel sums, owned */
    double *tot;                  /* (2, C) channel sums, owned */
    float *coef;                  /* (5, C) backward correction terms, owned */
} dg_bn;

/* Builds the layer on src (N, C, H, W) and registers gamma ("<name>.weight",
 * 1, NO_DECAY | ASAM_SCALED), beta ("<name>.bias", 0, NO_DECAY), and the
 * statistics "<name>.running_mean" (0) and "<name>.running_var" (1). */
/* The tensors of a BatchNorm over c channels, registered in PyTorch's order:
 * "<name>.weight" (gamma, 1), "<name>.bias" (beta, 0), statistics
 * "<name>.running_mean" (0) and "<name>.running_var" (1). */
typedef struct dg_bn_tensors {
    size_t w_off, b_off;      /* gamma, beta in params/grad */
    size_t mean_off, var_off; /* running mean/var in stats */
} dg_bn_tensors;
dg_bn_tensors dg_bn_register(dg_param_set *ps, const char *name, int64_t c);

void dg_bn_init(dg_bn *l, dg_ctx *ctx, dg_param_set *ps, const char *name,
        dnnl_memory_t src, const dg_bn_cfg *cfg);
/* Writes dst; see the header comment for which statistics are used. An
 * inference instance always uses the running statistics. */
void dg_bn_forward(dg_bn *l, dg_ctx *ctx, const dg_pass *p);
/* diff_dst (N, C, H, W) in any layout; writes diff_src and the gamma/beta
 * gradients (overwritten) into p->grad, with the statistics of the last
 * forward (batch statistics, or the running statistics of p->stats). */
void dg_bn_backward(dg_bn *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst);
/* Writes dst again from src with the last forward's statistics (the batch
 * mean and variance it computed, or the running statistics of p->stats),
 * for a reader of dst in a held slot that other layers have overwritten
 * since: the same values, bit for bit, as that forward wrote. Training
 * instances only; the running statistics are not touched. */
void dg_bn_redo(dg_bn *l, dg_ctx *ctx, const dg_pass *p);
void dg_bn_free(dg_bn *l);

#endif
