/* app/flatness.c -- see flatness.h. The objective of eval/flatness.h over
 * a network and fixed data:
 *
 * - Data: --images N training-domain images (N/S from each of the S
 *   training domains: segmentation sources, or the classification domains
 *   that are not held out, their in-splits), drawn once by a plain loader
 *   of stream --seed with the training augmentation (segmentation: random
 *   crops of data.crop_size), kept in memory, in batches of one domain.
 *   Two checkpoints measured with the same --seed see the same images.
 * - Loss: the mean cross-entropy over every valid pixel (segmentation) or
 *   sample, of the main head, BN in eval mode with the checkpoint's
 *   statistics, no dropout; per-domain losses are the same mean over one
 *   domain's images. Metric: mIoU over the images' pixels (segmentation) or
 *   accuracy.
 * - Two instances of the checkpoint's model on one weight layout: an
 *   inference instance for loss-only evaluations (prepared weights reused
 *   across the batches of one evaluation, dg_pass.weights_version) and a
 *   training instance with frozen BN for the gradients the worst-case
 *   ascent needs (batch gradients combined with weights n_valid / total).
 *
 * Output folder (--out, default the run folder of the checkpoint +
 * "/flatness"): flatness.json, flatness.md, and with --to line.png, with
 * --landscape landscape.png. */
#define _POSIX_C_SOURCE 200809L
#include "app/flatness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <plplot.h>

#include "app/checkpoint.h"
#include "app/cli.h"
#include "app/closure.h"
#include "app/config.h"
#include "app/metrics_log.h"
#include "app/plot.h"
#include "app/progress.h"
#include "app/train_data.h"
#include "data/fsutil.h"
#include "eval/flatness.h"
#include "eval/metrics.h"
#include "nets/core/loss.h"

#define MAX_LIST 8

typedef struct flat_opts {
    const char *config, *ckpt, *to, *out;
    bool live;
    int64_t images, batch, directions, steps, points, landscape, seed;
    double radii[MAX_LIST], rho[MAX_LIST], span;
    int n_radii, n_rho;
    char **over;
    int n_over;
} flat_opts;

/* ---- fixed data ------------------------------------------------------------ */

/* Images of the S training domains, domain-major: domain k holds images
 * [k * per, (k + 1) * per). */
typedef struct flat_data {
    int S;
    int64_t per;      /* images per domain */
    int64_t x_per;    /* floats per image (C H W) */
    int64_t p_per;    /* labels per image (H W, or 1) */
    float *x;         /* (S per, C, H, W) */
    int32_t *y;       /* (S per, P) */
} flat_data;

/* Draws per images of every training domain from a plain loader of seed. */
static dg_status flat_data_load(flat_data *fd, dg_train_data *td, uint64_t seed, int64_t per) {
    memset(fd, 0, sizeof(*fd));
    dg_loader *l;
    dg_status st = dg_train_data_loader(td, false, seed, 0, &l);
    if (st != DG_STATUS_OK) return st;
    fd->S = td->S;
    fd->per = per;
    int64_t *have = dg_xcalloc((size_t)td->S, sizeof(*have));
    bool full = false;
    while (st == DG_STATUS_OK && !full) {
        const dg_batch *b;
        st = dg_loader_next(l, &b);
        if (st != DG_STATUS_OK) break;
        if (!fd->x) {
            fd->x_per = (int64_t)b->c * b->h * b->w;
            fd->p_per = td->cfg->task == DG_TASK_SEGMENTATION ? (int64_t)b->h * b->w : 1;
            fd->x = dg_xmalloc((size_t)(fd->S * per * fd->x_per) * sizeof(float));
            fd->y = dg_xmalloc((size_t)(fd->S * per * fd->p_per) * sizeof(int32_t));
        }
        full = true;
        for (int i = 0; i < b->n; i++) {
            const int k = b->refs[i].domain;
            if (have[k] < per) {
                const int64_t j = k * per + have[k]++;
                memcpy(fd->x + j * fd->x_per, b->x + (int64_t)i * fd->x_per,
                        (size_t)fd->x_per * sizeof(float));
                memcpy(fd->y + j * fd->p_per, b->label + (int64_t)i * fd->p_per,
                        (size_t)fd->p_per * sizeof(int32_t));
            }
        }
        for (int k = 0; k < td->S; k++) full = full && have[k] == per;
    }
    dg_free(have);
    dg_loader_free(l);
    return st;
}

static void flat_data_free(flat_data *fd) {
    dg_free(fd->x);
    dg_free(fd->y);
    memset(fd, 0, sizeof(*fd));
}

/* ---- the objective ----------------------------------------------------------- */

typedef struct flat_obj {
    dg_ctx *ctx;
    const flat_data *fd;
    dg_model *tr;          /* training instance, frozen BN (the checkpoint's model) */
    dg_model inf;          /* inference instance, a prefix of tr's layout */
    bool has_inf;
    dg_loss_ce loss_tr, loss_inf;
    dnnl_memory_t zero_aux; /* dL/d(aux logits) = 0: the aux head is not in the loss */
    const float *own_stats; /* the checkpoint's statistics (for q = NULL) */
    int64_t fb;            /* images per forward */
    int64_t K;
    bool seg;
    int32_t *lab;          /* (fb, P) labels of one forward, 255-padded */
    float *z;              /* (fb, K, P) plain logits */
    double *gacc;          /* (d) gradient sum */
    dg_confusion cm;
    long calls;
} flat_obj;

/* One objective evaluation (eval/flatness.h's contract): the domains of
 * `group` (all for group < 0), batches of fb images of one domain. */
static dg_status flat_eval(void *self, const float *w, const float *q, int group, double *loss,
        double *metric, double *group_loss, float *grad) {
    flat_obj *o = self;
    const flat_data *fd = o->fd;
    dg_model *m = grad ? o->tr : &o->inf;
    dg_loss_ce *lc = grad ? &o->loss_tr : &o->loss_inf;
    const size_t d = o->tr->ps.d;
    dg_pass p = grad ? dg_pass_train(&o->tr->ps) : dg_pass_eval(&o->inf.ps);
    p.params = w;
    p.stats = (float *)(q ? q : o->own_stats); /* frozen / eval BN: read, never written */
    p.update_stats = false;
    p.weights_version = grad ? 0 : dg_weights_version_new();
    p.grad = o->tr->ps.grad;
    if (grad) memset(o->gacc, 0, d * sizeof(double));
    dg_confusion_reset(&o->cm);
    double sum_all = 0, n_all = 0;
    int64_t correct = 0, counted = 0;
    float *src = dg_mem_ptr(m->src);
    for (int k = 0; k < fd->S; k++) {
        if (group_loss) group_loss[k] = NAN;
        if (group >= 0 && k != group) continue;
        double sum_k = 0, n_k = 0;
        for (int64_t i0 = 0; i0 < fd->per; i0 += o->fb) {
            const int64_t n = fd->per - i0 < o->fb ? fd->per - i0 : o->fb;
            const int64_t first = k * fd->per + i0;
            memcpy(src, fd->x + first * fd->x_per, (size_t)(n * fd->x_per) * sizeof(float));
            memset(src + n * fd->x_per, 0, (size_t)((o->fb - n) * fd->x_per) * sizeof(float));
            memcpy(o->lab, fd->y + first * fd->p_per, (size_t)(n * fd->p_per) * sizeof(int32_t));
            for (int64_t j = n * fd->p_per; j < o->fb * fd->p_per; j++) o->lab[j] = 255;
            dg_model_forward(m, o->ctx, &p);
            const double ce = dg_loss_ce_compute(lc, o->ctx, o->lab);
            const double nv = (double)lc->n_valid;
            if (grad && nv > 0) {
                dg_model_backward(m, o->ctx, &p, lc->diff, o->zero_aux);
                DG_DNNL(dnnl_stream_wait(o->ctx->stream));
                const float *g = o->tr->ps.grad;
#pragma omp parallel for schedule(static)
                for (size_t e = 0; e < d; e++) o->gacc[e] += nv * (double)g[e];
            }
            DG_DNNL(dnnl_stream_wait(o->ctx->stream));
            sum_k += ce * nv;
            n_k += nv;
            dg_logits_to_plain(m->logits, n, o->z);
            if (o->seg) {
                for (int64_t j = 0; j < n; j++)
                    dg_confusion_add_logits(&o->cm, o->z + j * o->K * fd->p_per,
                            o->lab + j * fd->p_per, fd->p_per);
            } else {
                correct += dg_metrics_count_correct(o->z, o->lab, n, o->K);
                counted += n;
            }
        }
        if (group_loss) group_loss[k] = n_k > 0 ? sum_k / n_k : NAN;
        sum_all += sum_k;
        n_all += n_k;
    }
    o->calls++;
    *loss = n_all > 0 ? sum_all / n_all : NAN;
    *metric = o->seg ? dg_confusion_scores(&o->cm, NULL).miou
                     : counted ? (double)correct / (double)counted : NAN;
    if (grad) {
#pragma omp parallel for schedule(static)
        for (size_t e = 0; e < d; e++) grad[e] = n_all > 0 ? (float)(o->gacc[e] / n_all) : 0.f;
    }
    if (!isfinite(*loss)) {
        dg_log_error("flatness: the loss is %g (no valid label among the images, or the weights "
                     "overflow)", *loss);
        return DG_STATUS_ERR_NUMERIC;
    }
    return DG_STATUS_OK;
}

/* Builds the inference instance and the losses over c's model (built by
 * dg_ckpt_load_model as the training instance). */
static dg_status flat_obj_init(flat_obj *o, dg_ctx *ctx, dg_ckpt *c, const flat_data *fd,
        const dg_config *cfg) {
    memset(o, 0, sizeof(*o));
    o->ctx = ctx;
    o->fd = fd;
    o->tr = &c->m;
    o->fb = c->m.opts.batch;
    o->K = c->m.opts.classes;
    o->seg = c->meta.segmentation;
    o->own_stats = c->w.stats;
    dg_model_opts io = c->m.opts;
    io.training = false;
    io.aux = false; /* inference instances run on a prefix of the training layout */
    io.winograd = cfg->winograd;
    dg_status st = dg_model_create(&o->inf, ctx, c->meta.model, &io, 0);
    if (st != DG_STATUS_OK) return st;
    o->has_inf = true;
    if (!dg_params_layout_is_prefix(&o->inf.ps, &c->m.ps)) {
        dg_log_error("%s: the inference instance's parameter layout is not a prefix of the "
                     "training instance's", c->meta.model);
        return DG_STATUS_ERR_SHAPE;
    }
    dg_loss_ce_cfg lcfg = {.scale = 1.f};
    dg_loss_ce_init(&o->loss_tr, ctx, c->m.logits, &lcfg);
    dg_loss_ce_init(&o->loss_inf, ctx, o->inf.logits, &lcfg);
    if (c->m.aux_logits) {
        const dnnl_memory_desc_t *md;
        DG_DNNL(dnnl_memory_get_memory_desc(c->m.aux_logits, &md));
        o->zero_aux = dg_mem_new(ctx, md, DNNL_MEMORY_ALLOCATE);
        memset(dg_mem_ptr(o->zero_aux), 0, dnnl_memory_desc_get_size(md));
    }
    o->lab = dg_xmalloc((size_t)(o->fb * fd->p_per) * sizeof(int32_t));
    o->z = dg_xmalloc((size_t)(o->fb * o->K * fd->p_per) * sizeof(float));
    o->gacc = dg_xmalloc((c->m.ps.d ? c->m.ps.d : 1) * sizeof(double));
    dg_confusion_init(&o->cm, o->K);
    return DG_STATUS_OK;
}

static void flat_obj_free(flat_obj *o) {
    if (o->lab) {
        dg_loss_ce_free(&o->loss_tr);
        dg_loss_ce_free(&o->loss_inf);
    }
    if (o->zero_aux) dnnl_memory_destroy(o->zero_aux);
    if (o->has_inf) dg_model_free(&o->inf);
    dg_free(o->lab);
    dg_free(o->z);
    dg_free(o->gacc);
    dg_confusion_free(&o->cm);
    memset(o, 0, sizeof(*o));
}

/* ---- progress ------------------------------------------------------------------ */

typedef struct flat_progress {
    dg_task_progress p;
    long base;   /* evaluations before this measurement */
} flat_progress;

static void on_progress(long done, long total, void *user) {
    (void)total;
    flat_progress *fp = user;
    dg_task_progress_update(&fp->p, fp->base + done);
}

/* ---- figures ------------------------------------------------------------------- */

typedef struct line_fig {
    const double *t, *loss, *metric;
    int n;
    const char *title, *xlabel, *metric_name;
} line_fig;

static void draw_panel(const double *x, const double *y, int n, double scale, const char *xl,
        const char *yl, const char *title) {
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (isfinite(y[i])) {
            lo = fmin(lo, scale * y[i]);
            hi = fmax(hi, scale * y[i]);
        }
    if (!(lo < hi)) {
        lo = isfinite(lo) ? lo - 1 : 0;
        hi = isfinite(hi) ? hi + 1 : 1;
    }
    pladv(0);
    plvpor(0.1, 0.96, 0.16, 0.88);
    plwind(x[0], x[n - 1], lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo));
    plcol0(1);
    plbox("bcnst", 0.0, 0, "bcnstv", 0.0, 0);
    pllab(xl, yl, title);
    PLFLT *px = dg_xmalloc((size_t)n * sizeof(PLFLT)), *py = dg_xmalloc((size_t)n * sizeof(PLFLT));
    for (int i = 0; i < n; i++) {
        px[i] = x[i];
        py[i] = scale * y[i];
    }
    plcol0(2);
    plwidth(2);
    plline(n, px, py);
    plpoin(n, px, py, 17);
    dg_free(px);
    dg_free(py);
}

static void draw_line(void *ctx) {
    const line_fig *f = ctx;
    draw_panel(f->t, f->loss, f->n, 1.0, f->xlabel, "training-domain loss (mean CE)", f->title);
    char yl[64];
    snprintf(yl, sizeof(yl), "%s (%%)", f->metric_name);
    draw_panel(f->t, f->metric, f->n, 100.0, f->xlabel, yl, f->metric_name);
}

typedef struct plane_fig {
    const double *a, *loss;
    int n;
    const char *title;
} plane_fig;

static void draw_plane(void *ctx) {
    const plane_fig *f = ctx;
    const int n = f->n;
    PLFLT **z;
    plAlloc2dGrid(&z, n, n);
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            const double v = f->loss[j * n + i];
            z[i][j] = isfinite(v) ? v : NAN;
            if (isfinite(v)) {
                lo = fmin(lo, v);
                hi = fmax(hi, v);
            }
        }
    if (!(lo < hi)) hi = lo + 1;
    pladv(0);
    plvpor(0.1, 0.82, 0.1, 0.9);
    plwind(f->a[0], f->a[n - 1], f->a[0], f->a[n - 1]);
    PLFLT *xg = dg_xmalloc((size_t)n * sizeof(PLFLT));
    for (int i = 0; i < n; i++) xg[i] = f->a[i];
    PLcGrid grid = {.xg = xg, .yg = xg, .nx = n, .ny = n};
    enum { NL = 16 };
    PLFLT shed[NL + 1], lv[NL];
    for (int i = 0; i <= NL; i++) shed[i] = lo + (hi - lo) * i / NL;
    for (int i = 0; i < NL; i++) lv[i] = lo + (hi - lo) * (i + 0.5) / NL;
    plscmap1n(256);
    plshades((PLFLT_MATRIX)z, n, n, NULL, f->a[0], f->a[n - 1], f->a[0], f->a[n - 1], shed,
            NL + 1, 0, 0, 0, plfill, 1, pltr1, &grid);
    plcol0(1);
    plcont((PLFLT_MATRIX)z, n, n, 1, n, 1, n, lv, NL, pltr1, &grid);
    plbox("bcnst", 0.0, 0, "bcnstv", 0.0, 0);
    pllab("direction 1 (filter-normalised)", "direction 2 (filter-normalised)", f->title);
    PLFLT ox = 0, oy = 0;
    plpoin(1, &ox, &oy, 5);
    /* colour bar */
    PLFLT cw, ch;
    PLINT opt = PL_COLORBAR_SHADE | PL_COLORBAR_SHADE_LABEL;
    PLINT lopt[] = {PL_COLORBAR_LABEL_RIGHT};
    const char *labels[] = {"loss"};
    PLINT nax = 1;
    const char *axo[] = {"bcvtm"};
    PLFLT tick[] = {0.0};
    PLINT sub[] = {0};
    PLINT nv[] = {NL + 1};
    const PLFLT *vals[] = {shed};
    plcolorbar(&cw, &ch, opt, PL_POSITION_RIGHT, 0.04, 0.0, 0.04, 0.8, 0, 1, 1, 0.0, 0.0, 0, 0,
            1, lopt, labels, nax, axo, tick, sub, nv, (const PLFLT *const *)vals);
    dg_free(xg);
    plFree2dGrid(z, n, n);
}

/* ---- the command --------------------------------------------------------------- */

static void flatness_usage(FILE *f) {
    fprintf(f,
            "usage: dgseg flatness CONFIG --checkpoint FILE [--to FILE2] [--weights live|method]\n"
            "                      [--images N] [--batch B] [--seed S] [--directions M]\n"
            "                      [--radii R,...] [--rho RHO,...] [--steps K]\n"
            "                      [--landscape 0|1|2] [--points P] [--span A] [--out DIR]\n"
            "                      [section.key=value ...]\n"
            "\n"
            "Measures how flat the minimum of the checkpoint is on N fixed training-domain\n"
            "images (N/S from each of the S training domains of CONFIG: the segmentation\n"
            "sources, or the classification domains other than the checkpoint's held-out one;\n"
            "training crops and augmentation drawn once from --seed): mean cross-entropy L,\n"
            "BN in eval mode with the checkpoint's statistics, the weights its method\n"
            "evaluates (Lookahead's slow weights, SWAD's average; --weights live: the live\n"
            "ones).\n"
            "\n"
            "  expected sharpness  E[L(w + r d) - L(w)] over M random filter-normalised\n"
            "                      directions d (Li et al. 2018: each filter of d has the norm\n"
            "                      of w's filter, biases and BN zero) for each radius r, with\n"
            "                      its standard error (default M 10, radii 0.05,0.1,0.2)\n"
            "  worst-case          max L(w + e) - L(w) over ||e|| <= rho, SAM's quantity, by K\n"
            "  sharpness           steps of projected gradient ascent from SAM's first-order\n"
            "                      point (default rho 0.05,0.1, K 5); for S >= 2 training\n"
            "                      domains also per domain (DGSAM's quantity)\n"
            "  --to FILE2          loss and metric along (1 - t) w + t w2, t from -0.5 to 1.5\n"
            "                      (line.png; BN statistics interpolated the same way)\n"
            "  --landscape 1|2     loss around w along 1 or 2 random filter-normalised\n"
            "                      directions, coordinates in [-A, A] (default A 1), P points\n"
            "                      per axis (default 21 on a line, 11 per axis on a plane)\n"
            "                      (landscape.png)\n"
            "  --images N          default 200; --batch B images per forward (default\n"
            "                      train.batch_size); --seed S the images' stream (default 0)\n"
            "  --out DIR           default: the checkpoint's run folder + /flatness\n"
            "\n"
            "Writes DIR/flatness.json and DIR/flatness.md and prints the table. Exit codes: 0,\n"
            "1 runtime failure (a checkpoint or data that does not load), 2 usage or\n"
            "configuration error.\n");
}

/* "0.05,0.1" into v (at most MAX_LIST values, each finite and >= 0). */
static bool parse_list(const char *opt, const char *s, double *v, int *n) {
    char *copy = dg_xstrdup(s), *save = NULL;
    *n = 0;
    bool ok = true;
    for (char *t = strtok_r(copy, ",", &save); t && ok; t = strtok_r(NULL, ",", &save)) {
        char *end;
        const double x = strtod(t, &end);
        ok = *t && !*end && isfinite(x) && x >= 0 && *n < MAX_LIST;
        if (ok) v[(*n)++] = x;
    }
    dg_free(copy);
    if (!ok || !*n) {
        fprintf(stderr, "dgseg flatness: %s '%s': expected 1 to %d comma-separated numbers >= 0\n",
                opt, s, MAX_LIST);
        return false;
    }
    return true;
}

/* 0 ok, 2 usage error, -1 after --help. */
static int parse_args(int argc, char **argv, flat_opts *o) {
    memset(o, 0, sizeof(*o));
    o->images = 200;
    o->directions = 10;
    o->steps = 5;
    o->span = 1.0;
    o->radii[0] = 0.05, o->radii[1] = 0.1, o->radii[2] = 0.2, o->n_radii = 3;
    o->rho[0] = 0.05, o->rho[1] = 0.1, o->n_rho = 2;
    o->over = dg_xcalloc((size_t)argc + 1, sizeof(*o->over));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true, took = v != NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            flatness_usage(stdout);
            return -1;
        }
        if (!strcmp(a, "--checkpoint") && v) o->ckpt = v;
        else if (!strcmp(a, "--to") && v) o->to = v;
        else if (!strcmp(a, "--out") && v) o->out = v;
        else if (!strcmp(a, "--weights") && v) ok = dg_ckpt_weights_parse("flatness", v, &o->live);
        else if (!strcmp(a, "--images") && v)
            ok = dg_cli_parse_int("flatness", "--images", v, 1, 1000000, &o->images);
        else if (!strcmp(a, "--batch") && v)
            ok = dg_cli_parse_int("flatness", "--batch", v, 1, 4096, &o->batch);
        else if (!strcmp(a, "--seed") && v)
            ok = dg_cli_parse_int("flatness", "--seed", v, 0, INT64_MAX, &o->seed);
        else if (!strcmp(a, "--directions") && v)
            ok = dg_cli_parse_int("flatness", "--directions", v, 1, 100000, &o->directions);
        else if (!strcmp(a, "--steps") && v)
            ok = dg_cli_parse_int("flatness", "--steps", v, 0, 10000, &o->steps);
        else if (!strcmp(a, "--points") && v)
            ok = dg_cli_parse_int("flatness", "--points", v, 3, 401, &o->points);
        else if (!strcmp(a, "--landscape") && v)
            ok = dg_cli_parse_int("flatness", "--landscape", v, 0, 2, &o->landscape);
        else if (!strcmp(a, "--radii") && v) ok = parse_list("--radii", v, o->radii, &o->n_radii);
        else if (!strcmp(a, "--rho") && v) ok = parse_list("--rho", v, o->rho, &o->n_rho);
        else if (!strcmp(a, "--span") && v) {
            char *end;
            o->span = strtod(v, &end);
            ok = *v && !*end && isfinite(o->span) && o->span > 0;
            if (!ok) fprintf(stderr, "dgseg flatness: --span '%s': expected a number > 0\n", v);
        } else {
            took = false;
            if (strchr(a, '=') && a[0] != '-') o->over[o->n_over++] = argv[i];
            else if (!o->config && a[0] != '-') o->config = a;
            else {
                fprintf(stderr, "dgseg flatness: unexpected argument '%s'\n", a);
                ok = false;
            }
        }
        if (!ok) return 2;
        if (took) i++;
    }
    if (!o->config || !o->ckpt) {
        flatness_usage(stderr);
        return 2;
    }
    if (!o->points) o->points = o->landscape == 2 ? 11 : 21;
    return 0;
}

/* The default output folder: RUN/flatness for RUN/checkpoints/FILE, else
 * the checkpoint's folder + /flatness. */
static char *default_out(const char *ckpt) {
    char *dir = dg_xstrdup(ckpt);
    char *slash = strrchr(dir, '/');
    if (!slash) {
        dg_free(dir);
        return dg_xstrdup("flatness");
    }
    *slash = '\0';
    if (dg_ends_with(dir, "/checkpoints") || !strcmp(dir, "checkpoints"))
        dir[strlen(dir) - strlen("checkpoints")] = '\0';
    char *out = dg_xasprintf("%s%sflatness", dir, dir[0] && dir[strlen(dir) - 1] != '/' ? "/" : "");
    dg_free(dir);
    return out;
}

/* The held-out classification domain of the checkpoint: its metadata's
 * "test_domain", else the one entry of data.test_domains. -1 (logged) when
 * neither names exactly one domain. */
static int held_out_domain(const dg_config *cfg, const dg_ckpt *c, const dg_dataset_spec *spec) {
    const char *name = c->meta.test_domain;
    if (!name && cfg->test_domains && !strchr(cfg->test_domains, ',')) name = cfg->test_domains;
    if (!name || !*name) {
        dg_log_error("%s: which domain did this run hold out? The checkpoint does not say and "
                     "data.test_domains names %s; give it one domain "
                     "(data.test_domains=NAME)", c->path,
                cfg->test_domains && *cfg->test_domains ? "several" : "none");
        return -1;
    }
    int d = -1;
    if (!strcmp(spec->reader, "rotated-fmnist")) {
        char *names[DG_RFMNIST_DOMAINS], buf[DG_RFMNIST_DOMAINS][16];
        for (int k = 0; k < DG_RFMNIST_DOMAINS; k++) {
            dg_rotated_fmnist_domain_name(k, buf[k], sizeof(buf[k]));
            names[k] = buf[k];
        }
        d = dg_train_data_find_domain(name, names, DG_RFMNIST_DOMAINS);
    } else {
        dg_domainbed db;
        if (dg_domainbed_open(spec->root, &db) != DG_STATUS_OK) return -1;
        char **names = dg_xcalloc((size_t)db.n_domains, sizeof(*names));
        for (int k = 0; k < db.n_domains; k++) names[k] = db.domains[k].name;
        d = dg_train_data_find_domain(name, names, db.n_domains);
        dg_free(names);
        dg_domainbed_free(&db);
    }
    if (d < 0) dg_log_error("data.test_domains: unknown domain '%s'", name);
    return d;
}

typedef struct flat_result {
    double base_loss, base_metric, base_group[DG_FLAT_MAX_GROUPS];
    dg_flat_expected exp[MAX_LIST];
    dg_flat_worst worst[MAX_LIST];
    dg_flat_worst worst_g[MAX_LIST][DG_FLAT_MAX_GROUPS];
    double *line_t, *line_loss, *line_metric;
    int n_line;
    double *land_a, *land_loss, *land_metric;
    int n_land;
    double seconds[4]; /* expected, worst, line, landscape */
} flat_result;

static cJSON *num(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

static cJSON *num_array(const double *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, num(v[i]));
    return a;
}

static char *result_json(const flat_opts *o, const dg_ckpt *c, const char *weights,
        const char *const *domains, int S, const flat_result *r, const char *metric_name) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "checkpoint", o->ckpt);
    cJSON_AddStringToObject(j, "model", c->meta.model);
    cJSON_AddStringToObject(j, "method", c->meta.method ? c->meta.method : "");
    cJSON_AddStringToObject(j, "weights", weights);
    cJSON_AddStringToObject(j, "task", c->meta.segmentation ? "segmentation" : "classification");
    cJSON_AddStringToObject(j, "metric", metric_name);
    cJSON *data = cJSON_AddObjectToObject(j, "data");
    cJSON_AddNumberToObject(data, "images", (double)(o->images / S * S));
    cJSON_AddNumberToObject(data, "seed", (double)o->seed);
    cJSON *dn = cJSON_AddArrayToObject(data, "domains");
    for (int k = 0; k < S; k++) cJSON_AddItemToArray(dn, cJSON_CreateString(domains[k]));
    cJSON_AddItemToObject(j, "loss", num(r->base_loss));
    cJSON_AddItemToObject(j, "metric_value", num(r->base_metric));
    if (S > 1) cJSON_AddItemToObject(j, "domain_loss", num_array(r->base_group, S));
    cJSON *ex = cJSON_AddArrayToObject(j, "expected");
    for (int i = 0; i < o->n_radii; i++) {
        const dg_flat_expected *e = &r->exp[i];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "radius", e->radius);
        cJSON_AddNumberToObject(x, "directions", e->directions);
        cJSON_AddItemToObject(x, "sharpness", num(e->mean));
        cJSON_AddItemToObject(x, "se", num(e->se));
        cJSON_AddItemToObject(x, "metric", num(e->metric_mean));
        if (S > 1) {
            cJSON_AddItemToObject(x, "domain_sharpness", num_array(e->group_mean, S));
            cJSON_AddItemToObject(x, "domain_se", num_array(e->group_se, S));
        }
        cJSON_AddItemToArray(ex, x);
    }
    cJSON *wc = cJSON_AddArrayToObject(j, "worst_case");
    for (int i = 0; i < o->n_rho; i++) {
        const dg_flat_worst *w = &r->worst[i];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "rho", w->rho);
        cJSON_AddNumberToObject(x, "steps", w->steps);
        cJSON_AddItemToObject(x, "sharpness", num(w->sharpness));
        cJSON_AddItemToObject(x, "first_order", num(w->first_order));
        if (S > 1) {
            double g[DG_FLAT_MAX_GROUPS];
            for (int k = 0; k < S; k++) g[k] = r->worst_g[i][k].sharpness;
            cJSON_AddItemToObject(x, "domain_sharpness", num_array(g, S));
        }
        cJSON_AddItemToArray(wc, x);
    }
    if (r->n_line) {
        cJSON *l = cJSON_AddObjectToObject(j, "line");
        cJSON_AddStringToObject(l, "to", o->to);
        cJSON_AddItemToObject(l, "t", num_array(r->line_t, r->n_line));
        cJSON_AddItemToObject(l, "loss", num_array(r->line_loss, r->n_line));
        cJSON_AddItemToObject(l, "metric", num_array(r->line_metric, r->n_line));
    }
    if (r->n_land) {
        cJSON *l = cJSON_AddObjectToObject(j, "landscape");
        cJSON_AddNumberToObject(l, "dimensions", (double)o->landscape);
        cJSON_AddItemToObject(l, "coordinates", num_array(r->land_a, r->n_land));
        const int n = o->landscape == 2 ? r->n_land * r->n_land : r->n_land;
        cJSON_AddItemToObject(l, "loss", num_array(r->land_loss, n));
        cJSON_AddItemToObject(l, "metric", num_array(r->land_metric, n));
    }
    cJSON *t = cJSON_AddObjectToObject(j, "seconds");
    cJSON_AddNumberToObject(t, "expected", r->seconds[0]);
    cJSON_AddNumberToObject(t, "worst_case", r->seconds[1]);
    if (r->n_line) cJSON_AddNumberToObject(t, "line", r->seconds[2]);
    if (r->n_land) cJSON_AddNumberToObject(t, "landscape", r->seconds[3]);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    char *out = dg_xasprintf("%s\n", s);
    cJSON_free(s);
    return out;
}

static char *result_md(const flat_opts *o, const dg_ckpt *c, const char *weights,
        const char *const *domains, int S, const flat_result *r, const char *metric_name) {
    size_t size = 0;
    char *buf = NULL;
    FILE *f = open_memstream(&buf, &size);
    fprintf(f, "# Flatness of %s\n\n%s, %s (%s); %lld training-domain images (", o->ckpt,
            c->meta.model, weights, c->meta.method ? c->meta.method : "no method",
            (long long)(o->images / S * S));
    for (int k = 0; k < S; k++) fprintf(f, "%s%s", k ? ", " : "", domains[k]);
    fprintf(f, "), seed %lld, BN in eval mode.\n\n", (long long)o->seed);
    fprintf(f, "Loss L(w) = %.4f, %s %.2f %%", r->base_loss, metric_name, 100 * r->base_metric);
    if (S > 1) {
        fprintf(f, "; per domain:");
        for (int k = 0; k < S; k++) fprintf(f, " %s %.4f", domains[k], r->base_group[k]);
    }
    fprintf(f, ".\n\n## Expected sharpness E[L(w + r d) - L(w)], %d filter-normalised "
               "directions\n\n| radius r | sharpness | ± se | %s at w + r d (%%) |",
            (int)o->directions, metric_name);
    for (int k = 0; S > 1 && k < S; k++) fprintf(f, " %s |", domains[k]);
    fprintf(f, "\n|---:|---:|---:|---:|");
    for (int k = 0; S > 1 && k < S; k++) fprintf(f, "---:|");
    fputc('\n', f);
    for (int i = 0; i < o->n_radii; i++) {
        const dg_flat_expected *e = &r->exp[i];
        fprintf(f, "| %g | %.4f | %.4f | %.2f |", e->radius, e->mean, e->se,
                100 * e->metric_mean);
        for (int k = 0; S > 1 && k < S; k++)
            fprintf(f, " %.4f ± %.4f |", e->group_mean[k], e->group_se[k]);
        fputc('\n', f);
    }
    fprintf(f, "\n## Worst-case sharpness max over ||e|| <= rho of L(w + e) - L(w), %d ascent "
               "steps\n\n| rho | sharpness | first-order (SAM's point) |",
            (int)o->steps);
    for (int k = 0; S > 1 && k < S; k++) fprintf(f, " %s |", domains[k]);
    fprintf(f, "\n|---:|---:|---:|");
    for (int k = 0; S > 1 && k < S; k++) fprintf(f, "---:|");
    fputc('\n', f);
    for (int i = 0; i < o->n_rho; i++) {
        fprintf(f, "| %g | %.4f | %.4f |", r->worst[i].rho, r->worst[i].sharpness,
                r->worst[i].first_order);
        for (int k = 0; S > 1 && k < S; k++) fprintf(f, " %.4f |", r->worst_g[i][k].sharpness);
        fputc('\n', f);
    }
    if (r->n_line) {
        fprintf(f, "\n## Along (1 - t) w + t w2, w2 = %s\n\n| t | loss | %s (%%) |\n|---:|---:|"
                   "---:|\n", o->to, metric_name);
        for (int i = 0; i < r->n_line; i++)
            fprintf(f, "| %.2f | %.4f | %.2f |\n", r->line_t[i], r->line_loss[i],
                    100 * r->line_metric[i]);
    }
    fprintf(f, "\nMeasured in %.0f s (expected sharpness %.0f s, worst-case %.0f s",
            r->seconds[0] + r->seconds[1] + r->seconds[2] + r->seconds[3], r->seconds[0],
            r->seconds[1]);
    if (r->n_line) fprintf(f, ", line %.0f s", r->seconds[2]);
    if (r->n_land) fprintf(f, ", landscape %.0f s", r->seconds[3]);
    fprintf(f, ").\n");
    fclose(f);
    return buf;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Every measurement of the command on an initialised objective. */
static dg_status measure(const flat_opts *o, const dg_flat_objective *obj, dg_ckpt *c,
        dg_ckpt *c2, flat_result *r) {
    const float *w = c->w.params, *q = c->w.stats;
    const int S = obj->n_groups ? obj->n_groups : 1;
    const long n_exp = 1 + o->directions * o->n_radii;
    const long n_worst = (o->steps + 2) * o->n_rho * (S > 1 ? 1 + S : 1);
    const long n_line = o->to ? o->points : 0;
    const long n_land = o->landscape ? (o->landscape == 2 ? o->points * o->points : o->points) : 0;
    flat_progress fp = {.base = 0};
    dg_task_progress_begin(&fp.p, "flatness", n_exp + n_worst + n_line + n_land, "evaluations/s");
    double t0 = now_s();
    dg_status st = dg_flat_expected_sharpness(obj, w, q, o->radii, o->n_radii,
            (int)o->directions, (uint64_t)o->seed, &r->base_loss, &r->base_metric,
            obj->n_groups ? r->base_group : NULL, r->exp, on_progress, &fp);
    r->seconds[0] = now_s() - t0;
    fp.base = n_exp;
    t0 = now_s();
    for (int i = 0; st == DG_STATUS_OK && i < o->n_rho; i++) {
        st = dg_flat_worst_sharpness(obj, w, q, o->rho[i], (int)o->steps, -1, (uint64_t)o->seed,
                &r->worst[i]);
        fp.base += o->steps + 2;
        dg_task_progress_update(&fp.p, fp.base);
        for (int k = 0; st == DG_STATUS_OK && obj->n_groups && k < S; k++) {
            st = dg_flat_worst_sharpness(obj, w, q, o->rho[i], (int)o->steps, k,
                    (uint64_t)o->seed, &r->worst_g[i][k]);
            fp.base += o->steps + 2;
            dg_task_progress_update(&fp.p, fp.base);
        }
    }
    r->seconds[1] = now_s() - t0;
    if (st == DG_STATUS_OK && o->to) {
        t0 = now_s();
        r->n_line = (int)o->points;
        r->line_t = dg_xmalloc((size_t)r->n_line * sizeof(double));
        r->line_loss = dg_xmalloc((size_t)r->n_line * sizeof(double));
        r->line_metric = dg_xmalloc((size_t)r->n_line * sizeof(double));
        for (int i = 0; i < r->n_line; i++) r->line_t[i] = -0.5 + 2.0 * i / (r->n_line - 1);
        st = dg_flat_line(obj, w, q, c2->w.params, c2->w.stats, r->line_t, r->n_line,
                r->line_loss, r->line_metric);
        fp.base += n_line;
        dg_task_progress_update(&fp.p, fp.base);
        r->seconds[2] = now_s() - t0;
    }
    if (st == DG_STATUS_OK && o->landscape) {
        t0 = now_s();
        const size_t d = c->m.ps.d;
        float *d1 = dg_xmalloc(d * sizeof(float)), *d2 = NULL;
        /* directions past the expected-sharpness ones: indices M, M + 1 */
        dg_flat_direction(&c->m.ps, w, (uint64_t)o->seed, (uint32_t)o->directions, d1);
        if (o->landscape == 2) {
            d2 = dg_xmalloc(d * sizeof(float));
            dg_flat_direction(&c->m.ps, w, (uint64_t)o->seed, (uint32_t)o->directions + 1, d2);
        }
        r->n_land = (int)o->points;
        r->land_a = dg_xmalloc((size_t)r->n_land * sizeof(double));
        for (int i = 0; i < r->n_land; i++)
            r->land_a[i] = o->span * (-1.0 + 2.0 * i / (r->n_land - 1));
        const size_t n = (size_t)n_land;
        r->land_loss = dg_xmalloc(n * sizeof(double));
        r->land_metric = dg_xmalloc(n * sizeof(double));
        st = dg_flat_plane(obj, w, q, d1, d2, r->land_a, r->n_land, d2 ? r->land_a : NULL,
                d2 ? r->n_land : 1, r->land_loss, r->land_metric, on_progress, &fp);
        dg_free(d1);
        dg_free(d2);
        r->seconds[3] = now_s() - t0;
    }
    dg_task_progress_end(&fp.p);
    return st;
}

static void result_free(flat_result *r) {
    dg_free(r->line_t);
    dg_free(r->line_loss);
    dg_free(r->line_metric);
    dg_free(r->land_a);
    dg_free(r->land_loss);
    dg_free(r->land_metric);
}

/* Opens the second checkpoint (--to) on the first one's model layout. */
static dg_status open_second(dg_ckpt *c2, const char *path, const dg_ckpt *c, dg_ctx *ctx,
        bool live) {
    dg_status st = dg_ckpt_open(c2, path);
    if (st == DG_STATUS_OK && (strcmp(c2->meta.model, c->meta.model) ||
                                      c2->meta.aux != c->meta.aux ||
                                      c2->meta.output_stride != c->meta.output_stride ||
                                      c2->meta.classes != c->meta.classes)) {
        dg_log_error("%s: model %s (output stride %d, %s auxiliary head, %lld classes) cannot be "
                     "interpolated with %s's %s (output stride %d, %s, %lld classes)", path,
                c2->meta.model, c2->meta.output_stride, c2->meta.aux ? "with" : "no",
                (long long)c2->meta.classes, c->path, c->meta.model, c->meta.output_stride,
                c->meta.aux ? "with" : "no", (long long)c->meta.classes);
        st = DG_STATUS_ERR_FORMAT;
    }
    dg_model_opts mo = c->m.opts;
    mo.training = false;
    mo.batch = 1;
    if (st == DG_STATUS_OK) st = dg_ckpt_load_model(c2, ctx, &mo, live);
    if (st == DG_STATUS_OK && c2->m.ps.d != c->m.ps.d) {
        dg_log_error("%s: %zu parameters, %s has %zu", path, c2->m.ps.d, c->path, c->m.ps.d);
        st = DG_STATUS_ERR_FORMAT;
    }
    return st;
}

int dg_flatness_check_options(const char *const *words, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(words[i], "--checkpoint") || !strcmp(words[i], "--out") ||
                !strcmp(words[i], "--to") || (words[i][0] != '-' && strchr(words[i], '=')) ||
                (words[i][0] != '-' && (i == 0 || words[i - 1][0] != '-'))) {
            fprintf(stderr, "dgseg flatness: '%s': the study names the config, the checkpoint "
                    "and the output folder of each run; give only measurement options "
                    "(--images, --seed, --directions, --radii, --rho, --steps, --batch, "
                    "--landscape, --points, --span, --weights)\n", words[i]);
            return 2;
        }
    char **argv = dg_xcalloc((size_t)n + 4, sizeof(*argv));
    argv[0] = "flatness";
    argv[1] = "study.ini";
    argv[2] = "--checkpoint";
    argv[3] = "last.safetensors";
    for (int i = 0; i < n; i++) argv[4 + i] = (char *)words[i];
    flat_opts o;
    int rc = parse_args(n + 4, argv, &o);
    dg_free(o.over);
    dg_free(argv);
    return rc < 0 ? 2 : rc; /* --help is not an option of a study */
}

int dg_flatness_main(int argc, char **argv) {
    flat_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc) {
        dg_free(o.over);
        return rc < 0 ? 0 : rc;
    }
    dg_config cfg;
    rc = dg_config_load_checked(&cfg, o.config, o.n_over, o.over);
    dg_free(o.over);
    if (rc) return rc;
    const bool seg = cfg.task == DG_TASK_SEGMENTATION;
    dg_ctx ctx;
    dg_ctx_init(&ctx);
    dg_ckpt c, c2;
    memset(&c2, 0, sizeof(c2));
    dg_train_data td;
    memset(&td, 0, sizeof(td));
    flat_data fd;
    memset(&fd, 0, sizeof(fd));
    flat_obj obj;
    memset(&obj, 0, sizeof(obj));
    flat_result res;
    memset(&res, 0, sizeof(res));
    dg_dataset_spec *specs = NULL;
    int n_specs = 0;
    char *out = o.out ? dg_xstrdup(o.out) : default_out(o.ckpt);
    dg_status st = dg_ckpt_open(&c, o.ckpt);
    if (st == DG_STATUS_OK && c.meta.segmentation != seg) {
        dg_log_error("%s: a %s checkpoint (model '%s'), but %s is a %s configuration", o.ckpt,
                c.meta.segmentation ? "segmentation" : "classification", c.meta.model, o.config,
                seg ? "segmentation" : "classification");
        st = DG_STATUS_ERR_FORMAT;
    }
    int test_domain = -1;
    if (st == DG_STATUS_OK && !seg) {
        st = dg_dataset_specs_parse("data.dataset", cfg.dataset, &specs, &n_specs);
        if (st == DG_STATUS_OK && n_specs != 1) {
            dg_log_error("data.dataset: name one dataset");
            st = DG_STATUS_ERR_CONFIG;
        }
        if (st == DG_STATUS_OK && (test_domain = held_out_domain(&cfg, &c, &specs[0])) < 0)
            st = DG_STATUS_ERR_CONFIG;
    }
    if (st == DG_STATUS_OK) {
        dg_free(cfg.model);
        cfg.model = dg_xstrdup(c.meta.model);
        st = dg_train_data_open(&td, &cfg, specs, test_domain, false);
    }
    if (st == DG_STATUS_OK && td.S > DG_FLAT_MAX_GROUPS) {
        dg_log_error("%s: %d training domains; flatness measures at most %d", o.config, td.S,
                DG_FLAT_MAX_GROUPS);
        st = DG_STATUS_ERR_CONFIG;
    }
    if (st == DG_STATUS_OK && o.images < td.S) {
        dg_log_error("--images %lld: at least one per training domain (%d)", (long long)o.images,
                td.S);
        st = DG_STATUS_ERR_CONFIG;
    }
    if (st == DG_STATUS_OK) {
        const int64_t per = o.images / td.S;
        dg_log_info("flatness: drawing %lld images from each of %d training domains (seed %lld)",
                (long long)per, td.S, (long long)o.seed);
        st = flat_data_load(&fd, &td, (uint64_t)o.seed, per);
    }
    if (st == DG_STATUS_OK) {
        /* the training instance: frozen BN (eval-mode statistics, a gradient
         * through them as constants), no dropout */
        int64_t fb = o.batch ? o.batch : cfg.batch_size;
        if (fb > fd.per) fb = fd.per;
        if (seg && fb < 1) fb = 1;
        dg_model_opts mo = {.batch = fb, .training = true, .freeze_bn = true, .dropout = 0.f,
                .aux_dropout = 0.f, .winograd = cfg.winograd,
                .bf16 = cfg.dtype == DG_DTYPE_BF16 && ctx.caps.bf16};
        dg_train_data_model_geometry(&td, &mo);
        st = dg_ckpt_load_model(&c, &ctx, &mo, o.live);
    }
    if (st == DG_STATUS_OK) {
        printf("weights: %s\n", c.w.note);
        fflush(stdout);
        st = flat_obj_init(&obj, &ctx, &c, &fd, &cfg);
    }
    if (st == DG_STATUS_OK && o.to) st = open_second(&c2, o.to, &c, &ctx, o.live);
    const char *domains[DG_FLAT_MAX_GROUPS];
    char rot[DG_FLAT_MAX_GROUPS][16];
    for (int k = 0; st == DG_STATUS_OK && k < td.S; k++) {
        if (seg) {
            domains[k] = td.seg[k].reader;
        } else if (td.has_rf) {
            dg_rotated_fmnist_domain_name(td.train_domain[k], rot[k], sizeof(rot[k]));
            domains[k] = rot[k];
        } else {
            domains[k] = td.db.domains[td.train_domain[k]].name;
        }
    }
    if (st == DG_STATUS_OK) {
        dg_flat_objective fo = {.eval = flat_eval, .self = &obj,
                .n_groups = td.S > 1 ? td.S : 0, .layout = &c.m.ps};
        st = measure(&o, &fo, &c, &c2, &res);
    }
    const char *metric_name = seg ? "mIoU" : "accuracy";
    if (st == DG_STATUS_OK) st = dg_make_dirs(out);
    if (st == DG_STATUS_OK) {
        char *js = result_json(&o, &c, c.w.label, domains, td.S, &res, metric_name);
        char *md = result_md(&o, &c, c.w.label, domains, td.S, &res, metric_name);
        char *pj = dg_xasprintf("%s/flatness.json", out), *pm = dg_xasprintf("%s/flatness.md", out);
        const dg_file_part jp = {js, strlen(js)}, mp = {md, strlen(md)};
        st = dg_file_write_atomic(pj, &jp, 1);
        if (st == DG_STATUS_OK) st = dg_file_write_atomic(pm, &mp, 1);
        if (st == DG_STATUS_OK) {
            printf("\n%s\nflatness: %s, %s", md, pj, pm);
            if (res.n_line) {
                char *pl = dg_xasprintf("%s/line.png", out);
                char title[160];
                snprintf(title, sizeof(title), "from %s (t = 0) to %s (t = 1)", c.w.label,
                        c2.w.label);
                line_fig f = {.t = res.line_t, .loss = res.line_loss, .metric = res.line_metric,
                        .n = res.n_line, .title = title, .xlabel = "t",
                        .metric_name = metric_name};
                if (dg_report_plot(pl, "interpolation plot", 900, 640, 2, draw_line, &f) ==
                        DG_STATUS_OK)
                    printf(", %s", pl);
                dg_free(pl);
            }
            if (res.n_land) {
                char *pl = dg_xasprintf("%s/landscape.png", out);
                char title[160];
                snprintf(title, sizeof(title), "training-domain loss around the %s", c.w.label);
                dg_status ps;
                if (o.landscape == 1) {
                    line_fig f = {.t = res.land_a, .loss = res.land_loss,
                            .metric = res.land_metric, .n = res.n_land, .title = title,
                            .xlabel = "coordinate along a random filter-normalised direction",
                            .metric_name = metric_name};
                    ps = dg_report_plot(pl, "landscape", 900, 640, 2, draw_line, &f);
                } else {
                    plane_fig f = {.a = res.land_a, .loss = res.land_loss, .n = res.n_land,
                            .title = title};
                    ps = dg_report_plot(pl, "landscape", 800, 700, 1, draw_plane, &f);
                }
                if (ps == DG_STATUS_OK) printf(", %s", pl);
                dg_free(pl);
            }
            printf("\n");
        }
        dg_free(js);
        dg_free(md);
        dg_free(pj);
        dg_free(pm);
    }
    result_free(&res);
    flat_obj_free(&obj);
    flat_data_free(&fd);
    dg_ckpt_close(&c2);
    dg_ckpt_close(&c);
    dg_train_data_free(&td);
    if (specs) dg_dataset_specs_free(specs, n_specs);
    dg_free(out);
    dg_ctx_free(&ctx);
    dg_config_free(&cfg);
    return dg_cli_exit_code(st);
}
