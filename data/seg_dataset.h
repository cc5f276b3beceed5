/* data/seg_dataset.h -- segmentation dataset readers over the native
 * layouts of docs/datasets.md §1-§6: `cityscapes`, `gtav`, `synthia`, `bdd100k`
 * and `mapillary`. Opening a split scans its directories (or its split
 * list), pairs every image with its label by name and records missing
 * partners as problems; loading one pair decodes the image to RGB8 through
 * OpenCV (data/image_cv.h) and the label with libpng (data/png_io.h), checks
 * the label's encoding and that both sizes agree, and maps the label to
 * trainIds through the reader's 256-entry table (data/labelmap.h).
 *
 * Layouts accepted (docs/datasets.md):
 *   cityscapes  <root>[/leftImg8bit_trainvaltest]/leftImg8bit/<split>/<city>/
 *               <stem>_leftImg8bit.png with
 *               <root>[/gtFine_trainvaltest]/gtFine/<split>/<city>/
 *               <stem>_gtFine_labelIds.png; splits train, val, test.
 *   gtav        <root>/images/<split>/<any>/N.png with labels/<split>/<any>/
 *               (RobustNet; splits train, valid (alias val), test), or the
 *               flat <root>/images/N.png + labels/N.png with a split list
 *               (one "N.png" per line): the dataset's own
 *               <root>/split_data/gtav_split_<split>.txt when present, else
 *               opts->split_dir/gtav_<split>.txt; split "all" takes every
 *               flat frame without a list.
 *   synthia     <root>/RGB/<split>/N.png with GT/LABELS/<split>/ (splits
 *               train, val), or the flat RGB/, GT/LABELS/ with a list from
 *               <root>/split_data/synthia_split_<split>.txt, else
 *               opts->split_dir/synthia_<split>.txt; "all" as gtav.
 *   bdd100k     <root>/images/10k/<split>/<name>.jpg with
 *               labels/sem_seg/masks/<split>/<name>.png (official), or
 *               <root>/images/<split>/<name>.jpg with
 *               labels/<split>/<name>_train_id.png (RobustNet).
 *   mapillary   <root>/<split>/images/<key>.jpg with <split>/v1.2/labels/
 *               <key>.png when that folder exists, else <split>/labels/;
 *               splits training, validation (aliases train, val).
 * Pairs are ordered by their name relative to the split folder (strcmp),
 * or by split-list name, so the order never depends on the file system.
 *
 * Owns: every string and array in dg_seg_dataset. Loading only reads the
 * dataset, so several threads may load from one dataset at once.
 * Shape letters: H, W (pixels). */
#ifndef DG_DATA_SEG_DATASET_H
#define DG_DATA_SEG_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "data/fsutil.h"
#include "data/image_cv.h"
#include "data/labelmap.h"
#include "nets/core/common.h"

/* How a reader's labels are stored (checked on every load). */
typedef enum dg_seg_label_encoding {
    DG_SEG_LABEL_GRAY8 = 0,    /* 8-bit gray, one channel, not paletted */
    DG_SEG_LABEL_PALETTED = 1, /* 8-bit palette indices (1 .. 8-bit files) */
    DG_SEG_LABEL_SAMPLE16 = 2  /* 16-bit, class id in the first sample */
} dg_seg_label_encoding;

/* One image/label pair: full paths. */
typedef struct dg_seg_pair {
    char *image;
    char *label;
} dg_seg_pair;

/* A problem found while scanning (the `dgseg verify` JSON's
 * {"file", "kind", "message"}, docs/design.md §4). kind is "missing_label"
 * (an image without its label; file = the image), "missing_image" (a label,
 * or a split-list entry, without its image; file = the label, or the
 * entry's image), "label_not_a_file" or "image_not_a_file" (the partner
 * exists but is a directory, a dangling symbolic link, a link loop, a FIFO,
 * a socket or a device, or cannot be examined; file = that path). The
 * message is one line: the path, what it is, and what it means for the
 * pair, e.g. "L: is a dangling symbolic link (to ../y.png); the image I has
 * no usable label". Such paths are examined with lstat/stat only, never
 * opened. */
typedef struct dg_seg_problem {
    char *file;
    const char *kind; /* static string */
    char *message;
} dg_seg_problem;

typedef struct dg_seg_dataset {
    const char *reader; /* static reader name ("gtav", ...) */
    char *root;
    char *split;  /* as requested */
    char *layout; /* which accepted layout was found, in words */
    char *split_list; /* the split list read (flat GTAV/SYNTHIA), or NULL */
    dg_labelmap map;
    dg_seg_label_encoding encoding;
    size_t n;           /* complete pairs */
    dg_seg_pair *pairs; /* (n) */
    size_t n_problems;
    dg_seg_problem *problems;    /* (n_problems) */
    size_t n_not_files;          /* problems of kind *_not_a_file */
    dg_log_level mismatch_level; /* level of the size-mismatch message:
                                    DG_LOG_ERROR (default; evaluation never
                                    skips) or DG_LOG_WARN for a trainer that
                                    skips such pairs (docs/style.md §6 tier 3) */
    struct dg_seg_oor_state *oor; /* owned: what the loads met outside the
                                     reader's native label range (atomic
                                     counters, every thread's loads) */
} dg_seg_dataset;

/* Optional settings of dg_seg_dataset_open_opts. */
typedef struct dg_seg_open_opts {
    const char *split_dir; /* folder holding the project's split lists
                              (data/splits: gtav_<split>.txt,
                              synthia_<split>.txt), or NULL */
} dg_seg_open_opts;

/* Reads a GTAV/SYNTHIA split list (data/splits): one "<name>.png" per line
 * (LF or CRLF, blank lines skipped); keys get the names without ".png".
 * DG_STATUS_ERR_IO (cannot open) or DG_STATUS_ERR_FORMAT naming path:line
 * for a line that is not a frame file name. */
dg_status dg_seg_split_list_read(const char *path, dg_strvec *keys);

/* Opens split `split` of the dataset at root with reader `reader_name`.
 * Missing partners, and partners that are not regular files, are logged
 * once each as warnings (the first DG_SEG_PROBLEMS_LOGGED, then a count)
 * and recorded in ds->problems; only complete pairs of regular files enter
 * ds->pairs. ds is overwritten
 * (no need to initialise it); on error it is freed and zeroed.
 * Returns DG_STATUS_OK;
 * DG_STATUS_ERR_CONFIG for an unknown reader name or a split the reader does
 * not have (both named, with the accepted values);
 * DG_STATUS_ERR_MISSING when root does not exist, none of the reader's
 * layouts is found under it, the flat GTAV/SYNTHIA layout has no split list
 * for `split`, or the split holds no complete pair (paths named);
 * DG_STATUS_ERR_IO when a folder or split list cannot be read;
 * DG_STATUS_ERR_FORMAT for a malformed split-list line (file:line named). */
dg_status dg_seg_dataset_open(const char *reader_name, const char *root,
        const char *split, dg_seg_dataset *ds);
dg_status dg_seg_dataset_open_opts(const char *reader_name, const char *root,
        const char *split, const dg_seg_open_opts *opts, dg_seg_dataset *ds);

/* The split a reader's dataset is evaluated on as a target (docs/datasets.md
 * §7.5): "validation" for mapillary, "val" for the others. */
const char *dg_seg_eval_split(const char *reader_name);

/* Releases everything and zeroes ds; safe on a zeroed dataset. */
void dg_seg_dataset_free(dg_seg_dataset *ds);

/* What dg_seg_dataset_load_ex reports besides its status. */
typedef struct dg_seg_load_report {
    uint64_t n_out_of_range; /* label pixels whose native value lies outside
                                the reader's native range (mapped to 255) */
    const char *bad_file;    /* on error: the pair's image or label path
                                (borrowed from ds), the file at fault */
} dg_seg_load_report;

/* Decodes pair i < ds->n: img becomes the RGB8 image (H, W, 3) and label
 * the trainId map (H, W, 1), values 0 .. 18 and 255. img and label are
 * overwritten (not freed first) and zeroed on error. rep (when not NULL)
 * gets the report.
 * Returns DG_STATUS_OK;
 * DG_STATUS_ERR_IO / DG_STATUS_ERR_FORMAT from decoding (missing, unreadable,
 * corrupt or truncated file, named by the decoder);
 * DG_STATUS_ERR_FORMAT when the label is not stored in the reader's encoding
 * (file, expected and found encodings named);
 * DG_STATUS_ERR_SHAPE when image and label sizes differ (both files and both
 * sizes named, at ds->mismatch_level). */
dg_status dg_seg_dataset_load_ex(const dg_seg_dataset *ds, size_t i,
        dg_image *img, dg_image *label, dg_seg_load_report *rep);
dg_status dg_seg_dataset_load(
        const dg_seg_dataset *ds, size_t i, dg_image *img, dg_image *label);

/* Decodes and maps pair i's label alone (no size check against the image):
 * what the class-uniform centroid scan needs. Statuses as above. */
dg_status dg_seg_dataset_load_label(const dg_seg_dataset *ds, size_t i, dg_image *label);

/* Label values outside the reader's native range met by every load of a
 * dataset so far (any thread; each load of a label counts again). */
typedef struct dg_seg_oor_count {
    uint64_t pixels; /* label pixels outside the range (mapped to 255) */
    uint64_t labels; /* label decodes with at least one such pixel */
    uint64_t reads;  /* label decodes in all */
    int64_t first;   /* lowest pair index among them; -1 when none */
} dg_seg_oor_count;

dg_seg_oor_count dg_seg_dataset_out_of_range(const dg_seg_dataset *ds);

/* Once per dataset, when its loads met label values outside the native
 * range: one warning with the count, e.g. "ROOT (cityscapes val): 15 label
 * pixels in 2 of 2 labels read by this evaluation hold values outside the
 * cityscapes id range (0..33) and count as ignore (255); the first: FILE
 * (`dgseg verify` lists every file)"; `by` says who read them ("by this
 * evaluation"). Returns true when it logged. Call it when the loads are
 * over (a finished pass): the counts are then complete. */
bool dg_seg_dataset_warn_out_of_range(const dg_seg_dataset *ds, const char *by);

/* For a reader that cannot wait for the end (training): pair i's label
 * just held n > 0 such pixels. The first call per dataset (unless
 * dg_seg_dataset_warn_out_of_range already spoke) logs one warning naming
 * the label, the count and the range, and says that further ones are not
 * logged one by one; later calls are silent. Thread-safe. */
void dg_seg_dataset_note_out_of_range(const dg_seg_dataset *ds, size_t i, uint64_t n,
        const char *while_doing);

#endif
