/* tests/proc.h -- the real `dgseg` binary as users run it, for the suites
 * that start it as a process (test_cli.c, test_faults.c): every command
 * forks and execs the dgseg of the same build (DG_DGSEG_PATH) in a
 * temporary folder, captures its stdout and stderr into files there and is
 * waited for with a time limit, so that a hang fails the test instead of
 * blocking CI. A dgseg child dies with the test (PR_SET_PDEATHSIG), so a
 * test killed by Check's timeout leaves no training behind.
 *
 * The test process itself runs no OpenMP: dgseg does the work. All state is
 * the folder proc_dir (proc_setup in a checked fixture, proc_teardown). */
#ifndef DG_TESTS_PROC_H
#define DG_TESTS_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The factor check gives every case's timeout (CK_TIMEOUT_MULTIPLIER: a
 * sanitizer build, a loaded machine), >= 1. */
double proc_timeout_factor(void);
/* One dgseg command: 90 s times that factor; the test case allows more. */
#define PROC_TIMEOUT_S (90.0 * proc_timeout_factor())

/* The test's folder: commands run in it, their outputs <tag>.out/.err and
 * the synthetic data live there. */
extern char proc_dir[64];

/* Creates proc_dir (a fresh /tmp/dg_<tag>_ folder, mkdtemp) with the LeakSanitizer
 * suppressions a sanitizer build of dgseg needs; proc_teardown removes it. */
void proc_setup(const char *tag);
void proc_teardown(void);

void sleep_ms(long ms);
double now_s(void); /* monotonic seconds */

/* The whole file, NUL-terminated (dg_free it), or NULL when it cannot be
 * opened (read_file fails the test instead). */
char *slurp(const char *path, size_t *n);

/* Starts `dgseg args...` (args NULL-terminated) in proc_dir with this
 * process's environment, stdin from /dev/null, stdout and stderr into
 * proc_dir/<tag>.out and <tag>.err. */
pid_t spawn(const char *tag, const char *const *args);
/* The same for another program, exe (an absolute path) with args: what
 * launches dgseg itself, such as mpirun (tests/test_mpi.c). */
pid_t spawn_exe(const char *tag, const char *exe, const char *const *args);

/* The first executable `name` in a directory of PATH into out (size
 * bytes); false when there is none. */
bool find_on_path(const char *name, char *out, size_t size);

/* The exit code of pid (128 + signal when a signal ended it), or -1 when
 * it is still running after timeout_s: it is then killed and reaped. */
int wait_exit(pid_t pid, double timeout_s);

/* What dgseg wrote to stderr under tag (dg_free it; "" when nothing). */
char *err_of(const char *tag);

/* Runs `dgseg args...` to the end; returns its exit code and, when err is
 * not NULL, its stderr. A run past PROC_TIMEOUT_S fails the test. */
int run_dgseg(const char *tag, const char *const *args, char **err);

/* Waits until `file` exists and (when needle is not NULL) holds needle,
 * while pid runs. Returns false when pid ended first (*rc gets its exit
 * code) or after timeout_s (pid is then killed, *rc = -1). */
bool wait_for_file(pid_t pid, const char *file, const char *needle, double timeout_s, int *rc);

/* `dgseg synth` into proc_dir/synth: 64 x 32 images, 4 per domain. */
void make_synth(void);

/* DeepLabv3+ R18 on 32 x 32 crops of proc_dir/synth (gtav -> cityscapes),
 * two images a step, a log line every step, far more steps than any test
 * waits for and no periodic checkpoint (overrides set train.iterations /
 * train.checkpoint_every where needed). A format with two %s: proc_dir. */
extern const char *const SEG_CFG;

/* Writes proc_dir/<name>.ini from body (its %s are replaced by proc_dir,
 * at most two) and puts its path in path. */
void write_cfg(char *path, size_t size, const char *name, const char *body);

/* The "step" metadata of a checkpoint, after checking that it opens (-1
 * when the metadata is missing). */
long checkpoint_step(const char *path);

#endif
