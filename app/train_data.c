/* app/train_data.c -- see train_data.h. */
#define _POSIX_C_SOURCE 200809L
#include "app/train_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/labelmap.h"

static void loader_base(const dg_config *cfg, dg_loader_cfg *lc) {
    memset(lc, 0, sizeof(*lc));
    lc->per_domain = (int)cfg->batch_size;
    lc->seed = (uint64_t)cfg->seed;
    lc->workers = (int)cfg->workers;
    lc->prefetch = (int)cfg->prefetch;
    lc->on_bad = cfg->on_bad_sample ? DG_BAD_SAMPLE_SKIP : DG_BAD_SAMPLE_FAIL;
}

static void seg_aug_from_config(const dg_config *cfg, dg_seg_aug_cfg *a) {
    dg_seg_aug_cfg_default(a);
    a->scale_min = cfg->scale_min;
    a->scale_max = cfg->scale_max;
    a->crop_h = a->crop_w = (int)cfg->crop_size;
    a->flip_p = cfg->flip ? 0.5 : 0.0;
    a->jitter_p = cfg->jitter_p;
    a->brightness = cfg->brightness;
    a->contrast = cfg->contrast;
    a->saturation = cfg->saturation;
    a->hue = cfg->hue;
    a->blur = cfg->blur;
    a->blur_sigma_min = cfg->blur_sigma_min;
    a->blur_sigma_max = cfg->blur_sigma_max;
}

static dg_status open_seg_data(dg_train_data *td, bool centroids) {
    const dg_config *cfg = td->cfg;
    dg_dataset_spec *specs = NULL;
    int n = 0;
    dg_status st = dg_dataset_specs_parse("data.sources", cfg->sources, &specs, &n);
    if (st != DG_STATUS_OK) return st;
    if (n < 1 || n > DG_TRAIN_MAX_DOMAINS) {
        dg_log_error("data.sources: %d sources (1 .. %d)", n, DG_TRAIN_MAX_DOMAINS);
        dg_dataset_specs_free(specs, n);
        return DG_STATUS_ERR_CONFIG;
    }
    dg_seg_open_opts oo = {.split_dir = cfg->split_dir};
    for (int i = 0; i < n && st == DG_STATUS_OK; i++) {
        st = dg_seg_dataset_open_opts(specs[i].reader, specs[i].root, cfg->source_split, &oo,
                &td->seg[i]);
        if (st == DG_STATUS_OK) {
            td->n_seg++;
            if (cfg->on_bad_sample == DG_BAD_SAMPLE_SKIP) td->seg[i].mismatch_level = DG_LOG_WARN;
        }
    }
    dg_dataset_specs_free(specs, n);
    if (st != DG_STATUS_OK) return st;
    td->S = n;
    td->n_classes = DG_NUM_TRAIN_IDS;
    td->seg_src.n_domains = n;
    for (int i = 0; i < n; i++) td->seg_src.ds[i] = &td->seg[i];
    seg_aug_from_config(cfg, &td->seg_src.aug);
    st = dg_seg_aug_cfg_check(&td->seg_src.aug);
    if (st != DG_STATUS_OK) return st;
    if (centroids && cfg->class_uniform_pct > 0) {
        for (int i = 0; i < n && st == DG_STATUS_OK; i++) {
            dg_log_info("class-uniform centroids of %s (%zu labels, %ld-pixel tiles)",
                    td->seg[i].root, td->seg[i].n, cfg->class_uniform_tile);
            st = dg_seg_class_centroids(&td->seg[i], (int)cfg->class_uniform_tile,
                    cfg->on_bad_sample == DG_BAD_SAMPLE_SKIP, &td->cc[i]);
        }
    }
    return st;
}


int dg_train_data_find_domain(const char *tok, char *const *names, int n) {
    char *end;
    long k = strtol(tok, &end, 10);
    if (*end == '\0' && k >= 0 && k < n) return (int)k;
    for (int d = 0; d < n; d++)
        if (!strcmp(names[d], tok)) return d;
    return -1;
}

static dg_status open_cls_data(dg_train_data *td, const dg_dataset_spec *spec) {
    const dg_config *cfg = td->cfg;
    dg_status st;
    if (!strcmp(spec->reader, "rotated-fmnist")) {
        st = dg_rotated_fmnist_init(&td->rf, cfg->fmnist_dir, (uint64_t)cfg->data_seed, false);
        if (st != DG_STATUS_OK) return st;
        td->has_rf = true;
        td->n_cls_domains = DG_RFMNIST_DOMAINS;
        td->n_classes = DG_RFMNIST_CLASSES;
    } else if (!strcmp(spec->reader, "domainbed")) {
        st = dg_domainbed_open(spec->root, &td->db);
        if (st != DG_STATUS_OK) return st;
        td->has_db = true;
        td->n_cls_domains = td->db.n_domains;
        td->n_classes = td->db.n_classes;
    } else {
        dg_log_error("data.dataset: unknown reader '%s' (domainbed, rotated-fmnist)",
                spec->reader);
        return DG_STATUS_ERR_CONFIG;
    }
    if (td->n_cls_domains - 1 > DG_TRAIN_MAX_DOMAINS) {
        dg_log_error("data.dataset: %d domains (at most %d training domains)", td->n_cls_domains,
                DG_TRAIN_MAX_DOMAINS);
        return DG_STATUS_ERR_CONFIG;
    }
    td->S = 0;
    for (int d = 0; d < td->n_cls_domains; d++) {
        int64_t n = td->has_rf ? td->rf.n[d] : td->db.domains[d].n;
        dg_holdout_split_init(&td->split[d], n, d, (uint64_t)cfg->seed);
        /* with no domain held out (eval), the first DG_TRAIN_MAX_DOMAINS train */
        if (d != td->test_domain && td->S < DG_TRAIN_MAX_DOMAINS) td->train_domain[td->S++] = d;
    }
    return DG_STATUS_OK;
}

/* Binds src to the dataset's loader slots -> dataset domains map `domain`:
 * the training loaders' source (train = true: training augmentation) or
 * the evaluation passes' own one, so an evaluation never redirects what a
 * training loader reads (its workers read the source while they run). */
static void cls_source(dg_train_data *td, dg_sample_source *src, bool train, const int *domain) {
    if (td->has_rf) {
        dg_rfmnist_source *rs = train ? &td->rf_src : &td->ev_rf_src;
        rs->ds = &td->rf;
        memcpy(rs->domain, domain, sizeof(rs->domain));
        dg_rfmnist_source_bind(rs, src);
    } else {
        dg_domainbed_source *ds = train ? &td->db_src : &td->ev_db_src;
        ds->ds = &td->db;
        memcpy(ds->domain, domain, sizeof(ds->domain));
        dg_cls_aug_cfg_default(&ds->aug);
        ds->aug.size = (int)td->cfg->image_size;
        ds->train = train && td->cfg->augment;
        dg_domainbed_source_bind(ds, src);
    }
}



dg_status dg_train_data_loader(dg_train_data *td, bool training, uint64_t seed, long start_step,
        dg_loader **out) {
    const dg_config *cfg = td->cfg;
    const bool seg = cfg->task == DG_TASK_SEGMENTATION;
    dg_loader_cfg lc;
    loader_base(cfg, &lc);
    lc.seed = seed;
    lc.start_step = start_step;
    lc.shares = td->shares;
    lc.share = td->share;
    if (seg) dg_seg_train_source_bind(&td->seg_src, &lc.src);
    else cls_source(td, &lc.src, true, td->train_domain);
    lc.n_domains = td->S;
    for (int k = 0; k < td->S; k++) {
        if (seg) {
            lc.dom[k].n = (int64_t)td->seg[k].n;
            lc.dom[k].cu = training && cfg->class_uniform_pct > 0 ? &td->cc[k] : NULL;
        } else {
            const dg_holdout_split *sp = &td->split[td->train_domain[k]];
            lc.dom[k].n = sp->n_in;
            lc.dom[k].items = sp->in;
        }
    }
    if (training) lc.class_uniform_pct = seg ? cfg->class_uniform_pct : 0;
    else lc.workers = 0;
    return dg_loader_create(&lc, out);
}

dg_status dg_train_data_split_loader(dg_train_data *td, int d, bool out, int batch,
        dg_loader **l) {
    const dg_holdout_split *sp = &td->split[d];
    *l = NULL;
    dg_loader_cfg lc;
    loader_base(td->cfg, &lc);
    int slots[DG_TRAIN_MAX_DOMAINS] = {d}; /* slot 0 of this pass reads domain d */
    cls_source(td, &lc.src, false, slots);
    lc.n_domains = 1;
    lc.dom[0].n = out ? sp->n_out : sp->n_in;
    lc.dom[0].items = out ? sp->out : sp->in;
    lc.per_domain = batch;
    lc.sequential = true;
    if (lc.dom[0].n == 0) return DG_STATUS_ERR_MISSING;
    return dg_loader_create(&lc, l);
}

dg_status dg_train_data_open(dg_train_data *td, const dg_config *cfg,
        const dg_dataset_spec *spec, int test_domain, bool centroids) {
    memset(td, 0, sizeof(*td));
    td->cfg = cfg;
    td->test_domain = test_domain;
    if (cfg->task == DG_TASK_SEGMENTATION) {
        td->test_domain = -1;
        return open_seg_data(td, centroids);
    }
    return open_cls_data(td, spec);
}

void dg_train_data_model_geometry(const dg_train_data *td, dg_model_opts *mo) {
    const bool seg = td->cfg->task == DG_TASK_SEGMENTATION;
    mo->in_channels = seg || td->has_db ? 3 : 1;
    mo->height = mo->width = seg ? td->cfg->crop_size
            : td->has_rf ? DG_RFMNIST_HW : td->cfg->image_size;
    mo->classes = td->n_classes;
}

void dg_train_data_warn_out_of_range(const dg_train_data *td, const char *by) {
    for (int k = 0; td->cfg->task == DG_TASK_SEGMENTATION && k < td->S; k++)
        dg_seg_dataset_warn_out_of_range(&td->seg[k], by);
}

void dg_train_data_domain_name(const dg_train_data *td, int d, char *buf, size_t size) {
    if (td->has_rf)
        dg_rotated_fmnist_domain_name(d, buf, size);
    else if (td->has_db && d >= 0 && d < td->db.n_domains)
        snprintf(buf, size, "%s", td->db.domains[d].name);
    else if (size)
        buf[0] = '\0';
}

void dg_train_data_free(dg_train_data *td) {
    for (int i = 0; i < td->n_seg; i++) dg_seg_dataset_free(&td->seg[i]);
    for (int i = 0; i < DG_TRAIN_MAX_DOMAINS; i++) dg_class_centroids_free(&td->cc[i]);
    for (int d = 0; d < DG_TRAIN_MAX_DOMAINS + 1; d++) dg_holdout_split_free(&td->split[d]);
    if (td->has_rf) dg_rotated_fmnist_free(&td->rf);
    if (td->has_db) dg_domainbed_free(&td->db);
    memset(td, 0, sizeof(*td));
}
