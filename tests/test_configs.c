/* tests/test_configs.c -- every file under configs/ loads and passes the
 * configuration checks (dgseg verify's and train's first step): known
 * sections and keys, values in range, cross-key rules. The file names say
 * what a config runs (<benchmark>-<method>.ini), so the names are checked
 * against the contents too: the task of the benchmark prefix, the method of
 * the suffix, the classification track's optimizer (docs/algorithms.md §16:
 * Adam, no weight decay, constant rate, evaluations on) and LA at 5x the
 * ERM rate of the same benchmark. Training from them is smoke-tested by
 * scripts/smoke-configs on `dgseg synth` output and fake DomainBed trees. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"
#include "common.h"
#include "data/fsutil.h"

/* configs/ next to data/splits in the source tree. */
static char *configs_dir(void) { return dg_xasprintf("%s/../../configs", DG_SPLIT_DIR); }

/* Benchmark prefixes: task and whether the data is a DomainBed tree. */
typedef struct bench_kind {
    const char *prefix;
    dg_task task;
    bool domainbed;
} bench_kind;

static const bench_kind benches[] = {
    {"gtav-", DG_TASK_SEGMENTATION, false},
    {"demo", DG_TASK_SEGMENTATION, false},
    {"synth-", DG_TASK_SEGMENTATION, false},
    {"rfmnist-", DG_TASK_CLASSIFICATION, false},
    {"pacs-", DG_TASK_CLASSIFICATION, true},
    {"vlcs-", DG_TASK_CLASSIFICATION, true},
    {"officehome-", DG_TASK_CLASSIFICATION, true},
    {"terraincognita-", DG_TASK_CLASSIFICATION, true},
    {"domainnet-", DG_TASK_CLASSIFICATION, true},
};

/* Method suffixes (longest first: "-la-wa" before "-la"). la_reg is -1 for
 * methods other than lookahead. */
typedef struct method_kind {
    const char *suffix;
    const char *method;
    int la_reg;
} method_kind;

static const method_kind methods[] = {
    {"-lookbehind-sam.ini", "lookbehind-sam", -1},
    {"-la-wa.ini", "lookahead", DG_LA_REG_AVERAGE},
    {"-la-ha.ini", "lookahead", DG_LA_REG_HISTORY},
    {"-la.ini", "lookahead", DG_LA_REG_NONE},
    {"-erm.ini", "erm", -1},
    {"-swad.ini", "swad", -1},
    {"-asam.ini", "asam", -1},
    {"-sam.ini", "sam", -1},
    {"-dgsam.ini", "dgsam", -1},
    {"-saf.ini", "saf", -1},
    {"-mesa.ini", "mesa", -1},
};

static const bench_kind *bench_of(const char *name) {
    for (size_t i = 0; i < DG_ARRAY_LEN(benches); i++)
        if (!strncmp(name, benches[i].prefix, strlen(benches[i].prefix))) return &benches[i];
    return NULL;
}

static const method_kind *method_of(const char *name) {
    for (size_t i = 0; i < DG_ARRAY_LEN(methods); i++)
        if (dg_ends_with(name, methods[i].suffix)) return &methods[i];
    return NULL;
}

/* Loads and validates one file of configs/ (fails the test otherwise). */
static void load_config(const char *dirp, const char *name, dg_config *cfg) {
    char *path = dg_path_join(dirp, name);
    capture cap;
    capture_begin(&cap);
    int rc = dg_config_load_checked(cfg, path, 0, NULL);
    char *log = capture_end(&cap);
    ck_assert_msg(rc == 0, "%s: exit %d:\n%s", path, rc, log);
    dg_free(log);
    dg_free(path);
}

/* The sorted .ini names of configs/ (*n of them; free with names_free). */
static char **config_names(const char *dirp, int *n) {
    DIR *d = opendir(dirp);
    ck_assert_msg(d != NULL, "no folder %s", dirp);
    char **v = NULL;
    int cnt = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!dg_ends_with(e->d_name, ".ini")) continue;
        v = dg_xrealloc(v, (size_t)(cnt + 1) * sizeof(*v));
        v[cnt++] = dg_xstrdup(e->d_name);
    }
    closedir(d);
    *n = cnt;
    return v;
}

static void names_free(char **v, int n) {
    for (int i = 0; i < n; i++) dg_free(v[i]);
    dg_free(v);
}

START_TEST(every_config_loads_and_validates) {
    char *dirp = configs_dir();
    int n = 0;
    char **names = config_names(dirp, &n);
    for (int i = 0; i < n; i++) {
        dg_config cfg;
        load_config(dirp, names[i], &cfg);
        const bench_kind *b = bench_of(names[i]);
        ck_assert_msg(b != NULL, "%s: unknown benchmark prefix (extend tests/test_configs.c)",
                names[i]);
        ck_assert_msg(cfg.task == b->task, "%s: task %d, the name says %d", names[i],
                (int)cfg.task, (int)b->task);
        if (b->domainbed)
            ck_assert_msg(!strncmp(cfg.dataset, "domainbed:", 10), "%s: data.dataset = %s",
                    names[i], cfg.dataset);
        dg_config_free(&cfg);
    }
    /* 15 segmentation/demo/rfmnist files before the classification set, 33
     * with it: a file that disappears is noticed */
    ck_assert_int_ge(n, 33);
    names_free(names, n);
    dg_free(dirp);
}
END_TEST

/* The method named by the suffix is the one configured; the classification
 * track's settings (docs/algorithms.md §16, docs/datasets.md §9.2, §12.6). */
START_TEST(names_match_contents) {
    char *dirp = configs_dir();
    int n = 0, checked = 0;
    char **names = config_names(dirp, &n);
    for (int i = 0; i < n; i++) {
        const method_kind *mk = method_of(names[i]);
        const bench_kind *b = bench_of(names[i]);
        if (!mk || !b) continue;
        dg_config cfg;
        load_config(dirp, names[i], &cfg);
        ck_assert_msg(!strcmp(cfg.method, mk->method), "%s: optim.method = %s, the name says %s",
                names[i], cfg.method, mk->method);
        if (mk->la_reg >= 0)
            ck_assert_msg((int)cfg.optim.la_reg == mk->la_reg,
                    "%s: optim.la_reg %d, the name says %d", names[i], (int)cfg.optim.la_reg,
                    mk->la_reg);
        if (b->task == DG_TASK_CLASSIFICATION) {
            ck_assert_msg(!strcmp(cfg.base, "adam"), "%s: optim.base = %s", names[i], cfg.base);
            ck_assert_msg(cfg.optim.weight_decay == 0, "%s: optim.weight_decay = %g", names[i],
                    cfg.optim.weight_decay);
            ck_assert_msg(!strcmp(cfg.schedule, "constant"), "%s: optim.schedule = %s", names[i],
                    cfg.schedule);
            ck_assert_msg(cfg.eval_every > 0, "%s: train.eval_every = 0 (no selection)",
                    names[i]);
            ck_assert_msg(cfg.test_domains[0] != '\0', "%s: no data.test_domains", names[i]);
            if (b->domainbed)
                ck_assert_msg(cfg.freeze_bn && !strcmp(cfg.model, "resnet50") &&
                        cfg.pretrained[0] && cfg.batch_size == 32,
                        "%s: DomainBed needs a pretrained resnet50, frozen BN, batch 32",
                        names[i]);
        }
        /* SWAD's decisions follow the trainer's evaluations (docs/algorithms.md §6) */
        if (!strcmp(cfg.method, "swad") && b->task == DG_TASK_CLASSIFICATION)
            ck_assert_msg(cfg.eval_every == cfg.optim.swad_eval_every,
                    "%s: train.eval_every %ld != optim.swad_eval_every %ld", names[i],
                    cfg.eval_every, cfg.optim.swad_eval_every);
        dg_config_free(&cfg);
        checked++;
    }
    ck_assert_int_ge(checked, 30);
    names_free(names, n);
    dg_free(dirp);
}
END_TEST

/* LA runs at 5x the ERM rate of the same benchmark (docs/algorithms.md §5.3). */
START_TEST(lookahead_at_five_times_erm) {
    char *dirp = configs_dir();
    int n = 0, pairs = 0;
    char **names = config_names(dirp, &n);
    for (int i = 0; i < n; i++) {
        const method_kind *mk = method_of(names[i]);
        if (!mk || strcmp(mk->method, "lookahead")) continue;
        /* <bench>-la*.ini -> <bench>-erm.ini */
        const char *cut = strstr(names[i], "-la");
        ck_assert_ptr_nonnull(cut);
        char *erm = dg_xasprintf("%.*s-erm.ini", (int)(cut - names[i]), names[i]);
        char *path = dg_path_join(dirp, erm);
        if (dg_is_file(path)) {
            dg_config la, base;
            load_config(dirp, names[i], &la);
            load_config(dirp, erm, &base);
            ck_assert_msg(fabs(la.lr - 5 * base.lr) <= 1e-12 * la.lr,
                    "%s: lr %g is not 5x %s's %g", names[i], la.lr, erm, base.lr);
            dg_config_free(&la);
            dg_config_free(&base);
            pairs++;
        }
        dg_free(path);
        dg_free(erm);
    }
    ck_assert_int_ge(pairs, 10);
    names_free(names, n);
    dg_free(dirp);
}
END_TEST

Suite *configs_suite(void) {
    Suite *s = suite_create("configs");
    TCase *tc = tcase_create("files");
    tcase_add_test(tc, every_config_loads_and_validates);
    tcase_add_test(tc, names_match_contents);
    tcase_add_test(tc, lookahead_at_five_times_erm);
    suite_add_tcase(s, tc);
    return s;
}
