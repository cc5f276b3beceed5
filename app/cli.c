/* app/cli.c -- see cli.h. */
#define _POSIX_C_SOURCE 200809L
#include "app/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool dg_cli_parse_int(const char *cmd, const char *what, const char *s, int64_t lo, int64_t hi,
        int64_t *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "dgseg %s: %s wants an integer in [%lld, %lld], got '%s'\n", cmd, what,
                (long long)lo, (long long)hi, s);
        return false;
    }
    *out = v;
    return true;
}

void dg_cli_stop_signals_catch(dg_cli_stop_signals *old, void (*handler)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = handler;
    sigaction(SIGINT, &sa, &old->old_int);
    sigaction(SIGTERM, &sa, &old->old_term);
}

void dg_cli_stop_signals_restore(const dg_cli_stop_signals *old) {
    sigaction(SIGINT, &old->old_int, NULL);
    sigaction(SIGTERM, &old->old_term, NULL);
}

int dg_cli_exit_code(dg_status st) {
    return st == DG_STATUS_OK ? 0 : st == DG_STATUS_ERR_CONFIG ? 2 : 1;
}
