/* tests/test_seg_datasets.c -- segmentation dataset readers
 * (data/seg_dataset.h) and their label tables (data/labelmap.h) on
 * miniature datasets written in each native layout of docs/datasets.md §1-§5:
 * Cityscapes (both nestings, gray labelIds), GTAV (flat with split lists,
 * RobustNet per-split folders; paletted labelIds), SYNTHIA (16-bit RGB
 * labels, ids above 255), BDD100K (both layouts, JPEG images, gray
 * trainIds), Mapillary (v1.2 and plain label folders, paletted ids).
 *
 * Label files hold every byte value 0 .. 255 (17 x 23 = 391 pixels), so the
 * decoded trainIds are compared with the spec tables transcribed here by
 * hand (independently of data/labelmap.c: Cityscapes row by row, Mapillary
 * from the "by trainId" list). Error paths: missing partners (recorded and
 * logged), size mismatch naming both files, truncated label, wrong label
 * encoding, malformed split list, unknown reader and split, missing root,
 * root without a layout. Partners that exist but are not regular files
 * (a directory, a dangling symbolic link, a link loop, a FIFO, a socket)
 * are named for what they are, on both sides and in split lists, without
 * ever being opened, and make `dgseg verify` exit 1 whatever
 * data.on_bad_sample says. Label values outside a reader's native range
 * are warned about once per dataset with their count (class-uniform scan,
 * training loads from several threads).
 *
 * Files live under a temporary directory made by the unchecked fixture and
 * removed after the test case, even when a test fails; every test uses its
 * own subfolder. Shape letters: H, W (pixels). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "app/verify.h"
#include "common.h"
#include "data/image_cv.h"
#include "data/labelmap.h"
#include "data/loader.h"
#include "data/png_io.h"
#include "data/seg_dataset.h"
#include "data/sources.h"

#define H 17
#define W 23
#define NPIX (H * W)

static char dir[64];

static void make_dir(void) {
    make_tmpdir(dir, "segds");
}

static void remove_dir(void) {
    remove_tree(dir, 10);
}

/* ---- spec tables, transcribed by hand ------------------------------------ */

/* docs/datasets.md §1.2, labelId 0 .. 33 -> trainId. */
static const uint8_t CS_TABLE[34] = {255, 255, 255, 255, 255, 255, 255, 0, 1,
        255, 255, 2, 3, 4, 255, 255, 255, 5, 255, 6, 7, 8, 9, 10, 11, 12, 13,
        14, 15, 255, 255, 16, 17, 18};

/* docs/datasets.md §3, SYNTHIA id 0 .. 22 -> trainId. */
static const uint8_t SYN_TABLE[23] = {255, 10, 2, 0, 1, 4, 8, 5, 13, 7, 11, 18,
        17, 255, 255, 6, 9, 12, 14, 15, 16, 3, 255};

/* docs/datasets.md §5 "By trainId": the Mapillary ids of trainId t, -1 ends. */
static const int MAP_BY_TRAIN[19][4] = {{13, 24, 41, -1}, {2, 15, -1}, {17, -1},
        {6, -1}, {3, -1}, {45, 47, -1}, {48, -1}, {50, -1}, {30, -1}, {29, -1},
        {27, -1}, {19, -1}, {20, 21, 22, -1}, {55, -1}, {61, -1}, {54, -1},
        {58, -1}, {57, -1}, {52, -1}};

/* Expected trainId of native value v (0 .. 65535) for a reader. */
static uint8_t expect_train(dg_labelmap_kind k, unsigned v) {
    switch (k) {
    case DG_LABELMAP_CITYSCAPES:
    case DG_LABELMAP_GTAV:
        return v < 34 ? CS_TABLE[v] : 255;
    case DG_LABELMAP_SYNTHIA:
        return v < 23 ? SYN_TABLE[v] : 255;
    case DG_LABELMAP_BDD100K:
        return v < 19 ? (uint8_t)v : 255;
    case DG_LABELMAP_MAPILLARY:
        for (int t = 0; t < 19; t++)
            for (int j = 0; MAP_BY_TRAIN[t][j] >= 0; j++)
                if ((unsigned)MAP_BY_TRAIN[t][j] == v) return (uint8_t)t;
        return 255;
    }
    return 0;
}

/* Native label values of frame `frame`: pixel i holds (i + 37 frame) % 256,
 * so every byte value occurs and frames differ. */
static uint8_t label_value(int frame, int i) {
    return (uint8_t)((i + 37 * frame) % 256);
}

/* ---- files ------------------------------------------------------------------
 */

static bool is_dir_path(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* mkdir -p of the folder part of path (everything before the last '/'). */
static void make_parents(const char *path) {
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0)
            ck_assert_msg(is_dir_path(buf), "mkdir %s", buf);
        *p = '/';
    }
}

/* "<dir>/<fmt...>" into buf (512 bytes). */
static void path_of(char *buf, const char *fmt, const char *a, const char *b) {
    char rel[400];
    snprintf(rel, sizeof(rel), fmt, a, b);
    snprintf(buf, 512, "%s/%s", dir, rel);
}

/* An RGB image of frame `frame` (distinct per frame and pixel). */
static void make_image(dg_image *img, int frame, int h, int w) {
    dg_image_init(img, h, w, 3);
    for (size_t i = 0; i < (size_t)h * w * 3; i++)
        img->data[i] = (uint8_t)(i * 7 + (size_t)frame * 50 + 3);
}

static void write_image(const char *path, int frame, int h, int w, bool jpeg) {
    dg_image img;
    make_image(&img, frame, h, w);
    make_parents(path);
    dg_status st = jpeg ? dg_image_write_jpeg(path, &img, 95)
                        : dg_image_write_png(path, &img);
    ck_assert_int_eq(st, DG_STATUS_OK);
    dg_image_free(&img);
}

static void write_gray_label(const char *path, int frame, int h, int w) {
    uint8_t v[NPIX * 4];
    for (int i = 0; i < h * w; i++) v[i] = label_value(frame, i);
    make_parents(path);
    ck_assert_int_eq(dg_png_write_gray8(path, v, h, w), DG_STATUS_OK);
}

static void write_paletted_label(const char *path, int frame, int h, int w) {
    static uint8_t pal[256][3];
    for (int k = 0; k < 256; k++) {
        pal[k][0] = (uint8_t)(255 - k); /* colours unrelated to the ids */
        pal[k][1] = (uint8_t)(k * 3);
        pal[k][2] = 7;
    }
    uint8_t v[NPIX * 4];
    for (int i = 0; i < h * w; i++) v[i] = label_value(frame, i);
    make_parents(path);
    ck_assert_int_eq(
            dg_png_write_paletted(path, v, h, w, (const uint8_t(*)[3])pal, 256),
            DG_STATUS_OK);
}

/* SYNTHIA class id of pixel i: byte values, and ids beyond 255 in the last
 * pixels (whose byte values also occur 256 pixels earlier). */
static uint16_t synthia_value(int frame, int i) {
    if (i == NPIX - 1) return 65535;
    if (i >= NPIX - 4) return (uint16_t)(256 + 97 * i + frame);
    return label_value(frame, i);
}

static void write_synthia_label(const char *path, int frame) {
    uint16_t v[NPIX * 3];
    for (int i = 0; i < NPIX; i++) {
        v[3 * i] = synthia_value(frame, i);
        v[3 * i + 1] = (uint16_t)(1000 + i); /* instance id: must be ignored */
        v[3 * i + 2] = (uint16_t)(5 * i);
    }
    make_parents(path);
    ck_assert_int_eq(dg_png_write_gray16_rgb(path, v, H, W), DG_STATUS_OK);
}

static void write_text(const char *path, const char *text) {
    make_parents(path);
    write_file(path, text, strlen(text));
}

/* ---- checks
 * ------------------------------------------------------------------ */

/* Pair i of ds names exactly these image and label paths. */
static void expect_pair(const dg_seg_dataset *ds, size_t i, const char *image,
        const char *label) {
    ck_assert_msg(i < ds->n, "pair %zu of %zu", i, ds->n);
    ck_assert_str_eq(ds->pairs[i].image, image);
    ck_assert_str_eq(ds->pairs[i].label, label);
}

/* Loads pair i and checks the image bytes (PNG: exact, JPEG: size only) and
 * every trainId against the hand table applied to frame `frame`'s values. */
static void expect_loaded(const dg_seg_dataset *ds, size_t i, int frame,
        dg_labelmap_kind k, bool exact_image) {
    dg_image img, lbl;
    dg_seg_load_report rep = {12345, "x"};
    ck_assert_int_eq(
            dg_seg_dataset_load_ex(ds, i, &img, &lbl, &rep), DG_STATUS_OK);
    const uint64_t n_oor = rep.n_out_of_range;
    ck_assert_ptr_null(rep.bad_file);
    ck_assert_int_eq(img.h, H);
    ck_assert_int_eq(img.w, W);
    ck_assert_int_eq(img.c, 3);
    ck_assert_int_eq(lbl.h, H);
    ck_assert_int_eq(lbl.w, W);
    ck_assert_int_eq(lbl.c, 1);
    if (exact_image) {
        dg_image ref;
        make_image(&ref, frame, H, W);
        ck_assert_msg(memcmp(ref.data, img.data, (size_t)NPIX * 3) == 0,
                "image of pair %zu is not frame %d", i, frame);
        dg_image_free(&ref);
    }
    uint64_t exp_oor = 0;
    int seen[256] = {0};
    for (int p = 0; p < NPIX; p++) {
        unsigned v = k == DG_LABELMAP_SYNTHIA ? synthia_value(frame, p)
                                              : label_value(frame, p);
        uint8_t e = expect_train(k, v);
        ck_assert_msg(lbl.data[p] == e,
                "pair %zu pixel %d: native %u -> got %u, want %u", i, p, v,
                lbl.data[p], e);
        seen[e] = 1;
        bool native = k == DG_LABELMAP_CITYSCAPES || k == DG_LABELMAP_GTAV
                              ? v <= 33
                      : k == DG_LABELMAP_SYNTHIA ? v <= 22
                      : k == DG_LABELMAP_BDD100K ? v <= 18 || v == 255
                                                 : v <= 65;
        exp_oor += !native;
    }
    for (int t = 0; t < 19; t++)
        ck_assert_msg(seen[t], "trainId %d never produced", t);
    ck_assert_msg(seen[255], "ignore never produced");
    ck_assert_uint_eq(n_oor, exp_oor);
    dg_image_free(&img);
    dg_image_free(&lbl);
}

/* Lines of the project's log in s at the given prefix ("dgseg: error: "). */
static int count_prefix(const char *s, const char *prefix) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, prefix)) != NULL; p++) n++;
    return n;
}

static void expect_in(const char *log, const char *what) {
    ck_assert_msg(strstr(log, what) != NULL, "log lacks '%s':\n%s", what, log);
}

/* ---- tables
 * ------------------------------------------------------------------ */

START_TEST(labelmap_tables_match_spec) {
    const dg_labelmap_kind kinds[] = {DG_LABELMAP_CITYSCAPES, DG_LABELMAP_GTAV,
            DG_LABELMAP_SYNTHIA, DG_LABELMAP_BDD100K, DG_LABELMAP_MAPILLARY};
    const int n_mapped[] = {19, 19, 19, 19, 25};
    for (size_t k = 0; k < DG_ARRAY_LEN(kinds); k++) {
        dg_labelmap m;
        memset(&m, 0xab, sizeof(m));
        dg_labelmap_init(&m, kinds[k]);
        int mapped = 0;
        for (unsigned v = 0; v < 256; v++) {
            ck_assert_msg(m.to_train[v] == expect_train(kinds[k], v),
                    "%s: %u -> %u, want %u", dg_labelmap_name(kinds[k]), v,
                    m.to_train[v], expect_train(kinds[k], v));
            mapped += m.to_train[v] != 255;
        }
        ck_assert_int_eq(mapped, n_mapped[k]);
    }
    dg_labelmap m;
    dg_labelmap_init(&m, DG_LABELMAP_SYNTHIA);
    const uint16_t src[] = {3, 300, 22, 65535, 21, 23};
    uint8_t dst[6];
    ck_assert_uint_eq(dg_labelmap_apply16(&m, src, 1, 6, dst), 3);
    const uint8_t want[] = {0, 255, 255, 255, 3, 255};
    ck_assert_mem_eq(dst, want, 6);
    ck_assert_str_eq(dg_labelmap_name(DG_LABELMAP_MAPILLARY), "mapillary");
}
END_TEST

/* ---- cityscapes
 * ---------------------------------------------------------------- */

/* Frames of a Cityscapes split: (city, stem) with the frame number. */
static void write_cityscapes(
        const char *img_base, const char *lbl_base, const char *split) {
    static const char *const cities[] = {"zurich", "aachen", "aachen"};
    static const char *const stems[] = {"zurich_000001_000019",
            "aachen_000002_000019", "aachen_000000_000019"};
    char p[512], rel[256];
    for (int f = 0; f < 3; f++) {
        snprintf(rel, sizeof(rel), "%s/%s/%s", split, cities[f], stems[f]);
        path_of(p, "%s/%s_leftImg8bit.png", img_base, rel);
        write_image(p, f, H, W, false);
        path_of(p, "%s/%s_gtFine_labelIds.png", lbl_base, rel);
        write_gray_label(p, f, H, W);
        /* files the reader must not read */
        path_of(p, "%s/%s_gtFine_color.png", lbl_base, rel);
        write_image(p, 9, H, W, false);
        path_of(p, "%s/%s_gtFine_polygons.json", lbl_base, rel);
        write_text(p, "{}");
    }
}

START_TEST(cityscapes_pairs_sorted_and_labels_mapped) {
    write_cityscapes("cs/leftImg8bit", "cs/gtFine", "val");
    write_cityscapes("cs/leftImg8bit", "cs/gtFine", "train"); /* other split */
    char root[512], img[512], lbl[512];
    path_of(root, "%s%s", "cs", "");
    dg_seg_dataset ds;
    ck_assert_int_eq(
            dg_seg_dataset_open("cityscapes", root, "val", &ds), DG_STATUS_OK);
    ck_assert_uint_eq(ds.n, 3);
    ck_assert_uint_eq(ds.n_problems, 0);
    ck_assert_str_eq(ds.reader, "cityscapes");
    /* sorted by <city>/<stem>: aachen 000000, aachen 000002, zurich */
    const char *order[] = {"aachen/aachen_000000_000019",
            "aachen/aachen_000002_000019", "zurich/zurich_000001_000019"};
    const int frame[] = {2, 1, 0};
    for (size_t i = 0; i < 3; i++) {
        path_of(img, "cs/leftImg8bit/val/%s_leftImg8bit.png%s", order[i], "");
        path_of(lbl, "cs/gtFine/val/%s_gtFine_labelIds.png%s", order[i], "");
        expect_pair(&ds, i, img, lbl);
        expect_loaded(&ds, i, frame[i], DG_LABELMAP_CITYSCAPES, true);
    }
    dg_seg_dataset_free(&ds);
    ck_assert_ptr_null(ds.pairs);
}
END_TEST

START_TEST(cityscapes_accepts_trainvaltest_nesting) {
    write_cityscapes("cs2/leftImg8bit_trainvaltest/leftImg8bit",
            "cs2/gtFine_trainvaltest/gtFine", "train");
    char root[512];
    path_of(root, "%s%s", "cs2", "");
    dg_seg_dataset ds;
    ck_assert_int_eq(dg_seg_dataset_open("cityscapes", root, "train", &ds),
            DG_STATUS_OK);
    ck_assert_uint_eq(ds.n, 3);
    ck_assert_msg(strstr(ds.pairs[0].image, "leftImg8bit_trainvaltest") != NULL,
            "%s", ds.pairs[0].image);
    expect_loaded(&ds, 2, 0, DG_LABELMAP_CITYSCAPES, true);
    dg_seg_dataset_free(&ds);
}
END_TEST

/* ---- gtav
 * ------------------------------------------------------------------------ */

static void write_gtav_flat(const char *base, int first, int last) {
    char p[512], name[32];
    for (int f = first; f <= last; f++) {
        snprintf(name, sizeof(name), "%05d.png", f);
        path_of(p, "%s/images/%s", base, name);
        write_image(p, f, H, W, false);
        path_of(p, "%s/labels/%s", base, name);
        write_paletted_label(p, f, H, W);
    }
}

START_TEST(gtav_flat_layout_follows_split_list) {
    write_gtav_flat("gtav", 1, 5);
    char p[512], root[512], lbl[512];
    path_of(p, "%s/labels/%s", "gtav", "00004.png");
    ck_assert_int_eq(unlink(p), 0); /* listed frame without label */
    path_of(p, "%s/split_data/%s", "gtav", "gtav_split_train.txt");
    /* unsorted, CRLF, trailing blank line; 00009 lacks both files */
    write_text(
            p, "00005.png\r\n00001.png\n00004.png\n00009.png\n00003.png\n\n");
    path_of(root, "%s%s", "gtav", "");
    dg_seg_dataset ds;
    capture cap;
    capture_begin(&cap);
    dg_status st = dg_seg_dataset_open("gtav", root, "train", &ds);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_OK);
    ck_assert_uint_eq(ds.n, 3);
    const int frames[] = {1, 3, 5};
    for (size_t i = 0; i < 3; i++) {
        char name[32], img[512];
        snprintf(name, sizeof(name), "%05d.png", frames[i]);
        path_of(img, "gtav/images/%s%s", name, "");
        path_of(lbl, "gtav/labels/%s%s", name, "");
        expect_pair(&ds, i, img, lbl);
        expect_loaded(&ds, i, frames[i], DG_LABELMAP_GTAV, true);
    }
    ck_assert_uint_eq(ds.n_problems, 2);
    ck_assert_str_eq(ds.problems[0].kind, "missing_label");
    ck_assert_msg(strstr(ds.problems[0].file, "images/00004.png") != NULL, "%s",
            ds.problems[0].file);
    ck_assert_str_eq(ds.problems[1].kind, "missing_image");
    ck_assert_msg(strstr(ds.problems[1].message, "00009.png") != NULL, "%s",
            ds.problems[1].message);
    ck_assert_int_eq(count_prefix(log, "dgseg: warning: "), 2);
    path_of(lbl, "gtav/labels/%s%s", "00004.png", "");
    expect_in(log, lbl);
    dg_free(log);
    dg_seg_dataset_free(&ds);

    /* split "all" takes every flat frame, sorted, without a list */
    ck_assert_int_eq(
            dg_seg_dataset_open("gtav", root, "all", &ds), DG_STATUS_OK);
    ck_assert_uint_eq(ds.n, 4);
    ck_assert_uint_eq(ds.n_problems, 1);
    expect_loaded(&ds, 3, 5, DG_LABELMAP_GTAV, true);
    dg_seg_dataset_free(&ds);
}
END_TEST

START_TEST(gtav_split_list_from_project_dir_and_missing_list) {
    write_gtav_flat("gtav2", 10, 12);
    char root[512], splits[512], p[512];
    path_of(root, "%s%s", "gtav2", "");
    path_of(splits, "%s%s", "splits", "");
    path_of(p, "splits/%s%s", "gtav_val.txt", "");
    write_text(p, "00012.png\n00011.png\n");
    dg_seg_open_opts opts = {.split_dir = splits};
    dg_seg_dataset ds;
    ck_assert_int_eq(
            dg_seg_dataset_open_opts("gtav", root, "valid", &opts, &ds),
            DG_STATUS_OK);
    ck_assert_uint_eq(ds.n, 2);
    ck_assert_uint_eq(ds.n_problems, 0);
    expect_loaded(&ds, 0, 11, DG_LABELMAP_GTAV, true);
    expect_loaded(&ds, 1, 12, DG_LABELMAP_GTAV, true);
    dg_seg_dataset_free(&ds);

    /* no list for "test": a clear error naming where it looked */
    capture cap;
    capture_begin(&cap);
    dg_status st = dg_seg_dataset_open_opts("gtav", root, "test", &opts, &ds);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_MISSING);
    ck_assert_int_eq(count_prefix(log, "dgseg: error: "), 1);
    expect_in(log, "gtav_test.txt");
    expect_in(log, "gtav_split_test.txt");
    dg_free(log);
    ck_assert_ptr_null(ds.pairs);

    /* a malformed list line is named with file:line */
    path_of(p, "splits/%s%s", "gtav_train.txt", "");
    write_text(p, "00010.png\nimages/00011.png\n");
    capture_begin(&cap);
    st = dg_seg_dataset_open_opts("gtav", root, "train", &opts, &ds);
    log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_FORMAT);
    char where[600];
    snprintf(where, sizeof(where), "%s:2:", p);
    expect_in(log, where);
    dg_free(log);
}
END_TEST

START_TEST(gtav_robustnet_per_split_folders) {
    char p[512], root[512];
    const char *sub[] = {"b", "a", "a"};
    const char *names[] = {"00007.png", "00020.png", "00003.png"};
    for (int f = 0; f < 3; f++) {
        snprintf(p, sizeof(p), "%s/gtav3/images/valid/%s/%s", dir, sub[f],
                names[f]);
        write_image(p, f, H, W, false);
        snprintf(p, sizeof(p), "%s/gtav3/labels/valid/%s/%s", dir, sub[f],
                names[f]);
        write_paletted_label(p, f, H, W);
    }
    snprintf(p, sizeof(p), "%s/gtav3/images/train/x/00001.png", dir);
    write_image(p, 5, H, W, false);
    path_of(root, "%s%s", "gtav3", "");
    dg_seg_dataset ds;
    ck_assert_int_eq(
            dg_seg_dataset_open("gtav", root, "val", &ds), DG_STATUS_OK);
    ck_assert_uint_eq(ds.n, 3);
    const int order[] = {2, 1, 0}; /* a/00003, a/00020, b/00007 */
    for (size_t i = 0; i < 3; i++)
        expect_loaded(&ds, i, order[i], DG_LABELMAP_GTAV, true);
    dg_seg_dataset_free(&ds);
    /* train: one image, its label folder missing altogether */
    ck_assert_int_eq(dg_seg_dataset_open("gtav", root, "train", &ds),
            DG_STATUS_ERR_MISSING);
}
END_TEST

/* ---- bdd100k
 * -------------------------------------------------------------------- */

START_TEST(bdd100k_both_layouts_identity_map) {
    char p[512], root[512];
    const char *names[] = {"b1c9c847-3bda4659", "7d06fefd-f7be05a6"};
    for (int f = 0; f < 2; f++) {
        snprintf(p, sizeof(p), "%s/bdd/images/10k/val/%s.jpg", dir, names[f]);
        write_image(p, f, H, W, true);
        snprintf(p, sizeof(p), "%s/bdd/labels/sem_seg/masks/val/%s.png", dir,
                names[f]);
        write_gray_label(p, f, H, W);
        snprintf(p, sizeof(p), "%s/bddold/images/train/%s.jpg", dir, names[f]);
        write_image(p, f, H, W, true);
        snprintf(p, sizeof(p), "%s/bddold/labels/train/%s_train_id.png", dir,
                names[f]);
        write_gray_label(p, f, H, W);
    }
    dg_seg_dataset ds;
    path_of(root, "%s%s", "bdd", "");
    ck_assert_int_eq(
            dg_seg_dataset_open("bdd100k", root, "val", &ds), DG_STATUS_OK);
    ck_assert_uint_eq(ds.n, 2);
    expect_loaded(
            &ds, 0, 1, DG_LABELMAP_BDD100K, false); /* "7d06..." sorts first */
    expect_loaded(&ds, 1, 0, DG_LABELMAP_BDD100K, false);
    dg_seg_dataset_free(&ds);

    path_of(root, "%s%s", "bddold", "");
    ck_assert_int_eq(
            dg_seg_dataset_open("bdd100k", root, "train", &ds), DG_STATUS_OK);
    ck_assert_uint_eq(ds.n, 2);
    snprintf(p, sizeof(p), "%s/bddold/labels/train/%s_train_id.png", dir,
            names[1]);
    ck_assert_str_eq(ds.pairs[0].label, p);
    expect_loaded(&ds, 0, 1, DG_LABELMAP_BDD100K, false);
    dg_seg_dataset_free(&ds);
}
END_TEST

/* ---- mapillary
 * ------------------------------------------------------------------- */

START_TEST(mapillary_v12_and_plain_label_folders) {
    char p[512], root[512];
    const char *keys[] = {"zz_key", "AB_key", "m0"};
    for (int f = 0; f < 3; f++) {
        snprintf(p, sizeof(p), "%s/mv/validation/images/%s.jpg", dir, keys[f]);
        write_image(p, f, H, W, true);
        snprintf(p, sizeof(p), "%s/mv/validation/v1.2/labels/%s.png", dir,
                keys[f]);
        write_paletted_label(p, f, H, W);
        snprintf(p, sizeof(p), "%s/mv/training/images/%s.jpg", dir, keys[f]);
        write_image(p, f, H, W, true);
        snprintf(p, sizeof(p), "%s/mv/training/labels/%s.png", dir, keys[f]);
        write_paletted_label(p, f, H, W);
    }
    /* a v2.0 label folder beside v1.2 is not read */
    snprintf(p, sizeof(p), "%s/mv/validation/v2.0/labels/%s.png", dir, keys[0]);
    write_gray_label(p, 0, H, W);
    path_of(root, "%s%s", "mv", "");
    dg_seg_dataset ds;
    ck_assert_int_eq(
            dg_seg_dataset_open("mapillary", root, "val", &ds), DG_STATUS_OK);
    ck_assert_uint_eq(ds.n, 3);
    const int order[] = {1, 2, 0}; /* AB_key, m0, zz_key (strcmp) */
    for (size_t i = 0; i < 3; i++) {
        ck_assert_msg(strstr(ds.pairs[i].label, "/v1.2/labels/") != NULL, "%s",
                ds.pairs[i].label);
        expect_loaded(&ds, i, order[i], DG_LABELMAP_MAPILLARY, false);
    }
    dg_seg_dataset_free(&ds);
    ck_assert_int_eq(dg_seg_dataset_open("mapillary", root, "training", &ds),
            DG_STATUS_OK);
    ck_assert_uint_eq(ds.n, 3);
    expect_loaded(&ds, 2, 0, DG_LABELMAP_MAPILLARY, false);
    dg_seg_dataset_free(&ds);
}
END_TEST

/* ---- synthia
 * --------------------------------------------------------------------- */

START_TEST(synthia_16bit_first_sample_mapped) {
    char p[512], root[512];
    for (int f = 0; f < 3; f++) {
        snprintf(p, sizeof(p), "%s/syn/RGB/%07d.png", dir, f);
        write_image(p, f, H, W, false);
        snprintf(p, sizeof(p), "%s/syn/GT/LABELS/%07d.png", dir, f);
        write_synthia_label(p, f);
        snprintf(p, sizeof(p), "%s/syn2/RGB/val/%07d.png", dir, 100 - f);
        write_image(p, f, H, W, false);
        snprintf(p, sizeof(p), "%s/syn2/GT/LABELS/val/%07d.png", dir, 100 - f);
        write_synthia_label(p, f);
    }
    snprintf(p, sizeof(p), "%s/syn/split_data/synthia_split_train.txt", dir);
    write_text(p, "0000002.png\n0000000.png\n");
    path_of(root, "%s%s", "syn", "");
    dg_seg_dataset ds;
    ck_assert_int_eq(
            dg_seg_dataset_open("synthia", root, "train", &ds), DG_STATUS_OK);
    ck_assert_uint_eq(ds.n, 2);
    expect_loaded(&ds, 0, 0, DG_LABELMAP_SYNTHIA, true);
    expect_loaded(&ds, 1, 2, DG_LABELMAP_SYNTHIA, true);
    dg_seg_dataset_free(&ds);

    path_of(root, "%s%s", "syn2", "");
    ck_assert_int_eq(
            dg_seg_dataset_open("synthia", root, "val", &ds), DG_STATUS_OK);
    ck_assert_uint_eq(ds.n, 3);
    for (size_t i = 0; i < 3; i++)
        expect_loaded(&ds, i, 2 - (int)i, DG_LABELMAP_SYNTHIA, true);
    dg_seg_dataset_free(&ds);
}
END_TEST

/* ---- errors
 * ----------------------------------------------------------------------- */

START_TEST(unknown_reader_split_and_missing_root) {
    dg_seg_dataset ds;
    capture cap;
    capture_begin(&cap);
    dg_status st = dg_seg_dataset_open("kitti", dir, "val", &ds);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_CONFIG);
    expect_in(log, "'kitti'");
    expect_in(log, "cityscapes");
    dg_free(log);

    capture_begin(&cap);
    st = dg_seg_dataset_open("mapillary", dir, "valid", &ds);
    log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_CONFIG);
    expect_in(log, "'valid'");
    expect_in(log, "validation");
    dg_free(log);

    char root[512];
    path_of(root, "%s%s", "no_such_root", "");
    capture_begin(&cap);
    st = dg_seg_dataset_open("cityscapes", root, "val", &ds);
    log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_MISSING);
    ck_assert_int_eq(count_prefix(log, "dgseg: error: "), 1);
    expect_in(log, root);
    expect_in(log, "No such file");
    dg_free(log);

    /* an existing root without the reader's layout */
    path_of(root, "%s%s", "empty_root/", "");
    make_parents(root);
    root[strlen(root) - 1] = '\0';
    capture_begin(&cap);
    st = dg_seg_dataset_open("cityscapes", root, "val", &ds);
    log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_MISSING);
    expect_in(log, "leftImg8bit/val");
    dg_free(log);
    ck_assert_ptr_null(ds.root);
}
END_TEST

START_TEST(missing_partners_recorded_and_logged) {
    write_cityscapes("csm/leftImg8bit", "csm/gtFine", "val");
    char p[512], root[512];
    path_of(p, "csm/gtFine/val/zurich/%s%s",
            "zurich_000001_000019_gtFine_labelIds.png", "");
    ck_assert_int_eq(unlink(p), 0);
    path_of(p, "csm/leftImg8bit/val/aachen/%s%s",
            "aachen_000000_000019_leftImg8bit.png", "");
    ck_assert_int_eq(unlink(p), 0);
    path_of(root, "%s%s", "csm", "");
    dg_seg_dataset ds;
    capture cap;
    capture_begin(&cap);
    dg_status st = dg_seg_dataset_open("cityscapes", root, "val", &ds);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_OK);
    ck_assert_uint_eq(ds.n, 1);
    ck_assert_uint_eq(ds.n_problems, 2);
    ck_assert_str_eq(ds.problems[0].kind, "missing_image");
    ck_assert_msg(strstr(ds.problems[0].file,
                          "aachen_000000_000019_gtFine_labelIds.png"),
            "%s", ds.problems[0].file);
    ck_assert_str_eq(ds.problems[1].kind, "missing_label");
    ck_assert_msg(
            strstr(ds.problems[1].file, "zurich_000001_000019_leftImg8bit.png"),
            "%s", ds.problems[1].file);
    ck_assert_int_eq(count_prefix(log, "dgseg: warning: "), 2);
    expect_in(log, ds.problems[0].file);
    expect_in(log, ds.problems[1].file);
    dg_free(log);
    expect_loaded(&ds, 0, 1, DG_LABELMAP_CITYSCAPES, true);
    dg_seg_dataset_free(&ds);

    /* a split where no pair is complete is an error */
    path_of(p, "csm/gtFine/val/aachen/%s%s",
            "aachen_000002_000019_gtFine_labelIds.png", "");
    ck_assert_int_eq(unlink(p), 0);
    capture_begin(&cap);
    st = dg_seg_dataset_open("cityscapes", root, "val", &ds);
    log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_MISSING);
    ck_assert_int_eq(count_prefix(log, "dgseg: error: "), 1);
    expect_in(log, "no complete image/label pair");
    dg_free(log);
}
END_TEST

START_TEST(size_mismatch_names_both_files) {
    char p[512], root[512];
    write_gtav_flat("gtm", 1, 2);
    path_of(p, "gtm/labels/%s%s", "00002.png", "");
    write_paletted_label(p, 2, H, W + 1);
    path_of(root, "%s%s", "gtm", "");
    dg_seg_dataset ds;
    ck_assert_int_eq(
            dg_seg_dataset_open("gtav", root, "all", &ds), DG_STATUS_OK);
    dg_image img, lbl;
    capture cap;
    capture_begin(&cap);
    dg_status st = dg_seg_dataset_load(&ds, 1, &img, &lbl);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_SHAPE);
    ck_assert_int_eq(count_prefix(log, "dgseg: error: "), 1);
    expect_in(log, ds.pairs[1].image);
    expect_in(log, ds.pairs[1].label);
    expect_in(log, "23x17");
    expect_in(log, "24x17");
    dg_free(log);
    ck_assert_ptr_null(img.data);
    ck_assert_ptr_null(lbl.data);

    /* a trainer that skips such pairs logs a warning instead */
    ds.mismatch_level = DG_LOG_WARN;
    capture_begin(&cap);
    st = dg_seg_dataset_load(&ds, 1, &img, &lbl);
    log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_SHAPE);
    ck_assert_int_eq(count_prefix(log, "dgseg: warning: "), 1);
    ck_assert_int_eq(count_prefix(log, "dgseg: error: "), 0);
    dg_free(log);
    expect_loaded(&ds, 0, 1, DG_LABELMAP_GTAV, true);
    dg_seg_dataset_free(&ds);
}
END_TEST

START_TEST(corrupt_and_wrongly_encoded_labels_rejected) {
    char p[512], root[512];
    write_cityscapes("csc/leftImg8bit", "csc/gtFine", "val");
    path_of(root, "%s%s", "csc", "");
    dg_seg_dataset ds;
    ck_assert_int_eq(
            dg_seg_dataset_open("cityscapes", root, "val", &ds), DG_STATUS_OK);
    ck_assert_uint_eq(ds.n, 3);

    /* truncated label PNG */
    size_t n;
    char *bytes = read_file(ds.pairs[0].label, &n);
    write_file(ds.pairs[0].label, bytes, n / 2);
    dg_free(bytes);
    dg_image img, lbl;
    capture cap;
    capture_begin(&cap);
    dg_status st = dg_seg_dataset_load(&ds, 0, &img, &lbl);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_FORMAT);
    ck_assert_int_eq(count_prefix(log, "dgseg: error: "), 1);
    expect_in(log, ds.pairs[0].label);
    dg_free(log);
    ck_assert_ptr_null(img.data);

    /* a paletted label where Cityscapes stores gray labelIds */
    write_paletted_label(ds.pairs[1].label, 1, H, W);
    capture_begin(&cap);
    st = dg_seg_dataset_load(&ds, 1, &img, &lbl);
    log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_FORMAT);
    expect_in(log, ds.pairs[1].label);
    expect_in(log, "paletted");
    dg_free(log);

    /* a corrupt image */
    write_text(ds.pairs[2].image, "not a png");
    capture_begin(&cap);
    st = dg_seg_dataset_load(&ds, 2, &img, &lbl);
    log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_FORMAT);
    expect_in(log, ds.pairs[2].image);
    dg_free(log);
    ck_assert_ptr_null(lbl.data);

    /* an 8-bit label where SYNTHIA stores 16-bit samples */
    snprintf(p, sizeof(p), "%s/syne/RGB/0000001.png", dir);
    write_image(p, 0, H, W, false);
    snprintf(p, sizeof(p), "%s/syne/GT/LABELS/0000001.png", dir);
    write_gray_label(p, 0, H, W);
    dg_seg_dataset_free(&ds);
    path_of(root, "%s%s", "syne", "");
    ck_assert_int_eq(
            dg_seg_dataset_open("synthia", root, "all", &ds), DG_STATUS_OK);
    capture_begin(&cap);
    st = dg_seg_dataset_load(&ds, 0, &img, &lbl);
    log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_FORMAT);
    expect_in(log, "16 bits per sample");
    dg_free(log);
    dg_seg_dataset_free(&ds);
}
END_TEST


/* ---- partners that are not regular files --------------------------------- */

static void make_fifo(const char *path) {
    make_parents(path);
    ck_assert_msg(mkfifo(path, 0644) == 0, "mkfifo %s", path);
}

static void make_socket(const char *path) {
    make_parents(path);
    struct sockaddr_un a;
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    ck_assert_uint_lt(strlen(path), sizeof(a.sun_path));
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_msg(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind %s", path);
    close(fd); /* the socket file stays */
}

static void make_link(const char *target, const char *path) {
    make_parents(path);
    ck_assert_msg(symlink(target, path) == 0, "symlink %s", path);
}

/* The problem whose file or message names `path`, or NULL. */
static const dg_seg_problem *problem_naming(const dg_seg_dataset *ds, const char *path) {
    for (size_t i = 0; i < ds->n_problems; i++)
        if (!strcmp(ds->problems[i].file, path) || strstr(ds->problems[i].message, path))
            return &ds->problems[i];
    return NULL;
}

/* The problem about `path` has kind `kind` and says `words`; the log has
 * its message on one line. */
static void expect_problem(const dg_seg_dataset *ds, const char *log, const char *path,
        const char *kind, const char *words) {
    const dg_seg_problem *pr = problem_naming(ds, path);
    ck_assert_msg(pr != NULL, "no problem names %s", path);
    ck_assert_msg(!strcmp(pr->kind, kind), "%s: kind %s, want %s", path, pr->kind, kind);
    ck_assert_msg(strstr(pr->message, path) && strstr(pr->message, words),
            "message '%s' lacks '%s' or '%s'", pr->message, path, words);
    ck_assert_msg(!strchr(pr->message, '\n'), "message on several lines: %s", pr->message);
    expect_in(log, pr->message);
}

/* GTAV flat frames 1 .. 9, every one complete, then label k of frame k
 * replaced: 2 removed, 3 a directory, 4 a dangling link, 5 a link to
 * itself, 6 a FIFO, 7 a socket, 8 a link to a directory; 9 a link to a
 * regular file (a good label). The scan must name each for what it is and
 * never open the FIFO (the test would block and time out). */
START_TEST(scan_names_what_each_bad_label_partner_is_without_opening_it) {
    write_gtav_flat("gbad", 1, 9);
    char root[512], lbl[10][512], img[10][512], p[512];
    path_of(root, "%s%s", "gbad", "");
    for (int f = 1; f <= 9; f++) {
        char name[32];
        snprintf(name, sizeof(name), "%05d.png", f);
        path_of(img[f], "gbad/images/%s%s", name, "");
        path_of(lbl[f], "gbad/labels/%s%s", name, "");
        if (f >= 2 && f <= 8) ck_assert_int_eq(unlink(lbl[f]), 0);
    }
    ck_assert_int_eq(mkdir(lbl[3], 0755), 0);
    make_link("../gone.png", lbl[4]);
    make_link("00005.png", lbl[5]);
    make_fifo(lbl[6]);
    make_socket(lbl[7]);
    path_of(p, "gbad/%s%s", "somewhere", "");
    ck_assert_int_eq(mkdir(p, 0755), 0);
    make_link("../somewhere", lbl[8]);
    path_of(p, "gbad/%s%s", "real9.png", "");
    ck_assert_int_eq(rename(lbl[9], p), 0);
    make_link("../real9.png", lbl[9]);

    dg_seg_dataset ds;
    capture cap;
    capture_begin(&cap);
    dg_status st = dg_seg_dataset_open("gtav", root, "all", &ds);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_OK);
    ck_assert_uint_eq(ds.n, 2);
    expect_pair(&ds, 0, img[1], lbl[1]);
    expect_pair(&ds, 1, img[9], lbl[9]);
    expect_loaded(&ds, 1, 9, DG_LABELMAP_GTAV, true);
    ck_assert_uint_eq(ds.n_problems, 7);
    /* a plain missing partner keeps its kind and names the image */
    ck_assert_str_eq(ds.problems[0].kind, "missing_label");
    ck_assert_str_eq(ds.problems[0].file, img[2]);
    ck_assert_msg(strstr(ds.problems[0].message, lbl[2]) &&
                    strstr(ds.problems[0].message, "does not exist"),
            "%s", ds.problems[0].message);
    expect_problem(&ds, log, lbl[3], "label_not_a_file", "is a directory");
    expect_problem(&ds, log, lbl[4], "label_not_a_file",
            "is a dangling symbolic link (to ../gone.png)");
    expect_problem(&ds, log, lbl[5], "label_not_a_file", "is a symbolic link loop");
    expect_problem(&ds, log, lbl[6], "label_not_a_file", "is a FIFO, not a regular file");
    expect_problem(&ds, log, lbl[7], "label_not_a_file", "is a socket, not a regular file");
    expect_problem(&ds, log, lbl[8], "label_not_a_file",
            "is a symbolic link (to ../somewhere) to a directory");
    for (int f = 3; f <= 8; f++) {
        ck_assert_str_eq(problem_naming(&ds, lbl[f])->file, lbl[f]);
        ck_assert_msg(strstr(problem_naming(&ds, lbl[f])->message, img[f]),
                "the message about %s does not name its image", lbl[f]);
    }
    /* one warning line per bad pair, nothing else */
    ck_assert_int_eq(count_prefix(log, "dgseg: warning: "), 7);
    ck_assert_int_eq(count_lines(log), 7);
    dg_free(log);
    dg_seg_dataset_free(&ds);
}
END_TEST

/* The image side and split lists: an image that is a FIFO or a dangling
 * link is named as such (scan and list), and a list entry whose two files
 * are both wrong says what each one is. */
START_TEST(split_list_and_image_side_name_what_a_bad_partner_is) {
    write_gtav_flat("gimg", 1, 5);
    char root[512], lbl[6][512], img[6][512], p[512];
    path_of(root, "%s%s", "gimg", "");
    for (int f = 1; f <= 5; f++) {
        char name[32];
        snprintf(name, sizeof(name), "%05d.png", f);
        path_of(img[f], "gimg/images/%s%s", name, "");
        path_of(lbl[f], "gimg/labels/%s%s", name, "");
    }
    ck_assert_int_eq(unlink(img[2]), 0);
    make_fifo(img[2]);
    ck_assert_int_eq(unlink(lbl[3]), 0);
    make_link("nowhere.png", lbl[3]);
    ck_assert_int_eq(unlink(img[4]), 0);
    ck_assert_int_eq(unlink(lbl[4]), 0);
    ck_assert_int_eq(unlink(img[5]), 0);
    make_link("../gone5.png", img[5]);
    ck_assert_int_eq(unlink(lbl[5]), 0);
    make_fifo(lbl[5]);
    path_of(p, "gimg/split_data/%s%s", "gtav_split_train.txt", "");
    write_text(p, "00001.png\n00002.png\n00003.png\n00004.png\n00005.png\n");

    for (int listed = 1; listed >= 0; listed--) {
        dg_seg_dataset ds;
        capture cap;
        capture_begin(&cap);
        dg_status st = dg_seg_dataset_open("gtav", root, listed ? "train" : "all", &ds);
        char *log = capture_end(&cap);
        ck_assert_int_eq(st, DG_STATUS_OK);
        ck_assert_uint_eq(ds.n, 1);
        expect_pair(&ds, 0, img[1], lbl[1]);
        /* frame 4 lacks both files: only a split list can know it was meant */
        ck_assert_uint_eq(ds.n_problems, listed ? 4 : 3);
        expect_problem(&ds, log, img[2], "image_not_a_file", "is a FIFO, not a regular file");
        expect_problem(&ds, log, lbl[3], "label_not_a_file",
                "is a dangling symbolic link (to nowhere.png)");
        expect_problem(&ds, log, img[5], "image_not_a_file",
                "is a dangling symbolic link (to ../gone5.png)");
        const dg_seg_problem *pr = problem_naming(&ds, img[5]);
        ck_assert_msg(strstr(pr->message, lbl[5]) && strstr(pr->message, "is a FIFO"),
                "%s", pr->message);
        if (listed) {
            pr = problem_naming(&ds, img[4]);
            ck_assert_ptr_nonnull(pr);
            ck_assert_str_eq(pr->kind, "missing_image");
        }
        ck_assert_int_eq(count_prefix(log, "dgseg: warning: "), (int)ds.n_problems);
        dg_free(log);
        dg_seg_dataset_free(&ds);
    }
}
END_TEST

/* `dgseg verify` on a config whose files live in this test's folder;
 * returns the exit status, *out the messages and the report (stdout and
 * stderr together). */
static int run_verify_text(const char *ini_text, const char *json, char **out, char *over) {
    char ini[512];
    snprintf(ini, sizeof(ini), "%s/verify.ini", dir);
    write_file(ini, ini_text, strlen(ini_text));
    char *argv[5] = {"verify", ini, "--json", (char *)json, over};
    capture err, std;
    capture_begin(&err);
    capture_out_begin(&std);
    fflush(stdout);
    const int rc = dg_verify_main(over ? 5 : 4, argv);
    fflush(stdout);
    char *o = capture_end(&std), *e = capture_end(&err);
    *out = dg_xasprintf("%s%s", o, e);
    dg_free(o);
    dg_free(e);
    return rc;
}

/* The JSON problems of verify's first dataset entry. */
static const cJSON *first_problems(const cJSON *j) {
    const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "datasets"), 0);
    return cJSON_GetObjectItemCaseSensitive(e, "problems");
}

START_TEST(verify_of_pair_with_dangling_label_link_exits_1_naming_it) {
    write_gtav_flat("vdl", 1, 3);
    char root[512], lbl[512], img[512], ini[1200], json[512];
    path_of(root, "%s%s", "vdl", "");
    path_of(lbl, "vdl/labels/%s%s", "00002.png", "");
    path_of(img, "vdl/images/%s%s", "00002.png", "");
    path_of(json, "%s%s", "vdl.json", "");
    snprintf(ini, sizeof(ini), "[data]\nsources = gtav:%s\nsource_split = all\n", root);

    /* a plain missing label stays a warning (copies of GTAV lack frames) */
    ck_assert_int_eq(unlink(lbl), 0);
    char *out;
    int rc = run_verify_text(ini, json, &out, NULL);
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, out);
    expect_in(out, "1 missing partner");
    dg_free(out);

    make_link("../elsewhere/00002.png", lbl);
    char *policies[] = {NULL, "data.on_bad_sample=skip"};
    for (int k = 0; k < 2; k++) {
        rc = run_verify_text(ini, json, &out, policies[k]);
        ck_assert_msg(rc == 1, "%s: rc %d:\n%s", policies[k] ? policies[k] : "fail", rc, out);
        expect_in(out, lbl);
        expect_in(out, "is a dangling symbolic link (to ../elsewhere/00002.png)");
        expect_in(out, "0 missing partners, 1 partner not a regular file");
        dg_free(out);
        cJSON *j = read_json(json);
        /* besides the "unmapped_values" of the frames' labels (every byte) */
        const cJSON *probs = first_problems(j), *pr = NULL, *it;
        int n_not_files = 0;
        cJSON_ArrayForEach(it, probs) {
            const char *kind = cJSON_GetObjectItemCaseSensitive(it, "kind")->valuestring;
            ck_assert_msg(!strcmp(kind, "label_not_a_file") || !strcmp(kind, "unmapped_values"),
                    "kind %s", kind);
            if (!strcmp(kind, "label_not_a_file")) n_not_files++, pr = it;
        }
        ck_assert_int_eq(n_not_files, 1);
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(pr, "file")->valuestring, lbl);
        ck_assert_ptr_nonnull(
                strstr(cJSON_GetObjectItemCaseSensitive(pr, "message")->valuestring, img));
        cJSON_Delete(j);
    }
}
END_TEST

/* A FIFO in place of a target's label: verify names it and exits 1
 * without blocking on it (an open would wait for a writer forever). */
START_TEST(verify_of_pair_with_fifo_label_exits_1_without_opening_it) {
    write_gtav_flat("vff", 1, 2);
    char root[512], lbl[512], src[512], ini[1400], json[512];
    path_of(root, "%s%s", "vff", "");
    write_gtav_flat("vffsrc", 1, 2);
    path_of(src, "%s%s", "vffsrc", "");
    path_of(lbl, "vff/labels/%s%s", "00001.png", "");
    path_of(json, "%s%s", "vff.json", "");
    ck_assert_int_eq(unlink(lbl), 0);
    make_fifo(lbl);
    /* the target is read through its validation split list */
    char p[512];
    path_of(p, "vff/split_data/%s%s", "gtav_split_val.txt", "");
    write_text(p, "00001.png\n00002.png\n");
    snprintf(ini, sizeof(ini), "[data]\nsources = gtav:%s\nsource_split = all\ntargets = gtav:%s\n",
            src, root);
    char *out;
    int rc = run_verify_text(ini, json, &out, NULL);
    ck_assert_msg(rc == 1, "rc %d:\n%s", rc, out);
    expect_in(out, lbl);
    expect_in(out, "is a FIFO, not a regular file");
    dg_free(out);
}
END_TEST

/* ---- label values outside the native range -------------------------------- */

/* GTAV flat frames 1 .. n whose labels hold labelId 7 (road) except
 * `bad` pixels of frame k (k + 1 for frame k, value 200 + k) outside the
 * GTAV range 0 .. 33. */
static void write_gtav_out_of_range(const char *base, int n) {
    char p[512], name[32];
    uint8_t pal[256][3];
    for (int k = 0; k < 256; k++) pal[k][0] = pal[k][1] = pal[k][2] = (uint8_t)k;
    for (int f = 1; f <= n; f++) {
        snprintf(name, sizeof(name), "%05d.png", f);
        path_of(p, "%s/images/%s", base, name);
        write_image(p, f, H, W, false);
        uint8_t v[NPIX];
        for (int i = 0; i < NPIX; i++) v[i] = i < f + 1 ? (uint8_t)(200 + f) : 7;
        path_of(p, "%s/labels/%s", base, name);
        make_parents(p);
        ck_assert_int_eq(dg_png_write_paletted(p, v, H, W, (const uint8_t(*)[3])pal, 256),
                DG_STATUS_OK);
    }
}

/* Training loads from two loader threads warn once for the dataset (at the
 * first label with such values, naming it and the range), however many
 * labels hold them; the class-uniform scan, which reads every label once,
 * warns once with the dataset's full count instead, and later loads stay
 * silent. */
START_TEST(out_of_range_labels_warn_once_per_dataset_with_the_count) {
    enum { NF = 4 };
    write_gtav_out_of_range("goor", NF);
    char root[512];
    path_of(root, "%s%s", "goor", "");
    for (int scan = 0; scan < 2; scan++) {
        dg_seg_dataset ds;
        ck_assert_int_eq(dg_seg_dataset_open("gtav", root, "all", &ds), DG_STATUS_OK);
        capture cap;
        capture_begin(&cap);
        if (scan) {
            dg_class_centroids cc;
            ck_assert_int_eq(dg_seg_class_centroids(&ds, 8, false, &cc), DG_STATUS_OK);
            dg_class_centroids_free(&cc);
        }
        dg_seg_train_source s = {.n_domains = 1};
        s.ds[0] = &ds;
        dg_seg_aug_cfg_default(&s.aug);
        s.aug.crop_h = s.aug.crop_w = 8;
        dg_loader_cfg c;
        memset(&c, 0, sizeof(c));
        dg_seg_train_source_bind(&s, &c.src);
        c.n_domains = 1;
        c.dom[0].n = NF;
        c.per_domain = 2;
        c.workers = 2;
        dg_loader *l;
        ck_assert_int_eq(dg_loader_create(&c, &l), DG_STATUS_OK);
        for (int b = 0; b < 6; b++) { /* three epochs: every label read 3 times */
            const dg_batch *batch;
            ck_assert_int_eq(dg_loader_next(l, &batch), DG_STATUS_OK);
        }
        dg_loader_free(l);
        char *log = capture_end(&cap);
        ck_assert_msg(count_prefix(log, "dgseg: warning: ") == 1, "%s", log);
        expect_in(log, "outside the gtav id range (0..33)");
        if (scan) /* 2 + 3 + 4 + 5 pixels in 4 of 4 labels */
            expect_in(log, "14 label pixels in 4 of 4 labels");
        else
            expect_in(log, "/goor/labels/0000");
        dg_free(log);
        dg_seg_dataset_free(&ds);
    }
}
END_TEST

Suite *seg_datasets_suite(void) {
    Suite *s = suite_create("seg_datasets");
    TCase *tc = tcase_create("readers");
    tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, labelmap_tables_match_spec);
    tcase_add_test(tc, cityscapes_pairs_sorted_and_labels_mapped);
    tcase_add_test(tc, cityscapes_accepts_trainvaltest_nesting);
    tcase_add_test(tc, gtav_flat_layout_follows_split_list);
    tcase_add_test(tc, gtav_split_list_from_project_dir_and_missing_list);
    tcase_add_test(tc, gtav_robustnet_per_split_folders);
    tcase_add_test(tc, bdd100k_both_layouts_identity_map);
    tcase_add_test(tc, mapillary_v12_and_plain_label_folders);
    tcase_add_test(tc, synthia_16bit_first_sample_mapped);
    tcase_add_test(tc, unknown_reader_split_and_missing_root);
    tcase_add_test(tc, missing_partners_recorded_and_logged);
    tcase_add_test(tc, size_mismatch_names_both_files);
    tcase_add_test(tc, corrupt_and_wrongly_encoded_labels_rejected);
    tcase_add_test(tc, scan_names_what_each_bad_label_partner_is_without_opening_it);
    tcase_add_test(tc, split_list_and_image_side_name_what_a_bad_partner_is);
    tcase_add_test(tc, verify_of_pair_with_dangling_label_link_exits_1_naming_it);
    tcase_add_test(tc, verify_of_pair_with_fifo_label_exits_1_without_opening_it);
    tcase_add_test(tc, out_of_range_labels_warn_once_per_dataset_with_the_count);
    suite_add_tcase(s, tc);
    return s;
}
