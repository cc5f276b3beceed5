/* tests/proc.c -- see proc.h. */
#define _POSIX_C_SOURCE 200809L
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "nets/core/safetensors.h"

#ifndef DG_DGSEG_PATH
#error "DG_DGSEG_PATH (the dgseg executable of this build) must be defined by CMake"
#endif

extern char **environ;

char proc_dir[64];

/* fontconfig, loaded by PLplot when a run draws curves.png, keeps caches
 * LeakSanitizer cannot trace back to a root (see tests/test_report.c), and
 * so does Open MPI (its libraries, hwloc and PMIx, and its components:
 * tests/test_mpi.c keeps them loaded so that their frames have names): a
 * sanitizer build of dgseg gets this suppression list through LSAN_OPTIONS,
 * so that its exit code is dgseg's own. Other builds ignore it. */
static const char *LSAN_SUPP = "leak:libfontconfig.so\nleak:libmpi.so\nleak:libopen-pal.so\n"
                               "leak:libopen-rte.so\nleak:libhwloc.so\nleak:libpmix.so\n"
                               "leak:libevent\nleak:mca_\n";

void proc_setup(const char *tag) {
    make_tmpdir(proc_dir, tag);
    char p[128];
    snprintf(p, sizeof(p), "%s/lsan.supp", proc_dir);
    write_file(p, LSAN_SUPP, strlen(LSAN_SUPP));
}

void proc_teardown(void) { remove_tree(proc_dir, 8); }

void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = dg_xmalloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len < 2) {
            cap *= 2;
            buf = dg_xrealloc(buf, cap);
        }
    }
    fclose(f);
    buf[len] = '\0';
    if (n) *n = len;
    return buf;
}

/* This process's environment with proc_dir/lsan.supp added to
 * LSAN_OPTIONS (dg_free the array; its strings but the last belong to
 * environ). */
static char **child_env(char *lsan, size_t size) {
    const char *old = getenv("LSAN_OPTIONS");
    snprintf(lsan, size, "LSAN_OPTIONS=%s%ssuppressions=%s/lsan.supp", old ? old : "",
            old && old[0] ? ":" : "", proc_dir);
    size_t n = 0;
    while (environ[n]) n++;
    char **env = dg_xcalloc(n + 2, sizeof(*env));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LSAN_OPTIONS=", 13)) env[k++] = environ[i];
    env[k] = lsan;
    return env;
}

pid_t spawn(const char *tag, const char *const *args) {
    return spawn_exe(tag, DG_DGSEG_PATH, args);
}

pid_t spawn_exe(const char *tag, const char *exe, const char *const *args) {
    char out[128], err[128], lsan[1024];
    snprintf(out, sizeof(out), "%s/%s.out", proc_dir, tag);
    snprintf(err, sizeof(err), "%s/%s.err", proc_dir, tag);
    const char *argv[32] = {exe};
    int argc = 1;
    for (; args[argc - 1]; argc++) {
        ck_assert_int_lt(argc, 31);
        argv[argc] = args[argc - 1];
    }
    argv[argc] = NULL;
    char **env = child_env(lsan, sizeof(lsan));
    const pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid < 0) dg_free(env);
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* the child: only async-signal-safe calls until exec */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        const int in = open("/dev/null", O_RDONLY);
        const int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || fo < 0 || fe < 0 || chdir(proc_dir) != 0) _exit(127);
        if (dup2(in, 0) < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0) _exit(127);
        execve(exe, (char *const *)argv, env);
        _exit(127);
    }
    dg_free(env);
    return pid;
}

int wait_exit(pid_t pid, double timeout_s) {
    const double end = now_s() + timeout_s;
    for (;;) {
        int status;
        const pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        ck_assert_msg(r == 0, "waitpid: %s", strerror(errno));
        if (now_s() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        sleep_ms(20);
    }
}

double proc_timeout_factor(void) {
    const char *mult = getenv("CK_TIMEOUT_MULTIPLIER");
    return mult && atof(mult) >= 1 ? atof(mult) : 1.0;
}

bool find_on_path(const char *name, char *out, size_t size) {
    const char *path = getenv("PATH");
    if (!path) return false;
    char *dirs = dg_xstrdup(path), *save = NULL;
    bool found = false;
    for (char *d = strtok_r(dirs, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, size, "%s/%s", d, name);
        found = access(out, X_OK) == 0;
    }
    dg_free(dirs);
    return found;
}

char *err_of(const char *tag) {
    char p[128];
    snprintf(p, sizeof(p), "%s/%s.err", proc_dir, tag);
    char *s = slurp(p, NULL);
    return s ? s : dg_xstrdup("");
}

int run_dgseg(const char *tag, const char *const *args, char **err) {
    const int rc = wait_exit(spawn(tag, args), PROC_TIMEOUT_S);
    char *e = err_of(tag);
    if (rc < 0) {
        ck_abort_msg("dgseg %s: still running after %.0f s (killed); stderr:\n%s", args[0],
                PROC_TIMEOUT_S, e);
    }
    if (err) *err = e;
    else dg_free(e);
    return rc;
}

bool wait_for_file(pid_t pid, const char *file, const char *needle, double timeout_s, int *rc) {
    const double end = now_s() + timeout_s;
    for (;;) {
        char *s = slurp(file, NULL);
        const bool found = s && (!needle || strstr(s, needle));
        dg_free(s);
        if (found) return true;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            *rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            return false;
        }
        if (now_s() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            *rc = -1;
            return false;
        }
        sleep_ms(20);
    }
}

void make_synth(void) {
    char out[128];
    snprintf(out, sizeof(out), "%s/synth", proc_dir);
    const char *args[] = {"synth", "--out", out, "--width", "64", "--height", "32",
            "--per-domain", "4", NULL};
    char *err;
    const int rc = run_dgseg("synth", args, &err);
    ck_assert_msg(rc == 0, "dgseg synth: exit %d:\n%s", rc, err);
    dg_free(err);
}

const char *const SEG_CFG =
        "[data]\nsources = gtav:%s/synth/gtav\ntargets = cityscapes:%s/synth/cityscapes\n"
        "crop_size = 32\nworkers = 1\nclass_uniform_tile = 16\n"
        "[model]\nname = deeplabv3plus-r18\n"
        "[optim]\nmethod = erm\n"
        "[train]\niterations = 100000\nbatch_size = 2\nlog_every = 1\n"
        "checkpoint_every = 100000\n";

void write_cfg(char *path, size_t size, const char *name, const char *body) {
    snprintf(path, size, "%s/%s.ini", proc_dir, name);
    char text[2048];
    snprintf(text, sizeof(text), body, proc_dir, proc_dir);
    write_file(path, text, strlen(text));
}

long checkpoint_step(const char *path) {
    dg_tensor_reader rd;
    ck_assert_msg(dg_tensor_reader_open(&rd, path) == DG_STATUS_OK, "%s does not load", path);
    ck_assert_uint_gt(dg_tensor_reader_count(&rd), 0);
    const char *v = dg_tensor_reader_metadata(&rd, "step");
    const long step = v ? strtol(v, NULL, 10) : -1;
    dg_tensor_reader_close(&rd);
    return step;
}
