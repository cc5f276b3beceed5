/* tests/test_config.c -- the INI configuration (app/config.h) and
 * `dgseg verify` (app/verify.h) on real files written here.
 *
 * Config: the resolved writer's output reads back to the same text; every
 * error names file:line and the key (unknown section, unknown key, bad
 * value, out of range, key given twice, an over-long line); indented lines
 * continue a list; command-line overrides and their errors; cross-key
 * validation (SAF on segmentation, task from the data keys); dataset lists.
 * Reference (`dgseg config`): every key of the table has a description;
 * --list prints each key under its section with the table's default (the
 * build's own data.split_dir); docs/configuration.md is what --markdown
 * prints now; usage errors exit 2 naming the flag, an unwritable output
 * exits 1.
 * Verify: a small Cityscapes-layout source and BDD-layout target give the
 * JSON counts and trainId histogram computed here; a missing partner is
 * reported without failing; a truncated label and a size mismatch are
 * reported by file and make verify exit 1, or 0 for a source under
 * data.on_bad_sample = skip; a wrong root exits 1; usage errors exit 2. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "app/config.h"
#include "app/config_cmd.h"
#include "app/verify.h"
#include "common.h"
#include "data/fsutil.h"
#include "data/image_cv.h"
#include "nets/core/safetensors.h"
#include "data/idx.h"
#include "data/png_io.h"
#include "data/synth.h"
#include "data/augment.h"
#include "optimizers/dg_optim.h"

static char dir[64];
static void make_dir(void) { make_tmpdir(dir, "config"); }
static void remove_dir(void) { remove_tree(dir, 8); }

static char *write_ini(const char *name, const char *text) {
    char *path = dg_xmalloc(512);
    snprintf(path, 512, "%s/%s", dir, name);
    write_file(path, text, strlen(text));
    return path;
}

/* Loads text as a config file; returns the status and the log. */
static dg_status load_text(const char *text, dg_config *cfg, char **log, int n_over,
        char *const *over) {
    char *path = write_ini("c.ini", text);
    capture cap;
    capture_begin(&cap);
    dg_status st = dg_config_load(cfg, path, n_over, over);
    *log = capture_end(&cap);
    dg_free(path);
    return st;
}

static char *config_text(const dg_config *cfg) {
    char path[512];
    snprintf(path, sizeof(path), "%s/resolved.ini", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    dg_config_write(cfg, f);
    fclose(f);
    return read_file(path, NULL);
}

/* The named values of the multiple-choice keys are the table's choices, in
 * order: every choice of each key reads back as its enum constant. */
START_TEST(choice_keys_read_as_their_named_values) {
    static const struct {
        const char *over;
        size_t off;
        int want;
    } cases[] = {
        {"train.nan_policy=stop", offsetof(dg_config, nan_policy), DG_NAN_STOP},
        {"train.nan_policy=rollback", offsetof(dg_config, nan_policy), DG_NAN_ROLLBACK},
        {"train.dtype=f32", offsetof(dg_config, dtype), DG_DTYPE_F32},
        {"train.dtype=bf16", offsetof(dg_config, dtype), DG_DTYPE_BF16},
        {"eval.validate=source", offsetof(dg_config, val_on), DG_VALIDATE_SOURCE},
        {"eval.validate=targets", offsetof(dg_config, val_on), DG_VALIDATE_TARGETS},
        {"eval.validate=both", offsetof(dg_config, val_on), DG_VALIDATE_BOTH},
        {"eval.mode=whole", offsetof(dg_config, eval_mode), DG_EVAL_WHOLE},
        {"eval.mode=slide", offsetof(dg_config, eval_mode), DG_EVAL_SLIDE},
    };
    for (size_t i = 0; i < DG_ARRAY_LEN(cases); i++) {
        dg_config cfg;
        char *log;
        char *over[1] = {(char *)cases[i].over};
        const dg_status st = load_text("[data]\nsources = gtav:/x\n", &cfg, &log, 1, over);
        ck_assert_msg(st == DG_STATUS_OK, "%s: %s", cases[i].over, log);
        const int got = *(const int *)((const char *)&cfg + cases[i].off);
        ck_assert_msg(got == cases[i].want, "%s: %d, want %d", cases[i].over, got,
                cases[i].want);
        dg_free(log);
        dg_config_free(&cfg);
    }
}
END_TEST

START_TEST(resolved_config_reads_back_identically) {
    dg_config a, b;
    char *log;
    ck_assert_int_eq(load_text("[data]\nsources = gtav:/data/GTAV\n[optim]\nmethod = lookbehind-sam\n"
                               "lb_alpha = 0.25\nsaf_end_epoch = 9\nla_reg = history\n"
                               "[train]\niterations = 77\n", &a, &log, 0, NULL),
            DG_STATUS_OK);
    dg_free(log);
    ck_assert_int_eq(a.iterations, 77);
    ck_assert(!a.optim.lb_alpha_adaptive);
    ck_assert_double_eq(a.optim.lb_alpha, 0.25);
    ck_assert_int_eq(a.optim.saf_end_epoch, 9);
    ck_assert_int_eq(a.optim.la_reg, DG_LA_REG_HISTORY);
    ck_assert_int_eq(a.optim.mesa_end_epoch, -1);
    ck_assert_double_eq(a.optim.momentum, 0.9);
    char *ta = config_text(&a);
    ck_assert_msg(strstr(ta, "lb_alpha = 0.25\n") && strstr(ta, "mesa_end_epoch = none\n") &&
                    strstr(ta, "[output]\ndir = \n"), "%s", ta);
    char *path = write_ini("again.ini", ta);
    ck_assert_int_eq(dg_config_load(&b, path, 0, NULL), DG_STATUS_OK);
    char *tb = config_text(&b);
    ck_assert_str_eq(ta, tb);
    ck_assert_str_eq(b.name, "again");
    dg_free(ta);
    dg_free(tb);
    dg_free(path);
    dg_config_free(&a);
    dg_config_free(&b);
}
END_TEST

typedef struct bad_case {
    const char *text;
    const char *want; /* substring of the message */
} bad_case;

START_TEST(errors_name_file_line_and_key) {
    static const bad_case cases[] = {
        {"[data]\nsources = a:b\n[model]\nnmae = x\n", "c.ini:4: [model] unknown key 'nmae'"},
        {"[dat]\nsources = a:b\n", "c.ini:2: unknown section [dat]"},
        {"[optim]\nmomentum = fast\n", "c.ini:2: [optim] momentum: 'fast' is not a finite number"},
        {"[optim]\nmomentum = 1\n", "c.ini:2: [optim] momentum: 1 is out of range (in [0, 1))"},
        {"[optim]\nla_k = 0\n", "c.ini:2: [optim] la_k: 0 is out of range (>= 1)"},
        {"[optim]\nla_endpoint = middle\n", "'middle' is not one of last|mean"},
        {"[optim]\nmethod = adam\n", "c.ini:2: [optim] method: 'adam' is not one of erm|"},
        {"[train]\nresume = maybe\n", "[train] resume: 'maybe' is not a boolean"},
        {"[train]\n\nseed = 1\nseed = 2\n", "c.ini:4: [train] seed is given twice"},
        {"[optim]\nlb_alpha = 1.5\n", "neither 'adaptive' nor a number in (0, 1]"},
        {"[optim]\nsaf_end_epoch = soon\n", "neither 'none' nor an epoch"},
        {"[data]\nthis line has no equals sign\n", "c.ini:2: malformed line"},
    };
    for (size_t i = 0; i < DG_ARRAY_LEN(cases); i++) {
        dg_config cfg;
        char *log;
        ck_assert_int_eq(load_text(cases[i].text, &cfg, &log, 0, NULL), DG_STATUS_ERR_CONFIG);
        ck_assert_msg(strstr(log, cases[i].want) != NULL, "case %zu: want '%s' in:\n%s", i,
                cases[i].want, log);
        ck_assert_int_eq(count_lines(log), 1);
        dg_free(log);
        dg_config_free(&cfg);
    }
    /* a line libinih cannot hold */
    char text[400] = "[data]\nsources = ";
    memset(text + strlen(text), 'x', 220);
    strcat(text, "\n");
    dg_config cfg;
    char *log;
    ck_assert_int_eq(load_text(text, &cfg, &log, 0, NULL), DG_STATUS_ERR_CONFIG);
    ck_assert_msg(strstr(log, "c.ini:2: line longer than 198"), "%s", log);
    dg_free(log);
    dg_config_free(&cfg);
    /* a missing file */
    char missing[512];
    snprintf(missing, sizeof(missing), "%s/none.ini", dir);
    capture cap;
    capture_begin(&cap);
    ck_assert_int_eq(dg_config_load(&cfg, missing, 0, NULL), DG_STATUS_ERR_IO);
    log = capture_end(&cap);
    ck_assert_msg(strstr(log, missing) != NULL, "%s", log);
    dg_free(log);
    dg_config_free(&cfg);
}
END_TEST

START_TEST(lists_continue_on_indented_lines) {
    dg_config cfg;
    char *log;
    ck_assert_int_eq(load_text("[data]\nsources = gtav:/a,\n   synthia:/b\ntargets = cityscapes:/c\n",
                             &cfg, &log, 0, NULL), DG_STATUS_OK);
    dg_free(log);
    dg_dataset_spec *specs;
    int n;
    ck_assert_int_eq(dg_dataset_specs_parse("data.sources", cfg.sources, &specs, &n), DG_STATUS_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(specs[0].reader, "gtav");
    ck_assert_str_eq(specs[0].root, "/a");
    ck_assert_str_eq(specs[1].reader, "synthia");
    ck_assert_str_eq(specs[1].root, "/b");
    dg_dataset_specs_free(specs, n);
    ck_assert_int_eq(dg_dataset_specs_parse("data.sources", " mapillary:C:/odd:path ", &specs, &n),
            DG_STATUS_OK);
    ck_assert_str_eq(specs[0].root, "C:/odd:path");
    dg_dataset_specs_free(specs, n);
    capture cap;
    capture_begin(&cap);
    ck_assert_int_eq(dg_dataset_specs_parse("data.targets", "gtav:/a, nocolon", &specs, &n),
            DG_STATUS_ERR_CONFIG);
    char *l2 = capture_end(&cap);
    ck_assert_msg(strstr(l2, "data.targets: entry 'nocolon' is not reader:root"), "%s", l2);
    dg_free(l2);
    dg_config_free(&cfg);
}
END_TEST

/* What train used to find only after making its run folder (and verify
 * not at all): a model dgseg does not have, a list naming nothing. */
START_TEST(unknown_models_and_empty_dataset_lists_are_refused_at_load) {
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"[data]\nsources = gtav:/a\n[model]\nname = deeplabv3plus-r34\n",
                "model.name = deeplabv3plus-r34: no such model"},
        {"[data]\nsources = ,,,\n", "data.sources = ',,,' names no dataset"},
        {"[data]\nsources = gtav\n", "entry 'gtav' is not reader:root"},
        {"[data]\nsources = gtav:/a\ntargets = cityscapes\n", "entry 'cityscapes'"},
        {"[data]\ndataset = rotated-fmnist\n[model]\nname = deeplabv3plus-r18\n",
                "does not fit a classification run"},
    };
    for (size_t i = 0; i < DG_ARRAY_LEN(cases); i++) {
        dg_config cfg;
        char *log;
        dg_status st = load_text(cases[i].text, &cfg, &log, 0, NULL);
        dg_free(log);
        ck_assert_int_eq(st, DG_STATUS_OK); /* keys and values are fine one by one */
        capture cap;
        capture_begin(&cap);
        st = dg_config_validate(&cfg);
        log = capture_end(&cap);
        ck_assert_msg(st == DG_STATUS_ERR_CONFIG && strstr(log, cases[i].want),
                "case %zu: status %d: %s", i, (int)st, log);
        dg_free(log);
        dg_config_free(&cfg);
    }
}
END_TEST

/* config.ini (and the checkpoints' "config" metadata) must read back as
 * the configuration it records: a long list is continued on indented
 * lines, whole; a value no config line can hold is refused up front
 * instead of being cut or written where it cannot be read. */
START_TEST(long_values_read_back_whole_or_are_refused) {
    char list[4096] = "";
    for (int i = 0; i < 40; i++) /* 40 entries of 60-odd characters: 2,700 in all */
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%sgtav:/data/a-rather-long/"
                "folder-name/for/source/number-%02d", i ? ", " : "", i);
    char *over[1] = {dg_xasprintf("data.sources=%s", list)};
    dg_config cfg;
    char *log;
    ck_assert_int_eq(load_text("[data]\nsources = x:/y\n", &cfg, &log, 1, over), DG_STATUS_OK);
    dg_free(log);
    ck_assert_int_eq(dg_config_validate(&cfg), DG_STATUS_OK);
    char *text = dg_config_text(&cfg, true);
    dg_config back;
    ck_assert_int_eq(load_text(text, &back, &log, 0, NULL), DG_STATUS_OK);
    dg_free(log);
    ck_assert_str_eq(back.sources, list);
    dg_config_free(&back);
    dg_free(text), dg_free(over[0]);
    /* a 6,000-character path: refused, naming the key and the limit */
    char *long_dir = dg_xmalloc(6001);
    memset(long_dir, 'a', 6000);
    long_dir[0] = '/';
    long_dir[6000] = '\0';
    over[0] = dg_xasprintf("data.split_dir=%s", long_dir);
    dg_config_free(&cfg);
    ck_assert_int_eq(load_text("[data]\nsources = gtav:/a\n", &cfg, &log, 1, over), DG_STATUS_OK);
    dg_free(log);
    capture cap;
    capture_begin(&cap);
    ck_assert_int_eq(dg_config_validate(&cfg), DG_STATUS_ERR_CONFIG);
    log = capture_end(&cap);
    ck_assert_msg(strstr(log, "[data] split_dir: a value of 6000 characters"), "%s", log);
    dg_free(log);
    dg_config_free(&cfg);
    dg_free(over[0]), dg_free(long_dir);
}
END_TEST

/* What libinih alone would misread: a key before any section (not "unknown
 * section []"), a list key given again on an unindented line (not joined
 * silently to the first); and threads far above the cores are capped with
 * a warning instead of crawling. */
START_TEST(keys_outside_sections_and_repeated_lists_are_named) {
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"include = x\n[data]\nsources = gtav:/a\n", "c.ini:1: key 'include' before any [section]"},
        {"[data]\nsources = gtav:/a\nsources = synthia:/b\n",
                "c.ini:3: [data] sources is given twice (first at line 2)"},
    };
    for (size_t i = 0; i < DG_ARRAY_LEN(cases); i++) {
        dg_config cfg;
        char *log;
        const dg_status st = load_text(cases[i].text, &cfg, &log, 0, NULL);
        ck_assert_msg(st == DG_STATUS_ERR_CONFIG && strstr(log, cases[i].want),
                "case %zu: status %d: %s", i, (int)st, log);
        dg_free(log);
        dg_config_free(&cfg);
    }
    /* an indented line still continues the list */
    dg_config cfg;
    char *log;
    ck_assert_int_eq(load_text("[data]\nsources = gtav:/a\n    synthia:/b\n", &cfg, &log, 0,
            NULL), DG_STATUS_OK);
    dg_free(log);
    ck_assert_str_eq(cfg.sources, "gtav:/a, synthia:/b");
    ck_assert_int_eq(dg_config_set(&cfg, "train.threads=4096"), DG_STATUS_OK);
    capture cap;
    capture_begin(&cap);
    ck_assert_int_eq(dg_config_validate(&cfg), DG_STATUS_OK);
    log = capture_end(&cap);
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    ck_assert_msg(cfg.threads == 4 * cores && strstr(log, "train.threads = 4096"), "%ld: %s",
            cfg.threads, log);
    dg_free(log);
    dg_config_free(&cfg);
}
END_TEST

/* A path that is not a regular file is named for what it is, never
 * opened: a FIFO would block the open until some writer came. */
START_TEST(fifos_folders_and_dangling_links_are_named_not_opened) {
    char fifo[160], loop[160], dangling[160];
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    snprintf(loop, sizeof(loop), "%s/loop", dir);
    snprintf(dangling, sizeof(dangling), "%s/dangling", dir);
    ck_assert_int_eq(mkfifo(fifo, 0644), 0);
    ck_assert_int_eq(symlink(loop, loop), 0);
    ck_assert_int_eq(symlink("no-such-file", dangling), 0);
    capture cap;
    dg_config cfg;
    capture_begin(&cap);
    ck_assert_int_eq(dg_config_load(&cfg, fifo, 0, NULL), DG_STATUS_ERR_IO);
    dg_config_free(&cfg);
    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, dir), DG_STATUS_ERR_IO);
    dg_image img;
    ck_assert_int_eq(dg_image_read(dangling, &img), DG_STATUS_ERR_IO);
    dg_label_png l;
    ck_assert_int_eq(dg_label_read_png(loop, &l), DG_STATUS_ERR_IO);
    dg_idx a;
    ck_assert_int_eq(dg_idx_read(fifo, &a), DG_STATUS_ERR_IO);
    char *log = capture_end(&cap);
    ck_assert_msg(strstr(log, "fifo: is a FIFO, not a regular file (configuration)") &&
            strstr(log, "is a folder, not a regular file (safetensors)") &&
            strstr(log, "dangling: is a dangling symbolic link") &&
            strstr(log, "loop: is a symbolic link loop") &&
            strstr(log, "fifo: is a FIFO, not a regular file (IDX)"), "%s", log);
    dg_free(log);
}
END_TEST

START_TEST(overrides_and_validation) {
    dg_config cfg;
    char *log;
    char *over[] = {"optim.method=saf", "train.iterations=5"};
    ck_assert_int_eq(load_text("[data]\nsources = gtav:/a\n", &cfg, &log, 2, over), DG_STATUS_OK);
    dg_free(log);
    ck_assert_str_eq(cfg.method, "saf");
    ck_assert_int_eq(cfg.iterations, 5);
    capture cap;
    capture_begin(&cap);
    ck_assert_int_eq(dg_config_validate(&cfg), DG_STATUS_ERR_CONFIG);
    log = capture_end(&cap);
    ck_assert_msg(strstr(log, "saf is classification only"), "%s", log);
    dg_free(log);
    ck_assert_int_eq(dg_config_set(&cfg, "data.sources="), DG_STATUS_OK);
    ck_assert_int_eq(dg_config_set(&cfg, "data.dataset=rotated-fmnist"), DG_STATUS_OK);
    /* a segmentation model for a classification dataset: refused at load,
     * before train makes a run folder */
    capture_begin(&cap);
    ck_assert_int_eq(dg_config_validate(&cfg), DG_STATUS_ERR_CONFIG);
    log = capture_end(&cap);
    ck_assert_msg(strstr(log, "does not fit a classification run"), "%s", log);
    dg_free(log);
    ck_assert_int_eq(dg_config_set(&cfg, "model.name=mnist-cnn"), DG_STATUS_OK);
    ck_assert_int_eq(dg_config_validate(&cfg), DG_STATUS_OK);
    ck_assert_int_eq(cfg.task, DG_TASK_CLASSIFICATION);
    capture_begin(&cap);
    ck_assert_int_eq(dg_config_set(&cfg, "optim.saf_start_epoch=0"), DG_STATUS_OK);
    ck_assert_int_eq(dg_config_validate(&cfg), DG_STATUS_ERR_CONFIG);
    ck_assert_int_eq(dg_config_set(&cfg, "train.sed=1"), DG_STATUS_ERR_CONFIG);
    ck_assert_int_eq(dg_config_set(&cfg, "train.seed"), DG_STATUS_ERR_CONFIG);
    ck_assert_int_eq(dg_config_set(&cfg, "model.dropout=1"), DG_STATUS_ERR_CONFIG);
    ck_assert_int_eq(dg_config_set(&cfg, "data.sources=x:y"), DG_STATUS_OK);
    ck_assert_int_eq(dg_config_validate(&cfg), DG_STATUS_ERR_CONFIG); /* both tasks */
    log = capture_end(&cap);
    ck_assert_msg(strstr(log, "saf_start_epoch 0 must be >= optim.saf_epochs_back - 1 = 1") &&
                    strstr(log, "[train] has no key 'sed'") &&
                    strstr(log, "'train.seed' is not section.key=value") &&
                    strstr(log, "model.dropout: 1 is out of range (in [0, 1))") &&
                    strstr(log, "not both"), "%s", log);
    dg_free(log);
    dg_config_free(&cfg);
}
END_TEST

/* ---- verify ---------------------------------------------------------------- */

#define VH 6
#define VW 8

static void mkdirs(const char *path) {
    char *p = dg_xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        mkdir(p, 0755);
        *s = '/';
    }
    mkdir(p, 0755);
    dg_free(p);
}

/* A Cityscapes pair: labelIds with rows of 7 (road), 8 (sidewalk), 26 (car)
 * and one 0 (unlabeled -> ignore) pixel. */
static void cityscapes_pair(const char *root, const char *split, const char *stem, int h) {
    char d1[640], d2[640], p[1280];
    snprintf(d1, sizeof(d1), "%s/leftImg8bit/%s/aachen", root, split);
    snprintf(d2, sizeof(d2), "%s/gtFine/%s/aachen", root, split);
    mkdirs(d1);
    mkdirs(d2);
    dg_image img;
    dg_image_init(&img, h, VW, 3);
    snprintf(p, sizeof(p), "%s/%s_leftImg8bit.png", d1, stem);
    ck_assert_int_eq(dg_image_write_png(p, &img), DG_STATUS_OK);
    dg_image_free(&img);
    uint8_t lab[VH * VW];
    for (int i = 0; i < VH * VW; i++) lab[i] = (uint8_t)(i / VW < 2 ? 7 : i / VW < 4 ? 8 : 26);
    lab[0] = 0;
    snprintf(p, sizeof(p), "%s/%s_gtFine_labelIds.png", d2, stem);
    ck_assert_int_eq(dg_png_write_gray8(p, lab, VH, VW), DG_STATUS_OK);
}

static void bdd_pair(const char *root, const char *stem) {
    char d1[640], d2[640], p[1280];
    snprintf(d1, sizeof(d1), "%s/images/10k/val", root);
    snprintf(d2, sizeof(d2), "%s/labels/sem_seg/masks/val", root);
    mkdirs(d1);
    mkdirs(d2);
    dg_image img;
    dg_image_init(&img, VH, VW, 3);
    snprintf(p, sizeof(p), "%s/%s.jpg", d1, stem);
    ck_assert_int_eq(dg_image_write_jpeg(p, &img, 90), DG_STATUS_OK);
    dg_image_free(&img);
    uint8_t lab[VH * VW];
    for (int i = 0; i < VH * VW; i++) lab[i] = (uint8_t)(i < VW ? 10 : 13);
    snprintf(p, sizeof(p), "%s/%s.png", d2, stem);
    ck_assert_int_eq(dg_png_write_gray8(p, lab, VH, VW), DG_STATUS_OK);
}

static int run_verify(const char *ini_text, const char *json, char **log, char **extra,
        int n_extra) {
    char *ini = write_ini("v.ini", ini_text);
    char *argv[8] = {"verify", ini, "--json", (char *)json};
    int argc = 4;
    for (int i = 0; i < n_extra; i++) argv[argc++] = extra[i];
    capture cap;
    capture_begin(&cap);
    fflush(stdout);
    int rc = dg_verify_main(argc, argv);
    fflush(stdout);
    *log = capture_end(&cap);
    dg_free(ini);
    return rc;
}

static long num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "no number %s", key);
    return (long)v->valuedouble;
}

/* ---- the key reference ---------------------------------------------------- */

/* `dgseg config ARGS...` in this process: its exit code, stdout and stderr. */
static int run_config(const char *const *args, int n, char **out, char **err) {
    char *argv[8] = {"config"};
    ck_assert_int_lt(n, 8);
    for (int i = 0; i < n; i++) argv[i + 1] = (char *)args[i];
    capture co, ce;
    capture_out_begin(&co);
    capture_begin(&ce);
    const int rc = dg_config_main(n + 1, argv);
    *err = capture_end(&ce);
    *out = capture_end(&co);
    return rc;
}

/* What --list and --markdown say about a key is its row's sentence: a row
 * without one (or cut off before its full stop) fails here, naming it. */
START_TEST(every_key_has_a_description) {
    const size_t n = dg_config_key_count();
    ck_assert_uint_gt(n, 100);
    for (size_t i = 0; i < n; i++) {
        dg_config_key_info k;
        dg_config_key_describe(i, &k);
        const size_t len = k.help ? strlen(k.help) : 0;
        ck_assert_msg(len > 0, "[%s] %s has no description (its row in app/config.c)", k.section,
                k.key);
        ck_assert_msg(k.help[len - 1] == '.' && !strchr(k.help, '\n'),
                "[%s] %s: the description is not one sentence ending in a full stop: '%s'",
                k.section, k.key, k.help);
        ck_assert_msg(k.kind && (strcmp(k.kind, "choice") || k.choices[0]),
                "[%s] %s: a choice without values", k.section, k.key);
    }
}
END_TEST

/* Every key under its section as "key = default", the build-time default
 * printed as this build's value, followed by its description. */
START_TEST(config_list_prints_every_key_under_its_section) {
    static const char *const list[] = {"--list"};
    char *out, *err;
    ck_assert_int_eq(run_config(list, 1, &out, &err), 0);
    ck_assert_str_eq(err, "");
    for (size_t i = 0; i < dg_config_key_count(); i++) {
        dg_config_key_info k;
        dg_config_key_describe(i, &k);
        char head[64], line[320];
        snprintf(head, sizeof(head), "[%s]\n", k.section);
        snprintf(line, sizeof(line), "\n  %s =%s%s\n", k.key, k.def[0] ? " " : "", k.def);
        const char *sec = strstr(out, head), *at = sec ? strstr(sec, line) : NULL;
        const char *next = sec ? strstr(sec + 1, "\n[") : NULL;
        ck_assert_msg(at && (!next || at < next), "[%s] %s: no line '%s' in its section:\n%s",
                k.section, k.key, line + 1, out);
        char start[48]; /* the first words of its description, on a line after it */
        snprintf(start, sizeof(start), "%.40s", k.help);
        const char *help = strstr(at, start);
        ck_assert_msg(help && (!next || help < next), "[%s] %s: its description is missing",
                k.section, k.key);
    }
    ck_assert_msg(strstr(out, "\n  split_dir = " DG_SPLIT_DIR "\n"), "%s", out);
    dg_free(out);
    dg_free(err);
}
END_TEST

/* docs/configuration.md is generated (`dgseg config --markdown`) and
 * committed: a key, default, range or description changed in the table
 * without regenerating it fails here, with the command that does. */
START_TEST(configuration_md_matches_the_key_table) {
    static const char *const md[] = {"--markdown"};
    char *out, *err;
    ck_assert_int_eq(run_config(md, 1, &out, &err), 0);
    ck_assert_str_eq(err, "");
    ck_assert_msg(!strstr(out, DG_SOURCE_DIR),
            "the Markdown names this checkout's folder, so it would differ in every other one");
    char path[512];
    snprintf(path, sizeof(path), "%s/docs/configuration.md", DG_SOURCE_DIR);
    const bool exists = dg_is_file(path);
    char *doc = exists ? read_file(path, NULL) : dg_xstrdup("");
    int line = 1;
    size_t i = 0, bol = 0;
    while (out[i] && out[i] == doc[i]) {
        if (out[i++] == '\n') {
            line++;
            bol = i;
        }
    }
    ck_assert_msg(!out[i] && !doc[i],
            "%s %s the key table in app/config.c at line %d:\n"
            "  file:      %.*s\n  generated: %.*s\n"
            "regenerate it: cd %s && %s config --markdown > docs/configuration.md",
            path, exists ? "differs from" : "is missing: it is generated from", line,
            (int)strcspn(doc + bol, "\n"), doc + bol, (int)strcspn(out + bol, "\n"), out + bol,
            DG_SOURCE_DIR, DG_DGSEG_PATH);
    dg_free(doc);
    dg_free(out);
    dg_free(err);
}
END_TEST

START_TEST(config_usage_errors_exit_2_naming_the_flag) {
    static const struct {
        const char *args[3];
        int n;
        const char *says;
    } cases[] = {
        {{NULL}, 0, "give --list or --markdown"},
        {{"--bogus"}, 1, "'--bogus'"},
        {{"--list=optim"}, 1, "'--list=optim'"},
        {{"--list", "--markdown"}, 2, "--list and --markdown exclude each other"},
        {{"--list", "optim"}, 2, "unexpected argument 'optim'"},
    };
    char *out, *err;
    for (size_t i = 0; i < DG_ARRAY_LEN(cases); i++) {
        const int rc = run_config(cases[i].args, cases[i].n, &out, &err);
        ck_assert_msg(rc == 2 && strstr(err, cases[i].says) && !out[0],
                "case %zu: exit %d (want 2 saying \"%s\"):\n%s", i, rc, cases[i].says, err);
        dg_free(out);
        dg_free(err);
    }
    static const char *const help[] = {"--help"};
    ck_assert_int_eq(run_config(help, 1, &out, &err), 0);
    ck_assert_msg(strstr(out, "usage: dgseg config --list | --markdown"), "%s", out);
    dg_free(out);
    dg_free(err);
}
END_TEST

/* A reference cut short by a full disk must not pass for a whole one:
 * docs/configuration.md is written through a redirection. */
START_TEST(config_output_that_cannot_be_written_exits_1) {
    const int full = open("/dev/full", O_WRONLY);
    if (full < 0) {
        DG_TEST_SKIPPED("/dev/full cannot be opened here");
        return;
    }
    fflush(stdout);
    const int saved = dup(1);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_eq(dup2(full, 1), 1);
    close(full);
    capture ce;
    capture_begin(&ce);
    char *argv[] = {"config", "--markdown"};
    const int rc = dg_config_main(2, argv);
    char *err = capture_end(&ce);
    ck_assert_int_eq(dup2(saved, 1), 1);
    close(saved);
    clearerr(stdout);
    ck_assert_msg(rc == 1 && strstr(err, "could not be written"), "exit %d:\n%s", rc, err);
    dg_free(err);
}
END_TEST

START_TEST(verify_reports_counts_histograms_and_problems) {
    char cs[512], bdd[512], ini[2048], json[512];
    snprintf(cs, sizeof(cs), "%s/cs", dir);
    snprintf(bdd, sizeof(bdd), "%s/bdd", dir);
    snprintf(json, sizeof(json), "%s/v.json", dir);
    cityscapes_pair(cs, "train", "aachen_000000_000001", VH);
    cityscapes_pair(cs, "train", "aachen_000000_000002", VH);
    bdd_pair(bdd, "b1");
    snprintf(ini, sizeof(ini), "[data]\nsources = cityscapes:%s\ntargets = bdd100k:%s\n", cs, bdd);
    char *log;
    int rc = run_verify(ini, json, &log, NULL, 0);
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    dg_free(log);
    cJSON *j = read_json(json);
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(j, "datasets");
    ck_assert_int_eq(cJSON_GetArraySize(ds), 2);
    const cJSON *src = cJSON_GetArrayItem(ds, 0), *tgt = cJSON_GetArrayItem(ds, 1);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(src, "role")->valuestring, "source");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(src, "reader")->valuestring, "cityscapes");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(src, "split")->valuestring, "train");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(tgt, "role")->valuestring, "target");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(tgt, "split")->valuestring, "val");
    ck_assert_int_eq(num(src, "images"), 2);
    ck_assert_int_eq(num(tgt, "images"), 1);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(src, "problems")), 0);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(src, "label_histogram");
    ck_assert_int_eq(cJSON_GetArraySize(h), 20);
    /* per image: road 15 (one pixel is ignore), sidewalk 16, car 16, ignore 1 */
    long want[20] = {0};
    want[0] = 30;
    want[1] = 32;
    want[13] = 32;
    want[19] = 2;
    for (int k = 0; k < 20; k++)
        ck_assert_msg((long)cJSON_GetArrayItem(h, k)->valuedouble == want[k], "bin %d", k);
    h = cJSON_GetObjectItemCaseSensitive(tgt, "label_histogram");
    ck_assert_int_eq((long)cJSON_GetArrayItem(h, 10)->valuedouble, VW);
    ck_assert_int_eq((long)cJSON_GetArrayItem(h, 13)->valuedouble, VW * VH - VW);
    cJSON_Delete(j);

    /* a missing partner: reported, not fatal */
    char p[1024];
    snprintf(p, sizeof(p), "%s/leftImg8bit/train/aachen/aachen_000000_000003_leftImg8bit.png", cs);
    dg_image img;
    dg_image_init(&img, VH, VW, 3);
    ck_assert_int_eq(dg_image_write_png(p, &img), DG_STATUS_OK);
    dg_image_free(&img);
    rc = run_verify(ini, json, &log, NULL, 0);
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    dg_free(log);
    j = read_json(json);
    src = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "datasets"), 0);
    const cJSON *pr = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(src, "problems"), 0);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(pr, "kind")->valuestring, "missing_label");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(pr, "file")->valuestring, p);
    cJSON_Delete(j);
    remove(p);

    /* a truncated label and a size mismatch: fatal, named */
    char lab[1024];
    snprintf(lab, sizeof(lab), "%s/gtFine/train/aachen/aachen_000000_000002_gtFine_labelIds.png",
            cs);
    size_t n;
    char *bytes = read_file(lab, &n);
    write_file(lab, bytes, n - 20);
    dg_free(bytes);
    cityscapes_pair(cs, "train", "aachen_000000_000004", VH - 1); /* image 1 row short */
    rc = run_verify(ini, json, &log, NULL, 0);
    ck_assert_msg(rc == 1, "rc %d:\n%s", rc, log);
    ck_assert_msg(strstr(log, lab) != NULL, "%s", log);
    dg_free(log);
    j = read_json(json);
    src = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "datasets"), 0);
    const cJSON *probs = cJSON_GetObjectItemCaseSensitive(src, "problems");
    ck_assert_int_eq(cJSON_GetArraySize(probs), 2);
    pr = cJSON_GetArrayItem(probs, 0);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(pr, "kind")->valuestring, "unreadable");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(pr, "file")->valuestring, lab);
    pr = cJSON_GetArrayItem(probs, 1);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(pr, "kind")->valuestring, "size_mismatch");
    cJSON_Delete(j);

    /* the same problems in a source are not fatal when training skips them */
    char *skip[] = {"data.on_bad_sample=skip"};
    rc = run_verify(ini, json, &log, skip, 1);
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    dg_free(log);

    /* a wrong root: fatal */
    snprintf(ini, sizeof(ini), "[data]\nsources = cityscapes:%s/nothing\n", dir);
    rc = run_verify(ini, json, &log, NULL, 0);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(log, "nothing"), "%s", log);
    dg_free(log);
}
END_TEST

START_TEST(verify_reads_synth_output_with_expected_counts) {
    char out[128], ini[2048], json[512];
    snprintf(out, sizeof(out), "%.64s/synth", dir);
    snprintf(json, sizeof(json), "%s/v.json", dir);
    dg_synth_opts so;
    dg_synth_opts_default(&so);
    so.width = 64;
    so.height = 32;
    so.per_domain = 8;
    dg_synth_summary sum;
    capture cap;
    capture_begin(&cap);
    ck_assert_int_eq(dg_synth_generate(out, &so, &sum), DG_STATUS_OK);
    dg_free(capture_end(&cap));
    snprintf(ini, sizeof(ini),
            "[data]\nsources = gtav:%s/gtav, synthia:%s/synthia\n"
            "targets = cityscapes:%s/cityscapes, bdd100k:%s/bdd100k,\n  mapillary:%s/mapillary\n",
            out, out, out, out, out);
    char *log;
    int rc = run_verify(ini, json, &log, NULL, 0);
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    ck_assert_msg(strstr(log, "warning") == NULL, "%s", log);
    dg_free(log);
    cJSON *j = read_json(json);
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(j, "datasets");
    static const char *const want[5][3] = {
        {"gtav", "train", "source"}, {"synthia", "train", "source"},
        {"cityscapes", "val", "target"}, {"bdd100k", "val", "target"},
        {"mapillary", "validation", "target"},
    };
    ck_assert_int_eq(cJSON_GetArraySize(ds), 5);
    long seen[20] = {0};
    for (int i = 0; i < 5; i++) {
        const cJSON *e = cJSON_GetArrayItem(ds, i);
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(e, "reader")->valuestring, want[i][0]);
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(e, "split")->valuestring, want[i][1]);
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(e, "role")->valuestring, want[i][2]);
        ck_assert_int_eq(num(e, "images"), 8);
        ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(e, "problems")), 0);
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(e, "label_histogram");
        long total = 0;
        for (int k = 0; k < 20; k++) {
            long v = (long)cJSON_GetArrayItem(h, k)->valuedouble;
            total += v;
            seen[k] += v;
        }
        ck_assert_int_gt(total, 8 * 32 * 16); /* 8 frames of at least 16 x 32 pixels */
    }
    for (int k = 0; k < 19; k++) ck_assert_msg(seen[k] > 0, "trainId %d never seen", k);
    cJSON_Delete(j);
}
END_TEST

START_TEST(verify_usage_and_config_errors_exit_2) {
    char *log;
    capture cap;
    capture_begin(&cap);
    char *a0[] = {"verify"};
    ck_assert_int_eq(dg_verify_main(1, a0), 2);
    char *a1[] = {"verify", "--bogus"};
    ck_assert_int_eq(dg_verify_main(2, a1), 2);
    log = capture_end(&cap);
    dg_free(log);
    char json[512];
    snprintf(json, sizeof(json), "%s/v.json", dir);
    ck_assert_int_eq(run_verify("[data]\nsourcez = x:y\n", json, &log, NULL, 0), 2);
    ck_assert_msg(strstr(log, "v.ini:2: [data] unknown key 'sourcez'"), "%s", log);
    dg_free(log);
    ck_assert_int_eq(run_verify("[model]\nname = x\n", json, &log, NULL, 0), 2);
    ck_assert_msg(strstr(log, "set data.sources"), "%s", log);
    dg_free(log);
}
END_TEST

/* The optimizer module and the augmentation keep defaults of their own for
 * callers without a configuration (the optimizer tests, bench); the key
 * table is the one authority, so theirs must be its values. */
#define SAME_OPTIM(x)                                                                      \
    ck_assert_msg(c.optim.x == m.x, "optim." #x ": key table %.17g, dg_method_cfg_default %.17g", \
            (double)c.optim.x, (double)m.x)
START_TEST(engine_defaults_are_the_key_table_defaults) {
    dg_config c;
    dg_config_defaults(&c);
    dg_method_cfg m;
    dg_method_cfg_default(&m);
    SAME_OPTIM(momentum);
    SAME_OPTIM(nesterov);
    SAME_OPTIM(weight_decay);
    SAME_OPTIM(wd_all);
    SAME_OPTIM(beta1);
    SAME_OPTIM(beta2);
    SAME_OPTIM(eps);
    SAME_OPTIM(la_k);
    SAME_OPTIM(la_alpha);
    SAME_OPTIM(la_endpoint);
    SAME_OPTIM(la_reg);
    SAME_OPTIM(la_reg_strength);
    SAME_OPTIM(la_schedule_per_cycle);
    SAME_OPTIM(la_momentum);
    SAME_OPTIM(la_bn_refresh);
    SAME_OPTIM(la_bn_refresh_final);
    SAME_OPTIM(swad_n_converge);
    SAME_OPTIM(swad_n_tolerance);
    SAME_OPTIM(swad_tolerance_ratio);
    SAME_OPTIM(swad_eval_every);
    SAME_OPTIM(swad_early_stop);
    SAME_OPTIM(swad_bn_batches);
    SAME_OPTIM(swad_val_images);
    SAME_OPTIM(sam_rho);
    SAME_OPTIM(asam_rho);
    SAME_OPTIM(asam_eta);
    SAME_OPTIM(lb_k);
    SAME_OPTIM(lb_alpha_adaptive);
    if (!c.optim.lb_alpha_adaptive) SAME_OPTIM(lb_alpha); /* a number only when static */
    SAME_OPTIM(lb_reuse_ascent);
    SAME_OPTIM(dgsam_rho);
    SAME_OPTIM(dgsam_refresh_first);
    SAME_OPTIM(dgsam_order);
    SAME_OPTIM(saf_lambda);
    SAME_OPTIM(saf_tau);
    SAME_OPTIM(saf_epochs_back);
    SAME_OPTIM(saf_start_epoch);
    SAME_OPTIM(saf_end_epoch);
    SAME_OPTIM(mesa_lambda);
    SAME_OPTIM(mesa_tau);
    SAME_OPTIM(mesa_decay);
    SAME_OPTIM(mesa_start_epoch);
    SAME_OPTIM(mesa_end_epoch);
    SAME_OPTIM(mesa_eval_teacher);
    dg_seg_aug_cfg a;
    dg_seg_aug_cfg_default(&a);
    ck_assert(c.scale_min == a.scale_min && c.scale_max == a.scale_max);
    ck_assert(c.crop_size == a.crop_h && c.crop_size == a.crop_w);
    ck_assert(c.flip == (a.flip_p > 0) && c.jitter_p == a.jitter_p);
    ck_assert(c.brightness == a.brightness && c.contrast == a.contrast);
    ck_assert(c.saturation == a.saturation && c.hue == a.hue && c.blur == a.blur);
    ck_assert(c.blur_sigma_min == a.blur_sigma_min && c.blur_sigma_max == a.blur_sigma_max);
    dg_config_free(&c);
}
END_TEST

Suite *config_suite(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("ini");
    tcase_add_checked_fixture(tc, make_dir, remove_dir);
    tcase_add_test(tc, resolved_config_reads_back_identically);
    tcase_add_test(tc, engine_defaults_are_the_key_table_defaults);
    tcase_add_test(tc, choice_keys_read_as_their_named_values);
    tcase_add_test(tc, errors_name_file_line_and_key);
    tcase_add_test(tc, lists_continue_on_indented_lines);
    tcase_add_test(tc, overrides_and_validation);
    tcase_add_test(tc, fifos_folders_and_dangling_links_are_named_not_opened);
    tcase_add_test(tc, keys_outside_sections_and_repeated_lists_are_named);
    tcase_add_test(tc, long_values_read_back_whole_or_are_refused);
    tcase_add_test(tc, unknown_models_and_empty_dataset_lists_are_refused_at_load);
    suite_add_tcase(s, tc);
    TCase *r = tcase_create("reference");
    tcase_add_test(r, every_key_has_a_description);
    tcase_add_test(r, config_list_prints_every_key_under_its_section);
    tcase_add_test(r, configuration_md_matches_the_key_table);
    tcase_add_test(r, config_usage_errors_exit_2_naming_the_flag);
    tcase_add_test(r, config_output_that_cannot_be_written_exits_1);
    suite_add_tcase(s, r);
    TCase *v = tcase_create("verify");
    tcase_set_timeout(v, 30);
    tcase_add_checked_fixture(v, make_dir, remove_dir);
    tcase_add_test(v, verify_reports_counts_histograms_and_problems);
    tcase_add_test(v, verify_reads_synth_output_with_expected_counts);
    tcase_add_test(v, verify_usage_and_config_errors_exit_2);
    suite_add_tcase(s, v);
    return s;
}
