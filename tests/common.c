/* tests/common.c -- see common.h. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include "app/train.h"
#include "data/image_cv.h"
#include "data/synth.h"

#include "alloc_hook.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <math.h>
#include <stdarg.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static dg_cmp cmp_begin(void) {
    dg_cmp c;
    memset(&c, 0, sizeof(c));
    c.ok = true;
    return c;
}

static void cmp_one(dg_cmp *c, size_t i, double got, double exp, double atol, double rtol) {
    double d = fabs(got - exp);
    if (got == 0.0) c->n_zero++;
    if (!(d <= atol + rtol * fabs(exp))) { /* NaN fails too */
        if (c->n_bad == 0) c->first_bad = i;
        c->n_bad++;
        c->ok = false;
    }
    if (d > c->max_abs_diff || isnan(d)) c->max_abs_diff = d;
}

dg_cmp dg_compare_f32(const float *got, const double *exp, size_t n, double atol, double rtol) {
    dg_cmp c = cmp_begin();
    for (size_t i = 0; i < n; i++) cmp_one(&c, i, got[i], exp[i], atol, rtol);
    return c;
}

dg_cmp dg_compare_f64(const double *got, const double *exp, size_t n, double atol, double rtol) {
    dg_cmp c = cmp_begin();
    for (size_t i = 0; i < n; i++) cmp_one(&c, i, got[i], exp[i], atol, rtol);
    return c;
}

void fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi) {
    dg_rng r;
    dg_rng_init(&r, seed, 0, 0);
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * dg_rng_uniform(&r));
}

void fill_halves(float *x, size_t n, uint64_t seed) {
    dg_rng r;
    dg_rng_init(&r, seed, 0, 0);
    for (size_t i = 0; i < n; i++) x[i] = 0.5f * (float)((int)dg_rng_below(&r, 17) - 8);
}

void fill_away_from_zero(float *x, size_t n, uint64_t seed, float lo, float hi, float margin) {
    dg_rng r;
    dg_rng_init(&r, seed, 0, 0);
    for (size_t i = 0; i < n; i++) {
        float v;
        do {
            v = (float)(lo + (hi - lo) * dg_rng_uniform(&r));
        } while (fabsf(v) < margin);
        x[i] = v;
    }
}

void to_double(double *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = src[i];
}

double *dup_double(const float *src, size_t n) {
    double *d = dg_xmalloc((n ? n : 1) * sizeof(*d));
    to_double(d, src, n);
    return d;
}

float round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof(u));
    u += 0x7FFFu + ((u >> 16) & 1u); /* round to nearest, ties to even */
    u &= 0xFFFF0000u;
    memcpy(&x, &u, sizeof(x));
    return x;
}

double *dup_double_rounded(const float *src, size_t n, bool bf16) {
    double *d = dup_double(src, n);
    if (bf16)
        for (size_t i = 0; i < n; i++) d[i] = round_bf16(src[i]);
    return d;
}

dnnl_memory_t make_plain(const dg_ctx *ctx, float *data, int ndims, const int64_t *dims) {
    dnnl_format_tag_t tag = ndims == 4 ? dnnl_nchw : ndims == 2 ? dnnl_nc : dnnl_x;
    dnnl_memory_desc_t md = dg_md_plain(ndims, dims, tag);
    return dg_mem_new(ctx, &md, data);
}

dnnl_memory_t make_tagged(dg_ctx *ctx, const float *nchw, int ndims, const int64_t *dims,
        dnnl_format_tag_t tag) {
    dnnl_memory_desc_t md = dg_md_plain(ndims, dims, tag);
    dnnl_memory_t m = dg_mem_new(ctx, &md, DNNL_MEMORY_ALLOCATE);
    memset(dg_mem_ptr(m), 0, dg_md_bytes(&md));
    dnnl_memory_t src = make_plain(ctx, (float *)nchw, ndims, dims);
    dg_mem_copy(ctx, m, src);
    dnnl_memory_destroy(src);
    return m;
}

void fill_mem_value(dg_ctx *ctx, dnnl_memory_t m, float v) {
    const dnnl_memory_desc_t *md = dg_mem_md(m);
    size_t n = (size_t)dg_md_nelems(md);
    float *buf = dg_xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) buf[i] = v;
    dnnl_memory_t plain = make_plain(ctx, buf, md->ndims, md->dims);
    dg_mem_copy(ctx, m, plain);
    dnnl_memory_destroy(plain);
    dg_free(buf);
}

void read_plain(dg_ctx *ctx, dnnl_memory_t m, float *out) {
    const dnnl_memory_desc_t *md = dg_mem_md(m);
    DG_DNNL(dnnl_stream_wait(ctx->stream));
    dnnl_memory_t dst = make_plain(ctx, out, md->ndims, md->dims);
    dg_mem_copy(ctx, dst, m);
    dnnl_memory_destroy(dst);
}

void fd_gradient(fd_fn f, void *ctx, double *x, size_t n, double *grad) {
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i];
        double h = 1e-6 * (fabs(x0) > 1.0 ? fabs(x0) : 1.0);
        x[i] = x0 + h;
        double fp = f(ctx, x);
        x[i] = x0 - h;
        double fm = f(ctx, x);
        x[i] = x0;
        grad[i] = (fp - fm) / (2.0 * h);
    }
}

void dg_test_skipped(const char *name, int index, const char *fmt, ...) {
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    /* START_TEST(x) defines x_fn */
    size_t len = strlen(name);
    if (len > 3 && !strcmp(name + len - 3, "_fn")) len -= 3;
    char line[768];
    snprintf(line, sizeof(line), "%.*s:%d: %s\n", (int)len, name, index, reason);
    const char *log = getenv("DG_SKIP_LOG");
    if (!log) {
        fputs(line, stdout);
        return;
    }
    /* appended whole (O_APPEND): forked test processes write one line each */
    int fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
    DG_ASSERT(fd >= 0);
    DG_ASSERT(write(fd, line, strlen(line)) == (ssize_t)strlen(line));
    close(fd);
}

void dg_tcase_add_abort_test(TCase *tc, const TTest *t) {
    const char *fork_mode = getenv("CK_FORK");
    if (fork_mode && !strcmp(fork_mode, "no")) return;
    tcase_add_test_raise_signal(tc, t, SIGABRT);
}

void make_tmpdir(char dir[64], const char *tag) {
    snprintf(dir, 64, "/tmp/dg_%s_XXXXXX", tag);
    DG_ASSERT(mkdtemp(dir) != NULL);
}

void remove_tree(const char *root, int depth) {
    chmod(root, 0700);
    DIR *d = opendir(root);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof(p), "%s/%s", root, e->d_name);
        struct stat st;
        if (depth > 0 && lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(p, depth - 1);
        else unlink(p);
    }
    closedir(d);
    rmdir(root);
}

void write_file(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = dg_xmalloc((size_t)size + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    buf[size] = '\0';
    if (n) *n = (size_t)size;
    return buf;
}

cJSON *read_json(const char *path) {
    char *text = read_file(path, NULL);
    cJSON *j = cJSON_Parse(text);
    ck_assert_msg(j != NULL, "%s is not JSON:\n%s", path, text);
    dg_free(text);
    return j;
}

int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void capture_fd(capture *c, int which) {
    fflush(stdout);
    fflush(stderr);
    c->fd = which;
    snprintf(c->path, sizeof(c->path), "/tmp/dg_capture_XXXXXX");
    const int fd = mkstemp(c->path);
    DG_ASSERT(fd >= 0);
    c->saved = dup(which);
    DG_ASSERT(c->saved >= 0 && dup2(fd, which) == which);
    close(fd);
}

void capture_begin(capture *c) { capture_fd(c, 2); }
void capture_out_begin(capture *c) { capture_fd(c, 1); }

char *capture_end(capture *c) {
    fflush(stdout);
    fflush(stderr);
    DG_ASSERT(dup2(c->saved, c->fd) == c->fd);
    close(c->saved);
    char *s = read_file(c->path, NULL);
    unlink(c->path);
    return s;
}

alloc_mark alloc_mark_now(void) {
    alloc_mark m = {dg_alloc_count(), dg_dnnl_counts_now()};
    return m;
}

void assert_nothing_allocated_since(alloc_mark m) {
    const alloc_mark now = alloc_mark_now();
    ck_assert_msg(now.allocs == m.allocs, "%llu dg_x*alloc calls",
            (unsigned long long)(now.allocs - m.allocs));
    ck_assert_msg(now.dnnl.memories == m.dnnl.memories, "%llu oneDNN memories created",
            (unsigned long long)(now.dnnl.memories - m.dnnl.memories));
    ck_assert_msg(now.dnnl.primitives == m.dnnl.primitives, "%llu oneDNN primitives created",
            (unsigned long long)(now.dnnl.primitives - m.dnnl.primitives));
}

void assert_steps_allocate_nothing(step_fn step, void *ctx, int n_steps) {
    step(ctx, 0);
    const alloc_mark mark = alloc_mark_now();
    dg_alloc_hook_begin();
    for (int s = 1; s <= n_steps; s++) step(ctx, s);
    const dg_alloc_counts heap = dg_alloc_hook_end();
    assert_nothing_allocated_since(mark);
    if (!dg_alloc_hook_available()) return;
    ck_assert_msg(heap.own == 0, "%llu heap allocations by dgseg in %d steps",
            (unsigned long long)heap.own, n_steps);
    fprintf(stderr, "%d steps: %llu heap allocations inside oneDNN's execute calls\n", n_steps,
            (unsigned long long)heap.all);
}

void make_tiny_domainbed(const char *root) {
    mkdir(root, 0755);
    for (int d = 0; d < 3; d++) {
        for (int c = 0; c < 2; c++) {
            char p[256];
            snprintf(p, sizeof(p), "%s/env%d", root, d);
            mkdir(p, 0755);
            snprintf(p, sizeof(p), "%s/env%d/class%d", root, d, c);
            mkdir(p, 0755);
            for (int i = 0; i < 5; i++) {
                dg_image img;
                dg_image_init(&img, 24, 24, 3);
                memset(img.data, c ? 200 - 20 * d : 30 + 20 * d, 24 * 24 * 3);
                snprintf(p, sizeof(p), "%s/env%d/class%d/%d.png", root, d, c, i);
                ck_assert_int_eq(dg_image_write_png(p, &img), DG_STATUS_OK);
                dg_image_free(&img);
            }
        }
    }
}


void make_tiny_synth(const char *out, int width, int height, int per_domain) {
    dg_synth_opts so;
    dg_synth_opts_default(&so);
    so.width = width;
    so.height = height;
    so.per_domain = per_domain;
    dg_synth_summary sum;
    capture cap;
    capture_begin(&cap);
    dg_status st = dg_synth_generate(out, &so, &sum);
    dg_free(capture_end(&cap));
    ck_assert_int_eq(st, DG_STATUS_OK);
}

void train_tiny_la_checkpoint(const char *dir, int batch) {
    train_tiny_seg_checkpoint(dir, batch, 16);
}

void train_tiny_seg_checkpoint(const char *dir, int batch, int output_stride) {
    char synth[192], cfg[192], ckpt[192], out[192], text[1024];
    snprintf(ckpt, sizeof(ckpt), "%s/run/checkpoints/last.safetensors", dir);
    if (access(ckpt, F_OK) == 0) return;
    snprintf(synth, sizeof(synth), "%s/synth", dir);
    snprintf(cfg, sizeof(cfg), "%s/la.ini", dir);
    make_tiny_synth(synth, 64, 32, 6);
    snprintf(text, sizeof(text),
            "[data]\nsources = gtav:%s/gtav, synthia:%s/synthia\ncrop_size = 32\nworkers = 1\n"
            "class_uniform_tile = 16\n"
            "[model]\nname = deeplabv3plus-r18\noutput_stride = %d\n"
            "[optim]\nmethod = lookahead\nla_k = 2\nla_bn_refresh_final = 2\nlr = 0.1\n"
            "[train]\niterations = 3\nbatch_size = %d\nlog_every = 1\n"
            "checkpoint_every = 100\n", synth, synth, output_stride, batch);
    write_file(cfg, text, strlen(text));
    snprintf(out, sizeof(out), "output.dir=%s/run", dir);
    char *argv[] = {"train", cfg, out, NULL};
    capture cap;
    capture_begin(&cap);
    int rc = dg_train_main(3, argv);
    char *log = capture_end(&cap);
    ck_assert_msg(rc == 0, "training rc %d:\n%s", rc, log);
    dg_free(log);
}
