/* app/train_seg.h -- the segmentation trainer: the shared loop
 * (app/trainer.h) with validation every train.eval_every steps and
 * best.safetensors, SWAD's source validation loss, and the targets'
 * evaluation with results.md/json after training. */
#ifndef DG_APP_TRAIN_SEG_H
#define DG_APP_TRAIN_SEG_H

#include "app/config.h"

/* Trains (or resumes, or completes) the segmentation run of cfg in dir.
 * Returns the exit code: 0, 1 runtime failure, 2 configuration error. */
int dg_train_seg(const dg_config *cfg, const char *dir);

#endif
