/* tests/optim_toy.c -- see optim_toy.h. */
#include "optim_toy.h"

#include <stdio.h>
#include <string.h>

#include <check.h>

#include "common.h"

static double toy_eval(void *ctx, int domain, unsigned flags) {
    toy *t = ctx;
    const size_t d = t->ps->d;
    const float *w = t->ps->data;
    float *g = t->ps->grad;
    if (t->n_calls < TOY_CALLS) {
        t->domain[t->n_calls] = domain;
        t->flags[t->n_calls] = flags;
        for (size_t i = 0; i < TOY_SEEN && i < d; i++) t->seen[t->n_calls][i] = w[i];
    }
    t->n_calls++;
    double loss = 0.0;
    if (t->ramp) {
        for (size_t i = 0; i < d; i++) g[i] = -1.f;
        return loss;
    }
    if (domain == DG_DOMAIN_ALL && t->n_dom > 1) {
        for (size_t i = 0; i < d; i++) {
            const double ci = t->c ? t->c[i] : 1.0;
            double gi = 0.0;
            for (int k = 0; k < t->n_dom; k++) {
                const double diff = (double)w[i] - t->da[k][i];
                gi += ci * diff;
                loss += 0.5 * ci * diff * diff;
            }
            g[i] = (float)(gi / t->n_dom);
        }
        return loss / t->n_dom;
    }
    DG_ASSERT(domain == DG_DOMAIN_ALL || (domain >= 0 && domain < DG_MAX(t->n_dom, 1)));
    const float *a = t->n_dom ? t->da[domain == DG_DOMAIN_ALL ? 0 : domain] : t->a;
    for (size_t i = 0; i < d; i++) {
        const float diff = w[i] - (a ? a[i] : 0.f);
        const float ci = t->c ? t->c[i] : 1.f;
        g[i] = ci * diff;
        loss += 0.5 * ci * (double)diff * diff;
    }
    return loss;
}

static void toy_refresh(void *ctx, const float *params, long n_batches, int mode) {
    toy *t = ctx;
    if (t->n_refresh < TOY_REFRESH) {
        t->refresh_params[t->n_refresh] = params;
        t->refresh_w0[t->n_refresh] = params[0];
        t->refresh_batches[t->n_refresh] = n_batches;
        t->refresh_mode[t->n_refresh] = mode;
    }
    t->n_refresh++;
}

void toy_init(toy *t, dg_closure *cl, dg_param_set *ps, const float *a, const float *c) {
    memset(t, 0, sizeof(*t));
    t->ps = ps;
    t->a = a;
    t->c = c;
    memset(cl, 0, sizeof(*cl));
    cl->eval = toy_eval;
    cl->bn_refresh = toy_refresh;
    cl->ctx = t;
    cl->n_domains = 1;
}

void toy_make_ps(dg_param_set *ps, int n, const size_t *sizes, const unsigned *flags) {
    dg_params_init(ps);
    char name[16];
    for (int i = 0; i < n; i++) {
        const int64_t shape[1] = {(int64_t)sizes[i]};
        snprintf(name, sizeof(name), "t%d", i);
        dg_params_add(ps, name, 1, shape, flags[i], DG_INIT_CONST, 0.f);
    }
    dg_params_alloc(ps);
}

dg_method *toy_make_method(const char *name, const char *base, const dg_method_cfg *cfg,
        const dg_param_set *ps) {
    dg_method *m = NULL;
    const dg_status st = dg_method_create(name, base, cfg, ps, 7, &m);
    ck_assert_msg(st == DG_STATUS_OK, "%s/%s: %s", name, base, dg_status_str(st));
    ck_assert_ptr_nonnull(m);
    return m;
}

void toy_state_save(const dg_method *m, const char *path) {
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    ck_assert_int_eq(dg_method_state_save(m, &w), DG_STATUS_OK);
    ck_assert_int_eq(dg_tensor_writer_write(&w, path), DG_STATUS_OK);
    dg_tensor_writer_free(&w);
}

dg_status toy_state_load(dg_method *m, const char *path) {
    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
    const dg_status st = dg_method_state_load(m, &r);
    dg_tensor_reader_close(&r);
    return st;
}

void toy_expect_config_error(const char *method, const char *base, const dg_method_cfg *cfg,
        const dg_param_set *ps, const char *expect) {
    dg_method *m = (dg_method *)ps; /* must be reset to NULL */
    capture cap;
    capture_begin(&cap);
    const dg_status st = dg_method_create(method, base, cfg, ps, 1, &m);
    char *log = capture_end(&cap);
    ck_assert_msg(st == DG_STATUS_ERR_CONFIG, "%s/%s: %s", method, base, dg_status_str(st));
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(log, expect) != NULL, "log '%s' lacks '%s'", log, expect);
    dg_free(log);
}
