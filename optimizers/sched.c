/* optimizers/sched.c -- learning-rate schedules (docs/algorithms.md §4): linear
 * warm-up, then poly, cosine or constant over the remaining steps. lr(0) is
 * the base rate without warm-up, as PyTorch's LambdaLR stepped after every
 * iteration (shachoi/RobustNet). */
#include <math.h>
#include <string.h>

#include "dg_optim.h"

#define DG_SCHED_PI 3.14159265358979323846

static const char *const sched_names[] = {"poly", "cosine", "constant"};

dg_status dg_sched_parse(const char *name, dg_sched_kind *kind) {
    for (size_t i = 0; i < DG_ARRAY_LEN(sched_names); i++) {
        if (!strcmp(name, sched_names[i])) {
            *kind = (dg_sched_kind)i;
            return DG_STATUS_OK;
        }
    }
    dg_log_error("optim.schedule: unknown schedule '%s' (valid: poly, cosine, constant)", name);
    return DG_STATUS_ERR_CONFIG;
}

float dg_sched_lr(const dg_sched *s, long ts) {
    if (ts < s->warmup) return (float)(s->lr * (double)(ts + 1) / (double)s->warmup);
    double u = 0.0;
    if (s->total > s->warmup)
        u = (double)(ts - s->warmup) / (double)(s->total - s->warmup);
    u = u < 0.0 ? 0.0 : u > 1.0 ? 1.0 : u;
    switch (s->kind) {
    case DG_SCHED_POLY: return (float)(s->lr * pow(1.0 - u, s->power));
    case DG_SCHED_COSINE:
        return (float)(s->lr_min + (s->lr - s->lr_min) * (1.0 + cos(DG_SCHED_PI * u)) / 2.0);
    case DG_SCHED_CONSTANT: break;
    }
    return (float)s->lr;
}
