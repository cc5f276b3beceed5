/* tests/fuzz/fuzz_png_label.c -- the PNG label reader (data/png_io.h):
 * header information and the full decode of a label map. */
#include "fuzz_input.h"

#include "data/png_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    dg_png_info info;
    dg_png_read_info(path, &info);
    dg_label_png l;
    if (dg_label_read_png(path, &l) == DG_STATUS_OK) dg_label_png_free(&l);
    return 0;
}
