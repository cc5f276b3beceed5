/* app/progress.h -- the progress line of a run on stdout: "step
 * 120/40000 | loss 0.4312 | lr 1.00e-02 | 3.10 img/s | eta 09:12:00",
 * redrawn in place (\r) on a terminal, one plain line every log_every
 * steps otherwise; and the progress of a long task inside a run (a BN
 * refresh, an evaluation). */
#ifndef DG_APP_PROGRESS_H
#define DG_APP_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>


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
