/* app/eval_cmd.h -- `dgseg eval` (DESIGN.md §4), and the choice of the
 * weights a checkpoint is evaluated with, shared with `dgseg predict`.
 *
 * A training checkpoint (app/train.c) holds the LIVE weights w and
 * statistics, the optimizer and method state ("optim.<name>.<tensor>") and
 * the metadata "method" and "config" (the resolved configuration). The
 * weights a method evaluates are not w: Lookahead's slow weights phi,
 * SWAD's average once finished, MESA's teacher when optim.mesa_eval_teacher
 * (and MESA's second row, the teacher or the student). dg_ckpt_weights_
 * resolve recreates the method from the checkpoint's "method" and the
 * [optim] keys and train.seed of its "config", restores its state and asks
 * it (dg_method_eval_weights, dg_method_second_weights). A file without
 * the method's state ("optim.<method>.step" absent: plain weights, a file
 * holding only model weights) is evaluated as stored. */
#ifndef DG_APP_EVAL_CMD_H
#define DG_APP_EVAL_CMD_H

#include <stdbool.h>

#include "nets/core/params.h"
#include "nets/core/safetensors.h"
#include "optimizers/dg_optim.h"

/* Runs the command; argv[0] is "eval". Returns the exit code. */
int dg_eval_main(int argc, char **argv);

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

#endif
