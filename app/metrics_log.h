/* app/metrics_log.h -- the metrics log of a run, metrics.jsonl
 * (docs/design.md §4): one JSON object per line, {"step": S, "kind": K, ...}
 * with K "train" (loss, lr, img_s) or "eval" (values by name, fractions in
 * [0, 1]); NaN and Inf are written as null. Each line is flushed when
 * written, so a crash loses at most the line being written. A resumed run
 * first drops every line whose step is beyond the resume step (and a torn
 * last line), so the file describes exactly the resumed run. The reader
 * owns what it returns. */
#ifndef DG_APP_METRICS_LOG_H
#define DG_APP_METRICS_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "nets/core/common.h"


/* An open metrics log. Owns f and path. */
typedef struct dg_metrics {
    FILE *f;     /* opened for appending */
    char *path;
    bool failed; /* a write failed (logged once; later writes fail silently) */
    bool discard; /* dg_metrics_open_discard: every line is dropped */
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

/* A log that writes nothing: what the ranks of a data-parallel job other
 * than rank 0 log to (app/dist.h), so that only one process writes the
 * run's metrics.jsonl. */
void dg_metrics_open_discard(dg_metrics *m);

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

#endif
