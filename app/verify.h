/* app/verify.h -- `dgseg verify` (docs/design.md §4). */
#ifndef DG_APP_VERIFY_H
#define DG_APP_VERIFY_H

/* Runs the command; argv[0] is "verify". Returns the exit code: 0 clean,
 * 1 problems that would stop training or evaluation (or an I/O failure),
 * 2 usage or configuration error. */
int dg_verify_main(int argc, char **argv);

#endif
