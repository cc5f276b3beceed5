/* app/export_cmd.c -- `dgseg export`: a checkpoint's model as an ONNX file
 * (nets/onnx.h) for ONNX Runtime and other deployment engines.
 *
 * The checkpoint is opened the way eval and predict open it
 * (app/checkpoint.h): its model is built as an inference instance, loaded,
 * and the weights its method evaluates are resolved (Lookahead's slow
 * weights, SWAD's average, ...; --weights live: the live ones). The
 * network then adds its forward to the graph (dg_model_ops.onnx): eval
 * mode, BatchNorm folded into the convolutions, dropout the identity, the
 * auxiliary head left out, resizes as align-corners bilinear Resize nodes
 * whose sizes the graph computes from its input, so the batch and the
 * spatial size stay symbolic unless --batch / --size fix them.
 *
 * Graph: input "input" (N, C, H, W) float -- for the segmentation models an
 * RGB image scaled to [0, 1] and normalised with ImageNet's mean and std,
 * as `dgseg predict` feeds it; output "logits", (N, K, H, W) for
 * segmentation, (N, K) for classification. The model's metadata_props say
 * so, with the checkpoint's model, classes and output stride. */
#define _POSIX_C_SOURCE 200809L
#include "app/export_cmd.h"

#include "app/checkpoint.h"
#include "app/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "data/labelmap.h"
#include "nets/core/safetensors.h"
#include "nets/model.h"
#include "nets/onnx.h"

typedef struct export_opts {
    const char *checkpoint;
    const char *onnx;
    bool live;
    int64_t h, w;    /* 0: symbolic */
    int64_t batch;   /* 0: symbolic */
} export_opts;

static void export_usage(FILE *f) {
    fprintf(f,
            "usage: dgseg export --checkpoint FILE --onnx OUT.onnx [--size H W] [--batch N]\n"
            "                    [--weights live|method]\n"
            "\n"
            "Writes the checkpoint's model as an ONNX file (opset %d) with the weights its\n"
            "method evaluates, for ONNX Runtime and other engines: eval mode, BatchNorm folded\n"
            "into the convolutions, no auxiliary head. Input \"input\" (N, C, H, W) float32:\n"
            "for segmentation models an RGB image scaled to [0, 1] and normalised with\n"
            "ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), as\n"
            "`dgseg predict` does; output \"logits\": (N, K, H, W) for segmentation models,\n"
            "(N, K) for classifiers.\n"
            "\n"
            "  --checkpoint FILE  a dgseg checkpoint (train's last.safetensors or\n"
            "                     best.safetensors)\n"
            "  --onnx OUT.onnx    the file to write (replaced atomically)\n"
            "  --size H W         fix the input's height and width (default: symbolic, any\n"
            "                     size); a segmentation model wants multiples of its output\n"
            "                     stride\n"
            "  --batch N          fix the batch size (default: symbolic)\n"
            "  --weights live     the live weights training was updating instead of the\n"
            "                     ones the method evaluates (--weights method, the default)\n",
            DG_ONNX_OPSET);
}

/* Returns 0, 2 on a usage error, -1 after --help. */
static int parse_args(int argc, char **argv, export_opts *o) {
    static const struct option longopts[] = {
        {"checkpoint", required_argument, NULL, 'c'}, {"onnx", required_argument, NULL, 'o'},
        {"size", required_argument, NULL, 's'}, {"batch", required_argument, NULL, 'b'},
        {"weights", required_argument, NULL, 'w'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': o->checkpoint = optarg; break;
        case 'o': o->onnx = optarg; break;
        case 's':
            /* --size H W: the width is the next argument */
            if (!dg_cli_parse_int("export", "--size H", optarg, 1, 16384, &o->h)) return 2;
            if (optind >= argc) {
                fprintf(stderr, "dgseg export: --size wants two numbers, H and W\n");
                return 2;
            }
            if (!dg_cli_parse_int("export", "--size W", argv[optind++], 1, 16384, &o->w))
                return 2;
            break;
        case 'b':
            if (!dg_cli_parse_int("export", "--batch", optarg, 1, 65536, &o->batch)) return 2;
            break;
        case 'w':
            if (!dg_ckpt_weights_parse("export", optarg, &o->live)) return 2;
            break;
        case 'h': export_usage(stdout); return -1;
        default:
            fprintf(stderr, "dgseg export: unknown or incomplete option '%s'\n", argv[optind - 1]);
            export_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dgseg export: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o->checkpoint || !o->onnx) {
        fprintf(stderr, "dgseg export: --checkpoint and --onnx are required\n");
        export_usage(stderr);
        return 2;
    }
    return 0;
}

/* The input channels of the checkpoint's first convolution (its weight's
 * second dimension), or 0 with a message. */
static int64_t input_channels(const dg_ckpt *c) {
    static const char *const first[] = {"backbone.conv1.weight",
            "featurizer.network.conv1.weight", "featurizer.conv1.weight"};
    for (size_t i = 0; i < DG_ARRAY_LEN(first); i++) {
        const dg_st_tensor *t = dg_tensor_reader_find(&c->rd, first[i]);
        if (t && t->ndims == 4 && t->shape[1] >= 1 && t->shape[1] <= 64) return t->shape[1];
    }
    dg_log_error("%s: no first convolution ('%s', '%s' or '%s', 4-D) to take the input's "
            "channels from", c->path, first[0], first[1], first[2]);
    return 0;
}

/* The graph of the loaded model c->m with the resolved weights. */
static dg_onnx *build_graph(const dg_ckpt *c, const export_opts *o, int64_t channels) {
    const dg_model *m = &c->m;
    dg_onnx *g = dg_onnx_new(c->meta.model);
    static const char *const sym[4] = {"batch", "channels", "height", "width"};
    const int64_t in[4] = {o->batch ? o->batch : -1, channels, o->h ? o->h : -1,
            o->w ? o->w : -1};
    dg_onnx_input(g, "input", 4, in, sym);
    const char *y = m->ops->onnx(m, g, "input", c->w.params, c->w.stats);
    const char *out = dg_onnx_node(g, "Identity", "logits", 1, &y, 0, NULL);
    DG_ASSERT(!strcmp(out, "logits"));
    const int64_t k = m->opts.classes;
    const int64_t seg[4] = {in[0], k, in[2], in[3]}, cls[2] = {in[0], k};
    static const char *const seg_sym[4] = {"batch", "classes", "height", "width"};
    if (c->meta.segmentation) dg_onnx_output(g, out, 4, seg, seg_sym);
    else dg_onnx_output(g, out, 2, cls, seg_sym);
    return g;
}

static int export_run(const export_opts *o) {
    dg_ckpt c;
    dg_status st = dg_ckpt_open(&c, o->checkpoint);
    int64_t channels = st == DG_STATUS_OK ? input_channels(&c) : 0;
    if (st == DG_STATUS_OK && !channels) st = DG_STATUS_ERR_FORMAT;
    if (st == DG_STATUS_OK && c.meta.segmentation && o->h &&
            (o->h % c.meta.output_stride || o->w % c.meta.output_stride)) {
        dg_log_error("--size %lld %lld: %s has output stride %d, which must divide the height "
                "and the width", (long long)o->h, (long long)o->w, c.meta.model,
                c.meta.output_stride);
        st = DG_STATUS_ERR_CONFIG;
    }
    dg_ctx ctx;
    dg_ctx_init(&ctx);
    if (st == DG_STATUS_OK) {
        /* an inference instance at a small size: the graph does not depend
         * on the size the layers were built for */
        const bool mnist = !strcmp(c.meta.model, "mnist-cnn");
        const int64_t side = mnist ? 28 : c.meta.segmentation ? 64 : 32;
        dg_model_opts mo = {.batch = 1, .in_channels = channels, .height = o->h ? o->h : side,
                .width = o->w ? o->w : side, .training = false};
        st = dg_ckpt_load_model(&c, &ctx, &mo, o->live);
    }
    if (st == DG_STATUS_OK) {
        printf("weights: %s\n", c.w.note);
        dg_onnx *g = build_graph(&c, o, channels);
        char classes[24], stride[24];
        snprintf(classes, sizeof(classes), "%lld", (long long)c.m.opts.classes);
        snprintf(stride, sizeof(stride), "%d", c.meta.segmentation ? c.meta.output_stride : 0);
        const char *meta[] = {
                "model", c.meta.model,
                "classes", classes,
                "output_stride", stride,
                "weights", c.w.note,
                "input", c.meta.segmentation
                        ? "RGB in [0, 1], normalised by mean (0.485, 0.456, 0.406) and std "
                          "(0.229, 0.224, 0.225), (N, 3, H, W)"
                        : "the classification trainer's input, (N, C, H, W): DomainBed images "
                          "RGB in [0, 1] normalised by ImageNet's mean and std, Rotated "
                          "Fashion-MNIST pixel / 255",
                "logits", c.meta.segmentation ? "(N, classes, H, W), Cityscapes trainIds"
                                              : "(N, classes)",
        };
        const char doc[] = "Exported by dgseg export: eval mode, BatchNorm folded into the "
                           "convolutions, no auxiliary head.";
        st = dg_onnx_write(g, o->onnx, DG_VERSION, doc, (int)DG_ARRAY_LEN(meta) / 2, meta);
        if (st == DG_STATUS_OK)
            printf("wrote %s: %s, %lld classes, %.1f MB\n", o->onnx, c.meta.model,
                    (long long)c.m.opts.classes, (double)dg_onnx_graph_bytes(g) / 1e6);
        dg_onnx_free(g);
    }
    dg_ckpt_close(&c);
    dg_ctx_free(&ctx);
    return dg_cli_exit_code(st);
}

int dg_export_main(int argc, char **argv) {
    export_opts o;
    const int rc = parse_args(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    return export_run(&o);
}
