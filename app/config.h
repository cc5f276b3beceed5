/* app/config.h -- the INI configuration of `dgseg train / eval / verify`
 * (docs/design.md §5): sections [data] [model] [optim] [train] [eval] [output],
 * read with libinih through one descriptor table that gives every key its
 * type, default, range and help; `section.key=value` arguments override the
 * file. An unknown section or key, a malformed or out-of-range value is an
 * error naming the file, line and key (exit 2). dg_config_write prints the
 * fully resolved configuration, every default included.
 *
 * Lists (data.sources, data.targets, data.test_domains) are comma
 * separated; a long list may continue on indented lines. libinih reads at
 * most 199 characters per line; a longer line is an error naming it. */
#ifndef DG_APP_CONFIG_H
#define DG_APP_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "nets/core/common.h"
#include "optimizers/dg_optim.h"

typedef enum dg_task {
    DG_TASK_SEGMENTATION = 0,
    DG_TASK_CLASSIFICATION = 1
} dg_task;

/* The multiple-choice keys' values, in the order of their table entries'
 * choice lists (app/config.c): the config stores the index. */
typedef enum dg_nan_policy { /* train.nan_policy: stop|rollback */
    DG_NAN_STOP = 0,
    DG_NAN_ROLLBACK = 1
} dg_nan_policy;
typedef enum dg_compute_dtype { /* train.dtype: f32|bf16 */
    DG_DTYPE_F32 = 0,
    DG_DTYPE_BF16 = 1
} dg_compute_dtype;
typedef enum dg_validate_on { /* eval.validate: source|targets|both */
    DG_VALIDATE_SOURCE = 0,
    DG_VALIDATE_TARGETS = 1,
    DG_VALIDATE_BOTH = 2
} dg_validate_on;
typedef enum dg_eval_mode { /* eval.mode: whole|slide */
    DG_EVAL_WHOLE = 0,
    DG_EVAL_SLIDE = 1
} dg_eval_mode;

typedef struct dg_config {
    char *path;              /* the file read ("" when none) */
    char *name;              /* its stem: the default run-directory prefix */
    dg_task task;            /* segmentation when data.sources is set,
                                classification when data.dataset is */
    /* [data] */
    char *sources;           /* "reader:root, ..." (segmentation) */
    char *targets;           /* "reader:root, ..." (segmentation) */
    char *source_split;      /* split of the sources used for training */
    char *source_val_split;  /* source validation split (SWAD) */
    char *dataset;           /* "domainbed:/path" or "rotated-fmnist" */
    char *test_domains;      /* names or indices, comma separated */
    long data_seed;          /* data.seed */
    char *fmnist_dir;        /* Rotated Fashion-MNIST IDX folder */
    char *split_dir;         /* GTAV/SYNTHIA split lists */
    int on_bad_sample;       /* dg_bad_sample_policy: fail | skip */
    long workers;            /* loader threads */
    long prefetch;           /* queued batches (0: 2 per worker) */
    long crop_size;          /* segmentation training crop (square) */
    double scale_min, scale_max;
    bool flip;
    double jitter_p, brightness, contrast, saturation, hue;
    bool blur;
    double blur_sigma_min, blur_sigma_max;
    double class_uniform_pct;
    long class_uniform_tile;
    long eval_height;        /* Mapillary evaluation height */
    long image_size;         /* classification input size (DomainBed) */
    bool augment;            /* classification training augmentation */
    /* [model] */
    char *model;
    char *pretrained;
    long output_stride;
    bool aux;
    double aux_weight;
    bool freeze_bn;
    bool sync_bn;   /* data-parallel jobs: BatchNorm statistics of the whole batch */
    int winograd;          /* DG_WINOGRAD_AUTO | _ON | _OFF (nets/model.h) */
    double dropout;
    /* [optim] */
    char *method;
    char *base;
    double lr;
    char *schedule;
    double poly_power;
    long warmup_steps;
    double lr_min;
    dg_method_cfg optim;     /* every other [optim] key (docs/algorithms.md §16) */
    /* [train] */
    long seed;
    long iterations;
    long batch_size;         /* samples per source domain per step */
    bool resume;
    int nan_policy;          /* dg_nan_policy */
    int dtype;               /* dg_compute_dtype (nets/core/wlayer.h) */
    long log_every;
    long eval_every;
    long checkpoint_every;
    long threads;            /* 0: OMP_NUM_THREADS or all cores */
    /* [eval] */
    long eval_batch_size;    /* eval.batch_size */
    int eval_mode;           /* eval.mode: dg_eval_mode */
    long eval_window;        /* eval.window: sliding window side */
    long eval_stride;        /* eval.stride: sliding window step */
    bool eval_flip;          /* eval.flip: mean with the flipped image */
    int val_on;              /* eval.validate: dg_validate_on */
    long val_images;         /* eval.val_images: first N images per set (0: all) */
    /* [output] */
    char *out_dir;           /* output.dir; "" = runs/<name>-<timestamp> */
} dg_config;

/* Fills every key with its default (no file). */
void dg_config_defaults(dg_config *cfg);

/* Reads the file at path over the defaults, then applies the
 * "section.key=value" overrides (n_over of them). cfg is overwritten.
 * Returns DG_STATUS_OK, DG_STATUS_ERR_IO (the file cannot be read) or
 * DG_STATUS_ERR_CONFIG (the first problem: file:line, section and key, or
 * the override, named; logged). */
dg_status dg_config_load(dg_config *cfg, const char *path, int n_over, char *const *over);
/* Which keys dg_config_load_text applies: true to apply [section] key. */
typedef bool (*dg_config_key_filter)(const char *section, const char *key);
/* Parses configuration text (the INI that dg_config_text writes, e.g. a
 * checkpoint's metadata "config") over the defaults, like a file: the keys
 * `want` accepts (NULL: every key) are checked and applied, the others
 * skipped unread, so text from another dgseg version applies where it
 * matters. `name` names the text in the one message of a failure
 * ("NAME:LINE: [optim] la_k: ..."), DG_STATUS_ERR_CONFIG. Nothing is
 * validated across keys (dg_config_validate). */
dg_status dg_config_load_text(dg_config *cfg, const char *text, const char *name,
        dg_config_key_filter want);

/* What a command does with CONFIG and its overrides: dg_config_load, then
 * dg_config_validate. Returns 0 with cfg ready, or the exit code (1: the
 * file cannot be read, 2: a configuration error, logged) with cfg freed. */
int dg_config_load_checked(dg_config *cfg, const char *path, int n_over, char *const *over);

/* Applies one "section.key=value" (what the command line gives). */
dg_status dg_config_set(dg_config *cfg, const char *assignment);

/* Cross-key checks (task from the data keys, method-specific rules such as
 * SAF on segmentation); DG_STATUS_ERR_CONFIG with a message naming the keys. */
dg_status dg_config_validate(dg_config *cfg);

/* Writes the resolved configuration as an INI file (every key). */
void dg_config_write(const dg_config *cfg, FILE *f);

/* The resolved configuration as INI text (dg_free it). portable leaves
 * output.dir and train.resume empty/false: what a checkpoint records, so
 * that its bytes do not depend on where the run lives or how it started. */
char *dg_config_text(const dg_config *cfg, bool portable);

/* Releases the strings and zeroes cfg. */
void dg_config_free(dg_config *cfg);

/* ---- the key reference (`dgseg config`) --------------------------------- */

/* One key of the table as the reference prints it. */
typedef struct dg_config_key_info {
    const char *section;
    const char *key;
    const char *kind;    /* "text", "list" (comma separated), "choice", "integer", "number"
                            or "boolean" */
    char choices[256];   /* a choice's values, "a|b|c"; for an integer or a number the one
                            word it takes besides its range ("none", "adaptive"); else "" */
    char range[64];      /* an integer's or a number's bounds: ">= 1", "> 0", "in (0, 16]";
                            else "" */
    const char *def;     /* the default, as the table writes it */
    bool build_default;  /* def is a path fixed when dgseg was built (data.split_dir) */
    const char *help;    /* one sentence: what the key does, its units, what 0 or "" means */
} dg_config_key_info;

/* The number of keys; dg_config_key_describe takes i in [0, count). */
size_t dg_config_key_count(void);

/* Key i of the table (grouped by section, in the order of
 * dg_config_sections) into *info. */
void dg_config_key_describe(size_t i, dg_config_key_info *info);

/* The sections in file order ("data" ... "output"); *n gets their count. */
const char *const *dg_config_sections(size_t *n);

/* One "reader:root" entry of a dataset list. */
typedef struct dg_dataset_spec {
    char *reader;
    char *root;  /* empty for rotated-fmnist without a folder */
} dg_dataset_spec;

/* Splits a comma-separated "reader:root" list (entries trimmed; a root may
 * itself contain ':'). *out is a new array of *n entries. Returns
 * DG_STATUS_ERR_CONFIG (logged, naming key) for an entry without
 * "reader:". */
dg_status dg_dataset_specs_parse(const char *key, const char *list, dg_dataset_spec **out,
        int *n);
void dg_dataset_specs_free(dg_dataset_spec *specs, int n);

#endif
