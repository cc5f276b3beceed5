/* tests/micro_conv.c -- micro-benchmark (not a test): a 3x3 convolution
 * 256->256 on 2x256x64x64, forward, backward-data and backward-weights
 * GFLOP/s, next to oneDNN's sgemm GFLOP/s on 2048^2 in the same process.
 * Usage: micro_conv [reps] (threads from OMP_NUM_THREADS). */
#include <stdio.h>
#include <stdlib.h>

#include "app/bench.h"
#include "nets/core/conv.h"

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 10;
    dg_ctx ctx;
    dg_ctx_init(&ctx);
    int64_t dims[4] = {2, 256, 64, 64};
    dnnl_memory_desc_t md = dg_md_plain(4, dims, dnnl_nChw16c);
    dnnl_memory_t src = dg_mem_new(&ctx, &md, DNNL_MEMORY_ALLOCATE);
    float *s = dg_mem_ptr(src);
    for (int64_t i = 0; i < 2 * 256 * 64 * 64; i++) s[i] = (float)((i * 7) % 13) / 13.f - 0.5f;
    dg_param_set ps;
    dg_params_init(&ps);
    dg_conv l;
    dg_conv_cfg cfg = {.oc = 256, .k = 3, .stride = 1, .pad = 1, .dilation = 1, .training = true};
    dg_conv_init(&l, &ctx, &ps, "conv", src, &cfg);
    dg_params_alloc(&ps);
    dg_params_init_values(&ps, 1);
    dg_pass p = dg_pass_train(&ps);
    const double flops = 2.0 * 2 * 256 * 64 * 64 * 256 * 9;
    double best[3] = {1e30, 1e30, 1e30};
    for (int r = 0; r < reps + 1; r++) {
        double t0 = dg_now();
        dg_conv_forward(&l, &ctx, &p);
        DG_DNNL(dnnl_stream_wait(ctx.stream));
        double t1 = dg_now();
        dnnl_exec_arg_t wargs[] = {{DNNL_ARG_SRC, l.wl.src_w_p.mem}, {DNNL_ARG_DIFF_DST, l.dst},
                {DNNL_ARG_DIFF_WEIGHTS, dg_port_out_mem(&l.wl.dw_p, &ctx)}};
        dg_prim_exec(&l.wl.bwd_w, &ctx, 3, wargs);
        DG_DNNL(dnnl_stream_wait(ctx.stream));
        dg_port_pull(&l.wl.w_d_p, &ctx); /* the weights in backward-data's layout (untimed) */
        DG_DNNL(dnnl_stream_wait(ctx.stream));
        double t2 = dg_now();
        dnnl_exec_arg_t dargs[] = {{DNNL_ARG_DIFF_DST, l.dst}, {DNNL_ARG_WEIGHTS, l.wl.w_d_p.mem},
                {DNNL_ARG_DIFF_SRC, l.diff_src}};
        dg_prim_exec(&l.wl.bwd_data, &ctx, 3, dargs);
        DG_DNNL(dnnl_stream_wait(ctx.stream));
        double t3 = dg_now();
        if (r == 0) continue; /* warm-up */
        double t[3] = {t1 - t0, t3 - t2, t2 - t1};
        for (int i = 0; i < 3; i++) best[i] = best[i] < t[i] ? best[i] : t[i];
    }
    double sg = dg_bench_sgemm_gflops(2048, 5);
    printf("conv3x3 256->256 2x256x64x64 (best of %d)\n", reps);
    printf("  forward          %7.1f GFLOP/s (%.2f ms)\n", flops / best[0] * 1e-9, best[0] * 1e3);
    printf("  backward-data    %7.1f GFLOP/s (%.2f ms)\n", flops / best[1] * 1e-9, best[1] * 1e3);
    printf("  backward-weights %7.1f GFLOP/s (%.2f ms)\n", flops / best[2] * 1e-9, best[2] * 1e3);
    printf("  all three        %7.1f GFLOP/s\n", 3 * flops / (best[0] + best[1] + best[2]) * 1e-9);
    printf("sgemm 2048^2       %7.1f GFLOP/s\n", sg);
    dg_conv_free(&l);
    dnnl_memory_destroy(src);
    dg_params_free(&ps);
    dg_ctx_free(&ctx);
    return 0;
}
