/* app/train.h -- `dgseg train CONFIG [section.key=value ...] [--resume]`
 * (DESIGN.md §4): the segmentation and classification trainers. */
#ifndef DG_APP_TRAIN_H
#define DG_APP_TRAIN_H

#include <stdbool.h>

#include "app/config.h"

/* Runs the command; argv[0] is "train". Returns the exit code: 0 done,
 * 1 runtime failure (a bad sample under data.on_bad_sample = fail, a
 * non-finite loss, an interrupt after its checkpoint), 2 usage or
 * configuration error. */
int dg_train_main(int argc, char **argv);

/* Test hook: when >= 0, the run behaves as if SIGTERM arrived right after
 * this training step (checkpoint, then exit 1). */
extern long dg_train_interrupt_after;
/* Test hook: 1 behaves as if SIGTERM arrived during the method's finish
 * (after the last step), 2 during the final target evaluation; 0 none. */
extern int dg_train_interrupt_phase;

#endif
