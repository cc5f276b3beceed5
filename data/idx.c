/* data/idx.c -- IDX reader through zlib and a self-contained MD5 (see idx.h).
 *
 * MD5 follows RFC 1321: 64-byte blocks, four rounds of 16 steps, the sine
 * table K[i] = floor(|sin(i + 1)| * 2^32), little-endian length padding. */
#include "data/idx.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

/* Largest file accepted (guards the size arithmetic). */
#define IDX_MAX_NUMEL (INT64_C(1) << 36)
/* Bytes per gzread call (its length argument is an unsigned int). */
#define IDX_CHUNK (1u << 28)
#define IDX_GROW (1u << 20) /* the data buffer grows by reads of this many bytes */

/* Reads up to n bytes into buf; returns the count read, or -1 on an error
 * reported by zlib. */
static int64_t read_full(gzFile f, uint8_t *buf, int64_t n) {
    int64_t got = 0;
    while (got < n) {
        const int64_t want = DG_MIN(n - got, (int64_t)IDX_CHUNK);
        const int r = gzread(f, buf + got, (unsigned)want);
        if (r < 0) return -1;
        if (r == 0) break;
        got += r;
    }
    return got;
}

/* Logs the error zlib holds for f (or "truncated" when none) and returns
 * the matching status. */
static dg_status report_gz(gzFile f, const char *path, const char *what) {
    int err = Z_OK;
    const char *msg = gzerror(f, &err);
    if (err == Z_ERRNO) {
        dg_log_error("%s: read error in %s: %s", path, what, strerror(errno));
        return DG_STATUS_ERR_IO;
    }
    if (err == Z_OK) {
        dg_log_error("%s: truncated file (%s)", path, what);
    } else {
        dg_log_error("%s: corrupt or truncated file in %s: %s", path, what, msg);
    }
    return DG_STATUS_ERR_FORMAT;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

dg_status dg_idx_read(const char *path, dg_idx *out) {
    memset(out, 0, sizeof(*out));
    if (dg_check_regular_file(path, "IDX") != DG_STATUS_OK) return DG_STATUS_ERR_IO;
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) {
        dg_log_error("%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        return DG_STATUS_ERR_IO;
    }
    gzbuffer(f, 1u << 17);
    dg_status st = DG_STATUS_OK;
    uint8_t hdr[4 + 4 * DG_IDX_MAX_DIMS];
    int64_t got = read_full(f, hdr, 4);
    if (got != 4) {
        st = got < 0 ? report_gz(f, path, "the magic number") : DG_STATUS_ERR_FORMAT;
        if (got >= 0) dg_log_error("%s: truncated file: %lld of 4 magic bytes", path, (long long)got);
        goto done;
    }
    const uint32_t magic = be32(hdr);
    const int ndims = hdr[3];
    if (hdr[0] != 0 || hdr[1] != 0 || hdr[2] != DG_IDX_TYPE_U8 || ndims < 1
            || ndims > DG_IDX_MAX_DIMS) {
        dg_log_error("%s: not an IDX file of unsigned bytes (magic 0x%08x; want 0x000008nn, "
                     "1 <= nn <= %d)",
                path, magic, DG_IDX_MAX_DIMS);
        st = DG_STATUS_ERR_FORMAT;
        goto done;
    }
    const int64_t hdr_len = 4 + 4 * (int64_t)ndims;
    got = read_full(f, hdr + 4, hdr_len - 4);
    if (got != hdr_len - 4) {
        st = got < 0 ? report_gz(f, path, "the header") : DG_STATUS_ERR_FORMAT;
        if (got >= 0) dg_log_error("%s: truncated header: %lld of %lld dimension bytes", path,
                (long long)got, (long long)(hdr_len - 4));
        goto done;
    }
    int64_t numel = 1;
    for (int i = 0; i < ndims; i++) {
        out->dims[i] = be32(hdr + 4 + 4 * i);
        if (out->dims[i] != 0 && numel > IDX_MAX_NUMEL / out->dims[i]) {
            dg_log_error("%s: dimensions too large", path);
            st = DG_STATUS_ERR_FORMAT;
            goto done;
        }
        numel *= out->dims[i];
    }
    /* The buffer grows with the data actually read, so a header that
     * promises more than the file holds costs nothing (it used to allocate
     * the promise up front: 25 GB for a 34-byte file). */
    size_t cap = (size_t)(hdr_len + DG_MIN(numel, (int64_t)IDX_GROW) + 1);
    out->bytes = dg_xmalloc(cap);
    memcpy(out->bytes, hdr, (size_t)hdr_len);
    got = 0;
    while (got < numel) {
        const int64_t want = DG_MIN(numel - got, (int64_t)IDX_GROW);
        if ((size_t)(hdr_len + got + want + 1) > cap) {
            cap = (size_t)DG_MIN((int64_t)cap * 2, hdr_len + numel + 1);
            out->bytes = dg_xrealloc(out->bytes, cap);
        }
        const int64_t r = read_full(f, out->bytes + hdr_len + got, want);
        if (r < 0) {
            got = -1;
            break;
        }
        got += r;
        if (r < want) break;
    }
    if (got != numel) {
        st = got < 0 ? report_gz(f, path, "the data") : DG_STATUS_ERR_FORMAT;
        if (got >= 0) dg_log_error("%s: truncated file: %lld of %lld data bytes", path,
                (long long)got, (long long)numel);
        goto done;
    }
    /* One more byte must hit a clean end of the (gzip) stream. */
    got = read_full(f, out->bytes + hdr_len + numel, 1);
    int zerr = Z_OK;
    gzerror(f, &zerr);
    if (got == 0 && zerr != Z_OK) got = -1; /* e.g. a cut gzip trailer */
    if (got != 0) {
        st = got < 0 ? report_gz(f, path, "the end of the data") : DG_STATUS_ERR_FORMAT;
        if (got > 0) dg_log_error("%s: trailing bytes after %lld data bytes", path,
                (long long)numel);
        goto done;
    }
    const int zclose = gzclose(f);
    f = NULL;
    if (zclose != Z_OK) {
        dg_log_error("%s: error closing the file", path);
        st = DG_STATUS_ERR_IO;
        goto done;
    }
    out->magic = magic;
    out->ndims = ndims;
    out->numel = numel;
    out->file_bytes = hdr_len + numel;
    out->data = out->bytes + hdr_len;
    dg_idx_md5(out->bytes, (size_t)out->file_bytes, out->md5);

done:
    if (f) gzclose(f);
    if (st != DG_STATUS_OK) dg_idx_free(out);
    return st;
}

void dg_idx_free(dg_idx *a) {
    dg_free(a->bytes);
    memset(a, 0, sizeof(*a));
}

/* ---- MD5 ------------------------------------------------------------------ */

static uint32_t rotl32(uint32_t x, int s) { return x << s | x >> (32 - s); }

static void md5_block(uint32_t h[4], const uint8_t *p, const uint32_t k[64]) {
    static const int shift[4][4] = {{7, 12, 17, 22}, {5, 9, 14, 20}, {4, 11, 16, 23},
            {6, 10, 15, 21}};
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16
                | (uint32_t)p[4 * i + 3] << 24;
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    for (int i = 0; i < 64; i++) {
        uint32_t fv;
        int g;
        if (i < 16) {
            fv = (b & c) | (~b & d);
            g = i;
        } else if (i < 32) {
            fv = (d & b) | (~d & c);
            g = (5 * i + 1) % 16;
        } else if (i < 48) {
            fv = b ^ c ^ d;
            g = (3 * i + 5) % 16;
        } else {
            fv = c ^ (b | ~d);
            g = (7 * i) % 16;
        }
        const uint32_t t = d;
        d = c;
        c = b;
        b = b + rotl32(a + fv + k[i] + m[g], shift[i / 16][i % 4]);
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
}

void dg_idx_md5(const void *data, size_t n, uint8_t digest[16]) {
    uint32_t k[64];
    for (int i = 0; i < 64; i++) k[i] = (uint32_t)(fabs(sin((double)(i + 1))) * 4294967296.0);
    uint32_t h[4] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u};
    const uint8_t *p = data;
    size_t left = n;
    for (; left >= 64; left -= 64, p += 64) md5_block(h, p, k);
    uint8_t tail[128] = {0};
    memcpy(tail, p, left);
    tail[left] = 0x80;
    const size_t tail_len = left < 56 ? 64 : 128;
    const uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++) tail[tail_len - 8 + i] = (uint8_t)(bits >> (8 * i));
    md5_block(h, tail, k);
    if (tail_len == 128) md5_block(h, tail + 64, k);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) digest[4 * i + j] = (uint8_t)(h[i] >> (8 * j));
}

void dg_idx_md5_hex(const uint8_t digest[16], char hex[33]) {
    for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
}
