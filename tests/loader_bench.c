/* tests/loader_bench.c -- loader throughput (issue "Data", performance):
 *   1. GTAV-sized segmentation: N frames of 1914x1052 (RGB PNG image +
 *      paletted labelId PNG, street-like content so PNG compression is
 *      realistic) written in the flat GTAV layout, read through the real
 *      reader with the default §7.4 augmentation and 768x768 crops, batches
 *      of 2, with `workers` loader threads;
 *   2. Rotated Fashion-MNIST batches (5 training domains x 64) from the
 *      Debian package, when it is installed.
 * Usage: build/loader_bench [workers (1)] [frames (8)] [batches (8)]
 * Prints images/s per benchmark. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/holdout.h"
#include "data/png_io.h"
#include "data/sources.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Sky, buildings, road with noise: compresses like a rendered frame. */
static void make_frame(const char *root, int k, int h, int w) {
    char path[512];
    dg_image img;
    dg_image_init(&img, h, w, 3);
    uint8_t *lab = dg_xmalloc((size_t)h * (size_t)w);
    dg_rng r;
    dg_rng_init(&r, (uint64_t)k, 100, 0);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            uint8_t id = y < h / 3 ? 23 : y < h / 2 ? 11 : (x / 97 + y / 61) % 7 == 0 ? 26 : 7;
            size_t i = (size_t)y * (size_t)w + (size_t)x;
            lab[i] = id;
            uint8_t noise = (uint8_t)(dg_rng_next(&r) & 15);
            img.data[3 * i + 0] = (uint8_t)(id * 9 + noise);
            img.data[3 * i + 1] = (uint8_t)(id * 5 + noise);
            img.data[3 * i + 2] = (uint8_t)(200 - id * 4 + noise);
        }
    }
    snprintf(path, sizeof(path), "%s/images/%05d.png", root, k + 1);
    if (dg_image_write_png(path, &img) != DG_STATUS_OK) exit(1);
    snprintf(path, sizeof(path), "%s/labels/%05d.png", root, k + 1);
    if (dg_png_write_paletted(path, lab, h, w, DG_CITYSCAPES_PALETTE, 256) != DG_STATUS_OK) exit(1);
    dg_free(lab);
    dg_image_free(&img);
}

static void bench_seg(int workers, int frames, int batches) {
    char root[] = "/tmp/dg_loader_bench_XXXXXX";
    if (!mkdtemp(root)) exit(1);
    char sub[600];
    snprintf(sub, sizeof(sub), "%s/images", root);
    mkdir(sub, 0755);
    snprintf(sub, sizeof(sub), "%s/labels", root);
    mkdir(sub, 0755);
    for (int k = 0; k < frames; k++) make_frame(root, k, 1052, 1914);
    dg_seg_dataset ds;
    if (dg_seg_dataset_open("gtav", root, "all", &ds) != DG_STATUS_OK) exit(1);
    dg_seg_train_source s = {.n_domains = 1};
    s.ds[0] = &ds;
    dg_seg_aug_cfg_default(&s.aug);
    dg_loader_cfg c;
    memset(&c, 0, sizeof(c));
    dg_seg_train_source_bind(&s, &c.src);
    c.n_domains = 1;
    c.dom[0].n = (int64_t)ds.n;
    c.per_domain = 2;
    c.workers = workers;
    dg_loader *l;
    if (dg_loader_create(&c, &l) != DG_STATUS_OK) exit(1);
    const dg_batch *b;
    if (dg_loader_next(l, &b) != DG_STATUS_OK) exit(1); /* warm-up */
    double t0 = now();
    for (int k = 0; k < batches; k++)
        if (dg_loader_next(l, &b) != DG_STATUS_OK) exit(1);
    double dt = now() - t0;
    printf("gtav 1914x1052 PNG, default augmentation, 768x768 crops, %d worker(s): "
           "%.2f images/s (%d batches of 2 in %.2f s)\n", workers, 2.0 * batches / dt, batches, dt);
    dg_loader_free(l);
    dg_seg_dataset_free(&ds);
    for (int k = 0; k < frames; k++) {
        char p[700];
        snprintf(p, sizeof(p), "%s/images/%05d.png", root, k + 1);
        remove(p);
        snprintf(p, sizeof(p), "%s/labels/%05d.png", root, k + 1);
        remove(p);
    }
    snprintf(sub, sizeof(sub), "%s/images", root);
    rmdir(sub);
    snprintf(sub, sizeof(sub), "%s/labels", root);
    rmdir(sub);
    rmdir(root);
}

static void bench_rfmnist(int workers) {
    dg_rotated_fmnist ds;
    if (dg_rotated_fmnist_init(&ds, NULL, 0, false) != DG_STATUS_OK) {
        printf("rotated-fmnist: the Debian package is not installed; skipped\n");
        return;
    }
    dg_rfmnist_source s = {.ds = &ds};
    dg_loader_cfg c;
    memset(&c, 0, sizeof(c));
    dg_rfmnist_source_bind(&s, &c.src);
    dg_holdout_split sp[5];
    c.n_domains = 5;
    for (int d = 0; d < 5; d++) {
        s.domain[d] = d + 1; /* test domain 0 */
        dg_holdout_split_init(&sp[d], ds.n[d + 1], d + 1, 0);
        c.dom[d].n = sp[d].n_in;
        c.dom[d].items = sp[d].in;
    }
    c.per_domain = 64;
    c.workers = workers;
    dg_loader *l;
    if (dg_loader_create(&c, &l) != DG_STATUS_OK) exit(1);
    const dg_batch *b;
    const int n = 400;
    double t0 = now();
    for (int k = 0; k < n; k++)
        if (dg_loader_next(l, &b) != DG_STATUS_OK) exit(1);
    double dt = now() - t0;
    printf("rotated-fmnist batches of 5 x 64, %d worker(s): %.0f images/s (%.0f batches/s)\n",
            workers, 320.0 * n / dt, n / dt);
    dg_loader_free(l);
    for (int d = 0; d < 5; d++) dg_holdout_split_free(&sp[d]);
    dg_rotated_fmnist_free(&ds);
}

int main(int argc, char **argv) {
    int workers = argc > 1 ? atoi(argv[1]) : 1;
    int frames = argc > 2 ? atoi(argv[2]) : 8;
    int batches = argc > 3 ? atoi(argv[3]) : 8;
    bench_rfmnist(workers);
    bench_seg(workers, frames, batches);
    return 0;
}
