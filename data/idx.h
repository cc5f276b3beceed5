/* data/idx.h -- IDX files (the MNIST / Fashion-MNIST container), plain or
 * gzip-compressed (read through zlib, which passes plain files through), and
 * the MD5 digest used to check their decompressed bytes (docs/datasets.md §12.1).
 *
 * Format (yann.lecun.com/exdb/mnist): bytes 0 0 <type> <ndims>, then ndims
 * big-endian uint32 dimensions, then the elements in row-major order. Only
 * type 0x08 (unsigned byte) is supported: magic 2049 (0x00000801) is a 1-D
 * label file, 2051 (0x00000803) a 3-D image file (count, rows, cols). */
#ifndef DG_DATA_IDX_H
#define DG_DATA_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "nets/core/common.h"

/* Most dimensions a file may have. */
#define DG_IDX_MAX_DIMS 8
/* Element type code of unsigned bytes, the only one supported. */
#define DG_IDX_TYPE_U8 0x08

/* An IDX file read into memory. Owns bytes; data points into it. */
typedef struct dg_idx {
    uint32_t magic;                /* first four bytes, big-endian */
    int ndims;
    int64_t dims[DG_IDX_MAX_DIMS]; /* (ndims), rest 0 */
    int64_t numel;                 /* product of dims */
    int64_t file_bytes;            /* decompressed size, header included */
    uint8_t md5[16];               /* MD5 of the file_bytes decompressed bytes */
    uint8_t *bytes;                /* (file_bytes) the whole decompressed file */
    const uint8_t *data;           /* (dims[0], ..., dims[ndims-1]) inside bytes */
} dg_idx;

/* Reads a gzipped or plain IDX file of unsigned bytes, checking the magic
 * (two zero bytes, type 0x08, 1 <= ndims <= DG_IDX_MAX_DIMS), that exactly
 * numel data bytes follow the header (no fewer, no more) and, for gzip, the
 * stream's integrity (CRC, length, no truncation). out is overwritten;
 * zeroed on error. Returns DG_STATUS_OK, DG_STATUS_ERR_IO (cannot open or
 * read) or DG_STATUS_ERR_FORMAT; each error logs one message naming path. */
dg_status dg_idx_read(const char *path, dg_idx *out);

/* Releases bytes and zeroes the struct; safe on a zeroed struct. */
void dg_idx_free(dg_idx *a);

/* MD5 (RFC 1321) of data (n bytes) into digest. */
void dg_idx_md5(const void *data, size_t n, uint8_t digest[16]);

/* digest as 32 lower-case hex digits plus NUL into hex (33 bytes). */
void dg_idx_md5_hex(const uint8_t digest[16], char hex[33]);

#endif
