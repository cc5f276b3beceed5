/* app/report.c -- metrics log, results files, training curves and the
 * progress line (see report.h; DESIGN.md §4, §9; DATASETS.md §8, §9.2,
 * §12.6).
 *
 * JSON goes through cJSON, plots through PLplot 5.15 ("pngcairo", one
 * private stream per plot). PLplot reports problems three ways: plabort
 * (captured with plsError), plwarn (stderr) and plexit (calls exit()); the
 * plot therefore runs with stdout and stderr redirected into a temporary
 * file and with an exit handler that jumps back here, so a plotting
 * failure never ends or clutters the run. */
#define _POSIX_C_SOURCE 200809L
#include "app/report.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <plplot.h>

#include "app/cli.h"
#include "data/fsutil.h"
#include "eval/metrics.h"

/* ---- shared helpers ------------------------------------------------------ */

/* v in the shortest of %.15g .. %.17g that reads back exactly (cJSON's own
 * printer accepts a one-ulp difference); null when not finite. */
static cJSON *json_exact(double v) {
    if (!isfinite(v)) return cJSON_CreateNull();
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    return cJSON_CreateRaw(buf);
}

/* A Markdown table cell: '|' escaped, newlines as spaces. */
static void md_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else if (*s == '\n' || *s == '\r') fputc(' ', f);
        else fputc(*s, f);
    }
}

/* Percent with two decimals, or a dash (eval/metrics.h, DATASETS.md §8). */
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

/* ---- metrics.jsonl --------------------------------------------------------- */

/* Parses one line [s, s + n) as a JSON object with a numeric "step";
 * NULL when it is not one (torn, malformed, other JSON). */
static cJSON *parse_line(const char *s, size_t n, int64_t *step) {
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    if (!o) return NULL;
    for (; end && end < s + n; end++) {
        if (*end != ' ' && *end != '\t' && *end != '\r') {
            cJSON_Delete(o);
            return NULL;
        }
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step");
    if (!cJSON_IsObject(o) || !cJSON_IsNumber(st)) {
        cJSON_Delete(o);
        return NULL;
    }
    *step = (int64_t)st->valuedouble;
    return o;
}

/* Rewrites path keeping only the complete lines with step <= resume_step. */
static dg_status metrics_truncate(const char *path, int64_t resume_step) {
    size_t size;
    char *text = dg_file_read_all(path, &size);
    if (!text) return DG_STATUS_ERR_IO;
    dg_file_part *keep = dg_xmalloc((size / 2 + 1) * sizeof(*keep));
    int n_keep = 0, n_drop = 0;
    for (size_t pos = 0; pos < size;) {
        const char *nl = memchr(text + pos, '\n', size - pos);
        const size_t len = nl ? (size_t)(nl - (text + pos)) : size - pos;
        int64_t step;
        cJSON *o = nl ? parse_line(text + pos, len, &step) : NULL;
        if (o && step <= resume_step) {
            keep[n_keep].data = text + pos;
            keep[n_keep].size = len + 1;
            n_keep++;
        } else if (len > 0 || !nl) {
            n_drop++;
        }
        cJSON_Delete(o);
        pos += len + 1;
    }
    dg_status st = DG_STATUS_OK;
    if (n_drop > 0) {
        st = dg_file_write_atomic(path, keep, n_keep);
        if (st == DG_STATUS_OK)
            dg_log_info("%s: resuming at step %lld: dropped %d line(s) written after it", path,
                    (long long)resume_step, n_drop);
    }
    dg_free(keep);
    dg_free(text);
    return st;
}

dg_status dg_metrics_open(dg_metrics *m, const char *path, bool resume, int64_t resume_step) {
    memset(m, 0, sizeof(*m));
    if (resume && dg_is_file(path)) {
        const dg_status st = metrics_truncate(path, resume_step);
        if (st != DG_STATUS_OK) return st;
    }
    m->f = fopen(path, resume ? "a" : "w");
    if (!m->f) {
        dg_log_error("%s: cannot open the metrics log: %s", path, strerror(errno));
        return DG_STATUS_ERR_IO;
    }
    m->path = dg_xstrdup(path);
    return DG_STATUS_OK;
}

dg_status dg_metrics_log(dg_metrics *m, const char *kind, int64_t step, const dg_metric *values,
        int n_values) {
    DG_ASSERT(m->f && kind && n_values >= 0);
    for (int i = 0; i < n_values; i++)
        DG_ASSERT(strcmp(values[i].name, "step") && strcmp(values[i].name, "kind"));
    if (m->failed) return DG_STATUS_ERR_IO;
    cJSON *o = cJSON_CreateObject();
    char step_text[32];
    snprintf(step_text, sizeof(step_text), "%lld", (long long)step);
    cJSON_AddRawToObject(o, "step", step_text);
    cJSON_AddStringToObject(o, "kind", kind);
    for (int i = 0; i < n_values; i++)
        cJSON_AddItemToObject(o, values[i].name, json_exact(values[i].value));
    char *json = cJSON_PrintUnformatted(o);
    DG_ASSERT(json);
    char *line = dg_xasprintf("%s\n", json);
    cJSON_free(json);
    cJSON_Delete(o);
    /* one write of the whole line, past the stream's (empty) buffer; a
     * line the disk could take only part of is cut off again, so the log
     * holds whole lines only */
    const int fd = fileno(m->f);
    struct stat sb;
    errno = 0;
    const bool sized = fflush(m->f) == 0 && fstat(fd, &sb) == 0;
    int err = sized ? 0 : errno ? errno : EIO;
    for (size_t done = 0, n = strlen(line); err == 0 && done < n;) {
        const ssize_t k = write(fd, line + done, n - done);
        if (k > 0) done += (size_t)k;
        else if (k == 0 || errno != EINTR) err = k == 0 ? EIO : errno;
    }
    dg_free(line);
    if (err != 0) {
        if (sized && (ftruncate(fd, sb.st_size) != 0 || lseek(fd, sb.st_size, SEEK_SET) < 0))
            dg_log_warn("%s: cannot cut off the partial line: %s", m->path, strerror(errno));
        dg_log_error("%s: cannot append to the metrics log at step %lld: %s", m->path,
                (long long)step, strerror(err));
        m->failed = true;
        return DG_STATUS_ERR_IO;
    }
    return DG_STATUS_OK;
}

dg_status dg_metrics_log_train(dg_metrics *m, int64_t step, double loss, double lr,
        double images_per_s) {
    const dg_metric v[] = {{"loss", loss}, {"lr", lr}, {"img_s", images_per_s}};
    return dg_metrics_log(m, "train", step, v, (int)DG_ARRAY_LEN(v));
}

void dg_metrics_close(dg_metrics *m) {
    if (m->f) fclose(m->f);
    dg_free(m->path);
    memset(m, 0, sizeof(*m));
}

/* Grows an array holding n elements so that element n fits: capacities are
 * powers of two, so growing at n = 0, 1, 2, 4, ... is enough. */
static void *grow(void *p, int n, size_t elem) {
    if (n == 0) return dg_xrealloc(p, elem);
    if ((n & (n - 1)) == 0) return dg_xrealloc(p, 2 * (size_t)n * elem);
    return p;
}

static dg_series *series_get(dg_metrics_data *d, const char *kind, const char *name) {
    for (int i = 0; i < d->n_series; i++)
        if (!strcmp(d->series[i].kind, kind) && !strcmp(d->series[i].name, name))
            return &d->series[i];
    d->series = grow(d->series, d->n_series, sizeof(*d->series));
    dg_series *s = &d->series[d->n_series++];
    memset(s, 0, sizeof(*s));
    s->kind = dg_xstrdup(kind);
    s->name = dg_xstrdup(name);
    return s;
}

static void series_push(dg_series *s, int64_t step, double v) {
    s->step = grow(s->step, s->n, sizeof(*s->step));
    s->value = grow(s->value, s->n, sizeof(*s->value));
    s->step[s->n] = step;
    s->value[s->n] = v;
    s->n++;
}

dg_status dg_metrics_read(dg_metrics_data *d, const char *path) {
    memset(d, 0, sizeof(*d));
    size_t size;
    char *text = dg_file_read_all(path, &size);
    if (!text) return DG_STATUS_ERR_IO;
    int line_no = 0;
    for (size_t pos = 0; pos < size;) {
        const char *nl = memchr(text + pos, '\n', size - pos);
        const size_t len = nl ? (size_t)(nl - (text + pos)) : size - pos;
        line_no++;
        int64_t step;
        cJSON *o = len > 0 ? parse_line(text + pos, len, &step) : NULL;
        pos += len + 1;
        if (!o) {
            if (len > 0)
                dg_log_warn("%s:%d: not a metrics line (a JSON object with a numeric "
                        "\"step\"), skipped", path, line_no);
            continue;
        }
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "kind");
        const char *kind = cJSON_IsString(k) ? k->valuestring : "";
        for (const cJSON *it = o->child; it; it = it->next) {
            if (!strcmp(it->string, "step") || !strcmp(it->string, "kind")) continue;
            if (cJSON_IsNumber(it))
                series_push(series_get(d, kind, it->string), step, it->valuedouble);
            else if (cJSON_IsNull(it))
                series_push(series_get(d, kind, it->string), step, NAN);
        }
        cJSON_Delete(o);
    }
    dg_free(text);
    return DG_STATUS_OK;
}

const dg_series *dg_metrics_find(const dg_metrics_data *d, const char *kind, const char *name) {
    for (int i = 0; i < d->n_series; i++)
        if (!strcmp(d->series[i].kind, kind) && !strcmp(d->series[i].name, name))
            return &d->series[i];
    return NULL;
}

void dg_metrics_data_free(dg_metrics_data *d) {
    for (int i = 0; i < d->n_series; i++) {
        dg_free(d->series[i].kind);
        dg_free(d->series[i].name);
        dg_free(d->series[i].step);
        dg_free(d->series[i].value);
    }
    dg_free(d->series);
    memset(d, 0, sizeof(*d));
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

/* The method's own hyper-parameters (ALGORITHMS.md §16 key names). */
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
typedef struct seg_mean {
    double miou;     /* NaN when a target has no result or none has an mIoU */
    int n_in;        /* targets averaged */
    int n_left_out;  /* targets with a result but no mIoU (no valid label pixel) */
    int n_missing;   /* targets without a result for w */
} seg_mean;

static const dg_seg_result *seg_find(const dg_seg_report *r, const char *w, const char *t);

static seg_mean seg_mean_of(const dg_seg_report *r, const char *w, const char *const *ts,
        int n_t) {
    seg_mean m = {.miou = NAN};
    double sum = 0.0;
    for (int j = 0; j < n_t; j++) {
        const dg_seg_result *res = seg_find(r, w, ts[j]);
        if (!res) m.n_missing++;
        else if (!isfinite(res->miou)) m.n_left_out++;
        else {
            sum += res->miou;
            m.n_in++;
        }
    }
    if (!m.n_missing && m.n_in) m.miou = sum / m.n_in;
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
        const seg_mean m = seg_mean_of(r, ws[i], ts, n_t);
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
    fputs("## mIoU (%)\n\n| weights |", f);
    for (int j = 0; j < n_t; j++) {
        fputc(' ', f);
        md_text(f, ts[j]);
        fputs(" |", f);
    }
    fputs(" mean |\n|---|", f);
    for (int j = 0; j <= n_t; j++) fputs("---:|", f);
    fputc('\n', f);
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
        const seg_mean m = seg_mean_of(r, ws[i], ts, n_t);
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
        const seg_mean m = seg_mean_of(r, ws[i], ts, n_t);
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
    fputs("| method |", f);
    for (int j = 0; j < n_d; j++) {
        fputc(' ', f);
        md_text(f, domains[j]);
        fputs(" |", f);
    }
    fputs(" Avg |\n|---|", f);
    for (int j = 0; j <= n_d; j++) fputs("---:|", f);
    fputc('\n', f);
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

/* ---- curves.png ------------------------------------------------------------- */

#define PLOT_MAX_LINES 12
#define PLOT_COLORS 8

/* One panel: its lines (borrowed series) and how to show them. */
typedef struct plot_panel {
    const char *title;
    const char *ylabel;
    double scale; /* values are multiplied by it */
    bool marks;   /* mark every point (sparse evaluation series) */
    int n_lines;
    const dg_series *lines[PLOT_MAX_LINES];
} plot_panel;

typedef struct plot_plan {
    int n_panels;
    plot_panel panels[3];
    double xmin, xmax;
} plot_plan;

/* Colour map 0 entries 2 .. 9 (1 is black for axes and text). */
static const int plot_rgb[PLOT_COLORS][3] = {{31, 119, 180}, {214, 39, 40}, {44, 160, 44},
        {255, 127, 14}, {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {23, 190, 207}};

/* PLplot's exit handler jumps back to dg_report_curves instead of exit(). */
static jmp_buf plot_jmp;
static char plot_exit_msg[256];

static int plot_exit_handler(const char *msg) {
    snprintf(plot_exit_msg, sizeof(plot_exit_msg), "%s", msg ? msg : "");
    longjmp(plot_jmp, 1);
}

/* PLplot text: '#' starts an escape sequence, "##" is a literal '#'. */
static void plot_escape(char *dst, size_t size, const char *src) {
    size_t k = 0;
    for (; *src && k + 2 < size; src++) {
        if (*src == '#') dst[k++] = '#';
        dst[k++] = *src;
    }
    dst[k] = '\0';
}

static void plot_yrange(const plot_panel *p, double *lo, double *hi) {
    double a = INFINITY, b = -INFINITY;
    for (int l = 0; l < p->n_lines; l++)
        for (int i = 0; i < p->lines[l]->n; i++) {
            const double v = p->lines[l]->value[i] * p->scale;
            if (isfinite(v)) {
                a = fmin(a, v);
                b = fmax(b, v);
            }
        }
    if (!(a <= b)) {
        a = 0.0;
        b = 1.0;
    }
    const double pad = b > a ? 0.05 * (b - a) : fmax(0.1 * fabs(a), 1e-12);
    *lo = a - pad;
    *hi = b + pad;
}

/* Draws one series, broken where values are not finite; points are marked
 * when `marks` (evaluations are sparse). */
static void plot_series(const dg_series *s, double scale, bool marks, PLFLT *x, PLFLT *y) {
    int run = 0;
    for (int i = 0; i <= s->n; i++) {
        const double v = i < s->n ? s->value[i] * scale : NAN;
        if (isfinite(v)) {
            x[run] = (PLFLT)s->step[i];
            y[run] = (PLFLT)v;
            run++;
            continue;
        }
        if (run > 1) plline(run, x, y);
        if (run > 0 && (marks || run == 1)) plpoin(run, x, y, 17);
        run = 0;
    }
}

static void plot_panel_draw(const plot_plan *plan, const plot_panel *p, PLFLT *x, PLFLT *y) {
    double ylo, yhi;
    plot_yrange(p, &ylo, &yhi);
    pladv(0);
    plvpor(0.09, 0.97, 0.18, 0.86);
    plwind(plan->xmin, plan->xmax, ylo, yhi);
    plcol0(1);
    plwidth(1.0);
    plbox("bcnst", 0.0, 0, "bcnstv", 0.0, 0);
    pllab("iteration", p->ylabel, p->title);
    plwidth(1.5);
    for (int l = 0; l < p->n_lines; l++) {
        plcol0(2 + l % PLOT_COLORS);
        plot_series(p->lines[l], p->scale, p->marks, x, y);
    }
    if (p->n_lines < 2) return;
    PLINT opt[PLOT_MAX_LINES], colors[PLOT_MAX_LINES], styles[PLOT_MAX_LINES];
    PLFLT widths[PLOT_MAX_LINES];
    char names[PLOT_MAX_LINES][96];
    const char *text[PLOT_MAX_LINES];
    for (int l = 0; l < p->n_lines; l++) {
        opt[l] = PL_LEGEND_LINE;
        colors[l] = 2 + l % PLOT_COLORS;
        styles[l] = 1;
        widths[l] = 1.5;
        plot_escape(names[l], sizeof(names[l]), p->lines[l]->name);
        text[l] = names[l];
    }
    PLFLT lw, lh;
    plcol0(1);
    pllegend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
            PL_POSITION_RIGHT | PL_POSITION_BOTTOM | PL_POSITION_INSIDE, 0.01, 0.02, 0.06, 0, 1,
            1, 0, 0, p->n_lines, opt, 1.0, 0.8, 1.8, 0.0, colors, text, NULL, NULL, NULL, NULL,
            colors, styles, widths, NULL, NULL, NULL, NULL);
}

/* Everything PLplot does for one plot, on a fresh stream (ended by the
 * caller). */
static void plot_render(const char *file, int width, int height, int n_panels,
        dg_plot_draw_fn draw, void *ctx) {
    plsdev("pngcairo");
    plsfnam(file);
    plspage(0.0, 0.0, width, height, 0, 0);
    plspause(0);
    plscol0(0, 255, 255, 255);
    plscol0(1, 0, 0, 0);
    for (int c = 0; c < PLOT_COLORS; c++)
        plscol0(2 + c, plot_rgb[c][0], plot_rgb[c][1], plot_rgb[c][2]);
    plssub(1, n_panels);
    plinit();
    plschr(0.0, 0.85);
    draw(ctx);
}

/* The training curves' drawing (dg_report_curves). */
typedef struct curves_draw {
    const plot_plan *plan;
    PLFLT *x, *y;
} curves_draw;

static void draw_curves(void *ctx) {
    const curves_draw *c = ctx;
    for (int i = 0; i < c->plan->n_panels; i++)
        plot_panel_draw(c->plan, &c->plan->panels[i], c->x, c->y);
}

static bool plot_has_pngcairo(void) {
    const char *menu[128], *names[128];
    const char **pm = menu, **pn = names;
    int n = (int)DG_ARRAY_LEN(names) - 1;
    plgFileDevs(&pm, &pn, &n);
    for (int i = 0; i < n; i++)
        if (names[i] && !strcmp(names[i], "pngcairo")) return true;
    return false;
}

/* Builds the panels; false when there is nothing to plot. */
static bool plot_plan_make(plot_plan *plan, const dg_metrics_data *d) {
    memset(plan, 0, sizeof(*plan));
    const dg_series *loss = dg_metrics_find(d, "train", "loss");
    const dg_series *lr = dg_metrics_find(d, "train", "lr");
    if (loss && loss->n > 0)
        plan->panels[plan->n_panels++] =
                (plot_panel){"training loss", "loss", 1.0, false, 1, {loss}};
    if (lr && lr->n > 0)
        plan->panels[plan->n_panels++] =
                (plot_panel){"learning rate", "lr", 1.0, false, 1, {lr}};
    plot_panel ev = {"evaluation", "%", 100.0, true, 0, {NULL}};
    for (int i = 0; i < d->n_series && ev.n_lines < PLOT_MAX_LINES; i++)
        if (!strcmp(d->series[i].kind, "eval") && d->series[i].n > 0)
            ev.lines[ev.n_lines++] = &d->series[i];
    if (ev.n_lines > 0) plan->panels[plan->n_panels++] = ev;
    plan->xmin = INFINITY;
    plan->xmax = -INFINITY;
    for (int p = 0; p < plan->n_panels; p++)
        for (int l = 0; l < plan->panels[p].n_lines; l++) {
            const dg_series *s = plan->panels[p].lines[l];
            for (int i = 0; i < s->n; i++) {
                plan->xmin = fmin(plan->xmin, (double)s->step[i]);
                plan->xmax = fmax(plan->xmax, (double)s->step[i]);
            }
        }
    if (plan->xmax <= plan->xmin) plan->xmax = plan->xmin + 1.0;
    return plan->n_panels > 0;
}

/* Redirects stdout and stderr into a temporary file (saved[] keeps the old
 * descriptors); returns that file or -1 when nothing was redirected. */
static int quiet_begin(int saved[2]) {
    fflush(stdout);
    fflush(stderr);
    saved[0] = saved[1] = -1;
    char path[] = "/tmp/dg_plplot_XXXXXX";
    const int fd = mkstemp(path);
    if (fd < 0) return -1;
    unlink(path);
    saved[0] = dup(1);
    saved[1] = dup(2);
    if (saved[0] < 0 || saved[1] < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
        for (int k = 0; k < 2; k++) {
            if (saved[k] < 0) continue;
            dup2(saved[k], k + 1);
            close(saved[k]);
        }
        close(fd);
        saved[0] = saved[1] = -1;
        return -1;
    }
    return fd;
}

/* Restores stdout and stderr and reads what was written (at most size - 1
 * bytes, NUL-terminated, trailing white space removed) into text. */
static void quiet_end(int fd, int saved[2], char *text, size_t size) {
    text[0] = '\0';
    if (fd < 0) return;
    fflush(stdout);
    fflush(stderr);
    dup2(saved[0], 1);
    dup2(saved[1], 2);
    close(saved[0]);
    close(saved[1]);
    const off_t end = lseek(fd, 0, SEEK_CUR);
    if (end > 0 && lseek(fd, 0, SEEK_SET) == 0) {
        const ssize_t got = read(fd, text, DG_MIN((size_t)end, size - 1));
        size_t n = got > 0 ? (size_t)got : 0, k = 0;
        while (k < n && (text[k] == '\n' || text[k] == ' ')) k++;
        while (n > k && (text[n - 1] == '\n' || text[n - 1] == ' ')) n--;
        memmove(text, text + k, n - k);
        text[n - k] = '\0';
        for (char *c = text; *c; c++)
            if (*c == '\n') *c = ' ';
    }
    close(fd);
}

/* True when file starts with the PNG signature. */
/* A whole PNG on disk: the signature first, the IEND chunk last (a full
 * disk cuts cairo's write short without telling PLplot), synced. */
static bool file_is_png(const char *file) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const unsigned char iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60,
            0x82};
    unsigned char head[8], tail[12];
    const int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const off_t end = lseek(fd, 0, SEEK_END);
    const bool ok = end >= (off_t)(sizeof(head) + sizeof(tail)) &&
            pread(fd, head, sizeof(head), 0) == (ssize_t)sizeof(head) &&
            !memcmp(head, sig, sizeof(sig)) &&
            pread(fd, tail, sizeof(tail), end - (off_t)sizeof(tail)) == (ssize_t)sizeof(tail) &&
            !memcmp(tail, iend, sizeof(iend)) && fsync(fd) == 0;
    close(fd);
    return ok;
}

/* What happened inside PLplot. */
typedef struct plot_outcome {
    bool has_driver; /* the pngcairo driver is installed */
    bool exited;     /* PLplot called plexit (its exit handler jumped back) */
    PLINT errcode;   /* set by plabort (plsError) */
    char errmsg[1024];
    bool made_stream;
    PLINT strm;      /* ours */
    PLINT old_strm;  /* the caller's current stream, restored */
} plot_outcome;

/* Runs the plot on a fresh stream with PLplot's exit handler jumping back
 * here; all state lives in *out so nothing is lost across the jump. Only
 * that stream is ended (plend1): plend would end other streams too, and
 * PLplot 5.15 crashes when its driver table is rebuilt after plend and the
 * driver directory has become unreadable. */
static void plot_guarded(const char *file, int width, int height, int n_panels,
        dg_plot_draw_fn draw, void *ctx, plot_outcome *out) {
    memset(out, 0, sizeof(*out));
    out->has_driver = true;
    plot_exit_msg[0] = '\0';
    plsexit(plot_exit_handler);
    plgstrm(&out->old_strm);
    if (setjmp(plot_jmp) == 0) {
        if (!plot_has_pngcairo()) {
            out->has_driver = false;
        } else {
            plmkstrm(&out->strm);
            out->made_stream = true;
            plsError(&out->errcode, out->errmsg);
            plot_render(file, width, height, n_panels, draw, ctx);
        }
    } else {
        out->exited = true;
    }
    if (out->made_stream && setjmp(plot_jmp) == 0) {
        plsstrm(out->strm);
        plend1();
    }
    plsexit(NULL);
    plsstrm(out->old_strm);
}

dg_status dg_report_curves(const dg_metrics_data *d, const char *path, int width, int height) {
    plot_plan plan;
    if (!plot_plan_make(&plan, d)) {
        dg_log_warn("%s: no curves drawn: the metrics hold no training or evaluation values",
                path);
        return DG_STATUS_ERR_MISSING;
    }
    if (width <= 0) width = 1000;
    if (height <= 0) height = 320 * plan.n_panels;
    int max_n = 1;
    for (int i = 0; i < d->n_series; i++) max_n = DG_MAX(max_n, d->series[i].n);
    curves_draw c = {&plan, dg_xmalloc((size_t)max_n * sizeof(PLFLT)),
            dg_xmalloc((size_t)max_n * sizeof(PLFLT))};
    const dg_status st = dg_report_plot(path, "curves", width, height, plan.n_panels,
            draw_curves, &c);
    dg_free(c.x);
    dg_free(c.y);
    return st;
}

dg_status dg_report_plot(const char *path, const char *what, int width, int height,
        int n_panels, dg_plot_draw_fn draw, void *ctx) {
    /* named as dg_file_write_atomic names its temporaries, so that
     * dg_file_remove_stale_temporaries finds one a kill -9 left */
    static unsigned counter;
    const size_t tmp_size = strlen(path) + 48;
    char *tmp = dg_xmalloc(tmp_size);
    snprintf(tmp, tmp_size, "%s.tmp.%ld.p%u", path, (long)getpid(), counter++);
    const int tfd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (tfd < 0) {
        dg_log_warn("%s: no %s drawn: cannot create a temporary file next to it: %s", path,
                what, strerror(errno));
        dg_free(tmp);
        return DG_STATUS_ERR_IO;
    }
    close(tfd);

    char captured[1024];
    plot_outcome out;
    int saved[2];
    const int qfd = quiet_begin(saved);
    plot_guarded(tmp, width, height, n_panels, draw, ctx, &out);
    quiet_end(qfd, saved, captured, sizeof(captured));

    dg_status st = DG_STATUS_OK;
    const char *why = NULL;
    if (!out.has_driver) {
        st = DG_STATUS_ERR_MISSING;
        why = "PLplot has no 'pngcairo' driver (install plplot-driver-cairo)";
    } else if (out.exited) {
        st = DG_STATUS_ERR_IO;
        why = plot_exit_msg[0] ? plot_exit_msg : "PLplot stopped";
    } else if (out.errcode != 0) {
        st = DG_STATUS_ERR_IO;
        out.errmsg[strcspn(out.errmsg, "\n")] = '\0';
        why = out.errmsg[0] ? out.errmsg : "PLplot aborted the plot";
    } else if (!file_is_png(tmp)) {
        st = DG_STATUS_ERR_IO;
        why = "PLplot wrote no PNG";
    } else if (rename(tmp, path) != 0) {
        st = DG_STATUS_ERR_IO;
        why = strerror(errno);
    }
    if (st != DG_STATUS_OK) {
        unlink(tmp);
        dg_log_warn("%s: no %s drawn: %s%s%s", path, what, why,
                captured[0] ? "; PLplot said: " : "", captured);
    } else if (captured[0]) {
        dg_log_debug("%s: PLplot said: %s", path, captured);
    }
    dg_free(tmp);
    return st;
}

/* ---- progress line ------------------------------------------------------------ */

void dg_progress_format_eta(char *buf, size_t size, double seconds) {
    if (!isfinite(seconds) || seconds < 0.0 || seconds > 9.0e15) {
        snprintf(buf, size, "--:--:--");
        return;
    }
    const long long s = llround(seconds);
    snprintf(buf, size, "%02lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
}

int dg_progress_format(char *buf, size_t size, int64_t step, int64_t total, double loss,
        double lr, double images_per_s, double eta_seconds) {
    char rate[32], eta[32];
    if (!isfinite(images_per_s) || images_per_s < 0.0) snprintf(rate, sizeof(rate), "--");
    else if (images_per_s < 10.0) snprintf(rate, sizeof(rate), "%.2f", images_per_s);
    else if (images_per_s < 1000.0) snprintf(rate, sizeof(rate), "%.1f", images_per_s);
    else snprintf(rate, sizeof(rate), "%.0f", images_per_s);
    dg_progress_format_eta(eta, sizeof(eta), eta_seconds);
    return snprintf(buf, size, "step %lld/%lld | loss %.4f | lr %.2e | %s img/s | eta %s",
            (long long)step, (long long)total, loss, lr, rate, eta);
}

bool dg_progress_is_tty(FILE *f) {
    const char *term = getenv("TERM");
    return isatty(fileno(f)) && !(term && !strcmp(term, "dumb"));
}

void dg_progress_init(dg_progress *p, FILE *out, bool tty, int64_t start_step, int64_t total,
        int64_t log_every, double images_per_step) {
    memset(p, 0, sizeof(*p));
    p->out = out;
    p->tty = tty;
    p->start_step = start_step;
    p->total = total;
    p->log_every = log_every >= 1 ? log_every : 1;
    p->images_per_step = images_per_step;
    p->t_start = dg_now();
    p->t_drawn = -INFINITY;
}

double dg_progress_smoothed_loss(const dg_progress *p) {
    if (p->n_ema == 0) return NAN;
    return p->ema / (1.0 - pow(DG_PROGRESS_BETA, (double)p->n_ema));
}

void dg_progress_update(dg_progress *p, int64_t step, double loss, double lr) {
    if (isfinite(loss)) {
        p->ema = DG_PROGRESS_BETA * p->ema + (1.0 - DG_PROGRESS_BETA) * loss;
        p->n_ema++;
    }
    const double now = dg_now();
    const bool last = step >= p->total;
    const bool show = p->tty ? last || now - p->t_drawn >= 0.1
                             : last || step % p->log_every == 0;
    if (!show) return;
    const double done = (double)(step - p->start_step);
    const double elapsed = now - p->t_start;
    const bool rated = done > 0.0 && elapsed > 0.0;
    const double ips = rated ? done * p->images_per_step / elapsed : NAN;
    const double eta = rated ? (double)(p->total - step) * elapsed / done : NAN;
    const double shown = isfinite(loss) ? dg_progress_smoothed_loss(p) : loss;
    char line[256];
    int len = dg_progress_format(line, sizeof(line), step, p->total, shown, lr, ips, eta);
    len = DG_MIN(len, (int)sizeof(line) - 1);
    if (p->tty) {
        /* Spaces wipe what is left of a longer previous line. */
        fprintf(p->out, "\r%s%*s", line, p->line_len > len ? p->line_len - len : 0, "");
        p->line_len = len;
        p->t_drawn = now;
        if (last) dg_progress_break(p);
    } else {
        fprintf(p->out, "%s\n", line);
    }
    fflush(p->out);
}

void dg_progress_break(dg_progress *p) {
    if (!p->tty || p->line_len == 0) return;
    fputc('\n', p->out);
    fflush(p->out);
    p->line_len = 0;
}

void dg_task_progress_begin(dg_task_progress *p, const char *label, int64_t total,
        const char *unit) {
    memset(p, 0, sizeof(*p));
    p->tty = dg_progress_is_tty(stdout);
    snprintf(p->label, sizeof(p->label), "%s", label);
    p->unit = unit;
    p->total = total;
    p->t0 = p->t_drawn = dg_now();
}

void dg_task_progress_update(dg_task_progress *p, int64_t done) {
    dg_cli_fault_point(p->label);
    const double now = dg_now();
    if (now - p->t_drawn < (p->tty ? 0.25 : 15.0) && done < p->total) return;
    if (!p->tty && done == p->total && now - p->t0 < 15.0) return; /* short: silent in logs */
    p->t_drawn = now;
    const double rate = done > 0 ? (double)done / (now - p->t0) : NAN;
    char eta[32], line[256];
    dg_progress_format_eta(eta, sizeof(eta), done > 0 ? (double)(p->total - done) / rate : NAN);
    const int len = snprintf(line, sizeof(line), "%s %lld/%lld | %.1f %s | eta %s", p->label,
            (long long)done, (long long)p->total, rate, p->unit, eta);
    if (p->tty) {
        printf("\r%s%*s", line, p->line_len > len ? p->line_len - len : 0, "");
        p->line_len = len;
    } else {
        printf("%s\n", line);
    }
    fflush(stdout);
}

void dg_task_progress_end(dg_task_progress *p) {
    if (!p->tty || p->line_len == 0) return;
    printf("\r%*s\r", p->line_len, ""); /* the result lines follow on a clean line */
    fflush(stdout);
    p->line_len = 0;
}
