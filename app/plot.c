/* app/plot.c -- see plot.h. */
#define _POSIX_C_SOURCE 200809L
#include "app/plot.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <plplot.h>

#include "data/fsutil.h"

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
