/* data/labelmap.c -- the 256-entry native -> trainId tables of
 * docs/datasets.md §1.3 (Cityscapes, GTAV), §3 (SYNTHIA), §4 (BDD100K) and §5
 * (Mapillary Vistas v1.2). See data/labelmap.h. */
#include "data/labelmap.h"

#include <stdio.h>
#include <string.h>

/* §1.3: labelIds 7, 8, 11, 12, 13, 17, 19 .. 28, 31, 32, 33 -> 0 .. 18. */
static const uint8_t CITYSCAPES_IDS[DG_NUM_TRAIN_IDS] = {7, 8, 11, 12, 13, 17,
        19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33};

/* §3: SYNTHIA id 0 .. 22 -> trainId. */
static const uint8_t SYNTHIA_TRAIN[23] = {255, 10, 2, 0, 1, 4, 8, 5, 13, 7, 11,
        18, 17, 255, 255, 6, 9, 12, 14, 15, 16, 3, 255};

/* §5: the 25 Mapillary v1.2 ids that map to a trainId. */
static const struct {
    uint8_t id;
    uint8_t train;
} MAPILLARY_PAIRS[] = {{2, 1}, {3, 4}, {6, 3}, {13, 0}, {15, 1}, {17, 2},
        {19, 11}, {20, 12}, {21, 12}, {22, 12}, {24, 0}, {27, 10}, {29, 9},
        {30, 8}, {41, 0}, {45, 5}, {47, 5}, {48, 6}, {50, 7}, {52, 18},
        {54, 15}, {55, 13}, {57, 17}, {58, 16}, {61, 14}};

const char *dg_labelmap_name(dg_labelmap_kind kind) {
    switch (kind) {
    case DG_LABELMAP_CITYSCAPES:
        return "cityscapes";
    case DG_LABELMAP_GTAV:
        return "gtav";
    case DG_LABELMAP_SYNTHIA:
        return "synthia";
    case DG_LABELMAP_BDD100K:
        return "bdd100k";
    case DG_LABELMAP_MAPILLARY:
        return "mapillary";
    }
    return "unknown";
}

/* native[v] = true for v in [0, max]. */
static void set_native_range(dg_labelmap *m, int max) {
    for (int v = 0; v <= max; v++) m->native[v] = true;
}

void dg_labelmap_init(dg_labelmap *m, dg_labelmap_kind kind) {
    memset(m, 0, sizeof(*m));
    m->kind = kind;
    memset(m->to_train, DG_IGNORE_ID, sizeof(m->to_train));
    switch (kind) {
    case DG_LABELMAP_CITYSCAPES:
    case DG_LABELMAP_GTAV:
        for (int t = 0; t < DG_NUM_TRAIN_IDS; t++)
            m->to_train[CITYSCAPES_IDS[t]] = (uint8_t)t;
        set_native_range(m, 33);
        break;
    case DG_LABELMAP_SYNTHIA:
        for (int v = 0; v < (int)DG_ARRAY_LEN(SYNTHIA_TRAIN); v++)
            m->to_train[v] = SYNTHIA_TRAIN[v];
        set_native_range(m, 22);
        break;
    case DG_LABELMAP_BDD100K:
        for (int t = 0; t < DG_NUM_TRAIN_IDS; t++) m->to_train[t] = (uint8_t)t;
        set_native_range(m, DG_NUM_TRAIN_IDS - 1);
        m->native[DG_IGNORE_ID] = true;
        break;
    case DG_LABELMAP_MAPILLARY:
        for (size_t k = 0; k < DG_ARRAY_LEN(MAPILLARY_PAIRS); k++)
            m->to_train[MAPILLARY_PAIRS[k].id] = MAPILLARY_PAIRS[k].train;
        set_native_range(m, 65);
        break;
    default:
        DG_ASSERT(!"unknown label map kind");
    }
    for (int v = 0; v < 256; v++)
        DG_ASSERT(m->to_train[v] < DG_NUM_TRAIN_IDS ||
                  m->to_train[v] == DG_IGNORE_ID);
}

void dg_labelmap_range_text(const dg_labelmap *m, char *buf, size_t size) {
    DG_ASSERT(size > 0);
    buf[0] = '\0';
    size_t off = 0;
    for (int v = 0; v < 256; v++) {
        if (!m->native[v] || (v > 0 && m->native[v - 1])) continue;
        int end = v;
        while (end < 255 && m->native[end + 1]) end++;
        const int n = end > v ? snprintf(buf + off, size - off, "%s%d..%d", off ? ", " : "", v, end)
                              : snprintf(buf + off, size - off, "%s%d", off ? ", " : "", v);
        if (n < 0 || (size_t)n >= size - off) break;
        off += (size_t)n;
    }
}

uint64_t dg_labelmap_apply8(const dg_labelmap *m, const uint8_t *src,
        size_t stride, size_t n, uint8_t *dst) {
    uint64_t n_bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t v = src[i * stride];
        dst[i] = m->to_train[v];
        n_bad += !m->native[v];
    }
    return n_bad;
}

uint64_t dg_labelmap_apply16(const dg_labelmap *m, const uint16_t *src,
        size_t stride, size_t n, uint8_t *dst) {
    uint64_t n_bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t v = src[i * stride];
        bool in_table = v < 256;
        dst[i] = in_table ? m->to_train[v] : DG_IGNORE_ID;
        n_bad += !in_table || !m->native[v];
    }
    return n_bad;
}
