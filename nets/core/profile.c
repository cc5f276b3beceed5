/* nets/core/profile.c -- see profile.h. */
#include "profile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    char *kind, *shape;
    double seconds, flops;
    long calls;
} slot;

static bool on;
static slot *slots;
static dg_profile_row *rows;
static int n_slots, cap_slots;

void dg_profile_enable(bool enable) { on = enable; }
bool dg_profile_enabled(void) { return on; }

int dg_profile_slot(const char *kind, const char *shape, double flops) {
    if (!on) return 0;
    for (int i = 0; i < n_slots; i++)
        if (!strcmp(slots[i].kind, kind) && !strcmp(slots[i].shape, shape)) return i + 1;
    if (n_slots == cap_slots) {
        cap_slots = cap_slots ? 2 * cap_slots : 64;
        slots = dg_xrealloc(slots, (size_t)cap_slots * sizeof(*slots));
    }
    slot *s = &slots[n_slots++];
    s->kind = dg_xstrdup(kind);
    s->shape = dg_xstrdup(shape);
    s->seconds = 0;
    s->flops = flops;
    s->calls = 0;
    return n_slots;
}

static double added;      /* every dg_profile_add so far, in seconds */
static double added_at_begin;

void dg_profile_add(int id, double seconds) {
    if (id <= 0 || id > n_slots) return;
    slots[id - 1].seconds += seconds;
    slots[id - 1].calls++;
    added += seconds;
}

double dg_profile_begin(void) {
    added_at_begin = added;
    return on ? dg_now() : 0.0;
}

/* Exclusive: primitives timed inside the region (the loss's reorder of the
 * logits) stay in their own slots and are not counted twice. */
void dg_profile_end(const char *kind, double t0) {
    if (!on) return;
    dg_profile_end_slot(dg_profile_slot(kind, "", 0), t0);
}

void dg_profile_end_slot(int slot, double t0) {
    if (!on) return;
    const double dt = dg_now() - t0 - (added - added_at_begin);
    dg_profile_add(slot, fmax(0.0, dt));
}

void dg_profile_reset(void) {
    for (int i = 0; i < n_slots; i++) {
        slots[i].seconds = 0;
        slots[i].calls = 0;
    }
}

void dg_profile_free(void) {
    for (int i = 0; i < n_slots; i++) {
        dg_free(slots[i].kind);
        dg_free(slots[i].shape);
    }
    dg_free(slots);
    dg_free(rows);
    slots = NULL;
    rows = NULL;
    n_slots = cap_slots = 0;
    on = false;
}

const dg_profile_row *dg_profile_rows(int *n) {
    dg_free(rows);
    rows = dg_xmalloc((size_t)(n_slots + 1) * sizeof(*rows));
    for (int i = 0; i < n_slots; i++) {
        rows[i].kind = slots[i].kind;
        rows[i].shape = slots[i].shape;
        rows[i].seconds = slots[i].seconds;
        rows[i].flops = slots[i].flops;
        rows[i].calls = slots[i].calls;
    }
    *n = n_slots;
    return rows;
}

const char *dg_profile_phase(const char *kind) {
    static const char *const elementwise[] = {"batch_normalization", "eltwise", "binary", "sum",
            "layer_normalization", "softmax", "group_normalization"};
    for (size_t i = 0; i < DG_ARRAY_LEN(elementwise); i++)
        if (!strncmp(kind, elementwise[i], strlen(elementwise[i])))
            return "bn/relu/elementwise";
    if (!strcmp(kind, "reorder")) return "reorder";
    if (!strncmp(kind, "allreduce", 9)) return "communication"; /* app/dist.c's collectives */
    if (strstr(kind, " backward-weights")) return "backward-weights";
    if (strstr(kind, " backward")) return "backward-data";
    if (strstr(kind, " forward") || !strcmp(kind, "concat")) return "forward";
    return kind; /* a region: "loss", "optimizer", ... */
}

/* ---- report -------------------------------------------------------------- */

typedef struct agg {
    const char *name;
    double seconds, flops_total;
    long calls;
} agg;

/* Adds (name, seconds, flops, calls) into the list a, which has room for
 * one more entry. */
static void agg_add(agg *a, int *n, const char *name, double seconds, double flops, long calls) {
    for (int i = 0; i < *n; i++)
        if (!strcmp(a[i].name, name)) {
            a[i].seconds += seconds;
            a[i].flops_total += flops;
            a[i].calls += calls;
            return;
        }
    a[*n] = (agg){name, seconds, flops, calls};
    (*n)++;
}

static int by_seconds_desc(const void *x, const void *y) {
    const double a = ((const agg *)x)->seconds, b = ((const agg *)y)->seconds;
    return (a < b) - (a > b);
}

static void print_aggs(FILE *f, const char *title, agg *a, int n, int steps, double wall) {
    qsort(a, (size_t)n, sizeof(*a), by_seconds_desc);
    int w = (int)strlen(title);
    for (int i = 0; i < n; i++) w = DG_MAX(w, (int)strlen(a[i].name));
    fprintf(f, "\n%-*s %10s %7s %8s %10s\n", w, title, "ms/step", "share", "calls/step",
            "GFLOP/s");
    for (int i = 0; i < n; i++) {
        fprintf(f, "%-*s %10.2f %6.1f%% %10.1f", w, a[i].name, 1e3 * a[i].seconds / steps,
                100.0 * a[i].seconds / wall, (double)a[i].calls / steps);
        if (a[i].flops_total > 0 && a[i].seconds > 0)
            fprintf(f, " %10.1f\n", a[i].flops_total / a[i].seconds * 1e-9);
        else
            fputs("          -\n", f);
    }
}

void dg_profile_print(FILE *f, int steps, double wall) {
    DG_ASSERT(steps > 0 && wall > 0);
    agg *a = dg_xmalloc((size_t)(n_slots + 2) * sizeof(*a));
    int n = 0;
    double timed = 0;
    for (int i = 0; i < n_slots; i++) {
        agg_add(a, &n, dg_profile_phase(slots[i].kind), slots[i].seconds,
                slots[i].flops * (double)slots[i].calls, slots[i].calls);
        timed += slots[i].seconds;
    }
    fprintf(f, "profile: %d steps, %.2f ms/step\n", steps, 1e3 * wall / steps);
    agg_add(a, &n, "other (untimed C code, glue)", fmax(0.0, wall - timed), 0, 0);
    print_aggs(f, "phase", a, n, steps, wall);
    n = 0;
    for (int i = 0; i < n_slots; i++)
        agg_add(a, &n, slots[i].kind, slots[i].seconds,
                slots[i].flops * (double)slots[i].calls, slots[i].calls);
    print_aggs(f, "kind", a, n, steps, wall);
    /* slots are unique by (kind, shape): one row each */
    n = 0;
    for (int i = 0; i < n_slots; i++) {
        if (slots[i].flops <= 0) continue;
        const size_t len = strlen(slots[i].kind) + strlen(slots[i].shape) + 2;
        char *name = dg_xmalloc(len);
        snprintf(name, len, "%s %s", slots[i].kind, slots[i].shape);
        a[n++] = (agg){name, slots[i].seconds, slots[i].flops * (double)slots[i].calls,
                slots[i].calls};
    }
    print_aggs(f, "convolution / inner-product shape", a, n, steps, wall);
    for (int i = 0; i < n; i++) dg_free((char *)a[i].name);
    n = 0;
    for (int i = 0; i < n_slots; i++)
        if (!strcmp(slots[i].kind, "reorder") && slots[i].calls > 0)
            a[n++] = (agg){slots[i].shape, slots[i].seconds, 0, slots[i].calls};
    print_aggs(f, "reorder (dims, layout from -> to)", a, n, steps, wall);
    dg_free(a);
}
