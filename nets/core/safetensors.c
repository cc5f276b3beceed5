/* nets/core/safetensors.c -- see safetensors.h.
 *
 * The reader trusts nothing in the file: every number from the header is
 * checked before it is used as a size or an offset, and all of them are
 * checked at open, so later reads can only fail on I/O. */
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cjson/cJSON.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
        "safetensors data is little-endian and is read without swapping");

/* Integers above 2^53 do not survive cJSON's doubles. */
#define JSON_MAX_INT 9007199254740992.0
/* Elements converted per chunk when reading F16/BF16/F64 into f32. */
#define CONVERT_CHUNK 65536

static const struct {
    const char *name;
    size_t size;
} dtypes[DG_ST_DTYPE_COUNT] = {
    [DG_ST_BOOL] = {"BOOL", 1},       [DG_ST_U8] = {"U8", 1},
    [DG_ST_I8] = {"I8", 1},           [DG_ST_F8_E5M2] = {"F8_E5M2", 1},
    [DG_ST_F8_E4M3] = {"F8_E4M3", 1}, [DG_ST_I16] = {"I16", 2},
    [DG_ST_U16] = {"U16", 2},         [DG_ST_F16] = {"F16", 2},
    [DG_ST_BF16] = {"BF16", 2},       [DG_ST_I32] = {"I32", 4},
    [DG_ST_U32] = {"U32", 4},         [DG_ST_F32] = {"F32", 4},
    [DG_ST_F64] = {"F64", 8},         [DG_ST_I64] = {"I64", 8},
    [DG_ST_U64] = {"U64", 8},
};

const char *dg_st_dtype_name(dg_st_dtype dt) {
    DG_ASSERT((unsigned)dt < DG_ST_DTYPE_COUNT);
    return dtypes[dt].name;
}

size_t dg_st_dtype_size(dg_st_dtype dt) {
    DG_ASSERT((unsigned)dt < DG_ST_DTYPE_COUNT);
    return dtypes[dt].size;
}

bool dg_st_dtype_is_f32_convertible(dg_st_dtype dt) {
    return dt == DG_ST_F32 || dt == DG_ST_F16 || dt == DG_ST_BF16 || dt == DG_ST_F64;
}

bool dg_st_dtype_parse(const char *name, dg_st_dtype *dt) {
    for (int i = 0; i < DG_ST_DTYPE_COUNT; i++) {
        if (!strcmp(name, dtypes[i].name)) {
            *dt = (dg_st_dtype)i;
            return true;
        }
    }
    return false;
}

char *dg_st_format_shape(char *buf, size_t size, int ndims, const int64_t *shape) {
    DG_ASSERT(size > 0);
    size_t k = 0;
    buf[0] = '\0';
    int m = snprintf(buf, size, "[");
    k = m > 0 ? (size_t)m : 0;
    for (int i = 0; i < ndims && k < size; i++) {
        m = snprintf(buf + k, size - k, "%s%" PRId64, i ? ", " : "", shape[i]);
        if (m < 0) break;
        k += (size_t)m;
    }
    if (k < size) snprintf(buf + k, size - k, "]");
    return buf;
}

char *dg_st_printable(char *buf, size_t size, const char *name) {
    DG_ASSERT(size >= 4);
    size_t k = 0;
    for (; name[k] && k < size - 1; k++) {
        const unsigned char c = (unsigned char)name[k];
        buf[k] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    buf[k] = '\0';
    if (name[k]) memcpy(buf + size - 4, "...", 4);
    return buf;
}

static uint64_t get_le64(const uint8_t *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

static void put_le64(uint8_t *b, uint64_t v) {
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
}

/* pread until n bytes arrived. Returns 0, an errno value, or -1 at end of
 * file. */
static int pread_full(int fd, void *dst, size_t n, uint64_t off) {
    char *p = dst;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? (size_t)1 << 30 : n;
        ssize_t k = pread(fd, p, chunk, (off_t)off);
        if (k < 0) {
            if (errno == EINTR) continue;
            return errno ? errno : EIO;
        }
        if (k == 0) return -1;
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

/* ---- conversions to f32 ------------------------------------------------ */

static float f32_from_bits(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

static float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0) { /* zero or subnormal: man * 2^-24, exact in f32 */
        const float f = (float)man * 0x1p-24f;
        return sign ? -f : f;
    }
    if (exp == 31) return f32_from_bits(sign | 0x7f800000u | (man << 13)); /* inf, NaN */
    return f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
}

static float bf16_to_f32(uint16_t b) { return f32_from_bits((uint32_t)b << 16); }

static float f64_to_f32(double x) {
    if (isnan(x)) return (float)x;
    const double a = fabs(x);
    if (a > FLT_MAX) { /* round to nearest even: FLT_MAX up to half an ulp above it */
        const float m = a >= 0x1.ffffffp127 ? INFINITY : FLT_MAX;
        return x < 0 ? -m : m;
    }
    return (float)x;
}

static void convert_to_f32(const uint8_t *src, dg_st_dtype dt, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (dt == DG_ST_F16 || dt == DG_ST_BF16) {
            const uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
            dst[i] = dt == DG_ST_F16 ? f16_to_f32(h) : bf16_to_f32(h);
        } else {
            double d;
            memcpy(&d, src + 8 * i, sizeof(d));
            dst[i] = f64_to_f32(d);
        }
    }
}

/* ---- reader: header validation ------------------------------------------ */

/* Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF) and no
 * control bytes other than tab, newline and carriage return. Returns the
 * offset of the first bad byte, or n when all are good. */
static size_t first_bad_header_byte(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        const unsigned c = s[i];
        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') return i;
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) k = 1, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0) k = 2, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0) k = 3, cp = c & 0x07, min = 0x10000;
        else return i;
        if (k > n - 1 - i) return i;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += k + 1;
    }
    return n;
}

/* A JSON number that is an integer in [0, 2^53]. */
static bool json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    const double d = v->valuedouble;
    if (!(d >= 0.0 && d <= JSON_MAX_INT) || d != floor(d)) return false;
    *out = (uint64_t)d;
    return true;
}

static int cmp_tensor_name(const void *a, const void *b) {
    const dg_st_tensor *x = *(const dg_st_tensor *const *)a;
    const dg_st_tensor *y = *(const dg_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_tensor_offsets(const void *a, const void *b) {
    const dg_st_tensor *x = *(const dg_st_tensor *const *)a;
    const dg_st_tensor *y = *(const dg_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name); /* deterministic messages */
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Validates one tensor entry `e` (named e->string) into t. */
static dg_status parse_entry(dg_tensor_reader *r, const cJSON *e, dg_st_tensor *t) {
    char nb[DG_ST_PRINTABLE], db[DG_ST_PRINTABLE];
    const char *path = r->path, *name = dg_st_printable(nb, sizeof(nb), e->string);
    t->name = dg_xstrdup(e->string);
    if (!cJSON_IsObject(e)) {
        dg_log_error("%s: tensor '%s': header entry is not an object", path, name);
        return DG_STATUS_ERR_FORMAT;
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) {
        dg_log_error("%s: tensor '%s': no \"dtype\" string", path, name);
        return DG_STATUS_ERR_FORMAT;
    }
    if (!dg_st_dtype_parse(dt->valuestring, &t->dtype)) {
        dg_log_error("%s: tensor '%s': unknown dtype '%s'", path, name,
                dg_st_printable(db, sizeof(db), dt->valuestring));
        return DG_STATUS_ERR_FORMAT;
    }
    if (!cJSON_IsArray(sh)) {
        dg_log_error("%s: tensor '%s': no \"shape\" array", path, name);
        return DG_STATUS_ERR_FORMAT;
    }
    const int ndims = cJSON_GetArraySize(sh);
    t->shape = ndims ? dg_xmalloc((size_t)ndims * sizeof(*t->shape)) : NULL;
    bool zero = false, overflow = false;
    uint64_t numel = 1;
    const cJSON *d = sh->child;
    for (int i = 0; i < ndims; i++, d = d->next) {
        uint64_t v;
        if (!json_uint(d, &v)) {
            dg_log_error("%s: tensor '%s': shape element %d is not a non-negative integer",
                    path, name, i);
            return DG_STATUS_ERR_FORMAT;
        }
        t->shape[i] = (int64_t)v;
        t->ndims = i + 1;
        if (v == 0) zero = true;
        else if (numel > UINT64_MAX / v) overflow = true;
        else numel *= v;
    }
    char shape_str[256];
    dg_st_format_shape(shape_str, sizeof(shape_str), t->ndims, t->shape);
    const uint64_t esize = dtypes[t->dtype].size;
    if (!zero && (overflow || numel > UINT64_MAX / esize)) {
        dg_log_error("%s: tensor '%s': %s shape %s is too large", path, name,
                dtypes[t->dtype].name, shape_str);
        return DG_STATUS_ERR_FORMAT;
    }
    t->numel = zero ? 0 : numel;
    const uint64_t nbytes = t->numel * esize;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || !json_uint(of->child, &t->begin) ||
            !json_uint(of->child->next, &t->end)) {
        dg_log_error("%s: tensor '%s': \"data_offsets\" is not an array of two non-negative "
                "integers", path, name);
        return DG_STATUS_ERR_FORMAT;
    }
    if (t->end < t->begin) {
        dg_log_error("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before they "
                "begin", path, name, t->begin, t->end);
        return DG_STATUS_ERR_FORMAT;
    }
    if (t->end - t->begin != nbytes) {
        dg_log_error("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                " bytes but %s shape %s needs %" PRIu64, path, name, t->begin, t->end,
                t->end - t->begin, dtypes[t->dtype].name, shape_str, nbytes);
        return DG_STATUS_ERR_FORMAT;
    }
    if (t->end > r->data_len) {
        dg_log_error("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] extend beyond "
                "the data buffer of %" PRIu64 " bytes (file truncated?)", path, name,
                t->begin, t->end, r->data_len);
        return DG_STATUS_ERR_FORMAT;
    }
    return DG_STATUS_OK;
}

static dg_status parse_metadata(dg_tensor_reader *r, const cJSON *m) {
    if (cJSON_IsNull(m)) return DG_STATUS_OK;
    if (!cJSON_IsObject(m)) {
        dg_log_error("%s: \"__metadata__\" is not an object", r->path);
        return DG_STATUS_ERR_FORMAT;
    }
    const size_t n = (size_t)cJSON_GetArraySize(m);
    r->meta_keys = dg_xcalloc(n ? n : 1, sizeof(*r->meta_keys));
    r->meta_values = dg_xcalloc(n ? n : 1, sizeof(*r->meta_values));
    for (const cJSON *v = m->child; v; v = v->next) {
        if (!cJSON_IsString(v)) {
            char kb[DG_ST_PRINTABLE];
            dg_log_error("%s: \"__metadata__\" key '%s' does not hold a string", r->path,
                    dg_st_printable(kb, sizeof(kb), v->string));
            return DG_STATUS_ERR_FORMAT;
        }
        r->meta_keys[r->n_meta] = dg_xstrdup(v->string);
        r->meta_values[r->n_meta] = dg_xstrdup(v->valuestring);
        r->n_meta++;
    }
    char **sorted = dg_xmalloc((n ? n : 1) * sizeof(*sorted));
    memcpy(sorted, r->meta_keys, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_str);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (!strcmp(sorted[i - 1], sorted[i])) dup = sorted[i];
    char kb[DG_ST_PRINTABLE];
    if (dup)
        dg_log_error("%s: \"__metadata__\" key '%s' appears twice", r->path,
                dg_st_printable(kb, sizeof(kb), dup));
    dg_free(sorted);
    return dup ? DG_STATUS_ERR_FORMAT : DG_STATUS_OK;
}

/* Names unique; tensors cover [0, data_len) without overlaps or holes. */
static dg_status check_layout(dg_tensor_reader *r) {
    const size_t n = r->n_tensors;
    r->by_name = dg_xmalloc((n ? n : 1) * sizeof(*r->by_name));
    for (size_t i = 0; i < n; i++) r->by_name[i] = &r->tensors[i];
    qsort(r->by_name, n, sizeof(*r->by_name), cmp_tensor_name);
    for (size_t i = 1; i < n; i++) {
        if (!strcmp(r->by_name[i - 1]->name, r->by_name[i]->name)) {
            char nb[DG_ST_PRINTABLE];
            dg_log_error("%s: tensor '%s' appears twice in the header", r->path,
                    dg_st_printable(nb, sizeof(nb), r->by_name[i]->name));
            return DG_STATUS_ERR_FORMAT;
        }
    }
    const dg_st_tensor **by_off = dg_xmalloc((n ? n : 1) * sizeof(*by_off));
    memcpy(by_off, r->by_name, n * sizeof(*by_off));
    qsort(by_off, n, sizeof(*by_off), cmp_tensor_offsets);
    dg_status s = DG_STATUS_OK;
    char nb[DG_ST_PRINTABLE], pb[DG_ST_PRINTABLE];
    uint64_t covered = 0;
    const dg_st_tensor *prev = NULL;
    for (size_t i = 0; i < n && s == DG_STATUS_OK; i++) {
        const dg_st_tensor *t = by_off[i];
        if (t->begin < covered) {
            dg_log_error("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] overlap "
                    "tensor '%s' [%" PRIu64 ", %" PRIu64 "]", r->path,
                    dg_st_printable(nb, sizeof(nb), t->name), t->begin, t->end,
                    dg_st_printable(pb, sizeof(pb), prev->name), prev->begin, prev->end);
            s = DG_STATUS_ERR_FORMAT;
        } else if (t->begin > covered) {
            dg_log_error("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] leave a hole: "
                    "bytes [%" PRIu64 ", %" PRIu64 ") of the data buffer belong to no tensor",
                    r->path, dg_st_printable(nb, sizeof(nb), t->name), t->begin, t->end,
                    covered, t->begin);
            s = DG_STATUS_ERR_FORMAT;
        }
        if (t->end > covered) {
            covered = t->end;
            prev = t;
        } else if (!prev) {
            prev = t;
        }
    }
    if (s == DG_STATUS_OK && covered != r->data_len) {
        dg_log_error("%s: the last %" PRIu64 " bytes of the data buffer (after %s%s%s) belong to "
                "no tensor", r->path, r->data_len - covered, prev ? "tensor '" : "the header",
                prev ? dg_st_printable(pb, sizeof(pb), prev->name) : "", prev ? "'" : "");
        s = DG_STATUS_ERR_FORMAT;
    }
    dg_free(by_off);
    return s;
}

static dg_status parse_header(dg_tensor_reader *r, const char *hdr, size_t n) {
    const size_t bad = first_bad_header_byte((const unsigned char *)hdr, n);
    if (bad < n) {
        dg_log_error("%s: header byte %zu (0x%02x) is not valid UTF-8 JSON text", r->path, bad,
                (unsigned char)hdr[bad]);
        return DG_STATUS_ERR_FORMAT;
    }
    if (hdr[0] != '{') {
        dg_log_error("%s: header does not start with '{': not a safetensors file", r->path);
        return DG_STATUS_ERR_FORMAT;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, n, &end, 0);
    if (!root) {
        dg_log_error("%s: header is not valid JSON (error near header byte %td)", r->path,
                end ? end - hdr : (ptrdiff_t)0);
        return DG_STATUS_ERR_FORMAT;
    }
    dg_status s = DG_STATUS_OK;
    for (const char *p = end; p < hdr + n; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            dg_log_error("%s: header has bytes after its JSON object (header byte %td)", r->path,
                    p - hdr);
            s = DG_STATUS_ERR_FORMAT;
            break;
        }
    }
    if (s == DG_STATUS_OK && !cJSON_IsObject(root)) {
        dg_log_error("%s: header is not a JSON object", r->path);
        s = DG_STATUS_ERR_FORMAT;
    }
    size_t n_entries = 0;
    for (const cJSON *c = root->child; c; c = c->next) n_entries++;
    r->tensors = dg_xcalloc(n_entries ? n_entries : 1, sizeof(*r->tensors));
    bool seen_meta = false;
    for (const cJSON *c = root->child; c && s == DG_STATUS_OK; c = c->next) {
        if (!strcmp(c->string, "__metadata__")) {
            if (seen_meta) {
                dg_log_error("%s: \"__metadata__\" appears twice", r->path);
                s = DG_STATUS_ERR_FORMAT;
            } else {
                seen_meta = true;
                s = parse_metadata(r, c);
            }
        } else {
            /* counted before validation: close frees a half-parsed entry */
            s = parse_entry(r, c, &r->tensors[r->n_tensors++]);
        }
    }
    cJSON_Delete(root);
    if (s == DG_STATUS_OK) s = check_layout(r);
    return s;
}

dg_status dg_tensor_reader_open(dg_tensor_reader *r, const char *path) {
    memset(r, 0, sizeof(*r));
    r->path = dg_xstrdup(path);
    if (dg_check_regular_file(path, "safetensors") != DG_STATUS_OK) {
        dg_tensor_reader_close(r);
        return DG_STATUS_ERR_IO;
    }
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        dg_log_error("%s: cannot open: %s", path, strerror(errno));
        dg_tensor_reader_close(r);
        return DG_STATUS_ERR_IO;
    }
    r->is_open = true;
    struct stat st;
    if (fstat(r->fd, &st) != 0) {
        dg_log_error("%s: cannot stat: %s", path, strerror(errno));
        dg_tensor_reader_close(r);
        return DG_STATUS_ERR_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        dg_log_error("%s: cannot read: %s", path,
                S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
        dg_tensor_reader_close(r);
        return DG_STATUS_ERR_IO;
    }
    const uint64_t size = (uint64_t)st.st_size;
    dg_status s = DG_STATUS_OK;
    uint8_t len8[8];
    uint64_t hlen = 0;
    int err = 0;
    if (size < 8) {
        dg_log_error("%s: file is %" PRIu64 " bytes, shorter than the 8-byte header length "
                "(empty or truncated)", path, size);
        s = DG_STATUS_ERR_FORMAT;
    } else if ((err = pread_full(r->fd, len8, 8, 0)) != 0) {
        dg_log_error("%s: cannot read the header length: %s", path,
                err < 0 ? "file ended early" : strerror(err));
        s = DG_STATUS_ERR_IO;
    } else if ((hlen = get_le64(len8)) == 0 || hlen > DG_ST_MAX_HEADER) {
        dg_log_error("%s: header length %" PRIu64 " is not in [1, %" PRIu64 "]: not a "
                "safetensors file", path, hlen, DG_ST_MAX_HEADER);
        s = DG_STATUS_ERR_FORMAT;
    } else if (hlen > size - 8) {
        dg_log_error("%s: header length %" PRIu64 " exceeds the %" PRIu64 " bytes after the "
                "length field (file truncated?)", path, hlen, size - 8);
        s = DG_STATUS_ERR_FORMAT;
    }
    if (s == DG_STATUS_OK) {
        char *hdr = dg_xmalloc((size_t)hlen + 1);
        if ((err = pread_full(r->fd, hdr, (size_t)hlen, 8)) != 0) {
            dg_log_error("%s: cannot read the header: %s", path,
                    err < 0 ? "file ended early" : strerror(err));
            s = DG_STATUS_ERR_IO;
        } else {
            hdr[hlen] = '\0';
            r->data_start = 8 + hlen;
            r->data_len = size - 8 - hlen;
            s = parse_header(r, hdr, (size_t)hlen);
        }
        dg_free(hdr);
    }
    if (s != DG_STATUS_OK) dg_tensor_reader_close(r);
    return s;
}

void dg_tensor_reader_close(dg_tensor_reader *r) {
    if (r->is_open) close(r->fd);
    for (size_t i = 0; i < r->n_tensors; i++) {
        dg_free(r->tensors[i].name);
        dg_free(r->tensors[i].shape);
    }
    dg_free(r->tensors);
    dg_free(r->by_name);
    for (size_t i = 0; i < r->n_meta; i++) {
        dg_free(r->meta_keys[i]);
        dg_free(r->meta_values[i]);
    }
    dg_free(r->meta_keys);
    dg_free(r->meta_values);
    dg_free(r->path);
    memset(r, 0, sizeof(*r));
    r->fd = -1;
}

size_t dg_tensor_reader_count(const dg_tensor_reader *r) { return r->n_tensors; }

const dg_st_tensor *dg_tensor_reader_at(const dg_tensor_reader *r, size_t i) {
    DG_ASSERT(i < r->n_tensors);
    return &r->tensors[i];
}

const dg_st_tensor *dg_tensor_reader_find(const dg_tensor_reader *r, const char *name) {
    size_t lo = 0, hi = r->n_tensors;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const int c = strcmp(r->by_name[mid]->name, name);
        if (c == 0) return r->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *dg_tensor_reader_metadata(const dg_tensor_reader *r, const char *key) {
    for (size_t i = 0; i < r->n_meta; i++)
        if (!strcmp(r->meta_keys[i], key)) return r->meta_values[i];
    return NULL;
}

/* n bytes of t's data starting `skip` bytes into it. */
static dg_status read_bytes(const dg_tensor_reader *r, const dg_st_tensor *t, void *dst,
        uint64_t skip, size_t n) {
    const int err = pread_full(r->fd, dst, n, r->data_start + t->begin + skip);
    if (err == 0) return DG_STATUS_OK;
    char nb[DG_ST_PRINTABLE];
    dg_log_error("%s: tensor '%s': cannot read its data: %s", r->path,
            dg_st_printable(nb, sizeof(nb), t->name),
            err < 0 ? "file ended early (changed since it was opened?)" : strerror(err));
    return DG_STATUS_ERR_IO;
}

dg_status dg_tensor_reader_read_raw(const dg_tensor_reader *r, const dg_st_tensor *t, void *dst) {
    DG_ASSERT(r->is_open && t != NULL);
    const uint64_t n = t->end - t->begin;
    if (n == 0) return DG_STATUS_OK;
    DG_ASSERT(dst != NULL);
    return read_bytes(r, t, dst, 0, (size_t)n);
}

dg_status dg_tensor_reader_read_as_f32(const dg_tensor_reader *r, const dg_st_tensor *t,
        float *dst) {
    DG_ASSERT(r->is_open && t != NULL);
    if (t->dtype == DG_ST_F32) return dg_tensor_reader_read_raw(r, t, dst);
    if (!dg_st_dtype_is_f32_convertible(t->dtype)) {
        char nb[DG_ST_PRINTABLE];
        dg_log_error("%s: tensor '%s': dtype %s cannot be read as f32 (F32, F16, BF16 and F64 "
                "can)", r->path, dg_st_printable(nb, sizeof(nb), t->name), dtypes[t->dtype].name);
        return DG_STATUS_ERR_SHAPE;
    }
    const size_t es = dtypes[t->dtype].size;
    uint8_t *buf = dg_xmalloc(CONVERT_CHUNK * es);
    dg_status s = DG_STATUS_OK;
    for (uint64_t i = 0; i < t->numel && s == DG_STATUS_OK; i += CONVERT_CHUNK) {
        const size_t k = (size_t)DG_MIN((uint64_t)CONVERT_CHUNK, t->numel - i);
        s = read_bytes(r, t, buf, i * es, k * es);
        if (s == DG_STATUS_OK) convert_to_f32(buf, t->dtype, dst + i, k);
    }
    dg_free(buf);
    return s;
}

/* The tensor `name` with exactly the given shape, or a logged error. */
static dg_status find_checked(const dg_tensor_reader *r, const char *name, int ndims,
        const int64_t *shape, const dg_st_tensor **out) {
    DG_ASSERT(r->is_open && ndims >= 0 && (ndims == 0 || shape != NULL));
    const dg_st_tensor *t = dg_tensor_reader_find(r, name);
    if (!t) {
        dg_log_error("%s: tensor '%s' is missing", r->path, name);
        return DG_STATUS_ERR_MISSING;
    }
    bool same = t->ndims == ndims;
    for (int i = 0; same && i < ndims; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char got[256], want[256];
        dg_log_error("%s: tensor '%s': shape %s in the file, expected %s", r->path, name,
                dg_st_format_shape(got, sizeof(got), t->ndims, t->shape),
                dg_st_format_shape(want, sizeof(want), ndims, shape));
        return DG_STATUS_ERR_SHAPE;
    }
    *out = t;
    return DG_STATUS_OK;
}

dg_status dg_tensor_reader_read_f32(const dg_tensor_reader *r, const char *name, int ndims,
        const int64_t *shape, float *dst) {
    const dg_st_tensor *t = NULL;
    dg_status s = find_checked(r, name, ndims, shape, &t);
    return s != DG_STATUS_OK ? s : dg_tensor_reader_read_as_f32(r, t, dst);
}

static dg_status read_exact_dtype(const dg_tensor_reader *r, const char *name, int ndims,
        const int64_t *shape, dg_st_dtype want, void *dst) {
    const dg_st_tensor *t = NULL;
    dg_status s = find_checked(r, name, ndims, shape, &t);
    if (s != DG_STATUS_OK) return s;
    if (t->dtype != want) {
        dg_log_error("%s: tensor '%s': dtype %s, expected %s", r->path, name,
                dtypes[t->dtype].name, dtypes[want].name);
        return DG_STATUS_ERR_SHAPE;
    }
    return dg_tensor_reader_read_raw(r, t, dst);
}

dg_status dg_tensor_reader_read_i64(const dg_tensor_reader *r, const char *name, int ndims,
        const int64_t *shape, int64_t *dst) {
    return read_exact_dtype(r, name, ndims, shape, DG_ST_I64, dst);
}

dg_status dg_tensor_reader_read_u64(const dg_tensor_reader *r, const char *name, int ndims,
        const int64_t *shape, uint64_t *dst) {
    return read_exact_dtype(r, name, ndims, shape, DG_ST_U64, dst);
}

/* ---- writer ------------------------------------------------------------- */

void dg_tensor_writer_init(dg_tensor_writer *w) { memset(w, 0, sizeof(*w)); }

void dg_tensor_writer_free(dg_tensor_writer *w) {
    for (size_t i = 0; i < w->n_entries; i++) {
        dg_free(w->entries[i].name);
        dg_free(w->entries[i].shape);
        dg_free(w->entries[i].copy);
    }
    dg_free(w->entries);
    for (size_t i = 0; i < w->n_meta; i++) {
        dg_free(w->meta_keys[i]);
        dg_free(w->meta_values[i]);
    }
    dg_free(w->meta_keys);
    dg_free(w->meta_values);
    memset(w, 0, sizeof(*w));
}

void dg_tensor_writer_add(dg_tensor_writer *w, const char *name, dg_st_dtype dtype, int ndims,
        const int64_t *shape, const void *data) {
    DG_ASSERT(name != NULL && name[0] != '\0' && strcmp(name, "__metadata__") != 0);
    DG_ASSERT((unsigned)dtype < DG_ST_DTYPE_COUNT);
    DG_ASSERT(ndims >= 0 && (ndims == 0 || shape != NULL));
    for (size_t i = 0; i < w->n_entries; i++) DG_ASSERT(strcmp(w->entries[i].name, name) != 0);
    uint64_t numel = 1;
    for (int i = 0; i < ndims; i++) {
        DG_ASSERT(shape[i] >= 0);
        DG_ASSERT(shape[i] == 0 || numel <= UINT64_MAX / (uint64_t)shape[i]);
        numel *= (uint64_t)shape[i];
    }
    DG_ASSERT(numel <= UINT64_MAX / dtypes[dtype].size);
    DG_ASSERT(data != NULL || numel == 0);
    if (w->n_entries == w->cap_entries) {
        w->cap_entries = w->cap_entries ? 2 * w->cap_entries : 64;
        w->entries = dg_xrealloc(w->entries, w->cap_entries * sizeof(*w->entries));
    }
    dg_st_entry *e = &w->entries[w->n_entries++];
    memset(e, 0, sizeof(*e));
    e->name = dg_xstrdup(name);
    e->dtype = dtype;
    e->ndims = ndims;
    if (ndims) {
        e->shape = dg_xmalloc((size_t)ndims * sizeof(*e->shape));
        memcpy(e->shape, shape, (size_t)ndims * sizeof(*e->shape));
    }
    e->nbytes = numel * dtypes[dtype].size;
    e->data = data;
}

void dg_tensor_writer_add_f32(dg_tensor_writer *w, const char *name, int ndims,
        const int64_t *shape, const float *data) {
    dg_tensor_writer_add(w, name, DG_ST_F32, ndims, shape, data);
}

void dg_tensor_writer_add_i64(dg_tensor_writer *w, const char *name, int ndims,
        const int64_t *shape, const int64_t *data) {
    dg_tensor_writer_add(w, name, DG_ST_I64, ndims, shape, data);
}

static void add_scalar_copy(dg_tensor_writer *w, const char *name, dg_st_dtype dt,
        const void *value) {
    void *copy = dg_xmalloc(8);
    memcpy(copy, value, 8);
    dg_tensor_writer_add(w, name, dt, 0, NULL, copy);
    w->entries[w->n_entries - 1].copy = copy;
}

void dg_tensor_writer_add_scalar_i64(dg_tensor_writer *w, const char *name, int64_t value) {
    add_scalar_copy(w, name, DG_ST_I64, &value);
}

void dg_tensor_writer_add_scalar_u64(dg_tensor_writer *w, const char *name, uint64_t value) {
    add_scalar_copy(w, name, DG_ST_U64, &value);
}

/* Length of the valid UTF-8 sequence at s (1 .. 4), or 0 when s does not
 * start one (the rules of first_bad_header_byte). */
static size_t utf8_len(const unsigned char *s) {
    const unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t k;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) k = 1, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) k = 2, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) k = 3, cp = c & 0x07, min = 0x10000;
    else return 0;
    for (size_t j = 1; j <= k; j++) {
        if ((s[j] & 0xc0) != 0x80) return 0; /* the NUL terminator stops it too */
        cp = (cp << 6) | (s[j] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return k + 1;
}

/* s with every byte that does not belong to valid UTF-8 written as the
 * four characters "\xHH" (a path in Latin-1, say): the header stays valid
 * JSON text that the reader accepts. NULL when s is valid UTF-8 already. */
static char *utf8_escaped(const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    size_t bad = 0, n = strlen(s);
    for (size_t i = 0, k; i < n; i += k ? k : 1)
        if (!(k = utf8_len(u + i))) bad++;
    if (!bad) return NULL;
    char *out = dg_xmalloc(n + 3 * bad + 1), *o = out;
    for (size_t i = 0, k; i < n; i += k ? k : 1) {
        if ((k = utf8_len(u + i))) {
            memcpy(o, s + i, k);
            o += k;
        } else {
            o += sprintf(o, "\\x%02x", u[i]);
        }
    }
    *o = '\0';
    return out;
}

void dg_tensor_writer_set_metadata(dg_tensor_writer *w, const char *key, const char *value) {
    DG_ASSERT(key != NULL && value != NULL);
    char *ek = utf8_escaped(key), *ev = utf8_escaped(value);
    if (ek || ev) {
        static atomic_bool warned; /* once per process: every checkpoint has the config */
        if (!atomic_exchange(&warned, true))
            dg_log_warn("safetensors metadata '%s': bytes that are not UTF-8 are stored as \\xHH "
                        "(the file must be JSON text)", ek ? ek : key);
        dg_tensor_writer_set_metadata(w, ek ? ek : key, ev ? ev : value);
        dg_free(ek);
        dg_free(ev);
        return;
    }
    for (size_t i = 0; i < w->n_meta; i++) {
        if (!strcmp(w->meta_keys[i], key)) {
            dg_free(w->meta_values[i]);
            w->meta_values[i] = dg_xstrdup(value);
            return;
        }
    }
    if (w->n_meta == w->cap_meta) {
        w->cap_meta = w->cap_meta ? 2 * w->cap_meta : 16;
        w->meta_keys = dg_xrealloc(w->meta_keys, w->cap_meta * sizeof(*w->meta_keys));
        w->meta_values = dg_xrealloc(w->meta_values, w->cap_meta * sizeof(*w->meta_values));
    }
    w->meta_keys[w->n_meta] = dg_xstrdup(key);
    w->meta_values[w->n_meta] = dg_xstrdup(value);
    w->n_meta++;
}

/* An exact unsigned integer: cJSON's own number printing goes via double. */
static void add_uint(cJSON *arr, uint64_t v) {
    char b[24];
    snprintf(b, sizeof(b), "%" PRIu64, v);
    cJSON *x = cJSON_CreateRaw(b);
    DG_ASSERT(x != NULL);
    DG_ASSERT(cJSON_AddItemToArray(arr, x));
}

/* The JSON header padded with spaces to a multiple of 8 bytes. */
static char *build_header(const dg_tensor_writer *w, size_t *len) {
    cJSON *root = cJSON_CreateObject();
    DG_ASSERT(root != NULL);
    if (w->n_meta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        DG_ASSERT(m != NULL);
        for (size_t i = 0; i < w->n_meta; i++)
            DG_ASSERT(cJSON_AddStringToObject(m, w->meta_keys[i], w->meta_values[i]) != NULL);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_entries; i++) {
        const dg_st_entry *e = &w->entries[i];
        cJSON *o = cJSON_AddObjectToObject(root, e->name);
        DG_ASSERT(o != NULL);
        DG_ASSERT(cJSON_AddStringToObject(o, "dtype", dtypes[e->dtype].name) != NULL);
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        DG_ASSERT(sh != NULL);
        for (int d = 0; d < e->ndims; d++) add_uint(sh, (uint64_t)e->shape[d]);
        cJSON *of = cJSON_AddArrayToObject(o, "data_offsets");
        DG_ASSERT(of != NULL);
        add_uint(of, off);
        add_uint(of, off + e->nbytes);
        off += e->nbytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    DG_ASSERT(json != NULL);
    const size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    char *hdr = dg_xmalloc(padded);
    memcpy(hdr, json, n);
    memset(hdr + n, ' ', padded - n);
    cJSON_free(json);
    cJSON_Delete(root);
    *len = padded;
    return hdr;
}

dg_status dg_tensor_writer_write(const dg_tensor_writer *w, const char *path) {
    size_t hlen;
    char *hdr = build_header(w, &hlen);
    uint8_t len8[8];
    put_le64(len8, hlen);
    dg_file_part *parts = dg_xmalloc((w->n_entries + 2) * sizeof(*parts));
    parts[0] = (dg_file_part){len8, 8};
    parts[1] = (dg_file_part){hdr, hlen};
    for (size_t i = 0; i < w->n_entries; i++)
        parts[i + 2] = (dg_file_part){w->entries[i].data, (size_t)w->entries[i].nbytes};
    dg_status st = dg_file_write_atomic(path, parts, (int)(w->n_entries + 2));
    dg_free(parts);
    dg_free(hdr);
    return st;
}
