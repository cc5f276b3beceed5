/* tests/test_cli.c -- the real `dgseg` binary as users run it (docs/design.md
 * §4 exit codes, §9 reliability): every check forks and execs the dgseg
 * of the same build (DG_DGSEG_PATH), captures its stdout and stderr into
 * files and waits with a time limit, so that a hang fails the test instead
 * of blocking CI. SIGTERM and SIGINT during training write a loadable
 * checkpoint and exit 1, and a resume from it completes; --version, --help
 * (train's pointing to `dgseg config --list`, which runs),
 * an unknown command, a missing config, an unknown key, a bad override, a
 * truncated checkpoint and a truncated PNG give the documented exit code
 * and a message naming what is wrong; a checkpoint folder that becomes
 * read-only stops the run with exit 1 and the previous checkpoint intact
 * (skipped as root, whom permissions do not stop). The process helpers
 * are tests/proc.h's. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "proc.h"
#include "data/fsutil.h"
#include "nets/core/safetensors.h"

static void setup(void) { proc_setup("cli"); }
static void teardown(void) { proc_teardown(); }

/* ---- signals ---------------------------------------------------------------- */

/* Training gets sig once its first step is logged: it must finish the
 * step, write checkpoints/last.safetensors (step > 0), say so and exit 1;
 * train.resume=true with train.iterations one above that step completes
 * (with the final evaluation and reports when evaluate, else with
 * data.targets emptied: the evaluation takes longer than the step). */
static void interrupt_case(int sig, bool evaluate) {
    make_synth();
    char cfg[128], out[192], run[160], metrics[192], ckpt[192];
    write_cfg(cfg, sizeof(cfg), "seg", SEG_CFG);
    snprintf(run, sizeof(run), "%s/run", proc_dir);
    snprintf(out, sizeof(out), "output.dir=%s", run);
    snprintf(metrics, sizeof(metrics), "%s/metrics.jsonl", run);
    snprintf(ckpt, sizeof(ckpt), "%s/checkpoints/last.safetensors", run);
    const char *args[] = {"train", cfg, out, NULL};
    const pid_t pid = spawn("train", args);
    int rc = 0;
    if (!wait_for_file(pid, metrics, "\"step\":1,", PROC_TIMEOUT_S, &rc)) {
        char *e = err_of("train");
        ck_abort_msg("training never logged step 1 (exit %d; -1: killed after %.0f s):\n%s", rc,
                PROC_TIMEOUT_S, e);
    }
    ck_assert_int_eq(kill(pid, sig), 0);
    rc = wait_exit(pid, PROC_TIMEOUT_S);
    char *err = err_of("train");
    ck_assert_msg(rc == 1 && strstr(err, "interrupted") && strstr(err, "checkpoint saved"),
            "%s: exit %d (want 1 with 'interrupted ... checkpoint saved'):\n%s", strsignal(sig),
            rc, err);
    dg_free(err);
    const long step = checkpoint_step(ckpt);
    ck_assert_msg(step > 0, "%s: step %ld after %s", ckpt, step, strsignal(sig));

    char iters[64], from[64];
    snprintf(iters, sizeof(iters), "train.iterations=%ld", step + 1);
    snprintf(from, sizeof(from), "from step %ld", step);
    const char *again[] = {"train", cfg, out, "train.resume=true", iters,
            evaluate ? NULL : "data.targets=", NULL};
    rc = run_dgseg("resume", again, &err);
    ck_assert_msg(rc == 0 && strstr(err, from), "resume to step %ld: exit %d (want 0, '%s'):\n%s",
            step + 1, rc, from, err);
    dg_free(err);
    ck_assert_int_eq(checkpoint_step(ckpt), step + 1);
    if (!evaluate) return;
    char res[192];
    snprintf(res, sizeof(res), "%s/results.json", run);
    ck_assert_msg(access(res, R_OK) == 0, "%s missing after the resumed run", res);
}

START_TEST(sigterm_during_training_checkpoints_exits_1_and_resumes) { interrupt_case(SIGTERM, true); }
END_TEST

START_TEST(sigint_during_training_checkpoints_exits_1_and_resumes) { interrupt_case(SIGINT, false); }
END_TEST

/* ---- exit codes ---------------------------------------------------------- */

START_TEST(version_and_help_exit_0) {
    const char *version[] = {"--version", NULL};
    ck_assert_int_eq(run_dgseg("version", version, NULL), 0);
    char p[128];
    snprintf(p, sizeof(p), "%s/version.out", proc_dir);
    char *out = read_file(p, NULL);
    ck_assert_msg(!strncmp(out, "dgseg ", 6) && strstr(out, DG_VERSION), "%s", out);
    dg_free(out);
    const char *help[] = {"--help", NULL};
    ck_assert_int_eq(run_dgseg("help", help, NULL), 0);
    snprintf(p, sizeof(p), "%s/help.out", proc_dir);
    out = read_file(p, NULL);
    ck_assert_msg(strstr(out, "usage: dgseg") && strstr(out, "train") && strstr(out, "\n  config "),
            "%s", out);
    dg_free(out);
    /* the commands that read a CONFIG point to the keys' reference */
    const char *train_help[] = {"train", "--help", NULL};
    ck_assert_int_eq(run_dgseg("train-help", train_help, NULL), 0);
    snprintf(p, sizeof(p), "%s/train-help.out", proc_dir);
    out = read_file(p, NULL);
    ck_assert_msg(strstr(out, "usage: dgseg train") && strstr(out, "dgseg config --list"), "%s",
            out);
    dg_free(out);
    const char *list[] = {"config", "--list", NULL};
    ck_assert_int_eq(run_dgseg("config-list", list, NULL), 0);
    snprintf(p, sizeof(p), "%s/config-list.out", proc_dir);
    out = read_file(p, NULL);
    ck_assert_msg(!strncmp(out, "[data]\n", 7) && strstr(out, "\n[optim]\n  method = erm\n"),
            "%s", out);
    dg_free(out);
}
END_TEST

/* On a CPU capped at AVX2 (ONEDNN_MAX_CPU_ISA, read by the child's oneDNN:
 * what an AVX2-only machine runs, tested on any x86-64 CPU), the README
 * demo with train.dtype = bf16 exits 2 naming the key, the CPU's ISA and
 * the alternative, before anything is written; --version reports the
 * capabilities. */
START_TEST(bf16_on_avx2_exits_2_naming_the_cpu) {
    const char *old = getenv("ONEDNN_MAX_CPU_ISA");
    char *keep = old ? dg_xstrdup(old) : NULL;
    setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
    char demo[512];
    snprintf(demo, sizeof(demo), "%s/configs/demo.ini", DG_SOURCE_DIR);
    const char *args[] = {"train", demo, "train.dtype=bf16", NULL};
    char *err;
    const int rc = run_dgseg("bf16-avx2", args, &err);
    const char *version[] = {"--version", NULL};
    const int vrc = run_dgseg("version-avx2", version, NULL);
    if (keep) setenv("ONEDNN_MAX_CPU_ISA", keep, 1);
    else unsetenv("ONEDNN_MAX_CPU_ISA");
    dg_free(keep);
    ck_assert_msg(rc == 2 && strstr(err, "train.dtype = bf16") && strstr(err, "ISA avx2") &&
            strstr(err, "use f32"), "exit %d:\n%s", rc, err);
    dg_free(err);
    char p[128];
    snprintf(p, sizeof(p), "%s/runs", proc_dir);
    ck_assert_msg(!dg_is_dir(p), "a run folder was created");
    ck_assert_int_eq(vrc, 0);
    snprintf(p, sizeof(p), "%s/version-avx2.out", proc_dir);
    char *out = read_file(p, NULL);
    ck_assert_msg(strstr(out, "CPU ISA avx2 (bf16: no, Winograd: dgseg's)"), "%s", out);
    dg_free(out);
}
END_TEST

/* A Release build's code runs instructions of its x86-64 level (DG_MARCH,
 * x86-64-v3 on an AVX2 machine): on an older CPU (Nehalem, emulated by
 * qemu-user) it exits 2 saying so, before any of them runs, instead of
 * dying on an illegal instruction. */
START_TEST(cpu_below_the_build_level_exits_2_saying_so) {
#ifdef DG_MARCH_TEST
    if (access("/usr/bin/qemu-x86_64", X_OK) != 0) {
        DG_TEST_SKIPPED("qemu-user is not installed (scripts/test installs it)");
        return;
    }
    if (strcmp(DG_MARCH_TEST, "x86-64-v3") && strcmp(DG_MARCH_TEST, "x86-64-v4")) {
        DG_TEST_SKIPPED("this build's level %s runs on a Nehalem CPU", DG_MARCH_TEST);
        return;
    }
    char out[128], cmd[1024];
    snprintf(out, sizeof(out), "%s/qemu.err", proc_dir);
    snprintf(cmd, sizeof(cmd), "/usr/bin/qemu-x86_64 -cpu Nehalem %s --version >/dev/null 2>%s",
            DG_DGSEG_PATH, out);
    const int status = system(cmd);
    char *err = read_file(out, NULL);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 2 && strstr(err, DG_MARCH_TEST) &&
            strstr(err, "lacks"), "status %d:\n%s", status, err);
    dg_free(err);
#else
    DG_TEST_SKIPPED("not a Release build: no x86-64 level is set");
#endif
}
END_TEST

START_TEST(unknown_command_and_bad_usage_exit_2) {
    char *err;
    const char *unknown[] = {"frobnicate", NULL};
    int rc = run_dgseg("unknown", unknown, &err);
    ck_assert_msg(rc == 2 && strstr(err, "frobnicate"), "exit %d:\n%s", rc, err);
    dg_free(err);
    const char *none[] = {NULL};
    ck_assert_int_eq(run_dgseg("none", none, NULL), 2);
    const char *no_config[] = {"train", NULL};
    ck_assert_int_eq(run_dgseg("no-config", no_config, NULL), 2);
    const char *bad_flag[] = {"eval", "x.ini", "--no-such-flag", NULL};
    rc = run_dgseg("bad-flag", bad_flag, &err);
    ck_assert_msg(rc == 2 && strstr(err, "--no-such-flag"), "exit %d:\n%s", rc, err);
    dg_free(err);
}
END_TEST

/* app/config.h: a file that cannot be read is a runtime failure (1), not a
 * configuration error; the message names it. */
START_TEST(missing_config_file_exits_1_naming_it) {
    char cfg[128];
    snprintf(cfg, sizeof(cfg), "%s/no-such.ini", proc_dir);
    const char *args[] = {"train", cfg, NULL};
    char *err;
    const int rc = run_dgseg("missing", args, &err);
    ck_assert_msg(rc == 1 && strstr(err, cfg), "exit %d:\n%s", rc, err);
    dg_free(err);
}
END_TEST

START_TEST(unknown_config_key_exits_2_naming_file_line_and_key) {
    char cfg[128];
    write_cfg(cfg, sizeof(cfg), "bad-key",
            "[data]\nsources = gtav:%s/synth/gtav\n\n[train]\niterations = 3\nbogus_key = 1\n");
    const char *args[] = {"train", cfg, NULL};
    char *err, where[160];
    int rc = run_dgseg("bad-key", args, &err);
    snprintf(where, sizeof(where), "%s:6", cfg);
    ck_assert_msg(rc == 2 && strstr(err, where) && strstr(err, "bogus_key"),
            "exit %d (want 2 naming '%s' and 'bogus_key'):\n%s", rc, where, err);
    dg_free(err);
    /* verify and eval read configs the same way */
    const char *verify[] = {"verify", cfg, NULL};
    rc = run_dgseg("bad-key-verify", verify, &err);
    ck_assert_msg(rc == 2 && strstr(err, where), "verify: exit %d:\n%s", rc, err);
    dg_free(err);
}
END_TEST

START_TEST(bad_override_value_exits_2_naming_the_key) {
    char cfg[128];
    write_cfg(cfg, sizeof(cfg), "seg", SEG_CFG);
    char *err;
    const char *not_int[] = {"train", cfg, "train.iterations=abc", NULL};
    int rc = run_dgseg("not-int", not_int, &err);
    ck_assert_msg(rc == 2 && strstr(err, "train.iterations") && strstr(err, "abc"),
            "exit %d:\n%s", rc, err);
    dg_free(err);
    const char *range[] = {"train", cfg, "train.batch_size=0", NULL};
    rc = run_dgseg("range", range, &err);
    ck_assert_msg(rc == 2 && strstr(err, "train.batch_size"), "exit %d:\n%s", rc, err);
    dg_free(err);
    /* inside the key's old range 8 .. 16 but no DeepLab stride: refused, not
     * an abort in the network's construction, and nothing written */
    const char *os[] = {"train", cfg, "model.output_stride=12", NULL};
    rc = run_dgseg("os12", os, &err);
    ck_assert_msg(rc == 2 && strstr(err, "model.output_stride = 12") && strstr(err, "8 or 16"),
            "exit %d:\n%s", rc, err);
    dg_free(err);
    char runs[128];
    snprintf(runs, sizeof(runs), "%s/runs", proc_dir);
    ck_assert_msg(!dg_is_dir(runs), "a run folder was created");
    const char *key[] = {"train", cfg, "train.no_such_key=1", NULL};
    rc = run_dgseg("override-key", key, &err);
    ck_assert_msg(rc == 2 && strstr(err, "no_such_key"), "exit %d:\n%s", rc, err);
    dg_free(err);
}
END_TEST

/* Crop and batch sizes inside their documented ranges that no machine can
 * hold (terabytes): train exits 1 within seconds with the size needed and
 * the keys to lower, never an abort or the OOM killer; the same under a
 * tight DG_MEM_LIMIT for a model that needs a few hundred MiB. */
START_TEST(sizes_beyond_the_memory_exit_1_naming_the_keys) {
    make_synth();
    char cfg[128];
    write_cfg(cfg, sizeof(cfg), "seg", SEG_CFG);
    static const char *const over[] = {"data.crop_size=16384", "train.batch_size=65536"};
    for (size_t i = 0; i < DG_ARRAY_LEN(over); i++) {
        char out[160];
        snprintf(out, sizeof(out), "output.dir=%s/oom%zu", proc_dir, i);
        const char *args[] = {"train", cfg, over[i], out, NULL};
        char *err;
        const double t0 = dg_now();
        const int rc = run_dgseg("oom", args, &err);
        const double dt = dg_now() - t0;
        ck_assert_msg(rc == 1 && strstr(err, "out of memory") && strstr(err, "buffers need") &&
                strstr(err, "train.batch_size =") && strstr(err, "lower"),
                "%s: exit %d:\n%s", over[i], rc, err);
        /* seconds on a quiet machine; the factor every timeout gets under a
         * sanitizer or on a loaded machine (CK_TIMEOUT_MULTIPLIER) */
        ck_assert_msg(dt < 30.0 * proc_timeout_factor(), "%s: %.1f s to refuse", over[i], dt);
        dg_free(err);
    }
    setenv("DG_MEM_LIMIT", "100M", 1); /* the child inherits it */
    const char *args[] = {"train", cfg, NULL};
    char *err;
    const int rc = run_dgseg("oom-limit", args, &err);
    unsetenv("DG_MEM_LIMIT");
    ck_assert_msg(rc == 1 && strstr(err, "DG_MEM_LIMIT") && strstr(err, "out of memory"),
            "exit %d:\n%s", rc, err);
    dg_free(err);
}
END_TEST

/* A real checkpoint (one step, no final evaluation), cut to half its
 * size: eval exits 1 and names the file. */
START_TEST(eval_of_truncated_checkpoint_exits_1_naming_it) {
    make_synth();
    char cfg[128], out[160], ckpt[192];
    write_cfg(cfg, sizeof(cfg), "seg", SEG_CFG);
    snprintf(out, sizeof(out), "output.dir=%s/run", proc_dir);
    snprintf(ckpt, sizeof(ckpt), "%s/run/checkpoints/last.safetensors", proc_dir);
    const char *train[] = {"train", cfg, out, "train.iterations=1", "data.targets=", NULL};
    char *err;
    int rc = run_dgseg("train", train, &err);
    ck_assert_msg(rc == 0, "one-step training: exit %d:\n%s", rc, err);
    dg_free(err);
    ck_assert_int_eq(checkpoint_step(ckpt), 1);
    size_t n;
    char *bytes = read_file(ckpt, &n);
    char cut[128];
    snprintf(cut, sizeof(cut), "%s/cut.safetensors", proc_dir);
    write_file(cut, bytes, n / 2);
    dg_free(bytes);
    const char *eval[] = {"eval", cfg, "--checkpoint", cut, NULL};
    rc = run_dgseg("eval", eval, &err);
    ck_assert_msg(rc == 1 && strstr(err, cut), "exit %d (want 1 naming %s):\n%s", rc, cut, err);
    dg_free(err);
    /* the intact checkpoint evaluates: the failure above is the truncation */
    const char *good[] = {"eval", cfg, "--checkpoint", ckpt, NULL};
    rc = run_dgseg("eval-good", good, &err);
    ck_assert_msg(rc == 0, "eval of %s: exit %d:\n%s", ckpt, rc, err);
    dg_free(err);
}
END_TEST

/* A truncated source image: verify exits 1 naming it (data.on_bad_sample
 * = fail, the default), 0 when training would skip it. */
START_TEST(verify_of_truncated_png_exits_1_naming_it) {
    make_synth();
    char cfg[128], png[128];
    write_cfg(cfg, sizeof(cfg), "seg", SEG_CFG);
    const char *args[] = {"verify", cfg, NULL};
    char *err;
    int rc = run_dgseg("verify-clean", args, &err);
    ck_assert_msg(rc == 0, "verify of clean synth data: exit %d:\n%s", rc, err);
    dg_free(err);
    snprintf(png, sizeof(png), "%s/synth/gtav/images/00002.png", proc_dir);
    size_t n;
    char *bytes = read_file(png, &n);
    write_file(png, bytes, n / 3);
    dg_free(bytes);
    rc = run_dgseg("verify", args, &err);
    ck_assert_msg(rc == 1 && strstr(err, png), "exit %d (want 1 naming %s):\n%s", rc, png, err);
    dg_free(err);
    const char *skip[] = {"verify", cfg, "data.on_bad_sample=skip", NULL};
    ck_assert_int_eq(run_dgseg("verify-skip", skip, NULL), 0);
}
END_TEST

/* ---- disk trouble while checkpointing -------------------------------------- */

/* Checkpoints every 2 steps; once the first is there its folder becomes
 * read-only: the next write fails, the run stops with exit 1 and a
 * message, and the checkpoint already written keeps its bytes. */
START_TEST(unwritable_checkpoint_folder_stops_with_the_previous_checkpoint_intact) {
    if (getuid() == 0) {
        DG_TEST_SKIPPED("running as root, whom a read-only folder does not stop");
        return;
    }
    make_synth();
    char cfg[128], out[192], run[160], ckdir[192], ckpt[224];
    write_cfg(cfg, sizeof(cfg), "seg", SEG_CFG);
    snprintf(run, sizeof(run), "%s/run", proc_dir);
    snprintf(out, sizeof(out), "output.dir=%s", run);
    snprintf(ckdir, sizeof(ckdir), "%s/checkpoints", run);
    snprintf(ckpt, sizeof(ckpt), "%s/last.safetensors", ckdir);
    const char *args[] = {"train", cfg, out, "train.checkpoint_every=2", NULL};
    const pid_t pid = spawn("train", args);
    int rc = 0;
    if (!wait_for_file(pid, ckpt, NULL, PROC_TIMEOUT_S, &rc)) {
        char *e = err_of("train");
        ck_abort_msg("no first checkpoint (exit %d; -1: killed after %.0f s):\n%s", rc,
                PROC_TIMEOUT_S, e);
    }
    if (chmod(ckdir, 0555) != 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        ck_abort_msg("chmod %s: %s", ckdir, strerror(errno));
    }
    /* nothing can replace the file from here on: these are its bytes */
    size_t n;
    char *before = read_file(ckpt, &n);
    rc = wait_exit(pid, PROC_TIMEOUT_S);
    chmod(ckdir, 0755);
    char *err = err_of("train");
    ck_assert_msg(rc == 1 && strstr(err, ckpt) && strstr(err, "could not be written") &&
                    strstr(err, "intact"),
            "exit %d (want 1 naming %s, 'could not be written ... intact'):\n%s", rc, ckpt, err);
    dg_free(err);
    size_t n_after;
    char *after = read_file(ckpt, &n_after);
    ck_assert_msg(n_after == n && !memcmp(before, after, n), "%s changed", ckpt);
    dg_free(before);
    dg_free(after);
    const long step = checkpoint_step(ckpt);
    ck_assert_msg(step >= 2 && step % 2 == 0, "%s: step %ld", ckpt, step);
}
END_TEST

Suite *cli_suite(void) {
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("exit_codes");
    tcase_set_timeout(tc, 240);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, version_and_help_exit_0);
    tcase_add_test(tc, unknown_command_and_bad_usage_exit_2);
    tcase_add_test(tc, bf16_on_avx2_exits_2_naming_the_cpu);
    tcase_add_test(tc, cpu_below_the_build_level_exits_2_saying_so);
    tcase_add_test(tc, missing_config_file_exits_1_naming_it);
    tcase_add_test(tc, unknown_config_key_exits_2_naming_file_line_and_key);
    tcase_add_test(tc, bad_override_value_exits_2_naming_the_key);
    tcase_add_test(tc, sizes_beyond_the_memory_exit_1_naming_the_keys);
    tcase_add_test(tc, eval_of_truncated_checkpoint_exits_1_naming_it);
    tcase_add_test(tc, verify_of_truncated_png_exits_1_naming_it);
    suite_add_tcase(s, tc);
    tc = tcase_create("reliability");
    tcase_set_timeout(tc, 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, sigterm_during_training_checkpoints_exits_1_and_resumes);
    tcase_add_test(tc, sigint_during_training_checkpoints_exits_1_and_resumes);
    tcase_add_test(tc, unwritable_checkpoint_folder_stops_with_the_previous_checkpoint_intact);
    suite_add_tcase(s, tc);
    return s;
}
