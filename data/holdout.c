/* data/holdout.c -- the seeded 80/20 in/out split of a domain
 * (docs/datasets.md §9.2, §12.4). */
#include <string.h>

#include "data/holdout.h"

void dg_holdout_split_init(dg_holdout_split *sp, int64_t n, int domain, uint64_t trial_seed) {
    DG_ASSERT(n > 0 && domain >= 0);
    memset(sp, 0, sizeof(*sp));
    sp->order = dg_xmalloc((size_t)n * sizeof(*sp->order));
    for (int64_t k = 0; k < n; k++) sp->order[k] = k;
    dg_rng r;
    dg_rng_init(&r, trial_seed, DG_RNG_SPLIT, (uint32_t)domain);
    dg_rng_shuffle_i64(&r, sp->order, (size_t)n);
    sp->n_out = n / 5; /* floor(0.2 n), exact in integers */
    sp->n_in = n - sp->n_out;
    sp->out = sp->order;
    sp->in = sp->order + sp->n_out;
}

void dg_holdout_split_free(dg_holdout_split *sp) {
    dg_free(sp->order);
    memset(sp, 0, sizeof(*sp));
}
