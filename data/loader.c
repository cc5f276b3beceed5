/* data/loader.c -- samplers and the threaded batch loader (see loader.h).
 *
 * Batches live in a ring of slots. A worker takes the next batch number k
 * under the lock, waits until slot k mod n_slots is free, fills the slot's
 * sample list from the sampler (so the sampler advances in batch order
 * whatever thread runs it), then loads the samples without the lock. The
 * consumer takes batch k from its slot once it is ready and frees the slot
 * at its next call. */
#define _POSIX_C_SOURCE 200809L
#include "data/loader.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef enum slot_state {
    SLOT_FREE = 0,
    SLOT_BUSY = 1,  /* a worker is loading it */
    SLOT_READY = 2,
    SLOT_ERROR = 3,
    SLOT_HELD = 4   /* handed to the consumer */
} slot_state;

typedef struct slot {
    dg_batch b;
    slot_state state;
    long k;         /* batch number held */
    dg_status st;   /* load status when SLOT_ERROR */
    dg_log_capture log; /* what loading it said, printed when it is used */
} slot;

struct dg_loader {
    dg_loader_cfg cfg;
    int64_t id_base[DG_LOADER_MAX_DOMAINS]; /* global id of each list's item 0 */
    int64_t list_len[DG_LOADER_MAX_DOMAINS]; /* L_d: epoch list length */
    long spe;                               /* batches per epoch or pass */
    long end_step;                          /* first batch number not produced */
    int shares;                             /* N >= 1: parts of each batch (loader.h) */
    size_t sample_x;                        /* floats per sample slot: C max_h max_w */
    size_t sample_p;                        /* labels per sample slot */

    /* sampler (guarded by mu) */
    dg_rng sampler_rng[DG_LOADER_MAX_DOMAINS]; /* plain epochs: continuing streams */
    dg_sample_ref *list[DG_LOADER_MAX_DOMAINS]; /* (L_d) current epoch's list */
    int64_t *scratch;                          /* (max(n_d, L_d)) shuffle indices */
    dg_sample_ref *scratch_refs;               /* (max L_d) */
    long list_epoch;                           /* epoch the lists hold; -1 none */

    /* queue (guarded by mu) */
    pthread_mutex_t mu;
    pthread_cond_t cv_slot;  /* a slot became free, or stop */
    pthread_cond_t cv_ready; /* a slot became ready or failed */
    int n_slots;
    slot *slots;             /* (n_slots) */
    long next_job;           /* next batch number a worker takes */
    long next_consume;       /* next batch number the consumer takes */
    int held;                /* slot the consumer holds, -1 none */
    bool stop;
    dg_status fatal;         /* first load error seen by the consumer */
    long skipped;            /* replacements in the batches handed out */
    int n_threads;
    pthread_t *threads;      /* (n_threads) */
};

/* ---- centroids (docs/datasets.md §7.3) --------------------------------------- */

void dg_class_centroids_free(dg_class_centroids *cc) {
    for (int k = 0; k < DG_LOADER_MAX_CLASSES; k++) dg_free(cc->c[k]);
    memset(cc, 0, sizeof(*cc));
}

void dg_class_centroids_push(dg_class_centroids *cc, int k, dg_centroid c) {
    int64_t n = cc->n[k];
    if ((n & (n - 1)) == 0) /* grow at powers of two */
        cc->c[k] = dg_xrealloc(cc->c[k], (size_t)(n ? 2 * n : 1) * sizeof(dg_centroid));
    cc->c[k][n] = c;
    cc->n[k] = n + 1;
}

void dg_class_centroids_add(dg_class_centroids *cc, int64_t item, const uint8_t *label,
        int h, int w, int tile) {
    DG_ASSERT(cc->n_classes >= 1 && cc->n_classes <= DG_LOADER_MAX_CLASSES && tile >= 1);
    const int nc = cc->n_classes;
    int64_t count[DG_LOADER_MAX_CLASSES];
    double sy[DG_LOADER_MAX_CLASSES], sx[DG_LOADER_MAX_CLASSES];
    for (int ty = 0; ty + tile <= h; ty += tile) {
        for (int tx = 0; tx + tile <= w; tx += tile) {
            memset(count, 0, sizeof(count));
            memset(sy, 0, sizeof(sy));
            memset(sx, 0, sizeof(sx));
            for (int y = ty; y < ty + tile; y++) {
                const uint8_t *row = label + (size_t)y * (size_t)w;
                for (int x = tx; x < tx + tile; x++) {
                    int k = row[x];
                    if (k >= nc) continue;
                    count[k]++;
                    sy[k] += y;
                    sx[k] += x;
                }
            }
            for (int k = 0; k < nc; k++) {
                if (!count[k]) continue;
                dg_centroid c = {item, (int32_t)(sy[k] / (double)count[k]),
                    (int32_t)(sx[k] / (double)count[k])};
                dg_class_centroids_push(cc, k, c);
            }
        }
    }
}

/* ---- sampler ------------------------------------------------------------- */

static int64_t item_of(const dg_loader_domain *d, int64_t pos) {
    return d->items ? d->items[pos] : pos;
}

static dg_sample_ref make_ref(const dg_loader *l, int dom, int64_t pos) {
    dg_sample_ref r = {
        .domain = dom,
        .pos = pos,
        .index = item_of(&l->cfg.dom[dom], pos),
        .sample_id = l->id_base[dom] + pos,
        .cy = -1,
        .cx = -1,
    };
    return r;
}

static bool class_uniform(const dg_loader *l, int d) {
    return l->cfg.class_uniform_pct > 0 && l->cfg.dom[d].cu != NULL;
}

/* Classes per list: n_c = floor(N pct / C). */
static int64_t cu_per_class(const dg_loader *l, int d) {
    const dg_class_centroids *cc = l->cfg.dom[d].cu;
    return (int64_t)((double)l->cfg.dom[d].n * l->cfg.class_uniform_pct / cc->n_classes);
}

static int64_t epoch_list_len(const dg_loader *l, int d) {
    int64_t n = l->cfg.dom[d].n;
    if (!class_uniform(l, d)) return n;
    const dg_class_centroids *cc = l->cfg.dom[d].cu;
    int64_t nc = cu_per_class(l, d), with = 0;
    for (int k = 0; k < cc->n_classes; k++) with += cc->n[k] > 0;
    return with * nc + (n - cc->n_classes * nc);
}

/* Plain epoch: the domain's positions shuffled on its continuing stream. */
static void shuffle_plain(dg_loader *l, int d, bool fill) {
    int64_t n = l->cfg.dom[d].n;
    for (int64_t i = 0; i < n; i++) l->scratch[i] = i;
    dg_rng_shuffle_i64(&l->sampler_rng[d], l->scratch, (size_t)n);
    if (!fill) return;
    for (int64_t i = 0; i < n; i++) l->list[d][i] = make_ref(l, d, l->scratch[i]);
}

/* Class-uniform epoch list of docs/datasets.md §7.3 on stream
 * (DG_RNG_CLASS_UNIFORM, epoch + (d << 24)). */
static void build_class_uniform(dg_loader *l, int d, long epoch) {
    const dg_class_centroids *cc = l->cfg.dom[d].cu;
    const int64_t n = l->cfg.dom[d].n, nc = cu_per_class(l, d);
    dg_rng r;
    dg_rng_init(&r, l->cfg.seed, DG_RNG_CLASS_UNIFORM, (uint32_t)epoch + ((uint32_t)d << 24));
    int64_t len = 0;
    dg_sample_ref *tmp = l->scratch_refs;
    for (int k = 0; k < cc->n_classes; k++) {
        if (!cc->n[k]) continue;
        for (int64_t i = 0; i < cc->n[k]; i++) l->scratch[i] = i;
        dg_rng_shuffle_i64(&r, l->scratch, (size_t)cc->n[k]);
        for (int64_t i = 0; i < nc; i++) {
            const dg_centroid *c = &cc->c[k][l->scratch[i % cc->n[k]]];
            tmp[len] = make_ref(l, d, c->item);
            tmp[len].cy = c->y;
            tmp[len].cx = c->x;
            len++;
        }
    }
    int64_t n_rand = n - cc->n_classes * nc;
    for (int64_t i = 0; i < n; i++) l->scratch[i] = i;
    dg_rng_shuffle_i64(&r, l->scratch, (size_t)n);
    for (int64_t i = 0; i < n_rand; i++) tmp[len++] = make_ref(l, d, l->scratch[i % n]);
    DG_ASSERT(len == l->list_len[d]);
    for (int64_t i = 0; i < len; i++) l->scratch[i] = i;
    dg_rng_shuffle_i64(&r, l->scratch, (size_t)len);
    for (int64_t i = 0; i < len; i++) l->list[d][i] = tmp[l->scratch[i]];
}

/* Makes the lists hold epoch e (e >= list_epoch; plain streams advance one
 * epoch per build). */
static void build_epoch(dg_loader *l, long e) {
    while (l->list_epoch < e) {
        long next = l->list_epoch + 1;
        for (int d = 0; d < l->cfg.n_domains; d++) {
            if (class_uniform(l, d)) {
                if (next == e) build_class_uniform(l, d, next);
            } else {
                shuffle_plain(l, d, next == e);
            }
        }
        l->list_epoch = next;
    }
}

/* Fills slot s's sample list for batch k (under the lock). */
static void fill_refs(dg_loader *l, slot *s, long k) {
    dg_batch *b = &s->b;
    const int per = l->cfg.per_domain;
    b->step = k;
    b->n_skipped = 0;
    if (l->cfg.sequential) {
        int64_t first = (int64_t)k * per, n = l->cfg.dom[0].n;
        int cnt = (int)(n - first < per ? n - first : per);
        b->epoch = 0;
        b->n = cnt;
        b->per_domain = cnt;
        for (int i = 0; i < cnt; i++) b->refs[i] = make_ref(l, 0, first + i);
        return;
    }
    long e = k / l->spe, q = k % l->spe;
    build_epoch(l, e);
    const int lp = per / l->shares, first = l->cfg.share * lp; /* this share's slots */
    b->epoch = (int)e;
    b->n = lp * l->cfg.n_domains;
    b->per_domain = lp;
    for (int d = 0; d < l->cfg.n_domains; d++)
        for (int j = 0; j < lp; j++) b->refs[d * lp + j] = l->list[d][q * per + first + j];
}

/* ---- loading ------------------------------------------------------------- */

static uint32_t aug_index(const dg_loader *l, const dg_batch *b, int i) {
    long position;
    if (l->cfg.sequential) {
        position = b->step * l->cfg.per_domain + i;
    } else {
        /* slot i of this share is slot d b + first + j of the whole batch */
        const int per = l->cfg.per_domain, lp = b->per_domain, d = i / lp, j = i % lp;
        const int whole = d * per + l->cfg.share * lp + j;
        position = (b->step % l->spe) * (long)(per * l->cfg.n_domains) + whole;
    }
    return ((uint32_t)b->epoch << 20) + (uint32_t)position;
}

/* Loads sample i of b (with replacements under the skip policy). */
static dg_status load_sample(dg_loader *l, dg_batch *b, int i) {
    const dg_sample_source *src = &l->cfg.src;
    dg_sample_ref ref = b->refs[i];
    const int64_t n = l->cfg.dom[ref.domain].n;
    const uint32_t idx = aug_index(l, b, i);
    dg_sample_out out = {
        .x = b->x + (size_t)i * l->sample_x,
        .label = b->label + (size_t)i * l->sample_p,
    };
    for (int64_t attempt = 0;; attempt++) {
        dg_rng r;
        dg_rng_init(&r, l->cfg.seed, DG_RNG_AUGMENT, idx);
        out.h = out.w = 0;
        dg_status st = src->load(src->ctx, &ref, &r, &out);
        if (st == DG_STATUS_OK) {
            DG_ASSERT(out.h >= 1 && out.h <= src->max_h && out.w >= 1 && out.w <= src->max_w);
            b->refs[i] = ref;
            b->sample_id[i] = ref.sample_id;
            if (i == 0) {
                b->h = out.h;
                b->w = out.w;
            } else if (out.h != b->h || out.w != b->w) {
                dg_log_error("loader: batch %ld: sample %d (domain %d, item %lld) is %dx%d but "
                             "sample 0 is %dx%d; images of varying size need batch size 1",
                        b->step, i, ref.domain, (long long)ref.index, out.w, out.h, b->w, b->h);
                return DG_STATUS_ERR_SHAPE;
            }
            return DG_STATUS_OK;
        }
        if (l->cfg.on_bad != DG_BAD_SAMPLE_SKIP) return st;
        if (attempt + 1 >= n) {
            dg_log_error("loader: every item of domain %d failed to load; nothing left to train on",
                    ref.domain);
            return st;
        }
        int64_t pos = (b->refs[i].pos + attempt + 1) % n;
        dg_sample_ref next = make_ref(l, ref.domain, pos);
        dg_log_warn("loader: skipping sample (domain %d, item %lld); replaced by item %lld",
                ref.domain, (long long)ref.index, (long long)next.index);
        b->n_skipped++;
        ref = next;
    }
}

static dg_status load_batch(dg_loader *l, dg_batch *b) {
    for (int i = 0; i < b->n; i++) {
        dg_status st = load_sample(l, b, i);
        if (st != DG_STATUS_OK) return st;
    }
    /* pack the samples densely when they are smaller than the slot stride */
    size_t xs = (size_t)b->c * (size_t)b->h * (size_t)b->w;
    size_t ps = l->cfg.src.dense ? (size_t)b->h * (size_t)b->w : 1;
    for (int i = 1; i < b->n && xs != l->sample_x; i++)
        memmove(b->x + (size_t)i * xs, b->x + (size_t)i * l->sample_x, xs * sizeof(float));
    for (int i = 1; i < b->n && ps != l->sample_p; i++)
        memmove(b->label + (size_t)i * ps, b->label + (size_t)i * l->sample_p,
                ps * sizeof(int32_t));
    return DG_STATUS_OK;
}

/* Takes the next job into a free slot (lock held; may wait). Returns the
 * slot index, or -1 when there is nothing more to do. */
static int take_job(dg_loader *l) {
    for (;;) {
        if (l->stop || l->next_job >= l->end_step) return -1;
        long k = l->next_job;
        int s = (int)(k % l->n_slots);
        if (l->slots[s].state == SLOT_FREE) {
            l->next_job++;
            l->slots[s].state = SLOT_BUSY;
            l->slots[s].k = k;
            fill_refs(l, &l->slots[s], k);
            return s;
        }
        pthread_cond_wait(&l->cv_slot, &l->mu);
    }
}

static void finish_job(dg_loader *l, int s, dg_status st) {
    l->slots[s].st = st;
    l->slots[s].state = st == DG_STATUS_OK ? SLOT_READY : SLOT_ERROR;
    pthread_cond_broadcast(&l->cv_ready);
}

static void *worker_main(void *arg) {
    dg_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        int s = take_job(l);
        if (s < 0) break;
        pthread_mutex_unlock(&l->mu);
        dg_log_capture_to(&l->slots[s].log);
        dg_status st = load_batch(l, &l->slots[s].b);
        dg_log_capture_to(NULL);
        pthread_mutex_lock(&l->mu);
        finish_job(l, s, st);
        if (st != DG_STATUS_OK) break; /* the consumer stops everything when it gets here */
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* ---- public -------------------------------------------------------------- */

static dg_status check_cfg(const dg_loader_cfg *c) {
    if (c->n_domains < 1 || c->n_domains > DG_LOADER_MAX_DOMAINS) {
        dg_log_error("loader: %d domains (1 .. %d supported)", c->n_domains,
                DG_LOADER_MAX_DOMAINS);
        return DG_STATUS_ERR_CONFIG;
    }
    if (c->sequential && c->n_domains != 1) {
        dg_log_error("loader: a sequential pass reads one domain, got %d", c->n_domains);
        return DG_STATUS_ERR_CONFIG;
    }
    if (c->per_domain < 1 || c->workers < 0 || c->prefetch < 0 || c->start_step < 0 ||
            c->n_epochs < 0 || c->class_uniform_pct < 0 || c->class_uniform_pct > 1) {
        dg_log_error("loader: bad settings (batch per domain %d, workers %d, prefetch %d, "
                     "class-uniform fraction %g)", c->per_domain, c->workers, c->prefetch,
                c->class_uniform_pct);
        return DG_STATUS_ERR_CONFIG;
    }
    if (c->shares < 0 || c->share < 0 || c->share >= (c->shares > 1 ? c->shares : 1) ||
            (c->shares > 1 && (c->sequential || c->per_domain % c->shares))) {
        dg_log_error("loader: share %d of %d cannot split batches of %d per domain%s", c->share,
                c->shares, c->per_domain, c->sequential ? " (a sequential pass)" : "");
        return DG_STATUS_ERR_CONFIG;
    }
    if (c->src.c < 1 || c->src.max_h < 1 || c->src.max_w < 1 || !c->src.load) {
        dg_log_error("loader: the sample source has no shape or no load function");
        return DG_STATUS_ERR_CONFIG;
    }
    for (int d = 0; d < c->n_domains; d++) {
        if (c->dom[d].n < 1) {
            dg_log_error("loader: domain %d has no samples", d);
            return DG_STATUS_ERR_CONFIG;
        }
        const dg_class_centroids *cc = c->dom[d].cu;
        if (cc && (cc->n_classes < 1 || cc->n_classes > DG_LOADER_MAX_CLASSES)) {
            dg_log_error("loader: domain %d: %d classes for class-uniform sampling (1 .. %d)", d,
                    cc->n_classes, DG_LOADER_MAX_CLASSES);
            return DG_STATUS_ERR_CONFIG;
        }
    }
    return DG_STATUS_OK;
}

dg_status dg_loader_create(const dg_loader_cfg *cfg, dg_loader **out) {
    *out = NULL;
    dg_status st = check_cfg(cfg);
    if (st != DG_STATUS_OK) return st;
    dg_loader *l = dg_xcalloc(1, sizeof(*l));
    l->cfg = *cfg;
    const int S = cfg->n_domains, per = cfg->per_domain;
    int64_t base = 0, min_len = INT64_MAX, max_len = 0;
    for (int d = 0; d < S; d++) {
        l->id_base[d] = base;
        base += cfg->dom[d].n;
        l->list_len[d] = cfg->sequential ? cfg->dom[d].n : epoch_list_len(l, d);
        if (l->list_len[d] < min_len) min_len = l->list_len[d];
        int64_t need = l->list_len[d] > cfg->dom[d].n ? l->list_len[d] : cfg->dom[d].n;
        const dg_class_centroids *cc = cfg->dom[d].cu;
        for (int k = 0; cc && k < cc->n_classes; k++)
            if (cc->n[k] > need) need = cc->n[k];
        if (need > max_len) max_len = need;
    }
    if (cfg->sequential) {
        l->spe = (long)((cfg->dom[0].n + per - 1) / per);
        l->end_step = l->spe;
    } else {
        l->spe = (long)(min_len / per);
        if (l->spe < 1) {
            dg_log_error("loader: %d samples per domain and batch but the smallest domain "
                         "yields only %lld per epoch", per, (long long)min_len);
            dg_free(l);
            return DG_STATUS_ERR_CONFIG;
        }
        if ((int64_t)l->spe * per * S > (1 << 20)) {
            dg_log_error("loader: %lld samples per epoch exceed the augmentation stream's "
                         "2^20 positions (docs/datasets.md §12.2)", (long long)l->spe * per * S);
            dg_free(l);
            return DG_STATUS_ERR_CONFIG;
        }
        l->end_step = cfg->n_epochs ? cfg->n_epochs * l->spe : LONG_MAX;
    }
    l->scratch = dg_xmalloc((size_t)max_len * sizeof(*l->scratch));
    l->scratch_refs = dg_xmalloc((size_t)max_len * sizeof(*l->scratch_refs));
    for (int d = 0; d < S && !cfg->sequential; d++) {
        l->list[d] = dg_xmalloc((size_t)l->list_len[d] * sizeof(dg_sample_ref));
        dg_rng_init(&l->sampler_rng[d], cfg->seed, DG_RNG_SAMPLER, (uint32_t)d);
    }
    l->list_epoch = -1;

    l->shares = cfg->shares > 1 ? cfg->shares : 1;
    const int B = cfg->sequential ? per : per / l->shares * S;
    l->sample_x = (size_t)cfg->src.c * (size_t)cfg->src.max_h * (size_t)cfg->src.max_w;
    l->sample_p = cfg->src.dense ? (size_t)cfg->src.max_h * (size_t)cfg->src.max_w : 1;
    int prefetch = cfg->prefetch ? cfg->prefetch : 2 * (cfg->workers ? cfg->workers : 1);
    l->n_slots = prefetch + 1;
    l->slots = dg_xcalloc((size_t)l->n_slots, sizeof(*l->slots));
    pthread_mutex_init(&l->mu, NULL); /* before any dg_loader_free */
    pthread_cond_init(&l->cv_slot, NULL);
    pthread_cond_init(&l->cv_ready, NULL);
    /* the batch buffers grow with the batch and crop sizes: refused with
     * their size when the process cannot take them, never an abort */
    const double x_bytes = (double)B * (double)l->sample_x * sizeof(float),
                 p_bytes = (double)B * (double)l->sample_p * sizeof(int32_t);
    const dg_mem_headroom room = dg_mem_headroom_now();
    bool fits = (x_bytes + p_bytes) * l->n_slots <= (double)room.bytes;
    for (int s = 0; fits && s < l->n_slots; s++) {
        dg_batch *b = &l->slots[s].b;
        b->n_domains = cfg->sequential ? 1 : S;
        b->c = cfg->src.c;
        b->x = dg_try_malloc((size_t)x_bytes);
        b->label = dg_try_malloc((size_t)p_bytes);
        b->sample_id = dg_xmalloc((size_t)B * sizeof(int64_t));
        b->refs = dg_xmalloc((size_t)B * sizeof(dg_sample_ref));
        fits = b->x && b->label;
    }
    if (!fits) {
        char need[32], left[32];
        dg_fmt_bytes(need, sizeof(need), (x_bytes + p_bytes) * l->n_slots);
        dg_fmt_bytes(left, sizeof(left), (double)room.bytes);
        dg_log_error("loader: out of memory: %d batch buffers (prefetch %d + 1) of %d samples "
                     "of %dx%dx%d need %s and this process can take %s%s%s; lower the batch "
                     "size, the crop size or the prefetch depth", l->n_slots, prefetch, B,
                cfg->src.c, cfg->src.max_h, cfg->src.max_w, need, left,
                room.binding[0] ? ": " : "", room.binding);
        dg_loader_free(l);
        return DG_STATUS_ERR_MEMORY;
    }
    l->next_job = l->next_consume = cfg->start_step;
    l->held = -1;
    l->threads = dg_xcalloc((size_t)(cfg->workers ? cfg->workers : 1), sizeof(pthread_t));
    for (int t = 0; t < cfg->workers; t++) {
        if (pthread_create(&l->threads[t], NULL, worker_main, l) != 0) {
            dg_log_error("loader: cannot start worker thread %d", t);
            dg_loader_free(l);
            return DG_STATUS_ERR_IO;
        }
        l->n_threads++;
    }
    *out = l;
    return DG_STATUS_OK;
}

long dg_loader_steps_per_epoch(const dg_loader *l) { return l->spe; }

long dg_loader_skipped(const dg_loader *l) {
    pthread_mutex_lock((pthread_mutex_t *)&l->mu);
    long n = l->skipped;
    pthread_mutex_unlock((pthread_mutex_t *)&l->mu);
    return n;
}

dg_status dg_loader_next(dg_loader *l, const dg_batch **out) {
    *out = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->held >= 0) {
        l->slots[l->held].state = SLOT_FREE;
        l->held = -1;
        pthread_cond_broadcast(&l->cv_slot);
    }
    dg_status st = l->fatal;
    long k = l->next_consume;
    if (st == DG_STATUS_OK && k >= l->end_step) {
        pthread_mutex_unlock(&l->mu);
        return DG_STATUS_ERR_MISSING;
    }
    int s = (int)(k % l->n_slots);
    if (st == DG_STATUS_OK && l->n_threads == 0) {
        /* synchronous: do the job here */
        int js = take_job(l);
        DG_ASSERT(js == s);
        pthread_mutex_unlock(&l->mu);
        dg_status ls = load_batch(l, &l->slots[s].b);
        pthread_mutex_lock(&l->mu);
        finish_job(l, s, ls);
    }
    while (st == DG_STATUS_OK && !(l->slots[s].k == k &&
            (l->slots[s].state == SLOT_READY || l->slots[s].state == SLOT_ERROR)))
        pthread_cond_wait(&l->cv_ready, &l->mu);
    if (st == DG_STATUS_OK) dg_log_capture_flush(&l->slots[s].log); /* the batch is used */
    if (st == DG_STATUS_OK && l->slots[s].state == SLOT_ERROR) {
        st = l->fatal = l->slots[s].st;
        l->stop = true;
        pthread_cond_broadcast(&l->cv_slot);
    }
    if (st == DG_STATUS_OK) {
        l->slots[s].state = SLOT_HELD;
        l->held = s;
        l->next_consume++;
        l->skipped += l->slots[s].b.n_skipped;
        *out = &l->slots[s].b;
    }
    pthread_mutex_unlock(&l->mu);
    return st;
}

void dg_loader_free(dg_loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->cv_slot);
    pthread_mutex_unlock(&l->mu);
    for (int t = 0; t < l->n_threads; t++) pthread_join(l->threads[t], NULL);
    pthread_cond_destroy(&l->cv_slot);
    pthread_cond_destroy(&l->cv_ready);
    pthread_mutex_destroy(&l->mu);
    for (int s = 0; s < l->n_slots; s++) {
        dg_batch *b = &l->slots[s].b;
        dg_free(b->x);
        dg_free(b->label);
        dg_free(b->sample_id);
        dg_free(b->refs);
        dg_log_capture_free(&l->slots[s].log); /* of batches never used: unsaid */
    }
    dg_free(l->slots);
    for (int d = 0; d < DG_LOADER_MAX_DOMAINS; d++) dg_free(l->list[d]);
    dg_free(l->scratch);
    dg_free(l->scratch_refs);
    dg_free(l->threads);
    dg_free(l);
}
