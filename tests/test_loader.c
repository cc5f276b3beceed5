/* tests/test_loader.c -- samplers and the threaded batch loader
 * (data/loader.h) with an in-memory source whose samples encode what was
 * asked for: x[0] = domain, x[1] = dataset item, x[2] = the first draw of
 * the sample's augmentation stream (as a fraction), x[3] = sample id; the
 * label of a dense sample holds item + pixel index.
 *
 * Checks: epoch lists reproduced from the docs/datasets.md §12.2 stream
 * definitions (plain: stream (3, d) continuing across epochs; class-uniform:
 * §7.3 composition on stream (7, epoch)); every item at most once per plain
 * epoch; domain-major batches and global sample ids; the augmentation
 * stream of every slot; identical batches for 0 .. 3 workers and any
 * prefetch depth; resume from a later step; epoch and pass ends; the
 * fail and skip policies (the error surfaces, later calls repeat it, the
 * workers are joined without hanging; a prefetched batch's messages are
 * printed only when it is used); batch buffers refused beyond the memory
 * left; size checks and packing of smaller samples; centroid computation
 * per tile. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "data/loader.h"

/* ---- the source ---------------------------------------------------------- */

typedef struct fake {
    int h, w;            /* sample size produced */
    int64_t bad_item;    /* this item fails (-1: none) */
    int bad_domain;
    int64_t vary_item;   /* this item comes out one row smaller (-1: none) */
    int all_bad_domain;  /* every item of this domain fails (-1: none) */
} fake;

static dg_status fake_load(void *ctx, const dg_sample_ref *ref, dg_rng *rng, dg_sample_out *out) {
    const fake *f = ctx;
    if ((ref->domain == f->bad_domain && ref->index == f->bad_item) ||
            ref->domain == f->all_bad_domain) {
        dg_log_error("fake: item %lld of domain %d is corrupt", (long long)ref->index,
                ref->domain);
        return DG_STATUS_ERR_FORMAT;
    }
    out->h = f->h - (ref->index == f->vary_item ? 1 : 0);
    out->w = f->w;
    size_t hw = (size_t)out->h * (size_t)out->w;
    for (size_t i = 0; i < 2 * hw; i++) out->x[i] = 0;
    out->x[0] = (float)ref->domain;
    out->x[1] = (float)ref->index;
    out->x[2] = (float)((double)(dg_rng_next(rng) >> 40) / (double)(1 << 24));
    out->x[3] = (float)ref->sample_id;
    for (size_t i = 0; i < hw; i++) out->label[i] = (int32_t)(ref->index + (int64_t)i);
    return DG_STATUS_OK;
}

static fake fk;

static dg_loader_cfg base_cfg(int n_dom, const int64_t *sizes, int per) {
    memset(&fk, 0, sizeof(fk));
    fk.h = 2;
    fk.w = 2;
    fk.bad_item = -1;
    fk.bad_domain = -1;
    fk.vary_item = -1;
    fk.all_bad_domain = -1;
    dg_loader_cfg c;
    memset(&c, 0, sizeof(c));
    c.src.load = fake_load;
    c.src.ctx = &fk;
    c.src.c = 2;
    c.src.max_h = 2;
    c.src.max_w = 2;
    c.src.dense = true;
    c.n_domains = n_dom;
    for (int d = 0; d < n_dom; d++) c.dom[d].n = sizes[d];
    c.per_domain = per;
    c.seed = 11;
    return c;
}

static dg_loader *make(const dg_loader_cfg *c) {
    dg_loader *l = NULL;
    ck_assert_int_eq(dg_loader_create(c, &l), DG_STATUS_OK);
    return l;
}

/* Reads n batches; returns (n, B, 4) floats x[0..3] of every sample. */
static float *collect(const dg_loader_cfg *c, long n, int B) {
    dg_loader *l = make(c);
    float *out = dg_xcalloc((size_t)n * (size_t)B * 4, sizeof(float));
    for (long k = 0; k < n; k++) {
        const dg_batch *b;
        ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_OK);
        ck_assert_int_eq(b->n, B);
        ck_assert_int_eq(b->step, c->start_step + k);
        size_t xs = (size_t)b->c * (size_t)b->h * (size_t)b->w;
        for (int i = 0; i < B; i++)
            memcpy(out + ((size_t)k * (size_t)B + (size_t)i) * 4, b->x + (size_t)i * xs,
                    4 * sizeof(float));
    }
    dg_loader_free(l);
    return out;
}

/* ---- the §12.2 shuffle written out -------------------------------------- */

static void ref_shuffle(dg_rng *r, int64_t *a, int64_t n) {
    for (int64_t i = n - 1; i >= 1; i--) {
        int64_t j = (int64_t)dg_rng_below(r, (uint64_t)(i + 1));
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

START_TEST(plain_epochs_follow_stream_3_and_cover_each_item_once) {
    const int64_t sizes[2] = {23, 17};
    dg_loader_cfg c = base_cfg(2, sizes, 4);
    dg_loader *l = make(&c);
    ck_assert_int_eq(dg_loader_steps_per_epoch(l), 17 / 4);
    dg_rng r[2];
    int64_t perm[2][23];
    for (int d = 0; d < 2; d++) dg_rng_init(&r[d], 11, DG_RNG_SAMPLER, (uint32_t)d);
    for (int e = 0; e < 3; e++) {
        for (int d = 0; d < 2; d++) {
            for (int64_t i = 0; i < sizes[d]; i++) perm[d][i] = i;
            ref_shuffle(&r[d], perm[d], sizes[d]);
        }
        int seen[2][23] = {{0}};
        for (int q = 0; q < 4; q++) {
            const dg_batch *b;
            ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_OK);
            ck_assert_int_eq(b->epoch, e);
            ck_assert_int_eq(b->n_domains, 2);
            ck_assert_int_eq(b->per_domain, 4);
            for (int d = 0; d < 2; d++) {
                for (int j = 0; j < 4; j++) {
                    int i = d * 4 + j;
                    const float *x = b->x + (size_t)i * 8;
                    int64_t item = perm[d][q * 4 + j];
                    ck_assert_int_eq((int)x[0], d);
                    ck_assert_int_eq((int64_t)x[1], item);
                    ck_assert_int_eq(b->sample_id[i], (d ? 23 : 0) + item);
                    ck_assert_int_eq(b->refs[i].domain, d);
                    ck_assert_int_eq(b->label[(size_t)i * 4 + 3], item + 3);
                    ck_assert_int_eq(++seen[d][item], 1);
                    /* the slot's augmentation stream */
                    dg_rng a;
                    dg_rng_init(&a, 11, DG_RNG_AUGMENT, ((uint32_t)e << 20) + (uint32_t)(q * 8 + i));
                    ck_assert_float_eq(x[2], (float)((double)(dg_rng_next(&a) >> 40) /
                                                     (double)(1 << 24)));
                }
            }
        }
    }
    dg_loader_free(l);
}
END_TEST

START_TEST(same_batches_for_any_worker_count_and_prefetch) {
    const int64_t sizes[3] = {31, 40, 29};
    dg_loader_cfg c = base_cfg(3, sizes, 3);
    const long n = 30; /* > 3 epochs of 9 steps */
    float *ref = collect(&c, n, 9);
    const int workers[] = {1, 2, 3, 2};
    const int prefetch[] = {0, 1, 5, 2};
    for (int t = 0; t < 4; t++) {
        c.workers = workers[t];
        c.prefetch = prefetch[t];
        float *got = collect(&c, n, 9);
        ck_assert_msg(!memcmp(ref, got, (size_t)n * 9 * 4 * sizeof(float)),
                "workers %d prefetch %d differ from the synchronous loader", workers[t],
                prefetch[t]);
        dg_free(got);
    }
    dg_free(ref);
}
END_TEST

START_TEST(resume_from_a_later_step_gives_the_same_batches) {
    const int64_t sizes[2] = {13, 16};
    dg_loader_cfg c = base_cfg(2, sizes, 2);
    float *all = collect(&c, 40, 4);
    for (long start = 1; start < 30; start += 7) {
        c.start_step = start;
        c.workers = (int)(start % 3);
        float *got = collect(&c, 40 - start, 4);
        ck_assert_msg(!memcmp(all + (size_t)start * 16, got, (size_t)(40 - start) * 16 * sizeof(float)),
                "resume at %ld differs", start);
        dg_free(got);
    }
    dg_free(all);
}
END_TEST

START_TEST(n_epochs_ends_the_stream) {
    const int64_t sizes[1] = {10};
    dg_loader_cfg c = base_cfg(1, sizes, 3);
    c.n_epochs = 2;
    c.workers = 2;
    dg_loader *l = make(&c);
    const dg_batch *b;
    for (int k = 0; k < 6; k++) ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_OK);
    ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_ERR_MISSING);
    ck_assert_ptr_null(b);
    ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_ERR_MISSING);
    dg_loader_free(l);
}
END_TEST

START_TEST(sequential_pass_in_order_with_short_last_batch) {
    const int64_t sizes[1] = {7};
    int64_t items[7] = {5, 3, 9, 1, 0, 8, 2};
    for (int workers = 0; workers < 3; workers++) {
        dg_loader_cfg c = base_cfg(1, sizes, 3);
        c.sequential = true;
        c.dom[0].items = items;
        c.workers = workers;
        dg_loader *l = make(&c);
        ck_assert_int_eq(dg_loader_steps_per_epoch(l), 3);
        const dg_batch *b;
        int seen = 0;
        for (int k = 0; k < 3; k++) {
            ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_OK);
            ck_assert_int_eq(b->n, k < 2 ? 3 : 1);
            for (int i = 0; i < b->n; i++, seen++) {
                ck_assert_int_eq((int64_t)b->x[(size_t)i * 8 + 1], items[seen]);
                ck_assert_int_eq(b->sample_id[i], seen);
            }
        }
        ck_assert_int_eq(seen, 7);
        ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_ERR_MISSING);
        dg_loader_free(l);
    }
}
END_TEST

START_TEST(sequential_packs_smaller_samples) {
    const int64_t sizes[1] = {4};
    dg_loader_cfg c = base_cfg(1, sizes, 1);
    c.sequential = true;
    c.src.max_h = 5;
    c.src.max_w = 6;
    fk.h = 3;
    fk.w = 2;
    dg_loader *l = make(&c);
    const dg_batch *b;
    ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_OK);
    ck_assert_int_eq(b->h, 3);
    ck_assert_int_eq(b->w, 2);
    ck_assert_int_eq(b->label[5], 5);
    dg_loader_free(l);
    /* two samples per batch: the second is moved next to the first */
    c.per_domain = 2;
    l = make(&c);
    ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_OK);
    ck_assert_int_eq((int)b->x[12 + 1], 1); /* sample 1 starts at C*h*w = 12 */
    ck_assert_int_eq(b->label[6], 1);       /* its labels at h*w = 6 */
    dg_loader_free(l);
}
END_TEST

START_TEST(samples_of_different_size_in_one_batch_are_an_error) {
    const int64_t sizes[1] = {4};
    dg_loader_cfg c = base_cfg(1, sizes, 2);
    c.sequential = true;
    fk.vary_item = 1;
    dg_loader *l = make(&c);
    const dg_batch *b;
    capture cap;
    capture_begin(&cap);
    dg_status st = dg_loader_next(l, &b);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_SHAPE);
    ck_assert_msg(strstr(log, "batch size 1") != NULL, "%s", log);
    dg_free(log);
    dg_loader_free(l);
}
END_TEST

START_TEST(fail_policy_surfaces_the_error_and_stops_cleanly) {
    const int64_t sizes[2] = {12, 12};
    for (int workers = 0; workers < 4; workers++) {
        dg_loader_cfg c = base_cfg(2, sizes, 3);
        c.workers = workers;
        c.prefetch = 3;
        fk.bad_domain = 1;
        fk.bad_item = 7;
        capture cap;
        capture_begin(&cap); /* before the workers start */
        dg_loader *l = make(&c);
        const dg_batch *b;
        dg_status st = DG_STATUS_OK;
        int good = 0;
        while ((st = dg_loader_next(l, &b)) == DG_STATUS_OK) good++;
        ck_assert_int_eq(st, DG_STATUS_ERR_FORMAT);
        ck_assert_ptr_null(b);
        ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_ERR_FORMAT);
        dg_loader_free(l); /* joins the workers: a hang fails by timeout */
        char *log = capture_end(&cap);
        ck_assert_msg(strstr(log, "item 7 of domain 1 is corrupt") != NULL, "%s", log);
        ck_assert_int_lt(good, 4); /* item 7 is in the first epoch */
        dg_free(log);
    }
}
END_TEST

/* data.on_bad_sample = fail: a corrupt sample in a batch that workers
 * prefetched but the run never used says nothing (the run ended before
 * it); the run that does reach it gets the error, and its message, once,
 * when it takes that batch. */
START_TEST(bad_sample_is_reported_only_when_its_batch_is_used) {
    const int64_t sizes[2] = {12, 12};
    dg_loader_cfg c = base_cfg(2, sizes, 3);
    /* the domain-1 item of the second batch (batch 1) is the corrupt one */
    int64_t item = -1;
    {
        dg_loader_cfg c0 = c;
        dg_loader *l = make(&c0);
        const dg_batch *b;
        ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_OK);
        ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_OK);
        for (int i = 0; i < b->n && item < 0; i++)
            if (b->refs[i].domain == 1) item = b->refs[i].index;
        dg_loader_free(l);
    }
    ck_assert_int_ge(item, 0); /* once an epoch: not in batch 0 */
    for (int workers = 1; workers <= 3; workers++) {
        for (int use = 1; use <= 2; use++) { /* batches the run takes */
            dg_loader_cfg cw = base_cfg(2, sizes, 3);
            cw.workers = workers;
            cw.prefetch = 3;
            fk.bad_domain = 1;
            fk.bad_item = item;
            capture cap;
            capture_begin(&cap); /* before the workers start */
            dg_loader *l = make(&cw);
            const dg_batch *b;
            dg_status st = DG_STATUS_OK;
            for (int k = 0; k < use && st == DG_STATUS_OK; k++) st = dg_loader_next(l, &b);
            /* the workers fill the prefetch slots, batch 1 among them */
            const struct timespec pause_ts = {0, 100 * 1000 * 1000};
            nanosleep(&pause_ts, NULL);
            dg_loader_free(l);
            char *log = capture_end(&cap);
            char want[64];
            snprintf(want, sizeof(want), "item %lld of domain 1 is corrupt", (long long)item);
            const char *hit = strstr(log, want);
            if (use == 1) {
                ck_assert_int_eq(st, DG_STATUS_OK);
                ck_assert_msg(!hit, "workers %d: a batch never used printed: %s", workers, log);
            } else {
                ck_assert_int_eq(st, DG_STATUS_ERR_FORMAT);
                ck_assert_msg(hit && !strstr(hit + 1, want), "workers %d: %s", workers, log);
            }
            dg_free(log);
        }
    }
}
END_TEST

/* Batch buffers larger than the process can take are refused with their
 * size (DG_STATUS_ERR_MEMORY, nothing allocated), never an abort. */
START_TEST(batch_buffers_beyond_the_memory_left_are_refused) {
    const int64_t sizes[1] = {12};
    dg_loader_cfg c = base_cfg(1, sizes, 3);
    c.src.max_h = c.src.max_w = 1024; /* 4 slots x 3 x 3 x 1024^2 x 4 bytes: 144 MiB */
    c.prefetch = 3;
    setenv("DG_MEM_LIMIT", "64M", 1);
    capture cap;
    capture_begin(&cap);
    dg_loader *l = NULL;
    const dg_status st = dg_loader_create(&c, &l);
    char *log = capture_end(&cap);
    unsetenv("DG_MEM_LIMIT");
    ck_assert_int_eq(st, DG_STATUS_ERR_MEMORY);
    ck_assert_ptr_null(l);
    ck_assert_msg(strstr(log, "out of memory") && strstr(log, "144.0 MiB") &&
            strstr(log, "DG_MEM_LIMIT"), "%s", log);
    dg_free(log);
    setenv("DG_MEM_LIMIT", "160M", 1);
    const dg_status st2 = dg_loader_create(&c, &l);
    unsetenv("DG_MEM_LIMIT");
    ck_assert_int_eq(st2, DG_STATUS_OK);
    dg_loader_free(l);
}
END_TEST

START_TEST(skip_policy_replaces_and_counts_deterministically) {
    const int64_t sizes[2] = {12, 12};
    float *ref = NULL;
    for (int workers = 0; workers < 3; workers++) {
        dg_loader_cfg c = base_cfg(2, sizes, 3);
        c.workers = workers;
        c.on_bad = DG_BAD_SAMPLE_SKIP;
        fk.bad_domain = 1;
        fk.bad_item = 7;
        capture cap;
        capture_begin(&cap);
        dg_loader *l = make(&c);
        float *got = dg_xcalloc(8 * 6 * 4, sizeof(float));
        int replaced = 0;
        for (int k = 0; k < 8; k++) {
            const dg_batch *b;
            ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_OK);
            replaced += b->n_skipped;
            for (int i = 0; i < 6; i++) {
                const float *x = b->x + (size_t)i * 8;
                ck_assert_msg(!(x[0] == 1 && x[1] == 7), "bad item delivered");
                memcpy(got + ((size_t)k * 6 + (size_t)i) * 4, x, 4 * sizeof(float));
                if (b->refs[i].domain == 1 && b->refs[i].index == 8 && b->n_skipped)
                    ck_assert_int_eq(b->sample_id[i], 12 + 8);
            }
        }
        long skipped = dg_loader_skipped(l);
        dg_loader_free(l);
        char *log = capture_end(&cap);
        ck_assert_int_eq(skipped, 2); /* once per epoch, two epochs of 4 steps */
        ck_assert_int_eq(replaced, 2);
        ck_assert_msg(strstr(log, "skipping sample (domain 1, item 7); replaced by item 8"),
                "%s", log);
        dg_free(log);
        if (!ref) {
            ref = got;
        } else {
            ck_assert(!memcmp(ref, got, 8 * 6 * 4 * sizeof(float)));
            dg_free(got);
        }
    }
    dg_free(ref);
}
END_TEST

START_TEST(skip_policy_gives_up_when_a_domain_is_all_bad) {
    const int64_t sizes[2] = {5, 5};
    dg_loader_cfg c = base_cfg(2, sizes, 2);
    c.workers = 2;
    c.on_bad = DG_BAD_SAMPLE_SKIP;
    fk.all_bad_domain = 0;
    capture cap;
    capture_begin(&cap); /* before the workers start */
    dg_loader *l = make(&c);
    const dg_batch *b;
    dg_status st = dg_loader_next(l, &b);
    dg_loader_free(l);
    char *log = capture_end(&cap);
    ck_assert_int_eq(st, DG_STATUS_ERR_FORMAT);
    ck_assert_msg(strstr(log, "every item of domain 0 failed") != NULL, "%s", log);
    dg_free(log);
}
END_TEST

START_TEST(bad_configurations_are_rejected) {
    const int64_t sizes[2] = {5, 0};
    dg_loader_cfg c = base_cfg(2, sizes, 2);
    dg_loader *l = NULL;
    capture cap;
    capture_begin(&cap);
    ck_assert_int_eq(dg_loader_create(&c, &l), DG_STATUS_ERR_CONFIG); /* empty domain */
    c.dom[1].n = 5;
    c.per_domain = 6;
    ck_assert_int_eq(dg_loader_create(&c, &l), DG_STATUS_ERR_CONFIG); /* batch > epoch */
    c.per_domain = 2;
    c.sequential = true;
    ck_assert_int_eq(dg_loader_create(&c, &l), DG_STATUS_ERR_CONFIG); /* 2 domains */
    char *log = capture_end(&cap);
    ck_assert_ptr_null(l);
    ck_assert_msg(strstr(log, "domain 1 has no samples") != NULL, "%s", log);
    dg_free(log);
}
END_TEST

/* ---- class-uniform ------------------------------------------------------- */

START_TEST(centroids_per_whole_tile) {
    /* 5 x 9 map, tile 4: tiles at (0,0) and (0,4); row 4 and column 8 unused */
    uint8_t lab[5 * 9];
    memset(lab, 255, sizeof(lab));
    lab[0 * 9 + 0] = 2;
    lab[3 * 9 + 3] = 2; /* class 2 in tile 0: mean (1.5, 1.5) -> (1, 1) */
    lab[1 * 9 + 5] = 0;
    lab[2 * 9 + 7] = 0; /* class 0 in tile 1: mean (1.5, 6) -> (1, 6) */
    lab[4 * 9 + 0] = 1; /* outside whole tiles */
    lab[0 * 9 + 8] = 1;
    lab[2 * 9 + 2] = 7; /* >= n_classes: ignored */
    dg_class_centroids cc;
    memset(&cc, 0, sizeof(cc));
    cc.n_classes = 3;
    dg_class_centroids_add(&cc, 42, lab, 5, 9, 4);
    ck_assert_int_eq(cc.n[0], 1);
    ck_assert_int_eq(cc.n[1], 0);
    ck_assert_int_eq(cc.n[2], 1);
    ck_assert_int_eq(cc.c[2][0].item, 42);
    ck_assert_int_eq(cc.c[2][0].y, 1);
    ck_assert_int_eq(cc.c[2][0].x, 1);
    ck_assert_int_eq(cc.c[0][0].y, 1);
    ck_assert_int_eq(cc.c[0][0].x, 6);
    for (int k = 0; k < 5; k++) dg_class_centroids_add(&cc, k, lab, 5, 9, 4);
    ck_assert_int_eq(cc.n[2], 6);
    ck_assert_int_eq(cc.c[2][5].item, 4);
    dg_class_centroids_free(&cc);
}
END_TEST

START_TEST(class_uniform_epoch_list_follows_section_7_3) {
    /* N = 40 images, 4 classes, pct 0.5: n_c = 5 per class with centroids
     * (class 3 has none), 40 - 20 = 20 random items: L = 35 */
    const int64_t N = 40;
    dg_class_centroids cc;
    memset(&cc, 0, sizeof(cc));
    cc.n_classes = 4;
    uint8_t lab[4];
    for (int64_t i = 0; i < N; i++) {
        lab[0] = 0;
        lab[1] = (uint8_t)(i % 3 == 0 ? 1 : 255);
        lab[2] = (uint8_t)(i == 7 ? 2 : 255); /* class 2: one centroid, wraps */
        lab[3] = 0;
        dg_class_centroids_add(&cc, i, lab, 2, 2, 1);
    }
    const int64_t sizes[1] = {N};
    dg_loader_cfg c = base_cfg(1, sizes, 5);
    c.dom[0].cu = &cc;
    c.class_uniform_pct = 0.5;
    dg_loader *l = make(&c);
    ck_assert_int_eq(dg_loader_steps_per_epoch(l), 35 / 5);
    for (int e = 0; e < 2; e++) {
        /* expected list from the §7.3 recipe on stream (7, e) */
        dg_rng r;
        dg_rng_init(&r, 11, DG_RNG_CLASS_UNIFORM, (uint32_t)e);
        int64_t item[35], cy[35], cx[35], len = 0, idx[80];
        for (int k = 0; k < 4; k++) {
            if (!cc.n[k]) continue;
            for (int64_t i = 0; i < cc.n[k]; i++) idx[i] = i;
            ref_shuffle(&r, idx, cc.n[k]);
            for (int i = 0; i < 5; i++, len++) {
                const dg_centroid *ce = &cc.c[k][idx[i % cc.n[k]]];
                item[len] = ce->item;
                cy[len] = ce->y;
                cx[len] = ce->x;
            }
        }
        for (int64_t i = 0; i < N; i++) idx[i] = i;
        ref_shuffle(&r, idx, N);
        for (int i = 0; i < 20; i++, len++) {
            item[len] = idx[i];
            cy[len] = cx[len] = -1;
        }
        ck_assert_int_eq(len, 35);
        for (int64_t i = 0; i < len; i++) idx[i] = i;
        ref_shuffle(&r, idx, len);
        for (int q = 0; q < 7; q++) {
            const dg_batch *b;
            ck_assert_int_eq(dg_loader_next(l, &b), DG_STATUS_OK);
            for (int j = 0; j < 5; j++) {
                int64_t s = idx[q * 5 + j];
                ck_assert_int_eq(b->refs[j].index, item[s]);
                ck_assert_int_eq(b->refs[j].cy, cy[s]);
                ck_assert_int_eq(b->refs[j].cx, cx[s]);
            }
        }
    }
    dg_loader_free(l);
    dg_class_centroids_free(&cc);
}
END_TEST

Suite *loader_suite(void) {
    Suite *s = suite_create("loader");
    TCase *tc = tcase_create("sampler");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, plain_epochs_follow_stream_3_and_cover_each_item_once);
    tcase_add_test(tc, same_batches_for_any_worker_count_and_prefetch);
    tcase_add_test(tc, resume_from_a_later_step_gives_the_same_batches);
    tcase_add_test(tc, n_epochs_ends_the_stream);
    tcase_add_test(tc, sequential_pass_in_order_with_short_last_batch);
    tcase_add_test(tc, sequential_packs_smaller_samples);
    tcase_add_test(tc, centroids_per_whole_tile);
    tcase_add_test(tc, class_uniform_epoch_list_follows_section_7_3);
    suite_add_tcase(s, tc);
    TCase *bad = tcase_create("bad_samples");
    tcase_set_timeout(bad, 30);
    tcase_add_test(bad, samples_of_different_size_in_one_batch_are_an_error);
    tcase_add_test(bad, fail_policy_surfaces_the_error_and_stops_cleanly);
    tcase_add_test(bad, skip_policy_replaces_and_counts_deterministically);
    tcase_add_test(bad, bad_sample_is_reported_only_when_its_batch_is_used);
    tcase_add_test(bad, batch_buffers_beyond_the_memory_left_are_refused);
    tcase_add_test(bad, skip_policy_gives_up_when_a_domain_is_all_bad);
    tcase_add_test(bad, bad_configurations_are_rejected);
    suite_add_tcase(s, bad);
    return s;
}
