/* app/cli.h -- command-line helpers shared by the dgseg subcommands. */
#ifndef DG_CLI_H
#define DG_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "nets/core/common.h"

/* Parses s as a decimal integer in [lo, hi] into *out. On failure prints
 * "dgseg <cmd>: <what> wants an integer in [lo, hi], got '<s>'" to stderr
 * and returns false. */
bool dg_cli_parse_int(const char *cmd, const char *what, const char *s, int64_t lo, int64_t hi,
        int64_t *out);

/* The exit code of a command that ends with status st: 0 for
 * DG_STATUS_OK, 2 for a configuration error (DG_STATUS_ERR_CONFIG), 1 for
 * any other failure. */
int dg_cli_exit_code(dg_status st);

/* SIGINT and SIGTERM go to handler until dg_cli_stop_signals_restore;
 * old keeps the dispositions it replaced. */
typedef struct dg_cli_stop_signals {
    struct sigaction old_int, old_term;
} dg_cli_stop_signals;
void dg_cli_stop_signals_catch(dg_cli_stop_signals *old, void (*handler)(int));
void dg_cli_stop_signals_restore(const dg_cli_stop_signals *old);

/* Fault injection for tests (docs/testing.md; suite faults): with
 * DGSEG_FAULT_KILL=<point>:<n> in the environment, the n-th arrival at the
 * named point raises SIGKILL on this process, which then dies exactly as a
 * kill -9 leaves it; DGSEG_FAULT_STOP=<point>:<n> raises SIGSTOP instead (a
 * test acts on the stopped process's files, then sends SIGCONT). The
 * variables are read at the first call; without them nothing happens.
 * Points: "step" (a training step's update is applied, its metrics line and
 * checkpoint are not written yet) and every unit of a task with a progress
 * line, named by its label: "BN refresh" (before each batch of a final BN
 * refresh), "evaluating <reader>" (after each image of an evaluation). Main
 * thread only. */
void dg_cli_fault_point(const char *point);

#endif
