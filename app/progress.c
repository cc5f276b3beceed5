/* app/progress.c -- see progress.h. */
#define _POSIX_C_SOURCE 200809L
#include "app/progress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/cli.h"
#include "nets/core/common.h"

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
