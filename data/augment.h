/* data/augment.h -- training augmentation and evaluation transforms for the
 * two tracks: segmentation (docs/datasets.md §7.4, §7.5; RobustNet
 * transforms/joint_transforms.py RandomSizeAndCrop + RandomCrop,
 * RandomHorizontallyFlip, transforms/transforms.py RandomGaussianBlur,
 * torchvision ColorJitter inside RandomApply) and classification
 * (docs/datasets.md §9.2; DomainBed/SWAD: torchvision RandomResizedCrop,
 * RandomHorizontalFlip, ColorJitter, RandomGrayscale, Normalize).
 *
 * Every random quantity of one sample comes from the sample's own stream
 * (DG_RNG_AUGMENT, (epoch << 20) + position; docs/datasets.md §12.2), one draw
 * per quantity at a fixed position, whatever the configuration (switched-off
 * steps still consume their draws), so a sample's result depends only on
 * its stream and the configuration, never on the loader thread.
 *
 * Colour operations follow Pillow exactly, as torchvision applies them to
 * PIL images: Image.blend (alpha in f32, result truncated and clamped to
 * 0 .. 255), grey = ITU-R 601-2 L24 ((19595 R + 38470 G + 7471 B + 2^15)
 * >> 16), contrast around int(mean grey + 0.5), hue through Pillow's
 * RGB <-> HSV conversions (Convert.c) with the H byte shifted by
 * uint8(trunc(255 * shift)) modulo 256. One implementation serves both
 * tracks.
 *
 * Images are dg_image (H, W, 3) RGB8; labels dg_image (H, W, 1) trainIds
 * (0 .. 18, 255 = ignore). Outputs are planar f32 (3, H, W) network inputs
 * (ImageNet-normalised or x/255, docs/datasets.md §0) and (H, W) uint8 labels.
 * Functions allocate their scratch buffers per call (they run in loader
 * threads) and free them before returning; nothing is kept between calls.
 * Shape letters: H, W (pixels), N (pixels of a buffer), S (classification
 * output side). */
#ifndef DG_DATA_AUGMENT_H
#define DG_DATA_AUGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/image_cv.h"
#include "nets/core/common.h"

/* ---- shared colour and blur operations ---------------------------------
 * rgb points to N interleaved RGB pixels (N, 3), changed in place. */

typedef enum dg_jitter_op {
    DG_JITTER_OP_BRIGHTNESS = 0,
    DG_JITTER_OP_CONTRAST = 1,
    DG_JITTER_OP_SATURATION = 2,
    DG_JITTER_OP_HUE = 3
} dg_jitter_op;

#define DG_JITTER_N_OPS 4

/* One sample's colour jitter (torchvision ColorJitter). */
typedef struct dg_jitter {
    bool on[DG_JITTER_N_OPS];       /* per dg_jitter_op: its strength is > 0 */
    double factor[DG_JITTER_N_OPS]; /* brightness, contrast, saturation
                                       factors; hue shift (hue circle
                                       fraction, -0.5 .. 0.5) */
    int order[DG_JITTER_N_OPS];     /* dg_jitter_op values in running order */
} dg_jitter;

/* Pillow ImageEnhance.Brightness: v' = blend(0, v, factor). */
void dg_aug_adjust_brightness(
        uint8_t *rgb /* (N, 3) */, size_t n, double factor);

/* Pillow ImageEnhance.Contrast: v' = blend(m, v, factor) with
 * m = int(mean of the N grey values + 0.5). */
void dg_aug_adjust_contrast(uint8_t *rgb /* (N, 3) */, size_t n, double factor);

/* Pillow ImageEnhance.Color: v' = blend(grey(pixel), v, factor). */
void dg_aug_adjust_saturation(
        uint8_t *rgb /* (N, 3) */, size_t n, double factor);

/* torchvision adjust_hue on a PIL image: RGB -> HSV (Pillow), H += uint8
 * (trunc(255 * shift)) modulo 256, HSV -> RGB (Pillow). |shift| <= 0.5
 * (asserted). */
void dg_aug_adjust_hue(uint8_t *rgb /* (N, 3) */, size_t n, double shift);

/* torchvision to_grayscale(num_output_channels=3) on a PIL image: every
 * channel becomes the pixel's L24 grey value. */
void dg_aug_grayscale(uint8_t *rgb /* (N, 3) */, size_t n);

/* Runs the switched-on operations of j in j->order. */
void dg_aug_jitter_apply(
        const dg_jitter *j, uint8_t *rgb /* (N, 3) */, size_t n);

/* Upper bound of the Gaussian radius for sigma <= 8. */
#define DG_AUG_BLUR_MAX_RADIUS 32

/* Gaussian kernel of scipy.ndimage.gaussian_filter1d (truncate 4): radius
 * R = floor(4 sigma + 0.5), k[i] = exp(-(i - R)^2 / (2 sigma^2)) normalised
 * to sum 1 in double, stored as f32 into k (2R + 1 <= cap entries,
 * asserted). 0 < sigma <= 8 (asserted). Returns R. */
int dg_aug_gaussian_kernel(double sigma, float *k /* (2R + 1) */, int cap);

/* Separable Gaussian blur of src (H, W, C), 1 <= C <= 4, into dst
 * (H, W, C) (distinct buffers): per channel, vertical then horizontal pass
 * in f32 with the kernel above, borders replicated (scipy mode 'nearest'),
 * each result rounded to the nearest integer and clamped to 0 .. 255. */
void dg_aug_gaussian_blur(const uint8_t *src /* (H, W, C) */,
        uint8_t *dst /* (H, W, C) */, int h, int w, int c, double sigma);

/* ---- segmentation training augmentation (docs/datasets.md §7.4) ------------ */

typedef struct dg_seg_aug_cfg {
    double scale_min;  /* 0.5; s ~ U(scale_min, scale_max); 1 .. 1 = off */
    double scale_max;  /* 2.0 */
    int crop_h;        /* 768; 0 = no crop (and no padding) along H */
    int crop_w;        /* 768; 0 = no crop along W */
    double flip_p;     /* 0.5; 0 = off */
    double jitter_p;   /* 0.5; probability of the whole colour jitter */
    double brightness; /* 0.4: factor ~ U(max(0, 1 - x), 1 + x); 0 = op off */
    double contrast;   /* 0.4 */
    double saturation; /* 0.4 */
    double hue;        /* 0.1: shift ~ U(-x, x), 0 <= x <= 0.5; 0 = op off */
    bool blur;         /* true: Gaussian blur, always */
    double blur_sigma_min; /* 0.15 */
    double blur_sigma_max; /* 1.30 (at most 8) */
    bool normalize;        /* true: ImageNet mean/std; false: x / 255 */
} dg_seg_aug_cfg;

/* The RobustNet defaults listed above. */
void dg_seg_aug_cfg_default(dg_seg_aug_cfg *cfg);

/* Checks every field's range; logs one message naming the first bad field
 * and its value. Returns DG_STATUS_OK or DG_STATUS_ERR_CONFIG. */
dg_status dg_seg_aug_cfg_check(const dg_seg_aug_cfg *cfg);

/* Draws consumed by dg_seg_aug_draw, in this order (u = dg_rng_uniform
 * of that draw; "int in [a, b]" is a + floor(u (b - a + 1))):
 *   0  scale s = scale_min + (scale_max - scale_min) u
 *   1  crop origin y: int in [cy - crop_h, cy] clamped to [0, H' - crop_h]
 *      with a centroid, else int in [0, H' - crop_h] (H' the padded scaled
 *      height, cy the scaled and shifted centroid; unused without crop)
 *   2  crop origin x: likewise
 *   3  flip: u < flip_p
 *   4  jitter: u < jitter_p
 *   5  brightness factor  6  contrast factor  7  saturation factor
 *      (each lo + (hi - lo) u over [max(0, 1 - x), 1 + x])
 *   8  hue shift -hue + 2 hue u
 *   9, 10, 11  op order: Fisher-Yates over {0, 1, 2, 3} (i = 3, 2, 1:
 *      j = int in [0, i], swap)
 *   12 blur sigma = blur_sigma_min + (blur_sigma_max - blur_sigma_min) u
 * Switched-off steps still take their draws, so turning one step off never
 * changes the others. */
#define DG_SEG_AUG_DRAWS 13

/* Everything one sample's augmentation does, decided before any pixel is
 * touched. Coordinates: the scaled image is (scaled_h, scaled_w); padding
 * adds pad_y rows above and below and pad_x columns left and right; the
 * crop is (out_h, out_w) at (y0, x0) in the padded image. */
typedef struct dg_seg_aug_plan {
    double scale;
    int scaled_h; /* floor(H s), at least 1 */
    int scaled_w; /* floor(W s), at least 1 */
    int pad_y; /* per side: (crop_h - scaled_h) / 2 + 1 if positive, else 0 */
    int pad_x;
    int y0; /* crop origin in the padded image */
    int x0;
    int out_h; /* crop_h, or scaled_h without crop */
    int out_w;
    bool flip;
    bool jitter; /* whether jit runs */
    dg_jitter jit;
    bool blur;
    double sigma;
} dg_seg_aug_plan;

/* Takes the DG_SEG_AUG_DRAWS draws of one sample from rng (advancing it by
 * exactly that many) and fills plan for an (h, w) image. centroid is
 * (y, x) in image coordinates (the class-uniform sampler's, §7.3) or NULL:
 * it is scaled by s (floor), shifted by the padding, and the crop origin is
 * drawn from [c - crop, c] per axis and clamped into the padded image
 * (RobustNet's rule: c may sit on the crop's closing edge). */
void dg_seg_aug_draw(const dg_seg_aug_cfg *cfg, dg_rng *rng, int h, int w,
        const int32_t *centroid /* (2) or NULL */, dg_seg_aug_plan *plan);

/* Applies plan: resize (image bicubic, label nearest-exact; skipped when
 * the size is unchanged), pad (image 0, label 255), crop, flip (image and
 * label), colour jitter, blur, normalise (§7.4 steps 1-5). Jitter and blur
 * run on the crop only (as in the reference, which applies them after the
 * crop). img (H, W, 3) and label (H, W, 1) must agree in size.
 * dst_img (3, out_h, out_w), dst_label (out_h, out_w).
 * Returns DG_STATUS_OK or DG_STATUS_ERR_SHAPE (size mismatch or a failed
 * resize; logged once). */
dg_status dg_seg_aug_apply(const dg_seg_aug_cfg *cfg,
        const dg_seg_aug_plan *plan, const dg_image *img, const dg_image *label,
        float *dst_img, uint8_t *dst_label);

/* dg_seg_aug_draw then dg_seg_aug_apply. With cropping on both axes the
 * output is (crop_h, crop_w); without, it is (floor(H s), floor(W s)) and the
 * caller learns the size from dg_seg_aug_draw on a copy of rng. */
dg_status dg_seg_augment(const dg_seg_aug_cfg *cfg, dg_rng *rng,
        const dg_image *img, const dg_image *label,
        const int32_t *centroid /* (2) (y, x) or NULL */,
        float *dst_img /* (3, out_h, out_w) */,
        uint8_t *dst_label /* (out_h, out_w) */);

/* ---- segmentation evaluation transform (docs/datasets.md §7.5) ------------- */

/* Mapillary's evaluation height. */
#define DG_SEG_EVAL_MAPILLARY_HEIGHT 1536

typedef struct dg_seg_eval_cfg {
    int target_h;   /* 0: the full image as is; > 0: resize to this height
                       keeping the aspect ratio (width floor(W T / H)), then
                       centre crop / symmetric pad to T x T (Mapillary) */
    bool normalize; /* true: ImageNet mean/std; false: x / 255 */
} dg_seg_eval_cfg;

/* target_h 0, normalize on. */
void dg_seg_eval_cfg_default(dg_seg_eval_cfg *cfg);

/* Output size for an (h, w) input: (h, w), or (T, T). */
void dg_seg_eval_dims(
        const dg_seg_eval_cfg *cfg, int h, int w, int *out_h, int *out_w);

/* The evaluation input of one image (and its label, which may be NULL
 * together with dst_label). With target_h = T > 0: resize to
 * (T, max(1, floor(W T / H))) (image bicubic, label nearest-exact), then
 * column x of the output shows scaled column x + x1 with
 * x1 = round_half_even((W' - T) / 2) (torchvision CenterCrop's rule; a
 * negative x1 pads), columns outside the scaled image are padding
 * (image 0, label 255). dst_img (3, out_h, out_w), dst_label
 * (out_h, out_w). Returns DG_STATUS_OK or DG_STATUS_ERR_SHAPE (size
 * mismatch or failed resize; logged). */
dg_status dg_seg_eval_transform(const dg_seg_eval_cfg *cfg, const dg_image *img,
        const dg_image *label, float *dst_img /* (3, out_h, out_w) */,
        uint8_t *dst_label /* (out_h, out_w) or NULL */);

/* ---- classification (docs/datasets.md §9.2) -------------------------------- */

typedef struct dg_cls_aug_cfg {
    int size;         /* 224: output S x S */
    bool random_crop; /* true: RandomResizedCrop; false: resize to S x S */
    double scale_min; /* 0.7: crop area fraction ~ U(scale_min, scale_max) */
    double scale_max; /* 1.0 */
    double ratio_min; /* 3/4: log aspect ratio ~ U(log ratio_min, log ratio_max)
                       */
    double ratio_max; /* 4/3 */
    dg_interp interp; /* DG_INTERP_BILINEAR (cv::INTER_LINEAR; torchvision
                         uses PIL's bilinear, which antialiases) */
    double flip_p;    /* 0.5 */
    double brightness; /* 0.3 (ColorJitter, always applied) */
    double contrast;   /* 0.3 */
    double saturation; /* 0.3 */
    double hue;        /* 0.3 */
    double gray_p;     /* 0.1: RandomGrayscale */
    bool normalize;    /* true: ImageNet mean/std; false: x / 255 */
} dg_cls_aug_cfg;

/* The DomainBed values listed above. */
void dg_cls_aug_cfg_default(dg_cls_aug_cfg *cfg);

/* Checks every field's range; logs one message naming the first bad field.
 * Returns DG_STATUS_OK or DG_STATUS_ERR_CONFIG. */
dg_status dg_cls_aug_cfg_check(const dg_cls_aug_cfg *cfg);

/* Draws consumed by dg_cls_aug_draw, in this order:
 *   0 .. 19  RandomResizedCrop attempts a = 0 .. 9: draw 2a area fraction
 *            scale_min + (scale_max - scale_min) u, draw 2a + 1 log ratio
 *            (all twenty consumed even when an early attempt succeeds)
 *   20, 21   crop origin i (rows): int in [0, H - h], j: int in [0, W - w]
 *   22       flip: u < flip_p
 *   23 .. 26 brightness, contrast, saturation factors, hue shift
 *   27 .. 29 op order (as the segmentation draws 9 .. 11)
 *   30       grayscale: u < gray_p */
#define DG_CLS_AUG_DRAWS 31

typedef struct dg_cls_aug_plan {
    int i;       /* crop box: top row */
    int j;       /* left column */
    int h;       /* rows */
    int w;       /* columns */
    int attempt; /* RandomResizedCrop attempt that succeeded (0 .. 9), or
                    -1: centre-crop fallback (or random_crop off) */
    double area_fraction; /* the successful attempt's drawn fraction, else 0 */
    bool flip;
    dg_jitter jit;
    bool gray;
} dg_cls_aug_plan;

/* Takes the DG_CLS_AUG_DRAWS draws of one sample from rng and fills plan
 * for an (h, w) image: torchvision RandomResizedCrop.get_params (w =
 * round(sqrt(A a r)), h = round(sqrt(A a / r)), accepted when 0 < w <= W and
 * 0 < h <= H; after ten failures the central crop at the nearest allowed
 * ratio), flip, ColorJitter parameters, grayscale. */
void dg_cls_aug_draw(const dg_cls_aug_cfg *cfg, dg_rng *rng, int h, int w,
        dg_cls_aug_plan *plan);

/* Applies plan to img (H, W, 3): crop the box, resize it to S x S
 * (cfg->interp), flip, jitter, grayscale, normalise into dst (3, S, S).
 * Returns DG_STATUS_OK or DG_STATUS_ERR_SHAPE (failed resize; logged). */
dg_status dg_cls_aug_apply(const dg_cls_aug_cfg *cfg,
        const dg_cls_aug_plan *plan, const dg_image *img,
        float *dst /* (3, S, S) */);

/* dg_cls_aug_draw then dg_cls_aug_apply. */
dg_status dg_cls_augment(const dg_cls_aug_cfg *cfg, dg_rng *rng,
        const dg_image *img, float *dst /* (3, S, S) */);

/* Evaluation splits: resize img (H, W, 3) to S x S (cfg->interp), normalise
 * (cfg->normalize) into dst (3, S, S). Returns DG_STATUS_OK or
 * DG_STATUS_ERR_SHAPE (failed resize; logged). */
dg_status dg_cls_eval_transform(const dg_cls_aug_cfg *cfg, const dg_image *img,
        float *dst /* (3, S, S) */);

/* MNIST-type data: x / 255 of img (H, W, C) into dst (C, H, W), no
 * augmentation, no normalisation (docs/datasets.md §0). */
void dg_cls_transform_none(const dg_image *img, float *dst /* (C, H, W) */);

#endif
