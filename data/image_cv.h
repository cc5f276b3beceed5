/* data/image_cv.h -- the C face of the project's one C++ file,
 * data/image_cv.cpp (docs/style.md §2.3): image decoding, PNG/JPEG writing and
 * resizing through OpenCV 4.6, and the network-input conversion
 * (docs/datasets.md §0). C types only; no exception crosses this interface: every
 * entry point catches OpenCV's exceptions and returns a dg_status after
 * logging the file (or the shapes) and OpenCV's message once.
 *
 * Shape letters: H, W (pixels), C (channels). Images are uint8, row-major,
 * channels interleaved (H, W, C), RGB(A) order. Labels never pass through
 * here (data/png_io.h decodes them with libpng). */
#ifndef DG_DATA_IMAGE_CV_H
#define DG_DATA_IMAGE_CV_H

#include <stdint.h>

/* Inside the extern "C" block: nets/core/common.h has no C++ guards of its
 * own, and data/image_cv.cpp must see its functions with C linkage. */
#ifdef __cplusplus
extern "C" {
#endif

#include "nets/core/common.h"

/* An 8-bit image. Owns data (dg_xmalloc). */
typedef struct dg_image {
    uint8_t *data; /* (H, W, C) */
    int h;
    int w;
    int c;         /* 1 .. 4; decoded images have 3 (RGB) */
} dg_image;

/* Allocates an (h, w, c) image, zero-filled; h, w >= 1 and 1 <= c <= 4
 * (asserted). */
void dg_image_init(dg_image *img, int h, int w, int c);

/* Releases data and zeroes the struct; safe on a zeroed struct. */
void dg_image_free(dg_image *img);


/* Decodes the image file at path (any format OpenCV reads: PNG, JPEG, ...;
 * the content decides, not the extension) to RGB8: cv::imdecode with
 * IMREAD_COLOR | IMREAD_IGNORE_ORIENTATION (gray is replicated, alpha
 * dropped, 16 bit scaled to 8; the EXIF orientation is ignored, as PIL's
 * Image.open does, so images stay aligned with their labels), then BGR ->
 * RGB. A JPEG whose data ends before its end-of-image marker is rejected
 * (libjpeg would silently pad it with grey). out is overwritten; zeroed on
 * error. Returns DG_STATUS_OK, DG_STATUS_ERR_IO (missing or unreadable
 * file: path and strerror logged) or DG_STATUS_ERR_FORMAT (empty, corrupt,
 * truncated, not an image, or above dg_image_max_pixels in its PNG or JPEG
 * header: path and reason logged). */
dg_status dg_image_read(const char *path, dg_image *out);

/* Encodes img (c = 1 gray, 3 RGB, 4 RGBA) as PNG and writes it to path
 * atomically. Returns DG_STATUS_OK or DG_STATUS_ERR_IO (path logged). */
dg_status dg_image_write_png(const char *path, const dg_image *img);

/* Same as dg_image_write_png for baseline JPEG with quality 1 .. 100
 * (c = 1 or 3). */
dg_status dg_image_write_jpeg(const char *path, const dg_image *img, int quality);

typedef enum dg_interp {
    DG_INTERP_BILINEAR = 0,      /* cv::INTER_LINEAR (half-pixel centres) */
    DG_INTERP_BICUBIC = 1,       /* cv::INTER_CUBIC, a = -0.75 */
    DG_INTERP_AREA = 2,          /* cv::INTER_AREA */
    DG_INTERP_NEAREST_EXACT = 3  /* cv::INTER_NEAREST_EXACT: source pixel
                                    floor((d + 0.5) * src / dst), PIL's rule */
} dg_interp;

/* Resizes src (H, W, C), 1 <= C <= 4, to a new image dst (oh, ow, C)
 * (allocated here; dst's previous contents are not freed). oh, ow >= 1 and
 * dst != src are asserted. Returns DG_STATUS_OK or DG_STATUS_ERR_SHAPE when
 * OpenCV fails (shapes and OpenCV's message logged). */
dg_status dg_image_resize(const dg_image *src, int oh, int ow, dg_interp interp,
        dg_image *dst);

/* ImageNet normalisation constants (docs/datasets.md §0). */
extern const float DG_IMAGENET_MEAN[3];
extern const float DG_IMAGENET_STD[3];

/* Network input from img (H, W, C): dst (C, H, W) planar f32 with
 * dst[c][h][w] = (x / 255 - mean[c]) / stddev[c], computed in f32 in that
 * order (torchvision ToTensor + Normalize). mean and stddev have C entries;
 * both NULL gives x / 255. */
void dg_image_to_tensor(const dg_image *img, float *dst, const float *mean, const float *stddev);

#ifdef __cplusplus
}
#endif

#endif
