/* tests/fault_preload.c -- an LD_PRELOAD library for tests/test_faults.c:
 * the file points of DGSEG_FAULT_KILL / DGSEG_FAULT_STOP (app/cli.h) that
 * dgseg's own hook cannot name, because they lie inside the C library
 * calls of the atomic writer (nets/core/common.c) and the plot writer
 * (app/plot.c). Same variables, same "<point>:<n>" form; points:
 *   "write <s>"    the n-th write() to a file whose path holds s writes the
 *                  first half of its bytes, then the signal: a file cut in
 *                  the middle, as a kill -9 during a checkpoint write leaves
 *                  it (after SIGCONT the write returns the half it wrote);
 *   "rename <s>"   the signal before the n-th rename() onto a path holding
 *                  s (the temporary file complete and synced);
 *   "renamed <s>"  the signal after that rename (before the folder sync).
 * Other points are dgseg's and are ignored here. Test support only: dgseg
 * never loads it by itself. Built without sanitizers; an ASan dgseg needs
 * ASAN_OPTIONS=verify_asan_link_order=0 to accept it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

enum { OP_NONE, OP_WRITE, OP_RENAME, OP_RENAMED };

typedef struct fault {
    int op;
    char sub[256]; /* the path substring */
    long n;        /* matching calls left before the signal */
    int sig;
} fault;

static fault faults[2];
static bool parsed;

static void parse_one(fault *f, const char *var, int sig) {
    const char *v = getenv(var);
    if (!v) return;
    static const struct { const char *word; int op; } ops[] = {
        {"write ", OP_WRITE}, {"rename ", OP_RENAME}, {"renamed ", OP_RENAMED}};
    const char *colon = strrchr(v, ':');
    if (!colon) return;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        const size_t k = strlen(ops[i].word);
        if (strncmp(v, ops[i].word, k) || (size_t)(colon - v) - k >= sizeof(f->sub)) continue;
        memcpy(f->sub, v + k, (size_t)(colon - v) - k);
        f->sub[colon - v - k] = '\0';
        f->n = strtol(colon + 1, NULL, 10);
        f->op = f->n > 0 ? ops[i].op : OP_NONE;
        f->sig = sig;
    }
}

/* The fault that this call (op on path) sets off, or NULL. */
static fault *arrive(int op, const char *path) {
    if (!parsed) {
        parsed = true;
        parse_one(&faults[0], "DGSEG_FAULT_KILL", SIGKILL);
        parse_one(&faults[1], "DGSEG_FAULT_STOP", SIGSTOP);
    }
    for (int i = 0; i < 2; i++) {
        fault *f = &faults[i];
        if (f->op == op && path && strstr(path, f->sub) && f->n > 0 && --f->n == 0) return f;
    }
    return NULL;
}

ssize_t write(int fd, const void *buf, size_t count) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "write"); /* POSIX dlsym idiom */
    if (faults[0].op == OP_WRITE || faults[1].op == OP_WRITE || !parsed) {
        char link[64], path[4096];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        const ssize_t k = readlink(link, path, sizeof(path) - 1);
        path[k > 0 ? k : 0] = '\0';
        fault *f = k > 0 ? arrive(OP_WRITE, path) : NULL;
        if (f) {
            const ssize_t done = real(fd, buf, count / 2);
            raise(f->sig);
            return done;
        }
    }
    return real(fd, buf, count);
}

int rename(const char *oldpath, const char *newpath) {
    static int (*real)(const char *, const char *);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "rename");
    fault *before = arrive(OP_RENAME, newpath);
    if (before) raise(before->sig);
    const int rc = real(oldpath, newpath);
    fault *after = arrive(OP_RENAMED, newpath);
    if (after) raise(after->sig);
    return rc;
}
