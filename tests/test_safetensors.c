/* tests/test_safetensors.c -- the safetensors reader and writer
 * (nets/core/safetensors.h): a file handcrafted byte by byte from the
 * format description (F32, F16, BF16, F64, I64, U8, a scalar and an empty
 * tensor), every header validation error with its message, byte-flip,
 * truncation and extension fuzzing (every result OK or one clean error),
 * the writer's output parsed back (insertion order, metadata, 8-byte header
 * alignment) and the checked reads optimizers use.
 *
 * Files live in a temporary directory made by the unchecked fixture and
 * removed after the test case, even when a test fails. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common.h"
#include "nets/core/safetensors.h"

static char dir[64];

static void make_dir(void) { make_tmpdir(dir, "st"); }

static void remove_dir(void) { remove_tree(dir, 0); }

static void path_of(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/%s", dir, name);
}

static void put_le64(uint8_t *b, uint64_t v) {
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
}

/* A file: length field `hlen_field`, header text, then data_len bytes
 * (data, or zeros when data is NULL). */
static void write_st(const char *path, uint64_t hlen_field, const char *header, size_t hlen,
        const void *data, size_t data_len) {
    uint8_t *buf = dg_xcalloc(8 + hlen + data_len + 1, 1);
    put_le64(buf, hlen_field);
    memcpy(buf + 8, header, hlen);
    if (data) memcpy(buf + 8 + hlen, data, data_len);
    write_file(path, buf, 8 + hlen + data_len);
    dg_free(buf);
}

static uint32_t bits32(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof(b));
    return b;
}

/* ---- the handcrafted file ------------------------------------------------ */

static const char handcrafted_header[] =
    "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"caf\\u00e9 \xc3\xbc\"},"
    "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"h\":{\"dtype\":\"F16\",\"shape\":[10],\"data_offsets\":[24,44]},"
    "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[44,50]},"
    "\"d\":{\"dtype\":\"F64\",\"shape\":[3],\"data_offsets\":[50,74]},"
    "\"n\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[74,82]},"
    "\"e\":{\"dtype\":\"U8\",\"shape\":[0,5],\"data_offsets\":[82,82]},"
    "\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[82,85]}}";

static const float hc_w[6] = {1.f, -2.5f, 0.1f, 1e-38f, -0.f, 3e38f};
static const uint16_t hc_h[10] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x83ff,
                                  0x7c00, 0xfe00, 0x3555, 0x0400, 0x8000};
static const uint16_t hc_b[3] = {0x3f80, 0xc040, 0x4049};
static const double hc_d[3] = {0.1, -1e300, 1e-50};
static const int64_t hc_n = -1234567890123;
static const uint8_t hc_u[3] = {7, 8, 255};

/* Writes the handcrafted file; pad != 0 pads the header with spaces. */
static void write_handcrafted(const char *path, int pad) {
    uint8_t data[85];
    memcpy(data, hc_w, 24);
    for (int i = 0; i < 10; i++) data[24 + 2 * i] = hc_h[i] & 0xff, data[25 + 2 * i] = hc_h[i] >> 8;
    for (int i = 0; i < 3; i++) data[44 + 2 * i] = hc_b[i] & 0xff, data[45 + 2 * i] = hc_b[i] >> 8;
    memcpy(data + 50, hc_d, 24);
    memcpy(data + 74, &hc_n, 8);
    memcpy(data + 82, hc_u, 3);
    char header[sizeof(handcrafted_header) + 8];
    size_t hlen = strlen(handcrafted_header);
    memcpy(header, handcrafted_header, hlen);
    while (pad && hlen % 8) header[hlen++] = ' ';
    write_st(path, hlen, header, hlen, data, sizeof(data));
}

START_TEST(st_handcrafted_file_reads_with_conversions) {
    char path[128];
    path_of(path, sizeof(path), "handcrafted.safetensors");
    write_handcrafted(path, _i);
    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
    ck_assert_uint_eq(dg_tensor_reader_count(&r), 7);
    static const char *order[7] = {"w", "h", "b", "d", "n", "e", "u"};
    for (size_t i = 0; i < 7; i++) ck_assert_str_eq(dg_tensor_reader_at(&r, i)->name, order[i]);
    ck_assert_uint_eq(r.data_len, 85);

    ck_assert_str_eq(dg_tensor_reader_metadata(&r, "format"), "pt");
    ck_assert_str_eq(dg_tensor_reader_metadata(&r, "note"), "caf\xc3\xa9 \xc3\xbc");
    ck_assert_ptr_null(dg_tensor_reader_metadata(&r, "missing"));
    ck_assert_ptr_null(dg_tensor_reader_find(&r, "zzz"));

    const dg_st_tensor *t = dg_tensor_reader_find(&r, "w");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, DG_ST_F32);
    ck_assert_int_eq(t->ndims, 2);
    ck_assert_int_eq(t->shape[0], 2);
    ck_assert_int_eq(t->shape[1], 3);
    ck_assert_uint_eq(t->numel, 6);
    float w[6];
    ck_assert_int_eq(dg_tensor_reader_read_as_f32(&r, t, w), DG_STATUS_OK);
    for (int i = 0; i < 6; i++) ck_assert_uint_eq(bits32(w[i]), bits32(hc_w[i]));

    /* F16: normals, the largest finite, subnormals (signed), inf, NaN, -0. */
    const float want_h[10] = {1.f, -2.f, 65504.f, 0x1p-24f, -0x3ffp-24f,
                              INFINITY, NAN, 0.333251953125f, 0x1p-14f, -0.f};
    float h[10];
    t = dg_tensor_reader_find(&r, "h");
    ck_assert_uint_eq(t->end - t->begin, 20);
    ck_assert_int_eq(dg_tensor_reader_read_as_f32(&r, t, h), DG_STATUS_OK);
    for (int i = 0; i < 10; i++) {
        if (i == 6) ck_assert_msg(isnan(h[i]), "F16 0xfe00 -> %g", h[i]);
        else ck_assert_msg(bits32(h[i]) == bits32(want_h[i]), "F16 [%d] got %.9g want %.9g", i,
                h[i], want_h[i]);
    }
    /* BF16 is the top half of an f32. */
    const float want_b[3] = {1.f, -3.f, 3.140625f};
    float b[3];
    ck_assert_int_eq(dg_tensor_reader_read_as_f32(&r, dg_tensor_reader_find(&r, "b"), b),
            DG_STATUS_OK);
    for (int i = 0; i < 3; i++) ck_assert_uint_eq(bits32(b[i]), bits32(want_b[i]));
    /* F64 rounds to nearest; out of range becomes inf, underflow 0. */
    float d[3];
    ck_assert_int_eq(dg_tensor_reader_read_f32(&r, "d", 1, (int64_t[]){3}, d), DG_STATUS_OK);
    ck_assert_uint_eq(bits32(d[0]), bits32(0.1f));
    ck_assert(isinf(d[1]) && d[1] < 0);
    ck_assert_uint_eq(bits32(d[2]), 0);

    int64_t n = 0;
    ck_assert_int_eq(dg_tensor_reader_read_i64(&r, "n", 0, NULL, &n), DG_STATUS_OK);
    ck_assert_int_eq(n, hc_n);
    t = dg_tensor_reader_find(&r, "n");
    ck_assert_int_eq(t->ndims, 0);
    ck_assert_uint_eq(t->numel, 1);

    t = dg_tensor_reader_find(&r, "e");
    ck_assert_uint_eq(t->numel, 0);
    ck_assert_int_eq(dg_tensor_reader_read_raw(&r, t, NULL), DG_STATUS_OK);
    uint8_t u[3] = {0};
    ck_assert_int_eq(dg_tensor_reader_read_raw(&r, dg_tensor_reader_find(&r, "u"), u),
            DG_STATUS_OK);
    ck_assert_mem_eq(u, hc_u, 3);

    /* Integers never read as f32. */
    capture c;
    capture_begin(&c);
    const dg_status s = dg_tensor_reader_read_as_f32(&r, dg_tensor_reader_find(&r, "u"), w);
    char *msg = capture_end(&c);
    ck_assert_int_eq(s, DG_STATUS_ERR_SHAPE);
    ck_assert_msg(strstr(msg, "tensor 'u': dtype U8 cannot be read as f32"), "%s", msg);
    dg_free(msg);
    dg_tensor_reader_close(&r);
    ck_assert_int_eq(r.is_open, 0);
    dg_tensor_reader_close(&r); /* twice is safe */
}
END_TEST

START_TEST(st_empty_header_object_is_a_valid_file) {
    char path[128];
    path_of(path, sizeof(path), "empty.safetensors");
    write_st(path, 8, "{}      ", 8, NULL, 0);
    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
    ck_assert_uint_eq(dg_tensor_reader_count(&r), 0);
    ck_assert_ptr_null(dg_tensor_reader_find(&r, "a"));
    dg_tensor_reader_close(&r);
    dg_tensor_reader zeroed;
    memset(&zeroed, 0, sizeof(zeroed));
    dg_tensor_reader_close(&zeroed); /* safe on a zeroed reader */
}
END_TEST

/* Metadata that is not UTF-8 (a config naming a Latin-1 path) must never
 * make a file dgseg cannot read back: such bytes are stored as \\xHH,
 * valid UTF-8 is stored as it is. */
START_TEST(st_metadata_that_is_not_utf8_is_escaped_and_reads_back) {
    char path[128];
    path_of(path, sizeof(path), "latin1.safetensors");
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    const float x[2] = {1.f, 2.f};
    const int64_t shape[1] = {2};
    dg_tensor_writer_add_f32(&w, "x", 1, shape, x);
    capture c;
    capture_begin(&c);
    dg_tensor_writer_set_metadata(&w, "config", "sources = gtav:/data/caf\xe9/gtav\xff");
    dg_tensor_writer_set_metadata(&w, "utf8", "caf\xc3\xa9");
    char *log = capture_end(&c);
    ck_assert_int_eq(dg_tensor_writer_write(&w, path), DG_STATUS_OK);
    dg_tensor_writer_free(&w);
    ck_assert_msg(strstr(log, "'config'") && !strstr(log, "'utf8'"), "%s", log);
    dg_free(log);
    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
    ck_assert_str_eq(dg_tensor_reader_metadata(&r, "config"),
            "sources = gtav:/data/caf\\xe9/gtav\\xff");
    ck_assert_str_eq(dg_tensor_reader_metadata(&r, "utf8"), "caf\xc3\xa9");
    dg_tensor_reader_close(&r);
}
END_TEST

/* ---- validation errors ----------------------------------------------------- */

typedef struct bad_header {
    const char *header;
    size_t data_len;
    const char *expect; /* substring of the one logged line */
} bad_header;

#define T1(dtype, shape, offs) \
    "{\"a\":{\"dtype\":" dtype ",\"shape\":" shape ",\"data_offsets\":" offs "}}"

static const bad_header bad_headers[] = {
    {T1("\"F17\"", "[1]", "[0,4]"), 4, "tensor 'a': unknown dtype 'F17'"},
    {T1("\"F32\"", "[-1]", "[0,4]"), 4,
     "tensor 'a': shape element 0 is not a non-negative integer"},
    {T1("\"F32\"", "[1.5]", "[0,4]"), 4, "tensor 'a': shape element 0 is not"},
    {T1("\"F32\"", "[1,\"2\"]", "[0,8]"), 8, "tensor 'a': shape element 1 is not"},
    {T1("7", "[1]", "[0,4]"), 4, "tensor 'a': no \"dtype\" string"},
    {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a': no \"dtype\" string"},
    {T1("\"F32\"", "3", "[0,4]"), 4, "tensor 'a': no \"shape\" array"},
    {T1("\"F32\"", "[1]", "[0,4,8]"), 8, "tensor 'a': \"data_offsets\" is not an array of two"},
    {T1("\"F32\"", "[1]", "[0]"), 4, "tensor 'a': \"data_offsets\" is not an array of two"},
    {T1("\"F32\"", "[1]", "[0,1e300]"), 4, "tensor 'a': \"data_offsets\" is not"},
    {T1("\"F32\"", "[1]", "[0.5,4]"), 4, "tensor 'a': \"data_offsets\" is not"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'a': \"data_offsets\" is not"},
    {T1("\"F32\"", "[1]", "[4,0]"), 4, "tensor 'a': data_offsets [4, 0] end before they begin"},
    {"{\"backbone.conv1.weight\":{\"dtype\":\"F32\",\"shape\":[64,3,7,7],"
     "\"data_offsets\":[0,100]}}",
     100, "tensor 'backbone.conv1.weight': data_offsets [0, 100] hold 100 bytes but F32 shape "
     "[64, 3, 7, 7] needs 37632"},
    {T1("\"F32\"", "[2]", "[0,8]"), 4, "tensor 'a': data_offsets [0, 8] extend beyond the data "
     "buffer of 4 bytes"},
    {T1("\"F32\"", "[4294967296,4294967296,4294967296]", "[0,4]"), 4,
     "tensor 'a': F32 shape [4294967296, 4294967296, 4294967296] is too large"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
     "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]"},
    {"{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "tensor 'b': data_offsets [0, 4] overlap tensor 'a' [0, 4]"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12,
     "tensor 'b': data_offsets [8, 12] leave a hole: bytes [4, 8)"},
    {T1("\"F32\"", "[1]", "[4,8]"), 8,
     "tensor 'a': data_offsets [4, 8] leave a hole: bytes [0, 4)"},
    {T1("\"F32\"", "[1]", "[0,4]"), 8, "the last 4 bytes of the data buffer (after tensor 'a') "
     "belong to no tensor"},
    {"{}", 3, "the last 3 bytes of the data buffer (after the header) belong to no tensor"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
     "tensor 'a' appears twice in the header"},
    {"{\"a\":5}", 0, "tensor 'a': header entry is not an object"},
    {"{\"a\\nb\\u001b[31m\":5}", 0, "tensor 'a?b?[31m': header entry is not an object"},
    {"{\"__metadata__\":{\"k\":1}}", 0, "\"__metadata__\" key 'k' does not hold a string"},
    {"{\"__metadata__\":[\"k\"]}", 0, "\"__metadata__\" is not an object"},
    {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "\"__metadata__\" key 'k' appears twice"},
    {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "\"__metadata__\" appears twice"},
    {"{\"a\":{\"dtype\":\"F32\",", 0, "header is not valid JSON"},
    {"{\"a\":1,}", 0, "header is not valid JSON"},
    {"{} x", 0, "header has bytes after its JSON object (header byte 3)"},
    {"{}{}", 0, "header has bytes after its JSON object"},
    {"[]", 0, "header does not start with '{'"},
    {" {}", 0, "header does not start with '{'"},
    {"{\"\xff\":1}", 0, "header byte 2 (0xff) is not valid UTF-8 JSON text"},
    {"{\"\xc0\xaf\":1}", 0, "header byte 2 (0xc0) is not valid UTF-8"},      /* overlong */
    {"{\"\xed\xa0\x80\":1}", 0, "header byte 2 (0xed) is not valid UTF-8"},  /* surrogate */
    {"{\"a\x01\":1}", 0, "header byte 3 (0x01) is not valid UTF-8 JSON text"},
};

START_TEST(st_reader_rejects_malformed_header_with_one_message) {
    const bad_header *b = &bad_headers[_i];
    char path[128];
    path_of(path, sizeof(path), "bad.safetensors");
    write_st(path, strlen(b->header), b->header, strlen(b->header), NULL, b->data_len);
    dg_tensor_reader r;
    capture c;
    capture_begin(&c);
    const dg_status s = dg_tensor_reader_open(&r, path);
    char *msg = capture_end(&c);
    ck_assert_msg(s == DG_STATUS_ERR_FORMAT, "case %d (%s): status %s", _i, b->header,
            dg_status_str(s));
    ck_assert_msg(count_lines(msg) == 1, "case %d: want one line, got:\n%s", _i, msg);
    ck_assert_msg(strncmp(msg, "dgseg: error: ", 14) == 0 && strstr(msg, path) != NULL,
            "case %d: %s", _i, msg);
    ck_assert_msg(strstr(msg, b->expect) != NULL, "case %d: want '%s' in:\n%s", _i, b->expect, msg);
    ck_assert_int_eq(r.is_open, 0);
    dg_tensor_reader_close(&r);
    dg_free(msg);
}
END_TEST

typedef struct bad_frame {
    uint64_t hlen_field;
    size_t file_size; /* bytes of the file written (a valid header is 16 + 8) */
    dg_status status;
    const char *expect;
} bad_frame;

static const bad_frame bad_frames[] = {
    {0, 24, DG_STATUS_ERR_FORMAT, "header length 0 is not in [1, 100000000]"},
    {UINT64_MAX, 24, DG_STATUS_ERR_FORMAT, "header length 18446744073709551615 is not in"},
    {100000001, 24, DG_STATUS_ERR_FORMAT, "header length 100000001 is not in"},
    {17, 24, DG_STATUS_ERR_FORMAT, "header length 17 exceeds the 16 bytes after the length"},
    {16, 20, DG_STATUS_ERR_FORMAT, "header length 16 exceeds the 12 bytes"},
    {16, 5, DG_STATUS_ERR_FORMAT, "file is 5 bytes, shorter than the 8-byte header length"},
    {16, 0, DG_STATUS_ERR_FORMAT, "file is 0 bytes"},
};

START_TEST(st_reader_rejects_bad_length_field_and_short_files) {
    const bad_frame *b = &bad_frames[_i];
    char path[128];
    path_of(path, sizeof(path), "frame.safetensors");
    uint8_t buf[24];
    put_le64(buf, b->hlen_field);
    memcpy(buf + 8, "{}              ", 16);
    write_file(path, buf, b->file_size);
    dg_tensor_reader r;
    capture c;
    capture_begin(&c);
    const dg_status s = dg_tensor_reader_open(&r, path);
    char *msg = capture_end(&c);
    ck_assert_msg(s == b->status, "case %d: status %s", _i, dg_status_str(s));
    ck_assert_msg(count_lines(msg) == 1 && strstr(msg, path), "case %d:\n%s", _i, msg);
    ck_assert_msg(strstr(msg, b->expect) != NULL, "case %d: want '%s' in:\n%s", _i, b->expect, msg);
    dg_tensor_reader_close(&r);
    dg_free(msg);
}
END_TEST

START_TEST(st_reader_reports_unreadable_paths_as_io_errors) {
    char path[128];
    const char *names[2] = {"does-not-exist.safetensors", ""};
    const char *expect[2] = {"cannot open: No such file or directory", "is a folder"};
    for (int i = 0; i < 2; i++) {
        path_of(path, sizeof(path), names[i]);
        dg_tensor_reader r;
        capture c;
        capture_begin(&c);
        const dg_status s = dg_tensor_reader_open(&r, path);
        char *msg = capture_end(&c);
        ck_assert_int_eq(s, DG_STATUS_ERR_IO);
        ck_assert_msg(count_lines(msg) == 1 && strstr(msg, path) && strstr(msg, expect[i]), "%s",
                msg);
        dg_tensor_reader_close(&r);
        dg_free(msg);
    }
}
END_TEST

/* ---- fuzzing --------------------------------------------------------------- */

/* A valid file with every kind of entry, written by the writer. */
static void write_fuzz_seed(const char *path) {
    static const float w[6] = {1, 2, 3, 4, 5, 6};
    static const uint16_t h[3] = {0x3c00, 0x4000, 0x7c00};
    static const uint16_t bf[2] = {0x3f80, 0x4049};
    static const double d[2] = {0.5, -1e40};
    static const uint8_t mask[5] = {1, 0, 1, 1, 0};
    dg_tensor_writer wr;
    dg_tensor_writer_init(&wr);
    dg_tensor_writer_set_metadata(&wr, "format_version", "1");
    dg_tensor_writer_set_metadata(&wr, "config", "[model]\nname = \"x\"");
    dg_tensor_writer_add_f32(&wr, "conv.weight", 2, (int64_t[]){2, 3}, w);
    dg_tensor_writer_add(&wr, "h", DG_ST_F16, 1, (int64_t[]){3}, h);
    dg_tensor_writer_add(&wr, "bf", DG_ST_BF16, 1, (int64_t[]){2}, bf);
    dg_tensor_writer_add(&wr, "d", DG_ST_F64, 1, (int64_t[]){2}, d);
    dg_tensor_writer_add_scalar_i64(&wr, "step", 42);
    dg_tensor_writer_add(&wr, "mask", DG_ST_U8, 1, (int64_t[]){5}, mask);
    dg_tensor_writer_add_f32(&wr, "empty", 1, (int64_t[]){0}, NULL);
    ck_assert_int_eq(dg_tensor_writer_write(&wr, path), DG_STATUS_OK);
    dg_tensor_writer_free(&wr);
}

/* Opens path; an OK file must read completely with nothing logged, a
 * failure must be a format error with exactly one message naming path. */
static dg_status open_and_read_all(const char *path) {
    dg_tensor_reader r;
    capture c;
    capture_begin(&c);
    dg_status s = dg_tensor_reader_open(&r, path);
    if (s == DG_STATUS_OK) {
        for (size_t i = 0; i < dg_tensor_reader_count(&r); i++) {
            const dg_st_tensor *t = dg_tensor_reader_at(&r, i);
            ck_assert(t->end - t->begin == t->numel * dg_st_dtype_size(t->dtype));
            ck_assert(t->end <= r.data_len);
            uint8_t *raw = dg_xmalloc(t->end - t->begin + 1);
            ck_assert_int_eq(dg_tensor_reader_read_raw(&r, t, raw), DG_STATUS_OK);
            if (dg_st_dtype_is_f32_convertible(t->dtype)) {
                float *f = dg_xmalloc(t->numel * sizeof(float) + 1);
                ck_assert_int_eq(dg_tensor_reader_read_as_f32(&r, t, f), DG_STATUS_OK);
                dg_free(f);
            }
            dg_free(raw);
        }
    }
    dg_tensor_reader_close(&r);
    char *msg = capture_end(&c);
    if (s == DG_STATUS_OK) ck_assert_msg(msg[0] == '\0', "OK but logged:\n%s", msg);
    else ck_assert_msg(s == DG_STATUS_ERR_FORMAT && count_lines(msg) == 1 && strstr(msg, path),
            "status %s, log:\n%s", dg_status_str(s), msg);
    dg_free(msg);
    return s;
}

START_TEST(st_fuzzed_files_give_ok_or_one_clean_error) {
    char seed_path[128], path[128];
    path_of(seed_path, sizeof(seed_path), "seed.safetensors");
    path_of(path, sizeof(path), "fuzz.safetensors");
    write_fuzz_seed(seed_path);
    size_t n;
    uint8_t *orig = (uint8_t *)read_file(seed_path, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | orig[i];
    ck_assert_uint_lt(8 + hlen, n);
    ck_assert_int_eq(open_and_read_all(seed_path), DG_STATUS_OK);

    uint8_t *buf = dg_xmalloc(n + 32);
    dg_rng rng;
    dg_rng_init(&rng, 2024, 0, 11);
    static const char interesting[] = "\"{}[],:0123456789-e. \\\x00\xff\x7f\x80";
    int n_ok = 0, n_err = 0;
    for (int it = 0; it < 700; it++) {
        memcpy(buf, orig, n);
        size_t len = n;
        const int kind = it % 7;
        bool must_fail = false, must_pass = false;
        if (kind <= 2) { /* 1-3 flips in the length field or the header */
            for (int k = 0; k <= kind; k++)
                buf[dg_rng_below(&rng, 8 + hlen)] ^= (uint8_t)(1 + dg_rng_below(&rng, 255));
        } else if (kind == 3) { /* an "interesting" byte in the header */
            buf[8 + dg_rng_below(&rng, hlen)] =
                    (uint8_t)interesting[dg_rng_below(&rng, sizeof(interesting) - 1)];
        } else if (kind == 4) { /* a flip in the data: content is free */
            buf[8 + hlen + dg_rng_below(&rng, n - 8 - hlen)] ^= 0x5a;
            must_pass = true;
        } else if (kind == 5) { /* truncation anywhere */
            len = (size_t)dg_rng_below(&rng, n);
            must_fail = true;
        } else { /* extension by 1..16 bytes */
            const size_t extra = 1 + (size_t)dg_rng_below(&rng, 16);
            for (size_t k = 0; k < extra; k++) buf[n + k] = (uint8_t)dg_rng_next(&rng);
            len = n + extra;
            must_fail = true;
        }
        write_file(path, buf, len);
        const dg_status s = open_and_read_all(path);
        if (must_fail) ck_assert_msg(s != DG_STATUS_OK, "mutation %d (kind %d) accepted", it, kind);
        if (must_pass) ck_assert_msg(s == DG_STATUS_OK, "data flip %d rejected", it);
        if (s == DG_STATUS_OK) n_ok++;
        else n_err++;
    }
    /* Both outcomes occur: header flips inside string values stay valid. */
    ck_assert_int_gt(n_ok, 100);
    ck_assert_int_gt(n_err, 300);
    dg_free(buf);
    dg_free(orig);
}
END_TEST

/* ---- writer ---------------------------------------------------------------- */

START_TEST(st_writer_output_parses_back_in_insertion_order) {
    char path[128];
    path_of(path, sizeof(path), "written.safetensors");
    float a[15];
    for (int i = 0; i < 15; i++) a[i] = (float)i * 0.25f - 1.f;
    a[3] = -0.f;
    a[4] = NAN;
    const int64_t ids[4] = {INT64_MIN, -1, 0, INT64_MAX};
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    dg_tensor_writer_set_metadata(&w, "format_version", "0");
    dg_tensor_writer_add_f32(&w, "zeta.weight", 2, (int64_t[]){3, 5}, a);
    dg_tensor_writer_set_metadata(&w, "config", "[optim]\nmethod = sam ; \"quoted\" \\ \xc3\xa9");
    dg_tensor_writer_add_i64(&w, "alpha.ids", 1, (int64_t[]){4}, ids);
    dg_tensor_writer_add_scalar_u64(&w, "optim.dgsam.rng", UINT64_MAX);
    dg_tensor_writer_add_scalar_i64(&w, "optim.sgd.t", -7);
    dg_tensor_writer_add_f32(&w, "beta.empty", 2, (int64_t[]){0, 3}, NULL);
    dg_tensor_writer_set_metadata(&w, "format_version", "1"); /* replaces */
    ck_assert_int_eq(dg_tensor_writer_write(&w, path), DG_STATUS_OK);
    dg_tensor_writer_free(&w);

    /* The raw layout: aligned header, space padding, data right after. */
    size_t n;
    char *file = read_file(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | (uint8_t)file[i];
    ck_assert_uint_eq(hlen % 8, 0);
    ck_assert_uint_eq(n, 8 + hlen + 60 + 32 + 8 + 8);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(file + 8, hlen, &end, 0);
    ck_assert_ptr_nonnull(root);
    for (const char *p = end; p < file + 8 + hlen; p++) ck_assert_int_eq(*p, ' ');
    ck_assert_uint_lt((size_t)(file + 8 + hlen - end), 8);
    static const char *keys[6] = {"__metadata__", "zeta.weight", "alpha.ids", "optim.dgsam.rng",
                                  "optim.sgd.t", "beta.empty"};
    int k = 0;
    for (const cJSON *c = root->child; c; c = c->next, k++) ck_assert_str_eq(c->string, keys[k]);
    ck_assert_int_eq(k, 6);
    const cJSON *meta = root->child;
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(meta, "format_version")->valuestring, "1");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(root->child->next, "dtype")->valuestring,
            "F32");
    cJSON_Delete(root);
    ck_assert_mem_eq(file + 8 + hlen, a, sizeof(a));
    dg_free(file);

    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
    ck_assert_str_eq(dg_tensor_reader_metadata(&r, "config"),
            "[optim]\nmethod = sam ; \"quoted\" \\ \xc3\xa9");
    ck_assert_uint_eq(r.n_meta, 2);
    uint64_t prev_end = 0;
    for (size_t i = 0; i < dg_tensor_reader_count(&r); i++) {
        const dg_st_tensor *t = dg_tensor_reader_at(&r, i);
        ck_assert_str_eq(t->name, keys[i + 1]);
        ck_assert_uint_eq(t->begin, prev_end);
        prev_end = t->end;
    }
    float got[15];
    ck_assert_int_eq(dg_tensor_reader_read_f32(&r, "zeta.weight", 2, (int64_t[]){3, 5}, got),
            DG_STATUS_OK);
    ck_assert_mem_eq(got, a, sizeof(a));
    int64_t gids[4];
    ck_assert_int_eq(dg_tensor_reader_read_i64(&r, "alpha.ids", 1, (int64_t[]){4}, gids),
            DG_STATUS_OK);
    ck_assert_mem_eq(gids, ids, sizeof(ids));
    uint64_t rng = 0;
    int64_t t = 0;
    ck_assert_int_eq(dg_tensor_reader_read_u64(&r, "optim.dgsam.rng", 0, NULL, &rng), DG_STATUS_OK);
    ck_assert_int_eq(dg_tensor_reader_read_i64(&r, "optim.sgd.t", 0, NULL, &t), DG_STATUS_OK);
    ck_assert_uint_eq(rng, UINT64_MAX);
    ck_assert_int_eq(t, -7);
    ck_assert_int_eq(dg_tensor_reader_read_f32(&r, "beta.empty", 2, (int64_t[]){0, 3}, NULL),
            DG_STATUS_OK);
    dg_tensor_reader_close(&r);
}
END_TEST

START_TEST(st_writer_pads_every_header_length_to_eight_bytes) {
    /* Names of 1..8 characters cover every residue of the JSON length. */
    char path[128], name[16];
    path_of(path, sizeof(path), "pad.safetensors");
    const float v = 1.5f;
    int residues = 0;
    for (int len = 1; len <= 8; len++) {
        memset(name, 'n', (size_t)len);
        name[len] = '\0';
        dg_tensor_writer w;
        dg_tensor_writer_init(&w);
        dg_tensor_writer_add_f32(&w, name, 1, (int64_t[]){1}, &v);
        ck_assert_int_eq(dg_tensor_writer_write(&w, path), DG_STATUS_OK);
        dg_tensor_writer_free(&w);
        size_t n;
        char *file = read_file(path, &n);
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | (uint8_t)file[i];
        ck_assert_uint_eq(hlen % 8, 0);
        ck_assert_uint_eq(n, 8 + hlen + 4);
        /* The JSON has no spaces of its own: the first one starts the padding. */
        const char *sp = memchr(file + 8, ' ', hlen);
        const size_t json_len = sp ? (size_t)(sp - (file + 8)) : hlen;
        ck_assert_int_eq(file[8 + json_len - 1], '}');
        for (size_t i = json_len; i < hlen; i++) ck_assert_int_eq(file[8 + i], ' ');
        residues |= 1 << (json_len % 8);
        dg_free(file);
        dg_tensor_reader r;
        ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
        float got = 0;
        ck_assert_int_eq(dg_tensor_reader_read_f32(&r, name, 1, (int64_t[]){1}, &got),
                DG_STATUS_OK);
        ck_assert(got == v);
        dg_tensor_reader_close(&r);
    }
    ck_assert_int_eq(residues, 0xff); /* unpadded JSON lengths hit all 8 residues */
}
END_TEST

START_TEST(st_writer_replaces_file_and_leaves_no_temporary) {
    char path[128];
    path_of(path, sizeof(path), "replace.safetensors");
    write_file(path, "old contents", 12);
    const float v[2] = {3, 4};
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    dg_tensor_writer_add_f32(&w, "v", 1, (int64_t[]){2}, v);
    ck_assert_int_eq(dg_tensor_writer_write(&w, path), DG_STATUS_OK);
    dg_tensor_writer_free(&w);
    dg_tensor_writer_free(&w); /* safe on a freed (zeroed) writer */
    DIR *d = opendir(dir);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        ck_assert_msg(strstr(e->d_name, ".tmp.") == NULL, "left behind: %s", e->d_name);
        files++;
    }
    closedir(d);
    ck_assert_int_ge(files, 1);
    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
    ck_assert_uint_eq(dg_tensor_reader_count(&r), 1);
    dg_tensor_reader_close(&r);
}
END_TEST

START_TEST(st_checked_reads_name_the_tensor) {
    char path[128];
    path_of(path, sizeof(path), "optim.safetensors");
    float m[6] = {1, 2, 3, 4, 5, 6};
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    dg_tensor_writer_add_f32(&w, "optim.sgd.momentum", 1, (int64_t[]){6}, m);
    dg_tensor_writer_add_scalar_i64(&w, "optim.lookahead.j", 3);
    ck_assert_int_eq(dg_tensor_writer_write(&w, path), DG_STATUS_OK);
    dg_tensor_writer_free(&w);

    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
    float got[6] = {0};
    int64_t j = 0;
    struct {
        dg_status want;
        const char *expect;
    } cases[4] = {
        {DG_STATUS_ERR_MISSING, "tensor 'optim.adam.exp_avg' is missing"},
        {DG_STATUS_ERR_SHAPE,
         "tensor 'optim.sgd.momentum': shape [6] in the file, expected [2, 3]"},
        {DG_STATUS_ERR_SHAPE, "tensor 'optim.lookahead.j': dtype I64, expected U64"},
        {DG_STATUS_ERR_SHAPE, "tensor 'optim.lookahead.j': shape [] in the file, expected [1]"},
    };
    for (int i = 0; i < 4; i++) {
        capture c;
        capture_begin(&c);
        dg_status s;
        uint64_t u;
        if (i == 0) s = dg_tensor_reader_read_f32(&r, "optim.adam.exp_avg", 1, (int64_t[]){6}, got);
        else if (i == 1)
            s = dg_tensor_reader_read_f32(&r, "optim.sgd.momentum", 2, (int64_t[]){2, 3}, got);
        else if (i == 2) s = dg_tensor_reader_read_u64(&r, "optim.lookahead.j", 0, NULL, &u);
        else s = dg_tensor_reader_read_i64(&r, "optim.lookahead.j", 1, (int64_t[]){1}, &j);
        char *msg = capture_end(&c);
        ck_assert_msg(s == cases[i].want, "case %d: %s", i, dg_status_str(s));
        ck_assert_msg(count_lines(msg) == 1 && strstr(msg, cases[i].expect) && strstr(msg, path),
                "case %d:\n%s", i, msg);
        dg_free(msg);
    }
    for (int i = 0; i < 6; i++) ck_assert(got[i] == 0.f); /* nothing written on failure */
    ck_assert_int_eq(dg_tensor_reader_read_f32(&r, "optim.sgd.momentum", 1, (int64_t[]){6}, got),
            DG_STATUS_OK);
    ck_assert_mem_eq(got, m, sizeof(m));
    ck_assert_int_eq(dg_tensor_reader_read_i64(&r, "optim.lookahead.j", 0, NULL, &j), DG_STATUS_OK);
    ck_assert_int_eq(j, 3);
    dg_tensor_reader_close(&r);
}
END_TEST

START_TEST(st_writer_duplicate_name_aborts) {
    const float v = 1;
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    dg_tensor_writer_add_f32(&w, "a", 0, NULL, &v);
    dg_tensor_writer_add_f32(&w, "a", 0, NULL, &v);
}
END_TEST

Suite *safetensors_suite(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("format");
    tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, st_handcrafted_file_reads_with_conversions, 0, 2);
    tcase_add_test(tc, st_empty_header_object_is_a_valid_file);
    tcase_add_test(tc, st_metadata_that_is_not_utf8_is_escaped_and_reads_back);
    tcase_add_loop_test(tc, st_reader_rejects_malformed_header_with_one_message, 0,
            (int)DG_ARRAY_LEN(bad_headers));
    tcase_add_loop_test(tc, st_reader_rejects_bad_length_field_and_short_files, 0,
            (int)DG_ARRAY_LEN(bad_frames));
    tcase_add_test(tc, st_reader_reports_unreadable_paths_as_io_errors);
    tcase_add_test(tc, st_fuzzed_files_give_ok_or_one_clean_error);
    tcase_add_test(tc, st_writer_output_parses_back_in_insertion_order);
    tcase_add_test(tc, st_writer_pads_every_header_length_to_eight_bytes);
    tcase_add_test(tc, st_writer_replaces_file_and_leaves_no_temporary);
    tcase_add_test(tc, st_checked_reads_name_the_tensor);
    dg_tcase_add_abort_test(tc, st_writer_duplicate_name_aborts);
    suite_add_tcase(s, tc);
    return s;
}
