/* nets/core/params.h -- the parameter store (docs/style.md §8, docs/algorithms.md §1).
 *
 * Every trainable tensor of a model lives in ONE contiguous f32 buffer
 * `data` (64-byte aligned, packed without padding, so d counts real
 * parameters), its gradient in `grad` with the identical layout, and the
 * non-trainable buffers (BN running mean and variance) in a separate named
 * store `stats`. Tensors are named views {name, shape, offset, n, flags}
 * in canonical plain layouts (oihw, oi, x) with torchvision names.
 *
 * Use: layers register their tensors during model init (dg_params_add,
 * dg_params_add_stat), then dg_params_alloc allocates the buffers and
 * dg_params_init_values fills them from the seeded streams. */
#ifndef DG_PARAMS_H
#define DG_PARAMS_H

#include "common.h"

enum {
    DG_PARAM_NO_DECAY = 1u << 0,    /* biases, normalisation affine */
    DG_PARAM_ASAM_SCALED = 1u << 1  /* conv/linear weights, norm scales */
};

typedef enum dg_init_kind {
    DG_INIT_CONST = 0,   /* every element = value */
    DG_INIT_NORMAL = 1,  /* N(0, value^2) */
    DG_INIT_UNIFORM = 2  /* U(-value, value) */
} dg_init_kind;

typedef struct dg_param_tensor {
    const char *name;     /* owned copy, "backbone.layer1.0.conv1.weight" */
    int ndims;
    int64_t shape[4];     /* canonical plain layout */
    size_t offset;        /* first element in data/grad (or stats) */
    size_t n;             /* element count */
    unsigned flags;       /* DG_PARAM_* */
    dg_init_kind init;    /* how dg_params_init_values fills it */
    float init_value;     /* constant, std or bound of `init` */
} dg_param_tensor;

typedef struct dg_param_set {
    float *data;                    /* (d) weights w, owned */
    float *grad;                    /* (d) gradient, same layout, owned */
    float *stats;                   /* (n_stats) running statistics, owned */
    size_t d, n_stats;
    dg_param_tensor *tensors;       /* (n_tensors) trainable views, owned */
    size_t n_tensors;
    dg_param_tensor *stat_tensors;  /* (n_stat_tensors) views into stats */
    size_t n_stat_tensors;
    size_t cap_tensors, cap_stat_tensors;
} dg_param_set;

void dg_params_init(dg_param_set *ps);
void dg_params_free(dg_param_set *ps);

/* Registers a trainable tensor before dg_params_alloc; returns its offset
 * into data/grad. Names must be unique (asserted). */
size_t dg_params_add(dg_param_set *ps, const char *name, int ndims,
        const int64_t *shape, unsigned flags, dg_init_kind init, float init_value);
/* Registers a statistics tensor; returns its offset into stats. */
size_t dg_params_add_stat(dg_param_set *ps, const char *name, int ndims,
        const int64_t *shape, float init_value);
/* Allocates data, grad (zero) and stats (zero) once every tensor is known. */
void dg_params_alloc(dg_param_set *ps);
/* The same without grad (left NULL): an inference instance, whose passes
 * never write a gradient (d floats it would otherwise keep resident). */
void dg_params_alloc_no_grad(dg_param_set *ps);
bool dg_params_is_allocated(const dg_param_set *ps);
/* Fills every tensor as its init kind says; trainable tensor i draws from
 * stream (seed, DG_RNG_INIT, i), so values never depend on thread count.
 * Statistics get their constants. */
void dg_params_init_values(dg_param_set *ps, uint64_t seed);

/* Changes how dg_params_init_values fills tensor `name` (asserted to
 * exist): models use it where their reference initialises differently from
 * the layer's default. */
void dg_params_set_init(dg_param_set *ps, const char *name, dg_init_kind init, float value);

/* View by name, or NULL. */
const dg_param_tensor *dg_params_find(const dg_param_set *ps, const char *name);
const dg_param_tensor *dg_params_find_stat(const dg_param_set *ps, const char *name);

/* True when a's trainable and statistics tensors are the first ones of b,
 * with b's names and offsets: a vector laid out like b can run a (an
 * inference instance without the auxiliary head on a training layout).
 * Equal layouts are the case a->d == b->d && a->n_stats == b->n_stats. */
bool dg_params_layout_is_prefix(const dg_param_set *a, const dg_param_set *b);

/* Initialiser values, as torch.nn.init computes them. fan_in = IC*KH*KW,
 * fan_out = OC*KH*KW for a (OC, IC, KH, KW) weight. */
float dg_init_kaiming_std(int64_t fan);      /* sqrt(2 / fan), ReLU gain */
float dg_init_default_bound(int64_t fan_in); /* 1/sqrt(fan_in), PyTorch's
                                                default for conv and linear */
/* Fill helpers on a raw buffer from a stream. */
void dg_init_fill_normal(float *x, size_t n, float std, dg_rng *r);
void dg_init_fill_uniform(float *x, size_t n, float bound, dg_rng *r);

#endif
