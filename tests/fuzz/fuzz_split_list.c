/* tests/fuzz/fuzz_split_list.c -- the GTAV/SYNTHIA split-list parser
 * (data/seg_dataset.h). */
#include "fuzz_input.h"

#include "data/seg_dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dg_strvec keys = {0};
    dg_seg_split_list_read(fuzz_file(data, size), &keys);
    dg_strvec_free(&keys);
    return 0;
}
