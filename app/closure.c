/* app/closure.c -- the training closure (see closure.h). */
#define _POSIX_C_SOURCE 200809L /* struct sigaction (app/cli.h) */
#include "app/closure.h"

#include "app/cli.h"
#include "app/dist.h"
#include "app/progress.h"

#include <string.h>

/* Copies between a loss view's layout v and plain (n, C, H*W): to_plain
 * fills dst from src; otherwise dst (layout v) += src (plain). */
static void view_copy(const dg_chw *v, const float *src, float *dst, int64_t n, bool to_plain) {
    const int64_t hw = v->h * v->w;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < n; b++) {
        for (int64_t c = 0; c < v->c; c++) {
            for (int64_t h = 0; h < v->h; h++) {
                for (int64_t w = 0; w < v->w; w++) {
                    size_t pi = (size_t)((b * v->c + c) * hw + h * v->w + w);
                    size_t vi = (size_t)dg_chw_at(v, b, c, h, w);
                    if (to_plain) dst[pi] = src[vi];
                    else dst[vi] += src[pi];
                }
            }
        }
    }
}

/* The replicas of model mm's passes (the whole batch's or the sub-batch
 * instance's), NULL in one process (but for dg_cli_test_replica_stats). */
static const dg_replicas *replicas_of(const dg_train_closure *tc, const dg_model *mm) {
    if (tc->replicas.n < 1) return NULL;
    return mm == tc->m ? &tc->replicas : &tc->sub_replicas;
}

static void dist_sum(double *buf, size_t len, void *user) {
    (void)user;
    dg_dist_allreduce_f64(buf, len);
}

/* Rank r of N holds, of each domain's b samples, the b/N from r*b/N on
 * (data/loader.h "Shares"), domain-major: its sample d*(b/N) + i is sample
 * d*b + r*b/N + i of the whole batch; of a domain's sub-batch, r*b/N + i. */
void dg_train_closure_replicas(dg_train_closure *tc, bool sync_bn) {
    const int n = dg_dist_size(), r = dg_dist_rank();
    if (n < 2 && !dg_cli_test_replica_stats()) return;
    const int64_t local = tc->m->opts.batch, S = tc->n_domains, share = local / S, b = share * n;
    tc->pos = dg_xmalloc((size_t)local * sizeof(*tc->pos));
    tc->sub_pos = dg_xmalloc((size_t)share * sizeof(*tc->sub_pos));
    for (int64_t j = 0; j < local; j++) tc->pos[j] = (j / share) * b + r * share + j % share;
    for (int64_t i = 0; i < share; i++) tc->sub_pos[i] = r * share + i;
    tc->replicas = (dg_replicas){.n = n, .sync_bn = sync_bn, .sum = dist_sum,
            .batch = b * S, .pos = tc->pos};
    tc->sub_replicas = tc->replicas;
    tc->sub_replicas.batch = b;
    tc->sub_replicas.pos = tc->sub_pos;
}

static bool has_term(const dg_train_closure *tc) {
    return tc->method && tc->method->ops->loss_term;
}

/* The term of a method that keeps state of every sample it sees
 * (dg_method_ops.term_whole_batch: SAF's bank) in a job of N > 1 ranks:
 * every rank gathers the whole batch's logits, labels and sample ids, puts
 * them in the whole batch's order (each sample at its replicas position),
 * runs the term on them exactly as one process would, and adds its own
 * samples' rows of the term's gradient into own->diff_z. The value is the
 * whole batch's term on every rank, so only rank 0 returns it (the ranks'
 * losses are summed). */
static double whole_batch_term(dg_method *method, const dg_logits *own, const dg_replicas *rep,
        int epoch) {
    const int N = rep->n;
    const int64_t n = own->n, B = rep->batch;
    DG_ASSERT(N > 1 && n * N == B);
    const size_t row = (size_t)own->c * (size_t)own->p, P = (size_t)own->p;
    int64_t *pos = dg_xmalloc((size_t)B * sizeof(*pos));
    int64_t *id = own->sample_id ? dg_xmalloc((size_t)B * sizeof(*id)) : NULL;
    int32_t *label = own->label ? dg_xmalloc((size_t)B * P * sizeof(*label)) : NULL;
    float *z = dg_xmalloc((size_t)B * row * sizeof(*z));
    float *dz = dg_xcalloc((size_t)B * row, sizeof(*dz));
    /* rank-major first, then each rank's sample j moved to its position */
    int64_t *gid = id ? dg_xmalloc((size_t)B * sizeof(*gid)) : NULL;
    int32_t *glabel = label ? dg_xmalloc((size_t)B * P * sizeof(*glabel)) : NULL;
    float *gz = dg_xmalloc((size_t)B * row * sizeof(*gz));
    dg_dist_allgather(rep->pos, (size_t)n * sizeof(*pos), pos);
    if (id) dg_dist_allgather(own->sample_id, (size_t)n * sizeof(*id), gid);
    if (label) dg_dist_allgather(own->label, (size_t)n * P * sizeof(*label), glabel);
    dg_dist_allgather(own->z, (size_t)n * row * sizeof(*z), gz);
    for (int64_t k = 0; k < B; k++) {
        const int64_t g = pos[k];
        DG_ASSERT(g >= 0 && g < B);
        if (id) id[g] = gid[k];
        if (label) memcpy(label + (size_t)g * P, glabel + (size_t)k * P, P * sizeof(*label));
        memcpy(z + (size_t)g * row, gz + (size_t)k * row, row * sizeof(*z));
    }
    const dg_logits all = {.z = z, .diff_z = dz, .label = label, .sample_id = id, .n = (int)B,
            .c = own->c, .p = own->p, .n_valid = own->n_valid};
    const double term = dg_method_loss_term(method, &all, epoch);
    for (int64_t j = 0; j < n; j++) {
        const float *src = dz + (size_t)rep->pos[j] * row;
        float *dst = own->diff_z + (size_t)j * row;
        for (size_t i = 0; i < row; i++) dst[i] += src[i];
    }
    dg_free(pos);
    dg_free(id);
    dg_free(label);
    dg_free(z);
    dg_free(dz);
    dg_free(gid);
    dg_free(glabel);
    dg_free(gz);
    return dg_dist_is_root() ? term : 0.0;
}

/* Loss and gradient of model mm on its current input; labels (n, P). */
static double forward_backward(dg_train_closure *tc, dg_model *mm, dg_loss_ce *loss,
        dg_loss_ce *aux_loss, int32_t *aux_label, const int32_t *label,
        const int64_t *sample_id, unsigned flags) {
    dg_pass p = dg_pass_train(&tc->m->ps);
    p.update_stats = (flags & DG_CLOSURE_BN_UPDATE) != 0;
    p.replicas = replicas_of(tc, mm);
    p.counter = (uint64_t)tc->step * 64 + (uint64_t)tc->call++;
    dg_model_forward(mm, tc->ctx, &p);
    double l = dg_loss_ce_compute_part(loss, tc->ctx, label, p.replicas);
    if (tc->aux_weight > 0) {
        int64_t ad[4], md[4];
        dg_mem_dims4(mm->aux_logits, ad);
        dg_mem_dims4(mm->logits, md);
        dg_label_resize_nearest(label, md[0], md[2], md[3], aux_label, ad[2], ad[3]);
        l += dg_loss_ce_compute_part(aux_loss, tc->ctx, aux_label, p.replicas);
    }
    if (has_term(tc)) {
        dg_loss_view v = dg_loss_ce_view(loss);
        const int64_t n = mm->opts.batch;
        const size_t nz = (size_t)(n * v.v.c * v.v.h * v.v.w);
        view_copy(&v.v, v.z, tc->z, n, true);
        memset(tc->dz, 0, nz * sizeof(float));
        /* in a data-parallel job the term's mean is over the whole batch's
         * valid units, so that the ranks' terms add up to it (MESA), or the
         * term runs on the whole batch (SAF, whole_batch_term) */
        double n_valid = (double)v.n_valid;
        if (p.replicas) dg_dist_allreduce_f64(&n_valid, 1);
        dg_logits lz = {.z = tc->z, .diff_z = tc->dz, .label = label, .sample_id = sample_id,
                .n = (int)n, .c = (int)v.v.c, .p = (long)(v.v.h * v.v.w),
                .n_valid = (long)n_valid};
        if (p.replicas && p.replicas->n > 1 && tc->method->ops->term_whole_batch)
            l += whole_batch_term(tc->method, &lz, p.replicas, tc->epoch);
        else
            l += dg_method_loss_term(tc->method, &lz, tc->epoch);
        view_copy(&v.v, tc->dz, v.diff_z, n, false);
    }
    /* Data parallelism (§1.1): each rank's loss and gradient are its part
     * of the whole batch's mean (its sum over its samples or pixels divided
     * by the whole batch's count, dg_loss_ce_compute_part), so the whole
     * batch's are their sums over the ranks; the gradient's buckets start
     * summing as backward finishes them. */
    dg_dist_reducer red;
    if (dg_dist_size() > 1) {
        dg_dist_reducer_begin(&red, tc->m->ps.grad, tc->m->ps.d);
        p.grad_ready = dg_dist_reducer_ready;
        p.grad_user = &red;
    }
    dg_model_backward(mm, tc->ctx, &p, loss->diff, tc->aux_weight > 0 ? aux_loss->diff : NULL);
    DG_DNNL(dnnl_stream_wait(tc->ctx->stream));
    if (dg_dist_size() > 1) dg_dist_reducer_end(&red);
    dg_dist_allreduce_f64(&l, 1);
    if (p.counter % 64 == 0) tc->first_loss = l;
    return l;
}

static double tc_eval(void *ctx, int domain, unsigned flags) {
    dg_train_closure *tc = ctx;
    /* one source domain: its sub-batch is the whole batch (DGSAM is then SAM) */
    if (domain == DG_DOMAIN_ALL || (tc->n_domains == 1 && domain == 0 && !tc->has_sub))
        return forward_backward(tc, tc->m, &tc->loss, &tc->aux_loss, tc->aux_label, tc->label,
                tc->sample_id, flags);
    DG_ASSERT(tc->has_sub && domain >= 0 && domain < tc->n_domains);
    dg_model *s = &tc->sub;
    const int64_t b = s->opts.batch;
    const size_t x_per = (size_t)(s->opts.in_channels * s->opts.height * s->opts.width);
    int64_t ld[4];
    dg_mem_dims4(s->logits, ld);
    const size_t p_per = (size_t)(ld[2] * ld[3]);
    memcpy(dg_mem_ptr(s->src), tc->x + (size_t)(domain * b) * x_per,
            (size_t)b * x_per * sizeof(float));
    return forward_backward(tc, s, &tc->sub_loss, &tc->sub_aux_loss, tc->sub_aux_label,
            tc->label + (size_t)(domain * b) * p_per, tc->sample_id + domain * b, flags);
}

static void tc_infer(void *ctx, const float *params, const float *stats, float *logits) {
    dg_train_closure *tc = ctx;
    dg_pass p = dg_pass_eval(&tc->m->ps);
    p.params = params;
    p.stats = (float *)stats;
    dg_model_forward(tc->m, tc->ctx, &p);
    DG_DNNL(dnnl_stream_wait(tc->ctx->stream));
    dg_logits_to_plain(tc->m->logits, tc->m->opts.batch, logits);
}

void dg_logits_to_plain(const_dnnl_memory_t logits, int64_t n, float *dst) {
    dg_chw v;
    const dnnl_memory_desc_t *md;
    DG_DNNL(dnnl_memory_get_memory_desc(logits, &md));
    DG_ASSERT(dg_chw_from_md(&v, md));
    view_copy(&v, dg_mem_ptr(logits), dst, n, true);
}

/* §2.4: train-mode forwards without gradient at params on refresh batches,
 * updating ps->stats with momentum 0.1, or (cumulative) their exact mean.
 * A model without running statistics (the MNIST CNN's GroupNorm) or with
 * frozen BN has nothing to refresh: the forwards would change nothing, so
 * none run and no refresh batch is drawn. */
static void tc_bn_refresh(void *ctx, const float *params, long n_batches, int mode) {
    dg_train_closure *tc = ctx;
    dg_model *m = tc->m;
    if (m->ps.n_stats == 0 || m->opts.freeze_bn) return;
    const size_t nx = (size_t)(m->opts.batch * m->opts.in_channels * m->opts.height *
            m->opts.width);
    float *saved = tc->saved_src;
    memcpy(saved, dg_mem_ptr(m->src), nx * sizeof(float));
    dg_pass p = dg_pass_train(&m->ps);
    p.params = params;
    p.replicas = replicas_of(tc, m);
    dg_task_progress prog;
    if (tc->refresh_progress) dg_task_progress_begin(&prog, "BN refresh", n_batches, "batches/s");
    for (long k = 0; k < n_batches; k++) {
        if (tc->refresh_progress) dg_task_progress_update(&prog, k);
        if (tc->refresh_batch && tc->refresh_batch(tc->refresh_ctx, m) != DG_STATUS_OK) {
            dg_log_warn("BN refresh stopped after %ld of %ld batches (a refresh batch failed)",
                    k, n_batches);
            break;
        }
        tc->refresh_batches++;
        p.bn_momentum = mode == DG_BN_REFRESH_CUMULATIVE ? 1.0 / (double)(k + 1) : 0.0;
        p.counter = UINT64_C(1) << 62 | (uint64_t)tc->refresh_batches;
        dg_model_forward(m, tc->ctx, &p);
    }
    DG_DNNL(dnnl_stream_wait(tc->ctx->stream));
    if (tc->refresh_progress) dg_task_progress_end(&prog);
    memcpy(dg_mem_ptr(m->src), saved, nx * sizeof(float));
}

static void init_losses(dg_train_closure *tc, dg_model *mm, dg_loss_ce *loss,
        dg_loss_ce *aux_loss, int32_t **aux_label) {
    dg_loss_ce_cfg lc = {.scale = 1.f};
    dg_loss_ce_init(loss, tc->ctx, mm->logits, &lc);
    if (tc->aux_weight > 0) {
        dg_loss_ce_cfg ac = {.scale = tc->aux_weight};
        dg_loss_ce_init(aux_loss, tc->ctx, mm->aux_logits, &ac);
        int64_t ad[4];
        dg_mem_dims4(mm->aux_logits, ad);
        *aux_label = dg_xmalloc((size_t)(ad[0] * ad[2] * ad[3]) * sizeof(int32_t));
    }
}

dg_status dg_train_closure_init(dg_train_closure *tc, dg_ctx *ctx, dg_model *m, int n_domains,
        bool sub_batches, float aux_weight) {
    memset(tc, 0, sizeof(*tc));
    tc->ctx = ctx;
    tc->m = m;
    tc->n_domains = n_domains;
    tc->aux_weight = aux_weight;
    if (aux_weight > 0 && !m->aux_logits) {
        dg_log_error("model.aux_weight = %g but model %s has no auxiliary head (model.aux)",
                aux_weight, m->name);
        return DG_STATUS_ERR_CONFIG;
    }
    if (sub_batches && n_domains > 1) {
        if (m->opts.batch % n_domains) {
            dg_log_error("a batch of %lld cannot be split into %d domain sub-batches",
                    (long long)m->opts.batch, n_domains);
            return DG_STATUS_ERR_CONFIG;
        }
        dg_model_opts so = m->opts;
        so.batch = m->opts.batch / n_domains;
        dg_status st = dg_model_create(&tc->sub, ctx, m->name, &so, 0);
        if (st != DG_STATUS_OK) return st;
        DG_ASSERT(tc->sub.ps.d == m->ps.d && tc->sub.ps.n_stats == m->ps.n_stats);
        tc->has_sub = true;
        init_losses(tc, &tc->sub, &tc->sub_loss, &tc->sub_aux_loss, &tc->sub_aux_label);
    }
    init_losses(tc, m, &tc->loss, &tc->aux_loss, &tc->aux_label);
    int64_t ld[4];
    dg_mem_dims4(m->logits, ld);
    const size_t nz = (size_t)(ld[0] * ld[1] * ld[2] * ld[3]);
    tc->z = dg_xmalloc(nz * sizeof(float));
    tc->saved_src = dg_xmalloc((size_t)(m->opts.batch * m->opts.in_channels * m->opts.height *
            m->opts.width) * sizeof(float));
    tc->dz = dg_xmalloc(nz * sizeof(float));
    tc->cl.eval = tc_eval;
    tc->cl.infer = tc_infer;
    tc->cl.bn_refresh = tc_bn_refresh;
    tc->cl.ctx = tc;
    tc->cl.n_domains = n_domains;
    return DG_STATUS_OK;
}

void dg_train_closure_set_batch(dg_train_closure *tc, const float *x, const int32_t *label,
        const int64_t *sample_id, int epoch, long step) {
    dg_model *m = tc->m;
    const size_t nx = (size_t)(m->opts.batch * m->opts.in_channels * m->opts.height *
            m->opts.width);
    if (x != dg_mem_ptr(m->src)) memcpy(dg_mem_ptr(m->src), x, nx * sizeof(float));
    tc->x = x;
    tc->label = label;
    tc->sample_id = sample_id;
    tc->epoch = epoch;
    tc->step = step;
    tc->call = 0;
    tc->cl.epoch = epoch;
}

void dg_train_closure_free(dg_train_closure *tc) {
    dg_loss_ce_free(&tc->loss);
    dg_loss_ce_free(&tc->aux_loss);
    dg_loss_ce_free(&tc->sub_loss);
    dg_loss_ce_free(&tc->sub_aux_loss);
    if (tc->has_sub) dg_model_free(&tc->sub);
    dg_free(tc->aux_label);
    dg_free(tc->sub_aux_label);
    dg_free(tc->z);
    dg_free(tc->dz);
    dg_free(tc->saved_src);
    dg_free(tc->pos);
    dg_free(tc->sub_pos);
    memset(tc, 0, sizeof(*tc));
}
