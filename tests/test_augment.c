/* tests/test_augment.c -- data/augment.h: segmentation and classification
 * augmentation and evaluation transforms (docs/datasets.md §7.4, §7.5, §9.2).
 *
 * Geometry: an image whose colours encode its label (large regions) keeps
 * image and label aligned through scale, pad, crop and flip over many
 * streams, with padding image 0 / label 255; at scale 1 every pixel is
 * checked against the source position the plan names. Streams: same stream
 * same bytes, another position other bytes, exactly DG_SEG_AUG_DRAWS draws
 * consumed; flip mirrors image and label (with jitter and blur on); a
 * centroid-guided crop covers the centroid. Colour: brightness, contrast,
 * saturation, hue and grayscale against hand-computed Pillow values and a
 * double-precision reference of the same formulas. Blur: kernel sum and
 * radius, small sigma is the identity, constant images stay constant, a
 * double reference. Normalisation exact. Classification: the random resized
 * crop box stays in the image with area fraction in [0.7, 1] (up to
 * rounding), grayscale gives equal channels. Evaluation: full image,
 * Mapillary landscape (centre crop) and portrait (symmetric padding) sizes
 * and padding values, classification resize. Configuration checks.
 * Shape letters: H, W (pixels), C (channels). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "data/augment.h"

/* ---- helpers ------------------------------------------------------------- */

/* Failures of a pixel loop, reported once after it: Check sends a message to
 * the runner for every ck_assert call, far too slow per pixel. */
typedef struct fail_log {
    long n;
    char first[256];
} fail_log;

#define FAIL_UNLESS(fl, cond, ...)                                             \
    do {                                                                       \
        if (!(cond) && (fl)->n++ == 0)                                         \
            snprintf((fl)->first, sizeof((fl)->first), __VA_ARGS__);           \
    } while (0)
#define ASSERT_NO_FAILS(fl)                                                    \
    ck_assert_msg(                                                             \
            (fl)->n == 0, "%ld failures, the first: %s", (fl)->n, (fl)->first)

/* Colour that encodes label l (0 .. 18): red channel 13 l + 5 tells the
 * labels apart by 13 levels. */
static void colour_of(int l, uint8_t rgb[3]) {
    rgb[0] = (uint8_t)(13 * l + 5);
    rgb[1] = (uint8_t)(250 - 11 * l);
    rgb[2] = (uint8_t)((97 * l + 31) % 256);
}

/* An (h, w) image of block x block regions, label (by 7 + bx 5) mod 19,
 * coloured by colour_of. */
static void make_regions(
        dg_image *img, dg_image *lab, int h, int w, int block) {
    dg_image_init(img, h, w, 3);
    dg_image_init(lab, h, w, 1);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            const int l = ((y / block) * 7 + (x / block) * 5) % 19;
            lab->data[y * w + x] = (uint8_t)l;
            colour_of(l, img->data + 3 * ((size_t)y * w + x));
        }
    }
}

/* Random RGB image and random labels 0 .. 18 from stream (seed, 0, 0). */
static void make_random_pair(
        dg_image *img, dg_image *lab, int h, int w, uint64_t seed) {
    dg_rng r;
    dg_rng_init(&r, seed, 0, 0);
    dg_image_init(img, h, w, 3);
    if (lab) dg_image_init(lab, h, w, 1);
    for (size_t i = 0; i < (size_t)h * w * 3; i++)
        img->data[i] = (uint8_t)dg_rng_below(&r, 256);
    if (lab) {
        for (size_t i = 0; i < (size_t)h * w; i++)
            lab->data[i] = (uint8_t)dg_rng_below(&r, 19);
    }
}

/* Bytes back from an x / 255 plane value. */
static int byte_of(float v) {
    return (int)lrintf(v * 255.f);
}

/* A configuration with every step off but the geometry given. */
static void geometry_only_cfg(
        dg_seg_aug_cfg *cfg, double smin, double smax, int ch, int cw) {
    dg_seg_aug_cfg_default(cfg);
    cfg->scale_min = smin;
    cfg->scale_max = smax;
    cfg->crop_h = ch;
    cfg->crop_w = cw;
    cfg->jitter_p = 0.0;
    cfg->blur = false;
    cfg->normalize = false;
}

/* Source position (sy, sx) in the scaled image of output pixel (y, x);
 * false when it is padding. */
static bool source_of(
        const dg_seg_aug_plan *p, int y, int x, int *sy, int *sx) {
    const int xx = p->flip ? p->out_w - 1 - x : x;
    *sy = p->y0 + y - p->pad_y;
    *sx = p->x0 + xx - p->pad_x;
    return *sy >= 0 && *sy < p->scaled_h && *sx >= 0 && *sx < p->scaled_w;
}

/* Whether every label in the (2r + 1)^2 window around (y, x), clipped to
 * the (h, w) map (resizing replicates the border), equals l. */
static bool window_uniform(
        const uint8_t *lab, int h, int w, int y, int x, int r, int l) {
    for (int yy = DG_MAX(0, y - r); yy <= DG_MIN(h - 1, y + r); yy++)
        for (int xx = DG_MAX(0, x - r); xx <= DG_MIN(w - 1, x + r); xx++)
            if (lab[yy * w + xx] != l) return false;
    return true;
}

/* ---- segmentation geometry --------------------------------------------- */

START_TEST(seg_alignment_survives_scale_pad_crop_flip) {
    const int h = 150, w = 230, crop = 128;
    dg_image img, lab;
    make_regions(&img, &lab, h, w, 25);
    dg_seg_aug_cfg cfg;
    geometry_only_cfg(&cfg, 0.5, 2.0, crop, crop);
    float *dst = dg_xmalloc(3 * (size_t)crop * crop * sizeof(*dst));
    uint8_t *dl = dg_xmalloc((size_t)crop * crop);
    const size_t hw = (size_t)crop * crop;
    int n_padded = 0, n_flipped = 0, n_small = 0, n_large = 0;
    size_t n_checked = 0;
    fail_log fl = {0, ""};
    for (uint32_t pos = 0; pos < 60; pos++) {
        dg_rng r;
        dg_rng_init(&r, 3, DG_RNG_AUGMENT, (1u << 20) + pos);
        const int32_t centroid[2] = {75, 115};
        dg_seg_aug_plan p;
        dg_seg_aug_draw(&cfg, &r, h, w, pos % 2 ? centroid : NULL, &p);
        ck_assert_int_eq(p.out_h, crop);
        ck_assert_int_eq(p.out_w, crop);
        ck_assert_int_eq(
                dg_seg_aug_apply(&cfg, &p, &img, &lab, dst, dl), DG_STATUS_OK);
        n_padded += p.pad_y > 0 || p.pad_x > 0;
        n_flipped += p.flip;
        n_small += p.scale < 0.8;
        n_large += p.scale > 1.5;
        for (int y = 0; y < crop; y++) {
            for (int x = 0; x < crop; x++) {
                const size_t i = (size_t)y * crop + x;
                const int l = dl[i];
                const int v[3] = {byte_of(dst[i]), byte_of(dst[hw + i]),
                        byte_of(dst[2 * hw + i])};
                int sy, sx;
                if (!source_of(&p, y, x, &sy, &sx)) {
                    FAIL_UNLESS(&fl,
                            l == 255 && v[0] == 0 && v[1] == 0 && v[2] == 0,
                            "pos %u (%d,%d) padding holds label %d colour %d "
                            "%d %d",
                            pos, y, x, l, v[0], v[1], v[2]);
                    continue;
                }
                FAIL_UNLESS(&fl, l <= 18,
                        "pos %u (%d,%d) inside the image has label %d", pos, y,
                        x, l);
                if (l > 18) continue;
                /* Bicubic reads source pixels up to 2 away from the mapped
                 * position: check only where the source is uniform around it.
                 */
                const int oy = (int)floor((sy + 0.5) / p.scale),
                          ox = (int)floor((sx + 0.5) / p.scale);
                if (!window_uniform(lab.data, h, w, oy, ox, 3, l)) continue;
                uint8_t c[3];
                colour_of(l, c);
                FAIL_UNLESS(&fl,
                        abs(v[0] - c[0]) <= 1 && abs(v[1] - c[1]) <= 1 &&
                                abs(v[2] - c[2]) <= 1,
                        "pos %u s %.3f flip %d (%d,%d): label %d but colour %d "
                        "%d %d (exp %d %d "
                        "%d)",
                        pos, p.scale, p.flip, y, x, l, v[0], v[1], v[2], c[0],
                        c[1], c[2]);
                n_checked++;
            }
        }
    }
    ASSERT_NO_FAILS(&fl);
    ck_assert_msg(n_padded >= 5 && n_flipped >= 10 && n_flipped <= 50 &&
                          n_small >= 5 && n_large >= 5,
            "draws do not cover the cases: padded %d flipped %d small %d large "
            "%d",
            n_padded, n_flipped, n_small, n_large);
    ck_assert_msg(n_checked > 60 * hw / 3,
            "only %zu pixels were away from borders", n_checked);
    dg_free(dst);
    dg_free(dl);
    dg_image_free(&img);
    dg_image_free(&lab);
}
END_TEST

/* At scale 1 nothing is resampled: every output pixel is exactly the source
 * pixel the plan names (random pixels, so any offset shows). */
START_TEST(seg_scale_one_crop_and_pad_are_pixel_exact) {
    const int h = 80, w = 120;
    dg_image img, lab;
    make_random_pair(&img, &lab, h, w, 11);
    const int crops[3][2] = {{96, 96}, {64, 64}, {40, 150}};
    for (int k = 0; k < 3; k++) {
        const int ch = crops[k][0], cw = crops[k][1];
        dg_seg_aug_cfg cfg;
        geometry_only_cfg(&cfg, 1.0, 1.0, ch, cw);
        float *dst = dg_xmalloc(3 * (size_t)ch * cw * sizeof(*dst));
        uint8_t *dl = dg_xmalloc((size_t)ch * cw);
        const size_t hw = (size_t)ch * cw;
        fail_log fl = {0, ""};
        for (uint32_t pos = 0; pos < 12; pos++) {
            dg_rng r;
            dg_rng_init(&r, 5, DG_RNG_AUGMENT, pos);
            dg_seg_aug_plan p;
            dg_seg_aug_draw(&cfg, &r, h, w, NULL, &p);
            ck_assert(p.scale == 1.0 && p.scaled_h == h && p.scaled_w == w);
            ck_assert_int_eq(p.pad_y, ch > h ? (ch - h) / 2 + 1 : 0);
            ck_assert_int_eq(p.pad_x, cw > w ? (cw - w) / 2 + 1 : 0);
            ck_assert_int_eq(dg_seg_aug_apply(&cfg, &p, &img, &lab, dst, dl),
                    DG_STATUS_OK);
            for (int y = 0; y < ch; y++) {
                for (int x = 0; x < cw; x++) {
                    const size_t i = (size_t)y * cw + x;
                    int sy, sx;
                    const bool in = source_of(&p, y, x, &sy, &sx);
                    const size_t si = in ? (size_t)sy * w + sx : 0;
                    const int el = in ? lab.data[si] : 255;
                    for (int c = 0; c < 3; c++) {
                        const int ev = in ? img.data[3 * si + c] : 0;
                        FAIL_UNLESS(&fl, byte_of(dst[c * hw + i]) == ev,
                                "crop %dx%d pos %u (%d,%d,%d): %d, expected %d",
                                ch, cw, pos, y, x, c, byte_of(dst[c * hw + i]),
                                ev);
                    }
                    FAIL_UNLESS(&fl, dl[i] == el,
                            "crop %dx%d pos %u (%d,%d): label %d, expected %d",
                            ch, cw, pos, y, x, dl[i], el);
                }
            }
        }
        ASSERT_NO_FAILS(&fl);
        dg_free(dst);
        dg_free(dl);
    }
    dg_image_free(&img);
    dg_image_free(&lab);
}
END_TEST

START_TEST(seg_same_stream_same_output_other_position_differs) {
    const int h = 120, w = 160, crop = 96;
    dg_image img, lab;
    make_random_pair(&img, &lab, h, w, 21);
    dg_seg_aug_cfg cfg;
    dg_seg_aug_cfg_default(&cfg);
    cfg.crop_h = cfg.crop_w = crop;
    cfg.jitter_p = 1.0;
    const size_t n = (size_t)crop * crop;
    float *d[3];
    uint8_t *l[3];
    for (int k = 0; k < 3; k++) {
        d[k] = dg_xmalloc(3 * n * sizeof(float));
        l[k] = dg_xmalloc(n);
        dg_rng r;
        dg_rng_init(
                &r, 7, DG_RNG_AUGMENT, k < 2 ? (2u << 20) + 5 : (2u << 20) + 6);
        dg_rng r0 = r;
        ck_assert_int_eq(dg_seg_augment(&cfg, &r, &img, &lab, NULL, d[k], l[k]),
                DG_STATUS_OK);
        /* Exactly DG_SEG_AUG_DRAWS draws were taken. */
        for (int j = 0; j < DG_SEG_AUG_DRAWS; j++) dg_rng_next(&r0);
        ck_assert(r0.state == r.state);
    }
    ck_assert(memcmp(d[0], d[1], 3 * n * sizeof(float)) == 0);
    ck_assert(memcmp(l[0], l[1], n) == 0);
    ck_assert(memcmp(d[0], d[2], 3 * n * sizeof(float)) != 0);
    ck_assert(memcmp(l[0], l[2], n) != 0);
    for (size_t i = 0; i < 3 * n; i++) ck_assert(isfinite(d[0][i]));
    for (int k = 0; k < 3; k++) {
        dg_free(d[k]);
        dg_free(l[k]);
    }
    dg_image_free(&img);
    dg_image_free(&lab);
}
END_TEST

START_TEST(seg_flip_mirrors_image_and_label) {
    const int h = 90, w = 110, crop = 72;
    dg_image img, lab;
    make_random_pair(&img, &lab, h, w, 31);
    dg_seg_aug_cfg cfg;
    dg_seg_aug_cfg_default(&cfg);
    cfg.crop_h = cfg.crop_w = crop;
    cfg.scale_min = 0.6; /* padding in some draws */
    cfg.jitter_p = 1.0;
    const size_t n = (size_t)crop * crop;
    float *a = dg_xmalloc(3 * n * sizeof(float)),
          *b = dg_xmalloc(3 * n * sizeof(float));
    uint8_t *la = dg_xmalloc(n), *lb = dg_xmalloc(n);
    for (uint32_t pos = 0; pos < 8; pos++) {
        dg_rng r;
        dg_rng_init(&r, 9, DG_RNG_AUGMENT, pos);
        dg_seg_aug_plan p;
        dg_seg_aug_draw(&cfg, &r, h, w, NULL, &p);
        ck_assert(p.jitter && p.blur);
        p.flip = false;
        ck_assert_int_eq(
                dg_seg_aug_apply(&cfg, &p, &img, &lab, a, la), DG_STATUS_OK);
        p.flip = true;
        ck_assert_int_eq(
                dg_seg_aug_apply(&cfg, &p, &img, &lab, b, lb), DG_STATUS_OK);
        size_t same = 0;
        fail_log fl = {0, ""};
        for (int y = 0; y < crop; y++) {
            for (int x = 0; x < crop; x++) {
                const size_t i = (size_t)y * crop + x,
                             m = (size_t)y * crop + (crop - 1 - x);
                FAIL_UNLESS(&fl, lb[i] == la[m],
                        "pos %u label (%d,%d) not mirrored", pos, y, x);
                for (int c = 0; c < 3; c++)
                    FAIL_UNLESS(&fl, b[c * n + i] == a[c * n + m],
                            "pos %u channel %d (%d,%d): %g vs mirrored %g", pos,
                            c, y, x, (double)b[c * n + i],
                            (double)a[c * n + m]);
                same += la[i] == lb[i];
            }
        }
        ASSERT_NO_FAILS(&fl);
        ck_assert_msg(same < n / 2,
                "flip changed almost nothing (%zu of %zu equal)", same, n);
    }
    dg_free(a);
    dg_free(b);
    dg_free(la);
    dg_free(lb);
    dg_image_free(&img);
    dg_image_free(&lab);
}
END_TEST

START_TEST(seg_centroid_guided_crop_covers_the_centroid) {
    const int h = 300, w = 400, crop = 64;
    dg_image img, lab;
    dg_image_init(&img, h, w, 3);
    dg_image_init(&lab, h, w, 1);
    const int32_t cen[2] = {211, 57};
    /* Class 7 only in a 9 x 9 blob around the centroid. */
    for (int y = cen[0] - 4; y <= cen[0] + 4; y++)
        for (int x = cen[1] - 4; x <= cen[1] + 4; x++) lab.data[y * w + x] = 7;
    dg_seg_aug_cfg cfg;
    geometry_only_cfg(&cfg, 0.5, 2.0, crop, crop);
    float *dst = dg_xmalloc(3 * (size_t)crop * crop * sizeof(*dst));
    uint8_t *dl = dg_xmalloc((size_t)crop * crop);
    int at_edge = 0;
    fail_log fl = {0, ""};
    for (uint32_t pos = 0; pos < 200; pos++) {
        dg_rng r;
        dg_rng_init(&r, 13, DG_RNG_AUGMENT, pos);
        dg_seg_aug_plan p;
        dg_seg_aug_draw(&cfg, &r, h, w, cen, &p);
        const int cy = (int)floor(cen[0] * p.scale) + p.pad_y;
        const int cx = (int)floor(cen[1] * p.scale) + p.pad_x;
        FAIL_UNLESS(&fl,
                p.y0 <= cy && cy <= p.y0 + crop && p.x0 <= cx &&
                        cx <= p.x0 + crop,
                "pos %u: centroid (%d,%d) outside crop at (%d,%d)", pos, cy, cx,
                p.y0, p.x0);
        at_edge += cy == p.y0 + crop || cx == p.x0 + crop;
        ck_assert_int_eq(
                dg_seg_aug_apply(&cfg, &p, &img, &lab, dst, dl), DG_STATUS_OK);
        bool seen = false;
        for (int i = 0; i < crop * crop && !seen; i++) seen = dl[i] == 7;
        FAIL_UNLESS(&fl, seen,
                "pos %u: the centroid's class is not in the crop", pos);
    }
    ASSERT_NO_FAILS(&fl);
    ck_assert_int_le(at_edge, 20);
    /* Without the centroid, the blob is mostly missed. */
    int seen_random = 0;
    for (uint32_t pos = 0; pos < 50; pos++) {
        dg_rng r;
        dg_rng_init(&r, 13, DG_RNG_AUGMENT, pos);
        ck_assert_int_eq(dg_seg_augment(&cfg, &r, &img, &lab, NULL, dst, dl),
                DG_STATUS_OK);
        bool seen = false;
        for (int i = 0; i < crop * crop && !seen; i++) seen = dl[i] == 7;
        seen_random += seen;
    }
    ck_assert_int_lt(seen_random, 25);
    dg_free(dst);
    dg_free(dl);
    dg_image_free(&img);
    dg_image_free(&lab);
}
END_TEST

START_TEST(seg_mismatched_label_is_a_shape_error) {
    dg_image img, lab;
    make_random_pair(&img, &lab, 20, 30, 1);
    dg_image small;
    dg_image_init(&small, 20, 29, 1);
    dg_seg_aug_cfg cfg;
    geometry_only_cfg(&cfg, 1.0, 1.0, 16, 16);
    float dst[3 * 16 * 16];
    uint8_t dl[16 * 16];
    dg_rng r;
    dg_rng_init(&r, 1, DG_RNG_AUGMENT, 0);
    capture cap;
    capture_begin(&cap);
    const dg_status st = dg_seg_augment(&cfg, &r, &img, &small, NULL, dst, dl);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_SHAPE);
    ck_assert_msg(
            strstr(log, "20x29x1") && strstr(log, "20x30"), "log: %s", log);
    dg_free(log);
    dg_image_free(&small);
    dg_image_free(&img);
    dg_image_free(&lab);
}
END_TEST

/* ---- colour operations -------------------------------------------------- */

/* Pillow blend of one value in double: base + f (v - base), clamped, then
 * truncated. */
static int ref_blend(double base, double v, double f) {
    const double t = base + f * (v - base);
    return t <= 0.0 ? 0 : t >= 255.0 ? 255 : (int)t;
}

/* ITU-R 601-2 grey as Pillow rounds it, in double. */
static int ref_grey(const uint8_t *p) {
    return (int)floor(
            (19595.0 * p[0] + 38470.0 * p[1] + 7471.0 * p[2] + 32768.0) /
            65536.0);
}

START_TEST(jitter_ops_match_hand_computed_pillow_values) {
    /* Brightness: truncation, not rounding; clamping above 255. */
    uint8_t b[6] = {3, 204, 100, 101, 0, 255};
    dg_aug_adjust_brightness(b, 2, 1.25);
    const uint8_t be[6] = {3, 255, 125, 126, 0, 255};
    ck_assert(memcmp(b, be, 6) == 0);
    uint8_t b2[3] = {100, 101, 255};
    dg_aug_adjust_brightness(b2, 1, 0.5);
    ck_assert(b2[0] == 50 && b2[1] == 50 && b2[2] == 127);
    /* Contrast: greys 18 and 124, mean 71. */
    uint8_t c[6] = {10, 20, 30, 200, 100, 50};
    dg_aug_adjust_contrast(c, 2, 1.5);
    const uint8_t ce[6] = {0, 0, 9, 255, 114, 39};
    ck_assert_msg(memcmp(c, ce, 6) == 0, "contrast: %d %d %d %d %d %d", c[0],
            c[1], c[2], c[3], c[4], c[5]);
    /* Greys 18 and 125: mean 71.5 rounds to 72. */
    uint8_t c2[6] = {10, 20, 30, 202, 100, 50};
    dg_aug_adjust_contrast(c2, 2, 0.5);
    const uint8_t c2e[6] = {41, 46, 51, 137, 86, 61};
    ck_assert_msg(memcmp(c2, c2e, 6) == 0, "contrast: %d %d %d %d %d %d", c2[0],
            c2[1], c2[2], c2[3], c2[4], c2[5]);
    /* Saturation: grey 124. */
    uint8_t s[3] = {200, 100, 50};
    dg_aug_adjust_saturation(s, 1, 0.5);
    ck_assert_msg(s[0] == 162 && s[1] == 112 && s[2] == 87, "sat 0.5: %d %d %d",
            s[0], s[1], s[2]);
    uint8_t s2[3] = {200, 100, 50};
    dg_aug_adjust_saturation(s2, 1, 1.5);
    ck_assert_msg(s2[0] == 238 && s2[1] == 88 && s2[2] == 13,
            "sat 1.5: %d %d %d", s2[0], s2[1], s2[2]);
    /* Hue on known colours (H byte shift uint8(trunc(255 shift))). */
    const struct {
        uint8_t in[3];
        double shift;
        uint8_t out[3];
    } hue[] = {
            {{255, 0, 0}, 0.1, {255, 150, 0}},  /* red + 25 */
            {{255, 0, 0}, -0.1, {255, 0, 144}}, /* red + 231 */
            {{0, 255, 0}, 0.1, {0, 255, 150}}, /* green: H 85 (f32 hue), + 25 */
            {{0, 0, 255}, 0.25, {255, 0, 132}},      /* blue: H 170, + 63 */
            {{100, 100, 100}, 0.3, {100, 100, 100}}, /* grey has no hue */
    };
    for (size_t k = 0; k < DG_ARRAY_LEN(hue); k++) {
        uint8_t p[3] = {hue[k].in[0], hue[k].in[1], hue[k].in[2]};
        dg_aug_adjust_hue(p, 1, hue[k].shift);
        ck_assert_msg(memcmp(p, hue[k].out, 3) == 0,
                "hue case %zu: %d %d %d, expected %d %d %d", k, p[0], p[1],
                p[2], hue[k].out[0], hue[k].out[1], hue[k].out[2]);
    }
    /* Grayscale: L24 grey in every channel. */
    uint8_t g[6] = {200, 100, 50, 10, 20, 30};
    dg_aug_grayscale(g, 2);
    const uint8_t ge[6] = {124, 124, 124, 18, 18, 18};
    ck_assert(memcmp(g, ge, 6) == 0);
}
END_TEST

START_TEST(jitter_ops_match_double_reference) {
    enum { N = 4096 };
    dg_image img;
    make_random_pair(&img, NULL, 64, 64, 41);
    uint8_t *x = dg_xmalloc(3 * N), *ref = dg_xmalloc(3 * N);
    /* Dyadic factors: f32 and double agree exactly. */
    const double factors[] = {0.625, 1.25, 1.375, 0.0, 2.0};
    for (size_t k = 0; k < DG_ARRAY_LEN(factors); k++) {
        const double f = factors[k];
        memcpy(x, img.data, 3 * N);
        dg_aug_adjust_brightness(x, N, f);
        for (int i = 0; i < 3 * N; i++)
            ref[i] = (uint8_t)ref_blend(0, img.data[i], f);
        ck_assert_msg(memcmp(x, ref, 3 * N) == 0, "brightness %g differs", f);

        memcpy(x, img.data, 3 * N);
        dg_aug_adjust_contrast(x, N, f);
        double sum = 0;
        for (int i = 0; i < N; i++) sum += ref_grey(img.data + 3 * i);
        const int mean = (int)(sum / N + 0.5);
        for (int i = 0; i < 3 * N; i++)
            ref[i] = (uint8_t)ref_blend(mean, img.data[i], f);
        ck_assert_msg(memcmp(x, ref, 3 * N) == 0,
                "contrast %g differs (mean %d)", f, mean);

        memcpy(x, img.data, 3 * N);
        dg_aug_adjust_saturation(x, N, f);
        for (int i = 0; i < 3 * N; i++)
            ref[i] = (uint8_t)ref_blend(
                    ref_grey(img.data + 3 * (i / 3)), img.data[i], f);
        ck_assert_msg(memcmp(x, ref, 3 * N) == 0, "saturation %g differs", f);
    }
    /* Any factor: at most one level apart (f32 versus double). */
    memcpy(x, img.data, 3 * N);
    dg_aug_adjust_saturation(x, N, 0.7134);
    int bad = 0;
    for (int i = 0; i < 3 * N; i++)
        bad += abs(x[i] - ref_blend(ref_grey(img.data + 3 * (i / 3)),
                                  img.data[i], (double)(float)0.7134)) > 1;
    ck_assert_int_eq(bad, 0);
    /* Hue: colorsys-style HSV in double with Pillow's byte quantisation. */
    const double shifts[] = {0.1, -0.1, 0.37, -0.5};
    for (size_t k = 0; k < DG_ARRAY_LEN(shifts); k++) {
        memcpy(x, img.data, 3 * N);
        dg_aug_adjust_hue(x, N, shifts[k]);
        int off1 = 0, maxd = 0;
        for (int i = 0; i < N; i++) {
            const uint8_t *p = img.data + 3 * i;
            const double r = p[0], g = p[1], b = p[2];
            const double mx = fmax(r, fmax(g, b)), mn = fmin(r, fmin(g, b));
            int e[3] = {p[0], p[1], p[2]};
            if (mx != mn) {
                const double cr = mx - mn;
                double hh = r == mx   ? (mx - b) / cr - (mx - g) / cr
                            : g == mx ? 2.0 + (mx - r) / cr - (mx - b) / cr
                                      : 4.0 + (mx - g) / cr - (mx - r) / cr;
                hh = fmod(hh / 6.0 + 1.0, 1.0);
                const int hb =
                        ((int)(hh * 255.0) + (int)(shifts[k] * 255.0) + 256) %
                        256;
                const int sb = (int)(cr / mx * 255.0);
                if (sb > 0) {
                    const int ii = (int)floor(hb * 6.0 / 255.0);
                    const double f = hb * 6.0 / 255.0 - ii, fs = sb / 255.0;
                    const int pp = (int)round(mx * (1 - fs)),
                              qq = (int)round(mx * (1 - fs * f));
                    const int tt = (int)round(mx * (1 - fs * (1 - f))),
                              v = (int)mx;
                    const int tab[6][3] = {{v, tt, pp}, {qq, v, pp},
                            {pp, v, tt}, {pp, qq, v}, {tt, pp, v}, {v, pp, qq}};
                    memcpy(e, tab[ii % 6], sizeof(e));
                } else {
                    e[0] = e[1] = e[2] = (int)mx;
                }
            }
            for (int c = 0; c < 3; c++) {
                const int d = abs(x[3 * i + c] - e[c]);
                off1 += d > 1;
                maxd = DG_MAX(maxd, d);
            }
        }
        /* A hue byte one apart (f32 versus double) moves a channel by at
         * most 6 levels; it must stay rare. */
        ck_assert_msg(maxd <= 6 && off1 <= 3 * N / 100,
                "hue %g: %d values off by > 1, max %d", shifts[k], off1, maxd);
    }
    dg_free(x);
    dg_free(ref);
    dg_image_free(&img);
}
END_TEST

START_TEST(jitter_apply_runs_switched_on_ops_in_order) {
    dg_image img;
    make_random_pair(&img, NULL, 16, 16, 43);
    const size_t n = 256;
    uint8_t *a = dg_xmalloc(3 * n), *b = dg_xmalloc(3 * n);
    dg_jitter j;
    memset(&j, 0, sizeof(j));
    j.on[DG_JITTER_OP_BRIGHTNESS] = j.on[DG_JITTER_OP_HUE] =
            j.on[DG_JITTER_OP_CONTRAST] = true;
    j.factor[DG_JITTER_OP_BRIGHTNESS] = 1.3;
    j.factor[DG_JITTER_OP_CONTRAST] = 0.7;
    j.factor[DG_JITTER_OP_SATURATION] =
            0.0; /* off: would make the image grey */
    j.factor[DG_JITTER_OP_HUE] = 0.2;
    const int order[4] = {DG_JITTER_OP_HUE, DG_JITTER_OP_SATURATION,
            DG_JITTER_OP_BRIGHTNESS, DG_JITTER_OP_CONTRAST};
    memcpy(j.order, order, sizeof(order));
    memcpy(a, img.data, 3 * n);
    dg_aug_jitter_apply(&j, a, n);
    memcpy(b, img.data, 3 * n);
    dg_aug_adjust_hue(b, n, 0.2);
    dg_aug_adjust_brightness(b, n, 1.3);
    dg_aug_adjust_contrast(b, n, 0.7);
    ck_assert(memcmp(a, b, 3 * n) == 0);
    /* Another order gives another image (the ops do not commute). */
    memcpy(b, img.data, 3 * n);
    dg_aug_adjust_contrast(b, n, 0.7);
    dg_aug_adjust_brightness(b, n, 1.3);
    dg_aug_adjust_hue(b, n, 0.2);
    ck_assert(memcmp(a, b, 3 * n) != 0);
    dg_free(a);
    dg_free(b);
    dg_image_free(&img);
}
END_TEST

/* ---- blur ------------------------------------------------------------------
 */

START_TEST(blur_kernel_sums_to_one_with_radius_4_sigma) {
    const double sig[] = {0.15, 0.37, 0.5, 1.0, 1.3, 2.2};
    for (size_t k = 0; k < DG_ARRAY_LEN(sig); k++) {
        float kern[2 * DG_AUG_BLUR_MAX_RADIUS + 1];
        const int r =
                dg_aug_gaussian_kernel(sig[k], kern, (int)DG_ARRAY_LEN(kern));
        ck_assert_int_eq(r, (int)floor(4 * sig[k] + 0.5));
        double sum = 0;
        for (int i = 0; i <= 2 * r; i++) {
            sum += kern[i];
            ck_assert(kern[i] == kern[2 * r - i]);
            if (i < r) ck_assert(kern[i] < kern[i + 1]);
        }
        ck_assert_msg(
                fabs(sum - 1.0) < 1e-6, "sigma %g: sum %.9f", sig[k], sum);
        const double e1 = exp(-0.5 / (sig[k] * sig[k]));
        if (r >= 1)
            ck_assert(fabs(kern[r + 1] / kern[r] - e1) < 1e-5 * (1 + e1));
    }
}
END_TEST

START_TEST(blur_small_sigma_is_identity_and_constant_stays_constant) {
    dg_image img;
    make_random_pair(&img, NULL, 37, 53, 51);
    uint8_t *out = dg_xmalloc((size_t)37 * 53 * 3);
    dg_aug_gaussian_blur(img.data, out, 37, 53, 3, 0.15);
    ck_assert(memcmp(out, img.data, (size_t)37 * 53 * 3) == 0);
    /* The same image blurred for real changes. */
    dg_aug_gaussian_blur(img.data, out, 37, 53, 3, 1.0);
    ck_assert(memcmp(out, img.data, (size_t)37 * 53 * 3) != 0);
    const uint8_t levels[] = {0, 1, 77, 128, 254, 255};
    fail_log fl = {0, ""};
    for (size_t k = 0; k < DG_ARRAY_LEN(levels); k++) {
        memset(img.data, levels[k], (size_t)37 * 53 * 3);
        dg_aug_gaussian_blur(img.data, out, 37, 53, 3, 1.3);
        for (size_t i = 0; i < (size_t)37 * 53 * 3; i++)
            FAIL_UNLESS(&fl, out[i] == levels[k],
                    "constant %d became %d at %zu", levels[k], out[i], i);
    }
    ASSERT_NO_FAILS(&fl);
    dg_free(out);
    dg_image_free(&img);
}
END_TEST

START_TEST(blur_matches_double_reference_with_replicated_border) {
    const int h = 23, w = 31, c = 3;
    const double sigma = 1.1;
    dg_image img;
    make_random_pair(&img, NULL, h, w, 53);
    uint8_t *out = dg_xmalloc((size_t)h * w * c);
    dg_aug_gaussian_blur(img.data, out, h, w, c, sigma);
    const int r = (int)(4 * sigma + 0.5);
    double k[64], s = 0;
    for (int i = -r; i <= r; i++)
        s += k[i + r] = exp(-0.5 * i * i / (sigma * sigma));
    double *tmp = dg_xmalloc((size_t)h * w * c * sizeof(double));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++) {
                double a = 0;
                for (int t = -r; t <= r; t++) {
                    const int yy = DG_MIN(h - 1, DG_MAX(0, y + t));
                    a += k[t + r] / s * img.data[((size_t)yy * w + x) * c + ch];
                }
                tmp[((size_t)y * w + x) * c + ch] = a;
            }
    int off = 0, exact = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++) {
                double a = 0;
                for (int t = -r; t <= r; t++) {
                    const int xx = DG_MIN(w - 1, DG_MAX(0, x + t));
                    a += k[t + r] / s * tmp[((size_t)y * w + xx) * c + ch];
                }
                const int e = (int)floor(a + 0.5),
                          g = out[((size_t)y * w + x) * c + ch];
                off += abs(g - e) > 1;
                exact += g == e;
            }
    ck_assert_int_eq(off, 0);
    ck_assert_int_ge(exact, h * w * c * 99 / 100);
    dg_free(tmp);
    dg_free(out);
    dg_image_free(&img);
}
END_TEST

/* ---- normalisation ------------------------------------------------------- */

START_TEST(seg_normalisation_values_are_exact) {
    const int h = 17, w = 19;
    dg_image img, lab;
    make_random_pair(&img, &lab, h, w, 61);
    for (int k = 0; k < 2; k++) {
        dg_seg_aug_cfg cfg;
        geometry_only_cfg(&cfg, 1.0, 1.0, 0, 0);
        cfg.flip_p = 0.0;
        cfg.normalize = k == 1;
        float dst[3 * 17 * 19];
        uint8_t dl[17 * 19];
        dg_rng r;
        dg_rng_init(&r, 1, DG_RNG_AUGMENT, 0);
        ck_assert_int_eq(dg_seg_augment(&cfg, &r, &img, &lab, NULL, dst, dl),
                DG_STATUS_OK);
        ck_assert(memcmp(dl, lab.data, (size_t)h * w) == 0);
        fail_log fl = {0, ""};
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < h * w; i++) {
                const float x = (float)img.data[3 * i + c] / 255.f;
                const float e = cfg.normalize ? (x - DG_IMAGENET_MEAN[c]) /
                                                        DG_IMAGENET_STD[c]
                                              : x;
                FAIL_UNLESS(&fl, dst[c * h * w + i] == e,
                        "c %d i %d: %.9g vs %.9g", c, i,
                        (double)dst[c * h * w + i], (double)e);
            }
        ASSERT_NO_FAILS(&fl);
    }
    dg_image_free(&img);
    dg_image_free(&lab);
}
END_TEST

/* ---- classification --------------------------------------------------------
 */

START_TEST(cls_random_resized_crop_box_stays_inside_with_area_in_range) {
    dg_cls_aug_cfg cfg;
    dg_cls_aug_cfg_default(&cfg);
    const int sizes[][2] = {{100, 100}, {227, 227}, {60, 300}, {300, 45},
            {1, 1}, {7, 5}, {480, 640}};
    int n_ok = 0, n_fallback = 0;
    fail_log fl = {0, ""};
    for (size_t k = 0; k < DG_ARRAY_LEN(sizes); k++) {
        const int h = sizes[k][0], w = sizes[k][1];
        for (uint32_t pos = 0; pos < 300; pos++) {
            dg_rng r;
            dg_rng_init(&r, 71, DG_RNG_AUGMENT, pos);
            dg_cls_aug_plan p;
            dg_cls_aug_draw(&cfg, &r, h, w, &p);
            FAIL_UNLESS(&fl,
                    p.i >= 0 && p.j >= 0 && p.h >= 1 && p.w >= 1 &&
                            p.i + p.h <= h && p.j + p.w <= w,
                    "%dx%d pos %u: box (%d,%d,%d,%d) outside", h, w, pos, p.i,
                    p.j, p.h, p.w);
            const double area = (double)h * w, got = (double)p.h * p.w;
            if (p.attempt >= 0) {
                n_ok++;
                FAIL_UNLESS(&fl,
                        p.area_fraction >= 0.7 && p.area_fraction <= 1.0,
                        "%dx%d pos %u: drawn fraction %g", h, w, pos,
                        p.area_fraction);
                /* Rounding w and h moves the area by at most (w + h) / 2 + 1/4.
                 */
                const double slack = 0.5 * (p.w + p.h) + 0.25;
                FAIL_UNLESS(&fl, got >= 0.7 * area - slack && got <= area,
                        "%dx%d pos %u: box %dx%d has area fraction %.4f", h, w,
                        pos, p.h, p.w, got / area);
                FAIL_UNLESS(&fl, fabs(got - p.area_fraction * area) <= slack,
                        "%dx%d pos %u: box area %g, drawn %g", h, w, pos, got,
                        p.area_fraction * area);
            } else {
                n_fallback++;
                FAIL_UNLESS(&fl, p.i == (h - p.h) / 2 && p.j == (w - p.w) / 2,
                        "%dx%d pos %u: fallback box (%d,%d,%d,%d) not centred",
                        h, w, pos, p.i, p.j, p.h, p.w);
            }
        }
    }
    ASSERT_NO_FAILS(&fl);
    ck_assert_int_gt(n_ok, 1000);
    ck_assert_int_gt(n_fallback,
            100); /* 60x300, 300x45 and 1x1 cannot fit the ratio range */
    /* The fallback of a wide image is the central crop at ratio 4/3. */
    dg_rng r;
    dg_rng_init(&r, 71, DG_RNG_AUGMENT, 0);
    dg_cls_aug_plan p;
    dg_cls_aug_draw(&cfg, &r, 30, 300, &p);
    ck_assert_int_eq(p.attempt, -1);
    ck_assert(p.h == 30 && p.w == 40 && p.i == 0 && p.j == 130);
}
END_TEST

START_TEST(cls_grayscale_gives_equal_channels) {
    dg_image img;
    make_random_pair(&img, NULL, 50, 70, 73);
    dg_cls_aug_cfg cfg;
    dg_cls_aug_cfg_default(&cfg);
    cfg.size = 32;
    cfg.normalize = false;
    const size_t n = 32 * 32;
    float *dst = dg_xmalloc(3 * n * sizeof(*dst));
    for (int k = 0; k < 2; k++) {
        cfg.gray_p = k == 0 ? 1.0 : 0.0;
        dg_rng r;
        dg_rng_init(&r, 3, DG_RNG_AUGMENT, 9);
        ck_assert_int_eq(dg_cls_augment(&cfg, &r, &img, dst), DG_STATUS_OK);
        size_t equal = 0;
        for (size_t i = 0; i < n; i++)
            equal += dst[i] == dst[n + i] && dst[i] == dst[2 * n + i];
        if (k == 0)
            ck_assert_uint_eq(equal, n);
        else
            ck_assert_uint_lt(equal, n / 10);
    }
    dg_free(dst);
    dg_image_free(&img);
}
END_TEST

START_TEST(cls_augment_is_deterministic_per_stream_and_normalised) {
    dg_image img;
    make_random_pair(&img, NULL, 90, 120, 79);
    dg_cls_aug_cfg cfg;
    dg_cls_aug_cfg_default(&cfg);
    cfg.size = 48;
    const size_t n = 3 * 48 * 48;
    float *a = dg_xmalloc(n * sizeof(float)),
          *b = dg_xmalloc(n * sizeof(float));
    dg_rng r1, r2;
    dg_rng_init(&r1, 5, DG_RNG_AUGMENT, 17);
    r2 = r1;
    dg_rng r0 = r1;
    ck_assert_int_eq(dg_cls_augment(&cfg, &r1, &img, a), DG_STATUS_OK);
    ck_assert_int_eq(dg_cls_augment(&cfg, &r2, &img, b), DG_STATUS_OK);
    ck_assert(memcmp(a, b, n * sizeof(float)) == 0);
    for (int k = 0; k < DG_CLS_AUG_DRAWS; k++) dg_rng_next(&r0);
    ck_assert(r0.state == r1.state);
    dg_rng_init(&r2, 5, DG_RNG_AUGMENT, 18);
    ck_assert_int_eq(dg_cls_augment(&cfg, &r2, &img, b), DG_STATUS_OK);
    ck_assert(memcmp(a, b, n * sizeof(float)) != 0);
    /* Normalised: values lie within the ImageNet range of [0, 1]. */
    for (size_t i = 0; i < n; i++) {
        const int c = (int)(i / (48 * 48));
        const float lo = (0.f - DG_IMAGENET_MEAN[c]) / DG_IMAGENET_STD[c];
        const float hi = (1.f - DG_IMAGENET_MEAN[c]) / DG_IMAGENET_STD[c];
        ck_assert(a[i] >= lo && a[i] <= hi);
    }
    dg_free(a);
    dg_free(b);
    dg_image_free(&img);
}
END_TEST

/* ---- evaluation transforms --------------------------------------------- */

/* Checks dst (3, T, T) and dl (T, T) against the resized image rs
 * (T, W', 3) / rl shown from column x1 on (padding elsewhere). */
static void check_mapillary(const float *dst, const uint8_t *dl,
        const dg_image *rs, const dg_image *rl, int t, int x1) {
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++)
            lut[c][v] = ((float)v / 255.f - DG_IMAGENET_MEAN[c]) /
                        DG_IMAGENET_STD[c];
    const size_t hw = (size_t)t * t;
    fail_log fl = {0, ""};
    for (int y = 0; y < t; y++)
        for (int x = 0; x < t; x++) {
            const int sx = x + x1;
            const bool in = sx >= 0 && sx < rs->w;
            const size_t i = (size_t)y * t + x;
            const int el = in ? rl->data[(size_t)y * rs->w + sx] : 255;
            FAIL_UNLESS(&fl, dl[i] == el, "(%d,%d): label %d, expected %d", y,
                    x, dl[i], el);
            for (int c = 0; c < 3; c++) {
                const int v =
                        in ? rs->data[((size_t)y * rs->w + sx) * 3 + c] : 0;
                FAIL_UNLESS(&fl, dst[c * hw + i] == lut[c][v],
                        "(%d,%d,%d): %g, expected %g", y, x, c,
                        (double)dst[c * hw + i], (double)lut[c][v]);
            }
        }
    ASSERT_NO_FAILS(&fl);
}

START_TEST(seg_eval_mapillary_landscape_crops_and_portrait_pads) {
    const int t = 120;
    dg_seg_eval_cfg cfg;
    dg_seg_eval_cfg_default(&cfg);
    cfg.target_h = t;
    /* (H, W) -> width floor(W t / H) and expected x1 = round((W' - t) / 2). */
    const int cases[][4] = {
            {300, 500, 200, 40}, /* landscape: centre crop */
            {300, 502, 200, 40}, /* floor(200.8) */
            {60, 121, 242, 61},  /* excess 122 */
            {120, 241, 241,
                    60}, /* excess 121: round(60.5) = 60 (ties to even) */
            {120, 243, 243, 62}, /* excess 123: round(61.5) = 62 */
            {400, 200, 60, -30}, /* portrait: pad 30 + 30 */
            {400, 203, 60, -30}, /* floor(60.9) = 60 */
            {240, 122, 61, -30}, /* excess -59: round(-29.5) = -30, pad 30 left,
                                    29 right */
            {120, 120, 120, 0},  /* square at the target size: unchanged */
    };
    for (size_t k = 0; k < DG_ARRAY_LEN(cases); k++) {
        const int h = cases[k][0], w = cases[k][1], nw = cases[k][2],
                  x1 = cases[k][3];
        dg_image img, lab;
        make_random_pair(&img, &lab, h, w, 83 + k);
        int oh, ow;
        dg_seg_eval_dims(&cfg, h, w, &oh, &ow);
        ck_assert(oh == t && ow == t);
        float *dst = dg_xmalloc(3 * (size_t)t * t * sizeof(float));
        uint8_t *dl = dg_xmalloc((size_t)t * t);
        ck_assert_int_eq(
                dg_seg_eval_transform(&cfg, &img, &lab, dst, dl), DG_STATUS_OK);
        dg_image rs, rl;
        if (nw == w && t == h) {
            rs = img;
            rl = lab;
        } else {
            ck_assert_int_eq(
                    dg_image_resize(&img, t, nw, DG_INTERP_BICUBIC, &rs),
                    DG_STATUS_OK);
            ck_assert_int_eq(
                    dg_image_resize(&lab, t, nw, DG_INTERP_NEAREST_EXACT, &rl),
                    DG_STATUS_OK);
        }
        check_mapillary(dst, dl, &rs, &rl, t, x1);
        /* Padding columns: left x1 < 0 columns and the rest on the right. */
        int pad = 0;
        for (int x = 0; x < t; x++) pad += dl[x] == 255;
        ck_assert_int_eq(pad, x1 < 0 ? t - nw : 0);
        if (rs.data != img.data) {
            dg_image_free(&rs);
            dg_image_free(&rl);
        }
        dg_free(dst);
        dg_free(dl);
        dg_image_free(&img);
        dg_image_free(&lab);
    }
}
END_TEST

START_TEST(seg_eval_full_image_is_unchanged_and_label_optional) {
    dg_image img, lab;
    make_random_pair(&img, &lab, 21, 34, 89);
    dg_seg_eval_cfg cfg;
    dg_seg_eval_cfg_default(&cfg);
    int oh, ow;
    dg_seg_eval_dims(&cfg, 21, 34, &oh, &ow);
    ck_assert(oh == 21 && ow == 34);
    float *dst = dg_xmalloc(3 * 21 * 34 * sizeof(float)),
          *e = dg_xmalloc(3 * 21 * 34 * sizeof(float));
    uint8_t dl[21 * 34];
    ck_assert_int_eq(
            dg_seg_eval_transform(&cfg, &img, &lab, dst, dl), DG_STATUS_OK);
    dg_image_to_tensor(&img, e, DG_IMAGENET_MEAN, DG_IMAGENET_STD);
    ck_assert(memcmp(dst, e, 3 * 21 * 34 * sizeof(float)) == 0);
    ck_assert(memcmp(dl, lab.data, sizeof(dl)) == 0);
    /* Without a label; Mapillary mode too. */
    cfg.target_h = 16;
    ck_assert_int_eq(
            dg_seg_eval_transform(&cfg, &img, NULL, dst, NULL), DG_STATUS_OK);
    dg_free(dst);
    dg_free(e);
    dg_image_free(&img);
    dg_image_free(&lab);
}
END_TEST

START_TEST(cls_eval_resizes_and_normalises) {
    dg_image img;
    make_random_pair(&img, NULL, 40, 64, 97);
    dg_cls_aug_cfg cfg;
    dg_cls_aug_cfg_default(&cfg);
    cfg.size = 24;
    float *dst = dg_xmalloc(3 * 24 * 24 * sizeof(float)),
          *e = dg_xmalloc(3 * 24 * 24 * sizeof(float));
    ck_assert_int_eq(dg_cls_eval_transform(&cfg, &img, dst), DG_STATUS_OK);
    dg_image rs;
    ck_assert_int_eq(dg_image_resize(&img, 24, 24, DG_INTERP_BILINEAR, &rs),
            DG_STATUS_OK);
    dg_image_to_tensor(&rs, e, DG_IMAGENET_MEAN, DG_IMAGENET_STD);
    ck_assert(memcmp(dst, e, 3 * 24 * 24 * sizeof(float)) == 0);
    /* "none" (MNIST-type): x / 255 of a one-channel image. */
    dg_image g;
    dg_image_init(&g, 2, 3, 1);
    for (int i = 0; i < 6; i++) g.data[i] = (uint8_t)(51 * i);
    float x[6];
    dg_cls_transform_none(&g, x);
    for (int i = 0; i < 6; i++) ck_assert(x[i] == (float)(51 * i) / 255.f);
    dg_image_free(&g);
    dg_image_free(&rs);
    dg_free(dst);
    dg_free(e);
    dg_image_free(&img);
}
END_TEST

/* ---- configuration ------------------------------------------------------- */

START_TEST(defaults_follow_the_spec_and_bad_values_are_config_errors) {
    dg_seg_aug_cfg s;
    dg_seg_aug_cfg_default(&s);
    ck_assert(s.scale_min == 0.5 && s.scale_max == 2.0 && s.crop_h == 768 &&
              s.crop_w == 768);
    ck_assert(s.flip_p == 0.5 && s.jitter_p == 0.5 && s.brightness == 0.4 &&
              s.contrast == 0.4 && s.saturation == 0.4 && s.hue == 0.1);
    ck_assert(s.blur && s.blur_sigma_min == 0.15 && s.blur_sigma_max == 1.30 &&
              s.normalize);
    ck_assert_int_eq(dg_seg_aug_cfg_check(&s), DG_STATUS_OK);
    dg_cls_aug_cfg c;
    dg_cls_aug_cfg_default(&c);
    ck_assert(c.size == 224 && c.scale_min == 0.7 && c.scale_max == 1.0 &&
              c.flip_p == 0.5);
    ck_assert(c.brightness == 0.3 && c.contrast == 0.3 && c.saturation == 0.3 &&
              c.hue == 0.3);
    ck_assert(c.gray_p == 0.1 && c.normalize && c.interp == DG_INTERP_BILINEAR);
    ck_assert_int_eq(dg_cls_aug_cfg_check(&c), DG_STATUS_OK);

    const char *fields[] = {
            "hue", "scale_min", "flip_p", "blur_sigma_min", "crop_h"};
    for (size_t k = 0; k < DG_ARRAY_LEN(fields); k++) {
        dg_seg_aug_cfg_default(&s);
        if (k == 0) s.hue = 0.6;
        if (k == 1) s.scale_min = 3.0;
        if (k == 2) s.flip_p = NAN;
        if (k == 3) s.blur_sigma_min = 0.0;
        if (k == 4) s.crop_h = -1;
        capture cap;
        capture_begin(&cap);
        const dg_status st = dg_seg_aug_cfg_check(&s);
        char *log = capture_end(&cap);
        ck_assert_int_eq(st, DG_STATUS_ERR_CONFIG);
        ck_assert_msg(strstr(log, fields[k]) != NULL && count_lines(log) == 1,
                "log: %s", log);
        dg_free(log);
    }
    dg_cls_aug_cfg_default(&c);
    c.gray_p = 1.5;
    capture cap;
    capture_begin(&cap);
    ck_assert_int_eq(dg_cls_aug_cfg_check(&c), DG_STATUS_ERR_CONFIG);
    char *log = capture_end(&cap);
    ck_assert_msg(strstr(log, "gray_p") != NULL, "log: %s", log);
    dg_free(log);
}
END_TEST

Suite *augment_suite(void) {
    Suite *s = suite_create("augment");
    TCase *geo = tcase_create("seg_geometry");
    tcase_set_timeout(geo, 30);
    tcase_add_test(geo, seg_alignment_survives_scale_pad_crop_flip);
    tcase_add_test(geo, seg_scale_one_crop_and_pad_are_pixel_exact);
    tcase_add_test(geo, seg_same_stream_same_output_other_position_differs);
    tcase_add_test(geo, seg_flip_mirrors_image_and_label);
    tcase_add_test(geo, seg_centroid_guided_crop_covers_the_centroid);
    tcase_add_test(geo, seg_mismatched_label_is_a_shape_error);
    tcase_add_test(geo, seg_normalisation_values_are_exact);
    suite_add_tcase(s, geo);

    TCase *col = tcase_create("colour_blur");
    tcase_set_timeout(col, 30);
    tcase_add_test(col, jitter_ops_match_hand_computed_pillow_values);
    tcase_add_test(col, jitter_ops_match_double_reference);
    tcase_add_test(col, jitter_apply_runs_switched_on_ops_in_order);
    tcase_add_test(col, blur_kernel_sums_to_one_with_radius_4_sigma);
    tcase_add_test(
            col, blur_small_sigma_is_identity_and_constant_stays_constant);
    tcase_add_test(col, blur_matches_double_reference_with_replicated_border);
    suite_add_tcase(s, col);

    TCase *cls = tcase_create("cls_eval_cfg");
    tcase_set_timeout(cls, 30);
    tcase_add_test(
            cls, cls_random_resized_crop_box_stays_inside_with_area_in_range);
    tcase_add_test(cls, cls_grayscale_gives_equal_channels);
    tcase_add_test(cls, cls_augment_is_deterministic_per_stream_and_normalised);
    tcase_add_test(cls, seg_eval_mapillary_landscape_crops_and_portrait_pads);
    tcase_add_test(cls, seg_eval_full_image_is_unchanged_and_label_optional);
    tcase_add_test(cls, cls_eval_resizes_and_normalises);
    tcase_add_test(
            cls, defaults_follow_the_spec_and_bad_values_are_config_errors);
    suite_add_tcase(s, cls);
    return s;
}
