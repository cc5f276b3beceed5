/* tests/run_tests.c -- one SRunner over every suite (tests/test_<suite>.c).
 * CK_RUN_SUITE=<suite> (set by ctest) runs one of them; the exit status is
 * non-zero when any test fails. Cases skipped on this machine (DG_TEST_SKIPPED,
 * tests/common.h) are listed at the end and written to
 * DG_BINARY_DIR/skipped/<suite>.txt (removed when none). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#define DG_SUITE(name) Suite *name##_suite(void);
#include "suites.inc"
#undef DG_SUITE

/* Copies the skip log to out (and stdout); removes out when it is empty. */
static void report_skipped(const char *log, const char *out, const char *suite) {
    FILE *f = fopen(log, "r");
    FILE *o = NULL;
    char line[1024];
    int n = 0;
    while (f && fgets(line, sizeof(line), f)) {
        if (!n++) {
            printf("skipped here (each line says what it could not check, and what it checked instead):\n");
            o = fopen(out, "w");
        }
        printf("  %s: %s", suite, line);
        if (o) fprintf(o, "%s: %s", suite, line);
    }
    if (f) fclose(f);
    if (o) fclose(o);
    if (!n) unlink(out);
    unlink(log);
}

int main(void) {
    const char *suite = getenv("CK_RUN_SUITE");
    char dir[512], out[600], log[64] = "/tmp/dg_skipped_XXXXXX";
    snprintf(dir, sizeof(dir), "%s/skipped", DG_BINARY_DIR);
    mkdir(dir, 0755);
    snprintf(out, sizeof(out), "%s/%s.txt", dir, suite && *suite ? suite : "all");
    int fd = mkstemp(log);
    if (fd >= 0) {
        close(fd);
        setenv("DG_SKIP_LOG", log, 1);
    }
    SRunner *sr = srunner_create(NULL);
#define DG_SUITE(name) srunner_add_suite(sr, name##_suite());
#include "suites.inc"
#undef DG_SUITE
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (fd >= 0) report_skipped(log, out, suite && *suite ? suite : "all");
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
