/* nets/core/groupnorm.c -- see groupnorm.h. Backward, per (n, group) with
 * M elements, xhat = (x - mean)*rstd and g = diff_dst*gamma[c]:
 *   diff_src = rstd*(g - sum(g)/M - xhat*sum(g*xhat)/M)
 * and per channel, over n, h, w: diff_gamma = sum(diff_dst*xhat),
 * diff_beta = sum(diff_dst). Work items are (n, group) for the statistics
 * and diff_src, channels for diff_gamma/diff_beta; each is summed serially
 * in double, so results do not depend on the thread count.
 * Shapes: N batch, C channels, G groups, H height, W width. */
#include "groupnorm.h"
#include "chw_lanes.h"
#include "profile.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void dg_gn_init(dg_gn *l, dg_ctx *ctx, dg_param_set *ps, const char *name,
        dnnl_memory_t src, const dg_gn_cfg *cfg) {
    memset(l, 0, sizeof(*l));
    l->cfg = *cfg;
    l->src = src;
    dg_mem_dims4(src, l->dims);
    int64_t c = l->dims[1];
    DG_ASSERT(cfg->groups > 0 && c % cfg->groups == 0);

    char buf[256];
    snprintf(buf, sizeof(buf), "%s.weight", name);
    l->w_off = dg_params_add(ps, buf, 1, &c, DG_PARAM_NO_DECAY | DG_PARAM_ASAM_SCALED,
            DG_INIT_CONST, 1.f);
    snprintf(buf, sizeof(buf), "%s.bias", name);
    l->b_off = dg_params_add(ps, buf, 1, &c, DG_PARAM_NO_DECAY, DG_INIT_CONST, 0.f);

    dnnl_memory_desc_t md = dg_md_chw_compatible(dg_mem_md(src));
    DG_ASSERT(dg_chw_from_md(&l->view, &md));
    dg_port_bind_in(&l->src_p, ctx, src, &md);
    /* Zeroed once: the kernels never write the padded channels. */
    l->dst = dg_mem_new(ctx, &md, DNNL_MEMORY_ALLOCATE);
    dg_mem_zero(l->dst);
    size_t ng = (size_t)(l->dims[0] * cfg->groups);
    l->mean = dg_xcalloc(ng, sizeof(*l->mean));
    l->rstd = dg_xcalloc(ng, sizeof(*l->rstd));
    const dg_chw *v = &l->view;
    l->lanes = (v->cb == 16 || v->cb == 8) && v->sw == v->cb && v->c % v->cb == 0;
    if (l->lanes) {
        l->nc1 = dg_xcalloc((size_t)(v->n * v->c), sizeof(*l->nc1));
        l->nc2 = dg_xcalloc((size_t)(v->n * v->c), sizeof(*l->nc2));
    }
    if (!cfg->training) return;
    l->diff_src = dg_mem_new(ctx, &md, DNNL_MEMORY_ALLOCATE);
    dg_mem_zero(l->diff_src);
}

/* Statistics of every (n, group) of x, then y = (x - mean)*a + beta with
 * a = gamma*rstd. x, y: (N, C, H, W) in layout v; gamma, beta: (C). */
static void gn_forward_kernel(const dg_gn *l, const float *x, float *y,
        const float *gamma, const float *beta) {
    const dg_chw *v = &l->view;
    const int64_t g_n = l->cfg.groups, cg = v->c / g_n, hh = v->h, ww = v->w, sw = v->sw;
    const double m = (double)(cg * hh * ww);
    double *mean_out = l->mean, *rstd_out = l->rstd;
#pragma omp parallel for schedule(static)
    for (int64_t ng = 0; ng < v->n * g_n; ng++) {
        const int64_t n = ng / g_n, c0 = (ng % g_n) * cg;
        double s = 0.0;
        for (int64_t c = c0; c < c0 + cg; c++)
            for (int64_t h = 0; h < hh; h++) {
                const float *xr = x + dg_chw_at(v, n, c, h, 0);
                for (int64_t w = 0; w < ww; w++) s += xr[w * sw];
            }
        const double mean = s / m;
        double s2 = 0.0;
        for (int64_t c = c0; c < c0 + cg; c++)
            for (int64_t h = 0; h < hh; h++) {
                const float *xr = x + dg_chw_at(v, n, c, h, 0);
                for (int64_t w = 0; w < ww; w++) {
                    double d = xr[w * sw] - mean;
                    s2 += d * d;
                }
            }
        const double rstd = 1.0 / sqrt(s2 / m + DG_GN_EPS);
        mean_out[ng] = mean;
        rstd_out[ng] = rstd;
        const float mf = (float)mean;
        for (int64_t c = c0; c < c0 + cg; c++) {
            const float a = (float)(gamma[c] * rstd), b = beta[c];
            for (int64_t h = 0; h < hh; h++) {
                const int64_t off = dg_chw_at(v, n, c, h, 0);
                const float *xr = x + off;
                float *yr = y + off;
                for (int64_t w = 0; w < ww; w++) yr[w * sw] = (xr[w * sw] - mf) * a + b;
            }
        }
    }
}


/* ---- channel-blocked layouts (nets/core/chw_lanes.h) ----------------------- */
/* Group sums add their channels' sums in channel order, so the results do
 * not depend on the thread count. */

/* Group sums of per-channel sums: out[n*G + g] = sum over g's channels. */
static void group_sums(const dg_gn *l, const double *nc, double *out) {
    const int64_t g_n = l->cfg.groups, c_n = l->view.c, cg = c_n / g_n;
    for (int64_t ng = 0; ng < l->view.n * g_n; ng++) {
        const int64_t n = ng / g_n, c0 = (ng % g_n) * cg;
        double s = 0.0;
        for (int64_t c = c0; c < c0 + cg; c++) s += nc[n * c_n + c];
        out[ng] = s;
    }
}

static void gn_forward_lanes(const dg_gn *l, const float *x, float *y, const float *gamma,
        const float *beta) {
    const dg_chw *v = &l->view;
    const int L = (int)v->cb;
    const int64_t g_n = l->cfg.groups, cg = v->c / g_n, nb = v->c / L;
    const double m = (double)(cg * v->h * v->w);
    double *mean = l->mean, *rstd = l->rstd, *nc1 = l->nc1, *nc2 = l->nc2;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < v->n * nb; i++) {
        const int64_t n = i / nb, b = i % nb, k = n * v->c + b * L;
        if (L == 16) dg_lane_sums(v, x + dg_block_at(v, n, b), 16, nc1 + k, nc2 + k);
        else dg_lane_sums(v, x + dg_block_at(v, n, b), 8, nc1 + k, nc2 + k);
    }
    group_sums(l, nc1, mean);
    group_sums(l, nc2, rstd);
    for (int64_t ng = 0; ng < v->n * g_n; ng++) {
        mean[ng] /= m;
        const double var = fmax(0.0, rstd[ng] / m - mean[ng] * mean[ng]);
        rstd[ng] = 1.0 / sqrt(var + DG_GN_EPS);
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < v->n * nb; i++) {
        const int64_t n = i / nb, b = i % nb;
        float mf[DG_MAX_LANES], k[DG_MAX_LANES], bt[DG_MAX_LANES];
        for (int j = 0; j < L; j++) {
            const int64_t c = b * L + j, ng = n * g_n + c / cg;
            mf[j] = (float)mean[ng];
            k[j] = (float)(gamma[c] * rstd[ng]);
            bt[j] = beta[c];
        }
        const int64_t o = dg_block_at(v, n, b);
        if (L == 16) dg_lane_affine(v, x + o, y + o, 16, mf, k, bt);
        else dg_lane_affine(v, x + o, y + o, 8, mf, k, bt);
    }
}

static void gn_backward_lanes(const dg_gn *l, const float *x, const float *dy,
        const float *gamma, float *diff_gamma, float *diff_beta, float *dx) {
    const dg_chw *v = &l->view;
    const int L = (int)v->cb;
    const int64_t g_n = l->cfg.groups, cg = v->c / g_n, nb = v->c / L;
    const double m = (double)(cg * v->h * v->w);
    const double *mean = l->mean, *rstd = l->rstd;
    double *sd = l->nc1, *sdx = l->nc2;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < v->n * nb; i++) {
        const int64_t n = i / nb, b = i % nb, o = dg_block_at(v, n, b), k = n * v->c + b * L;
        if (L == 16) dg_lane_sums2(v, x + o, dy + o, 16, sd + k, sdx + k);
        else dg_lane_sums2(v, x + o, dy + o, 8, sd + k, sdx + k);
    }
    /* diff_gamma = sum_n rstd*(sum(dy*x) - mean*sum(dy)), diff_beta = sum_n sum(dy) */
    for (int64_t c = 0; c < v->c; c++) {
        double sg = 0.0, sb = 0.0;
        for (int64_t n = 0; n < v->n; n++) {
            const int64_t ng = n * g_n + c / cg, k = n * v->c + c;
            sg += rstd[ng] * (sdx[k] - mean[ng] * sd[k]);
            sb += sd[k];
        }
        diff_gamma[c] = (float)sg;
        diff_beta[c] = (float)sb;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < v->n * nb; i++) {
        const int64_t n = i / nb, b = i % nb;
        float gr[DG_MAX_LANES], a[DG_MAX_LANES], bb[DG_MAX_LANES], mf[DG_MAX_LANES],
                rf[DG_MAX_LANES];
        for (int j = 0; j < L; j++) {
            const int64_t c = b * L + j, ng = n * g_n + c / cg, c0 = (c / cg) * cg;
            /* the group's sum(g) and sum(g*x), g = gamma*dy, in channel order */
            double sg = 0.0, sgx = 0.0;
            for (int64_t q = c0; q < c0 + cg; q++) {
                sg += gamma[q] * sd[n * v->c + q];
                sgx += gamma[q] * sdx[n * v->c + q];
            }
            const double k1 = sg / m, k2 = rstd[ng] * (sgx - mean[ng] * sg) / m;
            gr[j] = (float)(gamma[c] * rstd[ng]);
            a[j] = (float)(rstd[ng] * k1);
            bb[j] = (float)(rstd[ng] * k2);
            mf[j] = (float)mean[ng];
            rf[j] = (float)rstd[ng];
        }
        const int64_t o = dg_block_at(v, n, b);
        const bool relu = l->cfg.relu_src;
        if (L == 16 && relu) dg_lane_dx(v, x + o, dy + o, dx + o, 16, true, gr, a, bb, mf, rf);
        else if (L == 16) dg_lane_dx(v, x + o, dy + o, dx + o, 16, false, gr, a, bb, mf, rf);
        else if (relu) dg_lane_dx(v, x + o, dy + o, dx + o, 8, true, gr, a, bb, mf, rf);
        else dg_lane_dx(v, x + o, dy + o, dx + o, 8, false, gr, a, bb, mf, rf);
    }
}

void dg_gn_forward(dg_gn *l, dg_ctx *ctx, const dg_pass *p) {
    dg_port_pull(&l->src_p, ctx);
    DG_DNNL(dnnl_stream_wait(ctx->stream));
    const double t0 = dg_profile_begin();
    if (l->lanes)
        gn_forward_lanes(l, dg_mem_ptr(l->src_p.mem), dg_mem_ptr(l->dst), p->params + l->w_off,
                p->params + l->b_off);
    else
        gn_forward_kernel(l, dg_mem_ptr(l->src_p.mem), dg_mem_ptr(l->dst),
                p->params + l->w_off, p->params + l->b_off);
    dg_profile_end("group_normalization forward", t0);
}

/* diff_gamma, diff_beta (C), one channel per work item. */
static void gn_backward_params(const dg_gn *l, const float *x, const float *dy,
        float *diff_gamma, float *diff_beta) {
    const dg_chw *v = &l->view;
    const int64_t g_n = l->cfg.groups, cg = v->c / g_n, hh = v->h, ww = v->w, sw = v->sw;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < v->c; c++) {
        double sg = 0.0, sb = 0.0;
        for (int64_t n = 0; n < v->n; n++) {
            const int64_t ng = n * g_n + c / cg;
            const double mean = l->mean[ng], rstd = l->rstd[ng];
            double sdx = 0.0, sd = 0.0;
            for (int64_t h = 0; h < hh; h++) {
                const int64_t off = dg_chw_at(v, n, c, h, 0);
                const float *xr = x + off, *dr = dy + off;
                for (int64_t w = 0; w < ww; w++) {
                    sdx += (double)dr[w * sw] * xr[w * sw];
                    sd += dr[w * sw];
                }
            }
            /* sum(dy*xhat) = rstd*(sum(dy*x) - mean*sum(dy)) */
            sg += rstd * (sdx - mean * sd);
            sb += sd;
        }
        diff_gamma[c] = (float)sg;
        diff_beta[c] = (float)sb;
    }
}

/* diff_src, one (n, group) per work item. */
static void gn_backward_data(const dg_gn *l, const float *x, const float *dy,
        const float *gamma, float *dx) {
    const dg_chw *v = &l->view;
    const int64_t g_n = l->cfg.groups, cg = v->c / g_n, hh = v->h, ww = v->w, sw = v->sw;
    const double m = (double)(cg * hh * ww);
#pragma omp parallel for schedule(static)
    for (int64_t ng = 0; ng < v->n * g_n; ng++) {
        const int64_t n = ng / g_n, c0 = (ng % g_n) * cg;
        const double mean = l->mean[ng], rstd = l->rstd[ng];
        double sg = 0.0, sgx = 0.0; /* sum(g), sum(g*x) */
        for (int64_t c = c0; c < c0 + cg; c++) {
            double sd = 0.0, sdx = 0.0;
            for (int64_t h = 0; h < hh; h++) {
                const int64_t off = dg_chw_at(v, n, c, h, 0);
                const float *xr = x + off, *dr = dy + off;
                for (int64_t w = 0; w < ww; w++) {
                    sd += dr[w * sw];
                    sdx += (double)dr[w * sw] * xr[w * sw];
                }
            }
            sg += gamma[c] * sd;
            sgx += gamma[c] * sdx;
        }
        /* mean(g*xhat) = rstd*(sum(g*x) - mean*sum(g))/M */
        const double k1 = sg / m, k2 = rstd * (sgx - mean * sg) / m;
        const float mf = (float)mean, rf = (float)rstd;
        for (int64_t c = c0; c < c0 + cg; c++) {
            const float gr = (float)(gamma[c] * rstd), a = (float)(rstd * k1);
            const float b = (float)(rstd * k2);
            for (int64_t h = 0; h < hh; h++) {
                const int64_t off = dg_chw_at(v, n, c, h, 0);
                const float *xr = x + off, *dr = dy + off;
                float *out = dx + off;
                for (int64_t w = 0; w < ww; w++) {
                    const float g = gr * dr[w * sw] - a - b * ((xr[w * sw] - mf) * rf);
                    out[w * sw] = l->cfg.relu_src && !(xr[w * sw] > 0.f) ? 0.f : g;
                }
            }
        }
    }
}

void dg_gn_backward(dg_gn *l, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_dst) {
    DG_ASSERT(l->cfg.training);
    dg_port_bind_in(&l->ddst_p, ctx, diff_dst, dg_mem_md(l->dst));
    dg_port_pull(&l->ddst_p, ctx);
    DG_DNNL(dnnl_stream_wait(ctx->stream));
    const float *x = dg_mem_ptr(l->src_p.mem), *dy = dg_mem_ptr(l->ddst_p.mem);
    const double t0 = dg_profile_begin();
    if (l->lanes) {
        gn_backward_lanes(l, x, dy, p->params + l->w_off, p->grad + l->w_off,
                p->grad + l->b_off, dg_mem_ptr(l->diff_src));
    } else {
        gn_backward_params(l, x, dy, p->grad + l->w_off, p->grad + l->b_off);
        gn_backward_data(l, x, dy, p->params + l->w_off, dg_mem_ptr(l->diff_src));
    }
    dg_profile_end("group_normalization backward", t0);
}

void dg_gn_free(dg_gn *l) {
    dg_port_free(&l->src_p);
    dg_port_free(&l->ddst_p);
    dnnl_memory_destroy(l->dst);
    dnnl_memory_destroy(l->diff_src);
    dg_free(l->mean);
    dg_free(l->rstd);
    dg_free(l->nc1);
    dg_free(l->nc2);
    memset(l, 0, sizeof(*l));
}
