/* nets/onnx.h -- an ONNX graph built in memory and written as an ONNX model
 * file (`dgseg export --onnx`), without a protobuf library.
 *
 * The file is a ModelProto (onnx/onnx.proto, IR version 7, the default
 * operator set at version DG_ONNX_OPSET): protobuf's wire format (varints,
 * length-delimited submessages, little-endian fixed 32-bit floats) written
 * by hand for the handful of messages a feed-forward graph needs --
 * ModelProto, OperatorSetIdProto, StringStringEntryProto, GraphProto,
 * NodeProto, AttributeProto, TensorProto (raw_data), ValueInfoProto,
 * TypeProto.Tensor, TensorShapeProto. Protobuf lets a message's fields come
 * in any order, so nodes and initializers are serialized into the graph's
 * bytes as they are added (an initializer's data is copied once) and the
 * model is written as a short header, the graph's tag and length and the
 * graph's bytes.
 *
 * The networks add their own nodes (dg_model_ops.onnx, mirroring their
 * forward); the helpers below name values, add the operators dgseg's
 * layers map to and keep the int64 constants their shape arithmetic needs.
 * Value names are interned in the graph; a hint already taken gets a
 * suffix (".1", ".2", ...). */
#ifndef DG_ONNX_H
#define DG_ONNX_H

#include "nets/core/common.h"

#define DG_ONNX_OPSET 13
#define DG_ONNX_IR_VERSION 7

typedef struct dg_onnx dg_onnx;

dg_onnx *dg_onnx_new(const char *graph_name);
void dg_onnx_free(dg_onnx *g);

/* A graph input or output of element type float: dims[i] >= 0 is fixed,
 * < 0 symbolic with the name sym[i]. */
void dg_onnx_input(dg_onnx *g, const char *name, int ndims, const int64_t *dims,
        const char *const *sym);
void dg_onnx_output(dg_onnx *g, const char *name, int ndims, const int64_t *dims,
        const char *const *sym);

/* An f32 initializer (data copied) named `hint` (made unique); returns the
 * interned name. */
const char *dg_onnx_f32(dg_onnx *g, const char *hint, int ndims, const int64_t *dims,
        const float *data);
/* A 1-D int64 initializer of n values, shared: the same values give the
 * same name ("i64:v0,v1,..."). */
const char *dg_onnx_i64(dg_onnx *g, int n, const int64_t *values);

/* One attribute of a node: INT, FLOAT, STRING or INTS. */
typedef enum { DG_ONNX_INT, DG_ONNX_FLOAT, DG_ONNX_STRING, DG_ONNX_INTS } dg_onnx_attr_type;
typedef struct dg_onnx_attr {
    const char *name;
    dg_onnx_attr_type type;
    int64_t i;
    float f;
    const char *s;
    int n_ints;
    const int64_t *ints;
} dg_onnx_attr;

/* A node of operator `op` with n_in inputs ("" for an absent optional
 * input) and one output named after `hint` (made unique); returns the
 * output's name. */
const char *dg_onnx_node(dg_onnx *g, const char *op, const char *hint, int n_in,
        const char *const *in, int n_attr, const dg_onnx_attr *attr);

/* ---- the operators dgseg's layers map to ----------------------------------- */

/* Conv: x (N, IC, H, W), weight w (OC, IC, k, k) and bias b (OC) (NULL:
 * none) given as data (copied into initializers named wname.weight /
 * wname.bias), square kernel, symmetric padding. */
const char *dg_onnx_conv(dg_onnx *g, const char *wname, const char *x, int64_t oc, int64_t ic,
        int64_t k, int64_t stride, int64_t pad, int64_t dilation, const float *w,
        const float *b);
const char *dg_onnx_relu(dg_onnx *g, const char *hint, const char *x);
const char *dg_onnx_add(dg_onnx *g, const char *hint, const char *a, const char *b);
/* Concat along channels (axis 1). */
const char *dg_onnx_concat(dg_onnx *g, const char *hint, int n, const char *const *x);
/* MaxPool, square window, symmetric padding, floor rounding. */
const char *dg_onnx_maxpool(dg_onnx *g, const char *hint, const char *x, int64_t k,
        int64_t stride, int64_t pad);
const char *dg_onnx_global_avgpool(dg_onnx *g, const char *hint, const char *x);
/* Bilinear resize of x (N, C, h, w) to the spatial size of `like` (any
 * (N', C', H, W)), align_corners: Resize with sizes computed in the graph
 * from both shapes, so the batch and spatial size may stay symbolic. */
const char *dg_onnx_resize_like(dg_onnx *g, const char *hint, const char *x, const char *like);
/* Flatten to (N, C*H*W), then Gemm with w (oc, ic) transposed and b (oc). */
const char *dg_onnx_linear(dg_onnx *g, const char *wname, const char *x, int64_t oc, int64_t ic,
        const float *w, const float *b);
/* GroupNorm over `groups` groups of x (N, C, H, W) with gamma, beta (C),
 * eps: Reshape to (N, groups, -1), InstanceNormalization (scale 1, bias 0),
 * Reshape back, Mul by gamma and Add beta (as (C, 1, 1)). */
const char *dg_onnx_groupnorm(dg_onnx *g, const char *wname, const char *x, int64_t c,
        int64_t groups, double eps, const float *gamma, const float *beta);

/* Writes the model (atomically, dg_file_write_atomic): producer "dgseg"
 * version `version`, doc_string `doc`, metadata_props from n_meta
 * key/value pairs meta[2i], meta[2i+1]. DG_STATUS_ERR_IO (logged) when the
 * file cannot be written. */
dg_status dg_onnx_write(const dg_onnx *g, const char *path, const char *version, const char *doc,
        int n_meta, const char *const *meta);

/* Bytes of the graph so far (the model file is a few dozen more). */
size_t dg_onnx_graph_bytes(const dg_onnx *g);

#endif
