/* tests/fuzz/fuzz_idx.c -- the IDX reader (data/idx.h) of Fashion-MNIST's
 * files, gzip-compressed or not. */
#include "fuzz_input.h"

#include "data/idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dg_idx a;
    if (dg_idx_read(fuzz_file(data, size), &a) == DG_STATUS_OK) dg_idx_free(&a);
    return 0;
}
