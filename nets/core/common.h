/* nets/core/common.h -- status codes, logging, checked allocation, invariant
 * checks and the project's SplitMix64 random streams (docs/datasets.md §12.2).
 * libc only: included everywhere, never includes oneDNN. */
#ifndef DG_COMMON_H
#define DG_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define DG_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DG_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Recoverable failures (docs/style.md §6 tier 2). OK is 0, errors are negative.
 * A command turns a status into its exit code in one place,
 * dg_cli_exit_code (app/cli.h): configuration errors 2, others 1. Bad
 * command lines and signals are the commands' own business (exit 2, and the
 * stop paths of train), not statuses. */
typedef enum dg_status {
    DG_STATUS_OK = 0,
    DG_STATUS_ERR_IO = -1,       /* a file cannot be opened, read or written */
    DG_STATUS_ERR_FORMAT = -2,   /* a file's content is malformed */
    DG_STATUS_ERR_CONFIG = -3,   /* a bad configuration key or value */
    DG_STATUS_ERR_SHAPE = -4,    /* a tensor of the wrong shape or dtype */
    DG_STATUS_ERR_MISSING = -5,  /* a required file or tensor is absent */
    DG_STATUS_ERR_NUMERIC = -6,  /* NaN or Inf where a finite value is needed */
    DG_STATUS_ERR_MEMORY = -7    /* more memory than this process can take */
} dg_status;

/* Name of a status ("io error", ...), never NULL. */
const char *dg_status_str(dg_status s);

typedef enum dg_log_level {
    DG_LOG_DEBUG = 0,
    DG_LOG_INFO = 1,
    DG_LOG_WARN = 2,
    DG_LOG_ERROR = 3
} dg_log_level;

/* Diagnostics go to stderr, prefixed with the level; messages below the
 * current level (default INFO, DG_LOG=debug|info|warn|error) are dropped. */
void dg_log(dg_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
void dg_log_set_level(dg_log_level level);
/* Names this process in every message: "dgseg (TAG): ..." instead of
 * "dgseg: ..." (a rank of a data-parallel job, app/dist.h); NULL or ""
 * for none. At most 31 bytes are kept. Call before any thread logs. */
void dg_log_set_tag(const char *tag);
/* A thread's messages held back instead of printed: a prefetching worker
 * captures what loading a batch says, and the consumer prints it when it
 * uses the batch (never, for a batch the run does not reach). */
typedef struct dg_log_capture {
    char *text; /* NUL-terminated when len > 0; owned */
    size_t len, cap;
} dg_log_capture;
/* From now on, this thread's messages go to c (NULL: to stderr again). */
void dg_log_capture_to(dg_log_capture *c);
/* Writes what c holds to stderr and empties it. */
void dg_log_capture_flush(dg_log_capture *c);
void dg_log_capture_free(dg_log_capture *c);
#define dg_log_error(...) dg_log(DG_LOG_ERROR, __VA_ARGS__)
#define dg_log_warn(...) dg_log(DG_LOG_WARN, __VA_ARGS__)
#define dg_log_info(...) dg_log(DG_LOG_INFO, __VA_ARGS__)
#define dg_log_debug(...) dg_log(DG_LOG_DEBUG, __VA_ARGS__)

/* Tier 1: prints "file:line: expr -> message" and aborts, in every build. */
void dg_panic(const char *file, int line, const char *expr, const char *msg)
        __attribute__((noreturn));
#define DG_ASSERT(cond) \
    do { \
        if (!(cond)) dg_panic(__FILE__, __LINE__, #cond, "assertion failed"); \
    } while (0)

/* Checked allocation: never returns NULL; on failure it ends the process
 * through dg_out_of_memory (exit 1, the size and the caller's file:line in
 * the message; no abort, no core dump). Memory from dg_xmalloc/dg_xcalloc is
 * 64-byte aligned and released with dg_free. Every call is counted
 * (dg_alloc_count) so tests can prove a training step allocates nothing. */
void *dg_xmalloc_at(size_t size, const char *file, int line);
void *dg_xcalloc_at(size_t n, size_t size, const char *file, int line);
void *dg_xrealloc_at(void *p, size_t size, const char *file, int line);
#define dg_xmalloc(size) dg_xmalloc_at((size), __FILE__, __LINE__)
#define dg_xcalloc(n, size) dg_xcalloc_at((n), (size), __FILE__, __LINE__)
#define dg_xrealloc(p, size) dg_xrealloc_at((p), (size), __FILE__, __LINE__)
void dg_free(void *p);
char *dg_xstrdup(const char *s);
/* Number of dg_x*alloc calls so far in this process. */
uint64_t dg_alloc_count(void);
/* The same allocation (64-byte aligned, counted) returning NULL on failure:
 * for buffers whose size comes from input and whose failure the caller
 * turns into DG_STATUS_ERR_MEMORY. */
void *dg_try_malloc(size_t size);

/* ---- memory headroom --------------------------------------------------
 * Where an allocation that input sizes fails, or is bound to fail once its
 * pages are touched, dgseg refuses it with DG_STATUS_ERR_MEMORY before
 * allocating: sized buffers (models, loader batches) are checked against
 * what the process can still take. */
typedef struct dg_mem_headroom {
    size_t bytes;     /* the least of the limits below; SIZE_MAX when none known */
    char binding[96]; /* which limit that is: "available memory + free swap",
                         "the address-space limit (ulimit -v)", "the cgroup's
                         memory.max"; "" when none is known */
} dg_mem_headroom;
/* The bytes this process can still take now: MemAvailable + SwapFree
 * (/proc/meminfo), RLIMIT_AS less the mapped size (/proc/self/statm), and
 * the cgroup v2 memory.max less memory.current, whichever is least.
 * DG_MEM_LIMIT (bytes, "k", "M", "G" suffixes) caps it further, for tests
 * and for sharing a machine. */
dg_mem_headroom dg_mem_headroom_now(void);
/* "2x256x64x64" (sep "x") or "2, 256" (sep ", ") into buf; returns the
 * length written (snprintf's, capped at size - 1). */
size_t dg_fmt_dims(char *buf, size_t size, const int64_t *dims, int n, const char *sep);
/* "812 B", "4.0 KiB", "1.5 GiB" into buf. */
void dg_fmt_bytes(char *buf, size_t size, double bytes);
/* Ends the process for an allocation that failed where no status can be
 * returned (inside a step): prints "out of memory allocating SIZE for
 * WHAT" with the headroom left, then exits 1 (no abort, no core dump;
 * checkpoints are written atomically, so the last one stays intact). */
void dg_out_of_memory(size_t size, const char *what) __attribute__((noreturn));

/* ---- SplitMix64 streams (docs/datasets.md §12.2) ---------------------------
 * A stream is (seed, purpose, index); draw k of a stream is
 * mix(state0 + k * GAMMA), so any draw can be computed directly and results
 * never depend on how work is split across threads. */
#define DG_RNG_GAMMA UINT64_C(0x9E3779B97F4A7C15)

enum dg_rng_purpose {
    DG_RNG_FMNIST_POOL = 1,
    DG_RNG_SPLIT = 2,
    DG_RNG_SAMPLER = 3,
    DG_RNG_AUGMENT = 4,
    DG_RNG_DGSAM = 5,
    DG_RNG_INIT = 6,
    DG_RNG_CLASS_UNIFORM = 7,
    DG_RNG_MATCHDG = 8,
    DG_RNG_DROPOUT = 9, /* index: layer ordinal; draws offset by forward count */
    DG_RNG_SYNTH = 10,  /* `dgseg synth`: index (style << 24) | frame, seed --seed */
    DG_RNG_FLATNESS = 11 /* `dgseg flatness`: index direction i; 0xFFFFFFFF the ascent's start */
};

typedef struct dg_rng {
    uint64_t state; /* next draw returns mix(state), then state += GAMMA */
} dg_rng;

uint64_t dg_rng_mix(uint64_t x);
/* state = mix(seed ^ mix((purpose << 32) | index)). */
void dg_rng_init(dg_rng *r, uint64_t seed, uint32_t purpose, uint32_t index);
uint64_t dg_rng_next(dg_rng *r);
/* The k-th draw after the current state, without advancing. */
static inline uint64_t dg_rng_peek(const dg_rng *r, uint64_t k) {
    return dg_rng_mix(r->state + k * DG_RNG_GAMMA);
}
/* Unbiased integer in [0, n), n > 0. */
uint64_t dg_rng_below(dg_rng *r, uint64_t n);
/* Uniform double in [0, 1): (next >> 11) * 2^-53. */
double dg_rng_uniform(dg_rng *r);
/* Standard normal (Box-Muller on two uniform draws, cosine branch). */
double dg_rng_normal(dg_rng *r);
/* Fisher-Yates shuffle of a[0 .. n-1] as docs/datasets.md §12.2. */
void dg_rng_shuffle_i64(dg_rng *r, int64_t *a, size_t n);

/* One piece of a file written by dg_file_write_atomic. */
typedef struct dg_file_part {
    const void *data; /* (size) bytes, borrowed */
    size_t size;
} dg_file_part;

/* Writes the concatenation of parts[0 .. n_parts-1] to path atomically: a
 * temporary file next to it (created exclusively), fsync, rename over path.
 * After the rename the directory is synced too, so the new file survives a
 * crash. On failure the temporary file is removed, any existing file at
 * path is left unchanged and one message names path, the failing step and
 * strerror.
 * Returns DG_STATUS_OK or DG_STATUS_ERR_IO. */
dg_status dg_file_write_atomic(const char *path, const dg_file_part *parts, int n_parts);

/* Before a reader opens path: DG_STATUS_OK when it is a regular file (links
 * followed) or does not exist (the reader's own open then says so);
 * otherwise DG_STATUS_ERR_IO after "PATH: is a folder (FIFO, device,
 * socket, dangling symbolic link, symbolic link loop), not a regular file"
 * naming `what` ("configuration", "checkpoint", "image") -- opening a FIFO
 * would wait forever for a writer. */
dg_status dg_check_regular_file(const char *path, const char *what);

/* Removes the temporary files of dg_file_write_atomic for path
 * ("PATH.tmp.PID.N") whose writing process no longer runs (a write cut
 * short by kill -9 or a crash), logging each; those of running processes
 * are left. Returns how many were removed. */
int dg_file_remove_stale_temporaries(const char *path);

/* Monotonic wall-clock seconds. */
double dg_now(void);

#ifdef __cplusplus
}
#endif

#endif
