/* app/results.h -- the results files of a run and of `dgseg eval`
 * (docs/design.md §4): results.json and results.md.
 *
 * Segmentation per (weights, target) pair: reader, images, mIoU, the 19
 * per-class IoUs in trainId order, pixel accuracy and the evaluation
 * settings; values x100 with two decimals, NaN as null in JSON and "—" in
 * tables (docs/datasets.md §8). Classification per (test domain, trial): the
 * test domain's in-split accuracy at the step selected by training-domain
 * validation and at the last step; tables show per test domain mean ±
 * std(ddof=0)/√n over trials and the average over test domains, in percent
 * with one decimal (docs/datasets.md §9.2, §12.6). JSON keeps two decimals. The
 * `dgseg eval --json` documents are the same writers without run settings.
 *
 * Files are written atomically (dg_file_write_atomic). The writers borrow
 * everything they print. */
#ifndef DG_APP_RESULTS_H
#define DG_APP_RESULTS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "app/config.h"
#include "data/labelmap.h"
#include "nets/core/common.h"

/* ---- run settings ------------------------------------------------------- */

#define DG_REPORT_MAX_SETTINGS 32

/* Key settings of a run, as text, in insertion order. Owns its storage. */
typedef struct dg_report_settings {
    int n;
    char key[DG_REPORT_MAX_SETTINGS][32];
    char value[DG_REPORT_MAX_SETTINGS][192]; /* longer values are cut */
} dg_report_settings;

/* Appends key = printf(fmt, ...); asserts there is room. */
void dg_report_settings_add(dg_report_settings *s, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Fills s (emptied first) with the settings a reader of the results needs:
 * data (sources and targets, or dataset and test domains), model, method,
 * base optimizer, lr and schedule, iterations, batch size, seed, and the
 * method's own hyper-parameters (docs/algorithms.md §16). */
void dg_report_settings_from_config(dg_report_settings *s, const dg_config *cfg);

/* ---- segmentation results ---------------------------------------------- */

/* Name of Cityscapes trainId 0 .. 18 ("road" ... "bicycle"). */
const char *dg_report_class_name(int train_id);

/* One set of weights evaluated on one target (docs/datasets.md §8). */
typedef struct dg_seg_result {
    const char *target;             /* "cityscapes", ... */
    const char *reader;             /* dataset reader */
    int64_t images;                 /* images evaluated */
    double miou;                    /* fraction; NaN when every class is NaN */
    double iou[DG_NUM_TRAIN_IDS];   /* (19) fractions in trainId order, NaN = absent */
    double pixel_acc;               /* fraction */
    const char *weights;            /* "slow (Lookahead)", "MESA teacher", "final", ... */
    const char *resolution;         /* "2048x1024", "height 1536, centre crop 1536", ... */
    const char *inference;          /* "whole", "sliding 768, stride 512", ... */
    const char *bn;                 /* "running statistics", ... */
    uint64_t oor_pixels;            /* label pixels outside the reader's id range (counted
                                       as ignore); 0: none or not counted */
    int64_t oor_images;             /* images holding any of them */
} dg_seg_result;

/* How many classes res's mIoU averages: the classes with an IoU (present in
 * the labels or the predictions); absent (when not NULL) gets the names of
 * the others, ", "-separated (empty when all 19 count). 0 means the target
 * had no valid label pixel. */
int dg_report_seg_classes(const dg_seg_result *res, char *absent, size_t size);

/* A segmentation report: results ordered by weights, then target. */
typedef struct dg_seg_report {
    const char *checkpoint;            /* NULL: not written */
    const char *method;                /* NULL: not written (eval --json) */
    const dg_report_settings *run;     /* NULL: no run settings */
    const dg_seg_result *results;      /* (n_results) */
    int n_results;
} dg_seg_report;

/* {"task": "segmentation", ["checkpoint",] ["method", "run": {...},]
 * "targets": [{"name", "reader", "images", "miou", "per_class_iou": [19],
 * "pixel_acc", "settings": {"weights", "resolution", "inference", "bn"},
 * "miou_classes": classes the mIoU averages, "classes_absent": [names of
 * the others], ["out_of_range_label_pixels", "out_of_range_label_images"
 * when the labels held values outside the reader's range]}],
 * "mean_miou": [{"weights", "miou": mean over the targets with an mIoU
 * (null when a target was not evaluated with these weights or none has
 * one), "targets": how many it averages, "left_out": [targets without a
 * valid label pixel], "not_evaluated": [targets without a result]}]}
 * written atomically at path. Keys after "settings" were added later; the
 * earlier ones keep their meaning. Returns DG_STATUS_OK or
 * DG_STATUS_ERR_IO. */
dg_status dg_report_seg_write_json(const dg_seg_report *r, const char *path);

/* The mean over targets that a results table's mean column, results.json's
 * "mean_miou" and the eval table print: the mIoU averaged over the targets
 * that have one (a target without a valid label pixel is left out and
 * said); NaN when a target has no result at all or none has an mIoU. */
typedef struct dg_seg_mean {
    double miou;
    int n_in;        /* targets averaged */
    int n_left_out;  /* targets with a result but no mIoU (no valid label pixel) */
    int n_missing;   /* targets without a result */
} dg_seg_mean;
/* The mean of one row: row[j] the result on target j, NULL when missing. */
dg_seg_mean dg_report_seg_mean(const dg_seg_result *const *row, int n);

/* results.md: a summary table (rows = weights, columns = targets + mean of
 * the targets' mIoU: "—" when a target has no result for those weights; the
 * mean of the others marked "†" and explained under the table when a
 * target has no valid label pixel), then per target its settings table,
 * notes on mIoUs that average fewer than 19 classes and on label values
 * outside the reader's range, and a table of the 19 class IoUs (rows =
 * weights), then the run settings. Atomic. */
dg_status dg_report_seg_write_md(const dg_seg_report *r, const char *path);

/* ---- classification results -------------------------------------------- */

/* Index of the highest validation accuracy (training-domain validation,
 * docs/datasets.md §9.2): ties go to the earliest, NaN entries never win; -1
 * when n == 0 or every entry is NaN. */
int dg_report_select(const double *val_acc, int n);

/* Mean and standard error std(ddof=0)/sqrt(n) of x (n >= 1). */
void dg_report_mean_se(const double *x, int n, double *mean, double *se);

/* One run: one test domain, one trial. Accuracies are fractions. */
typedef struct dg_cls_run {
    const char *test_domain;  /* one of the report's domains */
    int64_t trial;            /* trial index or seed */
    int64_t selected_step;    /* step chosen by training-domain validation */
    double val_acc;           /* mean training-domain out-split accuracy there */
    double acc_selected;      /* test domain in-split accuracy at selected_step */
    int64_t last_step;
    double acc_last;          /* test domain in-split accuracy at last_step */
} dg_cls_run;

typedef struct dg_cls_report {
    const char *method;                /* the row label */
    const char *dataset;               /* "rotated-fmnist", "domainbed:/data/PACS" */
    const char *const *domains;        /* (n_domains) test domains: the table's columns */
    int n_domains;
    const dg_report_settings *run;     /* NULL: no run settings */
    const dg_cls_run *runs;            /* (n_runs) any number of trials per domain */
    int n_runs;
    /* The same runs' second model (MESA's teacher, docs/algorithms.md §12), its
     * own row: method = its label, domains/run unused; NULL: none. */
    const struct dg_cls_report *second;
} dg_cls_report;

/* Which accuracy a table shows. */
typedef enum dg_cls_pick {
    DG_CLS_PICK_SELECTED = 0, /* training-domain validation */
    DG_CLS_PICK_LAST = 1      /* the last step */
} dg_cls_pick;

/* A DomainBed-style Markdown table: one row per report (its method),
 * columns = reports[0]'s test domains, then Avg (mean over the domains of
 * the per-domain means; "—" when a domain has no run). A cell is the mean
 * over trials in percent with one decimal, "± se" added when the domain has
 * two or more trials, "—" when it has none. Returns a new string (dg_free). */
char *dg_report_cls_table(const dg_cls_report *reports, int n_reports, dg_cls_pick pick);

/* {"task": "classification", "method", "dataset", "run": {...}, "runs":
 * [{"test_domain", "trial", "selected_step", "val_acc", "acc_selected",
 * "last_step", "acc_last"}], "summary": {"selected" | "last": {"domains":
 * [{"name", "trials", "mean", "se"}], "avg"}}} (percent, two decimals),
 * atomically at path. */
dg_status dg_report_cls_write_json(const dg_cls_report *r, const char *path);

/* results.md: both tables (selected and last) and the per-run table, then
 * the run settings. Atomic. */
dg_status dg_report_cls_write_md(const dg_cls_report *r, const char *path);

/* One domain's accuracy for `dgseg eval --json` (docs/design.md §4). */
typedef struct dg_cls_domain_acc {
    const char *name;
    int64_t images;
    double accuracy; /* fraction */
} dg_cls_domain_acc;

/* {"task": "classification", ["checkpoint",] "domains": [{"name", "images",
 * "accuracy"}]} (percent, two decimals), atomically at path. With a second
 * model (label2 and domains2 not NULL, MESA's): "second": {"weights":
 * label2, "domains": [...]} as well. */
dg_status dg_report_cls_write_eval_json(const char *checkpoint, const dg_cls_domain_acc *domains,
        int n_domains, const char *label2, const dg_cls_domain_acc *domains2, const char *path);

#endif
