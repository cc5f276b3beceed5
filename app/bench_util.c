/* app/bench_util.c -- the machine's reference peak (oneDNN sgemm) and peak
 * RSS, shared by `dgseg bench` and the micro-benchmarks. */
#include <sys/resource.h>

#include <oneapi/dnnl/dnnl.h>

#include "app/bench.h"

double dg_bench_sgemm_gflops(int n, int reps) {
    size_t nn = (size_t)n * (size_t)n;
    float *a = dg_xmalloc(nn * sizeof(float));
    float *b = dg_xmalloc(nn * sizeof(float));
    float *c = dg_xmalloc(nn * sizeof(float));
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
        c[i] = 0.f;
    }
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = dg_now();
        dnnl_sgemm('N', 'N', n, n, n, 1.f, a, n, b, n, 0.f, c, n);
        double t = dg_now() - t0;
        if (r > 0 && t < best) best = t; /* the first call warms up */
    }
    dg_free(a);
    dg_free(b);
    dg_free(c);
    return 2.0 * (double)n * n * n / best * 1e-9;
}

double dg_bench_peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux reports KiB */
}
