/* nets/model.c -- models by name (see model.h). */
#include "nets/model.h"

#include <string.h>

#include "nets/core/conv.h"
#include "nets/core/weights.h"

#include "nets/classifier.h"
#include "nets/deeplab.h"
#include "nets/mnist_cnn.h"

typedef struct model_entry {
    const char *name;
    void (*init)(dg_model *m, dg_ctx *ctx);
    const char *backbone; /* tensor prefix of the ImageNet trunk, or NULL */
    bool winograd;        /* DG_WINOGRAD_AUTO's choice for training instances:
                             on where the model's PyTorch fixture holds with it
                             (tests/test_fixtures); DeepLab's gradients drift
                             ~40x PyTorch's own f32 error with it, so it trains
                             direct. Inference instances take Winograd for
                             every model: all inference fixtures hold with it */
    bool segmentation;    /* logits per pixel, output stride, auxiliary head */
} model_entry;

static void deeplab_r18(dg_model *m, dg_ctx *ctx) { dg_deeplab_init(m, ctx, 18); }
static void deeplab_r50(dg_model *m, dg_ctx *ctx) { dg_deeplab_init(m, ctx, 50); }
static void deeplab_r101(dg_model *m, dg_ctx *ctx) { dg_deeplab_init(m, ctx, 101); }
static void resnet18(dg_model *m, dg_ctx *ctx) { dg_classifier_init(m, ctx, 18); }
static void resnet50(dg_model *m, dg_ctx *ctx) { dg_classifier_init(m, ctx, 50); }

/* The one table of models: dg_model_names and dg_model_is_segmentation
 * read it; a model added here is known everywhere. */
#define DG_MODELS(X)                                                       \
    X("deeplabv3plus-r18", deeplab_r18, "backbone.", false, true)          \
    X("deeplabv3plus-r50", deeplab_r50, "backbone.", false, true)          \
    X("deeplabv3plus-r101", deeplab_r101, "backbone.", false, true)        \
    X("mnist-cnn", dg_mnist_cnn_init, NULL, true, false)                   \
    X("resnet18", resnet18, "featurizer.network.", true, false)            \
    X("resnet50", resnet50, "featurizer.network.", true, false)

#define DG_MODEL_ENTRY(name, init, backbone, winograd, seg) {name, init, backbone, winograd, seg},
#define DG_MODEL_NAME(name, init, backbone, winograd, seg) name,
static const model_entry models[] = {DG_MODELS(DG_MODEL_ENTRY)};
const char *const dg_model_names[] = {DG_MODELS(DG_MODEL_NAME) NULL};

bool dg_model_is_segmentation(const char *name) {
    for (size_t i = 0; name && i < DG_ARRAY_LEN(models); i++)
        if (!strcmp(models[i].name, name)) return models[i].segmentation;
    return false;
}

/* What a model build leaves of the headroom for everything else the run
 * maps: oneDNN's JIT code (whose mmap failing under an address-space limit
 * crashes inside oneDNN), thread stacks, the loader's batches and the
 * method's state: a quarter of it, at most 1 GiB. */
static size_t model_reserve(size_t headroom) {
    const size_t gib = (size_t)1 << 30;
    return headroom == SIZE_MAX ? 0 : DG_MIN(headroom / 4, gib);
}

dg_status dg_model_create(dg_model *m, dg_ctx *ctx, const char *name,
        const dg_model_opts *o, uint64_t seed) {
    memset(m, 0, sizeof(*m));
    const model_entry *e = NULL;
    for (size_t i = 0; i < DG_ARRAY_LEN(models); i++)
        if (!strcmp(models[i].name, name)) e = &models[i];
    if (!e) {
        char list[256] = "";
        for (size_t i = 0; dg_model_names[i]; i++) {
            if (i) strncat(list, ", ", sizeof(list) - strlen(list) - 1);
            strncat(list, dg_model_names[i], sizeof(list) - strlen(list) - 1);
        }
        dg_log_error("unknown model '%s' (available: %s)", name, list);
        return DG_STATUS_ERR_CONFIG;
    }
    DG_ASSERT(o->batch > 0 && o->in_channels > 0 && o->height > 0 && o->width > 0
            && o->classes > 0);
    if (dg_model_is_segmentation(e->name) && o->output_stride != 0 && o->output_stride != 8 &&
            o->output_stride != 16) {
        dg_log_error("%s: output stride %d: DeepLabv3+ runs at output stride 8 or 16", e->name,
                o->output_stride);
        return DG_STATUS_ERR_CONFIG;
    }
    dg_status st = dg_caps_check(&ctx->caps, o->bf16,
            "bf16 compute (train.dtype = bf16, bench --dtype bf16)");
    if (st != DG_STATUS_OK) return st;
    m->name = e->name;
    m->backbone = e->backbone;
    m->opts = *o;
    m->opts.sizes_from = NULL; /* the caller's text, for this call only */
    dg_params_init(&m->ps);
    /* every buffer the layers allocate counts against what the process can
     * still take: a shape too large for this machine is refused here, with
     * its size, before anything is touched (and never by the OOM killer) */
    const dg_mem_headroom room = dg_mem_headroom_now();
    dg_mem_budget budget = {.limit = room.bytes - model_reserve(room.bytes)};
    ctx->budget = &budget;
    int64_t dims[4] = {o->batch, o->in_channels, o->height, o->width};
    dnnl_memory_desc_t md = dg_md_plain(4, dims, dnnl_nchw);
    m->src = dg_mem_new(ctx, &md, DNNL_MEMORY_ALLOCATE);
    /* where oneDNN has no Winograd, the convolutions take dgseg's (conv.h) */
    const bool winograd = ctx->winograd;
    const dnnl_data_type_t compute_dt = ctx->compute_dt;
    ctx->winograd = o->winograd == DG_WINOGRAD_ON ||
            (o->winograd == DG_WINOGRAD_AUTO && (e->winograd || !o->training));
    ctx->compute_dt = o->bf16 ? dnnl_bf16 : dnnl_f32;
    e->init(m, ctx);
    ctx->winograd = winograd;
    ctx->compute_dt = compute_dt;
    dg_budget_take(&budget, (double)((o->training ? 2 : 1) * m->ps.d + m->ps.n_stats) *
            sizeof(float), o->training ? "the parameters and their gradients" : "the parameters");
    ctx->budget = NULL;
    if (budget.failed && ctx->status == DG_STATUS_OK) {
        char need[32], left[32], first[32];
        dg_fmt_bytes(need, sizeof(need), budget.wanted);
        dg_fmt_bytes(left, sizeof(left), (double)budget.limit);
        dg_fmt_bytes(first, sizeof(first), budget.failed_size);
        dg_log_error("%s (%s, batch %lld, %lldx%lldx%lld input): out of memory: its buffers need "
                     "%s and this process can give it %s (%s, less a reserve for code and "
                     "the data loader); the first that did not fit is %s "
                     "of %s; lower %s", e->name,
                     o->training ? "training" : "inference", (long long)o->batch,
                     (long long)o->in_channels, (long long)o->height, (long long)o->width, need,
                     left, room.binding[0] ? room.binding : "an allocation failed", budget.failed_what,
                     first, o->sizes_from ? o->sizes_from : "the batch size or the input size");
        ctx->status = DG_STATUS_ERR_MEMORY;
    }
    if (ctx->status != DG_STATUS_OK) { /* a layer this CPU cannot build, or memory (logged) */
        st = ctx->status;
        ctx->status = DG_STATUS_OK;
        dg_model_free(m);
        return st;
    }
    /* an inference instance never writes a gradient */
    if (o->training) dg_params_alloc(&m->ps);
    else dg_params_alloc_no_grad(&m->ps);
    dg_params_init_values(&m->ps, seed);
    return DG_STATUS_OK;
}

void dg_model_forward(dg_model *m, dg_ctx *ctx, const dg_pass *p) {
    m->ops->forward(m, ctx, p);
}

void dg_model_backward(dg_model *m, dg_ctx *ctx, const dg_pass *p, dnnl_memory_t diff_logits,
        dnnl_memory_t diff_aux_logits) {
    DG_ASSERT(!m->aux_logits || diff_aux_logits);
    m->ops->backward(m, ctx, p, diff_logits, diff_aux_logits);
}

void dg_model_free(dg_model *m) {
    if (m->ops) m->ops->free(m);
    dnnl_memory_destroy(m->src);
    dg_params_free(&m->ps);
    memset(m, 0, sizeof(*m));
}

dg_status dg_model_load_pretrained(dg_model *m, const char *path) {
    if (!m->backbone) {
        dg_log_error("%s: model %s has no ImageNet backbone to load pretrained weights into",
                path, m->name);
        return DG_STATUS_ERR_CONFIG;
    }
    static const char *const ignore[] = {"fc."};
    dg_weights_load_opts o = {.prefix = m->backbone, .ignore = ignore, .n_ignore = 1,
            .allow_missing_outside_prefix = true, .allow_convert = true};
    return dg_weights_load(path, &m->ps, &o);
}
