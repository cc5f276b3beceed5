/* data/sources.c -- the loader's sample sources (see sources.h). */
#include "data/sources.h"

#include <string.h>

#include "data/labelmap.h"
#include "data/png_io.h"

static void labels_to_i32(const uint8_t *src, int32_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = src[i];
}

/* ---- segmentation ------------------------------------------------------- */

static dg_status seg_train_load(void *ctx, const dg_sample_ref *ref, dg_rng *rng,
        dg_sample_out *out) {
    const dg_seg_train_source *s = ctx;
    DG_ASSERT(ref->domain >= 0 && ref->domain < s->n_domains);
    dg_image img, lbl;
    dg_seg_load_report rep;
    const dg_seg_dataset *ds = s->ds[ref->domain];
    dg_status st = dg_seg_dataset_load_ex(ds, (size_t)ref->index, &img, &lbl, &rep);
    if (st != DG_STATUS_OK) return st;
    dg_seg_dataset_note_out_of_range(ds, (size_t)ref->index, rep.n_out_of_range, "in training");
    const int32_t c[2] = {ref->cy, ref->cx};
    const size_t n = (size_t)s->aug.crop_h * (size_t)s->aug.crop_w;
    uint8_t *lab8 = dg_xmalloc(n);
    st = dg_seg_augment(&s->aug, rng, &img, &lbl, ref->cy >= 0 ? c : NULL, out->x, lab8);
    if (st == DG_STATUS_OK) {
        labels_to_i32(lab8, out->label, n);
        out->h = s->aug.crop_h;
        out->w = s->aug.crop_w;
    }
    dg_free(lab8);
    dg_image_free(&img);
    dg_image_free(&lbl);
    return st;
}

void dg_seg_train_source_bind(dg_seg_train_source *s, dg_sample_source *src) {
    DG_ASSERT(s->aug.crop_h > 0 && s->aug.crop_w > 0 && s->n_domains >= 1);
    memset(src, 0, sizeof(*src));
    src->load = seg_train_load;
    src->ctx = s;
    src->c = 3;
    src->max_h = s->aug.crop_h;
    src->max_w = s->aug.crop_w;
    src->dense = true;
}

dg_status dg_seg_class_centroids(const dg_seg_dataset *ds, int tile, bool skip_bad,
        dg_class_centroids *cc) {
    memset(cc, 0, sizeof(*cc));
    cc->n_classes = DG_NUM_TRAIN_IDS;
    dg_class_centroids *part = dg_xcalloc(ds->n ? ds->n : 1, sizeof(*part));
    dg_status *st = dg_xcalloc(ds->n ? ds->n : 1, sizeof(*st));
#pragma omp parallel for schedule(dynamic, 1)
    for (long i = 0; i < (long)ds->n; i++) {
        dg_image lbl;
        part[i].n_classes = DG_NUM_TRAIN_IDS;
        st[i] = dg_seg_dataset_load_label(ds, (size_t)i, &lbl);
        if (st[i] != DG_STATUS_OK) continue;
        dg_class_centroids_add(&part[i], i, lbl.data, lbl.h, lbl.w, tile);
        dg_image_free(&lbl);
    }
    dg_status rc = DG_STATUS_OK;
    for (size_t i = 0; i < ds->n; i++) {
        if (st[i] != DG_STATUS_OK && rc == DG_STATUS_OK) {
            if (skip_bad) dg_log_warn("%s: label skipped in the class-uniform scan", ds->pairs[i].label);
            else rc = st[i];
        }
        for (int k = 0; k < DG_NUM_TRAIN_IDS; k++)
            for (int64_t j = 0; j < part[i].n[k]; j++) dg_class_centroids_push(cc, k, part[i].c[k][j]);
        dg_class_centroids_free(&part[i]);
    }
    dg_free(part);
    dg_free(st);
    if (rc != DG_STATUS_OK) dg_class_centroids_free(cc);
    else dg_seg_dataset_warn_out_of_range(ds, "by the class-uniform scan");
    return rc;
}

static dg_status seg_eval_load(void *ctx, const dg_sample_ref *ref, dg_rng *rng,
        dg_sample_out *out) {
    (void)rng;
    const dg_seg_eval_source *s = ctx;
    dg_image img, lbl;
    dg_status st = dg_seg_dataset_load(s->ds, (size_t)ref->index, &img, &lbl);
    if (st != DG_STATUS_OK) return st;
    int oh, ow;
    dg_seg_eval_dims(&s->eval, img.h, img.w, &oh, &ow);
    DG_ASSERT(oh <= s->max_h && ow <= s->max_w);
    const size_t n = (size_t)oh * (size_t)ow;
    uint8_t *lab8 = dg_xmalloc(n);
    st = dg_seg_eval_transform(&s->eval, &img, &lbl, out->x, lab8);
    if (st == DG_STATUS_OK) {
        labels_to_i32(lab8, out->label, n);
        out->h = oh;
        out->w = ow;
    }
    dg_free(lab8);
    dg_image_free(&img);
    dg_image_free(&lbl);
    return st;
}

dg_status dg_seg_eval_source_bind(dg_seg_eval_source *s, dg_sample_source *src) {
    s->max_h = s->max_w = 1;
    for (size_t i = 0; i < s->ds->n; i++) {
        dg_png_info info;
        dg_status st = dg_png_read_info(s->ds->pairs[i].label, &info);
        if (st != DG_STATUS_OK) return st;
        int oh, ow;
        dg_seg_eval_dims(&s->eval, info.h, info.w, &oh, &ow);
        if (oh > s->max_h) s->max_h = oh;
        if (ow > s->max_w) s->max_w = ow;
    }
    memset(src, 0, sizeof(*src));
    src->load = seg_eval_load;
    src->ctx = s;
    src->c = 3;
    src->max_h = s->max_h;
    src->max_w = s->max_w;
    src->dense = true;
    return DG_STATUS_OK;
}

/* ---- classification ----------------------------------------------------- */

static dg_status rfmnist_load(void *ctx, const dg_sample_ref *ref, dg_rng *rng,
        dg_sample_out *out) {
    (void)rng;
    const dg_rfmnist_source *s = ctx;
    const int d = s->domain[ref->domain];
    dg_rotated_fmnist_get(s->ds, d, ref->index, out->x);
    out->label[0] = s->ds->labels[d][ref->index];
    out->h = out->w = DG_RFMNIST_HW;
    return DG_STATUS_OK;
}

void dg_rfmnist_source_bind(dg_rfmnist_source *s, dg_sample_source *src) {
    memset(src, 0, sizeof(*src));
    src->load = rfmnist_load;
    src->ctx = s;
    src->c = 1;
    src->max_h = src->max_w = DG_RFMNIST_HW;
    src->dense = false;
}

static dg_status domainbed_load(void *ctx, const dg_sample_ref *ref, dg_rng *rng,
        dg_sample_out *out) {
    const dg_domainbed_source *s = ctx;
    const int d = s->domain[ref->domain];
    dg_image img;
    dg_status st = dg_domainbed_load(s->ds, d, ref->index, &img);
    if (st != DG_STATUS_OK) return st;
    st = s->train ? dg_cls_augment(&s->aug, rng, &img, out->x)
                  : dg_cls_eval_transform(&s->aug, &img, out->x);
    dg_image_free(&img);
    if (st != DG_STATUS_OK) return st;
    out->label[0] = s->ds->domains[d].labels[ref->index];
    out->h = out->w = s->aug.size;
    return DG_STATUS_OK;
}

void dg_domainbed_source_bind(dg_domainbed_source *s, dg_sample_source *src) {
    memset(src, 0, sizeof(*src));
    src->load = domainbed_load;
    src->ctx = s;
    src->c = 3;
    src->max_h = src->max_w = s->aug.size;
    src->dense = false;
}
