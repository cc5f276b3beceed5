/* nets/core/safetensors.h -- reading and writing safetensors files, the
 * Hugging Face tensor format used for weights, checkpoints and optimizer
 * state (docs/design.md §6, docs/algorithms.md §1 state_save/state_load).
 *
 * File layout: an 8-byte little-endian u64 header length N, N bytes of
 * UTF-8 JSON, then the data buffer. The JSON object maps each tensor name to
 * {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} (byte
 * offsets relative to the start of the data buffer, end exclusive), plus an
 * optional "__metadata__" object of string -> string. The tensors cover the
 * data buffer exactly: no overlaps, no holes, no trailing bytes.
 *
 * Reader (dg_tensor_reader): open validates the whole file before any data
 * is read (header length, UTF-8, JSON, every entry, offsets, coverage, file
 * size); reads then go straight from the file into caller buffers (pread).
 * Writer (dg_tensor_writer): collects (name, dtype, shape, data) entries and
 * metadata, then writes the file atomically (temporary file in the same
 * directory, fsync, rename, fsync of the directory).
 *
 * Conversions to f32 (dg_tensor_reader_read_as_f32, _read_f32): F32 is
 * copied; F16 (IEEE half, subnormals, inf and NaN included), BF16 and F64
 * (rounded to nearest, out-of-range values become +-inf) are converted. No
 * other dtype converts to f32; integer tensors are read with _read_raw,
 * _read_i64 or _read_u64. Data is little-endian, as on every supported host.
 *
 * Errors (docs/style.md §6 tier 2): every failing call logs one message naming
 * the file (and the tensor when there is one) and returns a dg_status;
 * misuse by the program (duplicate names, NULL arguments) is a tier-1
 * assertion. */
#ifndef DG_SAFETENSORS_H
#define DG_SAFETENSORS_H

#include "common.h"

/* Every safetensors dtype whose elements are whole bytes. The sub-byte and
 * scale dtypes of newer safetensors versions (F4, F6_*, F8_E8M0) are not
 * supported: a file using them fails to open with "unknown dtype". */
typedef enum dg_st_dtype {
    DG_ST_BOOL = 0,
    DG_ST_U8,
    DG_ST_I8,
    DG_ST_F8_E5M2,
    DG_ST_F8_E4M3,
    DG_ST_I16,
    DG_ST_U16,
    DG_ST_F16,
    DG_ST_BF16,
    DG_ST_I32,
    DG_ST_U32,
    DG_ST_F32,
    DG_ST_F64,
    DG_ST_I64,
    DG_ST_U64,
    DG_ST_DTYPE_COUNT
} dg_st_dtype;

/* Largest header the reader accepts (the reference implementation's limit). */
#define DG_ST_MAX_HEADER ((uint64_t)100000000)

/* The header spelling ("F32", "BF16", ...). */
const char *dg_st_dtype_name(dg_st_dtype dt);
/* Bytes per element. */
size_t dg_st_dtype_size(dg_st_dtype dt);
/* True for F32, F16, BF16 and F64: the dtypes that read into f32. */
bool dg_st_dtype_is_f32_convertible(dg_st_dtype dt);
/* Parses a header spelling; false when the name is not a known dtype. */
bool dg_st_dtype_parse(const char *name, dg_st_dtype *dt);
/* Writes "[64, 3, 7, 7]" (or "[]" for a scalar) into buf, truncated to
 * size; returns buf. */
char *dg_st_format_shape(char *buf, size_t size, int ndims, const int64_t *shape);
/* A tensor name from a file as it goes into a message: control bytes
 * become '?' (one message stays one line) and a name longer than size - 1
 * ends in "..."; size >= 4. Returns buf. */
#define DG_ST_PRINTABLE 160
char *dg_st_printable(char *buf, size_t size, const char *name);

/* ---- reader ------------------------------------------------------------ */

/* One tensor of an open file. */
typedef struct dg_st_tensor {
    char *name;          /* owned */
    dg_st_dtype dtype;
    int ndims;           /* 0 for a scalar */
    int64_t *shape;      /* (ndims) owned, NULL for a scalar */
    uint64_t numel;      /* product of shape (1 for a scalar, 0 when a dim is 0) */
    uint64_t begin, end; /* byte range in the data buffer; end - begin = numel * dtype size */
} dg_st_tensor;

/* An open, fully validated file. Fields are read-only for callers. */
typedef struct dg_tensor_reader {
    char *path;                   /* owned copy, used in messages */
    int fd;                       /* valid while is_open */
    bool is_open;
    uint64_t data_start;          /* 8 + header length: file offset of the data buffer */
    uint64_t data_len;            /* bytes in the data buffer */
    dg_st_tensor *tensors;        /* (n_tensors) in header order, owned */
    size_t n_tensors;
    const dg_st_tensor **by_name; /* (n_tensors) sorted by name, for lookup */
    char **meta_keys;             /* (n_meta) "__metadata__" keys, header order, owned */
    char **meta_values;           /* (n_meta) their values, owned */
    size_t n_meta;
} dg_tensor_reader;

/* Opens and validates `path`. Returns DG_STATUS_OK, DG_STATUS_ERR_IO when
 * the file cannot be opened or read, DG_STATUS_ERR_FORMAT when its content
 * is malformed (header length, UTF-8, JSON, unknown dtype, bad shape or
 * offsets, size not matching shape, overlaps, holes, truncation); the
 * message names the file and the tensor at fault. On failure r is left
 * closed (dg_tensor_reader_close is still safe). */
dg_status dg_tensor_reader_open(dg_tensor_reader *r, const char *path);
/* Releases everything; safe on a zeroed, failed or closed reader; zeroes r. */
void dg_tensor_reader_close(dg_tensor_reader *r);

/* Number of tensors, and the i-th in header order (i < count). */
size_t dg_tensor_reader_count(const dg_tensor_reader *r);
const dg_st_tensor *dg_tensor_reader_at(const dg_tensor_reader *r, size_t i);
/* The tensor called `name`, or NULL (logs nothing). */
const dg_st_tensor *dg_tensor_reader_find(const dg_tensor_reader *r, const char *name);
/* The metadata value of `key`, or NULL (logs nothing). */
const char *dg_tensor_reader_metadata(const dg_tensor_reader *r, const char *key);

/* Copies t's bytes (end - begin of them, any dtype) into dst (which may be
 * NULL for an empty tensor). Returns
 * DG_STATUS_OK or DG_STATUS_ERR_IO (read failure, file shrunk since open). */
dg_status dg_tensor_reader_read_raw(const dg_tensor_reader *r, const dg_st_tensor *t, void *dst);
/* Reads t into dst (numel floats), converting F16/BF16/F64. Returns
 * DG_STATUS_OK, DG_STATUS_ERR_SHAPE when t's dtype does not convert to f32,
 * DG_STATUS_ERR_IO on a read failure. */
dg_status dg_tensor_reader_read_as_f32(const dg_tensor_reader *r, const dg_st_tensor *t,
        float *dst);

/* Checked reads by name for optimizer state and other known tensors: the
 * tensor must exist and have exactly shape (ndims, shape; ndims 0 = scalar,
 * shape may then be NULL). Return DG_STATUS_OK, DG_STATUS_ERR_MISSING (no
 * such tensor), DG_STATUS_ERR_SHAPE (other shape, or a dtype that is not
 * accepted: _f32 takes F32/F16/BF16/F64, _i64 only I64, _u64 only U64),
 * DG_STATUS_ERR_IO (read failure); the message names the tensor. */
dg_status dg_tensor_reader_read_f32(const dg_tensor_reader *r, const char *name, int ndims,
        const int64_t *shape, float *dst);
dg_status dg_tensor_reader_read_i64(const dg_tensor_reader *r, const char *name, int ndims,
        const int64_t *shape, int64_t *dst);
dg_status dg_tensor_reader_read_u64(const dg_tensor_reader *r, const char *name, int ndims,
        const int64_t *shape, uint64_t *dst);

/* ---- writer ------------------------------------------------------------ */

typedef struct dg_st_entry {
    char *name;         /* owned */
    dg_st_dtype dtype;
    int ndims;
    int64_t *shape;     /* (ndims) owned, NULL for a scalar */
    uint64_t nbytes;    /* numel * dtype size */
    const void *data;   /* borrowed, or == copy */
    void *copy;         /* owned copy of small values (scalars), or NULL */
} dg_st_entry;

/* Entries in insertion order (the file keeps that order; the format allows
 * any), metadata key/value pairs in insertion order. Owns names, shapes,
 * metadata strings and scalar copies; borrows tensor data, which must stay
 * valid and unchanged until dg_tensor_writer_write returns. */
typedef struct dg_tensor_writer {
    dg_st_entry *entries;  /* (n_entries) owned */
    size_t n_entries, cap_entries;
    char **meta_keys;      /* (n_meta) owned */
    char **meta_values;    /* (n_meta) owned */
    size_t n_meta, cap_meta;
} dg_tensor_writer;

void dg_tensor_writer_init(dg_tensor_writer *w);
/* Safe on a zeroed writer; zeroes w. */
void dg_tensor_writer_free(dg_tensor_writer *w);

/* Adds a tensor (borrowing data: numel * dtype size bytes, row-major).
 * Names must be unique, non-empty and not "__metadata__"; shapes
 * non-negative (asserted). ndims 0 is a scalar (shape may be NULL). */
void dg_tensor_writer_add(dg_tensor_writer *w, const char *name, dg_st_dtype dtype, int ndims,
        const int64_t *shape, const void *data);
void dg_tensor_writer_add_f32(dg_tensor_writer *w, const char *name, int ndims,
        const int64_t *shape, const float *data);
void dg_tensor_writer_add_i64(dg_tensor_writer *w, const char *name, int ndims,
        const int64_t *shape, const int64_t *data);
/* Scalars (shape []) copied into the writer: counters, RNG states. */
void dg_tensor_writer_add_scalar_i64(dg_tensor_writer *w, const char *name, int64_t value);
void dg_tensor_writer_add_scalar_u64(dg_tensor_writer *w, const char *name, uint64_t value);
/* Sets a "__metadata__" entry (copied); setting a key again replaces it.
 * A byte of key or value that is not part of valid UTF-8 (a Latin-1 path
 * in a config) is stored as the four characters \xHH, with a warning, so
 * the file stays readable (its header must be UTF-8 JSON text). */
void dg_tensor_writer_set_metadata(dg_tensor_writer *w, const char *key, const char *value);

/* Writes the file atomically: "<path>.tmp.<pid>" in the same directory,
 * fflush + fsync, rename over path, fsync of the directory. The header is
 * padded with spaces to a multiple of 8 bytes. Returns DG_STATUS_OK or
 * DG_STATUS_ERR_IO (message names the path, the step and errno's text). A
 * failure before the rename removes the temporary file and leaves an
 * existing file at path as it was; a failing directory fsync after the
 * rename is reported too (the new file is in place but may not survive a
 * power loss). */
dg_status dg_tensor_writer_write(const dg_tensor_writer *w, const char *path);

#endif
