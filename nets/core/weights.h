/* nets/core/weights.h -- the parameter store in safetensors files
 * (docs/design.md §6): model weights, checkpoints and ImageNet backbones.
 *
 * Saving writes every trainable tensor (ps->tensors) and every statistics
 * tensor (ps->stat_tensors) as F32 under its model name and canonical
 * shape, plus caller-given "__metadata__" pairs (format_version, step,
 * config, ...). Checkpoints add optimizer state ("optim.<name>.<tensor>")
 * to the same writer (dg_weights_add, then the optimizer's state_save,
 * then dg_tensor_writer_write).
 *
 * Loading is strict and all-or-nothing: every file tensor must map to a
 * model tensor of the same shape, and every model tensor must be in the
 * file. All mismatches are reported (one line each, by tensor name) before
 * the load fails; ps is modified only when everything matched and every
 * read succeeded (data is read into scratch copies first).
 *
 * File tensors that are never model tensors, whatever the options:
 * names starting with "optim." (optimizer state) or "fixture." (test
 * fixtures), and "*.num_batches_tracked" (written by PyTorch for every BN). */
#ifndef DG_WEIGHTS_H
#define DG_WEIGHTS_H

#include "params.h"
#include "safetensors.h"

/* One "__metadata__" pair; both strings borrowed. */
typedef struct dg_weights_meta {
    const char *key;
    const char *value;
} dg_weights_meta;

typedef struct dg_weights_load_opts {
    /* Prepended to every file name to form the model name, or NULL:
     * "backbone." maps torchvision's "conv1.weight" to the model's
     * "backbone.conv1.weight". */
    const char *prefix;
    /* (n_ignore) file-name prefixes to skip ("fc." for an ImageNet
     * classifier); borrowed. */
    const char *const *ignore;
    size_t n_ignore;
    /* Model tensors whose names do not start with prefix (heads) may be
     * absent from the file; those under the prefix must all be present. */
    bool allow_missing_outside_prefix;
    /* Accept F16, BF16 and F64 tensors and convert them; otherwise only F32
     * is accepted (full checkpoints must round-trip exactly). */
    bool allow_convert;
} dg_weights_load_opts;

/* Adds every trainable and statistics tensor of ps as F32 to w, borrowing
 * ps->data and ps->stats (they must not change until the write). */
void dg_weights_add(dg_tensor_writer *w, const dg_param_set *ps);

/* Writes ps (dg_weights_add) and the n_meta metadata pairs to path,
 * atomically. Returns DG_STATUS_OK or DG_STATUS_ERR_IO (the previous file at
 * path is then unchanged). */
dg_status dg_weights_save(const char *path, const dg_param_set *ps, const dg_weights_meta *meta,
        size_t n_meta);

/* Loads ps's parameters and statistics from an open reader; opts NULL means
 * strict (no prefix, nothing ignored beyond the fixed rules, F32 only).
 * Returns DG_STATUS_OK; DG_STATUS_ERR_MISSING when the only problems are
 * missing tensors; DG_STATUS_ERR_SHAPE when any tensor is unexpected, of the
 * wrong shape or of a dtype that is not accepted; DG_STATUS_ERR_IO on a read
 * failure. Each problem is logged with the tensor's name (and both shapes
 * or dtypes); on any error ps is unchanged. */
dg_status dg_weights_load_reader(const dg_tensor_reader *r, dg_param_set *ps,
        const dg_weights_load_opts *opts);

/* Opens path (dg_tensor_reader_open: DG_STATUS_ERR_IO / DG_STATUS_ERR_FORMAT
 * for unreadable or malformed files) and loads it as dg_weights_load_reader. */
dg_status dg_weights_load(const char *path, dg_param_set *ps, const dg_weights_load_opts *opts);

#endif
