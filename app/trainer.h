/* app/trainer.h -- the loop both trainers share (docs/algorithms.md §1 trainer
 * loop): one run in one folder, from its data, model, method and schedule
 * to its final checkpoint. A task (app/train_seg.c, app/train_cls.c) adds
 * its evaluations through hooks; the skeleton owns everything else:
 *
 *   dg_trainer_open   folders, stale temporaries, data, model, method,
 *                     the resumed checkpoint, loaders, metrics log
 *   dg_trainer_run    the steps: batch, method step, NaN policy, logging,
 *                     the task's evaluations, checkpoints, interrupts,
 *                     SWAD's early stop; then the method's finish, the
 *                     task's evaluations of the finished model, the final
 *                     checkpoint
 *   dg_trainer_close  everything open made
 *
 * Run folder: config.ini (written by the command), metrics.jsonl,
 * checkpoints/last.safetensors (app/checkpoint.h), and what the task adds
 * (best.safetensors, curves.png, results.md/json).
 *
 * Exactness: everything a step depends on is a function of the checkpoint
 * (weights, statistics, optimizer and method state, step, BN-refresh batches
 * drawn) and of the configuration: the loaders replay their samplers to the
 * resumed step, dropout masks are indexed by step. So N steps, interrupt,
 * resume to 2N writes the same checkpoint bytes as 2N straight (same seed
 * and thread count).
 *
 * Data parallelism (mpirun, app/dist.h; docs/algorithms.md §1.1): every
 * rank runs this loop on its share of each batch with the whole model and
 * method; the closure sums the gradients (app/closure.c), so every rank
 * takes the same step. Rank 0 (`writer`) alone writes the run folder;
 * the decisions that end the loop (a non-finite loss, a stop signal) are
 * taken on values every rank shares, and the ranks' weights are compared
 * by hash at every logged step. */
#ifndef DG_APP_TRAINER_H
#define DG_APP_TRAINER_H

#include <stdbool.h>

#include "app/checkpoint.h"
#include "app/closure.h"
#include "app/config.h"
#include "app/metrics_log.h"
#include "app/progress.h"
#include "app/train_data.h"
#include "eval/metrics.h"

typedef struct dg_trainer dg_trainer;

/* What a task adds to the loop. Every hook may be NULL; a hook returning
 * false has logged why and the run stops with exit code 1. */
typedef struct dg_trainer_task {
    /* Before the loaders: what the task builds on the model (the
     * classification evaluator). Returns a status (logged). */
    dg_status (*prepare)(dg_trainer *t);
    /* After a resume: the evaluations logged before the checkpoint. */
    void (*restore)(dg_trainer *t, const dg_metrics_data *md);
    /* After step `done`, before the metrics log is checked: evaluations
     * logged to it; *stop = true when SWAD's loss valley ended. */
    bool (*evaluate)(dg_trainer *t, long done, bool *stop);
    /* After step `done` (never the last: that one follows the finish),
     * once the metrics log is known to be intact: validation. */
    bool (*validate)(dg_trainer *t, long done);
    /* After the method's finish, before the final checkpoint: the
     * evaluations of the finished model after its last step `last`. */
    bool (*finished)(dg_trainer *t, long last);
    /* Resumed from the final checkpoint of a run that ended at `last`. */
    bool (*resumed_finished)(dg_trainer *t, long last);
} dg_trainer_task;

struct dg_trainer {
    const dg_config *cfg;
    char *dir;                     /* run folder */
    bool writer;                   /* writes the run folder (rank 0 of a data-parallel job) */
    dg_ctx ctx;
    dg_model m;                    /* the training instance */
    bool has_model;
    dg_train_closure tc;
    bool has_tc;
    dg_method *method;
    dg_sched sched;
    dg_train_data data;            /* the training domains */
    dg_loader *loader;             /* the trainer's batches */
    dg_loader *refresh;            /* the BN refresh's */
    bool finished;                 /* dg_method_finish has run */
    long start_step;
    long stopped_at;               /* SWAD's early stop: the last step run (0: none) */
    double log_loss_sum;           /* losses since the last "train" line of metrics.jsonl */
    long log_loss_steps;           /* ... and their count (checkpointed: a resumed run logs
                                      the same means as a straight one) */
    char test_domain[64];          /* classification: the held-out domain's name ("" none) */
    dg_metrics metrics;
    dg_progress progress;
    const dg_trainer_task *task;
    void *task_ctx;                /* the task's state */
};

/* Test hook: when >= 0, the run behaves as if SIGTERM arrived right after
 * this training step (checkpoint, then exit 1). */
extern long dg_train_interrupt_after;
/* Test hook: 1 behaves as if SIGTERM arrived during the method's finish
 * (after the last step), 2 during the final target evaluation; 0 none. */
extern int dg_train_interrupt_phase;

/* The SIGINT/SIGTERM handler of `dgseg train`: the loop checkpoints and
 * stops after the step it is in. */
void dg_trainer_on_signal(int sig);
/* Forgets a signal seen before (a new command). */
void dg_trainer_interrupt_clear(void);
/* A signal arrived (or the test hook of `phase` asks to behave so). */
bool dg_trainer_interrupted(int phase);

/* Opens the run of cfg in dir with task's hooks: the classification
 * dataset spec `cls` with dataset domain test_domain held out (NULL, -1:
 * segmentation). t is ready for dg_trainer_close either way. Returns
 * DG_STATUS_OK or the first error (logged). */
dg_status dg_trainer_open(dg_trainer *t, const dg_config *cfg, const char *dir,
        const dg_dataset_spec *cls, int test_domain, const dg_trainer_task *task,
        void *task_ctx);
/* True when the run was resumed from its final checkpoint and `done`
 * says nothing is left but what dg_trainer_run reports. done: the task's
 * results exist (segmentation's results.json). */
bool dg_trainer_complete(const dg_trainer *t, bool done);
/* Runs the steps from t->start_step to the final checkpoint (see the top
 * of this file); `complete` (dg_trainer_complete) only chooses what it
 * says first. Returns the exit code: 0, or 1 (logged). */
int dg_trainer_run(dg_trainer *t, bool complete);
/* Closes metrics.jsonl and draws curves.png from it. No driver or nothing
 * to plot is a warning; a file that cannot be written (a full disk) fails
 * the run. Returns the exit code. */
int dg_trainer_write_curves(dg_trainer *t);
/* dir/rel, allocated. */
char *dg_trainer_path(const dg_trainer *t, const char *rel);
/* The metadata of the run's weights files as of now. */
dg_ckpt_run_info dg_trainer_run_info(const dg_trainer *t);
void dg_trainer_close(dg_trainer *t);

#endif
