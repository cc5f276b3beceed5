/* app/eval_cmd.h -- `dgseg eval` (docs/design.md §4): a checkpoint on every
 * target (segmentation) or domain (classification) of a configuration,
 * with the weights its method evaluates (app/checkpoint.h). */
#ifndef DG_APP_EVAL_CMD_H
#define DG_APP_EVAL_CMD_H

/* Runs the command; argv[0] is "eval". Returns the exit code. */
int dg_eval_main(int argc, char **argv);

#endif
