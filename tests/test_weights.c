/* tests/test_weights.c -- weights I/O for the parameter store
 * (nets/core/weights.h) on real files: bit-exact save/load round trip with
 * metadata, ImageNet-style backbone loads (name prefix, fc.* and
 * num_batches_tracked ignored, heads allowed to be absent), every mismatch
 * and every corruption reported by tensor name with the model left
 * untouched, and atomic writes (missing directory, a write that runs out of
 * space, an unwritable directory or target).
 *
 * The model is a small parameter store with torchvision-style names; files
 * live in a temporary directory removed after the test case. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common.h"
#include "nets/core/weights.h"

static char dir[64];

static void make_dir(void) { make_tmpdir(dir, "weights"); }

static void remove_dir(void) { remove_tree(dir, 2); }

static void path_of(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/%s", dir, name);
}

/* No "<name>.tmp.<pid>" left in directory d. */
static void assert_no_temporary(const char *d) {
    DIR *dd = opendir(d);
    ck_assert_ptr_nonnull(dd);
    struct dirent *e;
    while ((e = readdir(dd)) != NULL)
        ck_assert_msg(strstr(e->d_name, ".tmp.") == NULL, "left behind: %s/%s", d, e->d_name);
    closedir(dd);
}

/* ---- the model ------------------------------------------------------------- */

/* A ResNet-stem-like store: backbone conv/BN/block conv, a classifier head. */
static void build_model(dg_param_set *ps, uint64_t seed) {
    dg_params_init(ps);
    dg_params_add(ps, "backbone.conv1.weight", 4, (int64_t[]){4, 3, 3, 3}, DG_PARAM_ASAM_SCALED,
            DG_INIT_NORMAL, 0.5f);
    dg_params_add(ps, "backbone.bn1.weight", 1, (int64_t[]){4},
            DG_PARAM_NO_DECAY | DG_PARAM_ASAM_SCALED, DG_INIT_CONST, 1.f);
    dg_params_add(ps, "backbone.bn1.bias", 1, (int64_t[]){4}, DG_PARAM_NO_DECAY, DG_INIT_CONST,
            0.f);
    dg_params_add_stat(ps, "backbone.bn1.running_mean", 1, (int64_t[]){4}, 0.f);
    dg_params_add_stat(ps, "backbone.bn1.running_var", 1, (int64_t[]){4}, 1.f);
    dg_params_add(ps, "backbone.layer1.0.conv1.weight", 4, (int64_t[]){5, 4, 1, 1},
            DG_PARAM_ASAM_SCALED, DG_INIT_NORMAL, 0.5f);
    dg_params_add(ps, "classifier.weight", 2, (int64_t[]){3, 5}, DG_PARAM_ASAM_SCALED,
            DG_INIT_UNIFORM, 0.3f);
    dg_params_add(ps, "classifier.bias", 1, (int64_t[]){3}, DG_PARAM_NO_DECAY, DG_INIT_UNIFORM,
            0.3f);
    dg_params_alloc(ps);
    fill_uniform(ps->data, ps->d, seed, -2.f, 2.f);
    fill_uniform(ps->stats, ps->n_stats, seed + 1000, 0.1f, 3.f);
}

typedef struct snapshot {
    float *data, *stats;
} snapshot;

static snapshot take_snapshot(const dg_param_set *ps) {
    snapshot s = {dg_xmalloc(ps->d * sizeof(float)), dg_xmalloc(ps->n_stats * sizeof(float))};
    memcpy(s.data, ps->data, ps->d * sizeof(float));
    memcpy(s.stats, ps->stats, ps->n_stats * sizeof(float));
    return s;
}

static void assert_untouched(const dg_param_set *ps, snapshot *s) {
    ck_assert_msg(memcmp(s->data, ps->data, ps->d * sizeof(float)) == 0, "parameters changed");
    ck_assert_msg(memcmp(s->stats, ps->stats, ps->n_stats * sizeof(float)) == 0,
            "statistics changed");
    dg_free(s->data);
    dg_free(s->stats);
}

/* ---- files built tensor by tensor ---------------------------------------------- */

typedef struct ftensor {
    char name[96];
    dg_st_dtype dtype;
    int ndims;
    int64_t shape[4];
} ftensor;

/* The model's tensors as F32 file entries; names under `strip` lose it. */
static size_t model_tensors(const dg_param_set *ps, const char *strip, ftensor *out) {
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        const dg_param_tensor *t = pass ? ps->stat_tensors : ps->tensors;
        const size_t k = pass ? ps->n_stat_tensors : ps->n_tensors;
        for (size_t i = 0; i < k; i++, n++) {
            const char *name = t[i].name;
            if (strip && !strncmp(name, strip, strlen(strip))) name += strlen(strip);
            snprintf(out[n].name, sizeof(out[n].name), "%s", name);
            out[n].dtype = DG_ST_F32;
            out[n].ndims = t[i].ndims;
            memcpy(out[n].shape, t[i].shape, sizeof(out[n].shape));
        }
    }
    return n;
}

static ftensor *find_ft(ftensor *ft, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ft[i].name, name)) return &ft[i];
    ck_abort_msg("no file tensor %s", name);
    return NULL;
}

static void drop_ft(ftensor *ft, size_t *n, const char *name) {
    ftensor *t = find_ft(ft, *n, name);
    memmove(t, t + 1, (size_t)(ft + *n - (t + 1)) * sizeof(*t));
    (*n)--;
}

static void add_ft(ftensor *ft, size_t *n, const char *name, dg_st_dtype dt, int ndims,
        const int64_t *shape) {
    ftensor *t = &ft[(*n)++];
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->dtype = dt;
    t->ndims = ndims;
    for (int i = 0; i < ndims; i++) t->shape[i] = shape[i];
}

/* Writes the tensors with deterministic contents (F32 uniform, F16/BF16
 * small exact values, integers 0, 1, 2, ...) and the given metadata. */
static void write_tensors(const char *path, const ftensor *ft, size_t n, uint64_t seed) {
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    dg_tensor_writer_set_metadata(&w, "format", "pt");
    void **bufs = dg_xcalloc(n ? n : 1, sizeof(*bufs));
    for (size_t i = 0; i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < ft[i].ndims; d++) numel *= (size_t)ft[i].shape[d];
        bufs[i] = dg_xmalloc(numel * dg_st_dtype_size(ft[i].dtype) + 1);
        if (ft[i].dtype == DG_ST_F32) fill_uniform(bufs[i], numel, seed + i, -1.f, 1.f);
        uint16_t *h = bufs[i];
        for (size_t k = 0; k < numel && ft[i].dtype != DG_ST_F32; k++) {
            switch (ft[i].dtype) {
            case DG_ST_F16: h[k] = (uint16_t)(0x3c00 + k); break;  /* 1 + k/1024 */
            case DG_ST_BF16: h[k] = (uint16_t)(0x3f80 + k); break; /* 1 + k/128 */
            case DG_ST_I64: ((int64_t *)bufs[i])[k] = (int64_t)k; break;
            default: ck_abort_msg("dtype %d not generated", ft[i].dtype);
            }
        }
        dg_tensor_writer_add(&w, ft[i].name, ft[i].dtype, ft[i].ndims, ft[i].shape, bufs[i]);
    }
    ck_assert_int_eq(dg_tensor_writer_write(&w, path), DG_STATUS_OK);
    dg_tensor_writer_free(&w);
    for (size_t i = 0; i < n; i++) dg_free(bufs[i]);
    dg_free(bufs);
}

/* The model tensor `name` holds exactly the f32 value of file tensor fname. */
static void assert_tensor_from_file(const dg_param_set *ps, const char *name, const char *path,
        const char *fname) {
    const dg_param_tensor *t = dg_params_find(ps, name);
    const float *base = ps->data;
    if (!t) {
        t = dg_params_find_stat(ps, name);
        base = ps->stats;
    }
    ck_assert_ptr_nonnull(t);
    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
    float *want = dg_xmalloc(t->n * sizeof(float));
    ck_assert_int_eq(dg_tensor_reader_read_f32(&r, fname, t->ndims, t->shape, want), DG_STATUS_OK);
    ck_assert_msg(memcmp(want, base + t->offset, t->n * sizeof(float)) == 0, "%s differs from %s",
            name, fname);
    dg_free(want);
    dg_tensor_reader_close(&r);
}

/* Loads with stderr captured; returns the log (dg_free it). */
static char *load_logged(const char *path, dg_param_set *ps, const dg_weights_load_opts *o,
        dg_status *s) {
    capture c;
    capture_begin(&c);
    *s = dg_weights_load(path, ps, o);
    return capture_end(&c);
}

/* ---- round trip ------------------------------------------------------------------ */

START_TEST(weights_round_trip_is_bit_exact_with_metadata) {
    dg_param_set a, b;
    build_model(&a, 1);
    build_model(&b, 2);
    a.data[0] = -0.f;          /* signed zero */
    a.data[1] = 1e-40f;        /* subnormal */
    a.data[2] = INFINITY;
    a.data[3] = NAN;
    a.stats[0] = -FLT_MAX;
    ck_assert(memcmp(a.data + 4, b.data + 4, (a.d - 4) * sizeof(float)) != 0);
    char path[128];
    path_of(path, sizeof(path), "ckpt.safetensors");
    const char *config = "[model]\nname = deeplabv3plus-r18 ; \"os\" 16\n[optim]\nlr = 0.01\n";
    const dg_weights_meta meta[4] = {{"format_version", "1"}, {"step", "1200"},
                                     {"config", config}, {"rng", "18446744073709551615"}};
    ck_assert_int_eq(dg_weights_save(path, &a, meta, 4), DG_STATUS_OK);
    assert_no_temporary(dir);

    dg_status s;
    char *log = load_logged(path, &b, NULL, &s);
    ck_assert_msg(s == DG_STATUS_OK, "%s", log);
    dg_free(log);
    ck_assert_mem_eq(b.data, a.data, a.d * sizeof(float));
    ck_assert_mem_eq(b.stats, a.stats, a.n_stats * sizeof(float));

    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
    ck_assert_uint_eq(dg_tensor_reader_count(&r), a.n_tensors + a.n_stat_tensors);
    for (size_t i = 0; i < dg_tensor_reader_count(&r); i++)
        ck_assert_int_eq(dg_tensor_reader_at(&r, i)->dtype, DG_ST_F32);
    const dg_st_tensor *t = dg_tensor_reader_find(&r, "backbone.conv1.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->ndims, 4);
    ck_assert_int_eq(t->shape[0] * 1000 + t->shape[1] * 100 + t->shape[2] * 10 + t->shape[3], 4333);
    ck_assert_ptr_nonnull(dg_tensor_reader_find(&r, "backbone.bn1.running_var"));
    for (int i = 0; i < 4; i++)
        ck_assert_str_eq(dg_tensor_reader_metadata(&r, meta[i].key), meta[i].value);
    dg_tensor_reader_close(&r);
    dg_params_free(&a);
    dg_params_free(&b);
}
END_TEST

START_TEST(weights_load_ignores_optimizer_and_fixture_tensors) {
    dg_param_set a, b;
    build_model(&a, 3);
    build_model(&b, 4);
    char path[128];
    path_of(path, sizeof(path), "with_optim.safetensors");
    float *momentum = dg_xcalloc(a.d, sizeof(float));
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    dg_weights_add(&w, &a);
    dg_tensor_writer_add_f32(&w, "optim.sgd.momentum", 1, (int64_t[]){(int64_t)a.d}, momentum);
    dg_tensor_writer_add_scalar_i64(&w, "optim.lookahead.j", 5);
    dg_tensor_writer_add_scalar_i64(&w, "fixture.batch_size", 2);
    dg_tensor_writer_add_scalar_i64(&w, "backbone.bn1.num_batches_tracked", 100);
    ck_assert_int_eq(dg_tensor_writer_write(&w, path), DG_STATUS_OK);
    dg_tensor_writer_free(&w);
    dg_free(momentum);
    dg_status s;
    char *log = load_logged(path, &b, NULL, &s);
    ck_assert_msg(s == DG_STATUS_OK, "%s", log);
    ck_assert_msg(strstr(log, "loaded 8 tensors (4 ignored, 0 model"), "%s", log);
    dg_free(log);
    ck_assert_mem_eq(b.data, a.data, a.d * sizeof(float));
    ck_assert_mem_eq(b.stats, a.stats, a.n_stats * sizeof(float));
    dg_params_free(&a);
    dg_params_free(&b);
}
END_TEST

/* ---- pretrained backbones -------------------------------------------------------- */

/* torchvision-named file: the backbone without "backbone.", plus BN's
 * num_batches_tracked and an ImageNet fc classifier. */
static size_t imagenet_tensors(const dg_param_set *ps, ftensor *ft) {
    size_t n = model_tensors(ps, "backbone.", ft);
    drop_ft(ft, &n, "classifier.weight");
    drop_ft(ft, &n, "classifier.bias");
    add_ft(ft, &n, "bn1.num_batches_tracked", DG_ST_I64, 0, NULL);
    add_ft(ft, &n, "fc.weight", DG_ST_F32, 2, (int64_t[]){10, 5});
    add_ft(ft, &n, "fc.bias", DG_ST_F32, 1, (int64_t[]){10});
    return n;
}

START_TEST(weights_pretrained_backbone_maps_prefix_and_ignores_classifier) {
    dg_param_set ps;
    build_model(&ps, 5);
    ftensor ft[16];
    const size_t n = imagenet_tensors(&ps, ft);
    char path[128];
    path_of(path, sizeof(path), "resnet_imagenet.safetensors");
    write_tensors(path, ft, n, 77);
    const dg_param_tensor *cw = dg_params_find(&ps, "classifier.weight");
    float head[18];
    memcpy(head, ps.data + cw->offset, sizeof(head)); /* classifier.weight and .bias */

    static const char *const ignore[1] = {"fc."};
    const dg_weights_load_opts o = {.prefix = "backbone.", .ignore = ignore, .n_ignore = 1,
                                    .allow_missing_outside_prefix = true};
    dg_status s;
    char *log = load_logged(path, &ps, &o, &s);
    ck_assert_msg(s == DG_STATUS_OK, "%s", log);
    ck_assert_msg(strstr(log, "loaded 6 tensors (3 ignored, 2 model tensors left"), "%s", log);
    dg_free(log);
    static const char *loaded[6] = {"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                                    "bn1.running_var", "layer1.0.conv1.weight"};
    for (int i = 0; i < 6; i++) {
        char model_name[96];
        snprintf(model_name, sizeof(model_name), "backbone.%s", loaded[i]);
        assert_tensor_from_file(&ps, model_name, path, loaded[i]);
    }
    ck_assert_mem_eq(ps.data + cw->offset, head, sizeof(head)); /* the head is left alone */
    dg_params_free(&ps);
}
END_TEST

typedef struct pretrained_fault {
    bool allow_missing;     /* allow_missing_outside_prefix */
    bool ignore_fc;
    const char *drop;       /* file tensor removed, or NULL */
    dg_status want;
    const char *expect[2];  /* substrings of the log */
} pretrained_fault;

static const pretrained_fault pretrained_faults[] = {
    {false, true, NULL, DG_STATUS_ERR_MISSING,
     {"tensor 'classifier.weight': missing from the file",
      "tensor 'classifier.bias': missing from the file"}},
    {true, false, NULL, DG_STATUS_ERR_SHAPE,
     {"tensor 'fc.weight' (model 'backbone.fc.weight'): unexpected",
      "tensor 'fc.bias' (model 'backbone.fc.bias'): unexpected"}},
    {true, true, "bn1.running_var", DG_STATUS_ERR_MISSING,
     {"tensor 'backbone.bn1.running_var': missing from the file (looked for 'bn1.running_var')",
      "1 problem (1 missing, 0 unexpected, 0 of the wrong shape or dtype)"}},
};

START_TEST(weights_pretrained_load_reports_heads_classifier_and_backbone_gaps) {
    const pretrained_fault *f = &pretrained_faults[_i];
    dg_param_set ps;
    build_model(&ps, 6);
    ftensor ft[16];
    size_t n = imagenet_tensors(&ps, ft);
    if (f->drop) drop_ft(ft, &n, f->drop);
    char path[128];
    path_of(path, sizeof(path), "pretrained_fault.safetensors");
    write_tensors(path, ft, n, 78);
    static const char *const ignore[1] = {"fc."};
    const dg_weights_load_opts o = {.prefix = "backbone.", .ignore = ignore,
                                    .n_ignore = f->ignore_fc ? 1 : 0,
                                    .allow_missing_outside_prefix = f->allow_missing};
    snapshot snap = take_snapshot(&ps);
    dg_status s;
    char *log = load_logged(path, &ps, &o, &s);
    ck_assert_msg(s == f->want, "case %d: %s\n%s", _i, dg_status_str(s), log);
    for (int k = 0; k < 2; k++)
        ck_assert_msg(strstr(log, f->expect[k]), "case %d: want '%s' in:\n%s", _i, f->expect[k],
                log);
    ck_assert_msg(strstr(log, path) && strstr(log, "the model was not changed"), "%s", log);
    dg_free(log);
    assert_untouched(&ps, &snap);
    dg_params_free(&ps);
}
END_TEST

/* ---- mismatches -------------------------------------------------------------------- */

typedef struct fault {
    int kind;           /* 0 drop, 1 add, 2 reshape, 3 retype */
    const char *name;
    dg_st_dtype dtype;  /* kinds 1, 3 */
    int ndims;          /* kinds 1, 2 */
    int64_t shape[4];
    dg_status want;
    const char *expect;
} fault;

static const fault faults[] = {
    {0, "backbone.bn1.bias", DG_ST_F32, 0, {0}, DG_STATUS_ERR_MISSING,
     "tensor 'backbone.bn1.bias': missing from the file"},
    {0, "backbone.bn1.running_mean", DG_ST_F32, 0, {0}, DG_STATUS_ERR_MISSING,
     "tensor 'backbone.bn1.running_mean': missing from the file"},
    {1, "backbone.bn2.weight", DG_ST_F32, 1, {4}, DG_STATUS_ERR_SHAPE,
     "tensor 'backbone.bn2.weight': unexpected, the model has no such tensor"},
    {2, "backbone.layer1.0.conv1.weight", DG_ST_F32, 4, {5, 4, 3, 3}, DG_STATUS_ERR_SHAPE,
     "tensor 'backbone.layer1.0.conv1.weight': shape [5, 4, 3, 3] in the file, the model expects "
     "[5, 4, 1, 1]"},
    {2, "classifier.weight", DG_ST_F32, 2, {5, 3}, DG_STATUS_ERR_SHAPE,
     "tensor 'classifier.weight': shape [5, 3] in the file, the model expects [3, 5]"},
    {2, "backbone.bn1.running_var", DG_ST_F32, 2, {1, 4}, DG_STATUS_ERR_SHAPE,
     "tensor 'backbone.bn1.running_var': shape [1, 4] in the file, the model expects [4]"},
    {3, "classifier.bias", DG_ST_I64, 0, {0}, DG_STATUS_ERR_SHAPE,
     "tensor 'classifier.bias': dtype I64, expected F32"},
    {3, "backbone.bn1.weight", DG_ST_F16, 0, {0}, DG_STATUS_ERR_SHAPE,
     "tensor 'backbone.bn1.weight': dtype F16, expected F32 (converting is not enabled"},
};

static void apply_fault(ftensor *ft, size_t *n, const fault *f) {
    if (f->kind == 0) {
        drop_ft(ft, n, f->name);
    } else if (f->kind == 1) {
        add_ft(ft, n, f->name, f->dtype, f->ndims, f->shape);
    } else if (f->kind == 2) {
        ftensor *t = find_ft(ft, *n, f->name);
        t->ndims = f->ndims;
        memcpy(t->shape, f->shape, sizeof(t->shape));
    } else {
        find_ft(ft, *n, f->name)->dtype = f->dtype;
    }
}

START_TEST(weights_load_reports_each_mismatch_by_name_and_leaves_model_untouched) {
    const fault *f = &faults[_i];
    dg_param_set ps;
    build_model(&ps, 7);
    ftensor ft[16];
    size_t n = model_tensors(&ps, NULL, ft);
    apply_fault(ft, &n, f);
    char path[128];
    path_of(path, sizeof(path), "mismatch.safetensors");
    write_tensors(path, ft, n, 79);
    snapshot snap = take_snapshot(&ps);
    dg_status s;
    char *log = load_logged(path, &ps, NULL, &s);
    ck_assert_msg(s == f->want, "case %d: %s\n%s", _i, dg_status_str(s), log);
    ck_assert_msg(strstr(log, f->expect) && strstr(log, path), "case %d: want '%s' in:\n%s", _i,
            f->expect, log);
    ck_assert_msg(count_lines(log) == 2 && strstr(log, "1 problem ("), "case %d:\n%s", _i, log);
    dg_free(log);
    assert_untouched(&ps, &snap);
    dg_params_free(&ps);
}
END_TEST

START_TEST(weights_load_lists_every_problem_before_failing) {
    dg_param_set ps;
    build_model(&ps, 8);
    ftensor ft[16];
    size_t n = model_tensors(&ps, NULL, ft);
    apply_fault(ft, &n, &faults[0]); /* missing bn1.bias */
    apply_fault(ft, &n, &faults[2]); /* unexpected bn2.weight */
    apply_fault(ft, &n, &faults[3]); /* layer1 conv shape */
    apply_fault(ft, &n, &faults[6]); /* classifier.bias I64 */
    char path[128];
    path_of(path, sizeof(path), "many.safetensors");
    write_tensors(path, ft, n, 80);
    snapshot snap = take_snapshot(&ps);
    dg_status s;
    char *log = load_logged(path, &ps, NULL, &s);
    ck_assert_int_eq(s, DG_STATUS_ERR_SHAPE);
    for (int k = 0; k < 4; k++) {
        const fault *f = &faults[k == 0 ? 0 : k == 1 ? 2 : k == 2 ? 3 : 6];
        ck_assert_msg(strstr(log, f->expect), "want '%s' in:\n%s", f->expect, log);
    }
    ck_assert_msg(strstr(log, "4 problems (1 missing, 1 unexpected, 2 of the wrong shape or "
            "dtype)"), "%s", log);
    ck_assert_int_eq(count_lines(log), 5);
    dg_free(log);
    assert_untouched(&ps, &snap);
    dg_params_free(&ps);
}
END_TEST

START_TEST(weights_half_precision_converts_only_when_allowed) {
    dg_param_set ps;
    build_model(&ps, 9);
    ftensor ft[16];
    size_t n = model_tensors(&ps, NULL, ft);
    find_ft(ft, n, "backbone.bn1.weight")->dtype = DG_ST_F16;
    find_ft(ft, n, "classifier.weight")->dtype = DG_ST_BF16;
    char path[128];
    path_of(path, sizeof(path), "half.safetensors");
    write_tensors(path, ft, n, 81);
    const dg_weights_load_opts o = {.allow_convert = true};
    dg_status s;
    char *log = load_logged(path, &ps, &o, &s);
    ck_assert_msg(s == DG_STATUS_OK, "%s", log);
    dg_free(log);
    const dg_param_tensor *bw = dg_params_find(&ps, "backbone.bn1.weight");
    const dg_param_tensor *cw = dg_params_find(&ps, "classifier.weight");
    for (size_t k = 0; k < bw->n; k++)
        ck_assert(ps.data[bw->offset + k] == 1.f + (float)k / 1024.f);
    for (size_t k = 0; k < cw->n; k++)
        ck_assert(ps.data[cw->offset + k] == 1.f + (float)k / 128.f);
    assert_tensor_from_file(&ps, "backbone.conv1.weight", path, "backbone.conv1.weight");
    dg_params_free(&ps);
}
END_TEST

/* ---- corrupt files ----------------------------------------------------------------- */

/* Rewrites the header of path through fn (cJSON), keeping the data. */
typedef void (*header_edit_fn)(cJSON *root);

static void rewrite_header(const char *path, header_edit_fn fn) {
    size_t n;
    char *file = read_file(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | (uint8_t)file[i];
    cJSON *root = cJSON_ParseWithLength(file + 8, hlen);
    ck_assert_ptr_nonnull(root);
    fn(root);
    char *json = cJSON_PrintUnformatted(root);
    const size_t jl = strlen(json), data_len = n - 8 - hlen;
    char *out = dg_xmalloc(8 + jl + data_len);
    for (int i = 0; i < 8; i++) out[i] = (char)(uint8_t)((uint64_t)jl >> (8 * i));
    memcpy(out + 8, json, jl);
    memcpy(out + 8 + jl, file + 8 + hlen, data_len);
    write_file(path, out, 8 + jl + data_len);
    cJSON_free(json);
    cJSON_Delete(root);
    dg_free(out);
    dg_free(file);
}

static void set_offsets(cJSON *root, const char *name, double begin, double end) {
    cJSON *of = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, name),
            "data_offsets");
    ck_assert_ptr_nonnull(of);
    cJSON_SetNumberValue(cJSON_GetArrayItem(of, 0), begin);
    cJSON_SetNumberValue(cJSON_GetArrayItem(of, 1), end);
}

static double offset_of(cJSON *root, const char *name, int k) {
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(root, name), "data_offsets"), k)->valuedouble;
}

/* Data buffer length: the largest end offset. */
static double data_end(cJSON *root) {
    double e = 0;
    for (cJSON *c = root->child; c; c = c->next)
        if (strcmp(c->string, "__metadata__")) e = fmax(e, offset_of(root, c->string, 1));
    return e;
}

static void edit_beyond(cJSON *root) { /* last stat tensor moved past the end */
    const double e = data_end(root);
    set_offsets(root, "backbone.bn1.running_var", e, e + 16);
}

static void edit_overlap(cJSON *root) { /* bias placed on top of the weight */
    set_offsets(root, "backbone.bn1.bias", offset_of(root, "backbone.bn1.weight", 0),
            offset_of(root, "backbone.bn1.weight", 1));
}

static void edit_size(cJSON *root) { /* 100 bytes for a 432-byte tensor */
    const double b = offset_of(root, "backbone.conv1.weight", 0);
    set_offsets(root, "backbone.conv1.weight", b, b + 100);
}

typedef struct corruption {
    int kind;              /* 0 truncate, 1 header edit, 2 length field, 3 JSON byte */
    header_edit_fn edit;
    dg_status want;
    const char *expect[2];
} corruption;

static const corruption corruptions[] = {
    {0, NULL, DG_STATUS_ERR_FORMAT,
     {"tensor 'backbone.bn1.running_var': data_offsets", "extend beyond the data buffer"}},
    {1, edit_beyond, DG_STATUS_ERR_FORMAT,
     {"tensor 'backbone.bn1.running_var': data_offsets", "extend beyond the data buffer"}},
    {1, edit_overlap, DG_STATUS_ERR_FORMAT,
     {"tensor 'backbone.bn1.weight': data_offsets", "overlap tensor 'backbone.bn1.bias'"}},
    {1, edit_size, DG_STATUS_ERR_FORMAT,
     {"tensor 'backbone.conv1.weight': data_offsets", "hold 100 bytes but F32 shape [4, 3, 3, 3] "
      "needs 432"}},
    {2, NULL, DG_STATUS_ERR_FORMAT, {"header length 18446744073709551615", "not a safetensors"}},
    {3, NULL, DG_STATUS_ERR_FORMAT, {"header is not valid JSON", "error near header byte"}},
};

START_TEST(weights_corrupt_file_fails_cleanly_and_leaves_model_untouched) {
    const corruption *c = &corruptions[_i];
    dg_param_set a, ps;
    build_model(&a, 10);
    build_model(&ps, 11);
    char path[128];
    path_of(path, sizeof(path), "corrupt.safetensors");
    ck_assert_int_eq(dg_weights_save(path, &a, NULL, 0), DG_STATUS_OK);
    size_t n;
    char *file = read_file(path, &n);
    if (c->kind == 0) {
        write_file(path, file, n - 5);
    } else if (c->kind == 1) {
        rewrite_header(path, c->edit);
    } else if (c->kind == 2) {
        memset(file, 0xff, 8);
        write_file(path, file, n);
    } else {
        char *colon = strchr(file + 8, ':');
        *colon = ';';
        write_file(path, file, n);
    }
    dg_free(file);
    snapshot snap = take_snapshot(&ps);
    dg_status s;
    char *log = load_logged(path, &ps, NULL, &s);
    ck_assert_msg(s == c->want, "case %d: %s\n%s", _i, dg_status_str(s), log);
    for (int k = 0; k < 2; k++)
        ck_assert_msg(strstr(log, c->expect[k]), "case %d: want '%s' in:\n%s", _i, c->expect[k],
                log);
    ck_assert_msg(count_lines(log) == 1 && strstr(log, path), "case %d:\n%s", _i, log);
    dg_free(log);
    assert_untouched(&ps, &snap);
    dg_params_free(&a);
    dg_params_free(&ps);
}
END_TEST

START_TEST(weights_read_failure_midway_leaves_model_untouched) {
    /* The file shrinks after it was validated: some tensors read, the last
     * one fails; what was read must not reach the model. */
    dg_param_set a, ps;
    build_model(&a, 15);
    build_model(&ps, 16);
    char path[128];
    path_of(path, sizeof(path), "shrinks.safetensors");
    ck_assert_int_eq(dg_weights_save(path, &a, NULL, 0), DG_STATUS_OK);
    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
    const dg_st_tensor *last = dg_tensor_reader_find(&r, "backbone.bn1.running_var");
    ck_assert_uint_eq(last->end, r.data_len);
    ck_assert_int_eq(truncate(path, (off_t)(r.data_start + last->begin + 8)), 0);
    snapshot snap = take_snapshot(&ps);
    capture c;
    capture_begin(&c);
    const dg_status s = dg_weights_load_reader(&r, &ps, NULL);
    char *log = capture_end(&c);
    ck_assert_int_eq(s, DG_STATUS_ERR_IO);
    ck_assert_msg(count_lines(log) == 1 && strstr(log, path) &&
            strstr(log, "tensor 'backbone.bn1.running_var': cannot read its data: "
                    "file ended early"),
            "%s", log);
    dg_free(log);
    assert_untouched(&ps, &snap);
    dg_tensor_reader_close(&r);
    dg_params_free(&a);
    dg_params_free(&ps);
}
END_TEST

/* ---- atomic writes ------------------------------------------------------------------- */

START_TEST(weights_save_into_missing_directory_fails_cleanly) {
    dg_param_set ps;
    build_model(&ps, 12);
    char path[256], sub[128];
    path_of(sub, sizeof(sub), "no-such-dir");
    snprintf(path, sizeof(path), "%s/model.safetensors", sub);
    capture c;
    capture_begin(&c);
    const dg_status s = dg_weights_save(path, &ps, NULL, 0);
    char *log = capture_end(&c);
    ck_assert_int_eq(s, DG_STATUS_ERR_IO);
    ck_assert_msg(count_lines(log) == 1 && strstr(log, path) &&
            strstr(log, "No such file or directory"), "%s", log);
    dg_free(log);
    ck_assert_int_ne(access(sub, F_OK), 0);
    dg_params_free(&ps);
}
END_TEST

/* Saves model b over a's file while `how` makes the write fail; the old
 * file must come back byte-identical and no temporary may remain. */
static void check_failed_save_keeps_old_file(int how) {
    dg_param_set a, b;
    build_model(&a, 13);
    build_model(&b, 14);
    char sub[128], path[160];
    static const char *subs[3] = {"ckpts_full", "ckpts_read_only", "target_is_dir"};
    path_of(sub, sizeof(sub), subs[how]);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    snprintf(path, sizeof(path), "%s/last.safetensors", sub);
    size_t n_old = 0;
    char *old = NULL;
    if (how == 2) { /* the target is a non-empty directory: the rename fails */
        ck_assert_int_eq(mkdir(path, 0700), 0);
        char inner[200];
        snprintf(inner, sizeof(inner), "%s/keep", path);
        write_file(inner, "keep", 4);
    } else {
        ck_assert_int_eq(dg_weights_save(path, &a, NULL, 0), DG_STATUS_OK);
        old = read_file(path, &n_old);
    }

    struct rlimit saved;
    capture c;
    capture_begin(&c);
    if (how == 0) { /* the file system "fills up" after 512 bytes */
        signal(SIGXFSZ, SIG_IGN);
        ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
        struct rlimit lim = saved;
        lim.rlim_cur = 512;
        ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    } else if (how == 1) {
        ck_assert_int_eq(chmod(sub, 0500), 0);
    }
    const dg_status s = dg_weights_save(path, &b, NULL, 0);
    if (how == 0) setrlimit(RLIMIT_FSIZE, &saved);
    if (how == 1) chmod(sub, 0700);
    char *log = capture_end(&c);

    static const char *why[3] = {"File too large", "Permission denied", "Is a directory"};
    ck_assert_int_eq(s, DG_STATUS_ERR_IO);
    ck_assert_msg(count_lines(log) == 1 && strstr(log, path) && strstr(log, why[how]) &&
            strstr(log, "left unchanged"), "%s", log);
    dg_free(log);
    assert_no_temporary(sub);
    if (old) {
        size_t n_now;
        char *now = read_file(path, &n_now);
        ck_assert_uint_eq(n_now, n_old);
        ck_assert_mem_eq(now, old, n_old);
        dg_free(now);
        dg_free(old);
        /* and it still loads as model a */
        dg_status ls;
        char *l = load_logged(path, &b, NULL, &ls);
        ck_assert_msg(ls == DG_STATUS_OK, "%s", l);
        dg_free(l);
        ck_assert_mem_eq(b.data, a.data, a.d * sizeof(float));
    } else {
        char inner[200];
        snprintf(inner, sizeof(inner), "%s/keep", path);
        ck_assert_int_eq(access(inner, F_OK), 0);
    }
    dg_params_free(&a);
    dg_params_free(&b);
}

START_TEST(weights_save_that_runs_out_of_space_keeps_old_file) {
    check_failed_save_keeps_old_file(0);
}
END_TEST

START_TEST(weights_save_into_unwritable_place_keeps_old_file) {
    /* root ignores directory permissions: a target that cannot be replaced
     * (a non-empty directory) exercises the same cleanup path instead. */
    check_failed_save_keeps_old_file(geteuid() == 0 ? 2 : 1);
}
END_TEST

/* ---- committed fixtures ------------------------------------------------------------- */

START_TEST(weights_committed_fixture_files_validate_and_read) {
    /* The PyTorch fixtures (tests/fixtures, *.safetensors) come from an
     * independent writer: every tensor must validate and read. */
    char fdir[512];
    snprintf(fdir, sizeof(fdir), "%s/tests/fixtures", DG_SOURCE_DIR);
    DIR *d = opendir(fdir);
    ck_assert_msg(d != NULL, "no %s", fdir);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)) != NULL) {
        const size_t len = strlen(e->d_name);
        if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors")) continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", fdir, e->d_name);
        dg_tensor_reader r;
        ck_assert_int_eq(dg_tensor_reader_open(&r, path), DG_STATUS_OK);
        ck_assert_uint_gt(dg_tensor_reader_count(&r), 0);
        for (size_t i = 0; i < dg_tensor_reader_count(&r); i++) {
            const dg_st_tensor *t = dg_tensor_reader_at(&r, i);
            void *buf = dg_xmalloc(t->end - t->begin + 1);
            ck_assert_int_eq(dg_tensor_reader_read_raw(&r, t, buf), DG_STATUS_OK);
            if (dg_st_dtype_is_f32_convertible(t->dtype)) {
                float *f = dg_xmalloc(t->numel * sizeof(float) + 1);
                ck_assert_int_eq(dg_tensor_reader_read_as_f32(&r, t, f), DG_STATUS_OK);
                if (t->dtype == DG_ST_F64)
                    for (size_t k = 0; k < t->numel; k++) {
                        const double v = ((const double *)buf)[k];
                        ck_assert(isnan(v) ? isnan(f[k]) : f[k] == (float)v);
                    }
                dg_free(f);
            }
            dg_free(buf);
        }
        dg_tensor_reader_close(&r);
        files++;
    }
    closedir(d);
    ck_assert_int_gt(files, 0);
}
END_TEST

Suite *weights_suite(void) {
    Suite *s = suite_create("weights");
    TCase *tc = tcase_create("io");
    tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, weights_round_trip_is_bit_exact_with_metadata);
    tcase_add_test(tc, weights_load_ignores_optimizer_and_fixture_tensors);
    tcase_add_test(tc, weights_pretrained_backbone_maps_prefix_and_ignores_classifier);
    tcase_add_loop_test(tc, weights_pretrained_load_reports_heads_classifier_and_backbone_gaps, 0,
            (int)DG_ARRAY_LEN(pretrained_faults));
    tcase_add_loop_test(tc, weights_load_reports_each_mismatch_by_name_and_leaves_model_untouched,
            0, (int)DG_ARRAY_LEN(faults));
    tcase_add_test(tc, weights_load_lists_every_problem_before_failing);
    tcase_add_test(tc, weights_half_precision_converts_only_when_allowed);
    tcase_add_loop_test(tc, weights_corrupt_file_fails_cleanly_and_leaves_model_untouched, 0,
            (int)DG_ARRAY_LEN(corruptions));
    tcase_add_test(tc, weights_read_failure_midway_leaves_model_untouched);
    tcase_add_test(tc, weights_save_into_missing_directory_fails_cleanly);
    tcase_add_test(tc, weights_save_that_runs_out_of_space_keeps_old_file);
    tcase_add_test(tc, weights_save_into_unwritable_place_keeps_old_file);
    tcase_add_test(tc, weights_committed_fixture_files_validate_and_read);
    suite_add_tcase(s, tc);
    return s;
}
