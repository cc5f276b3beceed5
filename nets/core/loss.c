/* nets/core/loss.c -- see loss.h. Cross-entropy follows PyTorch's
 * nll_loss(log_softmax(z), weight, ignore_index) with reduction "mean"
 * (aten/src/ATen/native/LossNLL.cpp, LossNLL2d.cpp); the KL term follows
 * AngusDujw/SAF (docs/algorithms.md §11-12). Both use the log-sum-exp form.
 *
 * Determinism: rows (n, h) are cut into DG_LOSS_CHUNKS fixed chunks; each
 * chunk sums its rows in order and the chunk sums are added in order, so no
 * value depends on how OpenMP spreads the chunks over threads. */
#include "loss.h"

#include <math.h>
#include <string.h>

#define DG_LOSS_CHUNKS 256 /* fixed partial sums per reduction */
#define DG_LOSS_TILE 64    /* pixels of a row processed together */

/* First row of chunk k of `rows` rows. */
static int64_t chunk_row(int64_t rows, int64_t k) { return rows * k / DG_LOSS_CHUNKS; }


static void check_label(int32_t y, int64_t c) {
    DG_ASSERT(dg_loss_is_ignored(y, c) || (y >= 0 && y < c));
}

void dg_loss_ce_init(dg_loss_ce *l, dg_ctx *ctx, dnnl_memory_t logits, const dg_loss_ce_cfg *cfg) {
    memset(l, 0, sizeof(*l));
    DG_ASSERT(cfg->scale > 0.f);
    l->logits = logits;
    l->scale = cfg->scale;
    dg_mem_dims4(logits, l->dims);
    const int64_t c = l->dims[1];
    DG_ASSERT(c >= 1);
    if (cfg->class_weights) {
        l->class_w = dg_xmalloc((size_t)c * sizeof(*l->class_w));
        for (int64_t i = 0; i < c; i++) {
            DG_ASSERT(isfinite(cfg->class_weights[i]) && cfg->class_weights[i] >= 0.f);
            l->class_w[i] = cfg->class_weights[i];
        }
    }
    dnnl_memory_desc_t want = dg_md_chw_compatible(dg_mem_md(logits));
    DG_ASSERT(dg_chw_from_md(&l->v, &want));
    l->diff = dg_mem_new(ctx, &want, DNNL_MEMORY_ALLOCATE);
    /* Padded channels of blocked layouts are never written again. */
    dg_mem_zero(l->diff);
    dg_port_bind_in(&l->logits_p, ctx, logits, &want);
}

/* Valid pixels and the sum of their class weights (chunked, in order). */
static void ce_count(const dg_loss_ce *l, const int32_t *label, int64_t *n_valid, double *wsum) {
    const int64_t rows = l->v.n * l->v.h, w = l->v.w, c = l->v.c;
    const float *cw = l->class_w;
    int64_t cnt[DG_LOSS_CHUNKS];
    double part[DG_LOSS_CHUNKS];
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < DG_LOSS_CHUNKS; k++) {
        int64_t nv = 0;
        double s = 0.0;
        for (int64_t i = chunk_row(rows, k) * w; i < chunk_row(rows, k + 1) * w; i++) {
            const int32_t y = label[i];
            check_label(y, c);
            if (dg_loss_is_ignored(y, c)) continue;
            nv++;
            s += cw ? (double)cw[y] : 1.0;
        }
        cnt[k] = nv;
        part[k] = s;
    }
    *n_valid = 0;
    *wsum = 0.0;
    for (int64_t k = 0; k < DG_LOSS_CHUNKS; k++) *n_valid += cnt[k], *wsum += part[k];
}

/* One row (n, h): writes the gradient coef*w[y]*(softmax - onehot) of its
 * pixels (0 where ignored or coef is 0) and returns sum w[y]*nll. */
static double ce_row(const dg_loss_ce *l, const float *z, float *dz, int64_t n, int64_t h,
        const int32_t *lab, double coef) {
    const dg_chw *v = &l->v;
    const int64_t cb = v->cb, scb = v->scb, sw = v->sw;
    const float *cw = l->class_w;
    double loss = 0.0;
    for (int64_t w0 = 0; w0 < v->w; w0 += DG_LOSS_TILE) {
        const int64_t tw = DG_MIN(DG_LOSS_TILE, v->w - w0);
        const int64_t base = dg_chw_at(v, n, 0, h, w0);
        float mx[DG_LOSS_TILE], inv[DG_LOSS_TILE], g[DG_LOSS_TILE];
        double sum[DG_LOSS_TILE];
        int32_t y[DG_LOSS_TILE];
        for (int64_t w = 0; w < tw; w++) mx[w] = -INFINITY, sum[w] = 0.0;
        for (int64_t c = 0; c < v->c; c++) {
            const float *zc = z + base + (c / cb) * scb + c % cb;
            for (int64_t w = 0; w < tw; w++) mx[w] = fmaxf(mx[w], zc[w * sw]);
        }
        for (int64_t c = 0; c < v->c; c++) {
            const float *zc = z + base + (c / cb) * scb + c % cb;
            for (int64_t w = 0; w < tw; w++) sum[w] += (double)expf(zc[w * sw] - mx[w]);
        }
        for (int64_t w = 0; w < tw; w++) {
            const int32_t yw = lab[w0 + w];
            if (dg_loss_is_ignored(yw, v->c) || coef == 0.0) {
                y[w] = -1, g[w] = 0.f, inv[w] = 0.f;
                continue;
            }
            const double wy = cw ? (double)cw[yw] : 1.0;
            const double lse = (double)mx[w] + log(sum[w]);
            loss += wy * (lse - (double)z[base + (yw / cb) * scb + yw % cb + w * sw]);
            y[w] = yw;
            g[w] = (float)(coef * wy);
            inv[w] = (float)(1.0 / sum[w]);
        }
        for (int64_t c = 0; c < v->c; c++) {
            const int64_t oc = base + (c / cb) * scb + c % cb;
            const float *zc = z + oc;
            float *dc = dz + oc;
            for (int64_t w = 0; w < tw; w++) {
                const float e = expf(zc[w * sw] - mx[w]) * inv[w];
                const float d = g[w] * (e - (c == y[w] ? 1.f : 0.f));
                dc[w * sw] = y[w] < 0 ? 0.f : d;
            }
        }
    }
    return loss;
}

double dg_loss_ce_compute(dg_loss_ce *l, dg_ctx *ctx, const int32_t *label) {
    return dg_loss_ce_compute_part(l, ctx, label, NULL);
}

double dg_loss_ce_compute_part(dg_loss_ce *l, dg_ctx *ctx, const int32_t *label,
        const dg_replicas *r) {
    dg_port_pull(&l->logits_p, ctx);
    DG_DNNL(dnnl_stream_wait(ctx->stream));
    const float *z = dg_mem_ptr(l->logits_p.mem);
    float *dz = dg_mem_ptr(l->diff);
    l->label = label;
    double wsum;
    ce_count(l, label, &l->n_valid, &wsum);
    if (r && r->n > 1) r->sum(&wsum, 1, r->user); /* the whole batch's weight */
    /* No valid pixel (or zero total weight): loss 0, gradient 0, no NaN. */
    const double coef = wsum > 0.0 ? (double)l->scale / wsum : 0.0;
    const int64_t rows = l->v.n * l->v.h;
    double part[DG_LOSS_CHUNKS];
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < DG_LOSS_CHUNKS; k++) {
        double s = 0.0;
        for (int64_t r = chunk_row(rows, k); r < chunk_row(rows, k + 1); r++)
            s += ce_row(l, z, dz, r / l->v.h, r % l->v.h, label + r * l->v.w, coef);
        part[k] = s;
    }
    double total = 0.0;
    for (int64_t k = 0; k < DG_LOSS_CHUNKS; k++) total += part[k];
    l->ce = wsum > 0.0 ? total / wsum : 0.0;
    return (double)l->scale * l->ce;
}

dg_loss_view dg_loss_ce_view(const dg_loss_ce *l) {
    dg_loss_view s;
    memset(&s, 0, sizeof(s));
    s.v = l->v;
    s.z = dg_mem_ptr(l->logits_p.mem);
    s.diff_z = dg_mem_ptr(l->diff);
    s.label = l->label;
    s.n_valid = l->n_valid;
    return s;
}

void dg_loss_ce_free(dg_loss_ce *l) {
    dg_port_free(&l->logits_p);
    dnnl_memory_destroy(l->diff);
    dg_free(l->class_w);
    memset(l, 0, sizeof(*l));
}

double dg_loss_kl_unit(const float *zt, size_t st, const float *zs, float *diff, int64_t cb,
        int64_t scb, int c, double tau, double coef) {
    /* a_k = zt_k/tau, b_k = zs_k/tau; log p_k = a_k - lse(a), log q_k =
     * b_k - lse(b); KL = sum_k p_k (log p_k - log q_k); d(tau^2 KL)/dzs_k =
     * tau (q_k - p_k) */
#define ZS_AT(k) ((size_t)(((k) / cb) * scb + (k) % cb))
    double mt = -INFINITY, ms = -INFINITY;
    for (int k = 0; k < c; k++) {
        mt = fmax(mt, (double)zt[(size_t)k * st] / tau);
        ms = fmax(ms, (double)zs[ZS_AT(k)] / tau);
    }
    double et = 0.0, es = 0.0;
    for (int k = 0; k < c; k++) {
        et += exp((double)zt[(size_t)k * st] / tau - mt);
        es += exp((double)zs[ZS_AT(k)] / tau - ms);
    }
    const double lset = mt + log(et), lses = ms + log(es), g = coef * tau;
    double kl = 0.0;
    for (int k = 0; k < c; k++) {
        const double lp = (double)zt[(size_t)k * st] / tau - lset;
        const double lq = (double)zs[ZS_AT(k)] / tau - lses;
        const double p = exp(lp), q = exp(lq);
        kl += p * (lp - lq);
        diff[ZS_AT(k)] += (float)(g * (q - p));
    }
#undef ZS_AT
    return tau * tau * kl;
}

double dg_loss_kl_add(const dg_loss_view *s, const float *teacher, const int32_t *label,
        double tau, double lambda) {
    DG_ASSERT(tau > 0.0);
    const dg_chw *v = &s->v;
    DG_ASSERT(v->c >= 1);
    const int64_t rows = v->n * v->h, p = v->h * v->w;
    int64_t n_valid = v->n * p;
    if (label) {
        n_valid = 0;
#pragma omp parallel for schedule(static) reduction(+ : n_valid)
        for (int64_t i = 0; i < v->n * p; i++) {
            check_label(label[i], v->c);
            n_valid += !dg_loss_is_ignored(label[i], v->c);
        }
    }
    if (n_valid == 0) return 0.0;
    const double coef = lambda / (double)n_valid;
    double part[DG_LOSS_CHUNKS];
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < DG_LOSS_CHUNKS; k++) {
        double sum = 0.0;
        for (int64_t r = chunk_row(rows, k); r < chunk_row(rows, k + 1); r++) {
            const int64_t n = r / v->h, h = r % v->h;
            for (int64_t w = 0; w < v->w; w++) {
                if (label && dg_loss_is_ignored(label[r * v->w + w], v->c)) continue;
                const float *t = teacher + n * v->c * p + h * v->w + w;
                const int64_t o = dg_chw_at(v, n, 0, h, w);
                sum += dg_loss_kl_unit(t, (size_t)p, s->z + o, s->diff_z + o, v->cb, v->scb,
                        (int)v->c, tau, coef);
            }
        }
        part[k] = sum;
    }
    double total = 0.0;
    for (int64_t k = 0; k < DG_LOSS_CHUNKS; k++) total += part[k];
    return coef * total;
}

static int64_t nearest_src(int64_t i, int64_t in, int64_t out) {
    const float scale = (float)in / (float)out;
    int64_t s = (int64_t)floorf((float)i * scale);
    return s < in - 1 ? s : in - 1;
}

void dg_label_resize_nearest(const int32_t *src, int64_t n, int64_t h, int64_t w, int32_t *dst,
        int64_t oh, int64_t ow) {
    for (int64_t b = 0; b < n; b++)
        for (int64_t y = 0; y < oh; y++) {
            const int32_t *row = src + (b * h + nearest_src(y, h, oh)) * w;
            for (int64_t x = 0; x < ow; x++) dst[(b * oh + y) * ow + x] = row[nearest_src(x, w, ow)];
        }
}
