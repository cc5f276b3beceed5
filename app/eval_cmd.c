/* app/eval_cmd.c -- `dgseg eval CONFIG --checkpoint FILE [--json FILE]
 * [section.key=value ...]` (DESIGN.md §4): evaluates a checkpoint on every
 * target the configuration lists (segmentation: per-class IoU, mIoU, pixel
 * accuracy at each target's protocol resolution) and prints the table;
 * --json writes the DESIGN.md §4 object. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"
#include "app/eval_cmd.h"
#include "app/evaluate.h"
#include "app/report.h"
#include "nets/core/weights.h"

static void eval_usage(FILE *f) {
    fprintf(f,
            "usage: dgseg eval CONFIG --checkpoint FILE [--json FILE] [section.key=value ...]\n"
            "\n"
            "Evaluates the checkpoint on every data.targets entry of CONFIG (whole image at\n"
            "each target's protocol resolution; Mapillary resized to data.eval_height and\n"
            "centre-cropped) and prints per-target mIoU; --json FILE writes per-class IoU,\n"
            "mIoU, pixel accuracy and the settings used. The model comes from the\n"
            "checkpoint's metadata. Exit codes: 0, 1 runtime failure, 2 usage/config error.\n");
}

int dg_eval_main(int argc, char **argv) {
    const char *config = NULL, *ckpt = NULL, *json = NULL;
    char **over = dg_xcalloc((size_t)argc + 1, sizeof(*over));
    int n_over = 0, rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            eval_usage(stdout);
            dg_free(over);
            return 0;
        }
        if (!strcmp(argv[i], "--checkpoint") && i + 1 < argc) ckpt = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (strchr(argv[i], '=') && argv[i][0] != '-') over[n_over++] = argv[i];
        else if (!config && argv[i][0] != '-') config = argv[i];
        else {
            fprintf(stderr, "dgseg eval: unexpected argument '%s'\n", argv[i]);
            rc = 2;
        }
    }
    if (rc || !config || !ckpt) {
        if (!rc) eval_usage(stderr);
        dg_free(over);
        return 2;
    }
    dg_config cfg;
    int crc = dg_config_load_checked(&cfg, config, n_over, over);
    dg_free(over);
    if (crc) return crc;
    if (cfg.task != DG_TASK_SEGMENTATION || !cfg.targets[0]) {
        dg_log_error("%s: dgseg eval needs a segmentation config with data.targets "
                     "(classification runs report their test domains when training)", config);
        dg_config_free(&cfg);
        return 2;
    }
    dg_tensor_reader rd;
    dg_status st = dg_tensor_reader_open(&rd, ckpt);
    const bool opened = st == DG_STATUS_OK;
    const char *model = st == DG_STATUS_OK ? dg_tensor_reader_metadata(&rd, "model") : NULL;
    const char *os = st == DG_STATUS_OK ? dg_tensor_reader_metadata(&rd, "output_stride") : NULL;
    if (st == DG_STATUS_OK && (!model || strncmp(model, "deeplab", 7))) {
        dg_log_error("%s: not a dgseg segmentation checkpoint (metadata 'model' is %s)", ckpt,
                model ? model : "missing");
        st = DG_STATUS_ERR_FORMAT;
    }
    dg_ctx ctx;
    dg_ctx_init(&ctx);
    dg_model m;
    bool have_model = false;
    if (st == DG_STATUS_OK) {
        dg_free(cfg.model);
        cfg.model = dg_xstrdup(model);
        if (os) cfg.output_stride = atol(os);
        dg_model_opts mo = {.batch = 1, .in_channels = 3, .height = 64, .width = 64,
                .classes = 19, .training = false, .output_stride = (int)cfg.output_stride};
        st = dg_model_create(&m, &ctx, cfg.model, &mo, 0);
        have_model = st == DG_STATUS_OK;
    }
    if (st == DG_STATUS_OK) {
        const char *ignore[] = {"aux."};
        dg_weights_load_opts lo = {.ignore = ignore, .n_ignore = 1};
        st = dg_weights_load_reader(&rd, &m.ps, &lo);
        if (st != DG_STATUS_OK) dg_log_error("%s: cannot load the weights", ckpt);
    }
    dg_eval_target t[DG_EVAL_MAX_TARGETS];
    int n = 0;
    if (st == DG_STATUS_OK)
        st = dg_eval_seg_targets(&cfg, &ctx, &m.ps, m.ps.data, m.ps.stats, "checkpoint", t, &n);
    if (st == DG_STATUS_OK) {
        dg_eval_print_seg(stdout, t, n);
        if (json) {
            dg_seg_result res[DG_EVAL_MAX_TARGETS];
            for (int i = 0; i < n; i++) res[i] = t[i].res;
            dg_seg_report rep = {.checkpoint = ckpt, .results = res, .n_results = n};
            st = dg_report_seg_write_json(&rep, json);
        }
    }
    dg_eval_targets_free(t, n);
    if (have_model) dg_model_free(&m);
    dg_ctx_free(&ctx);
    if (opened) dg_tensor_reader_close(&rd);
    dg_config_free(&cfg);
    return st == DG_STATUS_OK ? 0 : st == DG_STATUS_ERR_CONFIG ? 2 : 1;
}
