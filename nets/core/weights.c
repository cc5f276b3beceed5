/* nets/core/weights.c -- see weights.h. */
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One model tensor during a load. */
typedef struct model_ref {
    const dg_param_tensor *t;
    bool is_stat;              /* lives in ps->stats, else ps->data */
    const dg_st_tensor *src;   /* the file tensor mapped onto it, or NULL */
} model_ref;

void dg_weights_add(dg_tensor_writer *w, const dg_param_set *ps) {
    DG_ASSERT(dg_params_is_allocated(ps));
    for (size_t i = 0; i < ps->n_tensors; i++) {
        const dg_param_tensor *t = &ps->tensors[i];
        dg_tensor_writer_add_f32(w, t->name, t->ndims, t->shape, ps->data + t->offset);
    }
    for (size_t i = 0; i < ps->n_stat_tensors; i++) {
        const dg_param_tensor *t = &ps->stat_tensors[i];
        dg_tensor_writer_add_f32(w, t->name, t->ndims, t->shape, ps->stats + t->offset);
    }
}

dg_status dg_weights_save(const char *path, const dg_param_set *ps, const dg_weights_meta *meta,
        size_t n_meta) {
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    for (size_t i = 0; i < n_meta; i++)
        dg_tensor_writer_set_metadata(&w, meta[i].key, meta[i].value);
    dg_weights_add(&w, ps);
    const dg_status s = dg_tensor_writer_write(&w, path);
    dg_tensor_writer_free(&w);
    return s;
}

static bool starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* File tensors that are never loaded into the model. */
static bool is_ignored(const char *name, const dg_weights_load_opts *o) {
    if (starts_with(name, "optim.") || starts_with(name, "fixture.")) return true;
    if (!strcmp(name, "num_batches_tracked") || ends_with(name, ".num_batches_tracked"))
        return true;
    for (size_t i = 0; i < o->n_ignore; i++)
        if (starts_with(name, o->ignore[i])) return true;
    return false;
}

static int cmp_ref(const void *a, const void *b) {
    return strcmp(((const model_ref *)a)->t->name, ((const model_ref *)b)->t->name);
}

static model_ref *find_ref(model_ref *refs, size_t n, const char *name) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const int c = strcmp(refs[mid].t->name, name);
        if (c == 0) return &refs[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static bool same_shape(const dg_st_tensor *f, const dg_param_tensor *t) {
    if (f->ndims != t->ndims) return false;
    for (int i = 0; i < t->ndims; i++)
        if (f->shape[i] != t->shape[i]) return false;
    return true;
}

/* "'conv1.weight' (model 'backbone.conv1.weight')", or "'name'" without a prefix. */
static const char *label(char *buf, size_t size, const char *file_name, const char *model_name,
        bool prefixed) {
    char fb[DG_ST_PRINTABLE], mb[DG_ST_PRINTABLE];
    dg_st_printable(mb, sizeof(mb), model_name);
    if (prefixed)
        snprintf(buf, size, "'%s' (model '%s')", dg_st_printable(fb, sizeof(fb), file_name), mb);
    else snprintf(buf, size, "'%s'", mb);
    return buf;
}

/* Maps file tensors onto refs and logs every mismatch. Returns the
 * status the load ends with. */
static dg_status match(const dg_tensor_reader *r, model_ref *refs, size_t n_refs,
        const dg_weights_load_opts *o, size_t *n_loaded, size_t *n_ignored) {
    const char *prefix = o->prefix ? o->prefix : "";
    const size_t plen = strlen(prefix);
    const bool prefixed = plen > 0;
    size_t n_missing = 0, n_unexpected = 0, n_bad = 0;
    size_t cap = 256;
    char *mname = dg_xmalloc(cap);
    char lab[1024], a[256], b[256];

    for (size_t i = 0; i < dg_tensor_reader_count(r); i++) {
        const dg_st_tensor *f = dg_tensor_reader_at(r, i);
        if (is_ignored(f->name, o)) {
            (*n_ignored)++;
            continue;
        }
        const size_t need = plen + strlen(f->name) + 1;
        if (need > cap) {
            cap = need;
            dg_free(mname);
            mname = dg_xmalloc(cap);
        }
        memcpy(mname, prefix, plen);
        memcpy(mname + plen, f->name, need - plen);
        label(lab, sizeof(lab), f->name, mname, prefixed);
        model_ref *m = find_ref(refs, n_refs, mname);
        if (!m) {
            dg_log_error("%s: tensor %s: unexpected, the model has no such tensor", r->path, lab);
            n_unexpected++;
            continue;
        }
        m->src = f;
        bool ok = true;
        const bool convertible = dg_st_dtype_is_f32_convertible(f->dtype);
        if (f->dtype != DG_ST_F32 && !(o->allow_convert && convertible)) {
            dg_log_error("%s: tensor %s: dtype %s, expected F32%s", r->path, lab,
                    dg_st_dtype_name(f->dtype),
                    convertible ? " (converting is not enabled for this load)" : "");
            ok = false;
        }
        if (!same_shape(f, m->t)) {
            dg_log_error("%s: tensor %s: shape %s in the file, the model expects %s", r->path, lab,
                    dg_st_format_shape(a, sizeof(a), f->ndims, f->shape),
                    dg_st_format_shape(b, sizeof(b), m->t->ndims, m->t->shape));
            ok = false;
        }
        if (!ok) n_bad++;
        else (*n_loaded)++;
    }
    dg_free(mname);

    /* Missing tensors, in model order (trainable, then statistics). */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n_refs; i++) {
            const model_ref *m = &refs[i];
            if (m->is_stat != (pass == 1) || m->src) continue;
            if (o->allow_missing_outside_prefix && !starts_with(m->t->name, prefix)) continue;
            if (prefixed && starts_with(m->t->name, prefix))
                dg_log_error("%s: tensor '%s': missing from the file (looked for '%s')", r->path,
                        m->t->name, m->t->name + plen);
            else
                dg_log_error("%s: tensor '%s': missing from the file", r->path, m->t->name);
            n_missing++;
        }
    }
    const size_t n_problems = n_missing + n_unexpected + n_bad;
    if (n_problems == 0) return DG_STATUS_OK;
    dg_log_error("%s: %zu problem%s (%zu missing, %zu unexpected, %zu of the wrong shape or "
            "dtype); the model was not changed", r->path, n_problems, n_problems == 1 ? "" : "s",
            n_missing, n_unexpected, n_bad);
    return n_unexpected + n_bad > 0 ? DG_STATUS_ERR_SHAPE : DG_STATUS_ERR_MISSING;
}

dg_status dg_weights_load_reader(const dg_tensor_reader *r, dg_param_set *ps,
        const dg_weights_load_opts *opts) {
    static const dg_weights_load_opts strict = {0};
    const dg_weights_load_opts *o = opts ? opts : &strict;
    DG_ASSERT(dg_params_is_allocated(ps));
    DG_ASSERT(o->n_ignore == 0 || o->ignore != NULL);

    const size_t n_refs = ps->n_tensors + ps->n_stat_tensors;
    model_ref *refs = dg_xcalloc(n_refs ? n_refs : 1, sizeof(*refs));
    for (size_t i = 0; i < ps->n_tensors; i++) refs[i].t = &ps->tensors[i];
    for (size_t i = 0; i < ps->n_stat_tensors; i++) {
        refs[ps->n_tensors + i].t = &ps->stat_tensors[i];
        refs[ps->n_tensors + i].is_stat = true;
    }
    qsort(refs, n_refs, sizeof(*refs), cmp_ref);
    for (size_t i = 1; i < n_refs; i++)
        DG_ASSERT(strcmp(refs[i - 1].t->name, refs[i].t->name) != 0);

    size_t n_loaded = 0, n_ignored = 0;
    dg_status s = match(r, refs, n_refs, o, &n_loaded, &n_ignored);
    if (s != DG_STATUS_OK) {
        dg_free(refs);
        return s;
    }

    /* Read into scratch copies, so a failing read leaves ps untouched. */
    float *data = dg_xmalloc((ps->d ? ps->d : 1) * sizeof(*data));
    float *stats = dg_xmalloc((ps->n_stats ? ps->n_stats : 1) * sizeof(*stats));
    memcpy(data, ps->data, ps->d * sizeof(*data));
    memcpy(stats, ps->stats, ps->n_stats * sizeof(*stats));
    for (size_t i = 0; i < n_refs && s == DG_STATUS_OK; i++) {
        const model_ref *m = &refs[i];
        if (!m->src) continue;
        float *dst = (m->is_stat ? stats : data) + m->t->offset;
        s = dg_tensor_reader_read_as_f32(r, m->src, dst);
    }
    if (s == DG_STATUS_OK) {
        memcpy(ps->data, data, ps->d * sizeof(*data));
        memcpy(ps->stats, stats, ps->n_stats * sizeof(*stats));
        dg_log_info("%s: loaded %zu tensors (%zu ignored, %zu model tensors left as they were)",
                r->path, n_loaded, n_ignored, n_refs - n_loaded);
    }
    dg_free(data);
    dg_free(stats);
    dg_free(refs);
    return s;
}

dg_status dg_weights_load(const char *path, dg_param_set *ps, const dg_weights_load_opts *opts) {
    dg_tensor_reader r;
    dg_status s = dg_tensor_reader_open(&r, path);
    if (s == DG_STATUS_OK) s = dg_weights_load_reader(&r, ps, opts);
    dg_tensor_reader_close(&r);
    return s;
}
