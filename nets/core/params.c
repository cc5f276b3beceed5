/* nets/core/params.c -- see params.h. */
#include "params.h"

#include <math.h>
#include <string.h>

void dg_params_init(dg_param_set *ps) { memset(ps, 0, sizeof(*ps)); }

static void free_views(dg_param_tensor *t, size_t n) {
    for (size_t i = 0; i < n; i++) dg_free((void *)t[i].name);
    dg_free(t);
}

void dg_params_free(dg_param_set *ps) {
    dg_free(ps->data);
    dg_free(ps->grad);
    dg_free(ps->stats);
    free_views(ps->tensors, ps->n_tensors);
    free_views(ps->stat_tensors, ps->n_stat_tensors);
    memset(ps, 0, sizeof(*ps));
}

static const dg_param_tensor *find(const dg_param_tensor *t, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return &t[i];
    return NULL;
}

const dg_param_tensor *dg_params_find(const dg_param_set *ps, const char *name) {
    return find(ps->tensors, ps->n_tensors, name);
}

const dg_param_tensor *dg_params_find_stat(const dg_param_set *ps, const char *name) {
    return find(ps->stat_tensors, ps->n_stat_tensors, name);
}

static dg_param_tensor *push_view(dg_param_tensor **v, size_t *n, size_t *cap,
        const char *name, int ndims, const int64_t *shape, size_t offset) {
    DG_ASSERT(ndims >= 1 && ndims <= 4);
    DG_ASSERT(find(*v, *n, name) == NULL);
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        *v = dg_xrealloc(*v, *cap * sizeof(**v));
    }
    dg_param_tensor *t = &(*v)[(*n)++];
    memset(t, 0, sizeof(*t));
    t->name = dg_xstrdup(name);
    t->ndims = ndims;
    t->n = 1;
    for (int i = 0; i < ndims; i++) {
        DG_ASSERT(shape[i] > 0);
        t->shape[i] = shape[i];
        t->n *= (size_t)shape[i];
    }
    t->offset = offset;
    return t;
}

size_t dg_params_add(dg_param_set *ps, const char *name, int ndims,
        const int64_t *shape, unsigned flags, dg_init_kind init, float init_value) {
    DG_ASSERT(!dg_params_is_allocated(ps));
    dg_param_tensor *t = push_view(&ps->tensors, &ps->n_tensors, &ps->cap_tensors,
            name, ndims, shape, ps->d);
    t->flags = flags;
    t->init = init;
    t->init_value = init_value;
    ps->d += t->n;
    return t->offset;
}

size_t dg_params_add_stat(dg_param_set *ps, const char *name, int ndims,
        const int64_t *shape, float init_value) {
    DG_ASSERT(!dg_params_is_allocated(ps));
    dg_param_tensor *t = push_view(&ps->stat_tensors, &ps->n_stat_tensors,
            &ps->cap_stat_tensors, name, ndims, shape, ps->n_stats);
    t->init = DG_INIT_CONST;
    t->init_value = init_value;
    ps->n_stats += t->n;
    return t->offset;
}

bool dg_params_is_allocated(const dg_param_set *ps) { return ps->data != NULL; }

void dg_params_alloc_no_grad(dg_param_set *ps) {
    DG_ASSERT(!dg_params_is_allocated(ps));
    ps->data = dg_xcalloc(ps->d ? ps->d : 1, sizeof(float));
    ps->stats = dg_xcalloc(ps->n_stats ? ps->n_stats : 1, sizeof(float));
}

void dg_params_alloc(dg_param_set *ps) {
    dg_params_alloc_no_grad(ps);
    ps->grad = dg_xcalloc(ps->d ? ps->d : 1, sizeof(float));
}

void dg_init_fill_normal(float *x, size_t n, float std, dg_rng *r) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(std * dg_rng_normal(r));
}

void dg_init_fill_uniform(float *x, size_t n, float bound, dg_rng *r) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(bound * (2.0 * dg_rng_uniform(r) - 1.0));
}

static void fill(float *x, const dg_param_tensor *t, dg_rng *r) {
    switch (t->init) {
    case DG_INIT_CONST:
        for (size_t i = 0; i < t->n; i++) x[i] = t->init_value;
        break;
    case DG_INIT_NORMAL: dg_init_fill_normal(x, t->n, t->init_value, r); break;
    case DG_INIT_UNIFORM: dg_init_fill_uniform(x, t->n, t->init_value, r); break;
    }
}

void dg_params_init_values(dg_param_set *ps, uint64_t seed) {
    DG_ASSERT(dg_params_is_allocated(ps));
    for (size_t i = 0; i < ps->n_tensors; i++) {
        dg_rng r;
        dg_rng_init(&r, seed, DG_RNG_INIT, (uint32_t)i);
        fill(ps->data + ps->tensors[i].offset, &ps->tensors[i], &r);
    }
    for (size_t i = 0; i < ps->n_stat_tensors; i++)
        fill(ps->stats + ps->stat_tensors[i].offset, &ps->stat_tensors[i], NULL);
}

float dg_init_kaiming_std(int64_t fan) { return (float)sqrt(2.0 / (double)fan); }

float dg_init_default_bound(int64_t fan_in) { return (float)(1.0 / sqrt((double)fan_in)); }

void dg_params_set_init(dg_param_set *ps, const char *name, dg_init_kind init, float value) {
    dg_param_tensor *t = (dg_param_tensor *)dg_params_find(ps, name);
    DG_ASSERT(t != NULL);
    t->init = init;
    t->init_value = value;
}

bool dg_params_layout_is_prefix(const dg_param_set *a, const dg_param_set *b) {
    if (a->n_tensors > b->n_tensors || a->n_stat_tensors > b->n_stat_tensors) return false;
    for (size_t i = 0; i < a->n_tensors; i++)
        if (strcmp(a->tensors[i].name, b->tensors[i].name) ||
                a->tensors[i].offset != b->tensors[i].offset)
            return false;
    for (size_t i = 0; i < a->n_stat_tensors; i++)
        if (strcmp(a->stat_tensors[i].name, b->stat_tensors[i].name) ||
                a->stat_tensors[i].offset != b->stat_tensors[i].offset)
            return false;
    return true;
}
