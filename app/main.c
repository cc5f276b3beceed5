/* app/main.c -- the dgseg command line (docs/design.md §4). Exit codes: 0
 * success, 1 runtime failure, 2 usage or configuration error. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "app/bench.h"
#include "app/export_cmd.h"
#include "app/config_cmd.h"
#include "app/dist.h"
#include "app/eval_cmd.h"
#include "app/flatness.h"
#include "app/predict.h"
#include "app/study.h"
#include "app/synth_cmd.h"
#include "app/train.h"
#include "app/verify.h"
#include "nets/core/caps.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    bool reads_config; /* takes CONFIG [section.key=value ...] */
} command;

static const command commands[] = {
    {"synth", dg_synth_main, "write the embedded five-domain street-scene benchmark", false},
    {"train", dg_train_main, "train a segmentation or classification model from a config", true},
    {"eval", dg_eval_main, "evaluate a checkpoint on the targets a config names (mIoU)", true},
    {"verify", dg_verify_main, "check every dataset a config names (counts, problems, histograms)",
            true},
    {"config", dg_config_main, "list every configuration key: default, values, meaning", false},
    {"predict", dg_predict_main,
            "segment images with trained weights (PNG, optional logits, overlay)", false},
    {"bench", dg_bench_main, "time training steps or inference of a model", false},
    {"export", dg_export_main, "write a checkpoint's model as an ONNX file", false},
    {"study", dg_study_main, "run a grid of configs x seeds, resumably, and aggregate it", false},
    {"flatness", dg_flatness_main, "measure the sharpness of a checkpoint's minimum, its landscape",
            true},
    {"report", dg_report_main, "aggregate run and study folders: mean ± sd per method", false},
};

/* Under mpirun: `train`, `eval` and `predict` are data-parallel over the
 * job's ranks (app/dist.h) and start MPI, and `bench` times data-parallel
 * training steps; every other command runs as one process and
 * is refused in a job of N > 1 ranks, where N copies would each do the
 * whole work and write the same files. A job of one rank runs any command
 * as a plain process, without starting MPI. */
static int run_command(const command *c, int argc, char **argv) {
    const bool parallel = !strcmp(c->name, "train") || !strcmp(c->name, "eval") ||
            !strcmp(c->name, "predict") || !strcmp(c->name, "bench");
    if (dg_dist_launched() && !parallel && dg_dist_launched_size() > 1) {
        fprintf(stderr, "dgseg %s: runs as one process; under mpirun with %d ranks only "
                "`dgseg train`, `eval`, `predict` and `bench` are data-parallel (run `dgseg %s` "
                "without mpirun)\n", c->name, dg_dist_launched_size(), c->name);
        return 2;
    }
    if (!parallel) return c->run(argc, argv);
    const dg_status st = dg_dist_init(&argc, &argv);
    if (st != DG_STATUS_OK) return 2;
    return dg_dist_finalize(c->run(argc, argv));
}

/* The keys are described once, in app/config.c's table (`dgseg config`),
 * so no command's own help keeps a copy that could drift: `COMMAND --help`
 * of a command that reads a CONFIG ends by pointing there. */
static bool is_help(const char *arg) { return !strcmp(arg, "--help") || !strcmp(arg, "-h"); }

/* A Release build's own code uses the instructions of x86-64 level
 * DG_MARCH (CMakeLists.txt); on a CPU below it the first of them would end
 * the process with SIGILL. This check runs before main, compiled for the
 * baseline, and says so instead. */
#ifdef DG_MARCH
__attribute__((constructor, target("arch=x86-64"))) static void check_cpu_level(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports(DG_MARCH)) return;
    fputs("dgseg: this build uses instructions of x86-64 level " DG_MARCH " (x86-64-v3: AVX2, "
          "FMA), which this CPU lacks; rebuild on this machine (scripts/setup picks its level) "
          "or configure with cmake -DDG_MARCH=x86-64\n", stderr);
    _exit(2);
}
#endif

static void usage(FILE *f) {
    fprintf(f, "usage: dgseg COMMAND [options]\n       dgseg --help | --version\n\ncommands:\n");
    for (size_t i = 0; i < DG_ARRAY_LEN(commands); i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'dgseg COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--version")) {
        char caps[160];
        dg_caps_describe(dg_caps_get(), caps, sizeof(caps));
        printf("dgseg %s\n%s\n", DG_VERSION, caps);
        return 0;
    }
    if (is_help(argv[1])) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < DG_ARRAY_LEN(commands); i++) {
        if (strcmp(argv[1], commands[i].name)) continue;
        const int rc = run_command(&commands[i], argc - 1, argv + 1);
        if (rc == 0 && commands[i].reads_config && argc == 3 && is_help(argv[2]))
            printf("\nEvery configuration key with its default, values and meaning: dgseg config "
                   "--list\n");
        return rc;
    }
    fprintf(stderr, "dgseg: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
