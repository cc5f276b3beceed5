/* app/checkpoint.h -- dgseg's checkpoint format: the files a training run
 * writes (last.safetensors with the method's state, best.safetensors with
 * model weights only) and resumes from, and a checkpoint opened for
 * evaluation: what its metadata says about the model, the model built and
 * loaded from it, and the weights its method evaluates. `train`, `eval`,
 * `predict` and `flatness` all read and write checkpoints through here.
 *
 * A training checkpoint (app/trainer.c) holds the LIVE weights w and
 * statistics, the optimizer and method state ("optim.<name>.<tensor>") and
 * the metadata "model", "classes", "output_stride", "aux", "task",
 * "method", "step" and "config" (the resolved configuration). The weights a
 * method evaluates are not w: Lookahead's slow weights phi, SWAD's average
 * once finished, MESA's teacher when optim.mesa_eval_teacher (and MESA's
 * second row, the teacher or the student). dg_ckpt_weights_resolve
 * recreates the method from the checkpoint's "method" and the [optim] keys
 * and train.seed of its "config", restores its state and asks it
 * (dg_method_eval_weights, dg_method_second_weights). A file without the
 * method's state ("optim.<method>.step" absent: plain weights, a file
 * holding only model weights) is evaluated as stored.
 *
 * Use:
 *   dg_ckpt c;
 *   st = dg_ckpt_open(&c, path);                 // reader + metadata
 *   ... choose the model geometry from c.meta ...
 *   st = dg_ckpt_load_model(&c, ctx, &mo, live); // build, load, resolve
 *   ... c.m, c.w.params / c.w.stats ...
 *   dg_ckpt_close(&c);                           // always, also after errors */
#ifndef DG_APP_CHECKPOINT_H
#define DG_APP_CHECKPOINT_H

#include <stdbool.h>

#include "app/config.h"
#include "nets/core/safetensors.h"
#include "nets/model.h"
#include "optimizers/dg_optim.h"

/* ---- a training run's files ------------------------------------------------ */

/* What every weights file of a run says about it: the metadata keys
 * "format_version", "step", "model", "classes", "output_stride", "aux",
 * "task", "method", "test_domain" (classification), "bn_refresh_batches",
 * "finished", "iterations" and "config" (the resolved configuration);
 * training checkpoints also "log_loss_sum" and "log_loss_steps". */
typedef struct dg_ckpt_run_info {
    const dg_config *cfg;     /* the run's configuration */
    int classes;
    bool aux;                 /* the layout has the auxiliary head */
    const char *test_domain;  /* classification: the held-out domain; NULL: none */
    long bn_refresh_batches;  /* BN-refresh batches drawn so far */
    bool finished;            /* dg_method_finish has run: the final model */
    double log_loss_sum;      /* losses since the last "train" line of metrics.jsonl ... */
    long log_loss_steps;      /* ... and their count: checkpoints only, so a resumed run's
                                 next line averages the same steps as a straight run's */
} dg_ckpt_run_info;

/* Writes the training checkpoint of step `step` to path (atomically): the
 * live weights and statistics of ps, the method's state and the run's
 * metadata. Logs "checkpoint: path (step N)". */
dg_status dg_ckpt_save_run(const char *path, const dg_ckpt_run_info *info, long step,
        const dg_param_set *ps, const dg_method *method);
/* Writes a model-only weights file: P/Q (laid out like `layout`) under the
 * model's tensor names, no optimizer state; metadata "weights" = what
 * ("best") and "score" say what it is. */
dg_status dg_ckpt_save_weights(const char *path, const dg_ckpt_run_info *info, long step,
        const dg_param_set *layout, const float *P, const float *Q, const char *what,
        double score);

/* A training checkpoint restored by dg_ckpt_resume. */
typedef struct dg_ckpt_resumed {
    long step;                /* the step it was written after */
    long bn_refresh_batches;
    bool finished;            /* the final checkpoint of a finished run */
    long stopped_at;          /* a finished run stopped early (SWAD): its last step; else 0 */
    double log_loss_sum;      /* 0 and 0 for a checkpoint written before these keys */
    long log_loss_steps;
} dg_ckpt_resumed;
/* Restores the checkpoint at path into ps (weights, statistics) and method
 * (its state) for the run cfg describes: the model must be cfg's, and a
 * finished run's train.iterations must be cfg's (its finish cannot be
 * undone). Errors are logged, naming the file and the key at fault. */
dg_status dg_ckpt_resume(const char *path, const dg_config *cfg, dg_param_set *ps,
        dg_method *method, dg_ckpt_resumed *out);

/* ---- a checkpoint opened for evaluation -------------------------------------- */

/* The weights chosen for a checkpoint. params/stats (and params2/stats2)
 * are borrowed from the method or from the parameter store given to
 * resolve; both must outlive their use. */
typedef struct dg_ckpt_weights {
    const float *params;  /* (d) the weights to evaluate */
    const float *stats;   /* (n_stats) their BN running statistics */
    const char *label;    /* row label: "lookahead slow weights", "live weights", ... */
    const float *params2; /* (d) the method's second model (MESA), or NULL */
    const float *stats2;  /* (n_stats), or NULL */
    const char *label2;   /* "mesa teacher" / "mesa student", or NULL */
    char *note;           /* one line for the user: which weights and why (owned) */
    dg_method *method;    /* owned: the recreated method, NULL when none */
    char buf[2][64];      /* label storage */
} dg_ckpt_weights;

/* Parses a --weights value of `cmd`: "live" (*live = true) or "method"
 * (*live = false, the default). False, with a message naming the command
 * and the value, for anything else. */
bool dg_ckpt_weights_parse(const char *cmd, const char *value, bool *live);

/* Chooses the weights of the checkpoint open in rd (path names it in
 * messages). ps holds the checkpoint's live weights and statistics, laid
 * out like the training model (the auxiliary head included when its
 * metadata "aux" is "true"); the method, when one is recreated, borrows
 * its layout (ps must outlive w). live = true skips the method. Returns
 * DG_STATUS_OK, or DG_STATUS_ERR_FORMAT when the checkpoint has the
 * method's state but the method cannot be recreated from its metadata or
 * the state does not load (logged, naming the file and the key or tensor);
 * w is then freed. */
dg_status dg_ckpt_weights_resolve(dg_ckpt_weights *w, const dg_tensor_reader *rd,
        const char *path, const dg_param_set *ps, bool live);

/* Releases the method and the note; zeroes w. */
void dg_ckpt_weights_free(dg_ckpt_weights *w);

/* What a checkpoint's metadata says about its model (strings borrowed from
 * the reader). */
typedef struct dg_ckpt_meta {
    const char *model;   /* "deeplabv3plus-r18", "mnist-cnn", ... */
    bool segmentation;   /* dg_model_is_segmentation(model) */
    int64_t classes;     /* "classes"; 0 when absent */
    int output_stride;   /* "output_stride" (segmentation): 8 or 16; 16 when absent */
    bool aux;            /* "aux" is "true": the layout has the auxiliary head */
    const char *method;  /* "method", or NULL */
    const char *test_domain; /* "test_domain" (classification runs), or NULL */
} dg_ckpt_meta;

/* A checkpoint opened for evaluation. */
typedef struct dg_ckpt {
    const char *path;    /* borrowed */
    dg_tensor_reader rd;
    bool opened;
    dg_ckpt_meta meta;
    dg_model m;          /* dg_ckpt_load_model: the model, loaded with the live weights */
    bool has_model;
    dg_ckpt_weights w;   /* dg_ckpt_load_model: the weights to evaluate */
} dg_ckpt;

/* Opens path and reads its metadata. DG_STATUS_ERR_IO / ERR_FORMAT (logged,
 * naming the file) when it cannot be read, is not a dgseg weights file
 * (no "model" metadata or a model dgseg does not have) or has malformed
 * model metadata (a "classes" outside 1 .. 254, an output stride other
 * than 8 or 16). c is ready for dg_ckpt_close either way. */
dg_status dg_ckpt_open(dg_ckpt *c, const char *path);

/* Builds the checkpoint's model with geometry mo (batch, channels, size,
 * training or inference, winograd, bf16, freeze_bn, dropout: the caller's;
 * classes, output stride and auxiliary head: the metadata's, overriding
 * mo's), loads its weights and statistics into c->m.ps (an auxiliary head
 * stored in a file whose metadata says none is ignored) and resolves the
 * weights to evaluate into c->w (live: the live ones). Prints nothing;
 * c->w.note says which weights were chosen. Returns DG_STATUS_OK or the
 * first error, logged with the file's name. */
dg_status dg_ckpt_load_model(dg_ckpt *c, dg_ctx *ctx, const dg_model_opts *mo, bool live);

/* Frees what open and load_model made (idempotent). */
void dg_ckpt_close(dg_ckpt *c);

#endif
