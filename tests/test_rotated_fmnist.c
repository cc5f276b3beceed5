/* tests/test_rotated_fmnist.c -- IDX reader and MD5 (data/idx.h) and the
 * Rotated Fashion-MNIST benchmark (data/rotated_fmnist.h, docs/datasets.md §12).
 *
 * IDX: MD5 against the RFC 1321 vectors; plain and gzip round trips of
 * files written here (gzip through zlib's gzopen/gzwrite); every truncation
 * of a plain file, truncated gzip streams, trailing bytes, wrong magic and a
 * missing file each give one clean message naming the file.
 * Benchmark: the Debian files load (70,000 images, 6,000 / 1,000 per class,
 * decompressed MD5s of §12.1) once in an unchecked fixture; domain sizes,
 * disjointness and union; the seed-0 permutation and the splits reproduced
 * from the §12.2 formulas written out here (not dg_rng); θ = 0 identity;
 * exact 90° / 180° maps; split sizes; determinism.
 * Shape letters: N (images), H = W = 28 (pixels). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <zlib.h>

#include "common.h"
#include "data/idx.h"
#include "data/holdout.h"
#include "data/rotated_fmnist.h"

#define HW DG_RFMNIST_HW
#define PX DG_RFMNIST_PIXELS

static char dir[64];
static void make_dir(void) { make_tmpdir(dir, "rfmnist"); }
static void remove_dir(void) { remove_tree(dir, 1); }

static int count_error_lines(const char *log) {
    int n = 0;
    for (const char *p = log; (p = strstr(p, "error")) != NULL; p++) n++;
    return n;
}

static void expect_one_error(char *log, const char *path) {
    ck_assert_msg(count_lines(log) == 1 && count_error_lines(log) >= 1,
            "expected one error line, got:\n%s", log);
    ck_assert_msg(strstr(log, path) != NULL, "message does not name %s:\n%s", path, log);
    dg_free(log);
}

/* ---- the §12.2 formulas, written out independently of nets/core -------- */

static uint64_t ref_mix(uint64_t x) {
    uint64_t z = x + UINT64_C(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static uint64_t ref_next(uint64_t *state) {
    const uint64_t v = ref_mix(*state);
    *state += UINT64_C(0x9E3779B97F4A7C15);
    return v;
}

static uint64_t ref_below(uint64_t *state, uint64_t n) {
    const uint64_t t = (UINT64_MAX - n + 1) % n; /* (2^64 - n) mod n */
    uint64_t r;
    do {
        r = ref_next(state);
    } while (r < t);
    return r % n;
}

/* Identity 0 .. n-1 shuffled on stream (purpose, index) seeded by seed. */
static int64_t *ref_shuffled(int64_t n, uint64_t seed, uint64_t purpose, uint64_t index) {
    uint64_t state = ref_mix(seed ^ ref_mix(purpose << 32 | index));
    int64_t *a = dg_xmalloc((size_t)n * sizeof(*a));
    for (int64_t i = 0; i < n; i++) a[i] = i;
    for (int64_t i = n - 1; i >= 1; i--) {
        const int64_t j = (int64_t)ref_below(&state, (uint64_t)i + 1);
        const int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
    return a;
}

/* ---- IDX -------------------------------------------------------------- */

START_TEST(md5_matches_rfc1321_vectors) {
    static const char *const vec[][2] = {
            {"", "d41d8cd98f00b204e9800998ecf8427e"},
            {"a", "0cc175b9c0f1b6a831c399e269772661"},
            {"abc", "900150983cd24fb0d6963f7d28e17f72"},
            {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
            {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
            {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                    "d174ab98d277d9f5a5611c2c9f419d9f"},
            {"1234567890123456789012345678901234567890123456789012345678901234567890"
             "1234567890",
                    "57edf4a22be3c955ac49da2e2107b67a"},
    };
    for (size_t i = 0; i < DG_ARRAY_LEN(vec); i++) {
        uint8_t d[16];
        char hex[33];
        dg_idx_md5(vec[i][0], strlen(vec[i][0]), d);
        dg_idx_md5_hex(d, hex);
        ck_assert_msg(!strcmp(hex, vec[i][1]), "md5(\"%s\") = %s, want %s", vec[i][0], hex,
                vec[i][1]);
    }
}
END_TEST

/* An IDX file of unsigned bytes in memory (dg_free it); *n gets its size. */
static uint8_t *make_idx(int ndims, const uint32_t *dims, uint64_t seed, size_t *n) {
    size_t numel = 1;
    for (int i = 0; i < ndims; i++) numel *= dims[i];
    const size_t hdr = 4 + 4 * (size_t)ndims;
    uint8_t *b = dg_xmalloc(hdr + numel);
    b[0] = 0;
    b[1] = 0;
    b[2] = DG_IDX_TYPE_U8;
    b[3] = (uint8_t)ndims;
    for (int i = 0; i < ndims; i++)
        for (int k = 0; k < 4; k++) b[4 + 4 * i + k] = (uint8_t)(dims[i] >> (24 - 8 * k));
    dg_rng r;
    dg_rng_init(&r, seed, 0, 0);
    for (size_t i = 0; i < numel; i++) b[hdr + i] = (uint8_t)dg_rng_next(&r);
    *n = hdr + numel;
    return b;
}

static void write_gz(const char *path, const void *buf, size_t n) {
    gzFile f = gzopen(path, "wb");
    DG_ASSERT(f != NULL);
    if (n) DG_ASSERT(gzwrite(f, buf, (unsigned)n) == (int)n);
    DG_ASSERT(gzclose(f) == Z_OK);
}

START_TEST(idx_round_trip_plain_and_gzip) {
    const uint32_t dims3[3] = {5, 3, 7};
    const uint32_t dims1[1] = {11};
    const uint32_t *dims[2] = {dims3, dims1};
    const int nd[2] = {3, 1};
    for (int f = 0; f < 2; f++) {
        size_t n;
        uint8_t *b = make_idx(nd[f], dims[f], 10 + (uint64_t)f, &n);
        uint8_t want_md5[16];
        dg_idx_md5(b, n, want_md5);
        for (int gz = 0; gz < 2; gz++) {
            char path[128];
            snprintf(path, sizeof(path), "%s/rt%d%s", dir, f, gz ? ".gz" : "");
            if (gz) write_gz(path, b, n);
            else write_file(path, b, n);
            dg_idx a;
            ck_assert_int_eq(dg_idx_read(path, &a), DG_STATUS_OK);
            ck_assert_uint_eq(a.magic, 0x800u | (unsigned)nd[f]);
            ck_assert_int_eq(a.ndims, nd[f]);
            int64_t numel = 1;
            for (int i = 0; i < nd[f]; i++) {
                ck_assert_int_eq(a.dims[i], dims[f][i]);
                numel *= dims[f][i];
            }
            ck_assert_int_eq(a.numel, numel);
            ck_assert_int_eq(a.file_bytes, (int64_t)n);
            ck_assert_mem_eq(a.data, b + 4 + 4 * nd[f], (size_t)numel);
            ck_assert_mem_eq(a.md5, want_md5, 16);
            dg_idx_free(&a);
            ck_assert_ptr_null(a.bytes);
        }
        dg_free(b);
    }
}
END_TEST

/* dg_idx_read of path must fail with want and one message naming path. */
static void expect_read_error(const char *path, dg_status want) {
    dg_idx a;
    memset(&a, 0x5a, sizeof(a));
    capture cap;
    capture_begin(&cap);
    const dg_status st = dg_idx_read(path, &a);
    char *log = capture_end(&cap);
    ck_assert_msg(st == want, "%s: status %d, want %d; log:\n%s", path, st, want, log);
    ck_assert_ptr_null(a.bytes);
    ck_assert_int_eq(a.numel, 0);
    expect_one_error(log, path);
}

START_TEST(idx_truncated_files_are_format_errors) {
    const uint32_t dims[3] = {4, 6, 5};
    size_t n;
    uint8_t *b = make_idx(3, dims, 3, &n);
    char path[128];
    snprintf(path, sizeof(path), "%s/cut", dir);
    for (size_t cut = 0; cut < n; cut++) {
        write_file(path, b, cut);
        expect_read_error(path, DG_STATUS_ERR_FORMAT);
    }
    /* One trailing byte. */
    uint8_t *longer = dg_xmalloc(n + 1);
    memcpy(longer, b, n);
    longer[n] = 7;
    write_file(path, longer, n + 1);
    expect_read_error(path, DG_STATUS_ERR_FORMAT);
    char gzpath[128];
    snprintf(gzpath, sizeof(gzpath), "%s/trailing.gz", dir);
    write_gz(gzpath, longer, n + 1);
    expect_read_error(gzpath, DG_STATUS_ERR_FORMAT);
    dg_free(longer);
    /* Gzip streams cut anywhere after the gzip header, and one whose data
     * check is corrupted. */
    snprintf(gzpath, sizeof(gzpath), "%s/full.gz", dir);
    write_gz(gzpath, b, n);
    size_t gn;
    uint8_t *gzb = (uint8_t *)read_file(gzpath, &gn);
    snprintf(gzpath, sizeof(gzpath), "%s/cut.gz", dir);
    for (size_t cut = 11; cut < gn; cut++) {
        write_file(gzpath, gzb, cut);
        expect_read_error(gzpath, DG_STATUS_ERR_FORMAT);
    }
    gzb[gn - 6] ^= 0xff; /* CRC-32 */
    write_file(gzpath, gzb, gn);
    expect_read_error(gzpath, DG_STATUS_ERR_FORMAT);
    dg_free(gzb);
    dg_free(b);
}
END_TEST

/* A 34-byte file whose header promises 25.9 GB (fuzz_idx found it): a
 * clean format error without allocating the promise, so it holds under an
 * address-space limit far below it (not applied under AddressSanitizer,
 * whose shadow memory needs the address space). */
START_TEST(idx_header_promising_more_than_the_file_holds_is_a_format_error) {
    const uint8_t b[34] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 1, 0, 0, 0, 3, 3, 3,
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};
    char path[128];
    snprintf(path, sizeof(path), "%s/promise", dir);
    write_file(path, b, sizeof(b));
#if !defined(__SANITIZE_ADDRESS__)
    const struct rlimit lim = {.rlim_cur = (rlim_t)8 << 30, .rlim_max = (rlim_t)8 << 30};
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &lim), 0); /* this forked test only */
#endif
    expect_read_error(path, DG_STATUS_ERR_FORMAT);
}
END_TEST

START_TEST(idx_wrong_magic_and_missing_file_are_clean_errors) {
    const uint32_t dims[2] = {3, 4};
    size_t n;
    uint8_t *b = make_idx(2, dims, 4, &n);
    /* Nonzero first bytes, float type, 0 and too many dimensions. */
    const uint8_t bad[][4] = {{1, 0, 8, 2}, {0, 1, 8, 2}, {0, 0, 0x0d, 2}, {0, 0, 8, 0},
            {0, 0, 8, DG_IDX_MAX_DIMS + 1}};
    char path[128];
    for (size_t i = 0; i < DG_ARRAY_LEN(bad); i++) {
        memcpy(b, bad[i], 4);
        snprintf(path, sizeof(path), "%s/magic%zu", dir, i);
        write_file(path, b, n);
        expect_read_error(path, DG_STATUS_ERR_FORMAT);
        snprintf(path, sizeof(path), "%s/magic%zu.gz", dir, i);
        write_gz(path, b, n);
        expect_read_error(path, DG_STATUS_ERR_FORMAT);
    }
    snprintf(path, sizeof(path), "%s/no-such-file.gz", dir);
    expect_read_error(path, DG_STATUS_ERR_IO);
    dg_free(b);
}
END_TEST

START_TEST(fmnist_init_rejects_wrong_files_naming_them) {
    /* Missing directory: the first file is named. */
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/none", dir);
    dg_rotated_fmnist ds;
    capture cap;
    capture_begin(&cap);
    dg_status st = dg_rotated_fmnist_init(&ds, missing, 0, false);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_IO);
    ck_assert_ptr_null(ds.perm);
    expect_one_error(log, "none/train-images-idx3-ubyte.gz");
    /* A well-formed IDX file of the wrong size. */
    const uint32_t dims[3] = {2, 28, 28};
    size_t n;
    uint8_t *b = make_idx(3, dims, 5, &n);
    char path[128];
    snprintf(path, sizeof(path), "%s/train-images-idx3-ubyte.gz", dir);
    write_gz(path, b, n);
    dg_free(b);
    capture_begin(&cap);
    st = dg_rotated_fmnist_init(&ds, dir, 0, false);
    log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_FORMAT);
    ck_assert_ptr_null(ds.pool_images);
    expect_one_error(log, path);
}
END_TEST

/* ---- rotation --------------------------------------------------------- */

static void random_image(uint8_t *img, uint64_t seed) {
    dg_rng r;
    dg_rng_init(&r, seed, 0, 0);
    for (int i = 0; i < PX; i++) img[i] = (uint8_t)dg_rng_next(&r);
}

START_TEST(rotate_zero_is_identity) {
    uint8_t src[PX], dst[PX];
    random_image(src, 1);
    memset(dst, 0x5a, sizeof(dst));
    dg_rotated_fmnist_rotate(src, dst, 0.0);
    ck_assert_mem_eq(dst, src, PX);
}
END_TEST

START_TEST(rotate_90_maps_bottom_row_to_right_column) {
    uint8_t src[PX], dst[PX];
    random_image(src, 2);
    for (int x = 0; x < HW; x++) src[(HW - 1) * HW + x] = (uint8_t)(101 + x);
    dg_rotated_fmnist_rotate(src, dst, 90.0);
    /* Counter-clockwise as displayed: the bottom row, read left to right,
     * becomes the right-hand column read bottom to top. */
    for (int y = 0; y < HW; y++)
        ck_assert_int_eq(dst[y * HW + HW - 1], 101 + (HW - 1 - y));
    /* The whole image: dst(x, y) = src(27 - y, x); 180°: src(27 - x, 27 - y). */
    for (int y = 0; y < HW; y++)
        for (int x = 0; x < HW; x++)
            ck_assert_int_eq(dst[y * HW + x], src[x * HW + (HW - 1 - y)]);
    dg_rotated_fmnist_rotate(src, dst, 180.0);
    for (int y = 0; y < HW; y++)
        for (int x = 0; x < HW; x++)
            ck_assert_int_eq(dst[y * HW + x], src[(HW - 1 - y) * HW + (HW - 1 - x)]);
}
END_TEST

START_TEST(rotate_45_of_constant_image_zeroes_corners_keeps_centre) {
    uint8_t src[PX], dst[PX];
    memset(src, 200, sizeof(src));
    dg_rotated_fmnist_rotate(src, dst, 45.0);
    /* Corner (0, 0) samples (13.5, 13.5 - 13.5 * sqrt 2) = (13.5, -5.59): 0. */
    ck_assert_int_eq(dst[0], 0);
    ck_assert_int_eq(dst[HW - 1], 0);
    ck_assert_int_eq(dst[PX - 1], 0);
    ck_assert_int_eq(dst[13 * HW + 13], 200);
    ck_assert_int_eq(dst[14 * HW + 5], 200);
    /* Pixel (13, 0): xs = 13.5 + (-0.5 + 13.5) / sqrt 2, ys = 13.5 + (-0.5 - 13.5) / sqrt 2:
     * ys = 3.6005 inside, xs = 22.69 inside: full value. */
    ck_assert_int_eq(dst[13], 200);
    /* Pixel (0, 7): xs = 13.5 - 7 / sqrt 2 = 8.55, ys = 13.5 - 20 / sqrt 2 = -0.642: only
     * the row-0 neighbours are inside, with weight ys - floor(ys) = 0.358: 71.6 -> 72. */
    ck_assert_int_eq(dst[7 * HW + 0], 72);
}
END_TEST

/* ---- the benchmark on the Debian files --------------------------------- */

static dg_rotated_fmnist real;
static dg_status real_status;

static void load_real(void) {
    real_status = dg_rotated_fmnist_init(&real, NULL, 0, true);
}
static void free_real(void) { dg_rotated_fmnist_free(&real); }

START_TEST(fmnist_debian_files_load_with_md5s) {
    ck_assert_int_eq(real_status, DG_STATUS_OK);
    ck_assert_ptr_nonnull(real.pool_images);
    int64_t count[2][DG_RFMNIST_CLASSES] = {{0}};
    for (int64_t k = 0; k < DG_RFMNIST_N_POOL; k++) {
        ck_assert_int_lt(real.pool_labels[k], DG_RFMNIST_CLASSES);
        count[k >= DG_RFMNIST_N_TRAIN][real.pool_labels[k]]++;
    }
    for (int c = 0; c < DG_RFMNIST_CLASSES; c++) {
        ck_assert_int_eq(count[0][c], 6000);
        ck_assert_int_eq(count[1][c], 1000);
    }
    /* Images are not blank: background 0 and some ink. */
    int64_t ink = 0;
    for (int64_t i = 0; i < (int64_t)DG_RFMNIST_N_POOL * PX; i++) ink += real.pool_images[i] > 0;
    ck_assert_int_gt(ink, (int64_t)DG_RFMNIST_N_POOL * PX / 4);
    ck_assert_int_lt(ink, (int64_t)DG_RFMNIST_N_POOL * PX);
}
END_TEST

START_TEST(fmnist_domains_partition_the_pool) {
    ck_assert_int_eq(real_status, DG_STATUS_OK);
    const int64_t want[DG_RFMNIST_DOMAINS] = {11667, 11667, 11667, 11667, 11666, 11666};
    uint8_t *seen = dg_xcalloc(DG_RFMNIST_N_POOL, 1);
    int64_t total = 0;
    for (int d = 0; d < DG_RFMNIST_DOMAINS; d++) {
        ck_assert_int_eq(real.n[d], want[d]);
        ck_assert_int_eq(dg_rotated_fmnist_angle(d), 15 * d);
        for (int64_t k = 0; k < real.n[d]; k++) {
            const int64_t p = real.pool_index[d][k];
            ck_assert_int_eq(p, real.perm[d + 6 * k]);
            ck_assert_msg(!seen[p], "pool image %lld in two domains", (long long)p);
            seen[p] = 1;
            ck_assert_int_eq(real.labels[d][k], real.pool_labels[p]);
        }
        total += real.n[d];
    }
    ck_assert_int_eq(total, DG_RFMNIST_N_POOL);
    for (int64_t p = 0; p < DG_RFMNIST_N_POOL; p++) ck_assert(seen[p]);
    dg_free(seen);
    /* Domain 0 is unrotated; every domain holds its pool images rotated. */
    for (int64_t k = 0; k < real.n[0]; k++)
        ck_assert_mem_eq(real.images[0] + k * PX, real.pool_images + real.pool_index[0][k] * PX,
                PX);
    uint8_t rot[PX];
    for (int d = 1; d < DG_RFMNIST_DOMAINS; d++) {
        for (int64_t k = 0; k < real.n[d]; k += 997) {
            dg_rotated_fmnist_rotate(real.pool_images + real.pool_index[d][k] * PX, rot, 15.0 * d);
            ck_assert_mem_eq(real.images[d] + k * PX, rot, PX);
        }
    }
    float x[PX];
    dg_rotated_fmnist_get(&real, 3, 5, x);
    for (int i = 0; i < PX; i++) ck_assert(x[i] == (float)real.images[3][5 * PX + i] / 255.0f);
}
END_TEST

START_TEST(fmnist_permutation_matches_spec_formulas) {
    ck_assert_int_eq(real_status, DG_STATUS_OK);
    int64_t *want = ref_shuffled(DG_RFMNIST_N_POOL, 0, 1, 0);
    ck_assert_mem_eq(real.perm, want, DG_RFMNIST_N_POOL * sizeof(int64_t));
    dg_free(want);
    /* A different data.seed gives a different permutation. */
    int64_t *other = ref_shuffled(DG_RFMNIST_N_POOL, 1, 1, 0);
    ck_assert(memcmp(real.perm, other, DG_RFMNIST_N_POOL * sizeof(int64_t)) != 0);
    dg_free(other);
}
END_TEST

START_TEST(fmnist_splits_have_spec_sizes_and_order) {
    ck_assert_int_eq(real_status, DG_STATUS_OK);
    for (uint64_t seed = 0; seed < 3; seed++) {
        for (int d = 0; d < DG_RFMNIST_DOMAINS; d++) {
            dg_holdout_split sp;
            dg_holdout_split_init(&sp, real.n[d], d, seed);
            ck_assert_int_eq(sp.n_out, 2333);
            ck_assert_int_eq(sp.n_in, d < 4 ? 9334 : 9333);
            ck_assert_ptr_eq(sp.out, sp.order);
            ck_assert_ptr_eq(sp.in, sp.order + sp.n_out);
            int64_t *want = ref_shuffled(real.n[d], seed, 2, (uint64_t)d);
            ck_assert_mem_eq(sp.order, want, (size_t)real.n[d] * sizeof(int64_t));
            dg_free(want);
            uint8_t *seen = dg_xcalloc((size_t)real.n[d], 1);
            for (int64_t k = 0; k < real.n[d]; k++) {
                ck_assert(sp.order[k] >= 0 && sp.order[k] < real.n[d] && !seen[sp.order[k]]);
                seen[sp.order[k]] = 1;
            }
            dg_free(seen);
            dg_holdout_split_free(&sp);
            ck_assert_ptr_null(sp.order);
        }
    }
    /* Streams differ between domains and trials. */
    dg_holdout_split a, b, c;
    dg_holdout_split_init(&a, 11666, 4, 0);
    dg_holdout_split_init(&b, 11666, 5, 0);
    dg_holdout_split_init(&c, 11666, 4, 1);
    ck_assert(memcmp(a.order, b.order, 11666 * sizeof(int64_t)) != 0);
    ck_assert(memcmp(a.order, c.order, 11666 * sizeof(int64_t)) != 0);
    dg_holdout_split_free(&a);
    dg_holdout_split_free(&b);
    dg_holdout_split_free(&c);
}
END_TEST

START_TEST(fmnist_build_is_deterministic) {
    ck_assert_int_eq(real_status, DG_STATUS_OK);
    dg_rotated_fmnist again;
    dg_rotated_fmnist_build(&again, real.pool_images, real.pool_labels, 0);
    ck_assert_mem_eq(again.perm, real.perm, DG_RFMNIST_N_POOL * sizeof(int64_t));
    for (int d = 0; d < DG_RFMNIST_DOMAINS; d++) {
        ck_assert_int_eq(again.n[d], real.n[d]);
        ck_assert_mem_eq(again.images[d], real.images[d], (size_t)real.n[d] * PX);
        ck_assert_mem_eq(again.labels[d], real.labels[d], (size_t)real.n[d]);
    }
    dg_rotated_fmnist_free(&again);
    ck_assert_ptr_null(again.perm);
    dg_rotated_fmnist_build(&again, real.pool_images, real.pool_labels, 1);
    ck_assert(memcmp(again.perm, real.perm, DG_RFMNIST_N_POOL * sizeof(int64_t)) != 0);
    ck_assert(memcmp(again.images[2], real.images[2], (size_t)real.n[2] * PX) != 0);
    dg_rotated_fmnist_free(&again);
}
END_TEST

Suite *rotated_fmnist_suite(void) {
    Suite *s = suite_create("rotated_fmnist");
    TCase *idx = tcase_create("idx");
    tcase_add_unchecked_fixture(idx, make_dir, remove_dir);
    tcase_set_timeout(idx, 30);
    tcase_add_test(idx, md5_matches_rfc1321_vectors);
    tcase_add_test(idx, idx_round_trip_plain_and_gzip);
    tcase_add_test(idx, idx_truncated_files_are_format_errors);
    tcase_add_test(idx, idx_header_promising_more_than_the_file_holds_is_a_format_error);
    tcase_add_test(idx, idx_wrong_magic_and_missing_file_are_clean_errors);
    tcase_add_test(idx, fmnist_init_rejects_wrong_files_naming_them);
    suite_add_tcase(s, idx);

    TCase *rot = tcase_create("rotate");
    tcase_add_test(rot, rotate_zero_is_identity);
    tcase_add_test(rot, rotate_90_maps_bottom_row_to_right_column);
    tcase_add_test(rot, rotate_45_of_constant_image_zeroes_corners_keeps_centre);
    suite_add_tcase(s, rot);

    TCase *real_tc = tcase_create("debian_files");
    tcase_add_unchecked_fixture(real_tc, load_real, free_real);
    tcase_set_timeout(real_tc, 30);
    tcase_add_test(real_tc, fmnist_debian_files_load_with_md5s);
    tcase_add_test(real_tc, fmnist_domains_partition_the_pool);
    tcase_add_test(real_tc, fmnist_permutation_matches_spec_formulas);
    tcase_add_test(real_tc, fmnist_splits_have_spec_sizes_and_order);
    tcase_add_test(real_tc, fmnist_build_is_deterministic);
    suite_add_tcase(s, real_tc);
    return s;
}
