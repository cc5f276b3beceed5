/* app/evaluate.h -- evaluation as the trainers and `dgseg eval` run it:
 * every segmentation target of a configuration (docs/datasets.md §7.5, §8:
 * whole-image inference at each target's protocol resolution, one confusion
 * histogram per target set) and classification accuracy of one domain
 * split. Weights are any vector laid out like `layout` (a training model's
 * store, or an inference model loaded from a checkpoint). */
#ifndef DG_APP_EVALUATE_H
#define DG_APP_EVALUATE_H

#include "app/config.h"
#include "app/train_data.h"
#include "app/results.h"
#include "data/loader.h"
#include "eval/seg_infer.h"
#include "nets/model.h"

/* What one segmentation target evaluation keeps (strings owned). */
typedef struct dg_eval_target {
    char *name;        /* reader name, "cityscapes" ("gtav val" for validation sets) */
    char *reader;
    char *resolution;  /* "full image", "height 1536, centre crop 1536" */
    char *inference;   /* "whole image", "sliding window 768, stride 512, flip" */
    double ce;         /* mean cross-entropy over the valid pixels */
    dg_seg_result res; /* points into the strings above */
} dg_eval_target;

/* Evaluations in order, as many as a configuration lists (owned). */
typedef struct dg_eval_targets {
    dg_eval_target *v; /* (n) */
    int n, cap;
} dg_eval_targets;

/* Evaluates params/stats (layout `layout`) on every data.targets entry of
 * cfg with model cfg->model and appends one entry each to out (weights
 * label copied into res.weights by pointer: keep it alive). Returns
 * DG_STATUS_OK, or the first dataset/model error (logged; the entries
 * before it stay). */
dg_status dg_eval_seg_targets(const dg_config *cfg, dg_ctx *ctx, const dg_param_set *layout,
        const float *params, const float *stats, const char *weights, dg_eval_targets *out);

/* The general form: every entry of the dataset list `list` (config key
 * `key`, "data.targets" or "data.sources", for messages) on `split` (NULL:
 * each reader's evaluation split, dg_seg_eval_split) and, when max_images >
 * 0, only its first max_images images (dataset order, which is sorted).
 * Validation sets (split != NULL) are named "<reader> <split>". */
dg_status dg_eval_seg_list(const dg_config *cfg, dg_ctx *ctx, const dg_param_set *layout,
        const float *params, const float *stats, const char *weights, const char *key,
        const char *list, const char *split, long max_images, dg_eval_targets *out);

/* The entries' results in order, for the results writers (allocated, one
 * more than t->n; pointing into t: free before t). */
dg_seg_result *dg_eval_targets_results(const dg_eval_targets *t);
/* Frees every entry and the list; zeroes it. */
void dg_eval_targets_free(dg_eval_targets *t);

/* Accuracy of params/stats (laid out like ev, an inference instance of the
 * data's classifier) on the in (out = false) or out split of dataset domain
 * d of td; *ce gets the mean cross-entropy of the same pass. NAN when the
 * split is empty or cannot be read. */
double dg_eval_cls_accuracy(dg_train_data *td, dg_ctx *ctx, dg_model *ev, const float *P,
        const float *Q, int d, bool out, double *ce);

/* Prints the mIoU table (rows = results, columns = targets) to f. */
void dg_eval_print_seg(FILE *f, const dg_eval_target *t, int n);

#endif
