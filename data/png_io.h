/* data/png_io.h -- label PNGs through libpng only (docs/datasets.md §0): raw
 * samples without colour expansion (palette indices, 8-bit gray values,
 * 16-bit samples per channel), writers for paletted, 8-bit gray and 16-bit
 * RGB PNGs (prediction PNGs, test fixtures, `dgseg synth`), the Cityscapes
 * trainId palette (docs/datasets.md §1.4) and the atomic file write shared by
 * every writer in data/.
 *
 * Shape letters: H, W (pixels), C (samples per pixel). Pixel data is
 * row-major, interleaved: (H, W, C). Statuses follow docs/style.md §6: every
 * failure is logged once here, naming the file and libpng's message. */
#ifndef DG_DATA_PNG_IO_H
#define DG_DATA_PNG_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Inside the extern "C" block: nets/core/common.h has no C++ guards of its
 * own, and data/image_cv.cpp must see its functions with C linkage. */
#ifdef __cplusplus
extern "C" {
#endif

#include "nets/core/common.h"

/* The decoded-image size limit in pixels: DGSEG_MAX_IMAGE_PIXELS from the
 * environment when set (a positive integer), else 100 million, five times
 * the largest frames of the real datasets (Mapillary's, about 20 MP). Images
 * and label PNGs whose header asks for more are refused before any pixel is
 * decoded or allocated (here and by data/image_cv.h). */
int64_t dg_image_max_pixels(void);

/* Largest width or height the reader accepts; a header beyond it is treated
 * as corrupt rather than allocated. */
#define DG_PNG_MAX_SIDE 32768

/* A decoded label PNG. Owns data8/data16 (exactly one is non-NULL after a
 * successful read). */
typedef struct dg_label_png {
    int h;
    int w;
    int channels;       /* C: 1 (palette index or gray), 2 (gray + alpha),
                           3 (RGB), 4 (RGBA) */
    int bit_depth;      /* 8: samples in data8; 16: samples in data16 */
    int file_bit_depth; /* bits per sample stored in the file: 1, 2, 4, 8, 16 */
    bool paletted;      /* data8 holds palette indices, never colours */
    int n_palette;      /* entries of palette (0 when not paletted) */
    uint8_t palette[256][3]; /* (n_palette, 3) RGB, rest zero */
    uint8_t *data8;     /* (H, W, C) when bit_depth == 8, else NULL */
    uint16_t *data16;   /* (H, W, C) host-order values when bit_depth == 16,
                           else NULL */
} dg_label_png;

/* Reads the PNG at path without any colour transformation: paletted files
 * give 1-channel 8-bit indices (1/2/4-bit palettes unpacked to one index per
 * byte), gray files their values (1/2/4-bit unpacked, not rescaled), 16-bit
 * files uint16 samples per channel (gray, gray + alpha, RGB or RGBA); a tRNS
 * chunk is ignored. The whole file is validated through IEND.
 * out is overwritten (no need to initialise it); on error it is zeroed.
 * Returns DG_STATUS_OK, DG_STATUS_ERR_IO (cannot open or read: the path and
 * strerror are logged) or DG_STATUS_ERR_FORMAT (not a PNG, corrupt,
 * truncated or larger than DG_PNG_MAX_SIDE: the path and libpng's message
 * are logged). */
dg_status dg_label_read_png(const char *path, dg_label_png *out);

/* Releases the samples and zeroes the struct; safe on a zeroed struct. */
void dg_label_png_free(dg_label_png *l);

/* Header of the PNG at path (size and storage), without decoding pixels:
 * what `dgseg verify` and the readers use to compare image and label sizes
 * cheaply. Statuses and messages as dg_label_read_png. */
typedef struct dg_png_info {
    int h;
    int w;
    int channels;       /* samples per pixel as stored (1 for paletted) */
    int file_bit_depth; /* 1, 2, 4, 8 or 16 */
    bool paletted;
} dg_png_info;
dg_status dg_png_read_info(const char *path, dg_png_info *out);

/* 8-bit paletted PNG of the indices idx (H, W) with palette (n_colors, 3)
 * RGB, 1 <= n_colors <= 256; every index must be < n_colors (asserted).
 * The file is replaced atomically (dg_file_write_atomic). Returns
 * DG_STATUS_OK or DG_STATUS_ERR_IO (path logged). */
dg_status dg_png_write_paletted(const char *path, const uint8_t *idx, int h, int w,
        const uint8_t (*palette)[3], int n_colors);

/* 8-bit gray PNG of src (H, W). Atomic; DG_STATUS_OK or DG_STATUS_ERR_IO. */
dg_status dg_png_write_gray8(const char *path, const uint8_t *src, int h, int w);

/* 16-bit RGB PNG of src (H, W, 3) (SYNTHIA's label encoding: class id in
 * channel 0, instance id in channel 1). Atomic; DG_STATUS_OK or
 * DG_STATUS_ERR_IO. */
dg_status dg_png_write_gray16_rgb(const char *path, const uint16_t *src, int h, int w);

/* The Cityscapes trainId palette (docs/datasets.md §1.4): entries 0 .. 18 are the
 * class colours, every other entry (255 = ignore included) is black. */
extern const uint8_t DG_CITYSCAPES_PALETTE[256][3];


#ifdef __cplusplus
}
#endif

#endif
