/* data/augment.c -- segmentation and classification augmentation and
 * evaluation transforms (docs/datasets.md §7.4, §7.5, §9.2); see data/augment.h.
 *
 * Sources: RobustNet (shachoi/RobustNet) transforms/joint_transforms.py
 * (RandomSizeAndCrop, RandomCrop with padding, RandomHorizontallyFlip),
 * transforms/transforms.py (RandomGaussianBlur: skimage gaussian, truncate 4,
 * mode 'nearest'); torchvision transforms (ColorJitter, RandomResizedCrop,
 * RandomGrayscale, functional_pil.adjust_hue); Pillow libImaging Blend.c
 * (blend truncates to 8 bits), Convert.c (L24 grey, rgb2hsv_row, hsv2rgb),
 * PIL/ImageEnhance.py (Brightness, Contrast, Color).
 *
 * Per-pixel work stays in flat loops over interleaved buffers: look-up
 * tables for brightness, contrast and normalisation, integer grey values,
 * a row-wise separable blur fused with the normalisation, and the jitter
 * and blur touch only the crop.
 * Shape letters: H, W (pixels), C (channels), N (pixels of a buffer). */
#include "data/augment.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- random draws -------------------------------------------------------- */

/* dg_rng_uniform of draw k after rng's current state, without advancing. */
static double draw_u(const dg_rng *rng, int k) {
    return (double)(dg_rng_peek(rng, (uint64_t)k) >> 11) * 0x1.0p-53;
}

/* Takes n draws: u[k] = uniform of draw k; rng advances by n. */
static void take_draws(dg_rng *rng, double *u, int n) {
    for (int k = 0; k < n; k++) u[k] = draw_u(rng, k);
    rng->state += (uint64_t)n * DG_RNG_GAMMA;
}

/* lo + floor(u (hi - lo + 1)) for u in [0, 1), hi >= lo. */
static int draw_int(double u, int lo, int hi) {
    const int span = hi - lo;
    int k = (int)(u * ((double)span + 1.0));
    if (k > span) k = span;
    return lo + k;
}

/* lo + (hi - lo) u: Python's random.uniform(lo, hi). */
static double draw_range(double u, double lo, double hi) {
    return lo + (hi - lo) * u;
}

/* ColorJitter parameters from four factor draws and three order draws. */
static void jitter_draw(
        dg_jitter *j, const double strength[DG_JITTER_N_OPS], const double *u) {
    for (int op = 0; op < DG_JITTER_N_OPS; op++) {
        const double x = strength[op];
        j->on[op] = x > 0.0;
        if (op == DG_JITTER_OP_HUE)
            j->factor[op] = draw_range(u[op], -x, x);
        else
            j->factor[op] = draw_range(u[op], x < 1.0 ? 1.0 - x : 0.0, 1.0 + x);
        j->order[op] = op;
    }
    for (int i = DG_JITTER_N_OPS - 1; i >= 1; i--) {
        const int k =
                draw_int(u[DG_JITTER_N_OPS + (DG_JITTER_N_OPS - 1 - i)], 0, i);
        const int t = j->order[i];
        j->order[i] = j->order[k];
        j->order[k] = t;
    }
}

/* ---- colour operations (Pillow semantics) -------------------------------- */

/* Pillow's ITU-R 601-2 grey of one RGB pixel (Convert.c L24 >> 16). */
#define DG_L24(p)                                                              \
    (((uint32_t)(p)[0] * 19595u + (uint32_t)(p)[1] * 38470u +                  \
             (uint32_t)(p)[2] * 7471u + 0x8000u) >>                            \
            16)

#define DG_CLIP8(v) ((v) <= 0 ? 0 : (v) < 256 ? (v) : 255)

/* Pillow ImagingBlend of one value: in1 + alpha (in2 - in1) in f32, clamped
 * to 0 .. 255 and truncated. */
static inline uint8_t blend8(int in1, int in2, float alpha) {
    const float t = (float)in1 + alpha * (float)(in2 - in1);
    if (t <= 0.f) return 0;
    if (t >= 255.f) return 255;
    return (uint8_t)t;
}

/* lut[v] = blend(base, v, alpha) for every byte value. */
static void blend_lut(uint8_t lut[256], int base, float alpha) {
    for (int v = 0; v < 256; v++) lut[v] = blend8(base, v, alpha);
}

static void apply_lut(uint8_t *rgb, size_t n, const uint8_t lut[256]) {
    for (size_t i = 0; i < 3 * n; i++) rgb[i] = lut[rgb[i]];
}

void dg_aug_adjust_brightness(uint8_t *rgb, size_t n, double factor) {
    uint8_t lut[256];
    blend_lut(lut, 0, (float)factor);
    apply_lut(rgb, n, lut);
}

void dg_aug_adjust_contrast(uint8_t *rgb, size_t n, double factor) {
    if (n == 0) return;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) sum += DG_L24(rgb + 3 * i);
    /* ImageStat mean of the L image, then int(mean + 0.5). */
    const int mean = (int)((double)sum / (double)n + 0.5);
    uint8_t lut[256];
    blend_lut(lut, mean, (float)factor);
    apply_lut(rgb, n, lut);
}

void dg_aug_adjust_saturation(uint8_t *rgb, size_t n, double factor) {
    const float alpha = (float)factor;
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = rgb + 3 * i;
        const int grey = (int)(DG_L24(p));
        p[0] = blend8(grey, p[0], alpha);
        p[1] = blend8(grey, p[1], alpha);
        p[2] = blend8(grey, p[2], alpha);
    }
}

void dg_aug_grayscale(uint8_t *rgb, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = rgb + 3 * i;
        const uint8_t grey = (uint8_t)(DG_L24(p));
        p[0] = p[1] = p[2] = grey;
    }
}

/* Pillow Convert.c rgb2hsv_row, same types and operations (float
 * variables, double constants). fmod(x, 1) is written as x - 1 for
 * x >= 1: x lies in [5/6, 11/6], where both are exact. */
static inline void rgb_to_hsv_pil(const uint8_t *in, uint8_t *out) {
    const uint8_t r = in[0], g = in[1], b = in[2];
    const uint8_t maxc = r > g ? (r > b ? r : b) : (g > b ? g : b);
    const uint8_t minc = r < g ? (r < b ? r : b) : (g < b ? g : b);
    uint8_t uh = 0, us = 0;
    if (minc != maxc) {
        const float cr = (float)(maxc - minc);
        const float s = cr / (float)maxc;
        const float rc = ((float)(maxc - r)) / cr;
        const float gc = ((float)(maxc - g)) / cr;
        const float bc = ((float)(maxc - b)) / cr;
        float h;
        if (r == maxc)
            h = bc - gc;
        else if (g == maxc)
            h = 2.0 + rc - bc;
        else
            h = 4.0 + gc - rc;
        const double x = h / 6.0 + 1.0;
        h = x >= 1.0 ? x - 1.0 : x;
        const int ih = (int)(h * 255.0);
        const int is = (int)(s * 255.0);
        uh = (uint8_t)DG_CLIP8(ih);
        us = (uint8_t)DG_CLIP8(is);
    }
    out[0] = uh;
    out[1] = us;
    out[2] = maxc;
}

/* round(x) (halves away from zero) for x >= 0 without a libm call: x - floor(x)
 * is exact for doubles, so the comparison decides exactly as round does. */
static inline double round_nonneg(double x) {
    const double r = floor(x);
    return x - r >= 0.5 ? r + 1.0 : r;
}

/* Per-byte terms of Pillow's hsv2rgb: for hue byte h, sector
 * i = floor(h 6 / 255) (exact as integer division: h 6 / 255 is either an
 * integer or at least 1/255 away from one) and f = (float)(h 6.0 / 255.0 - i);
 * for saturation byte s, fs = (float)(s / 255.0). */
typedef struct hsv_tables {
    int sector[256];
    float f[256];
    float fs[256];
} hsv_tables;

static void hsv_tables_init(hsv_tables *t) {
    for (int v = 0; v < 256; v++) {
        t->sector[v] = (6 * v) / 255;
        t->f[v] = (float)((float)v * 6.0 / 255.0 - (float)t->sector[v]);
        t->fs[v] = (float)(((float)v) / 255.0);
    }
}

/* Pillow Convert.c hsv2rgb for one pixel, same types and operations (the
 * tables hold its per-byte terms). */
static inline void hsv_to_rgb_pil(
        const hsv_tables *tab, const uint8_t *in, uint8_t *out) {
    const uint8_t h = in[0], s = in[1], v = in[2];
    if (s == 0) {
        out[0] = out[1] = out[2] = v;
        return;
    }
    const int i = tab->sector[h];
    const float f = tab->f[h];
    const float fs = tab->fs[s];
    const int p = (int)round_nonneg((float)v * (1.0 - fs));
    const int q = (int)round_nonneg((float)v * (1.0 - fs * f));
    const int t = (int)round_nonneg((float)v * (1.0 - fs * (1.0 - f)));
    const uint8_t up = (uint8_t)DG_CLIP8(p);
    const uint8_t uq = (uint8_t)DG_CLIP8(q);
    const uint8_t ut = (uint8_t)DG_CLIP8(t);
    /* Pillow's switch on the sector, as a table over {v, p, q, t}. */
    static const uint8_t pick[6][3] = {
            {0, 3, 1}, {2, 0, 1}, {1, 0, 3}, {1, 2, 0}, {3, 1, 0}, {0, 1, 2}};
    const uint8_t val[4] = {v, up, uq, ut};
    const uint8_t *k = pick[i % 6];
    out[0] = val[k[0]];
    out[1] = val[k[1]];
    out[2] = val[k[2]];
}

void dg_aug_adjust_hue(uint8_t *rgb, size_t n, double shift) {
    DG_ASSERT(shift >= -0.5 && shift <= 0.5);
    /* np.uint8(hue_factor * 255): truncation toward zero, then modulo 256. */
    const uint8_t dh = (uint8_t)((unsigned)(int)(shift * 255.0) & 0xFFu);
    if (dh == 0) return;
    hsv_tables tab;
    hsv_tables_init(&tab);
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = rgb + 3 * i;
        uint8_t hsv[3];
        rgb_to_hsv_pil(p, hsv);
        hsv[0] = (uint8_t)(hsv[0] + dh);
        hsv_to_rgb_pil(&tab, hsv, p);
    }
}

void dg_aug_jitter_apply(const dg_jitter *j, uint8_t *rgb, size_t n) {
    for (int k = 0; k < DG_JITTER_N_OPS; k++) {
        const int op = j->order[k];
        DG_ASSERT(op >= 0 && op < DG_JITTER_N_OPS);
        if (!j->on[op]) continue;
        switch ((dg_jitter_op)op) {
        case DG_JITTER_OP_BRIGHTNESS:
            dg_aug_adjust_brightness(rgb, n, j->factor[op]);
            break;
        case DG_JITTER_OP_CONTRAST:
            dg_aug_adjust_contrast(rgb, n, j->factor[op]);
            break;
        case DG_JITTER_OP_SATURATION:
            dg_aug_adjust_saturation(rgb, n, j->factor[op]);
            break;
        case DG_JITTER_OP_HUE:
            dg_aug_adjust_hue(rgb, n, j->factor[op]);
            break;
        }
    }
}

/* ---- Gaussian blur --------------------------------------------------------
 */

int dg_aug_gaussian_kernel(double sigma, float *k, int cap) {
    DG_ASSERT(sigma > 0.0 && sigma <= 8.0);
    const int r = (int)(4.0 * sigma + 0.5);
    DG_ASSERT(r <= DG_AUG_BLUR_MAX_RADIUS && 2 * r + 1 <= cap);
    double wt[2 * DG_AUG_BLUR_MAX_RADIUS + 1];
    double sum = 0.0;
    for (int i = 0; i <= 2 * r; i++) {
        const double x = (double)(i - r);
        wt[i] = exp(-0.5 * x * x / (sigma * sigma));
        sum += wt[i];
    }
    for (int i = 0; i <= 2 * r; i++) k[i] = (float)(wt[i] / sum);
    return r;
}

/* Row scratch of the separable blur. */
typedef struct blur_rows {
    const float *kc; /* (R + 1) kernel from its centre: kc[t] = weight at offset
                        +-t */
    int r;
    int h;
    int w;
    int c;
    float *pad; /* ((W + 2R) C) vertical pass with replicated borders */
    float *acc; /* (W C) horizontal pass */
} blur_rows;

/* Blurs row y of src (H, W, C) into out (W, C), rounded to 8 bits. Pairs
 * at +-t are summed before weighting, so a mirrored row gives the mirrored
 * result bit for bit (flip and blur commute exactly). */
static void blur_row(
        const blur_rows *b, const uint8_t *src, int y, uint8_t *out) {
    const int r = b->r, c = b->c;
    const size_t wc = (size_t)b->w * (size_t)c;
    float *mid = b->pad + (size_t)r * (size_t)c;
    const uint8_t *s0 = src + (size_t)y * wc;
    const float k0 = b->kc[0];
    for (size_t i = 0; i < wc; i++) mid[i] = k0 * (float)s0[i];
    for (int t = 1; t <= r; t++) {
        const int ya = y - t < 0 ? 0 : y - t;
        const int yb = y + t >= b->h ? b->h - 1 : y + t;
        const uint8_t *sa = src + (size_t)ya * wc;
        const uint8_t *sb = src + (size_t)yb * wc;
        const float kt = b->kc[t];
        for (size_t i = 0; i < wc; i++) mid[i] += kt * (float)(sa[i] + sb[i]);
    }
    for (int t = 1; t <= r; t++) {
        for (int ch = 0; ch < c; ch++) {
            mid[-(ptrdiff_t)t * c + ch] = mid[ch];
            mid[wc - (size_t)c + (size_t)t * (size_t)c + (size_t)ch] =
                    mid[wc - (size_t)c + (size_t)ch];
        }
    }
    float *acc = b->acc;
    for (size_t i = 0; i < wc; i++) acc[i] = k0 * mid[i];
    for (int t = 1; t <= r; t++) {
        const float kt = b->kc[t];
        const float *ma = mid - (ptrdiff_t)t * c;
        const float *mb = mid + (ptrdiff_t)t * c;
        for (size_t i = 0; i < wc; i++) acc[i] += kt * (ma[i] + mb[i]);
    }
    for (size_t i = 0; i < wc; i++) {
        const float v = acc[i] + 0.5f;
        out[i] = v >= 255.f ? 255 : v <= 0.f ? 0 : (uint8_t)v;
    }
}

/* Sets up b for (h, w, c) and sigma; kernel storage k (2R + 1). */
static void blur_rows_init(
        blur_rows *b, float *k, int h, int w, int c, double sigma) {
    memset(b, 0, sizeof(*b));
    b->r = dg_aug_gaussian_kernel(sigma, k, 2 * DG_AUG_BLUR_MAX_RADIUS + 1);
    b->kc = k + b->r;
    b->h = h;
    b->w = w;
    b->c = c;
    b->pad = dg_xmalloc(
            ((size_t)w + 2 * (size_t)b->r) * (size_t)c * sizeof(*b->pad));
    b->acc = dg_xmalloc((size_t)w * (size_t)c * sizeof(*b->acc));
}

static void blur_rows_free(blur_rows *b) {
    dg_free(b->pad);
    dg_free(b->acc);
    memset(b, 0, sizeof(*b));
}

void dg_aug_gaussian_blur(
        const uint8_t *src, uint8_t *dst, int h, int w, int c, double sigma) {
    DG_ASSERT(src && dst && src != dst && h >= 1 && w >= 1 && c >= 1 && c <= 4);
    float k[2 * DG_AUG_BLUR_MAX_RADIUS + 1];
    blur_rows b;
    blur_rows_init(&b, k, h, w, c, sigma);
    const size_t wc = (size_t)w * (size_t)c;
    for (int y = 0; y < h; y++) blur_row(&b, src, y, dst + (size_t)y * wc);
    blur_rows_free(&b);
}

/* ---- network input --------------------------------------------------------
 */

/* lut[c][v]: (v / 255 - mean[c]) / std[c] in f32, in that order, or v / 255
 * (the same expression as dg_image_to_tensor). */
static void input_luts(float lut[3][256], bool normalize) {
    for (int c = 0; c < 3; c++) {
        for (int v = 0; v < 256; v++) {
            const float x = (float)v / 255.f;
            lut[c][v] = normalize
                                ? (x - DG_IMAGENET_MEAN[c]) / DG_IMAGENET_STD[c]
                                : x;
        }
    }
}

/* One interleaved RGB row (W, 3) into row y of the planes dst (3, H, W). */
static void planar_row(float lut[3][256], const uint8_t *row, int w, int y,
        size_t hw, float *dst) {
    float *d0 = dst + (size_t)y * (size_t)w;
    float *d1 = d0 + hw;
    float *d2 = d1 + hw;
    for (int x = 0; x < w; x++) {
        d0[x] = lut[0][row[3 * x]];
        d1[x] = lut[1][row[3 * x + 1]];
        d2[x] = lut[2][row[3 * x + 2]];
    }
}

/* Network input from rgb (H, W, 3), blurred first when blur is true. */
static void rgb_to_input(const uint8_t *rgb, int h, int w, bool normalize,
        bool blur, double sigma, float *dst /* (3, H, W) */) {
    float lut[3][256];
    input_luts(lut, normalize);
    const size_t hw = (size_t)h * (size_t)w;
    if (!blur) {
        for (int y = 0; y < h; y++)
            planar_row(lut, rgb + (size_t)y * (size_t)w * 3, w, y, hw, dst);
        return;
    }
    float k[2 * DG_AUG_BLUR_MAX_RADIUS + 1];
    blur_rows b;
    blur_rows_init(&b, k, h, w, 3, sigma);
    uint8_t *row = dg_xmalloc((size_t)w * 3);
    for (int y = 0; y < h; y++) {
        blur_row(&b, rgb, y, row);
        planar_row(lut, row, w, y, hw, dst);
    }
    dg_free(row);
    blur_rows_free(&b);
}

/* Reverses the order of the n pixels (of c bytes) of one row. */
static void mirror_row(uint8_t *row, int n, int c) {
    for (int a = 0, b = n - 1; a < b; a++, b--) {
        for (int ch = 0; ch < c; ch++) {
            const uint8_t t = row[a * c + ch];
            row[a * c + ch] = row[b * c + ch];
            row[b * c + ch] = t;
        }
    }
}

/* ---- segmentation training augmentation -------------------------------- */

void dg_seg_aug_cfg_default(dg_seg_aug_cfg *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->scale_min = 0.5;
    cfg->scale_max = 2.0;
    cfg->crop_h = 768;
    cfg->crop_w = 768;
    cfg->flip_p = 0.5;
    cfg->jitter_p = 0.5;
    cfg->brightness = 0.4;
    cfg->contrast = 0.4;
    cfg->saturation = 0.4;
    cfg->hue = 0.1;
    cfg->blur = true;
    cfg->blur_sigma_min = 0.15;
    cfg->blur_sigma_max = 1.30;
    cfg->normalize = true;
}

static bool is_prob(double p) {
    return p >= 0.0 && p <= 1.0;
}

/* isfinite and within [lo, hi] (NaN fails). */
static bool in_range(double x, double lo, double hi) {
    return x >= lo && x <= hi;
}

/* Describes the first problem of the four jitter strengths into msg, or
 * returns false when there is none. */
static bool jitter_problem(const char *sec, double b, double c, double s,
        double h, char *msg, size_t size) {
    const double v[4] = {b, c, s, h};
    static const char *const names[4] = {
            "brightness", "contrast", "saturation", "hue"};
    for (int k = 0; k < 4; k++) {
        const double hi = k == 3 ? 0.5 : 1e3;
        if (!in_range(v[k], 0.0, hi)) {
            snprintf(msg, size, "%s.%s = %g must lie in [0, %g]", sec, names[k],
                    v[k], hi);
            return true;
        }
    }
    return false;
}

/* The first problem of cfg in msg; false when cfg is valid. */
static bool seg_cfg_problem(const dg_seg_aug_cfg *cfg, char *msg, size_t size) {
    const char *sec = "seg_aug";
    if (!in_range(cfg->scale_min, 1e-3, 16.0) ||
            !in_range(cfg->scale_max, cfg->scale_min, 16.0))
        snprintf(msg, size,
                "%s.scale_min = %g and scale_max = %g need 0.001 <= min <= max "
                "<= 16",
                sec, cfg->scale_min, cfg->scale_max);
    else if (cfg->crop_h < 0 || cfg->crop_h > 16384 || cfg->crop_w < 0 ||
             cfg->crop_w > 16384)
        snprintf(msg, size,
                "%s.crop_h = %d and crop_w = %d must lie in [0, 16384] (0 = no "
                "crop)",
                sec, cfg->crop_h, cfg->crop_w);
    else if (!is_prob(cfg->flip_p))
        snprintf(msg, size, "%s.flip_p = %g is not a probability", sec,
                cfg->flip_p);
    else if (!is_prob(cfg->jitter_p))
        snprintf(msg, size, "%s.jitter_p = %g is not a probability", sec,
                cfg->jitter_p);
    else if (jitter_problem(sec, cfg->brightness, cfg->contrast,
                     cfg->saturation, cfg->hue, msg, size))
        return true;
    else if (cfg->blur &&
             (!in_range(cfg->blur_sigma_min, 1e-6, 8.0) ||
                     !in_range(cfg->blur_sigma_max, cfg->blur_sigma_min, 8.0)))
        snprintf(msg, size,
                "%s.blur_sigma_min = %g and blur_sigma_max = %g need 0 < min "
                "<= max <= 8",
                sec, cfg->blur_sigma_min, cfg->blur_sigma_max);
    else
        return false;
    return true;
}

dg_status dg_seg_aug_cfg_check(const dg_seg_aug_cfg *cfg) {
    char msg[256];
    if (!seg_cfg_problem(cfg, msg, sizeof(msg))) return DG_STATUS_OK;
    dg_log_error("augmentation config: %s", msg);
    return DG_STATUS_ERR_CONFIG;
}

/* One axis of the scale/pad/crop step: size is the scaled extent, cpos the
 * centroid coordinate in the original image or NULL. */
static void plan_axis(int crop, int size, double s, const int32_t *cpos,
        double u, int *pad, int *origin, int *out) {
    *pad = 0;
    *origin = 0;
    *out = size;
    if (crop <= 0) return;
    if (size < crop) *pad = (crop - size) / 2 + 1;
    const int max_origin = size + 2 * *pad - crop;
    int o;
    if (cpos) {
        const int c = (int)((double)*cpos * s) + *pad;
        o = draw_int(u, c - crop, c);
        o = o < 0 ? 0 : o > max_origin ? max_origin : o;
    } else {
        o = draw_int(u, 0, max_origin);
    }
    *origin = o;
    *out = crop;
}

/* floor(n s), at least 1. */
static int scaled_extent(int n, double s) {
    const double v = floor((double)n * s);
    return v < 1.0 ? 1 : (int)v;
}

void dg_seg_aug_draw(const dg_seg_aug_cfg *cfg, dg_rng *rng, int h, int w,
        const int32_t *centroid, dg_seg_aug_plan *plan) {
    char msg[256];
    DG_ASSERT(!seg_cfg_problem(cfg, msg, sizeof(msg)));
    DG_ASSERT(h >= 1 && w >= 1);
    DG_ASSERT(!centroid || (centroid[0] >= 0 && centroid[1] >= 0));
    double u[DG_SEG_AUG_DRAWS];
    take_draws(rng, u, DG_SEG_AUG_DRAWS);
    memset(plan, 0, sizeof(*plan));
    plan->scale = draw_range(u[0], cfg->scale_min, cfg->scale_max);
    plan->scaled_h = scaled_extent(h, plan->scale);
    plan->scaled_w = scaled_extent(w, plan->scale);
    plan_axis(cfg->crop_h, plan->scaled_h, plan->scale,
            centroid ? &centroid[0] : NULL, u[1], &plan->pad_y, &plan->y0,
            &plan->out_h);
    plan_axis(cfg->crop_w, plan->scaled_w, plan->scale,
            centroid ? &centroid[1] : NULL, u[2], &plan->pad_x, &plan->x0,
            &plan->out_w);
    plan->flip = u[3] < cfg->flip_p;
    const double strength[DG_JITTER_N_OPS] = {
            cfg->brightness, cfg->contrast, cfg->saturation, cfg->hue};
    jitter_draw(&plan->jit, strength, u + 5);
    bool any = false;
    for (int op = 0; op < DG_JITTER_N_OPS; op++) any = any || plan->jit.on[op];
    plan->jitter = any && u[4] < cfg->jitter_p;
    plan->blur = cfg->blur;
    plan->sigma = cfg->blur ? draw_range(u[12], cfg->blur_sigma_min,
                                      cfg->blur_sigma_max)
                            : 0.0;
}

/* Checks img (H, W, 3) and label (H, W, 1) (label may be NULL); logs. */
static dg_status check_pair(
        const char *what, const dg_image *img, const dg_image *label) {
    DG_ASSERT(img && img->data);
    if (img->c != 3) {
        dg_log_error(
                "%s: image has %d channels, expected 3 (RGB)", what, img->c);
        return DG_STATUS_ERR_SHAPE;
    }
    if (!label) return DG_STATUS_OK;
    DG_ASSERT(label->data);
    if (label->c != 1 || label->h != img->h || label->w != img->w) {
        dg_log_error("%s: label %dx%dx%d does not match image %dx%d (expected "
                     "HxWx1)",
                what, label->h, label->w, label->c, img->h, img->w);
        return DG_STATUS_ERR_SHAPE;
    }
    return DG_STATUS_OK;
}

/* Resizes img and label (either may be NULL) to (oh, ow) unless they already
 * have that size; *ri / *rl point to the result (the input or the new image
 * in si / sl, which the caller frees). */
static dg_status resize_pair(const dg_image *img, const dg_image *label, int oh,
        int ow, dg_image *si, dg_image *sl, const dg_image **ri,
        const dg_image **rl) {
    memset(si, 0, sizeof(*si));
    memset(sl, 0, sizeof(*sl));
    *ri = img;
    *rl = label;
    if (img->h == oh && img->w == ow) return DG_STATUS_OK;
    dg_status st = dg_image_resize(img, oh, ow, DG_INTERP_BICUBIC, si);
    if (st != DG_STATUS_OK) return st;
    *ri = si;
    if (label) {
        st = dg_image_resize(label, oh, ow, DG_INTERP_NEAREST_EXACT, sl);
        if (st != DG_STATUS_OK) {
            dg_image_free(si);
            return st;
        }
        *rl = sl;
    }
    return DG_STATUS_OK;
}

dg_status dg_seg_aug_apply(const dg_seg_aug_cfg *cfg,
        const dg_seg_aug_plan *plan, const dg_image *img, const dg_image *label,
        float *dst_img, uint8_t *dst_label) {
    DG_ASSERT(cfg && plan && dst_img && dst_label && label);
    dg_status st = check_pair("segmentation augmentation", img, label);
    if (st != DG_STATUS_OK) return st;
    DG_ASSERT(plan->scaled_h >= 1 && plan->scaled_w >= 1 && plan->out_h >= 1 &&
              plan->out_w >= 1);
    dg_image si, sl;
    const dg_image *ri, *rl;
    st = resize_pair(
            img, label, plan->scaled_h, plan->scaled_w, &si, &sl, &ri, &rl);
    if (st != DG_STATUS_OK) return st;

    /* Pad and crop into crop (out_h, out_w, 3) and dst_label, flipping both. */
    const int oh = plan->out_h, ow = plan->out_w, sh = ri->h, sw = ri->w;
    DG_ASSERT(plan->y0 >= 0 && plan->y0 + oh <= sh + 2 * plan->pad_y);
    DG_ASSERT(plan->x0 >= 0 && plan->x0 + ow <= sw + 2 * plan->pad_x);
    uint8_t *crop = dg_xmalloc((size_t)oh * (size_t)ow * 3);
    int a = plan->pad_x - plan->x0;
    int b = a + sw;
    a = DG_MAX(a, 0);
    b = DG_MIN(b, ow);
    b = DG_MAX(a, b);
    const int sx0 = plan->x0 + a - plan->pad_x;
    for (int y = 0; y < oh; y++) {
        uint8_t *crow = crop + (size_t)y * (size_t)ow * 3;
        uint8_t *lrow = dst_label + (size_t)y * (size_t)ow;
        const int sy = plan->y0 + y - plan->pad_y;
        if (sy < 0 || sy >= sh) {
            memset(crow, 0, (size_t)ow * 3);
            memset(lrow, 255, (size_t)ow);
            continue;
        }
        const uint8_t *irow =
                ri->data + ((size_t)sy * (size_t)sw + (size_t)sx0) * 3;
        const uint8_t *srow = rl->data + (size_t)sy * (size_t)sw + (size_t)sx0;
        memset(crow, 0, (size_t)a * 3);
        memcpy(crow + (size_t)a * 3, irow, (size_t)(b - a) * 3);
        memset(crow + (size_t)b * 3, 0, (size_t)(ow - b) * 3);
        memset(lrow, 255, (size_t)a);
        memcpy(lrow + a, srow, (size_t)(b - a));
        memset(lrow + b, 255, (size_t)(ow - b));
        if (plan->flip) {
            mirror_row(crow, ow, 3);
            mirror_row(lrow, ow, 1);
        }
    }
    dg_image_free(&si);
    dg_image_free(&sl);

    if (plan->jitter)
        dg_aug_jitter_apply(&plan->jit, crop, (size_t)oh * (size_t)ow);
    rgb_to_input(
            crop, oh, ow, cfg->normalize, plan->blur, plan->sigma, dst_img);
    dg_free(crop);
    return DG_STATUS_OK;
}

dg_status dg_seg_augment(const dg_seg_aug_cfg *cfg, dg_rng *rng,
        const dg_image *img, const dg_image *label, const int32_t *centroid,
        float *dst_img, uint8_t *dst_label) {
    DG_ASSERT(img && label);
    dg_seg_aug_plan plan;
    dg_seg_aug_draw(cfg, rng, img->h, img->w, centroid, &plan);
    return dg_seg_aug_apply(cfg, &plan, img, label, dst_img, dst_label);
}

/* ---- segmentation evaluation transform ------------------------------------
 */

void dg_seg_eval_cfg_default(dg_seg_eval_cfg *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->target_h = 0;
    cfg->normalize = true;
}

void dg_seg_eval_dims(
        const dg_seg_eval_cfg *cfg, int h, int w, int *out_h, int *out_w) {
    DG_ASSERT(cfg->target_h >= 0);
    *out_h = cfg->target_h > 0 ? cfg->target_h : h;
    *out_w = cfg->target_h > 0 ? cfg->target_h : w;
}

/* Python's round(d / 2) for an integer d (ties to even). */
static int half_round_even(int d) {
    if (d % 2 == 0) return d / 2;
    const int fl = d >= 0 ? d / 2 : -((1 - d) / 2); /* floor(d / 2) */
    return fl % 2 == 0 ? fl : fl + 1;
}

dg_status dg_seg_eval_transform(const dg_seg_eval_cfg *cfg, const dg_image *img,
        const dg_image *label, float *dst_img, uint8_t *dst_label) {
    DG_ASSERT(cfg && dst_img && (label == NULL) == (dst_label == NULL));
    DG_ASSERT(cfg->target_h >= 0);
    dg_status st = check_pair("segmentation evaluation transform", img, label);
    if (st != DG_STATUS_OK) return st;
    if (cfg->target_h == 0) {
        dg_image_to_tensor(img, dst_img,
                cfg->normalize ? DG_IMAGENET_MEAN : NULL,
                cfg->normalize ? DG_IMAGENET_STD : NULL);
        if (label)
            memcpy(dst_label, label->data, (size_t)img->h * (size_t)img->w);
        return DG_STATUS_OK;
    }
    const int t = cfg->target_h;
    const int64_t nw64 = (int64_t)img->w * t / img->h;
    const int nw = nw64 < 1 ? 1 : (int)nw64;
    dg_image si, sl;
    const dg_image *ri, *rl;
    st = resize_pair(img, label, t, nw, &si, &sl, &ri, &rl);
    if (st != DG_STATUS_OK) return st;

    /* Output column x shows scaled column x + x1; the rest is padding. */
    const int x1 = half_round_even(nw - t);
    int a = DG_MAX(-x1, 0);
    int b = DG_MIN(nw - x1, t);
    b = DG_MAX(a, b);
    float lut[3][256];
    input_luts(lut, cfg->normalize);
    uint8_t *row = dg_xmalloc((size_t)t * 3);
    const size_t hw = (size_t)t * (size_t)t;
    for (int y = 0; y < t; y++) {
        memset(row, 0, (size_t)t * 3);
        memcpy(row + (size_t)a * 3,
                ri->data + ((size_t)y * (size_t)nw + (size_t)(a + x1)) * 3,
                (size_t)(b - a) * 3);
        planar_row(lut, row, t, y, hw, dst_img);
        if (rl) {
            uint8_t *lrow = dst_label + (size_t)y * (size_t)t;
            memset(lrow, 255, (size_t)t);
            memcpy(lrow + a,
                    rl->data + (size_t)y * (size_t)nw + (size_t)(a + x1),
                    (size_t)(b - a));
        }
    }
    dg_free(row);
    dg_image_free(&si);
    dg_image_free(&sl);
    return DG_STATUS_OK;
}

/* ---- classification --------------------------------------------------------
 */

void dg_cls_aug_cfg_default(dg_cls_aug_cfg *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->size = 224;
    cfg->random_crop = true;
    cfg->scale_min = 0.7;
    cfg->scale_max = 1.0;
    cfg->ratio_min = 3.0 / 4.0;
    cfg->ratio_max = 4.0 / 3.0;
    cfg->interp = DG_INTERP_BILINEAR;
    cfg->flip_p = 0.5;
    cfg->brightness = 0.3;
    cfg->contrast = 0.3;
    cfg->saturation = 0.3;
    cfg->hue = 0.3;
    cfg->gray_p = 0.1;
    cfg->normalize = true;
}

static bool cls_cfg_problem(const dg_cls_aug_cfg *cfg, char *msg, size_t size) {
    const char *sec = "cls_aug";
    if (cfg->size < 1 || cfg->size > 4096)
        snprintf(msg, size, "%s.size = %d must lie in [1, 4096]", sec,
                cfg->size);
    else if (!in_range(cfg->scale_min, 1e-6, 1.0) ||
             !in_range(cfg->scale_max, cfg->scale_min, 1.0))
        snprintf(msg, size,
                "%s.scale_min = %g and scale_max = %g need 0 < min <= max <= 1",
                sec, cfg->scale_min, cfg->scale_max);
    else if (!in_range(cfg->ratio_min, 1e-3, 1e3) ||
             !in_range(cfg->ratio_max, cfg->ratio_min, 1e3))
        snprintf(msg, size,
                "%s.ratio_min = %g and ratio_max = %g need 0.001 <= min <= max "
                "<= 1000",
                sec, cfg->ratio_min, cfg->ratio_max);
    else if (cfg->interp != DG_INTERP_BILINEAR &&
             cfg->interp != DG_INTERP_BICUBIC &&
             cfg->interp != DG_INTERP_AREA &&
             cfg->interp != DG_INTERP_NEAREST_EXACT)
        snprintf(msg, size, "%s.interp = %d is not a dg_interp value", sec,
                (int)cfg->interp);
    else if (!is_prob(cfg->flip_p))
        snprintf(msg, size, "%s.flip_p = %g is not a probability", sec,
                cfg->flip_p);
    else if (!is_prob(cfg->gray_p))
        snprintf(msg, size, "%s.gray_p = %g is not a probability", sec,
                cfg->gray_p);
    else if (jitter_problem(sec, cfg->brightness, cfg->contrast,
                     cfg->saturation, cfg->hue, msg, size))
        return true;
    else
        return false;
    return true;
}

dg_status dg_cls_aug_cfg_check(const dg_cls_aug_cfg *cfg) {
    char msg[256];
    if (!cls_cfg_problem(cfg, msg, sizeof(msg))) return DG_STATUS_OK;
    dg_log_error("augmentation config: %s", msg);
    return DG_STATUS_ERR_CONFIG;
}

/* torchvision RandomResizedCrop.get_params on draws u[0 .. 21]. Rounding is
 * Python's round (ties to even: rint in the default rounding mode). */
static void rrc_box(const dg_cls_aug_cfg *cfg, const double *u, int h, int w,
        dg_cls_aug_plan *plan) {
    const double area = (double)h * (double)w;
    const double lr0 = log(cfg->ratio_min), lr1 = log(cfg->ratio_max);
    for (int a = 0; a < 10; a++) {
        const double frac =
                draw_range(u[2 * a], cfg->scale_min, cfg->scale_max);
        const double target = area * frac;
        const double ratio = exp(draw_range(u[2 * a + 1], lr0, lr1));
        const double cw = rint(sqrt(target * ratio));
        const double ch = rint(sqrt(target / ratio));
        if (cw > 0.0 && cw <= (double)w && ch > 0.0 && ch <= (double)h) {
            plan->w = (int)cw;
            plan->h = (int)ch;
            plan->i = draw_int(u[20], 0, h - plan->h);
            plan->j = draw_int(u[21], 0, w - plan->w);
            plan->attempt = a;
            plan->area_fraction = frac;
            return;
        }
    }
    const double in_ratio = (double)w / (double)h;
    int cw = w, ch = h;
    if (in_ratio < cfg->ratio_min)
        ch = (int)rint((double)w / cfg->ratio_min);
    else if (in_ratio > cfg->ratio_max)
        cw = (int)rint((double)h * cfg->ratio_max);
    ch = DG_MAX(1, DG_MIN(ch, h));
    cw = DG_MAX(1, DG_MIN(cw, w));
    plan->h = ch;
    plan->w = cw;
    plan->i = (h - ch) / 2;
    plan->j = (w - cw) / 2;
    plan->attempt = -1;
    plan->area_fraction = 0.0;
}

void dg_cls_aug_draw(const dg_cls_aug_cfg *cfg, dg_rng *rng, int h, int w,
        dg_cls_aug_plan *plan) {
    char msg[256];
    DG_ASSERT(!cls_cfg_problem(cfg, msg, sizeof(msg)));
    DG_ASSERT(h >= 1 && w >= 1);
    double u[DG_CLS_AUG_DRAWS];
    take_draws(rng, u, DG_CLS_AUG_DRAWS);
    memset(plan, 0, sizeof(*plan));
    if (cfg->random_crop) {
        rrc_box(cfg, u, h, w, plan);
    } else {
        plan->h = h;
        plan->w = w;
        plan->attempt = -1;
    }
    plan->flip = u[22] < cfg->flip_p;
    const double strength[DG_JITTER_N_OPS] = {
            cfg->brightness, cfg->contrast, cfg->saturation, cfg->hue};
    jitter_draw(&plan->jit, strength, u + 23);
    plan->gray = u[30] < cfg->gray_p;
}

/* Resizes img (H, W, 3) to s x s into *out unless it already has that
 * size (then *res = img); out is freed by the caller. */
static dg_status resize_square(const dg_image *img, int s, dg_interp interp,
        dg_image *out, const dg_image **res) {
    memset(out, 0, sizeof(*out));
    *res = img;
    if (img->h == s && img->w == s) return DG_STATUS_OK;
    const dg_status st = dg_image_resize(img, s, s, interp, out);
    if (st == DG_STATUS_OK) *res = out;
    return st;
}

dg_status dg_cls_aug_apply(const dg_cls_aug_cfg *cfg,
        const dg_cls_aug_plan *plan, const dg_image *img, float *dst) {
    DG_ASSERT(cfg && plan && dst);
    dg_status st = check_pair("classification augmentation", img, NULL);
    if (st != DG_STATUS_OK) return st;
    DG_ASSERT(plan->i >= 0 && plan->j >= 0 && plan->h >= 1 && plan->w >= 1);
    DG_ASSERT(plan->i + plan->h <= img->h && plan->j + plan->w <= img->w);

    /* The box as its own image (the whole image needs no copy). */
    dg_image box;
    memset(&box, 0, sizeof(box));
    const dg_image *src = img;
    if (plan->h != img->h || plan->w != img->w) {
        dg_image_init(&box, plan->h, plan->w, 3);
        for (int y = 0; y < plan->h; y++) {
            memcpy(box.data + (size_t)y * (size_t)plan->w * 3,
                    img->data + ((size_t)(plan->i + y) * (size_t)img->w +
                                        (size_t)plan->j) *
                                        3,
                    (size_t)plan->w * 3);
        }
        src = &box;
    }
    const int s = cfg->size;
    dg_image sq;
    const dg_image *res;
    st = resize_square(src, s, cfg->interp, &sq, &res);
    if (st != DG_STATUS_OK) {
        dg_image_free(&box);
        return st;
    }
    /* Working copy (S, S, 3): the source may be the caller's image. */
    const size_t n = (size_t)s * (size_t)s;
    uint8_t *px = dg_xmalloc(n * 3);
    memcpy(px, res->data, n * 3);
    dg_image_free(&sq);
    dg_image_free(&box);

    if (plan->flip) {
        for (int y = 0; y < s; y++)
            mirror_row(px + (size_t)y * (size_t)s * 3, s, 3);
    }
    dg_aug_jitter_apply(&plan->jit, px, n);
    if (plan->gray) dg_aug_grayscale(px, n);
    rgb_to_input(px, s, s, cfg->normalize, false, 0.0, dst);
    dg_free(px);
    return DG_STATUS_OK;
}

dg_status dg_cls_augment(const dg_cls_aug_cfg *cfg, dg_rng *rng,
        const dg_image *img, float *dst) {
    DG_ASSERT(img);
    dg_cls_aug_plan plan;
    dg_cls_aug_draw(cfg, rng, img->h, img->w, &plan);
    return dg_cls_aug_apply(cfg, &plan, img, dst);
}

dg_status dg_cls_eval_transform(
        const dg_cls_aug_cfg *cfg, const dg_image *img, float *dst) {
    char msg[256];
    DG_ASSERT(cfg && dst && !cls_cfg_problem(cfg, msg, sizeof(msg)));
    dg_status st = check_pair("classification evaluation transform", img, NULL);
    if (st != DG_STATUS_OK) return st;
    dg_image sq;
    const dg_image *res;
    st = resize_square(img, cfg->size, cfg->interp, &sq, &res);
    if (st != DG_STATUS_OK) return st;
    dg_image_to_tensor(res, dst, cfg->normalize ? DG_IMAGENET_MEAN : NULL,
            cfg->normalize ? DG_IMAGENET_STD : NULL);
    dg_image_free(&sq);
    return DG_STATUS_OK;
}

void dg_cls_transform_none(const dg_image *img, float *dst) {
    DG_ASSERT(img && img->data && dst);
    dg_image_to_tensor(img, dst, NULL, NULL);
}
