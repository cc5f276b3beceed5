/* tests/test_mpi.c -- data-parallel `dgseg train` under Open MPI's mpirun
 * (issue 26, first slice; app/dist.h, docs/algorithms.md §1.1), on the
 * real binary through tests/proc.h.
 *
 * The runs: Rotated Fashion-MNIST (the Debian package's files), mnist-cnn,
 * one test domain (rot0, so 5 training domains), train.batch_size 4 per
 * domain (a global batch of 20; each of 2 ranks computes 2 per domain),
 * SGD with momentum 0.9 at lr 0.01, 30 steps, a metrics line every step,
 * one OpenMP thread per process (2 cores run 2 ranks).
 *
 * Tolerances, from what the reduction order changes: a rank's gradient
 * is its f32 sum over its 10 samples (and 28 x 28 positions), then the two
 * ranks' sums are added, where one process sums all 20 in oneDNN's own
 * blocking. Only the rounding differs, by about eps sum|terms|
 * (eps = 6e-8); at the first step, at identical weights, the losses agree
 * to 3e-9 and the weights after it to one ulp (measured). The gradients
 * of the convolution biases and GroupNorm shifts that feed a GroupNorm are
 * differences of nearly cancelling sums, so their rounding reaches 1e-4
 * absolute, and the non-linear training (ReLU kinks, normalisation)
 * spreads such differences step by step: over 30 steps the losses differ
 * by at most 2.4e-3 (Lookahead; ERM 7.1e-4) and the final weights by
 * 5.5e-4 (ERM; Lookahead 1.2e-5), measured. The checks: the first step's
 * loss to 1e-6, every logged loss to 1e-2 and every final weight to 1e-2
 * absolute -- margins of 4 and 18 over what rounding produced, and far
 * below what one wrong sample or a missing 1/N would change (the first
 * step's loss by one sample's share of the mean, a weight by lr times a
 * whole gradient). A job of one rank reduces nothing and must
 * be bitwise the plain process.
 *
 * Skipped, with the reason, where mpirun is not installed or dgseg was
 * built without MPI (DG_MPI=OFF). CI runs as root, which Open MPI refuses
 * unless told: the test process, not the user's environment, sets
 * OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM) for the mpirun it starts. */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "app/metrics_log.h"
#include "common.h"
#include "data/fsutil.h"
#include "nets/core/safetensors.h"
#include "proc.h"

#ifdef DG_MPI
static const bool built_with_mpi = true;
#else
static const bool built_with_mpi = false;
#endif

#define RF_STEPS 30

static const char *const RF_CFG =
        "[data]\ndataset = rotated-fmnist\ntest_domains = rot0\nworkers = 0\n"
        "[model]\nname = mnist-cnn\n"
        "[optim]\nmethod = erm\nbase = sgd\nlr = 0.01\nschedule = constant\n"
        "[train]\niterations = 30\nbatch_size = 4\nlog_every = 1\n";

static char mpirun[256]; /* found on PATH by cannot_run */
static char cfg[128];

static void setup(void) {
    proc_setup("mpi");
    write_cfg(cfg, sizeof(cfg), "rf", RF_CFG);
    /* for the mpirun this test starts: CI runs as root; one thread per
     * rank on a 2-core machine */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMP_NUM_THREADS", "1", 1);
    /* a sanitizer build: Open MPI's components stay loaded until exit and
     * the leak check unwinds through its frame-pointer-less libraries, so
     * that what they keep is traced to them and suppressed (tests/proc.c) */
    setenv("OMPI_MCA_mca_base_component_disable_dlclose", "1", 1);
    const char *lsan = getenv("LSAN_OPTIONS");
    char *opts = dg_xasprintf("%s%sfast_unwind_on_malloc=0", lsan ? lsan : "",
            lsan && lsan[0] ? ":" : "");
    setenv("LSAN_OPTIONS", opts, 1);
    dg_free(opts);
}
static void teardown(void) { proc_teardown(); }

/* Why this machine cannot run the suite's claims (NULL: it can). */
static const char *cannot_run(void) {
    if (!built_with_mpi) return "dgseg was built without MPI (DG_MPI=OFF)";
    if (!find_on_path("mpirun", mpirun, sizeof(mpirun)))
        return "mpirun is not installed (Debian: openmpi-bin)";
    return NULL;
}

/* The first statement of every case: skipped, with the reason, where
 * this machine cannot run the suite's claims. */
#define SKIP_WITHOUT_MPI() DG_TEST_SKIP_IF(cannot_run(), "nothing data-parallel checked")

/* mpirun's options for a job on this machine: more ranks than cores
 * allowed, no binding (one rank per core would pin -np 1 to a core but
 * not the plain process), shared memory between the ranks only. */
#define MPIRUN_OPTS "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader", \
        "--mca", "btl_vader_single_copy_mechanism", "none"

/* `mpirun -np n dgseg train cfg output.dir=proc_dir/<tag> [extra]`;
 * returns the exit code, stderr into *err. */
static int train_np(const char *tag, int n, const char *extra, char **err) {
    char np[8], out[128];
    snprintf(np, sizeof(np), "%d", n);
    snprintf(out, sizeof(out), "output.dir=%s/%s", proc_dir, tag);
    const char *args[] = {MPIRUN_OPTS, "-np", np, DG_DGSEG_PATH, "train", cfg, out, extra, NULL};
    const int rc = wait_exit(spawn_exe(tag, mpirun, args), PROC_TIMEOUT_S);
    *err = err_of(tag);
    ck_assert_msg(rc >= 0, "mpirun -np %d dgseg train: still running after %.0f s:\n%s", n,
            PROC_TIMEOUT_S, *err);
    return rc;
}

/* Plain `dgseg train cfg output.dir=proc_dir/<tag> [extra]`, which must
 * succeed. */
static void train_plain(const char *tag, const char *extra) {
    char out[128];
    snprintf(out, sizeof(out), "output.dir=%s/%s", proc_dir, tag);
    const char *args[] = {"train", cfg, out, extra, NULL};
    char *err;
    const int rc = run_dgseg(tag, args, &err);
    ck_assert_msg(rc == 0, "dgseg train: exit %d:\n%s", rc, err);
    dg_free(err);
}

/* A file of classification run `tag` (its leave-one-domain-out folder). */
static char *run_file(const char *tag, const char *rel) {
    return dg_xasprintf("%s/%s/test-rot0/%s", proc_dir, tag, rel);
}

/* A file of segmentation run `tag`. */
static char *seg_file(const char *tag, const char *rel) {
    return dg_xasprintf("%s/%s/%s", proc_dir, tag, rel);
}

/* The n logged training losses of metrics.jsonl at path (freed here). */
static void losses_at(char *p, int n, double *loss) {
    dg_metrics_data md;
    ck_assert_int_eq(dg_metrics_read(&md, p), DG_STATUS_OK);
    const dg_series *s = dg_metrics_find(&md, "train", "loss");
    ck_assert_msg(s && s->n == n, "%s: %d train lines, want %d (one writer)", p, s ? s->n : -1,
            n);
    for (int i = 0; i < s->n; i++) loss[i] = s->value[i];
    dg_metrics_data_free(&md);
    dg_free(p);
}

/* The logged training losses of classification run `tag` (RF_STEPS). */
static void losses(const char *tag, double *loss) {
    losses_at(run_file(tag, "metrics.jsonl"), RF_STEPS, loss);
}

/* Every tensor of two checkpoints (paths, freed here): bitwise equal
 * (atol < 0), or the f32 model weights (not the optimizer's state) within
 * atol. Returns the largest difference of the weights. */
static double compare_checkpoint_files(char *pa, char *pb, double atol) {
    dg_tensor_reader a, b;
    ck_assert_int_eq(dg_tensor_reader_open(&a, pa), DG_STATUS_OK);
    ck_assert_int_eq(dg_tensor_reader_open(&b, pb), DG_STATUS_OK);
    ck_assert_uint_eq(dg_tensor_reader_count(&a), dg_tensor_reader_count(&b));
    double worst = 0;
    for (size_t i = 0; i < dg_tensor_reader_count(&a); i++) {
        const dg_st_tensor *ta = dg_tensor_reader_at(&a, i);
        const dg_st_tensor *tb = dg_tensor_reader_find(&b, ta->name);
        ck_assert_msg(tb && tb->end - tb->begin == ta->end - ta->begin, "%s", ta->name);
        const size_t bytes = ta->end - ta->begin;
        unsigned char *xa = dg_xmalloc(bytes + 1), *xb = dg_xmalloc(bytes + 1);
        ck_assert_int_eq(dg_tensor_reader_read_raw(&a, ta, xa), DG_STATUS_OK);
        ck_assert_int_eq(dg_tensor_reader_read_raw(&b, tb, xb), DG_STATUS_OK);
        if (atol < 0) {
            ck_assert_msg(memcmp(xa, xb, bytes) == 0, "%s differs between %s and %s", ta->name,
                    pa, pb);
        } else if (ta->dtype == DG_ST_F32 && strncmp(ta->name, "optim.", 6)) {
            const float *fa = (const float *)xa, *fb = (const float *)xb;
            for (uint64_t k = 0; k < ta->numel; k++) {
                const double d = fabs((double)fa[k] - (double)fb[k]);
                ck_assert_msg(d <= atol, "%s[%llu]: %.9g vs %.9g (tolerance %g)", ta->name,
                        (unsigned long long)k, fa[k], fb[k], atol);
                if (d > worst) worst = d;
            }
        }
        dg_free(xa);
        dg_free(xb);
    }
    dg_tensor_reader_close(&a);
    dg_tensor_reader_close(&b);
    dg_free(pa);
    dg_free(pb);
    return worst;
}

/* The same for two classification runs' final checkpoints. */
static double compare_checkpoints(const char *tag_a, const char *tag_b, double atol) {
    return compare_checkpoint_files(run_file(tag_a, "checkpoints/last.safetensors"),
            run_file(tag_b, "checkpoints/last.safetensors"), atol);
}

static const char *const methods[] = {"optim.method=erm", "optim.method=lookahead"};

START_TEST(two_ranks_train_what_one_process_trains_up_to_rounding) {
    SKIP_WITHOUT_MPI();
    const char *method = methods[_i];
    train_plain("one", method);
    char *err;
    const int rc = train_np("two", 2, method, &err);
    ck_assert_msg(rc == 0, "mpirun -np 2: exit %d:\n%s", rc, err);
    /* the ranks' own check of their weights, logged once by rank 0 */
    ck_assert_msg(strstr(err, "the 2 ranks hold identical weights after step 30"), "%s", err);
    ck_assert_msg(!strstr(err, "rank 1 of 2"), "rank 1 logged:\n%s", err);
    dg_free(err);
    double l1[RF_STEPS], l2[RF_STEPS];
    losses("one", l1);
    losses("two", l2);
    ck_assert_msg(fabs(l1[0] - l2[0]) <= 1e-6, "step 1: loss %.12g vs %.12g", l1[0], l2[0]);
    double worst = 0;
    for (int i = 0; i < RF_STEPS; i++) {
        ck_assert_msg(fabs(l1[i] - l2[i]) <= 1e-2, "%s step %d: loss %.9g vs %.9g", method,
                i + 1, l1[i], l2[i]);
        worst = fmax(worst, fabs(l1[i] - l2[i]));
    }
    const double dw = compare_checkpoints("one", "two", 1e-2);
    printf("mpi: %s: 2 ranks vs 1 process: max |dloss| %.3g, max |dweight| %.3g\n", method,
            worst, dw);
    /* only rank 0 wrote the run folder: its config and its lock */
    char p[256];
    snprintf(p, sizeof(p), "%s/two/config.ini", proc_dir);
    ck_assert_msg(dg_is_file(p), "%s", p);
}
END_TEST

START_TEST(one_rank_under_mpirun_is_bitwise_the_plain_process) {
    SKIP_WITHOUT_MPI();
    train_plain("plain", NULL);
    char *err;
    const int rc = train_np("np1", 1, NULL, &err);
    ck_assert_msg(rc == 0, "mpirun -np 1: exit %d:\n%s", rc, err);
    dg_free(err);
    double a[RF_STEPS], b[RF_STEPS];
    losses("plain", a);
    losses("np1", b);
    ck_assert_msg(memcmp(a, b, sizeof(a)) == 0, "the logged losses differ");
    compare_checkpoints("plain", "np1", -1); /* every tensor, optimizer state too */
}
END_TEST

/* What this slice cannot compute exactly with 2 ranks, and the key each
 * refusal must name. */
static const struct {
    const char *override, *names;
} refused[] = {
    {"train.batch_size=3", "train.batch_size = 3"},
};

START_TEST(unsupported_configurations_are_refused_under_two_ranks_with_exit_2) {
    SKIP_WITHOUT_MPI();
    char *err;
    const int rc = train_np("refused", 2, refused[_i].override, &err);
    ck_assert_msg(rc == 2 && strstr(err, refused[_i].names), "%s: exit %d:\n%s",
            refused[_i].override, rc, err);
    dg_free(err);
    char p[256];
    snprintf(p, sizeof(p), "%s/refused", proc_dir);
    ck_assert_msg(!dg_is_dir(p), "%s: the run folder was created", refused[_i].override);
}
END_TEST

START_TEST(other_commands_are_refused_under_two_ranks_with_exit_2) {
    SKIP_WITHOUT_MPI();
    const char *args[] = {MPIRUN_OPTS, "-np", "2", DG_DGSEG_PATH, "verify", cfg, NULL};
    const int rc = wait_exit(spawn_exe("verify", mpirun, args), PROC_TIMEOUT_S);
    char *err = err_of("verify");
    ck_assert_msg(rc == 2 && strstr(err, "only `dgseg train`, `eval`, `predict` and `bench` are "
            "data-parallel"),
            "exit %d:\n%s", rc, err);
    dg_free(err);
}
END_TEST


START_TEST(a_rank_that_fails_alone_ends_the_job_with_its_message) {
    SKIP_WITHOUT_MPI();
    /* rank 1 alone has too little memory for the model (DG_MEM_LIMIT in its
     * environment only: the configuration is the same), while rank 0 goes
     * on to its first collective and would wait there for ever */
    char out[128];
    snprintf(out, sizeof(out), "output.dir=%s/fail", proc_dir);
    const char *args[] = {MPIRUN_OPTS, "-np", "1", DG_DGSEG_PATH, "train", cfg, out, ":",
            "-np", "1", "/usr/bin/env", "DG_MEM_LIMIT=64K", DG_DGSEG_PATH, "train", cfg, out,
            NULL};
    const double t0 = now_s();
    const int rc = wait_exit(spawn_exe("fail", mpirun, args), PROC_TIMEOUT_S);
    char *err = err_of("fail");
    ck_assert_msg(rc > 0 && rc < 128, "exit %d after %.0f s:\n%s", rc, now_s() - t0, err);
    ck_assert_msg(strstr(err, "dgseg (rank 1 of 2): error:") && strstr(err, "train.batch_size"),
            "%s", err);
    dg_free(err);
}
END_TEST

/* Ranks given different overrides would train different things in one
 * job: refused before anything is written, exit 2, naming the cause. */
START_TEST(ranks_with_different_configurations_are_refused_with_exit_2) {
    SKIP_WITHOUT_MPI();
    char out[128];
    snprintf(out, sizeof(out), "output.dir=%s/differ", proc_dir);
    const char *args[] = {MPIRUN_OPTS, "-np", "1", DG_DGSEG_PATH, "train", cfg, out, ":",
            "-np", "1", DG_DGSEG_PATH, "train", cfg, out, "optim.lr=0.02", NULL};
    const int rc = wait_exit(spawn_exe("differ", mpirun, args), PROC_TIMEOUT_S);
    char *err = err_of("differ");
    ck_assert_msg(rc == 2 && strstr(err, "the ranks' resolved configurations differ"),
            "exit %d:\n%s", rc, err);
    char cfgini[192];
    snprintf(cfgini, sizeof(cfgini), "%s/differ/config.ini", proc_dir);
    ck_assert_msg(!dg_is_file(cfgini), "%s was written", cfgini);
    dg_free(err);
}
END_TEST

START_TEST(ranks_whose_weights_differ_stop_the_run_at_the_next_comparison) {
    SKIP_WITHOUT_MPI();
    /* rank 1 moves one weight by one ulp before the comparison after step 1 */
    setenv("DGSEG_FAULT_DIVERGE", "1", 1);
    char *err;
    const int rc = train_np("diverge", 2, NULL, &err);
    unsetenv("DGSEG_FAULT_DIVERGE");
    ck_assert_msg(rc == 1 && strstr(err, "step 1: the ranks' weights differ"), "exit %d:\n%s",
            rc, err);
    dg_free(err);
}
END_TEST

START_TEST(sigterm_to_mpirun_stops_every_rank_after_the_same_step_with_its_checkpoint) {
    SKIP_WITHOUT_MPI();
    char out[128];
    snprintf(out, sizeof(out), "output.dir=%s/term", proc_dir);
    const char *args[] = {MPIRUN_OPTS, "-np", "2", DG_DGSEG_PATH, "train", cfg, out,
            "train.iterations=100000", NULL};
    const pid_t pid = spawn_exe("term", mpirun, args);
    char *metrics = run_file("term", "metrics.jsonl");
    int rc = 0;
    ck_assert_msg(wait_for_file(pid, metrics, "\"step\":3,", PROC_TIMEOUT_S, &rc),
            "no third step (exit %d)", rc);
    kill(pid, SIGTERM); /* mpirun passes it on to every rank */
    rc = wait_exit(pid, PROC_TIMEOUT_S);
    char *err = err_of("term");
    /* the ranks see the signal at different steps; all stop after the
     * first step after which one saw it, and rank 0 says which */
    const char *said = strstr(err, "interrupted after step ");
    ck_assert_msg(rc == 1 && said, "exit %d:\n%s", rc, err);
    const long step = strtol(said + strlen("interrupted after step "), NULL, 10);
    ck_assert_msg(!strstr(said + 1, "interrupted after step "), "said twice:\n%s", err);
    char *ck = run_file("term", "checkpoints/last.safetensors");
    ck_assert_int_eq(checkpoint_step(ck), step);
    dg_free(ck);
    dg_free(metrics);
    dg_free(err);
}
END_TEST

/* The pids of mpirun's children (its local ranks) stopped by SIGSTOP, by
 * rank (OMPI_COMM_WORLD_RANK in each one's environment); the number found. */
static int stopped_ranks(pid_t parent, pid_t pids[2]) {
    int found = 0;
    DIR *d = opendir("/proc");
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const long pid = strtol(e->d_name, NULL, 10);
        if (pid <= 0) continue;
        char p[64], *stat;
        snprintf(p, sizeof(p), "/proc/%ld/stat", pid);
        if (!(stat = slurp(p, NULL))) continue;
        /* pid (comm) state ppid ...: comm may hold spaces, so from its ')' */
        const char *rp = strrchr(stat, ')');
        char state = 0;
        long ppid = 0;
        const bool ok = rp && sscanf(rp + 1, " %c %ld", &state, &ppid) == 2;
        dg_free(stat);
        if (!ok || ppid != parent || state != 'T') continue;
        snprintf(p, sizeof(p), "/proc/%ld/environ", pid);
        size_t n = 0;
        char *env = slurp(p, &n);
        for (size_t i = 0; env && i < n; i += strlen(env + i) + 1) {
            static const char key[] = "OMPI_COMM_WORLD_RANK=";
            if (strncmp(env + i, key, sizeof(key) - 1)) continue;
            const long r = strtol(env + i + sizeof(key) - 1, NULL, 10);
            if (r == 0 || r == 1) {
                pids[r] = (pid_t)pid;
                found++;
            }
        }
        dg_free(env);
    }
    closedir(d);
    return found;
}

/* Both ranks stop themselves at step 15 (DGSEG_FAULT_STOP, after step 10's
 * checkpoint); rank 1 is then killed with SIGKILL and rank 0 continued:
 * rank 0 enters step 16's collectives with a dead peer, and the job must
 * end (non-zero, no hang) with step 10's checkpoint intact, which a new
 * 2-rank job resumes to the end. */
START_TEST(a_rank_killed_mid_run_ends_the_job_and_its_checkpoint_resumes) {
    SKIP_WITHOUT_MPI();
    char out[128];
    snprintf(out, sizeof(out), "output.dir=%s/killed", proc_dir);
    const char *args[] = {MPIRUN_OPTS, "-np", "2", DG_DGSEG_PATH, "train", cfg, out,
            "train.checkpoint_every=10", NULL};
    setenv("DGSEG_FAULT_STOP", "step:15", 1);
    const pid_t pid = spawn_exe("killed", mpirun, args);
    unsetenv("DGSEG_FAULT_STOP");
    pid_t ranks[2] = {0, 0};
    const double t0 = now_s();
    while (stopped_ranks(pid, ranks) < 2 && now_s() - t0 < PROC_TIMEOUT_S) sleep_ms(50);
    ck_assert_msg(ranks[0] > 0 && ranks[1] > 0, "the two ranks did not stop at step 15");
    ck_assert_int_eq(kill(ranks[1], SIGKILL), 0);
    ck_assert_int_eq(kill(ranks[0], SIGCONT), 0);
    int rc = wait_exit(pid, PROC_TIMEOUT_S);
    char *err = err_of("killed");
    ck_assert_msg(rc > 0, "mpirun: exit %d after rank 1 was killed (-1: still running):\n%s",
            rc, err);
    dg_free(err);
    char *ck = run_file("killed", "checkpoints/last.safetensors");
    ck_assert_int_eq(checkpoint_step(ck), 10);
    dg_free(ck);
    rc = train_np("killed", 2, "train.resume=true", &err);
    ck_assert_msg(rc == 0 && strstr(err, "from step 10;"), "resume: exit %d:\n%s", rc, err);
    dg_free(err);
    ck = run_file("killed", "checkpoints/last.safetensors");
    ck_assert_int_eq(checkpoint_step(ck), RF_STEPS);
    dg_free(ck);
}
END_TEST

/* A checkpoint does not depend on the rank count (the step, the loaders'
 * positions and every state are global): a 2-rank run killed after its
 * checkpoint of step 10 resumes on 2 ranks to exactly the straight 2-rank
 * run, and as one plain process to the same run up to the order of the
 * f32 sums of steps 11-30 (the tolerance of the 1-vs-2 comparison above). */
START_TEST(a_run_stopped_on_two_ranks_resumes_on_two_or_one) {
    SKIP_WITHOUT_MPI();
    char *err;
    int rc = train_np("st2", 2, "train.checkpoint_every=10", &err);
    ck_assert_msg(rc == 0, "straight: exit %d:\n%s", rc, err);
    dg_free(err);
    setenv("DGSEG_FAULT_KILL", "step:15", 1); /* every rank, after step 10's checkpoint */
    rc = train_np("res2", 2, "train.checkpoint_every=10", &err);
    unsetenv("DGSEG_FAULT_KILL");
    ck_assert_msg(rc != 0, "the killed job exited 0:\n%s", err);
    dg_free(err);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp -r '%s/res2' '%s/res1'", proc_dir, proc_dir);
    ck_assert_int_eq(system(cmd), 0);
    rc = train_np("res2", 2, "train.resume=true", &err);
    ck_assert_msg(rc == 0 && strstr(err, "from step 10;"), "resume on 2 ranks: exit %d:\n%s", rc,
            err);
    dg_free(err);
    compare_checkpoints("st2", "res2", -1); /* bitwise: same ranks, same sums */
    char out[128];
    snprintf(out, sizeof(out), "output.dir=%s/res1", proc_dir);
    const char *args[] = {"train", cfg, out, "train.resume=true", NULL};
    rc = run_dgseg("res1", args, &err);
    ck_assert_msg(rc == 0 && strstr(err, "from step 10;"), "resume as one process: exit %d:\n%s",
            rc, err);
    dg_free(err);
    const double worst = compare_checkpoints("st2", "res1", 1e-2);
    ck_assert_msg(worst > 0, "resumed as one process, the weights equal the 2-rank run's "
            "bitwise: the resume did not run steps 11-30 as one process");
}
END_TEST

/* `mpirun -np 2 dgseg bench` times data-parallel ERM steps of DeepLabv3+
 * R18 (64 x 64, a whole batch of 4) and reports what they communicate:
 * the gradient's sums (4 bytes a parameter: 66.7 MB a step for the
 * network's 16.7 million, measured; checked loosely, > 12 MB) and the BN
 * statistics, the part of the gradient's buckets started during backward
 * (DeepLab's head finishes before the backbone: > 0), the blocking
 * reference and the hidden fraction within [0, 1]. What bench cannot time
 * in parallel is refused with exit 2. */
START_TEST(bench_under_two_ranks_reports_its_communication) {
    SKIP_WITHOUT_MPI();
    const char *args[] = {MPIRUN_OPTS, "-np", "2", DG_DGSEG_PATH, "bench", "--model",
            "deeplabv3plus-r18", "--size", "64", "--batch", "4", "--threads", "1", "--steps", "2",
            "--json", NULL};
    int rc = wait_exit(spawn_exe("bench", mpirun, args), PROC_TIMEOUT_S);
    char *err = err_of("bench");
    ck_assert_msg(rc == 0, "exit %d:\n%s", rc, err);
    dg_free(err);
    char p[256];
    snprintf(p, sizeof(p), "%s/bench.out", proc_dir);
    cJSON *j = read_json(p);
    const cJSON *comm = cJSON_GetObjectItemCaseSensitive(j, "comm");
    ck_assert_msg(comm, "no \"comm\" in the bench's JSON");
    const double ranks = cJSON_GetObjectItemCaseSensitive(comm, "ranks")->valuedouble;
    const double mb = cJSON_GetObjectItemCaseSensitive(comm, "mb_per_step")->valuedouble;
    const double early = cJSON_GetObjectItemCaseSensitive(comm, "early_buckets")->valuedouble;
    const double hidden = cJSON_GetObjectItemCaseSensitive(comm, "hidden_fraction")->valuedouble;
    const double blocking = cJSON_GetObjectItemCaseSensitive(comm, "blocking_s")->valuedouble;
    const double ips = cJSON_GetObjectItemCaseSensitive(j, "images_per_s")->valuedouble;
    printf("mpi: bench R18 64^2 batch 4 on 2 ranks: %.1f images/s, %.1f MB/step, early %.2f, "
           "blocking %.1f ms, hidden %.2f\n", ips, mb, early, 1e3 * blocking, hidden);
    ck_assert_msg(ranks == 2 && mb > 12 && early > 0 && early <= 1 && blocking > 0 &&
            hidden >= 0 && hidden <= 1 && ips > 0, "implausible communication report");
    cJSON_Delete(j);
    const char *infer[] = {MPIRUN_OPTS, "-np", "2", DG_DGSEG_PATH, "bench", "--model",
            "mnist-cnn", "--mode", "infer", NULL};
    rc = wait_exit(spawn_exe("infer", mpirun, infer), PROC_TIMEOUT_S);
    err = err_of("infer");
    ck_assert_msg(rc == 2 && strstr(err, "not --mode infer"), "exit %d:\n%s", rc, err);
    dg_free(err);
}
END_TEST

/* ---- SAF: a bank of every sample's logits, fed the whole batch ------------ */

/* A DomainBed tree (3 domains x 2 classes x 5 images, test domain env0):
 * 8 training images per domain, so with 2 per domain and step an epoch
 * is 4 steps; SAF compares each sample's logits with the epoch before
 * (saf_epochs_back 1) from epoch 1 on, i.e. from step 5, with a weight
 * (saf_lambda 1) that makes the term most of the loss there. The MNIST
 * CNN (GroupNorm, no batch statistics), SGD. */
#define SAF_STEPS 12

static void saf_setup(void) {
    setup();
    char root[128], text[768];
    snprintf(root, sizeof(root), "%s/db", proc_dir);
    make_tiny_domainbed(root);
    snprintf(text, sizeof(text),
            "[data]\ndataset = domainbed:%s\ntest_domains = env0\nimage_size = 28\nworkers = 0\n"
            "[model]\nname = mnist-cnn\n"
            "[optim]\nmethod = saf\nbase = sgd\nlr = 0.02\nschedule = constant\n"
            "saf_epochs_back = 1\nsaf_start_epoch = 0\nsaf_lambda = 1\n"
            "[train]\niterations = %d\nbatch_size = 2\nlog_every = 1\n[eval]\nbatch_size = 4\n",
            root, SAF_STEPS);
    write_cfg(cfg, sizeof(cfg), "saf", text);
}

/* Rank r computes sample r of each domain's pair, and an epoch later a
 * sample may be on the other rank: a bank of each rank's own samples
 * misses or misweights the term from step 5 on (bug control, measured:
 * step 5's loss 4.46 on 2 ranks against the one process's 2.23; ERM's is
 * 0.0024). Fed the whole batch, the ranks follow the one process up to
 * the order of the gradient sums (measured: losses relative 4.0e-7 at
 * most over the 12 steps, final weights 9.1e-8); bounds 1e-4 for both. */
START_TEST(two_ranks_feed_saf_bank_the_whole_batch) {
    SKIP_WITHOUT_MPI();
    train_plain("one", NULL);
    char *err;
    const int rc = train_np("two", 2, NULL, &err);
    ck_assert_msg(rc == 0, "mpirun -np 2: exit %d:\n%s", rc, err);
    dg_free(err);
    double l1[SAF_STEPS], l2[SAF_STEPS];
    losses_at(dg_xasprintf("%s/one/test-env0/metrics.jsonl", proc_dir), SAF_STEPS, l1);
    losses_at(dg_xasprintf("%s/two/test-env0/metrics.jsonl", proc_dir), SAF_STEPS, l2);
    ck_assert_msg(l1[4] > 1.0, "step 5: loss %.6g: the SAF term is not on", l1[4]);
    double worst = 0;
    for (int i = 0; i < SAF_STEPS; i++) {
        const double rel = fabs(l1[i] - l2[i]) / fabs(l1[i]);
        ck_assert_msg(rel <= 1e-4, "step %d: loss %.9g (one process) vs %.9g (2 ranks)", i + 1,
                l1[i], l2[i]);
        worst = fmax(worst, rel);
    }
    const double dw = compare_checkpoint_files(
            dg_xasprintf("%s/one/test-env0/checkpoints/last.safetensors", proc_dir),
            dg_xasprintf("%s/two/test-env0/checkpoints/last.safetensors", proc_dir), 1e-4);
    printf("mpi: saf: 2 ranks vs 1 process: max relative |dloss| %.3g, max |dweight| %.3g\n",
            worst, dw);
}
END_TEST

/* `mpirun -np 2 dgseg eval` of a classifier (the DomainBed tree, eval
 * batches of 4: 2 in- and 1 out-split batch a domain, so the ranks' shares differ): rank
 * r runs batches r, r+2, ... of every domain and the counts are added; the
 * --json file is byte for byte the one process's. */
START_TEST(two_ranks_evaluate_a_classifier_exactly_as_one_process) {
    SKIP_WITHOUT_MPI();
    train_plain("cls", "optim.method=erm");
    char *ck = dg_xasprintf("%s/cls/test-env0/checkpoints/last.safetensors", proc_dir);
    char one[160], two[160];
    snprintf(one, sizeof(one), "%s/one.json", proc_dir);
    snprintf(two, sizeof(two), "%s/two.json", proc_dir);
    const char *pargs[] = {"eval", cfg, "--checkpoint", ck, "--json", one, NULL};
    char *err;
    int rc = run_dgseg("eval-one", pargs, &err);
    ck_assert_msg(rc == 0, "dgseg eval: exit %d:\n%s", rc, err);
    dg_free(err);
    const char *margs[] = {MPIRUN_OPTS, "-np", "2", DG_DGSEG_PATH, "eval", cfg, "--checkpoint",
            ck, "--json", two, NULL};
    rc = wait_exit(spawn_exe("eval-two", mpirun, margs), PROC_TIMEOUT_S);
    err = err_of("eval-two");
    ck_assert_msg(rc == 0, "mpirun -np 2 dgseg eval: exit %d:\n%s", rc, err);
    dg_free(err);
    size_t n1, n2;
    char *a = read_file(one, &n1), *b = read_file(two, &n2);
    ck_assert_msg(n1 == n2 && !memcmp(a, b, n1) && strstr(a, "env2"),
            "the 2-rank evaluation differs:\n%s\n---\n%s", a, b);
    dg_free(a), dg_free(b), dg_free(ck);
}
END_TEST

/* ---- segmentation: DeepLabv3+ R18 with synchronised BatchNorm --------------- */

/* Two sources of `dgseg synth` output (64 x 32 images, 6 per domain), 32 x
 * 32 crops, train.batch_size 4 per source: a global batch of 8, each of 2
 * ranks computing two images of each source; the Cityscapes-like target. */
static char seg_cfg[128];

static void seg_setup(void) {
    setup();
    char synth[160], text[1024];
    snprintf(synth, sizeof(synth), "%s/synth", proc_dir);
    make_tiny_synth(synth, 64, 32, 6);
    snprintf(text, sizeof(text),
            "[data]\nsources = gtav:%s/gtav, synthia:%s/synthia\n"
            "targets = cityscapes:%s/cityscapes\ncrop_size = 32\nworkers = 0\n"
            "class_uniform_tile = 16\n"
            "[model]\nname = deeplabv3plus-r18\n"
            "[optim]\nmethod = erm\nlr = 0.01\nla_k = 5\nla_bn_refresh_final = 4\n"
            "[train]\niterations = 20\nbatch_size = 4\nlog_every = 1\ncheckpoint_every = 100\n",
            synth, synth, synth);
    write_cfg(seg_cfg, sizeof(seg_cfg), "seg", text);
}

/* `[mpirun -np n] dgseg train seg_cfg output.dir=proc_dir/<tag> [e1 e2 e3]`
 * (n = 0: plain; NULL ends the overrides), which must succeed; its stderr. */
static char *seg_train(const char *tag, int n, const char *e1, const char *e2, const char *e3) {
    char np[8], out[128];
    snprintf(np, sizeof(np), "%d", n);
    snprintf(out, sizeof(out), "output.dir=%s/%s", proc_dir, tag);
    const char *margs[] = {MPIRUN_OPTS, "-np", np, DG_DGSEG_PATH, "train", seg_cfg, out, e1, e2,
            e3, NULL};
    const char *pargs[] = {"train", seg_cfg, out, e1, e2, e3, NULL};
    char *err;
    int rc;
    if (n) {
        rc = wait_exit(spawn_exe(tag, mpirun, margs), PROC_TIMEOUT_S);
        err = err_of(tag);
    } else {
        rc = run_dgseg(tag, pargs, &err);
    }
    ck_assert_msg(rc == 0, "%s: exit %d:\n%s", tag, rc, err);
    return err;
}

/* One f32 tensor of run tag's final checkpoint (allocated; *n its length). */
static float *seg_tensor(const char *tag, const char *name, uint64_t *n) {
    char *p = seg_file(tag, "checkpoints/last.safetensors");
    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, p), DG_STATUS_OK);
    const dg_st_tensor *t = dg_tensor_reader_find(&r, name);
    ck_assert_msg(t && t->dtype == DG_ST_F32, "%s: no f32 %s", p, name);
    float *v = dg_xmalloc((size_t)(t->end - t->begin) + 1);
    ck_assert_int_eq(dg_tensor_reader_read_raw(&r, t, v), DG_STATUS_OK);
    *n = t->numel;
    dg_tensor_reader_close(&r);
    dg_free(p);
    return v;
}

/* The methods, and what the gradient comparison takes: DGSAM with
 * optim.dgsam_rho = 0 (see below). */
static const struct {
    const char *method, *extra;
} seg_methods[] = {
    {"optim.method=erm", "train.iterations=1"},
    {"optim.method=lookahead", "train.iterations=1"},
    {"optim.method=sam", "train.iterations=1"},
    {"optim.method=dgsam", "optim.dgsam_rho=0"},
    {"optim.method=dgsam", "train.iterations=1"},
    {"optim.method=lookbehind-sam", "optim.sam_rho=0"},
    {"optim.method=lookbehind-sam", "train.iterations=1"},
    {"optim.method=swad", "optim.swad_eval_every=1"},
};

/* The first step of 2 ranks (sync_bn, the default) against one process at
 * the same initial weights that computes its BatchNorm statistics the way
 * the ranks do (DGSEG_TEST_REPLICA_STATS: double sums, app/cli.h): the
 * loss to 1e-5 and the first step's gradient, read as the SGD momentum
 * buffer after it (g + weight decay), to 1e-4 in relative L2 norm, for
 * ERM, Lookahead and SAM. What separates the two is then the order of the
 * sums only (each rank's share summed, then the shares), which BatchNorm's
 * backward over 8 images amplifies: measured 1e-15 (loss) and 1e-6 (ERM,
 * Lookahead) or 7e-6 (SAM, whose second gradient is taken at a point the
 * first one chose) on the gradient. Anything wrong moves them by orders of
 * magnitude more (per-rank statistics, model.sync_bn = false: 1.4 on the
 * gradient and 6e-2 on the loss; a rank's loss normalised by its own pixel
 * count: 2e-2 on the loss). Against a plain process, whose statistics are
 * oneDNN's f32 sums, the gradient differs by 7.8e-6 here and by up to
 * 2.4e-3 with 2 images per source (measured): BatchNorms over few
 * values per channel (ASPP's image pooling over 2 to 4 images) turn f32
 * rounding of nearly equal values into visible differences; a plain process
 * whose learning rate is changed by 1e-6 relative diverges as much within 4
 * steps, so no comparison over many steps can be tighter than that. Then
 * the ranks' weights agree bitwise after the step (their own check).
 * DGSAM (two sources: one sub-batch forward per domain, each domain's
 * gradient a sum over the ranks) is compared with optim.dgsam_rho = 0,
 * its domain passes at the unperturbed weights: measured 1e-6. With its
 * radius of 0.05 its first gradient is hypersensitive here: one process
 * whose radius is changed by 2e-7 relative moves it by 0.18, exactly as
 * far as 2 ranks do (measured), so that case checks the ranks' agreement
 * and the loss only. Lookbehind-SAM likewise (rho 0: 8e-7; at 0.05 a 2e-7
 * change of rho moves its first gradient by 3.5e-2, 2 ranks by 1.2e-2).
 * SWAD's first step is ERM's, then its evaluation (the sources' validation
 * loss, split across the ranks) and, the run ending, its average and BN
 * refresh: 1e-6. */
START_TEST(two_ranks_take_the_first_step_one_process_takes) {
    SKIP_WITHOUT_MPI();
    const char *method = seg_methods[_i].method, *extra = seg_methods[_i].extra;
    const bool grad = strcmp(extra, "train.iterations=1") || (strcmp(method,
            "optim.method=dgsam") && strcmp(method, "optim.method=lookbehind-sam"));
    setenv("DGSEG_TEST_REPLICA_STATS", "1", 1);
    dg_free(seg_train("one", 0, method, "train.iterations=1", extra));
    unsetenv("DGSEG_TEST_REPLICA_STATS");
    char *err = seg_train("two", 2, method, "train.iterations=1", extra);
    ck_assert_msg(strstr(err, "the 2 ranks hold identical weights after step 1"), "%s", err);
    dg_free(err);
    double l1, l2;
    losses_at(seg_file("one", "metrics.jsonl"), 1, &l1);
    losses_at(seg_file("two", "metrics.jsonl"), 1, &l2);
    const double dl = fabs(l1 - l2);
    ck_assert_msg(dl <= 1e-5, "%s: step 1 loss %.12g vs %.12g", method, l1, l2);
    uint64_t n1, n2;
    float *g1 = seg_tensor("one", "optim.sgd.momentum", &n1);
    float *g2 = seg_tensor("two", "optim.sgd.momentum", &n2);
    ck_assert_uint_eq(n1, n2);
    double num = 0, den = 0;
    for (uint64_t k = 0; k < n1; k++) {
        num += ((double)g1[k] - g2[k]) * ((double)g1[k] - g2[k]);
        den += (double)g1[k] * g1[k];
    }
    const double rel = sqrt(num / den);
    ck_assert_msg(den > 0 && (rel <= 1e-4 || !grad),
            "%s %s: first gradient differs by %.3g (relative L2)", method, extra, rel);
    printf("mpi: segmentation %s %s: step 1, 2 ranks vs 1 process: |dloss| %.3g, gradient %.3g "
           "(relative L2%s)\n", method, extra, dl, rel, grad ? "" : ", not compared");
    dg_free(g1), dg_free(g2);
}
END_TEST

/* MESA's distillation term is a mean over the whole batch's valid pixels:
 * with the term on from the second step (optim.mesa_start_epoch = 0; 6
 * images per source, 4 per step: step 2 starts epoch 1), 2 ranks' logged
 * loss of step 2 -- cross-entropy plus the term, about 0.29 of it -- equals
 * that of one process computing its statistics the ranks' way to 1e-5
 * (measured 5e-7; a term each rank averaged over its own pixels would be
 * twice its share: 0.29 off). */
START_TEST(two_ranks_add_up_mesa_term_of_the_whole_batch) {
    SKIP_WITHOUT_MPI();
    setenv("DGSEG_TEST_REPLICA_STATS", "1", 1);
    dg_free(seg_train("one", 0, "optim.method=mesa", "optim.mesa_start_epoch=0",
            "train.iterations=2"));
    unsetenv("DGSEG_TEST_REPLICA_STATS");
    char *err = seg_train("two", 2, "optim.method=mesa", "optim.mesa_start_epoch=0",
            "train.iterations=2");
    ck_assert_msg(strstr(err, "the 2 ranks hold identical weights after step 2"), "%s", err);
    dg_free(err);
    double l[2][2];
    losses_at(seg_file("one", "metrics.jsonl"), 2, l[0]);
    losses_at(seg_file("two", "metrics.jsonl"), 2, l[1]);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(fabs(l[0][i] - l[1][i]) <= 1e-5, "step %d: loss %.12g vs %.12g", i + 1,
                l[0][i], l[1][i]);
    printf("mpi: segmentation MESA: step 2 (term on), 2 ranks vs 1 process: |dloss| %.3g\n",
            fabs(l[0][1] - l[1][1]));
}
END_TEST

/* The target's mIoU in results.json of run tag, or of an eval --json file. */
static double json_miou(const char *path) {
    size_t n = 0;
    char *t = dg_file_read_all(path, &n);
    ck_assert_msg(t, "%s", path);
    const char *m = strstr(t, "\"miou\":");
    ck_assert_msg(m, "%s: no miou", path);
    const double v = strtod(m + strlen("\"miou\":"), NULL);
    dg_free(t);
    return v;
}

/* 20 steps on 2 ranks: the ranks agree after every step, rank 0 alone
 * writes the run, and the final evaluation, split across the ranks (each
 * its share of the target's images, confusion matrices added), gives
 * exactly the mIoU that one process evaluating the final checkpoint gets;
 * so do `dgseg eval` and (its files) `dgseg predict` under mpirun. */
START_TEST(two_ranks_evaluate_their_weights_exactly_as_one_process) {
    SKIP_WITHOUT_MPI();
    char *err = seg_train("two", 2, "optim.method=lookahead", NULL, NULL);
    ck_assert_msg(strstr(err, "the 2 ranks hold identical weights after step 20"), "%s", err);
    ck_assert_msg(!strstr(err, "rank 1 of 2"), "rank 1 logged:\n%s", err);
    dg_free(err);
    /* DeepLabv3+ says when its head and each block are done: most of the
     * gradient's buckets start summing before backward ends (R18 with its
     * heads: 17.8M parameters in 5 buckets of 4 Mi floats, 4 start early) */
    char *mp = seg_file("two", "metrics.jsonl");
    dg_metrics_data md;
    ck_assert_int_eq(dg_metrics_read(&md, mp), DG_STATUS_OK);
    const dg_series *eb = dg_metrics_find(&md, "comm", "early_buckets");
    ck_assert_msg(eb && eb->n == 20, "%s: %d comm lines", mp, eb ? eb->n : -1);
    for (int i = 0; i < eb->n; i++)
        ck_assert_msg(eb->value[i] >= 0.5, "step %d: %.2f of the buckets started early", i + 1,
                eb->value[i]);
    dg_metrics_data_free(&md);
    dg_free(mp);
    char *res = seg_file("two", "results.json"), *ck = seg_file("two",
            "checkpoints/last.safetensors");
    char json[192];
    snprintf(json, sizeof(json), "%s/eval.json", proc_dir);
    const char *args[] = {"eval", seg_cfg, "--checkpoint", ck, "--json", json, NULL};
    const int rc = run_dgseg("eval", args, &err);
    ck_assert_msg(rc == 0, "dgseg eval: exit %d:\n%s", rc, err);
    dg_free(err);
    const double a = json_miou(res), b = json_miou(json);
    ck_assert_msg(a == b && a > 0, "mIoU: 2 ranks %.2f, one process %.2f", a, b);
    /* `dgseg eval` itself under mpirun: the same split, rank 0 writes */
    char json2[192];
    snprintf(json2, sizeof(json2), "%s/eval2.json", proc_dir);
    const char *margs[] = {MPIRUN_OPTS, "-np", "2", DG_DGSEG_PATH, "eval", seg_cfg,
            "--checkpoint", ck, "--json", json2, NULL};
    const int rc2 = wait_exit(spawn_exe("eval2", mpirun, margs), PROC_TIMEOUT_S);
    err = err_of("eval2");
    ck_assert_msg(rc2 == 0, "mpirun -np 2 dgseg eval: exit %d:\n%s", rc2, err);
    dg_free(err);
    const double c = json_miou(json2);
    ck_assert_msg(c == b, "mIoU: mpirun -np 2 dgseg eval %.2f, one process %.2f", c, b);
    /* `dgseg predict` under mpirun: each rank its share of the inputs, the
     * same files, bit for bit, as one process writes */
    char in[3][192], od1[192], od2[192];
    for (int i = 0; i < 3; i++)
        snprintf(in[i], sizeof(in[i]), "%s/synth/gtav/images/%05d.png", proc_dir, i + 1);
    snprintf(od1, sizeof(od1), "%s/pred1", proc_dir);
    snprintf(od2, sizeof(od2), "%s/pred2", proc_dir);
    const char *pargs[] = {"predict", "--checkpoint", ck, "--input", in[0], in[1], in[2], "--out",
            od1, NULL};
    ck_assert_int_eq(run_dgseg("pred1", pargs, &err), 0);
    dg_free(err);
    const char *qargs[] = {MPIRUN_OPTS, "-np", "2", DG_DGSEG_PATH, "predict", "--checkpoint", ck,
            "--input", in[0], in[1], in[2], "--out", od2, NULL};
    const int rc3 = wait_exit(spawn_exe("pred2", mpirun, qargs), PROC_TIMEOUT_S);
    err = err_of("pred2");
    ck_assert_msg(rc3 == 0, "mpirun -np 2 dgseg predict: exit %d:\n%s", rc3, err);
    dg_free(err);
    for (int i = 0; i < 3; i++) {
        char p1[256], p2[256];
        snprintf(p1, sizeof(p1), "%s/%05d.png", od1, i + 1);
        snprintf(p2, sizeof(p2), "%s/%05d.png", od2, i + 1);
        size_t n1 = 0, n2 = 0;
        char *b1 = dg_file_read_all(p1, &n1), *b2 = dg_file_read_all(p2, &n2);
        ck_assert_msg(b1 && b2 && n1 == n2 && !memcmp(b1, b2, n1), "%s and %s differ", p1, p2);
        dg_free(b1), dg_free(b2);
    }
    dg_free(res), dg_free(ck);
}
END_TEST

/* A segmentation run's checkpoint carries what a resume needs on any rank
 * count (the loaders' positions, class-uniform draws, the BatchNorm
 * statistics the ranks share): 2 ranks killed after the checkpoint of step
 * 5 resume on 2 ranks to exactly the straight 2-rank run (the same sums in
 * the same order), and as one process to the end of the run. */
START_TEST(a_segmentation_run_stopped_on_two_ranks_resumes_exactly_on_two) {
    SKIP_WITHOUT_MPI();
    dg_free(seg_train("st", 2, "train.iterations=10", "train.checkpoint_every=5", NULL));
    char np[8] = "2", out[128];
    snprintf(out, sizeof(out), "output.dir=%s/res", proc_dir);
    const char *kargs[] = {MPIRUN_OPTS, "-np", np, DG_DGSEG_PATH, "train", seg_cfg, out,
            "train.iterations=10", "train.checkpoint_every=5", NULL};
    setenv("DGSEG_FAULT_KILL", "step:8", 1); /* every rank, after step 5's checkpoint */
    const int rc = wait_exit(spawn_exe("res-kill", mpirun, kargs), PROC_TIMEOUT_S);
    unsetenv("DGSEG_FAULT_KILL");
    ck_assert_msg(rc != 0, "the killed job exited 0");
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp -r '%s/res' '%s/res1'", proc_dir, proc_dir);
    ck_assert_int_eq(system(cmd), 0);
    char *err = seg_train("res", 2, "train.iterations=10", "train.checkpoint_every=5",
            "train.resume=true");
    ck_assert_msg(strstr(err, "from step 5;"), "resume on 2 ranks:\n%s", err);
    dg_free(err);
    compare_checkpoint_files(seg_file("st", "checkpoints/last.safetensors"),
            seg_file("res", "checkpoints/last.safetensors"), -1);
    err = seg_train("res1", 0, "train.iterations=10", "train.checkpoint_every=5",
            "train.resume=true");
    ck_assert_msg(strstr(err, "from step 5;"), "resume as one process:\n%s", err);
    dg_free(err);
    char *ck = seg_file("res1", "checkpoints/last.safetensors");
    ck_assert_int_eq(checkpoint_step(ck), 10);
    dg_free(ck);
}
END_TEST

Suite *mpi_suite(void) {
    Suite *s = suite_create("mpi");
    TCase *tc = tcase_create("mpirun");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_loop_test(tc, two_ranks_train_what_one_process_trains_up_to_rounding, 0,
            (int)DG_ARRAY_LEN(methods));
    tcase_add_test(tc, one_rank_under_mpirun_is_bitwise_the_plain_process);
    tcase_add_loop_test(tc, unsupported_configurations_are_refused_under_two_ranks_with_exit_2, 0,
            (int)DG_ARRAY_LEN(refused));
    tcase_add_test(tc, other_commands_are_refused_under_two_ranks_with_exit_2);
    tcase_add_test(tc, a_rank_that_fails_alone_ends_the_job_with_its_message);
    tcase_add_test(tc, ranks_with_different_configurations_are_refused_with_exit_2);
    tcase_add_test(tc, a_run_stopped_on_two_ranks_resumes_on_two_or_one);
    tcase_add_test(tc, a_rank_killed_mid_run_ends_the_job_and_its_checkpoint_resumes);
    tcase_add_test(tc, ranks_whose_weights_differ_stop_the_run_at_the_next_comparison);
    tcase_add_test(tc, sigterm_to_mpirun_stops_every_rank_after_the_same_step_with_its_checkpoint);
    tcase_add_test(tc, bench_under_two_ranks_reports_its_communication);
    suite_add_tcase(s, tc);
    TCase *tf = tcase_create("classification");
    tcase_add_checked_fixture(tf, saf_setup, teardown);
    tcase_set_timeout(tf, 120);
    tcase_add_test(tf, two_ranks_feed_saf_bank_the_whole_batch);
    tcase_add_test(tf, two_ranks_evaluate_a_classifier_exactly_as_one_process);
    suite_add_tcase(s, tf);
    TCase *ts = tcase_create("segmentation");
    tcase_add_checked_fixture(ts, seg_setup, teardown);
    tcase_set_timeout(ts, 240);
    tcase_add_loop_test(ts, two_ranks_take_the_first_step_one_process_takes, 0,
            (int)DG_ARRAY_LEN(seg_methods));
    tcase_add_test(ts, two_ranks_add_up_mesa_term_of_the_whole_batch);
    tcase_add_test(ts, two_ranks_evaluate_their_weights_exactly_as_one_process);
    tcase_add_test(ts, a_segmentation_run_stopped_on_two_ranks_resumes_exactly_on_two);
    suite_add_tcase(s, ts);
    return s;
}
