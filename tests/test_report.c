/* tests/test_report.c -- run reports on files written here: the metrics
 * log, results, plots and progress line (app/metrics_log.h, app/results.h,
 * app/plot.h, app/progress.h).
 *
 * metrics.jsonl: lines read back exactly (NaN as null), a resumed log drops
 * later and torn lines and keeps an untouched one byte-identical, a fresh
 * log replaces an old one, unwritable paths and malformed lines are named.
 * Results: results.json fields and x100 two-decimal numbers with null for
 * NaN; results.md tables (two decimals, "—", summary mean); how many
 * classes each mIoU averages and which targets a mean leaves out; the
 * classification table's mean ± std(ddof=0)/√n computed here by hand;
 * training-domain validation selection; run settings from a config.
 * Curves: curves.png is a PNG of the requested size, nothing is printed,
 * and failures (no folder, a size cairo refuses, no driver, nothing to
 * plot) are one warning line each, with nothing left behind. Progress: ETA hh:mm:ss, units, smoothing,
 * plain lines every N steps and in-place redraws. */
#define _DEFAULT_SOURCE /* mount, umount */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "app/config.h"
#include "app/metrics_log.h"
#include "app/results.h"
#include "app/plot.h"
#include "app/progress.h"
#include "common.h"

/* fontconfig, loaded by PLplot's cairo driver through pango, keeps caches
 * LeakSanitizer cannot trace back to a root; they are not dgseg's. Weak, so
 * a runner-wide list elsewhere takes precedence without a link conflict. */
__attribute__((weak)) const char *__lsan_default_suppressions(void);
__attribute__((weak)) const char *__lsan_default_suppressions(void) {
    return "leak:libfontconfig.so\n";
}

static char dir[64];
static void make_dir(void) { make_tmpdir(dir, "report"); }
static void remove_dir(void) { remove_tree(dir, 2); }

static void path_in(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", dir, name);
}

static int count_char(const char *s, char c) {
    int n = 0;
    for (; *s; s++) n += *s == c;
    return n;
}

static int count_files(const char *d) {
    DIR *dp = opendir(d);
    ck_assert_ptr_nonnull(dp);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) n += e->d_name[0] != '.';
    closedir(dp);
    return n;
}

/* ---- metrics.jsonl --------------------------------------------------------- */

START_TEST(metrics_lines_round_trip) {
    char path[128];
    path_in(path, sizeof(path), "metrics.jsonl");
    dg_metrics m;
    ck_assert_int_eq(dg_metrics_open(&m, path, false, 0), DG_STATUS_OK);
    const double odd = 0.1 + 0.2; /* not a short decimal: must survive exactly */
    ck_assert_int_eq(dg_metrics_log_train(&m, 10, 1.5, 0.01, 3.25), DG_STATUS_OK);
    ck_assert_int_eq(dg_metrics_log_train(&m, 20, 1.25, 0.0099, NAN), DG_STATUS_OK);
    const dg_metric ev[] = {{"val_miou", 0.4}, {"cityscapes_miou", NAN}};
    ck_assert_int_eq(dg_metrics_log(&m, "eval", 20, ev, 2), DG_STATUS_OK);
    /* Flushed per line: the file is complete before the log is closed. */
    char *early = read_file(path, NULL);
    ck_assert_int_eq(count_lines(early), 3);
    dg_free(early);
    ck_assert_int_eq(dg_metrics_log_train(&m, 30, odd, 1e-7, 5.0), DG_STATUS_OK);
    dg_metrics_close(&m);

    char *text = read_file(path, NULL);
    ck_assert_int_eq(count_char(text, '\n'), 4);
    const char *first = "{\"step\":10,\"kind\":\"train\",\"loss\":1.5,\"lr\":0.01,"
                        "\"img_s\":3.25}\n";
    ck_assert_msg(!strncmp(text, first, strlen(first)), "%s", text);
    ck_assert_msg(strstr(text, "\"img_s\":null}") && strstr(text, "\"cityscapes_miou\":null"),
            "%s", text);
    dg_free(text);

    dg_metrics_data d;
    ck_assert_int_eq(dg_metrics_read(&d, path), DG_STATUS_OK);
    const dg_series *loss = dg_metrics_find(&d, "train", "loss");
    const dg_series *img = dg_metrics_find(&d, "train", "img_s");
    const dg_series *miou = dg_metrics_find(&d, "eval", "val_miou");
    const dg_series *city = dg_metrics_find(&d, "eval", "cityscapes_miou");
    ck_assert_ptr_nonnull(loss);
    ck_assert_ptr_nonnull(img);
    ck_assert_ptr_nonnull(miou);
    ck_assert_ptr_nonnull(city);
    ck_assert_ptr_null(dg_metrics_find(&d, "eval", "loss"));
    ck_assert_int_eq(d.n_series, 5);
    ck_assert_int_eq(loss->n, 3);
    const int64_t steps[] = {10, 20, 30};
    const double losses[] = {1.5, 1.25, odd};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(loss->step[i], steps[i]);
        ck_assert_msg(loss->value[i] == losses[i], "loss[%d] %.17g != %.17g", i, loss->value[i],
                losses[i]);
    }
    ck_assert(img->value[0] == 3.25 && isnan(img->value[1]) && img->value[2] == 5.0);
    ck_assert(dg_metrics_find(&d, "train", "lr")->value[2] == 1e-7);
    ck_assert_int_eq(miou->n, 1);
    ck_assert_int_eq(miou->step[0], 20);
    ck_assert(miou->value[0] == 0.4);
    ck_assert(isnan(city->value[0]));
    dg_metrics_data_free(&d);
    ck_assert_int_eq(d.n_series, 0);
}
END_TEST

/* Writes train lines for steps 10 .. 50 and eval lines at 30 and 50. */
static void write_run(const char *path) {
    dg_metrics m;
    ck_assert_int_eq(dg_metrics_open(&m, path, false, 0), DG_STATUS_OK);
    for (int s = 10; s <= 50; s += 10) {
        ck_assert_int_eq(dg_metrics_log_train(&m, s, 1.0 / s, 0.01, 2.0), DG_STATUS_OK);
        if (s % 30 == 0 || s == 50) {
            const dg_metric v = {"val_acc", s / 100.0};
            ck_assert_int_eq(dg_metrics_log(&m, "eval", s, &v, 1), DG_STATUS_OK);
        }
    }
    dg_metrics_close(&m);
}

START_TEST(metrics_resume_drops_later_and_torn_lines) {
    char path[128];
    path_in(path, sizeof(path), "metrics.jsonl");
    write_run(path);
    FILE *f = fopen(path, "a");
    ck_assert_ptr_nonnull(f);
    fputs("{\"step\":60,\"kind\":\"tr", f); /* a crash mid-line */
    fclose(f);

    dg_metrics m;
    capture cap;
    capture_begin(&cap);
    ck_assert_int_eq(dg_metrics_open(&m, path, true, 30), DG_STATUS_OK);
    dg_free(capture_end(&cap));
    char *text = read_file(path, NULL);
    ck_assert_msg(count_lines(text) == 4 && !strstr(text, "\"step\":40") &&
                    !strstr(text, "\"step\":60") && text[strlen(text) - 1] == '\n',
            "%s", text);
    dg_free(text);
    ck_assert_int_eq(dg_metrics_log_train(&m, 40, 0.5, 0.01, 2.0), DG_STATUS_OK);
    dg_metrics_close(&m);

    dg_metrics_data d;
    ck_assert_int_eq(dg_metrics_read(&d, path), DG_STATUS_OK);
    const dg_series *loss = dg_metrics_find(&d, "train", "loss");
    const dg_series *acc = dg_metrics_find(&d, "eval", "val_acc");
    ck_assert_int_eq(loss->n, 4);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(loss->step[i], 10 * (i + 1));
    ck_assert(loss->value[3] == 0.5);
    ck_assert_int_eq(acc->n, 1);
    ck_assert_int_eq(acc->step[0], 30);
    dg_metrics_data_free(&d);

    /* Nothing beyond the resume step: the file is left as it is. */
    char *before = read_file(path, NULL);
    ck_assert_int_eq(dg_metrics_open(&m, path, true, 40), DG_STATUS_OK);
    dg_metrics_close(&m);
    char *after = read_file(path, NULL);
    ck_assert_str_eq(after, before);
    dg_free(before);
    dg_free(after);

    /* A missing log is created on resume. */
    char fresh[128];
    path_in(fresh, sizeof(fresh), "none.jsonl");
    ck_assert_int_eq(dg_metrics_open(&m, fresh, true, 100), DG_STATUS_OK);
    ck_assert_int_eq(dg_metrics_log_train(&m, 101, 0.25, 0.01, 1.0), DG_STATUS_OK);
    dg_metrics_close(&m);
    char *one = read_file(fresh, NULL);
    ck_assert_int_eq(count_lines(one), 1);
    dg_free(one);
}
END_TEST

START_TEST(metrics_fresh_log_replaces_and_errors_are_named) {
    char path[128];
    path_in(path, sizeof(path), "metrics.jsonl");
    write_run(path);
    dg_metrics m;
    ck_assert_int_eq(dg_metrics_open(&m, path, false, 0), DG_STATUS_OK);
    dg_metrics_close(&m);
    size_t n;
    dg_free(read_file(path, &n));
    ck_assert_uint_eq(n, 0);

    char bad[128];
    path_in(bad, sizeof(bad), "missing/metrics.jsonl");
    capture cap;
    capture_begin(&cap);
    const dg_status st = dg_metrics_open(&m, bad, false, 0);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_IO);
    ck_assert_msg(strstr(log, bad) && strstr(log, "error"), "%s", log);
    dg_free(log);

    /* A malformed line is skipped with its line number; the rest is read. */
    const char *text = "{\"step\":1,\"kind\":\"train\",\"loss\":2}\nnot json\n"
                       "{\"step\":2,\"kind\":\"train\",\"loss\":1}\n";
    write_file(path, text, strlen(text));
    dg_metrics_data d;
    capture_begin(&cap);
    ck_assert_int_eq(dg_metrics_read(&d, path), DG_STATUS_OK);
    log = capture_end(&cap);
    char where[160];
    snprintf(where, sizeof(where), "%s:2:", path);
    ck_assert_msg(strstr(log, where) && strstr(log, "warning"), "%s", log);
    ck_assert_int_eq(dg_metrics_find(&d, "train", "loss")->n, 2);
    dg_metrics_data_free(&d);
    dg_free(log);
}
END_TEST

/* ---- segmentation results ------------------------------------------------- */

static void seg_fill(dg_seg_result *res, const char *weights, const char *target, double miou,
        double base) {
    memset(res, 0, sizeof(*res));
    res->weights = weights;
    res->target = target;
    res->reader = target;
    res->images = 500;
    res->miou = miou;
    res->pixel_acc = 0.9;
    for (int c = 0; c < DG_NUM_TRAIN_IDS; c++) res->iou[c] = base + 0.01 * c;
    res->iou[3] = NAN;
    res->resolution = "2048x1024";
    res->inference = "whole";
    res->bn = "running statistics";
}

static void seg_report_make(dg_seg_report *r, dg_seg_result res[3], dg_report_settings *run) {
    seg_fill(&res[0], "slow (Lookahead)", "cityscapes", 0.4567891, 0.123456);
    seg_fill(&res[1], "slow (Lookahead)", "bdd100k", 0.30, 0.2);
    seg_fill(&res[2], "MESA teacher", "cityscapes", 0.5, 0.3);
    run->n = 0;
    dg_report_settings_add(run, "method", "%s", "lookahead");
    dg_report_settings_add(run, "la_k", "%d", 15);
    memset(r, 0, sizeof(*r));
    r->checkpoint = "runs/x/checkpoints/last.safetensors";
    r->method = "lookahead";
    r->run = run;
    r->results = res;
    r->n_results = 3;
}

static double json_number(const cJSON *o, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(it), "\"%s\" is not a number", key);
    return it->valuedouble;
}

static const char *json_string(const cJSON *o, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsString(it), "\"%s\" is not a string", key);
    return it->valuestring;
}

START_TEST(seg_results_json_fields_and_numbers) {
    dg_seg_result res[3];
    dg_report_settings run;
    dg_seg_report r;
    seg_report_make(&r, res, &run);
    char path[128];
    path_in(path, sizeof(path), "results.json");
    ck_assert_int_eq(dg_report_seg_write_json(&r, path), DG_STATUS_OK);
    cJSON *j = read_json(path);
    ck_assert_str_eq(json_string(j, "task"), "segmentation");
    ck_assert_str_eq(json_string(j, "method"), "lookahead");
    ck_assert_str_eq(json_string(j, "checkpoint"), r.checkpoint);
    ck_assert_str_eq(json_string(cJSON_GetObjectItem(j, "run"), "la_k"), "15");
    const cJSON *targets = cJSON_GetObjectItem(j, "targets");
    ck_assert_int_eq(cJSON_GetArraySize(targets), 3);
    const cJSON *t0 = cJSON_GetArrayItem(targets, 0);
    ck_assert_str_eq(json_string(t0, "name"), "cityscapes");
    ck_assert_str_eq(json_string(t0, "reader"), "cityscapes");
    ck_assert(json_number(t0, "images") == 500);
    /* x100, two decimals: 0.4567891 -> 45.68; 0.123456 + 0.01 c -> 12.35 + c. */
    ck_assert_double_eq_tol(json_number(t0, "miou"), 45.68, 1e-9);
    ck_assert_double_eq_tol(json_number(t0, "pixel_acc"), 90.0, 1e-9);
    const cJSON *iou = cJSON_GetObjectItem(t0, "per_class_iou");
    ck_assert_int_eq(cJSON_GetArraySize(iou), DG_NUM_TRAIN_IDS);
    for (int c = 0; c < DG_NUM_TRAIN_IDS; c++) {
        const cJSON *v = cJSON_GetArrayItem(iou, c);
        if (c == 3) {
            ck_assert_msg(cJSON_IsNull(v), "NaN IoU must be null");
            continue;
        }
        ck_assert_msg(cJSON_IsNumber(v) && fabs(v->valuedouble - (12.35 + c)) < 1e-9,
                "class %d: %g", c, v->valuedouble);
    }
    const cJSON *set = cJSON_GetObjectItem(t0, "settings");
    ck_assert_str_eq(json_string(set, "weights"), "slow (Lookahead)");
    ck_assert_str_eq(json_string(set, "resolution"), "2048x1024");
    ck_assert_str_eq(json_string(set, "inference"), "whole");
    ck_assert_str_eq(json_string(set, "bn"), "running statistics");
    ck_assert_str_eq(json_string(cJSON_GetObjectItem(cJSON_GetArrayItem(targets, 2),
                                         "settings"), "weights"), "MESA teacher");
    cJSON_Delete(j);

    /* eval --json: no method, no run settings; a NaN mIoU is null. */
    res[0].miou = NAN;
    r.method = NULL;
    r.run = NULL;
    ck_assert_int_eq(dg_report_seg_write_json(&r, path), DG_STATUS_OK);
    j = read_json(path);
    ck_assert_ptr_null(cJSON_GetObjectItem(j, "method"));
    ck_assert_ptr_null(cJSON_GetObjectItem(j, "run"));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j,
                                                       "targets"), 0), "miou")));
    cJSON_Delete(j);
}
END_TEST

START_TEST(seg_results_md_tables) {
    dg_seg_result res[3];
    dg_report_settings run;
    dg_seg_report r;
    seg_report_make(&r, res, &run);
    char path[128];
    path_in(path, sizeof(path), "results.md");
    ck_assert_int_eq(dg_report_seg_write_md(&r, path), DG_STATUS_OK);
    char *md = read_file(path, NULL);
    /* Summary: rows = weights, columns = targets + mean ((45.67891 + 30) / 2). */
    const char *want[] = {
            "| weights | cityscapes | bdd100k | mean |\n|---|---:|---:|---:|\n",
            "| slow (Lookahead) | 45.68 | 30.00 | 37.84 |\n",
            "| MESA teacher | 50.00 | — | — |\n",
            "| slow (Lookahead) | cityscapes | 500 | 2048x1024 | whole | running statistics "
            "| 45.68 | 90.00 |\n",
            "| road | sidewalk | building | wall | fence | pole | traffic light | traffic sign "
            "| vegetation | terrain | sky | person | rider | car | truck | bus | train "
            "| motorcycle | bicycle |\n",
            "| slow (Lookahead) | 12.35 | 13.35 | 14.35 | — | 16.35 |",
            "| MESA teacher | 30.00 | 31.00 | 32.00 | — | 34.00 |",
            "| la_k | 15 |\n",
    };
    for (size_t i = 0; i < DG_ARRAY_LEN(want); i++)
        ck_assert_msg(strstr(md, want[i]), "missing:\n%s\nin:\n%s", want[i], md);
    ck_assert_ptr_nonnull(strstr(md, "## bdd100k"));
    dg_free(md);
    ck_assert_str_eq(dg_report_class_name(6), "traffic light");
    ck_assert_str_eq(dg_report_class_name(18), "bicycle");
}
END_TEST


/* A target with no valid label pixel (every IoU NaN) and classes absent
 * from both labels and predictions: results.json says how many classes
 * each mIoU averages and which (new keys only; the old ones unchanged),
 * and which targets each mean leaves out; results.md marks such a mean and
 * says why under the table, and says per target how many classes its mIoU
 * averages. */
START_TEST(seg_results_say_what_each_miou_and_mean_cover) {
    dg_seg_result res[3];
    dg_report_settings run;
    dg_seg_report r;
    seg_report_make(&r, res, &run);
    res[1].miou = NAN;
    res[1].pixel_acc = NAN;
    for (int c = 0; c < DG_NUM_TRAIN_IDS; c++) res[1].iou[c] = NAN;
    res[2].iou[16] = NAN; /* MESA teacher on cityscapes: no wall, no train */
    char path[128];
    path_in(path, sizeof(path), "results.json");
    ck_assert_int_eq(dg_report_seg_write_json(&r, path), DG_STATUS_OK);
    cJSON *j = read_json(path);
    const cJSON *targets = cJSON_GetObjectItem(j, "targets");
    const cJSON *t0 = cJSON_GetArrayItem(targets, 0), *t1 = cJSON_GetArrayItem(targets, 1),
                *t2 = cJSON_GetArrayItem(targets, 2);
    ck_assert_double_eq_tol(json_number(t0, "miou"), 45.68, 1e-9);
    ck_assert(json_number(t0, "miou_classes") == 18);
    ck_assert(json_number(t1, "miou_classes") == 0);
    ck_assert(json_number(t2, "miou_classes") == 17);
    const cJSON *abs0 = cJSON_GetObjectItem(t0, "classes_absent");
    ck_assert_int_eq(cJSON_GetArraySize(abs0), 1);
    ck_assert_str_eq(cJSON_GetArrayItem(abs0, 0)->valuestring, "wall");
    const cJSON *abs2 = cJSON_GetObjectItem(t2, "classes_absent");
    ck_assert_int_eq(cJSON_GetArraySize(abs2), 2);
    ck_assert_str_eq(cJSON_GetArrayItem(abs2, 1)->valuestring, "train");
    const cJSON *means = cJSON_GetObjectItem(j, "mean_miou");
    ck_assert_int_eq(cJSON_GetArraySize(means), 2);
    const cJSON *m0 = cJSON_GetArrayItem(means, 0);
    ck_assert_str_eq(json_string(m0, "weights"), "slow (Lookahead)");
    ck_assert_double_eq_tol(json_number(m0, "miou"), 45.68, 1e-9);
    ck_assert(json_number(m0, "targets") == 1);
    const cJSON *lo = cJSON_GetObjectItem(m0, "left_out");
    ck_assert_int_eq(cJSON_GetArraySize(lo), 1);
    ck_assert_str_eq(cJSON_GetArrayItem(lo, 0)->valuestring, "bdd100k");
    const cJSON *m1 = cJSON_GetArrayItem(means, 1);
    ck_assert_str_eq(json_string(m1, "weights"), "MESA teacher");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(m1, "miou"))); /* bdd100k not evaluated */
    ck_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(m1, "not_evaluated"), 0)->valuestring,
            "bdd100k");
    cJSON_Delete(j);

    path_in(path, sizeof(path), "results.md");
    ck_assert_int_eq(dg_report_seg_write_md(&r, path), DG_STATUS_OK);
    char *md = read_file(path, NULL);
    const char *want[] = {
            "| slow (Lookahead) | 45.68 | — | 45.68 † |\n",
            "| MESA teacher | 50.00 | — | — |\n",
            "† slow (Lookahead): mean of 1 of 2 targets; bdd100k has no valid label pixel",
            "slow (Lookahead): the mIoU averages 18 of 19 classes (no IoU for wall: absent "
            "from both the labels and the predictions)",
            "MESA teacher: the mIoU averages 17 of 19 classes (no IoU for wall, train: absent "
            "from both the labels and the predictions)",
            "slow (Lookahead): no valid label pixel, so no mIoU",
    };
    for (size_t i = 0; i < DG_ARRAY_LEN(want); i++)
        ck_assert_msg(strstr(md, want[i]), "missing:\n%s\nin:\n%s", want[i], md);
    dg_free(md);
}
END_TEST

/* ---- classification results ----------------------------------------------- */

static const char *const cls_domains[] = {"0", "15", "30"};

/* Domain "0": 0.70 0.72 0.77; "15": 0.80 0.81 0.85; "30": one trial 0.60.
 * Last-step accuracies are 1 point lower. */
static void cls_runs_make(dg_cls_run runs[7]) {
    const char *dom[] = {"0", "0", "0", "15", "15", "15", "30"};
    const double acc[] = {0.70, 0.72, 0.77, 0.80, 0.81, 0.85, 0.60};
    for (int i = 0; i < 7; i++) {
        runs[i] = (dg_cls_run){dom[i], i % 3, 100 * (i + 1), 0.9, acc[i], 5000, acc[i] - 0.01};
    }
}

/* The expected cell of one domain, computed here from the definition. */
static void cell_by_hand(const double *acc, int n, char *out, size_t size, double *mean_out) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += 100.0 * acc[i];
    const double mean = s / n;
    double v = 0.0;
    for (int i = 0; i < n; i++) v += (100.0 * acc[i] - mean) * (100.0 * acc[i] - mean);
    const double se = sqrt(v / n) / sqrt((double)n);
    if (n > 1) snprintf(out, size, "%.1f ± %.1f", mean, se);
    else snprintf(out, size, "%.1f", mean);
    *mean_out = mean;
}

START_TEST(cls_table_mean_and_standard_error) {
    dg_cls_run runs[7];
    cls_runs_make(runs);
    dg_cls_report r[2] = {{"erm", "rotated-fmnist", cls_domains, 3, NULL, runs, 7, NULL},
            {"sam", "rotated-fmnist", cls_domains, 3, NULL, runs, 6, NULL}}; /* sam: no "30" */
    char *t = dg_report_cls_table(r, 2, DG_CLS_PICK_SELECTED);
    const double a0[] = {0.70, 0.72, 0.77}, a15[] = {0.80, 0.81, 0.85}, a30[] = {0.60};
    char c0[32], c15[32], c30[32], row[160];
    double m0, m15, m30;
    cell_by_hand(a0, 3, c0, sizeof(c0), &m0);
    cell_by_hand(a15, 3, c15, sizeof(c15), &m15);
    cell_by_hand(a30, 1, c30, sizeof(c30), &m30);
    ck_assert_str_eq(c0, "73.0 ± 1.7"); /* std(ddof=0) = sqrt(26/3), / sqrt(3) */
    ck_assert_str_eq(c15, "82.0 ± 1.2");
    snprintf(row, sizeof(row), "| erm | %s | %s | %s | %.1f |\n", c0, c15, c30,
            (m0 + m15 + m30) / 3);
    ck_assert_msg(strstr(t, "| method | 0 | 15 | 30 | Avg |\n|---|---:|---:|---:|---:|\n"), "%s",
            t);
    ck_assert_msg(strstr(t, row), "want %s in:\n%s", row, t);
    ck_assert_msg(strstr(t, "| erm | 73.0 ± 1.7 | 82.0 ± 1.2 | 60.0 | 71.7 |\n"), "%s", t);
    ck_assert_msg(strstr(t, "| sam | 73.0 ± 1.7 | 82.0 ± 1.2 | — | — |\n"), "%s", t);
    dg_free(t);

    t = dg_report_cls_table(r, 1, DG_CLS_PICK_LAST);
    ck_assert_msg(strstr(t, "| erm | 72.0 ± 1.7 | 81.0 ± 1.2 | 59.0 | 70.7 |\n"), "%s", t);
    dg_free(t);

    const double x[] = {1.0, 2.0, 3.0, 4.0};
    double mean, se;
    dg_report_mean_se(x, 4, &mean, &se);
    ck_assert_double_eq_tol(mean, 2.5, 1e-15);
    ck_assert_double_eq_tol(se, sqrt(1.25) / 2.0, 1e-15); /* mean square deviation 5/4 */
}
END_TEST

START_TEST(cls_select_highest_earliest_skipping_nan) {
    const double v[] = {0.5, 0.7, NAN, 0.7, 0.6};
    ck_assert_int_eq(dg_report_select(v, 5), 1);
    const double w[] = {NAN, 0.2, 0.9};
    ck_assert_int_eq(dg_report_select(w, 3), 2);
    const double z[] = {NAN, NAN};
    ck_assert_int_eq(dg_report_select(z, 2), -1);
    ck_assert_int_eq(dg_report_select(v, 0), -1);
}
END_TEST

START_TEST(cls_results_json_and_md) {
    dg_cls_run runs[7];
    cls_runs_make(runs);
    dg_report_settings run = {0};
    dg_report_settings_add(&run, "dataset", "rotated-fmnist");
    const dg_cls_report r = {"erm", "rotated-fmnist", cls_domains, 3, &run, runs, 7, NULL};
    char path[128];
    path_in(path, sizeof(path), "results.json");
    ck_assert_int_eq(dg_report_cls_write_json(&r, path), DG_STATUS_OK);
    cJSON *j = read_json(path);
    ck_assert_str_eq(json_string(j, "task"), "classification");
    ck_assert_str_eq(json_string(j, "method"), "erm");
    const cJSON *r0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "runs"), 0);
    ck_assert_str_eq(json_string(r0, "test_domain"), "0");
    ck_assert_double_eq_tol(json_number(r0, "acc_selected"), 70.0, 1e-9);
    ck_assert_double_eq_tol(json_number(r0, "acc_last"), 69.0, 1e-9);
    ck_assert(json_number(r0, "selected_step") == 100 && json_number(r0, "last_step") == 5000);
    const cJSON *sel = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "summary"), "selected");
    const cJSON *d0 = cJSON_GetArrayItem(cJSON_GetObjectItem(sel, "domains"), 0);
    ck_assert(json_number(d0, "trials") == 3);
    ck_assert_double_eq_tol(json_number(d0, "mean"), 73.0, 1e-9);
    ck_assert_double_eq_tol(json_number(d0, "se"), 1.70, 1e-9); /* 1.6997 */
    ck_assert_double_eq_tol(json_number(sel, "avg"), 71.67, 1e-9);
    cJSON_Delete(j);

    path_in(path, sizeof(path), "results.md");
    ck_assert_int_eq(dg_report_cls_write_md(&r, path), DG_STATUS_OK);
    char *md = read_file(path, NULL);
    const char *want[] = {"training-domain validation\n\n| method | 0 | 15 | 30 | Avg |",
            "| erm | 73.0 ± 1.7 | 82.0 ± 1.2 | 60.0 | 71.7 |", "last step\n\n| method |",
            "| erm | 72.0 ± 1.7 | 81.0 ± 1.2 | 59.0 | 70.7 |",
            "| 30 | 0 | 700 | 90.0 | 60.0 | 5000 | 59.0 |", "| dataset | rotated-fmnist |"};
    for (size_t i = 0; i < DG_ARRAY_LEN(want); i++)
        ck_assert_msg(strstr(md, want[i]), "missing:\n%s\nin:\n%s", want[i], md);
    dg_free(md);

    /* without a second model: no "second" object, no per-model runs titles */
    path_in(path, sizeof(path), "results.json");
    j = read_json(path);
    ck_assert_ptr_null(cJSON_GetObjectItem(j, "second"));
    cJSON_Delete(j);

    /* MESA's teacher as a second row: its runs (all but the "30" one) get
     * their own row, runs table and "second" object, summarized over the
     * same domains (the "30" cell and the average are empty). */
    const dg_cls_report teacher = {"mesa teacher", NULL, NULL, 0, NULL, runs, 6, NULL};
    dg_cls_report r2 = r;
    r2.method = "mesa";
    r2.second = &teacher;
    path_in(path, sizeof(path), "results2.json");
    ck_assert_int_eq(dg_report_cls_write_json(&r2, path), DG_STATUS_OK);
    j = read_json(path);
    ck_assert_str_eq(json_string(j, "method"), "mesa");
    const cJSON *sec = cJSON_GetObjectItem(j, "second");
    ck_assert_str_eq(json_string(sec, "method"), "mesa teacher");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(sec, "runs")), 6);
    sel = cJSON_GetObjectItem(cJSON_GetObjectItem(sec, "summary"), "selected");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(sel, "domains")), 3);
    ck_assert_double_eq_tol(json_number(cJSON_GetArrayItem(cJSON_GetObjectItem(sel, "domains"),
                                    0), "mean"), 73.0, 1e-9);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(sel, "avg")));
    cJSON_Delete(j);
    path_in(path, sizeof(path), "results2.md");
    ck_assert_int_eq(dg_report_cls_write_md(&r2, path), DG_STATUS_OK);
    md = read_file(path, NULL);
    const char *want2[] = {"| mesa | 73.0 ± 1.7 | 82.0 ± 1.2 | 60.0 | 71.7 |\n"
                           "| mesa teacher | 73.0 ± 1.7 | 82.0 ± 1.2 | — | — |",
            "## Runs (mesa)\n", "## Runs (mesa teacher)\n"};
    for (size_t i = 0; i < DG_ARRAY_LEN(want2); i++)
        ck_assert_msg(strstr(md, want2[i]), "missing:\n%s\nin:\n%s", want2[i], md);
    dg_free(md);

    const dg_cls_domain_acc acc[] = {{"0", 9334, 0.71234}, {"15", 9334, NAN}};
    path_in(path, sizeof(path), "eval.json");
    ck_assert_int_eq(dg_report_cls_write_eval_json("ck.safetensors", acc, 2, NULL, NULL, path),
            DG_STATUS_OK);
    j = read_json(path);
    ck_assert_ptr_null(cJSON_GetObjectItem(j, "second"));
    cJSON_Delete(j);
    const dg_cls_domain_acc acc2[] = {{"0", 9334, 0.5}, {"15", 9334, 0.25}};
    ck_assert_int_eq(dg_report_cls_write_eval_json("ck.safetensors", acc, 2, "mesa teacher", acc2,
                             path), DG_STATUS_OK);
    j = read_json(path);
    const cJSON *sec2 = cJSON_GetObjectItem(j, "second");
    ck_assert_str_eq(json_string(sec2, "weights"), "mesa teacher");
    ck_assert_double_eq_tol(json_number(cJSON_GetArrayItem(cJSON_GetObjectItem(sec2, "domains"),
                                    1), "accuracy"), 25.0, 1e-9);
    const cJSON *doms = cJSON_GetObjectItem(j, "domains");
    ck_assert_str_eq(json_string(j, "checkpoint"), "ck.safetensors");
    ck_assert_str_eq(json_string(cJSON_GetArrayItem(doms, 0), "name"), "0");
    ck_assert(json_number(cJSON_GetArrayItem(doms, 0), "images") == 9334);
    ck_assert_double_eq_tol(json_number(cJSON_GetArrayItem(doms, 0), "accuracy"), 71.23, 1e-9);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(doms, 1), "accuracy")));
    cJSON_Delete(j);
}
END_TEST

START_TEST(settings_from_config_name_method_keys) {
    dg_config cfg;
    dg_config_defaults(&cfg);
    ck_assert_int_eq(dg_config_set(&cfg, "data.sources=gtav:/data/GTAV"), DG_STATUS_OK);
    ck_assert_int_eq(dg_config_set(&cfg, "optim.method=lookahead"), DG_STATUS_OK);
    ck_assert_int_eq(dg_config_set(&cfg, "optim.la_alpha=0.5"), DG_STATUS_OK);
    dg_report_settings s;
    dg_report_settings_from_config(&s, &cfg);
    const char *want[][2] = {{"sources", "gtav:/data/GTAV"}, {"method", "lookahead"},
            {"schedule", "poly (power 0.9)"}, {"iterations", "40000"}, {"la_k", "15"},
            {"la_alpha", "0.5"}, {"la_endpoint", "mean"}};
    for (size_t w = 0; w < DG_ARRAY_LEN(want); w++) {
        int found = -1;
        for (int i = 0; i < s.n; i++)
            if (!strcmp(s.key[i], want[w][0])) found = i;
        ck_assert_msg(found >= 0, "no setting %s", want[w][0]);
        ck_assert_str_eq(s.value[found], want[w][1]);
    }
    for (int i = 0; i < s.n; i++) ck_assert_msg(strcmp(s.key[i], "sam_rho"), "sam_rho listed");
    dg_config_free(&cfg);
}
END_TEST

/* ---- curves.png ------------------------------------------------------------ */

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Checks path is a PNG of w x h pixels. */
static void assert_png(const char *path, uint32_t w, uint32_t h) {
    size_t n;
    unsigned char *png = (unsigned char *)read_file(path, &n);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    ck_assert_msg(n > 33 && !memcmp(png, sig, 8) && !memcmp(png + 12, "IHDR", 4),
            "%s is not a PNG (%zu bytes)", path, n);
    ck_assert_uint_eq(be32(png + 16), w);
    ck_assert_uint_eq(be32(png + 20), h);
    dg_free(png);
}

/* Runs fn with stdout and stderr captured; returns what they received. */
static char *capture_both(dg_status (*fn)(void *), void *arg, dg_status *st) {
    fflush(stdout);
    capture cap;
    capture_begin(&cap);
    const int saved = dup(1);
    ck_assert(saved >= 0 && dup2(2, 1) == 1);
    *st = fn(arg);
    fflush(stdout);
    ck_assert(dup2(saved, 1) == 1);
    close(saved);
    return capture_end(&cap);
}

typedef struct curves_call {
    const dg_metrics_data *d;
    const char *path;
    int w, h;
} curves_call;

static dg_status curves_fn(void *arg) {
    const curves_call *c = arg;
    return dg_report_curves(c->d, c->path, c->w, c->h);
}

static void curves_metrics(dg_metrics_data *d) {
    char path[128];
    path_in(path, sizeof(path), "metrics.jsonl");
    dg_metrics m;
    ck_assert_int_eq(dg_metrics_open(&m, path, false, 0), DG_STATUS_OK);
    for (int s = 0; s <= 200; s += 5) {
        const double lr = 0.01 * pow(1.0 - s / 201.0, 0.9);
        ck_assert_int_eq(dg_metrics_log_train(&m, s, 2.0 * exp(-s / 60.0) + 0.1, lr, 10.0),
                DG_STATUS_OK);
        if (s % 50 == 0) {
            const dg_metric v[] = {{"val_miou", 0.2 + s / 500.0}, {"cityscapes_miou",
                    s == 100 ? NAN : 0.1 + s / 800.0}};
            ck_assert_int_eq(dg_metrics_log(&m, "eval", s, v, 2), DG_STATUS_OK);
        }
    }
    dg_metrics_close(&m);
    ck_assert_int_eq(dg_metrics_read(d, path), DG_STATUS_OK);
}

START_TEST(curves_png_has_requested_size_and_prints_nothing) {
    dg_metrics_data d;
    curves_metrics(&d);
    char png[128];
    path_in(png, sizeof(png), "curves.png");
    curves_call c = {&d, png, 640, 480};
    dg_status st;
    char *out = capture_both(curves_fn, &c, &st);
    ck_assert_int_eq(st, DG_STATUS_OK);
    ck_assert_msg(out[0] == '\0', "printed: %s", out);
    dg_free(out);
    assert_png(png, 640, 480);
    ck_assert_int_eq(count_files(dir), 2); /* metrics.jsonl, curves.png: no temporary left */

    /* Default size: 1000 wide, 320 per panel (loss, lr, evaluation). */
    ck_assert_int_eq(dg_report_curves(&d, png, 0, 0), DG_STATUS_OK);
    assert_png(png, 1000, 960);
    dg_metrics_data_free(&d);
}
END_TEST

START_TEST(curves_failure_is_one_warning_and_an_io_status) {
    dg_metrics_data d;
    curves_metrics(&d);
    char png[128];
    path_in(png, sizeof(png), "missing/curves.png");
    curves_call c = {&d, png, 320, 240};
    dg_status st;
    char *log = capture_both(curves_fn, &c, &st);
    ck_assert_int_eq(st, DG_STATUS_ERR_IO);
    ck_assert_msg(strstr(log, png) && strstr(log, "warning") && !strstr(log, "error:"), "%s",
            log);
    dg_free(log);

    /* Too wide for cairo (32767 pixels at most): PLplot writes no PNG. */
    path_in(png, sizeof(png), "curves.png");
    c = (curves_call){&d, png, 40000, 100};
    log = capture_both(curves_fn, &c, &st);
    ck_assert_int_eq(st, DG_STATUS_ERR_IO);
    ck_assert_msg(count_lines(log) == 1 && !strncmp(log, "dgseg: warning: ", 16) &&
                    strstr(log, png) && strstr(log, "no PNG"), "%s", log);
    ck_assert_int_ne(access(png, F_OK), 0);
    dg_free(log);

    ck_assert_int_eq(count_files(dir), 1); /* metrics.jsonl: no temporary left */
    dg_metrics_data_free(&d);

    /* Nothing to plot: a warning, no file. */
    const dg_metrics_data empty = {0, NULL};
    path_in(png, sizeof(png), "curves.png");
    c = (curves_call){&empty, png, 320, 240};
    log = capture_both(curves_fn, &c, &st);
    ck_assert_int_eq(st, DG_STATUS_ERR_MISSING);
    ck_assert_msg(strstr(log, png) && strstr(log, "warning"), "%s", log);
    ck_assert_int_ne(access(png, F_OK), 0);
    dg_free(log);
}
END_TEST

/* A full disk while cairo writes the PNG: PLplot is not told, the file
 * ends without its IEND chunk. On a real 24 KiB tmpfs (mounted here when
 * the test may mount; skipped with the reason otherwise): a warning, no
 * file and no temporary left, instead of a truncated curves.png. */
START_TEST(curves_on_a_full_disk_leave_no_truncated_png) {
    char mnt[128], png[192];
    path_in(mnt, sizeof(mnt), "full");
    ck_assert_int_eq(mkdir(mnt, 0755), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=24k") != 0) {
        DG_TEST_SKIPPED("full disk: cannot mount a tmpfs here (%s); checked the IEND test by "
                        "the other curves tests only", strerror(errno));
        return;
    }
    dg_metrics_data d;
    curves_metrics(&d);
    snprintf(png, sizeof(png), "%s/curves.png", mnt);
    curves_call c = {&d, png, 1000, 960};
    dg_status st;
    char *log = capture_both(curves_fn, &c, &st);
    const int left = count_files(mnt);
    umount(mnt);
    ck_assert_msg(st == DG_STATUS_ERR_IO && strstr(log, png) && strstr(log, "warning"),
            "status %d: %s", (int)st, log);
    ck_assert_msg(left == 0, "%d files left on the full disk", left);
    dg_free(log);
    dg_metrics_data_free(&d);
}
END_TEST

/* PLplot reads its driver directory once per process, so this runs only in
 * a forked child whose library is still untouched (not under CK_FORK=no). */
START_TEST(curves_without_driver_warn_once) {
    dg_metrics_data d;
    curves_metrics(&d);
    char png[128], nodrv[128];
    path_in(png, sizeof(png), "curves.png");
    path_in(nodrv, sizeof(nodrv), "no-drivers");
    ck_assert_int_eq(setenv("PLPLOT_DRV_DIR", nodrv, 1), 0);
    curves_call c = {&d, png, 320, 240};
    dg_status st;
    char *log = capture_both(curves_fn, &c, &st);
    unsetenv("PLPLOT_DRV_DIR");
    /* PLplot's own complaint is folded into the one warning line. */
    ck_assert_int_eq(st, DG_STATUS_ERR_MISSING);
    ck_assert_msg(count_lines(log) == 1 && !strncmp(log, "dgseg: warning: ", 16) &&
                    strstr(log, "pngcairo") && strstr(log, "PLplot said: "), "%s", log);
    ck_assert_int_ne(access(png, F_OK), 0);
    ck_assert_int_eq(count_files(dir), 1); /* metrics.jsonl: no temporary left */
    dg_free(log);
    dg_metrics_data_free(&d);
}
END_TEST

/* ---- progress line ---------------------------------------------------------- */

START_TEST(progress_format_eta_and_units) {
    char buf[256];
    dg_progress_format(buf, sizeof(buf), 120, 40000, 0.4312, 0.01, 3.1, 33120.0);
    ck_assert_str_eq(buf, "step 120/40000 | loss 0.4312 | lr 1.00e-02 | 3.10 img/s | eta 09:12:00");
    dg_progress_format(buf, sizeof(buf), 5, 10, 1.0, 5e-5, 123.44, 59.6);
    ck_assert_str_eq(buf, "step 5/10 | loss 1.0000 | lr 5.00e-05 | 123.4 img/s | eta 00:01:00");
    dg_progress_format(buf, sizeof(buf), 1, 2, 0.0, 1.0, 12345.6, NAN);
    ck_assert_str_eq(buf, "step 1/2 | loss 0.0000 | lr 1.00e+00 | 12346 img/s | eta --:--:--");
    dg_progress_format(buf, sizeof(buf), 1, 2, NAN, 1.0, NAN, 0.0);
    ck_assert_str_eq(buf, "step 1/2 | loss nan | lr 1.00e+00 | -- img/s | eta 00:00:00");
    const struct {
        double s;
        const char *want;
    } eta[] = {{0.0, "00:00:00"}, {0.4, "00:00:00"}, {3599.5, "01:00:00"}, {86399.0, "23:59:59"},
            {360001.0, "100:00:01"}, {-1.0, "--:--:--"}, {INFINITY, "--:--:--"}};
    for (size_t i = 0; i < DG_ARRAY_LEN(eta); i++) {
        dg_progress_format_eta(buf, sizeof(buf), eta[i].s);
        ck_assert_str_eq(buf, eta[i].want);
    }
}
END_TEST

static char *read_stream(FILE *f) {
    fflush(f);
    const long n = ftell(f);
    char *s = dg_xmalloc((size_t)n + 1);
    rewind(f);
    ck_assert_uint_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    return s;
}

START_TEST(progress_plain_lines_and_tty_redraw) {
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    ck_assert(!dg_progress_is_tty(f));
    dg_progress p;
    dg_progress_init(&p, f, false, 0, 25, 10, 16.0);
    ck_assert(isnan(dg_progress_smoothed_loss(&p)));
    dg_progress_update(&p, 1, 1.0, 0.01);
    dg_progress_update(&p, 2, 2.0, 0.01);
    /* Bias-corrected EMA, beta 0.98: (0.98 * 0.02 * 1 + 0.02 * 2) / (1 - 0.98^2). */
    ck_assert_double_eq_tol(dg_progress_smoothed_loss(&p),
            (0.98 * 0.02 * 1.0 + 0.02 * 2.0) / (1.0 - 0.98 * 0.98), 1e-12);
    dg_progress_update(&p, 3, NAN, 0.01); /* shown raw, not smoothed in */
    ck_assert_double_eq_tol(dg_progress_smoothed_loss(&p),
            (0.98 * 0.02 * 1.0 + 0.02 * 2.0) / (1.0 - 0.98 * 0.98), 1e-12);
    for (int s = 4; s <= 25; s++) dg_progress_update(&p, s, 2.0, 0.01);
    char *out = read_stream(f);
    ck_assert_msg(count_lines(out) == 3 && !strchr(out, '\r'), "%s", out);
    /* Step 10 shows the smoothed loss of 1, 2, then 2 at steps 4 .. 10. */
    double ema = 0.0, beta_n = 1.0;
    const double seen[] = {1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0};
    for (size_t i = 0; i < DG_ARRAY_LEN(seen); i++) {
        ema = 0.98 * ema + 0.02 * seen[i];
        beta_n *= 0.98;
    }
    char want[64];
    snprintf(want, sizeof(want), "step 10/25 | loss %.4f | lr 1.00e-02 | ", ema / (1.0 - beta_n));
    ck_assert_msg(!strncmp(out, want, strlen(want)), "want %s in:\n%s", want, out);
    ck_assert_msg(!strncmp(out, "step 10/25 | loss ", 18) && strstr(out, "\nstep 20/25 | ") &&
                    strstr(out, "\nstep 25/25 | ") && strstr(out, " img/s | eta "),
            "%s", out);
    dg_free(out);
    fclose(f);

    f = tmpfile();
    dg_progress_init(&p, f, true, 0, 5, 10, 16.0);
    for (int s = 1; s <= 5; s++) dg_progress_update(&p, s, 1.0, 0.01);
    dg_progress_break(&p); /* nothing left to break: no second newline */
    out = read_stream(f);
    ck_assert_msg(out[0] == '\r' && count_char(out, '\r') >= 2 && count_char(out, '\n') == 1 &&
                    out[strlen(out) - 1] == '\n' && strstr(out, "\rstep 5/5 | loss 1.0000 |"),
            "%s", out);
    ck_assert_msg(strstr(out, "\rstep 1/5 | loss 1.0000 | lr 1.00e-02 | "), "%s", out);
    dg_free(out);
    fclose(f);
}
END_TEST

Suite *report_suite(void) {
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("metrics");
    tcase_add_checked_fixture(tc, make_dir, remove_dir);
    tcase_add_test(tc, metrics_lines_round_trip);
    tcase_add_test(tc, metrics_resume_drops_later_and_torn_lines);
    tcase_add_test(tc, metrics_fresh_log_replaces_and_errors_are_named);
    suite_add_tcase(s, tc);
    TCase *r = tcase_create("results");
    tcase_add_checked_fixture(r, make_dir, remove_dir);
    tcase_add_test(r, seg_results_json_fields_and_numbers);
    tcase_add_test(r, seg_results_md_tables);
    tcase_add_test(r, seg_results_say_what_each_miou_and_mean_cover);
    tcase_add_test(r, cls_table_mean_and_standard_error);
    tcase_add_test(r, cls_select_highest_earliest_skipping_nan);
    tcase_add_test(r, cls_results_json_and_md);
    tcase_add_test(r, settings_from_config_name_method_keys);
    suite_add_tcase(s, r);
    TCase *c = tcase_create("curves");
    tcase_set_timeout(c, 30);
    tcase_add_checked_fixture(c, make_dir, remove_dir);
    tcase_add_test(c, curves_png_has_requested_size_and_prints_nothing);
    tcase_add_test(c, curves_failure_is_one_warning_and_an_io_status);
    tcase_add_test(c, curves_on_a_full_disk_leave_no_truncated_png);
    const char *fork_mode = getenv("CK_FORK");
    if (!fork_mode || strcmp(fork_mode, "no")) tcase_add_test(c, curves_without_driver_warn_once);
    suite_add_tcase(s, c);
    TCase *p = tcase_create("progress");
    tcase_add_test(p, progress_format_eta_and_units);
    tcase_add_test(p, progress_plain_lines_and_tty_redraw);
    suite_add_tcase(s, p);
    return s;
}
