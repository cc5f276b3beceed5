/* app/train.h -- `dgseg train CONFIG [section.key=value ...] [--resume]`
 * (DESIGN.md §4): the segmentation and classification trainers. */
#ifndef DG_APP_TRAIN_H
#define DG_APP_TRAIN_H

#include <stdbool.h>

#include "app/config.h"
#include "nets/core/safetensors.h"

/* Runs the command; argv[0] is "train". Returns the exit code: 0 done,
 * 1 runtime failure (a bad sample under data.on_bad_sample = fail, a
 * non-finite loss, an interrupt after its checkpoint), 2 usage or
 * configuration error. */
int dg_train_main(int argc, char **argv);

/* Test hook: when >= 0, the run behaves as if SIGTERM arrived right after
 * this training step (checkpoint, then exit 1). */
extern long dg_train_interrupt_after;

/* `dgseg eval` of a classification checkpoint (open in rd, named path):
 * the weights its method evaluates (or the live ones), every domain of
 * cfg's data.dataset, all of its images (in and out splits of the
 * checkpoint's trial); prints a table and, with json, writes DESIGN.md §4's
 * classification object. Returns the exit code. */
int dg_train_eval_cls(const dg_config *cfg, const char *path, const dg_tensor_reader *rd,
        bool live, const char *json);

#endif
