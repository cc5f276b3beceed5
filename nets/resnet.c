/* nets/resnet.c -- see resnet.h. Topology of torchvision's
 * torchvision/models/resnet.py (v1.5); dilation rule of docs/datasets.md §7.1.
 *
 * Memory of a training instance. Forward: the residual add overwrites the
 * last BN's output (no backward reads it: that BN has no ReLU and its
 * backward reads its input), and a projection shortcut's BN output, read
 * only by the add, lives in DG_SLOT_FWD (the shortcut runs last so
 * that nothing else runs between its BN and the add), and so does the
 * stem's output, read only by the max pooling (whose backward reads its
 * workspace, as the stem BN's ReLU backward does). The BN + ReLU outputs
 * inside a block (conv1's, and conv2's in a bottleneck) are read by the
 * next convolution's forward and by its backward-weights: they share
 * DG_SLOT_ACT and are written again from the kept BN input and statistics
 * just before that backward (dg_cbr_redo; a BN-forward pass each instead
 * of two tensors per block kept). Backward: the
 * gradients inside a block pass through the context's held slots (one
 * buffer each for the whole trunk instead of one per layer):
 *
 *   incoming dL/d(block output)  G (read first, by the add's ReLU backward)
 *   add's ReLU backward      G -> RELU  (diff_a, diff_b: views of RELU)
 *   bottleneck: conv3     RELU -> A,  conv2 A -> B,  conv1 B -> C
 *   basic block: conv2    RELU -> A,  conv1 A -> C
 *   shortcut conv         RELU -> A   (A's previous reader has run)
 *   gradient sum          C += A (or RELU for an identity shortcut)
 *
 * so dL/d(block input) ends in C, which the next block backward reads as
 * its G before its conv1 writes C again. The stem's max pooling writes A. */
#include "nets/resnet.h"

#include "nets/onnx.h"

#include <stdio.h>
#include <string.h>

static void block_init(dg_resnet_block *b, dg_ctx *ctx, dg_param_set *ps, const char *name,
        dnnl_memory_t src, int64_t planes, int64_t stride, int64_t dil, bool bottleneck,
        const dg_resnet_cfg *cfg) {
    memset(b, 0, sizeof(*b));
    b->src = src;
    b->bottleneck = bottleneck;
    int64_t dims[4];
    dg_mem_dims4(src, dims);
    const int64_t in_ch = dims[1], out_ch = bottleneck ? 4 * planes : planes;
    const bool tr = cfg->training, fz = cfg->frozen_bn;
    b->has_down = stride != 1 || in_ch != out_ch;
    /* Gradient slots: see the top of this file. */
    const int sA = tr ? DG_SLOT_GRAD_A : DG_SLOT_OWN, sB = tr ? DG_SLOT_GRAD_B : DG_SLOT_OWN;
    const int sC = tr ? DG_SLOT_GRAD_C : DG_SLOT_OWN;
    dg_conv_cfg d = {.oc = out_ch, .k = 1, .stride = stride, .pad = 0, .dilation = 1,
            .training = tr, .diff_slot = sA};
    dg_conv_cfg c = {.k = 1, .stride = 1, .pad = 0, .dilation = 1, .training = tr,
            .diff_slot = sC};
    /* conv1's (and a bottleneck's conv2's) BN + ReLU output: read only by
     * the next convolution, in DG_SLOT_ACT and rewritten for its backward */
    const dg_bn_cfg relu = {.relu = true, .frozen = fz,
            .dst_slot = tr ? DG_SLOT_ACT : DG_SLOT_OWN};
    const dg_bn_cfg last_bn = {.relu = !tr, .frozen = fz};
    dg_conv_cfg c_last;
    if (bottleneck) {
        /* conv1 1x1 -> conv2 3x3 (stride, dilation) -> conv3 1x1 (x4). */
        c.oc = planes;
        dg_cbr_init(&b->c1, ctx, ps, name, "conv1", "bn1", src, &c, &relu);
        c.k = 3, c.stride = stride, c.pad = dil, c.dilation = dil, c.diff_slot = sB;
        dg_cbr_init(&b->c2, ctx, ps, name, "conv2", "bn2", b->c1.dst, &c, &relu);
        c.k = 1, c.stride = 1, c.pad = 0, c.dilation = 1, c.oc = out_ch, c.diff_slot = sA;
        c_last = c;
        c_last.accumulate = !tr;
        dg_cbr_init(&b->c3, ctx, ps, name, "conv3", "bn3", b->c2.dst, &c_last, &last_bn);
    } else {
        /* conv1 3x3 (stride, dilation) -> conv2 3x3 (dilation). */
        c.oc = planes, c.k = 3, c.stride = stride, c.pad = dil, c.dilation = dil;
        dg_cbr_init(&b->c1, ctx, ps, name, "conv1", "bn1", src, &c, &relu);
        c.stride = 1, c.diff_slot = sA;
        c_last = c;
        c_last.accumulate = !tr;
        dg_cbr_init(&b->c2, ctx, ps, name, "conv2", "bn2", b->c1.dst, &c_last, &last_bn);
    }
    dg_cbr *last = bottleneck ? &b->c3 : &b->c2;
    /* Inference: the last conv's sum post-op adds whatever its dst holds, so
     * the projection shortcut writes straight into that dst and the
     * identity is copied there first; the ReLU follows as a post-op. */
    if (!tr) d.dst_into = last->dst;
    const dg_bn_cfg down_bn = {.frozen = fz, .dst_slot = tr ? DG_SLOT_FWD : DG_SLOT_OWN};
    if (b->has_down)
        dg_cbr_init(&b->down, ctx, ps, name, "downsample.0", "downsample.1", src, &d, &down_bn);
    if (!tr) {
        if (!b->has_down) {
            dnnl_primitive_attr_t attr = dg_attr_new();
            DG_DNNL(dnnl_reorder_primitive_desc_create(&b->copy_pd, dg_mem_md(src), ctx->engine,
                    dg_mem_md(last->dst), ctx->engine, attr));
            dnnl_primitive_attr_destroy(attr);
            dg_prim_init(&b->copy, ctx, b->copy_pd);
        }
        b->dst = last->dst;
        return;
    }
    dnnl_memory_t shortcut = b->has_down ? b->down.dst : src;
    dg_add_cfg ac = {.relu = true, .in_place = true, .diff_slot = DG_SLOT_GRAD_RELU};
    dg_add_init(&b->add, ctx, last->dst, shortcut, &ac);
    b->dst = b->add.dst;
    /* The block input's two gradients: through c1 and through the shortcut. */
    const dnnl_memory_desc_t *dsc_md = b->has_down ? dg_mem_md(b->down.diff_src) : &b->add.b_md;
    dg_add_cfg sc = {.in_place = true};
    dg_add_init_md(&b->gsum, ctx, dg_mem_md(b->c1.diff_src), dsc_md, &sc);
}

static void block_forward(dg_resnet_block *b, dg_ctx *ctx, const dg_pass *p) {
    /* Inference: the shortcut lands in the last conv's dst before it runs. */
    if (b->copy.prim) {
        dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, b->src}, {DNNL_ARG_TO, b->dst}};
        dg_prim_exec(&b->copy, ctx, 2, args);
    }
    /* Inference: the shortcut writes the last conv's dst, which that conv
     * accumulates into. Training: the shortcut's output (DG_SLOT_FWD)
     * is read by the add right after it. */
    if (b->has_down && !b->add.fwd.prim) dg_cbr_forward(&b->down, ctx, p);
    dg_cbr_forward(&b->c1, ctx, p);
    dg_cbr_forward(&b->c2, ctx, p);
    if (b->bottleneck) dg_cbr_forward(&b->c3, ctx, p);
    if (b->has_down && b->add.fwd.prim) dg_cbr_forward(&b->down, ctx, p);
    if (b->add.fwd.prim) dg_add_forward(&b->add, ctx, p);
}

/* Returns dL/dsrc of the block (the gsum's dst: c1's diff_src, slot C). */
static dnnl_memory_t block_backward(dg_resnet_block *b, dg_ctx *ctx, const dg_pass *p,
        dnnl_memory_t diff_dst) {
    dg_add_backward(&b->add, ctx, p, diff_dst);
    dnnl_memory_t d = b->add.diff_a;
    if (b->bottleneck) {
        dg_cbr_redo(&b->c2, ctx, p, &b->c3.conv);
        dg_cbr_backward(&b->c3, ctx, p, d);
        d = b->c3.diff_src;
    }
    dg_cbr_redo(&b->c1, ctx, p, &b->c2.conv);
    dg_cbr_backward(&b->c2, ctx, p, d);
    dg_cbr_backward(&b->c1, ctx, p, b->c2.diff_src);
    dnnl_memory_t sc = b->add.diff_b;
    if (b->has_down) {
        dg_cbr_backward(&b->down, ctx, p, sc);
        sc = b->down.diff_src;
    }
    dg_add_sum(&b->gsum, ctx, b->c1.diff_src, sc);
    return b->gsum.dst;
}

static void block_free(dg_resnet_block *b) {
    dg_cbr_free(&b->c1);
    dg_cbr_free(&b->c2);
    dg_cbr_free(&b->c3);
    dg_cbr_free(&b->down);
    dg_add_free(&b->add);
    dg_add_free(&b->gsum);
    dg_prim_free(&b->copy);
    dnnl_primitive_desc_destroy(b->copy_pd);
    memset(b, 0, sizeof(*b));
}

static double cbr_flops(const dg_cbr *u, bool backward) {
    if (!u->conv.dst) return 0.0; /* a block without this unit */
    return backward ? dg_conv_flops_backward(&u->conv) : dg_conv_flops_forward(&u->conv);
}

void dg_resnet_init(dg_resnet *r, dg_ctx *ctx, dg_param_set *ps, const char *prefix,
        dnnl_memory_t src, const dg_resnet_cfg *cfg) {
    static const int blocks18[4] = {2, 2, 2, 2}, blocks34[4] = {3, 4, 6, 3};
    static const int blocks101[4] = {3, 4, 23, 3};
    memset(r, 0, sizeof(*r));
    r->cfg = *cfg;
    const int *nb = cfg->depth == 18 ? blocks18 : cfg->depth == 101 ? blocks101 : blocks34;
    DG_ASSERT(cfg->depth == 18 || cfg->depth == 34 || cfg->depth == 50 || cfg->depth == 101);
    DG_ASSERT(cfg->output_stride == 32 || cfg->output_stride == 16 || cfg->output_stride == 8);
    const bool bottleneck = cfg->depth >= 50;
    dg_conv_cfg stem = {.oc = 64, .k = 7, .stride = 2, .pad = 3, .dilation = 1,
            .no_diff_src = true, .training = cfg->training};
    const dg_bn_cfg stem_bn = {.relu = true, .frozen = cfg->frozen_bn,
            .dst_slot = cfg->training ? DG_SLOT_FWD : DG_SLOT_OWN};
    r->stem_off = ps->d;
    dg_cbr_init(&r->stem, ctx, ps, prefix, "conv1", "bn1", src, &stem, &stem_bn);
    dg_pool_cfg mp = {.kind = DG_POOL_MAX, .k = 3, .stride = 2, .pad = 1,
            .training = cfg->training, .diff_slot = cfg->training ? DG_SLOT_GRAD_A : DG_SLOT_OWN};
    dg_pool_init(&r->maxpool, ctx, r->stem.dst, &mp);

    r->n_blocks = nb[0] + nb[1] + nb[2] + nb[3];
    r->blocks = dg_xcalloc((size_t)r->n_blocks, sizeof(*r->blocks));
    dnnl_memory_t x = r->maxpool.dst;
    int k = 0;
    for (int L = 0; L < 4; L++) {
        /* DeepLab: layers past the output stride keep resolution and dilate. */
        int64_t stride = L == 0 ? 1 : 2, dil = 1;
        if (cfg->output_stride == 16 && L == 3) stride = 1, dil = 2;
        if (cfg->output_stride == 8 && L >= 2) stride = 1, dil = L == 2 ? 2 : 4;
        const int64_t planes = 64 << L;
        r->layer_first[L] = k;
        for (int i = 0; i < nb[L]; i++, k++) {
            char name[160];
            snprintf(name, sizeof(name), "%s.layer%d.%d", prefix, L + 1, i);
            const size_t first = ps->d;
            block_init(&r->blocks[k], ctx, ps, name, x, planes, i == 0 ? stride : 1, dil,
                    bottleneck, cfg);
            r->blocks[k].first_off = first;
            x = r->blocks[k].dst;
        }
        r->out[L] = x;
        r->channels[L] = bottleneck ? 4 * planes : planes;
    }
    r->layer_first[4] = k;
    r->flops_forward = cbr_flops(&r->stem, false);
    r->flops_backward = cbr_flops(&r->stem, true);
    for (int i = 0; i < r->n_blocks; i++) {
        const dg_resnet_block *b = &r->blocks[i];
        const dg_cbr *u[4] = {&b->c1, &b->c2, &b->c3, &b->down};
        for (int j = 0; j < 4; j++) {
            r->flops_forward += cbr_flops(u[j], false);
            r->flops_backward += cbr_flops(u[j], true);
        }
    }
}

void dg_resnet_forward(dg_resnet *r, dg_ctx *ctx, const dg_pass *p) {
    dg_cbr_forward(&r->stem, ctx, p);
    dg_pool_forward(&r->maxpool, ctx, p);
    for (int i = 0; i < r->n_blocks; i++) block_forward(&r->blocks[i], ctx, p);
}

/* dL/d(output of layer L) = gradient from layer L+1 (or none) + the head's,
 * summed into the former (slot C). */
static dnnl_memory_t take_tap(dg_resnet *r, dg_ctx *ctx, int L, dnnl_memory_t from_trunk,
        dnnl_memory_t from_head) {
    if (!from_head) return from_trunk;
    if (!from_trunk) return from_head;
    if (!r->tap_ready[L]) {
        dg_add_cfg c = {.in_place = true};
        dg_add_init_md(&r->tap[L], ctx, dg_mem_md(from_trunk), dg_mem_md(from_head), &c);
        r->tap_ready[L] = true;
    }
    dg_add_sum(&r->tap[L], ctx, from_trunk, from_head);
    return r->tap[L].dst;
}

void dg_resnet_backward(dg_resnet *r, dg_ctx *ctx, const dg_pass *p, const dnnl_memory_t diff_out[4]) {
    DG_ASSERT(diff_out[3] != NULL);
    dnnl_memory_t d = NULL;
    for (int L = 3; L >= 0; L--) {
        d = take_tap(r, ctx, L, d, diff_out[L]);
        for (int i = r->layer_first[L + 1] - 1; i >= r->layer_first[L]; i--) {
            d = block_backward(&r->blocks[i], ctx, p, d);
            /* the blocks' parameters follow the stem's, in block order */
            dg_pass_grad_ready(p, ctx, r->blocks[i].first_off);
        }
    }
    dg_pool_backward(&r->maxpool, ctx, p, d);
    dg_cbr_backward(&r->stem, ctx, p, r->maxpool.diff_src);
    dg_pass_grad_ready(p, ctx, r->stem_off);
}

/* A block as ONNX nodes: conv1 (and a bottleneck's conv2) with their
 * ReLUs, the last unit's convolution, the shortcut (projection or x
 * itself), their sum and its ReLU -- what the inference instance's
 * accumulating last convolution computes in one primitive. */
static const char *block_onnx(const dg_resnet_block *b, dg_onnx *g, const char *name,
        const char *x, const float *params, const float *stats) {
    char unit[320], hint[320];
    snprintf(unit, sizeof(unit), "%s.conv1", name);
    const char *y = dg_cbr_onnx(&b->c1, g, unit, x, params, stats);
    snprintf(unit, sizeof(unit), "%s.conv2", name);
    y = dg_cbr_onnx(&b->c2, g, unit, y, params, stats);
    if (b->bottleneck) {
        snprintf(unit, sizeof(unit), "%s.conv3", name);
        y = dg_cbr_onnx(&b->c3, g, unit, y, params, stats);
    }
    const char *shortcut = x;
    if (b->has_down) {
        snprintf(unit, sizeof(unit), "%s.downsample.0", name);
        shortcut = dg_cbr_onnx(&b->down, g, unit, x, params, stats);
    }
    snprintf(hint, sizeof(hint), "%s.add", name);
    y = dg_onnx_add(g, hint, y, shortcut);
    snprintf(hint, sizeof(hint), "%s.relu", name);
    return dg_onnx_relu(g, hint, y);
}

void dg_resnet_onnx(const dg_resnet *r, dg_onnx *g, const char *prefix, const char *x,
        const float *params, const float *stats, const char *out[4]) {
    DG_ASSERT(!r->cfg.training);
    char name[256];
    snprintf(name, sizeof(name), "%s.conv1", prefix);
    const char *y = dg_cbr_onnx(&r->stem, g, name, x, params, stats);
    snprintf(name, sizeof(name), "%s.maxpool", prefix);
    const dg_pool_cfg *mp = &r->maxpool.cfg;
    y = dg_onnx_maxpool(g, name, y, mp->k, mp->stride, mp->pad);
    for (int L = 0; L < 4; L++) {
        for (int k = r->layer_first[L]; k < r->layer_first[L + 1]; k++) {
            snprintf(name, sizeof(name), "%s.layer%d.%d", prefix, L + 1, k - r->layer_first[L]);
            y = block_onnx(&r->blocks[k], g, name, y, params, stats);
        }
        out[L] = y;
    }
}

void dg_resnet_free(dg_resnet *r) {
    dg_cbr_free(&r->stem);
    dg_pool_free(&r->maxpool);
    for (int i = 0; i < r->n_blocks; i++) block_free(&r->blocks[i]);
    dg_free(r->blocks);
    for (int L = 0; L < 4; L++) dg_add_free(&r->tap[L]);
    memset(r, 0, sizeof(*r));
}
