/* data/npy.h -- NumPy .npy files of little-endian float32 (`dgseg predict
 * --logits`, docs/design.md §4): a writer producing exactly the bytes numpy.save
 * writes (format version 1.0) and a validating reader for tests and tools.
 *
 * Format (numpy/lib/format.py): magic "\x93NUMPY", version bytes 1 0, a
 * little-endian uint16 header length, then the header -- a Python dict
 * literal {'descr': '<f4', 'fortran_order': False, 'shape': (...), } padded
 * with spaces and ended by '\n' so that the data starts at a multiple of 64
 * bytes -- then the C-order data. Versions 2.0 and 3.0 differ only by a
 * uint32 header length (3.0: UTF-8 header) and are accepted by the reader. */
#ifndef DG_DATA_NPY_H
#define DG_DATA_NPY_H

#include <stdint.h>

#include "nets/core/common.h"

/* Most dimensions a file may have (numpy allows 64; logits use 3). */
#define DG_NPY_MAX_DIMS 16

/* Writes data (shape[0], ..., shape[ndims-1]), C order, as a version 1.0
 * .npy file whose bytes equal numpy.save's for the same float32 array.
 * 0 <= ndims <= DG_NPY_MAX_DIMS and shape[i] >= 0 are asserted. The file is
 * replaced atomically. Returns DG_STATUS_OK or DG_STATUS_ERR_IO (path
 * logged). */
dg_status dg_npy_write_f32(const char *path, int ndims, const int64_t *shape,
        const float *data);

/* A float32 array read from a .npy file. Owns data. */
typedef struct dg_npy {
    int ndims;
    int64_t shape[DG_NPY_MAX_DIMS]; /* (ndims), rest 0 */
    int64_t numel;                  /* product of shape (1 for ndims 0) */
    int header_len;                 /* bytes before the data (magic included) */
    float *data;                    /* (shape[0], ..., shape[ndims-1]) C order */
} dg_npy;

/* Reads a .npy file, validating the magic, version (1.0, 2.0, 3.0), that the
 * header is a dict with exactly 'descr' == '<f4', 'fortran_order' == False
 * and a shape tuple of non-negative integers, and that the file holds
 * exactly numel float32 values after the header. out is overwritten; zeroed
 * on error. Returns DG_STATUS_OK, DG_STATUS_ERR_IO (cannot open or read) or
 * DG_STATUS_ERR_FORMAT (one message naming the path and what is wrong). */
dg_status dg_npy_read_f32(const char *path, dg_npy *out);

/* Releases data and zeroes the struct; safe on a zeroed struct. */
void dg_npy_free(dg_npy *a);

#endif
