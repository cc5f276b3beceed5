/* tests/ref/fixture_weights.h -- the weight rule of the PyTorch fixtures
 * (tests/fixtures/README.md, "splitmix64-fnv1a-v1"): every parameter and
 * statistics tensor NAME draws u_k from stream (2024, DG_RNG_INIT,
 * fnv1a32(NAME)), element k in row-major order, and takes
 *   weight, ndim >= 2:  b (2u - 1), b = sqrt(3 / fan_in)
 *   weight, ndim 1:     1 + 0.2 (2u - 1)
 *   bias:               0.1 (2u - 1)
 *   running_mean:       0.1 (2u - 1)
 *   running_var:        0.5 + u
 * computed in double and rounded to f32. */
#ifndef DG_REF_FIXTURE_WEIGHTS_H
#define DG_REF_FIXTURE_WEIGHTS_H

#include "nets/core/params.h"

uint32_t fixture_fnv1a32(const char *s);
/* Fills ps->data and ps->stats by the rule above. */
void fixture_fill_weights(dg_param_set *ps, uint64_t seed);

#endif
