/* app/train_data.h -- the data of a configuration's training domains, as
 * the trainers, `dgseg eval` (classification) and `dgseg flatness` read it:
 *
 * - segmentation: every data.sources entry opened on data.source_split,
 *   the §7.4 augmentation of the [augment] keys, and class-uniform
 *   centroids when data.class_uniform_pct > 0 (docs/datasets.md §7.3);
 * - classification: data.dataset (Rotated Fashion-MNIST or a DomainBed
 *   folder) with one domain held out, every domain's 80/20 out/in split of
 *   the trial seed train.seed (docs/datasets.md §9.2, §12.6); the training
 *   domains' in-splits are what loaders read.
 *
 * Loader slot k reads training domain k (a source, or the k-th domain
 * that is not held out: train_domain[k] is its dataset index). */
#ifndef DG_APP_TRAIN_DATA_H
#define DG_APP_TRAIN_DATA_H

#include "app/config.h"
#include "data/holdout.h"
#include "data/sources.h"
#include "nets/model.h"

#define DG_TRAIN_MAX_DOMAINS DG_LOADER_MAX_DOMAINS

typedef struct dg_train_data {
    const dg_config *cfg;          /* borrowed */
    int S;                         /* training domains */
    int shares, share;             /* a data-parallel rank's part of every training batch
                                      (data/loader.h "Shares"): part `share` of `shares`;
                                      0, 0 after open: whole batches */
    int n_classes;
    /* segmentation */
    dg_seg_dataset seg[DG_TRAIN_MAX_DOMAINS];
    int n_seg;
    dg_class_centroids cc[DG_TRAIN_MAX_DOMAINS];
    dg_seg_train_source seg_src;
    /* classification */
    dg_rotated_fmnist rf;
    bool has_rf;
    dg_domainbed db;
    bool has_db;
    int n_cls_domains;             /* domains of the dataset */
    int test_domain;               /* dataset index of the held-out domain (-1: none) */
    int train_domain[DG_TRAIN_MAX_DOMAINS]; /* dataset index of loader slot k */
    dg_holdout_split split[DG_TRAIN_MAX_DOMAINS + 1]; /* per dataset domain */
    dg_rfmnist_source rf_src;      /* the training loaders' sources */
    dg_domainbed_source db_src;
    dg_rfmnist_source ev_rf_src;   /* the evaluation passes' (one domain each) */
    dg_domainbed_source ev_db_src;
} dg_train_data;

/* Opens the training data of cfg: its segmentation sources (centroids too
 * when `centroids` and data.class_uniform_pct > 0), or the classification
 * dataset `spec` (a parsed data.dataset entry) with dataset domain
 * test_domain held out (-1: none; every domain is then a training domain
 * up to DG_TRAIN_MAX_DOMAINS). td is ready for dg_train_data_free either
 * way. Returns DG_STATUS_OK or the first error (logged). */
dg_status dg_train_data_open(dg_train_data *td, const dg_config *cfg,
        const dg_dataset_spec *spec, int test_domain, bool centroids);

/* A loader over the training domains, train.batch_size samples from each
 * per batch, with stream seed `seed`, positioned after start_step batches:
 * training = true is the trainer's (class-uniform epochs for segmentation
 * when configured, data.workers), false a plain one (no class-uniform
 * sampling, no workers: the BN refresh's and flatness's). Both apply the
 * training augmentation, and both load td's share of each batch. */
dg_status dg_train_data_loader(dg_train_data *td, bool training, uint64_t seed, long start_step,
        dg_loader **out);

/* The model geometry the data asks for: input channels, height, width
 * (segmentation: the crop) and classes, into mo (other fields untouched). */
void dg_train_data_model_geometry(const dg_train_data *td, dg_model_opts *mo);

/* Index of domain `name` (or a decimal index) among n names; -1 if none. */
int dg_train_data_find_domain(const char *tok, char *const *names, int n);

/* A sequential loader over the in (out = false) or out split of dataset
 * domain d, `batch` samples a batch, no augmentation: what the
 * classification evaluation reads. DG_STATUS_ERR_MISSING (not logged) when
 * the split is empty; a loader error otherwise. */
dg_status dg_train_data_split_loader(dg_train_data *td, int d, bool out, int batch,
        dg_loader **l);
/* Warns once per segmentation source about label values outside its id
 * range met so far, with their count; `by` says where ("in training"). */
void dg_train_data_warn_out_of_range(const dg_train_data *td, const char *by);
/* The name of classification dataset domain d ("0", "15", ... for Rotated
 * Fashion-MNIST; the folder's name for DomainBed) into buf; "" for none. */
void dg_train_data_domain_name(const dg_train_data *td, int d, char *buf, size_t size);
void dg_train_data_free(dg_train_data *td);

#endif
