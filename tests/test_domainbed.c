/* tests/test_domainbed.c -- DomainBed image folders (data/domainbed.h,
 * docs/datasets.md §9.1) and the in/out split (data/holdout.h, §9.2) on trees
 * of real PNG/JPEG files written here: sorted domains and classes, the
 * ImageFolder file order (by folder, then name: dog/b.png before dog/a/y.png,
 * folder "a" before "a b" although the full path "a b/z" sorts before "a/y"), extension
 * filter, a class missing from one domain, and the error cases (no root,
 * no domains, a domain without images, a corrupt image named on load). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "data/domainbed.h"
#include "data/fsutil.h"
#include "data/holdout.h"

static char root[64];
static void make_root(void) { make_tmpdir(root, "domainbed"); }
static void remove_root(void) { remove_tree(root, 6); }

static void mkdirs(const char *rel) {
    char path[512], *p;
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    for (p = path + strlen(root) + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    mkdir(path, 0755);
}

/* A 3x2 image whose red channel is v. */
static void put_image(const char *rel, int v) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdirs(path + strlen(root) + 1);
    *slash = '/';
    dg_image img;
    dg_image_init(&img, 2, 3, 3);
    for (int i = 0; i < 6; i++) img.data[3 * i] = (uint8_t)v;
    dg_status st = (dg_ends_with(path, ".jpg") || dg_ends_with(path, ".jpeg")) ? dg_image_write_jpeg(path, &img, 95)
                                           : dg_image_write_png(path, &img);
    ck_assert_int_eq(st, DG_STATUS_OK);
    dg_image_free(&img);
}

START_TEST(domains_classes_and_imagefolder_order) {
    put_image("photo/dog/b.png", 1);
    put_image("photo/dog/a.png", 2);
    put_image("photo/dog/a b/z.png", 3); /* folder "a" sorts before "a b" */
    put_image("photo/dog/a/y.PNG", 4);
    put_image("photo/cat/x.jpg", 5);
    put_image("art/cat/q.png", 6);
    put_image("art/dog/r.jpeg", 7);
    put_image("art/elephant/s.bmp", 8);
    char notes[512];
    snprintf(notes, sizeof(notes), "%s/art/dog/readme.txt", root);
    write_file(notes, "not an image", 12);
    dg_domainbed ds;
    capture cap;
    capture_begin(&cap);
    ck_assert_int_eq(dg_domainbed_open(root, &ds), DG_STATUS_OK);
    char *log = capture_end(&cap);
    ck_assert_int_eq(ds.n_domains, 2);
    ck_assert_str_eq(ds.domains[0].name, "art");
    ck_assert_str_eq(ds.domains[1].name, "photo");
    ck_assert_int_eq(ds.n_classes, 3);
    ck_assert_str_eq(ds.classes[0], "cat");
    ck_assert_str_eq(ds.classes[1], "dog");
    ck_assert_str_eq(ds.classes[2], "elephant");
    /* photo lacks "elephant": warned, indices kept */
    ck_assert_msg(strstr(log, "photo has no folder for class 'elephant'") != NULL, "%s", log);
    dg_free(log);
    ck_assert_int_eq(ds.domains[0].n, 3);
    const dg_domainbed_domain *p = &ds.domains[1];
    ck_assert_int_eq(p->n, 5);
    const char *want[5] = {"cat/x.jpg", "dog/a.png", "dog/b.png", "dog/a/y.PNG", "dog/a b/z.png"};
    const int32_t lab[5] = {0, 1, 1, 1, 1};
    for (int k = 0; k < 5; k++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/photo/%s", root, want[k]);
        ck_assert_str_eq(p->paths[k], path);
        ck_assert_int_eq(p->labels[k], lab[k]);
    }
    ck_assert_int_eq(dg_domainbed_find_domain(&ds, "photo"), 1);
    ck_assert_int_eq(dg_domainbed_find_domain(&ds, "sketch"), -1);
    dg_image img;
    ck_assert_int_eq(dg_domainbed_load(&ds, 1, 4, &img), DG_STATUS_OK);
    ck_assert_int_eq(img.h, 2);
    ck_assert_int_eq(img.w, 3);
    ck_assert_int_eq(img.data[0], 3);
    dg_image_free(&img);
    dg_domainbed_free(&ds);
}
END_TEST

START_TEST(corrupt_image_is_named_on_load) {
    put_image("a/c0/ok.png", 1);
    char bad[512];
    snprintf(bad, sizeof(bad), "%s/a/c0/zz.png", root);
    write_file(bad, "\x89PNG\r\n\x1a\n truncated", 18);
    dg_domainbed ds;
    ck_assert_int_eq(dg_domainbed_open(root, &ds), DG_STATUS_OK);
    ck_assert_int_eq(ds.domains[0].n, 2);
    dg_image img;
    capture cap;
    capture_begin(&cap);
    dg_status st = dg_domainbed_load(&ds, 0, 1, &img);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_FORMAT);
    ck_assert_msg(strstr(log, bad) != NULL, "%s", log);
    dg_free(log);
    dg_domainbed_free(&ds);
}
END_TEST

START_TEST(missing_root_empty_root_and_empty_domain_are_errors) {
    dg_domainbed ds;
    char path[512];
    capture cap;
    snprintf(path, sizeof(path), "%s/nope", root);
    capture_begin(&cap);
    ck_assert_int_eq(dg_domainbed_open(path, &ds), DG_STATUS_ERR_MISSING);
    char *log = capture_end(&cap);
    ck_assert_msg(strstr(log, path) && strstr(log, "no such folder"), "%s", log);
    dg_free(log);

    capture_begin(&cap);
    ck_assert_int_eq(dg_domainbed_open(root, &ds), DG_STATUS_ERR_MISSING);
    log = capture_end(&cap);
    ck_assert_msg(strstr(log, "holds no domain folders") != NULL, "%s", log);
    dg_free(log);

    put_image("d0/c/x.png", 1);
    mkdirs("d1/c");
    snprintf(path, sizeof(path), "%s/d1/c/notes.txt", root);
    write_file(path, "x", 1);
    capture_begin(&cap);
    ck_assert_int_eq(dg_domainbed_open(root, &ds), DG_STATUS_ERR_MISSING);
    log = capture_end(&cap);
    ck_assert_msg(strstr(log, "/d1 holds no images") != NULL, "%s", log);
    dg_free(log);
    ck_assert_ptr_null(ds.domains);
}
END_TEST

START_TEST(holdout_split_is_80_20_and_seeded) {
    dg_holdout_split a, b, c;
    dg_holdout_split_init(&a, 101, 2, 0);
    dg_holdout_split_init(&b, 101, 2, 0);
    dg_holdout_split_init(&c, 101, 2, 1);
    ck_assert_int_eq(a.n_out, 20);
    ck_assert_int_eq(a.n_in, 81);
    ck_assert(!memcmp(a.order, b.order, 101 * sizeof(int64_t)));
    ck_assert(memcmp(a.order, c.order, 101 * sizeof(int64_t)) != 0);
    int seen[101] = {0};
    for (int k = 0; k < 101; k++) seen[a.order[k]]++;
    for (int k = 0; k < 101; k++) ck_assert_int_eq(seen[k], 1);
    dg_holdout_split_free(&a);
    dg_holdout_split_free(&b);
    dg_holdout_split_free(&c);
}
END_TEST

Suite *domainbed_suite(void) {
    Suite *s = suite_create("domainbed");
    TCase *tc = tcase_create("folders");
    tcase_add_checked_fixture(tc, make_root, remove_root);
    tcase_add_test(tc, domains_classes_and_imagefolder_order);
    tcase_add_test(tc, corrupt_image_is_named_on_load);
    tcase_add_test(tc, missing_root_empty_root_and_empty_domain_are_errors);
    tcase_add_test(tc, holdout_split_is_80_20_and_seeded);
    suite_add_tcase(s, tc);
    return s;
}
