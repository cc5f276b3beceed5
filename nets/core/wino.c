/* nets/core/wino.c -- see wino.h. The transforms work on 8 channels at a
 * time (lane index k innermost: one AVX2 register); tile (n, ty, tx) covers
 * outputs [4ty, 4ty + 4) x [4tx, 4tx + 4) and reads inputs from 4ty - 1 and
 * 4tx - 1 (padding 1), zero outside the image. */
#include "wino.h"

#include <stdio.h>
#include <string.h>

#include "layer.h"
#include "profile.h"

#define L 8 /* lanes: channels per transform */

int dg_wino_block_tiles;

bool dg_wino_layout_ok(const dnnl_memory_desc_t *md) {
    dg_chw v;
    return md->ndims == 4 && md->data_type == dnnl_f32 && dg_chw_from_md(&v, md) &&
            (v.cb == 8 || v.cb == 16);
}

/* 6-point B^T on x[0..5] (stride s lanes-blocks), into y[0..5]. */
static inline void bt6(const float *x, size_t s, float *y, size_t t) {
    for (int k = 0; k < L; k++) {
        const float x0 = x[0 * s + k], x1 = x[1 * s + k], x2 = x[2 * s + k];
        const float x3 = x[3 * s + k], x4 = x[4 * s + k], x5 = x[5 * s + k];
        y[0 * t + k] = 4.f * x0 - 5.f * x2 + x4;
        y[1 * t + k] = -4.f * (x1 + x2) + x3 + x4;
        y[2 * t + k] = 4.f * (x1 - x2) - x3 + x4;
        y[3 * t + k] = 2.f * (x3 - x1) - x2 + x4;
        y[4 * t + k] = 2.f * (x1 - x3) - x2 + x4;
        y[5 * t + k] = 4.f * x1 - 5.f * x3 + x5;
    }
}

/* 6 -> 4 point A^T. */
static inline void at6(const float *m, size_t s, float *o, size_t t) {
    for (int k = 0; k < L; k++) {
        const float m0 = m[0 * s + k], m1 = m[1 * s + k], m2 = m[2 * s + k];
        const float m3 = m[3 * s + k], m4 = m[4 * s + k], m5 = m[5 * s + k];
        const float a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4;
        o[0 * t + k] = m0 + a + c;
        o[1 * t + k] = b + 2.f * d;
        o[2 * t + k] = a + 4.f * c;
        o[3 * t + k] = b + 8.f * d + m5;
    }
}

/* 4 -> 6 point A (the transpose of at6): the output transform's backward. */
static inline void a4(const float *y, size_t s, float *z, size_t t) {
    for (int k = 0; k < L; k++) {
        const float y0 = y[0 * s + k], y1 = y[1 * s + k], y2 = y[2 * s + k], y3 = y[3 * s + k];
        const float e = y0 + y2, o = y1 + y3, e4 = y0 + 4.f * y2, o8 = 2.f * y1 + 8.f * y3;
        z[0 * t + k] = y0;
        z[1 * t + k] = e + o;
        z[2 * t + k] = e - o;
        z[3 * t + k] = e4 + o8;
        z[4 * t + k] = e4 - o8;
        z[5 * t + k] = y3;
    }
}

/* U[xi][ic][oc] = (G g G^T)[xi] for every (oc, ic) of weights (OC, IC, 3, 3). */
static void transform_weights(dg_wino *l, const float *w) {
    const int64_t ic_n = l->ic, oc_n = l->oc;
    float *u = l->u;
#pragma omp parallel for schedule(static)
    for (int64_t oc = 0; oc < oc_n; oc++)
        for (int64_t ic = 0; ic < ic_n; ic++) {
            const float *g = w + (oc * ic_n + ic) * 9;
            float t[6][3], r[6][6];
            for (int j = 0; j < 3; j++) { /* G g: rows of the 6x3 */
                const float g0 = g[0 * 3 + j], g1 = g[1 * 3 + j], g2 = g[2 * 3 + j];
                t[0][j] = g0 / 4.f;
                t[1][j] = -(g0 + g1 + g2) / 6.f;
                t[2][j] = -(g0 - g1 + g2) / 6.f;
                t[3][j] = g0 / 24.f + g1 / 12.f + g2 / 6.f;
                t[4][j] = g0 / 24.f - g1 / 12.f + g2 / 6.f;
                t[5][j] = g2;
            }
            for (int i = 0; i < 6; i++) { /* (G g) G^T */
                const float g0 = t[i][0], g1 = t[i][1], g2 = t[i][2];
                r[i][0] = g0 / 4.f;
                r[i][1] = -(g0 + g1 + g2) / 6.f;
                r[i][2] = -(g0 - g1 + g2) / 6.f;
                r[i][3] = g0 / 24.f + g1 / 12.f + g2 / 6.f;
                r[i][4] = g0 / 24.f - g1 / 12.f + g2 / 6.f;
                r[i][5] = g2;
            }
            for (int xi = 0; xi < 36; xi++) u[(xi * ic_n + ic) * oc_n + oc] = r[xi / 6][xi % 6];
        }
}

/* p[(i * size + j) * L + k] = channel 8g + k of pixel (y0 + i, x0 + j) of
 * image n, zero outside the h x w image. */
static inline void gather(const float *src, const dg_chw *v, int64_t n, int64_t g, int64_t y0,
        int64_t x0, int size, int64_t h, int64_t w, float *p) {
    for (int i = 0; i < size; i++)
        for (int j = 0; j < size; j++) {
            const int64_t y = y0 + i, x = x0 + j;
            float *dst = p + (i * size + j) * L;
            if (y < 0 || y >= h || x < 0 || x >= w) memset(dst, 0, L * sizeof(float));
            else memcpy(dst, src + dg_chw_at(v, n, g * L, y, x), L * sizeof(float));
        }
}

/* A block's tile t past the layer's last tile (tt >= T): its 36 rows of
 * channel group g in buf ([36][tiles][c]) are zeros, which add nothing;
 * true then. */
static inline bool zero_past_end(const dg_wino *l, int64_t tt, float *buf, int64_t tiles,
        int64_t t, int64_t c, int64_t g) {
    if (tt < l->t) return false;
    for (int xi = 0; xi < 36; xi++)
        memset(buf + (xi * tiles + t) * c + g * L, 0, L * sizeof(float));
    return true;
}

/* V[xi][t][c] = (B^T d B)[xi] for every tile and channel of src. */
static void transform_input(const dg_wino *l, const float *src, const dg_chw *v, float *vbuf,
        int64_t t0) {
    const int64_t groups = l->ic / L, tiles = l->tb, per_img = l->th * l->tw;
    const int64_t h = l->h, w = l->w, ic = l->ic;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t t = 0; t < tiles; t++)
        for (int64_t g = 0; g < groups; g++) {
            const int64_t tt = t0 + t, n = tt / per_img, ty = (tt % per_img) / l->tw;
            const int64_t tx = tt % l->tw;
            float d[36 * L], e[36 * L], f[36 * L];
            if (zero_past_end(l, tt, vbuf, tiles, t, ic, g)) continue;
            gather(src, v, n, g, ty * 4 - 1, tx * 4 - 1, 6, h, w, d);
            for (int j = 0; j < 6; j++) bt6(d + j * L, 6 * L, e + j * L, 6 * L); /* B^T d */
            for (int i = 0; i < 6; i++) bt6(e + i * 6 * L, L, f + i * 6 * L, L); /* (.) B */
            for (int xi = 0; xi < 36; xi++)
                memcpy(vbuf + (xi * tiles + t) * ic + g * L, f + xi * L, L * sizeof(float));
        }
}

/* dst tile = [relu](A^T M A + bias [+ dst]). */
static void transform_output(const dg_wino *l, const float *mbuf, const float *bias,
        float *dst, const dg_chw *v, int64_t t0) {
    const int64_t groups = l->oc / L, tiles = l->tb, per_img = l->th * l->tw;
    const int64_t h = l->h, w = l->w, oc = l->oc;
    const int64_t n_t = DG_MIN(tiles, l->t - t0);
    const bool relu = l->relu, acc = l->accumulate;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t t = 0; t < n_t; t++)
        for (int64_t g = 0; g < groups; g++) {
            const int64_t tt = t0 + t, n = tt / per_img, ty = (tt % per_img) / l->tw;
            const int64_t tx = tt % l->tw;
            float m[36 * L], e[24 * L], y[16 * L], b[L];
            for (int xi = 0; xi < 36; xi++)
                memcpy(m + xi * L, mbuf + (xi * tiles + t) * oc + g * L, L * sizeof(float));
            for (int j = 0; j < 6; j++) at6(m + j * L, 6 * L, e + j * L, 6 * L); /* A^T M: 4x6 */
            for (int i = 0; i < 4; i++) at6(e + i * 6 * L, L, y + i * 4 * L, L);  /* (.) A: 4x4 */
            for (int k = 0; k < L; k++) b[k] = bias ? bias[g * L + k] : 0.f;
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    const int64_t yy = ty * 4 + i, xx = tx * 4 + j;
                    if (yy >= h || xx >= w) continue;
                    float *o = dst + dg_chw_at(v, n, g * L, yy, xx);
                    const float *r = y + (i * 4 + j) * L;
                    for (int k = 0; k < L; k++) {
                        float s = r[k] + b[k] + (acc ? o[k] : 0.f);
                        o[k] = relu && s < 0.f ? 0.f : s;
                    }
                }
        }
}

/* dg[oc][ic] = G^T dU[.][ic][oc] G (6x6 -> 3x3) for every (oc, ic). */
static void transform_weight_grad(const dg_wino *l, float *dw) {
    const int64_t ic_n = l->ic, oc_n = l->oc;
    const float *du = l->du;
#pragma omp parallel for schedule(static)
    for (int64_t oc = 0; oc < oc_n; oc++)
        for (int64_t ic = 0; ic < ic_n; ic++) {
            float z[6][6], t[3][6];
            for (int xi = 0; xi < 36; xi++) z[xi / 6][xi % 6] = du[(xi * ic_n + ic) * oc_n + oc];
            for (int j = 0; j < 6; j++) { /* G^T z: 3 rows */
                const float z0 = z[0][j], z1 = z[1][j], z2 = z[2][j];
                const float z3 = z[3][j], z4 = z[4][j], z5 = z[5][j];
                t[0][j] = z0 / 4.f - (z1 + z2) / 6.f + (z3 + z4) / 24.f;
                t[1][j] = (z2 - z1) / 6.f + (z3 - z4) / 12.f;
                t[2][j] = (z3 + z4 - z1 - z2) / 6.f + z5;
            }
            float *g = dw + (oc * ic_n + ic) * 9;
            for (int i = 0; i < 3; i++) { /* (G^T z) G */
                const float z0 = t[i][0], z1 = t[i][1], z2 = t[i][2];
                const float z3 = t[i][3], z4 = t[i][4], z5 = t[i][5];
                g[i * 3 + 0] = z0 / 4.f - (z1 + z2) / 6.f + (z3 + z4) / 24.f;
                g[i * 3 + 1] = (z2 - z1) / 6.f + (z3 - z4) / 12.f;
                g[i * 3 + 2] = (z3 + z4 - z1 - z2) / 6.f + z5;
            }
        }
}

/* dM[xi][t][oc] = (A dY A^T)[xi] for every tile and channel of diff_dst
 * (zero outside the image). */
static void transform_grad_output(const dg_wino *l, const float *dd, const dg_chw *v,
        float *mbuf, int64_t t0) {
    const int64_t groups = l->oc / L, tiles = l->tb, per_img = l->th * l->tw;
    const int64_t h = l->h, w = l->w, oc = l->oc;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t t = 0; t < tiles; t++)
        for (int64_t g = 0; g < groups; g++) {
            const int64_t tt = t0 + t, n = tt / per_img, ty = (tt % per_img) / l->tw;
            const int64_t tx = tt % l->tw;
            float y[16 * L], e[24 * L], m[36 * L];
            if (zero_past_end(l, tt, mbuf, tiles, t, oc, g)) continue;
            gather(dd, v, n, g, ty * 4, tx * 4, 4, h, w, y);
            for (int j = 0; j < 4; j++) a4(y + j * L, 4 * L, e + j * L, 4 * L);  /* A dY: 6x4 */
            for (int i = 0; i < 6; i++) a4(e + i * 4 * L, L, m + i * 6 * L, L); /* (.) A^T */
            for (int xi = 0; xi < 36; xi++)
                memcpy(mbuf + (xi * tiles + t) * oc + g * L, m + xi * L, L * sizeof(float));
        }
}

/* db[oc] = sum of diff_dst over (n, y, x). */
static void bias_grad(const dg_wino *l, const float *dd, const dg_chw *v, float *db) {
    const int64_t groups = l->oc / L;
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < groups; g++) {
        double s[L] = {0};
        for (int64_t n = 0; n < l->n; n++)
            for (int64_t y = 0; y < l->h; y++)
                for (int64_t x = 0; x < l->w; x++) {
                    const float *p = dd + dg_chw_at(v, n, g * L, y, x);
                    for (int k = 0; k < L; k++) s[k] += p[k];
                }
        for (int k = 0; k < L; k++) db[g * L + k] = (float)s[k];
    }
}

/* One profile row for a whole pass of the convolution, as a primitive's
 * ("convolution forward", shape with " wino", direct convolution's FLOPs),
 * or 0 when profiling is off. */
static int profile_slot(const dg_wino *l, const char *kind) {
    if (!dg_profile_enabled()) return 0;
    char shape[128];
    snprintf(shape, sizeof(shape), "%lldx%lldx%lldx%lld->%lld k3x3 s1 d1 wino", (long long)l->n,
            (long long)l->ic, (long long)l->h, (long long)l->w, (long long)l->oc);
    return dg_profile_slot(kind, shape,
            2.0 * (double)(l->n * l->oc * l->h * l->w) * (double)(l->ic * 9));
}

/* The port's target layout for a memory of md: md itself when dg_wino
 * reads it in place, otherwise nChw8c. */
static dnnl_memory_desc_t blocked_like(const dnnl_memory_desc_t *md) {
    return dg_wino_layout_ok(md) ? *md : dg_md_plain(4, md->dims, dnnl_nChw8c);
}

void dg_wino_set_src(dg_wino *l, dg_ctx *ctx, dnnl_memory_t src) {
    const dnnl_memory_desc_t want = blocked_like(dg_mem_md(src));
    dg_port_bind_in(&l->src_p, ctx, src, &want);
}

void dg_wino_init(dg_wino *l, dg_ctx *ctx, dnnl_memory_t src, dnnl_memory_t dst, bool relu,
        bool accumulate) {
    memset(l, 0, sizeof(*l));
    int64_t sd[4], dd[4];
    dg_mem_dims4(src, sd);
    dg_mem_dims4(dst, dd);
    DG_ASSERT(sd[0] == dd[0] && sd[2] == dd[2] && sd[3] == dd[3]);
    DG_ASSERT(sd[1] % L == 0 && dd[1] % L == 0 && dg_wino_layout_ok(dg_mem_md(dst)));
    l->n = sd[0], l->ic = sd[1], l->h = sd[2], l->w = sd[3], l->oc = dd[1];
    l->th = (l->h + 3) / 4, l->tw = (l->w + 3) / 4, l->t = l->n * l->th * l->tw;
    /* tiles per block: V and M of a block about 4 MiB (a cache's worth),
     * 16 .. 512 tiles, in multiples of 8 */
    int64_t tb = dg_wino_block_tiles > 0 ? dg_wino_block_tiles
                                         : (4 << 20) / (36 * 4 * (l->ic + l->oc));
    if (dg_wino_block_tiles <= 0) tb = DG_MIN(DG_MAX(tb / 8 * 8, 16), 512);
    l->tb = DG_MIN(tb, l->t);
    l->relu = relu;
    l->accumulate = accumulate;
    l->dst = dst;
    dg_wino_set_src(l, ctx, src); /* as it is with channel blocks, else nChw8c */
    l->u = dg_ctx_calloc(ctx, (size_t)(36 * l->ic * l->oc), sizeof(float),
            "Winograd-transformed weights");
    const int64_t vd[3] = {36, l->tb, l->ic}, ud[3] = {36, l->ic, l->oc};
    const int64_t md[3] = {36, l->tb, l->oc};
    const dnnl_memory_desc_t v_md = dg_md_plain(3, vd, dnnl_abc);
    const dnnl_memory_desc_t u_md = dg_md_plain(3, ud, dnnl_abc);
    const dnnl_memory_desc_t m_md = dg_md_plain(3, md, dnnl_abc);
    dnnl_matmul_desc_t mmd;
    DG_DNNL(dnnl_matmul_desc_init(&mmd, &v_md, &u_md, NULL, &m_md));
    l->mm_pd = dg_pd_new(ctx, &mmd, NULL, NULL);
    dg_prim_init_as(&l->mm, ctx, l->mm_pd, DG_PROF_UNTIMED);
    l->v_mem = dg_slot_mem(ctx, &v_md, DG_SLOT_WINO_V);
    l->m_mem = dg_slot_mem(ctx, &m_md, DG_SLOT_WINO_M);
    l->u_mem = dg_mem_new(ctx, &u_md, l->u);
    l->prof = profile_slot(l, "convolution forward");
}

void dg_wino_profile_as(dg_wino *l, const char *kind) { l->prof = profile_slot(l, kind); }

void dg_wino_init_training(dg_wino *l, dg_ctx *ctx, dnnl_memory_t src, dnnl_memory_t dst,
        bool relu) {
    dg_wino_init(l, ctx, src, dst, relu, false);
    l->du = dg_ctx_calloc(ctx, (size_t)(36 * l->ic * l->oc), sizeof(float),
            "Winograd weight gradients");
    const dnnl_dims_t vt_d = {36, l->ic, l->tb}, vt_s = {l->tb * l->ic, 1, l->ic};
    const int64_t md[3] = {36, l->tb, l->oc}, dud[3] = {36, l->ic, l->oc};
    dnnl_memory_desc_t vt_md;
    DG_DNNL(dnnl_memory_desc_init_by_strides(&vt_md, 3, vt_d, dnnl_f32, vt_s));
    const dnnl_memory_desc_t m_md = dg_md_plain(3, md, dnnl_abc);
    const dnnl_memory_desc_t du_md = dg_md_plain(3, dud, dnnl_abc);
    dnnl_matmul_desc_t mmd;
    DG_DNNL(dnnl_matmul_desc_init(&mmd, &vt_md, &m_md, NULL, &du_md));
    dnnl_post_ops_t po; /* dU += each block's products */
    DG_DNNL(dnnl_post_ops_create(&po));
    DG_DNNL(dnnl_post_ops_append_sum(po, 1.f));
    l->mmw_pd = dg_pd_new(ctx, &mmd, po, NULL);
    dnnl_post_ops_destroy(po);
    dg_prim_init_as(&l->mmw, ctx, l->mmw_pd, DG_PROF_UNTIMED);
    l->vt_mem = dg_slot_mem(ctx, &vt_md, DG_SLOT_WINO_V);
    l->du_mem = dg_mem_new(ctx, &du_md, l->du);
    l->prof_bw = profile_slot(l, "convolution backward-weights");
    /* diff_dst's port: bound at the first backward */
}

/* src through its port and the slots pointed (v_mem: [36][TB][IC] as such
 * or viewed transposed); *sv gets src's view. */
static void prepare(dg_wino *l, dg_ctx *ctx, dnnl_memory_t v_mem, dg_chw *sv) {
    dg_port_pull(&l->src_p, ctx);
    DG_DNNL(dnnl_stream_wait(ctx->stream));
    dg_slot_point(ctx, v_mem, DG_SLOT_WINO_V);
    dg_slot_point(ctx, l->m_mem, DG_SLOT_WINO_M);
    DG_ASSERT(dg_chw_from_md(sv, dg_mem_md(l->src_p.mem)));
}

/* c = a . b, batched over xi, and waits for it. */
static void matmul(const dg_prim *p, dg_ctx *ctx, dnnl_memory_t a, dnnl_memory_t b,
        dnnl_memory_t c) {
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}};
    dg_prim_exec(p, ctx, 3, args);
    DG_DNNL(dnnl_stream_wait(ctx->stream));
}

void dg_wino_backward_weights(dg_wino *l, dg_ctx *ctx, dnnl_memory_t diff_dst,
        float *diff_weights, float *diff_bias) {
    DG_ASSERT(l->mmw_pd != NULL);
    const double t0 = l->prof_bw ? dg_profile_begin() : 0.0;
    const dnnl_memory_desc_t want = blocked_like(dg_mem_md(diff_dst));
    dg_port_bind_in(&l->ddst_p, ctx, diff_dst, &want);
    dg_port_pull(&l->ddst_p, ctx);
    dg_chw sv, dv;
    DG_ASSERT(dg_chw_from_md(&dv, dg_mem_md(l->ddst_p.mem)));
    prepare(l, ctx, l->vt_mem, &sv);
    memset(l->du, 0, (size_t)(36 * l->ic * l->oc) * sizeof(float));
    for (int64_t t0 = 0; t0 < l->t; t0 += l->tb) {
        transform_input(l, dg_mem_ptr(l->src_p.mem), &sv, dg_mem_ptr(l->vt_mem), t0);
        transform_grad_output(l, dg_mem_ptr(l->ddst_p.mem), &dv, dg_mem_ptr(l->m_mem), t0);
        matmul(&l->mmw, ctx, l->vt_mem, l->m_mem, l->du_mem);
    }
    transform_weight_grad(l, diff_weights);
    if (diff_bias) bias_grad(l, dg_mem_ptr(l->ddst_p.mem), &dv, diff_bias);
    if (l->prof_bw) dg_profile_end_slot(l->prof_bw, t0);
}

void dg_wino_forward(dg_wino *l, dg_ctx *ctx, const float *weights, const float *bias,
        uint64_t version) {
    const double t0 = l->prof ? dg_profile_begin() : 0.0;
    if (!version || version != l->u_version) {
        transform_weights(l, weights);
        l->u_version = version;
    }
    dg_chw sv, dv;
    DG_ASSERT(dg_chw_from_md(&dv, dg_mem_md(l->dst)));
    prepare(l, ctx, l->v_mem, &sv);
    for (int64_t t0 = 0; t0 < l->t; t0 += l->tb) {
        transform_input(l, dg_mem_ptr(l->src_p.mem), &sv, dg_mem_ptr(l->v_mem), t0);
        matmul(&l->mm, ctx, l->v_mem, l->u_mem, l->m_mem);
        transform_output(l, dg_mem_ptr(l->m_mem), bias, dg_mem_ptr(l->dst), &dv, t0);
    }
    if (l->prof) dg_profile_end_slot(l->prof, t0);
}

void dg_wino_free(dg_wino *l) {
    dg_prim_free(&l->mm);
    dg_prim_free(&l->mmw);
    dnnl_primitive_desc_destroy(l->mm_pd);
    dnnl_primitive_desc_destroy(l->mmw_pd);
    dg_port_free(&l->src_p);
    dg_port_free(&l->ddst_p);
    dnnl_memory_t mems[] = {l->v_mem, l->m_mem, l->u_mem, l->vt_mem, l->du_mem};
    for (size_t i = 0; i < DG_ARRAY_LEN(mems); i++) dnnl_memory_destroy(mems[i]);
    dg_free(l->u);
    dg_free(l->du);
    memset(l, 0, sizeof(*l));
}
