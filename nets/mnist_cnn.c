/* nets/mnist_cnn.c -- see mnist_cnn.h. Input (N, C, 28, 28) for the rotated
 * datasets (any H, W works); logits (N, K). */
#include "nets/mnist_cnn.h"

#include "nets/onnx.h"

#include <stdio.h>
#include <string.h>

#include "nets/core/conv.h"
#include "nets/core/groupnorm.h"
#include "nets/core/linear.h"
#include "nets/core/pool.h"

typedef struct mnist_cnn {
    dg_conv conv[4];  /* conv1..conv4, ReLU fused */
    dg_gn gn[4];      /* bn0..bn3: GroupNorm(8) after each ReLU */
    dg_pool gap;      /* (N, 128, 1, 1) */
    dg_linear fc;     /* classifier: (N, K) */
} mnist_cnn;

static void mnist_forward(dg_model *m, dg_ctx *ctx, const dg_pass *p) {
    mnist_cnn *net = m->priv;
    for (int i = 0; i < 4; i++) {
        dg_conv_forward(&net->conv[i], ctx, p);
        dg_gn_forward(&net->gn[i], ctx, p);
    }
    dg_pool_forward(&net->gap, ctx, p);
    dg_linear_forward(&net->fc, ctx, p);
}

static void mnist_backward(dg_model *m, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_logits,
        dnnl_memory_t diff_aux_logits) {
    (void)diff_aux_logits;
    mnist_cnn *net = m->priv;
    dg_linear_backward(&net->fc, ctx, p, diff_logits);
    dg_pool_backward(&net->gap, ctx, p, net->fc.diff_src);
    dnnl_memory_t diff = net->gap.diff_src;
    for (int i = 3; i >= 0; i--) {
        dg_gn_backward(&net->gn[i], ctx, p, diff);
        dg_conv_backward(&net->conv[i], ctx, p, net->gn[i].diff_src);
        diff = net->conv[i].diff_src;
    }
}

static void mnist_free(dg_model *m) {
    mnist_cnn *net = m->priv;
    if (!net) return;
    dg_linear_free(&net->fc);
    dg_pool_free(&net->gap);
    for (int i = 0; i < 4; i++) {
        dg_gn_free(&net->gn[i]);
        dg_conv_free(&net->conv[i]);
    }
    dg_free(net);
    m->priv = NULL;
}

/* mnist_forward as ONNX nodes: each convolution with its bias and ReLU,
 * then GroupNorm (nets/onnx.h's decomposition). */
static const char *mnist_onnx(const dg_model *m, dg_onnx *g, const char *x, const float *params,
        const float *stats) {
    (void)stats;
    const mnist_cnn *net = m->priv;
    const char *y = x;
    for (int i = 0; i < 4; i++) {
        const dg_conv *c = &net->conv[i];
        char name[64];
        snprintf(name, sizeof(name), "featurizer.conv%d", i + 1);
        y = dg_onnx_conv(g, name, y, c->cfg.oc, c->src_dims[1], c->cfg.k, c->cfg.stride,
                c->cfg.pad, c->cfg.dilation, params + c->w_off, params + c->b_off);
        y = dg_onnx_relu(g, name, y);
        const dg_gn *gn = &net->gn[i];
        snprintf(name, sizeof(name), "featurizer.bn%d", i);
        y = dg_onnx_groupnorm(g, name, y, gn->dims[1], gn->cfg.groups, DG_GN_EPS,
                params + gn->w_off, params + gn->b_off);
    }
    y = dg_onnx_global_avgpool(g, "featurizer.gap", y);
    const dg_linear *fc = &net->fc;
    return dg_onnx_linear(g, "classifier", y, fc->cfg.oc, fc->ic, params + fc->w_off,
            params + fc->b_off);
}

static const dg_model_ops mnist_ops = {mnist_forward, mnist_backward, mnist_free, mnist_onnx};

void dg_mnist_cnn_init(dg_model *m, dg_ctx *ctx) {
    static const int64_t channels[4] = {64, 128, 128, 128};
    static const int64_t strides[4] = {1, 2, 1, 1};
    mnist_cnn *net = dg_xcalloc(1, sizeof(*net));
    m->priv = net;
    m->ops = &mnist_ops;
    const bool tr = m->opts.training;
    dnnl_memory_t src = m->src;
    char name[64];
    for (int i = 0; i < 4; i++) {
        dg_conv_cfg cc = {.oc = channels[i], .k = 3, .stride = strides[i], .pad = 1,
                .dilation = 1, .bias = true, .relu = true, .relu_grad_by_next = true,
                .no_diff_src = i == 0, .training = tr};
        snprintf(name, sizeof(name), "featurizer.conv%d", i + 1);
        dg_conv_init(&net->conv[i], ctx, &m->ps, name, src, &cc);
        /* PyTorch's default conv init: U(+-1/sqrt(fan_in)) for weight and bias. */
        const dg_conv *c = &net->conv[i];
        float bound = dg_init_default_bound(c->src_dims[1] * 9);
        char t[80];
        snprintf(t, sizeof(t), "%s.weight", name);
        dg_params_set_init(&m->ps, t, DG_INIT_UNIFORM, bound);
        snprintf(t, sizeof(t), "%s.bias", name);
        dg_params_set_init(&m->ps, t, DG_INIT_UNIFORM, bound);
        m->flops_forward += dg_conv_flops_forward(c);
        m->flops_backward += dg_conv_flops_backward(c);

        dg_gn_cfg gc = {.groups = 8, .training = tr, .relu_src = true};
        snprintf(name, sizeof(name), "featurizer.bn%d", i);
        dg_gn_init(&net->gn[i], ctx, &m->ps, name, c->dst, &gc);
        src = net->gn[i].dst;
    }
    dg_pool_cfg pc = {.kind = DG_POOL_GLOBAL_AVG, .training = tr};
    dg_pool_init(&net->gap, ctx, src, &pc);
    dg_linear_cfg lc = {.oc = m->opts.classes, .bias = true, .training = tr};
    dg_linear_init(&net->fc, ctx, &m->ps, "classifier", net->gap.dst, &lc);
    double fc_flops = 2.0 * (double)(m->opts.batch * m->opts.classes * net->fc.ic);
    m->flops_forward += fc_flops;
    m->flops_backward += 2.0 * fc_flops;
    m->logits = net->fc.dst;
}
