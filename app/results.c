/* app/results.c -- see results.h (docs/datasets.md §8, §9.2, §12.6). */
#define _POSIX_C_SOURCE 200809L
#include "app/results.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "app/cli.h"
#include "data/fsutil.h"
#include "eval/metrics.h"

/* ---- shared helpers ------------------------------------------------------ */

/* A Markdown table cell: '|' escaped, newlines as spaces. */
static void md_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else if (*s == '\n' || *s == '\r') fputc(' ', f);
        else fputc(*s, f);
    }
}

/* A table's header: "| first | c0 | ... | last |" and its alignment row
 * (numbers right-aligned). */
static void md_header(FILE *f, const char *first, const char *const *cols, int n,
        const char *last) {
    fprintf(f, "| %s |", first);
    for (int j = 0; j < n; j++) {
        fputc(' ', f);
        md_text(f, cols[j]);
        fputs(" |", f);
    }
    fprintf(f, " %s |\n|---|", last);
    for (int j = 0; j <= n; j++) fputs("---:|", f);
    fputc('\n', f);
}

/* Percent with two decimals, or a dash (eval/metrics.h, docs/datasets.md §8). */
static void md_pct2(FILE *f, double frac) {
    char buf[16];
    dg_metrics_format_pct(frac, buf, sizeof(buf));
    fputs(buf, f);
}

/* Writes a NUL-terminated text atomically. */
static dg_status write_text(const char *path, const char *text) {
    const dg_file_part part = {text, strlen(text)};
    return dg_file_write_atomic(path, &part, 1);
}

static dg_status write_json(const char *path, cJSON *root) {
    char *text = cJSON_Print(root);
    DG_ASSERT(text);
    const size_t n = strlen(text);
    const dg_file_part parts[] = {{text, n}, {"\n", 1}};
    const dg_status st = dg_file_write_atomic(path, parts, 2);
    cJSON_free(text);
    return st;
}

/* A growable text buffer on open_memstream. */
typedef struct text_buf {
    FILE *f;
    char *data;
    size_t size;
} text_buf;

static FILE *text_begin(text_buf *t) {
    memset(t, 0, sizeof(*t));
    t->f = open_memstream(&t->data, &t->size);
    DG_ASSERT(t->f);
    return t->f;
}

/* Closes the stream and returns the text as a dg_free-able string. */
static char *text_end(text_buf *t) {
    DG_ASSERT(fclose(t->f) == 0);
    char *s = dg_xstrdup(t->data);
    free(t->data);
    memset(t, 0, sizeof(*t));
    return s;
}

static void settings_json(cJSON *root, const dg_report_settings *run) {
    if (!run) return;
    cJSON *o = cJSON_AddObjectToObject(root, "run");
    for (int i = 0; i < run->n; i++) cJSON_AddStringToObject(o, run->key[i], run->value[i]);
}

static void settings_md(FILE *f, const dg_report_settings *run) {
    if (!run || run->n == 0) return;
    fputs("\n## Run settings\n\n| key | value |\n|---|---|\n", f);
    for (int i = 0; i < run->n; i++) {
        fputs("| ", f);
        md_text(f, run->key[i]);
        fputs(" | ", f);
        md_text(f, run->value[i]);
        fputs(" |\n", f);
    }
}

/* Index of s in v[0 .. n-1] (strcmp), or -1. */
static int str_index(const char *const *v, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i], s)) return i;
    return -1;
}

/* ---- run settings ---------------------------------------------------------- */

void dg_report_settings_add(dg_report_settings *s, const char *key, const char *fmt, ...) {
    DG_ASSERT(s->n < DG_REPORT_MAX_SETTINGS);
    snprintf(s->key[s->n], sizeof(s->key[0]), "%s", key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->value[s->n], sizeof(s->value[0]), fmt, ap);
    va_end(ap);
    s->n++;
}

static const char *nonnull(const char *s) { return s ? s : ""; }

/* The method's own hyper-parameters (docs/algorithms.md §16 key names). */
static void method_settings(dg_report_settings *s, const char *method, const dg_method_cfg *o) {
    static const char *const endpoints[] = {"last", "mean"};
    static const char *const regs[] = {"none", "average", "history"};
    if (!strcmp(method, "lookahead")) {
        dg_report_settings_add(s, "la_k", "%ld", o->la_k);
        dg_report_settings_add(s, "la_alpha", "%g", o->la_alpha);
        if ((unsigned)o->la_endpoint < DG_ARRAY_LEN(endpoints))
            dg_report_settings_add(s, "la_endpoint", "%s", endpoints[o->la_endpoint]);
        if ((unsigned)o->la_reg < DG_ARRAY_LEN(regs))
            dg_report_settings_add(s, "la_reg", "%s", regs[o->la_reg]);
        if (o->la_reg != DG_LA_REG_NONE)
            dg_report_settings_add(s, "la_reg_strength", "%g", o->la_reg_strength);
    } else if (!strcmp(method, "swad")) {
        dg_report_settings_add(s, "swad_n_converge", "%ld", o->swad_n_converge);
        dg_report_settings_add(s, "swad_n_tolerance", "%ld", o->swad_n_tolerance);
        dg_report_settings_add(s, "swad_tolerance_ratio", "%g", o->swad_tolerance_ratio);
    } else if (!strcmp(method, "sam") || !strcmp(method, "lookbehind-sam")) {
        dg_report_settings_add(s, "sam_rho", "%g", o->sam_rho);
    } else if (!strcmp(method, "asam") || !strcmp(method, "lookbehind-asam")) {
        dg_report_settings_add(s, "asam_rho", "%g", o->asam_rho);
        dg_report_settings_add(s, "asam_eta", "%g", o->asam_eta);
    } else if (!strcmp(method, "dgsam")) {
        dg_report_settings_add(s, "dgsam_rho", "%g", o->dgsam_rho);
    } else if (!strcmp(method, "saf")) {
        dg_report_settings_add(s, "saf_lambda", "%g", o->saf_lambda);
        dg_report_settings_add(s, "saf_tau", "%g", o->saf_tau);
        dg_report_settings_add(s, "saf_start_epoch", "%ld", o->saf_start_epoch);
    } else if (!strcmp(method, "mesa")) {
        dg_report_settings_add(s, "mesa_lambda", "%g", o->mesa_lambda);
        dg_report_settings_add(s, "mesa_tau", "%g", o->mesa_tau);
        dg_report_settings_add(s, "mesa_decay", "%g", o->mesa_decay);
        dg_report_settings_add(s, "mesa_start_epoch", "%ld", o->mesa_start_epoch);
    }
    if (!strncmp(method, "lookbehind-", 11)) {
        dg_report_settings_add(s, "lb_k", "%ld", o->lb_k);
        if (o->lb_alpha_adaptive) dg_report_settings_add(s, "lb_alpha", "adaptive");
        else dg_report_settings_add(s, "lb_alpha", "%g", o->lb_alpha);
    }
}

void dg_report_settings_from_config(dg_report_settings *s, const dg_config *cfg) {
    const char *method = nonnull(cfg->method);
    const char *base = nonnull(cfg->base);
    s->n = 0;
    if (cfg->task == DG_TASK_SEGMENTATION) {
        dg_report_settings_add(s, "sources", "%s", nonnull(cfg->sources));
        dg_report_settings_add(s, "targets", "%s", nonnull(cfg->targets));
        dg_report_settings_add(s, "crop_size", "%ld", cfg->crop_size);
    } else {
        dg_report_settings_add(s, "dataset", "%s", nonnull(cfg->dataset));
        dg_report_settings_add(s, "test_domains", "%s", nonnull(cfg->test_domains));
    }
    dg_report_settings_add(s, "model", "%s", nonnull(cfg->model));
    if (cfg->pretrained && *cfg->pretrained)
        dg_report_settings_add(s, "pretrained", "%s", cfg->pretrained);
    dg_report_settings_add(s, "method", "%s", method);
    dg_report_settings_add(s, "base", "%s", base);
    dg_report_settings_add(s, "lr", "%g", cfg->lr);
    if (cfg->schedule && !strcmp(cfg->schedule, "poly"))
        dg_report_settings_add(s, "schedule", "poly (power %g)", cfg->poly_power);
    else
        dg_report_settings_add(s, "schedule", "%s", nonnull(cfg->schedule));
    if (!strcmp(base, "sgd")) dg_report_settings_add(s, "momentum", "%g", cfg->optim.momentum);
    dg_report_settings_add(s, "weight_decay", "%g", cfg->optim.weight_decay);
    dg_report_settings_add(s, "iterations", "%ld", cfg->iterations);
    dg_report_settings_add(s, "batch_size", "%ld", cfg->batch_size);
    dg_report_settings_add(s, "seed", "%ld", cfg->seed);
    method_settings(s, method, &cfg->optim);
}

/* ---- segmentation results -------------------------------------------------- */

static const char *const class_names[DG_NUM_TRAIN_IDS] = {"road", "sidewalk", "building",
        "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation", "terrain", "sky",
        "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"};

const char *dg_report_class_name(int train_id) {
    DG_ASSERT(train_id >= 0 && train_id < DG_NUM_TRAIN_IDS);
    return class_names[train_id];
}

static const char *weights_of(const dg_seg_result *res) {
    return res->weights ? res->weights : "final";
}

int dg_report_seg_classes(const dg_seg_result *res, char *absent, size_t size) {
    int n = 0;
    size_t off = 0;
    if (absent && size) absent[0] = '\0';
    for (int c = 0; c < DG_NUM_TRAIN_IDS; c++) {
        if (!isnan(res->iou[c])) {
            n++;
            continue;
        }
        if (!absent || off >= size) continue;
        const int k = snprintf(absent + off, size - off, "%s%s", off ? ", " : "", class_names[c]);
        off = k < 0 ? size : off + (size_t)k;
    }
    return n;
}

/* The mean mIoU of weights w over the targets ts (n_t): what results.md's
 * mean column and results.json's "mean_miou" say. */
static const dg_seg_result *seg_find(const dg_seg_report *r, const char *w, const char *t);

dg_seg_mean dg_report_seg_mean(const dg_seg_result *const *row, int n) {
    dg_seg_mean m = {.miou = NAN};
    double sum = 0.0;
    for (int j = 0; j < n; j++) {
        if (!row[j]) m.n_missing++;
        else if (!isfinite(row[j]->miou)) m.n_left_out++;
        else {
            sum += row[j]->miou;
            m.n_in++;
        }
    }
    if (!m.n_missing && m.n_in) m.miou = sum / m.n_in;
    return m;
}

/* The mean of w over the targets ts. */
static dg_seg_mean seg_mean_of(const dg_seg_report *r, const char *w, const char *const *ts,
        int n_t) {
    const dg_seg_result **row = dg_xcalloc((size_t)n_t + 1, sizeof(*row));
    for (int j = 0; j < n_t; j++) row[j] = seg_find(r, w, ts[j]);
    const dg_seg_mean m = dg_report_seg_mean(row, n_t);
    dg_free(row);
    return m;
}

/* The names of the targets of ts that w's mean leaves out (missing: those
 * without a result; otherwise those without an mIoU), into a JSON array. */
static cJSON *seg_left_out_json(const dg_seg_report *r, const char *w, const char *const *ts,
        int n_t, bool missing) {
    cJSON *a = cJSON_CreateArray();
    for (int j = 0; j < n_t; j++) {
        const dg_seg_result *res = seg_find(r, w, ts[j]);
        if (missing ? !res : res && !isfinite(res->miou))
            cJSON_AddItemToArray(a, cJSON_CreateString(ts[j]));
    }
    return a;
}

/* The distinct weights and targets of r in order of first appearance
 * (ws, ts: n_results + 1 each). */
static void seg_axes(const dg_seg_report *r, const char **ws, int *n_w, const char **ts,
        int *n_t);

dg_status dg_report_seg_write_json(const dg_seg_report *r, const char *path) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "task", "segmentation");
    if (r->checkpoint) cJSON_AddStringToObject(root, "checkpoint", r->checkpoint);
    if (r->method) cJSON_AddStringToObject(root, "method", r->method);
    settings_json(root, r->run);
    cJSON *targets = cJSON_AddArrayToObject(root, "targets");
    for (int i = 0; i < r->n_results; i++) {
        const dg_seg_result *res = &r->results[i];
        DG_ASSERT(res->target && res->reader);
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "name", res->target);
        cJSON_AddStringToObject(t, "reader", res->reader);
        cJSON_AddNumberToObject(t, "images", (double)res->images);
        cJSON_AddItemToObject(t, "miou", dg_metrics_json_pct(res->miou));
        cJSON *iou = cJSON_AddArrayToObject(t, "per_class_iou");
        for (int c = 0; c < DG_NUM_TRAIN_IDS; c++)
            cJSON_AddItemToArray(iou, dg_metrics_json_pct(res->iou[c]));
        cJSON_AddItemToObject(t, "pixel_acc", dg_metrics_json_pct(res->pixel_acc));
        cJSON *set = cJSON_AddObjectToObject(t, "settings");
        cJSON_AddStringToObject(set, "weights", weights_of(res));
        if (res->resolution) cJSON_AddStringToObject(set, "resolution", res->resolution);
        if (res->inference) cJSON_AddStringToObject(set, "inference", res->inference);
        if (res->bn) cJSON_AddStringToObject(set, "bn", res->bn);
        cJSON_AddNumberToObject(t, "miou_classes", dg_report_seg_classes(res, NULL, 0));
        cJSON *absent = cJSON_AddArrayToObject(t, "classes_absent");
        for (int c = 0; c < DG_NUM_TRAIN_IDS; c++)
            if (isnan(res->iou[c])) cJSON_AddItemToArray(absent, cJSON_CreateString(class_names[c]));
        if (res->oor_pixels) {
            cJSON_AddNumberToObject(t, "out_of_range_label_pixels", (double)res->oor_pixels);
            cJSON_AddNumberToObject(t, "out_of_range_label_images", (double)res->oor_images);
        }
        cJSON_AddItemToArray(targets, t);
    }
    const char **ws = dg_xmalloc((size_t)(r->n_results + 1) * sizeof(*ws));
    const char **ts = dg_xmalloc((size_t)(r->n_results + 1) * sizeof(*ts));
    int n_w = 0, n_t = 0;
    seg_axes(r, ws, &n_w, ts, &n_t);
    cJSON *means = cJSON_AddArrayToObject(root, "mean_miou");
    for (int i = 0; i < n_w; i++) {
        const dg_seg_mean m = seg_mean_of(r, ws[i], ts, n_t);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "weights", ws[i]);
        cJSON_AddItemToObject(o, "miou", dg_metrics_json_pct(m.miou));
        cJSON_AddNumberToObject(o, "targets", m.n_in);
        cJSON_AddItemToObject(o, "left_out", seg_left_out_json(r, ws[i], ts, n_t, false));
        cJSON_AddItemToObject(o, "not_evaluated", seg_left_out_json(r, ws[i], ts, n_t, true));
        cJSON_AddItemToArray(means, o);
    }
    dg_free(ws);
    dg_free(ts);
    const dg_status st = write_json(path, root);
    cJSON_Delete(root);
    return st;
}

/* The result of (weights w, target t), or NULL. */
static const dg_seg_result *seg_find(const dg_seg_report *r, const char *w, const char *t) {
    for (int i = 0; i < r->n_results; i++)
        if (!strcmp(weights_of(&r->results[i]), w) && !strcmp(r->results[i].target, t))
            return &r->results[i];
    return NULL;
}

static void seg_summary_md(FILE *f, const dg_seg_report *r, const char *const *ws, int n_w,
        const char *const *ts, int n_t) {
    fputs("## mIoU (%)\n\n", f);
    md_header(f, "weights", ts, n_t, "mean");
    bool marked = false;
    for (int i = 0; i < n_w; i++) {
        fputs("| ", f);
        md_text(f, ws[i]);
        fputs(" |", f);
        for (int j = 0; j < n_t; j++) {
            const dg_seg_result *res = seg_find(r, ws[i], ts[j]);
            fputc(' ', f);
            md_pct2(f, res ? res->miou : NAN);
            fputs(" |", f);
        }
        const dg_seg_mean m = seg_mean_of(r, ws[i], ts, n_t);
        fputc(' ', f);
        md_pct2(f, m.miou);
        if (!m.n_missing && m.n_left_out) {
            fputs(" †", f);
            marked = true;
        }
        fputs(" |\n", f);
    }
    if (!marked) return;
    fputc('\n', f);
    for (int i = 0; i < n_w; i++) {
        const dg_seg_mean m = seg_mean_of(r, ws[i], ts, n_t);
        if (m.n_missing || !m.n_left_out) continue;
        fputs("† ", f);
        md_text(f, ws[i]);
        fprintf(f, ": mean of %d of %d targets; ", m.n_in, n_t);
        for (int j = 0, k = 0; j < n_t; j++) {
            const dg_seg_result *res = seg_find(r, ws[i], ts[j]);
            if (isfinite(res->miou)) continue;
            if (k++) fputs(", ", f);
            md_text(f, ts[j]);
        }
        fprintf(f, " %s no valid label pixel (every label pixel is ignore or outside the "
                   "reader's id range), so no mIoU\n", m.n_left_out == 1 ? "has" : "have");
    }
}

static void seg_target_md(FILE *f, const dg_seg_report *r, const char *const *ws, int n_w,
        const char *t) {
    fputs("\n## ", f);
    md_text(f, t);
    fputs("\n\n| weights | reader | images | resolution | inference | BN | mIoU | pixel acc |\n"
          "|---|---|---:|---|---|---|---:|---:|\n", f);
    for (int i = 0; i < n_w; i++) {
        const dg_seg_result *res = seg_find(r, ws[i], t);
        if (!res) continue;
        const char *cells[] = {ws[i], res->reader};
        for (size_t k = 0; k < DG_ARRAY_LEN(cells); k++) {
            fputs("| ", f);
            md_text(f, cells[k]);
            fputc(' ', f);
        }
        fprintf(f, "| %lld ", (long long)res->images);
        const char *set[] = {res->resolution, res->inference, res->bn};
        for (size_t k = 0; k < DG_ARRAY_LEN(set); k++) {
            fputs("| ", f);
            if (set[k]) md_text(f, set[k]);
            else fputs("—", f);
            fputc(' ', f);
        }
        fputs("| ", f);
        md_pct2(f, res->miou);
        fputs(" | ", f);
        md_pct2(f, res->pixel_acc);
        fputs(" |\n", f);
    }
    bool noted = false;
    for (int i = 0; i < n_w; i++) {
        const dg_seg_result *res = seg_find(r, ws[i], t);
        if (!res) continue;
        char absent[256];
        const int n_cls = dg_report_seg_classes(res, absent, sizeof(absent));
        if (n_cls == DG_NUM_TRAIN_IDS && !res->oor_pixels) continue;
        if (!noted) fputc('\n', f);
        noted = true;
        if (n_cls == 0) {
            fputs("- ", f);
            md_text(f, ws[i]);
            fputs(": no valid label pixel, so no mIoU\n", f);
        } else if (n_cls < DG_NUM_TRAIN_IDS) {
            fputs("- ", f);
            md_text(f, ws[i]);
            fprintf(f, ": the mIoU averages %d of %d classes (no IoU for ", n_cls,
                    DG_NUM_TRAIN_IDS);
            md_text(f, absent);
            fputs(": absent from both the labels and the predictions)\n", f);
        }
        if (res->oor_pixels) {
            fputs("- ", f);
            md_text(f, ws[i]);
            fprintf(f, ": %llu label pixels in %lld of %lld images hold values outside the ",
                    (unsigned long long)res->oor_pixels, (long long)res->oor_images,
                    (long long)res->images);
            md_text(f, res->reader);
            fputs(" id range and count as ignore\n", f);
        }
    }
    fputs("\nPer-class IoU (%):\n\n| weights |", f);
    for (int c = 0; c < DG_NUM_TRAIN_IDS; c++) fprintf(f, " %s |", class_names[c]);
    fputs("\n|---|", f);
    for (int c = 0; c < DG_NUM_TRAIN_IDS; c++) fputs("---:|", f);
    fputc('\n', f);
    for (int i = 0; i < n_w; i++) {
        const dg_seg_result *res = seg_find(r, ws[i], t);
        if (!res) continue;
        fputs("| ", f);
        md_text(f, ws[i]);
        fputs(" |", f);
        for (int c = 0; c < DG_NUM_TRAIN_IDS; c++) {
            fputc(' ', f);
            md_pct2(f, res->iou[c]);
            fputs(" |", f);
        }
        fputc('\n', f);
    }
}

static void seg_axes(const dg_seg_report *r, const char **ws, int *n_w, const char **ts,
        int *n_t) {
    *n_w = *n_t = 0;
    for (int i = 0; i < r->n_results; i++) {
        DG_ASSERT(r->results[i].target && r->results[i].reader);
        const char *w = weights_of(&r->results[i]);
        if (str_index(ws, *n_w, w) < 0) ws[(*n_w)++] = w;
        if (str_index(ts, *n_t, r->results[i].target) < 0) ts[(*n_t)++] = r->results[i].target;
    }
}

dg_status dg_report_seg_write_md(const dg_seg_report *r, const char *path) {
    const int n = r->n_results;
    const char **ws = dg_xmalloc((size_t)(n + 1) * sizeof(*ws));
    const char **ts = dg_xmalloc((size_t)(n + 1) * sizeof(*ts));
    int n_w = 0, n_t = 0;
    seg_axes(r, ws, &n_w, ts, &n_t);
    text_buf tb;
    FILE *f = text_begin(&tb);
    fputs("# Results", f);
    if (r->method) {
        fputs(": ", f);
        md_text(f, r->method);
    }
    fputs("\n\n", f);
    if (r->checkpoint) {
        fputs("Checkpoint: `", f);
        md_text(f, r->checkpoint);
        fputs("`\n\n", f);
    }
    seg_summary_md(f, r, ws, n_w, ts, n_t);
    for (int j = 0; j < n_t; j++) seg_target_md(f, r, ws, n_w, ts[j]);
    settings_md(f, r->run);
    char *text = text_end(&tb);
    const dg_status st = write_text(path, text);
    dg_free(text);
    dg_free(ws);
    dg_free(ts);
    return st;
}

/* ---- classification results ------------------------------------------------ */

int dg_report_select(const double *val_acc, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!isnan(val_acc[i]) && (best < 0 || val_acc[i] > val_acc[best])) best = i;
    return best;
}

void dg_report_mean_se(const double *x, int n, double *mean, double *se) {
    DG_ASSERT(n >= 1);
    double s = 0.0;
    for (int i = 0; i < n; i++) s += x[i];
    const double m = s / n;
    double v = 0.0;
    for (int i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *se = sqrt(v / n) / sqrt((double)n); /* std(ddof=0) / sqrt(n) */
}

/* Trials of one test domain: mean and standard error in percent. */
typedef struct cls_cell {
    int n;       /* runs with a finite accuracy */
    double mean; /* percent; NaN when n == 0 */
    double se;
} cls_cell;

static cls_cell cls_cell_of(const dg_cls_report *r, const char *domain, dg_cls_pick pick) {
    cls_cell c = {0, NAN, NAN};
    double *x = dg_xmalloc((size_t)(r->n_runs + 1) * sizeof(*x));
    for (int i = 0; i < r->n_runs; i++) {
        const dg_cls_run *run = &r->runs[i];
        const double a = pick == DG_CLS_PICK_LAST ? run->acc_last : run->acc_selected;
        if (!strcmp(run->test_domain, domain) && isfinite(a)) x[c.n++] = 100.0 * a;
    }
    if (c.n > 0) dg_report_mean_se(x, c.n, &c.mean, &c.se);
    dg_free(x);
    return c;
}

/* Mean over the domains of the per-domain means; NaN when one has no run. */
static double cls_avg(const dg_cls_report *r, const char *const *domains, int n_domains,
        dg_cls_pick pick) {
    if (n_domains == 0) return NAN;
    double s = 0.0;
    for (int j = 0; j < n_domains; j++) s += cls_cell_of(r, domains[j], pick).mean;
    return s / n_domains;
}

char *dg_report_cls_table(const dg_cls_report *reports, int n_reports, dg_cls_pick pick) {
    DG_ASSERT(n_reports >= 1);
    const char *const *domains = reports[0].domains;
    const int n_d = reports[0].n_domains;
    text_buf tb;
    FILE *f = text_begin(&tb);
    md_header(f, "method", domains, n_d, "Avg");
    for (int i = 0; i < n_reports; i++) {
        const dg_cls_report *r = &reports[i];
        fputs("| ", f);
        md_text(f, nonnull(r->method));
        fputs(" |", f);
        for (int j = 0; j < n_d; j++) {
            const cls_cell c = cls_cell_of(r, domains[j], pick);
            if (c.n == 0) fputs(" — |", f);
            else if (c.n == 1) fprintf(f, " %.1f |", c.mean);
            else fprintf(f, " %.1f ± %.1f |", c.mean, c.se);
        }
        const double avg = cls_avg(r, domains, n_d, pick);
        if (isfinite(avg)) fprintf(f, " %.1f |\n", avg);
        else fputs(" — |\n", f);
    }
    return text_end(&tb);
}

static cJSON *cls_summary_json(const dg_cls_report *r, dg_cls_pick pick) {
    cJSON *o = cJSON_CreateObject();
    cJSON *doms = cJSON_AddArrayToObject(o, "domains");
    for (int j = 0; j < r->n_domains; j++) {
        const cls_cell c = cls_cell_of(r, r->domains[j], pick);
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "name", r->domains[j]);
        cJSON_AddNumberToObject(d, "trials", c.n);
        cJSON_AddItemToObject(d, "mean", dg_metrics_json_pct(c.mean / 100.0));
        cJSON_AddItemToObject(d, "se", dg_metrics_json_pct(c.se / 100.0));
        cJSON_AddItemToArray(doms, d);
    }
    cJSON_AddItemToObject(o, "avg", dg_metrics_json_pct(cls_avg(r, r->domains, r->n_domains, pick) / 100.0));
    return o;
}

/* method, runs and summary of r into o; the summary over r's domains. */
static void cls_report_json(cJSON *o, const dg_cls_report *r, const char *const *domains,
        int n_domains) {
    if (r->method) cJSON_AddStringToObject(o, "method", r->method);
    cJSON *runs = cJSON_AddArrayToObject(o, "runs");
    for (int i = 0; i < r->n_runs; i++) {
        const dg_cls_run *run = &r->runs[i];
        cJSON *ro = cJSON_CreateObject();
        cJSON_AddStringToObject(ro, "test_domain", run->test_domain);
        cJSON_AddNumberToObject(ro, "trial", (double)run->trial);
        cJSON_AddNumberToObject(ro, "selected_step", (double)run->selected_step);
        cJSON_AddItemToObject(ro, "val_acc", dg_metrics_json_pct(run->val_acc));
        cJSON_AddItemToObject(ro, "acc_selected", dg_metrics_json_pct(run->acc_selected));
        cJSON_AddNumberToObject(ro, "last_step", (double)run->last_step);
        cJSON_AddItemToObject(ro, "acc_last", dg_metrics_json_pct(run->acc_last));
        cJSON_AddItemToArray(runs, ro);
    }
    dg_cls_report v = *r;
    v.domains = domains;
    v.n_domains = n_domains;
    cJSON *summary = cJSON_AddObjectToObject(o, "summary");
    cJSON_AddItemToObject(summary, "selected", cls_summary_json(&v, DG_CLS_PICK_SELECTED));
    cJSON_AddItemToObject(summary, "last", cls_summary_json(&v, DG_CLS_PICK_LAST));
}

dg_status dg_report_cls_write_json(const dg_cls_report *r, const char *path) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "task", "classification");
    if (r->dataset) cJSON_AddStringToObject(root, "dataset", r->dataset);
    settings_json(root, r->run);
    cls_report_json(root, r, r->domains, r->n_domains);
    if (r->second)
        cls_report_json(cJSON_AddObjectToObject(root, "second"), r->second, r->domains,
                r->n_domains);
    const dg_status st = write_json(path, root);
    cJSON_Delete(root);
    return st;
}

static void md_pct1(FILE *f, double frac) {
    if (isfinite(frac)) fprintf(f, "%.1f", 100.0 * frac);
    else fputs("—", f);
}

static void cls_runs_md(FILE *f, const dg_cls_report *r, const char *title) {
    fputs("\n## Runs", f);
    if (title) {
        fputs(" (", f);
        md_text(f, title);
        fputc(')', f);
    }
    fputs("\n\n| test domain | trial | selected step | val acc | test acc (selected) "
          "| last step | test acc (last) |\n|---|---:|---:|---:|---:|---:|---:|\n", f);
    for (int i = 0; i < r->n_runs; i++) {
        const dg_cls_run *run = &r->runs[i];
        fputs("| ", f);
        md_text(f, run->test_domain);
        fprintf(f, " | %lld | %lld | ", (long long)run->trial, (long long)run->selected_step);
        md_pct1(f, run->val_acc);
        fputs(" | ", f);
        md_pct1(f, run->acc_selected);
        fprintf(f, " | %lld | ", (long long)run->last_step);
        md_pct1(f, run->acc_last);
        fputs(" |\n", f);
    }
}

dg_status dg_report_cls_write_md(const dg_cls_report *r, const char *path) {
    text_buf tb;
    FILE *f = text_begin(&tb);
    fputs("# Results: ", f);
    md_text(f, nonnull(r->method));
    if (r->dataset) {
        fputs(" on ", f);
        md_text(f, r->dataset);
    }
    dg_cls_report rows[2] = {*r};
    if (r->second) rows[1] = *r->second;
    static const char *const heads[] = {"training-domain validation", "last step"};
    for (int p = 0; p < 2; p++) {
        fprintf(f, "\n\n## Test-domain accuracy (%%), %s\n\n", heads[p]);
        char *table = dg_report_cls_table(rows, r->second ? 2 : 1, (dg_cls_pick)p);
        fputs(table, f);
        dg_free(table);
    }
    fputs("\nMean ± std(ddof=0)/√n over trials; Avg is the mean over test domains.\n", f);
    cls_runs_md(f, r, r->second ? nonnull(r->method) : NULL);
    if (r->second) cls_runs_md(f, r->second, nonnull(r->second->method));
    settings_md(f, r->run);
    char *text = text_end(&tb);
    const dg_status st = write_text(path, text);
    dg_free(text);
    return st;
}

static void cls_domains_json(cJSON *o, const dg_cls_domain_acc *domains, int n_domains) {
    cJSON *arr = cJSON_AddArrayToObject(o, "domains");
    for (int i = 0; i < n_domains; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "name", domains[i].name);
        cJSON_AddNumberToObject(d, "images", (double)domains[i].images);
        cJSON_AddItemToObject(d, "accuracy", dg_metrics_json_pct(domains[i].accuracy));
        cJSON_AddItemToArray(arr, d);
    }
}

dg_status dg_report_cls_write_eval_json(const char *checkpoint, const dg_cls_domain_acc *domains,
        int n_domains, const char *label2, const dg_cls_domain_acc *domains2, const char *path) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "task", "classification");
    if (checkpoint) cJSON_AddStringToObject(root, "checkpoint", checkpoint);
    cls_domains_json(root, domains, n_domains);
    if (label2 && domains2) {
        cJSON *sec = cJSON_AddObjectToObject(root, "second");
        cJSON_AddStringToObject(sec, "weights", label2);
        cls_domains_json(sec, domains2, n_domains);
    }
    const dg_status st = write_json(path, root);
    cJSON_Delete(root);
    return st;
}
