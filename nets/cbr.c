/* nets/cbr.c -- see cbr.h. */
#include "nets/cbr.h"

#include <stdio.h>
#include <string.h>

void dg_cbr_init(dg_cbr *u, dg_ctx *ctx, dg_param_set *ps, const char *prefix,
        const char *conv_name, const char *bn_name, dnnl_memory_t src, const dg_conv_cfg *cc,
        bool relu, bool frozen) {
    memset(u, 0, sizeof(*u));
    DG_ASSERT(!cc->relu);
    char name[256];
    DG_ASSERT(snprintf(name, sizeof(name), "%s.%s", prefix, conv_name) < (int)sizeof(name));
    dg_conv_init(&u->conv, ctx, ps, name, src, cc);
    dg_bn_cfg bc = {.relu = relu, .frozen = frozen, .training = cc->training};
    DG_ASSERT(snprintf(name, sizeof(name), "%s.%s", prefix, bn_name) < (int)sizeof(name));
    dg_bn_init(&u->bn, ctx, ps, name, u->conv.dst, &bc);
    u->dst = u->bn.dst;
    u->diff_src = u->conv.diff_src;
}

void dg_cbr_forward(dg_cbr *u, dg_ctx *ctx, const dg_pass *p) {
    dg_conv_forward(&u->conv, ctx, p);
    dg_bn_forward(&u->bn, ctx, p);
}

void dg_cbr_backward(dg_cbr *u, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst) {
    dg_bn_backward(&u->bn, ctx, p, diff_dst);
    dg_conv_backward(&u->conv, ctx, p, u->bn.diff_src);
}

void dg_cbr_free(dg_cbr *u) {
    dg_bn_free(&u->bn);
    dg_conv_free(&u->conv);
    memset(u, 0, sizeof(*u));
}
