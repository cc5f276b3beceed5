/* data/loader.h -- batches for the trainers and evaluators: the samplers
 * (per-domain epochs, class-uniform epoch lists, sequential passes) and
 * background worker threads that load and augment whole batches into a
 * bounded queue (issue "Data" item 4; docs/datasets.md §7.3, §7.6, §12.2,
 * §12.5).
 *
 * A batch holds b samples of each of its S domains, domain-major: samples
 * [k*b, (k+1)*b) come from domain k, so DGSAM and multi-source training can
 * take the domain sub-batches. Sample loading is delegated to a
 * dg_sample_source (the dataset plus its augmentation); the loader decides
 * which samples make batch t and in which order, and gives every sample
 * its own augmentation stream (DG_RNG_AUGMENT, (epoch << 20) + position)
 * seeded by train.seed, so a given seed yields the same batches whatever
 * the number of workers.
 *
 * Training epochs (not sequential):
 *   - Plain: at the start of every epoch each domain's item list, in its
 *     given order, is shuffled with stream (DG_RNG_SAMPLER, domain); that
 *     stream continues from epoch to epoch (epoch e's order depends on the
 *     draws of epochs 0 .. e-1, which a resumed loader replays).
 *   - Class-uniform (segmentation, class_uniform_pct > 0, docs/datasets.md
 *     §7.3): the epoch list of domain d is built on stream
 *     (DG_RNG_CLASS_UNIFORM, epoch + (d << 24)): for each class with
 *     centroids, a shuffle of its centroid list taken cyclically for
 *     n_c = floor(N pct / C) items; then a shuffle of the N images taken
 *     cyclically for N - C n_c items; then a shuffle of the whole list.
 *     (Single source: index = epoch, exactly §12.2's registry.)
 *   Domain d's epoch list has L_d items; steps_per_epoch =
 *   floor(min_d L_d / b); all domains start a new epoch together and the
 *   leftover items of a list are not used in that epoch. Step q of an epoch
 *   takes list items [q b, (q+1) b) of every domain; the sample at slot
 *   k b + j has position q B + k b + j (B = S b) within the epoch.
 * Sequential passes (evaluation): one domain, its items in the given
 *   order, batches of b, the last batch possibly shorter; epoch 0,
 *   position = list index. The source decides the per-sample size; the
 *   samples of one batch must agree (use b = 1 for images of varying size).
 *
 * Shares (data-parallel training, app/dist.h): a training loader with
 *   shares = N > 1 draws exactly the batches of shares = 1 and loads only
 *   part `share` of each: per domain, the b / N consecutive slots
 *   [share b/N, (share+1) b/N) of that domain's b, domain-major as above
 *   (so the N parts of a batch, concatenated domain by domain, are the
 *   whole batch). Each sample keeps the position, sample id and
 *   augmentation stream it has in the whole batch, so what a sample is
 *   does not depend on N. b must be a multiple of N.
 *
 * Global sample ids (SAF) number the domains' item lists consecutively in
 * domain order: id = sum_{k<d} n_k + position in domain d's list.
 *
 * Bad samples: with DG_BAD_SAMPLE_FAIL the first load error stops the
 * loader and dg_loader_next returns it (the source already named the file).
 * With DG_BAD_SAMPLE_SKIP the sample is replaced by the next item of the
 * same domain list (cyclically; the replacement keeps the slot's
 * augmentation stream), each skip is logged as a warning and counted; a
 * domain whose items all fail stops the loader. Either way the worker
 * threads stop and are joined cleanly by dg_loader_free.
 *
 * Shape letters: B (samples per batch), C, H, W (per-sample tensor),
 * P (label entries per sample: H*W for segmentation, 1 for classification). */
#ifndef DG_DATA_LOADER_H
#define DG_DATA_LOADER_H

#include <stdbool.h>
#include <stdint.h>

#include "nets/core/common.h"

#define DG_LOADER_MAX_DOMAINS 16
#define DG_LOADER_MAX_CLASSES 64

/* One sample as the loader asks for it. */
typedef struct dg_sample_ref {
    int domain;        /* 0 .. S-1 */
    int64_t pos;       /* position in the domain's item list */
    int64_t index;     /* dataset item: items[pos] (or pos) */
    int64_t sample_id; /* global id */
    int32_t cy, cx;    /* class-uniform centroid in image coordinates; -1 = none */
} dg_sample_ref;

/* Where a source writes one sample. The buffers hold the source's
 * max_c * max_h * max_w floats and max_h * max_w labels (1 for
 * classification); the source sets h and w. */
typedef struct dg_sample_out {
    float *x;       /* (C, h, w) */
    int32_t *label; /* (h*w) segmentation, (1) classification */
    int h, w;
} dg_sample_out;

typedef struct dg_sample_source {
    /* Loads (and augments, drawing from rng) sample ref into out. Must be
     * callable from several threads at once. Returns DG_STATUS_OK or an
     * error it has already logged, naming the file at fault. */
    dg_status (*load)(void *ctx, const dg_sample_ref *ref, dg_rng *rng, dg_sample_out *out);
    void *ctx;
    int c;        /* channels */
    int max_h;    /* largest sample height */
    int max_w;    /* largest sample width */
    bool dense;   /* true: label has h*w entries (segmentation); false: 1 */
} dg_sample_source;

/* A class's centroids (docs/datasets.md §7.3). */
typedef struct dg_centroid {
    int64_t item;  /* position in the domain's item list */
    int32_t y, x;  /* image coordinates */
} dg_centroid;

typedef struct dg_class_centroids {
    int n_classes;                              /* C */
    int64_t n[DG_LOADER_MAX_CLASSES];           /* centroids per class */
    dg_centroid *c[DG_LOADER_MAX_CLASSES];      /* (n[k]) each, owned */
} dg_class_centroids;

/* Releases every list and zeroes cc; safe on a zeroed struct. */
void dg_class_centroids_free(dg_class_centroids *cc);

/* Appends centroid c to class k's list. */
void dg_class_centroids_push(dg_class_centroids *cc, int k, dg_centroid c);

/* Centroids of one label map (h, w) of class ids (values >= n_classes,
 * 255 included, are ignored): the map is cut into tile x tile tiles from
 * (0, 0), whole tiles only; for each tile and class present, the integer
 * part of the centre of mass of its pixels (image coordinates). Appends
 * them to cc with the given item. */
void dg_class_centroids_add(dg_class_centroids *cc, int64_t item, const uint8_t *label,
        int h, int w, int tile);

typedef struct dg_loader_domain {
    int64_t n;                     /* items in the list, > 0 */
    const int64_t *items;          /* (n) dataset item indices; NULL = 0 .. n-1;
                                      borrowed for the loader's lifetime */
    const dg_class_centroids *cu;  /* class-uniform centroids (item = list
                                      position), or NULL; borrowed */
} dg_loader_domain;

typedef enum dg_bad_sample_policy {
    DG_BAD_SAMPLE_FAIL = 0,
    DG_BAD_SAMPLE_SKIP = 1
} dg_bad_sample_policy;

typedef struct dg_loader_cfg {
    dg_sample_source src;
    int n_domains;                                /* S, 1 .. DG_LOADER_MAX_DOMAINS */
    dg_loader_domain dom[DG_LOADER_MAX_DOMAINS];
    int per_domain;                               /* b >= 1, of the whole batch */
    int shares;                                   /* N: parts of each batch (0 or 1: whole) */
    int share;                                    /* the part this loader loads, 0 .. N-1 */
    bool sequential;                              /* evaluation pass (S = 1) */
    uint64_t seed;                                /* train.seed */
    double class_uniform_pct;                     /* 0 = plain epochs */
    long start_step;                              /* first batch (resume) */
    long n_epochs;                                /* training: stop after this many; 0 = never */
    int workers;                                  /* threads; 0 = load in dg_loader_next */
    int prefetch;                                 /* queued batches (>= 1; 0 = 2 per worker) */
    dg_bad_sample_policy on_bad;
} dg_loader_cfg;

/* A loaded batch; valid until the next dg_loader_next or dg_loader_free. */
typedef struct dg_batch {
    long step;           /* batch number (training step) */
    int epoch;           /* sampler epoch */
    int n;               /* B (of this loader's share: S b / N) */
    int n_domains;       /* S (1 for sequential passes) */
    int per_domain;      /* b (b / N); the last sequential batch may hold fewer */
    int c, h, w;
    float *x;            /* (B, C, H, W) */
    int32_t *label;      /* (B, P) */
    int64_t *sample_id;  /* (B) */
    dg_sample_ref *refs; /* (B) the samples actually loaded (after skips) */
    int n_skipped;       /* replacements in this batch */
} dg_batch;

typedef struct dg_loader dg_loader;

/* Creates the loader and starts its workers. Returns DG_STATUS_OK or
 * DG_STATUS_ERR_CONFIG (logged: empty domain, batch larger than an epoch
 * list, too many domains/classes, sequential with S != 1, shares that do
 * not divide b or with a sequential pass). */
dg_status dg_loader_create(const dg_loader_cfg *cfg, dg_loader **out);

/* Batches per epoch (training) or per pass (sequential). */
long dg_loader_steps_per_epoch(const dg_loader *l);

/* Next batch into *out. Returns DG_STATUS_OK; DG_STATUS_ERR_MISSING with
 * *out = NULL at the end (sequential pass done, or n_epochs reached; not
 * logged); or the load error of a bad sample (already logged). After an
 * error every later call returns it again. */
dg_status dg_loader_next(dg_loader *l, const dg_batch **out);

/* Samples replaced (DG_BAD_SAMPLE_SKIP) in the batches handed out so far. */
long dg_loader_skipped(const dg_loader *l);

/* Stops and joins the workers and releases everything; NULL is fine. */
void dg_loader_free(dg_loader *l);

#endif
