/* nets/core/batchnorm.c -- see batchnorm.h. Follows oneDNN's
 * batch_normalization developer guide (v2.6): training forward outputs the
 * batch mean and biased variance, backward (dnnl_backward) reads them, or
 * the global statistics when dnnl_use_global_stats is set; running
 * statistics follow PyTorch's torch/nn/modules/batchnorm.py.
 * Shapes: N batch, C channels, H height, W width. */
#include "batchnorm.h"
#include "chw_lanes.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Forward (and, for training instances, backward) pds of one mode. */
static void build_mode(dg_bn *l, dg_ctx *ctx, int mode, const dnnl_memory_desc_t *data_md) {
    unsigned flags = dnnl_use_scale | dnnl_use_shift;
    if (mode == DG_BN_GLOBAL) flags |= dnnl_use_global_stats;
    if (l->cfg.relu) flags |= dnnl_fuse_norm_relu;
    dnnl_batch_normalization_desc_t fd;
    DG_DNNL(dnnl_batch_normalization_forward_desc_init(&fd,
            l->cfg.training ? dnnl_forward_training : dnnl_forward_inference, data_md,
            DG_BN_EPS, flags));
    l->fwd_pd[mode] = dg_pd_new(ctx, &fd, NULL, NULL);
    dg_prim_init(&l->fwd[mode], ctx, l->fwd_pd[mode]);
    const dnnl_memory_desc_t *ws_md =
            dnnl_primitive_desc_query_md(l->fwd_pd[mode], dnnl_query_workspace_md, 0);
    if (ws_md && dnnl_memory_desc_get_size(ws_md) > 0)
        l->ws[mode] = dg_mem_new(ctx, ws_md, DNNL_MEMORY_ALLOCATE);
    if (!l->cfg.training) return;

    const dnnl_memory_desc_t *dst_md = dg_pd_md(l->fwd_pd[mode], dnnl_query_dst_md, 0);
    dnnl_batch_normalization_desc_t bd;
    DG_DNNL(dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, dst_md, data_md,
            DG_BN_EPS, flags));
    l->bwd_pd[mode] = dg_pd_new(ctx, &bd, NULL, l->fwd_pd[mode]);
    dg_prim_init(&l->bwd[mode], ctx, l->bwd_pd[mode]);
}

dg_bn_tensors dg_bn_register(dg_param_set *ps, const char *name, int64_t c) {
    dg_bn_tensors t;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s.weight", name);
    t.w_off = dg_params_add(ps, buf, 1, &c, DG_PARAM_NO_DECAY | DG_PARAM_ASAM_SCALED,
            DG_INIT_CONST, 1.f);
    snprintf(buf, sizeof(buf), "%s.bias", name);
    t.b_off = dg_params_add(ps, buf, 1, &c, DG_PARAM_NO_DECAY, DG_INIT_CONST, 0.f);
    snprintf(buf, sizeof(buf), "%s.running_mean", name);
    t.mean_off = dg_params_add_stat(ps, buf, 1, &c, 0.f);
    snprintf(buf, sizeof(buf), "%s.running_var", name);
    t.var_off = dg_params_add_stat(ps, buf, 1, &c, 1.f);
    return t;
}

void dg_bn_init(dg_bn *l, dg_ctx *ctx, dg_param_set *ps, const char *name,
        dnnl_memory_t src, const dg_bn_cfg *cfg) {
    memset(l, 0, sizeof(*l));
    l->cfg = *cfg;
    l->src = src;
    dg_mem_dims4(src, l->dims);
    int64_t c = l->dims[1];

    dg_bn_tensors t = dg_bn_register(ps, name, c);
    l->w_off = t.w_off, l->b_off = t.b_off, l->mean_off = t.mean_off, l->var_off = t.var_off;

    /* The primitive normalises in the source's own layout when it is a
     * plain or channel-blocked one, otherwise in nchw behind a reorder. */
    const dnnl_memory_desc_t *src_md = dg_mem_md(src);
    DG_ASSERT(src_md->ndims == 4);
    dnnl_memory_desc_t data_md = dg_md_chw_compatible(src_md);
    dg_port_bind_in(&l->src_p, ctx, src, &data_md);

    bool batch = cfg->training && !cfg->frozen;
    if (batch) build_mode(l, ctx, DG_BN_BATCH, &data_md);
    build_mode(l, ctx, DG_BN_GLOBAL, &data_md);

    dnnl_memory_desc_t x_md = dg_md_plain(1, &c, dnnl_x);
    l->dst = dg_buf_mem(ctx, dg_pd_md(l->fwd_pd[DG_BN_GLOBAL], dnnl_query_dst_md, 0),
            cfg->dst_slot);
    l->scale = dg_mem_new(ctx, &x_md, DNNL_MEMORY_NONE);
    l->shift = dg_mem_new(ctx, &x_md, DNNL_MEMORY_NONE);
    l->run_mean = dg_mem_new(ctx, &x_md, DNNL_MEMORY_NONE);
    l->run_var = dg_mem_new(ctx, &x_md, DNNL_MEMORY_NONE);
    if (batch) {
        DG_ASSERT(dnnl_memory_desc_equal(dg_mem_md(l->dst),
                dg_pd_md(l->fwd_pd[DG_BN_BATCH], dnnl_query_dst_md, 0)));
        l->mean = dg_mem_new(ctx, &x_md, DNNL_MEMORY_ALLOCATE);
        l->var = dg_mem_new(ctx, &x_md, DNNL_MEMORY_ALLOCATE);
    }
    if (!cfg->training) return;

    const dnnl_memory_desc_t *dsrc_md =
            dg_pd_md(l->bwd_pd[DG_BN_GLOBAL], dnnl_query_diff_src_md, 0);
    if (batch) {
        DG_ASSERT(dnnl_memory_desc_equal(dsrc_md,
                dg_pd_md(l->bwd_pd[DG_BN_BATCH], dnnl_query_diff_src_md, 0)));
        DG_ASSERT(dnnl_memory_desc_equal(
                dg_pd_md(l->bwd_pd[DG_BN_GLOBAL], dnnl_query_diff_dst_md, 0),
                dg_pd_md(l->bwd_pd[DG_BN_BATCH], dnnl_query_diff_dst_md, 0)));
    }
    l->diff_src = dg_buf_mem(ctx, dsrc_md, cfg->diff_slot);
    if (batch) {
        /* synchronised statistics: the hand-written sums and correction
         * read src_p.mem and diff_src through one dg_chw view */
        l->syncable = dg_chw_from_md(&l->view, &data_md) &&
                dnnl_memory_desc_equal(dsrc_md, &data_md);
        l->nc = dg_xcalloc((size_t)(2 * l->dims[0] * c), sizeof(*l->nc));
        l->tot = dg_xcalloc((size_t)(2 * c), sizeof(*l->tot));
        l->coef = dg_xcalloc((size_t)(5 * c), sizeof(*l->coef));
    }
    l->diff_scale = dg_mem_new(ctx, &x_md, DNNL_MEMORY_NONE);
    l->diff_shift = dg_mem_new(ctx, &x_md, DNNL_MEMORY_NONE);
}

/* running <- (1 - momentum)*running + momentum*batch, the variance term
 * unbiased (docs/algorithms.md §2.1): var*unbias; C values, accumulated in
 * double. momentum is the pass's bn_momentum when set (cumulative refresh),
 * else 0.1. */
static void update_running(const dg_bn *l, float *stats, double momentum, const double *mean,
        const double *var, double unbias) {
    const int64_t c = l->dims[1];
    const double mu = momentum > 0 ? momentum : DG_BN_MOMENTUM;
    DG_ASSERT(stats != NULL);
    float *rm = stats + l->mean_off, *rv = stats + l->var_off;
    for (int64_t i = 0; i < c; i++) {
        rm[i] = (float)((1.0 - mu) * rm[i] + mu * mean[i]);
        rv[i] = (float)((1.0 - mu) * rv[i] + mu * var[i] * unbias);
    }
}

/* The batch statistics the primitive computed (mean, biased variance) into
 * the running statistics. Alone, unbias = m/(m - 1) with m = N*H*W; with
 * replicas (not sync_bn), the replicas' means of the batch means and of the
 * unbiased batch variances. */
static void update_running_batch(dg_bn *l, dg_ctx *ctx, const dg_pass *p,
        const dg_replicas *r) {
    const int64_t c = l->dims[1];
    const double m = (double)(l->dims[0] * l->dims[2] * l->dims[3]);
    DG_DNNL(dnnl_stream_wait(ctx->stream));
    const float *bm = dg_mem_ptr(l->mean), *bv = dg_mem_ptr(l->var);
    double *mean = l->nc, *var = l->nc + c; /* free between passes */
    for (int64_t i = 0; i < c; i++) {
        mean[i] = bm[i];
        var[i] = bv[i];
    }
    double unbias = m / (m - 1.0);
    if (r) {
        for (int64_t i = 0; i < c; i++) var[i] *= unbias;
        r->sum(mean, (size_t)(2 * c), r->user);
        for (int64_t i = 0; i < 2 * c; i++) mean[i] /= r->n;
        unbias = 1.0;
    }
    update_running(l, p->stats, p->bn_momentum, mean, var, unbias);
}

/* ---- replicas: sums over a dg_chw view --------------------------------------- */

static bool lanes(const dg_chw *v) {
    return (v->cb == 16 || v->cb == 8) && v->sw == v->cb && v->c % v->cb == 0;
}

/* Channel sums over (N, H, W) of x: tot[c] = sum(x), tot[C + c] = sum(x^2);
 * with dy: sum(dy), sum(dy*x). Per (n, c) in double (one work item each),
 * then over n in order: independent of the thread count. */
static void channel_sums(dg_bn *l, const float *x, const float *dy) {
    const dg_chw *v = &l->view;
    const int64_t nn = v->n, c = v->c;
    double *s1 = l->nc, *s2 = l->nc + nn * c;
    if (lanes(v)) {
        const int L = (int)v->cb;
        const int64_t nb = c / L;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < nn * nb; i++) {
            const int64_t n = i / nb, b = i % nb, o = dg_block_at(v, n, b), k = n * c + b * L;
            if (dy && L == 16) dg_lane_sums2(v, x + o, dy + o, 16, s1 + k, s2 + k);
            else if (dy) dg_lane_sums2(v, x + o, dy + o, 8, s1 + k, s2 + k);
            else if (L == 16) dg_lane_sums(v, x + o, 16, s1 + k, s2 + k);
            else dg_lane_sums(v, x + o, 8, s1 + k, s2 + k);
        }
    } else {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < nn * c; i++) {
            const int64_t n = i / c, ch = i % c;
            double a = 0, b = 0;
            for (int64_t h = 0; h < v->h; h++)
                for (int64_t w = 0; w < v->w; w++) {
                    const int64_t o = dg_chw_at(v, n, ch, h, w);
                    const double xx = x[o], d = dy ? dy[o] : xx;
                    a += d;
                    b += d * xx;
                }
            s1[i] = a;
            s2[i] = b;
        }
    }
    for (int64_t ch = 0; ch < c; ch++) {
        double a = 0, b = 0;
        for (int64_t n = 0; n < nn; n++) {
            a += s1[n * c + ch];
            b += s2[n * c + ch];
        }
        l->tot[ch] = a;
        l->tot[c + ch] = b;
    }
}

/* dx <- dx - a[c] - b[c]*((x - mf[c])*rf[c]) in place, the coefficients in
 * l->coef as (one, a, b, mf, rf). */
static void correct_dx(dg_bn *l, const float *x, float *dx) {
    const dg_chw *v = &l->view;
    const int64_t c = v->c;
    const float *one = l->coef, *a = one + c, *b = a + c, *mf = b + c, *rf = mf + c;
    if (lanes(v)) {
        const int L = (int)v->cb;
        const int64_t nb = c / L;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < v->n * nb; i++) {
            const int64_t n = i / nb, k = (i % nb) * L, o = dg_block_at(v, n, i % nb);
            if (L == 16)
                dg_lane_dx(v, x + o, dx + o, dx + o, 16, false, one + k, a + k, b + k, mf + k,
                        rf + k);
            else
                dg_lane_dx(v, x + o, dx + o, dx + o, 8, false, one + k, a + k, b + k, mf + k,
                        rf + k);
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < v->n * c; i++) {
        const int64_t n = i / c, ch = i % c;
        for (int64_t h = 0; h < v->h; h++)
            for (int64_t w = 0; w < v->w; w++) {
                const int64_t o = dg_chw_at(v, n, ch, h, w);
                dx[o] = dx[o] - a[ch] - b[ch] * ((x[o] - mf[ch]) * rf[ch]);
            }
    }
}

/* dst from the pulled src with the given statistics, by the
 * global-statistics primitive (its ReLU workspace, when fused). */
static void forward_with(dg_bn *l, dg_ctx *ctx, dnnl_memory_t mean, dnnl_memory_t var) {
    dg_buf_point(ctx, l->dst, l->cfg.dst_slot);
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, l->src_p.mem},
        {DNNL_ARG_DST, l->dst},
        {DNNL_ARG_SCALE, l->scale},
        {DNNL_ARG_SHIFT, l->shift},
        {DNNL_ARG_MEAN, mean},
        {DNNL_ARG_VARIANCE, var},
        {DNNL_ARG_WORKSPACE, l->ws[DG_BN_GLOBAL]},
    };
    dg_prim_exec(&l->fwd[DG_BN_GLOBAL], ctx, l->ws[DG_BN_GLOBAL] ? 7 : 6, args);
}

/* The synchronised forward (header, "Replicas"). */
static void sync_forward(dg_bn *l, dg_ctx *ctx, const dg_pass *p, const dg_replicas *r) {
    const int64_t c = l->dims[1];
    DG_ASSERT(l->syncable); /* f32 in a dg_chw layout: every training BatchNorm built here */
    dg_port_pull(&l->src_p, ctx);
    DG_DNNL(dnnl_stream_wait(ctx->stream));
    channel_sums(l, dg_mem_ptr(l->src_p.mem), NULL);
    r->sum(l->tot, (size_t)(2 * c), r->user);
    const double m = (double)(l->dims[0] * l->dims[2] * l->dims[3]) * r->n;
    DG_ASSERT(m > 1); /* the trainer refuses a batch of one element per channel */
    double *mean = l->tot, *var = l->tot + c;
    float *mf = dg_mem_ptr(l->mean), *vf = dg_mem_ptr(l->var);
    for (int64_t i = 0; i < c; i++) {
        mean[i] /= m;
        var[i] = fmax(0.0, var[i] / m - mean[i] * mean[i]);
        mf[i] = (float)mean[i];
        vf[i] = (float)var[i];
    }
    forward_with(l, ctx, l->mean, l->var);
    l->last_mode = DG_BN_GLOBAL;
    l->synced = true;
    l->m_total = m;
    l->forwarded = true;
    if (p->update_stats) update_running(l, p->stats, p->bn_momentum, mean, var, m / (m - 1.0));
}

/* The synchronised backward's mean terms, after the global-statistics
 * backward wrote gamma*rstd*dy into diff_src and the replica's sums into
 * diff_shift (sum dy) and diff_scale (sum dy*xhat). */
static void sync_backward_terms(dg_bn *l, dg_ctx *ctx, const dg_pass *p) {
    const dg_replicas *r = p->replicas;
    DG_ASSERT(r && r->sync_bn);
    const int64_t c = l->dims[1];
    DG_DNNL(dnnl_stream_wait(ctx->stream));
    const float *ds = dg_mem_ptr(l->diff_shift), *dsc = dg_mem_ptr(l->diff_scale);
    for (int64_t i = 0; i < c; i++) {
        l->tot[i] = ds[i];
        l->tot[c + i] = dsc[i];
    }
    r->sum(l->tot, (size_t)(2 * c), r->user);
    const float *gamma = p->params + l->w_off, *mf = dg_mem_ptr(l->mean),
                *vf = dg_mem_ptr(l->var);
    float *one = l->coef, *a = one + c, *b = a + c, *m = b + c, *rf = m + c;
    for (int64_t i = 0; i < c; i++) {
        const double rstd = 1.0 / sqrt((double)vf[i] + DG_BN_EPS), g = gamma[i] * rstd;
        one[i] = 1.f;
        a[i] = (float)(g * l->tot[i] / l->m_total);
        b[i] = (float)(g * l->tot[c + i] / l->m_total);
        m[i] = mf[i];
        rf[i] = (float)rstd;
    }
    correct_dx(l, dg_mem_ptr(l->src_p.mem), dg_mem_ptr(l->diff_src));
}

void dg_bn_forward(dg_bn *l, dg_ctx *ctx, const dg_pass *p) {
    int mode = p->train && l->fwd_pd[DG_BN_BATCH] ? DG_BN_BATCH : DG_BN_GLOBAL;
    const dg_replicas *r =
            mode == DG_BN_BATCH && p->replicas ? p->replicas : NULL;
    dg_mem_set_ptr(l->scale, p->params + l->w_off);
    dg_mem_set_ptr(l->shift, p->params + l->b_off);
    if (r && r->sync_bn) {
        sync_forward(l, ctx, p, r);
        return;
    }
    l->synced = false;
    dg_port_pull(&l->src_p, ctx);
    dg_buf_point(ctx, l->dst, l->cfg.dst_slot);
    dnnl_exec_arg_t args[7] = {
        {DNNL_ARG_SRC, l->src_p.mem},
        {DNNL_ARG_DST, l->dst},
        {DNNL_ARG_SCALE, l->scale},
        {DNNL_ARG_SHIFT, l->shift},
    };
    int nargs = 4;
    if (mode == DG_BN_BATCH) {
        /* m = 1 has no unbiased variance (PyTorch refuses it too). */
        DG_ASSERT(l->dims[0] * l->dims[2] * l->dims[3] > 1);
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_MEAN, l->mean};
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_VARIANCE, l->var};
    } else {
        DG_ASSERT(p->stats != NULL);
        dg_mem_set_ptr(l->run_mean, p->stats + l->mean_off);
        dg_mem_set_ptr(l->run_var, p->stats + l->var_off);
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_MEAN, l->run_mean};
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_VARIANCE, l->run_var};
    }
    if (l->ws[mode]) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, l->ws[mode]};
    dg_prim_exec(&l->fwd[mode], ctx, nargs, args);
    l->last_mode = mode;
    l->forwarded = true;
    if (mode == DG_BN_BATCH && p->update_stats) update_running_batch(l, ctx, p, r);
}

void dg_bn_redo(dg_bn *l, dg_ctx *ctx, const dg_pass *p) {
    DG_ASSERT(l->cfg.training && l->forwarded);
    dg_mem_set_ptr(l->scale, p->params + l->w_off);
    dg_mem_set_ptr(l->shift, p->params + l->b_off);
    dnnl_memory_t mean = l->mean, var = l->var;
    if (l->last_mode == DG_BN_GLOBAL && !l->synced) {
        DG_ASSERT(p->stats != NULL);
        dg_mem_set_ptr(l->run_mean, p->stats + l->mean_off);
        dg_mem_set_ptr(l->run_var, p->stats + l->var_off);
        mean = l->run_mean;
        var = l->run_var;
    }
    dg_port_pull(&l->src_p, ctx);
    /* The global-statistics primitive normalises with the given statistics
     * as the batch one does with those it computed; its workspace is its
     * own, so the batch forward's ReLU mask stays for the backward. */
    forward_with(l, ctx, mean, var);
}

void dg_bn_backward(dg_bn *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst) {
    DG_ASSERT(l->cfg.training && l->forwarded);
    const int mode = l->last_mode;
    dg_port_bind_in_transient(&l->ddst_p, ctx, diff_dst,
            dg_pd_md(l->bwd_pd[mode], dnnl_query_diff_dst_md, 0), DG_SLOT_DIFF_DST);
    dg_port_pull(&l->ddst_p, ctx);
    dg_mem_set_ptr(l->scale, p->params + l->w_off);
    dg_mem_set_ptr(l->shift, p->params + l->b_off);
    dg_mem_set_ptr(l->diff_scale, p->grad + l->w_off);
    dg_mem_set_ptr(l->diff_shift, p->grad + l->b_off);
    dnnl_memory_t mean = l->mean, var = l->var;
    if (mode == DG_BN_GLOBAL && !l->synced) {
        DG_ASSERT(p->stats != NULL);
        dg_mem_set_ptr(l->run_mean, p->stats + l->mean_off);
        dg_mem_set_ptr(l->run_var, p->stats + l->var_off);
        mean = l->run_mean;
        var = l->run_var;
    }
    dg_buf_point(ctx, l->diff_src, l->cfg.diff_slot);
    dnnl_exec_arg_t args[10] = {
        {DNNL_ARG_SRC, l->src_p.mem},
        {DNNL_ARG_MEAN, mean},
        {DNNL_ARG_VARIANCE, var},
        {DNNL_ARG_DIFF_DST, l->ddst_p.mem},
        {DNNL_ARG_SCALE, l->scale},
        {DNNL_ARG_SHIFT, l->shift},
        {DNNL_ARG_DIFF_SRC, l->diff_src},
        {DNNL_ARG_DIFF_SCALE, l->diff_scale},
        {DNNL_ARG_DIFF_SHIFT, l->diff_shift},
    };
    int nargs = 9;
    if (l->ws[mode]) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, l->ws[mode]};
    dg_prim_exec(&l->bwd[mode], ctx, nargs, args);
    if (l->synced) sync_backward_terms(l, ctx, p);
}

void dg_bn_free(dg_bn *l) {
    for (int m = 0; m < DG_BN_NMODES; m++) {
        dg_prim_free(&l->fwd[m]);
        dg_prim_free(&l->bwd[m]);
        dnnl_primitive_desc_destroy(l->fwd_pd[m]);
        dnnl_primitive_desc_destroy(l->bwd_pd[m]);
        dnnl_memory_destroy(l->ws[m]);
    }
    dg_port_free(&l->src_p);
    dg_port_free(&l->ddst_p);
    dg_free(l->nc);
    dg_free(l->tot);
    dg_free(l->coef);
    dnnl_memory_t mems[] = {l->dst, l->diff_src, l->mean, l->var, l->run_mean, l->run_var,
            l->scale, l->shift, l->diff_scale, l->diff_shift};
    for (size_t i = 0; i < DG_ARRAY_LEN(mems); i++) dnnl_memory_destroy(mems[i]);
    memset(l, 0, sizeof(*l));
}
