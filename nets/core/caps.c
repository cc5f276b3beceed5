/* nets/core/caps.c -- see caps.h. */
#include "caps.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* The probe builds primitive descriptors only; it takes nothing from
 * dnnl_util (which includes this module for dg_ctx.caps). A descriptor that
 * oneDNN refuses to initialise means this CPU lacks the kernel, like a pd
 * that does not build. */
static bool md_init(dnnl_memory_desc_t *md, int ndims, const int64_t *dims, dnnl_data_type_t dt,
        dnnl_format_tag_t tag) {
    dnnl_dims_t d = {0}; /* the full-size array the call's prototype names */
    memcpy(d, dims, (size_t)ndims * sizeof(d[0]));
    return dnnl_memory_desc_init_by_tag(md, ndims, d, dt, tag) == dnnl_success;
}

static const struct {
    dnnl_cpu_isa_t isa;
    const char *name;
} isa_names[] = {
    {dnnl_cpu_isa_sse41, "sse41"},
    {dnnl_cpu_isa_avx, "avx"},
    {dnnl_cpu_isa_avx2, "avx2"},
    {dnnl_cpu_isa_avx2_vnni, "avx2_vnni"},
    {dnnl_cpu_isa_avx512_mic, "avx512_mic"},
    {dnnl_cpu_isa_avx512_mic_4ops, "avx512_mic_4ops"},
    {dnnl_cpu_isa_avx512_core, "avx512_core"},
    {dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"},
    {dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"},
    {dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"},
};

static const char *isa_name(dnnl_cpu_isa_t isa) {
    for (size_t i = 0; i < DG_ARRAY_LEN(isa_names); i++)
        if (isa_names[i].isa == isa) return isa_names[i].name;
    return isa == dnnl_cpu_isa_all ? "all" : "unknown";
}

/* Whether isa includes every feature of `of` (the enum values are masks). */
static bool isa_has(dnnl_cpu_isa_t isa, dnnl_cpu_isa_t of) {
    return ((unsigned)isa & (unsigned)of) == (unsigned)of;
}

/* Creates and destroys a pd; true when oneDNN implements the op here. */
static bool builds(dnnl_engine_t eng, const void *op, const_dnnl_primitive_desc_t hint,
        dnnl_primitive_desc_t *keep) {
    dnnl_primitive_desc_t pd = NULL;
    const dnnl_status_t s = dnnl_primitive_desc_create(&pd, op, NULL, eng, hint);
    if (s != dnnl_success) return false;
    if (keep) *keep = pd;
    else dnnl_primitive_desc_destroy(pd);
    return true;
}

/* A 3x3 "same" convolution 16 -> 16 on 1x16x8x8 in every pass in the data
 * types conv.c uses for compute type cdt: src, weights and diff_dst in cdt,
 * dst, diff_src and diff_weights f32 (format any throughout). */
static bool conv_builds(dnnl_engine_t eng, dnnl_data_type_t cdt, dnnl_alg_kind_t alg,
        bool training) {
    const int64_t sd[4] = {1, 16, 8, 8}, wd[4] = {16, 16, 3, 3}, bd[1] = {16};
    const dnnl_format_tag_t any = dnnl_format_tag_any;
    dnnl_memory_desc_t src, wei, dst, src32, w32, bias;
    if (!md_init(&src, 4, sd, cdt, any) || !md_init(&wei, 4, wd, cdt, any) ||
            !md_init(&dst, 4, sd, dnnl_f32, any) || !md_init(&src32, 4, sd, dnnl_f32, any) ||
            !md_init(&w32, 4, wd, dnnl_f32, any) || !md_init(&bias, 1, bd, dnnl_f32, dnnl_x))
        return false;
    const dnnl_dims_t one = {1, 1}, zero = {0, 0};
    dnnl_convolution_desc_t fd, bdd, bwd;
    if (dnnl_dilated_convolution_forward_desc_init(&fd,
                training ? dnnl_forward_training : dnnl_forward_inference, alg, &src, &wei, &bias,
                &dst, one, zero, one, one) != dnnl_success)
        return false;
    dnnl_primitive_desc_t fwd = NULL;
    if (!builds(eng, &fd, NULL, &fwd)) return false;
    bool ok = true;
    if (training) {
        ok = dnnl_dilated_convolution_backward_data_desc_init(&bdd, alg, &src32, &wei, &src,
                     one, zero, one, one) == dnnl_success &&
                dnnl_dilated_convolution_backward_weights_desc_init(&bwd, alg, &src, &w32,
                        &bias, &src, one, zero, one, one) == dnnl_success &&
                builds(eng, &bdd, fwd, NULL) && builds(eng, &bwd, fwd, NULL);
    }
    dnnl_primitive_desc_destroy(fwd);
    return ok;
}

/* An inner product 2x64 -> 16 with src and weights in cdt (linear.c). */
static bool ip_builds(dnnl_engine_t eng, dnnl_data_type_t cdt) {
    const int64_t sd[2] = {2, 64}, wd[2] = {16, 64}, dd[2] = {2, 16}, bd[1] = {16};
    const dnnl_format_tag_t any = dnnl_format_tag_any;
    dnnl_memory_desc_t src, wei, dst, bias;
    dnnl_inner_product_desc_t d;
    return md_init(&src, 2, sd, cdt, any) && md_init(&wei, 2, wd, cdt, any) &&
            md_init(&dst, 2, dd, dnnl_f32, any) && md_init(&bias, 1, bd, dnnl_f32, dnnl_x) &&
            dnnl_inner_product_forward_desc_init(&d, dnnl_forward_training, &src, &wei, &bias,
                    &dst) == dnnl_success &&
            builds(eng, &d, NULL, NULL);
}

static dg_caps caps;
static pthread_once_t caps_once = PTHREAD_ONCE_INIT;

static void probe(void) {
    dnnl_engine_t eng;
    const dnnl_status_t es = dnnl_engine_create(&eng, dnnl_cpu, 0);
    if (es != dnnl_success) /* no CPU engine: nothing of dgseg can run */
        dg_panic(__FILE__, __LINE__, "dnnl_engine_create", "no CPU engine");
    caps.isa = dnnl_get_effective_cpu_isa();
    caps.isa_name = isa_name(caps.isa);
    caps.bf16 = conv_builds(eng, dnnl_bf16, dnnl_convolution_direct, true) &&
            ip_builds(eng, dnnl_bf16);
    caps.bf16_native = caps.bf16 && isa_has(caps.isa, dnnl_cpu_isa_avx512_core_bf16);
    caps.winograd = conv_builds(eng, dnnl_f32, dnnl_convolution_winograd, false);
    const dnnl_version_t *v = dnnl_version();
    snprintf(caps.dnnl_version, sizeof(caps.dnnl_version), "%d.%d.%d", v->major, v->minor,
            v->patch);
    dnnl_engine_destroy(eng);
}

const dg_caps *dg_caps_get(void) {
    pthread_once(&caps_once, probe);
    return &caps;
}

static pthread_once_t emulated_once = PTHREAD_ONCE_INIT;
static const char *emulated_what;

static void warn_emulated(void) {
    dg_log_warn("%s: this CPU (oneDNN ISA %s) has no AVX512-BF16 instructions; oneDNN emulates "
                "bf16 on AVX-512, which is correct but slower than f32 here",
            emulated_what, caps.isa_name);
}

dg_status dg_caps_check(const dg_caps *c, bool bf16, const char *what) {
    if (bf16 && !c->bf16) {
        dg_log_error("%s: this CPU cannot compute in bf16 (oneDNN %s runs at ISA %s and has no "
                     "bf16 convolutions there; they need AVX-512, natively AVX512-BF16): use "
                     "f32", what, c->dnnl_version, c->isa_name);
        return DG_STATUS_ERR_CONFIG;
    }
    if (bf16 && !c->bf16_native) {
        emulated_what = what;
        pthread_once(&emulated_once, warn_emulated);
    }
    return DG_STATUS_OK;
}

void dg_caps_describe(const dg_caps *c, char *buf, size_t size) {
    snprintf(buf, size, "oneDNN %s, CPU ISA %s (bf16: %s, Winograd: %s)", c->dnnl_version,
            c->isa_name, c->bf16 ? (c->bf16_native ? "native" : "emulated") : "no",
            c->winograd ? "oneDNN's" : "dgseg's");
}
