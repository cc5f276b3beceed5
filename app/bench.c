/* app/bench.c -- `dgseg bench` (docs/design.md §4): times full training steps
 * (forward, loss, backward, optimizer update) or inference of a model on
 * seeded random data. The first two steps are warm-up (primitive creation,
 * lazy reorders) and are not timed. */
#define _POSIX_C_SOURCE 200809L /* struct sigaction (app/cli.h) */
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "app/bench.h"
#include "app/cli.h"
#include "app/closure.h"
#include "app/config.h"
#include "app/dist.h"
#include "data/labelmap.h"
#include "nets/core/loss.h"
#include "nets/core/profile.h"
#include "optimizers/dg_optim.h"
#include "nets/model.h"

typedef struct bench_opts {
    const char *model;
    const char *optimizer;
    const char *dtype;
    bool train;
    bool json;
    bool profile;
    int64_t size, batch;
    int threads, steps;
    int winograd;     /* DG_WINOGRAD_* */
    char *over[32];   /* optim.KEY=VALUE settings of --optimizer's method */
    int n_over;
} bench_opts;

/* Per-model defaults: input channels, natural input size, classes, batch
 * (DeepLab: Cityscapes' trainIds; MNIST-CNN: Fashion-MNIST's 10 classes;
 * the ResNets: PACS' 7). */
typedef struct bench_model {
    const char *name;
    int64_t channels, size, classes, batch;
} bench_model;

static const bench_model bench_models[] = {
    {"deeplabv3plus-r18", 3, 256, DG_NUM_TRAIN_IDS, 2},
    {"deeplabv3plus-r50", 3, 256, DG_NUM_TRAIN_IDS, 2},
    {"deeplabv3plus-r101", 3, 256, DG_NUM_TRAIN_IDS, 2},
    {"mnist-cnn", 1, 28, 10, 64},
    {"resnet18", 3, 224, 7, 32},
    {"resnet50", 3, 224, 7, 32},
};

static void bench_usage(FILE *f) {
    fprintf(f,
            "usage: dgseg bench --model NAME [--size S] [--batch B] [--threads T] [--steps N]\n"
            "                   [--mode train|infer] [--optimizer METHOD] [--dtype f32|bf16]\n"
            "                   [--winograd auto|on|off] [--profile] [--json]\n"
            "                   [optim.KEY=VALUE ...]\n"
            "\n"
            "Times training steps (forward, backward, optimizer update) or inference on random\n"
            "data and reports images/s, achieved GFLOP/s (convolution and inner-product FLOPs,\n"
            "backward counted), peak RSS and oneDNN's sgemm GFLOP/s (2048^2) in the same process.\n"
            "\n"
            "  --model NAME       model to build; available:");
    for (size_t i = 0; i < DG_ARRAY_LEN(bench_models); i++) fprintf(f, " %s", bench_models[i].name);
    fprintf(f, "\n"
            "  --size S           input height and width (default: the model's natural size)\n"
            "  --batch B          images per step (default 2 for segmentation, 64 for mnist-cnn,\n"
            "                     32 for resnet18/50)\n"
            "  --threads T        OpenMP threads (default: OMP_NUM_THREADS or all cores)\n"
            "  --steps N          timed steps after 2 warm-up steps (default 20)\n"
            "  --mode train|infer training steps or eval-mode inference (default train)\n"
            "  --optimizer METHOD training method (erm, lookahead, swad, sam, asam, lookbehind-sam,\n"
            "                     lookbehind-asam, dgsam, saf, mesa; default erm: plain SGD).\n"
            "                     Other than erm, ERM and METHOD steps are timed alternately in\n"
            "                     the same process and their ratio is printed; dgsam splits the\n"
            "                     batch into two domains; saf needs a classifier model.\n"
            "                     optim.KEY=VALUE sets the method's [optim] keys (e.g.\n"
            "                     optim.la_reg=average for LA+WA); the base is SGD\n"
            "  --dtype f32|bf16   compute type (default f32)\n"
            "  --winograd auto|on|off  Winograd for dense 3x3 convolutions (model.winograd;\n"
            "                     auto: on for inference and the classifiers' training,\n"
            "                     off for DeepLab's training)\n"
            "  --profile          also time every oneDNN primitive (waiting for each) and the\n"
            "                     loss and optimizer loops: time per phase (forward,\n"
            "                     backward-data, backward-weights, reorders, BN/ReLU/\n"
            "                     elementwise, loss, optimizer), per primitive kind and per\n"
            "                     convolution shape with its GFLOP/s (ERM steps only)\n"
            "  --json             print one JSON object instead of text\n"
            "\n"
            "Under mpirun -np N (N > 1): data-parallel ERM training steps as `dgseg train`\n"
            "takes them (--batch is the whole batch, B/N per rank, --threads per rank,\n"
            "synchronised BatchNorm, gradient sums started during backward); rank 0 adds\n"
            "the communication per step: time in collectives, MB summed, the wait after\n"
            "backward against a blocking sum of the gradient, the fraction hidden.\n");
}

/* Returns 0 on success, 2 on a usage error, -1 after --help. */
static int parse_args(int argc, char **argv, bench_opts *o) {
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'}, {"size", required_argument, NULL, 's'},
        {"batch", required_argument, NULL, 'b'}, {"threads", required_argument, NULL, 't'},
        {"steps", required_argument, NULL, 'n'}, {"mode", required_argument, NULL, 'M'},
        {"optimizer", required_argument, NULL, 'o'}, {"dtype", required_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'},
        {"profile", no_argument, NULL, 'p'}, {"winograd", required_argument, NULL, 'w'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->optimizer = "erm";
    o->dtype = "f32";
    o->train = true;
    o->steps = 20;
    int64_t v;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 's':
            if (!dg_cli_parse_int("bench", "--size", optarg, 1, 16384, &o->size)) return 2;
            break;
        case 'b':
            if (!dg_cli_parse_int("bench", "--batch", optarg, 1, 65536, &o->batch)) return 2;
            break;
        case 't': if (!dg_cli_parse_int("bench", "--threads", optarg, 1, 4096, &v)) return 2;
            o->threads = (int)v;
            break;
        case 'n': if (!dg_cli_parse_int("bench", "--steps", optarg, 1, 1000000, &v)) return 2;
            o->steps = (int)v;
            break;
        case 'M':
            if (strcmp(optarg, "train") && strcmp(optarg, "infer")) {
                fprintf(stderr, "dgseg bench: --mode wants train or infer, got '%s'\n", optarg);
                return 2;
            }
            o->train = !strcmp(optarg, "train");
            break;
        case 'o': o->optimizer = optarg; break;
        case 'd': o->dtype = optarg; break;
        case 'j': o->json = true; break;
        case 'p': o->profile = true; break;
        case 'w':
            if (!strcmp(optarg, "auto")) o->winograd = DG_WINOGRAD_AUTO;
            else if (!strcmp(optarg, "on")) o->winograd = DG_WINOGRAD_ON;
            else if (!strcmp(optarg, "off")) o->winograd = DG_WINOGRAD_OFF;
            else {
                fprintf(stderr, "dgseg bench: --winograd wants auto, on or off, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'h': bench_usage(stdout); return -1;
        default:
            fprintf(stderr, "dgseg bench: unknown or incomplete option '%s'\n", argv[optind - 1]);
            bench_usage(stderr);
            return 2;
        }
    }
    for (int i = optind; i < argc; i++) {
        if (strncmp(argv[i], "optim.", 6) || !strchr(argv[i], '=') ||
                o->n_over == (int)DG_ARRAY_LEN(o->over)) {
            fprintf(stderr, "dgseg bench: unexpected argument '%s' (only optim.KEY=VALUE "
                    "settings of the method may follow the options)\n", argv[i]);
            return 2;
        }
        o->over[o->n_over++] = argv[i];
    }
    if (o->profile && strcmp(o->optimizer, "erm")) {
        fprintf(stderr, "dgseg bench: --profile times ERM steps; it does not combine with "
                "--optimizer %s\n", o->optimizer);
        return 2;
    }
    if (!o->model) {
        fprintf(stderr, "dgseg bench: --model is required\n");
        bench_usage(stderr);
        return 2;
    }
    if (strcmp(o->dtype, "f32") && strcmp(o->dtype, "bf16")) {
        fprintf(stderr, "dgseg bench: --dtype wants f32 or bf16, got '%s'\n", o->dtype);
        return 2;
    }
    return 0;
}

/* w -= lr * g over the flat buffers. */
static void sgd_update(float *w, const float *g, size_t d, float lr) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < d; i++) w[i] -= lr * g[i];
}

/* What the CPU runs ("cpu": {"isa", "bf16": native|emulated|no, "winograd":
 * onednn|dgseg, "onednn"}): figures are comparable only within one ISA. */
static void add_cpu(cJSON *j) {
    const dg_caps *c = dg_caps_get();
    cJSON *cpu = cJSON_AddObjectToObject(j, "cpu");
    cJSON_AddStringToObject(cpu, "isa", c->isa_name);
    cJSON_AddStringToObject(cpu, "bf16", c->bf16 ? (c->bf16_native ? "native" : "emulated")
                                                 : "no");
    cJSON_AddStringToObject(cpu, "winograd", c->winograd ? "onednn" : "dgseg");
    cJSON_AddStringToObject(cpu, "onednn", c->dnnl_version);
}

/* A data-parallel bench's communication, per timed step, on rank 0
 * (app/dist.h dg_dist_comm). */
typedef struct bench_comm {
    int ranks;
    double seconds;   /* in collectives, waiting for other ranks included */
    double exposed;   /* of the gradient's sums, waited for after backward */
    double blocking;  /* one blocking sum of the whole gradient, timed alone */
    double mb;        /* megabytes summed (this rank's buffers) */
    double early;     /* fraction of the gradient's buckets started during backward */
} bench_comm;

/* Of a blocking sum's time, the part the step did not wait for. */
static double comm_hidden(const bench_comm *c) {
    if (!(c->blocking > 0)) return 0.0;
    const double h = 1.0 - c->exposed / c->blocking;
    return h < 0 ? 0.0 : h > 1 ? 1.0 : h;
}

/* ips, gflops and sgemm are the whole job's (ranks summed); comm is NULL
 * in one process. */
static void print_result(const bench_opts *o, const char *model, double ips, double gflops,
        double sgemm, double rss, double ms, const bench_comm *comm) {
    if (!o->json) {
        printf("model %s | mode %s | dtype %s | batch %lld | size %lld | threads %d%s | steps %d "
               "| ISA %s\n", model, o->train ? "train" : "infer", o->dtype, (long long)o->batch,
                (long long)o->size, o->threads, comm ? " per rank" : "", o->steps,
                dg_caps_get()->isa_name);
        if (comm)
            printf("ranks %d | %lld images per rank | synchronised BatchNorm\n", comm->ranks,
                    (long long)o->batch / comm->ranks);
        printf("%.1f images/s | %.2f ms/step | %.1f GFLOP/s | sgemm %.1f GFLOP/s (%.0f%%) | "
                "peak RSS %.0f MB%s\n", ips, ms, gflops, sgemm, 100.0 * gflops / sgemm, rss,
                comm ? " (rank 0)" : "");
        if (comm)
            printf("communication: %.2f ms/step in collectives (%.1f%% of the step) | %.1f MB "
                   "summed/step | gradient waited after backward %.2f ms/step | blocking sum "
                   "of the gradient %.2f ms | %.0f%% of it hidden behind backward | %.0f%% of "
                   "buckets started during backward\n", 1e3 * comm->seconds,
                    100.0 * comm->seconds / (ms * 1e-3), comm->mb, 1e3 * comm->exposed,
                    1e3 * comm->blocking, 100.0 * comm_hidden(comm), 100.0 * comm->early);
        if (o->profile) {
            printf("\n");
            dg_profile_print(stdout, o->steps, ms * 1e-3 * o->steps);
        }
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", model);
    cJSON_AddStringToObject(j, "mode", o->train ? "train" : "infer");
    cJSON_AddStringToObject(j, "dtype", o->dtype);
    cJSON_AddNumberToObject(j, "batch", (double)o->batch);
    cJSON_AddNumberToObject(j, "size", (double)o->size);
    cJSON_AddNumberToObject(j, "threads", o->threads);
    cJSON_AddNumberToObject(j, "steps", o->steps);
    cJSON_AddNumberToObject(j, "images_per_s", ips);
    cJSON_AddNumberToObject(j, "gflops_per_s", gflops);
    cJSON_AddNumberToObject(j, "sgemm_gflops_per_s", sgemm);
    cJSON_AddNumberToObject(j, "peak_rss_mb", rss);
    add_cpu(j);
    if (comm) {
        cJSON *c = cJSON_AddObjectToObject(j, "comm");
        cJSON_AddNumberToObject(c, "ranks", comm->ranks);
        cJSON_AddNumberToObject(c, "s_per_step", comm->seconds);
        cJSON_AddNumberToObject(c, "fraction", comm->seconds / (ms * 1e-3));
        cJSON_AddNumberToObject(c, "mb_per_step", comm->mb);
        cJSON_AddNumberToObject(c, "exposed_s_per_step", comm->exposed);
        cJSON_AddNumberToObject(c, "blocking_s", comm->blocking);
        cJSON_AddNumberToObject(c, "hidden_fraction", comm_hidden(comm));
        cJSON_AddNumberToObject(c, "early_buckets", comm->early);
    }
    if (o->profile) {
        int n;
        const dg_profile_row *rows = dg_profile_rows(&n);
        cJSON *arr = cJSON_AddArrayToObject(j, "profile");
        for (int i = 0; i < n; i++) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "kind", rows[i].kind);
            cJSON_AddStringToObject(r, "phase", dg_profile_phase(rows[i].kind));
            cJSON_AddStringToObject(r, "shape", rows[i].shape);
            cJSON_AddNumberToObject(r, "ms_per_step", 1e3 * rows[i].seconds / o->steps);
            cJSON_AddNumberToObject(r, "calls_per_step", (double)rows[i].calls / o->steps);
            cJSON_AddNumberToObject(r, "gflops_per_s", rows[i].flops > 0 && rows[i].seconds > 0
                            ? rows[i].flops * (double)rows[i].calls / rows[i].seconds * 1e-9
                            : 0.0);
            cJSON_AddItemToArray(arr, r);
        }
    }
    char *s = cJSON_PrintUnformatted(j);
    printf("%s\n", s);
    cJSON_free(s);
    cJSON_Delete(j);
}

static void print_method(const bench_opts *o, const char *model, double ms, double erm_ms,
        double rss) {
    if (!o->json) {
        printf("model %s | optimizer %s | batch %lld | size %lld | threads %d | steps %d each\n",
                model, o->optimizer, (long long)o->batch, (long long)o->size, o->threads,
                o->steps);
        printf("%s %.2f ms/step | erm %.2f ms/step | %.3fx erm | peak RSS %.0f MB\n", o->optimizer,
                ms, erm_ms, ms / erm_ms, rss);
        return;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", model);
    cJSON_AddStringToObject(j, "mode", "train");
    cJSON_AddStringToObject(j, "dtype", o->dtype);
    cJSON_AddStringToObject(j, "optimizer", o->optimizer);
    cJSON_AddNumberToObject(j, "batch", (double)o->batch);
    cJSON_AddNumberToObject(j, "size", (double)o->size);
    cJSON_AddNumberToObject(j, "threads", o->threads);
    cJSON_AddNumberToObject(j, "steps", o->steps);
    cJSON_AddNumberToObject(j, "images_per_s", (double)o->batch / ms * 1e3);
    cJSON_AddNumberToObject(j, "ms_per_step", ms);
    cJSON_AddNumberToObject(j, "erm_ms_per_step", erm_ms);
    cJSON_AddNumberToObject(j, "ratio_to_erm", ms / erm_ms);
    cJSON_AddNumberToObject(j, "peak_rss_mb", rss);
    add_cpu(j);
    char *s = cJSON_PrintUnformatted(j);
    printf("%s\n", s);
    cJSON_free(s);
    cJSON_Delete(j);
}

/* Times `steps` steps of method `name` against `steps` of ERM, alternating
 * blocks of 5 so that machine drift hits both alike. *ms and *erm_ms get
 * the mean step times. Returns 0, or 2 when the method cannot be created. */
static int bench_methods(const bench_opts *o, const bench_model *bm, dg_ctx *ctx, dg_model *m,
        const int32_t *label, double *ms, double *erm_ms) {
    const bool seg = dg_model_is_segmentation(bm->name);
    const bool dgsam = !strcmp(o->optimizer, "dgsam");
    if (dgsam && (o->batch < 2 || o->batch % 2)) {
        fprintf(stderr, "dgseg bench: dgsam splits the batch into 2 domains: --batch must be even\n");
        return 2;
    }
    if (dgsam && seg && o->batch < 4) {
        /* ASPP's image-pooling branch normalises a 1x1 map: one sample gives
         * BatchNorm one value per channel (PyTorch refuses it as well) */
        fprintf(stderr, "dgseg bench: dgsam on %s needs at least 2 images per domain (--batch 4): "
                "with one, the ASPP image-pooling BatchNorm sees one value per channel\n",
                bm->name);
        return 2;
    }
    dg_train_closure tc;
    if (dg_train_closure_init(&tc, ctx, m, dgsam ? 2 : 1, dgsam, 0.f) != DG_STATUS_OK) return 2;
    const size_t nx = (size_t)(o->batch * bm->channels * o->size * o->size);
    float *x = dg_xmalloc(nx * sizeof(float));
    memcpy(x, dg_mem_ptr(m->src), nx * sizeof(float));
    int64_t *sample_id = dg_xmalloc((size_t)o->batch * sizeof(int64_t));
    for (int64_t i = 0; i < o->batch; i++) sample_id[i] = i;
    int64_t ld[4];
    dg_mem_dims4(m->logits, ld);

    dg_config conf;
    dg_config_defaults(&conf);
    int rc = 0;
    for (int i = 0; i < o->n_over && rc == 0; i++)
        if (dg_config_set(&conf, o->over[i]) != DG_STATUS_OK) rc = 2;
    dg_method_cfg mc = conf.optim;
    dg_config_free(&conf);
    mc.n_samples = (long)o->batch;
    mc.n_classes = (int)bm->classes;
    mc.logits_numel = (size_t)(ld[0] * ld[1] * ld[2] * ld[3]);
    mc.segmentation = seg;
    mc.saf_start_epoch = 1; /* active from the bench's epoch 10 on */
    mc.mesa_start_epoch = 1;
    dg_method *erm = NULL, *meth = NULL;
    if (rc == 0 && (dg_method_create("erm", "sgd", &mc, &m->ps, 0, &erm) != DG_STATUS_OK ||
            dg_method_create(o->optimizer, "sgd", &mc, &m->ps, 0, &meth) != DG_STATUS_OK))
        rc = 2;
    const bool saf = !strcmp(o->optimizer, "saf");
    double t_erm = 0, t_m = 0;
    const int block = 5, warm = 2;
    for (int done = 0; rc == 0 && done < o->steps; done += block) {
        for (int which = 0; which < 2; which++) {
            dg_method *cur = which ? meth : erm;
            tc.method = cur;
            int nsteps = done == 0 ? block + warm : block;
            double t0 = 0;
            for (int s = 0; s < nsteps; s++) {
                if (s == nsteps - block) t0 = dg_now();
                /* SAF: one epoch per step, so its bank turns over */
                int epoch = saf && which ? 10 + (int)cur->t : 10;
                dg_train_closure_set_batch(&tc, x, label, sample_id, epoch, cur->t);
                dg_method_step(cur, &m->ps, &tc.cl, 1e-3f);
            }
            *(which ? &t_m : &t_erm) += dg_now() - t0;
        }
    }
    int blocks = (o->steps + block - 1) / block;
    *ms = t_m / (blocks * block) * 1e3;
    *erm_ms = t_erm / (blocks * block) * 1e3;
    dg_method_free(erm);
    dg_method_free(meth);
    dg_train_closure_free(&tc);
    dg_free(x);
    dg_free(sample_id);
    return rc;
}

/* Under mpirun with N > 1 ranks (app/dist.h): ERM training steps taken as
 * `mpirun -np N dgseg train` takes them -- the training closure on this
 * rank's share of the batch, synchronised BatchNorm, the gradient summed
 * in buckets while backward runs -- then the same SGD update as one
 * process's bench. Afterwards, with profiling off, three blocking sums of
 * the whole gradient are timed alone: what the step would wait without
 * the overlap. Returns the mean step time; *comm gets this rank's
 * communication per step. */
static double bench_parallel(const bench_opts *o, dg_ctx *ctx, dg_model *m, const int32_t *label,
        bench_comm *comm) {
    dg_train_closure tc;
    if (dg_train_closure_init(&tc, ctx, m, 1, false, 0.f) != DG_STATUS_OK) return -1;
    dg_train_closure_replicas(&tc, true);
    const int warmup = 2;
    double t0 = 0;
    dg_dist_comm c0 = {0};
    for (int s = 0; s < warmup + o->steps; s++) {
        if (s == warmup) {
            dg_dist_barrier();
            dg_profile_reset();
            c0 = dg_dist_comm_total();
            t0 = dg_now();
        }
        dg_train_closure_set_batch(&tc, dg_mem_ptr(m->src), label, NULL, 0, s);
        tc.cl.eval(tc.cl.ctx, DG_DOMAIN_ALL, DG_CLOSURE_BN_UPDATE);
        const double tp = dg_profile_begin();
        sgd_update(m->ps.data, m->ps.grad, m->ps.d, 1e-3f);
        dg_profile_end("optimizer", tp);
    }
    const double dt = (dg_now() - t0) / o->steps;
    const dg_dist_comm c1 = dg_dist_comm_total();
    const bool prof = dg_profile_enabled();
    dg_profile_enable(false);
    dg_dist_barrier();
    const int reps = 3;
    double tb = dg_now();
    for (int k = 0; k < reps; k++) {
        dg_dist_reducer r;
        dg_dist_reducer_begin(&r, m->ps.grad, m->ps.d);
        dg_dist_reducer_end(&r);
    }
    tb = (dg_now() - tb) / reps;
    dg_profile_enable(prof);
    const uint64_t buckets = c1.buckets - c0.buckets;
    *comm = (bench_comm){.ranks = dg_dist_size(), .seconds = (c1.seconds - c0.seconds) / o->steps,
            .exposed = (c1.exposed - c0.exposed) / o->steps, .blocking = tb,
            .mb = 1e-6 * (double)(c1.bytes - c0.bytes) / o->steps,
            .early = buckets ? (double)(c1.early - c0.early) / (double)buckets : 0.0};
    dg_train_closure_free(&tc);
    return dt;
}

/* What a bench of N > 1 ranks times (ERM training steps, a batch every
 * rank takes an equal share of); prints why not on rank 0. */
static bool parallel_ok(const bench_opts *o, int n) {
    const char *why = !o->train ? "--mode infer (inference runs no collective: time one process)"
            : strcmp(o->optimizer, "erm") ? "--optimizer other than erm"
            : o->batch % n ? "a --batch that is not a multiple of the ranks" : NULL;
    if (why && dg_dist_is_root())
        fprintf(stderr, "dgseg bench: under mpirun with %d ranks bench times data-parallel ERM "
                "training steps of a batch split evenly over the ranks; not %s\n", n, why);
    return why == NULL;
}

int dg_bench_main(int argc, char **argv) {
    bench_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    const bench_model *bm = NULL;
    for (size_t i = 0; i < DG_ARRAY_LEN(bench_models); i++)
        if (!strcmp(bench_models[i].name, o.model)) bm = &bench_models[i];
    if (!bm) {
        fprintf(stderr, "dgseg bench: unknown model '%s' (available:", o.model);
        for (size_t i = 0; i < DG_ARRAY_LEN(bench_models); i++)
            fprintf(stderr, " %s", bench_models[i].name);
        fprintf(stderr, ")\n");
        return 2;
    }
    if (!o.size) o.size = bm->size;
    if (!o.batch) o.batch = bm->batch;
    if (o.threads) omp_set_num_threads(o.threads);
    o.threads = omp_get_max_threads();
    const int n_ranks = dg_dist_size(), rank = dg_dist_rank();
    if (n_ranks > 1 && !parallel_ok(&o, n_ranks)) return 2;

    dg_ctx ctx;
    dg_ctx_init(&ctx);
    if (o.profile) dg_profile_enable(true);
    dg_model m;
    dg_model_opts mo = {.batch = o.batch / n_ranks, .in_channels = bm->channels, .height = o.size,
            .width = o.size, .classes = bm->classes, .training = o.train, .output_stride = 16,
            .winograd = o.winograd, .bf16 = !strcmp(o.dtype, "bf16")};
    if (dg_model_create(&m, &ctx, o.model, &mo, 0) != DG_STATUS_OK) {
        dg_profile_free();
        dg_ctx_free(&ctx);
        return 2;
    }
    /* Seeded inputs in [0, 1) and labels in [0, K) of the whole batch;
     * rank r keeps its share, samples r*b .. (r+1)*b-1 (b = batch / N). */
    float *x = dg_mem_ptr(m.src);
    const size_t nx = (size_t)(mo.batch * bm->channels * o.size * o.size);
    int64_t label_dims[4];
    dg_mem_dims4(m.logits, label_dims);
    const size_t nl = (size_t)(label_dims[0] * label_dims[2] * label_dims[3]);
    int32_t *label = dg_xmalloc(nl * sizeof(*label));
    dg_rng r;
    dg_rng_init(&r, 0, DG_RNG_AUGMENT, 0);
    for (size_t i = 0; i < nx * (size_t)n_ranks; i++) {
        const float v = (float)dg_rng_uniform(&r);
        if (i / nx == (size_t)rank) x[i % nx] = v;
    }
    for (size_t i = 0; i < nl * (size_t)n_ranks; i++) {
        const int32_t v = (int32_t)dg_rng_below(&r, (uint64_t)bm->classes);
        if (i / nl == (size_t)rank) label[i % nl] = v;
    }

    dg_loss_ce loss;
    memset(&loss, 0, sizeof(loss));
    dg_loss_ce_cfg lc = {.scale = 1.f};
    if (o.train && n_ranks == 1) dg_loss_ce_init(&loss, &ctx, m.logits, &lc);
    if (o.train && strcmp(o.optimizer, "erm")) {
        double ms = 0, erm_ms = 0;
        rc = bench_methods(&o, bm, &ctx, &m, label, &ms, &erm_ms);
        if (rc == 0) print_method(&o, m.name, ms, erm_ms, dg_bench_peak_rss_mb());
        dg_loss_ce_free(&loss);
        dg_free(label);
        dg_model_free(&m);
        dg_ctx_free(&ctx);
        return rc;
    }
    if (n_ranks > 1) {
        bench_comm comm;
        const double dt = bench_parallel(&o, &ctx, &m, label, &comm);
        const double flops = n_ranks * (m.flops_forward + m.flops_backward);
        const double rss = dg_bench_peak_rss_mb(); /* before the sgemm probe's */
        const double sgemm = n_ranks * dg_bench_sgemm_gflops(2048, 3); /* all ranks at once */
        print_result(&o, m.name, (double)o.batch / dt, flops / dt * 1e-9, sgemm, rss, dt * 1e3,
                &comm);
        dg_profile_free();
        dg_free(label);
        dg_model_free(&m);
        dg_ctx_free(&ctx);
        return 0;
    }
    dg_pass p = o.train ? dg_pass_train(&m.ps) : dg_pass_eval(&m.ps);
    /* inference: the steps reuse the prepared weights, as the images of an
     * evaluation do (dg_pass.weights_version) */
    if (!o.train) p.weights_version = dg_weights_version_new();
    const int warmup = 2;
    double t0 = 0;
    for (int s = 0; s < warmup + o.steps; s++) {
        if (s == warmup) {
            dg_profile_reset();
            t0 = dg_now();
        }
        p.counter = (uint64_t)s;
        dg_model_forward(&m, &ctx, &p);
        if (o.train) {
            double tp = dg_profile_begin();
            dg_loss_ce_compute(&loss, &ctx, label);
            dg_profile_end("loss", tp);
            dg_model_backward(&m, &ctx, &p, loss.diff, NULL);
            DG_DNNL(dnnl_stream_wait(ctx.stream));
            tp = dg_profile_begin();
            sgd_update(m.ps.data, m.ps.grad, m.ps.d, 1e-3f);
            dg_profile_end("optimizer", tp);
        }
        DG_DNNL(dnnl_stream_wait(ctx.stream));
    }
    double dt = (dg_now() - t0) / o.steps;
    double flops = m.flops_forward + (o.train ? m.flops_backward : 0.0);
    const double rss = dg_bench_peak_rss_mb(); /* the model's, before the sgemm probe's */
    double sgemm = dg_bench_sgemm_gflops(2048, 3);
    print_result(&o, m.name, (double)o.batch / dt, flops / dt * 1e-9, sgemm, rss, dt * 1e3,
            NULL);
    dg_profile_free();

    dg_loss_ce_free(&loss);
    dg_free(label);
    dg_model_free(&m);
    dg_ctx_free(&ctx);
    return 0;
}
