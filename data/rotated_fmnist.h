/* data/rotated_fmnist.h -- the Rotated Fashion-MNIST benchmark
 * (docs/datasets.md §12): the 70,000-image pool read from the Debian package's
 * IDX files (§12.1), permuted on stream (DG_RNG_FMNIST_POOL, 0) seeded by
 * data.seed (§12.2), dealt into six domains rotated by 0, 15, ..., 75
 * degrees (§12.3); the per-trial in/out splits (§12.4) are data/holdout.h.
 * Built the DomainBed way (domainbed/datasets.py MultipleEnvironmentMNIST,
 * docs/datasets.md §11). Never touches oneDNN.
 * Shape letters: N (images), H = W = 28 (pixels). */
#ifndef DG_DATA_ROTATED_FMNIST_H
#define DG_DATA_ROTATED_FMNIST_H

#include <stdint.h>

#include "nets/core/common.h"

#define DG_RFMNIST_DOMAINS 6
#define DG_RFMNIST_CLASSES 10
#define DG_RFMNIST_HW 28                  /* image height and width */
#define DG_RFMNIST_PIXELS (28 * 28)
#define DG_RFMNIST_N_TRAIN 60000          /* train-* files */
#define DG_RFMNIST_N_TEST 10000           /* t10k-* files */
#define DG_RFMNIST_N_POOL 70000
#define DG_RFMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

/* Rotation angle of domain d (0 <= d < 6) in degrees: 15 * d. */
int dg_rotated_fmnist_angle(int domain);
/* The domain's name, "rot0" .. "rot75", into buf (16 bytes suffice): what
 * data.test_domains, checkpoints and reports call it. */
void dg_rotated_fmnist_domain_name(int domain, char *buf, size_t size);

/* The six rotated domains. Owns every array. */
typedef struct dg_rotated_fmnist {
    uint64_t data_seed;
    uint8_t *pool_images; /* (N_POOL, H, W) unrotated, file order (train then t10k) */
    uint8_t *pool_labels; /* (N_POOL) 0 .. 9 */
    int64_t *perm;        /* (N_POOL) permuted position -> pool index */
    int64_t n[DG_RFMNIST_DOMAINS];            /* 11,667 (domains 0-3), 11,666 (4-5) */
    int64_t *pool_index[DG_RFMNIST_DOMAINS];  /* (n[d]) pool index of item k = perm[d + 6k] */
    uint8_t *images[DG_RFMNIST_DOMAINS];      /* (n[d], H, W) rotated by angle(d) */
    uint8_t *labels[DG_RFMNIST_DOMAINS];      /* (n[d]) */
} dg_rotated_fmnist;

/* Reads the four IDX files of dir (DG_RFMNIST_DEFAULT_DIR when dir is NULL;
 * `data.fmnist_dir`), checks their shapes (60,000 / 10,000 images of 28x28,
 * matching label counts, labels 0 .. 9) and, when verify_md5 is true, the
 * MD5s of their decompressed bytes against §12.1, then builds the domains
 * (dg_rotated_fmnist_build). ds is overwritten; zeroed on error. Returns
 * DG_STATUS_OK, DG_STATUS_ERR_IO or DG_STATUS_ERR_FORMAT (one message
 * naming the file). */
dg_status dg_rotated_fmnist_init(dg_rotated_fmnist *ds, const char *dir, uint64_t data_seed,
        bool verify_md5);

/* Builds the domains from a pool given in memory: copies images
 * (N_POOL, H, W) and labels (N_POOL), permutes with the §12.2 shuffle on
 * stream (1, 0) seeded by data_seed, deals position p to domain p mod 6 and
 * rotates (§12.3). ds is overwritten. Cannot fail. */
void dg_rotated_fmnist_build(dg_rotated_fmnist *ds, const uint8_t *images,
        const uint8_t *labels, uint64_t data_seed);

/* Releases everything and zeroes ds; safe on a zeroed struct. */
void dg_rotated_fmnist_free(dg_rotated_fmnist *ds);

/* Rotates one image src (H, W) by theta_deg counter-clockwise as displayed
 * into dst (H, W) exactly as docs/datasets.md §12.3 step 4: inverse mapping about
 * the centre 13.5 in double, bilinear with zero outside, floor(v + 0.5),
 * clamp to 0 .. 255. src and dst must not overlap. */
void dg_rotated_fmnist_rotate(const uint8_t *src, uint8_t *dst, double theta_deg);

/* Network input of item k of domain d: x / 255 into dst (1, H, W). */
void dg_rotated_fmnist_get(const dg_rotated_fmnist *ds, int domain, int64_t k, float *dst);

#endif
