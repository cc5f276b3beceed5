/* tests/test_study.c -- dgseg study and dgseg report (app/study.h): the
 * aggregation against means and standard deviations computed by hand, a
 * tiny real study (2 arms x 2 seeds on dgseg synth output) run, re-run
 * (nothing to do) and resumed after a run's results vanish, and study files
 * with errors refused before anything runs, naming file:line. */
#define _DEFAULT_SOURCE
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "app/study.h"
#include "common.h"
#include "proc.h"
#include "data/fsutil.h"
#include "nets/core/safetensors.h"

static char dir[64];
static void setup(void) { make_tmpdir(dir, "study"); }
static void teardown(void) { remove_tree(dir, 4); }

/* The runs are dgseg processes: in a sanitizer build their LeakSanitizer
 * would fail them over fontconfig's cache (PLplot's cairo driver draws
 * curves.png), as in suite cli. Returns the old LSAN_OPTIONS (dg_free). */
static char *suppress_fontconfig_leaks(void) {
    char supp[128], opts[512];
    snprintf(supp, sizeof(supp), "%s/lsan.supp", dir);
    write_file(supp, "leak:libfontconfig.so\n", 22);
    const char *old = getenv("LSAN_OPTIONS");
    snprintf(opts, sizeof(opts), "%s%ssuppressions=%s", old ? old : "", old && *old ? ":" : "",
            supp);
    char *keep = old ? dg_xstrdup(old) : NULL;
    setenv("LSAN_OPTIONS", opts, 1);
    return keep;
}

static void restore_lsan(char *keep) {
    if (keep) setenv("LSAN_OPTIONS", keep, 1);
    else unsetenv("LSAN_OPTIONS");
    dg_free(keep);
}

/* A finished segmentation run folder: results.json with the targets' mIoU
 * and a config.ini with its seed. */
static void seg_run(const char *name, const char *method, long seed, double a, double b) {
    char d[160], p[192], text[512];
    snprintf(d, sizeof(d), "%s/%s", dir, name);
    ck_assert_int_eq(dg_make_dirs(d), DG_STATUS_OK);
    snprintf(p, sizeof(p), "%s/results.json", d);
    snprintf(text, sizeof(text),
            "{\"task\": \"segmentation\", \"method\": \"%s\", \"targets\": ["
            "{\"name\": \"cityscapes\", \"miou\": %.2f}, {\"name\": \"bdd100k\", \"miou\": %.2f}]}",
            method, a, b);
    write_file(p, text, strlen(text));
    snprintf(p, sizeof(p), "%s/config.ini", d);
    snprintf(text, sizeof(text), "[train]\nseed = %ld\n", seed);
    write_file(p, text, strlen(text));
}

static const cJSON *method_of(const cJSON *root, const char *name) {
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(root, "methods"))
        if (!strcmp(cJSON_GetObjectItem(m, "name")->valuestring, name)) return m;
    ck_abort_msg("no method %s in study.json", name);
    return NULL;
}

static void assert_cell(const cJSON *m, const char *col, int n, double mean, double sd) {
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(m, "selected"), col);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(cJSON_GetObjectItem(c, "n")->valueint, n);
    ck_assert_msg(fabs(cJSON_GetObjectItem(c, "mean")->valuedouble - mean) < 1e-9, "%s mean %g",
            col, cJSON_GetObjectItem(c, "mean")->valuedouble);
    const cJSON *s = cJSON_GetObjectItem(c, "sd");
    if (isnan(sd)) ck_assert(cJSON_IsNull(s));
    else ck_assert_msg(fabs(s->valuedouble - sd) < 1e-9, "%s sd %g want %g", col, s->valuedouble, sd);
}

/* Hand-computed: erm seeds 0, 1 at cityscapes 10, 20 and bdd100k 30, 50 ->
 * means 15 and 40, sample sds sqrt(50) and sqrt(200); per-run averages 20
 * and 35 -> 27.5 +- sqrt(112.5). One la run: its values, no sd. An
 * unfinished folder and a classification run are listed, not averaged. */
START_TEST(report_aggregates_by_method_with_sample_sd) {
    seg_run("erm0", "erm", 0, 10, 30);
    seg_run("erm1", "erm", 1, 20, 50);
    seg_run("la0", "lookahead", 0, 12.5, 40);
    char inc[160], cls[160], p[200], out[160];
    snprintf(inc, sizeof(inc), "%s/unfinished", dir);
    ck_assert_int_eq(dg_make_dirs(inc), DG_STATUS_OK);
    snprintf(p, sizeof(p), "%s/config.ini", inc);
    write_file(p, "[train]\nseed = 2\n", 17);
    snprintf(cls, sizeof(cls), "%s/cls", dir);
    ck_assert_int_eq(dg_make_dirs(cls), DG_STATUS_OK);
    snprintf(p, sizeof(p), "%s/results.json", cls);
    const char *cj = "{\"task\": \"classification\", \"method\": \"erm\", \"runs\": "
                     "[{\"test_domain\": \"rot75\", \"acc_selected\": 60, \"acc_last\": 61}]}";
    write_file(p, cj, strlen(cj));
    snprintf(out, sizeof(out), "%s/report", dir);
    char a[5][160];
    snprintf(a[0], 160, "%s/erm0", dir);
    snprintf(a[1], 160, "%s/erm1", dir);
    snprintf(a[2], 160, "%s/la0", dir);
    char *argv[] = {"report", a[0], a[1], a[2], inc, cls, a[0], "--out", out, NULL};
    capture c;
    capture_out_begin(&c);
    const int rc = dg_report_main(9, argv);
    char *text = capture_end(&c);
    ck_assert_msg(rc == 0, "%s", text);
    ck_assert_msg(strstr(text, "| erm | 2 | 15.00 ± 7.07 | 40.00 ± 14.14 | 27.50 ± 10.61 |") &&
            strstr(text, "| lookahead | 1 | 12.50 | 40.00 | 26.25 |") &&
            strstr(text, "not finished") && strstr(text, "a classification run among "
            "segmentation runs"), "%s", text);
    dg_free(text);
    snprintf(p, sizeof(p), "%s/study.json", out);
    cJSON *root = read_json(p);
    const cJSON *erm = method_of(root, "erm");
    assert_cell(erm, "cityscapes", 2, 15.0, sqrt(50.0));
    assert_cell(erm, "bdd100k", 2, 40.0, sqrt(200.0));
    assert_cell(erm, "avg", 2, 27.5, sqrt(112.5));
    assert_cell(method_of(root, "lookahead"), "cityscapes", 1, 12.5, NAN);
    int n_runs = cJSON_GetArraySize(cJSON_GetObjectItem(root, "runs"));
    ck_assert_int_eq(n_runs, 5); /* erm0 named twice counts once */
    cJSON_Delete(root);
}
END_TEST

/* The study and its runs' own results.json: every method's mean and sd
 * recomputed here from the runs. */
static void check_study_json(const char *out) {
    char p[200];
    snprintf(p, sizeof(p), "%s/study.json", out);
    cJSON *root = read_json(p);
    const char *arms[2] = {"erm", "sam"};
    for (int k = 0; k < 2; k++) {
        double v[2][8];
        int n_t = 0;
        for (int s = 0; s < 2; s++) {
            snprintf(p, sizeof(p), "%s/%s/seed-%d/results.json", out, arms[k], s);
            cJSON *r = read_json(p);
            const cJSON *t;
            n_t = 0;
            cJSON_ArrayForEach(t, cJSON_GetObjectItem(r, "targets")) {
                v[s][n_t++] = cJSON_GetObjectItem(t, "miou")->valuedouble;
            }
            cJSON_Delete(r);
        }
        const cJSON *m = method_of(root, arms[k]);
        const cJSON *cols = cJSON_GetObjectItem(root, "columns");
        ck_assert_int_eq(cJSON_GetArraySize(cols), n_t);
        for (int j = 0; j < n_t; j++) {
            const double mean = (v[0][j] + v[1][j]) / 2, sd = fabs(v[0][j] - v[1][j]) / sqrt(2.0);
            assert_cell(m, cJSON_GetArrayItem(cols, j)->valuestring, 2, mean, sd);
        }
    }
    cJSON_Delete(root);
}

START_TEST(tiny_study_runs_skips_and_resumes) {
    char synth[128], study[160], out[160], p[224];
    snprintf(synth, sizeof(synth), "%s/synth", dir);
    make_tiny_synth(synth, 64, 32, 4);
    snprintf(out, sizeof(out), "%s/out", dir);
    snprintf(study, sizeof(study), "%s/tiny.ini", dir);
    /* arm sam's config is named relative to the study file, as the
     * project's own studies name theirs: the study folder's copy of the
     * file (report's input) lies elsewhere */
    snprintf(p, sizeof(p), "%s/cfg", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/cfg/erm.ini", dir);
    size_t n_cfg;
    char *cfg_text = read_file(DG_SOURCE_DIR "/configs/demo-erm.ini", &n_cfg);
    write_file(p, cfg_text, n_cfg);
    dg_free(cfg_text);
    char text[2048];
    snprintf(text, sizeof(text),
            "; two arms, two seeds\n[study]\nout = %s\nseeds = 0, 1\n"
            "overrides = data.sources=gtav:%s/gtav data.targets=cityscapes:%s/cityscapes,"
            "bdd100k:%s/bdd100k\n    train.iterations=2\n\n"
            "[arm erm]\nconfig = %s/configs/demo-erm.ini\n"
            "overrides = data.crop_size=32 train.batch_size=2 train.eval_every=0\n\n"
            "[arm sam]\nconfig = cfg/erm.ini\n"
            "overrides = data.crop_size=32 train.batch_size=2 train.eval_every=0 "
            "optim.method=sam\n", out, synth, synth, synth, DG_SOURCE_DIR);
    /* (the indented line continues the study's overrides, as in configs) */
    write_file(study, text, strlen(text));
    char *lsan = suppress_fontconfig_leaks();
    capture c;
    capture_out_begin(&c);
    int rc = dg_study_run(study, DG_DGSEG_PATH, false);
    char *log = capture_end(&c);
    ck_assert_msg(rc == 0 && strstr(log, "[2/4] sam seed 0: done") &&
            strstr(log, "[4/4] sam seed 1: done"), "rc %d: %s", rc, log);
    dg_free(log);
    check_study_json(out);
    snprintf(p, sizeof(p), "%s/study.png", out); /* the figure: a PNG */
    size_t n_png;
    char *png = read_file(p, &n_png);
    ck_assert_msg(n_png > 1000 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8), "%s: %zu bytes", p,
            n_png);
    dg_free(png);
    /* again: nothing to run, the same aggregate */
    capture_out_begin(&c);
    const double t0 = dg_now();
    rc = dg_study_run(study, DG_DGSEG_PATH, false);
    const double t = dg_now() - t0;
    log = capture_end(&c);
    ck_assert_msg(rc == 0 && !strstr(log, "running") && !strstr(log, "resuming") && t < 5.0,
            "rc %d, %.1f s: %s", rc, t, log);
    dg_free(log);
    /* a run whose results vanished (stopped before its end) is resumed alone */
    snprintf(p, sizeof(p), "%s/erm/seed-1/results.json", out);
    ck_assert_int_eq(unlink(p), 0);
    capture_out_begin(&c);
    rc = dg_study_run(study, DG_DGSEG_PATH, false);
    log = capture_end(&c);
    ck_assert_msg(rc == 0 && strstr(log, "[3/4] erm seed 1: resuming") &&
            strstr(log, "[3/4] erm seed 1: done") && !strstr(log, "seed 0: r"), "rc %d: %s",
            rc, log);
    dg_free(log);
    check_study_json(out);
    /* report on the study folder gives the same table */
    snprintf(p, sizeof(p), "%s/study.md", out);
    char *md = read_file(p, NULL);
    char *table_end = strstr(md, "\n\n(mean");
    ck_assert_ptr_nonnull(table_end);
    *table_end = '\0';
    char *argv[] = {"report", out, NULL};
    capture_out_begin(&c);
    rc = dg_report_main(2, argv);
    log = capture_end(&c);
    ck_assert_msg(rc == 0 && strstr(log, strstr(md, "| method |")), "%s\n---\n%s", log, md);
    dg_free(log), dg_free(md);
    restore_lsan(lsan);
}
END_TEST

/* SIGTERM to a running `dgseg study`: the run checkpoints and stops, the
 * study exits 1 saying how to resume, and started again it resumes that
 * run from its checkpoint to the end. */
START_TEST(sigterm_stops_the_study_and_it_resumes) {
    char synth[128], study[160], out[160], p[224], err[160];
    snprintf(synth, sizeof(synth), "%s/synth", dir);
    make_tiny_synth(synth, 64, 32, 4);
    snprintf(out, sizeof(out), "%s/out", dir);
    snprintf(study, sizeof(study), "%s/sig.ini", dir);
    char text[1024];
    snprintf(text, sizeof(text),
            "[study]\nout = %s\noverrides = data.sources=gtav:%s/gtav "
            "data.targets=cityscapes:%s/cityscapes data.crop_size=32 train.batch_size=2\n"
            "    train.iterations=100000 train.checkpoint_every=100000 train.eval_every=0\n"
            "[arm erm]\nconfig = %s/configs/demo-erm.ini\n", out, synth, synth, DG_SOURCE_DIR);
    write_file(study, text, strlen(text));
    char *lsan = suppress_fontconfig_leaks();
    snprintf(err, sizeof(err), "%s/study.err", dir);
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        const int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) _exit(127);
        execl(DG_DGSEG_PATH, "dgseg", "study", study, (char *)NULL);
        _exit(127);
    }
    /* wait for the run's first logged steps: up to 150 s (most of the
     * case's 180 s; a quiet machine takes a few), times the factor the
     * runner gives every timeout (a sanitizer build, a loaded machine) */
    snprintf(p, sizeof(p), "%s/erm/seed-0/train.log", out);
    const double factor = proc_timeout_factor();
    bool started = false;
    for (int i = 0; i < (int)(1500 * factor) && !started; i++) {
        char *log = dg_is_file(p) ? read_file(p, NULL) : NULL;
        started = log && strstr(log, "step 25/"); /* demo-erm logs every 25 steps */
        dg_free(log);
        if (!started) usleep(100000);
    }
    ck_assert_msg(started, "the run did not start");
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    char *log = read_file(err, NULL);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1 &&
            strstr(log, "stopped by signal 15") && strstr(log, "interrupted"), "status %d:\n%s",
            status, log);
    dg_free(log);
    snprintf(p, sizeof(p), "%s/erm/seed-0/checkpoints/last.safetensors", out);
    ck_assert_msg(dg_is_file(p), "no checkpoint after SIGTERM");
    snprintf(p, sizeof(p), "%s/erm/seed-0/results.json", out);
    ck_assert(!dg_is_file(p));
    /* resumed, the run shortened to 3 steps past its checkpoint */
    snprintf(p, sizeof(p), "%s/erm/seed-0/checkpoints/last.safetensors", out);
    dg_tensor_reader rd;
    ck_assert_int_eq(dg_tensor_reader_open(&rd, p), DG_STATUS_OK);
    const long step = atol(dg_tensor_reader_metadata(&rd, "step"));
    dg_tensor_reader_close(&rd);
    ck_assert_int_ge(step, 25);
    snprintf(text, sizeof(text),
            "[study]\nout = %s\noverrides = data.sources=gtav:%s/gtav "
            "data.targets=cityscapes:%s/cityscapes data.crop_size=32 train.batch_size=2\n"
            "    train.iterations=%ld train.checkpoint_every=100000 train.eval_every=0\n"
            "[arm erm]\nconfig = %s/configs/demo-erm.ini\n", out, synth, synth, step + 3,
            DG_SOURCE_DIR);
    write_file(study, text, strlen(text));
    snprintf(p, sizeof(p), "%s/erm/seed-0/results.json", out);
    capture c;
    capture_out_begin(&c);
    const int rc = dg_study_run(study, DG_DGSEG_PATH, false);
    log = capture_end(&c);
    ck_assert_msg(rc == 0 && strstr(log, "erm seed 0: resuming") &&
            strstr(log, "erm seed 0: done"), "rc %d: %s", rc, log);
    dg_free(log);
    ck_assert(dg_is_file(p));
    snprintf(p, sizeof(p), "%s/erm/seed-0/train.log", out);
    log = read_file(p, NULL);
    char want[64];
    snprintf(want, sizeof(want), "for %ld steps from step %ld", step + 3, step);
    ck_assert_msg(strstr(log, want), "want '%s' in:\n%s", want, log);
    dg_free(log);
    restore_lsan(lsan);
}
END_TEST

/* Errors in a study file: exit 2 before anything runs, naming file:line. */
START_TEST(bad_study_files_exit_2_naming_file_and_line) {
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"[study]\nseeds = 0\nbogus = 1\n", "bad.ini:3: [study] has no key 'bogus'"},
        {"[study]\nseeds = 0, x\n", "bad.ini:2: seeds"},
        {"[study]\n[arm a]\nconfig = no-such.ini\n", "bad.ini:3: arm a: no config file"},
        {"[study]\n[arm a]\nconfig = %s/configs/demo-erm.ini\noverrides = optim.nosuch=1\n",
                "bad.ini:4: arm a"},
        {"[study]\n[arm a]\nconfig = %s/configs/demo-erm.ini\noverrides = train.seed=3\n",
                "bad.ini:4: 'train.seed=3': the study sets"},
        {"[study]\n[arm a]\nconfig = %s/configs/demo-erm.ini\n[arm a]\n",
                "bad.ini:4: arm 'a' again"},
        {"[study]\n[run a]\n", "bad.ini:2: unknown section [run a]"},
        {"[study]\nseeds = 1\n", "no [arm NAME] section"},
        {"[study]\nflatness = --radii -1\n", "bad.ini:2: flatness"},
        {"[study]\nflatness = --images 4 --out x\n", "bad.ini:2: flatness"},
    };
    char path[160], out[160];
    snprintf(path, sizeof(path), "%s/bad.ini", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    for (size_t i = 0; i < DG_ARRAY_LEN(cases); i++) {
        char text[512];
        snprintf(text, sizeof(text), cases[i].text, DG_SOURCE_DIR);
        write_file(path, text, strlen(text));
        capture c;
        capture_begin(&c);
        const int rc = dg_study_run(path, DG_DGSEG_PATH, false);
        char *log = capture_end(&c);
        ck_assert_msg(rc == 2 && strstr(log, cases[i].want), "case %zu: rc %d: %s", i, rc, log);
        dg_free(log);
    }
    ck_assert(!dg_is_dir("runs/study-bad"));
}
END_TEST

/* A study with `flatness = ...` measures every finished run's model once
 * (a second study run measures nothing) and reports the mean and sample
 * standard deviation of the runs' flatness.json values. */
START_TEST(study_measures_flatness_and_aggregates_it) {
    char synth[128], study[160], out[160], p[224];
    snprintf(synth, sizeof(synth), "%s/synth", dir);
    make_tiny_synth(synth, 64, 32, 4);
    snprintf(out, sizeof(out), "%s/out", dir);
    snprintf(study, sizeof(study), "%s/flat.ini", dir);
    char text[2048];
    snprintf(text, sizeof(text),
            "[study]\nout = %s\nseeds = 0, 1\n"
            "overrides = data.sources=gtav:%s/gtav data.targets=cityscapes:%s/cityscapes "
            "train.iterations=2 data.crop_size=32 train.batch_size=2 train.eval_every=0\n"
            "flatness = --images 2 --directions 2 --radii 0.1 --rho 0.05 --steps 1\n\n"
            "[arm erm]\nconfig = %s/configs/demo-erm.ini\n", out, synth, synth, DG_SOURCE_DIR);
    write_file(study, text, strlen(text));
    char *lsan = suppress_fontconfig_leaks();
    capture c;
    capture_out_begin(&c);
    int rc = dg_study_run(study, DG_DGSEG_PATH, false);
    char *log = capture_end(&c);
    ck_assert_msg(rc == 0 && strstr(log, "[1/2] erm seed 0: flatness done") &&
            strstr(log, "[2/2] erm seed 1: flatness done"), "rc %d: %s", rc, log);
    dg_free(log);
    double v[2];
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof(p), "%s/erm/seed-%d/flatness/flatness.json", out, i);
        cJSON *j = read_json(p);
        const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "expected"), 0);
        v[i] = cJSON_GetObjectItem(e, "sharpness")->valuedouble;
        cJSON_Delete(j);
    }
    ck_assert_msg(v[0] != v[1], "two seeds, one sharpness %g", v[0]);
    snprintf(p, sizeof(p), "%s/study.json", out);
    cJSON *root = read_json(p);
    const cJSON *f = cJSON_GetObjectItem(method_of(root, "erm"), "flatness");
    const cJSON *cell = cJSON_GetObjectItem(f, "sharpness r=0.1");
    ck_assert_ptr_nonnull(cell);
    ck_assert_int_eq(cJSON_GetObjectItem(cell, "n")->valueint, 2);
    const double mean = cJSON_GetObjectItem(cell, "mean")->valuedouble;
    const double sd = cJSON_GetObjectItem(cell, "sd")->valuedouble;
    ck_assert_msg(fabs(mean - 0.5 * (v[0] + v[1])) < 1e-12 &&
            fabs(sd - fabs(v[0] - v[1]) / sqrt(2.0)) < 1e-12, "mean %g sd %g of %g, %g", mean,
            sd, v[0], v[1]);
    ck_assert_ptr_nonnull(cJSON_GetObjectItem(f, "worst rho=0.05"));
    ck_assert_ptr_nonnull(cJSON_GetObjectItem(f, "loss"));
    cJSON_Delete(root);
    snprintf(p, sizeof(p), "%s/study.md", out);
    char *md = read_file(p, NULL);
    ck_assert_msg(strstr(md, "## Flatness") && strstr(md, "sharpness r=0.1"), "%s", md);
    dg_free(md);
    /* again: every run and every measurement is there */
    capture_out_begin(&c);
    rc = dg_study_run(study, DG_DGSEG_PATH, false);
    log = capture_end(&c);
    ck_assert_msg(rc == 0 && !strstr(log, "flatness of"), "rc %d: %s", rc, log);
    dg_free(log);
    restore_lsan(lsan);
}
END_TEST

Suite *study_suite(void) {
    Suite *s = suite_create("study");
    TCase *tc = tcase_create("study");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, report_aggregates_by_method_with_sample_sd);
    tcase_add_test(tc, tiny_study_runs_skips_and_resumes);
    tcase_add_test(tc, bad_study_files_exit_2_naming_file_and_line);
    tcase_add_test(tc, sigterm_stops_the_study_and_it_resumes);
    tcase_add_test(tc, study_measures_flatness_and_aggregates_it);
    suite_add_tcase(s, tc);
    return s;
}
