/* nets/core/dnnl_util.h -- the oneDNN engine and stream, the DG_DNNL check,
 * primitives that share one user-mode scratchpad, reorder "ports" between
 * the layouts two layers chose, and a view of channel-blocked layouts for the
 * hand-written kernels.
 *
 * Shapes: N batch, C channels, H height, W width. */
#ifndef DG_DNNL_UTIL_H
#define DG_DNNL_UTIL_H

#include <oneapi/dnnl/dnnl.h>

#include "caps.h"
#include "common.h"

/* Aborts with "file:line: call -> dnnl status" when a oneDNN call fails. */
void dg_dnnl_check(dnnl_status_t s, const char *call, const char *file, int line);
#define DG_DNNL(call) dg_dnnl_check((call), #call, __FILE__, __LINE__)

/* One engine (CPU 0) and its in-order stream, plus the scratchpad shared by
 * every primitive created through dg_prim_init (primitives run one at a
 * time, so one buffer of the largest size serves them all). */
/* Context buffers ("slots") that layers share instead of owning one
 * buffer each. Transient slots hold a reorder target that lives only inside
 * one call of a layer (the weights in a primitive's layout, an incoming
 * gradient converted for a backward pass; dg_port_bind_in_transient): any
 * port may grow them at any time, so their contents last until another
 * port of that slot is pulled or pushed. Held slots carry a tensor from the
 * layer that writes it to the layers that read it later in the same pass (a
 * convolution's diff_src read by the layer before it); the network that
 * assigns them proves the liveness (nets/resnet.c, nets/deeplab.c), and
 * only layer init functions size them, so their buffers never move during
 * a pass. */
enum {
    DG_SLOT_OWN = 0,   /* not a slot: the layer owns the buffer */
    DG_SLOT_WEIGHTS,   /* transient: weights for forward / backward-data */
    DG_SLOT_DIFF_W,    /* transient: diff_weights before the copy to the gradient */
    DG_SLOT_DIFF_DST,  /* transient: diff_dst for backward-weights (and -data) */
    DG_SLOT_DIFF_DST2, /* transient: diff_dst for backward-data when it wants another */
    DG_SLOT_BN_DIFF,   /* held: a BatchNorm's diff_src, read only by the
                          convolution before it (dg_cbr) */
    DG_SLOT_GRAD_A,    /* held: gradients, assigned by the networks */
    DG_SLOT_GRAD_B,
    DG_SLOT_GRAD_C,
    DG_SLOT_GRAD_RELU, /* held: the gradient behind a residual ReLU */
    DG_SLOT_FWD,       /* held: a forward output that only the next layer's
                          forward reads (a projection shortcut's, read by the
                          residual add; the stem's, by the max pooling) */
    DG_SLOT_ACT,       /* held: a BN + ReLU output read only by the next
                          convolution, rewritten before that convolution's
                          backward (dg_cbr_redo) */
    DG_SLOT_WINO_V,    /* transient: dg_wino's transformed input, within
                          one forward */
    DG_SLOT_WINO_M,    /* transient: dg_wino's products, within one forward */
    DG_SLOT_FOLD,      /* transient: a BatchNorm folded into a convolution's
                          weights, read only while that convolution makes its
                          own prepared copy (dg_cbr, inference instances) */
    DG_N_SLOTS
};

/* Memory accounting while a model is built (dg_model_create sets
 * ctx->budget for the duration of its layers' init): every buffer a layer
 * allocates counts against the headroom the build started with. The first
 * buffer that does not fit is refused (its memory object gets no data; the
 * model is never run) and named, and the build goes on counting what it
 * would have taken, so the error can say how much the model needs. */
typedef struct dg_mem_budget {
    size_t limit;         /* bytes the build may take */
    double wanted;        /* bytes of the buffers asked for so far */
    bool failed;          /* a buffer was refused */
    double failed_size;   /* the first refused buffer's bytes */
    char failed_what[160]; /* and what it was */
    double shared[DG_N_SLOTS]; /* the size each context buffer is counted at:
                                  [0] the scratchpad, [slot] a slot */
} dg_mem_budget;

typedef struct dg_ctx {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    void *scratch;       /* owned, scratch_size bytes */
    size_t scratch_size; /* largest scratchpad requested so far */
    void *slot[DG_N_SLOTS];       /* owned slot buffers ([DG_SLOT_OWN] unused) */
    size_t slot_size[DG_N_SLOTS]; /* the largest each has been asked for */
    dg_caps caps;        /* what this CPU can run (caps.h) */
    dg_status status;    /* DG_STATUS_ERR_CONFIG once a layer could not be
                            built on this CPU (dg_wlayer_init_unbuilt, which
                            logs it); dg_model_create returns and clears it */
    dg_mem_budget *budget; /* while a model is built, else NULL */
    /* How the layers built on this context compute; dg_model_create sets
     * both from dg_model_opts for each model and restores them after: */
    bool winograd;               /* 3x3 convolutions may take Winograd (conv.h);
                                    false after dg_ctx_init */
    dnnl_data_type_t compute_dt; /* dnnl_f32 or dnnl_bf16 (wlayer.h); f32 after
                                    dg_ctx_init */
} dg_ctx;

/* Creates the engine and stream and copies the process's capabilities
 * (dg_caps_get: probed on the first context). */
void dg_ctx_init(dg_ctx *ctx);
void dg_ctx_free(dg_ctx *ctx);

/* Counters of oneDNN objects created through this module; a training step
 * after the first must leave them (and dg_alloc_count) unchanged. */
typedef struct dg_dnnl_counts {
    uint64_t memories;
    uint64_t primitives;
} dg_dnnl_counts;
dg_dnnl_counts dg_dnnl_counts_now(void);

/* Creates a memory object (counted). handle: a pointer to wrap (not owned),
 * DNNL_MEMORY_ALLOCATE or DNNL_MEMORY_NONE. An allocation that the build's
 * budget refuses (or that fails) during a model build leaves the memory
 * without data (dg_mem_ptr NULL) and is recorded in ctx->budget; outside a
 * build, a failed allocation ends the process (dg_out_of_memory). */
dnnl_memory_t dg_mem_new(const dg_ctx *ctx, const dnnl_memory_desc_t *md, void *handle);
/* Zeroes a memory object's data (nothing when it has none: a refused
 * allocation). */
void dg_mem_zero(dnnl_memory_t m);
/* n * size zeroed bytes a layer owns (dg_free), counted against the
 * build's budget: NULL when refused during a model build (recorded, the
 * model is never run); outside a build, dg_xcalloc. what names the buffer
 * in the error. */
void *dg_ctx_calloc(const dg_ctx *ctx, size_t n, size_t size, const char *what);
/* Counts size bytes against the build's budget (true outside a build);
 * false when they do not fit: the first such buffer is recorded with what. */
bool dg_budget_take(dg_mem_budget *b, double size, const char *what);
/* Memory descriptor of a plain f32 tensor with the given tag (dnnl_nchw,
 * dnnl_oihw, dnnl_nc, dnnl_x, ...). */
dnnl_memory_desc_t dg_md_plain(int ndims, const int64_t *dims, dnnl_format_tag_t tag);
/* Same, with format_tag_any (the primitive chooses). */
dnnl_memory_desc_t dg_md_any(int ndims, const int64_t *dims);
/* format_tag_any with another data type (dnnl_bf16 for bf16 compute). */
dnnl_memory_desc_t dg_md_any_dt(int ndims, const int64_t *dims, dnnl_data_type_t dt);
/* Descriptor and data pointer of a memory object. */
const dnnl_memory_desc_t *dg_mem_md(const_dnnl_memory_t m);
void *dg_mem_ptr(const_dnnl_memory_t m);
void dg_mem_set_ptr(dnnl_memory_t m, const void *p);
/* Number of logical elements and the byte size of a descriptor. */
int64_t dg_md_nelems(const dnnl_memory_desc_t *md);
size_t dg_md_bytes(const dnnl_memory_desc_t *md);
/* Descriptor a primitive descriptor reports for `what` (dnnl_query_src_md, ...). */
const dnnl_memory_desc_t *dg_pd_md(const_dnnl_primitive_desc_t pd, dnnl_query_t what, int index);

/* A primitive that uses the context's shared scratchpad. Owns the primitive
 * and a scratchpad memory object; borrows the pd. */
typedef struct dg_prim {
    dnnl_primitive_t prim;
    dnnl_memory_t scratch; /* wraps ctx->scratch, NULL when none is needed */
    int prof;              /* profile slot (profile.h), 0 when not timed */
} dg_prim;

/* A primitive attribute with the user scratchpad mode set: every pd this
 * module creates uses it. The caller destroys it. */
dnnl_primitive_attr_t dg_attr_new(void);
/* pd from an op descriptor with dg_attr_new()'s attributes (plus post-ops
 * when `post_ops` is not NULL); `hint` is the forward pd for backward pds. */
dnnl_primitive_desc_t dg_pd_new(const dg_ctx *ctx, const void *op_desc,
        const_dnnl_post_ops_t post_ops, const_dnnl_primitive_desc_t hint);
/* The same, or NULL when no implementation exists (dnnl_unimplemented). */
dnnl_primitive_desc_t dg_pd_try_new(const dg_ctx *ctx, const void *op_desc,
        const_dnnl_post_ops_t post_ops, const_dnnl_primitive_desc_t hint);
void dg_prim_init(dg_prim *p, dg_ctx *ctx, const_dnnl_primitive_desc_t pd);
/* The same, profiled as `kind` (profile.h) instead of the pd's own kind
 * (NULL: the pd's): a primitive that does another pass's work;
 * DG_PROF_UNTIMED: not timed on its own (its caller times the operation it
 * is part of: dg_wino). */
extern const char dg_prof_untimed[];
#define DG_PROF_UNTIMED dg_prof_untimed
void dg_prim_init_as(dg_prim *p, dg_ctx *ctx, const_dnnl_primitive_desc_t pd, const char *kind);
/* Executes with args (at most 15) plus the scratchpad. */
void dg_prim_exec(const dg_prim *p, const dg_ctx *ctx, int nargs, const dnnl_exec_arg_t *args);
void dg_prim_free(dg_prim *p);

/* A port connects a memory produced or consumed elsewhere ("user") to the
 * layout a primitive wants ("mem"). When the layouts agree, mem is the user
 * memory itself and no reorder exists. Ports bind lazily: binding the same
 * user memory again costs nothing, so the first step builds and the rest
 * reuse. Owns the reorder and its buffer; borrows the user memory. */
typedef struct dg_port {
    dnnl_memory_t user;         /* borrowed, last bound */
    dnnl_memory_t mem;          /* what the primitive uses: user or buf */
    dnnl_memory_t buf;          /* owned reorder target/source, or NULL */
    dnnl_primitive_desc_t rpd;  /* reorder pd, or NULL */
    dg_prim reorder;            /* user->buf (input) or buf->user (output) */
    dnnl_memory_desc_t want;    /* layout the primitive wants */
    bool output;
    int slot;                   /* buf's data is ctx->slot[slot]; DG_SLOT_OWN: own */
} dg_port;

/* Input port: mem holds `user` in layout `want` after dg_port_pull. */
void dg_port_bind_in(dg_port *p, dg_ctx *ctx, dnnl_memory_t user, const dnnl_memory_desc_t *want);
/* Output port: the primitive writes mem; dg_port_push copies it to `user`. */
void dg_port_bind_out(dg_port *p, dg_ctx *ctx, dnnl_memory_t user, const dnnl_memory_desc_t *want);
/* The same with buf in the context's transient slot `slot` (DG_SLOT_*). */
void dg_port_bind_in_transient(dg_port *p, dg_ctx *ctx, dnnl_memory_t user,
        const dnnl_memory_desc_t *want, int slot);
void dg_port_bind_out_transient(dg_port *p, dg_ctx *ctx, dnnl_memory_t user,
        const dnnl_memory_desc_t *want, int slot);
void dg_port_pull(dg_port *p, const dg_ctx *ctx);
/* A memory of layout md whose data is the context's slot `slot` (grown to
 * fit): dg_slot_point before each use. */
dnnl_memory_t dg_slot_mem(dg_ctx *ctx, const dnnl_memory_desc_t *md, int slot);
void dg_slot_point(const dg_ctx *ctx, dnnl_memory_t m, int slot);
/* A layer's output buffer of layout md: its own (slot DG_SLOT_OWN) or a
 * held slot; dg_buf_point before the layer writes it (nothing for an own
 * buffer). */
dnnl_memory_t dg_buf_mem(dg_ctx *ctx, const dnnl_memory_desc_t *md, int slot);
void dg_buf_point(const dg_ctx *ctx, dnnl_memory_t m, int slot);
/* An output port's mem, ready for the primitive to write (a transient
 * buffer is pointed at its slot). */
dnnl_memory_t dg_port_out_mem(dg_port *p, const dg_ctx *ctx);
void dg_port_push(dg_port *p, const dg_ctx *ctx);
void dg_port_free(dg_port *p);

/* Copies between any two memories of the same logical shape (a one-off
 * reorder; init-time and test use only, it creates a primitive). */
void dg_mem_copy(dg_ctx *ctx, dnnl_memory_t dst, dnnl_memory_t src);

/* Element (n, c, h, w) of a 4-D f32 tensor lies at
 *   off0 + n*sn + (c/cb)*scb + h*sh + w*sw + c%cb
 * for plain layouts (cb = 1, any strides: nchw, nhwc) and for layouts with
 * one channel block (nChw16c, nChw8c). Hand-written kernels use this view. */
typedef struct dg_chw {
    int64_t n, c, h, w;
    int64_t cb;                     /* channel block, 1 for plain layouts */
    int64_t off0, sn, scb, sh, sw;  /* strides in elements */
} dg_chw;

/* Fills v from a 4-D (or 2-D (N, C), viewed as (N, C, 1, 1)) f32
 * descriptor; false when the layout is not of the supported kind. */
bool dg_chw_from_md(dg_chw *v, const dnnl_memory_desc_t *md);
static inline int64_t dg_chw_at(const dg_chw *v, int64_t n, int64_t c, int64_t h, int64_t w) {
    return v->off0 + n * v->sn + (c / v->cb) * v->scb + h * v->sh + w * v->sw + c % v->cb;
}
/* A descriptor that dg_chw_from_md accepts: `md` itself when it is of a
 * supported kind, otherwise plain nchw with the same dims. */
dnnl_memory_desc_t dg_md_chw_compatible(const dnnl_memory_desc_t *md);

#endif
