/* tests/fuzz/fuzz_image.c -- the image decoder wrapper (data/image_cv.h,
 * OpenCV's imread behind it): JPEG, PNG and whatever else it accepts. */
#include "fuzz_input.h"

#include "data/image_cv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dg_image img;
    if (dg_image_read(fuzz_file(data, size), &img) == DG_STATUS_OK) dg_image_free(&img);
    return 0;
}
