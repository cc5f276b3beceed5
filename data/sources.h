/* data/sources.h -- the sample sources the batch loader (data/loader.h)
 * draws from: the datasets of data/ combined with their transforms
 * (data/augment.h).
 *
 *   seg train   S segmentation datasets (one per source domain), §7.4
 *               augmentation with the class-uniform centroid of the sample
 *   seg eval    one segmentation dataset, §7.5 evaluation input
 *   rfmnist     Rotated Fashion-MNIST domains, x / 255 (no augmentation)
 *   domainbed   DomainBed folders, §9.2 augmentation or the eval resize
 *
 * Every source maps the loader's domain slot k to a dataset domain
 * (classification: the training domains, without the test domain). A
 * source only reads its datasets, so the loader's threads may share it.
 * Labels come out as int32 class ids (255 = ignore for segmentation). */
#ifndef DG_DATA_SOURCES_H
#define DG_DATA_SOURCES_H

#include "data/augment.h"
#include "data/domainbed.h"
#include "data/loader.h"
#include "data/rotated_fmnist.h"
#include "data/seg_dataset.h"

typedef struct dg_seg_train_source {
    const dg_seg_dataset *ds[DG_LOADER_MAX_DOMAINS]; /* borrowed, one per slot */
    int n_domains;
    dg_seg_aug_cfg aug;                              /* crop_h, crop_w > 0 */
} dg_seg_train_source;

/* Fills src (ctx = s, which must outlive the loader): C = 3, size = the
 * crop, dense labels. The first label holding values outside its reader's
 * range is warned about once per dataset (dg_seg_dataset_note_out_of_range);
 * every load counts in the dataset (dg_seg_dataset_out_of_range). */
void dg_seg_train_source_bind(dg_seg_train_source *s, dg_sample_source *src);

/* Class-uniform centroids of every label of ds (docs/datasets.md §7.3): tiles
 * of tile x tile pixels, 19 trainId classes, items = pair indices. Labels are
 * decoded in parallel (OpenMP) and merged in pair order, so the lists do not
 * depend on the thread count. cc is overwritten. A label that cannot be read
 * is skipped with a warning when skip_bad, else its status is returned
 * (the file is named in the log). Label values outside the reader's range
 * are then warned about once, with the dataset's count
 * (dg_seg_dataset_warn_out_of_range). */
dg_status dg_seg_class_centroids(const dg_seg_dataset *ds, int tile, bool skip_bad,
        dg_class_centroids *cc);

typedef struct dg_seg_eval_source {
    const dg_seg_dataset *ds;  /* borrowed */
    dg_seg_eval_cfg eval;
    int max_h, max_w;          /* largest output (from the label headers) */
} dg_seg_eval_source;

/* Reads the label PNG headers of ds to find the largest output size, then
 * fills src (ctx = s). Returns DG_STATUS_OK or the header reader's status
 * (the file is named). */
dg_status dg_seg_eval_source_bind(dg_seg_eval_source *s, dg_sample_source *src);

typedef struct dg_rfmnist_source {
    const dg_rotated_fmnist *ds;           /* borrowed */
    int domain[DG_LOADER_MAX_DOMAINS];     /* dataset domain of each slot */
} dg_rfmnist_source;

/* C = 1, 28 x 28, one label per sample; item indices are domain-local. */
void dg_rfmnist_source_bind(dg_rfmnist_source *s, dg_sample_source *src);

typedef struct dg_domainbed_source {
    const dg_domainbed *ds;                /* borrowed */
    int domain[DG_LOADER_MAX_DOMAINS];     /* dataset domain of each slot */
    dg_cls_aug_cfg aug;
    bool train;                            /* augment; false: eval resize */
} dg_domainbed_source;

/* C = 3, aug.size square, one label per sample. */
void dg_domainbed_source_bind(dg_domainbed_source *s, dg_sample_source *src);

#endif
