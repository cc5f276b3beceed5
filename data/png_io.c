/* data/png_io.c -- label PNG reading and PNG writing with libpng 1.6 (see
 * png_io.h), plus the atomic file write shared by data/'s writers.
 *
 * libpng reports errors by calling an error function that must not return;
 * ours records the message and longjmps back to the setjmp in the decoding
 * or encoding function. Everything that changes after setjmp lives in a
 * heap-allocated context (or in the caller's struct), never in automatic
 * variables of the function that called setjmp, so nothing is clobbered.
 * Input is read through our own callback, so a short read is reported as a
 * truncated file rather than a generic "Read Error".
 *
 * Shape letters: H, W (pixels), C (samples per pixel). */
#define _POSIX_C_SOURCE 200809L
#include "data/png_io.h"


#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const uint8_t DG_CITYSCAPES_PALETTE[256][3] = {
    {128, 64, 128},  /* 0 road */
    {244, 35, 232},  /* 1 sidewalk */
    {70, 70, 70},    /* 2 building */
    {102, 102, 156}, /* 3 wall */
    {190, 153, 153}, /* 4 fence */
    {153, 153, 153}, /* 5 pole */
    {250, 170, 30},  /* 6 traffic light */
    {220, 220, 0},   /* 7 traffic sign */
    {107, 142, 35},  /* 8 vegetation */
    {152, 251, 152}, /* 9 terrain */
    {70, 130, 180},  /* 10 sky */
    {220, 20, 60},   /* 11 person */
    {255, 0, 0},     /* 12 rider */
    {0, 0, 142},     /* 13 car */
    {0, 0, 70},      /* 14 truck */
    {0, 60, 100},    /* 15 bus */
    {0, 80, 100},    /* 16 train */
    {0, 0, 230},     /* 17 motorcycle */
    {119, 11, 32},   /* 18 bicycle */
    /* 19 .. 255 (255 = ignore): black */
};

/* ---- reading ------------------------------------------------------------- */

/* State that changes while libpng runs (heap-allocated, see the header). */
int64_t dg_image_max_pixels(void) {
    static int64_t limit = 0; /* read once; a benign race writes the same value */
    if (limit == 0) {
        const char *e = getenv("DGSEG_MAX_IMAGE_PIXELS");
        char *end = NULL;
        const long long v = e ? strtoll(e, &end, 10) : 0;
        limit = e && *e && end && !*end && v > 0 ? v : INT64_C(100000000);
    }
    return limit;
}

typedef struct png_rd {
    const char *path; /* borrowed */
    FILE *f;
    char msg[256];    /* libpng's last error message */
    char warn[256];   /* its last warning (often the reason for the error) */
    bool truncated;   /* the file ended before libpng was done */
    int read_errno;   /* non-zero after a read error of the file system */
    png_bytep *rows;  /* (H) row pointers into the output samples */
} png_rd;

static void rd_error(png_structp png, png_const_charp msg) {
    png_rd *rd = png_get_error_ptr(png);
    snprintf(rd->msg, sizeof(rd->msg), "%s", msg);
    png_longjmp(png, 1);
}

static void rd_warning(png_structp png, png_const_charp msg) {
    png_rd *rd = png_get_error_ptr(png);
    snprintf(rd->warn, sizeof(rd->warn), "%s", msg);
    dg_log_debug("%s: libpng warning: %s", rd->path, msg);
}

static void rd_read(png_structp png, png_bytep dst, size_t n) {
    png_rd *rd = png_get_io_ptr(png);
    if (fread(dst, 1, n, rd->f) == n) return;
    if (ferror(rd->f)) {
        rd->read_errno = errno ? errno : EIO;
        png_error(png, "read error");
    }
    rd->truncated = true;
    png_error(png, "file ends early");
}

/* libpng part of a read: header (and the samples when `pixels`) into out.
 * png and info are not modified after setjmp; all other state is in rd
 * or out. Returns DG_STATUS_OK or the status of the logged failure. */
static dg_status png_decode(png_structp png, png_infop info, png_rd *rd, dg_label_png *out,
        bool pixels) {
    if (setjmp(png_jmpbuf(png))) {
        dg_label_png_free(out);
        if (rd->read_errno) {
            dg_log_error("%s: cannot read: %s", rd->path, strerror(rd->read_errno));
            return DG_STATUS_ERR_IO;
        }
        if (rd->truncated) {
            dg_log_error("%s: truncated PNG: the file ends before its IEND chunk", rd->path);
        } else {
            dg_log_error("%s: corrupt PNG: libpng: %s%s%s%s", rd->path, rd->msg,
                    rd->warn[0] ? " (after the warning: " : "", rd->warn, rd->warn[0] ? ")" : "");
        }
        return DG_STATUS_ERR_FORMAT;
    }
    png_set_read_fn(png, rd, rd_read);
    png_set_sig_bytes(png, 8);
    png_set_user_limits(png, DG_PNG_MAX_SIDE, DG_PNG_MAX_SIDE);
    png_read_info(png, info);

    png_uint_32 w32, h32;
    int depth, color_type, interlace;
    png_get_IHDR(png, info, &w32, &h32, &depth, &color_type, &interlace, NULL, NULL);
    if ((uint64_t)w32 * h32 > (uint64_t)dg_image_max_pixels()) {
        dg_log_error("%s: %ux%u pixels, above the decoded-image limit of %lld "
                     "(DGSEG_MAX_IMAGE_PIXELS)", rd->path, (unsigned)w32, (unsigned)h32,
                (long long)dg_image_max_pixels());
        return DG_STATUS_ERR_FORMAT;
    }
    out->h = (int)h32;
    out->w = (int)w32;
    out->channels = png_get_channels(png, info);
    out->file_bit_depth = depth;
    out->bit_depth = depth == 16 ? 16 : 8;
    out->paletted = color_type == PNG_COLOR_TYPE_PALETTE;
    if (out->paletted) {
        png_colorp plte = NULL;
        int n = 0;
        if (png_get_PLTE(png, info, &plte, &n) == PNG_INFO_PLTE) {
            out->n_palette = n;
            for (int i = 0; i < n && i < 256; i++) {
                out->palette[i][0] = plte[i].red;
                out->palette[i][1] = plte[i].green;
                out->palette[i][2] = plte[i].blue;
            }
        }
    }
    if (!pixels) return DG_STATUS_OK;

    if (depth < 8) png_set_packing(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    const size_t sample_bytes = depth == 16 ? 2 : 1;
    const size_t rowbytes = (size_t)out->w * (size_t)out->channels * sample_bytes;
    DG_ASSERT(png_get_rowbytes(png, info) == rowbytes);
    uint8_t *buf = dg_xmalloc((size_t)out->h * rowbytes);
    if (depth == 16) out->data16 = (uint16_t *)(void *)buf;
    else out->data8 = buf;
    rd->rows = dg_xmalloc((size_t)out->h * sizeof(*rd->rows));
    for (int y = 0; y < out->h; y++) rd->rows[y] = buf + (size_t)y * rowbytes;
    png_read_image(png, rd->rows);
    png_read_end(png, NULL);

    if (depth == 16) {
        /* libpng delivers big-endian samples; convert in place. */
        const size_t n = (size_t)out->h * (size_t)out->w * (size_t)out->channels;
        for (size_t i = 0; i < n; i++) {
            const uint16_t v = (uint16_t)((buf[2 * i] << 8) | buf[2 * i + 1]);
            out->data16[i] = v;
        }
    }
    return DG_STATUS_OK;
}

static dg_status png_read_file(const char *path, dg_label_png *out, bool pixels) {
    memset(out, 0, sizeof(*out));
    png_rd *rd = dg_xcalloc(1, sizeof(*rd));
    rd->path = path;
    dg_status st = DG_STATUS_OK;
    png_structp png = NULL;
    png_infop info = NULL;
    if (dg_check_regular_file(path, "PNG") != DG_STATUS_OK) {
        st = DG_STATUS_ERR_IO;
        goto done;
    }
    rd->f = fopen(path, "rb");
    if (!rd->f) {
        dg_log_error("%s: cannot open: %s", path, strerror(errno));
        st = DG_STATUS_ERR_IO;
        goto done;
    }
    uint8_t sig[8];
    const size_t n_sig = fread(sig, 1, sizeof(sig), rd->f);
    if (ferror(rd->f)) {
        dg_log_error("%s: cannot read: %s", path, strerror(errno ? errno : EIO));
        st = DG_STATUS_ERR_IO;
        goto done;
    }
    if (n_sig < sizeof(sig) || png_sig_cmp(sig, 0, sizeof(sig)) != 0) {
        dg_log_error("%s: not a PNG file (%s)", path,
                n_sig == 0 ? "empty file" : "no PNG signature");
        st = DG_STATUS_ERR_FORMAT;
        goto done;
    }
    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, rd, rd_error, rd_warning);
    DG_ASSERT(png != NULL);
    info = png_create_info_struct(png);
    DG_ASSERT(info != NULL);
    st = png_decode(png, info, rd, out, pixels);

done:
    if (png) png_destroy_read_struct(&png, &info, NULL);
    if (rd->f) fclose(rd->f);
    dg_free(rd->rows);
    dg_free(rd);
    return st;
}

dg_status dg_label_read_png(const char *path, dg_label_png *out) {
    return png_read_file(path, out, true);
}

dg_status dg_png_read_info(const char *path, dg_png_info *out) {
    dg_label_png l;
    memset(out, 0, sizeof(*out));
    const dg_status st = png_read_file(path, &l, false);
    if (st != DG_STATUS_OK) return st;
    out->h = l.h;
    out->w = l.w;
    out->channels = l.channels;
    out->file_bit_depth = l.file_bit_depth;
    out->paletted = l.paletted;
    return DG_STATUS_OK;
}

void dg_label_png_free(dg_label_png *l) {
    dg_free(l->data8);
    dg_free(l->data16);
    memset(l, 0, sizeof(*l));
}

/* ---- writing ------------------------------------------------------------- */

/* The encoded file grows in memory, then goes to disk atomically. */
typedef struct png_wr {
    const char *path; /* borrowed */
    char msg[256];
    uint8_t *buf;     /* (len) encoded bytes, capacity cap */
    size_t len;
    size_t cap;
    png_bytep *rows;  /* (H) row pointers into the caller's samples */
} png_wr;

static void wr_error(png_structp png, png_const_charp msg) {
    png_wr *wr = png_get_error_ptr(png);
    snprintf(wr->msg, sizeof(wr->msg), "%s", msg);
    png_longjmp(png, 1);
}

static void wr_warning(png_structp png, png_const_charp msg) {
    const png_wr *wr = png_get_error_ptr(png);
    dg_log_debug("%s: libpng warning: %s", wr->path, msg);
}

static void wr_write(png_structp png, png_bytep src, size_t n) {
    png_wr *wr = png_get_io_ptr(png);
    if (wr->len + n > wr->cap) {
        size_t cap = DG_MAX(wr->cap * 2, (size_t)4096);
        while (cap < wr->len + n) cap *= 2;
        wr->buf = dg_xrealloc(wr->buf, cap);
        wr->cap = cap;
    }
    memcpy(wr->buf + wr->len, src, n);
    wr->len += n;
}

static void wr_flush(png_structp png) { (void)png; }

/* libpng part of a write; palette (n_palette, 3) is read only for paletted
 * colour types. Returns DG_STATUS_OK or DG_STATUS_ERR_IO (logged). */
static dg_status png_encode(png_structp png, png_infop info, png_wr *wr, int h, int w,
        int color_type, int depth, const png_color *plte, int n_palette) {
    if (setjmp(png_jmpbuf(png))) {
        dg_log_error("%s: cannot encode PNG: libpng: %s", wr->path, wr->msg);
        return DG_STATUS_ERR_IO;
    }
    png_set_write_fn(png, wr, wr_write, wr_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color_type,
            PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_PLTE(png, info, plte, n_palette);
    png_write_info(png, info);
    png_write_image(png, wr->rows);
    png_write_end(png, NULL);
    return DG_STATUS_OK;
}

/* Encodes samples (H, W, C) already in PNG byte order (16-bit big-endian)
 * and writes the file atomically. */
static dg_status png_write_file(const char *path, const uint8_t *samples, int h, int w,
        int color_type, int depth, const uint8_t (*palette)[3], int n_palette) {
    DG_ASSERT(h >= 1 && w >= 1 && h <= DG_PNG_MAX_SIDE && w <= DG_PNG_MAX_SIDE);
    int channels = 1;
    if (color_type == PNG_COLOR_TYPE_RGB) channels = 3;
    const size_t rowbytes = (size_t)w * (size_t)channels * (depth == 16 ? 2u : 1u);
    png_color plte[256];
    for (int i = 0; i < n_palette; i++) {
        plte[i].red = palette[i][0];
        plte[i].green = palette[i][1];
        plte[i].blue = palette[i][2];
    }
    png_wr *wr = dg_xcalloc(1, sizeof(*wr));
    wr->path = path;
    wr->rows = dg_xmalloc((size_t)h * sizeof(*wr->rows));
    /* libpng copies each row before transforming it: the samples are only
     * read, the cast drops a const libpng's prototype lacks. */
    for (int y = 0; y < h; y++) wr->rows[y] = (png_bytep)(samples + (size_t)y * rowbytes);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, wr, wr_error, wr_warning);
    DG_ASSERT(png != NULL);
    png_infop info = png_create_info_struct(png);
    DG_ASSERT(info != NULL);
    dg_status st = png_encode(png, info, wr, h, w, color_type, depth, plte, n_palette);
    png_destroy_write_struct(&png, &info);
    if (st == DG_STATUS_OK) {
        const dg_file_part part = {wr->buf, wr->len};
        st = dg_file_write_atomic(path, &part, 1);
    }
    dg_free(wr->buf);
    dg_free(wr->rows);
    dg_free(wr);
    return st;
}

dg_status dg_png_write_paletted(const char *path, const uint8_t *idx, int h, int w,
        const uint8_t (*palette)[3], int n_colors) {
    DG_ASSERT(n_colors >= 1 && n_colors <= 256 && palette != NULL);
    DG_ASSERT(h >= 1 && w >= 1);
    const size_t n = (size_t)h * (size_t)w;
    for (size_t i = 0; i < n; i++) DG_ASSERT(idx[i] < n_colors);
    return png_write_file(path, idx, h, w, PNG_COLOR_TYPE_PALETTE, 8, palette, n_colors);
}

dg_status dg_png_write_gray8(const char *path, const uint8_t *src, int h, int w) {
    return png_write_file(path, src, h, w, PNG_COLOR_TYPE_GRAY, 8, NULL, 0);
}

dg_status dg_png_write_gray16_rgb(const char *path, const uint16_t *src, int h, int w) {
    DG_ASSERT(h >= 1 && w >= 1 && h <= DG_PNG_MAX_SIDE && w <= DG_PNG_MAX_SIDE);
    const size_t n = (size_t)h * (size_t)w * 3;
    uint8_t *be = dg_xmalloc(2 * n); /* (H, W, 3) big-endian samples */
    for (size_t i = 0; i < n; i++) {
        be[2 * i] = (uint8_t)(src[i] >> 8);
        be[2 * i + 1] = (uint8_t)(src[i] & 0xff);
    }
    const dg_status st = png_write_file(path, be, h, w, PNG_COLOR_TYPE_RGB, 16, NULL, 0);
    dg_free(be);
    return st;
}
