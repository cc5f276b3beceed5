/* app/closure.h -- the closure of docs/algorithms.md §1 over a model and one
 * batch: what the trainers and `dgseg bench --optimizer` hand to a method's
 * step. It computes the task loss (mean CE over valid pixels or samples,
 * plus aux_weight times the auxiliary head's CE) and the method's loss term
 * (SAF, MESA) at the weights in the parameter store, on the whole batch or
 * on one source domain's sub-batch, runs backward into ps.grad, and
 * provides the teacher forward (infer) and the BN refresh (§2.4).
 *
 * Sub-batches run on a second model instance built for b = B / S samples;
 * it runs with the first instance's weights, statistics and gradient
 * buffer (same tensor layout, checked at init). Loss terms see plain
 * (N, K, P) logits: the loss's blocked view is converted both ways.
 *
 * Dropout masks come from the pass counter step * 64 + call, so a resumed
 * run draws the same masks.
 *
 * In a data-parallel job (app/dist.h) the batch is this rank's share of
 * the whole batch, and every eval returns the whole batch's mean loss
 * with the whole batch's mean gradient in ps.grad, the same on every rank:
 * each rank computes its part (its pixels' losses over the whole batch's
 * count of valid pixels, dg_loss_ce_compute_part) and the parts are summed
 * over the ranks. The training passes run with the job's replicas
 * (dg_train_closure_replicas). */
#ifndef DG_APP_CLOSURE_H
#define DG_APP_CLOSURE_H

#include "nets/core/loss.h"
#include "nets/model.h"
#include "optimizers/dg_optim.h"

/* Where the BN refresh takes its batches: fills the model's input (and
 * nothing else) with the next refresh batch; returns DG_STATUS_OK or a load
 * error (already logged). */
typedef dg_status (*dg_refresh_batch_fn)(void *ctx, dg_model *m);

typedef struct dg_train_closure {
    dg_ctx *ctx;
    dg_model *m;             /* whole batch (B); borrowed */
    dg_model sub;            /* one domain (b), when n_domains > 1 and sub-batches are used */
    bool has_sub;
    int n_domains;           /* S */
    float aux_weight;        /* 0: no auxiliary loss */
    dg_loss_ce loss, aux_loss, sub_loss, sub_aux_loss;
    int32_t *aux_label;      /* (B, h_aux, w_aux) */
    int32_t *sub_aux_label;  /* (b, h_aux, w_aux) */
    const float *x;          /* (B, C, H, W) the batch, plain; copied into m->src by the caller */
    const int32_t *label;    /* (B, P_label) labels at the model's output size */
    const int64_t *sample_id; /* (B) */
    dg_method *method;       /* whose loss term runs; may be NULL */
    float *z, *dz;           /* (B, K, P) plain logits and their gradient */
    float *saved_src;        /* (B, C, H, W) the batch, kept across a BN refresh */
    long step;               /* training step (dropout counter) */
    int call;                /* closure calls in this step */
    double first_loss;       /* loss of the step's first call (the BN-updating one) */
    int epoch;
    dg_refresh_batch_fn refresh_batch; /* NULL: refresh on the current batch */
    void *refresh_ctx;
    long refresh_batches;    /* drawn so far (checkpointed by the trainer) */
    bool refresh_progress;   /* the BN refresh shows a progress line (the
                                trainer sets it around the final refresh) */
    dg_closure cl;           /* what the method receives: eval, infer, bn_refresh */
    /* A data-parallel job's replicas as the passes give them to the layers
     * (set by dg_train_closure_replicas; n = 0 in one process): for the
     * whole batch and for a domain's sub-batch. */
    dg_replicas replicas, sub_replicas;
    int64_t *pos, *sub_pos;  /* (B), (b): each sample's place in the whole batch */
} dg_train_closure;

/* Sets tc up over model m (training instance; borrowed). With n_domains > 1
 * and sub_batches, builds the sub-batch instance of m->opts.batch /
 * n_domains samples (DG_STATUS_ERR_CONFIG when B is not a multiple of S).
 * aux_weight > 0 needs a model with an auxiliary head. */
dg_status dg_train_closure_init(dg_train_closure *tc, dg_ctx *ctx, dg_model *m, int n_domains,
        bool sub_batches, float aux_weight);

/* In a data-parallel job of N > 1 ranks (app/dist.h): the training passes
 * of this rank's share run with the job's replicas (nets/core/layer.h), so
 * BatchNorm normalises with the whole batch's statistics (sync_bn) or
 * shares the running statistics, and dropout draws each sample's masks
 * from its place in the whole batch. Nothing with one rank (but for the
 * test hook dg_cli_test_replica_stats). */
void dg_train_closure_replicas(dg_train_closure *tc, bool sync_bn);

/* Points the closure at the current batch: x (B, C, H, W) (copied into
 * m->src here), labels (B, H*W) for segmentation or (B) for classification,
 * sample ids (B), sampler epoch and training step. */
void dg_train_closure_set_batch(dg_train_closure *tc, const float *x, const int32_t *label,
        const int64_t *sample_id, int epoch, long step);

void dg_train_closure_free(dg_train_closure *tc);

/* The first n samples of a model's logits memory (any supported layout,
 * (N, K, H, W) or (N, K)) as plain (n, K, H*W) floats into dst. */
void dg_logits_to_plain(const_dnnl_memory_t logits, int64_t n, float *dst);

#endif
