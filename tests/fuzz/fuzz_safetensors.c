/* tests/fuzz/fuzz_safetensors.c -- the safetensors reader
 * (nets/core/safetensors.h) on any bytes: it opens and validates the file,
 * then every tensor of at most 1 Mi elements is read as f32 and every
 * metadata key looked up. A malformed file must end in one clean error. */
#include "fuzz_input.h"

#include "nets/core/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dg_tensor_reader r;
    if (dg_tensor_reader_open(&r, fuzz_file(data, size)) != DG_STATUS_OK) return 0;
    for (size_t i = 0; i < dg_tensor_reader_count(&r); i++) {
        const dg_st_tensor *t = dg_tensor_reader_at(&r, i);
        if (t->numel > (1u << 20)) continue;
        float *x = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
        dg_tensor_reader_read_as_f32(&r, t, x);
        free(x);
        if (dg_tensor_reader_find(&r, t->name) != t) abort(); /* lookup by name */
    }
    for (size_t i = 0; i < r.n_meta; i++) dg_tensor_reader_metadata(&r, r.meta_keys[i]);
    dg_tensor_reader_close(&r);
    return 0;
}
