/* app/cli.c -- see cli.h. */
#define _POSIX_C_SOURCE 200809L
#include "app/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/dist.h"
#include "data/fsutil.h"

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

bool dg_cli_config_arg(dg_cli_config_args *a, const char *arg) {
    if (arg[0] == '-') return false;
    if (strchr(arg, '=')) {
        a->over = dg_xrealloc(a->over, (size_t)(a->n_over + 2) * sizeof(*a->over));
        a->over[a->n_over++] = (char *)arg;
        a->over[a->n_over] = NULL;
        return true;
    }
    if (a->config) return false;
    a->config = arg;
    return true;
}

int dg_cli_config_load(dg_cli_config_args *a, void (*usage)(FILE *), dg_config *cfg) {
    int rc = 2;
    if (!a->config) usage(stderr);
    else rc = dg_config_load_checked(cfg, a->config, a->n_over, a->over);
    dg_free(a->over);
    a->over = NULL;
    a->n_over = 0;
    return rc;
}

int dg_cli_unexpected(const char *cmd, const char *arg, void (*usage)(FILE *)) {
    fprintf(stderr, "dgseg %s: unexpected argument '%s'\n", cmd, arg);
    usage(stderr);
    return 2;
}

int dg_cli_exit_code(dg_status st) {
    return st == DG_STATUS_OK ? 0 : st == DG_STATUS_ERR_CONFIG ? 2 : 1;
}

/* One fault of DGSEG_FAULT_KILL / DGSEG_FAULT_STOP: "<point>:<n>". */
typedef struct fault {
    char point[128];
    long n;    /* arrivals left before the signal; 0: none set */
    int sig;
} fault;

static void fault_parse(fault *f, const char *var, int sig) {
    const char *v = getenv(var);
    const char *colon = v ? strrchr(v, ':') : NULL;
    char *end = NULL;
    const long n = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || (size_t)(colon - v) >= sizeof(f->point) || *end || n < 1) {
        if (v) fprintf(stderr, "dgseg: %s='%s' ignored: want <point>:<n>, n >= 1\n", var, v);
        return;
    }
    memcpy(f->point, v, (size_t)(colon - v));
    f->point[colon - v] = '\0';
    f->n = n;
    f->sig = sig;
}

void dg_cli_fault_point(const char *point) {
    static bool read;
    static fault faults[2];
    if (!read) {
        read = true;
        fault_parse(&faults[0], "DGSEG_FAULT_KILL", SIGKILL);
        fault_parse(&faults[1], "DGSEG_FAULT_STOP", SIGSTOP);
    }
    for (int i = 0; i < 2; i++) {
        fault *f = &faults[i];
        if (f->n == 0 || strcmp(f->point, point) || --f->n > 0) continue;
        fflush(stdout);
        fflush(stderr);
        raise(f->sig);
    }
}

bool dg_cli_test_replica_stats(void) {
    const char *v = getenv("DGSEG_TEST_REPLICA_STATS");
    return v && !strcmp(v, "1");
}

bool dg_cli_fault_diverge(int rank) {
    const char *v = getenv("DGSEG_FAULT_DIVERGE");
    char *end = NULL;
    const long r = v && *v ? strtol(v, &end, 10) : -1;
    return end && *end == '\0' && r == rank;
}

/* The bytes of /proc/self/exe and the resolved configuration text, hashed
 * and compared across the ranks (see cli.h). */
bool dg_cli_same_job(const dg_config *cfg, const char *command) {
    char *text = dg_config_text(cfg, true);
    uint64_t h;
    const bool same_cfg = dg_dist_same(text, strlen(text), &h);
    dg_free(text);
    size_t n = 0;
    char *exe = dg_file_read_all("/proc/self/exe", &n); /* unreadable: logged, hashed as "" */
    const bool same_exe = dg_dist_same(exe ? exe : "", exe ? n : 0, &h);
    dg_free(exe);
    if (dg_dist_is_root() && !same_cfg)
        dg_log_error("%s: the ranks' resolved configurations differ: every rank of `mpirun -np "
                     "%d dgseg %s` must get the same CONFIG and section.key=value overrides",
                cfg->path, dg_dist_size(), command);
    if (dg_dist_is_root() && same_cfg && !same_exe)
        dg_log_error("the ranks run different dgseg binaries (their bytes differ): install the "
                     "same build on every machine of the job");
    return same_cfg && same_exe;
}
