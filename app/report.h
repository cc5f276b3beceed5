/* app/report.h -- what a run reports (DESIGN.md §4): the metrics log
 * (metrics.jsonl), the results files (results.json, results.md), the
 * training curves (curves.png, PLplot's cairo PNG driver) and the progress
 * line.
 *
 * - metrics.jsonl: one JSON object per line, {"step": S, "kind": K, ...}
 *   with K "train" (loss, lr, img_s) or "eval" (values by name, fractions
 *   in [0, 1]); NaN and Inf are written as null. Each line is flushed when
 *   written, so a crash loses at most the line being written. A resumed run
 *   first drops every line whose step is beyond the resume step (and a torn
 *   last line), so the file describes exactly the resumed run.
 * - results: segmentation per (weights, target) pair: reader, images, mIoU,
 *   the 19 per-class IoUs in trainId order, pixel accuracy and the
 *   evaluation settings; values x100 with two decimals, NaN as null in JSON
 *   and "—" in tables (DATASETS.md §8). Classification per (test domain,
 *   trial): the test domain's in-split accuracy at the step selected by
 *   training-domain validation and at the last step; tables show per test
 *   domain mean ± std(ddof=0)/√n over trials and the average over test
 *   domains, in percent with one decimal (DATASETS.md §9.2, §12.6). JSON
 *   keeps two decimals. The `dgseg eval --json` documents of DESIGN.md §4
 *   are the same writers without run settings.
 * - curves.png: stacked panels of training loss, learning rate and, when
 *   present, the evaluation series (percent) over iterations. No X display
 *   is needed; PLplot's messages are captured, and a failure to plot is a
 *   warning: the run carries on.
 * - progress: "step 120/40000 | loss 0.4312 | lr 1.00e-02 | 3.10 img/s |
 *   eta 09:12:00" on stdout, redrawn in place (\r) on a terminal, one plain
 *   line every log_every steps otherwise.
 *
 * The results files are written atomically (dg_file_write_atomic), the
 * plot through a temporary file renamed over the target; the metrics log
 * is appended to. Reports borrow everything they print; the metrics reader
 * owns what it returns. */
#ifndef DG_APP_REPORT_H
#define DG_APP_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "app/config.h"
#include "data/labelmap.h"
#include "nets/core/common.h"

/* ---- metrics.jsonl ------------------------------------------------------ */

/* An open metrics log. Owns f and path. */
typedef struct dg_metrics {
    FILE *f;     /* opened for appending */
    char *path;
    bool failed; /* a write failed (logged once; later writes fail silently) */
} dg_metrics;

/* One named number of a metrics line. */
typedef struct dg_metric {
    const char *name;
    double value; /* NaN / Inf are written as null */
} dg_metric;

/* Opens the log at path. resume false: the file is created empty (any old
 * one replaced). resume true: lines with "step" <= resume_step are kept and
 * every other line (later steps, a torn or malformed line) is dropped, the
 * file rewritten atomically when anything was dropped, then opened for
 * appending; a missing file is created. Returns DG_STATUS_OK or
 * DG_STATUS_ERR_IO (logged with the path). */
dg_status dg_metrics_open(dg_metrics *m, const char *path, bool resume, int64_t resume_step);

/* Appends {"step": step, "kind": kind, name: value, ...} (values in the
 * order given) and flushes it. Returns DG_STATUS_OK or DG_STATUS_ERR_IO
 * (the first failure is logged with the path). */
dg_status dg_metrics_log(dg_metrics *m, const char *kind, int64_t step, const dg_metric *values,
        int n_values);

/* A "train" line: {"step", "kind": "train", "loss", "lr", "img_s"}. */
dg_status dg_metrics_log_train(dg_metrics *m, int64_t step, double loss, double lr,
        double images_per_s);

/* Closes the file; safe on a zeroed or closed log, zeroes m. */
void dg_metrics_close(dg_metrics *m);

/* One series read back: the values of one field of one kind of line. */
typedef struct dg_series {
    char *kind;     /* "train", "eval", ... */
    char *name;     /* the field name */
    int n;
    int64_t *step;  /* (n) in file order */
    double *value;  /* (n) null -> NaN */
} dg_series;

/* Every numeric (or null) field of a metrics file, grouped by (kind, name)
 * in order of first appearance. Owns the series. */
typedef struct dg_metrics_data {
    int n_series;
    dg_series *series; /* (n_series) */
} dg_metrics_data;

/* Reads the log at path into d. A malformed line (a torn last line after a
 * crash) is skipped with a warning naming path and line. Returns
 * DG_STATUS_OK or DG_STATUS_ERR_IO (cannot be read; logged). */
dg_status dg_metrics_read(dg_metrics_data *d, const char *path);

/* The series of field `name` in lines of kind `kind`; NULL when absent. */
const dg_series *dg_metrics_find(const dg_metrics_data *d, const char *kind, const char *name);

/* Releases everything; safe on a zeroed struct, zeroes d. */
void dg_metrics_data_free(dg_metrics_data *d);

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
 * method's own hyper-parameters (ALGORITHMS.md §16). */
void dg_report_settings_from_config(dg_report_settings *s, const dg_config *cfg);

/* ---- segmentation results ---------------------------------------------- */

/* Name of Cityscapes trainId 0 .. 18 ("road" ... "bicycle"). */
const char *dg_report_class_name(int train_id);

/* One set of weights evaluated on one target (DATASETS.md §8). */
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
 * DATASETS.md §9.2): ties go to the earliest, NaN entries never win; -1
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
    /* The same runs' second model (MESA's teacher, ALGORITHMS.md §12), its
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

/* One domain's accuracy for `dgseg eval --json` (DESIGN.md §4). */
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

/* ---- curves.png --------------------------------------------------------- */

/* Plots the "train" series "loss" and "lr" and every "eval" series (x100)
 * of d against the step, one panel each kind, stacked, into a PNG of
 * width x height pixels at path (0: 1000 wide, 320 high per panel), through
 * a temporary file renamed over path. Nothing reaches stdout; PLplot's
 * messages are captured. On any failure a warning names path and the
 * reason, nothing is left at path, and DG_STATUS_ERR_IO (cannot write) or
 * DG_STATUS_ERR_MISSING (nothing to plot, no PNG driver) is returned: the
 * caller logs nothing more and carries on. The plot uses its own PLplot
 * stream. Not thread-safe (PLplot is not); draw when no other thread logs,
 * since stdout and stderr are redirected meanwhile. */
dg_status dg_report_curves(const dg_metrics_data *d, const char *path, int width, int height);

/* Any figure the same way: a PNG at path by PLplot's cairo driver, drawn by
 * draw(ctx) on a fresh stream of n_panels stacked subpages with colour 1
 * black and colours 2 .. 9 a qualitative palette, written through a
 * temporary file and renamed, PLplot's messages captured, its exit handler
 * caught. A failure is a warning ("PATH: no WHAT drawn: ...") and a status:
 * DG_STATUS_ERR_MISSING (no cairo driver) or DG_STATUS_ERR_IO. */
typedef void (*dg_plot_draw_fn)(void *ctx);
dg_status dg_report_plot(const char *path, const char *what, int width, int height,
        int n_panels, dg_plot_draw_fn draw, void *ctx);

/* ---- progress line ------------------------------------------------------ */

/* "hh:mm:ss" (hours keep growing past 99) of seconds rounded to the
 * nearest second; "--:--:--" for a negative or non-finite value. */
void dg_progress_format_eta(char *buf, size_t size, double seconds);

/* "step S/T | loss L | lr R | X img/s | eta hh:mm:ss": loss with four
 * decimals, lr as %.2e, images/s with two decimals below 10, one below
 * 1000, none above ("--" when not finite). Returns the length. */
int dg_progress_format(char *buf, size_t size, int64_t step, int64_t total, double loss,
        double lr, double images_per_s, double eta_seconds);

/* True when progress to f should be redrawn in place: f is a terminal and
 * TERM is not "dumb". */
bool dg_progress_is_tty(FILE *f);

#define DG_PROGRESS_BETA 0.98 /* loss smoothing: bias-corrected EMA */

/* The progress of one run. Borrows out. */
typedef struct dg_progress {
    FILE *out;              /* stdout in the trainers */
    bool tty;               /* redraw in place */
    int64_t total;          /* last step */
    int64_t start_step;     /* step the run started or resumed from */
    int64_t log_every;      /* plain-line period (>= 1) */
    double images_per_step;
    double t_start;         /* dg_now() at init */
    double t_drawn;         /* last redraw (tty) */
    double ema;             /* raw EMA of the finite losses */
    int64_t n_ema;          /* finite losses seen */
    int line_len;           /* length of the line on screen (tty) */
} dg_progress;

void dg_progress_init(dg_progress *p, FILE *out, bool tty, int64_t start_step, int64_t total,
        int64_t log_every, double images_per_step);

/* Records step's loss (smoothed) and shows the line: on a terminal at most
 * ten times a second (always for the first and the last step), otherwise
 * when step is a multiple of log_every or the last step. Rates count from
 * init, pauses (evaluation) included, so the ETA accounts for them. */
void dg_progress_update(dg_progress *p, int64_t step, double loss, double lr);

/* The bias-corrected smoothed loss; NaN before the first finite loss. */
double dg_progress_smoothed_loss(const dg_progress *p);

/* Ends the in-place line with a newline (terminal only) so that a log
 * message or the next output starts on a fresh line. */
void dg_progress_break(dg_progress *p);

/* The progress of a long pass without a loss (the final BN refresh, a
 * target evaluation): "LABEL 37/100 | 3.1 img/s | eta 00:00:21" on
 * stdout, redrawn in place on a terminal (at most four times a second) and
 * cleared at the end; otherwise a plain line at most every 15 s, so that a
 * pass shorter than that stays silent in logs. */
typedef struct dg_task_progress {
    bool tty;
    char label[96];
    const char *unit;       /* "img/s", "batches/s" (static) */
    int64_t total;
    double t0, t_drawn;
    int line_len;
} dg_task_progress;

void dg_task_progress_begin(dg_task_progress *p, const char *label, int64_t total,
        const char *unit);
void dg_task_progress_update(dg_task_progress *p, int64_t done);
void dg_task_progress_end(dg_task_progress *p);

#endif
