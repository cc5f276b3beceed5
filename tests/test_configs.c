/* tests/test_configs.c -- every file under configs/ loads and passes the
 * configuration checks (dgseg verify's and train's first step): known
 * sections and keys, values in range, cross-key rules. Training from them is
 * smoke-tested by hand on `dgseg synth` output (see the project notes). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "app/config.h"
#include "common.h"
#include "data/fsutil.h"

/* configs/ next to data/splits in the source tree. */
static char *configs_dir(void) { return dg_xasprintf("%s/../../configs", DG_SPLIT_DIR); }

START_TEST(every_config_loads_and_validates) {
    char *dirp = configs_dir();
    DIR *d = opendir(dirp);
    ck_assert_msg(d != NULL, "no folder %s", dirp);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        if (!dg_ends_with(e->d_name, ".ini")) continue;
        char *path = dg_path_join(dirp, e->d_name);
        dg_config cfg;
        capture cap;
        capture_begin(&cap);
        int rc = dg_config_load_checked(&cfg, path, 0, NULL);
        char *log = capture_end(&cap);
        ck_assert_msg(rc == 0, "%s: exit %d:\n%s", path, rc, log);
        if (!strncmp(e->d_name, "gtav", 4) || !strncmp(e->d_name, "demo", 4))
            ck_assert_msg(cfg.task == DG_TASK_SEGMENTATION, "%s", path);
        if (!strncmp(e->d_name, "rfmnist", 7))
            ck_assert_msg(cfg.task == DG_TASK_CLASSIFICATION, "%s", path);
        dg_config_free(&cfg);
        dg_free(log);
        dg_free(path);
        n++;
    }
    closedir(d);
    ck_assert_int_ge(n, 10);
    dg_free(dirp);
}
END_TEST

Suite *configs_suite(void) {
    Suite *s = suite_create("configs");
    TCase *tc = tcase_create("files");
    tcase_add_test(tc, every_config_loads_and_validates);
    suite_add_tcase(s, tc);
    return s;
}
