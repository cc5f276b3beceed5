/* app/predict.c -- see predict.h. Each input is decoded as RGB, scaled to
 * [0, 1] and normalised with ImageNet's mean and std, and run whole (no
 * resize) through an eval-mode inference instance of the model built for
 * its size; the prediction is the per-pixel argmax of the logits (ties to
 * the lowest class). Inputs of the same size share one instance.
 *
 * A checkpoint is run with the weights its method evaluates (app/checkpoint.h:
 * Lookahead's slow weights, ...), copied out of the recreated method once
 * and loaded into every instance (--weights live: the live weights); plain
 * weights (--model, --weights) are loaded from the file by every instance.
 *
 * Under mpirun (app/dist.h) rank r of N segments inputs r, r + N, ...;
 * every rank writes its own files (the names are unique, checked first),
 * rank 0 prints its lines and the total, and the job fails when any rank
 * failed. */
#define _POSIX_C_SOURCE 200809L
#include "app/predict.h"

#include "app/checkpoint.h"
#include "app/cli.h"
#include "app/dist.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/image_cv.h"
#include "data/labelmap.h"
#include "data/npy.h"
#include "data/png_io.h"
#include "nets/core/weights.h"
#include "nets/model.h"

typedef struct predict_opts {
    const char *checkpoint;
    const char *model;
    const char *weights;
    const char *out;
    int64_t classes;
    int output_stride;
    bool aux;
    bool logits;
    bool overlay;
    bool live;           /* --checkpoint with --weights live */
    char **inputs;
    int n_inputs;
} predict_opts;

static void predict_usage(FILE *f) {
    fprintf(f,
            "usage: dgseg predict (--checkpoint FILE [--weights live|method]\n"
            "                      | --model NAME --weights FILE --classes N)\n"
            "                     --input FILE... --out DIR [--logits] [--overlay]\n"
            "\n"
            "Writes DIR/<name>.png, the predicted classes as a paletted PNG with the Cityscapes\n"
            "colours, for every input image (<name> = file name without extension), with\n"
            "--logits DIR/<name>.npy, the float32 logits (C, H, W) at input resolution, and\n"
            "with --overlay DIR/<name>_overlay.png, an RGB image twice the input's width: the\n"
            "input on the left, on the right the prediction's colours blended 50/50 with it.\n"
            "\n"
            "  --checkpoint FILE  a dgseg checkpoint: the model, classes and output stride\n"
            "                     come from its metadata; the weights are those its method\n"
            "                     evaluates (Lookahead's slow weights, SWAD's average once\n"
            "                     finished, MESA's teacher with optim.mesa_eval_teacher;\n"
            "                     otherwise, or for a file without optimizer state, the\n"
            "                     stored weights); the first output line names them\n"
            "  --weights live     with --checkpoint: the live weights training was updating\n"
            "                     (--weights method, the default, as above)\n"
            "  --model NAME       deeplabv3plus-r18 | deeplabv3plus-r50 | deeplabv3plus-r101\n"
            "  --weights FILE     safetensors weights with the model's tensor names\n"
            "  --classes N        number of classes of the weights (19 for Cityscapes)\n"
            "  --input FILE...    images (JPEG, PNG, ... as OpenCV reads them)\n"
            "  --out DIR          output directory (created if missing)\n"
            "  --logits           also write the logits as .npy\n"
            "  --overlay          also write the input | blend image <name>_overlay.png\n");
}

/* 0 ok, 2 usage error, -1 after --help. */
static int parse_args(int argc, char **argv, predict_opts *o) {
    static const struct option longopts[] = {
        {"checkpoint", required_argument, NULL, 'c'}, {"model", required_argument, NULL, 'm'},
        {"weights", required_argument, NULL, 'w'}, {"classes", required_argument, NULL, 'k'},
        {"input", required_argument, NULL, 'i'}, {"out", required_argument, NULL, 'o'},
        {"logits", no_argument, NULL, 'l'}, {"overlay", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->output_stride = 16;
    o->inputs = dg_xcalloc((size_t)argc, sizeof(char *));
    int c;
    optind = 1;
    opterr = 0;
    /* "+": no permutation, so --input can take the arguments after it. */
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': o->checkpoint = optarg; break;
        case 'm': o->model = optarg; break;
        case 'w': o->weights = optarg; break;
        case 'k':
            if (!dg_cli_parse_int("predict", "--classes", optarg, 1, 254, &o->classes)) return 2;
            break;
        case 'i':
            /* --input takes every following argument up to the next option. */
            o->inputs[o->n_inputs++] = optarg;
            while (optind < argc && argv[optind][0] != '-') o->inputs[o->n_inputs++] = argv[optind++];
            break;
        case 'o': o->out = optarg; break;
        case 'l': o->logits = true; break;
        case 'v': o->overlay = true; break;
        case 'h': predict_usage(stdout); return -1;
        default:
            fprintf(stderr, "dgseg predict: unknown or incomplete option '%s'\n", argv[optind - 1]);
            predict_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dgseg predict: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    /* With --checkpoint, --weights chooses which of its weights. */
    if (o->checkpoint && o->weights) {
        if (!dg_ckpt_weights_parse("predict", o->weights, &o->live)) return 2;
        o->weights = NULL;
    }
    const bool by_model = o->model || o->weights || o->classes;
    if (o->checkpoint ? by_model : !(o->model && o->weights && o->classes)) {
        fprintf(stderr, "dgseg predict: give either --checkpoint FILE or all of --model, "
                "--weights and --classes\n");
        return 2;
    }
    if (!o->n_inputs || !o->out) {
        fprintf(stderr, "dgseg predict: --input and --out are required\n");
        return 2;
    }
    if (o->model && !dg_model_is_segmentation(o->model)) {
        fprintf(stderr, "dgseg predict: '%s' is not a segmentation model (deeplabv3plus-r18, "
                "-r50, -r101)\n", o->model);
        return 2;
    }
    return 0;
}

/* Base name without directory and extension, into buf. */
static void stem_of(const char *path, char *buf, size_t size) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, size, "%s", b);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf) *dot = '\0';
}

/* Takes model, classes, output stride and auxiliary head from the
 * checkpoint's metadata (dg_ckpt_open checked them). Returns 0 or 1. */
static int from_checkpoint(predict_opts *o, const dg_ckpt *c) {
    if (!c->meta.segmentation) {
        dg_log_error("%s: model '%s' is not a segmentation model", o->checkpoint, c->meta.model);
        return 1;
    }
    for (size_t i = 0; dg_model_names[i]; i++) /* static: outlives the reader */
        if (!strcmp(dg_model_names[i], c->meta.model)) o->model = dg_model_names[i];
    o->classes = c->meta.classes ? c->meta.classes : DG_NUM_TRAIN_IDS;
    o->output_stride = c->meta.output_stride;
    o->aux = c->meta.aux;
    return 0;
}

/* Per-pixel argmax over C classes of plain (C, H*W) logits. */
static void argmax(const float *z, int64_t c, int64_t hw, uint8_t *out) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < hw; i++) {
        int64_t best = 0;
        for (int64_t k = 1; k < c; k++)
            if (z[k * hw + i] > z[best * hw + i]) best = k;
        out[i] = (uint8_t)best;
    }
}

typedef struct predictor {
    dg_ctx ctx;
    dg_model m;
    bool built;
    int h, w;
    float *params;  /* (d) the method's evaluated weights, owned; NULL: load the file */
    float *stats;   /* (n_stats) their statistics, owned */
    size_t d, n_stats;
    uint64_t version; /* dg_pass.weights_version of m's weights */
} predictor;

/* Plain weights may carry an auxiliary head the inference model lacks. */
static const char *const aux_ignore[] = {"aux."};

/* With --checkpoint: builds the checkpoint's model (training layout, so
 * that its method can be recreated), resolves the weights to run and
 * copies them into p->params / p->stats for every instance. Prints which
 * weights are used. Returns 0 or 1 (logged). */
static int resolve_weights(predictor *p, const predict_opts *o, dg_ckpt *c) {
    dg_model_opts mo = {.batch = 1, .in_channels = 3, .height = 64, .width = 64,
            .training = false};
    dg_status st = dg_ckpt_load_model(c, &p->ctx, &mo, o->live);
    if (st == DG_STATUS_OK) {
        printf("weights: %s\n", c->w.note);
        p->d = c->m.ps.d;
        p->n_stats = c->m.ps.n_stats;
        p->params = dg_xmalloc((p->d ? p->d : 1) * sizeof(float));
        p->stats = dg_xmalloc((p->n_stats ? p->n_stats : 1) * sizeof(float));
        memcpy(p->params, c->w.params, p->d * sizeof(float));
        memcpy(p->stats, c->w.stats, p->n_stats * sizeof(float));
    }
    dg_ckpt_close(c); /* its model was built on p->ctx */
    return dg_cli_exit_code(st);
}

/* (Re)builds the inference instance for an h x w input and loads weights. */
static int predictor_prepare(predictor *p, const predict_opts *o, const dg_tensor_reader *r,
        int h, int w) {
    if (p->built && p->h == h && p->w == w) return 0;
    if (p->built) dg_model_free(&p->m);
    p->built = false;
    dg_model_opts mo = {.batch = 1, .in_channels = 3, .height = h, .width = w,
            .classes = o->classes, .training = false, .output_stride = o->output_stride,
            .aux = o->aux};
    const dg_status st = dg_model_create(&p->m, &p->ctx, o->model, &mo, 0);
    if (st != DG_STATUS_OK) return dg_cli_exit_code(st);
    p->built = true;
    p->h = h, p->w = w;
    p->version = dg_weights_version_new(); /* every image of this size */
    if (p->params) {
        /* same model, classes, stride and head: the resolve instance's layout */
        DG_ASSERT(p->m.ps.d == p->d && p->m.ps.n_stats == p->n_stats);
        memcpy(p->m.ps.data, p->params, p->d * sizeof(float));
        memcpy(p->m.ps.stats, p->stats, p->n_stats * sizeof(float));
        return 0;
    }
    dg_weights_load_opts lo = {.ignore = aux_ignore, .n_ignore = o->aux ? 0 : 1};
    return dg_cli_exit_code(dg_weights_load_reader(r, &p->m.ps, &lo));
}

/* DIR/<stem>_overlay.png: img (H, W, 3) on the left, on the right each
 * pixel's class colour blended 50/50 with it, (a + b + 1) / 2 per channel. */
static int write_overlay(const char *path, const dg_image *img, const uint8_t *cls) {
    const int h = img->h, w = img->w;
    dg_image ov;
    dg_image_init(&ov, h, 2 * w, 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const uint8_t *in = img->data + ((size_t)y * w + x) * 3;
            const uint8_t *col = DG_CITYSCAPES_PALETTE[cls[(size_t)y * w + x]];
            uint8_t *left = ov.data + ((size_t)y * 2 * w + x) * 3, *right = left + (size_t)w * 3;
            for (int k = 0; k < 3; k++) {
                left[k] = in[k];
                right[k] = (uint8_t)((in[k] + col[k] + 1) / 2);
            }
        }
    const int rc = dg_cli_exit_code(dg_image_write_png(path, &ov));
    dg_image_free(&ov);
    return rc;
}

static int predict_one(predictor *p, const predict_opts *o, const dg_tensor_reader *r,
        const char *input) {
    dg_image img;
    if (dg_image_read(input, &img) != DG_STATUS_OK) return 1;
    float *z = NULL;
    uint8_t *cls = NULL;
    int rc = predictor_prepare(p, o, r, img.h, img.w);
    if (rc) goto done;
    dg_image_to_tensor(&img, dg_mem_ptr(p->m.src), DG_IMAGENET_MEAN, DG_IMAGENET_STD);
    dg_pass pass = dg_pass_eval(&p->m.ps);
    pass.weights_version = p->version;
    dg_model_forward(&p->m, &p->ctx, &pass);
    DG_DNNL(dnnl_stream_wait(p->ctx.stream));

    const int64_t c = o->classes, hw = (int64_t)p->h * p->w;
    z = dg_xmalloc((size_t)(c * hw) * sizeof(float));
    int64_t dims[4] = {1, c, p->h, p->w};
    dnnl_memory_desc_t md = dg_md_plain(4, dims, dnnl_nchw);
    dnnl_memory_t plain = dg_mem_new(&p->ctx, &md, z);
    dg_mem_copy(&p->ctx, plain, p->m.logits);
    dnnl_memory_destroy(plain);
    cls = dg_xmalloc((size_t)hw);
    argmax(z, c, hw, cls);

    char stem[256], path[1024];
    stem_of(input, stem, sizeof(stem));
    snprintf(path, sizeof(path), "%s/%s.png", o->out, stem);
    rc = dg_png_write_paletted(path, cls, p->h, p->w, DG_CITYSCAPES_PALETTE, 256) == DG_STATUS_OK
            ? 0 : 1;
    if (!rc && o->logits) {
        snprintf(path, sizeof(path), "%s/%s.npy", o->out, stem);
        int64_t shape[3] = {c, p->h, p->w};
        rc = dg_cli_exit_code(dg_npy_write_f32(path, 3, shape, z));
    }
    if (!rc && o->overlay) {
        snprintf(path, sizeof(path), "%s/%s_overlay.png", o->out, stem);
        rc = write_overlay(path, &img, cls);
    }
    if (!rc) printf("%s -> %s/%s.png\n", input, o->out, stem);

done:
    dg_image_free(&img);
    dg_free(cls);
    dg_free(z);
    return rc;
}

static bool dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* True when stem a's outputs include b's <b>.png: a == b, or with
 * --overlay a == b + "_overlay". */
static bool stems_clash(const char *a, const char *b, bool overlay) {
    const size_t na = strlen(a), nb = strlen(b);
    return !strcmp(a, b)
            || (overlay && nb == na + 8 && !strncmp(a, b, na) && !strcmp(b + na, "_overlay"));
}

/* Two inputs whose outputs have the same name would overwrite each other. */
static bool stems_unique(const predict_opts *o) {
    for (int i = 0; i < o->n_inputs; i++)
        for (int j = 0; j < o->n_inputs; j++) {
            char a[256], b[256];
            stem_of(o->inputs[i], a, sizeof(a));
            stem_of(o->inputs[j], b, sizeof(b));
            if (i != j && stems_clash(a, b, o->overlay)) {
                fprintf(stderr, "dgseg predict: inputs '%s' and '%s' would both write '%s.png'\n",
                        o->inputs[i], o->inputs[j], b);
                return false;
            }
        }
    return true;
}

int dg_predict_main(int argc, char **argv) {
    /* a checkpoint (its weights copied out once), or a plain weights file
     * that every instance loads */
    dg_ckpt c;
    dg_tensor_reader r;
    bool have_r = false;
    predictor p;
    memset(&c, 0, sizeof(c));
    memset(&p, 0, sizeof(p));
    predict_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc || !stems_unique(&o)) {
        rc = rc < 0 ? 0 : 2;
        goto done;
    }
    if (o.checkpoint) {
        const dg_status st = dg_ckpt_open(&c, o.checkpoint);
        rc = st != DG_STATUS_OK ? dg_cli_exit_code(st) : from_checkpoint(&o, &c);
    } else {
        have_r = dg_tensor_reader_open(&r, o.weights) == DG_STATUS_OK;
        rc = have_r ? 0 : 1;
    }
    if (rc) goto done;
    const int mk_err = mkdir(o.out, 0777) != 0 ? errno : 0;
    if (mk_err && !dir_exists(o.out)) {
        dg_log_error("%s: cannot create the output directory: %s", o.out, strerror(mk_err));
        rc = 1;
        goto done;
    }
    dg_ctx_init(&p.ctx);
    if (o.checkpoint) rc = resolve_weights(&p, &o, &c);
    const int ranks = dg_dist_size();
    for (int i = dg_dist_rank(); i < o.n_inputs && !rc; i += ranks)
        rc = predict_one(&p, &o, have_r ? &r : NULL, o.inputs[i]);
    if (ranks > 1) {
        /* every rank gets here, whether its share went well or not */
        if (dg_dist_any(rc != 0) && !rc) rc = 1;
        if (!rc) printf("%d images segmented by %d ranks\n", o.n_inputs, ranks);
    }

done:
    if (p.built) dg_model_free(&p.m);
    dg_free(p.params);
    dg_free(p.stats);
    dg_ctx_free(&p.ctx);
    dg_ckpt_close(&c);
    if (have_r) dg_tensor_reader_close(&r);
    dg_free(o.inputs);
    return rc;
}
