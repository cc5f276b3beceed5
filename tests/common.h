/* tests/common.h -- comparison, deterministic fills and oneDNN memory
 * helpers shared by every suite (docs/style.md §11). */
#ifndef DG_TESTS_COMMON_H
#define DG_TESTS_COMMON_H

#include <check.h>

#include "nets/core/common.h"
#include "nets/core/dnnl_util.h"

typedef struct dg_cmp {
    bool ok;
    size_t n_bad;        /* elements outside atol + rtol*|exp| (NaN counts) */
    size_t first_bad;    /* index of the first of them (0 when none) */
    size_t n_zero;       /* elements of got that are exactly 0 */
    double max_abs_diff;
} dg_cmp;

/* |got - exp| <= atol + rtol*|exp| element-wise; NaN fails. */
dg_cmp dg_compare_f32(const float *got, const double *exp, size_t n, double atol, double rtol);
dg_cmp dg_compare_f64(const double *got, const double *exp, size_t n, double atol, double rtol);

/* Fails the test with the count of bad elements, the first bad index with
 * both values and the largest difference; an all-zero output fails too. */
#define DG_ASSERT_CLOSE_IMPL(cmpfn, got, exp, n, atol, rtol) do { \
    dg_cmp c_ = cmpfn((got), (exp), (n), (atol), (rtol)); \
    ck_assert_msg(c_.ok, "%zu/%zu off; first [%zu] got %.9g exp %.9g; max |d| %.3g", \
            c_.n_bad, (size_t)(n), c_.first_bad, (double)(got)[c_.first_bad], \
            (double)(exp)[c_.first_bad], c_.max_abs_diff); \
    ck_assert_msg(c_.n_zero < (size_t)(n), "output is all zeros"); \
} while (0)
#define DG_ASSERT_CLOSE(got, exp, n, atol, rtol) \
    DG_ASSERT_CLOSE_IMPL(dg_compare_f32, got, exp, n, atol, rtol)
#define DG_ASSERT_CLOSE64(got, exp, n, atol, rtol) \
    DG_ASSERT_CLOSE_IMPL(dg_compare_f64, got, exp, n, atol, rtol)

/* Deterministic fills from SplitMix64 stream (seed, 0, 0). */
void fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi);
/* k/2 for k in [-8, 8]: sums of products stay exact in f32. */
void fill_halves(float *x, size_t n, uint64_t seed);
/* Uniform values with |x| >= margin (away from ReLU kinks). */
void fill_away_from_zero(float *x, size_t n, uint64_t seed, float lo, float hi, float margin);
void to_double(double *dst, const float *src, size_t n);
double *dup_double(const float *src, size_t n); /* caller dg_free()s */
/* x rounded to bfloat16 (nearest, ties to even; finite x), back in f32. */
float round_bf16(float x);
/* dup_double, with every value rounded to bf16 first when `bf16`: the
 * reference inputs of a layer that computes in bf16 (nets/core/wlayer.h). */
double *dup_double_rounded(const float *src, size_t n, bool bf16);

/* A plain (nchw or nc) memory wrapping `data` (not owned). */
dnnl_memory_t make_plain(const dg_ctx *ctx, float *data, int ndims, const int64_t *dims);
/* A memory in `tag` layout (e.g. dnnl_nChw16c) filled from plain nchw data. */
dnnl_memory_t make_tagged(dg_ctx *ctx, const float *nchw, int ndims, const int64_t *dims,
        dnnl_format_tag_t tag);
/* Writes v into every logical element of m (any layout): gradients filled
 * with 100 before a backward prove that it overwrites, never adds. */
void fill_mem_value(dg_ctx *ctx, dnnl_memory_t m, float v);
/* Copies any-layout memory m into out (plain nchw/nc order, logical size). */
void read_plain(dg_ctx *ctx, dnnl_memory_t m, float *out);



/* Central finite differences of a scalar function of x in double:
 * grad[i] = (f(x + h e_i) - f(x - h e_i)) / 2h, h = 1e-6 * max(1, |x_i|).
 * Restores x. */
typedef double (*fd_fn)(void *ctx, const double *x);
void fd_gradient(fd_fn f, void *ctx, double *x, size_t n, double *grad);

/* ---- cases this machine cannot check ---------------------------------
 * A test whose claim needs a capability the CPU lacks (dg_caps: bf16,
 * Winograd), or that cannot hold here (permissions as root), first checks
 * what the machine does instead (the clear error, the direct fallback),
 * then records what it could not check with
 * DG_TEST_SKIPPED(reason, ...) and returns. The runner lists the skipped
 * cases with their reasons at the end of its output and in
 * <build>/skipped/<suite>.txt (scripts/test prints them), so a green run on
 * an AVX2 machine says what it left out. `name` is the test's name; loop
 * tests add their index. */
void dg_test_skipped(const char *name, int index, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
#define DG_TEST_SKIPPED(...) dg_test_skipped(__func__, _i, __VA_ARGS__)
/* The first statement of a case whose claims need something this machine
 * may lack: `why` is NULL when it has it, otherwise the reason; the case is
 * then skipped, recorded with the reason and `unchecked` (what goes
 * unchecked here). */
#define DG_TEST_SKIP_IF(why, unchecked) do { \
        const char *why_ = (why); \
        if (why_) { \
            DG_TEST_SKIPPED("%s; %s", why_, unchecked); \
            return; \
        } \
    } while (0)

/* Adds a test that must end with SIGABRT (DG_ASSERT, DG_DNNL). An abort can
 * only be observed from a forked child, so under CK_FORK=no (valgrind,
 * no-fork sanitizer runs) the test is left out instead of ending the whole
 * runner. */
void dg_tcase_add_abort_test(TCase *tc, const TTest *t);

/* ---- allocation-free steps -------------------------------------------- */
/* dg_x*alloc calls and oneDNN memory/primitive creations so far. */
typedef struct alloc_mark {
    uint64_t allocs;
    dg_dnnl_counts dnnl;
} alloc_mark;
alloc_mark alloc_mark_now(void);
/* Fails the test when anything was allocated or created since m. */
void assert_nothing_allocated_since(alloc_mark m);

/* Runs step(ctx, 0) (lazy ports bind there), then step(ctx, 1 .. n_steps)
 * and fails when those later steps allocated through dg_x*alloc, created
 * oneDNN objects, or (where the malloc hook works) called malloc from
 * dgseg's code. Prints how many allocations oneDNN's own execute calls made. */
typedef void (*step_fn)(void *ctx, int step);
void assert_steps_allocate_nothing(step_fn step, void *ctx, int n_steps);

/* ---- files for I/O tests ------------------------------------------------ */
/* Makes a fresh directory "/tmp/dg_<tag>_XXXXXX" into dir (64 bytes). */
void make_tmpdir(char dir[64], const char *tag);
/* Removes root and everything below it, `depth` directory levels deep,
 * restoring write permission first. */
void remove_tree(const char *root, int depth);
void write_file(const char *path, const void *buf, size_t n);
/* Whole file, NUL-terminated (dg_free it); *n gets its size when n != NULL. */
char *read_file(const char *path, size_t *n);
/* The file parsed as JSON (cJSON_Delete it); fails the test if it is not. */
struct cJSON *read_json(const char *path);
int count_lines(const char *s);

/* stderr redirected into a temporary file, so tests can check what was
 * logged: capture_begin, the call, then capture_end returns the text.
 * capture_out_begin does the same for stdout. */
typedef struct capture {
    int fd;    /* 2 or 1 */
    int saved;
    char path[64];
} capture;
void capture_begin(capture *c);
void capture_out_begin(capture *c);
char *capture_end(capture *c); /* dg_free the text */

/* `dgseg synth` output at out: width x height frames, per_domain frames per
 * domain, its log swallowed; asserts success. */
void make_tiny_synth(const char *out, int width, int height, int per_domain);

/* A DomainBed tree at root (data.dataset = domainbed:root): domains env0,
 * env1, env2 x classes class0, class1 x 5 PNGs of 24 x 24 whose class shows
 * as brightness, so a few steps learn something. */
void make_tiny_domainbed(const char *root);

/* Trains, once, a two-source DeepLabv3+ R18 Lookahead checkpoint (k 2, 3
 * iterations of `batch` 32-pixel crops per source, 2 BN-refresh batches)
 * on tiny synth data (64 x 32, 6 images per domain) in dir: the data at
 * dir/synth, the config at dir/la.ini, the run at dir/run (its
 * checkpoint dir/run/checkpoints/last.safetensors; nothing is done when it
 * exists). Fails the test when training fails. */
void train_tiny_la_checkpoint(const char *dir, int batch);
/* The same with model.output_stride = output_stride (16 or 8). */
void train_tiny_seg_checkpoint(const char *dir, int batch, int output_stride);
#endif
