/* nets/core/common.c -- see common.h. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *status_names[] = {
    "ok", "io error", "format error", "config error", "shape error",
    "missing", "numeric error", "out of memory",
};

const char *dg_status_str(dg_status s) {
    int i = -(int)s;
    if (i < 0 || i >= (int)DG_ARRAY_LEN(status_names)) return "unknown status";
    return status_names[i];
}

static int log_level = -1;

static int log_level_now(void) {
    if (log_level < 0) {
        const char *e = getenv("DG_LOG");
        log_level = DG_LOG_INFO;
        if (e && !strcmp(e, "debug")) log_level = DG_LOG_DEBUG;
        if (e && !strcmp(e, "warn")) log_level = DG_LOG_WARN;
        if (e && !strcmp(e, "error")) log_level = DG_LOG_ERROR;
    }
    return log_level;
}

void dg_log_set_level(dg_log_level level) { log_level = (int)level; }

static char log_tag[32];

void dg_log_set_tag(const char *tag) { snprintf(log_tag, sizeof(log_tag), "%s", tag ? tag : ""); }

static _Thread_local dg_log_capture *log_capture;

void dg_log_capture_to(dg_log_capture *c) { log_capture = c; }

void dg_log_capture_flush(dg_log_capture *c) {
    if (c->len) fputs(c->text, stderr);
    c->len = 0;
}

void dg_log_capture_free(dg_log_capture *c) {
    free(c->text);
    memset(c, 0, sizeof(*c));
}

/* Appends line to c (dropped when memory runs out: a message is not worth
 * ending the run for). */
static void capture_append(dg_log_capture *c, const char *line) {
    const size_t n = strlen(line);
    if (c->len + n + 1 > c->cap) {
        const size_t cap = DG_MAX(c->cap * 2, c->len + n + 1 + 256);
        char *t = realloc(c->text, cap);
        if (!t) return;
        c->text = t;
        c->cap = cap;
    }
    memcpy(c->text + c->len, line, n + 1);
    c->len += n;
}

void dg_log(dg_log_level level, const char *fmt, ...) {
    static const char *prefix[] = {"debug: ", "", "warning: ", "error: "};
    if ((int)level < log_level_now()) return;
    char buf[2048], line[2140];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (log_tag[0])
        snprintf(line, sizeof(line), "dgseg (%s): %s%s\n", log_tag, prefix[level], buf);
    else
        snprintf(line, sizeof(line), "dgseg: %s%s\n", prefix[level], buf);
    if (log_capture) capture_append(log_capture, line);
    else fputs(line, stderr);
}

void dg_panic(const char *file, int line, const char *expr, const char *msg) {
    fprintf(stderr, "%s:%d: %s -> %s\n", file, line, expr, msg);
    fflush(stderr);
    abort();
}

static _Atomic uint64_t alloc_count;

uint64_t dg_alloc_count(void) { return atomic_load(&alloc_count); }

static void alloc_failed(size_t size, const char *file, int line) {
    char what[256];
    snprintf(what, sizeof(what), "a buffer at %s:%d", file, line);
    dg_out_of_memory(size, what);
}

void *dg_try_malloc(size_t size) {
    void *p = NULL;
    atomic_fetch_add(&alloc_count, 1);
    if (posix_memalign(&p, 64, size ? size : 1) != 0) return NULL;
    return p;
}

size_t dg_fmt_dims(char *buf, size_t size, const int64_t *dims, int n, const char *sep) {
    size_t len = 0;
    if (size) buf[0] = '\0';
    for (int i = 0; i < n && len + 1 < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? sep : "",
                (long long)dims[i]);
    return DG_MIN(len, size ? size - 1 : 0);
}

void dg_fmt_bytes(char *buf, size_t size, double bytes) {
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    while (bytes >= 1024.0 && u + 1 < (int)DG_ARRAY_LEN(unit)) {
        bytes /= 1024.0;
        u++;
    }
    if (u == 0) snprintf(buf, size, "%.0f B", bytes);
    else snprintf(buf, size, "%.1f %s", bytes, unit[u]);
}

/* The kB value of `key` in /proc/meminfo, in bytes; -1 when absent. */
static double meminfo_bytes(const char *text, const char *key) {
    const char *p = text ? strstr(text, key) : NULL;
    if (!p) return -1;
    p += strlen(key);
    while (*p == ' ' || *p == ':') p++;
    char *end;
    const double kb = strtod(p, &end);
    return end == p ? -1 : kb * 1024.0;
}

/* The whole of a small /proc or /sys file, NUL-terminated (dg_free it), or
 * NULL. Reads with read(2): these files report size 0. */
static char *read_small(const char *path) {
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (len + 1 >= cap) {
            char *nb = cap < (1u << 20) ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        const ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fd);
    if (buf) buf[len] = '\0';
    return buf;
}

static void headroom_take(dg_mem_headroom *h, double bytes, const char *what) {
    if (bytes < 0) bytes = 0;
    if (bytes < (double)h->bytes) {
        h->bytes = bytes >= (double)SIZE_MAX ? SIZE_MAX : (size_t)bytes;
        snprintf(h->binding, sizeof(h->binding), "%s", what);
    }
}

/* "12G", "512M", "4096" -> bytes; -1 when malformed. */
static double parse_size(const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0) return -1;
    switch (*end) {
    case 'k': case 'K': v *= 1024.0; end++; break;
    case 'm': case 'M': v *= 1024.0 * 1024.0; end++; break;
    case 'g': case 'G': v *= 1024.0 * 1024.0 * 1024.0; end++; break;
    default: break;
    }
    return *end ? -1 : v;
}

dg_mem_headroom dg_mem_headroom_now(void) {
    dg_mem_headroom h = {.bytes = SIZE_MAX, .binding = ""};
    char *mi = read_small("/proc/meminfo");
    const double avail = meminfo_bytes(mi, "MemAvailable"), swap = meminfo_bytes(mi, "SwapFree");
    free(mi);
    if (avail >= 0) headroom_take(&h, avail + (swap > 0 ? swap : 0), "available memory + free swap");
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        char *st = read_small("/proc/self/statm");
        const double pages = st ? strtod(st, NULL) : 0;
        free(st);
        headroom_take(&h, (double)rl.rlim_cur - pages * (double)sysconf(_SC_PAGESIZE),
                "the address-space limit (ulimit -v) less what is mapped");
    }
    char *cg = read_small("/proc/self/cgroup"); /* "0::/path" under cgroup v2 */
    const char *line = cg ? strstr(cg, "0::") : NULL;
    if (line && (line == cg || line[-1] == '\n')) {
        char path[512], *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.max", line + 3);
        char *max = read_small(path);
        snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.current", line + 3);
        char *cur = read_small(path);
        if (max && strncmp(max, "max", 3) && cur)
            headroom_take(&h, strtod(max, NULL) - strtod(cur, NULL),
                    "the cgroup's memory.max less its memory.current");
        free(max);
        free(cur);
    }
    free(cg);
    const char *env = getenv("DG_MEM_LIMIT");
    if (env && *env) {
        const double v = parse_size(env);
        static atomic_flag warned = ATOMIC_FLAG_INIT;
        if (v >= 0) headroom_take(&h, v, "DG_MEM_LIMIT");
        else if (!atomic_flag_test_and_set(&warned))
            dg_log_warn("DG_MEM_LIMIT=%s: not a size (bytes, or a number with k, M or G); "
                        "ignored", env);
    }
    return h;
}

void dg_out_of_memory(size_t size, const char *what) {
    static atomic_flag once = ATOMIC_FLAG_INIT;
    if (atomic_flag_test_and_set(&once)) /* another thread is already reporting */
        for (;;) pause();
    char need[32], left[32];
    dg_fmt_bytes(need, sizeof(need), (double)size);
    const dg_mem_headroom h = dg_mem_headroom_now();
    if (h.bytes == SIZE_MAX) snprintf(left, sizeof(left), "unknown");
    else dg_fmt_bytes(left, sizeof(left), (double)h.bytes);
    fflush(stdout);
    fprintf(stderr, "dgseg: error: out of memory %s%s%s %s (this process can take %s more%s%s); "
            "the last checkpoint, if any, is intact\n", size ? "allocating " : "",
            size ? need : "", size ? " for" : "in", what, left, h.binding[0] ? ": " : "",
            h.binding);
    _exit(1);
}

void *dg_xmalloc_at(size_t size, const char *file, int line) {
    void *p = NULL;
    atomic_fetch_add(&alloc_count, 1);
    if (posix_memalign(&p, 64, size ? size : 1) != 0) alloc_failed(size, file, line);
    return p;
}

void *dg_xcalloc_at(size_t n, size_t size, const char *file, int line) {
    if (size && n > SIZE_MAX / size) alloc_failed(SIZE_MAX, file, line);
    void *p = dg_xmalloc_at(n * size, file, line);
    memset(p, 0, n * size);
    return p;
}

void *dg_xrealloc_at(void *p, size_t size, const char *file, int line) {
    atomic_fetch_add(&alloc_count, 1);
    void *q = realloc(p, size ? size : 1);
    if (!q) alloc_failed(size, file, line);
    return q;
}

void dg_free(void *p) { free(p); }

char *dg_xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = dg_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

uint64_t dg_rng_mix(uint64_t x) {
    uint64_t z = x + DG_RNG_GAMMA;
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

void dg_rng_init(dg_rng *r, uint64_t seed, uint32_t purpose, uint32_t index) {
    uint64_t stream = ((uint64_t)purpose << 32) | index;
    r->state = dg_rng_mix(seed ^ dg_rng_mix(stream));
}

uint64_t dg_rng_next(dg_rng *r) {
    uint64_t v = dg_rng_mix(r->state);
    r->state += DG_RNG_GAMMA;
    return v;
}

uint64_t dg_rng_below(dg_rng *r, uint64_t n) {
    DG_ASSERT(n > 0);
    uint64_t t = (0 - n) % n; /* (2^64 - n) mod n */
    uint64_t x;
    do {
        x = dg_rng_next(r);
    } while (x < t);
    return x % n;
}

double dg_rng_uniform(dg_rng *r) {
    return (double)(dg_rng_next(r) >> 11) * 0x1.0p-53;
}

double dg_rng_normal(dg_rng *r) {
    double u1 = dg_rng_uniform(r);
    double u2 = dg_rng_uniform(r);
    /* 1 - u1 lies in (0, 1], so the log is finite. */
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

void dg_rng_shuffle_i64(dg_rng *r, int64_t *a, size_t n) {
    for (size_t i = n; i-- > 1;) {
        size_t j = (size_t)dg_rng_below(r, i + 1);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

double dg_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* fsync of the directory holding path, so the rename survives a crash.
 * Returns 0 or an errno value; file systems that cannot sync directories
 * (EINVAL) count as success. */
static int fsync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) {
        dir = dg_xstrdup(".");
    } else {
        const size_t n = slash == path ? 1 : (size_t)(slash - path);
        dir = dg_xmalloc(n + 1);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int err = 0;
    const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) err = errno;
    else if (fsync(fd) != 0 && errno != EINVAL) err = errno;
    if (fd >= 0) close(fd);
    dg_free(dir);
    return err;
}

static atomic_uint tmp_counter;

/* Writes all n bytes to fd; returns 0 or an errno value. */
static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        const ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (k == 0) return EIO;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

dg_status dg_file_write_atomic(const char *path, const dg_file_part *parts, int n_parts) {
    DG_ASSERT(n_parts >= 0 && (parts || n_parts == 0));
    const size_t tmp_size = strlen(path) + 48;
    char *tmp = dg_xmalloc(tmp_size);
    snprintf(tmp, tmp_size, "%s.tmp.%ld.%u", path, (long)getpid(),
            atomic_fetch_add(&tmp_counter, 1u));
    dg_status st = DG_STATUS_OK;
    const char *step = NULL; /* the step on the temporary file that failed, logged at done */
    int err = 0;
    bool created = false;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        step = "creating";
        err = errno;
        goto done;
    }
    created = true;
    for (int i = 0; i < n_parts; i++) {
        if ((err = write_all(fd, parts[i].data, parts[i].size)) != 0) {
            step = "writing";
            goto done;
        }
    }
    if (fsync(fd) != 0) {
        step = "syncing";
        err = errno;
        goto done;
    }
    const int rc = close(fd);
    fd = -1;
    if (rc != 0) {
        step = "closing";
        err = errno;
        goto done;
    }
    if (rename(tmp, path) != 0) {
        step = "renaming";
        err = errno;
        goto done;
    }
    created = false; /* the temporary is path now */
    if ((err = fsync_dir(path)) != 0) {
        dg_log_error("%s: written, but syncing its directory failed: %s (the file may not "
                "survive a power loss)", path, strerror(err));
        st = DG_STATUS_ERR_IO;
    }

done:
    if (fd >= 0) close(fd);
    if (created) unlink(tmp);
    if (step) {
        dg_log_error("%s: cannot write: %s temporary file '%s' failed: %s (an existing file "
                "at this path is left unchanged)", path, step, tmp, strerror(err ? err : EIO));
        st = DG_STATUS_ERR_IO;
    }
    dg_free(tmp);
    return st;
}

int dg_file_remove_stale_temporaries(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
    const char *base = slash ? slash + 1 : path;
    const size_t nb = strlen(base);
    int removed = 0;
    DIR *d = dir ? opendir(slash == path ? "/" : dir) : NULL;
    for (struct dirent *e; d && (e = readdir(d));) {
        /* base ".tmp." pid "." counter */
        if (strncmp(e->d_name, base, nb) || strncmp(e->d_name + nb, ".tmp.", 5)) continue;
        char *end = NULL;
        errno = 0;
        const long pid = strtol(e->d_name + nb + 5, &end, 10);
        if (errno || pid <= 0 || *end != '.') continue;
        if (kill((pid_t)pid, 0) == 0 || errno == EPERM) continue; /* still writing */
        const size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *full = malloc(n);
        if (!full) continue;
        snprintf(full, n, "%s/%s", dir, e->d_name);
        if (unlink(full) == 0) {
            removed++;
            dg_log_info("%s: removed, a temporary file whose write was cut short (process %ld "
                        "is gone)", full, pid);
        }
        free(full);
    }
    if (d) closedir(d);
    free(dir);
    return removed;
}

dg_status dg_check_regular_file(const char *path, const char *what) {
    struct stat sb;
    const char *kind = NULL;
    if (stat(path, &sb) == 0) {
        if (S_ISREG(sb.st_mode)) return DG_STATUS_OK;
        kind = S_ISDIR(sb.st_mode) ? "a folder" : S_ISFIFO(sb.st_mode) ? "a FIFO"
                : S_ISSOCK(sb.st_mode) ? "a socket"
                : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "a device" : "not a file";
    } else if (errno == ELOOP) {
        kind = "a symbolic link loop";
    } else if (errno == ENOENT && lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode)) {
        kind = "a dangling symbolic link";
    } else {
        return DG_STATUS_OK; /* missing or unreadable: the reader's open names the reason */
    }
    dg_log_error("%s: is %s, not a regular file (%s)", path, kind, what);
    return DG_STATUS_ERR_IO;
}
