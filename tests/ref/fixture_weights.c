/* tests/ref/fixture_weights.c -- see fixture_weights.h. */
#include "fixture_weights.h"

#include <math.h>
#include <string.h>

uint32_t fixture_fnv1a32(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 16777619u;
    }
    return h;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static void fill_tensor(float *x, const dg_param_tensor *t, uint64_t seed) {
    dg_rng r;
    dg_rng_init(&r, seed, DG_RNG_INIT, fixture_fnv1a32(t->name));
    double fan_in = 1.0;
    for (int i = 1; i < t->ndims; i++) fan_in *= (double)t->shape[i];
    const double b = sqrt(3.0 / fan_in);
    for (size_t k = 0; k < t->n; k++) {
        double u = dg_rng_uniform(&r), v;
        if (ends_with(t->name, ".running_var")) v = 0.5 + u;
        else if (ends_with(t->name, ".running_mean") || ends_with(t->name, ".bias"))
            v = 0.1 * (2 * u - 1);
        else if (t->ndims >= 2) v = b * (2 * u - 1);
        else v = 1.0 + 0.2 * (2 * u - 1);
        x[k] = (float)v;
    }
}

void fixture_fill_weights(dg_param_set *ps, uint64_t seed) {
    for (size_t i = 0; i < ps->n_tensors; i++)
        fill_tensor(ps->data + ps->tensors[i].offset, &ps->tensors[i], seed);
    for (size_t i = 0; i < ps->n_stat_tensors; i++)
        fill_tensor(ps->stats + ps->stat_tensors[i].offset, &ps->stat_tensors[i], seed);
}
