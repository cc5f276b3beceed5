/* tests/test_models.c -- model structure: output-stride and auxiliary-head
 * shapes, torchvision parameter counts and names, ImageNet backbone loading
 * with torchvision names (and its faults), the inference instance and its
 * once-per-version weight preparation,
 * allocation-free training steps of a DeepLab, and builds too large for the
 * memory left refused with their size. Numerics against PyTorch live in
 * test_fixtures.c. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "nets/core/loss.h"
#include "nets/core/weights.h"
#include "nets/model.h"
#include "ref/fixture_weights.h"

static dg_ctx ctx;
static void setup(void) { dg_ctx_init(&ctx); }
static void teardown(void) { dg_ctx_free(&ctx); }

static dg_model_opts seg_opts(int64_t n, int64_t h, int64_t w, int os, bool aux, bool training) {
    dg_model_opts o = {.batch = n, .in_channels = 3, .height = h, .width = w, .classes = 19,
            .training = training, .output_stride = os, .aux = aux, .aux_dropout = 0.1f};
    return o;
}

static void assert_dims(dnnl_memory_t m, int64_t n, int64_t c, int64_t h, int64_t w) {
    int64_t d[4];
    dg_mem_dims4(m, d);
    ck_assert_msg(d[0] == n && d[1] == c && d[2] == h && d[3] == w,
            "dims (%lld, %lld, %lld, %lld), want (%lld, %lld, %lld, %lld)", (long long)d[0],
            (long long)d[1], (long long)d[2], (long long)d[3], (long long)n, (long long)c,
            (long long)h, (long long)w);
}

typedef struct shape_case {
    const char *model;
    int os;
    bool aux;
    int64_t aux_h, aux_w; /* layer3 size for a 65x97 input */
} shape_case;

static const shape_case shape_cases[] = {
    {"deeplabv3plus-r50", 16, true, 5, 7},
    {"deeplabv3plus-r50", 8, true, 9, 13},
    {"deeplabv3plus-r18", 16, false, 0, 0},
    {"deeplabv3plus-r101", 8, false, 0, 0},
};

START_TEST(deeplab_output_stride_and_aux_shapes) {
    const shape_case *sc = &shape_cases[_i];
    dg_model m;
    dg_model_opts o = seg_opts(1, 65, 97, sc->os, sc->aux, false);
    ck_assert_int_eq(dg_model_create(&m, &ctx, sc->model, &o, 1), DG_STATUS_OK);
    assert_dims(m.logits, 1, 19, 65, 97);
    if (sc->aux) assert_dims(m.aux_logits, 1, 19, sc->aux_h, sc->aux_w);
    else ck_assert_ptr_null(m.aux_logits);
    ck_assert_int_eq(dg_params_find(&m.ps, "aux.conv.bias") != NULL, sc->aux);
    /* ASPP rates: 6/12/18 at OS16, 12/24/36 at OS8 (visible in the padding). */
    dg_pass p = dg_pass_eval(&m.ps);
    dg_model_forward(&m, &ctx, &p);
    DG_DNNL(dnnl_stream_wait(ctx.stream));
    dg_model_free(&m);
}
END_TEST

START_TEST(parameter_counts_match_torchvision) {
    /* torchvision: resnet18 11,689,512 and resnet50 25,557,032 with a
     * 1000-class fc; here the fc is 7-class. DeepLab R18 with aux head:
     * 17,798,598 (PyTorch reference model, tests/reference/dg_models.py). */
    struct { const char *name; int64_t classes; bool aux; size_t want; } c[] = {
        {"resnet18", 7, false, 11689512 - 513000 + 512 * 7 + 7},
        {"resnet50", 7, false, 25557032 - 2049000 + 2048 * 7 + 7},
        {"deeplabv3plus-r18", 19, true, 17798598},
    };
    for (size_t i = 0; i < DG_ARRAY_LEN(c); i++) {
        dg_model m;
        dg_model_opts o = seg_opts(1, 33, 33, 16, c[i].aux, false);
        o.classes = c[i].classes;
        ck_assert_int_eq(dg_model_create(&m, &ctx, c[i].name, &o, 1), DG_STATUS_OK);
        ck_assert_msg(m.ps.d == c[i].want, "%s: %zu parameters, want %zu", c[i].name, m.ps.d,
                c[i].want);
        dg_model_free(&m);
    }
}
END_TEST

/* DeepLab runs at output stride 8 or 16: anything else (a config or a
 * checkpoint's metadata) is a configuration error, not an abort. */
START_TEST(deeplab_refuses_other_output_strides) {
    static const int bad[] = {4, 7, 9, 12, 15, 32};
    for (size_t i = 0; i < DG_ARRAY_LEN(bad); i++) {
        dg_model m;
        dg_model_opts o = seg_opts(1, 32, 32, bad[i], false, false);
        capture cap;
        capture_begin(&cap);
        const dg_status st = dg_model_create(&m, &ctx, "deeplabv3plus-r18", &o, 1);
        char *log = capture_end(&cap);
        ck_assert_msg(st == DG_STATUS_ERR_CONFIG && strstr(log, "8 or 16"), "os %d: %d %s",
                bad[i], st, log);
        dg_free(log);
    }
}
END_TEST

/* Writes the trunk of `m` under torchvision names (prefix stripped), with
 * an ImageNet fc and num_batches_tracked as torchvision's files have. */
static void write_torchvision_file(const dg_model *m, const char *path, const char *break_name) {
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    size_t plen = strlen(m->backbone);
    for (int kind = 0; kind < 2; kind++) {
        const dg_param_tensor *ts = kind ? m->ps.stat_tensors : m->ps.tensors;
        size_t nt = kind ? m->ps.n_stat_tensors : m->ps.n_tensors;
        const float *base = kind ? m->ps.stats : m->ps.data;
        for (size_t i = 0; i < nt; i++) {
            if (strncmp(ts[i].name, m->backbone, plen)) continue;
            int64_t shape[4];
            memcpy(shape, ts[i].shape, sizeof(shape));
            if (break_name && !strcmp(ts[i].name + plen, break_name)) shape[0] = 1;
            dg_tensor_writer_add_f32(&w, ts[i].name + plen, ts[i].ndims, shape, base + ts[i].offset);
        }
    }
    static float fc_w[1000 * 512], fc_b[1000];
    int64_t fw[2] = {1000, 512}, fb[1] = {1000};
    dg_tensor_writer_add_f32(&w, "fc.weight", 2, fw, fc_w);
    dg_tensor_writer_add_f32(&w, "fc.bias", 1, fb, fc_b);
    dg_tensor_writer_add_scalar_i64(&w, "bn1.num_batches_tracked", 7);
    ck_assert_int_eq(dg_tensor_writer_write(&w, path), DG_STATUS_OK);
    dg_tensor_writer_free(&w);
}

START_TEST(pretrained_backbone_loads_with_torchvision_names) {
    const char *names[2] = {"deeplabv3plus-r18", "resnet18"};
    for (int k = 0; k < 2; k++) {
        dg_model a, b;
        dg_model_opts o = seg_opts(1, 33, 33, 16, false, false);
        ck_assert_int_eq(dg_model_create(&a, &ctx, names[k], &o, 1), DG_STATUS_OK);
        ck_assert_int_eq(dg_model_create(&b, &ctx, names[k], &o, 2), DG_STATUS_OK);
        fill_uniform(a.ps.stats, a.ps.n_stats, 3, 0.5f, 1.5f);
        char path[] = "/tmp/dg_pretrained_XXXXXX";
        int fd = mkstemp(path);
        ck_assert_int_ge(fd, 0);
        close(fd);
        write_torchvision_file(&a, path, NULL);
        float *heads_before = dg_xmalloc(b.ps.d * sizeof(float));
        memcpy(heads_before, b.ps.data, b.ps.d * sizeof(float));
        ck_assert_int_eq(dg_model_load_pretrained(&b, path), DG_STATUS_OK);
        size_t plen = strlen(b.backbone), n_trunk = 0;
        for (size_t i = 0; i < b.ps.n_tensors; i++) {
            const dg_param_tensor *t = &b.ps.tensors[i];
            const float *want = strncmp(t->name, b.backbone, plen) ? heads_before + t->offset
                                                                   : a.ps.data + t->offset;
            n_trunk += !strncmp(t->name, b.backbone, plen);
            ck_assert_msg(!memcmp(b.ps.data + t->offset, want, t->n * sizeof(float)), "%s",
                    t->name);
        }
        ck_assert_uint_gt(n_trunk, 50);
        for (size_t i = 0; i < b.ps.n_stat_tensors; i++) {
            const dg_param_tensor *t = &b.ps.stat_tensors[i];
            if (strncmp(t->name, b.backbone, plen)) continue;
            ck_assert_msg(!memcmp(b.ps.stats + t->offset, a.ps.stats + t->offset,
                    t->n * sizeof(float)), "%s", t->name);
        }
        unlink(path);
        dg_free(heads_before);
        dg_model_free(&a);
        dg_model_free(&b);
    }
}
END_TEST

START_TEST(pretrained_fault_is_reported_by_name_and_model_unchanged) {
    dg_model a;
    dg_model_opts o = seg_opts(1, 33, 33, 16, false, false);
    ck_assert_int_eq(dg_model_create(&a, &ctx, "deeplabv3plus-r18", &o, 1), DG_STATUS_OK);
    char path[] = "/tmp/dg_pretrained_XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    close(fd);
    write_torchvision_file(&a, path, "layer2.0.conv1.weight");
    float *before = dg_xmalloc(a.ps.d * sizeof(float));
    memcpy(before, a.ps.data, a.ps.d * sizeof(float));
    capture c;
    capture_begin(&c);
    dg_status s = dg_model_load_pretrained(&a, path);
    char *text = capture_end(&c);
    ck_assert_int_ne(s, DG_STATUS_OK);
    ck_assert_mem_eq(before, a.ps.data, a.ps.d * sizeof(float));
    ck_assert_msg(strstr(text, "backbone.layer2.0.conv1.weight") || strstr(text, "layer2.0.conv1.weight"),
            "message does not name the tensor: %s", text);
    /* A model without an ImageNet trunk refuses the key. */
    dg_model mn;
    dg_model_opts mo = {.batch = 1, .in_channels = 1, .height = 28, .width = 28, .classes = 10};
    ck_assert_int_eq(dg_model_create(&mn, &ctx, "mnist-cnn", &mo, 1), DG_STATUS_OK);
    capture_begin(&c);
    ck_assert_int_eq(dg_model_load_pretrained(&mn, path), DG_STATUS_ERR_CONFIG);
    dg_free(capture_end(&c));
    unlink(path);
    dg_free(text);
    dg_free(before);
    dg_model_free(&mn);
    dg_model_free(&a);
}
END_TEST

/* The inference instance folds BN into the convolutions and fuses ReLU. */
START_TEST(inference_instance_matches_training_instance_in_eval_mode) {
    dg_model a, b;
    dg_model_opts o = seg_opts(2, 41, 57, 16, true, true);
    ck_assert_int_eq(dg_model_create(&a, &ctx, "deeplabv3plus-r18", &o, 4), DG_STATUS_OK);
    o.training = false;
    ck_assert_int_eq(dg_model_create(&b, &ctx, "deeplabv3plus-r18", &o, 4), DG_STATUS_OK);
    ck_assert_uint_eq(a.ps.d, b.ps.d); /* same tensors, same layout */
    ck_assert_uint_eq(a.ps.n_stats, b.ps.n_stats);
    /* Non-trivial running statistics and affine parameters for the folding. */
    fixture_fill_weights(&a.ps, 2024);
    size_t nx = 2 * 3 * 41 * 57;
    fill_uniform(dg_mem_ptr(a.src), nx, 5, -1, 1);
    memcpy(dg_mem_ptr(b.src), dg_mem_ptr(a.src), nx * sizeof(float));
    dg_pass p = dg_pass_eval(&a.ps); /* both run a's weights */
    dg_model_forward(&a, &ctx, &p);
    dg_model_forward(&b, &ctx, &p);
    size_t nl = 2 * 19 * 41 * 57;
    float *ga = dg_xmalloc(nl * sizeof(float)), *gb = dg_xmalloc(nl * sizeof(float));
    read_plain(&ctx, a.logits, ga);
    read_plain(&ctx, b.logits, gb);
    double *e = dup_double(ga, nl);
    DG_ASSERT_CLOSE(gb, e, nl, 1e-5, 1e-4);
    dg_free(ga), dg_free(gb), dg_free(e);
    dg_model_free(&a);
    dg_model_free(&b);
}
END_TEST

/* Logits of inference instance m (plain, n floats) on params/stats with
 * dg_pass.weights_version v. */
static void infer_logits(dg_model *m, const float *params, float *stats, uint64_t v, float *out) {
    dg_pass p = dg_pass_eval(&m->ps);
    p.params = params;
    p.stats = stats;
    p.weights_version = v;
    dg_model_forward(m, &ctx, &p);
    DG_DNNL(dnnl_stream_wait(ctx.stream));
    read_plain(&ctx, m->logits, out);
}

static void assert_same_bits(const float *a, const float *b, size_t n, const char *what) {
    ck_assert_msg(!memcmp(a, b, n * sizeof(float)), "%s: logits differ", what);
}

static const char *const version_models[] = {"deeplabv3plus-r18", "mnist-cnn", "resnet18"};

/* Inference instances prepare their weights (BN folded in, converted to the
 * primitives' layouts) once per dg_pass.weights_version: the same version
 * reuses them bit for bit, a new version or 0 prepares from the weights
 * given. Running weights B under A's version does not give B's logits: the
 * preparation is really skipped, so a caller must draw a new version
 * whenever the weights change. */
START_TEST(inference_prepares_weights_once_per_version) {
    const char *name = version_models[_i];
    const bool seg = !strncmp(name, "deeplab", 7);
    dg_model_opts o = seg ? seg_opts(1, 33, 41, 16, false, false)
                          : (dg_model_opts){.batch = 3, .in_channels = seg ? 3 : 1,
                                    .height = 28, .width = 28, .classes = 10};
    if (!strcmp(name, "resnet18")) o.in_channels = 3, o.height = o.width = 32;
    dg_model m;
    ck_assert_int_eq(dg_model_create(&m, &ctx, name, &o, 4), DG_STATUS_OK);
    const size_t d = m.ps.d, ns = m.ps.n_stats;
    fill_uniform(dg_mem_ptr(m.src), (size_t)(o.batch * o.in_channels * o.height * o.width), 5,
            -1, 1);
    float *wa = dg_xmalloc(d * sizeof(float)), *sa = dg_xmalloc((ns + 1) * sizeof(float));
    float *wb = dg_xmalloc(d * sizeof(float)), *sb = dg_xmalloc((ns + 1) * sizeof(float));
    fixture_fill_weights(&m.ps, 2024);
    memcpy(wa, m.ps.data, d * sizeof(float));
    memcpy(sa, m.ps.stats, ns * sizeof(float));
    fixture_fill_weights(&m.ps, 77);
    memcpy(wb, m.ps.data, d * sizeof(float));
    memcpy(sb, m.ps.stats, ns * sizeof(float));
    int64_t ld[4];
    dg_mem_dims4(m.logits, ld);
    const size_t nl = (size_t)(ld[0] * ld[1] * ld[2] * ld[3]);
    float *ra = dg_xmalloc(nl * sizeof(float)), *rb = dg_xmalloc(nl * sizeof(float));
    float *z = dg_xmalloc(nl * sizeof(float));
    infer_logits(&m, wa, sa, 0, ra);
    infer_logits(&m, wb, sb, 0, rb);
    ck_assert_msg(memcmp(ra, rb, nl * sizeof(float)), "%s: A and B give the same logits", name);

    const uint64_t va = dg_weights_version_new(), vb = dg_weights_version_new();
    ck_assert(va != 0 && vb != va);
    infer_logits(&m, wa, sa, va, z);
    assert_same_bits(z, ra, nl, "A, first forward of its version");
    infer_logits(&m, wa, sa, va, z);
    assert_same_bits(z, ra, nl, "A, prepared weights reused");
    infer_logits(&m, wb, sb, va, z); /* A's converted weights, B's biases, GN/BN */
    ck_assert_msg(memcmp(z, rb, nl * sizeof(float)), "%s: B under A's version gave B's logits: "
            "nothing was reused", name);
    infer_logits(&m, wb, sb, vb, z);
    assert_same_bits(z, rb, nl, "B, new version");
    infer_logits(&m, wa, sa, 0, z);
    assert_same_bits(z, ra, nl, "A, version 0");
    dg_free(wa), dg_free(sa), dg_free(wb), dg_free(sb);
    dg_free(ra), dg_free(rb), dg_free(z);
    dg_model_free(&m);
}
END_TEST

typedef struct deeplab_run {
    dg_model *m;
    dg_loss_ce *main_loss, *aux_loss;
    const int32_t *label, *aux_label;
    dg_pass p;
} deeplab_run;

static void deeplab_step(void *vr, int step) {
    deeplab_run *r = vr;
    r->p.counter = (uint64_t)step;
    dg_model_forward(r->m, &ctx, &r->p);
    dg_loss_ce_compute(r->main_loss, &ctx, r->label);
    dg_loss_ce_compute(r->aux_loss, &ctx, r->aux_label);
    dg_model_backward(r->m, &ctx, &r->p, r->main_loss->diff, r->aux_loss->diff);
    DG_DNNL(dnnl_stream_wait(ctx.stream));
}

START_TEST(deeplab_steps_after_the_first_allocate_nothing) {
    dg_model m;
    dg_model_opts o = seg_opts(2, 33, 41, 16, true, true);
    ck_assert_int_eq(dg_model_create(&m, &ctx, "deeplabv3plus-r18", &o, 4), DG_STATUS_OK);
    fill_uniform(dg_mem_ptr(m.src), 2 * 3 * 33 * 41, 5, -1, 1);
    int32_t label[2 * 33 * 41], aux_label[2 * 3 * 3];
    for (size_t i = 0; i < DG_ARRAY_LEN(label); i++) label[i] = (int32_t)(i % 19);
    int64_t ad[4];
    dg_mem_dims4(m.aux_logits, ad);
    ck_assert_int_eq(ad[2] * ad[3], 9);
    dg_label_resize_nearest(label, 2, 33, 41, aux_label, ad[2], ad[3]);
    dg_loss_ce main_loss, aux_loss;
    dg_loss_ce_cfg mc = {.scale = 1.f}, ac = {.scale = 0.4f};
    dg_loss_ce_init(&main_loss, &ctx, m.logits, &mc);
    dg_loss_ce_init(&aux_loss, &ctx, m.aux_logits, &ac);
    deeplab_run r = {&m, &main_loss, &aux_loss, label, aux_label, dg_pass_train(&m.ps)};
    assert_steps_allocate_nothing(deeplab_step, &r, 3);
    dg_loss_ce_free(&main_loss);
    dg_loss_ce_free(&aux_loss);
    dg_model_free(&m);
}
END_TEST


/* ---- memory: a build too large is refused with its size ------------------ */

/* dg_model_create under DG_MEM_LIMIT=limit on a fresh context (a
 * context's shared buffers, once grown, are not counted again): its
 * status, and the "need" figure of the error in MiB (0 when none). */
static dg_status create_under_limit(const char *limit, const dg_model_opts *o, double *need_mib) {
    setenv("DG_MEM_LIMIT", limit, 1);
    dg_ctx c;
    dg_ctx_init(&c);
    dg_model m;
    capture cap;
    capture_begin(&cap);
    const dg_status st = dg_model_create(&m, &c, "deeplabv3plus-r18", o, 1);
    char *log = capture_end(&cap);
    unsetenv("DG_MEM_LIMIT");
    if (st == DG_STATUS_OK) dg_model_free(&m);
    dg_ctx_free(&c);
    *need_mib = 0;
    const char *p = strstr(log, "buffers need ");
    if (p) {
        char unit[8] = "";
        double v = 0;
        ck_assert_int_eq(sscanf(p + 13, "%lf %7s", &v, unit), 2);
        *need_mib = v * (!strcmp(unit, "GiB") ? 1024.0 : !strcmp(unit, "KiB") ? 1.0 / 1024 : 1.0);
        ck_assert_msg(!strcmp(unit, "MiB") || !strcmp(unit, "GiB"), "%s", log);
        ck_assert_msg(strstr(log, "DG_MEM_LIMIT") && strstr(log, "the first that did not fit is"),
                "%s", log);
    }
    ck_assert_msg((st == DG_STATUS_OK) == (p == NULL), "status %d, log: %s", st, log);
    dg_free(log);
    return st;
}

/* A run that asks for more memory than the process can take ends with
 * DG_STATUS_ERR_MEMORY and the size it needed, before anything is
 * touched: here 8 crops of 16384 x 16384 (terabytes, more than any
 * machine), refused in well under a second; the context stays usable. */
START_TEST(model_larger_than_the_memory_left_is_refused_with_its_size) {
    dg_model m;
    dg_model_opts o = seg_opts(8, 16384, 16384, 16, true, true);
    capture cap;
    capture_begin(&cap);
    const double t0 = dg_now();
    const dg_status st = dg_model_create(&m, &ctx, "deeplabv3plus-r18", &o, 1);
    const double dt = dg_now() - t0;
    char *log = capture_end(&cap);
    ck_assert_msg(st == DG_STATUS_ERR_MEMORY, "status %d: %s", st, log);
    ck_assert_msg(strstr(log, "out of memory") && strstr(log, "TiB") &&
            strstr(log, "3x16384x16384") && strstr(log, "batch 8"), "%s", log);
    ck_assert_msg(dt < 10.0, "refusing took %.1f s: buffers were touched", dt);
    dg_free(log);
    /* the shared buffers of the context were left consistent: a small
     * model builds and runs on it */
    dg_model_opts so = seg_opts(2, 32, 32, 16, false, true);
    ck_assert_int_eq(dg_model_create(&m, &ctx, "deeplabv3plus-r18", &so, 1), DG_STATUS_OK);
    float *x = dg_mem_ptr(m.src);
    for (int i = 0; i < 2 * 3 * 32 * 32; i++) x[i] = (float)(i % 7) * 0.1f;
    const dg_pass pass = dg_pass_eval(&m.ps);
    dg_model_forward(&m, &ctx, &pass);
    DG_DNNL(dnnl_stream_wait(ctx.stream));
    dg_model_free(&m);
}
END_TEST

/* The need the error states is what the build takes: refused below it,
 * built at it (plus the reserve the build leaves for the rest of the run:
 * a quarter of the headroom), the same figure whatever the limit. */
START_TEST(memory_limit_gates_at_the_stated_need) {
    const dg_model_opts o = seg_opts(8, 96, 96, 16, true, true);
    double need = 0, need2 = 0, none = 0;
    ck_assert_int_eq(create_under_limit("64M", &o, &need), DG_STATUS_ERR_MEMORY);
    ck_assert_int_eq(create_under_limit("160M", &o, &need2), DG_STATUS_ERR_MEMORY);
    ck_assert_msg(need > 100 && fabs(need - need2) <= 0.1, "need %.1f MiB vs %.1f MiB", need,
            need2);
    char lim[32];
    snprintf(lim, sizeof(lim), "%.0fk", need * 1024.0 / 0.75 * 1.02);
    ck_assert_int_eq(create_under_limit(lim, &o, &none), DG_STATUS_OK);
    snprintf(lim, sizeof(lim), "%.0fk", need * 1024.0 / 0.75 * 0.98);
    ck_assert_int_eq(create_under_limit(lim, &o, &none), DG_STATUS_ERR_MEMORY);
}
END_TEST

/* Under a real address-space limit (ulimit -v) a build that does not fit
 * is refused with the limit named, and the process does not crash (oneDNN
 * crashes when its JIT code cannot be mapped: the build leaves a reserve).
 * In a child process; not under AddressSanitizer, which reserves terabytes
 * of address space for its shadow. */
START_TEST(address_space_limit_refuses_the_build_without_a_crash) {
#if defined(__SANITIZE_ADDRESS__)
    DG_TEST_SKIPPED("address-space limit: AddressSanitizer's shadow needs an unlimited address "
                    "space; checked the same refusal under DG_MEM_LIMIT instead");
    return;
#else
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f || fscanf(f, "%ld", &pages) != 1) _exit(3);
        fclose(f);
        const rlim_t mapped = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE);
        struct rlimit rl = {mapped + ((rlim_t)3 << 29), mapped + ((rlim_t)3 << 29)};
        if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(4);
        dg_model m;
        const dg_model_opts o = seg_opts(8, 1024, 1024, 16, true, true); /* ~10 GiB */
        capture cap;
        capture_begin(&cap);
        const dg_status st = dg_model_create(&m, &ctx, "deeplabv3plus-r18", &o, 1);
        char *log = capture_end(&cap);
        const bool named = strstr(log, "address-space limit") != NULL;
        dg_free(log);
        _exit(st == DG_STATUS_ERR_MEMORY ? (named ? 0 : 5) : 6);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status), "the child died of signal %d", WTERMSIG(status));
    ck_assert_msg(WEXITSTATUS(status) == 0, "child exit %d (5: the limit is not named, 6: the "
            "build was not refused)", WEXITSTATUS(status));
#endif
}
END_TEST

Suite *models_suite(void) {
    Suite *s = suite_create("models");
    TCase *tc = tcase_create("models");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, deeplab_output_stride_and_aux_shapes, 0, (int)DG_ARRAY_LEN(shape_cases));
    tcase_add_test(tc, deeplab_refuses_other_output_strides);
    tcase_add_test(tc, parameter_counts_match_torchvision);
    tcase_add_test(tc, pretrained_backbone_loads_with_torchvision_names);
    tcase_add_test(tc, pretrained_fault_is_reported_by_name_and_model_unchanged);
    tcase_add_test(tc, inference_instance_matches_training_instance_in_eval_mode);
    tcase_add_loop_test(tc, inference_prepares_weights_once_per_version, 0,
            (int)DG_ARRAY_LEN(version_models));
    tcase_add_test(tc, deeplab_steps_after_the_first_allocate_nothing);
    tcase_add_test(tc, model_larger_than_the_memory_left_is_refused_with_its_size);
    tcase_add_test(tc, memory_limit_gates_at_the_stated_need);
    tcase_add_test(tc, address_space_limit_refuses_the_build_without_a_crash);
    suite_add_tcase(s, tc);
    return s;
}
