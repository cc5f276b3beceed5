/* app/cli.c -- see cli.h. */
#include "app/cli.h"

#include <stdio.h>
#include <stdlib.h>

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
