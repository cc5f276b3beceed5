/* nets/core/caps.h -- what this CPU can run, asked of oneDNN once per
 * process: the effective instruction set (after ONEDNN_MAX_CPU_ISA), whether
 * bf16 convolutions and inner products exist (natively with AVX512-BF16 dot
 * products, or emulated on AVX-512 without them) and whether oneDNN has a
 * Winograd convolution here (AVX-512 only in oneDNN 2.6).
 *
 * The answers come from creating the primitive descriptors dgseg itself
 * would create (a small 3x3 convolution's three passes and an inner
 * product, in the layouts and data types of nets/core/conv.c and
 * linear.c), not from a table of CPU models, so they follow whatever the
 * installed oneDNN implements. Every dg_ctx carries a copy (dg_ctx.caps);
 * paths that need a capability check it before building primitives
 * (dg_caps_check). */
#ifndef DG_CAPS_H
#define DG_CAPS_H

#include <oneapi/dnnl/dnnl.h>

#include "common.h"

typedef struct dg_caps {
    dnnl_cpu_isa_t isa;   /* dnnl_get_effective_cpu_isa() */
    const char *isa_name; /* "avx2", "avx512_core_bf16", ... (static) */
    bool bf16;            /* bf16 convolutions (forward, backward-data,
                             backward-weights) and inner products build */
    bool bf16_native;     /* ... on AVX512-BF16 instructions; false with
                             bf16: emulated on AVX-512 (slower than f32) */
    bool winograd;        /* oneDNN's f32 Winograd convolutions build (else
                             dgseg runs its own: nets/core/wino.h) */
    char dnnl_version[32];/* "2.6.3" */
} dg_caps;

/* The process's capabilities, probed on the first call (thread-safe). */
const dg_caps *dg_caps_get(void);

/* What a model needs from the CPU (dg_model_opts.bf16): DG_STATUS_OK, or
 * DG_STATUS_ERR_CONFIG with one message that names the setting (`what`:
 * the config key or command-line flag the user wrote), the CPU's effective
 * ISA, the missing feature and the alternative. bf16 on a CPU that only
 * emulates it is allowed, with a warning (once per process). Winograd needs
 * nothing: where oneDNN has none, dgseg runs its own (nets/core/wino.h). */
dg_status dg_caps_check(const dg_caps *c, bool bf16, const char *what);

/* One line for `dgseg --version`: "oneDNN 2.6.3, CPU ISA avx2 (bf16: no,
 * Winograd: dgseg's)" (oneDNN's where it has its own). */
void dg_caps_describe(const dg_caps *c, char *buf, size_t size);

#endif
