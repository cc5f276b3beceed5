/* tests/test_sources.c -- the loader's sample sources (data/sources.h)
 * end to end on real files: a flat-layout GTAV set (paletted labelIds) read
 * through the reader, augmented and batched by worker threads gives the
 * same batches for 0, 1 and 2 workers, labels that are trainIds of the
 * frame (or 255) and images whose colour still tells the label (jitter and
 * blur off); a corrupt frame under the fail and skip policies; the
 * evaluation source keeps full frames and their exact labels; DomainBed and
 * Rotated Fashion-MNIST sources deliver their labels and shapes. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "data/png_io.h"
#include "data/sources.h"

#define FH 40
#define FW 56
#define NF 6
#define R 4 /* label-border margin of the alignment check */

static char root[64];
static void make_root(void) { make_tmpdir(root, "sources"); }
static void remove_root(void) { remove_tree(root, 4); }

/* labelId of pixel (y, x) of frame k: sky (23) on top, building (11),
 * road (7) at the bottom with a car (26) block, one unlabeled (0) column.
 * trainIds: 10, 2, 0, 13, 255. The image colour is a function of the id. */
static uint8_t frame_id(int k, int y, int x) {
    if (x == FW - 1) return 0;
    if (y < FH / 4) return 23;
    if (y < FH / 2) return 11;
    if (x >= 8 + 4 * k && x < 24 + 4 * k && y >= 26) return 26;
    return 7;
}

static const uint8_t id_colour[256][3] = {
    [0] = {0, 0, 0}, [7] = {128, 64, 128}, [11] = {70, 70, 70}, [23] = {70, 130, 180},
    [26] = {0, 0, 142},
};

static int train_id(uint8_t id) {
    switch (id) {
    case 7: return 0;
    case 11: return 2;
    case 23: return 10;
    case 26: return 13;
    default: return 255;
    }
}

static void write_gtav(void) {
    char path[256];
    snprintf(path, sizeof(path), "%s/images", root);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/labels", root);
    mkdir(path, 0755);
    for (int k = 0; k < NF; k++) {
        dg_image img;
        dg_image_init(&img, FH, FW, 3);
        uint8_t lab[FH * FW];
        /* a palette whose colours do not match the indices */
        uint8_t pal[256][3];
        for (int i = 0; i < 256; i++) pal[i][0] = pal[i][1] = pal[i][2] = (uint8_t)(255 - i);
        for (int y = 0; y < FH; y++) {
            for (int x = 0; x < FW; x++) {
                uint8_t id = frame_id(k, y, x);
                lab[y * FW + x] = id;
                memcpy(img.data + 3 * (y * FW + x), id_colour[id], 3);
            }
        }
        snprintf(path, sizeof(path), "%s/images/%05d.png", root, k + 1);
        ck_assert_int_eq(dg_image_write_png(path, &img), DG_STATUS_OK);
        snprintf(path, sizeof(path), "%s/labels/%05d.png", root, k + 1);
        ck_assert_int_eq(dg_png_write_paletted(path, lab, FH, FW, (const uint8_t(*)[3])pal, 256),
                DG_STATUS_OK);
        dg_image_free(&img);
    }
}

/* Batches of a seg train loader: (n_batches, B, 3, C, C) images and labels. */
static void run_seg(const dg_seg_dataset *ds, int workers, int crop, int n_batches, float *x,
        int32_t *lab, dg_bad_sample_policy pol, dg_status *last) {
    dg_seg_train_source s = {.n_domains = 1};
    s.ds[0] = ds;
    dg_seg_aug_cfg_default(&s.aug);
    s.aug.crop_h = s.aug.crop_w = crop;
    s.aug.jitter_p = 0;
    s.aug.blur = false;
    s.aug.normalize = false;
    dg_loader_cfg c;
    memset(&c, 0, sizeof(c));
    dg_seg_train_source_bind(&s, &c.src);
    c.n_domains = 1;
    c.dom[0].n = (int64_t)ds->n;
    c.per_domain = 2;
    c.workers = workers;
    c.seed = 3;
    c.on_bad = pol;
    dg_loader *l;
    ck_assert_int_eq(dg_loader_create(&c, &l), DG_STATUS_OK);
    const size_t xs = 2 * 3 * (size_t)crop * (size_t)crop, ls = 2 * (size_t)crop * (size_t)crop;
    *last = DG_STATUS_OK;
    for (int k = 0; k < n_batches; k++) {
        const dg_batch *b;
        *last = dg_loader_next(l, &b);
        if (*last != DG_STATUS_OK) break;
        ck_assert_int_eq(b->h, crop);
        ck_assert_int_eq(b->w, crop);
        memcpy(x + (size_t)k * xs, b->x, xs * sizeof(float));
        memcpy(lab + (size_t)k * ls, b->label, ls * sizeof(int32_t));
    }
    dg_loader_free(l);
}

START_TEST(seg_train_batches_are_aligned_and_worker_independent) {
    write_gtav();
    dg_seg_dataset ds;
    ck_assert_int_eq(dg_seg_dataset_open("gtav", root, "all", &ds), DG_STATUS_OK);
    const int crop = 32, nb = 6;
    const size_t xs = (size_t)nb * 2 * 3 * crop * crop, ls = (size_t)nb * 2 * crop * crop;
    float *x0 = dg_xmalloc(xs * sizeof(float)), *x1 = dg_xmalloc(xs * sizeof(float));
    int32_t *l0 = dg_xmalloc(ls * sizeof(int32_t)), *l1 = dg_xmalloc(ls * sizeof(int32_t));
    dg_status st;
    run_seg(&ds, 0, crop, nb, x0, l0, DG_BAD_SAMPLE_FAIL, &st);
    ck_assert_int_eq(st, DG_STATUS_OK);
    for (int w = 1; w <= 2; w++) {
        run_seg(&ds, w, crop, nb, x1, l1, DG_BAD_SAMPLE_FAIL, &st);
        ck_assert(!memcmp(x0, x1, xs * sizeof(float)));
        ck_assert(!memcmp(l0, l1, ls * sizeof(int32_t)));
    }
    /* labels are trainIds or 255; away from label borders the colour of a
     * pixel tells its label (bicubic scaling by s <= 2 reaches 2s pixels) */
    long checked = 0, seen[256] = {0};
    for (int s = 0; s < nb * 2; s++) {
        const float *img = x0 + (size_t)s * 3 * crop * crop;
        const int32_t *lab = l0 + (size_t)s * crop * crop;
        for (int y = 0; y < crop; y++) {
            for (int xx = 0; xx < crop; xx++) {
                int32_t v = lab[y * crop + xx];
                ck_assert(v == 0 || v == 2 || v == 10 || v == 13 || v == 255);
                seen[v]++;
                bool uniform = true;
                for (int dy = -R; dy <= R; dy++)
                    for (int dx = -R; dx <= R; dx++)
                        uniform &= y + dy >= 0 && y + dy < crop && xx + dx >= 0 &&
                                xx + dx < crop && lab[(y + dy) * crop + xx + dx] == v;
                if (!uniform || v == 255) continue;
                uint8_t id = v == 0 ? 7 : v == 2 ? 11 : v == 10 ? 23 : 26;
                for (int ch = 0; ch < 3; ch++)
                    ck_assert_msg(fabsf(img[ch * crop * crop + y * crop + xx] * 255.0f -
                                        id_colour[id][ch]) < 2.0f,
                            "sample %d (%d, %d) label %d colour %g off", s, y, xx, v,
                            (double)img[ch * crop * crop + y * crop + xx] * 255);
                checked++;
            }
        }
    }
    ck_assert_int_gt(checked, 1000);
    ck_assert_int_gt(seen[0], 0);
    ck_assert_int_gt(seen[10], 0);
    dg_free(x0);
    dg_free(x1);
    dg_free(l0);
    dg_free(l1);
    dg_seg_dataset_free(&ds);
}
END_TEST

START_TEST(corrupt_frame_fails_or_is_skipped) {
    write_gtav();
    char bad[256];
    snprintf(bad, sizeof(bad), "%s/labels/00003.png", root);
    size_t n;
    char *bytes = read_file(bad, &n);
    write_file(bad, bytes, n / 2);
    dg_free(bytes);
    dg_seg_dataset ds;
    ck_assert_int_eq(dg_seg_dataset_open("gtav", root, "all", &ds), DG_STATUS_OK);
    const int crop = 16, nb = 3; /* one epoch: every frame is drawn */
    float *x = dg_xmalloc((size_t)nb * 2 * 3 * crop * crop * sizeof(float));
    int32_t *l = dg_xmalloc((size_t)nb * 2 * crop * crop * sizeof(int32_t));
    dg_status st;
    capture cap;
    capture_begin(&cap);
    run_seg(&ds, 2, crop, nb, x, l, DG_BAD_SAMPLE_FAIL, &st);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_FORMAT);
    ck_assert_msg(strstr(log, bad) != NULL, "%s", log);
    dg_free(log);
    capture_begin(&cap);
    run_seg(&ds, 2, crop, nb, x, l, DG_BAD_SAMPLE_SKIP, &st);
    log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_OK);
    ck_assert_msg(strstr(log, "skipping sample (domain 0, item 2)") != NULL, "%s", log);
    dg_free(log);
    dg_free(x);
    dg_free(l);
    dg_seg_dataset_free(&ds);
}
END_TEST

START_TEST(seg_eval_source_keeps_full_frames) {
    write_gtav();
    dg_seg_dataset ds;
    ck_assert_int_eq(dg_seg_dataset_open("gtav", root, "all", &ds), DG_STATUS_OK);
    dg_seg_eval_source s = {.ds = &ds};
    dg_seg_eval_cfg_default(&s.eval);
    dg_loader_cfg c;
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(dg_seg_eval_source_bind(&s, &c.src), DG_STATUS_OK);
    ck_assert_int_eq(s.max_h, FH);
    ck_assert_int_eq(s.max_w, FW);
    c.n_domains = 1;
    c.dom[0].n = (int64_t)ds.n;
    c.per_domain = 1;
    c.sequential = true;
    c.workers = 1;
    dg_loader *l;
    ck_assert_int_eq(dg_loader_create(&c, &l), DG_STATUS_OK);
    const dg_batch *b;
    for (int k = 0; k < NF; k++) {
        ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_OK);
        ck_assert_int_eq(b->h, FH);
        ck_assert_int_eq(b->w, FW);
        for (int y = 0; y < FH; y++)
            for (int x = 0; x < FW; x++)
                ck_assert_int_eq(b->label[y * FW + x], train_id(frame_id(k, y, x)));
    }
    ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_ERR_MISSING);
    dg_loader_free(l);
    dg_seg_dataset_free(&ds);
}
END_TEST

START_TEST(domainbed_source_labels_and_shapes) {
    char path[256];
    const char *doms[2] = {"d0", "d1"}, *cls[2] = {"a", "b"};
    for (int d = 0; d < 2; d++) {
        snprintf(path, sizeof(path), "%s/%s", root, doms[d]);
        mkdir(path, 0755);
        for (int k = 0; k < 2; k++) {
            snprintf(path, sizeof(path), "%s/%s/%s", root, doms[d], cls[k]);
            mkdir(path, 0755);
            for (int i = 0; i < 3; i++) {
                dg_image img;
                dg_image_init(&img, 20 + i, 30, 3);
                snprintf(path, sizeof(path), "%s/%s/%s/%d.png", root, doms[d], cls[k], i);
                ck_assert_int_eq(dg_image_write_png(path, &img), DG_STATUS_OK);
                dg_image_free(&img);
            }
        }
    }
    dg_domainbed ds;
    ck_assert_int_eq(dg_domainbed_open(root, &ds), DG_STATUS_OK);
    for (int train = 0; train < 2; train++) {
        dg_domainbed_source s = {.ds = &ds, .train = train};
        s.domain[0] = 1;
        dg_cls_aug_cfg_default(&s.aug);
        s.aug.size = 16;
        dg_loader_cfg c;
        memset(&c, 0, sizeof(c));
        dg_domainbed_source_bind(&s, &c.src);
        c.n_domains = 1;
        c.dom[0].n = 6;
        c.per_domain = 6;
        c.sequential = !train;
        dg_loader *l;
        ck_assert_int_eq(dg_loader_create(&c, &l), DG_STATUS_OK);
        const dg_batch *b;
        ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_OK);
        ck_assert_int_eq(b->c, 3);
        ck_assert_int_eq(b->h, 16);
        int ones = 0;
        for (int i = 0; i < 6; i++) {
            ck_assert_int_eq(b->label[i], b->refs[i].index < 3 ? 0 : 1);
            ones += b->label[i];
        }
        ck_assert_int_eq(ones, 3);
        dg_loader_free(l);
    }
    dg_domainbed_free(&ds);
}
END_TEST

START_TEST(class_centroid_scan_matches_per_label_centroids) {
    write_gtav();
    dg_seg_dataset ds;
    ck_assert_int_eq(dg_seg_dataset_open("gtav", root, "all", &ds), DG_STATUS_OK);
    dg_class_centroids got, want;
    ck_assert_int_eq(dg_seg_class_centroids(&ds, 16, false, &got), DG_STATUS_OK);
    memset(&want, 0, sizeof(want));
    want.n_classes = 19;
    for (int k = 0; k < NF; k++) {
        uint8_t lab[FH * FW];
        for (int y = 0; y < FH; y++)
            for (int x = 0; x < FW; x++) lab[y * FW + x] = (uint8_t)train_id(frame_id(k, y, x));
        dg_class_centroids_add(&want, k, lab, FH, FW, 16);
    }
    ck_assert_int_gt(want.n[13], 0); /* cars reach the bottom tiles */
    for (int c = 0; c < 19; c++) {
        ck_assert_int_eq(got.n[c], want.n[c]);
        for (int64_t j = 0; j < want.n[c]; j++) {
            ck_assert_int_eq(got.c[c][j].item, want.c[c][j].item);
            ck_assert_int_eq(got.c[c][j].y, want.c[c][j].y);
            ck_assert_int_eq(got.c[c][j].x, want.c[c][j].x);
        }
    }
    dg_class_centroids_free(&got);
    dg_class_centroids_free(&want);
    dg_seg_dataset_free(&ds);
}
END_TEST

Suite *sources_suite(void) {
    Suite *s = suite_create("sources");
    TCase *tc = tcase_create("sources");
    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, make_root, remove_root);
    tcase_add_test(tc, seg_train_batches_are_aligned_and_worker_independent);
    tcase_add_test(tc, corrupt_frame_fails_or_is_skipped);
    tcase_add_test(tc, seg_eval_source_keeps_full_frames);
    tcase_add_test(tc, class_centroid_scan_matches_per_label_centroids);
    tcase_add_test(tc, domainbed_source_labels_and_shapes);
    suite_add_tcase(s, tc);
    return s;
}
