/* app/train.c -- `dgseg train` (DESIGN.md §4, ALGORITHMS.md §1 trainer
 * loop): builds the data (segmentation sources with §7.4 augmentation and
 * class-uniform sampling, or a classification dataset's training domains
 * with their 80/20 in/out splits), the model, the method and the schedule
 * from the configuration, then runs the steps with checkpoints, exact
 * resume, interrupt handling and the NaN policy.
 *
 * Run directory (output.dir, default runs/<config-name>-<timestamp>):
 * config.ini (resolved), metrics.jsonl, checkpoints/last.safetensors.
 * Classification runs leave one domain out per data.test_domains entry,
 * each in <run>/test-<domain>/.
 *
 * Exactness: everything a step depends on is a function of the checkpoint
 * (weights, statistics, optimizer and method state, step, BN-refresh batches
 * drawn) and of the configuration: the loaders replay their samplers to the
 * resumed step, dropout masks are indexed by step. So N steps, interrupt,
 * resume to 2N writes the same checkpoint bytes as 2N straight (same seed
 * and thread count). */
#define _POSIX_C_SOURCE 200809L
#include "app/train.h"

#include <dirent.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "app/cli.h"
#include "app/closure.h"
#include "app/config.h"
#include "app/train_data.h"
#include "app/eval_cmd.h"
#include "app/evaluate.h"
#include "app/report.h"
#include "data/fsutil.h"
#include "data/holdout.h"
#include "data/sources.h"
#include "eval/metrics.h"
#include "nets/core/weights.h"

long dg_train_interrupt_after = -1;
int dg_train_interrupt_phase = 0;

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) { interrupted = sig; }

#define MAX_DOM DG_TRAIN_MAX_DOMAINS

/* One training run (one test domain for classification). */
/* The classification evaluations of one model, in step order. */
typedef struct eval_hist {
    long n;
    long *step;                    /* (n) */
    double *val;                   /* (n) mean training-domain out-split accuracy */
    double *test;                  /* (n) test-domain in-split accuracy */
} eval_hist;

typedef struct run {
    const dg_config *cfg;
    char *dir;                     /* run directory */
    dg_ctx ctx;
    dg_model m;
    bool has_model;
    dg_train_closure tc;
    bool has_tc;
    dg_method *method;
    dg_sched sched;
    dg_train_data data;            /* the training domains */
    /* loaders */
    dg_loader *loader;
    dg_loader *refresh;
    dg_loader *val_refresh;        /* during seg_validate only (slow_weight_stats) */
    bool finished;                 /* dg_method_finish has run */
    long start_step;
    /* classification evaluation: an eval-mode instance on the trainer's layout */
    dg_model ev;
    bool has_ev;
    eval_hist hist[2];             /* the evaluated weights', the second model's */
    const char *second_label;      /* MESA's other model ("mesa teacher"); NULL: none */
    dg_cls_run result[2];          /* filled after training, as hist */
    /* segmentation validation (train.eval_every, eval.validate) */
    double best_score;             /* best validation mIoU so far (NaN: none) */
    long best_step;
    long stopped_at;               /* SWAD's early stop: the last step run (0: none) */
    dg_metrics metrics;
    dg_progress progress;
} run;

/* ---- data ------------------------------------------------------------------ */

static dg_status next_batch_of(dg_loader *l, dg_model *m) {
    const dg_batch *b;
    dg_status st = dg_loader_next(l, &b);
    if (st != DG_STATUS_OK) return st;
    const size_t nx = (size_t)b->n * (size_t)b->c * (size_t)b->h * (size_t)b->w;
    memcpy(dg_mem_ptr(m->src), b->x, nx * sizeof(float));
    return DG_STATUS_OK;
}

static dg_status next_refresh_batch(void *ctx, dg_model *m) {
    return next_batch_of(((run *)ctx)->refresh, m);
}

static dg_status next_val_refresh_batch(void *ctx, dg_model *m) {
    return next_batch_of(((run *)ctx)->val_refresh, m);
}

/* ---- model and method ------------------------------------------------------ */

static dg_status make_model(run *r) {
    const dg_config *cfg = r->cfg;
    const bool seg = cfg->task == DG_TASK_SEGMENTATION;
    /* ASPP's image-pooling BN sees one value per channel and image: training
     * mode needs two images per forward (PyTorch raises the same error). */
    const long per_forward = !strcmp(cfg->method, "dgsam") ? cfg->batch_size
                                                           : cfg->batch_size * r->data.S;
    if (seg && !cfg->freeze_bn && per_forward < 2) {
        dg_log_error("train.batch_size = %ld: DeepLabv3+ needs at least 2 images per forward "
                     "pass in training (%s); raise train.batch_size or set model.freeze_bn = true",
                cfg->batch_size, !strcmp(cfg->method, "dgsam")
                        ? "DGSAM runs one forward per source domain"
                        : "the ASPP image-pooling BatchNorm sees one value per channel and image");
        return DG_STATUS_ERR_CONFIG;
    }
    dg_model_opts mo = {
        .batch = cfg->batch_size * r->data.S,
        .training = true,
        .output_stride = (int)cfg->output_stride,
        .aux = seg && cfg->aux,
        .aux_dropout = 0.1f,
        .freeze_bn = cfg->freeze_bn,
        .dropout = (float)cfg->dropout,
        .winograd = cfg->winograd,
        .bf16 = cfg->dtype == DG_DTYPE_BF16,
    };
    dg_train_data_model_geometry(&r->data, &mo);
    char sizes[160]; /* named in the out-of-memory error, the one message */
    if (seg)
        snprintf(sizes, sizeof(sizes), "train.batch_size = %ld (per source) or data.crop_size = "
                "%ld (%s)", cfg->batch_size, cfg->crop_size, cfg->path);
    else
        snprintf(sizes, sizeof(sizes), "train.batch_size = %ld (per training domain, %s)",
                cfg->batch_size, cfg->path);
    mo.sizes_from = sizes;
    dg_status st = dg_model_create(&r->m, &r->ctx, cfg->model, &mo, (uint64_t)cfg->seed);
    if (st != DG_STATUS_OK) return st;
    r->has_model = true;
    if (cfg->pretrained[0]) st = dg_model_load_pretrained(&r->m, cfg->pretrained);
    return st;
}

static dg_status make_method(run *r) {
    const dg_config *cfg = r->cfg;
    dg_method_cfg mc = cfg->optim;
    int64_t ld[4];
    dg_mem_dims4(r->m.logits, ld);
    mc.n_samples = 0;
    for (int k = 0; k < r->data.S; k++)
        mc.n_samples += cfg->task == DG_TASK_SEGMENTATION ? (long)r->data.seg[k].n
                                                          : (long)r->data.split[r->data.train_domain[k]].n_in;
    mc.n_classes = r->data.n_classes;
    mc.logits_numel = (size_t)(ld[0] * ld[1] * ld[2] * ld[3]);
    mc.segmentation = cfg->task == DG_TASK_SEGMENTATION;
    dg_status st = dg_method_create(cfg->method, cfg->base, &mc, &r->m.ps, (uint64_t)cfg->seed,
            &r->method);
    if (st != DG_STATUS_OK) return st;
    st = dg_sched_parse(cfg->schedule, &r->sched.kind);
    r->sched.lr = cfg->lr;
    r->sched.lr_min = cfg->lr_min;
    r->sched.power = cfg->poly_power;
    r->sched.total = cfg->iterations;
    r->sched.warmup = cfg->warmup_steps;
    if (st != DG_STATUS_OK) return st;
    const bool sub = !strcmp(cfg->method, "dgsam") && r->data.S > 1;
    st = dg_train_closure_init(&r->tc, &r->ctx, &r->m, r->data.S, sub,
            r->m.aux_logits ? (float)cfg->aux_weight : 0.f);
    if (st != DG_STATUS_OK) return st;
    r->has_tc = true;
    r->tc.method = r->method;
    r->tc.refresh_batch = next_refresh_batch;
    r->tc.refresh_ctx = r;
    return DG_STATUS_OK;
}

/* ---- classification evaluation (DATASETS.md §9.2, §12.6) ------------------- */

#define CLS_EVAL_BATCH 128

static dg_status make_cls_evaluator(run *r) {
    const dg_model_opts *o = &r->m.opts;
    dg_model_opts eo = *o;
    eo.batch = r->cfg->eval_batch_size > 1 ? r->cfg->eval_batch_size : CLS_EVAL_BATCH;
    eo.training = false;
    dg_status st = dg_model_create(&r->ev, &r->ctx, r->cfg->model, &eo, 0);
    if (st != DG_STATUS_OK) return st;
    r->has_ev = true;
    const dg_param_set *a = &r->ev.ps, *b = &r->m.ps;
    if (a->d != b->d || a->n_stats != b->n_stats || !dg_params_layout_is_prefix(a, b)) {
        dg_log_error("%s: the evaluation instance's parameter layout differs from the training "
                     "instance's", r->cfg->model);
        return DG_STATUS_ERR_SHAPE;
    }
    return DG_STATUS_OK;
}

static bool is_swad(const dg_config *cfg) { return !strcmp(cfg->method, "swad"); }

/* DomainBed's (and SWAD's, ALGORITHMS.md §6) evaluation points: after the
 * first update, every `every` updates from there and after the last. */
static bool domainbed_point(long done, long every, long T) {
    return every > 0 && ((done - 1) % every == 0 || done == T);
}

/* Classification evaluations run every train.eval_every steps; SWAD's run
 * on its own schedule (optim.swad_eval_every), which then is the trainer's. */
static long cls_eval_every(const dg_config *cfg) {
    return is_swad(cfg) ? cfg->optim.swad_eval_every : cfg->eval_every;
}

/* Training-domain validation (mean accuracy and mean CE over the training
 * domains' out splits) and the test domain's in-split accuracy of P/Q. */
static void cls_scores(run *r, const float *P, const float *Q, double *val, double *val_loss,
        double *test) {
    double ce;
    *val = *val_loss = 0;
    for (int k = 0; k < r->data.S; k++) {
        *val += dg_train_data_cls_accuracy(&r->data, &r->ctx, &r->ev, P, Q, r->data.train_domain[k], true, &ce);
        *val_loss += ce;
    }
    *val /= r->data.S;
    *val_loss /= r->data.S;
    *test = dg_train_data_cls_accuracy(&r->data, &r->ctx, &r->ev, P, Q, r->data.test_domain, false, &ce);
}

static void push_eval(eval_hist *h, long step, double val, double test) {
    h->step = dg_xrealloc(h->step, (size_t)(h->n + 1) * sizeof(long));
    h->val = dg_xrealloc(h->val, (size_t)(h->n + 1) * sizeof(double));
    h->test = dg_xrealloc(h->test, (size_t)(h->n + 1) * sizeof(double));
    h->step[h->n] = step;
    h->val[h->n] = val;
    h->test[h->n] = test;
    h->n++;
}

/* The run's result from h: the step training-domain validation selects
 * and the last evaluation. */
static void select_result(const eval_hist *h, dg_cls_run *res) {
    if (h->n == 0) return;
    const int sel = dg_report_select(h->val, (int)h->n);
    res->selected_step = sel >= 0 ? h->step[sel] : -1;
    res->val_acc = sel >= 0 ? h->val[sel] : NAN;
    res->acc_selected = sel >= 0 ? h->test[sel] : NAN;
    res->last_step = h->step[h->n - 1];
    res->acc_last = h->test[h->n - 1];
}

/* One evaluation after step `step` with the method's evaluated weights
 * (SWAD's live weights until it finishes). SWAD then gets the source
 * validation loss (trainer loop step 5); returns true when it asks to stop. */
static bool cls_evaluate(run *r, long step) {
    const float *P, *Q;
    dg_method_eval_weights(r->method, &r->m.ps, &P, &Q);
    double val, val_loss, test;
    cls_scores(r, P, Q, &val, &val_loss, &test);
    push_eval(&r->hist[0], step, val, test);
    dg_metric mv[2] = {{"val_acc", val}, {"test_acc", test}};
    dg_metrics_log(&r->metrics, "eval", step, mv, 2);
    dg_metric ml[1] = {{"loss", val_loss}};
    dg_metrics_log(&r->metrics, "val_loss", step, ml, 1);
    dg_progress_break(&r->progress);
    dg_log_info("step %ld: training-domain validation %.2f%% (loss %.4f), test domain %.2f%%",
            step, 100 * val, val_loss, 100 * test);
    if (dg_method_second_weights(r->method, &r->second_label, &P, &Q)) {
        double val2, val_loss2, test2;
        cls_scores(r, P, Q, &val2, &val_loss2, &test2);
        push_eval(&r->hist[1], step, val2, test2);
        dg_metric m2[3] = {{"val_acc", val2}, {"test_acc", test2}, {"val_loss", val_loss2}};
        dg_metrics_log(&r->metrics, "eval2", step, m2, 3);
        dg_log_info("step %ld: %s: training-domain validation %.2f%%, test domain %.2f%%", step,
                r->second_label, 100 * val2, 100 * test2);
    }
    return is_swad(r->cfg) && dg_method_on_eval(r->method, step - 1, val_loss);
}

/* After a resume: the evaluations before the checkpoint, from metrics.jsonl
 * (already cut at the resumed step), so selection sees the whole run. */
static void restore_evals(run *r) {
    char *mp = dg_xasprintf("%s/metrics.jsonl", r->dir);
    dg_metrics_data md;
    if (dg_metrics_read(&md, mp) == DG_STATUS_OK) {
        static const char *const kinds[2] = {"eval", "eval2"};
        for (int k = 0; k < 2; k++) {
            const dg_series *v = dg_metrics_find(&md, kinds[k], "val_acc");
            const dg_series *t = dg_metrics_find(&md, kinds[k], "test_acc");
            for (int i = 0; v && t && i < v->n && i < t->n; i++)
                push_eval(&r->hist[k], (long)v->step[i], v->value[i], t->value[i]);
        }
        const dg_series *m = dg_metrics_find(&md, "eval", "val_miou");
        for (int i = 0; m && i < m->n; i++)
            if (isfinite(m->value[i]) && !(m->value[i] <= r->best_score)) {
                r->best_score = m->value[i];
                r->best_step = (long)m->step[i];
            }
        dg_metrics_data_free(&md);
    }
    dg_free(mp);
}

/* ---- segmentation validation ----------------------------------------------- */

/* The source validation loss of SWAD (ALGORITHMS.md §6): mean CE over the
 * valid pixels of the first optim.swad_val_images images of every source's
 * validation split (data.source_val_split), averaged over the sources; live
 * weights, eval mode. NaN when it cannot be had. */
static double seg_source_val_loss(run *r) {
    const dg_config *cfg = r->cfg;
    dg_eval_target t[DG_EVAL_MAX_TARGETS];
    int n = 0;
    dg_status st = dg_eval_seg_list(cfg, &r->ctx, &r->m.ps, r->m.ps.data, r->m.ps.stats, "live",
            "data.sources", cfg->sources, cfg->source_val_split, cfg->optim.swad_val_images, t,
            &n);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += t[i].ce;
    dg_eval_targets_free(t, n);
    return st == DG_STATUS_OK && n ? sum / n : NAN;
}

static char *best_path(const run *r) { return dg_xasprintf("%s/checkpoints/best.safetensors", r->dir); }
static dg_status save_weights_file(run *r, const char *path, long step, const float *P,
        const float *Q, const char *what, double score);

/* Validation every train.eval_every steps (and after the last): mIoU of the
 * method's evaluated weights on the first eval.val_images images of the
 * sources' validation splits and/or the targets (eval.validate); the score
 * is the mean over the source sets (the targets' when only they are
 * validated). A better score writes checkpoints/best.safetensors. */
/* Lookahead's slow weights between refreshes meet running statistics that
 * the fast weights' forwards have moved (>90% within ~22 steps of a
 * refresh), so validating them with those would bias validation curves and
 * best.safetensors against them. Statistics for P instead, as the released
 * code validates after its per-epoch refresh: 2k train-mode forwards at P
 * (the per-epoch refresh's count), their exact mean (cumulative), on fixed
 * batches of the training domains (a loader of their own, seed train.seed
 * + 2, restarted at every validation, so every validation sees the same
 * batches). Into a copy: the live statistics, the refresh loader and its
 * count, and the training batch stay as they were, so training is unchanged
 * (tested). NULL where nothing needs it (not the Lookahead family, no BN
 * statistics, frozen BN, or after dg_method_finish refreshed them for P). */
static float *slow_weight_stats(run *r, const float *P, const float *Q) {
    const dg_config *cfg = r->cfg;
    dg_param_set *ps = &r->m.ps;
    if (strncmp(cfg->method, "lookahead", 9) || r->finished || ps->n_stats == 0 ||
            cfg->freeze_bn || !cfg->optim.la_bn_refresh || P == ps->data || Q != ps->stats ||
            !r->tc.cl.bn_refresh)
        return NULL;
    if (dg_train_data_loader(&r->data, false, (uint64_t)cfg->seed + 2, 0, &r->val_refresh) != DG_STATUS_OK)
        return NULL;
    const size_t bytes = ps->n_stats * sizeof(float);
    float *live = dg_xmalloc(bytes), *q = dg_xmalloc(bytes);
    memcpy(live, ps->stats, bytes);
    dg_refresh_batch_fn fn = r->tc.refresh_batch;
    const long drawn = r->tc.refresh_batches;
    r->tc.refresh_batch = next_val_refresh_batch;
    r->tc.cl.bn_refresh(r->tc.cl.ctx, P, 2 * cfg->optim.la_k, DG_BN_REFRESH_CUMULATIVE);
    memcpy(q, ps->stats, bytes);
    memcpy(ps->stats, live, bytes);
    r->tc.refresh_batch = fn;
    r->tc.refresh_batches = drawn;
    dg_loader_free(r->val_refresh);
    r->val_refresh = NULL;
    dg_free(live);
    return q;
}

static dg_status seg_validate(run *r, long step) {
    const dg_config *cfg = r->cfg;
    const float *P, *Q;
    dg_method_eval_weights(r->method, &r->m.ps, &P, &Q);
    float *own = slow_weight_stats(r, P, Q);
    if (own) Q = own;
    dg_eval_target t[2 * DG_EVAL_MAX_TARGETS];
    int n_src = 0, n_tgt = 0;
    dg_status st = DG_STATUS_OK;
    if (cfg->val_on != DG_VALIDATE_TARGETS)
        st = dg_eval_seg_list(cfg, &r->ctx, &r->m.ps, P, Q, "evaluated", "data.sources",
                cfg->sources, cfg->source_val_split, cfg->val_images, t, &n_src);
    if (st == DG_STATUS_OK && cfg->val_on != DG_VALIDATE_SOURCE && cfg->targets[0])
        st = dg_eval_seg_list(cfg, &r->ctx, &r->m.ps, P, Q, "evaluated", "data.targets",
                cfg->targets, NULL, cfg->val_images, t + n_src, &n_tgt);
    const int n = n_src + n_tgt, n_score = n_src ? n_src : n_tgt;
    dg_metric mv[1 + 2 * DG_EVAL_MAX_TARGETS];
    char names[2 * DG_EVAL_MAX_TARGETS][64];
    /* the score averages the sets that have an mIoU: a validation set with
     * no valid label pixel (NaN, said in its evaluation's warning) must not
     * make every score NaN and `best` never chosen */
    double score = 0;
    int m = 0, n_scored = 0;
    for (int i = 0; i < n; i++) {
        if (i < n_score && isfinite(t[i].res.miou)) {
            score += t[i].res.miou;
            n_scored++;
        }
        snprintf(names[i], sizeof(names[i]), "%s_miou", t[i].name);
        for (char *c = names[i]; *c; c++)
            if (*c == ' ') *c = '_';
        mv[m++] = (dg_metric){names[i], t[i].res.miou};
    }
    score = n_scored ? score / n_scored : NAN;
    if (st == DG_STATUS_OK && n) {
        mv[m++] = (dg_metric){"val_miou", score};
        dg_metrics_log(&r->metrics, "eval", step, mv, m);
        dg_progress_break(&r->progress);
        char line[512];
        size_t off = 0;
        for (int i = 0; i < n && off < sizeof(line); i++)
            off += (size_t)snprintf(line + off, sizeof(line) - off, "%s%s %.2f", i ? ", " : "",
                    t[i].name, 100 * t[i].res.miou);
        dg_log_info("step %ld: validation mIoU %s (score %.2f)", step, line, 100 * score);
        if (isfinite(score) && !(score <= r->best_score)) {
            r->best_score = score;
            r->best_step = step;
            char *bp = best_path(r);
            st = save_weights_file(r, bp, step, P, Q, "best", score);
            dg_free(bp);
        }
    }
    dg_eval_targets_free(t, n);
    dg_free(own);
    return st;
}

/* ---- checkpoints ----------------------------------------------------------- */

static char *ckpt_path(const run *r) { return dg_xasprintf("%s/checkpoints/last.safetensors", r->dir); }

/* The metadata every weights file of a run carries (text: the resolved
 * configuration, freed by the caller after the write). */
static void set_run_metadata(const run *r, dg_tensor_writer *w, long step, char **text) {
    const dg_config *cfg = r->cfg;
    char buf[64];
    *text = dg_config_text(cfg, true);
    dg_tensor_writer_set_metadata(w, "format_version", "1");
    snprintf(buf, sizeof(buf), "%ld", step);
    dg_tensor_writer_set_metadata(w, "step", buf);
    dg_tensor_writer_set_metadata(w, "model", cfg->model);
    snprintf(buf, sizeof(buf), "%d", r->data.n_classes);
    dg_tensor_writer_set_metadata(w, "classes", buf);
    snprintf(buf, sizeof(buf), "%ld", cfg->output_stride);
    dg_tensor_writer_set_metadata(w, "output_stride", buf);
    dg_tensor_writer_set_metadata(w, "aux", r->m.aux_logits ? "true" : "false");
    dg_tensor_writer_set_metadata(w, "task",
            cfg->task == DG_TASK_SEGMENTATION ? "segmentation" : "classification");
    dg_tensor_writer_set_metadata(w, "method", cfg->method);
    const int td = r->data.test_domain;
    if (cfg->task == DG_TASK_CLASSIFICATION && td >= 0) { /* the held-out domain */
        if (r->data.has_rf) dg_rotated_fmnist_domain_name(td, buf, sizeof(buf));
        dg_tensor_writer_set_metadata(w, "test_domain",
                r->data.has_rf ? buf : r->data.db.domains[td].name);
    }
    snprintf(buf, sizeof(buf), "%ld", r->tc.refresh_batches);
    dg_tensor_writer_set_metadata(w, "bn_refresh_batches", buf);
    /* after dg_method_finish: the final model; a resume does not finish again */
    if (r->finished) dg_tensor_writer_set_metadata(w, "finished", "true");
    snprintf(buf, sizeof(buf), "%ld", cfg->iterations);
    dg_tensor_writer_set_metadata(w, "iterations", buf);
    dg_tensor_writer_set_metadata(w, "config", *text);
}

/* A model-only weights file (best.safetensors): P/Q under the model's
 * tensor names, no optimizer state; "weights" and "score" say what it is. */
static dg_status save_weights_file(run *r, const char *path, long step, const float *P,
        const float *Q, const char *what, double score) {
    dg_param_set view = r->m.ps; /* shallow: only data and stats are read */
    view.data = (float *)P;
    view.stats = (float *)Q;
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    dg_weights_add(&w, &view);
    char *text, buf[64];
    set_run_metadata(r, &w, step, &text);
    dg_tensor_writer_set_metadata(&w, "weights", what);
    snprintf(buf, sizeof(buf), "%.17g", score);
    dg_tensor_writer_set_metadata(&w, "score", buf);
    dg_status st = dg_tensor_writer_write(&w, path);
    if (st == DG_STATUS_OK) dg_log_info("%s weights: %s (step %ld)", what, path, step);
    dg_free(text);
    dg_tensor_writer_free(&w);
    return st;
}

static dg_status save_checkpoint(run *r, long step) {
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    dg_weights_add(&w, &r->m.ps);
    dg_status st = dg_method_state_save(r->method, &w);
    char *text;
    set_run_metadata(r, &w, step, &text);
    char *path = ckpt_path(r);
    if (st == DG_STATUS_OK) st = dg_tensor_writer_write(&w, path);
    if (st == DG_STATUS_OK) dg_log_info("checkpoint: %s (step %ld)", path, step);
    dg_free(path);
    dg_free(text);
    dg_tensor_writer_free(&w);
    return st;
}

static long meta_long(const dg_tensor_reader *rd, const char *path, const char *key,
        dg_status *st) {
    const char *v = dg_tensor_reader_metadata(rd, key);
    char *end = NULL;
    long x = v ? strtol(v, &end, 10) : -1;
    if (!v || *end || x < 0) {
        dg_log_error("%s: checkpoint metadata '%s' is missing or malformed", path, key);
        *st = DG_STATUS_ERR_FORMAT;
        return 0;
    }
    return x;
}

/* Restores weights, statistics, optimizer/method state; *step and
 * *refresh get the checkpoint's counters. */
static dg_status load_checkpoint(run *r, long *step, long *refresh) {
    char *path = ckpt_path(r);
    dg_tensor_reader rd;
    dg_status st = dg_tensor_reader_open(&rd, path);
    if (st == DG_STATUS_OK) {
        const char *model = dg_tensor_reader_metadata(&rd, "model");
        if (!model || strcmp(model, r->cfg->model)) {
            dg_log_error("%s: checkpoint of model '%s', the configuration trains '%s'", path,
                    model ? model : "?", r->cfg->model);
            st = DG_STATUS_ERR_FORMAT;
        }
        if (st == DG_STATUS_OK) *step = meta_long(&rd, path, "step", &st);
        if (st == DG_STATUS_OK) *refresh = meta_long(&rd, path, "bn_refresh_batches", &st);
        const char *fin = dg_tensor_reader_metadata(&rd, "finished");
        r->finished = fin && !strcmp(fin, "true");
        if (st == DG_STATUS_OK && r->finished) {
            /* its method's finish (Lookahead's final BN refresh, SWAD's
             * average) is applied: it ends here, it cannot go on */
            const long T = meta_long(&rd, path, "iterations", &st);
            if (st == DG_STATUS_OK && T != r->cfg->iterations) {
                dg_log_error("%s: this run finished with train.iterations = %ld; a finished run "
                             "cannot be continued to %ld (its method's finish is applied): "
                             "start a new run, or keep train.iterations = %ld", path, T,
                        r->cfg->iterations, T);
                st = DG_STATUS_ERR_CONFIG;
            }
            /* a finished run that stopped early (SWAD) stopped at its last step */
            if (st == DG_STATUS_OK && *step < T) r->stopped_at = *step;
        }
        if (st == DG_STATUS_OK) st = dg_weights_load_reader(&rd, &r->m.ps, NULL);
        if (st == DG_STATUS_OK) st = dg_method_state_load(r->method, &rd);
        dg_tensor_reader_close(&rd);
    }
    if (st != DG_STATUS_OK) dg_log_error("%s: cannot resume from this checkpoint", path);
    dg_free(path);
    return st;
}

/* ---- the loop -------------------------------------------------------------- */

static bool has_checkpoint(const run *r) {
    char *path = ckpt_path(r);
    const bool have = dg_is_file(path);
    dg_free(path);
    return have;
}

/* "the last checkpoint, step S, is intact" or "no checkpoint was written
 * yet", for messages. */
static void ckpt_note(const run *r, long last_ckpt, char *buf, size_t size) {
    if (has_checkpoint(r))
        snprintf(buf, size, "the last checkpoint, step %ld, is intact", last_ckpt);
    else
        snprintf(buf, size, "no checkpoint was written yet");
}

/* SIGINT/SIGTERM during the method's finish or the evaluations of the
 * finished model: the run stops without its final checkpoint (the one of
 * the last training step, or an earlier one, stays), so a resume finishes
 * again from the same state and ends with the same bytes. */
static int stopped_in_finish(run *r, long last) {
    char note[96];
    ckpt_note(r, last, note, sizeof(note));
    if (!has_checkpoint(r))
        dg_log_error("interrupted while finishing the run after step %ld (%s); train.resume=true "
                     "trains it again", last, note);
    else
        dg_log_error("interrupted while finishing the run after step %ld; the last checkpoint is "
                     "intact; continue with train.resume=true (the finish is redone from it)",
                last);
    return 1;
}

/* The metrics log could not be appended to (a full disk; the message
 * naming it is out): the run stops, the lines written so far are whole. */
static int stopped_by_metrics(run *r, long done, long last_ckpt) {
    char note[96];
    dg_progress_break(&r->progress);
    ckpt_note(r, last_ckpt, note, sizeof(note));
    dg_log_error("training stopped after step %ld: the metrics log could not be written (%s)",
            done, note);
    return 1;
}

static void set_swad_result(run *r, long last, double val, double test) {
    r->result[0].selected_step = r->result[0].last_step = last;
    r->result[0].val_acc = val;
    r->result[0].acc_selected = r->result[0].acc_last = test;
}

/* A finished SWAD classification run's result: the "swad" record of
 * metrics.jsonl at step last (its averaged model's evaluation). */
static dg_status restore_swad_result(run *r, long last) {
    char *mp = dg_xasprintf("%s/metrics.jsonl", r->dir);
    dg_metrics_data md;
    dg_status st = dg_metrics_read(&md, mp);
    if (st == DG_STATUS_OK) {
        const dg_series *v = dg_metrics_find(&md, "swad", "val_acc");
        const dg_series *t = dg_metrics_find(&md, "swad", "test_acc");
        st = DG_STATUS_ERR_FORMAT;
        for (int i = 0; v && t && i < v->n && i < t->n; i++)
            if ((long)v->step[i] == last) {
                set_swad_result(r, last, v->value[i], t->value[i]);
                st = DG_STATUS_OK;
            }
        dg_metrics_data_free(&md);
        if (st != DG_STATUS_OK)
            dg_log_error("%s: no 'swad' record of step %ld for the finished run", mp, last);
    }
    dg_free(mp);
    return st;
}

static int train_loop(run *r) {
    const dg_config *cfg = r->cfg;
    const long T = cfg->iterations;
    const int B = (int)(cfg->batch_size * r->data.S);
    const bool seg = cfg->task == DG_TASK_SEGMENTATION;
    double t_log = dg_now(), loss_sum = 0;
    long n_loss = 0, last_ckpt = r->start_step;
    dg_param_set *ps = &r->m.ps;
    dg_progress_init(&r->progress, stdout, dg_progress_is_tty(stdout), r->start_step, T,
            cfg->log_every, B);
    for (long t = r->start_step; t < T && !r->finished; t++) {
        const dg_batch *b;
        dg_status st = dg_loader_next(r->loader, &b);
        if (st != DG_STATUS_OK) {
            dg_progress_break(&r->progress);
            char note[96];
            ckpt_note(r, last_ckpt, note, sizeof(note));
            dg_log_error("training stopped at step %ld: a batch could not be loaded (%s)", t, note);
            return 1;
        }
        dg_train_closure_set_batch(&r->tc, b->x, b->label, b->sample_id, b->epoch, t);
        const long ts = dg_method_sched_step(r->method, t);
        const float lr = dg_sched_lr(&r->sched, ts);
        dg_method_step(r->method, ps, &r->tc.cl, lr);
        dg_cli_fault_point("step");
        const double loss = r->tc.first_loss;
        if (!isfinite(loss)) {
            dg_progress_break(&r->progress);
            char note[96];
            ckpt_note(r, last_ckpt, note, sizeof(note));
            if (cfg->nan_policy == DG_NAN_STOP) {
                dg_log_error("non-finite loss (%g) at step %ld: training stopped (%s; "
                             "train.nan_policy = rollback restores the last checkpoint and "
                             "goes on)", loss, t, note);
                return 1;
            }
            if (!has_checkpoint(r)) {
                dg_log_error("non-finite loss (%g) at step %ld: no checkpoint to roll back to "
                             "yet (train.nan_policy = rollback; the first is written at step "
                             "%ld, train.checkpoint_every)", loss, t, cfg->checkpoint_every);
                return 1;
            }
            long step = 0, refresh = 0;
            dg_log_warn("non-finite loss (%g) at step %ld: rolling back to the checkpoint of "
                        "step %ld and going on with the next batch", loss, t, last_ckpt);
            if (load_checkpoint(r, &step, &refresh) != DG_STATUS_OK) return 1;
            continue;
        }
        loss_sum += loss;
        n_loss++;
        const long done = t + 1;
        dg_progress_update(&r->progress, done, loss, lr);
        if (done % cfg->log_every == 0 || done == T) {
            double now = dg_now();
            dg_metrics_log_train(&r->metrics, done, loss_sum / (double)n_loss, lr,
                    (double)B * (double)n_loss / (now - t_log));
            t_log = now;
            loss_sum = 0;
            n_loss = 0;
        }
        bool swad_stop = false;
        /* The evaluation after the last step waits for the method's finish
         * (BN refresh, final sync) unless SWAD needs it for its end rule. */
        if (r->has_ev && domainbed_point(done, cls_eval_every(cfg), T) &&
                (done != T || is_swad(cfg)))
            swad_stop = cls_evaluate(r, done);
        if (seg && is_swad(cfg) && domainbed_point(done, cfg->optim.swad_eval_every, T)) {
            const double l = seg_source_val_loss(r);
            if (!isfinite(l)) {
                dg_progress_break(&r->progress);
                dg_log_error("step %ld: SWAD's source validation loss could not be computed "
                             "(the sources' val splits, optim.swad_val_images)", done);
                return 1;
            }
            dg_metric ml[1] = {{"loss", l}};
            dg_metrics_log(&r->metrics, "val_loss", done, ml, 1);
            swad_stop = dg_method_on_eval(r->method, t, l);
        }
        if (r->metrics.failed) return stopped_by_metrics(r, done, last_ckpt);
        /* the last step's validation follows dg_method_finish (below) */
        if (seg && cfg->eval_every > 0 && done % cfg->eval_every == 0 && done != T &&
                seg_validate(r, done) != DG_STATUS_OK) {
            dg_log_error("step %ld: validation failed", done);
            return 1;
        }
        bool stop = interrupted || dg_train_interrupt_after == t;
        if (done % cfg->checkpoint_every == 0 || stop) {
            dg_progress_break(&r->progress);
            if (save_checkpoint(r, done) != DG_STATUS_OK) {
                dg_log_error("step %ld: the checkpoint could not be written; the previous one "
                             "(step %ld) is intact", done, last_ckpt);
                return 1;
            }
            last_ckpt = done;
        }
        if (stop) {
            dg_log_error("interrupted after step %ld; checkpoint saved; continue with "
                         "train.resume=true", done);
            return 1;
        }
        if (swad_stop && cfg->optim.swad_early_stop) {
            dg_progress_break(&r->progress);
            dg_log_info("swad: the loss valley ended; training stops after step %ld "
                        "(optim.swad_early_stop)", done);
            r->stopped_at = done;
            break;
        }
    }
    dg_progress_break(&r->progress);
    const long last = r->stopped_at ? r->stopped_at : T;
    if (r->finished) {
        /* resumed from the final checkpoint: the model, its validation and
         * the classification evaluations of it are all there (metrics.jsonl
         * up to `last` was kept); only the results remain to be written */
        if (r->has_ev && is_swad(cfg) && restore_swad_result(r, last) != DG_STATUS_OK) return 1;
    } else {
        r->tc.refresh_progress = true; /* the final refresh: hundreds of batches */
        dg_method_finish(r->method, ps, &r->tc.cl);
        r->tc.refresh_progress = false;
        r->finished = true;
        /* label values outside the sources' id range met in training, with
         * their count (nothing when the class-uniform scan already said it) */
        for (int k = 0; seg && k < r->data.S; k++)
            dg_seg_dataset_warn_out_of_range(&r->data.seg[k], "in training");
        if (dg_train_interrupt_phase == 1) interrupted = SIGTERM;
        if (interrupted) return stopped_in_finish(r, last);
        /* the model the results report (Lookahead's slow weights with their
         * final refresh, SWAD's average), as the targets' evaluation sees it */
        if (seg && cfg->eval_every > 0 && last == T && seg_validate(r, T) != DG_STATUS_OK) {
            dg_log_error("step %ld: validation failed", T);
            return 1;
        }
        if (r->has_ev && is_swad(cfg)) {
            /* SWAD reports its averaged model (DATASETS.md §9.3): one evaluation
             * of it stands for both the selected and the last step. */
            const float *P, *Q;
            dg_method_eval_weights(r->method, ps, &P, &Q);
            double val, val_loss, test;
            cls_scores(r, P, Q, &val, &val_loss, &test);
            dg_metric mv[3] = {{"val_acc", val}, {"test_acc", test}, {"val_loss", val_loss}};
            dg_metrics_log(&r->metrics, "swad", last, mv, 3);
            dg_log_info("swad average: training-domain validation %.2f%%, test domain %.2f%%",
                    100 * val, 100 * test);
            set_swad_result(r, last, val, test);
        } else if (r->has_ev && domainbed_point(last, cls_eval_every(cfg), T)) {
            cls_evaluate(r, last); /* the finished model */
        }
        if (interrupted) return stopped_in_finish(r, last);
        if (r->metrics.failed) return stopped_by_metrics(r, last, last_ckpt);
        /* the final checkpoint: a resume from it only writes the results */
        if (save_checkpoint(r, last) != DG_STATUS_OK) return 1;
    }
    if (r->has_ev && !is_swad(cfg)) {
        select_result(&r->hist[0], &r->result[0]);
        select_result(&r->hist[1], &r->result[1]);
    }
    return 0;
}

/* curves.png from metrics.jsonl (closed first). No driver or nothing to
 * plot is a warning; a file that cannot be written (a full disk) fails the
 * run. Returns the exit code. */
static int write_curves(run *r) {
    dg_metrics_close(&r->metrics);
    char *mp = dg_xasprintf("%s/metrics.jsonl", r->dir), *cp = dg_xasprintf("%s/curves.png", r->dir);
    dg_metrics_data md;
    int rc = 0;
    if (dg_metrics_read(&md, mp) == DG_STATUS_OK) {
        if (dg_report_curves(&md, cp, 0, 0) == DG_STATUS_ERR_IO) {
            dg_log_error("%s: could not be written (above); the run's results are not complete",
                    cp);
            rc = 1;
        }
        dg_metrics_data_free(&md);
    }
    dg_free(mp);
    dg_free(cp);
    return rc;
}

/* After training: every target with the method's evaluated weights (and
 * its second model, MESA's teacher), then curves.png, results.md and, last,
 * results.json: a segmentation run with results.json is complete (run_one),
 * so a run stopped before it (kill -9, a full disk) writes all three again
 * when resumed. */
static int final_reports(run *r) {
    const dg_config *cfg = r->cfg;
    dg_eval_target t[2 * DG_EVAL_MAX_TARGETS];
    int n = 0, rc = 0;
    if (cfg->task == DG_TASK_SEGMENTATION && cfg->targets[0]) {
        const float *P, *Q;
        dg_method_eval_weights(r->method, &r->m.ps, &P, &Q);
        int n1 = 0;
        dg_log_info("evaluating on %s", cfg->targets);
        dg_status st = dg_eval_seg_targets(cfg, &r->ctx, &r->m.ps, P, Q, cfg->method, t, &n1);
        n = n1;
        const char *label2;
        if (st == DG_STATUS_OK && dg_method_second_weights(r->method, &label2, &P, &Q)) {
            int n2 = 0;
            st = dg_eval_seg_targets(cfg, &r->ctx, &r->m.ps, P, Q, label2, t + n, &n2);
            n += n2;
        }
        if (st != DG_STATUS_OK) rc = 1;
        if (dg_train_interrupt_phase == 2) interrupted = SIGTERM;
        if (interrupted) {
            dg_log_error("interrupted during the final evaluation; no results written; the "
                         "final checkpoint is intact: train.resume=true evaluates again");
            dg_eval_targets_free(t, n);
            return 1;
        }
        if (rc == 0) rc = write_curves(r);
        dg_report_settings set;
        memset(&set, 0, sizeof(set));
        dg_report_settings_from_config(&set, cfg);
        dg_seg_result res[2 * DG_EVAL_MAX_TARGETS];
        for (int i = 0; i < n; i++) res[i] = t[i].res;
        dg_seg_report rep = {.method = cfg->method, .run = &set, .results = res, .n_results = n};
        char *pj = dg_xasprintf("%s/results.json", r->dir), *pm = dg_xasprintf("%s/results.md", r->dir);
        if (rc == 0 && n && (dg_report_seg_write_md(&rep, pm) != DG_STATUS_OK ||
                dg_report_seg_write_json(&rep, pj) != DG_STATUS_OK))
            rc = 1;
        dg_eval_print_seg(stdout, t, n);
        fflush(stdout);
        dg_free(pj);
        dg_free(pm);
        dg_eval_targets_free(t, n);
        return rc;
    }
    return write_curves(r);
}

static void run_free(run *r) {
    dg_loader_free(r->loader);
    dg_loader_free(r->refresh);
    dg_loader_free(r->val_refresh);
    if (r->has_tc) dg_train_closure_free(&r->tc);
    dg_method_free(r->method);
    if (r->has_model) dg_model_free(&r->m);
    if (r->has_ev) dg_model_free(&r->ev);
    for (int k = 0; k < 2; k++) {
        dg_free(r->hist[k].step);
        dg_free(r->hist[k].val);
        dg_free(r->hist[k].test);
    }
    dg_train_data_free(&r->data);
    dg_metrics_close(&r->metrics);
    dg_free(r->dir);
}


/* One run in dir; test_domain is the held-out classification domain (-1
 * for segmentation). Classification fills result[0] and, for a method with
 * a second model (MESA), result[1] and *second (its label, static).
 * Returns the exit code. */
static int run_one(const dg_config *cfg, const char *dir, int test_domain, dg_dataset_spec *cls,
        dg_cls_run result[2], const char **second) {
    run r;
    memset(&r, 0, sizeof(r));
    r.cfg = cfg;
    r.dir = dg_xstrdup(dir);
    r.best_score = NAN;
    char *sub = dg_xasprintf("%s/checkpoints", dir);
    int rc = dg_make_dirs(sub) != DG_STATUS_OK;
    dg_free(sub);
    if (rc == 0) { /* what a kill -9 during a write left */
        char *paths[] = {ckpt_path(&r), best_path(&r), dg_path_join(dir, "metrics.jsonl"),
                dg_path_join(dir, "curves.png"), dg_path_join(dir, "results.md"),
                dg_path_join(dir, "results.json")};
        for (size_t i = 0; i < DG_ARRAY_LEN(paths); i++) {
            dg_file_remove_stale_temporaries(paths[i]);
            dg_free(paths[i]);
        }
    }
    dg_status st = DG_STATUS_OK;
    if (rc == 0) {
        dg_ctx_init(&r.ctx);
        st = dg_train_data_open(&r.data, cfg, cls, test_domain, true);
        if (st == DG_STATUS_OK) st = make_model(&r);
        if (st == DG_STATUS_OK) st = make_method(&r);
        if (st == DG_STATUS_OK && cfg->task == DG_TASK_CLASSIFICATION) st = make_cls_evaluator(&r);
        long refresh = 0;
        if (st == DG_STATUS_OK && cfg->resume) {
            char *path = ckpt_path(&r);
            struct stat sb;
            const bool exists = lstat(path, &sb) == 0, have = dg_is_file(path);
            if (have) {
                st = load_checkpoint(&r, &r.start_step, &refresh);
            } else if (exists) { /* a folder, a dangling link, a FIFO ... */
                dg_log_error("%s: is not a regular file; cannot resume from it (move it away "
                             "to start the run from step 0)", path);
                st = DG_STATUS_ERR_IO;
            } else {
                dg_log_warn("%s: no checkpoint yet; starting from step 0", dir);
            }
            dg_free(path);
            r.tc.refresh_batches = refresh;
        }
        /* the trainer's loader (train.seed, from the resumed step) and the BN
         * refresh's (its own streams, seed train.seed + 1, after the batches
         * already drawn) */
        if (st == DG_STATUS_OK)
            st = dg_train_data_loader(&r.data, true, (uint64_t)cfg->seed, r.start_step, &r.loader);
        if (st == DG_STATUS_OK)
            st = dg_train_data_loader(&r.data, false, (uint64_t)cfg->seed + 1, refresh, &r.refresh);
        if (st == DG_STATUS_OK) {
            char *mp = dg_xasprintf("%s/metrics.jsonl", dir);
            st = dg_metrics_open(&r.metrics, mp, r.start_step > 0, r.start_step);
            dg_free(mp);
            if (st == DG_STATUS_OK && r.start_step > 0) restore_evals(&r);
        }
        if (st == DG_STATUS_OK && cfg->task == DG_TASK_SEGMENTATION && cfg->eval_every > 0 &&
                cfg->val_on == DG_VALIDATE_TARGETS)
            dg_log_warn("eval.validate = targets: best.safetensors is chosen on the target "
                        "domains (oracle selection, not domain generalization)");
        if (st == DG_STATUS_OK) {
            char *res = dg_xasprintf("%s/results.json", dir);
            /* a finished run (its final checkpoint and, segmentation, its
             * results) is complete: resuming it changes nothing */
            const bool complete = r.finished &&
                    (cfg->task == DG_TASK_CLASSIFICATION || dg_is_file(res));
            dg_free(res);
            if (complete)
                dg_log_info("%s: the run is complete (final checkpoint of step %ld%s); nothing "
                            "to do", dir, r.start_step,
                        cfg->task == DG_TASK_SEGMENTATION ? ", results.json" : "");
            else if (r.finished)
                dg_log_info("%s: the run is finished (step %ld); writing its results", dir,
                        r.start_step);
            else
                dg_log_info("training %s with %s (%s base) for %ld steps from step %ld; run "
                            "folder %s", cfg->model, cfg->method, cfg->base, cfg->iterations,
                        r.start_step, dir);
            rc = train_loop(&r);
            if (rc == 0 && !complete) rc = final_reports(&r);
            if (rc == 0 && result) {
                result[0] = r.result[0];
                result[1] = r.result[1];
                *second = r.second_label;
            }
        } else {
            rc = dg_cli_exit_code(st);
        }
        run_free(&r);
        dg_ctx_free(&r.ctx);
    } else {
        dg_free(r.dir);
    }
    return rc;
}

/* ---- command --------------------------------------------------------------- */

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: dgseg train CONFIG [section.key=value ...] [--resume]\n"
            "\n"
            "Trains the model CONFIG describes: segmentation (data.sources) or leave-one-domain-\n"
            "out classification over every data.test_domains entry (data.dataset). The run\n"
            "folder (output.dir, default runs/<config-name>-<timestamp>) gets config.ini,\n"
            "metrics.jsonl and checkpoints/last.safetensors. --resume (train.resume=true)\n"
            "continues from the last checkpoint exactly; SIGINT/SIGTERM write a checkpoint\n"
            "and stop. Exit codes: 0 done, 1 runtime failure, 2 usage or configuration error.\n");
}

/* The newest runs/<name>-<timestamp> folder holding a checkpoint (the
 * timestamps sort by name), or NULL. */
static char *latest_run(const char *name) {
    DIR *d = opendir("runs");
    if (!d) return NULL;
    char *prefix = dg_xasprintf("%s-", name), *best = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix))) continue;
        char *ck = dg_xasprintf("runs/%s/checkpoints/last.safetensors", e->d_name);
        if (dg_is_file(ck) && (!best || strcmp(e->d_name, best) > 0)) {
            dg_free(best);
            best = dg_xstrdup(e->d_name);
        }
        dg_free(ck);
    }
    closedir(d);
    dg_free(prefix);
    char *dir = best ? dg_xasprintf("runs/%s", best) : NULL;
    dg_free(best);
    return dir;
}

int dg_train_main(int argc, char **argv) {
    const char *config = NULL;
    bool resume = false;
    char **over = dg_xcalloc((size_t)argc + 1, sizeof(*over));
    int n_over = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            train_usage(stdout);
            dg_free(over);
            return 0;
        }
        if (!strcmp(argv[i], "--resume")) resume = true;
        else if (strchr(argv[i], '=')) over[n_over++] = argv[i];
        else if (!config && argv[i][0] != '-') config = argv[i];
        else {
            fprintf(stderr, "dgseg train: unexpected argument '%s'\n", argv[i]);
            train_usage(stderr);
            dg_free(over);
            return 2;
        }
    }
    if (!config) {
        train_usage(stderr);
        dg_free(over);
        return 2;
    }
    if (resume) over[n_over++] = "train.resume=true";
    dg_config cfg;
    int crc = dg_config_load_checked(&cfg, config, n_over, over);
    dg_free(over);
    if (crc) return crc;
    /* before the run folder exists: what this CPU cannot run is a
     * configuration error, not an abort half-way into building the model */
    {
        char what[512];
        snprintf(what, sizeof(what), "%s: train.dtype = bf16", cfg.path);
        if (dg_caps_check(dg_caps_get(), cfg.dtype == DG_DTYPE_BF16, what) != DG_STATUS_OK) {
            dg_config_free(&cfg);
            return 2;
        }
    }
    if (cfg.threads) omp_set_num_threads((int)cfg.threads);
    char *dir = NULL;
    if (cfg.out_dir[0]) {
        dir = dg_xstrdup(cfg.out_dir);
    } else if (cfg.resume) {
        dir = latest_run(cfg.name);
        if (!dir) {
            dg_log_error("train.resume: no runs/%s-* folder with a checkpoint; set output.dir to "
                         "the run folder to resume", cfg.name);
            dg_config_free(&cfg);
            return 2;
        }
    } else {
        char stamp[32];
        time_t now = time(NULL);
        struct tm tmv;
        localtime_r(&now, &tmv);
        strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tmv);
        dir = dg_xasprintf("runs/%s-%s", cfg.name, stamp);
    }
    int rc = dg_make_dirs(dir) != DG_STATUS_OK;
    int lock = -1; /* one run at a time in a folder */
    if (rc == 0 && dg_folder_lock(dir, "run folder", &lock) != DG_STATUS_OK) rc = 1;
    if (rc == 0) {
        char *text = dg_config_text(&cfg, false);
        char *path = dg_xasprintf("%s/config.ini", dir);
        dg_file_remove_stale_temporaries(path); /* a kill -9 while it was written */
        const dg_file_part part = {text, strlen(text)};
        if (dg_file_write_atomic(path, &part, 1) != DG_STATUS_OK) rc = 1;
        dg_free(path);
        dg_free(text);
    }
    dg_cli_stop_signals old_sig;
    dg_cli_stop_signals_catch(&old_sig, on_signal);
    interrupted = 0;
    if (rc == 0 && cfg.task == DG_TASK_SEGMENTATION) {
        rc = run_one(&cfg, dir, -1, NULL, NULL, NULL);
    } else if (rc == 0) {
        dg_dataset_spec *specs = NULL;
        int n = 0;
        dg_status st = dg_dataset_specs_parse("data.dataset", cfg.dataset, &specs, &n);
        if (st != DG_STATUS_OK || n != 1) {
            if (st == DG_STATUS_OK) dg_log_error("data.dataset: name exactly one dataset");
            rc = 2;
        }
        /* domain names: opened once here to resolve data.test_domains */
        char **names = NULL;
        int n_names = 0;
        dg_domainbed db;
        memset(&db, 0, sizeof(db));
        if (rc == 0 && !strcmp(specs[0].reader, "domainbed")) {
            if (dg_domainbed_open(specs[0].root, &db) != DG_STATUS_OK) rc = 1;
            n_names = db.n_domains;
            names = dg_xcalloc((size_t)n_names + 1, sizeof(*names));
            for (int d = 0; d < n_names; d++) names[d] = db.domains[d].name;
        } else if (rc == 0) {
            n_names = DG_RFMNIST_DOMAINS;
            names = dg_xcalloc((size_t)n_names, sizeof(*names));
            for (int d = 0; d < n_names; d++) {
                char rot[16];
                dg_rotated_fmnist_domain_name(d, rot, sizeof(rot));
                names[d] = dg_xstrdup(rot);
            }
        }
        dg_strvec toks = {0};
        dg_split_list(cfg.test_domains, &toks);
        int runs = 0;
        dg_cls_run *cls_runs = NULL, *cls_runs2 = NULL; /* the second model's (MESA) */
        const char *second = NULL;
        char **cls_names = NULL;
        for (size_t ti = 0; rc == 0 && ti < toks.n; ti++) {
            const char *tok = toks.v[ti];
            int d = dg_train_data_find_domain(tok, names, n_names);
            if (d < 0) {
                dg_log_error("data.test_domains: unknown domain '%s'", tok);
                rc = 2;
                break;
            }
            char *sub = dg_xasprintf("%s/test-%s", dir, names[d]);
            cls_runs = dg_xrealloc(cls_runs, (size_t)(runs + 1) * sizeof(*cls_runs));
            cls_runs2 = dg_xrealloc(cls_runs2, (size_t)(runs + 1) * sizeof(*cls_runs2));
            cls_names = dg_xrealloc(cls_names, (size_t)(runs + 1) * sizeof(*cls_names));
            dg_cls_run res[2];
            memset(res, 0, sizeof(res));
            rc = run_one(&cfg, sub, d, &specs[0], res, &second);
            cls_runs[runs] = res[0];
            cls_runs2[runs] = res[1];
            cls_names[runs] = names[d];
            for (int k = 0; k < 2; k++) {
                dg_cls_run *c = k ? &cls_runs2[runs] : &cls_runs[runs];
                c->test_domain = names[d];
                c->trial = cfg.seed;
            }
            dg_free(sub);
            runs++;
        }
        if (rc == 0 && runs == 0) {
            dg_log_error("data.test_domains: name at least one test domain");
            rc = 2;
        }
        if (rc == 0 && cfg.eval_every > 0) {
            dg_report_settings set;
            memset(&set, 0, sizeof(set));
            dg_report_settings_from_config(&set, &cfg);
            char *label2 = second ? dg_xasprintf("%s %s", cfg.method, second) : NULL;
            dg_cls_report rep2 = {.method = label2, .runs = cls_runs2, .n_runs = runs};
            dg_cls_report rep[2] = {{.method = cfg.method, .dataset = cfg.dataset,
                    .domains = (const char *const *)cls_names, .n_domains = runs, .run = &set,
                    .runs = cls_runs, .n_runs = runs, .second = second ? &rep2 : NULL}, rep2};
            char *pj = dg_xasprintf("%s/results.json", dir), *pm = dg_xasprintf("%s/results.md", dir);
            if (dg_report_cls_write_json(rep, pj) != DG_STATUS_OK ||
                    dg_report_cls_write_md(rep, pm) != DG_STATUS_OK)
                rc = 1;
            char *table = dg_report_cls_table(rep, second ? 2 : 1, DG_CLS_PICK_SELECTED);
            printf("\ntest-domain accuracy (%%) at the step chosen by training-domain validation:\n"
                   "%s\n", table);
            dg_free(table);
            dg_free(pj);
            dg_free(pm);
            dg_free(label2);
        }
        dg_free(cls_runs);
        dg_free(cls_runs2);
        dg_free(cls_names);
        dg_strvec_free(&toks);
        if (!db.domains && names)
            for (int d = 0; d < n_names; d++) dg_free(names[d]);
        dg_free(names);
        dg_domainbed_free(&db);
        dg_dataset_specs_free(specs, n);
    }
    dg_cli_stop_signals_restore(&old_sig);
    dg_folder_unlock(lock);
    dg_free(dir);
    dg_config_free(&cfg);
    return rc;
}
