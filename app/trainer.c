/* app/trainer.c -- see trainer.h. */
#define _POSIX_C_SOURCE 200809L
#include "app/trainer.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/cli.h"
#include "app/dist.h"
#include "app/plot.h"
#include "data/fsutil.h"

long dg_train_interrupt_after = -1;
int dg_train_interrupt_phase = 0;

static volatile sig_atomic_t interrupted;

void dg_trainer_on_signal(int sig) { interrupted = sig; }
void dg_trainer_interrupt_clear(void) { interrupted = 0; }

bool dg_trainer_interrupted(int phase) {
    if (phase && dg_train_interrupt_phase == phase) interrupted = SIGTERM;
    return interrupted != 0;
}

char *dg_trainer_path(const dg_trainer *t, const char *rel) {
    return dg_xasprintf("%s/%s", t->dir, rel);
}

static char *ckpt_path(const dg_trainer *t) {
    return dg_trainer_path(t, "checkpoints/last.safetensors");
}

dg_ckpt_run_info dg_trainer_run_info(const dg_trainer *t) {
    return (dg_ckpt_run_info){
        .cfg = t->cfg,
        .classes = t->data.n_classes,
        .aux = t->m.aux_logits != NULL,
        .test_domain = t->test_domain[0] ? t->test_domain : NULL,
        .bn_refresh_batches = t->tc.refresh_batches,
        .finished = t->finished,
        .log_loss_sum = t->log_loss_sum,
        .log_loss_steps = t->log_loss_steps,
    };
}

/* ---- data ------------------------------------------------------------------ */

static dg_status next_refresh_batch(void *ctx, dg_model *m) {
    const dg_batch *b;
    dg_status st = dg_loader_next(((dg_trainer *)ctx)->refresh, &b);
    if (st != DG_STATUS_OK) return st;
    const size_t nx = (size_t)b->n * (size_t)b->c * (size_t)b->h * (size_t)b->w;
    memcpy(dg_mem_ptr(m->src), b->x, nx * sizeof(float));
    return DG_STATUS_OK;
}

/* ---- model and method ------------------------------------------------------ */

static dg_status make_model(dg_trainer *t) {
    const dg_config *cfg = t->cfg;
    const bool seg = cfg->task == DG_TASK_SEGMENTATION;
    /* ASPP's image-pooling BN sees one value per channel and image: training
     * mode needs two images per forward (PyTorch raises the same error). */
    const int ranks = dg_dist_size();
    const bool alone = ranks > 1 && !cfg->sync_bn; /* each rank's statistics its own */
    const long per_forward = (!strcmp(cfg->method, "dgsam") ? cfg->batch_size
                                                            : cfg->batch_size * t->data.S) /
            (alone ? ranks : 1);
    if (seg && !cfg->freeze_bn && per_forward < 2) {
        char each[96] = "";
        if (alone)
            snprintf(each, sizeof(each), ", here on each of the %d ranks (model.sync_bn = false)",
                    ranks);
        dg_log_error("train.batch_size = %ld: DeepLabv3+ needs at least 2 images per forward "
                     "pass in training (%s)%s; raise train.batch_size or set model.freeze_bn = "
                     "true", cfg->batch_size, !strcmp(cfg->method, "dgsam")
                        ? "DGSAM runs one forward per source domain"
                        : "the ASPP image-pooling BatchNorm sees one value per channel and image",
                each);
        return DG_STATUS_ERR_CONFIG;
    }
    dg_model_opts mo = {
        .batch = cfg->batch_size / dg_dist_size() * t->data.S, /* this rank's share */
        .training = true,
        .output_stride = (int)cfg->output_stride,
        .aux = seg && cfg->aux,
        .aux_dropout = 0.1f,
        .freeze_bn = cfg->freeze_bn,
        .dropout = (float)cfg->dropout,
        .winograd = cfg->winograd,
        .bf16 = cfg->dtype == DG_DTYPE_BF16,
    };
    dg_train_data_model_geometry(&t->data, &mo);
    char sizes[160]; /* named in the out-of-memory error, the one message */
    if (seg)
        snprintf(sizes, sizeof(sizes), "train.batch_size = %ld (per source) or data.crop_size = "
                "%ld (%s)", cfg->batch_size, cfg->crop_size, cfg->path);
    else
        snprintf(sizes, sizeof(sizes), "train.batch_size = %ld (per training domain, %s)",
                cfg->batch_size, cfg->path);
    mo.sizes_from = sizes;
    dg_status st = dg_model_create(&t->m, &t->ctx, cfg->model, &mo, (uint64_t)cfg->seed);
    if (st != DG_STATUS_OK) return st;
    t->has_model = true;
    if (cfg->pretrained[0]) st = dg_model_load_pretrained(&t->m, cfg->pretrained);
    return st;
}

static dg_status make_method(dg_trainer *t) {
    const dg_config *cfg = t->cfg;
    dg_method_cfg mc = cfg->optim;
    int64_t ld[4];
    dg_mem_dims4(t->m.logits, ld);
    mc.n_samples = 0;
    for (int k = 0; k < t->data.S; k++)
        mc.n_samples += cfg->task == DG_TASK_SEGMENTATION
                ? (long)t->data.seg[k].n
                : (long)t->data.split[t->data.train_domain[k]].n_in;
    mc.n_classes = t->data.n_classes;
    mc.logits_numel = (size_t)(ld[0] * ld[1] * ld[2] * ld[3]);
    mc.segmentation = cfg->task == DG_TASK_SEGMENTATION;
    dg_status st = dg_method_create(cfg->method, cfg->base, &mc, &t->m.ps, (uint64_t)cfg->seed,
            &t->method);
    if (st != DG_STATUS_OK) return st;
    st = dg_sched_parse(cfg->schedule, &t->sched.kind);
    t->sched.lr = cfg->lr;
    t->sched.lr_min = cfg->lr_min;
    t->sched.power = cfg->poly_power;
    t->sched.total = cfg->iterations;
    t->sched.warmup = cfg->warmup_steps;
    if (st != DG_STATUS_OK) return st;
    const bool sub = !strcmp(cfg->method, "dgsam") && t->data.S > 1;
    st = dg_train_closure_init(&t->tc, &t->ctx, &t->m, t->data.S, sub,
            t->m.aux_logits ? (float)cfg->aux_weight : 0.f);
    if (st != DG_STATUS_OK) return st;
    t->has_tc = true;
    t->tc.method = t->method;
    t->tc.refresh_batch = next_refresh_batch;
    t->tc.refresh_ctx = t;
    dg_train_closure_replicas(&t->tc, cfg->sync_bn);
    return DG_STATUS_OK;
}

/* ---- checkpoints ----------------------------------------------------------- */

static dg_status save_checkpoint(dg_trainer *t, long step) {
    if (!t->writer) return DG_STATUS_OK;
    char *path = ckpt_path(t);
    const dg_ckpt_run_info info = dg_trainer_run_info(t);
    dg_status st = dg_ckpt_save_run(path, &info, step, &t->m.ps, t->method);
    dg_free(path);
    return st;
}

/* Restores the run's last checkpoint; *refresh gets its BN-refresh count. */
static dg_status load_checkpoint(dg_trainer *t, long *step, long *refresh) {
    char *path = ckpt_path(t);
    dg_ckpt_resumed res;
    dg_status st = dg_ckpt_resume(path, t->cfg, &t->m.ps, t->method, &res);
    dg_free(path);
    t->finished = res.finished;
    if (res.stopped_at) t->stopped_at = res.stopped_at;
    t->log_loss_sum = res.log_loss_sum;
    t->log_loss_steps = res.log_loss_steps;
    *step = res.step;
    *refresh = res.bn_refresh_batches;
    return st;
}

static bool has_checkpoint(const dg_trainer *t) {
    char *path = ckpt_path(t);
    const bool have = dg_is_file(path);
    dg_free(path);
    return have;
}

/* "the last checkpoint, step S, is intact" or "no checkpoint was written
 * yet", for messages. */
static void ckpt_note(const dg_trainer *t, long last_ckpt, char *buf, size_t size) {
    if (has_checkpoint(t))
        snprintf(buf, size, "the last checkpoint, step %ld, is intact", last_ckpt);
    else
        snprintf(buf, size, "no checkpoint was written yet");
}

/* The run's checkpoint when train.resume is set: loaded when it is there
 * (a folder, a dangling link or a FIFO in its place is an error), a
 * warning when there is none yet. *refresh: its BN-refresh count. */
static dg_status resume(dg_trainer *t, long *refresh) {
    char *path = ckpt_path(t);
    struct stat sb;
    const bool exists = lstat(path, &sb) == 0, have = dg_is_file(path);
    dg_status st = DG_STATUS_OK;
    if (have) {
        st = load_checkpoint(t, &t->start_step, refresh);
    } else if (exists) {
        dg_log_error("%s: is not a regular file; cannot resume from it (move it away to start "
                     "the run from step 0)", path);
        st = DG_STATUS_ERR_IO;
    } else {
        dg_log_warn("%s: no checkpoint yet; starting from step 0", t->dir);
    }
    dg_free(path);
    t->tc.refresh_batches = *refresh;
    return st;
}

/* ---- opening --------------------------------------------------------------- */

/* What a kill -9 during a write left: the temporaries of every file the
 * run writes. */
static void remove_stale_temporaries(const dg_trainer *t) {
    static const char *const files[] = {"checkpoints/last.safetensors",
            "checkpoints/best.safetensors", "metrics.jsonl", "curves.png", "results.md",
            "results.json"};
    for (size_t i = 0; i < DG_ARRAY_LEN(files); i++) {
        char *p = dg_trainer_path(t, files[i]);
        dg_file_remove_stale_temporaries(p);
        dg_free(p);
    }
}

dg_status dg_trainer_open(dg_trainer *t, const dg_config *cfg, const char *dir,
        const dg_dataset_spec *cls, int test_domain, const dg_trainer_task *task,
        void *task_ctx) {
    memset(t, 0, sizeof(*t));
    t->cfg = cfg;
    t->dir = dg_xstrdup(dir);
    t->task = task;
    t->task_ctx = task_ctx;
    t->writer = dg_dist_is_root();
    dg_ctx_init(&t->ctx);
    dg_status st = DG_STATUS_OK;
    if (t->writer) {
        char *sub = dg_trainer_path(t, "checkpoints");
        st = dg_make_dirs(sub);
        dg_free(sub);
        if (st != DG_STATUS_OK) return st;
        remove_stale_temporaries(t);
    }
    st = dg_train_data_open(&t->data, cfg, cls, test_domain, true);
    t->data.shares = dg_dist_size();
    t->data.share = dg_dist_rank();
    if (st == DG_STATUS_OK && test_domain >= 0)
        dg_train_data_domain_name(&t->data, test_domain, t->test_domain, sizeof(t->test_domain));
    if (st == DG_STATUS_OK) st = make_model(t);
    if (st == DG_STATUS_OK) st = make_method(t);
    if (st == DG_STATUS_OK && task->prepare) st = task->prepare(t);
    long refresh = 0;
    if (st == DG_STATUS_OK && cfg->resume) st = resume(t, &refresh);
    /* the trainer's loader (train.seed, from the resumed step) and the BN
     * refresh's (its own streams, seed train.seed + 1, after the batches
     * already drawn) */
    if (st == DG_STATUS_OK)
        st = dg_train_data_loader(&t->data, true, (uint64_t)cfg->seed, t->start_step, &t->loader);
    if (st == DG_STATUS_OK)
        st = dg_train_data_loader(&t->data, false, (uint64_t)cfg->seed + 1, refresh, &t->refresh);
    if (st == DG_STATUS_OK && !t->writer) dg_metrics_open_discard(&t->metrics);
    if (st == DG_STATUS_OK && t->writer) {
        char *mp = dg_trainer_path(t, "metrics.jsonl");
        st = dg_metrics_open(&t->metrics, mp, t->start_step > 0, t->start_step);
        /* the evaluations before the checkpoint (metrics.jsonl is already
         * cut at the resumed step), so selection sees the whole run */
        dg_metrics_data md;
        if (st == DG_STATUS_OK && t->start_step > 0 && task->restore &&
                dg_metrics_read(&md, mp) == DG_STATUS_OK) {
            task->restore(t, &md);
            dg_metrics_data_free(&md);
        }
        dg_free(mp);
    }
    return st;
}

bool dg_trainer_complete(const dg_trainer *t, bool done) { return t->finished && done; }

void dg_trainer_close(dg_trainer *t) {
    dg_loader_free(t->loader);
    dg_loader_free(t->refresh);
    if (t->has_tc) dg_train_closure_free(&t->tc);
    dg_method_free(t->method);
    if (t->has_model) dg_model_free(&t->m);
    dg_train_data_free(&t->data);
    dg_metrics_close(&t->metrics);
    dg_ctx_free(&t->ctx);
    dg_free(t->dir);
    t->dir = NULL;
}

/* ---- the loop -------------------------------------------------------------- */

/* SIGINT/SIGTERM during the method's finish or the evaluations of the
 * finished model: the run stops without its final checkpoint (the one of
 * the last training step, or an earlier one, stays), so a resume finishes
 * again from the same state and ends with the same bytes. */
static int stopped_in_finish(dg_trainer *t, long last) {
    if (!has_checkpoint(t))
        dg_log_error("interrupted while finishing the run after step %ld (no checkpoint was "
                     "written yet); train.resume=true trains it again", last);
    else
        dg_log_error("interrupted while finishing the run after step %ld; the last checkpoint is "
                     "intact; continue with train.resume=true (the finish is redone from it)",
                last);
    return 1;
}

/* The metrics log could not be appended to (a full disk; the message
 * naming it is out): the run stops, the lines written so far are whole. */
static int stopped_by_metrics(dg_trainer *t, long done, long last_ckpt) {
    char note[96];
    dg_progress_break(&t->progress);
    ckpt_note(t, last_ckpt, note, sizeof(note));
    dg_log_error("training stopped after step %ld: the metrics log could not be written (%s)",
            done, note);
    return 1;
}

/* A non-finite loss at step `step` under train.nan_policy: stop, or roll
 * back to the last checkpoint and go on with the next batch. Returns false
 * when the run stops (logged). */
static bool nan_policy(dg_trainer *t, double loss, long step, long last_ckpt) {
    const dg_config *cfg = t->cfg;
    dg_progress_break(&t->progress);
    char note[96];
    ckpt_note(t, last_ckpt, note, sizeof(note));
    if (cfg->nan_policy == DG_NAN_STOP) {
        dg_log_error("non-finite loss (%g) at step %ld: training stopped (%s; "
                     "train.nan_policy = rollback restores the last checkpoint and "
                     "goes on)", loss, step, note);
        return false;
    }
    if (!has_checkpoint(t)) {
        dg_log_error("non-finite loss (%g) at step %ld: no checkpoint to roll back to "
                     "yet (train.nan_policy = rollback; the first is written at step "
                     "%ld, train.checkpoint_every)", loss, step, cfg->checkpoint_every);
        return false;
    }
    long s = 0, refresh = 0;
    dg_log_warn("non-finite loss (%g) at step %ld: rolling back to the checkpoint of "
                "step %ld and going on with the next batch", loss, step, last_ckpt);
    return load_checkpoint(t, &s, &refresh) == DG_STATUS_OK;
}

/* Data parallelism's invariant: every rank holds the same weights after
 * step `done` (the same summed gradient, the same update). Compared by
 * hash; a difference stops the run (a bug, or an MPI whose sums differ
 * between ranks). Returns false when it stops (logged). */
static bool ranks_agree(dg_trainer *t, long done) {
    if (dg_dist_size() == 1) return true;
    float *w = t->m.ps.data;
    if (dg_cli_fault_diverge(dg_dist_rank())) w[0] = nextafterf(w[0], INFINITY);
    uint64_t h, hs;
    const bool same_stats = dg_dist_same(t->m.ps.stats, t->m.ps.n_stats * sizeof(float), &hs);
    if (dg_dist_same(t->m.ps.data, t->m.ps.d * sizeof(float), &h) && same_stats) {
        if (done == t->cfg->iterations)
            dg_log_info("the %d ranks hold identical weights after step %ld (hash %016llx)",
                    dg_dist_size(), done, (unsigned long long)h);
        return true;
    }
    dg_progress_break(&t->progress);
    dg_log_error("step %ld: the ranks' %s differ (rank 0's hash %016llx); the data-parallel "
                 "run cannot go on", done, same_stats ? "weights" : "BatchNorm statistics",
            (unsigned long long)(same_stats ? h : hs));
    return false;
}

/* After the last step: the method's finish (Lookahead's final BN refresh,
 * SWAD's average), the task's evaluations of the finished model and the
 * final checkpoint. Returns the exit code. */
static int finish(dg_trainer *t, long last, long last_ckpt) {
    t->tc.refresh_progress = true; /* the final refresh: hundreds of batches */
    dg_method_finish(t->method, &t->m.ps, &t->tc.cl);
    t->tc.refresh_progress = false;
    t->finished = true;
    /* label values outside the sources' id range met in training, with
     * their count (nothing when the class-uniform scan already said it) */
    dg_train_data_warn_out_of_range(&t->data, "in training");
    if (dg_trainer_interrupted(1)) return stopped_in_finish(t, last);
    if (t->task->finished && !t->task->finished(t, last)) return 1;
    if (dg_trainer_interrupted(0)) return stopped_in_finish(t, last);
    if (t->metrics.failed) return stopped_by_metrics(t, last, last_ckpt);
    /* the final checkpoint: a resume from it only writes the results */
    return save_checkpoint(t, last) == DG_STATUS_OK ? 0 : 1;
}

static int train_loop(dg_trainer *t) {
    const dg_config *cfg = t->cfg;
    const dg_trainer_task *task = t->task;
    const long T = cfg->iterations;
    const int B = (int)(cfg->batch_size * t->data.S);
    double t_log = dg_now();
    long n_timed = 0, last_ckpt = t->start_step; /* steps since t_log, for img/s */
    dg_dist_comm comm_log = dg_dist_comm_total(); /* at t_log */
    dg_param_set *ps = &t->m.ps;
    dg_progress_init(&t->progress, stdout, dg_progress_is_tty(stdout), t->start_step, T,
            cfg->log_every, B);
    for (long s = t->start_step; s < T && !t->finished; s++) {
        const dg_batch *b;
        dg_status st = dg_loader_next(t->loader, &b);
        if (st != DG_STATUS_OK) {
            dg_progress_break(&t->progress);
            char note[96];
            ckpt_note(t, last_ckpt, note, sizeof(note));
            dg_log_error("training stopped at step %ld: a batch could not be loaded (%s)", s, note);
            return 1;
        }
        dg_train_closure_set_batch(&t->tc, b->x, b->label, b->sample_id, b->epoch, s);
        const long ts = dg_method_sched_step(t->method, s);
        const float lr = dg_sched_lr(&t->sched, ts);
        dg_method_step(t->method, ps, &t->tc.cl, lr);
        dg_cli_fault_point("step");
        const double loss = t->tc.first_loss; /* the global batch's, on every rank */
        if (!isfinite(loss)) {
            if (!nan_policy(t, loss, s, last_ckpt)) return 1;
            continue;
        }
        t->log_loss_sum += loss;
        t->log_loss_steps++;
        n_timed++;
        const long done = s + 1;
        dg_progress_update(&t->progress, done, loss, lr);
        if (done % cfg->log_every == 0 || done == T) {
            if (!ranks_agree(t, done)) return 1;
            double now = dg_now();
            dg_metrics_log_train(&t->metrics, done, t->log_loss_sum / (double)t->log_loss_steps,
                    lr, (double)B * (double)n_timed / (now - t_log));
            if (dg_dist_size() > 1) {
                /* rank 0's time in collectives, per step since the last line */
                const dg_dist_comm c = dg_dist_comm_total();
                const double secs = c.seconds - comm_log.seconds;
                const uint64_t nb = c.buckets - comm_log.buckets;
                const dg_metric mc[5] = {
                    {"s_per_step", secs / (double)n_timed},
                    {"exposed_s_per_step", (c.exposed - comm_log.exposed) / (double)n_timed},
                    {"fraction", secs / (now - t_log)},
                    {"mb_per_step", (double)(c.bytes - comm_log.bytes) / 1e6 / (double)n_timed},
                    {"early_buckets", nb ? (double)(c.early - comm_log.early) / (double)nb : 0},
                };
                dg_metrics_log(&t->metrics, "comm", done, mc, 5);
                comm_log = c;
            }
            t_log = now;
            n_timed = 0;
            t->log_loss_sum = 0;
            t->log_loss_steps = 0;
        }
        bool swad_stop = false;
        if (task->evaluate && !task->evaluate(t, done, &swad_stop)) return 1;
        if (t->metrics.failed) return stopped_by_metrics(t, done, last_ckpt);
        /* the last step's validation follows dg_method_finish */
        if (task->validate && done != T && !task->validate(t, done)) return 1;
        /* a signal reaches the ranks at different steps: all stop at the
         * first step after which any rank saw it */
        const bool stop = dg_dist_any(dg_trainer_interrupted(0) || dg_train_interrupt_after == s);
        if (done % cfg->checkpoint_every == 0 || stop) {
            dg_progress_break(&t->progress);
            if (save_checkpoint(t, done) != DG_STATUS_OK) {
                dg_log_error("step %ld: the checkpoint could not be written; the previous one "
                             "(step %ld) is intact", done, last_ckpt);
                return 1;
            }
            last_ckpt = done;
        }
        if (stop) {
            /* rank 0's checkpoint is whole before any rank ends the job;
             * every rank stops here, rank 0 says so for all */
            dg_dist_barrier();
            if (t->writer)
                dg_log_error("interrupted after step %ld; checkpoint saved; continue with "
                             "train.resume=true%s", done, dg_dist_size() > 1 ? " (under mpirun "
                             "with any number of ranks, or as one process)" : "");
            return 1;
        }
        if (swad_stop && cfg->optim.swad_early_stop) {
            dg_progress_break(&t->progress);
            dg_log_info("swad: the loss valley ended; training stops after step %ld "
                        "(optim.swad_early_stop)", done);
            t->stopped_at = done;
            break;
        }
    }
    dg_progress_break(&t->progress);
    const long last = t->stopped_at ? t->stopped_at : T;
    if (t->finished) {
        /* resumed from the final checkpoint: the model, its validation and
         * its evaluations are all there (metrics.jsonl up to `last` was
         * kept); only the results remain to be written */
        return task->resumed_finished && !task->resumed_finished(t, last) ? 1 : 0;
    }
    return finish(t, last, last_ckpt);
}

int dg_trainer_run(dg_trainer *t, bool complete) {
    const dg_config *cfg = t->cfg;
    if (complete)
        dg_log_info("%s: the run is complete (final checkpoint of step %ld%s); nothing to do",
                t->dir, t->start_step,
                cfg->task == DG_TASK_SEGMENTATION ? ", results.json" : "");
    else if (t->finished)
        dg_log_info("%s: the run is finished (step %ld); writing its results", t->dir,
                t->start_step);
    else
        dg_log_info("training %s with %s (%s base) for %ld steps from step %ld; run folder %s",
                cfg->model, cfg->method, cfg->base, cfg->iterations, t->start_step, t->dir);
    return train_loop(t);
}

int dg_trainer_write_curves(dg_trainer *t) {
    dg_metrics_close(&t->metrics);
    if (!t->writer) return 0;
    char *mp = dg_trainer_path(t, "metrics.jsonl"), *cp = dg_trainer_path(t, "curves.png");
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
