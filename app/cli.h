/* app/cli.h -- command-line helpers shared by the dgseg subcommands. */
#ifndef DG_CLI_H
#define DG_CLI_H

#include <stdbool.h>
#include <stdint.h>

/* Parses s as a decimal integer in [lo, hi] into *out. On failure prints
 * "dgseg <cmd>: <what> wants an integer in [lo, hi], got '<s>'" to stderr
 * and returns false. */
bool dg_cli_parse_int(const char *cmd, const char *what, const char *s, int64_t lo, int64_t hi,
        int64_t *out);

#endif
