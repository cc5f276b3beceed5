/* tests/test_faults.c -- fault injection on the real `dgseg train` (issue
 * 24; docs/design.md §9 reliability), through the process helpers of
 * tests/proc.h.
 *
 * Kill anywhere: a Lookahead run (3 steps, a checkpoint at step 2, a final
 * BN refresh of 4 batches, a final evaluation on 4 target images, curves
 * and results) is killed with a real SIGKILL at named points -- inside the
 * steps, half-way through each checkpoint file and just before and after
 * its rename, during the final BN refresh, during the final evaluation and
 * around each results file. Each test kills a chain: the run, then its
 * resume, then that one's resume, ... each at its own point (a kill of a
 * resumed run is a kill too, and a chain costs one run per point instead
 * of two); the last `train --resume` must end with
 * checkpoints/last.safetensors, results.json and results.md byte-identical
 * to an uninterrupted run's, metrics.jsonl identical but for its timings,
 * curves.png drawn and no temporary file left. Between two writes a run
 * only computes, so a kill anywhere inside a step leaves what a kill at
 * its "step" point leaves. The points are reached
 * deterministically: DGSEG_FAULT_KILL=<point>:<n> (app/cli.h) makes dgseg
 * raise SIGKILL on itself at the n-th arrival, and tests/fault_preload.c
 * (LD_PRELOAD) adds the points inside write() and rename().
 *
 * Disk full: the run folder on a real small tmpfs, filled to the last
 * page by a ballast file while dgseg is stopped just before each write
 * (DGSEG_FAULT_STOP): config.ini, metrics.jsonl, the first and the final
 * checkpoint, curves.png, results.md, results.json. Every such run exits
 * 1 naming the file it could not write; what was written before is intact
 * (the earlier checkpoint keeps its bytes and loads, metrics.jsonl holds
 * whole lines, no truncated PNG or temporary file is left), and a run
 * stopped by a full final checkpoint resumes, once there is room, to the
 * uninterrupted run's bytes. A metrics line that finds the disk full
 * half-way is cut off again (the metrics log on its own, in process).
 * Skipped with the reason where a tmpfs cannot be mounted (not root, no
 * CAP_SYS_ADMIN).
 *
 * The reference run and the synthetic data are made once (by the first
 * test that needs them) under a folder the unchecked fixture creates and
 * the runner's exit removes; run folders live on a tmpfs there when one can be
 * mounted (the 285 MB checkpoints then cost no disk syncs). */
#define _GNU_SOURCE /* fallocate */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "app/metrics_log.h"
#include "common.h"
#include "data/fsutil.h"
#include "nets/core/safetensors.h"
#include "proc.h"

#ifndef DG_FAULT_PRELOAD
#error "DG_FAULT_PRELOAD (tests/fault_preload.c's library) must be defined by CMake"
#endif

/* 3 steps, a checkpoint at step 2 and the final one at step 3; Lookahead's
 * final BN refresh of 4 batches; 4 cityscapes images evaluated. */
static const char *LA_CFG =
        "[data]\nsources = gtav:%s/synth/gtav\ntargets = cityscapes:%s/synth/cityscapes\n"
        "crop_size = 32\nworkers = 1\nclass_uniform_tile = 16\n"
        "[model]\nname = deeplabv3plus-r18\n"
        "[optim]\nmethod = lookahead\nla_k = 2\nla_bn_refresh_final = 4\n"
        "[train]\niterations = 3\nbatch_size = 2\nlog_every = 1\ncheckpoint_every = 2\n";

#define EVAL_IMAGES 4 /* make_synth's --per-domain */

static bool runs_on_tmpfs; /* proc_dir/t is a tmpfs */

static pid_t suite_owner; /* the runner; Check's forked children exit too */

/* At the runner's exit: the folder of the suite_setup below. */
static void suite_cleanup(void) {
    if (getpid() != suite_owner) return;
    char t[128], full[160], m[128];
    snprintf(t, sizeof(t), "%s/t", proc_dir);
    snprintf(full, sizeof(full), "%s/full", t);
    snprintf(m, sizeof(m), "%s/m", proc_dir);
    umount2(full, MNT_DETACH); /* left mounted by a failed disk-full test */
    umount2(m, MNT_DETACH);
    if (runs_on_tmpfs) umount2(t, MNT_DETACH);
    proc_teardown();
}

/* Unchecked: runs in the runner (pure C, no OpenMP), once for both test
 * cases, so that they share the synthetic data and the reference run. */
static void suite_setup(void) {
    static bool done;
    if (done) return;
    done = true;
    suite_owner = getpid();
    proc_setup("faults");
    char t[128];
    snprintf(t, sizeof(t), "%s/t", proc_dir);
    ck_assert_int_eq(mkdir(t, 0755), 0);
    runs_on_tmpfs = mount("tmpfs", t, "tmpfs", 0, "size=2g") == 0;
    atexit(suite_cleanup);
}

/* ---- files ------------------------------------------------------------------ */

static void path_of(char *buf, size_t size, const char *run, const char *file) {
    snprintf(buf, size, "%s/t/%s%s%s", proc_dir, run, file[0] ? "/" : "", file);
}

/* Files in dir (and dir/checkpoints) whose name holds ".tmp." */
static int count_temporaries(const char *run) {
    int n = 0;
    for (int k = 0; k < 2; k++) {
        char d[256];
        path_of(d, sizeof(d), run, k ? "checkpoints" : "");
        DIR *dp = opendir(d);
        for (struct dirent *e; dp && (e = readdir(dp));)
            if (strstr(e->d_name, ".tmp.")) n++;
        if (dp) closedir(dp);
    }
    return n;
}

/* metrics.jsonl with the "img_s" values (timings) taken out of each line;
 * every line must be whole. */
static char *metrics_without_timings(const char *run) {
    char p[256];
    path_of(p, sizeof(p), run, "metrics.jsonl");
    size_t n;
    char *s = read_file(p, &n);
    ck_assert_msg(n == 0 || s[n - 1] == '\n', "%s: the last line is not whole:\n%s", p, s);
    for (char *t; (t = strstr(s, ",\"img_s\":"));) {
        const size_t cut = strcspn(t + 1, ",}") + 1;
        memmove(t, t + cut, strlen(t + cut) + 1);
    }
    return s;
}

/* True when file is the same bytes in both run folders (false when either
 * is missing). */
static bool same_file(const char *run, const char *ref, const char *file) {
    char a[256], b[256];
    path_of(a, sizeof(a), run, file);
    path_of(b, sizeof(b), ref, file);
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    const bool same = x && y && na == nb && !memcmp(x, y, na);
    dg_free(x);
    dg_free(y);
    return same;
}

/* A whole PNG: its signature first, its IEND chunk last. */
static bool is_whole_png(const char *path) {
    static const unsigned char iend[8] = {'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
    size_t n;
    char *s = slurp(path, &n);
    const bool ok = s && n > 20 && !memcmp(s, "\x89PNG\r\n\x1a\n", 8) &&
            !memcmp(s + n - 8, iend, 8);
    dg_free(s);
    return ok;
}

static void remove_run(const char *run) {
    char p[256];
    path_of(p, sizeof(p), run, "");
    remove_tree(p, 4);
}

/* ---- runs -------------------------------------------------------------------- */

/* The suite's synthetic data, configuration and uninterrupted reference
 * run (t/ref), made by the first test that needs them. */
static void need_reference(char *cfg, size_t size) {
    write_cfg(cfg, size, "la", LA_CFG);
    char done[256];
    path_of(done, sizeof(done), "ref.done", "");
    if (access(done, F_OK) == 0) return;
    make_synth();
    char out[256];
    snprintf(out, sizeof(out), "output.dir=%s/t/ref", proc_dir);
    const char *args[] = {"train", cfg, out, NULL};
    char *err;
    const int rc = run_dgseg("ref", args, &err);
    ck_assert_msg(rc == 0, "the uninterrupted run: exit %d:\n%s", rc, err);
    dg_free(err);
    write_file(done, "", 0);
}

/* Starts `dgseg train cfg output.dir=t/<run> [extra]` with var=value (a
 * fault) and the preload library in its environment. */
static pid_t start_train(const char *tag, const char *cfg, const char *run, const char *extra,
        const char *var, const char *value) {
    char out[256], asan[512];
    snprintf(out, sizeof(out), "output.dir=%s/t/%s", proc_dir, run);
    const char *old = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof(asan), "%s%sverify_asan_link_order=0", old ? old : "",
            old && old[0] ? ":" : "");
    char *keep = old ? dg_xstrdup(old) : NULL;
    setenv("ASAN_OPTIONS", asan, 1);
    setenv("LD_PRELOAD", DG_FAULT_PRELOAD, 1);
    if (var) setenv(var, value, 1);
    const char *args[] = {"train", cfg, out, extra, NULL};
    const pid_t pid = spawn(tag, args);
    if (var) unsetenv(var);
    unsetenv("LD_PRELOAD");
    if (keep) setenv("ASAN_OPTIONS", keep, 1);
    else unsetenv("ASAN_OPTIONS");
    dg_free(keep);
    return pid;
}

/* ---- kill anywhere ----------------------------------------------------------- */

/* The run t/<run>, started fresh, is killed by SIGKILL at points[0]
 * (DGSEG_FAULT_KILL), resumed with --resume and killed at points[1], and
 * so on (the n of each point counts in the process it kills); the last
 * resume, without a fault, must end as the uninterrupted run did. */
static void kill_chain(const char *cfg, const char *run, const char *const *points, int n) {
    remove_run(run);
    const double t0 = now_s();
    char ckpt[256];
    path_of(ckpt, sizeof(ckpt), run, "checkpoints/last.safetensors");
    for (int i = 0; i < n; i++) {
        char tag[64];
        snprintf(tag, sizeof(tag), "%s-%d", run, i);
        const int rc = wait_exit(start_train(tag, cfg, run, i ? "--resume" : NULL,
                                         "DGSEG_FAULT_KILL", points[i]),
                PROC_TIMEOUT_S);
        char *err = err_of(tag);
        ck_assert_msg(rc == 128 + SIGKILL, "%s (kill %d of %d): exit %d, not killed at '%s' "
                "(the point was not reached):\n%s", run, i + 1, n, rc, points[i], err);
        dg_free(err);
        if (access(ckpt, F_OK) == 0) checkpoint_step(ckpt); /* it loads */
    }
    char out[256], tag[64];
    snprintf(out, sizeof(out), "output.dir=%s/t/%s", proc_dir, run);
    snprintf(tag, sizeof(tag), "%s-resume", run);
    const char *again[] = {"train", cfg, out, "--resume", NULL};
    char *err;
    const int rc = run_dgseg(tag, again, &err);
    ck_assert_msg(rc == 0, "%s: killed at '%s' (last of %d kills), the resumed run: exit %d:\n%s",
            run, points[n - 1], n, rc, err);
    static const char *const same[] = {"checkpoints/last.safetensors", "results.json",
            "results.md"};
    for (size_t i = 0; i < DG_ARRAY_LEN(same); i++)
        ck_assert_msg(same_file(run, "ref", same[i]),
                "%s: killed at '%s' ... '%s', resumed: %s differs from the uninterrupted "
                "run's; the resume said:\n%s", run, points[0], points[n - 1], same[i], err);
    dg_free(err);
    char *a = metrics_without_timings(run), *b = metrics_without_timings("ref");
    ck_assert_msg(!strcmp(a, b), "%s: metrics.jsonl\n%s\ndiffers from the uninterrupted "
            "run's\n%s", run, a, b);
    dg_free(a);
    dg_free(b);
    char png[256];
    path_of(png, sizeof(png), run, "curves.png");
    ck_assert_msg(is_whole_png(png), "%s: no whole curves.png after the resume", run);
    ck_assert_msg(count_temporaries(run) == 0, "%s: temporary files left after the resume", run);
    remove_run(run);
    fprintf(stderr, "faults: %s: %d kills, resumed to identical bytes (%.1f s)\n", run, n,
            now_s() - t0);
}

/* The number of write() calls of one checkpoint file (its tensors, the
 * length and the header: nets/core/safetensors.c). */
static long checkpoint_writes(void) {
    char p[256];
    path_of(p, sizeof(p), "ref", "checkpoints/last.safetensors");
    dg_tensor_reader rd;
    ck_assert_int_eq(dg_tensor_reader_open(&rd, p), DG_STATUS_OK);
    const long n = (long)dg_tensor_reader_count(&rd) + 2;
    dg_tensor_reader_close(&rd);
    return n;
}

START_TEST(sigkill_inside_training_steps_resumes_to_identical_bytes) {
    char cfg[128];
    need_reference(cfg, sizeof(cfg));
    /* after step 1's update (no checkpoint yet: the resume starts over),
     * then after step 3's (the checkpoint of step 2 is there) */
    const char *const points[] = {"step:1", "step:3"};
    kill_chain(cfg, "steps", points, 2);
}
END_TEST

START_TEST(sigkill_during_checkpoint_writes_resumes_to_identical_bytes) {
    char cfg[128], half[96];
    need_reference(cfg, sizeof(cfg));
    snprintf(half, sizeof(half), "write checkpoints/last.safetensors:%ld",
            checkpoint_writes() / 2);
    /* the checkpoint of step 2 half-way through its bytes, just before and
     * just after its rename; then the same for the final checkpoint (the
     * first one the resumed process writes) */
    const char *const points[] = {half, "rename checkpoints/last.safetensors:1",
            "renamed checkpoints/last.safetensors:1", half,
            "rename checkpoints/last.safetensors:1", "renamed checkpoints/last.safetensors:1"};
    kill_chain(cfg, "ckpt", points, 6);
}
END_TEST

START_TEST(sigkill_during_final_bn_refresh_resumes_to_identical_bytes) {
    char cfg[128];
    need_reference(cfg, sizeof(cfg));
    /* before the first of its 4 batches, then after two */
    const char *const points[] = {"BN refresh:1", "BN refresh:3"};
    kill_chain(cfg, "bn", points, 2);
}
END_TEST

START_TEST(sigkill_during_final_evaluation_and_reports_resumes_to_identical_bytes) {
    char cfg[128];
    need_reference(cfg, sizeof(cfg));
    /* after 2 of the 4 images, then before each report's rename (curves.png,
     * results.md, results.json: the finished run writes them again), then
     * after results.json's (the run is complete: the resume does nothing) */
    const char *const points[] = {"evaluating cityscapes:2", "rename curves.png:1",
            "rename results.md:1", "rename results.json:1", "renamed results.json:1"};
    kill_chain(cfg, "eval", points, 5);
}
END_TEST

/* ---- disk full ---------------------------------------------------------------- */

/* Grows mnt/ballast until the filesystem has no free block left. */
static void fill_disk(const char *mnt) {
    char p[256];
    snprintf(p, sizeof(p), "%s/ballast", mnt);
    const int fd = open(p, O_WRONLY | O_CREAT, 0644);
    ck_assert_msg(fd >= 0, "%s: %s", p, strerror(errno));
    struct statvfs vs;
    ck_assert_int_eq(statvfs(mnt, &vs), 0);
    struct stat sb;
    ck_assert_int_eq(fstat(fd, &sb), 0);
    off_t at = sb.st_size;
    const off_t free_bytes = (off_t)vs.f_bavail * (off_t)vs.f_frsize;
    if (free_bytes > 0 && fallocate(fd, 0, at, free_bytes) == 0) at += free_bytes;
    while (fallocate(fd, 0, at, 4096) == 0) at += 4096;
    close(fd);
    ck_assert_int_eq(statvfs(mnt, &vs), 0);
    ck_assert_msg(vs.f_bavail == 0, "%s: %llu blocks still free", mnt,
            (unsigned long long)vs.f_bavail);
}

static void empty_disk(const char *mnt) {
    char p[256];
    snprintf(p, sizeof(p), "%s/ballast", mnt);
    unlink(p);
}

/* True when err has an error line (not a warning) naming path and every
 * error line naming a file in dir names path: the run stopped at the
 * first write that failed. */
static bool error_names_only(const char *err, const char *path, const char *dir) {
    bool named = false, other = false;
    for (const char *l = err; *l;) {
        const size_t len = strcspn(l, "\n");
        char *line = dg_xasprintf("%.*s", (int)len, l);
        if (!strncmp(line, "dgseg: error: ", 14) && strstr(line, dir)) {
            if (strstr(line, path)) named = true;
            else other = true;
        }
        dg_free(line);
        l += len + (l[len] == '\n');
    }
    return named && !other;
}

/* Runs the reference's configuration in t/full/run (a tmpfs; afresh, or
 * resumed when resume is true): stopped at
 * `point` (DGSEG_FAULT_STOP; NULL: the disk is filled before the start),
 * the disk is filled, `snap` (a file of the run, or NULL) is read, and the
 * run goes on. It must exit 1 with a message naming `file`; snap must keep
 * the bytes it had (metrics.jsonl: as its start). Returns the run's stderr
 * (dg_free it). */
static char *fill_at(const char *cfg, const char *mnt, bool resume, const char *point,
        const char *file, const char *snap) {
    char rundir[256], tag[64];
    snprintf(rundir, sizeof(rundir), "%s/run", mnt);
    if (!resume) remove_tree(rundir, 4);
    empty_disk(mnt);
    snprintf(tag, sizeof(tag), "full-%s", strrchr(file, '/') ? strrchr(file, '/') + 1 : file);
    if (!point) fill_disk(mnt);
    const pid_t pid = start_train(tag, cfg, "full/run", resume ? "--resume" : NULL,
            point ? "DGSEG_FAULT_STOP" : NULL, point);
    char *before = NULL, sp[320];
    size_t n_before = 0;
    if (point) {
        int status = 0;
        const double end = now_s() + PROC_TIMEOUT_S;
        pid_t r;
        while ((r = waitpid(pid, &status, WNOHANG | WUNTRACED)) == 0 && now_s() < end)
            sleep_ms(20);
        if (r != pid || !WIFSTOPPED(status)) {
            if (r == 0) kill(pid, SIGKILL);
            char *e = err_of(tag);
            ck_abort_msg("%s: the run never stopped at '%s' (status %d):\n%s", file, point,
                    status, e);
        }
        fill_disk(mnt);
        if (snap) {
            snprintf(sp, sizeof(sp), "%s/%s", rundir, snap);
            before = read_file(sp, &n_before);
        }
        ck_assert_int_eq(kill(pid, SIGCONT), 0);
    }
    const int rc = wait_exit(pid, PROC_TIMEOUT_S);
    char *err = err_of(tag);
    char named[320];
    snprintf(named, sizeof(named), "%s/%s", rundir, file);
    ck_assert_msg(rc == 1 && error_names_only(err, named, rundir),
            "disk full at %s: exit %d (want 1, errors naming %s and no other file):\n%s", file,
            rc, named, err);
    if (snap) {
        size_t n_after;
        char *after = slurp(sp, &n_after);
        /* metrics.jsonl may have grown by whole lines since */
        const bool grows = strstr(snap, "metrics") != NULL;
        ck_assert_msg(after && (grows ? n_after >= n_before : n_after == n_before) &&
                        !memcmp(before, after, n_before),
                "disk full at %s: %s lost or changed", file, snap);
        dg_free(after);
        dg_free(before);
    }
    ck_assert_msg(count_temporaries("full/run") == 0, "disk full at %s: temporary files left",
            file);
    /* whatever metrics.jsonl holds is whole lines (read_file: it exists) */
    if (strcmp(file, "config.ini")) dg_free(metrics_without_timings("full/run"));
    return err;
}

START_TEST(full_disk_at_each_write_exits_1_naming_the_file_and_keeps_earlier_files) {
    char cfg[128];
    need_reference(cfg, sizeof(cfg));
    char mnt[128], ref_ckpt[256], opts[64];
    snprintf(mnt, sizeof(mnt), "%s/t/full", proc_dir);
    ck_assert_int_eq(mkdir(mnt, 0755), 0);
    path_of(ref_ckpt, sizeof(ref_ckpt), "ref", "checkpoints/last.safetensors");
    struct stat sb;
    ck_assert_int_eq(stat(ref_ckpt, &sb), 0);
    /* room for two checkpoints (the old one and its successor) and the rest */
    snprintf(opts, sizeof(opts), "size=%lldk", (long long)(2 * sb.st_size / 1024 + 4096));
    if (mount("tmpfs", mnt, "tmpfs", 0, opts) != 0) {
        DG_TEST_SKIPPED("disk full: cannot mount a tmpfs here (%s); the writers' own error "
                        "paths are covered by the report and cli suites", strerror(errno));
        return;
    }
    char ck[320], png[320], json[320];
    snprintf(ck, sizeof(ck), "%s/run/checkpoints/last.safetensors", mnt);
    snprintf(png, sizeof(png), "%s/run/curves.png", mnt);
    snprintf(json, sizeof(json), "%s/run/results.json", mnt);
    const char *const last = "checkpoints/last.safetensors";
    dg_free(fill_at(cfg, mnt, false, NULL, "config.ini", NULL));
    /* the first metrics line: config.ini keeps its bytes */
    dg_free(fill_at(cfg, mnt, false, "step:1", "metrics.jsonl", "config.ini"));
    /* the checkpoint of step 2: the lines of steps 1 and 2 stay */
    dg_free(fill_at(cfg, mnt, false, "step:2", last, "metrics.jsonl"));
    ck_assert_int_ne(access(ck, F_OK), 0);
    /* the final checkpoint: step 2's keeps its bytes and loads */
    dg_free(fill_at(cfg, mnt, false, "BN refresh:1", last, last));
    ck_assert_int_eq(checkpoint_step(ck), 2);
    /* resumed with room for the final checkpoint: the reports, each with
     * the files before it kept; no truncated PNG under its name */
    dg_free(fill_at(cfg, mnt, true, "evaluating cityscapes:4", "curves.png", last));
    ck_assert_msg(access(png, F_OK) != 0, "a curves.png was left on the full disk");
    ck_assert_int_ne(access(json, F_OK), 0);
    dg_free(fill_at(cfg, mnt, true, "renamed curves.png:1", "results.md", "curves.png"));
    ck_assert_int_ne(access(json, F_OK), 0);
    dg_free(fill_at(cfg, mnt, true, "renamed results.md:1", "results.json", "results.md"));
    ck_assert_int_ne(access(json, F_OK), 0);
    /* with room again, the run completes as the uninterrupted one did */
    empty_disk(mnt);
    char out[256];
    snprintf(out, sizeof(out), "output.dir=%s/run", mnt);
    const char *again[] = {"train", cfg, out, "--resume", NULL};
    char *err;
    const int rc = run_dgseg("full-resume", again, &err);
    ck_assert_msg(rc == 0, "resumed after the full disks: exit %d:\n%s", rc, err);
    dg_free(err);
    static const char *const same[] = {"checkpoints/last.safetensors", "results.json",
            "results.md"};
    for (size_t i = 0; i < DG_ARRAY_LEN(same); i++)
        ck_assert_msg(same_file("full/run", "ref", same[i]),
                "resumed after the full disks: %s differs from the uninterrupted run's", same[i]);
    ck_assert_msg(is_whole_png(png), "curves.png is not a whole PNG");
    umount(mnt);
}
END_TEST

/* The metrics log itself (app/metrics_log.h, as the trainer appends to it) on a
 * tmpfs filled while its file ends part-way into a page: the append that
 * needs the next page gets only part of its line onto the disk; the log
 * must cut that part off again and say so, leaving whole lines only. */
START_TEST(metrics_append_on_a_full_disk_leaves_whole_lines) {
    char mnt[128], path[192];
    snprintf(mnt, sizeof(mnt), "%s/m", proc_dir);
    ck_assert_int_eq(mkdir(mnt, 0755), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0) {
        DG_TEST_SKIPPED("disk full: cannot mount a tmpfs here (%s)", strerror(errno));
        return;
    }
    snprintf(path, sizeof(path), "%s/metrics.jsonl", mnt);
    dg_metrics m;
    ck_assert_int_eq(dg_metrics_open(&m, path, false, 0), DG_STATUS_OK);
    ck_assert_int_eq(dg_metrics_log_train(&m, 1, 1.0, 0.1, 1.0), DG_STATUS_OK);
    fill_disk(mnt);
    dg_status st = DG_STATUS_OK;
    long step = 2;
    for (; step < 1000 && st == DG_STATUS_OK; step++)
        st = dg_metrics_log_train(&m, step, 1.0 / 3.0, 0.1, 2.0 / 3.0);
    dg_metrics_close(&m);
    size_t n;
    char *text = read_file(path, &n);
    umount2(mnt, MNT_DETACH);
    ck_assert_msg(st == DG_STATUS_ERR_IO, "the log never filled the disk (%ld lines)", step);
    ck_assert_msg(n > 0 && text[n - 1] == '\n', "a partial line was left:\n...%s",
            n > 80 ? text + n - 80 : text);
    long lines = 0;
    for (size_t i = 0; i < n; i++) lines += text[i] == '\n';
    ck_assert_int_eq(lines, step - 2); /* every line appended before the failing one */
    dg_free(text);
}
END_TEST

Suite *faults_suite(void) {
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("kill_anywhere");
    tcase_set_timeout(tc, 600);
    tcase_add_unchecked_fixture(tc, suite_setup, NULL);
    tcase_add_test(tc, sigkill_inside_training_steps_resumes_to_identical_bytes);
    tcase_add_test(tc, sigkill_during_checkpoint_writes_resumes_to_identical_bytes);
    tcase_add_test(tc, sigkill_during_final_bn_refresh_resumes_to_identical_bytes);
    tcase_add_test(tc, sigkill_during_final_evaluation_and_reports_resumes_to_identical_bytes);
    suite_add_tcase(s, tc);
    /* CK_RUN_CASE=disk_full runs it alone */
    tc = tcase_create("disk_full");
    tcase_set_timeout(tc, 600);
    tcase_add_unchecked_fixture(tc, suite_setup, NULL);
    tcase_add_test(tc, metrics_append_on_a_full_disk_leaves_whole_lines);
    tcase_add_test(tc, full_disk_at_each_write_exits_1_naming_the_file_and_keeps_earlier_files);
    suite_add_tcase(s, tc);
    return s;
}
