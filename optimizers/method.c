/* optimizers/method.c -- the method registry (creation by name), the §16
 * configuration defaults, the trainer-facing wrappers (step, schedule step,
 * evaluated and second weights, loss term, finish), the common part of the
 * state I/O (docs/algorithms.md §1, §13, §16) and the KL distillation helper
 * shared by SAF and MESA (§11, §12, checked against §15.7).
 *
 * Owns (per method): the dg_method struct, its base optimizer, buf[0..3]
 * and priv. Borrows: the parameter store given at creation. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "method_impl.h"
#include "nets/core/loss.h"

typedef struct method_entry {
    const char *name;
    dg_status (*init)(dg_method *m, const dg_param_set *ps);
} method_entry;

static const method_entry method_table[] = {
    {"erm", dg_method_init_erm},
    {"lookahead", dg_method_init_lookahead},
    {"sam", dg_method_init_sam},
    {"asam", dg_method_init_asam},
    {"swad", dg_method_init_swad},
    {"dgsam", dg_method_init_dgsam},
    {"lookbehind-sam", dg_method_init_lookbehind_sam},
    {"lookbehind-asam", dg_method_init_lookbehind_asam},
    {"saf", dg_method_init_saf},
    {"mesa", dg_method_init_mesa},
};

void dg_method_cfg_default(dg_method_cfg *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->momentum = 0.9;
    cfg->nesterov = false;
    cfg->weight_decay = 5e-4;
    cfg->wd_all = true;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    cfg->la_k = 15;
    cfg->la_alpha = 0.05;
    cfg->la_endpoint = DG_LA_ENDPOINT_MEAN;
    cfg->la_reg = DG_LA_REG_NONE;
    cfg->la_reg_strength = 0.01;
    cfg->la_schedule_per_cycle = false;
    cfg->la_momentum = DG_LA_MOMENTUM_KEEP;
    cfg->la_bn_refresh = true;
    cfg->la_bn_refresh_final = 500;
    cfg->swad_n_converge = 3;
    cfg->swad_n_tolerance = 6;
    cfg->swad_tolerance_ratio = 0.3;
    cfg->swad_eval_every = 100;
    cfg->swad_early_stop = true;
    cfg->swad_bn_batches = 500;
    cfg->swad_val_images = 200;
    cfg->sam_rho = 0.05;
    cfg->asam_rho = 0.5;
    cfg->asam_eta = 0.01;
    cfg->lb_k = 2;
    cfg->lb_alpha_adaptive = true;
    cfg->lb_alpha = 0.5;
    cfg->lb_reuse_ascent = false;
    cfg->dgsam_rho = 0.05;
    cfg->dgsam_refresh_first = true;
    cfg->dgsam_order = DG_DGSAM_ORDER_SHUFFLE;
    cfg->saf_lambda = 0.3;
    cfg->saf_tau = 5.0;
    cfg->saf_epochs_back = 2;
    cfg->saf_start_epoch = 5;
    cfg->saf_end_epoch = -1;
    cfg->mesa_lambda = 0.8;
    cfg->mesa_tau = 5.0;
    cfg->mesa_decay = 0.9998;
    cfg->mesa_start_epoch = 5;
    cfg->mesa_end_epoch = -1;
    cfg->mesa_eval_teacher = false;
    cfg->n_samples = 0;
    cfg->n_classes = 0;
    cfg->logits_numel = 0;
    cfg->segmentation = false;
}

float *dg_method_new_buf(size_t d) { return dg_xcalloc(d ? d : 1, sizeof(float)); }

static void log_unknown_method(const char *name) {
    char valid[256] = "";
    for (size_t i = 0; i < DG_ARRAY_LEN(method_table); i++) {
        if (i) strncat(valid, ", ", sizeof(valid) - strlen(valid) - 1);
        strncat(valid, method_table[i].name, sizeof(valid) - strlen(valid) - 1);
    }
    dg_log_error("optim.method: unknown method '%s' (valid: %s)", name, valid);
}

dg_status dg_method_cfg_check_rules(const char *method, const dg_method_cfg *c,
        const char *where) {
    const char *w = where ? where : "", *sep = where ? ": " : "";
    if (!strcmp(method, "saf") && c->segmentation) {
        dg_log_error("%s%soptim.method = saf is classification only: its per-sample logit bank "
                     "cannot follow pixels through random scaling, cropping and flipping, and "
                     "would need about 1.7 TB for GTAV (docs/algorithms.md §11); use mesa", w,
                sep);
        return DG_STATUS_ERR_CONFIG;
    }
    if (c->saf_start_epoch < c->saf_epochs_back - 1) {
        dg_log_error("%s%soptim.saf_start_epoch %ld must be >= optim.saf_epochs_back - 1 = %ld "
                     "(the first active epoch must find logits from saf_epochs_back epochs "
                     "before)", w, sep, c->saf_start_epoch, c->saf_epochs_back - 1);
        return DG_STATUS_ERR_CONFIG;
    }
    if (c->saf_end_epoch >= 0 && c->saf_end_epoch <= c->saf_start_epoch) {
        dg_log_error("%s%soptim.saf_end_epoch %ld must be 'none' or > optim.saf_start_epoch %ld",
                w, sep, c->saf_end_epoch, c->saf_start_epoch);
        return DG_STATUS_ERR_CONFIG;
    }
    if (c->mesa_end_epoch >= 0 && c->mesa_end_epoch <= c->mesa_start_epoch) {
        dg_log_error("%s%soptim.mesa_end_epoch %ld must be 'none' or > optim.mesa_start_epoch "
                     "%ld", w, sep, c->mesa_end_epoch, c->mesa_start_epoch);
        return DG_STATUS_ERR_CONFIG;
    }
    if (c->swad_n_tolerance < c->swad_n_converge) {
        dg_log_error("%s%soptim.swad_n_tolerance %ld must be >= optim.swad_n_converge %ld", w,
                sep, c->swad_n_tolerance, c->swad_n_converge);
        return DG_STATUS_ERR_CONFIG;
    }
    return DG_STATUS_OK;
}

dg_status dg_method_create(const char *name, const char *base_name, const dg_method_cfg *cfg,
        const dg_param_set *ps, uint64_t seed, dg_method **out) {
    *out = NULL;
    const method_entry *e = NULL;
    for (size_t i = 0; i < DG_ARRAY_LEN(method_table); i++)
        if (!strcmp(name, method_table[i].name)) e = &method_table[i];
    if (!e) {
        log_unknown_method(name);
        return DG_STATUS_ERR_CONFIG;
    }
    const dg_optim_hparams hp = {
        .momentum = cfg->momentum,
        .nesterov = cfg->nesterov,
        .weight_decay = cfg->weight_decay,
        .wd_all = cfg->wd_all,
        .beta1 = cfg->beta1,
        .beta2 = cfg->beta2,
        .eps = cfg->eps,
    };
    dg_optim *base = NULL;
    dg_status st = dg_optim_create(base_name, &hp, ps, &base);
    if (st != DG_STATUS_OK) return st;

    dg_method *m = dg_xcalloc(1, sizeof(*m));
    m->base = base;
    m->cfg = *cfg;
    dg_rng_init(&m->rng, seed, DG_RNG_DGSAM, 0);
    st = e->init(m, ps);
    if (st != DG_STATUS_OK) {
        dg_method_free(m);
        return st;
    }
    *out = m;
    return DG_STATUS_OK;
}

void dg_method_free(dg_method *m) {
    if (!m) return;
    if (m->ops && m->ops->free) m->ops->free(m);
    for (size_t i = 0; i < DG_ARRAY_LEN(m->buf); i++) dg_free(m->buf[i]);
    dg_free(m->priv);
    dg_optim_free(m->base);
    memset(m, 0, sizeof(*m));
    dg_free(m);
}

void dg_method_step(dg_method *m, dg_param_set *ps, const dg_closure *cl, float lr) {
    m->ops->step(m, ps, cl, lr);
}

long dg_method_sched_step(const dg_method *m, long t) {
    return m->ops->sched_step ? m->ops->sched_step(m, t) : t;
}

void dg_method_eval_weights(const dg_method *m, const dg_param_set *ps, const float **params,
        const float **stats) {
    if (m->ops->eval_weights && m->ops->eval_weights(m, params, stats)) return;
    *params = ps->data;
    *stats = ps->stats;
}

bool dg_method_second_weights(const dg_method *m, const char **label, const float **params,
        const float **stats) {
    if (m->ops->second_weights && m->ops->second_weights(m, label, params, stats)) return true;
    *label = NULL;
    *params = NULL;
    *stats = NULL;
    return false;
}

double dg_method_loss_term(dg_method *m, const dg_logits *lz, int epoch) {
    return m->ops->loss_term ? m->ops->loss_term(m, lz, epoch) : 0.0;
}

double dg_method_kl_distill(const float *zt, size_t st, const float *zs, size_t ss,
        float *diff, int c, double tau, double coef) {
    return dg_loss_kl_unit(zt, st, zs, diff, 1, (int64_t)ss, c, tau, coef);
}

bool dg_method_on_eval(dg_method *m, long t, double source_val_loss) {
    return m->ops->on_eval ? m->ops->on_eval(m, t, source_val_loss) : false;
}

void dg_method_finish(dg_method *m, dg_param_set *ps, const dg_closure *cl) {
    if (m->ops->finish) m->ops->finish(m, ps, cl);
}

dg_status dg_method_state_save(const dg_method *m, dg_tensor_writer *w) {
    char key[96];
    dg_optim_state_save(m->base, w);
    snprintf(key, sizeof(key), "optim.%s.step", m->ops->name);
    dg_tensor_writer_add_scalar_i64(w, key, (int64_t)m->t);
    return m->ops->state_save ? m->ops->state_save(m, w) : DG_STATUS_OK;
}

dg_status dg_method_state_load(dg_method *m, const dg_tensor_reader *r) {
    char key[96];
    dg_status st = dg_optim_state_load(m->base, r);
    if (st != DG_STATUS_OK) return st;
    snprintf(key, sizeof(key), "optim.%s.step", m->ops->name);
    int64_t t = 0;
    st = dg_tensor_reader_read_i64(r, key, 0, NULL, &t);
    if (st != DG_STATUS_OK) return st;
    m->t = (long)t;
    return m->ops->state_load ? m->ops->state_load(m, r) : DG_STATUS_OK;
}
