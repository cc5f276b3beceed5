/* nets/core/groupnorm.c -- see groupnorm.h. Backward, per (n, group) with
 * M elements, xhat = (x - mean)*rstd and g = diff_dst*gamma[c]:
 *   diff_src = rstd*(g - sum(g)/M - xhat*sum(g*xhat)/M)
 * and per channel, over n, h, w: diff_gamma = sum(diff_dst*xhat),
 * diff_beta = sum(diff_dst). Work items are (n, group) for the statistics
 * and diff_src, channels for diff_gamma/diff_beta; each is summed serially
 * in double, so results do not depend on the thread count.
 * Shapes: N batch, C channels, G groups, H height, W width. */
#include "groupnorm.h"
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
    memset(dg_mem_ptr(l->dst), 0, dg_md_bytes(&md));
    size_t ng = (size_t)(l->dims[0] * cfg->groups);
    l->mean = dg_xcalloc(ng, sizeof(*l->mean));
    l->rstd = dg_xcalloc(ng, sizeof(*l->rstd));
    if (!cfg->training) return;
    l->diff_src = dg_mem_new(ctx, &md, DNNL_MEMORY_ALLOCATE);
    memset(dg_mem_ptr(l->diff_src), 0, dg_md_bytes(&md));
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

void dg_gn_forward(dg_gn *l, dg_ctx *ctx, const dg_pass *p) {
    dg_port_pull(&l->src_p, ctx);
    DG_DNNL(dnnl_stream_wait(ctx->stream));
    const double t0 = dg_profile_begin();
    gn_forward_kernel(l, dg_mem_ptr(l->src_p.mem), dg_mem_ptr(l->dst), p->params + l->w_off,
            p->params + l->b_off);
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
                for (int64_t w = 0; w < ww; w++)
                    out[w * sw] = gr * dr[w * sw] - a - b * ((xr[w * sw] - mf) * rf);
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
    gn_backward_params(l, x, dy, p->grad + l->w_off, p->grad + l->b_off);
    gn_backward_data(l, x, dy, p->params + l->w_off, dg_mem_ptr(l->diff_src));
    dg_profile_end("group_normalization backward", t0);
}

void dg_gn_free(dg_gn *l) {
    dg_port_free(&l->src_p);
    dg_port_free(&l->ddst_p);
    dnnl_memory_destroy(l->dst);
    dnnl_memory_destroy(l->diff_src);
    dg_free(l->mean);
    dg_free(l->rstd);
    memset(l, 0, sizeof(*l));
}
