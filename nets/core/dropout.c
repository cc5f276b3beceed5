/* nets/core/dropout.c -- see dropout.h. Follows PyTorch's dropout
 * (aten/src/ATen/native/Dropout.cpp: bernoulli_(1 - p) noise divided by
 * 1 - p, then multiplied into the input) with the project's counter-based
 * SplitMix64 streams instead of a stateful generator. */
#include "dropout.h"
#include "profile.h"

#include <string.h>

void dg_dropout_init(dg_dropout *l, dg_ctx *ctx, dnnl_memory_t src, const dg_dropout_cfg *cfg) {
    memset(l, 0, sizeof(*l));
    DG_ASSERT(cfg->p >= 0.f && cfg->p < 1.f);
    DG_ASSERT(cfg->mode == DG_DROPOUT_ELEMENT || cfg->mode == DG_DROPOUT_CHANNEL);
    l->cfg = *cfg;
    l->src = src;
    l->scale = (float)(1.0 / (1.0 - (double)cfg->p));
    dg_mem_dims4(src, l->dims);
    l->n_mask = l->dims[0] * l->dims[1];
    if (cfg->mode == DG_DROPOUT_ELEMENT) l->n_mask *= l->dims[2] * l->dims[3];

    dnnl_memory_desc_t want = dg_md_chw_compatible(dg_mem_md(src));
    DG_ASSERT(dg_chw_from_md(&l->v, &want));
    l->dst = dg_mem_new(ctx, &want, DNNL_MEMORY_ALLOCATE);
    l->diff_src = dg_mem_new(ctx, &want, DNNL_MEMORY_ALLOCATE);
    /* Padded channels of blocked layouts are never written again. */
    dg_mem_zero(l->dst);
    dg_mem_zero(l->diff_src);
    l->mask = dg_ctx_calloc(ctx, (size_t)l->n_mask, sizeof(*l->mask), "a dropout mask");
    dg_port_bind_in(&l->src_p, ctx, src, &want);
}

/* d = s (use_mask false) or d = mask ? s * scale : 0 over the logical
 * elements of view v; padded channels are left alone. */
static void apply(const dg_dropout *l, const float *s, float *d, bool use_mask) {
    const dg_chw *v = &l->v;
    const int64_t nblk = (v->c + v->cb - 1) / v->cb;
    const bool chan = l->cfg.mode == DG_DROPOUT_CHANNEL;
    const float scale = l->scale;
    const uint8_t *mask = l->mask;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < v->n; n++)
        for (int64_t b = 0; b < nblk; b++) {
            const int64_t c0 = b * v->cb;
            const int64_t nc = DG_MIN(v->cb, v->c - c0);
            for (int64_t h = 0; h < v->h; h++)
                for (int64_t w = 0; w < v->w; w++) {
                    const int64_t o = v->off0 + n * v->sn + b * v->scb + h * v->sh + w * v->sw;
                    for (int64_t ci = 0; ci < nc; ci++) {
                        const int64_t c = c0 + ci;
                        if (!use_mask) {
                            d[o + ci] = s[o + ci];
                            continue;
                        }
                        const int64_t k = chan ? n * v->c + c
                                               : ((n * v->c + c) * v->h + h) * v->w + w;
                        d[o + ci] = mask[k] ? s[o + ci] * scale : 0.f;
                    }
                }
        }
}

void dg_dropout_forward(dg_dropout *l, dg_ctx *ctx, const dg_pass *p) {
    dg_port_pull(&l->src_p, ctx);
    DG_DNNL(dnnl_stream_wait(ctx->stream));
    const double t0 = dg_profile_begin();
    const float *s = dg_mem_ptr(l->src_p.mem);
    float *d = dg_mem_ptr(l->dst);
    l->masked = p->train;
    if (p->train) {
        dg_rng r;
        dg_rng_init(&r, p->seed, DG_RNG_DROPOUT, l->cfg.ordinal);
        /* a replica's sample n is sample pos[n] of the whole batch: its
         * draws are the ones that sample has there */
        const dg_replicas *rp = p->replicas;
        const int64_t per = l->n_mask / l->dims[0];
        const uint64_t base = p->counter * (uint64_t)(rp ? rp->batch * per : l->n_mask);
        const double prob = (double)l->cfg.p;
        uint8_t *mask = l->mask;
#pragma omp parallel for schedule(static)
        for (int64_t k = 0; k < l->n_mask; k++) {
            const int64_t at = rp ? rp->pos[k / per] * per + k % per : k;
            const double u = (double)(dg_rng_peek(&r, base + (uint64_t)at) >> 11) * 0x1.0p-53;
            mask[k] = u >= prob;
        }
    }
    apply(l, s, d, p->train);
    dg_profile_end("dropout forward", t0);
}

void dg_dropout_backward(dg_dropout *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst) {
    (void)p; /* the mask comes from the last forward, not from the pass */
    dg_port_bind_in(&l->ddst_p, ctx, diff_dst, dg_mem_md(l->dst));
    dg_port_pull(&l->ddst_p, ctx);
    DG_DNNL(dnnl_stream_wait(ctx->stream));
    const double t0 = dg_profile_begin();
    apply(l, dg_mem_ptr(l->ddst_p.mem), dg_mem_ptr(l->diff_src), l->masked);
    dg_profile_end("dropout backward", t0);
}

void dg_dropout_free(dg_dropout *l) {
    dg_port_free(&l->src_p);
    dg_port_free(&l->ddst_p);
    dnnl_memory_destroy(l->dst);
    dnnl_memory_destroy(l->diff_src);
    dg_free(l->mask);
    memset(l, 0, sizeof(*l));
}
