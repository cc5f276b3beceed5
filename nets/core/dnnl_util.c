/* nets/core/dnnl_util.c -- see dnnl_util.h. */
#include "dnnl_util.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl_debug.h>

#include "profile.h"

void dg_dnnl_check(dnnl_status_t s, const char *call, const char *file, int line) {
    if (s == dnnl_success) return;
    if (s == dnnl_out_of_memory) { /* oneDNN does not say how much */
        char what[256];
        snprintf(what, sizeof(what), "oneDNN (%s at %s:%d)", call, file, line);
        dg_out_of_memory(0, what);
    }
    dg_panic(file, line, call, dnnl_status2str(s));
}

static _Atomic uint64_t n_memories, n_primitives;

dg_dnnl_counts dg_dnnl_counts_now(void) {
    dg_dnnl_counts c = {atomic_load(&n_memories), atomic_load(&n_primitives)};
    return c;
}

void dg_ctx_init(dg_ctx *ctx) {
    memset(ctx, 0, sizeof(*ctx));
    DG_DNNL(dnnl_engine_create(&ctx->engine, dnnl_cpu, 0));
    DG_DNNL(dnnl_stream_create(&ctx->stream, ctx->engine, dnnl_stream_default_flags));
    ctx->caps = *dg_caps_get();
    ctx->winograd = false;
    ctx->compute_dt = dnnl_f32;
}

void dg_ctx_free(dg_ctx *ctx) {
    if (ctx->stream) dnnl_stream_destroy(ctx->stream);
    if (ctx->engine) dnnl_engine_destroy(ctx->engine);
    dg_free(ctx->scratch);
    for (int i = 0; i < DG_N_SLOTS; i++) dg_free(ctx->slot[i]);
    memset(ctx, 0, sizeof(*ctx));
}

/* Records a buffer of size bytes (already counted in b->wanted) as refused:
 * the first one is named in the error; nothing more fits after it. */
static void budget_refuse(dg_mem_budget *b, double size, const char *what) {
    if (b->failed) return;
    b->failed = true;
    b->failed_size = size;
    snprintf(b->failed_what, sizeof(b->failed_what), "%s", what);
}

bool dg_budget_take(dg_mem_budget *b, double size, const char *what) {
    if (!b) return true;
    b->wanted += size; /* after a refusal nothing fits: the model is never run */
    if (!b->failed && b->wanted <= (double)b->limit) return true;
    budget_refuse(b, size, what);
    return false;
}

/* "a 2x256x64x64 f32 tensor" */
static void md_what(const dnnl_memory_desc_t *md, char *buf, size_t size) {
    char dims[96];
    dg_fmt_dims(dims, sizeof(dims), md->dims, md->ndims, "x");
    snprintf(buf, size, "a %s %s tensor", dims, md->data_type == dnnl_bf16 ? "bf16" : "f32");
}

dnnl_memory_t dg_mem_new(const dg_ctx *ctx, const dnnl_memory_desc_t *md, void *handle) {
    dnnl_memory_t m;
    atomic_fetch_add(&n_memories, 1);
    if (handle == DNNL_MEMORY_ALLOCATE && ctx->budget) {
        char what[128];
        md_what(md, what, sizeof(what));
        bool fits = dg_budget_take(ctx->budget, (double)dg_md_bytes(md), what);
        if (fits) {
            const dnnl_status_t s = dnnl_memory_create(&m, md, ctx->engine, handle);
            if (s == dnnl_success) return m;
            if (s != dnnl_out_of_memory) DG_DNNL(s);
            budget_refuse(ctx->budget, (double)dg_md_bytes(md), what);
        }
        handle = DNNL_MEMORY_NONE;
    }
    DG_DNNL(dnnl_memory_create(&m, md, ctx->engine, handle));
    return m;
}

void dg_mem_zero(dnnl_memory_t m) {
    void *p = dg_mem_ptr(m);
    if (p) memset(p, 0, dg_md_bytes(dg_mem_md(m)));
}

void *dg_ctx_calloc(const dg_ctx *ctx, size_t n, size_t size, const char *what) {
    if (!ctx->budget) return dg_xcalloc(n, size);
    const double bytes = (double)n * (double)size;
    if (!dg_budget_take(ctx->budget, bytes, what)) return NULL;
    void *p = bytes < (double)SIZE_MAX ? dg_try_malloc(n * size) : NULL;
    if (!p) {
        budget_refuse(ctx->budget, bytes, what);
        return NULL;
    }
    memset(p, 0, n * size);
    return p;
}

/* Grows a context buffer (the scratchpad, a slot) to size bytes. During a
 * model build a growth the budget refuses (or that fails) leaves the buffer
 * as it was: the model is never run. */
static void ctx_buffer_grow(const dg_ctx *ctx, int index, void **buf, size_t *cur, size_t size,
        const char *what) {
    if (size <= *cur) return;
    dg_mem_budget *b = ctx->budget;
    if (!b) {
        dg_free(*buf);
        *buf = dg_xmalloc(size);
        *cur = size;
        return;
    }
    /* counted from the size it was last counted at, refused or not */
    DG_ASSERT(index >= 0 && index < (int)DG_ARRAY_LEN(b->shared));
    const double counted = DG_MAX((double)*cur, b->shared[index]);
    if ((double)size <= counted) return;
    b->shared[index] = (double)size;
    if (!dg_budget_take(b, (double)size - counted, what)) return;
    void *p = dg_try_malloc(size);
    if (!p) {
        budget_refuse(b, (double)size - counted, what);
        return;
    }
    dg_free(*buf);
    *buf = p;
    *cur = size;
}

dnnl_memory_desc_t dg_md_plain(int ndims, const int64_t *dims, dnnl_format_tag_t tag) {
    dnnl_memory_desc_t md;
    DG_DNNL(dnnl_memory_desc_init_by_tag(&md, ndims, dims, dnnl_f32, tag));
    return md;
}

dnnl_memory_desc_t dg_md_any(int ndims, const int64_t *dims) {
    return dg_md_plain(ndims, dims, dnnl_format_tag_any);
}

dnnl_memory_desc_t dg_md_any_dt(int ndims, const int64_t *dims, dnnl_data_type_t dt) {
    dnnl_memory_desc_t md;
    DG_DNNL(dnnl_memory_desc_init_by_tag(&md, ndims, dims, dt, dnnl_format_tag_any));
    return md;
}

const dnnl_memory_desc_t *dg_mem_md(const_dnnl_memory_t m) {
    const dnnl_memory_desc_t *md;
    DG_DNNL(dnnl_memory_get_memory_desc(m, &md));
    return md;
}

void *dg_mem_ptr(const_dnnl_memory_t m) {
    void *p;
    DG_DNNL(dnnl_memory_get_data_handle(m, &p));
    return p;
}

void dg_mem_set_ptr(dnnl_memory_t m, const void *p) {
    DG_DNNL(dnnl_memory_set_data_handle(m, (void *)p));
}

int64_t dg_md_nelems(const dnnl_memory_desc_t *md) {
    int64_t n = 1;
    for (int i = 0; i < md->ndims; i++) n *= md->dims[i];
    return md->ndims ? n : 0;
}

size_t dg_md_bytes(const dnnl_memory_desc_t *md) {
    return dnnl_memory_desc_get_size(md);
}

const dnnl_memory_desc_t *dg_pd_md(const_dnnl_primitive_desc_t pd, dnnl_query_t what, int index) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, what, index);
    DG_ASSERT(md != NULL);
    return md;
}

dnnl_primitive_attr_t dg_attr_new(void) {
    dnnl_primitive_attr_t attr;
    DG_DNNL(dnnl_primitive_attr_create(&attr));
    DG_DNNL(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    return attr;
}

dnnl_primitive_desc_t dg_pd_try_new(const dg_ctx *ctx, const void *op_desc,
        const_dnnl_post_ops_t post_ops, const_dnnl_primitive_desc_t hint) {
    dnnl_primitive_attr_t attr = dg_attr_new();
    if (post_ops) DG_DNNL(dnnl_primitive_attr_set_post_ops(attr, post_ops));
    dnnl_primitive_desc_t pd = NULL;
    const dnnl_status_t s = dnnl_primitive_desc_create(&pd, op_desc, attr, ctx->engine, hint);
    dnnl_primitive_attr_destroy(attr);
    if (s == dnnl_unimplemented) return NULL;
    DG_DNNL(s);
    return pd;
}

dnnl_primitive_desc_t dg_pd_new(const dg_ctx *ctx, const void *op_desc,
        const_dnnl_post_ops_t post_ops, const_dnnl_primitive_desc_t hint) {
    dnnl_primitive_desc_t pd = dg_pd_try_new(ctx, op_desc, post_ops, hint);
    if (!pd) dg_panic(__FILE__, __LINE__, "dnnl_primitive_desc_create", "unimplemented");
    return pd;
}

/* "convolution backward-data", "reorder", ... */
static void prim_kind_name(const_dnnl_primitive_desc_t pd, char *buf, size_t size,
        dnnl_prop_kind_t *prop) {
    dnnl_primitive_kind_t pk = dnnl_undefined_primitive;
    DG_DNNL(dnnl_primitive_desc_query(pd, dnnl_query_primitive_kind, 0, &pk));
    *prop = dnnl_prop_kind_undef;
    const char *dir = "";
    if (dnnl_primitive_desc_query(pd, dnnl_query_prop_kind, 0, prop) == dnnl_success) {
        switch (*prop) {
        case dnnl_forward_training:
        case dnnl_forward_inference: dir = " forward"; break;
        case dnnl_backward_data: dir = " backward-data"; break;
        case dnnl_backward_weights: dir = " backward-weights"; break;
        case dnnl_backward: dir = " backward"; break;
        default: dir = ""; break;
        }
    }
    snprintf(buf, size, "%s%s", dnnl_prim_kind2str(pk), dir);
}

/* oneDNN's own layout notation for a blocked md: dims outermost first,
 * upper case when blocked, then the inner blocks ("aBcd16b" = nChw16c),
 * and ":bf16" for bf16 data. */
static void layout_str(const dnnl_memory_desc_t *md, char *buf, size_t size) {
    if (md->format_kind != dnnl_blocked) {
        snprintf(buf, size, "?");
        return;
    }
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    int order[DNNL_MAX_NDIMS];
    for (int i = 0; i < md->ndims; i++) order[i] = i;
    for (int i = 1; i < md->ndims; i++) /* insertion sort by stride, descending */
        for (int j = i; j > 0 && b->strides[order[j]] > b->strides[order[j - 1]]; j--) {
            const int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    size_t len = 0;
    for (int i = 0; i < md->ndims && len + 1 < size; i++) {
        bool blocked = false;
        for (int k = 0; k < b->inner_nblks; k++) blocked |= b->inner_idxs[k] == order[i];
        buf[len++] = (char)((blocked ? 'A' : 'a') + order[i]);
    }
    buf[len] = '\0';
    for (int k = 0; k < b->inner_nblks && len < size; k++)
        len += (size_t)snprintf(buf + len, size - len, "%lld%c", (long long)b->inner_blks[k],
                'a' + (int)b->inner_idxs[k]);
    if (md->data_type == dnnl_bf16 && len < size) snprintf(buf + len, size - len, ":bf16");
}

/* Shape text and FLOPs of one execution of a convolution or inner
 * product (0 for other kinds); reorders get their dims and layouts. */
static double prim_shape(const_dnnl_primitive_desc_t pd, dnnl_prop_kind_t prop, char *buf,
        size_t size) {
    buf[0] = '\0';
    const dnnl_convolution_desc_t *cd = NULL;
    const dnnl_inner_product_desc_t *ipd = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_convolution_d, 0, &cd) == dnnl_success && cd) {
        const dnnl_memory_desc_t *src = prop == dnnl_backward_data ? &cd->diff_src_desc
                                                                    : &cd->src_desc;
        const dnnl_memory_desc_t *wei = prop == dnnl_backward_weights ? &cd->diff_weights_desc
                                                                       : &cd->weights_desc;
        const dnnl_memory_desc_t *dst = prop == dnnl_forward_training ||
                        prop == dnnl_forward_inference ? &cd->dst_desc : &cd->diff_dst_desc;
        const bool grouped = wei->ndims == 5;
        const int64_t g = grouped ? wei->dims[0] : 1, kh = wei->dims[wei->ndims - 2],
                      kw = wei->dims[wei->ndims - 1];
        const int64_t n = src->dims[0], ic = src->dims[1], oc = dst->dims[1],
                      oh = dst->dims[2], ow = dst->dims[3];
        snprintf(buf, size, "%lldx%lldx%lldx%lld->%lld k%lldx%lld s%lld d%lld%s%s%s",
                (long long)n, (long long)ic, (long long)src->dims[2], (long long)src->dims[3],
                (long long)oc, (long long)kh, (long long)kw, (long long)cd->strides[0],
                (long long)cd->dilates[0] + 1,
                cd->weights_desc.data_type == dnnl_bf16 ? " bf16" : "",
                cd->alg_kind == dnnl_convolution_winograd ? " wino" : "",
                grouped ? " grouped" : "");
        if (grouped) {
            const size_t len = strlen(buf);
            snprintf(buf + len, size - len, " %lld", (long long)g);
        }
        return 2.0 * (double)n * (double)oc * (double)oh * (double)ow * (double)(ic / g) *
                (double)kh * (double)kw;
    }
    if (dnnl_primitive_desc_query(pd, dnnl_query_inner_product_d, 0, &ipd) == dnnl_success &&
            ipd) {
        const dnnl_memory_desc_t *wei = prop == dnnl_backward_weights ? &ipd->diff_weights_desc
                                                                       : &ipd->weights_desc;
        const dnnl_memory_desc_t *src = prop == dnnl_backward_data ? &ipd->diff_src_desc
                                                                    : &ipd->src_desc;
        double k = 1;
        for (int i = 1; i < wei->ndims; i++) k *= (double)wei->dims[i];
        snprintf(buf, size, "%lldx%.0f->%lld", (long long)src->dims[0], k,
                (long long)wei->dims[0]);
        return 2.0 * (double)src->dims[0] * (double)wei->dims[0] * k;
    }
    const dnnl_memory_desc_t *rs = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *rd = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    dnnl_primitive_kind_t pk = dnnl_undefined_primitive;
    DG_DNNL(dnnl_primitive_desc_query(pd, dnnl_query_primitive_kind, 0, &pk));
    if (pk == dnnl_reorder && rs && rd) {
        char a[32], b[32];
        layout_str(rs, a, sizeof(a));
        layout_str(rd, b, sizeof(b));
        const size_t len = dg_fmt_dims(buf, size, rs->dims, rs->ndims, "x");
        if (len + 1 < size) snprintf(buf + len, size - len, " %s->%s", a, b);
    }
    return 0;
}

void dg_prim_init(dg_prim *p, dg_ctx *ctx, const_dnnl_primitive_desc_t pd) {
    dg_prim_init_as(p, ctx, pd, NULL);
}

const char dg_prof_untimed[] = "untimed";

void dg_prim_init_as(dg_prim *p, dg_ctx *ctx, const_dnnl_primitive_desc_t pd, const char *kind) {
    memset(p, 0, sizeof(*p));
    atomic_fetch_add(&n_primitives, 1);
    DG_DNNL(dnnl_primitive_create(&p->prim, pd));
    if (dg_profile_enabled() && kind != DG_PROF_UNTIMED) {
        char pd_kind[96], shape[128];
        dnnl_prop_kind_t prop;
        prim_kind_name(pd, pd_kind, sizeof(pd_kind), &prop);
        const double flops = prim_shape(pd, prop, shape, sizeof(shape));
        p->prof = dg_profile_slot(kind ? kind : pd_kind, shape, flops);
    }
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t size = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (size == 0) return;
    ctx_buffer_grow(ctx, 0, &ctx->scratch, &ctx->scratch_size, size, "oneDNN's scratchpad");
    /* The shared buffer may move when a later primitive needs more, so the
     * handle is set at every execution. */
    p->scratch = dg_mem_new(ctx, smd, DNNL_MEMORY_NONE);
}

void dg_prim_exec(const dg_prim *p, const dg_ctx *ctx, int nargs, const dnnl_exec_arg_t *args) {
    dnnl_exec_arg_t all[16];
    DG_ASSERT(nargs >= 0 && nargs < 16);
    memcpy(all, args, (size_t)nargs * sizeof(*args));
    if (p->scratch) {
        dg_mem_set_ptr(p->scratch, ctx->scratch);
        all[nargs].arg = DNNL_ARG_SCRATCHPAD;
        all[nargs].memory = p->scratch;
        nargs++;
    }
    if (!p->prof) {
        DG_DNNL(dnnl_primitive_execute(p->prim, ctx->stream, nargs, all));
        return;
    }
    const double t0 = dg_now();
    DG_DNNL(dnnl_primitive_execute(p->prim, ctx->stream, nargs, all));
    DG_DNNL(dnnl_stream_wait(ctx->stream));
    dg_profile_add(p->prof, dg_now() - t0);
}

void dg_prim_free(dg_prim *p) {
    dnnl_primitive_destroy(p->prim);
    dnnl_memory_destroy(p->scratch);
    memset(p, 0, sizeof(*p));
}

static void port_release(dg_port *p) {
    dg_prim_free(&p->reorder);
    dnnl_primitive_desc_destroy(p->rpd);
    dnnl_memory_destroy(p->buf);
    p->rpd = NULL;
    p->buf = NULL;
    p->mem = NULL;
    p->user = NULL;
}

dnnl_memory_t dg_slot_mem(dg_ctx *ctx, const dnnl_memory_desc_t *md, int slot) {
    DG_ASSERT(slot > DG_SLOT_OWN && slot < DG_N_SLOTS);
    const size_t size = dg_md_bytes(md);
    ctx_buffer_grow(ctx, slot, &ctx->slot[slot], &ctx->slot_size[slot], size,
            "a shared layer buffer");
    return dg_mem_new(ctx, md, DNNL_MEMORY_NONE);
}

void dg_slot_point(const dg_ctx *ctx, dnnl_memory_t m, int slot) {
    dg_mem_set_ptr(m, ctx->slot[slot]);
}

dnnl_memory_t dg_buf_mem(dg_ctx *ctx, const dnnl_memory_desc_t *md, int slot) {
    if (slot == DG_SLOT_OWN) return dg_mem_new(ctx, md, DNNL_MEMORY_ALLOCATE);
    return dg_slot_mem(ctx, md, slot);
}

void dg_buf_point(const dg_ctx *ctx, dnnl_memory_t m, int slot) {
    if (slot != DG_SLOT_OWN) dg_slot_point(ctx, m, slot);
}

static void port_bind(dg_port *p, dg_ctx *ctx, dnnl_memory_t user,
        const dnnl_memory_desc_t *want, bool output, int slot) {
    if (p->user == user && p->output == output && p->user && p->slot == slot
            && dnnl_memory_desc_equal(&p->want, want))
        return;
    port_release(p);
    p->user = user;
    p->want = *want;
    p->output = output;
    p->slot = slot;
    const dnnl_memory_desc_t *umd = dg_mem_md(user);
    if (dnnl_memory_desc_equal(umd, want)) {
        p->mem = user;
        return;
    }
    /* A transient slot may move when a later port needs more, so the handle
     * is set at every pull and push. */
    p->buf = dg_buf_mem(ctx, want, slot);
    p->mem = p->buf;
    dnnl_primitive_attr_t attr = dg_attr_new();
    if (output)
        DG_DNNL(dnnl_reorder_primitive_desc_create(&p->rpd, want, ctx->engine, umd, ctx->engine, attr));
    else
        DG_DNNL(dnnl_reorder_primitive_desc_create(&p->rpd, umd, ctx->engine, want, ctx->engine, attr));
    dnnl_primitive_attr_destroy(attr);
    dg_prim_init(&p->reorder, ctx, p->rpd);
}

void dg_port_bind_in(dg_port *p, dg_ctx *ctx, dnnl_memory_t user, const dnnl_memory_desc_t *want) {
    port_bind(p, ctx, user, want, false, DG_SLOT_OWN);
}

void dg_port_bind_out(dg_port *p, dg_ctx *ctx, dnnl_memory_t user, const dnnl_memory_desc_t *want) {
    port_bind(p, ctx, user, want, true, DG_SLOT_OWN);
}

void dg_port_bind_in_transient(dg_port *p, dg_ctx *ctx, dnnl_memory_t user,
        const dnnl_memory_desc_t *want, int slot) {
    DG_ASSERT(slot >= DG_SLOT_WEIGHTS && slot <= DG_SLOT_DIFF_DST2);
    port_bind(p, ctx, user, want, false, slot);
}

void dg_port_bind_out_transient(dg_port *p, dg_ctx *ctx, dnnl_memory_t user,
        const dnnl_memory_desc_t *want, int slot) {
    DG_ASSERT(slot >= DG_SLOT_WEIGHTS && slot <= DG_SLOT_DIFF_DST2);
    port_bind(p, ctx, user, want, true, slot);
}

void dg_port_pull(dg_port *p, const dg_ctx *ctx) {
    DG_ASSERT(p->mem != NULL && !p->output);
    if (!p->buf) return;
    dg_buf_point(ctx, p->buf, p->slot);
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, p->user}, {DNNL_ARG_TO, p->buf}};
    dg_prim_exec(&p->reorder, ctx, 2, args);
}

dnnl_memory_t dg_port_out_mem(dg_port *p, const dg_ctx *ctx) {
    DG_ASSERT(p->mem != NULL && p->output);
    if (p->buf) dg_buf_point(ctx, p->buf, p->slot);
    return p->mem;
}

void dg_port_push(dg_port *p, const dg_ctx *ctx) {
    DG_ASSERT(p->mem != NULL && p->output);
    if (!p->buf) return;
    dg_buf_point(ctx, p->buf, p->slot);
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, p->buf}, {DNNL_ARG_TO, p->user}};
    dg_prim_exec(&p->reorder, ctx, 2, args);
}

void dg_port_free(dg_port *p) {
    port_release(p);
    memset(p, 0, sizeof(*p));
}

void dg_mem_copy(dg_ctx *ctx, dnnl_memory_t dst, dnnl_memory_t src) {
    dg_port p;
    memset(&p, 0, sizeof(p));
    dg_port_bind_in(&p, ctx, src, dg_mem_md(dst));
    if (p.buf) {
        /* Reorder straight into dst rather than into the port's buffer. */
        dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
        dg_prim_exec(&p.reorder, ctx, 2, args);
    } else if (dst != src) {
        memcpy(dg_mem_ptr(dst), dg_mem_ptr(src), dg_md_bytes(dg_mem_md(src)));
    }
    DG_DNNL(dnnl_stream_wait(ctx->stream));
    dg_port_free(&p);
}

bool dg_chw_from_md(dg_chw *v, const dnnl_memory_desc_t *md) {
    memset(v, 0, sizeof(*v));
    if (md->data_type != dnnl_f32 || md->format_kind != dnnl_blocked) return false;
    if (md->ndims != 4 && md->ndims != 2) return false;
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    v->n = md->dims[0];
    v->c = md->dims[1];
    v->h = md->ndims == 4 ? md->dims[2] : 1;
    v->w = md->ndims == 4 ? md->dims[3] : 1;
    v->off0 = md->offset0;
    v->sn = b->strides[0];
    v->scb = b->strides[1];
    v->sh = md->ndims == 4 ? b->strides[2] : 0;
    v->sw = md->ndims == 4 ? b->strides[3] : 0;
    if (b->inner_nblks == 0) {
        v->cb = 1;
        return true;
    }
    if (b->inner_nblks == 1 && b->inner_idxs[0] == 1) {
        v->cb = b->inner_blks[0];
        return true;
    }
    return false;
}

dnnl_memory_desc_t dg_md_chw_compatible(const dnnl_memory_desc_t *md) {
    dg_chw v;
    if (dg_chw_from_md(&v, md)) return *md;
    return dg_md_plain(md->ndims, md->dims, md->ndims == 4 ? dnnl_nchw : dnnl_nc);
}
