/* nets/core/wino.h -- dgseg's own Winograd convolution F(4x4, 3x3) (Lavin
 * and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016) for
 * CPUs where oneDNN has none (oneDNN 2.6 implements Winograd on AVX-512
 * only; dg_ctx.caps.winograd): inference instances, and training ones
 * (below). A dense 3x3, stride-1,
 * pad-1 convolution computes each 4x4 output tile from a 6x6 input tile as
 *
 *   Y = A^T [ (G g G^T) (.) (B^T d B) ] A
 *
 * with 36 products per tile and channel pair instead of 144. Over a block
 * of tiles t and all channels, the 36 element-wise products are 36 matrix
 * products
 *
 *   M[xi] (TB x OC) = V[xi] (TB x IC) . U[xi] (IC x OC),  xi = 0 .. 35,
 *
 * run as one batched oneDNN matmul per block (blocks of about 4 MiB of V
 * and M, so that they stay in cache between the transforms and the
 * products, and memory does not grow with the image); the transforms are
 * dgseg's loops, 8 channels (one AVX2 vector) at a time. U (the transformed weights) is made
 * once per weights version (dg_pass.weights_version), as oneDNN's
 * inference weights are. Rounding: the transforms' constants (1/4, 1/6,
 * 1/24, 8, ...) make the error a few times direct convolution's (about
 * 1e-6 relative in f32); the eval-mode PyTorch fixtures hold at 1e-4.
 *
 * Ops (FLOPs per tile and 8 channels): input transform 2 x 6 x (6x6 -> 6x6
 * by B^T) ~ 12 x 36 adds; output transform ~ 10 x 24; products 36 x IC x OC
 * x 2 per tile (direct: 144 x IC x OC x 2).
 *
 * Training (a layer built with backward weights): the forward is the same
 * on weights that change every step; backward-data is another instance on
 * diff_dst with the weights transposed and rotated 180 degrees (the
 * backward-data of a stride-1 "same" convolution is that forward
 * convolution); backward-weights runs the transforms' transposes:
 *
 *   dM[xi] = (A dY A^T)[xi],  dU[xi] (IC x OC) = sum over blocks V[xi]^T dM[xi],
 *   dg = G^T dU G,            db = sum of dY,
 *
 * V recomputed from src (the layer's input is kept, or rewritten, for its
 * backward), the 36 products again one batched matmul.
 *
 * Owns: U (and dU), the matmuls and their memories, ports (src and diff_dst
 * into a layout with 8-channel blocks when they have none). Borrows: src,
 * dst. V and M (dM) live in the context's transient slots DG_SLOT_WINO_V /
 * DG_SLOT_WINO_M (they last one call). */
#ifndef DG_WINO_H
#define DG_WINO_H

#include "dnnl_util.h"

typedef struct dg_wino {
    int64_t n, ic, oc, h, w;   /* src (N, IC, H, W), dst (N, OC, H, W) */
    int64_t th, tw, t;         /* tiles down, across, and in all (N*th*tw) */
    int64_t tb;                /* tiles per block: V, M and the matmuls
                                  hold one block at a time */
    bool relu, accumulate;     /* post-ops: dst = relu(dst? + conv + bias) */
    float *u;                  /* owned [36][IC][OC] */
    uint64_t u_version;        /* weights version U was made from (0: none) */
    dnnl_primitive_desc_t mm_pd;
    dg_prim mm;
    dnnl_memory_t v_mem, u_mem, m_mem; /* [36][TB][IC], [36][IC][OC], [36][TB][OC] */
    dg_port src_p;             /* src in a layout with 8- or 16-channel blocks */
    dnnl_memory_t dst;         /* borrowed */
    /* backward-weights (training only; mmw_pd NULL otherwise) */
    float *du;                 /* owned [36][IC][OC] */
    dnnl_primitive_desc_t mmw_pd;
    dg_prim mmw;               /* dU = V^T . dM, batched over xi */
    dnnl_memory_t vt_mem, du_mem; /* V viewed (36, IC, T); dU */
    dg_port ddst_p;            /* diff_dst with channel blocks */
    int prof, prof_bw;         /* profile slots: the whole forward and
                                  backward-weights, as "convolution forward
                                  ... wino" rows */
} dg_wino;

/* Tiles per block of the layers built afterwards; 0 (default): about
 * 4 MiB of V and M a block (16 .. 512 tiles). Tests set it to force several
 * blocks. */
extern int dg_wino_block_tiles;

/* Whether a layout is one dg_wino reads and writes in place: 4-D blocked,
 * channels in blocks of 8 or 16 innermost (nChw8c, nChw16c). */
bool dg_wino_layout_ok(const dnnl_memory_desc_t *md);

/* Builds the convolution of src (N, IC, H, W) into dst (N, OC, H, W); IC
 * and OC multiples of 8, dst's layout one that passes dg_wino_layout_ok;
 * relu and accumulate as in dg_conv_cfg. Sizes V and M in the context's
 * slots. */
void dg_wino_init(dg_wino *l, dg_ctx *ctx, dnnl_memory_t src, dnnl_memory_t dst, bool relu,
        bool accumulate);
/* The same with backward-weights (dg_wino_backward_weights) built too. */
void dg_wino_init_training(dg_wino *l, dg_ctx *ctx, dnnl_memory_t src, dnnl_memory_t dst,
        bool relu);
/* Profiles the forward as `kind` ("convolution backward-data" for the
 * instance that computes a layer's backward-data). */
void dg_wino_profile_as(dg_wino *l, const char *kind);
/* Reads src from another memory of the same dims (any layout) from now on:
 * backward-data's instance, whose src is each backward's diff_dst. */
void dg_wino_set_src(dg_wino *l, dg_ctx *ctx, dnnl_memory_t src);
/* dst = [relu](conv(src; weights) + bias [+ dst]); weights (OC, IC, 3, 3)
 * plain, bias (OC) or NULL. version: dg_pass.weights_version of the weights
 * (0: transform them now; nonzero and that of the last call: reuse U). */
void dg_wino_forward(dg_wino *l, dg_ctx *ctx, const float *weights, const float *bias,
        uint64_t version);
/* diff_weights (OC, IC, 3, 3) plain and diff_bias (OC, or NULL: none),
 * overwritten, from the current src and diff_dst (N, OC, H, W), any
 * layout. */
void dg_wino_backward_weights(dg_wino *l, dg_ctx *ctx, dnnl_memory_t diff_dst,
        float *diff_weights, float *diff_bias);
void dg_wino_free(dg_wino *l);

#endif
