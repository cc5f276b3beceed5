/* optimizers/dg_optim.h -- the shared optimizer module (docs/algorithms.md §1):
 * base optimizers (SGD, Adam, AdamW, §3), learning-rate schedules (§4), the
 * methods that own a training step (ERM, Lookahead / LA for DG §5, SWAD §6,
 * SAM §7, ASAM §8, Lookbehind-SAM / -ASAM §9, DGSAM §10, SAF §11, MESA §12),
 * the closure interface through which a method asks the trainer for losses
 * and gradients (and, for SAF and MESA, the loss term the trainer's closure
 * adds to the task loss), flat-vector helpers, and optimizer state I/O for
 * exact resume (§13 names).
 *
 * Optimizers see only the parameter store (nets/core/params.h): the flat
 * weight vector w = ps->data (d), its gradient g = ps->grad (d, overwritten
 * by every closure call) and the statistics ps->stats (n_stats). They never
 * know the model or the data. All buffers are allocated when a method is
 * created; `step` allocates nothing. Element-wise work is OpenMP-parallel
 * over fixed spans, reductions go through fixed blocks summed in order, so
 * results never depend on the thread count.
 *
 * Shape letters: d = number of trainable parameters, n_stats = number of
 * statistics entries, S = number of source domains in a batch. */
#ifndef DG_OPTIM_H
#define DG_OPTIM_H

#include "nets/core/common.h"
#include "nets/core/params.h"
#include "nets/core/safetensors.h"

/* ---- flat vectors (optimizers/vec.c) -------------------------------------
 * Reductions accumulate in double over fixed blocks added in block order,
 * so they are independent of the thread count. */

/* sum_i a[i]*b[i] in double; a, b: (n). */
double dg_vec_dot(const float *a, const float *b, size_t n);
/* sqrt(sum_i x[i]^2) in double; x: (n). */
double dg_vec_norm2(const float *x, size_t n);
/* y[i] <- y[i] + a*x[i]; y, x: (n). The ONE perturbation helper of the SAM
 * family (docs/algorithms.md §0): every w <- w + c*v goes through it. */
void dg_vec_axpy(float *y, float a, const float *x, size_t n);
/* dst <- src; (n) floats, no overlap. */
void dg_vec_copy(float *dst, const float *src, size_t n);

/* ---- schedules (optimizers/sched.c, docs/algorithms.md §4) -------------------- */

typedef enum dg_sched_kind {
    DG_SCHED_POLY = 0,     /* lr * (1 - u)^power */
    DG_SCHED_COSINE = 1,   /* lr_min + (lr - lr_min) * (1 + cos(pi u)) / 2 */
    DG_SCHED_CONSTANT = 2  /* lr */
} dg_sched_kind;

typedef struct dg_sched {
    dg_sched_kind kind;
    double lr;       /* eta, optim.lr */
    double lr_min;   /* eta_min (cosine), optim.lr_min */
    double power;    /* p (poly), optim.poly_power */
    long total;      /* T, train.iterations */
    long warmup;     /* W, optim.warmup_steps */
} dg_sched;

/* Parses "poly" | "cosine" | "constant"; on an unknown name logs the valid
 * ones and returns DG_STATUS_ERR_CONFIG. */
dg_status dg_sched_parse(const char *name, dg_sched_kind *kind);
/* lr(ts): ts < W gives lr*(ts+1)/W; otherwise u = (ts - W)/(T - W),
 * clamped to [0, 1] (u = 0 when T <= W), and the kind's formula. Computed
 * in double, returned as f32. */
float dg_sched_lr(const dg_sched *s, long ts);

/* ---- closure (docs/algorithms.md §1) ------------------------------------------ */

#define DG_DOMAIN_ALL (-1)
enum { DG_CLOSURE_BN_UPDATE = 1u << 0 }; /* this forward may update BN running stats */

typedef enum dg_bn_refresh_mode {
    DG_BN_REFRESH_MOMENTUM = 0,  /* §2.1 rule from the current statistics (LA family) */
    DG_BN_REFRESH_CUMULATIVE = 1 /* reset, then exact mean of per-batch statistics (SWAD) */
} dg_bn_refresh_mode;

typedef struct dg_closure {
    /* Forward + backward at the weights now in ps->data on the whole batch
     * (domain == DG_DOMAIN_ALL) or on one source domain's sub-batch; writes
     * dL/dw of the mean loss into ps->grad (overwriting it) and returns that
     * loss. Only calls with DG_CLOSURE_BN_UPDATE update BN statistics. */
    double (*eval)(void *ctx, int domain, unsigned flags);
    /* Optional. Eval-mode forward without gradient on the whole batch with
     * other weights: params (d), stats (n_stats); writes logits (N, C, P). */
    void (*infer)(void *ctx, const float *params, const float *stats, float *logits);
    /* Optional (NULL: the net has no BN to refresh). n_batches train-mode
     * forwards without gradient at params (d), updating ps->stats (§2.4);
     * mode is a dg_bn_refresh_mode. */
    void (*bn_refresh)(void *ctx, const float *params, long n_batches, int mode);
    void *ctx;     /* the trainer: model, batch, loss, loader */
    int n_domains; /* S */
    int epoch;     /* sampler epoch of this batch, 0-based */
} dg_closure;

/* What a method's loss term sees and adds to (SAF, MESA): the main head's
 * logits of the batch the closure is evaluating. N samples, C classes,
 * P = H*W pixels (1 for classification); element (n, c, p) is at
 * (n*C + c)*P + p. */
typedef struct dg_logits {
    const float *z;           /* (N, C, P) logits; P = H*W, 1 for classification */
    float *diff_z;            /* (N, C, P) dL/dz, loss terms add into it */
    const int32_t *label;     /* (N, P) class id; 255 = ignore (segmentation) */
    const int64_t *sample_id; /* (N) dataset-wide sample index (SAF's bank row) */
    int n;
    int c;
    long p;
    long n_valid;             /* denominator of the mean CE: samples or valid pixels */
} dg_logits;

/* ---- configuration (docs/algorithms.md §16, the [optim] keys) ------------------
 * `method`, `base` are passed to dg_method_create by name; `lr`, `schedule`,
 * `poly_power`, `warmup_steps`, `lr_min` belong to dg_sched (the trainer's).
 * Every other key is a field here; keys of other methods are ignored. The
 * last block holds run facts the trainer fills from its data and model
 * before dg_method_create: they are NOT config keys (no [optim] entry, not
 * in the resolved config), default 0/false. */

typedef enum dg_la_endpoint {
    DG_LA_ENDPOINT_LAST = 0,
    DG_LA_ENDPOINT_MEAN = 1
} dg_la_endpoint;

typedef enum dg_la_reg {
    DG_LA_REG_NONE = 0,
    DG_LA_REG_AVERAGE = 1, /* anchor: the slow weights phi (LA+WA) */
    DG_LA_REG_HISTORY = 2  /* anchor: the cycle's running mean h (LA+HA) */
} dg_la_reg;

typedef enum dg_la_momentum {
    DG_LA_MOMENTUM_KEEP = 0,
    DG_LA_MOMENTUM_RESET = 1 /* base->reset() at every sync */
} dg_la_momentum;

typedef enum dg_dgsam_order {
    DG_DGSAM_ORDER_SHUFFLE = 0,
    DG_DGSAM_ORDER_FIXED = 1
} dg_dgsam_order;

typedef struct dg_method_cfg {
    /* base optimizer (§3) */
    double momentum;          /* [0, 1), 0.9 */
    bool nesterov;            /* false */
    double weight_decay;      /* >= 0, 5e-4 */
    bool wd_all;              /* true: decay every tensor, even DG_PARAM_NO_DECAY */
    double beta1;             /* (0, 1), 0.9 */
    double beta2;             /* (0, 1), 0.999 */
    double eps;               /* > 0, 1e-8 */
    /* Lookahead / LA for DG (§5) */
    long la_k;                /* >= 1, 15 */
    double la_alpha;          /* [0, 1], 0.05 */
    dg_la_endpoint la_endpoint; /* mean */
    dg_la_reg la_reg;         /* none */
    double la_reg_strength;   /* >= 0, 0.01 (divided by d) */
    bool la_schedule_per_cycle; /* false */
    dg_la_momentum la_momentum; /* keep */
    bool la_bn_refresh;       /* true */
    long la_bn_refresh_final; /* >= 0, 500 */
    /* SWAD (§6) */
    long swad_n_converge;     /* >= 1, 3 */
    long swad_n_tolerance;    /* >= n_converge, 6 */
    double swad_tolerance_ratio; /* >= 0, 0.3 */
    long swad_eval_every;     /* >= 1, 100 */
    bool swad_early_stop;     /* true */
    long swad_bn_batches;     /* >= 0, 500 */
    long swad_val_images;     /* >= 1, 200 */
    /* SAM (§7), ASAM (§8) */
    double sam_rho;           /* >= 0, 0.05 */
    double asam_rho;          /* >= 0, 0.5 */
    double asam_eta;          /* >= 0, 0.01 */
    /* Lookbehind (§9) */
    long lb_k;                /* >= 1, 2 */
    bool lb_alpha_adaptive;   /* true ("adaptive") */
    double lb_alpha;          /* (0, 1] when not adaptive, 0.5 */
    bool lb_reuse_ascent;     /* false */
    /* DGSAM (§10) */
    double dgsam_rho;         /* >= 0, 0.05 */
    bool dgsam_refresh_first; /* true */
    dg_dgsam_order dgsam_order; /* shuffle */
    /* SAF (§11) */
    double saf_lambda;        /* >= 0, 0.3 */
    double saf_tau;           /* > 0, 5 */
    long saf_epochs_back;     /* >= 1, 2 */
    long saf_start_epoch;     /* >= epochs_back - 1, 5 */
    long saf_end_epoch;       /* -1 = none, else > start */
    /* MESA (§12) */
    double mesa_lambda;       /* >= 0, 0.8 */
    double mesa_tau;          /* > 0, 5 */
    double mesa_decay;        /* [0, 1], 0.9998 */
    long mesa_start_epoch;    /* >= 0, 5 */
    long mesa_end_epoch;      /* -1 = none, else > start */
    bool mesa_eval_teacher;   /* false */
    /* Run facts (not config keys; filled by the trainer, default 0/false) */
    long n_samples;           /* N: global training sample ids 0 .. N-1 (SAF's bank rows) */
    int n_classes;            /* C: classes of the main head (SAF's bank width) */
    size_t logits_numel;      /* largest N*C*P of one batch (MESA's teacher-logit scratch) */
    bool segmentation;        /* segmentation track (SAF refuses it, §11) */
} dg_method_cfg;

/* Fills every field with its §16 default (run facts 0/false). */
void dg_method_cfg_default(dg_method_cfg *cfg);

/* ---- base optimizers (optimizers/base.c, docs/algorithms.md §3) ---------------- */

typedef struct dg_optim_hparams {
    double momentum;     /* SGD mu */
    bool nesterov;       /* SGD */
    double weight_decay; /* lambda: coupled (SGD, Adam) or decoupled (AdamW) */
    bool wd_all;         /* decay DG_PARAM_NO_DECAY tensors too */
    double beta1;        /* Adam/AdamW */
    double beta2;
    double eps;
} dg_optim_hparams;

/* A slice of one tensor: the unit of parallel work (at most
 * DG_OPTIM_SPAN elements), with the tensor's decay decision. */
#define DG_OPTIM_SPAN 16384
typedef struct dg_optim_span {
    size_t offset;  /* first element in data/grad */
    size_t n;       /* element count */
    bool decay;     /* dg_optim_decays of its tensor */
    bool asam_scaled; /* tensor carries DG_PARAM_ASAM_SCALED */
} dg_optim_span;

typedef struct dg_optim dg_optim;
typedef struct dg_optim_ops {
    const char *name; /* "sgd" "adam" "adamw" */
    /* One update of w (d) with gradient g (d) at learning rate lr. */
    void (*update)(dg_optim *o, float *w, const float *g, float lr);
    /* Zeroes the state buffers and the update count. */
    void (*reset)(dg_optim *o);
} dg_optim_ops;

struct dg_optim {
    const dg_optim_ops *ops;
    dg_optim_hparams hp;
    const dg_param_set *layout; /* borrowed tensor table (flags); must outlive o */
    size_t d;
    float *state[2];            /* (d) SGD: momentum (NULL when mu = 0);
                                   Adam/AdamW: exp_avg, exp_avg_sq */
    long t;                     /* updates taken (Adam bias correction) */
    dg_optim_span *spans;       /* (n_spans) owned, cover 0..d-1 in order */
    size_t n_spans;
};

/* True when weight decay applies to tensor t:
 * o->hp.wd_all || !(t->flags & DG_PARAM_NO_DECAY). */
bool dg_optim_decays(const dg_optim *o, const dg_param_tensor *t);

/* Creates base optimizer `name` ("sgd" | "adam" | "adamw") over the layout of
 * ps (borrowed; its tensor table must outlive the optimizer), with zero
 * state. Returns DG_STATUS_OK, or DG_STATUS_ERR_CONFIG (unknown name: the
 * message lists the valid ones; a hyper-parameter out of range). */
dg_status dg_optim_create(const char *name, const dg_optim_hparams *hp,
        const dg_param_set *ps, dg_optim **out);
/* Releases o and everything it owns; NULL is fine. */
void dg_optim_free(dg_optim *o);
/* Adds "optim.<name>.momentum" | ".exp_avg" ".exp_avg_sq" (shape [d],
 * borrowed: o must not change until the writer has written) and
 * "optim.<name>.step" (i64 scalar) to w. */
void dg_optim_state_save(const dg_optim *o, dg_tensor_writer *w);
/* Reads what dg_optim_state_save wrote. Returns DG_STATUS_OK or the
 * reader's status (MISSING, SHAPE, IO), already logged. */
dg_status dg_optim_state_load(dg_optim *o, const dg_tensor_reader *r);

/* ---- methods (optimizers/method.c and one file per method) ---------------- */

typedef struct dg_method dg_method;
typedef struct dg_method_ops {
    const char *name;
    /* One training step on the current batch at learning rate lr. */
    void (*step)(dg_method *m, dg_param_set *ps, const dg_closure *cl, float lr);
    /* Optional members (NULL when the method has none). */
    /* SAF, MESA: the term for the batch of lz at sampler epoch `epoch`,
     * its gradient w.r.t. lz->z added into lz->diff_z. */
    double (*loss_term)(dg_method *m, const dg_logits *lz, int epoch);
    /* The term keeps state of every sample it sees (SAF's bank): in a
     * data-parallel job each rank's loss_term gets the whole batch, in the
     * whole batch's order, so that the state stays the one process's, and
     * the rank keeps its own samples' rows of diff_z. false: each rank's
     * loss_term gets its own share, with n_valid the whole batch's (MESA). */
    bool term_whole_batch;
    /* Weights to evaluate: params (d) and stats (n_stats), borrowed. */
    bool (*eval_weights)(const dg_method *m, const float **params, const float **stats);
    /* MESA: the other model reported as a second row (label, params (d),
     * stats (n_stats), borrowed). */
    bool (*second_weights)(const dg_method *m, const char **label, const float **params,
            const float **stats);
    bool (*on_eval)(dg_method *m, long t, double source_val_loss); /* true = stop */
    long (*sched_step)(const dg_method *m, long t);
    void (*finish)(dg_method *m, dg_param_set *ps, const dg_closure *cl);
    /* Method state beyond the buffers/counters written by dg_method_state_save. */
    dg_status (*state_save)(const dg_method *m, dg_tensor_writer *out);
    dg_status (*state_load)(dg_method *m, const dg_tensor_reader *in);
    /* Releases priv's contents (priv itself, buf[] and base are released by
     * dg_method_free). */
    void (*free)(dg_method *m);
} dg_method_ops;

struct dg_method {
    const dg_method_ops *ops;
    dg_optim *base;       /* owned: the base optimizer this method drives */
    dg_method_cfg cfg;    /* the [optim] keys of §16 */
    float *buf[4];        /* (d) method-owned buffers (w0, phi, h, ...), NULL if unused */
    dg_rng rng;           /* method stream (seed, DG_RNG_DGSAM, 0) */
    long t;               /* steps taken */
    void *priv;           /* further state, owned (dg_free'd by dg_method_free) */
};

/* The rules between keys of cfg (each key's own range is its method's and
 * the configuration table's business): SAF refuses segmentation
 * (cfg->segmentation) and wants saf_start_epoch >= saf_epochs_back - 1 and
 * saf_end_epoch none or > saf_start_epoch; MESA's end epoch likewise; SWAD's
 * n_tolerance >= n_converge. The one place they are written: the
 * configuration's validation calls it with where = the config file (named
 * in the message), the methods' creation with where = NULL. Logs the first
 * broken rule; DG_STATUS_ERR_CONFIG. */
dg_status dg_method_cfg_check_rules(const char *method, const dg_method_cfg *cfg,
        const char *where);
/* Creates method `name` (erm, lookahead, sam, asam, swad, dgsam,
 * lookbehind-sam, lookbehind-asam, saf, mesa) driving base
 * optimizer `base_name` over ps's layout (borrowed: ps must outlive m; its
 * buffers must be allocated, and the method's initial state, e.g.
 * Lookahead's slow weights or MESA's teacher, is taken from ps->data and
 * ps->stats now). seed is train.seed. Every buffer is allocated here (SAF's
 * bank from cfg->n_samples and n_classes, MESA's teacher-logit scratch from
 * cfg->logits_numel). Returns DG_STATUS_OK, or DG_STATUS_ERR_CONFIG for an
 * unknown method or base name (the message lists the valid names), an
 * out-of-range key, SAF on a segmentation run (§11: classification only),
 * or a run fact the method needs left at 0; *out is NULL then. */
dg_status dg_method_create(const char *name, const char *base_name, const dg_method_cfg *cfg,
        const dg_param_set *ps, uint64_t seed, dg_method **out);
/* Releases m, its base optimizer and its buffers; NULL is fine. */
void dg_method_free(dg_method *m);

/* m->ops->step (the trainer's loop step 4). */
void dg_method_step(dg_method *m, dg_param_set *ps, const dg_closure *cl, float lr);
/* Schedule step for training step t: sched_step(m, t), or t. */
long dg_method_sched_step(const dg_method *m, long t);
/* Weights to evaluate: the method's (slow, averaged) or ps's own. */
void dg_method_eval_weights(const dg_method *m, const dg_param_set *ps, const float **params,
        const float **stats);
/* A second model the trainer evaluates and reports as its own row: MESA's
 * teacher (label "teacher"), or the student ("student", the live weights)
 * when mesa_eval_teacher makes the teacher primary. params (d), stats
 * (n_stats) and label are borrowed from m (or its parameter store). False,
 * with the three set to NULL, for every other method. */
bool dg_method_second_weights(const dg_method *m, const char **label, const float **params,
        const float **stats);
/* The method's loss term (docs/algorithms.md §1 rule 2), called by the trainer's
 * closure after it has computed the task CE and its gradient lz->diff_z,
 * before backward; epoch is the closure's sampler epoch. Returns 0 and
 * touches nothing when the method has no loss term; otherwise returns the
 * term (SAF §11, MESA §12; 0 outside the epoch window) having ADDED its
 * gradient w.r.t. the main-head logits lz->z into lz->diff_z. SAF also
 * records the batch's logits in its bank (classification: P = 1, sample_id
 * set); MESA averages over the units whose label is not 255 with
 * denominator lz->n_valid and reads the teacher logits of this step, so
 * inside its window it may only run from the closure call of its own step
 * (asserted). */
double dg_method_loss_term(dg_method *m, const dg_logits *lz, int epoch);
/* After an evaluation at step t with the source validation loss (trainer's
 * loop step 5): true when the method asks to stop (SWAD); false for
 * methods without on_eval. */
bool dg_method_on_eval(dg_method *m, long t, double source_val_loss);
/* End of training (BN refresh, SWAD end rule); nothing when not needed. */
void dg_method_finish(dg_method *m, dg_param_set *ps, const dg_closure *cl);

/* Writes the base optimizer state, "optim.<method>.step" and every method
 * buffer and counter (§13 names: optim.<base or method>.<state>). Tensor
 * data is borrowed: write the file before the next step. Returns
 * DG_STATUS_OK. */
dg_status dg_method_state_save(const dg_method *m, dg_tensor_writer *w);
/* Restores what dg_method_state_save wrote into a method created with the
 * same names and configuration; with the weights restored as well, the run
 * continues bit-identically. Returns DG_STATUS_OK, the reader's status
 * (MISSING, SHAPE, IO) or DG_STATUS_ERR_FORMAT (a counter out of range),
 * already logged; m is unusable after a failure. */
dg_status dg_method_state_load(dg_method *m, const dg_tensor_reader *r);

#endif
