/* data/npy.c -- NumPy .npy float32 writer and reader (see npy.h).
 *
 * The writer follows numpy/lib/format.py `_write_array_header` exactly: the
 * dict keys in sorted order, the shape as Python's repr of a tuple, then
 * GROWTH_AXIS_MAX_DIGITS (21) minus the digits of shape[0] spaces of spare
 * room (numpy >= 1.22), then `_wrap_header`: padlen = 64 - (10 + hlen) % 64
 * spaces, hlen counting the final '\n' (so padlen is 64, not 0, when the
 * unpadded header already ends on a boundary). */
#define _POSIX_C_SOURCE 200809L
#include "data/npy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "data/png_io.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c stores host floats as '<f4': a little-endian host is required"
#endif

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64
#define NPY_GROWTH_AXIS_MAX_DIGITS 21

dg_status dg_npy_write_f32(const char *path, int ndims, const int64_t *shape,
        const float *data) {
    DG_ASSERT(ndims >= 0 && ndims <= DG_NPY_MAX_DIMS && (shape || ndims == 0));
    int64_t numel = 1;
    for (int i = 0; i < ndims; i++) {
        DG_ASSERT(shape[i] >= 0);
        DG_ASSERT(shape[i] == 0 || numel <= INT64_MAX / 4 / shape[i]);
        numel *= shape[i];
    }
    DG_ASSERT(data || numel == 0);

    /* 10 bytes of prefix, the dict (< 60 + 22 per dimension), 20 spare and
     * up to 64 padding bytes. */
    char hdr[10 + 64 + 22 * DG_NPY_MAX_DIMS + NPY_GROWTH_AXIS_MAX_DIGITS + NPY_ALIGN + 1];
    const size_t cap = sizeof(hdr);
    size_t n = 10;
    n += (size_t)snprintf(hdr + n, cap - n,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < ndims; i++)
        n += (size_t)snprintf(hdr + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    n += (size_t)snprintf(hdr + n, cap - n, "%s), }", ndims == 1 ? "," : "");
    if (ndims > 0) {
        const int digits = snprintf(NULL, 0, "%lld", (long long)shape[0]);
        for (int k = digits; k < NPY_GROWTH_AXIS_MAX_DIGITS; k++) hdr[n++] = ' ';
    }
    const size_t pad = NPY_ALIGN - (n + 1) % NPY_ALIGN;
    memset(hdr + n, ' ', pad);
    n += pad;
    hdr[n++] = '\n';
    DG_ASSERT(n <= cap && n % NPY_ALIGN == 0 && n - 10 <= 0xffff);

    memcpy(hdr, NPY_MAGIC, NPY_MAGIC_LEN);
    hdr[6] = 1;
    hdr[7] = 0;
    hdr[8] = (char)((n - 10) & 0xff);
    hdr[9] = (char)((n - 10) >> 8);
    const dg_file_part parts[2] = {{hdr, n}, {data, (size_t)numel * sizeof(float)}};
    return dg_file_write_atomic(path, parts, 2);
}

/* ---- reading ------------------------------------------------------------- */

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    return p;
}

/* A Python string literal in single or double quotes (no escapes) into
 * buf; returns the position after it or NULL. */
static const char *parse_str(const char *p, char *buf, size_t size) {
    const char q = *p;
    if (q != '\'' && q != '"') return NULL;
    p++;
    size_t n = 0;
    for (; *p && *p != q; p++) {
        if (*p == '\\' || n + 1 >= size) return NULL;
        buf[n++] = *p;
    }
    if (*p != q) return NULL;
    buf[n] = '\0';
    return p + 1;
}

/* A shape tuple: "()", "(n,)", "(a, b, ...)" with an optional trailing
 * comma (required for one element, as in Python); integers may carry
 * Python 2's "L" suffix. Returns the position after ')' or NULL with err. */
static const char *parse_shape(const char *p, dg_npy *out, char *err, size_t err_size) {
    if (*p != '(') {
        snprintf(err, err_size, "'shape' is not a tuple");
        return NULL;
    }
    p = skip_ws(p + 1);
    bool comma_after_last = false;
    while (*p != ')') {
        if (*p < '0' || *p > '9') {
            snprintf(err, err_size, "'shape' holds something other than non-negative integers");
            return NULL;
        }
        if (out->ndims == DG_NPY_MAX_DIMS) {
            snprintf(err, err_size, "more than %d dimensions", DG_NPY_MAX_DIMS);
            return NULL;
        }
        int64_t v = 0;
        for (; *p >= '0' && *p <= '9'; p++) {
            const int d = *p - '0';
            if (v > (INT64_MAX - d) / 10) {
                snprintf(err, err_size, "dimension %d is too large", out->ndims);
                return NULL;
            }
            v = v * 10 + d;
        }
        if (*p == 'L') p++;
        out->shape[out->ndims++] = v;
        p = skip_ws(p);
        comma_after_last = *p == ',';
        if (*p == ',') p = skip_ws(p + 1);
        else if (*p != ')') {
            snprintf(err, err_size, "malformed 'shape' tuple");
            return NULL;
        }
    }
    if (out->ndims == 1 && !comma_after_last) {
        snprintf(err, err_size, "'shape' is a parenthesised integer, not a tuple");
        return NULL;
    }
    return p + 1;
}

/* Parses the header dict into out (ndims, shape); NULL on success, else
 * err holds the reason. */
static const char *parse_header(const char *p, dg_npy *out, char *err, size_t err_size) {
    bool seen_descr = false, seen_order = false, seen_shape = false;
    p = skip_ws(p);
    if (*p != '{') {
        snprintf(err, err_size, "header is not a dict");
        return err;
    }
    p = skip_ws(p + 1);
    while (*p != '}') {
        char key[32], val[32];
        p = parse_str(p, key, sizeof(key));
        if (!p) {
            snprintf(err, err_size, "malformed header: a key is not a short string");
            return err;
        }
        p = skip_ws(p);
        if (*p != ':') {
            snprintf(err, err_size, "malformed header: no ':' after '%s'", key);
            return err;
        }
        p = skip_ws(p + 1);
        if (!strcmp(key, "descr") && !seen_descr) {
            seen_descr = true;
            p = parse_str(p, val, sizeof(val));
            if (!p) {
                snprintf(err, err_size, "'descr' is not a simple dtype string");
                return err;
            }
            if (strcmp(val, "<f4") != 0) {
                snprintf(err, err_size, "dtype '%s' is not little-endian float32 ('<f4')", val);
                return err;
            }
        } else if (!strcmp(key, "fortran_order") && !seen_order) {
            seen_order = true;
            if (!strncmp(p, "False", 5)) {
                p += 5;
            } else if (!strncmp(p, "True", 4)) {
                snprintf(err, err_size, "Fortran-order arrays are not supported");
                return err;
            } else {
                snprintf(err, err_size, "'fortran_order' is not True or False");
                return err;
            }
        } else if (!strcmp(key, "shape") && !seen_shape) {
            seen_shape = true;
            p = parse_shape(p, out, err, err_size);
            if (!p) return err;
        } else {
            snprintf(err, err_size, "unexpected or repeated key '%s' in the header", key);
            return err;
        }
        p = skip_ws(p);
        if (*p == ',') p = skip_ws(p + 1);
        else if (*p != '}') {
            snprintf(err, err_size, "malformed header: expected ',' or '}' after '%s'", key);
            return err;
        }
    }
    if (!seen_descr || !seen_order || !seen_shape) {
        snprintf(err, err_size, "header lacks '%s'",
                !seen_descr ? "descr" : !seen_order ? "fortran_order" : "shape");
        return err;
    }
    p = skip_ws(p + 1);
    if (*p != '\0') {
        snprintf(err, err_size, "unexpected text after the header dict");
        return err;
    }
    return NULL;
}

/* Logs "PATH: bad .npy file: WHAT" (WHAT formatted from fmt, at most 159
 * bytes) and returns DG_STATUS_ERR_FORMAT. */
static dg_status bad_npy(const char *path, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static dg_status bad_npy(const char *path, const char *fmt, ...) {
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    dg_log_error("%s: bad .npy file: %s", path, what);
    return DG_STATUS_ERR_FORMAT;
}

dg_status dg_npy_read_f32(const char *path, dg_npy *out) {
    memset(out, 0, sizeof(*out));
    char err[160];
    char *hdr = NULL;
    dg_status st = DG_STATUS_OK;
    FILE *f = fopen(path, "rb");
    if (!f) {
        dg_log_error("%s: cannot open: %s", path, strerror(errno));
        return DG_STATUS_ERR_IO;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        dg_log_error("%s: cannot stat: %s", path, strerror(errno));
        st = DG_STATUS_ERR_IO;
        goto done;
    }
    const int64_t size = (int64_t)sb.st_size;
    uint8_t pre[12];
    if (size < 10 || fread(pre, 1, 10, f) != 10) {
        st = bad_npy(path, "too short for a .npy header (%lld bytes)", (long long)size);
        goto done;
    }
    if (memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
        st = bad_npy(path, "not a .npy file (no \\x93NUMPY magic)");
        goto done;
    }
    if (pre[6] < 1 || pre[6] > 3 || pre[7] != 0) {
        st = bad_npy(path, "unsupported .npy format version %d.%d", pre[6], pre[7]);
        goto done;
    }
    int64_t prefix = 10, hlen = pre[8] | (pre[9] << 8);
    if (pre[6] >= 2) {
        if (fread(pre + 10, 1, 2, f) != 2) {
            st = bad_npy(path, "file ends inside the header length");
            goto done;
        }
        prefix = 12;
        hlen = (int64_t)pre[8] | ((int64_t)pre[9] << 8) | ((int64_t)pre[10] << 16) |
                ((int64_t)pre[11] << 24);
    }
    if (prefix + hlen > size) {
        st = bad_npy(path, "header of %lld bytes runs past the end of the file "
                "(%lld bytes; truncated?)", (long long)hlen, (long long)size);
        goto done;
    }
    hdr = dg_xmalloc((size_t)hlen + 1);
    if (fread(hdr, 1, (size_t)hlen, f) != (size_t)hlen) {
        dg_log_error("%s: cannot read the .npy header: %s", path, strerror(errno ? errno : EIO));
        st = DG_STATUS_ERR_IO;
        goto done;
    }
    hdr[hlen] = '\0';
    if (memchr(hdr, '\0', (size_t)hlen)) {
        st = bad_npy(path, "header contains a NUL byte");
        goto done;
    }
    if (parse_header(hdr, out, err, sizeof(err))) {
        st = bad_npy(path, "%s", err);
        goto done;
    }

    out->numel = 1;
    for (int i = 0; i < out->ndims; i++) {
        if (out->shape[i] != 0 && out->numel > INT64_MAX / 4 / out->shape[i]) {
            st = bad_npy(path, "shape holds more elements than can be addressed");
            goto done;
        }
        out->numel *= out->shape[i];
    }
    out->header_len = (int)(prefix + hlen);
    const int64_t data_bytes = size - prefix - hlen;
    if (data_bytes != out->numel * 4) {
        st = bad_npy(path, "%lld data bytes after the header, but shape needs %lld (%s)",
                (long long)data_bytes, (long long)(out->numel * 4),
                data_bytes < out->numel * 4 ? "truncated" : "trailing bytes");
        goto done;
    }
    out->data = dg_xmalloc((size_t)out->numel * sizeof(float));
    if (fread(out->data, sizeof(float), (size_t)out->numel, f) != (size_t)out->numel) {
        dg_log_error("%s: cannot read the .npy data: %s", path, strerror(errno ? errno : EIO));
        st = DG_STATUS_ERR_IO;
        goto done;
    }

done:
    fclose(f);
    dg_free(hdr);
    if (st != DG_STATUS_OK) dg_npy_free(out);
    return st;
}

void dg_npy_free(dg_npy *a) {
    dg_free(a->data);
    memset(a, 0, sizeof(*a));
}
