/* nets/deeplab.c -- see deeplab.h.
 * Shapes: N batch, H x W input; layer1 at H/4, layer3/4 at H/16 (OS16) or
 * H/8 (OS8) (exact sizes follow the convolution arithmetic).
 *
 * Gradient memory of a training instance: the decoder and the ASPP pass
 * their gradients through the context's held slots (dnnl_util.h) where
 * each is read by the very next layer backward, in backward order:
 *
 *   classifier -> A, fuse2 A -> B, fuse1 B -> A, dcat A -> B (upsampled
 *   ASPP), C (low-level); project -> A; gap -> C, each ASPP branch -> B,
 *   summed into C: layer4's gradient, which the trunk (resnet.c) reads
 *   first. The low-level projection's gradient (layer1's), the auxiliary
 *   head's (layer3's) and the small ASPP-internal ones keep their own
 *   buffers: they outlive the trunk's use of the slots.
 *
 * Forward: fuse1's and fuse2's outputs, read only by the next convolution,
 * share DG_SLOT_ACT and are written again before its backward
 * (dg_cbr_redo); the upsampled ASPP output, read only by the
 * concatenation right after it, lives in DG_SLOT_FWD. */
#include "nets/deeplab.h"

#include "nets/onnx.h"

#include <stdio.h>
#include <string.h>

#include "nets/core/concat.h"
#include "nets/core/dropout.h"
#include "nets/core/resize.h"
#include "nets/resnet.h"

typedef struct deeplab {
    dg_resnet bb;
    dg_pool gap;          /* layer4 -> (N, C4, 1, 1) */
    dg_cbr pool;          /* aspp.pool: 1x1 -> 256, BN, ReLU */
    dg_resize pool_up;    /* (N, 256, 1, 1) -> layer4's size */
    dg_cbr b[4];          /* aspp.b0 (1x1), b1..b3 (3x3 atrous) */
    dg_concat cat;        /* pool, b0, b1, b2, b3: 1280 channels */
    dg_cbr project;       /* aspp.project: 1x1 -> 256 */
    dg_add l4sum[4];      /* the five gradients of layer4's output */
    dg_cbr low;           /* decoder.low: layer1 -> 48 */
    dg_resize up;         /* ASPP output -> layer1's size */
    dg_concat dcat;       /* upsampled ASPP, low: 304 channels */
    dg_cbr fuse1, fuse2;  /* decoder.fuse1/2: 3x3 -> 256 */
    dg_conv classifier;   /* 1x1 -> K, bias */
    dg_resize final_up;   /* -> (N, K, H, W) */
    bool aux;
    dg_cbr aux_cbr;       /* aux.conv (3x3 -> 512, bias) + aux.bn + ReLU */
    dg_dropout aux_drop;  /* channel dropout */
    dg_conv aux_cls;      /* aux.classifier: 1x1 -> K, bias */
    size_t head_off;      /* the first parameter after the backbone's: ASPP,
                             decoder, classifier and aux head lie above it */
} deeplab;

static void deeplab_forward(dg_model *m, dg_ctx *ctx, const dg_pass *p) {
    deeplab *net = m->priv;
    dg_resnet_forward(&net->bb, ctx, p);
    dg_pool_forward(&net->gap, ctx, p);
    dg_cbr_forward(&net->pool, ctx, p);
    dg_resize_forward(&net->pool_up, ctx, p);
    for (int i = 0; i < 4; i++) dg_cbr_forward(&net->b[i], ctx, p);
    dg_concat_forward(&net->cat, ctx, p);
    dg_cbr_forward(&net->project, ctx, p);
    dg_cbr_forward(&net->low, ctx, p);
    dg_resize_forward(&net->up, ctx, p);
    dg_concat_forward(&net->dcat, ctx, p);
    dg_cbr_forward(&net->fuse1, ctx, p);
    dg_cbr_forward(&net->fuse2, ctx, p);
    dg_conv_forward(&net->classifier, ctx, p);
    dg_resize_forward(&net->final_up, ctx, p);
    if (!net->aux) return;
    dg_cbr_forward(&net->aux_cbr, ctx, p);
    dg_dropout_forward(&net->aux_drop, ctx, p);
    dg_conv_forward(&net->aux_cls, ctx, p);
}

static void deeplab_backward(dg_model *m, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_logits,
        dnnl_memory_t diff_aux_logits) {
    deeplab *net = m->priv;
    dnnl_memory_t diff_out[4] = {NULL, NULL, NULL, NULL};
    if (net->aux) {
        dg_conv_backward(&net->aux_cls, ctx, p, diff_aux_logits);
        dg_dropout_backward(&net->aux_drop, ctx, p, net->aux_cls.diff_src);
        dg_cbr_backward(&net->aux_cbr, ctx, p, net->aux_drop.diff_src);
        diff_out[2] = net->aux_cbr.diff_src;
    }
    /* Decoder, in reverse. */
    dg_resize_backward(&net->final_up, ctx, p, diff_logits);
    dg_cbr_redo(&net->fuse2, ctx, p, &net->classifier);
    dg_conv_backward(&net->classifier, ctx, p, net->final_up.diff_src);
    dg_cbr_redo(&net->fuse1, ctx, p, &net->fuse2.conv);
    dg_cbr_backward(&net->fuse2, ctx, p, net->classifier.diff_src);
    dg_cbr_backward(&net->fuse1, ctx, p, net->fuse2.diff_src);
    dg_concat_backward(&net->dcat, ctx, p, net->fuse1.diff_src);
    dg_cbr_backward(&net->low, ctx, p, net->dcat.diff_src[1]);
    diff_out[0] = net->low.diff_src;
    dg_resize_backward(&net->up, ctx, p, net->dcat.diff_src[0]);
    /* ASPP, in reverse; layer4's output feeds five branches. */
    dg_cbr_backward(&net->project, ctx, p, net->up.diff_src);
    dg_concat_backward(&net->cat, ctx, p, net->project.diff_src);
    dg_resize_backward(&net->pool_up, ctx, p, net->cat.diff_src[0]);
    dg_cbr_backward(&net->pool, ctx, p, net->pool_up.diff_src);
    dg_pool_backward(&net->gap, ctx, p, net->pool.diff_src);
    dnnl_memory_t g = net->gap.diff_src;
    for (int i = 0; i < 4; i++) {
        dg_cbr_backward(&net->b[i], ctx, p, net->cat.diff_src[i + 1]);
        dg_add_sum(&net->l4sum[i], ctx, g, net->b[i].diff_src);
        g = net->l4sum[i].dst;
    }
    diff_out[3] = g;
    dg_pass_grad_ready(p, ctx, net->head_off);
    dg_resnet_backward(&net->bb, ctx, p, diff_out);
}

static void deeplab_free(dg_model *m) {
    deeplab *net = m->priv;
    if (!net) return;
    dg_resnet_free(&net->bb);
    dg_pool_free(&net->gap);
    dg_cbr_free(&net->pool);
    dg_resize_free(&net->pool_up);
    for (int i = 0; i < 4; i++) {
        dg_cbr_free(&net->b[i]);
        dg_add_free(&net->l4sum[i]);
    }
    dg_concat_free(&net->cat);
    dg_cbr_free(&net->project);
    dg_cbr_free(&net->low);
    dg_resize_free(&net->up);
    dg_concat_free(&net->dcat);
    dg_cbr_free(&net->fuse1);
    dg_cbr_free(&net->fuse2);
    dg_conv_free(&net->classifier);
    dg_resize_free(&net->final_up);
    dg_cbr_free(&net->aux_cbr);
    dg_dropout_free(&net->aux_drop);
    dg_conv_free(&net->aux_cls);
    dg_free(net);
    m->priv = NULL;
}

/* deeplab_forward as ONNX nodes (the auxiliary head left out). */
static const char *deeplab_onnx(const dg_model *m, dg_onnx *g, const char *x, const float *params,
        const float *stats) {
    const deeplab *net = m->priv;
    const char *l[4];
    dg_resnet_onnx(&net->bb, g, "backbone", x, params, stats, l);
    const char *pooled = dg_onnx_global_avgpool(g, "aspp.gap", l[3]);
    const char *cat[5];
    cat[0] = dg_cbr_onnx(&net->pool, g, "aspp.pool.conv", pooled, params, stats);
    cat[0] = dg_onnx_resize_like(g, "aspp.pool.up", cat[0], l[3]);
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof(name), "aspp.b%d.conv", i);
        cat[i + 1] = dg_cbr_onnx(&net->b[i], g, name, l[3], params, stats);
    }
    const char *y = dg_onnx_concat(g, "aspp.cat", 5, cat);
    y = dg_cbr_onnx(&net->project, g, "aspp.project.conv", y, params, stats);
    const char *low = dg_cbr_onnx(&net->low, g, "decoder.low.conv", l[0], params, stats);
    const char *dcat[2] = {dg_onnx_resize_like(g, "decoder.up", y, l[0]), low};
    y = dg_onnx_concat(g, "decoder.cat", 2, dcat);
    y = dg_cbr_onnx(&net->fuse1, g, "decoder.fuse1.conv", y, params, stats);
    y = dg_cbr_onnx(&net->fuse2, g, "decoder.fuse2.conv", y, params, stats);
    const dg_conv *c = &net->classifier;
    y = dg_onnx_conv(g, "classifier", y, c->cfg.oc, c->src_dims[1], c->cfg.k, c->cfg.stride,
            c->cfg.pad, c->cfg.dilation, params + c->w_off, params + c->b_off);
    return dg_onnx_resize_like(g, "classifier.up", y, x);
}

static const dg_model_ops deeplab_ops = {deeplab_forward, deeplab_backward, deeplab_free,
        deeplab_onnx};

/* Head convolutions: Kaiming-normal with fan_in, biases 0 (docs/datasets.md §7.1). */
static void head_init(dg_model *m, const dg_conv *c, const char *weight_name) {
    dg_params_set_init(&m->ps, weight_name, DG_INIT_NORMAL,
            dg_init_kaiming_std(c->src_dims[1] * c->cfg.k * c->cfg.k));
    m->flops_forward += dg_conv_flops_forward(c);
    m->flops_backward += dg_conv_flops_backward(c);
}

/* act: the output is read only by the next convolution (DG_SLOT_ACT,
 * dg_cbr_redo before that convolution's backward). */
static void head_cbr(dg_model *m, dg_ctx *ctx, dg_cbr *u, const char *prefix, dnnl_memory_t src,
        const dg_conv_cfg *cc, bool act) {
    const dg_bn_cfg bc = {.relu = true, .frozen = m->opts.freeze_bn,
            .dst_slot = act && cc->training ? DG_SLOT_ACT : DG_SLOT_OWN};
    dg_cbr_init(u, ctx, &m->ps, prefix, "conv", "bn", src, cc, &bc);
    char name[128];
    snprintf(name, sizeof(name), "%s.conv.weight", prefix);
    head_init(m, &u->conv, name);
}

static void resize_to(dg_resize *r, dg_ctx *ctx, dnnl_memory_t src, dnnl_memory_t like,
        dnnl_format_tag_t tag, int dst_slot) {
    int64_t dims[4];
    dg_mem_dims4(like, dims);
    dg_resize_cfg rc = {.oh = dims[2], .ow = dims[3], .align_corners = true, .tag = tag,
            .dst_slot = dst_slot};
    dg_resize_init(r, ctx, src, &rc);
}

void dg_deeplab_init(dg_model *m, dg_ctx *ctx, int depth) {
    deeplab *net = dg_xcalloc(1, sizeof(*net));
    m->priv = net;
    m->ops = &deeplab_ops;
    const dg_model_opts *o = &m->opts;
    const bool tr = o->training;
    /* Gradient slots: see the top of this file. */
    const int sA = tr ? DG_SLOT_GRAD_A : DG_SLOT_OWN, sB = tr ? DG_SLOT_GRAD_B : DG_SLOT_OWN;
    const int sC = tr ? DG_SLOT_GRAD_C : DG_SLOT_OWN;
    const int os = o->output_stride ? o->output_stride : 16;
    DG_ASSERT(os == 16 || os == 8);
    dg_resnet_cfg rc = {.depth = depth, .output_stride = os, .frozen_bn = o->freeze_bn,
            .training = tr};
    dg_resnet_init(&net->bb, ctx, &m->ps, "backbone", m->src, &rc);
    net->head_off = m->ps.d;
    m->flops_forward = net->bb.flops_forward;
    m->flops_backward = net->bb.flops_backward;
    dnnl_memory_t l1 = net->bb.out[0], l3 = net->bb.out[2], l4 = net->bb.out[3];

    /* ASPP (concatenation order: pool, b0, b1, b2, b3). */
    dg_pool_cfg gp = {.kind = DG_POOL_GLOBAL_AVG, .training = tr, .diff_slot = sC};
    dg_pool_init(&net->gap, ctx, l4, &gp);
    dg_conv_cfg c1 = {.oc = 256, .k = 1, .stride = 1, .dilation = 1, .training = tr};
    head_cbr(m, ctx, &net->pool, "aspp.pool", net->gap.dst, &c1, false);
    resize_to(&net->pool_up, ctx, net->pool.dst, l4, dnnl_format_tag_undef, DG_SLOT_OWN);
    dg_conv_cfg cb0 = c1;
    cb0.diff_slot = sB;
    head_cbr(m, ctx, &net->b[0], "aspp.b0", l4, &cb0, false);
    const int64_t rate0 = os == 16 ? 6 : 12;
    for (int i = 1; i < 4; i++) {
        char prefix[16];
        snprintf(prefix, sizeof(prefix), "aspp.b%d", i);
        dg_conv_cfg c3 = {.oc = 256, .k = 3, .stride = 1, .pad = rate0 * i,
                .dilation = rate0 * i, .training = tr, .diff_slot = sB};
        head_cbr(m, ctx, &net->b[i], prefix, l4, &c3, false);
    }
    dnnl_memory_t parts[5] = {net->pool_up.dst, net->b[0].dst, net->b[1].dst, net->b[2].dst,
            net->b[3].dst};
    dg_concat_init(&net->cat, ctx, 5, parts, NULL);
    dg_conv_cfg cp = c1;
    cp.diff_slot = sA;
    head_cbr(m, ctx, &net->project, "aspp.project", net->cat.dst, &cp, false);

    /* Decoder (concatenation order: upsampled ASPP, low-level). */
    dg_conv_cfg c48 = {.oc = 48, .k = 1, .stride = 1, .dilation = 1, .training = tr};
    head_cbr(m, ctx, &net->low, "decoder.low", l1, &c48, false);
    /* read only by the concatenation right after it */
    resize_to(&net->up, ctx, net->project.dst, l1, dnnl_format_tag_undef,
            tr ? DG_SLOT_FWD : DG_SLOT_OWN);
    dnnl_memory_t dparts[2] = {net->up.dst, net->low.dst};
    const int dcat_slots[2] = {sB, sC};
    dg_concat_init(&net->dcat, ctx, 2, dparts, dcat_slots);
    dg_conv_cfg c3 = {.oc = 256, .k = 3, .stride = 1, .pad = 1, .dilation = 1, .training = tr,
            .diff_slot = sA};
    head_cbr(m, ctx, &net->fuse1, "decoder.fuse1", net->dcat.dst, &c3, true);
    c3.diff_slot = sB;
    head_cbr(m, ctx, &net->fuse2, "decoder.fuse2", net->fuse1.dst, &c3, true);
    dg_conv_cfg cls = {.oc = o->classes, .k = 1, .stride = 1, .dilation = 1, .bias = true,
            .training = tr, .diff_slot = sA};
    dg_conv_init(&net->classifier, ctx, &m->ps, "classifier", net->fuse2.dst, &cls);
    cls.diff_slot = DG_SLOT_OWN;
    head_init(m, &net->classifier, "classifier.weight");
    /* Channels last: the classes unpadded at full resolution (a channel
     * block would pad 19 classes to 32 in the logits and the loss's
     * gradient). */
    resize_to(&net->final_up, ctx, net->classifier.dst, m->src, dnnl_nhwc, DG_SLOT_OWN);
    m->logits = net->final_up.dst;

    if (tr) {
        /* gap's gradient + b0 + b1 + b2 + b3, summed left to right. */
        const dnnl_memory_desc_t *acc = dg_mem_md(net->gap.diff_src);
        for (int i = 0; i < 4; i++) {
            dg_add_cfg ac = {.in_place = true};
            dg_add_init_md(&net->l4sum[i], ctx, acc, dg_mem_md(net->b[i].diff_src), &ac);
        }
    }
    net->aux = o->aux;
    if (!o->aux) return;
    dg_conv_cfg ca = {.oc = 512, .k = 3, .stride = 1, .pad = 1, .dilation = 1, .bias = true,
            .training = tr};
    head_cbr(m, ctx, &net->aux_cbr, "aux", l3, &ca, false);
    dg_dropout_cfg dc = {.p = o->aux_dropout, .mode = DG_DROPOUT_CHANNEL, .ordinal = 0};
    dg_dropout_init(&net->aux_drop, ctx, net->aux_cbr.dst, &dc);
    dg_conv_init(&net->aux_cls, ctx, &m->ps, "aux.classifier", net->aux_drop.dst, &cls);
    head_init(m, &net->aux_cls, "aux.classifier.weight");
    m->aux_logits = net->aux_cls.dst;
}
