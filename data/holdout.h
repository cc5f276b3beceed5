/* data/holdout.h -- the per-domain in/out split of the classification
 * benchmarks (DomainBed's training-domain validation, docs/datasets.md §9.2 and
 * §12.4): a shuffle of the domain's items 0 .. n-1 on stream
 * (DG_RNG_SPLIT, domain) seeded by the trial seed; out = the first
 * floor(0.2 n) items, in = the rest. Used by Rotated Fashion-MNIST and the
 * DomainBed folder datasets alike. */
#ifndef DG_DATA_HOLDOUT_H
#define DG_DATA_HOLDOUT_H

#include <stdint.h>

#include "nets/core/common.h"

/* Owns order; out and in point into it. */
typedef struct dg_holdout_split {
    int64_t n_out;
    int64_t n_in;
    int64_t *order;     /* (n_out + n_in) shuffled domain-local indices */
    const int64_t *out; /* (n_out) = order */
    const int64_t *in;  /* (n_in) = order + n_out */
} dg_holdout_split;

/* Computes the split of domain `domain` with n > 0 items for trial seed
 * trial_seed. sp is overwritten. */
void dg_holdout_split_init(dg_holdout_split *sp, int64_t n, int domain, uint64_t trial_seed);

/* Releases order and zeroes sp; safe on a zeroed struct. */
void dg_holdout_split_free(dg_holdout_split *sp);

#endif
