/* app/plot.h -- PNG plots through PLplot's cairo driver ("pngcairo", one
 * private stream per plot): a run's curves.png and the figures of `dgseg
 * flatness` and `dgseg study`. No X display is needed. PLplot reports
 * problems three ways: plabort (captured with plsError), plwarn (stderr)
 * and plexit (calls exit()); a plot therefore runs with stdout and stderr
 * redirected into a temporary file and with an exit handler that jumps
 * back, so a plotting failure never ends or clutters the run. A plot is
 * written through a temporary file renamed over the target. */
#ifndef DG_APP_PLOT_H
#define DG_APP_PLOT_H

#include "app/metrics_log.h"


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

#endif
