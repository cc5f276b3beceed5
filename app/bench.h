/* app/bench.h -- `dgseg bench`: timed training steps or inference on random
 * data, achieved GFLOP/s, peak RSS, and the oneDNN sgemm GFLOP/s of the same
 * process as the machine's practical peak (docs/design.md §4). */
#ifndef DG_BENCH_H
#define DG_BENCH_H

#include "nets/core/common.h"

/* Best-of-`reps` GFLOP/s of dnnl_sgemm on n x n x n (2 n^3 flops). */
double dg_bench_sgemm_gflops(int n, int reps);
/* Peak resident set size of this process so far, in MiB. */
double dg_bench_peak_rss_mb(void);
/* Entry point of `dgseg bench`; returns the process exit status. */
int dg_bench_main(int argc, char **argv);

#endif
