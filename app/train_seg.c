/* app/train_seg.c -- see train_seg.h. Sources with §7.4 augmentation and
 * class-uniform sampling (docs/datasets.md §7.3, §7.4) come from
 * app/train_data.c, the loop from app/trainer.c; this file adds what
 * segmentation evaluates: validation mIoU and best.safetensors, SWAD's
 * source validation loss (docs/algorithms.md §6), the targets' mIoU at the end
 * (docs/datasets.md §7.5). */
#define _POSIX_C_SOURCE 200809L
#include "app/train_seg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "app/evaluate.h"
#include "app/cli.h"
#include "app/trainer.h"
#include "data/fsutil.h"

/* The segmentation trainer's state beside the loop's. */
typedef struct seg_run {
    double best_score;             /* best validation mIoU so far (NaN: none) */
    long best_step;
    dg_loader *val_refresh;        /* during validate only (slow_weight_stats) */
} seg_run;

static seg_run *seg_of(dg_trainer *t) { return t->task_ctx; }

static bool is_swad(const dg_config *cfg) { return !strcmp(cfg->method, "swad"); }

/* SWAD's evaluation points (docs/algorithms.md §6): after the first update,
 * every `every` updates from there and after the last. */
static bool swad_point(long done, long every, long T) {
    return every > 0 && ((done - 1) % every == 0 || done == T);
}

/* ---- resume ---------------------------------------------------------------- */

static void restore(dg_trainer *t, const dg_metrics_data *md) {
    seg_run *s = seg_of(t);
    const dg_series *m = dg_metrics_find(md, "eval", "val_miou");
    for (int i = 0; m && i < m->n; i++)
        if (isfinite(m->value[i]) && !(m->value[i] <= s->best_score)) {
            s->best_score = m->value[i];
            s->best_step = (long)m->step[i];
        }
}

/* ---- SWAD's source validation loss ----------------------------------------- */

/* The source validation loss of SWAD (docs/algorithms.md §6): mean CE over the
 * valid pixels of the first optim.swad_val_images images of every source's
 * validation split (data.source_val_split), averaged over the sources; live
 * weights, eval mode. NaN when it cannot be had. */
static double source_val_loss(dg_trainer *t) {
    const dg_config *cfg = t->cfg;
    dg_eval_targets ev = {0};
    dg_status st = dg_eval_seg_list(cfg, &t->ctx, &t->m.ps, t->m.ps.data, t->m.ps.stats, "live",
            "data.sources", cfg->sources, cfg->source_val_split, cfg->optim.swad_val_images, &ev);
    double sum = 0;
    const int n = ev.n;
    for (int i = 0; i < n; i++) sum += ev.v[i].ce;
    dg_eval_targets_free(&ev);
    return st == DG_STATUS_OK && n ? sum / n : NAN;
}

static bool evaluate(dg_trainer *t, long done, bool *stop) {
    const dg_config *cfg = t->cfg;
    if (!is_swad(cfg) || !swad_point(done, cfg->optim.swad_eval_every, cfg->iterations))
        return true;
    const double l = source_val_loss(t);
    if (!isfinite(l)) {
        dg_progress_break(&t->progress);
        dg_log_error("step %ld: SWAD's source validation loss could not be computed (the "
                     "sources' val splits, optim.swad_val_images)", done);
        return false;
    }
    dg_metric ml[1] = {{"loss", l}};
    dg_metrics_log(&t->metrics, "val_loss", done, ml, 1);
    *stop = dg_method_on_eval(t->method, done - 1, l);
    return true;
}

/* ---- validation ------------------------------------------------------------ */

static dg_status next_val_refresh_batch(void *ctx, dg_model *m) {
    const dg_batch *b;
    dg_status st = dg_loader_next(seg_of(ctx)->val_refresh, &b);
    if (st != DG_STATUS_OK) return st;
    const size_t nx = (size_t)b->n * (size_t)b->c * (size_t)b->h * (size_t)b->w;
    memcpy(dg_mem_ptr(m->src), b->x, nx * sizeof(float));
    return DG_STATUS_OK;
}

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
static float *slow_weight_stats(dg_trainer *t, const float *P, const float *Q) {
    const dg_config *cfg = t->cfg;
    seg_run *s = seg_of(t);
    dg_param_set *ps = &t->m.ps;
    if (strncmp(cfg->method, "lookahead", 9) || t->finished || ps->n_stats == 0 ||
            cfg->freeze_bn || !cfg->optim.la_bn_refresh || P == ps->data || Q != ps->stats ||
            !t->tc.cl.bn_refresh)
        return NULL;
    if (dg_train_data_loader(&t->data, false, (uint64_t)cfg->seed + 2, 0, &s->val_refresh) !=
            DG_STATUS_OK)
        return NULL;
    const size_t bytes = ps->n_stats * sizeof(float);
    float *live = dg_xmalloc(bytes), *q = dg_xmalloc(bytes);
    memcpy(live, ps->stats, bytes);
    dg_refresh_batch_fn fn = t->tc.refresh_batch;
    const long drawn = t->tc.refresh_batches;
    t->tc.refresh_batch = next_val_refresh_batch;
    t->tc.cl.bn_refresh(t->tc.cl.ctx, P, 2 * cfg->optim.la_k, DG_BN_REFRESH_CUMULATIVE);
    memcpy(q, ps->stats, bytes);
    memcpy(ps->stats, live, bytes);
    t->tc.refresh_batch = fn;
    t->tc.refresh_batches = drawn;
    dg_loader_free(s->val_refresh);
    s->val_refresh = NULL;
    dg_free(live);
    return q;
}

/* Validation: mIoU of the method's evaluated weights on the first
 * eval.val_images images of the sources' validation splits and/or the
 * targets (eval.validate); the score is the mean over the source sets (the
 * targets' when only they are validated). A better score writes
 * checkpoints/best.safetensors. */
static dg_status validate_at(dg_trainer *t, long step) {
    const dg_config *cfg = t->cfg;
    seg_run *s = seg_of(t);
    const float *P, *Q;
    dg_method_eval_weights(t->method, &t->m.ps, &P, &Q);
    float *own = slow_weight_stats(t, P, Q);
    if (own) Q = own;
    dg_eval_targets ev = {0};
    dg_status st = DG_STATUS_OK;
    if (cfg->val_on != DG_VALIDATE_TARGETS)
        st = dg_eval_seg_list(cfg, &t->ctx, &t->m.ps, P, Q, "evaluated", "data.sources",
                cfg->sources, cfg->source_val_split, cfg->val_images, &ev);
    const int n_src = ev.n;
    if (st == DG_STATUS_OK && cfg->val_on != DG_VALIDATE_SOURCE && cfg->targets[0])
        st = dg_eval_seg_list(cfg, &t->ctx, &t->m.ps, P, Q, "evaluated", "data.targets",
                cfg->targets, NULL, cfg->val_images, &ev);
    const int n = ev.n, n_score = n_src ? n_src : n;
    dg_metric *mv = dg_xcalloc((size_t)n + 1, sizeof(*mv));
    char(*names)[64] = dg_xcalloc((size_t)n + 1, sizeof(*names));
    /* the score averages the sets that have an mIoU: a validation set with
     * no valid label pixel (NaN, said in its evaluation's warning) must not
     * make every score NaN and `best` never chosen */
    double score = 0;
    int m = 0, n_scored = 0;
    for (int i = 0; i < n; i++) {
        const dg_eval_target *e = &ev.v[i];
        if (i < n_score && isfinite(e->res.miou)) {
            score += e->res.miou;
            n_scored++;
        }
        snprintf(names[i], sizeof(names[i]), "%s_miou", e->name);
        for (char *c = names[i]; *c; c++)
            if (*c == ' ') *c = '_';
        mv[m++] = (dg_metric){names[i], e->res.miou};
    }
    score = n_scored ? score / n_scored : NAN;
    if (st == DG_STATUS_OK && n) {
        mv[m++] = (dg_metric){"val_miou", score};
        dg_metrics_log(&t->metrics, "eval", step, mv, m);
        dg_progress_break(&t->progress);
        char line[512];
        size_t off = 0;
        for (int i = 0; i < n && off < sizeof(line); i++)
            off += (size_t)snprintf(line + off, sizeof(line) - off, "%s%s %.2f", i ? ", " : "",
                    ev.v[i].name, 100 * ev.v[i].res.miou);
        dg_log_info("step %ld: validation mIoU %s (score %.2f)", step, line, 100 * score);
        const bool better = isfinite(score) && !(score <= s->best_score);
        if (better) {
            s->best_score = score;
            s->best_step = step;
        }
        if (better && t->writer) {
            char *bp = dg_trainer_path(t, "checkpoints/best.safetensors");
            const dg_ckpt_run_info info = dg_trainer_run_info(t);
            st = dg_ckpt_save_weights(bp, &info, step, &t->m.ps, P, Q, "best", score);
            dg_free(bp);
        }
    }
    dg_eval_targets_free(&ev);
    dg_free(mv);
    dg_free(names);
    dg_free(own);
    return st;
}

/* Every train.eval_every steps. */
static bool validate(dg_trainer *t, long done) {
    const long every = t->cfg->eval_every;
    if (every <= 0 || done % every != 0 || validate_at(t, done) == DG_STATUS_OK) return true;
    dg_log_error("step %ld: validation failed", done);
    return false;
}

/* The model the results report (Lookahead's slow weights with their final
 * refresh, SWAD's average), validated as the targets' evaluation sees it;
 * not after an early stop. */
static bool finished(dg_trainer *t, long last) {
    const dg_config *cfg = t->cfg;
    if (cfg->eval_every <= 0 || last != cfg->iterations || validate_at(t, last) == DG_STATUS_OK)
        return true;
    dg_log_error("step %ld: validation failed", last);
    return false;
}

/* ---- after training -------------------------------------------------------- */

/* Every target with the method's evaluated weights (and its second model,
 * MESA's teacher), then curves.png, results.md and, last, results.json: a
 * run with results.json is complete, so a run stopped before it (kill -9,
 * a full disk) writes all three again when resumed. Without targets, the
 * curves only. Returns the exit code. */
static int final_reports(dg_trainer *t) {
    const dg_config *cfg = t->cfg;
    if (!cfg->targets[0]) return dg_trainer_write_curves(t);
    dg_eval_targets ev = {0};
    int rc = 0;
    const float *P, *Q;
    dg_method_eval_weights(t->method, &t->m.ps, &P, &Q);
    dg_log_info("evaluating on %s", cfg->targets);
    dg_status st = dg_eval_seg_targets(cfg, &t->ctx, &t->m.ps, P, Q, cfg->method, &ev);
    const char *label2;
    if (st == DG_STATUS_OK && dg_method_second_weights(t->method, &label2, &P, &Q))
        st = dg_eval_seg_targets(cfg, &t->ctx, &t->m.ps, P, Q, label2, &ev);
    if (st != DG_STATUS_OK) rc = 1;
    if (dg_trainer_interrupted(2)) {
        dg_log_error("interrupted during the final evaluation; no results written; the final "
                     "checkpoint is intact: train.resume=true evaluates again");
        dg_eval_targets_free(&ev);
        return 1;
    }
    if (rc == 0) rc = dg_trainer_write_curves(t);
    dg_report_settings set;
    memset(&set, 0, sizeof(set));
    dg_report_settings_from_config(&set, cfg);
    const int n = ev.n;
    dg_seg_result *res = dg_eval_targets_results(&ev);
    dg_seg_report rep = {.method = cfg->method, .run = &set, .results = res, .n_results = n};
    char *pj = dg_trainer_path(t, "results.json"), *pm = dg_trainer_path(t, "results.md");
    if (rc == 0 && n && t->writer && (dg_report_seg_write_md(&rep, pm) != DG_STATUS_OK ||
            dg_report_seg_write_json(&rep, pj) != DG_STATUS_OK))
        rc = 1;
    dg_eval_print_seg(stdout, ev.v, n);
    fflush(stdout);
    dg_free(pj);
    dg_free(pm);
    dg_free(res);
    dg_eval_targets_free(&ev);
    return rc;
}

/* ---- the trainer ----------------------------------------------------------- */

static const dg_trainer_task seg_task = {
    .restore = restore,
    .evaluate = evaluate,
    .validate = validate,
    .finished = finished,
};

int dg_train_seg(const dg_config *cfg, const char *dir) {
    seg_run s = {.best_score = NAN};
    dg_trainer t;
    dg_status st = dg_trainer_open(&t, cfg, dir, NULL, -1, &seg_task, &s);
    int rc = dg_cli_exit_code(st);
    if (st == DG_STATUS_OK) {
        if (cfg->eval_every > 0 && cfg->val_on == DG_VALIDATE_TARGETS)
            dg_log_warn("eval.validate = targets: best.safetensors is chosen on the target "
                        "domains (oracle selection, not domain generalization)");
        /* a finished run with its results is complete: resuming it changes
         * nothing */
        char *res = dg_trainer_path(&t, "results.json");
        const bool complete = dg_trainer_complete(&t, dg_is_file(res));
        dg_free(res);
        rc = dg_trainer_run(&t, complete);
        if (rc == 0 && !complete) rc = final_reports(&t);
    }
    dg_loader_free(s.val_refresh);
    dg_trainer_close(&t);
    return rc;
}
