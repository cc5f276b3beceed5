/* nets/onnx.c -- see onnx.h. Field numbers: onnx/onnx.proto (the messages
 * named in onnx.h). Wire types: 0 varint, 2 length-delimited, 5 32-bit. */
#include "nets/onnx.h"

#include <stdio.h>
#include <string.h>

/* ---- protobuf wire format -------------------------------------------------- */

typedef struct pb {
    uint8_t *p;
    size_t n, cap;
} pb;

static void pb_raw(pb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = dg_xrealloc(b->p, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void pb_varint(pb *b, uint64_t v) {
    uint8_t t[10];
    int n = 0;
    do {
        t[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) t[n] |= 0x80;
        n++;
    } while (v);
    pb_raw(b, t, (size_t)n);
}

static void pb_key(pb *b, int field, int wire) {
    pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire);
}

/* int32/int64 fields: negative values as their 64-bit two's complement. */
static void pb_int(pb *b, int field, int64_t v) {
    pb_key(b, field, 0);
    pb_varint(b, (uint64_t)v);
}

static void pb_bytes(pb *b, int field, const void *d, size_t n) {
    pb_key(b, field, 2);
    pb_varint(b, n);
    pb_raw(b, d, n);
}

static void pb_str(pb *b, int field, const char *s) { pb_bytes(b, field, s, strlen(s)); }

/* A submessage m as field `field` of b; m is freed. */
static void pb_msg(pb *b, int field, pb *m) {
    pb_bytes(b, field, m->p, m->n);
    dg_free(m->p);
    *m = (pb){0};
}

static void pb_float(pb *b, int field, float f) {
    uint8_t t[4];
    memcpy(t, &f, 4); /* x86-64: little-endian, as the wire format wants */
    pb_key(b, field, 5);
    pb_raw(b, t, 4);
}

/* ---- the graph ------------------------------------------------------------- */

enum { F_FLOAT = 1, F_INT64 = 7 };   /* TensorProto.DataType */
enum { A_FLOAT = 1, A_INT = 2, A_STRING = 3, A_INTS = 7 }; /* AttributeProto.AttributeType */

struct dg_onnx {
    char *name;
    pb graph;       /* GraphProto fields: node (1), initializer (5), input (11), output (12) */
    char **names;   /* every value name taken, interned */
    size_t n_names, cap_names;
};

dg_onnx *dg_onnx_new(const char *graph_name) {
    dg_onnx *g = dg_xcalloc(1, sizeof(*g));
    g->name = dg_xstrdup(graph_name);
    pb_str(&g->graph, 2, graph_name);
    return g;
}

void dg_onnx_free(dg_onnx *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_names; i++) dg_free(g->names[i]);
    dg_free(g->names);
    dg_free(g->graph.p);
    dg_free(g->name);
    dg_free(g);
}

size_t dg_onnx_graph_bytes(const dg_onnx *g) { return g->graph.n; }

static const char *find_name(const dg_onnx *g, const char *s) {
    for (size_t i = 0; i < g->n_names; i++)
        if (!strcmp(g->names[i], s)) return g->names[i];
    return NULL;
}

static const char *intern(dg_onnx *g, char *owned) {
    if (g->n_names == g->cap_names) {
        g->cap_names = g->cap_names ? 2 * g->cap_names : 256;
        g->names = dg_xrealloc(g->names, g->cap_names * sizeof(*g->names));
    }
    g->names[g->n_names++] = owned;
    return owned;
}

/* hint, or hint.1, hint.2, ... when taken. */
static const char *unique(dg_onnx *g, const char *hint) {
    if (!find_name(g, hint)) return intern(g, dg_xstrdup(hint));
    const size_t size = strlen(hint) + 16;
    for (int k = 1;; k++) {
        char *s = dg_xmalloc(size);
        snprintf(s, size, "%s.%d", hint, k);
        if (!find_name(g, s)) return intern(g, s);
        dg_free(s);
    }
}

/* ValueInfoProto of a float tensor. */
static void value_info(dg_onnx *g, int field, const char *name, int ndims, const int64_t *dims,
        const char *const *sym) {
    pb shape = {0};
    for (int i = 0; i < ndims; i++) {
        pb dim = {0};
        if (dims[i] >= 0) pb_int(&dim, 1, dims[i]);
        else pb_str(&dim, 2, sym[i]);
        pb_msg(&shape, 1, &dim);
    }
    pb tensor = {0}, type = {0}, vi = {0};
    pb_int(&tensor, 1, F_FLOAT);
    pb_msg(&tensor, 2, &shape);
    pb_msg(&type, 1, &tensor);
    pb_str(&vi, 1, name);
    pb_msg(&vi, 2, &type);
    pb_msg(&g->graph, field, &vi);
}

void dg_onnx_input(dg_onnx *g, const char *name, int ndims, const int64_t *dims,
        const char *const *sym) {
    value_info(g, 11, unique(g, name), ndims, dims, sym);
}

void dg_onnx_output(dg_onnx *g, const char *name, int ndims, const int64_t *dims,
        const char *const *sym) {
    value_info(g, 12, name, ndims, dims, sym);
}

/* An initializer (GraphProto field 5): the TensorProto's small fields are
 * assembled first, so that its length is known, then the data is copied
 * straight into the graph's bytes. */
static void initializer(dg_onnx *g, const char *name, int type, int ndims, const int64_t *dims,
        const void *data, size_t bytes) {
    pb head = {0};
    for (int i = 0; i < ndims; i++) pb_int(&head, 1, dims[i]);
    pb_int(&head, 2, type);
    pb_str(&head, 8, name);
    pb_key(&head, 9, 2);
    pb_varint(&head, bytes);
    pb_key(&g->graph, 5, 2);
    pb_varint(&g->graph, head.n + bytes);
    pb_raw(&g->graph, head.p, head.n);
    pb_raw(&g->graph, data, bytes);
    dg_free(head.p);
}

const char *dg_onnx_f32(dg_onnx *g, const char *hint, int ndims, const int64_t *dims,
        const float *data) {
    const char *name = unique(g, hint);
    size_t n = 1;
    for (int i = 0; i < ndims; i++) n *= (size_t)dims[i];
    initializer(g, name, F_FLOAT, ndims, dims, data, n * sizeof(float));
    return name;
}

const char *dg_onnx_i64(dg_onnx *g, int n, const int64_t *values) {
    char buf[256];
    int len = snprintf(buf, sizeof(buf), "i64:");
    for (int i = 0; i < n; i++)
        len += snprintf(buf + len, sizeof(buf) - (size_t)len, "%s%lld", i ? "," : "",
                (long long)values[i]);
    DG_ASSERT(len < (int)sizeof(buf));
    const char *have = find_name(g, buf);
    if (have) return have;
    const char *name = intern(g, dg_xstrdup(buf));
    const int64_t dims[1] = {n};
    initializer(g, name, F_INT64, 1, dims, values, (size_t)n * sizeof(int64_t));
    return name;
}

const char *dg_onnx_node(dg_onnx *g, const char *op, const char *hint, int n_in,
        const char *const *in, int n_attr, const dg_onnx_attr *attr) {
    const char *out = unique(g, hint);
    pb node = {0};
    for (int i = 0; i < n_in; i++) pb_str(&node, 1, in[i]);
    pb_str(&node, 2, out);
    pb_str(&node, 3, out);
    pb_str(&node, 4, op);
    for (int i = 0; i < n_attr; i++) {
        const dg_onnx_attr *a = &attr[i];
        pb at = {0};
        pb_str(&at, 1, a->name);
        switch (a->type) {
        case DG_ONNX_INT:
            pb_int(&at, 20, A_INT);
            pb_int(&at, 3, a->i);
            break;
        case DG_ONNX_FLOAT:
            pb_int(&at, 20, A_FLOAT);
            pb_float(&at, 2, a->f);
            break;
        case DG_ONNX_STRING:
            pb_int(&at, 20, A_STRING);
            pb_str(&at, 4, a->s);
            break;
        case DG_ONNX_INTS:
            pb_int(&at, 20, A_INTS);
            for (int k = 0; k < a->n_ints; k++) pb_int(&at, 8, a->ints[k]);
            break;
        }
        pb_msg(&node, 5, &at);
    }
    pb_msg(&g->graph, 1, &node);
    return out;
}

/* ---- operators ------------------------------------------------------------- */

static dg_onnx_attr ints_attr(const char *name, int n, const int64_t *v) {
    return (dg_onnx_attr){.name = name, .type = DG_ONNX_INTS, .n_ints = n, .ints = v};
}

const char *dg_onnx_conv(dg_onnx *g, const char *wname, const char *x, int64_t oc, int64_t ic,
        int64_t k, int64_t stride, int64_t pad, int64_t dilation, const float *w,
        const float *b) {
    char hint[320];
    snprintf(hint, sizeof(hint), "%s.weight", wname);
    const int64_t wd[4] = {oc, ic, k, k};
    const char *in[3] = {x, dg_onnx_f32(g, hint, 4, wd, w), NULL};
    if (b) {
        snprintf(hint, sizeof(hint), "%s.bias", wname);
        in[2] = dg_onnx_f32(g, hint, 1, &oc, b);
    }
    const int64_t ks[2] = {k, k}, st[2] = {stride, stride}, dl[2] = {dilation, dilation};
    const int64_t pd[4] = {pad, pad, pad, pad};
    const dg_onnx_attr at[4] = {ints_attr("kernel_shape", 2, ks), ints_attr("strides", 2, st),
            ints_attr("pads", 4, pd), ints_attr("dilations", 2, dl)};
    return dg_onnx_node(g, "Conv", wname, b ? 3 : 2, in, 4, at);
}

const char *dg_onnx_relu(dg_onnx *g, const char *hint, const char *x) {
    return dg_onnx_node(g, "Relu", hint, 1, &x, 0, NULL);
}

const char *dg_onnx_add(dg_onnx *g, const char *hint, const char *a, const char *b) {
    const char *in[2] = {a, b};
    return dg_onnx_node(g, "Add", hint, 2, in, 0, NULL);
}

const char *dg_onnx_concat(dg_onnx *g, const char *hint, int n, const char *const *x) {
    const dg_onnx_attr axis = {.name = "axis", .type = DG_ONNX_INT, .i = 1};
    return dg_onnx_node(g, "Concat", hint, n, x, 1, &axis);
}

const char *dg_onnx_maxpool(dg_onnx *g, const char *hint, const char *x, int64_t k,
        int64_t stride, int64_t pad) {
    const int64_t ks[2] = {k, k}, st[2] = {stride, stride}, pd[4] = {pad, pad, pad, pad};
    const dg_onnx_attr at[3] = {ints_attr("kernel_shape", 2, ks), ints_attr("strides", 2, st),
            ints_attr("pads", 4, pd)};
    return dg_onnx_node(g, "MaxPool", hint, 1, &x, 3, at);
}

const char *dg_onnx_global_avgpool(dg_onnx *g, const char *hint, const char *x) {
    return dg_onnx_node(g, "GlobalAveragePool", hint, 1, &x, 0, NULL);
}

/* Elements [lo, hi) of the 1-D shape vector of value v. */
static const char *shape_part(dg_onnx *g, const char *hint, const char *v, int64_t lo,
        int64_t hi) {
    const char *shape = dg_onnx_node(g, "Shape", hint, 1, &v, 0, NULL);
    const int64_t zero = 0;
    const char *in[4] = {shape, dg_onnx_i64(g, 1, &lo), dg_onnx_i64(g, 1, &hi),
            dg_onnx_i64(g, 1, &zero)};
    return dg_onnx_node(g, "Slice", hint, 4, in, 0, NULL);
}

const char *dg_onnx_resize_like(dg_onnx *g, const char *hint, const char *x, const char *like) {
    char h[320];
    snprintf(h, sizeof(h), "%s.sizes", hint);
    const char *parts[2] = {shape_part(g, h, x, 0, 2), shape_part(g, h, like, 2, 4)};
    const dg_onnx_attr axis0 = {.name = "axis", .type = DG_ONNX_INT, .i = 0};
    const char *sizes = dg_onnx_node(g, "Concat", h, 2, parts, 1, &axis0);
    const char *in[4] = {x, "", "", sizes};
    const dg_onnx_attr at[2] = {
            {.name = "mode", .type = DG_ONNX_STRING, .s = "linear"},
            {.name = "coordinate_transformation_mode", .type = DG_ONNX_STRING,
                    .s = "align_corners"}};
    return dg_onnx_node(g, "Resize", hint, 4, in, 2, at);
}

const char *dg_onnx_linear(dg_onnx *g, const char *wname, const char *x, int64_t oc, int64_t ic,
        const float *w, const float *b) {
    const dg_onnx_attr axis1 = {.name = "axis", .type = DG_ONNX_INT, .i = 1};
    char hint[320];
    snprintf(hint, sizeof(hint), "%s.flat", wname);
    const char *flat = dg_onnx_node(g, "Flatten", hint, 1, &x, 1, &axis1);
    snprintf(hint, sizeof(hint), "%s.weight", wname);
    const int64_t wd[2] = {oc, ic};
    const char *wt = dg_onnx_f32(g, hint, 2, wd, w);
    snprintf(hint, sizeof(hint), "%s.bias", wname);
    const char *in[3] = {flat, wt, dg_onnx_f32(g, hint, 1, &oc, b)};
    const dg_onnx_attr tb = {.name = "transB", .type = DG_ONNX_INT, .i = 1};
    return dg_onnx_node(g, "Gemm", wname, 3, in, 1, &tb);
}

const char *dg_onnx_groupnorm(dg_onnx *g, const char *wname, const char *x, int64_t c,
        int64_t groups, double eps, const float *gamma, const float *beta) {
    char hint[320];
    const int64_t grouped[3] = {0, groups, -1}; /* 0: the batch as it is */
    const char *in[3] = {x, dg_onnx_i64(g, 3, grouped), NULL};
    snprintf(hint, sizeof(hint), "%s.grouped", wname);
    const char *r = dg_onnx_node(g, "Reshape", hint, 2, in, 0, NULL);
    float *one = dg_xmalloc((size_t)groups * sizeof(float));
    float *zero = dg_xcalloc((size_t)groups, sizeof(float));
    for (int64_t i = 0; i < groups; i++) one[i] = 1.f;
    snprintf(hint, sizeof(hint), "%s.unit_scale", wname);
    in[0] = r;
    in[1] = dg_onnx_f32(g, hint, 1, &groups, one);
    snprintf(hint, sizeof(hint), "%s.zero_bias", wname);
    in[2] = dg_onnx_f32(g, hint, 1, &groups, zero);
    dg_free(one);
    dg_free(zero);
    const dg_onnx_attr e = {.name = "epsilon", .type = DG_ONNX_FLOAT, .f = (float)eps};
    snprintf(hint, sizeof(hint), "%s.normalized", wname);
    const char *nrm = dg_onnx_node(g, "InstanceNormalization", hint, 3, in, 1, &e);
    snprintf(hint, sizeof(hint), "%s.shape", wname);
    in[0] = nrm;
    in[1] = dg_onnx_node(g, "Shape", hint, 1, &x, 0, NULL);
    snprintf(hint, sizeof(hint), "%s.ungrouped", wname);
    const char *back = dg_onnx_node(g, "Reshape", hint, 2, in, 0, NULL);
    const int64_t cd[3] = {c, 1, 1};
    snprintf(hint, sizeof(hint), "%s.weight", wname);
    in[0] = back;
    in[1] = dg_onnx_f32(g, hint, 3, cd, gamma);
    snprintf(hint, sizeof(hint), "%s.scaled", wname);
    const char *scaled = dg_onnx_node(g, "Mul", hint, 2, in, 0, NULL);
    snprintf(hint, sizeof(hint), "%s.bias", wname);
    return dg_onnx_add(g, wname, scaled, dg_onnx_f32(g, hint, 3, cd, beta));
}

/* ---- the model file -------------------------------------------------------- */

dg_status dg_onnx_write(const dg_onnx *g, const char *path, const char *version, const char *doc,
        int n_meta, const char *const *meta) {
    pb head = {0};
    pb_int(&head, 1, DG_ONNX_IR_VERSION);
    pb_str(&head, 2, "dgseg");
    pb_str(&head, 3, version);
    if (doc) pb_str(&head, 6, doc);
    pb opset = {0};
    pb_int(&opset, 2, DG_ONNX_OPSET);
    pb_msg(&head, 8, &opset);
    for (int i = 0; i < n_meta; i++) {
        pb kv = {0};
        pb_str(&kv, 1, meta[2 * i]);
        pb_str(&kv, 2, meta[2 * i + 1]);
        pb_msg(&head, 14, &kv);
    }
    pb_key(&head, 7, 2); /* the graph: its bytes follow as the file's second part */
    pb_varint(&head, g->graph.n);
    const dg_file_part parts[2] = {{head.p, head.n}, {g->graph.p, g->graph.n}};
    const dg_status st = dg_file_write_atomic(path, parts, 2);
    dg_free(head.p);
    return st;
}
