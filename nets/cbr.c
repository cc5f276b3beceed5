/* nets/cbr.c -- see cbr.h. */
#include "nets/cbr.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void dg_cbr_init(dg_cbr *u, dg_ctx *ctx, dg_param_set *ps, const char *prefix,
        const char *conv_name, const char *bn_name, dnnl_memory_t src, const dg_conv_cfg *cc,
        const dg_bn_cfg *bc) {
    memset(u, 0, sizeof(*u));
    DG_ASSERT(!cc->relu && !cc->folded && ((!cc->accumulate && !cc->dst_into) || !cc->training));
    char cname[256], bname[256];
    DG_ASSERT(snprintf(cname, sizeof(cname), "%s.%s", prefix, conv_name) < (int)sizeof(cname));
    DG_ASSERT(snprintf(bname, sizeof(bname), "%s.%s", prefix, bn_name) < (int)sizeof(bname));
    if (!cc->training) {
        dg_conv_cfg fc = *cc;
        fc.folded = true;
        fc.relu = bc->relu;
        dg_conv_init(&u->conv, ctx, ps, cname, src, &fc);
        u->folded = true;
        u->bnt = dg_bn_register(ps, bname, cc->oc);
        const int64_t n_w = cc->oc * u->conv.src_dims[1] * cc->k * cc->k;
        u->fold_w = dg_xmalloc((size_t)n_w * sizeof(float));
        u->fold_b = dg_xmalloc((size_t)cc->oc * sizeof(float));
        u->dst = u->conv.dst;
        return;
    }
    dg_conv_init(&u->conv, ctx, ps, cname, src, cc);
    dg_bn_cfg b = *bc;
    b.training = true;
    b.diff_slot = DG_SLOT_BN_DIFF;
    dg_bn_init(&u->bn, ctx, ps, bname, u->conv.dst, &b);
    u->dst = u->bn.dst;
    u->diff_src = u->conv.diff_src;
}

/* w' = w * s and b' = beta + (b - mean) * s per output channel, with
 * s = gamma / sqrt(var + eps) (docs/algorithms.md §2.1's eps). */
static void fold(dg_cbr *u, const dg_pass *p) {
    const dg_conv *c = &u->conv;
    const int64_t oc = c->cfg.oc, per = c->src_dims[1] * c->cfg.k * c->cfg.k;
    const float *w = p->params + c->w_off;
    const float *b = c->cfg.bias ? p->params + c->b_off : NULL;
    const float *gamma = p->params + u->bnt.w_off, *beta = p->params + u->bnt.b_off;
    const float *mean = p->stats + u->bnt.mean_off, *var = p->stats + u->bnt.var_off;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < oc; o++) {
        const float s = (float)((double)gamma[o] / sqrt((double)var[o] + (double)DG_BN_EPS));
        for (int64_t i = 0; i < per; i++) u->fold_w[o * per + i] = w[o * per + i] * s;
        u->fold_b[o] = beta[o] + ((b ? b[o] : 0.f) - mean[o]) * s;
    }
}

void dg_cbr_forward(dg_cbr *u, dg_ctx *ctx, const dg_pass *p) {
    if (u->folded) {
        if (!p->weights_version || p->weights_version != u->fold_version) {
            fold(u, p);
            u->fold_version = p->weights_version;
        }
        dg_conv_forward_folded(&u->conv, ctx, u->fold_w, u->fold_b, p->weights_version);
        return;
    }
    dg_conv_forward(&u->conv, ctx, p);
    dg_bn_forward(&u->bn, ctx, p);
}

void dg_cbr_backward(dg_cbr *u, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst) {
    dg_bn_backward(&u->bn, ctx, p, diff_dst);
    dg_conv_backward(&u->conv, ctx, p, u->bn.diff_src);
}

void dg_cbr_redo(dg_cbr *u, dg_ctx *ctx, const dg_pass *p, const dg_conv *reader) {
    DG_ASSERT(!u->folded && reader->src == u->dst);
    if (u->bn.cfg.dst_slot == DG_SLOT_OWN || dg_conv_src_in_use(reader) != u->dst) return;
    dg_bn_redo(&u->bn, ctx, p);
}

void dg_cbr_free(dg_cbr *u) {
    dg_free(u->fold_w);
    dg_free(u->fold_b);
    dg_bn_free(&u->bn);
    dg_conv_free(&u->conv);
    memset(u, 0, sizeof(*u));
}
