/* optimizers/mesa.c -- MESA, the memory-efficient sharpness-aware variant
 * of SAF (Du et al., arXiv 2205.14083; AngusDujw/SAF MESA_train.py, timm
 * timm/utils/model_ema.py), docs/algorithms.md §12.
 *
 * The teacher is an exponential moving average of the model (parameters and
 * BN statistics). One step:
 *   1. z_T <- infer(w_T, s_T) on the whole batch (eval mode, no gradient),
 *      only when the term is active for the closure's epoch
 *      (E_start < e < E_end, strict; E_end = none when mesa_end_epoch = -1);
 *   2. one closure call on the whole batch (the only one, with
 *      DG_CLOSURE_BN_UPDATE, §2.3), during which the trainer's closure runs
 *      the loss term: for each sample (classification) or valid pixel
 *      (label != 255) u, lambda * tau^2 * KL(softmax(z_T,u/tau) ||
 *      softmax(z_u/tau)) / n_valid, gradient lambda*tau*(q - p)/n_valid
 *      added to diff_z (dg_method_kl_distill in method.c, shared with SAF);
 *   3. the base update;
 *   4. always: w_T <- beta w_T + (1 - beta) w, s_T <- beta s_T + (1 - beta) s
 *      in f32 with beta and 1 - beta computed in double and cast once. With
 *      beta = 0 this gives w_T = 0*w_T + 1*w = w and with beta = 1
 *      w_T = 1*w_T + 0*w = w_T, both exact in IEEE arithmetic (0*x is +-0,
 *      1*x is x, x + +-0 is x up to the sign of a zero), so neither needs a
 *      special case (§14 invariant 27).
 * The teacher forward therefore sees the pre-step teacher and the EMA the
 * post-update weights. Evaluated weights: the student (live weights), or the
 * teacher with mesa_eval_teacher; the other one is the second row
 * (dg_method_second_weights).
 *
 * Element-wise work (the EMA) is OpenMP-parallel and independent per
 * element; the loss term is computed over fixed blocks of units (boundaries
 * depend only on N*P), each summed serially in double, the block sums added
 * in order: results never depend on the thread count.
 *
 * Owns: priv = teacher parameters w_T (d) and statistics s_T (n_stats),
 * copied from the parameter store at creation, and the teacher-logit
 * scratch z_T (cfg.logits_numel, the trainer's largest N*C*P, same layout as
 * dg_logits.z). Checkpoint names (§13): optim.mesa.teacher [d],
 * optim.mesa.teacher_stats [n_stats] (F32); z_T is scratch.
 *
 * Shape letters: d parameters, n_stats statistics, N samples in the batch,
 * C classes, P = H*W pixels (1 for classification). */
#include "method_impl.h"
#include "nets/core/loss.h"

#define MESA_PAR_MIN 65536     /* element-wise loops below this run serially */
#define MESA_BLOCK 4096        /* units per block of the loss term */
#define MESA_MAX_BLOCKS 512

typedef struct mesa_state {
    float *teacher;       /* (d) w_T */
    float *teacher_stats; /* (n_stats) s_T, at least one element */
    float *zt;            /* (logits_numel) teacher logits of this batch, (N, C, P) */
    size_t zt_numel;
    size_t d, n_stats;
    bool zt_ready;        /* step 1 ran for the batch now being evaluated */
} mesa_state;

static void mesa_free(dg_method *m) {
    mesa_state *st = m->priv;
    if (!st) return;
    dg_free(st->teacher);
    dg_free(st->teacher_stats);
    dg_free(st->zt);
}

/* E_start < e < E_end. */
static bool mesa_active(const dg_method_cfg *cfg, int epoch) {
    return epoch > cfg->mesa_start_epoch && (cfg->mesa_end_epoch < 0 || epoch < cfg->mesa_end_epoch);
}

/* Step 4: t <- b t + omb w; t, w: (n). */
static void mesa_ema(float *t, const float *w, float b, float omb, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= MESA_PAR_MIN)
    for (size_t i = 0; i < n; i++) t[i] = b * t[i] + omb * w[i];
}

static void mesa_step(dg_method *m, dg_param_set *ps, const dg_closure *cl, float lr) {
    mesa_state *st = m->priv;
    DG_ASSERT(ps->d == st->d && ps->n_stats == st->n_stats);
    if (mesa_active(&m->cfg, cl->epoch)) {
        DG_ASSERT(cl->infer != NULL);
        cl->infer(cl->ctx, st->teacher, st->teacher_stats, st->zt);
        st->zt_ready = true;
    }
    cl->eval(cl->ctx, DG_DOMAIN_ALL, DG_CLOSURE_BN_UPDATE); /* runs mesa_loss_term */
    st->zt_ready = false;
    m->base->ops->update(m->base, ps->data, ps->grad, lr);
    const float b = (float)m->cfg.mesa_decay, omb = (float)(1.0 - m->cfg.mesa_decay);
    mesa_ema(st->teacher, ps->data, b, omb, st->d);
    mesa_ema(st->teacher_stats, ps->stats, b, omb, st->n_stats);
    m->t++;
}

/* §12 steps 5-6 over the units u = (n, p) of the batch; element (n, c, p)
 * of z, z_T and diff_z is at (n*C + c)*P + p, label (n, p) at n*P + p. */
static double mesa_loss_term(dg_method *m, const dg_logits *lz, int epoch) {
    mesa_state *st = m->priv;
    if (!mesa_active(&m->cfg, epoch)) return 0.0;
    /* the teacher logits of this very batch, from this step's step 1 */
    DG_ASSERT(st->zt_ready);
    const size_t C = (size_t)lz->c, P = (size_t)lz->p, U = (size_t)lz->n * P;
    DG_ASSERT(lz->n >= 0 && lz->c >= 1 && lz->p >= 1 && U * C <= st->zt_numel);
    if (U == 0 || lz->n_valid <= 0) return 0.0;
    const double tau = m->cfg.mesa_tau, coef = m->cfg.mesa_lambda / (double)lz->n_valid;
    const float *zt = st->zt, *z = lz->z;
    float *diff = lz->diff_z;
    const int32_t *label = lz->label;
    double part[MESA_MAX_BLOCKS];
    size_t nb = (U + MESA_BLOCK - 1) / MESA_BLOCK;
    if (nb > MESA_MAX_BLOCKS) nb = MESA_MAX_BLOCKS;
    const size_t per = (U + nb - 1) / nb;
#pragma omp parallel for schedule(static) if (nb > 1)
    for (size_t k = 0; k < nb; k++) {
        const size_t lo = k * per, hi = DG_MIN(U, lo + per);
        double s = 0.0;
        for (size_t u = lo; u < hi; u++) {
            if (label && dg_loss_is_ignored(label[u], (int64_t)C)) continue;
            const size_t at = (u / P) * C * P + u % P;
            s += dg_method_kl_distill(zt + at, P, z + at, P, diff + at, (int)C, tau, coef);
        }
        part[k] = s;
    }
    double sum = 0.0;
    for (size_t k = 0; k < nb; k++) sum += part[k];
    return m->cfg.mesa_lambda * sum / (double)lz->n_valid;
}

static bool mesa_eval_weights(const dg_method *m, const float **params, const float **stats) {
    const mesa_state *st = m->priv;
    if (!m->cfg.mesa_eval_teacher) return false;
    *params = st->teacher;
    *stats = st->teacher_stats;
    return true;
}

static bool mesa_second_weights(const dg_method *m, const char **label, const float **params,
        const float **stats) {
    const mesa_state *st = m->priv;
    if (m->cfg.mesa_eval_teacher) {
        *label = "student";
        *params = m->base->layout->data;
        *stats = m->base->layout->stats;
    } else {
        *label = "teacher";
        *params = st->teacher;
        *stats = st->teacher_stats;
    }
    return true;
}

static dg_status mesa_state_save(const dg_method *m, dg_tensor_writer *w) {
    const mesa_state *st = m->priv;
    const int64_t d[1] = {(int64_t)st->d}, n_stats[1] = {(int64_t)st->n_stats};
    dg_tensor_writer_add_f32(w, "optim.mesa.teacher", 1, d, st->teacher);
    dg_tensor_writer_add_f32(w, "optim.mesa.teacher_stats", 1, n_stats, st->teacher_stats);
    return DG_STATUS_OK;
}

static dg_status mesa_state_load(dg_method *m, const dg_tensor_reader *r) {
    mesa_state *st = m->priv;
    const int64_t d[1] = {(int64_t)st->d}, n_stats[1] = {(int64_t)st->n_stats};
    dg_status s = dg_tensor_reader_read_f32(r, "optim.mesa.teacher", 1, d, st->teacher);
    if (s == DG_STATUS_OK)
        s = dg_tensor_reader_read_f32(r, "optim.mesa.teacher_stats", 1, n_stats,
                st->teacher_stats);
    return s;
}

static const dg_method_ops mesa_ops = {
    .name = "mesa",
    .step = mesa_step,
    .loss_term = mesa_loss_term,
    .eval_weights = mesa_eval_weights,
    .second_weights = mesa_second_weights,
    .state_save = mesa_state_save,
    .state_load = mesa_state_load,
    .free = mesa_free,
};

/* §16 ranges and the run fact MESA needs. */
static dg_status mesa_check(const dg_method_cfg *cfg) {
    if (!(cfg->mesa_lambda >= 0.0)) {
        dg_log_error("optim.mesa_lambda = %g: must be >= 0", cfg->mesa_lambda);
        return DG_STATUS_ERR_CONFIG;
    }
    if (!(cfg->mesa_tau > 0.0)) {
        dg_log_error("optim.mesa_tau = %g: must be > 0", cfg->mesa_tau);
        return DG_STATUS_ERR_CONFIG;
    }
    if (!(cfg->mesa_decay >= 0.0 && cfg->mesa_decay <= 1.0)) {
        dg_log_error("optim.mesa_decay = %g: must be in [0, 1]", cfg->mesa_decay);
        return DG_STATUS_ERR_CONFIG;
    }
    if (cfg->mesa_start_epoch < 0) {
        dg_log_error("optim.mesa_start_epoch = %ld: must be >= 0", cfg->mesa_start_epoch);
        return DG_STATUS_ERR_CONFIG;
    }
    const dg_status rules = dg_method_cfg_check_rules("mesa", cfg, NULL);
    if (rules != DG_STATUS_OK) return rules;
    if (cfg->logits_numel == 0) {
        dg_log_error("optim.method = mesa: the batch's logit count (logits_numel = 0, the "
                "largest N*C*P) is not available; the trainer must set it before creating "
                "the method");
        return DG_STATUS_ERR_CONFIG;
    }
    return DG_STATUS_OK;
}

dg_status dg_method_init_mesa(dg_method *m, const dg_param_set *ps) {
    const dg_status s = mesa_check(&m->cfg);
    if (s != DG_STATUS_OK) return s;
    m->ops = &mesa_ops;
    mesa_state *st = dg_xcalloc(1, sizeof(*st));
    m->priv = st;
    st->d = ps->d;
    st->n_stats = ps->n_stats;
    st->teacher = dg_method_new_buf(ps->d);
    st->teacher_stats = dg_method_new_buf(ps->n_stats);
    st->zt_numel = m->cfg.logits_numel;
    st->zt = dg_method_new_buf(st->zt_numel);
    dg_vec_copy(st->teacher, ps->data, ps->d);           /* w_T <- w */
    dg_vec_copy(st->teacher_stats, ps->stats, ps->n_stats); /* s_T <- s */
    return DG_STATUS_OK;
}
