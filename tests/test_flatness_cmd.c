/* tests/test_flatness_cmd.c -- `dgseg flatness` (app/flatness.h) on a real
 * two-source segmentation checkpoint trained here on dgseg synth output:
 * the answers the command must give whatever the network (sharpness 0 at
 * radius 0, the base loss along the line to the same checkpoint, the same
 * numbers on a second run with the same seed, worst-case at least its
 * first-order value), the files it writes, and bad input refused with the
 * file at fault named and the exit code eval gives. The engine's known
 * answers (quadratics, softmax regression) are suite flatness's. */
#define _DEFAULT_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "app/flatness.h"
#include "app/train.h"
#include "common.h"

static char dir[64];
static char cfg_path[160], ckpt[160];

/* Unchecked (runs in the runner): only the folder and the paths. */
static void make_dir(void) {
    make_tmpdir(dir, "flatcmd");
    snprintf(cfg_path, sizeof(cfg_path), "%s/la.ini", dir);
    snprintf(ckpt, sizeof(ckpt), "%s/run/checkpoints/last.safetensors", dir);
}
static void remove_dir(void) { remove_tree(dir, 10); }

/* Checked: synth data and the training run, once. */
static void train_once(void) { train_tiny_la_checkpoint(dir, 2); }

/* Runs `dgseg flatness` with argv[1 ..] = args (NULL-terminated); returns
 * the exit code and in *log (dg_free) what it printed: its messages
 * (stderr), or with `out` its report (stdout). */
static int flatness_io(char **log, const char *const *args, bool out) {
    char *argv[32] = {"flatness"};
    int argc = 1;
    while (args[argc - 1]) {
        argv[argc] = (char *)args[argc - 1];
        argc++;
    }
    capture cap;
    if (out) capture_out_begin(&cap);
    else capture_begin(&cap);
    int rc = dg_flatness_main(argc, argv);
    *log = capture_end(&cap);
    return rc;
}

static int flatness(char **log, const char *const *args) { return flatness_io(log, args, false); }

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "no number '%s'", key);
    return v->valuedouble;
}

/* The measurement every test reads: radii 0 and 0.1, rho 0.05, the line
 * to the same checkpoint, into dir/out-<tag>. */
static int measure(const char *tag, char **log, char *out, size_t size) {
    snprintf(out, size, "%s/out-%s", dir, tag);
    const char *args[] = {cfg_path, "--checkpoint", ckpt, "--images", "4", "--batch", "2",
            "--directions", "3", "--radii", "0,0.1", "--rho", "0.05", "--steps", "2", "--to",
            ckpt, "--points", "3", "--out", out, NULL};
    return flatness_io(log, args, true);
}

START_TEST(flatness_of_a_segmentation_checkpoint_answers_what_it_must) {
    train_once();
    char out[128], *log;
    int rc = measure("a", &log, out, sizeof(out));
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    ck_assert_msg(strstr(log, "lookahead slow weights") && strstr(log, "## Expected sharpness"),
            "%s", log);
    dg_free(log);
    char p[192];
    snprintf(p, sizeof(p), "%s/flatness.json", out);
    cJSON *j = read_json(p);
    const double L = num(j, "loss");
    ck_assert_msg(isfinite(L) && L > 0, "loss %g", L);
    const cJSON *dl = cJSON_GetObjectItem(j, "domain_loss");
    ck_assert_int_eq(cJSON_GetArraySize(dl), 2); /* gtav, synthia */
    /* radius 0: every perturbed point is w itself */
    const cJSON *e0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "expected"), 0);
    const cJSON *e1 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "expected"), 1);
    ck_assert_msg(num(e0, "radius") == 0 && num(e0, "sharpness") == 0 && num(e0, "se") == 0,
            "radius 0: sharpness %g se %g", num(e0, "sharpness"), num(e0, "se"));
    ck_assert_msg(num(e1, "radius") == 0.1 && num(e1, "sharpness") != 0 &&
            isfinite(num(e1, "sharpness")) && num(e1, "se") > 0, "radius 0.1: %g ± %g",
            num(e1, "sharpness"), num(e1, "se"));
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(e1, "domain_sharpness")), 2);
    /* worst case: the ascent keeps the best iterate, SAM's point included */
    const cJSON *w = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "worst_case"), 0);
    ck_assert_msg(num(w, "sharpness") >= num(w, "first_order") && num(w, "first_order") > 0,
            "worst %g first-order %g", num(w, "sharpness"), num(w, "first_order"));
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(w, "domain_sharpness")), 2);
    /* the line to the same checkpoint stays at the base loss, t = 0 exactly */
    const cJSON *line = cJSON_GetObjectItem(j, "line");
    const cJSON *ll = cJSON_GetObjectItem(line, "loss"), *lt = cJSON_GetObjectItem(line, "t");
    ck_assert_int_eq(cJSON_GetArraySize(ll), 3);
    for (int i = 0; i < 3; i++) {
        const double t = cJSON_GetArrayItem(lt, i)->valuedouble;
        const double v = cJSON_GetArrayItem(ll, i)->valuedouble;
        ck_assert_msg(t == 0 ? v == L : fabs(v - L) <= 1e-6 * L, "t %g: loss %.9g, base %.9g",
                t, v, L);
    }
    cJSON_Delete(j);
    snprintf(p, sizeof(p), "%s/line.png", out);
    size_t n_png;
    char *png = read_file(p, &n_png);
    ck_assert_msg(n_png > 1000 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8), "%s: %zu bytes", p,
            n_png);
    dg_free(png);
    snprintf(p, sizeof(p), "%s/flatness.md", out);
    char *md = read_file(p, NULL);
    ck_assert_msg(strstr(md, "| 0.1 |") && strstr(md, "## Worst-case"), "%s", md);
    dg_free(md);
}
END_TEST

/* Fixed images from the seed and deterministic directions: two runs give
 * the same numbers. */
START_TEST(flatness_is_the_same_on_a_second_run) {
    train_once();
    char out_a[128], out_b[128], *log, p[192];
    ck_assert_int_eq(measure("a2", &log, out_a, sizeof(out_a)), 0);
    dg_free(log);
    ck_assert_int_eq(measure("b2", &log, out_b, sizeof(out_b)), 0);
    dg_free(log);
    snprintf(p, sizeof(p), "%s/flatness.json", out_a);
    cJSON *a = read_json(p);
    snprintf(p, sizeof(p), "%s/flatness.json", out_b);
    cJSON *b = read_json(p);
    const char *keys[] = {"loss", "metric_value"};
    for (int i = 0; i < 2; i++) ck_assert_double_eq(num(a, keys[i]), num(b, keys[i]));
    const cJSON *ea = cJSON_GetArrayItem(cJSON_GetObjectItem(a, "expected"), 1);
    const cJSON *eb = cJSON_GetArrayItem(cJSON_GetObjectItem(b, "expected"), 1);
    ck_assert_double_eq(num(ea, "sharpness"), num(eb, "sharpness"));
    const cJSON *wa = cJSON_GetArrayItem(cJSON_GetObjectItem(a, "worst_case"), 0);
    const cJSON *wb = cJSON_GetArrayItem(cJSON_GetObjectItem(b, "worst_case"), 0);
    ck_assert_double_eq(num(wa, "sharpness"), num(wb, "sharpness"));
    cJSON_Delete(a);
    cJSON_Delete(b);
}
END_TEST

START_TEST(flatness_refuses_bad_input_naming_what_is_wrong) {
    train_once();
    char *log, p[160], out[128];
    snprintf(out, sizeof(out), "%s/out-bad", dir);
    /* not a checkpoint: the same message eval gives, exit 1 */
    snprintf(p, sizeof(p), "%s/la.ini", dir);
    const char *a1[] = {cfg_path, "--checkpoint", p, "--out", out, NULL};
    int rc = flatness(&log, a1);
    ck_assert_msg(rc == 1 && strstr(log, p), "rc %d: %s", rc, log);
    dg_free(log);
    /* a segmentation checkpoint with a classification config */
    snprintf(p, sizeof(p), "%s/cls.ini", dir);
    const char *cls = "[data]\ndataset = rotated-fmnist\ntest_domains = rot0\n"
                      "[model]\nname = mnist-cnn\n";
    write_file(p, cls, strlen(cls));
    const char *a2[] = {p, "--checkpoint", ckpt, "--out", out, NULL};
    rc = flatness(&log, a2);
    ck_assert_msg(rc == 1 && strstr(log, "a segmentation checkpoint") && strstr(log, p),
            "rc %d: %s", rc, log);
    dg_free(log);
    /* usage errors: exit 2 before anything runs */
    const char *bad[][2] = {{"--radii", "-0.1"}, {"--rho", "x"}, {"--landscape", "3"},
            {"--images", "0"}, {"--steps", "-1"}, {"--span", "0"}};
    for (size_t i = 0; i < DG_ARRAY_LEN(bad); i++) {
        const char *a3[] = {cfg_path, "--checkpoint", ckpt, bad[i][0], bad[i][1], NULL};
        rc = flatness(&log, a3);
        ck_assert_msg(rc == 2 && strstr(log, bad[i][0]), "%s %s: rc %d: %s", bad[i][0],
                bad[i][1], rc, log);
        dg_free(log);
    }
    const char *a4[] = {cfg_path, NULL};
    rc = flatness(&log, a4);
    ck_assert_msg(rc == 2 && strstr(log, "usage"), "rc %d: %s", rc, log);
    dg_free(log);
    ck_assert_msg(access(out, F_OK) != 0, "%s exists after refused runs", out);
}
END_TEST

Suite *flatness_cmd_suite(void) {
    Suite *s = suite_create("flatness_cmd");
    TCase *tc = tcase_create("command");
    tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, flatness_of_a_segmentation_checkpoint_answers_what_it_must);
    tcase_add_test(tc, flatness_is_the_same_on_a_second_run);
    tcase_add_test(tc, flatness_refuses_bad_input_naming_what_is_wrong);
    suite_add_tcase(s, tc);
    return s;
}
