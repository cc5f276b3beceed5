/* eval/seg_infer.c -- see seg_infer.h. Window placement follows
 * mmsegmentation mmseg/models/segmentors/encoder_decoder.py slide_inference.
 * Shapes: K classes, H x W image, WH x WW window (the instance's input). */
#include "eval/seg_infer.h"

#include <stdio.h>
#include <string.h>

static dg_status check_cfg(const dg_seg_infer_cfg *c) {
    if (!dg_model_is_segmentation(c->model)) {
        dg_log_error("evaluation: model '%s' is not a segmentation model (deeplabv3plus-r18, "
                "deeplabv3plus-r50, deeplabv3plus-r101)", c->model ? c->model : "(none)");
        return DG_STATUS_ERR_CONFIG;
    }
    if (c->classes < 1) {
        dg_log_error("evaluation: classes = %lld, must be at least 1", (long long)c->classes);
        return DG_STATUS_ERR_CONFIG;
    }
    if (c->output_stride != 0 && c->output_stride != 8 && c->output_stride != 16) {
        dg_log_error("evaluation: output_stride = %d, must be 8 or 16", c->output_stride);
        return DG_STATUS_ERR_CONFIG;
    }
    if (c->mode != DG_SEG_INFER_WHOLE && c->mode != DG_SEG_INFER_SLIDE) {
        dg_log_error("evaluation: unknown inference mode %d (whole or slide)", (int)c->mode);
        return DG_STATUS_ERR_CONFIG;
    }
    if (c->mode == DG_SEG_INFER_SLIDE
            && (c->win_h < 1 || c->win_w < 1 || c->stride_h < 1 || c->stride_w < 1
                    || c->stride_h > c->win_h || c->stride_w > c->win_w)) {
        dg_log_error("evaluation: sliding window %lldx%lld with stride %lldx%lld: the window "
                "must be positive and each stride between 1 and the window's side (a larger "
                "stride would leave pixels uncovered)", (long long)c->win_h, (long long)c->win_w,
                (long long)c->stride_h, (long long)c->stride_w);
        return DG_STATUS_ERR_CONFIG;
    }
    return DG_STATUS_OK;
}

static dg_param_tensor *copy_views(const dg_param_tensor *src, size_t n) {
    dg_param_tensor *v = dg_xcalloc(n ? n : 1, sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        v[i] = src[i];
        v[i].name = dg_xstrdup(src[i].name);
    }
    return v;
}

static void free_views(dg_param_tensor *v, size_t n) {
    for (size_t i = 0; v && i < n; i++) dg_free((void *)v[i].name);
    dg_free(v);
}

dg_status dg_seg_infer_init(dg_seg_infer *s, dg_ctx *ctx, const dg_seg_infer_cfg *cfg,
        const dg_param_set *layout) {
    memset(s, 0, sizeof(*s));
    DG_ASSERT(ctx && cfg && layout);
    dg_status st = check_cfg(cfg);
    if (st != DG_STATUS_OK) return st;
    s->cfg = *cfg;
    s->model = dg_xstrdup(cfg->model);
    s->cfg.model = s->model;
    s->ctx = ctx;
    s->tensors = copy_views(layout->tensors, layout->n_tensors);
    s->n_tensors = layout->n_tensors;
    s->stat_tensors = copy_views(layout->stat_tensors, layout->n_stat_tensors);
    s->n_stat_tensors = layout->n_stat_tensors;
    s->d = layout->d;
    s->n_stats = layout->n_stats;
    return DG_STATUS_OK;
}

dg_status dg_seg_infer_configure(dg_seg_infer *s, const dg_seg_infer_cfg *cfg) {
    DG_ASSERT(s->model && cfg);
    dg_status st = check_cfg(cfg);
    if (st != DG_STATUS_OK) return st;
    const int os = cfg->output_stride ? cfg->output_stride : 16;
    const int os0 = s->cfg.output_stride ? s->cfg.output_stride : 16;
    if (strcmp(cfg->model, s->model) || cfg->classes != s->cfg.classes || os != os0) {
        dg_log_error("evaluation: the evaluator was built for %s with %lld classes at output "
                "stride %d; it cannot switch to %s with %lld classes at output stride %d",
                s->model, (long long)s->cfg.classes, os0, cfg->model, (long long)cfg->classes,
                os);
        return DG_STATUS_ERR_CONFIG;
    }
    s->cfg = *cfg;
    s->cfg.model = s->model;
    return DG_STATUS_OK;
}

static void shape_str(const dg_param_tensor *t, char *buf, size_t size) {
    size_t at = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < t->ndims && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%lld", i ? ", " : "",
                (long long)t->shape[i]);
    if (at < size) snprintf(buf + at, size - at, ")");
}

/* Every view of the instance (`got`) must exist by name in the layout with
 * the same shape and offset. */
static dg_status check_views(const char *model, const char *kind, const dg_param_tensor *got,
        size_t n_got, const dg_param_tensor *lay, size_t n_lay) {
    for (size_t i = 0; i < n_got; i++) {
        const dg_param_tensor *t = &got[i], *l = NULL;
        for (size_t j = 0; j < n_lay && !l; j++)
            if (!strcmp(lay[j].name, t->name)) l = &lay[j];
        if (!l) {
            dg_log_error("evaluation: %s '%s' of the %s inference instance is missing from "
                    "the parameter layout the evaluator was given", kind, t->name, model);
            return DG_STATUS_ERR_SHAPE;
        }
        bool same = l->ndims == t->ndims;
        for (int k = 0; same && k < t->ndims; k++) same = l->shape[k] == t->shape[k];
        if (!same) {
            char a[96], b[96];
            shape_str(t, a, sizeof(a));
            shape_str(l, b, sizeof(b));
            dg_log_error("evaluation: %s '%s' has shape %s in the %s inference instance but %s "
                    "in the evaluator's parameter layout", kind, t->name, a, model, b);
            return DG_STATUS_ERR_SHAPE;
        }
        if (l->offset != t->offset) {
            dg_log_error("evaluation: %s '%s' sits at offset %zu in the %s inference instance "
                    "but at %zu in the evaluator's parameter layout", kind, t->name, t->offset,
                    model, l->offset);
            return DG_STATUS_ERR_SHAPE;
        }
    }
    return DG_STATUS_OK;
}

static void inst_free(dg_seg_infer_inst *in) {
    if (!in) return;
    dg_port_free(&in->logits_p);
    dg_model_free(&in->m);
    dg_free(in);
}

/* Builds the batch-1 inference instance for an h x w input. */
static dg_status inst_build(dg_seg_infer *s, int64_t h, int64_t w, dg_seg_infer_inst **out) {
    dg_seg_infer_inst *in = dg_xcalloc(1, sizeof(*in));
    const dg_model_opts mo = {.batch = 1, .in_channels = 3, .height = h, .width = w,
            .classes = s->cfg.classes, .training = false,
            .output_stride = s->cfg.output_stride, .aux = false};
    /* The name and options were checked at init: creation fails only for
     * an image too large for the memory left (logged) */
    dg_status st = dg_model_create(&in->m, s->ctx, s->model, &mo, 0);
    if (st != DG_STATUS_OK) {
        dg_free(in);
        return st;
    }
    dg_param_set *ps = &in->m.ps;
    st = check_views(s->model, "tensor", ps->tensors, ps->n_tensors, s->tensors,
            s->n_tensors);
    if (st == DG_STATUS_OK)
        st = check_views(s->model, "statistic", ps->stat_tensors, ps->n_stat_tensors,
                s->stat_tensors, s->n_stat_tensors);
    if (st != DG_STATUS_OK) {
        inst_free(in);
        return st;
    }
    /* The instance always runs on the caller's buffers. */
    dg_free(ps->data);
    dg_free(ps->grad);
    dg_free(ps->stats);
    ps->data = ps->grad = ps->stats = NULL;
    const int64_t dims[4] = {1, s->cfg.classes, h, w};
    const dnnl_memory_desc_t md = dg_md_plain(4, dims, dnnl_nchw);
    dg_port_bind_in(&in->logits_p, s->ctx, in->m.logits, &md);
    in->h = h;
    in->w = w;
    s->inst = dg_xrealloc(s->inst, (s->n_inst + 1) * sizeof(*s->inst));
    s->inst[s->n_inst++] = in;
    *out = in;
    return DG_STATUS_OK;
}

static dg_status inst_get(dg_seg_infer *s, int64_t h, int64_t w, dg_seg_infer_inst **out) {
    for (size_t i = 0; i < s->n_inst; i++)
        if (s->inst[i]->h == h && s->inst[i]->w == w) {
            *out = s->inst[i];
            return DG_STATUS_OK;
        }
    return inst_build(s, h, w, out);
}

/* Windows along one axis of `size` pixels (mmsegmentation's h_grids). */
static int64_t n_windows(int64_t size, int64_t win, int64_t step) {
    return DG_MAX(size - win + step - 1, 0) / step + 1;
}

/* Window i along an axis: [*a, *b), the last one aligned to the border. */
static void window_span(int64_t i, int64_t size, int64_t win, int64_t step, int64_t *a,
        int64_t *b) {
    *b = DG_MIN(i * step + win, size);
    *a = DG_MAX(*b - win, 0);
}

/* cover[x] = windows covering coordinate x < size (never 0 when step <= win). */
static void fill_cover(int32_t *cover, int64_t size, int64_t win, int64_t step) {
    memset(cover, 0, (size_t)size * sizeof(*cover));
    const int64_t n = n_windows(size, win, step);
    for (int64_t i = 0; i < n; i++) {
        int64_t a, b;
        window_span(i, size, win, step, &a, &b);
        for (int64_t x = a; x < b; x++) cover[x]++;
    }
}

/* Grows a coverage array to hold `size` entries (only for a new size). */
static void cover_reserve(int32_t **cover, int64_t *cap, int64_t size) {
    if (size <= *cap) return;
    dg_free(*cover);
    *cover = dg_xmalloc((size_t)size * sizeof(**cover));
    *cap = size;
}

/* Network input (3, WH, WW) from rows [y1, y2) and columns [x1, x2) of the
 * image src (3, H, W), or of its mirror image when flip; zero padding. */
static void load_window(float *dst, int64_t wh, int64_t ww, const float *src, int64_t h,
        int64_t w, int64_t y1, int64_t y2, int64_t x1, int64_t x2, bool flip) {
    const int64_t rows = y2 - y1, cols = x2 - x1;
#pragma omp parallel for schedule(static)
    for (int64_t cr = 0; cr < 3 * wh; cr++) {
        const int64_t c = cr / wh, r = cr % wh;
        float *d = dst + cr * ww;
        if (r >= rows) {
            memset(d, 0, (size_t)ww * sizeof(*d));
            continue;
        }
        const float *row = src + (c * h + y1 + r) * w;
        if (flip)
            for (int64_t j = 0; j < cols; j++) d[j] = row[w - 1 - x1 - j];
        else
            memcpy(d, row + x1, (size_t)cols * sizeof(*d));
        memset(d + cols, 0, (size_t)(ww - cols) * sizeof(*d));
    }
}

/* logits (K, H, W) += scale * z / cover over the window's valid part; z is
 * (K, WH, WW); with flip the window lies in the mirror image and column x
 * lands on W - 1 - x. */
static void add_window(const dg_seg_infer *s, float *logits, int64_t h, int64_t w,
        const float *z, int64_t wh, int64_t ww, int64_t y1, int64_t y2, int64_t x1, int64_t x2,
        bool flip, float scale) {
    const int64_t k = s->cfg.classes, rows = y2 - y1, cols = x2 - x1;
#pragma omp parallel for schedule(static)
    for (int64_t cr = 0; cr < k * rows; cr++) {
        const int64_t c = cr / rows, r = cr % rows, y = y1 + r;
        const float *zrow = z + (c * wh + r) * ww;
        float *out = logits + (c * h + y) * w;
        const float rs = scale / (float)s->cover_h[y];
        for (int64_t j = 0; j < cols; j++) {
            const int64_t x = x1 + j;
            out[flip ? w - 1 - x : x] += zrow[j] * (rs / (float)s->cover_w[x]);
        }
    }
}

dg_status dg_seg_infer_run(dg_seg_infer *s, const float *params, const float *stats,
        const float *src, int64_t h, int64_t w, float *logits) {
    DG_ASSERT(s->model && params && stats && src && logits && h > 0 && w > 0);
    const bool slide = s->cfg.mode == DG_SEG_INFER_SLIDE;
    const int64_t wh = slide ? s->cfg.win_h : h, ww = slide ? s->cfg.win_w : w;
    const int64_t sh = slide ? s->cfg.stride_h : h, sw = slide ? s->cfg.stride_w : w;
    dg_seg_infer_inst *in;
    dg_status st = inst_get(s, wh, ww, &in);
    if (st != DG_STATUS_OK) return st;
    cover_reserve(&s->cover_h, &s->cap_h, h);
    cover_reserve(&s->cover_w, &s->cap_w, w);
    fill_cover(s->cover_h, h, wh, sh);
    fill_cover(s->cover_w, w, ww, sw);

    dg_pass pass;
    memset(&pass, 0, sizeof(pass));
    pass.params = params;
    pass.stats = (float *)stats; /* eval passes never write statistics */
    pass.weights_version = s->weights_version ? s->weights_version : dg_weights_version_new();
    const int64_t k = s->cfg.classes, gh = n_windows(h, wh, sh), gw = n_windows(w, ww, sw);
    const int passes = s->cfg.flip ? 2 : 1;
    const float scale = 1.f / (float)passes;
    memset(logits, 0, (size_t)(k * h * w) * sizeof(*logits));
    float *x = dg_mem_ptr(in->m.src);
    for (int f = 0; f < passes; f++)
        for (int64_t i = 0; i < gh; i++)
            for (int64_t j = 0; j < gw; j++) {
                int64_t y1, y2, x1, x2;
                window_span(i, h, wh, sh, &y1, &y2);
                window_span(j, w, ww, sw, &x1, &x2);
                load_window(x, wh, ww, src, h, w, y1, y2, x1, x2, f == 1);
                dg_model_forward(&in->m, s->ctx, &pass);
                dg_port_pull(&in->logits_p, s->ctx);
                DG_DNNL(dnnl_stream_wait(s->ctx->stream));
                add_window(s, logits, h, w, dg_mem_ptr(in->logits_p.mem), wh, ww, y1, y2, x1,
                        x2, f == 1, scale);
            }
    return DG_STATUS_OK;
}

void dg_seg_infer_hold(dg_seg_infer *s, bool hold) {
    s->weights_version = hold ? dg_weights_version_new() : 0;
}

size_t dg_seg_infer_n_instances(const dg_seg_infer *s) { return s->n_inst; }

void dg_seg_infer_release(dg_seg_infer *s) {
    for (size_t i = 0; i < s->n_inst; i++) inst_free(s->inst[i]);
    dg_free(s->inst);
    s->inst = NULL;
    s->n_inst = 0;
}

void dg_seg_infer_free(dg_seg_infer *s) {
    dg_seg_infer_release(s);
    dg_free(s->model);
    free_views(s->tensors, s->n_tensors);
    free_views(s->stat_tensors, s->n_stat_tensors);
    dg_free(s->cover_h);
    dg_free(s->cover_w);
    memset(s, 0, sizeof(*s));
}
