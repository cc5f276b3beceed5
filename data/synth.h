/* data/synth.h -- the embedded default segmentation benchmark of
 * `dgseg synth` (docs/design.md §4, §7): deterministic street scenes with the 19
 * Cityscapes classes, rendered in five visual styles and written in the
 * native layout and label encoding of each dataset (docs/datasets.md §1-§5), so
 * that the readers of data/seg_dataset.h read them unchanged.
 *
 * Scenes: a pinhole camera over a ground plane looks down a street canyon:
 * road with lane markings and manholes in the bottom centre, curbs and
 * sidewalks at the sides, then verges (sidewalk, terrain, parking) and a
 * facade line of buildings, walls, fences and vegetation with a second line
 * behind it, an optional far facade closing the street, sky above. Cars
 * (moving and parked in rows), trucks, buses and trams stand on the road,
 * persons, trees and bins on the sidewalks, riders on bicycles and
 * motorcycles near the curb, poles with traffic lights and signs along the
 * curb; everything shrinks with its distance, and the layout distribution
 * is the same in every style. Some native ids map to ignore (ego vehicle hood,
 * unlabeled advertising columns, static bins, parking, SYNTHIA lane markings).
 *
 * Styles: two sources (GTAV-like: sunny, saturated, crisp PNG;
 * SYNTHIA-like: flat vivid colours, PNG) and three targets (Cityscapes-like:
 * overcast grey, soft, PNG; BDD-like: dusk, dark, noisy, blurred JPEG;
 * Mapillary-like: random white balance, exposure and saturation per image,
 * JPEG, mixed aspect ratios). Per-class colours differ between sources and
 * targets, so colour alone does not transfer while layout and shape do.
 *
 * Frame sizes: every frame has height H = opts->height; the Cityscapes-like
 * frames are opts->width wide; the others follow their dataset's aspect
 * ratio at that height: GTAV round(H * 1914 / 1052), SYNTHIA
 * round(H * 1280 / 760), BDD round(H * 16 / 9), Mapillary per image
 * round(H * 4 / 3) (p 0.5), round(H * 16 / 9) (p 0.35) or round(H * 3 / 4)
 * (portrait, p 0.15).
 *
 * Splits and counts (N = opts->per_domain, n = max(1, N / 4)):
 *   gtav        train N, val n, test n   images/NNNNN.png, labels/NNNNN.png
 *               (paletted labelIds, Cityscapes labelId colours), lists
 *               split_data/gtav_split_{train,val,test}.txt (the reader's
 *               split "valid" is an alias of val and uses the same list)
 *   synthia     train N, val n           RGB/NNNNNNN.png, GT/LABELS/
 *               NNNNNNN.png (16-bit RGB: class id, instance id, 0), lists
 *               split_data/synthia_split_{train,val}.txt
 *   cityscapes  train n, val N           leftImg8bit/<split>/<city>/
 *               <city>_000000_NNNNNN_leftImg8bit.png, gtFine/... 8-bit gray
 *               _gtFine_labelIds.png (invented cities)
 *   bdd100k     train n, val N           images/10k/<split>/<name>.jpg,
 *               labels/sem_seg/masks/<split>/<name>.png (gray trainIds)
 *   mapillary   training n, validation N <split>/images/<key>.jpg,
 *               <split>/v1.2/labels/<key>.png (paletted v1.2 ids 0 .. 65,
 *               Mapillary's colours)
 * Frame numbers run across a domain's splits in the order listed. File
 * names do not depend on the seed; files of the same name are replaced.
 * The flat GTAV/SYNTHIA readers prefer a dataset's own split_data lists to
 * the project's (data.split_dir), so these lists are the ones read.
 *
 * Determinism: frame k of style s is drawn entirely from the stream
 * (seed, DG_RNG_SYNTH, (s << 24) | k) of docs/datasets.md §12.2 and
 * rendered by one thread, so the bytes written never depend on the number of
 * OpenMP threads (images are generated in parallel).
 *
 * Shape letters: H, W (pixels). */
#ifndef DG_DATA_SYNTH_H
#define DG_DATA_SYNTH_H

#include <stdint.h>

#include "nets/core/common.h"

#define DG_SYNTH_DEFAULT_HEIGHT 128
#define DG_SYNTH_DEFAULT_PER_DOMAIN 100
#define DG_SYNTH_MAX_PER_DOMAIN (1 << 20)
#define DG_SYNTH_MIN_SIDE 16
#define DG_SYNTH_MAX_SIDE 4096

/* The five styles, one per dataset folder. */
typedef enum dg_synth_style {
    DG_SYNTH_GTAV = 0,
    DG_SYNTH_SYNTHIA = 1,
    DG_SYNTH_CITYSCAPES = 2,
    DG_SYNTH_BDD100K = 3,
    DG_SYNTH_MAPILLARY = 4
} dg_synth_style;
#define DG_SYNTH_N_STYLES 5

typedef struct dg_synth_opts {
    uint64_t seed;
    int width;      /* W of the Cityscapes-like frames, 16 .. 4096 */
    int height;     /* H of every frame, 16 .. 4096 */
    int per_domain; /* N, 1 .. DG_SYNTH_MAX_PER_DOMAIN: training images per
                       source domain and evaluation images per target */
} dg_synth_opts;

/* seed 0, height 128, width 256, per_domain 100. */
void dg_synth_opts_default(dg_synth_opts *o);

/* Folder and reader name of a style ("gtav", ..., "mapillary"). */
const char *dg_synth_style_name(dg_synth_style s);

/* Number of splits of a style (gtav 3, the others 2) and, for
 * k < that number, the reader's name of split k and its image count. */
int dg_synth_n_splits(dg_synth_style s);
const char *dg_synth_split_name(dg_synth_style s, int k);
int dg_synth_split_count(dg_synth_style s, int k, int per_domain);

/* One split as written. */
typedef struct dg_synth_split_info {
    dg_synth_style style;
    const char *split; /* reader's split name (static string) */
    int count;         /* images */
    int min_width;     /* narrowest and widest frame (pixels) */
    int max_width;
    int height;
} dg_synth_split_info;

#define DG_SYNTH_MAX_SPLITS 11

typedef struct dg_synth_summary {
    int n_splits;
    dg_synth_split_info splits[DG_SYNTH_MAX_SPLITS]; /* (n_splits) */
    int n_images;
} dg_synth_summary;

/* Writes the whole benchmark under out_dir (created with its parents when
 * missing): out_dir/{gtav,synthia,cityscapes,bdd100k,mapillary}/ as listed
 * above. Every file is written atomically. sum (may be NULL) receives the
 * per-split counts and sizes. Options out of range are asserted (the CLI
 * checks them). Returns DG_STATUS_OK or DG_STATUS_ERR_IO (a folder cannot be
 * created or a file cannot be written; the path is logged once). */
dg_status dg_synth_generate(
        const char *out_dir, const dg_synth_opts *opts, dg_synth_summary *sum);

#endif
