/* tests/alloc_hook.h -- counts heap allocations while counting is on, by
 * interposing malloc & co. in the test binary and forwarding to glibc: all
 * of them (oneDNN's and libgomp's included) and those called from dgseg's
 * own code (the caller's address lies in this executable, into which the
 * dgseg library is linked statically). Not available under
 * AddressSanitizer, which owns malloc itself: dg_alloc_hook_available()
 * says whether the counts are real. */
#ifndef DG_TESTS_ALLOC_HOOK_H
#define DG_TESTS_ALLOC_HOOK_H

#include <stdbool.h>
#include <stdint.h>

bool dg_alloc_hook_available(void);
void dg_alloc_hook_begin(void);    /* zero the count and start counting */
typedef struct dg_alloc_counts {
    uint64_t all;  /* every allocation in the process */
    uint64_t own;  /* called from dgseg's code */
} dg_alloc_counts;
dg_alloc_counts dg_alloc_hook_end(void); /* stop; allocations since begin */

#endif
