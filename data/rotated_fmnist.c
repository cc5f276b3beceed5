/* data/rotated_fmnist.c -- Rotated Fashion-MNIST construction
 * (see rotated_fmnist.h; docs/datasets.md §12.1-§12.4).
 * Shape letters: N (images), H = W = 28 (pixels). */
#include "data/rotated_fmnist.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "data/idx.h"

#define RF_PI 3.14159265358979323846
#define RF_CENTRE 13.5 /* (28 - 1) / 2 */

/* One of the four files: name, magic, count, decompressed MD5 (§12.1). */
typedef struct rf_file {
    const char *name;
    uint32_t magic;
    int64_t count;
    const char *md5;
} rf_file;

static const rf_file rf_files[4] = {
        {"train-images-idx3-ubyte.gz", 0x803, DG_RFMNIST_N_TRAIN,
                "f4a8712d7a061bf5bd6d2ca38dc4d50a"},
        {"train-labels-idx1-ubyte.gz", 0x801, DG_RFMNIST_N_TRAIN,
                "9018921c3c673c538a1fc5bad174d6f9"},
        {"t10k-images-idx3-ubyte.gz", 0x803, DG_RFMNIST_N_TEST,
                "8181f5470baa50b63fa0f6fddb340f0a"},
        {"t10k-labels-idx1-ubyte.gz", 0x801, DG_RFMNIST_N_TEST,
                "15d484375f8d13e6eb1aabb0c3f46965"},
};

int dg_rotated_fmnist_angle(int domain) {
    DG_ASSERT(domain >= 0 && domain < DG_RFMNIST_DOMAINS);
    return 15 * domain;
}

void dg_rotated_fmnist_domain_name(int domain, char *buf, size_t size) {
    snprintf(buf, size, "rot%d", dg_rotated_fmnist_angle(domain));
}

/* Reads rf_files[i] from dir and checks magic, shape, labels and MD5. */
static dg_status read_checked(const char *dir, int i, bool verify_md5, dg_idx *a) {
    const rf_file *rf = &rf_files[i];
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, rf->name);
    dg_status st = dg_idx_read(path, a);
    if (st != DG_STATUS_OK) return st;
    const bool images = rf->magic == 0x803;
    bool ok = a->magic == rf->magic && a->dims[0] == rf->count;
    if (images) ok = ok && a->dims[1] == DG_RFMNIST_HW && a->dims[2] == DG_RFMNIST_HW;
    if (!ok) {
        dg_log_error("%s: magic 0x%08x with %lld items; want 0x%08x with %lld %s", path,
                a->magic, (long long)a->dims[0], rf->magic, (long long)rf->count,
                images ? "28x28 images" : "labels");
        dg_idx_free(a);
        return DG_STATUS_ERR_FORMAT;
    }
    if (!images) {
        for (int64_t k = 0; k < a->numel; k++) {
            if (a->data[k] >= DG_RFMNIST_CLASSES) {
                dg_log_error("%s: label %d at item %lld is not 0 .. 9", path, a->data[k],
                        (long long)k);
                dg_idx_free(a);
                return DG_STATUS_ERR_FORMAT;
            }
        }
    }
    if (verify_md5) {
        char hex[33];
        dg_idx_md5_hex(a->md5, hex);
        if (strcmp(hex, rf->md5) != 0) {
            dg_log_error("%s: MD5 of the decompressed data is %s, want %s", path, hex, rf->md5);
            dg_idx_free(a);
            return DG_STATUS_ERR_FORMAT;
        }
    }
    return DG_STATUS_OK;
}

dg_status dg_rotated_fmnist_init(dg_rotated_fmnist *ds, const char *dir, uint64_t data_seed,
        bool verify_md5) {
    memset(ds, 0, sizeof(*ds));
    if (!dir) dir = DG_RFMNIST_DEFAULT_DIR;
    dg_idx f[4];
    memset(f, 0, sizeof(f));
    dg_status st = DG_STATUS_OK;
    for (int i = 0; i < 4 && st == DG_STATUS_OK; i++) st = read_checked(dir, i, verify_md5, &f[i]);
    if (st == DG_STATUS_OK) {
        uint8_t *images = dg_xmalloc((size_t)DG_RFMNIST_N_POOL * DG_RFMNIST_PIXELS);
        uint8_t *labels = dg_xmalloc(DG_RFMNIST_N_POOL);
        const size_t train_px = (size_t)DG_RFMNIST_N_TRAIN * DG_RFMNIST_PIXELS;
        memcpy(images, f[0].data, train_px);
        memcpy(images + train_px, f[2].data, (size_t)DG_RFMNIST_N_TEST * DG_RFMNIST_PIXELS);
        memcpy(labels, f[1].data, DG_RFMNIST_N_TRAIN);
        memcpy(labels + DG_RFMNIST_N_TRAIN, f[3].data, DG_RFMNIST_N_TEST);
        dg_rotated_fmnist_build(ds, images, labels, data_seed);
        dg_free(images);
        dg_free(labels);
    }
    for (int i = 0; i < 4; i++) dg_idx_free(&f[i]);
    return st;
}

/* The §12.3 step 4 sampling of one angle, shared by every image: for each
 * output pixel the four neighbour offsets (-1 when outside the image) and
 * their bilinear weights, in the order (x0, y0), (x0+1, y0), (x0, y0+1),
 * (x0+1, y0+1). */
typedef struct rf_map {
    int32_t off[DG_RFMNIST_PIXELS][4]; /* (H * W, 4) */
    double w[DG_RFMNIST_PIXELS][4];    /* (H * W, 4) */
} rf_map;

static int32_t offset_or_none(int64_t x, int64_t y) {
    if (x < 0 || y < 0 || x >= DG_RFMNIST_HW || y >= DG_RFMNIST_HW) return -1;
    return (int32_t)(y * DG_RFMNIST_HW + x);
}

static void map_init(rf_map *m, double theta_deg) {
    const double t = theta_deg * (RF_PI / 180.0);
    const double ct = cos(t), st = sin(t);
    for (int y = 0; y < DG_RFMNIST_HW; y++) {
        for (int x = 0; x < DG_RFMNIST_HW; x++) {
            const int i = y * DG_RFMNIST_HW + x;
            const double dx = x - RF_CENTRE, dy = y - RF_CENTRE;
            const double xs = RF_CENTRE + ct * dx - st * dy;
            const double ys = RF_CENTRE + st * dx + ct * dy;
            const double fx0 = floor(xs), fy0 = floor(ys);
            const double ax = xs - fx0, ay = ys - fy0;
            m->w[i][0] = (1.0 - ax) * (1.0 - ay);
            m->w[i][1] = ax * (1.0 - ay);
            m->w[i][2] = (1.0 - ax) * ay;
            m->w[i][3] = ax * ay;
            for (int q = 0; q < 4; q++) m->off[i][q] = -1;
            if (fx0 >= -1.0 && fy0 >= -1.0 && fx0 < DG_RFMNIST_HW && fy0 < DG_RFMNIST_HW) {
                const int64_t x0 = (int64_t)fx0, y0 = (int64_t)fy0;
                m->off[i][0] = offset_or_none(x0, y0);
                m->off[i][1] = offset_or_none(x0 + 1, y0);
                m->off[i][2] = offset_or_none(x0, y0 + 1);
                m->off[i][3] = offset_or_none(x0 + 1, y0 + 1);
            }
        }
    }
}

static void map_apply(const rf_map *m, const uint8_t *src, uint8_t *dst) {
    for (int i = 0; i < DG_RFMNIST_PIXELS; i++) {
        double p[4];
        for (int q = 0; q < 4; q++) p[q] = m->off[i][q] < 0 ? 0.0 : src[m->off[i][q]];
        double v = m->w[i][0] * p[0] + m->w[i][1] * p[1] + m->w[i][2] * p[2] + m->w[i][3] * p[3];
        v = floor(v + 0.5);
        dst[i] = (uint8_t)(v < 0.0 ? 0.0 : v > 255.0 ? 255.0 : v);
    }
}

void dg_rotated_fmnist_build(dg_rotated_fmnist *ds, const uint8_t *images,
        const uint8_t *labels, uint64_t data_seed) {
    memset(ds, 0, sizeof(*ds));
    const int64_t np = DG_RFMNIST_N_POOL;
    ds->data_seed = data_seed;
    ds->pool_images = dg_xmalloc((size_t)np * DG_RFMNIST_PIXELS);
    ds->pool_labels = dg_xmalloc((size_t)np);
    memcpy(ds->pool_images, images, (size_t)np * DG_RFMNIST_PIXELS);
    memcpy(ds->pool_labels, labels, (size_t)np);
    /* §12.3 step 2: shuffle on stream (1, 0). */
    ds->perm = dg_xmalloc((size_t)np * sizeof(*ds->perm));
    for (int64_t p = 0; p < np; p++) ds->perm[p] = p;
    dg_rng r;
    dg_rng_init(&r, data_seed, DG_RNG_FMNIST_POOL, 0);
    dg_rng_shuffle_i64(&r, ds->perm, (size_t)np);
    /* Step 3: position p goes to domain p mod 6; step 4: rotation, one
     * sampling map per angle. Single-threaded so that building in a forked
     * child (Check) never meets libgomp's fork hazard. */
    rf_map *map = dg_xmalloc(sizeof(*map));
    for (int d = 0; d < DG_RFMNIST_DOMAINS; d++) {
        const int64_t n = (np - d + DG_RFMNIST_DOMAINS - 1) / DG_RFMNIST_DOMAINS;
        ds->n[d] = n;
        ds->pool_index[d] = dg_xmalloc((size_t)n * sizeof(*ds->pool_index[d]));
        ds->images[d] = dg_xmalloc((size_t)n * DG_RFMNIST_PIXELS);
        ds->labels[d] = dg_xmalloc((size_t)n);
        const double theta = dg_rotated_fmnist_angle(d);
        for (int64_t k = 0; k < n; k++) {
            const int64_t idx = ds->perm[d + DG_RFMNIST_DOMAINS * k];
            ds->pool_index[d][k] = idx;
            ds->labels[d][k] = ds->pool_labels[idx];
        }
        map_init(map, theta);
        for (int64_t k = 0; k < n; k++)
            map_apply(map, ds->pool_images + ds->pool_index[d][k] * DG_RFMNIST_PIXELS,
                    ds->images[d] + k * DG_RFMNIST_PIXELS);
    }
    dg_free(map);
}

void dg_rotated_fmnist_free(dg_rotated_fmnist *ds) {
    dg_free(ds->pool_images);
    dg_free(ds->pool_labels);
    dg_free(ds->perm);
    for (int d = 0; d < DG_RFMNIST_DOMAINS; d++) {
        dg_free(ds->pool_index[d]);
        dg_free(ds->images[d]);
        dg_free(ds->labels[d]);
    }
    memset(ds, 0, sizeof(*ds));
}

void dg_rotated_fmnist_rotate(const uint8_t *src, uint8_t *dst, double theta_deg) {
    rf_map *m = dg_xmalloc(sizeof(*m));
    map_init(m, theta_deg);
    map_apply(m, src, dst);
    dg_free(m);
}

void dg_rotated_fmnist_get(const dg_rotated_fmnist *ds, int domain, int64_t k, float *dst) {
    DG_ASSERT(domain >= 0 && domain < DG_RFMNIST_DOMAINS && k >= 0 && k < ds->n[domain]);
    const uint8_t *img = ds->images[domain] + k * DG_RFMNIST_PIXELS;
    for (int i = 0; i < DG_RFMNIST_PIXELS; i++) dst[i] = (float)img[i] / 255.0f;
}
