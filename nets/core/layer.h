/* nets/core/layer.h -- what every layer's forward and backward receive.
 *
 * A layer holds offsets into the parameter store, never pointers, so the
 * same layer runs with the live weights, with an optimizer's slow or
 * averaged weights, or with a perturbed copy: the pass says which. */
#ifndef DG_LAYER_H
#define DG_LAYER_H

#include "common.h"
#include "dnnl_util.h"
#include "params.h"

/* The replicas of a data-parallel job, as the BatchNorm layers see them
 * (nets/core/batchnorm.h "Replicas"): n processes, each holding an equal
 * share of every batch, and sum(buf, len, user), which replaces each
 * buf[i] by its sum over the n processes (the same bits on every one);
 * BatchNorm (nets/core/batchnorm.h) and dropout (nets/core/dropout.h) use
 * it.
 * Every replica runs the same passes, so every sum is reached by all. */
typedef struct dg_replicas {
    int n;
    bool sync_bn; /* true: normalise with the statistics of the whole batch
                     (synchronised BatchNorm); false: with the replica's
                     share's, the running statistics still from all */
    void (*sum)(double *buf, size_t len, void *user);
    void *user;
    int64_t batch;      /* the whole batch of the pass, in samples */
    const int64_t *pos; /* (this replica's batch) sample i is sample pos[i]
                           of the whole batch (dropout draws by it) */
} dg_replicas;

typedef struct dg_pass {
    const float *params; /* (d) weights to run with */
    float *stats;        /* (n_stats) BN running statistics read/updated */
    float *grad;         /* (d) backward writes dL/dw here (overwrites) */
    bool train;          /* batch statistics, dropout active */
    bool update_stats;   /* train mode: update BN running statistics */
    uint64_t seed;       /* dropout streams (DG_RNG_DROPOUT) */
    uint64_t counter;    /* forward number: dropout masks differ per step */
    uint64_t weights_version; /* inference instances: nonzero when params and
                            stats hold the same values as at this
                            instance's last forward with the same version
                            (dg_weights_version_new), so layers reuse what
                            they prepared from them then (BN folded into
                            the weights, weights in the primitives'
                            layouts); 0: prepare anew. Training instances
                            ignore it */
    double bn_momentum;  /* BN running-statistics momentum; 0 = PyTorch's 0.1.
                            1/(k+1) on the k-th batch after zeroing the
                            statistics gives their exact cumulative mean
                            (PyTorch momentum=None, the SWAD BN refresh) */
    const dg_replicas *replicas; /* train passes of a data-parallel job, or
                            NULL: this process's batch is the whole batch */
    /* Backward's progress, for a caller that uses finished gradients while
     * backward still runs (a data-parallel job starts reducing them):
     * grad_ready(grad_user, lo) says that this backward writes grad[lo, d)
     * no more. A network calls it at a few points of its backward (after
     * its head, after each residual block), lo decreasing; a network that
     * does not, or NULL here, leaves it all to the end of backward. */
    void (*grad_ready)(void *user, size_t lo);
    void *grad_user;
} dg_pass;

/* Calls p->grad_ready when set, once the stream has finished what was
 * submitted to it. */
void dg_pass_grad_ready(const dg_pass *p, dg_ctx *ctx, size_t lo);

/* A pass over the live buffers of ps in train mode that updates stats. */
dg_pass dg_pass_train(const dg_param_set *ps);
/* An eval-mode pass over ps: running statistics, no dropout. */
dg_pass dg_pass_eval(const dg_param_set *ps);

/* A version no other call has returned (process-wide, thread-safe): the
 * caller of a series of inference forwards on unchanged weights puts it in
 * dg_pass.weights_version, and draws a new one when the weights or the
 * statistics change. */
uint64_t dg_weights_version_new(void);

/* Logical dims of a memory's descriptor: (N, C, H, W). */
void dg_mem_dims4(const_dnnl_memory_t m, int64_t dims[4]);

#endif
