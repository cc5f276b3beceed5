/* app/evaluate.c -- segmentation target evaluation (see evaluate.h). */
#include "app/evaluate.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "app/closure.h"
#include "app/dist.h"
#include "app/metrics_log.h"
#include "app/results.h"
#include "app/progress.h"
#include "data/fsutil.h"
#include "data/labelmap.h"
#include "data/sources.h"
#include "eval/metrics.h"

/* Adds the cross-entropy of the valid pixels (label != 255) of one image's
 * logits (K x P, plain) to *sum, their count to *count (double, stable). */
static void add_ce(const float *logits, const int32_t *label, int64_t p, int k, double *sum,
        int64_t *count) {
    for (int64_t i = 0; i < p; i++) {
        if (label[i] == 255) continue;
        double mx = logits[i];
        for (int c = 1; c < k; c++) mx = fmax(mx, (double)logits[(int64_t)c * p + i]);
        double se = 0;
        for (int c = 0; c < k; c++) se += exp((double)logits[(int64_t)c * p + i] - mx);
        *sum += mx + log(se) - (double)logits[(int64_t)label[i] * p + i];
        (*count)++;
    }
}

/* The out-of-range warnings given so far in this process, one
 * "root|split|pixels|labels" each: a trainer evaluates the same targets
 * again and again, and the same count is worth one line, not one per pass. */
static dg_strvec oor_warned;
static pthread_mutex_t oor_warned_lock = PTHREAD_MUTEX_INITIALIZER;

/* At the end of a pass over ds: one warning with the count of label values
 * outside the reader's range, unless this process said the same before (in
 * a data-parallel job, rank 0's count over its share of the images: it
 * alone logs warnings; the results carry the sum over the ranks). */
static void warn_out_of_range_once(const dg_seg_dataset *ds) {
    const dg_seg_oor_count c = dg_seg_dataset_out_of_range(ds);
    if (!c.pixels) return;
    char *key = dg_xasprintf("%s|%s|%llu|%llu", ds->root, ds->split,
            (unsigned long long)c.pixels, (unsigned long long)c.labels);
    pthread_mutex_lock(&oor_warned_lock);
    bool seen = false;
    for (size_t i = 0; i < oor_warned.n && !seen; i++) seen = !strcmp(oor_warned.v[i], key);
    if (!seen) {
        dg_strvec_push(&oor_warned, key);
        key = NULL;
    }
    pthread_mutex_unlock(&oor_warned_lock);
    dg_free(key);
    if (!seen) dg_seg_dataset_warn_out_of_range(ds, "by this evaluation");
}

static char *inference_text(const dg_seg_infer_cfg *ic) {
    const char *flip = ic->flip ? ", flip" : "";
    if (ic->mode == DG_SEG_INFER_SLIDE)
        return dg_xasprintf("sliding window %lld, stride %lld%s", (long long)ic->win_h,
                (long long)ic->stride_h, flip);
    return dg_xasprintf("whole image%s", flip);
}

static dg_status eval_one(const dg_config *cfg, dg_seg_infer *inf, const dg_dataset_spec *spec,
        const char *split, long max_images, const float *params, const float *stats,
        dg_eval_target *t) {
    const char *sp = split ? split : dg_seg_eval_split(spec->reader);
    dg_seg_dataset ds;
    dg_seg_open_opts oo = {.split_dir = cfg->split_dir};
    dg_status st = dg_seg_dataset_open_opts(spec->reader, spec->root, sp, &oo, &ds);
    if (st != DG_STATUS_OK) return st;
    const int64_t n_img = max_images > 0 && (size_t)max_images < ds.n ? max_images : (int64_t)ds.n;
    /* a data-parallel job: rank r of N evaluates images r, r + N, ...; the
     * confusion matrices (integers) and the cross-entropy sums are added
     * over the ranks afterwards, so every rank gets what one process gets
     * (the cross-entropy up to the order of its sum) */
    const int ranks = dg_dist_size(), rank = dg_dist_rank();
    int64_t n_mine = n_img, *mine = NULL;
    if (ranks > 1) {
        n_mine = n_img > rank ? (n_img - rank + ranks - 1) / ranks : 0;
        mine = dg_xmalloc((size_t)(n_mine ? n_mine : 1) * sizeof(*mine));
        for (int64_t i = 0; i < n_mine; i++) mine[i] = rank + i * ranks;
    }
    dg_seg_eval_source src = {.ds = &ds};
    dg_seg_eval_cfg_default(&src.eval);
    if (!strcmp(spec->reader, "mapillary")) src.eval.target_h = (int)cfg->eval_height;
    dg_loader_cfg lc;
    memset(&lc, 0, sizeof(lc));
    st = dg_seg_eval_source_bind(&src, &lc.src);
    dg_loader *l = NULL;
    if (st == DG_STATUS_OK && n_mine > 0) {
        lc.n_domains = 1;
        lc.dom[0].n = n_mine;
        lc.dom[0].items = mine;
        lc.per_domain = 1;
        lc.sequential = true;
        lc.workers = (int)cfg->workers;
        st = dg_loader_create(&lc, &l);
    }
    dg_confusion cm;
    dg_confusion_init(&cm, DG_NUM_TRAIN_IDS);
    float *logits = NULL;
    if (st == DG_STATUS_OK)
        logits = dg_xmalloc((size_t)DG_NUM_TRAIN_IDS * (size_t)src.max_h * (size_t)src.max_w * sizeof(float));
    double ce = 0;
    int64_t n_valid = 0;
    const dg_batch *b;
    char label[96];
    snprintf(label, sizeof(label), "evaluating %s", spec->reader);
    dg_task_progress prog;
    dg_task_progress_begin(&prog, label, n_mine, "img/s");
    int64_t done = 0;
    dg_seg_infer_hold(inf, true); /* one set of weights for the whole pass */
    while (st == DG_STATUS_OK && l && (st = dg_loader_next(l, &b)) == DG_STATUS_OK) {
        const int64_t p = (int64_t)b->h * b->w;
        st = dg_seg_infer_run(inf, params, stats, b->x, b->h, b->w, logits);
        if (st != DG_STATUS_OK) break;
        dg_confusion_add_logits(&cm, logits, b->label, p);
        add_ce(logits, b->label, p, DG_NUM_TRAIN_IDS, &ce, &n_valid);
        dg_task_progress_update(&prog, ++done);
    }
    dg_task_progress_end(&prog);
    dg_seg_infer_hold(inf, false);
    dg_loader_free(l); /* every worker's loads counted from here on */
    l = NULL;
    if (st == DG_STATUS_ERR_MISSING) st = DG_STATUS_OK; /* the pass ended */
    dg_seg_oor_count oc = dg_seg_dataset_out_of_range(&ds);
    if (ranks > 1) {
        /* every rank reaches this point; one that failed has said why */
        if (dg_dist_any(st != DG_STATUS_OK) && st == DG_STATUS_OK) st = DG_STATUS_ERR_IO;
        if (st == DG_STATUS_OK) {
            dg_dist_allreduce_i64(cm.c, (size_t)(cm.k * cm.k));
            int64_t cnt[3] = {n_valid, (int64_t)oc.pixels, (int64_t)oc.labels};
            dg_dist_allreduce_i64(cnt, 3);
            dg_dist_allreduce_f64(&ce, 1);
            n_valid = cnt[0];
            oc.pixels = (uint64_t)cnt[1];
            oc.labels = (uint64_t)cnt[2];
        }
    }
    if (st == DG_STATUS_OK) warn_out_of_range_once(&ds);
    if (st == DG_STATUS_OK) {
        t->name = split ? dg_xasprintf("%s %s", spec->reader, sp) : dg_xstrdup(spec->reader);
        t->reader = dg_xstrdup(spec->reader);
        t->resolution = src.eval.target_h
                ? dg_xasprintf("height %d, centre crop %dx%d", src.eval.target_h,
                          src.eval.target_h, src.eval.target_h)
                : dg_xstrdup("full image");
        t->inference = inference_text(&inf->cfg);
        t->ce = n_valid ? ce / (double)n_valid : NAN;
        dg_seg_scores sc = dg_confusion_scores(&cm, t->res.iou);
        t->res.target = t->name;
        t->res.reader = t->reader;
        t->res.images = n_img;
        t->res.miou = sc.miou;
        t->res.pixel_acc = sc.pixel_acc;
        t->res.resolution = t->resolution;
        t->res.inference = t->inference;
        t->res.bn = cfg->freeze_bn ? "frozen (running statistics)" : "running statistics";
        t->res.oor_pixels = oc.pixels;
        t->res.oor_images = (int64_t)oc.labels;
    }
    dg_free(logits);
    dg_free(mine);
    dg_confusion_free(&cm);
    dg_loader_free(l);
    dg_seg_dataset_free(&ds);
    return st;
}

dg_status dg_eval_seg_list(const dg_config *cfg, dg_ctx *ctx, const dg_param_set *layout,
        const float *params, const float *stats, const char *weights, const char *key,
        const char *list, const char *split, long max_images, dg_eval_targets *out) {
    dg_dataset_spec *specs = NULL;
    int ns = 0;
    dg_status st = dg_dataset_specs_parse(key, list, &specs, &ns);
    if (st != DG_STATUS_OK) return st;
    dg_seg_infer inf;
    dg_seg_infer_cfg ic = {.model = cfg->model, .classes = DG_NUM_TRAIN_IDS,
            .output_stride = (int)cfg->output_stride,
            .mode = cfg->eval_mode == DG_EVAL_SLIDE ? DG_SEG_INFER_SLIDE : DG_SEG_INFER_WHOLE,
            .win_h = cfg->eval_window, .win_w = cfg->eval_window,
            .stride_h = cfg->eval_stride, .stride_w = cfg->eval_stride, .flip = cfg->eval_flip};
    st = dg_seg_infer_init(&inf, ctx, &ic, layout);
    for (int i = 0; i < ns && st == DG_STATUS_OK; i++) {
        if (out->n == out->cap) {
            out->cap = out->cap ? 2 * out->cap : 8;
            out->v = dg_xrealloc(out->v, (size_t)out->cap * sizeof(*out->v));
        }
        dg_eval_target *t = &out->v[out->n];
        memset(t, 0, sizeof(*t));
        st = eval_one(cfg, &inf, &specs[i], split, max_images, params, stats, t);
        if (st == DG_STATUS_OK) {
            t->res.weights = weights;
            out->n++;
        } else { /* what eval_one filled before the error */
            dg_free(t->name);
            dg_free(t->reader);
            dg_free(t->resolution);
            dg_free(t->inference);
        }
    }
    dg_seg_infer_free(&inf); /* zeroed when init failed */
    dg_dataset_specs_free(specs, ns);
    return st;
}

dg_status dg_eval_seg_targets(const dg_config *cfg, dg_ctx *ctx, const dg_param_set *layout,
        const float *params, const float *stats, const char *weights, dg_eval_targets *out) {
    return dg_eval_seg_list(cfg, ctx, layout, params, stats, weights, "data.targets",
            cfg->targets, NULL, 0, out);
}

dg_seg_result *dg_eval_targets_results(const dg_eval_targets *t) {
    dg_seg_result *res = dg_xcalloc((size_t)t->n + 1, sizeof(*res));
    for (int i = 0; i < t->n; i++) res[i] = t->v[i].res;
    return res;
}

void dg_eval_targets_free(dg_eval_targets *t) {
    for (int i = 0; i < t->n; i++) {
        dg_free(t->v[i].name);
        dg_free(t->v[i].reader);
        dg_free(t->v[i].resolution);
        dg_free(t->v[i].inference);
    }
    dg_free(t->v);
    memset(t, 0, sizeof(*t));
}

void dg_eval_print_seg(FILE *f, const dg_eval_target *t, int n) {
    if (n <= 0) return;
    fprintf(f, "\n| weights |");
    for (int i = 0; i < n && !strcmp(t[i].res.weights, t[0].res.weights); i++)
        fprintf(f, " %s |", t[i].name);
    fprintf(f, " mean |\n");
    int per = 0;
    while (per < n && !strcmp(t[per].res.weights, t[0].res.weights)) per++;
    fprintf(f, "|---|");
    for (int i = 0; i < per; i++) fprintf(f, "---:|");
    fprintf(f, "---:|\n");
    bool marked = false;
    const dg_seg_result **row = dg_xcalloc((size_t)per, sizeof(*row));
    for (int r = 0; r < n; r += per) {
        fprintf(f, "| %s |", t[r].res.weights);
        int total = 0;
        for (int i = r; i < r + per && i < n; i++) {
            char buf[32];
            dg_metrics_format_pct(t[i].res.miou, buf, sizeof(buf));
            fprintf(f, " %s |", buf);
            row[total++] = &t[i].res;
        }
        const dg_seg_mean m = dg_report_seg_mean(row, total);
        char buf[32];
        dg_metrics_format_pct(m.miou, buf, sizeof(buf));
        fprintf(f, " %s%s |\n", buf, m.n_left_out ? " †" : "");
        marked |= m.n_left_out > 0;
    }
    fprintf(f, "\n(mIoU %%, %d classes, %s at each target's protocol resolution)\n",
            DG_NUM_TRAIN_IDS, t[0].inference ? t[0].inference : "whole image");
    /* what the numbers above average over, when it is less than everything */
    for (int r = 0; marked && r < n; r += per) {
        int total = 0;
        for (int i = r; i < r + per && i < n; i++) row[total++] = &t[i].res;
        const dg_seg_mean m = dg_report_seg_mean(row, total);
        if (!m.n_left_out) continue;
        fprintf(f, "† %s: mean of %d of %d targets;", t[r].res.weights, m.n_in, total);
        for (int i = r, k = 0; i < r + per && i < n; i++)
            if (!isfinite(t[i].res.miou)) fprintf(f, "%s %s", k++ ? "," : "", t[i].name);
        fprintf(f, " %s no valid label pixel\n", m.n_left_out == 1 ? "has" : "have");
    }
    dg_free(row);
    for (int i = 0; i < n; i++) {
        char absent[256];
        const int k = dg_report_seg_classes(&t[i].res, absent, sizeof(absent));
        if (k > 0 && k < DG_NUM_TRAIN_IDS)
            fprintf(f, "%s: the mIoU of %s averages %d of %d classes (no IoU for %s: absent from "
                       "both the labels and the predictions)\n",
                    t[i].name, t[i].res.weights, k, DG_NUM_TRAIN_IDS, absent);
    }
}

/* ---- classification ------------------------------------------------------- */

/* Under mpirun (app/dist.h) rank r runs batches r, r+N, ... of the split
 * (every rank still reads every batch: the loader's order is the one
 * process's); the correct counts are added (exact), and each sample's
 * cross-entropy term is put at its place in the split, the places added
 * over the ranks (one rank holds each: exact) and summed in sample order,
 * so the mean is the one process's to the bit. */
double dg_eval_cls_accuracy(dg_train_data *td, dg_ctx *ctx, dg_model *ev, const float *P,
        const float *Q, int d, bool out, double *ce) {
    *ce = NAN;
    dg_loader *l;
    if (dg_train_data_split_loader(td, d, out, (int)ev->opts.batch, &l) != DG_STATUS_OK)
        return NAN;
    const size_t x_per = (size_t)(ev->opts.in_channels * ev->opts.height *
            ev->opts.width);
    const int C = td->n_classes, ranks = dg_dist_size(), rank = dg_dist_rank();
    float *src = dg_mem_ptr(ev->src);
    dg_pass p = dg_pass_eval(&ev->ps);
    p.params = P;
    p.stats = (float *)Q;
    p.weights_version = dg_weights_version_new(); /* the same for every batch */
    float *logits = dg_xmalloc((size_t)ev->opts.batch * (size_t)C * sizeof(float));
    int64_t counts[2] = {0, 0}; /* correct, total */
    double *terms = NULL;       /* (total) each sample's cross-entropy, split order */
    size_t cap = 0;
    const dg_batch *b;
    dg_status st;
    for (long k = 0; (st = dg_loader_next(l, &b)) == DG_STATUS_OK; k++) {
        const size_t at = (size_t)counts[1];
        if (at + (size_t)b->n > cap) {
            cap = 2 * (at + (size_t)b->n);
            terms = dg_xrealloc(terms, cap * sizeof(*terms));
        }
        counts[1] += b->n;
        if (k % ranks != rank) { /* another rank's batch */
            memset(terms + at, 0, (size_t)b->n * sizeof(*terms));
            continue;
        }
        memcpy(src, b->x, (size_t)b->n * x_per * sizeof(float));
        memset(src + (size_t)b->n * x_per, 0,
                (size_t)(ev->opts.batch - b->n) * x_per * sizeof(float));
        dg_model_forward(ev, ctx, &p);
        DG_DNNL(dnnl_stream_wait(ctx->stream));
        dg_logits_to_plain(ev->logits, b->n, logits);
        counts[0] += dg_metrics_count_correct(logits, b->label, b->n, C);
        for (int i = 0; i < b->n; i++) { /* log-sum-exp in double */
            const float *z = logits + (size_t)i * (size_t)C;
            double mx = z[0], se = 0;
            for (int c = 1; c < C; c++) mx = fmax(mx, (double)z[c]);
            for (int c = 0; c < C; c++) se += exp((double)z[c] - mx);
            terms[at + (size_t)i] = mx + log(se) - (double)z[b->label[i]];
        }
    }
    dg_free(logits);
    dg_loader_free(l);
    /* every rank read the same batches: a failure is every rank's, but the
     * ranks agree on it before any of them sums */
    const bool failed = dg_dist_any(st != DG_STATUS_ERR_MISSING || !counts[1]);
    double ce_sum = 0;
    if (!failed) {
        dg_dist_allreduce_i64(&counts[0], 1);
        dg_dist_allreduce_f64(terms, (size_t)counts[1]);
        for (int64_t i = 0; i < counts[1]; i++) ce_sum += terms[i];
    }
    dg_free(terms);
    if (failed) return NAN;
    *ce = ce_sum / (double)counts[1];
    return (double)counts[0] / (double)counts[1];
}
