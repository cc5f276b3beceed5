/* optimizers/saf.c -- SAF, sharpness-aware training for free (Du et al.,
 * arXiv 2205.14083; AngusDujw/SAF SAF_train.py), docs/algorithms.md §11.
 *
 * A trajectory loss: the current logits of each training sample are pulled
 * toward the logits the same sample produced E epochs earlier,
 * lambda * tau^2 * KL(softmax(z_old/tau) || softmax(z/tau)), averaged over
 * the B samples of the batch. step: one closure call on the whole batch (the
 * only one, so it carries DG_CLOSURE_BN_UPDATE, §2.3), during which the
 * trainer's closure runs the loss term (dg_method_loss_term), then one base
 * update. Evaluated weights: the live ones. Classification only (P = 1):
 * dg_method_create rejects a segmentation run with the §11 reason.
 *
 * loss_term(lz, e), for each sample b of the batch with id = sample_id[b]:
 *   read slot r = (e - E) mod (E+1); the sample is active when
 *   E_start < e < E_end (strict; E_end = none when saf_end_epoch = -1) and
 *   tag[id][r] = e - E (a sample not drawn in epoch e - E, e.g. a sampler
 *   remainder, has another tag and contributes nothing); then slot
 *   e mod (E+1) takes this batch's logits: Z[id][.] <- z_b, tag <- e (for
 *   every sample, active or not, inside the window or not). E_start >= E - 1
 *   makes e - E >= 0 whenever the window is open. The KL term and its
 *   gradient come from dg_method_kl_distill (method.c), which MESA uses too.
 *
 * Data-parallel jobs (term_whole_batch): every rank runs loss_term on the
 * whole batch's logits, in the whole batch's order, so that every rank's
 * bank is the one process's, and keeps its own samples' rows of diff_z.
 *
 * Owns: priv = the bank Z (N, E+1, C) f32 and tag (N, E+1) int32 (-1 =
 * empty), N = cfg.n_samples (global sample ids), C = cfg.n_classes, both run
 * facts set by the trainer; about N (E+1) (4C + 4) bytes. Checkpoint names
 * (§13): optim.saf.bank [N, E+1, C] F32 and optim.saf.tag [N, E+1] I32 (the
 * writer's generic entry; the safetensors reader has no checked I32 read,
 * so state_load checks name, dtype and shape itself).
 *
 * Shape letters: N training samples, B samples in the batch, C classes,
 * E = saf_epochs_back. */
#include <string.h>

#include "method_impl.h"

typedef struct saf_state {
    float *bank;   /* (N, E+1, C) logits of each sample, slot e mod (E+1) */
    int32_t *tag;  /* (N, E+1) epoch each slot was written in, -1 = empty */
    size_t slots;  /* E + 1 */
    size_t n_rows; /* N */
} saf_state;

static void saf_free(dg_method *m) {
    saf_state *st = m->priv;
    if (!st) return;
    dg_free(st->bank);
    dg_free(st->tag);
}

static void saf_step(dg_method *m, dg_param_set *ps, const dg_closure *cl, float lr) {
    cl->eval(cl->ctx, DG_DOMAIN_ALL, DG_CLOSURE_BN_UPDATE); /* runs saf_loss_term */
    m->base->ops->update(m->base, ps->data, ps->grad, lr);
    m->t++;
}

/* E_start < e < E_end. */
static bool saf_window(const dg_method_cfg *cfg, int epoch) {
    return epoch > cfg->saf_start_epoch && (cfg->saf_end_epoch < 0 || epoch < cfg->saf_end_epoch);
}

/* docs/algorithms.md §11 loss_term, steps 2-9. Serial over the batch: a sample id
 * may occur twice in one batch, and B*C is small. */
static double saf_loss_term(dg_method *m, const dg_logits *lz, int epoch) {
    saf_state *st = m->priv;
    const dg_method_cfg *cfg = &m->cfg;
    const size_t C = (size_t)cfg->n_classes, S = st->slots;
    DG_ASSERT(lz->p == 1 && lz->c == cfg->n_classes && lz->sample_id != NULL && epoch >= 0);
    if (lz->n <= 0) return 0.0;
    const bool window = saf_window(cfg, epoch);
    const long back = (long)epoch - cfg->saf_epochs_back; /* >= 0 inside the window */
    const size_t r = window ? (size_t)back % S : 0, wslot = (size_t)epoch % S;
    const double coef = cfg->saf_lambda / (double)lz->n;
    double sum = 0.0;
    for (int b = 0; b < lz->n; b++) {
        const int64_t id = lz->sample_id[b];
        DG_ASSERT(id >= 0 && (uint64_t)id < st->n_rows);
        const float *zb = lz->z + (size_t)b * C;           /* (C) */
        float *row = st->bank + (size_t)id * S * C;        /* (E+1, C) */
        int32_t *tag = st->tag + (size_t)id * S;           /* (E+1) */
        if (window && tag[r] == back)
            sum += dg_method_kl_distill(row + r * C, 1, zb, 1, lz->diff_z + (size_t)b * C,
                    (int)C, cfg->saf_tau, coef);
        memcpy(row + wslot * C, zb, C * sizeof(*zb));
        tag[wslot] = (int32_t)epoch;
    }
    return cfg->saf_lambda * sum / (double)lz->n;
}

static dg_status saf_state_save(const dg_method *m, dg_tensor_writer *w) {
    const saf_state *st = m->priv;
    const int64_t shape[3] = {(int64_t)st->n_rows, (int64_t)st->slots, m->cfg.n_classes};
    dg_tensor_writer_add_f32(w, "optim.saf.bank", 3, shape, st->bank);
    dg_tensor_writer_add(w, "optim.saf.tag", DG_ST_I32, 2, shape, st->tag);
    return DG_STATUS_OK;
}

/* optim.saf.tag: I32 of shape [N, E+1], each entry -1 or an epoch >= 0. */
static dg_status saf_read_tag(const dg_tensor_reader *r, saf_state *st) {
    static const char name[] = "optim.saf.tag";
    const dg_st_tensor *t = dg_tensor_reader_find(r, name);
    if (!t) {
        dg_log_error("%s: tensor '%s' is missing", r->path, name);
        return DG_STATUS_ERR_MISSING;
    }
    const int64_t shape[2] = {(int64_t)st->n_rows, (int64_t)st->slots};
    if (t->dtype != DG_ST_I32 || t->ndims != 2 || t->shape[0] != shape[0] ||
            t->shape[1] != shape[1]) {
        char got[256], want[256];
        dg_log_error("%s: tensor '%s': %s %s in the file, expected I32 %s", r->path, name,
                dg_st_dtype_name(t->dtype), dg_st_format_shape(got, sizeof(got), t->ndims, t->shape),
                dg_st_format_shape(want, sizeof(want), 2, shape));
        return DG_STATUS_ERR_SHAPE;
    }
    const dg_status s = dg_tensor_reader_read_raw(r, t, st->tag);
    if (s != DG_STATUS_OK) return s;
    for (size_t i = 0; i < st->n_rows * st->slots; i++) {
        if (st->tag[i] < -1) {
            dg_log_error("%s: tensor '%s': entry %zu = %d is neither -1 nor an epoch", r->path,
                    name, i, (int)st->tag[i]);
            return DG_STATUS_ERR_FORMAT;
        }
    }
    return DG_STATUS_OK;
}

static dg_status saf_state_load(dg_method *m, const dg_tensor_reader *r) {
    saf_state *st = m->priv;
    const int64_t shape[3] = {(int64_t)st->n_rows, (int64_t)st->slots, m->cfg.n_classes};
    const dg_status s = dg_tensor_reader_read_f32(r, "optim.saf.bank", 3, shape, st->bank);
    return s != DG_STATUS_OK ? s : saf_read_tag(r, st);
}

static const dg_method_ops saf_ops = {
    .name = "saf",
    .step = saf_step,
    .loss_term = saf_loss_term,
    .term_whole_batch = true,
    .state_save = saf_state_save,
    .state_load = saf_state_load,
    .free = saf_free,
};

/* §16 ranges, the §11 classification-only rule and the run facts. */
static dg_status saf_check(const dg_method_cfg *cfg) {
    if (!(cfg->saf_lambda >= 0.0)) {
        dg_log_error("optim.saf_lambda = %g: must be >= 0", cfg->saf_lambda);
        return DG_STATUS_ERR_CONFIG;
    }
    if (!(cfg->saf_tau > 0.0)) {
        dg_log_error("optim.saf_tau = %g: must be > 0", cfg->saf_tau);
        return DG_STATUS_ERR_CONFIG;
    }
    if (cfg->saf_epochs_back < 1) {
        dg_log_error("optim.saf_epochs_back = %ld: must be >= 1", cfg->saf_epochs_back);
        return DG_STATUS_ERR_CONFIG;
    }
    const dg_status rules = dg_method_cfg_check_rules("saf", cfg, NULL);
    if (rules != DG_STATUS_OK) return rules;
    if (cfg->n_samples < 1 || cfg->n_classes < 1) {
        dg_log_error("optim.method = saf: the training set's sample count (n_samples = %ld) and "
                "class count (n_classes = %d) are not available; the trainer must set both "
                "before creating the method", cfg->n_samples, cfg->n_classes);
        return DG_STATUS_ERR_CONFIG;
    }
    return DG_STATUS_OK;
}

dg_status dg_method_init_saf(dg_method *m, const dg_param_set *ps) {
    (void)ps;
    const dg_status s = saf_check(&m->cfg);
    if (s != DG_STATUS_OK) return s;
    m->ops = &saf_ops;
    saf_state *st = dg_xcalloc(1, sizeof(*st));
    m->priv = st;
    st->n_rows = (size_t)m->cfg.n_samples;
    st->slots = (size_t)m->cfg.saf_epochs_back + 1;
    const size_t C = (size_t)m->cfg.n_classes;
    DG_ASSERT(st->n_rows <= SIZE_MAX / sizeof(float) / st->slots / C);
    st->bank = dg_xcalloc(st->n_rows * st->slots * C, sizeof(*st->bank));
    st->tag = dg_xmalloc(st->n_rows * st->slots * sizeof(*st->tag));
    for (size_t i = 0; i < st->n_rows * st->slots; i++) st->tag[i] = -1;
    return DG_STATUS_OK;
}
