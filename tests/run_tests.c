/* tests/run_tests.c -- one SRunner over every suite (tests/test_<suite>.c).
 * CK_RUN_SUITE=<suite> (set by ctest) runs one of them; the exit status is
 * non-zero when any test fails. */
#include <stdlib.h>

#include <check.h>

#define DG_SUITE(name) Suite *name##_suite(void);
#include "suites.inc"
#undef DG_SUITE

int main(void) {
    SRunner *sr = srunner_create(NULL);
#define DG_SUITE(name) srunner_add_suite(sr, name##_suite());
#include "suites.inc"
#undef DG_SUITE
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
