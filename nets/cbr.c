/* nets/cbr.c -- see cbr.h. */
#include "nets/cbr.h"

#include "nets/onnx.h"

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
        if (dg_conv_keeps_weights(&u->conv)) {
            const dnnl_memory_desc_t md = dg_md_plain(1, &n_w, dnnl_a);
            u->fold_mem = dg_slot_mem(ctx, &md, DG_SLOT_FOLD);
        } else {
            u->fold_w = dg_xmalloc((size_t)n_w * sizeof(float));
        }
        /* the bias is read at every forward */
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

/* docs/algorithms.md §2.1's eps. */
void dg_cbr_fold(const dg_cbr *u, const float *params, const float *stats, float *w_out,
        float *b_out) {
    const dg_conv *c = &u->conv;
    DG_ASSERT(u->folded);
    const int64_t oc = c->cfg.oc, per = c->src_dims[1] * c->cfg.k * c->cfg.k;
    const float *w = params + c->w_off;
    const float *b = c->cfg.bias ? params + c->b_off : NULL;
    const float *gamma = params + u->bnt.w_off, *beta = params + u->bnt.b_off;
    const float *mean = stats + u->bnt.mean_off, *var = stats + u->bnt.var_off;
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < oc; o++) {
        const float s = (float)((double)gamma[o] / sqrt((double)var[o] + (double)DG_BN_EPS));
        for (int64_t i = 0; i < per; i++) w_out[o * per + i] = w[o * per + i] * s;
        b_out[o] = beta[o] + ((b ? b[o] : 0.f) - mean[o]) * s;
    }
}

const char *dg_cbr_onnx(const dg_cbr *u, dg_onnx *g, const char *name, const char *x,
        const float *params, const float *stats) {
    const dg_conv *c = &u->conv;
    const int64_t oc = c->cfg.oc, ic = c->src_dims[1], k = c->cfg.k;
    float *w = dg_xmalloc((size_t)(oc * ic * k * k) * sizeof(float));
    float *b = dg_xmalloc((size_t)oc * sizeof(float));
    dg_cbr_fold(u, params, stats, w, b);
    const char *y = dg_onnx_conv(g, name, x, oc, ic, k, c->cfg.stride, c->cfg.pad,
            c->cfg.dilation, w, b);
    dg_free(w);
    dg_free(b);
    if (!c->cfg.relu || c->cfg.accumulate) return y;
    char hint[320];
    snprintf(hint, sizeof(hint), "%s.relu", name);
    return dg_onnx_relu(g, hint, y);
}

/* Where the folded weights are: the unit's own buffer or the context's
 * fold slot (pointed at it by the last fold; read by the convolution only
 * when that fold made a new version). */
static float *folded_weights(const dg_cbr *u) {
    return u->fold_mem ? dg_mem_ptr(u->fold_mem) : u->fold_w;
}

void dg_cbr_forward(dg_cbr *u, dg_ctx *ctx, const dg_pass *p) {
    if (u->folded) {
        if (!p->weights_version || p->weights_version != u->fold_version) {
            if (u->fold_mem) dg_slot_point(ctx, u->fold_mem, DG_SLOT_FOLD);
            dg_cbr_fold(u, p->params, p->stats, folded_weights(u), u->fold_b);
            u->fold_version = p->weights_version;
        }
        dg_conv_forward_folded(&u->conv, ctx, folded_weights(u), u->fold_b,
                p->weights_version);
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
    if (u->fold_mem) dnnl_memory_destroy(u->fold_mem);
    dg_bn_free(&u->bn);
    dg_conv_free(&u->conv);
    memset(u, 0, sizeof(*u));
}
