/* app/train.h -- `dgseg train CONFIG [section.key=value ...] [--resume]`
 * (docs/design.md §4). The trainers: app/train_seg.h, app/train_cls.h; their
 * shared loop and its test hooks: app/trainer.h. */
#ifndef DG_APP_TRAIN_H
#define DG_APP_TRAIN_H

/* Runs the command; argv[0] is "train". Returns the exit code: 0 done,
 * 1 runtime failure (a bad sample under data.on_bad_sample = fail, a
 * non-finite loss, an interrupt after its checkpoint), 2 usage or
 * configuration error. */
int dg_train_main(int argc, char **argv);

#endif
