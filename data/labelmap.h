/* data/labelmap.h -- native label encodings to Cityscapes trainIds through
 * 256-entry lookup tables (docs/datasets.md §0): every byte value has an entry,
 * unknown values map to 255 (ignore), and a mapped label holds only
 * 0 .. 18 and 255.
 *
 * Tables (docs/datasets.md): Cityscapes labelId -> trainId (§1.3, also GTAV's
 * palette indices, §2), SYNTHIA class id -> trainId (§3,
 * shachoi/RobustNet datasets/synthia.py; 16-bit values above 255 map to
 * 255), BDD100K identity on 0 .. 18 (§4), Mapillary Vistas v1.2 ids
 * 0 .. 65 -> trainId (§5, shachoi/RobustNet datasets/mapillary.py).
 * Each table also records which native values are in the dataset's native
 * range (`dgseg verify` reports the others, docs/design.md §4).
 *
 * Owns nothing; tables are plain values. */
#ifndef DG_DATA_LABELMAP_H
#define DG_DATA_LABELMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nets/core/common.h"

#define DG_NUM_TRAIN_IDS 19 /* Cityscapes training classes 0 .. 18 */
#define DG_IGNORE_ID 255    /* ignore, everywhere */

typedef enum dg_labelmap_kind {
    DG_LABELMAP_CITYSCAPES = 0, /* labelId 0 .. 33 (§1.3) */
    DG_LABELMAP_GTAV = 1,       /* palette index = labelId, same table (§2) */
    DG_LABELMAP_SYNTHIA = 2,    /* class id 0 .. 22 (§3) */
    DG_LABELMAP_BDD100K = 3,    /* trainId 0 .. 18, 255 unknown (§4) */
    DG_LABELMAP_MAPILLARY = 4   /* v1.2 class id 0 .. 65 (§5) */
} dg_labelmap_kind;

typedef struct dg_labelmap {
    dg_labelmap_kind kind;
    uint8_t to_train[256]; /* native byte value -> trainId (0 .. 18 or 255) */
    bool native[256];      /* value belongs to the native encoding's range */
} dg_labelmap;

/* Fills m with the table of `kind` (every entry written). */
void dg_labelmap_init(dg_labelmap *m, dg_labelmap_kind kind);

/* Name of a kind ("cityscapes", "gtav", ...), never NULL. */
const char *dg_labelmap_name(dg_labelmap_kind kind);

/* The native range of m in words into buf (size bytes): its runs of
 * native values, "0..33", "0..18, 255". */
void dg_labelmap_range_text(const dg_labelmap *m, char *buf, size_t size);

/* dst[i] = m->to_train[src[i * stride]] for i < n: stride is the number of
 * samples per pixel of src (the first sample is the class value). Returns
 * the number of source values outside the native range. Every result is
 * 0 .. 18 or 255 (dg_labelmap_init asserts every table entry). */
uint64_t dg_labelmap_apply8(const dg_labelmap *m, const uint8_t *src,
        size_t stride, size_t n, uint8_t *dst);

/* Same for 16-bit samples (SYNTHIA, docs/datasets.md §3): values above 255 map
 * to 255 and count as outside the native range. */
uint64_t dg_labelmap_apply16(const dg_labelmap *m, const uint16_t *src,
        size_t stride, size_t n, uint8_t *dst);

#endif
