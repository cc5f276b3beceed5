/* nets/core/conv.h -- 2-D convolution on oneDNN (forward training or
 * inference, backward data, backward weights), optional bias, optional ReLU
 * fused as a post-op (its backward runs as an eltwise backward on dst).
 *
 * Owns: pds, primitives, dst, diff_src (unless in a slot), ports and reorder
 * buffers.
 * Borrows: src (the previous layer's dst), which must outlive the layer.
 * Parameters: "<name>.weight" (OC, IC, KH, KW) oihw, "<name>.bias" (OC). */
#ifndef DG_CONV_H
#define DG_CONV_H

#include "wino.h"
#include "wlayer.h"

typedef struct dg_conv_cfg {
    int64_t oc;        /* output channels */
    int64_t k;         /* square kernel KH = KW */
    int64_t stride;
    int64_t pad;       /* symmetric zero padding */
    int64_t dilation;  /* 1 = dense (PyTorch convention, not oneDNN's d-1) */
    bool bias;
    bool relu;         /* fuse ReLU after the convolution */
    bool relu_grad_by_next; /* with relu: the next layer applies the ReLU's
                          backward mask (GroupNorm's relu_src); backward's
                          diff_dst is the gradient at the pre-activation */
    bool no_diff_src;  /* the input is the network input: skip backward data */
    int diff_slot;     /* diff_src in this held slot of the context
                          (dnnl_util.h) where the network proves nothing else
                          writes it before its reader has run; DG_SLOT_OWN
                          (0): the layer's own buffer */
    bool training;     /* false: inference-only instance, no backward */
    bool folded;       /* inference only: the primitive always has a bias and
                          runs on weights and bias the caller supplies
                          (dg_conv_forward_folded), e.g. with a BatchNorm
                          folded in; the registered tensors are unchanged */
    bool accumulate;   /* folded only: dst += result before the ReLU (oneDNN's
                          sum post-op); the caller fills dst first (ResNet's
                          relu(out + identity) in one primitive) */
    dnnl_memory_t dst_into; /* folded only, or NULL: write into this memory
                          (borrowed; its layout fixes dst's) instead of an
                          own dst */
} dg_conv_cfg;

typedef struct dg_conv {
    dg_conv_cfg cfg;
    int64_t src_dims[4];          /* (N, IC, H, W) */
    int64_t dst_dims[4];          /* (N, OC, OH, OW) */
    size_t w_off, b_off;          /* offsets of weight and bias in params */
    int64_t tap;                  /* >= 0: every kernel tap but this one (flat
                                     i * K + j, the centre) reads only padding
                                     (dilation >= the input size), and the
                                     primitives are 1x1 on that tap; -1 */
    dg_wlayer wl;                 /* primitives, weight wrappers, ports */
    dnnl_memory_t src;            /* borrowed (N, IC, H, W) */
    dnnl_memory_t dst;            /* wl.dst: (N, OC, OH, OW), fwd_pd's layout */
    dnnl_memory_t diff_src;       /* wl.diff_src: (N, IC, H, W), or NULL; in
                                     cfg.diff_slot when one is given */
    dnnl_primitive_desc_t relu_bwd_pd;
    dg_prim relu_bwd;             /* fused ReLU's backward, on dst */
    dnnl_memory_t diff_pre;       /* owned (N, OC, OH, OW): dL/d(pre-ReLU) */
    dg_port ddst_r_p;             /* diff_dst in dst's layout (fused ReLU) */
    /* Inference with Winograd on, a dilated 3x3 "same" convolution whose
     * input splits into d x d phases (dilation d, H and W multiples of d):
     * output (y, x) reads only inputs of its own phase (y mod d, x mod d),
     * so it runs as a dense 3x3 convolution on the phases batched,
     * (d*d*N, IC, H/d, W/d), by Winograd. Ports move src into phases and the
     * result back into dst; wl runs on ph_src / ph_dst. */
    bool phases;
    dnnl_memory_t src_view, dst_view; /* 6-D (N, C, H/d, d, W/d, d) views of
                                     src and dst */
    dnnl_memory_t ph_src, ph_dst; /* (d*d*N, C, H/d, W/d) over ph_in's and
                                     ph_out's buffers */
    dg_port ph_in, ph_out;
    bool dst_own;                 /* phases or own Winograd: dst is the
                                     layer's own */
    /* Inference with Winograd on, on a CPU where oneDNN has none: dgseg's
     * own (wino.h) for the dense 3x3 convolution (src -> dst) or for the
     * phases (ph_src -> ph_dst); wl then holds nothing. */
    bool own_wino;
    dg_wino wino;
    /* training with dgseg's own Winograd: backward-data runs as wino_bd,
     * the forward of diff_dst with the weights transposed and rotated
     * (w_rot, owned (IC, OC, 3, 3)); diff_src is then the layer's own or in
     * cfg.diff_slot */
    dg_wino wino_bd;
    float *w_rot;
} dg_conv;

/* Dense 3x3 stride-1 convolutions with at least 16 input and output
 * channels use Winograd F(4x4, 3x3): oneDNN's kernels where this CPU has
 * them (AVX-512: dg_ctx.caps.winograd), elsewhere dgseg's own (wino.h;
 * "same" padding, channels in multiples of 8; inference instances also on
 * the phases of dilated convolutions): 4x fewer multiplications at the
 * price of a few times direct convolution's rounding error (still ~1e-6
 * relative in f32; the PyTorch fixtures hold). Off: direct everywhere, as
 * PyTorch. Decided when a convolution is built, by the context's winograd
 * flag (off after dg_ctx_init; dg_model_create sets it from
 * dg_model_opts.winograd for each model it builds). */

/* Builds the layer on src and registers "<name>.weight" (Kaiming-normal
 * fan_out, torchvision's convolution init) and "<name>.bias" (zero). */
void dg_conv_init(dg_conv *l, dg_ctx *ctx, dg_param_set *ps, const char *name,
        dnnl_memory_t src, const dg_conv_cfg *cfg);
void dg_conv_forward(dg_conv *l, dg_ctx *ctx, const dg_pass *p);
/* An inference instance that reads the weights given to its forward only
 * when their version changes (dg_pass.weights_version), to make its own
 * prepared copy (oneDNN's reordered weights, dg_wino's transformed ones):
 * between such forwards the caller's weights may be overwritten. False
 * when the primitive reads them in place at every forward. */
bool dg_conv_keeps_weights(const dg_conv *l);
/* Forward of a folded instance on weights (OC, IC, KH, KW) and bias (OC)
 * given now (borrowed for the call); version as dg_pass.weights_version,
 * for those weights (dg_wlayer_forward). */
void dg_conv_forward_folded(dg_conv *l, dg_ctx *ctx, const float *weights, const float *bias,
        uint64_t version);
/* diff_dst (N, OC, OH, OW) in any layout; writes diff_src (unless
 * no_diff_src) and the weight/bias gradients (overwritten) into p->grad. */
void dg_conv_backward(dg_conv *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst);
void dg_conv_free(dg_conv *l);

/* The memory the layer's passes read src from: src itself, or the layer's
 * own reordered copy of it (a port's buffer, which no other layer writes). */
dnnl_memory_t dg_conv_src_in_use(const dg_conv *l);

/* FLOPs (2 per multiply-add) of one forward and of one backward (data,
 * unless no_diff_src, plus weights); a single-tap convolution counts its
 * one tap. */
double dg_conv_flops_forward(const dg_conv *l);
double dg_conv_flops_backward(const dg_conv *l);

/* Output spatial size of a convolution or pooling window. */
int64_t dg_conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dilation);

#endif
