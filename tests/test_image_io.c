/* tests/test_image_io.c -- image and label file I/O (data/image_cv.h,
 * data/png_io.h, data/npy.h) on real files.
 *
 * Images: PNG round trips exact and in RGB order (the written file is also
 * decoded by libpng, an independent decoder), JPEG round trips close, gray
 * and 16-bit PNGs widened/narrowed to RGB8, truncated PNG and JPEG, a text
 * file named .png, an empty file, a directory and a missing file each give
 * one clean message naming the file; resize modes against hand-computed
 * values (nearest-exact pixel-centre rule, bilinear half-pixel formula,
 * bicubic Keys a = -0.75 with replicated edges, area block means); ImageNet
 * normalisation in torchvision's f32 order.
 * Labels: PNGs built byte by byte with zlib (an encoder independent of
 * png_io.c: 1/2/4/8-bit palettes whose colours differ from the indices,
 * 4- and 8-bit gray, Adam7-interlaced gray, big-endian 16-bit gray/RGB/RGBA),
 * writer round trips, every truncation and every byte flip of a paletted
 * file (one clean error each, never a crash). NPY: byte-exact numpy files,
 * round trips, every header validation error.
 *
 * Files live in a temporary directory made by the unchecked fixture and
 * removed after each test case, even when a test fails.
 * Shape letters: H, W (pixels), C (channels). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "common.h"
#include "data/image_cv.h"
#include "data/npy.h"
#include "data/png_io.h"

static char dir[64];

static void make_dir(void) { make_tmpdir(dir, "imgio"); }

static void remove_dir(void) { remove_tree(dir, 2); }

static void path_of(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/%s", dir, name);
}

/* Whole file as bytes (dg_free it); *n gets its size. */
static uint8_t *read_bytes(const char *path, size_t *n) {
    return (uint8_t *)read_file(path, n);
}

/* Entries of the temporary directory whose name contains `part`. */
static int count_entries_with(const char *part) {
    DIR *d = opendir(dir);
    DG_ASSERT(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) n += strstr(e->d_name, part) != NULL;
    closedir(d);
    return n;
}

/* Lines of the project's error log in s (other libraries may print too). */
static int count_errors(const char *s) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, "dgseg: error: ")) != NULL; p++) n++;
    return n;
}

/* Asserts exactly one logged error, naming `path` and containing `what`
 * (when not NULL), then frees the log. */
static void expect_one_error(char *log, const char *path, const char *what) {
    ck_assert_msg(count_errors(log) == 1, "expected one error line, got:\n%s", log);
    ck_assert_msg(strstr(log, path) != NULL, "message does not name %s:\n%s", path, log);
    if (what) ck_assert_msg(strstr(log, what) != NULL, "message lacks '%s':\n%s", what, log);
    dg_free(log);
}

/* A deterministic RGB image with distinct channel values. */
static void make_pattern(dg_image *img, int h, int w, uint32_t seed) {
    dg_image_init(img, h, w, 3);
    dg_rng r;
    dg_rng_init(&r, seed, 0, 0);
    for (size_t i = 0; i < (size_t)h * w * 3; i++) img->data[i] = (uint8_t)dg_rng_next(&r);
}

/* A smooth RGB image (JPEG-friendly): gradients per channel. */
static void make_smooth(dg_image *img, int h, int w) {
    dg_image_init(img, h, w, 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = img->data + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(40 + 3 * x);
            p[1] = (uint8_t)(20 + 2 * y);
            p[2] = (uint8_t)(200 - x - y);
        }
}

/* ---- byte-level PNG builder (independent of png_io.c) -------------------- */

typedef struct bytes {
    uint8_t *p;
    size_t n;
    size_t cap;
} bytes;

static void bytes_add(bytes *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = 2 * (b->n + n) + 64;
        b->p = dg_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_be32(uint8_t *b, uint32_t v) {
    b[0] = (uint8_t)(v >> 24), b[1] = (uint8_t)(v >> 16), b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

static void png_chunk(bytes *b, const char *type, const uint8_t *data, uint32_t len) {
    uint8_t be[4];
    put_be32(be, len);
    bytes_add(b, be, 4);
    const size_t start = b->n;
    bytes_add(b, type, 4);
    if (len) bytes_add(b, data, len);
    put_be32(be, (uint32_t)crc32(0L, b->p + start, (uInt)(len + 4)));
    bytes_add(b, be, 4);
}

/* A complete PNG: IHDR, PLTE when n_plte > 0, one IDAT of the scanlines
 * raw (H, rowbytes) each with filter type 0, IEND. Returns the bytes. */
static bytes build_png(int w, int h, int depth, int color_type, const uint8_t (*plte)[3],
        int n_plte, const uint8_t *raw, size_t rowbytes) {
    bytes b = {0};
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    bytes_add(&b, sig, 8);
    uint8_t ihdr[13];
    put_be32(ihdr, (uint32_t)w);
    put_be32(ihdr + 4, (uint32_t)h);
    ihdr[8] = (uint8_t)depth, ihdr[9] = (uint8_t)color_type;
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    png_chunk(&b, "IHDR", ihdr, 13);
    if (n_plte > 0) png_chunk(&b, "PLTE", &plte[0][0], (uint32_t)(3 * n_plte));
    const size_t flen = (size_t)h * (rowbytes + 1);
    uint8_t *filtered = dg_xmalloc(flen);
    for (int y = 0; y < h; y++) {
        filtered[(size_t)y * (rowbytes + 1)] = 0;
        memcpy(filtered + (size_t)y * (rowbytes + 1) + 1, raw + (size_t)y * rowbytes, rowbytes);
    }
    uLongf zlen = compressBound((uLong)flen);
    uint8_t *z = dg_xmalloc(zlen);
    DG_ASSERT(compress2(z, &zlen, filtered, (uLong)flen, 9) == Z_OK);
    png_chunk(&b, "IDAT", z, (uint32_t)zlen);
    png_chunk(&b, "IEND", NULL, 0);
    dg_free(z);
    dg_free(filtered);
    return b;
}

/* An Adam7-interlaced 8-bit gray PNG of v (H, W): the seven passes'
 * sub-images, each row with filter type 0, in one IDAT. */
static bytes build_png_adam7_gray8(int w, int h, const uint8_t *v) {
    static const int pass[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                   {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
    uint8_t *filtered = dg_xmalloc((size_t)2 * h * (w + 1));
    size_t flen = 0;
    for (int p = 0; p < 7; p++) {
        const int x0 = pass[p][0], y0 = pass[p][1], dx = pass[p][2], dy = pass[p][3];
        if (x0 >= w || y0 >= h) continue;
        for (int y = y0; y < h; y += dy) {
            filtered[flen++] = 0;
            for (int x = x0; x < w; x += dx) filtered[flen++] = v[(size_t)y * w + x];
        }
    }
    bytes b = {0};
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    bytes_add(&b, sig, 8);
    uint8_t ihdr[13];
    put_be32(ihdr, (uint32_t)w);
    put_be32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8, ihdr[9] = 0, ihdr[10] = ihdr[11] = 0, ihdr[12] = 1;
    png_chunk(&b, "IHDR", ihdr, 13);
    uLongf zlen = compressBound((uLong)flen);
    uint8_t *z = dg_xmalloc(zlen);
    DG_ASSERT(compress2(z, &zlen, filtered, (uLong)flen, 9) == Z_OK);
    png_chunk(&b, "IDAT", z, (uint32_t)zlen);
    png_chunk(&b, "IEND", NULL, 0);
    dg_free(z);
    dg_free(filtered);
    return b;
}

/* Packs one value per pixel (H, W) at `depth` bits, MSB first. */
static uint8_t *pack_bits(const uint8_t *v, int h, int w, int depth, size_t *rowbytes) {
    *rowbytes = ((size_t)w * depth + 7) / 8;
    uint8_t *raw = dg_xcalloc((size_t)h * *rowbytes, 1);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const size_t bit = (size_t)x * depth;
            raw[(size_t)y * *rowbytes + bit / 8] |=
                    (uint8_t)(v[(size_t)y * w + x] << (8 - depth - bit % 8));
        }
    return raw;
}

/* A palette whose colours are unrelated to the indices. */
static void odd_palette(uint8_t (*pal)[3], int n) {
    for (int i = 0; i < n; i++) {
        pal[i][0] = (uint8_t)(255 - 3 * i);
        pal[i][1] = (uint8_t)(i * 37 + 11);
        pal[i][2] = (uint8_t)(i * 101 + 5);
    }
}

/* ---- images through OpenCV ----------------------------------------------- */

START_TEST(image_png_round_trip_is_exact) {
    char path[128];
    path_of(path, sizeof(path), "pattern.png");
    dg_image img, back;
    make_pattern(&img, 13, 17, 7);
    ck_assert_int_eq(dg_image_write_png(path, &img), DG_STATUS_OK);
    ck_assert_int_eq(dg_image_read(path, &back), DG_STATUS_OK);
    ck_assert_int_eq(back.h, 13);
    ck_assert_int_eq(back.w, 17);
    ck_assert_int_eq(back.c, 3);
    ck_assert_mem_eq(back.data, img.data, 13 * 17 * 3);
    ck_assert_int_eq(count_entries_with(".tmp"), 0);
    dg_image_free(&img);
    dg_image_free(&back);
    dg_image_free(&back); /* free is idempotent */
}
END_TEST

START_TEST(image_pure_red_pixel_stays_red) {
    char path[128];
    path_of(path, sizeof(path), "rgb.png");
    dg_image img, back;
    dg_image_init(&img, 2, 3, 3);
    memset(img.data, 90, 2 * 3 * 3);
    static const uint8_t red[3] = {255, 0, 0}, green[3] = {0, 255, 0}, blue[3] = {0, 0, 255};
    memcpy(img.data + 0, red, 3);
    memcpy(img.data + 3, green, 3);
    memcpy(img.data + 6, blue, 3);
    ck_assert_int_eq(dg_image_write_png(path, &img), DG_STATUS_OK);
    ck_assert_int_eq(dg_image_read(path, &back), DG_STATUS_OK);
    ck_assert_mem_eq(back.data, red, 3);
    ck_assert_mem_eq(back.data + 3, green, 3);
    ck_assert_mem_eq(back.data + 6, blue, 3);
    /* libpng reads the file's raw samples: the file itself is in RGB order. */
    dg_label_png raw;
    ck_assert_int_eq(dg_label_read_png(path, &raw), DG_STATUS_OK);
    ck_assert_int_eq(raw.channels, 3);
    ck_assert(!raw.paletted);
    ck_assert_mem_eq(raw.data8, img.data, 2 * 3 * 3);
    dg_label_png_free(&raw);
    dg_image_free(&img);
    dg_image_free(&back);
}
END_TEST

START_TEST(image_jpeg_round_trip_is_close) {
    char path[128];
    path_of(path, sizeof(path), "smooth.jpg");
    dg_image img, back;
    make_smooth(&img, 24, 40);
    ck_assert_int_eq(dg_image_write_jpeg(path, &img, 95), DG_STATUS_OK);
    ck_assert_int_eq(dg_image_read(path, &back), DG_STATUS_OK);
    ck_assert_int_eq(back.h, 24);
    ck_assert_int_eq(back.w, 40);
    const size_t n = 24 * 40 * 3;
    int max_d = 0;
    double sum_d = 0.0;
    for (size_t i = 0; i < n; i++) {
        const int d = abs((int)back.data[i] - (int)img.data[i]);
        max_d = DG_MAX(max_d, d);
        sum_d += d;
    }
    ck_assert_msg(max_d <= 12 && sum_d / n < 2.0, "max |d| %d, mean |d| %.3f", max_d, sum_d / n);
    dg_image_free(&back);
    dg_image_free(&img);

    /* A flat red 16x16 block comes back red (BGR/RGB order through JPEG). */
    dg_image_init(&img, 16, 16, 3);
    for (int i = 0; i < 256; i++) img.data[3 * i] = 255;
    ck_assert_int_eq(dg_image_write_jpeg(path, &img, 90), DG_STATUS_OK);
    ck_assert_int_eq(dg_image_read(path, &back), DG_STATUS_OK);
    for (int i = 0; i < 256; i++) {
        const uint8_t *p = back.data + 3 * i;
        ck_assert_msg(p[0] >= 240 && p[1] <= 15 && p[2] <= 15, "pixel %d = (%d, %d, %d)", i, p[0],
                p[1], p[2]);
    }
    dg_image_free(&back);
    dg_image_free(&img);
}
END_TEST

START_TEST(image_gray_and_16bit_pngs_read_as_rgb8) {
    char path[128];
    path_of(path, sizeof(path), "gray.png");
    uint8_t gray[5 * 7];
    for (int i = 0; i < 35; i++) gray[i] = (uint8_t)(i * 7);
    ck_assert_int_eq(dg_png_write_gray8(path, gray, 5, 7), DG_STATUS_OK);
    dg_image back;
    ck_assert_int_eq(dg_image_read(path, &back), DG_STATUS_OK);
    ck_assert_int_eq(back.c, 3);
    for (int i = 0; i < 35; i++)
        for (int c = 0; c < 3; c++) ck_assert_uint_eq(back.data[3 * i + c], gray[i]);
    dg_image_free(&back);

    /* 16-bit samples v * 257 narrow to v. */
    path_of(path, sizeof(path), "rgb16.png");
    uint16_t s16[4 * 6 * 3];
    for (int i = 0; i < 72; i++) s16[i] = (uint16_t)((i * 3 + 1) * 257);
    ck_assert_int_eq(dg_png_write_gray16_rgb(path, s16, 4, 6), DG_STATUS_OK);
    ck_assert_int_eq(dg_image_read(path, &back), DG_STATUS_OK);
    ck_assert_int_eq(back.h, 4);
    ck_assert_int_eq(back.w, 6);
    for (int i = 0; i < 72; i++) ck_assert_uint_eq(back.data[i], (unsigned)(i * 3 + 1));
    dg_image_free(&back);
}
END_TEST

/* Every cut of a valid file: FORMAT error, one message naming the file. */
static void check_truncations(const char *name, const uint8_t *full, size_t n,
        const size_t *cuts, int n_cuts) {
    char path[128];
    path_of(path, sizeof(path), name);
    for (int k = 0; k < n_cuts; k++) {
        write_file(path, full, cuts[k]);
        dg_image img;
        memset(&img, 0x5a, sizeof(img));
        capture cap;
        capture_begin(&cap);
        const dg_status st = dg_image_read(path, &img);
        char *log = capture_end(&cap);
        ck_assert_msg(st == DG_STATUS_ERR_FORMAT, "%s cut at %zu/%zu: status %d", name, cuts[k],
                n, st);
        ck_assert_ptr_null(img.data);
        ck_assert_int_eq(img.h, 0);
        expect_one_error(log, path, NULL);
    }
}

START_TEST(image_truncated_png_and_jpeg_are_format_errors) {
    char path[128];
    dg_image img;
    make_smooth(&img, 32, 48);
    path_of(path, sizeof(path), "full.png");
    ck_assert_int_eq(dg_image_write_png(path, &img), DG_STATUS_OK);
    size_t n;
    uint8_t *full = read_bytes(path, &n);
    const size_t png_cuts[] = {n - 1, n - 12, n / 2, 60, 33, 9};
    check_truncations("cut.png", full, n, png_cuts, DG_ARRAY_LEN(png_cuts));
    dg_free(full);

    path_of(path, sizeof(path), "full.jpg");
    ck_assert_int_eq(dg_image_write_jpeg(path, &img, 90), DG_STATUS_OK);
    full = read_bytes(path, &n);
    ck_assert_uint_eq(full[n - 2], 0xFF);
    ck_assert_uint_eq(full[n - 1], 0xD9);
    const size_t jpg_cuts[] = {n - 1, n - 2, n - 40, n / 2, 300, 4};
    check_truncations("cut.jpg", full, n, jpg_cuts, DG_ARRAY_LEN(jpg_cuts));
    /* The uncut bytes under another name still decode. */
    path_of(path, sizeof(path), "again.jpg");
    write_file(path, full, n);
    dg_image back;
    ck_assert_int_eq(dg_image_read(path, &back), DG_STATUS_OK);
    dg_image_free(&back);
    dg_free(full);
    dg_image_free(&img);
}
END_TEST

START_TEST(image_non_images_are_format_errors) {
    char path[128];
    static const char *names[] = {"text.png", "empty.png", "zeros.jpg"};
    static const char *reasons[] = {"not a decodable image", "empty file", "not a decodable"};
    uint8_t zeros[100] = {0};
    for (int k = 0; k < 3; k++) {
        path_of(path, sizeof(path), names[k]);
        if (k == 0) write_file(path, "hello, I am not a PNG\n", 22);
        if (k == 1) write_file(path, "", 0);
        if (k == 2) write_file(path, zeros, sizeof(zeros));
        dg_image img;
        capture cap;
        capture_begin(&cap);
        const dg_status st = dg_image_read(path, &img);
        char *log = capture_end(&cap);
        ck_assert_int_eq(st, DG_STATUS_ERR_FORMAT);
        expect_one_error(log, path, reasons[k]);
    }
}
END_TEST

START_TEST(image_missing_file_and_directory_are_io_errors) {
    char path[128];
    path_of(path, sizeof(path), "no_such_image.png");
    dg_image img;
    capture cap;
    capture_begin(&cap);
    dg_status st = dg_image_read(path, &img);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_IO);
    expect_one_error(log, path, "No such file");

    capture_begin(&cap);
    st = dg_image_read(dir, &img);
    log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_IO);
    expect_one_error(log, dir, NULL);
}
END_TEST

START_TEST(image_write_failures_are_io_errors_and_leave_no_temp) {
    char path[128], sub[128];
    dg_image img;
    make_pattern(&img, 3, 4, 1);
    path_of(path, sizeof(path), "missing_dir/out.png");
    capture cap;
    capture_begin(&cap);
    dg_status st = dg_image_write_png(path, &img);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_IO);
    expect_one_error(log, path, "No such file");

    /* The target is a non-empty directory: rename fails, nothing changes. */
    path_of(path, sizeof(path), "occupied.jpg");
    ck_assert_int_eq(mkdir(path, 0700), 0);
    path_of(sub, sizeof(sub), "occupied.jpg/keep");
    write_file(sub, "x", 1);
    capture_begin(&cap);
    st = dg_image_write_jpeg(path, &img, 80);
    log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_IO);
    expect_one_error(log, path, "renaming");
    struct stat sb;
    ck_assert_int_eq(stat(sub, &sb), 0);
    ck_assert_int_eq(count_entries_with(".tmp"), 0);
    dg_image_free(&img);
}
END_TEST

/* ---- resize ------------------------------------------------------------- */

START_TEST(resize_nearest_exact_uses_pixel_centres) {
    /* Hand-computed sources floor((d + 0.5) * in / out): 5 -> 3 picks
     * 0, 2, 4; 3 -> 7 picks 0, 0, 1, 1, 1, 2, 2 (plain INTER_NEAREST,
     * floor(d * in / out), would pick 0, 0, 0, 1, 1, 2, 2). */
    static const int rows_5_to_3[3] = {0, 2, 4};
    static const int cols_3_to_7[7] = {0, 0, 1, 1, 1, 2, 2};
    dg_image src, dst;
    dg_image_init(&src, 5, 3, 4);
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 3; x++)
            for (int c = 0; c < 4; c++)
                src.data[(y * 3 + x) * 4 + c] = (uint8_t)(60 * c + 10 * y + x);
    ck_assert_int_eq(dg_image_resize(&src, 3, 7, DG_INTERP_NEAREST_EXACT, &dst), DG_STATUS_OK);
    ck_assert_int_eq(dst.h, 3);
    ck_assert_int_eq(dst.w, 7);
    ck_assert_int_eq(dst.c, 4);
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 7; x++)
            for (int c = 0; c < 4; c++)
                ck_assert_uint_eq(dst.data[(y * 7 + x) * 4 + c],
                        (unsigned)(60 * c + 10 * rows_5_to_3[y] + cols_3_to_7[x]));
    dg_image_free(&dst);
    dg_image_free(&src);

    /* Odd sizes both ways, against the rule in double. */
    static const int shapes[][4] = {
            {13, 11, 5, 17}, {1, 9, 4, 2}, {7, 1, 16, 3}, {31, 29, 10, 45}};
    for (size_t k = 0; k < DG_ARRAY_LEN(shapes); k++) {
        const int ih = shapes[k][0], iw = shapes[k][1], oh = shapes[k][2], ow = shapes[k][3];
        dg_image_init(&src, ih, iw, 1);
        for (int i = 0; i < ih * iw; i++) src.data[i] = (uint8_t)(i % 251);
        ck_assert_int_eq(dg_image_resize(&src, oh, ow, DG_INTERP_NEAREST_EXACT, &dst),
                DG_STATUS_OK);
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                const int sy = DG_MIN((int)floor((y + 0.5) * ih / oh), ih - 1);
                const int sx = DG_MIN((int)floor((x + 0.5) * iw / ow), iw - 1);
                ck_assert_msg(dst.data[y * ow + x] == src.data[sy * iw + sx],
                        "%dx%d -> %dx%d at (%d, %d)", ih, iw, oh, ow, y, x);
            }
        dg_image_free(&dst);
        dg_image_free(&src);
    }
}
END_TEST

START_TEST(resize_bilinear_matches_half_pixel_formula) {
    /* 2x2 -> 4x4: source coordinate (d + 0.5) / 2 - 0.5 = -0.25, 0.25,
     * 0.75, 1.25, clamped to the edge: weights of pixel 0 are 1, 0.75,
     * 0.25, 0. With corners 0, 64, 128, 192 every result is an integer. */
    static const uint8_t in[4] = {0, 64, 128, 192};
    static const double w0[4] = {1.0, 0.75, 0.25, 0.0};
    static const uint8_t hand[16] = {0, 16, 48, 64, 32, 48, 80, 96, 96, 112, 144, 160,
                                     128, 144, 176, 192};
    for (int c = 1; c <= 3; c += 2) {
        dg_image src, dst;
        dg_image_init(&src, 2, 2, c);
        for (int i = 0; i < 4; i++)
            for (int k = 0; k < c; k++) src.data[i * c + k] = (uint8_t)(in[i] / (k + 1));
        ck_assert_int_eq(dg_image_resize(&src, 4, 4, DG_INTERP_BILINEAR, &dst), DG_STATUS_OK);
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) {
                for (int k = 0; k < c; k++) {
                    double e = 0.0;
                    for (int sy = 0; sy < 2; sy++)
                        for (int sx = 0; sx < 2; sx++)
                            e += (sy ? 1 - w0[y] : w0[y]) * (sx ? 1 - w0[x] : w0[x]) *
                                    (in[sy * 2 + sx] / (k + 1));
                    ck_assert_msg(fabs(dst.data[(y * 4 + x) * c + k] - e) < 0.5 + 1e-9,
                            "c %d (%d, %d, %d): got %d exp %g", c, y, x, k,
                            dst.data[(y * 4 + x) * c + k], e);
                    if (k == 0) ck_assert_uint_eq(dst.data[(y * 4 + x) * c], hand[y * 4 + x]);
                }
            }
        dg_image_free(&dst);
        dg_image_free(&src);
    }
}
END_TEST

START_TEST(resize_bicubic_and_area_match_hand_values) {
    /* Bicubic is Keys' cubic convolution with a = -0.75 (OpenCV, PyTorch),
     * which is not exact on linear ramps: 1x8 ramp 16x + 8 -> 1x16 samples
     * x = d/2 - 1/4; with taps inside (d = 3 .. 12) the weights at t = 0.25
     * (-0.10546875, 0.87890625, 0.26171875, -0.03515625) give 8d + 4.75
     * for odd d and their mirror 8d + 3.25 for even d (a = -0.5 would give
     * 8d + 4). At d = 0 the edge is replicated: t = 0.75 over pixels
     * 8, 8, 8, 24 gives 6.3125. Results are rounded to the nearest. */
    dg_image src, dst;
    dg_image_init(&src, 1, 8, 1);
    for (int x = 0; x < 8; x++) src.data[x] = (uint8_t)(16 * x + 8);
    ck_assert_int_eq(dg_image_resize(&src, 1, 16, DG_INTERP_BICUBIC, &dst), DG_STATUS_OK);
    for (int d = 3; d <= 12; d++)
        ck_assert_msg(dst.data[d] == (unsigned)(8 * d + (d % 2 ? 5 : 3)), "d %d: got %d", d,
                dst.data[d]);
    ck_assert_uint_eq(dst.data[0], 6);
    dg_image_free(&dst);
    dg_image_free(&src);

    /* Area 4x4 -> 2x2: means of 2x2 blocks (sums divisible by 4). */
    static const uint8_t in[16] = {0, 4, 100, 104, 8, 12, 108, 112,
                                   200, 204, 40, 44, 208, 212, 48, 52};
    static const uint8_t mean[4] = {6, 106, 206, 46};
    dg_image_init(&src, 4, 4, 1);
    memcpy(src.data, in, 16);
    ck_assert_int_eq(dg_image_resize(&src, 2, 2, DG_INTERP_AREA, &dst), DG_STATUS_OK);
    ck_assert_mem_eq(dst.data, mean, 4);
    dg_image_free(&dst);
    dg_image_free(&src);

    /* A constant image stays constant in every mode and size. */
    for (int m = 0; m < 4; m++) {
        dg_image_init(&src, 9, 14, 2);
        memset(src.data, 77, 9 * 14 * 2);
        ck_assert_int_eq(dg_image_resize(&src, 5, 23, (dg_interp)m, &dst), DG_STATUS_OK);
        for (int i = 0; i < 5 * 23 * 2; i++) ck_assert_uint_eq(dst.data[i], 77);
        dg_image_free(&dst);
        dg_image_free(&src);
    }
}
END_TEST

START_TEST(to_tensor_normalises_per_channel_planar) {
    ck_assert(DG_IMAGENET_MEAN[0] == 0.485f && DG_IMAGENET_MEAN[1] == 0.456f &&
              DG_IMAGENET_MEAN[2] == 0.406f);
    ck_assert(DG_IMAGENET_STD[0] == 0.229f && DG_IMAGENET_STD[1] == 0.224f &&
              DG_IMAGENET_STD[2] == 0.225f);
    enum { H = 3, W = 5, C = 3 };
    dg_image img;
    dg_image_init(&img, H, W, C);
    for (int i = 0; i < H * W * C; i++) img.data[i] = (uint8_t)(i * 17 % 256);
    img.data[0] = 0;
    img.data[1] = 255;
    float got[C * H * W];
    double exp[C * H * W], exp_f[C * H * W];
    dg_image_to_tensor(&img, got, DG_IMAGENET_MEAN, DG_IMAGENET_STD);
    for (int c = 0; c < C; c++)
        for (int i = 0; i < H * W; i++) {
            const uint8_t v = img.data[i * C + c];
            exp[c * H * W + i] = (v / 255.0 - DG_IMAGENET_MEAN[c]) / DG_IMAGENET_STD[c];
            /* torchvision's f32 order: (x / 255 - mean) / std. */
            exp_f[c * H * W + i] = (double)(((float)v / 255.f - DG_IMAGENET_MEAN[c]) /
                    DG_IMAGENET_STD[c]);
        }
    DG_ASSERT_CLOSE(got, exp_f, C * H * W, 0.0, 0.0);
    DG_ASSERT_CLOSE(got, exp, C * H * W, 1e-6, 1e-6);
    /* Hand values: 0 in R -> -0.485/0.229, 255 in G -> (1-0.456)/0.224. */
    ck_assert(fabsf(got[0] - (-2.1179039f)) < 1e-6f);
    ck_assert(fabsf(got[H * W] - 2.4285715f) < 1e-6f);

    dg_image_to_tensor(&img, got, NULL, NULL);
    for (int c = 0; c < C; c++)
        for (int i = 0; i < H * W; i++) exp[c * H * W + i] = (float)img.data[i * C + c] / 255.f;
    DG_ASSERT_CLOSE(got, exp, C * H * W, 0.0, 0.0);
    dg_image_free(&img);
}
END_TEST

/* ---- label PNGs (libpng) -------------------------------------------------- */

START_TEST(label_paletted_returns_indices_not_colours) {
    enum { H = 19, W = 23, N = 40 };
    uint8_t pal[N][3];
    odd_palette(pal, N);
    uint8_t idx[H * W];
    for (int i = 0; i < H * W; i++) idx[i] = (uint8_t)((i * 7 + i / W) % N);
    char path[128];
    path_of(path, sizeof(path), "pal8.png");
    ck_assert_int_eq(dg_png_write_paletted(path, idx, H, W, (const uint8_t (*)[3])pal, N),
            DG_STATUS_OK);
    dg_label_png l;
    ck_assert_int_eq(dg_label_read_png(path, &l), DG_STATUS_OK);
    ck_assert(l.paletted);
    ck_assert_int_eq(l.h, H);
    ck_assert_int_eq(l.w, W);
    ck_assert_int_eq(l.channels, 1);
    ck_assert_int_eq(l.bit_depth, 8);
    ck_assert_int_eq(l.file_bit_depth, 8);
    ck_assert_ptr_null(l.data16);
    ck_assert_mem_eq(l.data8, idx, H * W);
    ck_assert_int_eq(l.n_palette, N);
    ck_assert_mem_eq(l.palette, pal, sizeof(pal));
    dg_label_png_free(&l);

    /* The same file through OpenCV gives the colours: the palette is right. */
    dg_image img;
    ck_assert_int_eq(dg_image_read(path, &img), DG_STATUS_OK);
    for (int i = 0; i < H * W; i++) ck_assert_mem_eq(img.data + 3 * i, pal[idx[i]], 3);
    dg_image_free(&img);

    dg_png_info info;
    ck_assert_int_eq(dg_png_read_info(path, &info), DG_STATUS_OK);
    ck_assert_int_eq(info.h, H);
    ck_assert_int_eq(info.w, W);
    ck_assert_int_eq(info.channels, 1);
    ck_assert_int_eq(info.file_bit_depth, 8);
    ck_assert(info.paletted);
}
END_TEST

START_TEST(label_low_bit_palettes_unpack_to_indices) {
    enum { H = 5, W = 13 };
    for (int depth = 1; depth <= 8; depth *= 2) {
        const int n = 1 << depth;
        uint8_t pal[256][3];
        odd_palette(pal, n);
        uint8_t idx[H * W];
        for (int i = 0; i < H * W; i++) idx[i] = (uint8_t)((i * 5 + 3) % n);
        size_t rowbytes;
        uint8_t *raw = pack_bits(idx, H, W, depth, &rowbytes);
        bytes b = build_png(W, H, depth, 3, (const uint8_t (*)[3])pal, n, raw, rowbytes);
        char path[128];
        snprintf(path, sizeof(path), "%s/pal%d.png", dir, depth);
        write_file(path, b.p, b.n);
        dg_label_png l;
        ck_assert_int_eq(dg_label_read_png(path, &l), DG_STATUS_OK);
        ck_assert(l.paletted);
        ck_assert_int_eq(l.file_bit_depth, depth);
        ck_assert_int_eq(l.bit_depth, 8);
        ck_assert_int_eq(l.channels, 1);
        ck_assert_int_eq(l.n_palette, n);
        ck_assert_mem_eq(l.palette, pal, 3 * (size_t)n);
        ck_assert_mem_eq(l.data8, idx, H * W);
        dg_label_png_free(&l);
        dg_free(raw);
        dg_free(b.p);
    }
}
END_TEST

START_TEST(label_gray_values_are_not_rescaled) {
    enum { H = 6, W = 43 };
    uint8_t v[H * W];
    for (int i = 0; i < H * W; i++) v[i] = (uint8_t)(i % 256);
    v[5] = 255;
    char path[128];
    path_of(path, sizeof(path), "gray8.png");
    ck_assert_int_eq(dg_png_write_gray8(path, v, H, W), DG_STATUS_OK);
    dg_label_png l;
    ck_assert_int_eq(dg_label_read_png(path, &l), DG_STATUS_OK);
    ck_assert(!l.paletted);
    ck_assert_int_eq(l.channels, 1);
    ck_assert_int_eq(l.bit_depth, 8);
    ck_assert_int_eq(l.n_palette, 0);
    ck_assert_mem_eq(l.data8, v, H * W);
    dg_label_png_free(&l);

    /* 4-bit gray built by hand: values 0 .. 15 as stored, not x17. */
    uint8_t v4[H * W];
    for (int i = 0; i < H * W; i++) v4[i] = (uint8_t)(i % 16);
    size_t rowbytes;
    uint8_t *raw = pack_bits(v4, H, W, 4, &rowbytes);
    bytes b = build_png(W, H, 4, 0, NULL, 0, raw, rowbytes);
    path_of(path, sizeof(path), "gray4.png");
    write_file(path, b.p, b.n);
    ck_assert_int_eq(dg_label_read_png(path, &l), DG_STATUS_OK);
    ck_assert_int_eq(l.file_bit_depth, 4);
    ck_assert_mem_eq(l.data8, v4, H * W);
    dg_label_png_free(&l);
    dg_free(raw);
    dg_free(b.p);
}
END_TEST

START_TEST(label_interlaced_png_reads_in_raster_order) {
    enum { H = 11, W = 13 };
    uint8_t v[H * W];
    for (int i = 0; i < H * W; i++) v[i] = (uint8_t)(i * 3 + 1);
    bytes b = build_png_adam7_gray8(W, H, v);
    char path[128];
    path_of(path, sizeof(path), "adam7.png");
    write_file(path, b.p, b.n);
    dg_label_png l;
    ck_assert_int_eq(dg_label_read_png(path, &l), DG_STATUS_OK);
    ck_assert_int_eq(l.h, H);
    ck_assert_int_eq(l.w, W);
    ck_assert_mem_eq(l.data8, v, H * W);
    dg_label_png_free(&l);
    dg_free(b.p);
}
END_TEST

START_TEST(label_16bit_samples_keep_values_above_255) {
    enum { H = 7, W = 9 };
    /* SYNTHIA-like: class id, instance id > 255, a large third sample. */
    uint16_t s[H * W * 3];
    for (int i = 0; i < H * W; i++) {
        s[3 * i] = (uint16_t)(i % 23);
        s[3 * i + 1] = (uint16_t)(1000 + 13 * i);
        s[3 * i + 2] = (uint16_t)(65535 - 257 * i);
    }
    char path[128];
    path_of(path, sizeof(path), "rgb16.png");
    ck_assert_int_eq(dg_png_write_gray16_rgb(path, s, H, W), DG_STATUS_OK);
    dg_label_png l;
    ck_assert_int_eq(dg_label_read_png(path, &l), DG_STATUS_OK);
    ck_assert_int_eq(l.bit_depth, 16);
    ck_assert_int_eq(l.file_bit_depth, 16);
    ck_assert_int_eq(l.channels, 3);
    ck_assert(!l.paletted);
    ck_assert_ptr_null(l.data8);
    ck_assert_mem_eq(l.data16, s, sizeof(s));
    dg_label_png_free(&l);

    /* Hand-built big-endian files: bytes 01 02 are 258 (not 513), for gray,
     * RGB and RGBA 16-bit. */
    static const int types[3] = {0, 2, 6};
    static const int chans[3] = {1, 3, 4};
    for (int t = 0; t < 3; t++) {
        const int c = chans[t];
        const size_t rowbytes = (size_t)W * c * 2;
        uint8_t raw[H * W * 4 * 2];
        uint16_t want[H * W * 4];
        for (int i = 0; i < H * W * c; i++) {
            raw[2 * i] = (uint8_t)(1 + i % 200);
            raw[2 * i + 1] = (uint8_t)(2 + i % 17);
            want[i] = (uint16_t)(raw[2 * i] * 256 + raw[2 * i + 1]);
        }
        bytes b = build_png(W, H, 16, types[t], NULL, 0, raw, rowbytes);
        path_of(path, sizeof(path), "hand16.png");
        write_file(path, b.p, b.n);
        ck_assert_int_eq(dg_label_read_png(path, &l), DG_STATUS_OK);
        ck_assert_int_eq(l.channels, c);
        ck_assert_int_eq(l.bit_depth, 16);
        ck_assert_uint_eq(l.data16[0], 258);
        ck_assert_mem_eq(l.data16, want, (size_t)H * W * c * 2);
        dg_label_png_free(&l);
        dg_free(b.p);
    }
}
END_TEST

START_TEST(label_cityscapes_palette_write_reads_back) {
    /* docs/datasets.md §1.4 spot checks. */
    static const uint8_t road[3] = {128, 64, 128}, sky[3] = {70, 130, 180},
                         bicycle[3] = {119, 11, 32}, black[3] = {0, 0, 0};
    ck_assert_mem_eq(DG_CITYSCAPES_PALETTE[0], road, 3);
    ck_assert_mem_eq(DG_CITYSCAPES_PALETTE[10], sky, 3);
    ck_assert_mem_eq(DG_CITYSCAPES_PALETTE[18], bicycle, 3);
    ck_assert_mem_eq(DG_CITYSCAPES_PALETTE[19], black, 3);
    ck_assert_mem_eq(DG_CITYSCAPES_PALETTE[255], black, 3);
    enum { H = 11, W = 17 };
    uint8_t idx[H * W];
    for (int i = 0; i < H * W; i++) idx[i] = (uint8_t)(i % 21 == 20 ? 255 : i % 19);
    char path[128];
    path_of(path, sizeof(path), "pred.png");
    ck_assert_int_eq(dg_png_write_paletted(path, idx, H, W, DG_CITYSCAPES_PALETTE, 256),
            DG_STATUS_OK);
    dg_label_png l;
    ck_assert_int_eq(dg_label_read_png(path, &l), DG_STATUS_OK);
    ck_assert_int_eq(l.n_palette, 256);
    ck_assert_mem_eq(l.palette, DG_CITYSCAPES_PALETTE, 256 * 3);
    ck_assert_mem_eq(l.data8, idx, H * W);
    dg_label_png_free(&l);
    ck_assert_int_eq(count_entries_with(".tmp"), 0);
}
END_TEST

/* Reads a label file expected to fail; returns the status and checks that
 * exactly one message naming the file was logged. */
static dg_status read_bad_label(const char *path, const char *what) {
    dg_label_png l;
    memset(&l, 0x5a, sizeof(l));
    capture cap;
    capture_begin(&cap);
    const dg_status st = dg_label_read_png(path, &l);
    char *log = capture_end(&cap);
    ck_assert_ptr_null(l.data8);
    ck_assert_ptr_null(l.data16);
    expect_one_error(log, path, what);
    return st;
}

START_TEST(label_corrupt_files_are_format_errors) {
    enum { H = 9, W = 10, N = 12 };
    uint8_t pal[N][3];
    odd_palette(pal, N);
    uint8_t idx[H * W];
    for (int i = 0; i < H * W; i++) idx[i] = (uint8_t)(i * 5 % N);
    char path[128], bad[128];
    path_of(path, sizeof(path), "good.png");
    path_of(bad, sizeof(bad), "bad.png");
    ck_assert_int_eq(dg_png_write_paletted(path, idx, H, W, (const uint8_t (*)[3])pal, N),
            DG_STATUS_OK);
    size_t n;
    uint8_t *good = read_bytes(path, &n);

    write_file(bad, "just some text\n", 15);
    ck_assert_int_eq(read_bad_label(bad, "not a PNG"), DG_STATUS_ERR_FORMAT);
    write_file(bad, "", 0);
    ck_assert_int_eq(read_bad_label(bad, "empty"), DG_STATUS_ERR_FORMAT);
    path_of(bad, sizeof(bad), "absent.png");
    ck_assert_int_eq(read_bad_label(bad, "No such file"), DG_STATUS_ERR_IO);
    path_of(bad, sizeof(bad), "bad.png");

    /* IHDR CRC (bytes 29 .. 32) and a zlib stream with a valid CRC. */
    uint8_t *copy = dg_xmalloc(n);
    memcpy(copy, good, n);
    copy[30] ^= 0x40;
    write_file(bad, copy, n);
    ck_assert_int_eq(read_bad_label(bad, "CRC"), DG_STATUS_ERR_FORMAT);
    dg_free(copy);
    uint8_t junk[64];
    for (int i = 0; i < 64; i++) junk[i] = (uint8_t)(i * 91 + 7);
    size_t rowbytes;
    uint8_t *raw = pack_bits(idx, H, W, 8, &rowbytes);
    bytes b = build_png(W, H, 8, 3, (const uint8_t (*)[3])pal, N, raw, rowbytes);
    dg_free(raw);
    /* Replace the IDAT payload's zlib header + data with junk, fixing CRC. */
    bytes j = {0};
    bytes_add(&j, b.p, 8 + 25 + 12 + 3 * N);
    png_chunk(&j, "IDAT", junk, sizeof(junk));
    png_chunk(&j, "IEND", NULL, 0);
    write_file(bad, j.p, j.n);
    ck_assert_int_eq(read_bad_label(bad, "libpng"), DG_STATUS_ERR_FORMAT);
    dg_free(j.p);
    /* A header beyond DG_PNG_MAX_SIDE is rejected before any allocation. */
    bytes big = {0};
    bytes_add(&big, b.p, 8);
    uint8_t ihdr[13];
    put_be32(ihdr, DG_PNG_MAX_SIDE + 1);
    put_be32(ihdr + 4, 3);
    ihdr[8] = 8, ihdr[9] = 0, ihdr[10] = ihdr[11] = ihdr[12] = 0;
    png_chunk(&big, "IHDR", ihdr, 13);
    png_chunk(&big, "IEND", NULL, 0);
    write_file(bad, big.p, big.n);
    ck_assert_int_eq(read_bad_label(bad, "limit"), DG_STATUS_ERR_FORMAT);
    dg_free(big.p);
    /* A paletted file without PLTE. */
    bytes np = {0};
    bytes_add(&np, b.p, 8 + 25);
    bytes_add(&np, b.p + 8 + 25 + 12 + 3 * N, b.n - (8 + 25 + 12 + 3 * N));
    write_file(bad, np.p, np.n);
    ck_assert_int_eq(read_bad_label(bad, "libpng"), DG_STATUS_ERR_FORMAT);
    dg_free(np.p);
    dg_free(b.p);

    /* Every truncation: one clean error each (even a file missing only part
     * of IEND is rejected). */
    for (size_t cut = 0; cut < n; cut++) {
        write_file(bad, good, cut);
        ck_assert_msg(read_bad_label(bad, NULL) == DG_STATUS_ERR_FORMAT, "cut at %zu", cut);
    }
    /* Every single-byte flip: one clean error each. */
    int n_ok = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t *f = dg_xmalloc(n);
        memcpy(f, good, n);
        f[i] ^= 0xff;
        write_file(bad, f, n);
        dg_free(f);
        dg_label_png l;
        capture cap;
        capture_begin(&cap);
        const dg_status st = dg_label_read_png(bad, &l);
        char *log = capture_end(&cap);
        if (st == DG_STATUS_OK) {
            n_ok++;
            ck_assert_int_eq(count_errors(log), 0);
            ck_assert_ptr_nonnull(l.data8);
            dg_label_png_free(&l);
            dg_free(log);
        } else {
            ck_assert_int_eq(st, DG_STATUS_ERR_FORMAT);
            expect_one_error(log, bad, NULL);
        }
    }
    /* The file holds only the signature and critical chunks (IHDR, PLTE,
     * IDAT, IEND), every byte of them covered by a length check or a CRC:
     * no flip goes unnoticed. */
    ck_assert_int_eq(n_ok, 0);
    dg_free(good);
}
END_TEST

START_TEST(png_write_failures_are_io_errors) {
    char path[128];
    uint8_t idx[6] = {0, 1, 2, 3, 4, 5};
    uint16_t s16[18] = {0};
    path_of(path, sizeof(path), "no_dir/label.png");
    for (int k = 0; k < 3; k++) {
        capture cap;
        capture_begin(&cap);
        dg_status st;
        if (k == 0) st = dg_png_write_paletted(path, idx, 2, 3, DG_CITYSCAPES_PALETTE, 256);
        else if (k == 1) st = dg_png_write_gray8(path, idx, 2, 3);
        else st = dg_png_write_gray16_rgb(path, s16, 2, 3);
        char *log = capture_end(&cap);
        ck_assert_int_eq(st, DG_STATUS_ERR_IO);
        expect_one_error(log, path, "No such file");
    }
}
END_TEST

/* ---- npy ---------------------------------------------------------------- */

START_TEST(npy_bytes_match_numpy_arange_1x2x3) {
    /* np.save of np.arange(6, dtype='<f4').reshape(1, 2, 3), numpy 1.24. */
    static const char dict[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }";
    uint8_t exp[152];
    memcpy(exp, "\x93NUMPY\x01\x00\x76\x00", 10);
    memcpy(exp + 10, dict, 62);
    memset(exp + 72, ' ', 55);
    exp[127] = '\n';
    static const uint8_t data[24] = {0, 0, 0, 0, 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40,
                                     0, 0, 0x40, 0x40, 0, 0, 0x80, 0x40, 0, 0, 0xa0, 0x40};
    memcpy(exp + 128, data, 24);

    const float x[6] = {0, 1, 2, 3, 4, 5};
    const int64_t shape[3] = {1, 2, 3};
    char path[128];
    path_of(path, sizeof(path), "arange.npy");
    ck_assert_int_eq(dg_npy_write_f32(path, 3, shape, x), DG_STATUS_OK);
    size_t n;
    uint8_t *got = read_bytes(path, &n);
    ck_assert_uint_eq(n, sizeof(exp));
    ck_assert_mem_eq(got, exp, sizeof(exp));
    dg_free(got);
    ck_assert_int_eq(count_entries_with(".tmp"), 0);
}
END_TEST

START_TEST(npy_header_padding_matches_numpy) {
    /* Header sizes numpy 1.24 writes: 21 - digits(shape[0]) spare spaces,
     * then padding to 64 with at least one space (a header ending exactly on
     * a boundary gets 64 more: the 14-d case). */
    static const struct {
        int ndims;
        int64_t shape[16];
        const char *dict;
        int total;
    } cases[] = {
        {0, {0}, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 128},
        {1, {5}, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", 128},
        {2, {0, 7}, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 7), }", 128},
        {14, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 10, 10},
         "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, "
         "1, 10, 10), }", 192},
        {16, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
         "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, "
         "1, 1, 1, 1, 1), }", 192},
    };
    float data[100];
    for (int i = 0; i < 100; i++) data[i] = (float)i * 0.25f - 7.f;
    char path[128];
    path_of(path, sizeof(path), "hdr.npy");
    for (size_t k = 0; k < DG_ARRAY_LEN(cases); k++) {
        ck_assert_int_eq(dg_npy_write_f32(path, cases[k].ndims, cases[k].shape, data),
                DG_STATUS_OK);
        size_t n;
        uint8_t *got = read_bytes(path, &n);
        const int total = cases[k].total;
        uint8_t exp[192];
        memcpy(exp, "\x93NUMPY\x01\x00", 8);
        exp[8] = (uint8_t)(total - 10);
        exp[9] = 0;
        const size_t dl = strlen(cases[k].dict);
        memcpy(exp + 10, cases[k].dict, dl);
        memset(exp + 10 + dl, ' ', (size_t)total - 11 - dl);
        exp[total - 1] = '\n';
        ck_assert_msg(n >= (size_t)total && !memcmp(got, exp, (size_t)total),
                "case %zu: header differs: '%.*s'", k, (int)DG_MIN(n, 192u) - 10,
                (const char *)got + 10);
        int64_t numel = 1;
        for (int i = 0; i < cases[k].ndims; i++) numel *= cases[k].shape[i];
        ck_assert_uint_eq(n, (size_t)total + 4 * (size_t)numel);
        ck_assert(!memcmp(got + total, data, 4 * (size_t)numel));
        dg_free(got);

        dg_npy a;
        ck_assert_int_eq(dg_npy_read_f32(path, &a), DG_STATUS_OK);
        ck_assert_int_eq(a.ndims, cases[k].ndims);
        ck_assert_int_eq(a.header_len, total);
        ck_assert_int_eq(a.numel, numel);
        for (int i = 0; i < a.ndims; i++) ck_assert_int_eq(a.shape[i], cases[k].shape[i]);
        dg_npy_free(&a);
    }
}
END_TEST

static uint32_t f32_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

START_TEST(npy_round_trip_is_bit_exact) {
    enum { C = 19, H = 13, W = 7 };
    float *x = dg_xmalloc(C * H * W * sizeof(*x));
    fill_uniform(x, C * H * W, 3, -50.f, 50.f);
    x[0] = -0.0f;
    x[1] = INFINITY;
    x[2] = -INFINITY;
    x[3] = NAN;
    x[4] = 1e-45f;
    x[5] = 3.4028235e38f;
    const int64_t shape[3] = {C, H, W};
    char path[128];
    path_of(path, sizeof(path), "logits.npy");
    ck_assert_int_eq(dg_npy_write_f32(path, 3, shape, x), DG_STATUS_OK);
    dg_npy a;
    ck_assert_int_eq(dg_npy_read_f32(path, &a), DG_STATUS_OK);
    ck_assert_int_eq(a.ndims, 3);
    ck_assert_int_eq(a.shape[0], C);
    ck_assert_int_eq(a.shape[1], H);
    ck_assert_int_eq(a.shape[2], W);
    ck_assert_int_eq(a.numel, C * H * W);
    ck_assert_int_eq(a.header_len % 64, 0);
    for (int i = 0; i < C * H * W; i++) ck_assert_uint_eq(f32_bits(a.data[i]), f32_bits(x[i]));
    dg_npy_free(&a);
    dg_npy_free(&a);

    /* Overwriting an existing file replaces it whole. */
    const int64_t small[1] = {2};
    ck_assert_int_eq(dg_npy_write_f32(path, 1, small, x + 10), DG_STATUS_OK);
    ck_assert_int_eq(dg_npy_read_f32(path, &a), DG_STATUS_OK);
    ck_assert_int_eq(a.numel, 2);
    ck_assert_uint_eq(f32_bits(a.data[1]), f32_bits(x[11]));
    dg_npy_free(&a);
    ck_assert_int_eq(count_entries_with(".tmp"), 0);
    dg_free(x);
}
END_TEST

/* A .npy file with header text `dict` (padded to `total` bytes with spaces
 * and '\n'), format `version` (1 or 2) and n_data floats 0, 1, 2, ... */
static void write_npy_raw(const char *path, const char *dict, int total, int version,
        int n_data) {
    uint8_t buf[512];
    const int prefix = version == 1 ? 10 : 12;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (uint8_t)version;
    buf[7] = 0;
    const int hlen = total - prefix;
    buf[8] = (uint8_t)(hlen & 0xff);
    buf[9] = (uint8_t)(hlen >> 8);
    if (version != 1) buf[10] = buf[11] = 0;
    const size_t dl = strlen(dict);
    DG_ASSERT((int)dl + prefix < total && total + 4 * n_data <= (int)sizeof(buf));
    memcpy(buf + prefix, dict, dl);
    memset(buf + prefix + dl, ' ', (size_t)total - prefix - dl - 1);
    buf[total - 1] = '\n';
    for (int i = 0; i < n_data; i++) {
        const float v = (float)i;
        memcpy(buf + total + 4 * i, &v, 4);
    }
    write_file(path, buf, (size_t)total + 4 * (size_t)n_data);
}

START_TEST(npy_reader_accepts_numpy_variants) {
    char path[128];
    path_of(path, sizeof(path), "variant.npy");
    /* Version 2.0, keys reordered, double quotes, no trailing comma,
     * Python 2 longs. */
    static const char *dicts[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        "{\"shape\": (2, 3), \"fortran_order\": False, \"descr\": \"<f4\"}",
        "{'descr':'<f4','fortran_order':False,'shape':(2L, 3L)}",
    };
    for (int version = 1; version <= 2; version++)
        for (size_t k = 0; k < DG_ARRAY_LEN(dicts); k++) {
            write_npy_raw(path, dicts[k], 128, version, 6);
            dg_npy a;
            ck_assert_msg(dg_npy_read_f32(path, &a) == DG_STATUS_OK, "v%d: %s", version,
                    dicts[k]);
            ck_assert_int_eq(a.ndims, 2);
            ck_assert_int_eq(a.shape[0], 2);
            ck_assert_int_eq(a.shape[1], 3);
            ck_assert(a.data[5] == 5.f);
            dg_npy_free(&a);
        }
}
END_TEST

START_TEST(npy_reader_rejects_bad_files) {
    static const char good[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }";
    static const struct {
        const char *dict;
        int n_data;
        const char *what;
    } cases[] = {
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }", 6, "'<f8'"},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }", 6, "'>f4'"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (6,), }", 6, "Fortran"},
        {"{'descr': '<f4', 'fortran_order': False, }", 6, "lacks 'shape'"},
        {"{'descr': '<f4', 'shape': (6,), }", 6, "lacks 'fortran_order'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 1}", 6, "'x'"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (6,)}", 6,
         "repeated"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6), }", 6, "not a tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-6,), }", 6, "non-negative"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': [6], }", 6, "not a tuple"},
        {"{'descr': '<f4', 'fortran_order': 0, 'shape': (6,), }", 6, "True or False"},
        {"[6]", 6, "not a dict"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,), } x", 6, "after the header"},
        {good, 5, "truncated"},
        {good, 7, "trailing"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }", 0,
         "elements"},
    };
    char path[128];
    path_of(path, sizeof(path), "bad.npy");
    for (size_t k = 0; k < DG_ARRAY_LEN(cases); k++) {
        write_npy_raw(path, cases[k].dict, 128, 1, cases[k].n_data);
        dg_npy a;
        capture cap;
        capture_begin(&cap);
        const dg_status st = dg_npy_read_f32(path, &a);
        char *log = capture_end(&cap);
        ck_assert_msg(st == DG_STATUS_ERR_FORMAT, "case %zu accepted: %s", k, cases[k].dict);
        ck_assert_ptr_null(a.data);
        expect_one_error(log, path, cases[k].what);
    }

    /* Damaged prefixes: magic, version, header length, a 5-byte file. */
    write_npy_raw(path, good, 128, 1, 6);
    size_t n;
    uint8_t *f = read_bytes(path, &n);
    static const struct {
        int at;
        uint8_t value;
        size_t len;
        const char *what;
    } damage[] = {
        {1, 'X', 0, "magic"},
        {6, 4, 0, "version"},
        {7, 1, 0, "version"},
        {9, 0x7f, 0, "past the end"},
        {0, 0x93, 5, "too short"},
    };
    for (size_t k = 0; k < DG_ARRAY_LEN(damage); k++) {
        uint8_t copy[256];
        memcpy(copy, f, n);
        copy[damage[k].at] = damage[k].value;
        write_file(path, copy, damage[k].len ? damage[k].len : n);
        dg_npy a;
        capture cap;
        capture_begin(&cap);
        const dg_status st = dg_npy_read_f32(path, &a);
        char *log = capture_end(&cap);
        ck_assert_int_eq(st, DG_STATUS_ERR_FORMAT);
        expect_one_error(log, path, damage[k].what);
    }
    dg_free(f);

    path_of(path, sizeof(path), "absent.npy");
    dg_npy a;
    capture cap;
    capture_begin(&cap);
    const dg_status st = dg_npy_read_f32(path, &a);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_IO);
    expect_one_error(log, path, "No such file");
}
END_TEST

START_TEST(npy_write_failure_is_io_error) {
    char path[128];
    path_of(path, sizeof(path), "nowhere/x.npy");
    const float x[2] = {1, 2};
    const int64_t shape[1] = {2};
    capture cap;
    capture_begin(&cap);
    const dg_status st = dg_npy_write_f32(path, 1, shape, x);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_IO);
    expect_one_error(log, path, "No such file");
}
END_TEST

/* A header asking for more pixels than dg_image_max_pixels is refused
 * before anything is decoded or allocated (a 30000 x 30000 PNG of a few
 * hundred bytes used to cost 2.7 GB, or abort under a memory limit); the
 * limit is DGSEG_MAX_IMAGE_PIXELS when set. */
START_TEST(images_above_the_pixel_limit_are_refused_from_their_header) {
    static const uint8_t png[] = { /* IHDR 30000 x 30000 gray, one small IDAT, IEND */
            0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
            0x44, 0x52, 0x00, 0x00, 0x75, 0x30, 0x00, 0x00, 0x75, 0x30, 0x08, 0x00, 0x00, 0x00,
            0x00, 0x43, 0x4c, 0xa7, 0x66, 0x00, 0x00, 0x00, 0x0b, 0x49, 0x44, 0x41, 0x54, 0x78,
            0x9c, 0x63, 0x60, 0x40, 0x05, 0x00, 0x00, 0x10, 0x00, 0x01, 0x39, 0xbd, 0x8f, 0x65,
            0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
    static const uint8_t jpg[] = {0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8, 0x75, 0x30, 0x75, 0x30, 1, 1,
            0x11, 0, 0xFF, 0xD9};
    char p[128], j[128];
    path_of(p, sizeof(p), "huge.png");
    path_of(j, sizeof(j), "huge.jpg");
    write_file(p, png, sizeof(png));
    write_file(j, jpg, sizeof(jpg));
    dg_image img;
    capture cap;
    capture_begin(&cap);
    ck_assert_int_eq(dg_image_read(p, &img), DG_STATUS_ERR_FORMAT);
    char *log = capture_end(&cap);
    expect_one_error(log, p, "30000x30000 pixels, above the decoded-image limit");
    capture_begin(&cap);
    ck_assert_int_eq(dg_image_read(j, &img), DG_STATUS_ERR_FORMAT);
    log = capture_end(&cap);
    expect_one_error(log, j, "30000x30000 pixels, above the decoded-image limit");
    dg_label_png l;
    capture_begin(&cap);
    ck_assert_int_eq(dg_label_read_png(p, &l), DG_STATUS_ERR_FORMAT);
    log = capture_end(&cap);
    expect_one_error(log, p, "30000x30000 pixels, above the decoded-image limit");
}
END_TEST

/* DGSEG_MAX_IMAGE_PIXELS sets the limit (read once per process: this
 * forked test reads it first). */
START_TEST(the_pixel_limit_comes_from_the_environment) {
    char p[128];
    dg_image img;
    capture cap;
    char *log;
    setenv("DGSEG_MAX_IMAGE_PIXELS", "100", 1);
    dg_image small;
    make_pattern(&small, 8, 16, 3);
    path_of(p, sizeof(p), "small.png");
    ck_assert_int_eq(dg_image_write_png(p, &small), DG_STATUS_OK);
    capture_begin(&cap);
    ck_assert_int_eq(dg_image_read(p, &img), DG_STATUS_ERR_FORMAT);
    log = capture_end(&cap);
    expect_one_error(log, p, "16x8 pixels, above the decoded-image limit of 100");
    unsetenv("DGSEG_MAX_IMAGE_PIXELS");
    dg_image_free(&small);
}
END_TEST

Suite *image_io_suite(void) {
    Suite *s = suite_create("image_io");
    TCase *img = tcase_create("image");
    tcase_add_unchecked_fixture(img, make_dir, remove_dir);
    tcase_set_timeout(img, 30);
    tcase_add_test(img, image_png_round_trip_is_exact);
    tcase_add_test(img, images_above_the_pixel_limit_are_refused_from_their_header);
    tcase_add_test(img, the_pixel_limit_comes_from_the_environment);
    tcase_add_test(img, image_pure_red_pixel_stays_red);
    tcase_add_test(img, image_jpeg_round_trip_is_close);
    tcase_add_test(img, image_gray_and_16bit_pngs_read_as_rgb8);
    tcase_add_test(img, image_truncated_png_and_jpeg_are_format_errors);
    tcase_add_test(img, image_non_images_are_format_errors);
    tcase_add_test(img, image_missing_file_and_directory_are_io_errors);
    tcase_add_test(img, image_write_failures_are_io_errors_and_leave_no_temp);
    tcase_add_test(img, resize_nearest_exact_uses_pixel_centres);
    tcase_add_test(img, resize_bilinear_matches_half_pixel_formula);
    tcase_add_test(img, resize_bicubic_and_area_match_hand_values);
    tcase_add_test(img, to_tensor_normalises_per_channel_planar);
    suite_add_tcase(s, img);

    TCase *lbl = tcase_create("label");
    tcase_add_unchecked_fixture(lbl, make_dir, remove_dir);
    tcase_set_timeout(lbl, 30);
    tcase_add_test(lbl, label_paletted_returns_indices_not_colours);
    tcase_add_test(lbl, label_low_bit_palettes_unpack_to_indices);
    tcase_add_test(lbl, label_gray_values_are_not_rescaled);
    tcase_add_test(lbl, label_interlaced_png_reads_in_raster_order);
    tcase_add_test(lbl, label_16bit_samples_keep_values_above_255);
    tcase_add_test(lbl, label_cityscapes_palette_write_reads_back);
    tcase_add_test(lbl, label_corrupt_files_are_format_errors);
    tcase_add_test(lbl, png_write_failures_are_io_errors);
    suite_add_tcase(s, lbl);

    TCase *npy = tcase_create("npy");
    tcase_add_unchecked_fixture(npy, make_dir, remove_dir);
    tcase_add_test(npy, npy_bytes_match_numpy_arange_1x2x3);
    tcase_add_test(npy, npy_header_padding_matches_numpy);
    tcase_add_test(npy, npy_round_trip_is_bit_exact);
    tcase_add_test(npy, npy_reader_accepts_numpy_variants);
    tcase_add_test(npy, npy_reader_rejects_bad_files);
    tcase_add_test(npy, npy_write_failure_is_io_error);
    suite_add_tcase(s, npy);
    return s;
}
