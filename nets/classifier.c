/* nets/classifier.c -- see classifier.h. Logits (N, K). */
#include "nets/classifier.h"

#include "nets/onnx.h"

#include <string.h>

#include "nets/core/dropout.h"
#include "nets/core/linear.h"
#include "nets/resnet.h"

typedef struct classifier {
    dg_resnet trunk;    /* output stride 32 */
    dg_pool gap;        /* (N, C4, 1, 1) */
    dg_dropout drop;    /* resnet_dropout */
    dg_linear fc;       /* "classifier": (N, K) */
} classifier;

static void classifier_forward(dg_model *m, dg_ctx *ctx, const dg_pass *p) {
    classifier *net = m->priv;
    dg_resnet_forward(&net->trunk, ctx, p);
    dg_pool_forward(&net->gap, ctx, p);
    dg_dropout_forward(&net->drop, ctx, p);
    dg_linear_forward(&net->fc, ctx, p);
}

static void classifier_backward(dg_model *m, dg_ctx *ctx, const dg_pass *p,
        dnnl_memory_t diff_logits, dnnl_memory_t diff_aux_logits) {
    classifier *net = m->priv;
    (void)diff_aux_logits;
    dg_linear_backward(&net->fc, ctx, p, diff_logits);
    dg_dropout_backward(&net->drop, ctx, p, net->fc.diff_src);
    dg_pool_backward(&net->gap, ctx, p, net->drop.diff_src);
    dnnl_memory_t diff_out[4] = {NULL, NULL, NULL, net->gap.diff_src};
    dg_resnet_backward(&net->trunk, ctx, p, diff_out);
}

static void classifier_free(dg_model *m) {
    classifier *net = m->priv;
    if (!net) return;
    dg_resnet_free(&net->trunk);
    dg_pool_free(&net->gap);
    dg_dropout_free(&net->drop);
    dg_linear_free(&net->fc);
    dg_free(net);
    m->priv = NULL;
}

/* classifier_forward as ONNX nodes (dropout: the identity). */
static const char *classifier_onnx(const dg_model *m, dg_onnx *g, const char *x,
        const float *params, const float *stats) {
    const classifier *net = m->priv;
    const char *l[4];
    dg_resnet_onnx(&net->trunk, g, "featurizer.network", x, params, stats, l);
    const char *y = dg_onnx_global_avgpool(g, "featurizer.gap", l[3]);
    const dg_linear *fc = &net->fc;
    return dg_onnx_linear(g, "classifier", y, fc->cfg.oc, fc->ic, params + fc->w_off,
            params + fc->b_off);
}

static const dg_model_ops classifier_ops = {classifier_forward, classifier_backward,
        classifier_free, classifier_onnx};

void dg_classifier_init(dg_model *m, dg_ctx *ctx, int depth) {
    classifier *net = dg_xcalloc(1, sizeof(*net));
    m->priv = net;
    m->ops = &classifier_ops;
    const dg_model_opts *o = &m->opts;
    const bool tr = o->training;
    dg_resnet_cfg rc = {.depth = depth, .output_stride = 32, .frozen_bn = o->freeze_bn,
            .training = tr};
    dg_resnet_init(&net->trunk, ctx, &m->ps, "featurizer.network", m->src, &rc);
    dg_pool_cfg gp = {.kind = DG_POOL_GLOBAL_AVG, .training = tr};
    dg_pool_init(&net->gap, ctx, net->trunk.out[3], &gp);
    dg_dropout_cfg dc = {.p = o->dropout, .mode = DG_DROPOUT_ELEMENT, .ordinal = 0};
    dg_dropout_init(&net->drop, ctx, net->gap.dst, &dc);
    dg_linear_cfg lc = {.oc = o->classes, .bias = true, .training = tr};
    dg_linear_init(&net->fc, ctx, &m->ps, "classifier", net->drop.dst, &lc);
    m->logits = net->fc.dst;
    const double fc_flops = 2.0 * (double)(o->batch * o->classes * net->fc.ic);
    m->flops_forward = net->trunk.flops_forward + fc_flops;
    m->flops_backward = net->trunk.flops_backward + (tr ? 2.0 * fc_flops : 0.0);
}
