/* app/cli.h -- command-line helpers shared by the dgseg subcommands. */
#ifndef DG_CLI_H
#define DG_CLI_H

/* struct sigaction below is POSIX: every includer defines _POSIX_C_SOURCE
 * (200809L; or _XOPEN_SOURCE 700) before its first system header. Checked here so that a file
 * that forgets builds on no compiler, not only on the ones whose headers
 * leave POSIX out by default. */
#if !(defined(_POSIX_C_SOURCE) && _POSIX_C_SOURCE >= 200809L) && \
        !(defined(_XOPEN_SOURCE) && _XOPEN_SOURCE >= 700)
#error "app/cli.h: define _POSIX_C_SOURCE 200809L before the first #include"
#endif

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <stdio.h>

#include "app/config.h"
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

/* CONFIG and its section.key=value overrides, as every command that reads a
 * configuration takes them, in any order among the command's own flags. */
typedef struct dg_cli_config_args {
    const char *config; /* the first argument that is neither a flag nor an override */
    char **over;        /* (n_over) the overrides: borrowed strings, owned array */
    int n_over;
} dg_cli_config_args;
/* Takes arg when it is an override (holds '=', no leading '-') or the
 * config path; false for anything else (a flag of the command, or an
 * argument it does not expect). */
bool dg_cli_config_arg(dg_cli_config_args *a, const char *arg);
/* Loads a->config with a->over (dg_config_load_checked; "dgseg CMD" prints
 * usage(stderr) when no config was given) and releases a's list. Returns
 * the exit code: 0 with cfg loaded, 2 (usage, configuration), 1. */
int dg_cli_config_load(dg_cli_config_args *a, void (*usage)(FILE *), dg_config *cfg);
/* "dgseg CMD: unexpected argument 'ARG'", then usage(stderr): exit code 2. */
int dg_cli_unexpected(const char *cmd, const char *arg, void (*usage)(FILE *));

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
/* Test hook of suite mpi: with DGSEG_FAULT_DIVERGE=<rank> in the
 * environment, that rank of a data-parallel job moves one weight by one
 * ulp before each comparison of the ranks' weights (app/trainer.c), which
 * must then stop the run. True when `rank` is that rank; false without
 * the variable. */
bool dg_cli_fault_diverge(int rank);
/* Test hook of suite mpi: with DGSEG_TEST_REPLICA_STATS=1 in the
 * environment, a training run of one process takes its training passes as
 * a job of one replica (app/closure.h), so its BatchNorm statistics are the
 * double sums of the replicas' path (nets/core/batchnorm.h "Replicas")
 * rather than oneDNN's f32 ones: what N ranks compute, up to the order of
 * the sums. False without the variable. */
bool dg_cli_test_replica_stats(void);

/* In a data-parallel job (app/dist.h): whether every rank runs the same
 * dgseg binary (the bytes of /proc/self/exe) on the same resolved
 * configuration; a rank that differs would compute something else inside
 * the same job, or call collectives the others do not. Collective; rank 0
 * logs what differs, naming `dgseg <command>`. */
bool dg_cli_same_job(const dg_config *cfg, const char *command);

#endif
