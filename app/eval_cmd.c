/* app/eval_cmd.c -- `dgseg eval CONFIG --checkpoint FILE [--json FILE]
 * [--weights live|method] [section.key=value ...]` (docs/design.md §4):
 * evaluates a checkpoint on every target the configuration lists
 * (segmentation: per-class IoU, mIoU, pixel accuracy at each target's
 * protocol resolution) with the weights its method evaluates (see
 * checkpoint.h; MESA's second model as a second row, as training's final
 * evaluation reports it) and prints the table; --json writes the docs/design.md
 * §4 object. The model (name, output stride, auxiliary head) comes from
 * the checkpoint's metadata, the targets and evaluation settings from
 * CONFIG. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/checkpoint.h"
#include "app/cli.h"
#include "app/config.h"
#include "app/dist.h"
#include "app/eval_cmd.h"
#include "app/evaluate.h"
#include "app/results.h"
#include "app/train_data.h"

/* ---- classification ---------------------------------------------------------- */

/* Batch of the classification evaluation instance (eval.batch_size when > 1). */
#define CLS_EVAL_BATCH 128

/* The classification checkpoint c on every domain of cfg's data.dataset,
 * all of its images (in and out splits of the checkpoint's trial): prints
 * a table and, with json, writes docs/design.md §4's classification object.
 * Returns the exit code. */
static int eval_cls(const dg_config *cfg, dg_ckpt *c, bool live, const char *json) {
    dg_ctx ctx;
    dg_ctx_init(&ctx);
    dg_train_data td;
    dg_dataset_spec *specs = NULL;
    int n = 0;
    dg_status st = dg_dataset_specs_parse("data.dataset", cfg->dataset, &specs, &n);
    if (st == DG_STATUS_OK && n != 1) {
        dg_log_error("data.dataset: name one dataset");
        st = DG_STATUS_ERR_CONFIG;
    }
    memset(&td, 0, sizeof(td));
    if (st == DG_STATUS_OK) st = dg_train_data_open(&td, cfg, &specs[0], -1, false);
    if (st == DG_STATUS_OK) {
        /* inference only: a bf16-trained model evaluates in f32 where the
         * CPU has no bf16 (its master weights are f32) */
        dg_model_opts mo = {.batch = cfg->eval_batch_size > 1 ? cfg->eval_batch_size
                                                              : CLS_EVAL_BATCH,
                .training = false, .freeze_bn = cfg->freeze_bn, .dropout = (float)cfg->dropout,
                .winograd = cfg->winograd, .bf16 = cfg->dtype == DG_DTYPE_BF16 && ctx.caps.bf16};
        dg_train_data_model_geometry(&td, &mo);
        st = dg_ckpt_load_model(c, &ctx, &mo, live);
    }
    const dg_ckpt_weights *w = &c->w;
    if (st == DG_STATUS_OK) {
        printf("weights: %s\n", w->note);
        fflush(stdout);
    }
    dg_cls_domain_acc acc[2][DG_TRAIN_MAX_DOMAINS + 1];
    char rot_names[DG_TRAIN_MAX_DOMAINS + 1][16];
    const int n_models = w->params2 ? 2 : 1;
    for (int d = 0; st == DG_STATUS_OK && d < td.n_cls_domains; d++) {
        const dg_holdout_split *sp = &td.split[d];
        dg_rotated_fmnist_domain_name(td.has_rf ? d : 0, rot_names[d], sizeof(rot_names[d]));
        for (int k = 0; k < n_models; k++) {
            const float *P = k ? w->params2 : w->params, *Q = k ? w->stats2 : w->stats;
            double ce, a_in = dg_eval_cls_accuracy(&td, &ctx, &c->m, P, Q, d, false, &ce);
            double a_out = dg_eval_cls_accuracy(&td, &ctx, &c->m, P, Q, d, true, &ce);
            dg_cls_domain_acc *a = &acc[k][d];
            a->name = td.has_rf ? rot_names[d] : td.db.domains[d].name;
            a->images = sp->n_in + sp->n_out;
            a->accuracy = ((sp->n_in ? a_in * (double)sp->n_in : 0) +
                                  (sp->n_out ? a_out * (double)sp->n_out : 0)) /
                    (double)a->images;
            if (!isfinite(a->accuracy)) {
                dg_log_error("%s: domain %s could not be evaluated", cfg->dataset, a->name);
                st = DG_STATUS_ERR_IO;
            }
        }
    }
    if (st == DG_STATUS_OK) {
        printf("\n| domain | images | accuracy (%%) |%s%s%s\n|---|---:|---:|%s\n",
                w->params2 ? " " : "", w->params2 ? w->label2 : "", w->params2 ? " (%) |" : "",
                w->params2 ? "---:|" : "");
        for (int d = 0; d < td.n_cls_domains; d++) {
            printf("| %s | %lld | %.2f |", acc[0][d].name, (long long)acc[0][d].images,
                    100 * acc[0][d].accuracy);
            if (w->params2) printf(" %.2f |", 100 * acc[1][d].accuracy);
            putchar('\n');
        }
        printf("\n(%s%s%s, every image of each domain, eval mode)\n", w->label,
                w->params2 ? "; " : "", w->params2 ? w->label2 : "");
        fflush(stdout);
        if (json && dg_dist_is_root())
            st = dg_report_cls_write_eval_json(c->path, acc[0], td.n_cls_domains, w->label2,
                    w->params2 ? acc[1] : NULL, json);
    }
    dg_dataset_specs_free(specs, n);
    dg_train_data_free(&td);
    dg_ckpt_close(c); /* its model was built on ctx */
    dg_ctx_free(&ctx);
    return dg_cli_exit_code(st);
}

/* ---- the command ----------------------------------------------------------- */

static void eval_usage(FILE *f) {
    fprintf(f,
            "usage: dgseg eval CONFIG --checkpoint FILE [--json FILE] [--weights live|method]\n"
            "                  [section.key=value ...]\n"
            "\n"
            "Evaluates the checkpoint on every data.targets entry of CONFIG (each target's\n"
            "protocol resolution, Mapillary resized to data.eval_height and centre-cropped;\n"
            "whole image, or eval.mode = slide with eval.window/eval.stride, eval.flip)\n"
            "and prints per-target mIoU; --json FILE writes per-class IoU, mIoU, pixel\n"
            "accuracy and the settings used. For a classification CONFIG (data.dataset)\n"
            "it prints the accuracy on every image of every domain (JSON: domains with\n"
            "name, images, accuracy). The model comes from the checkpoint's metadata.\n"
            "\n"
            "  --weights method  (default) the weights the checkpoint's method evaluates, as\n"
            "                    training's final evaluation does: Lookahead's slow weights,\n"
            "                    SWAD's average once finished, otherwise the live weights;\n"
            "                    MESA adds its teacher (or student) as a second row\n"
            "                    (classification: a second column). The\n"
            "                    method is recreated from the checkpoint's metadata; a file\n"
            "                    without optimizer state is evaluated as stored.\n"
            "  --weights live    the live weights training was updating\n"
            "\n"
            "The output names the weights used. Exit codes: 0, 1 runtime failure (a\n"
            "checkpoint that does not load), 2 usage/config error.\n");
}

int dg_eval_main(int argc, char **argv) {
    const char *ckpt = NULL, *json = NULL;
    dg_cli_config_args args = {0};
    bool live = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            eval_usage(stdout);
            dg_free(args.over);
            return 0;
        }
        if (!strcmp(argv[i], "--checkpoint") && i + 1 < argc) ckpt = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--weights") && i + 1 < argc) {
            if (!dg_ckpt_weights_parse("eval", argv[++i], &live)) {
                dg_free(args.over);
                return 2;
            }
        } else if (!dg_cli_config_arg(&args, argv[i])) {
            dg_free(args.over);
            return dg_cli_unexpected("eval", argv[i], eval_usage);
        }
    }
    if (!ckpt) args.config = NULL; /* both are required: usage */
    const char *config = args.config;
    dg_config cfg;
    int crc = dg_cli_config_load(&args, eval_usage, &cfg);
    if (crc) return crc;
    if (cfg.task == DG_TASK_SEGMENTATION && !cfg.targets[0]) {
        dg_log_error("%s: dgseg eval needs data.targets for a segmentation config", config);
        dg_config_free(&cfg);
        return 2;
    }
    /* under mpirun: each rank evaluates every N-th image (segmentation) or
     * batch (classification) and the counts are added (app/evaluate.c) */
    if (dg_dist_size() > 1 && !dg_cli_same_job(&cfg, "eval")) {
        dg_config_free(&cfg);
        return 2;
    }
    dg_ckpt c;
    dg_status st = dg_ckpt_open(&c, ckpt);
    if (st == DG_STATUS_OK && c.meta.segmentation != (cfg.task == DG_TASK_SEGMENTATION)) {
        dg_log_error("%s: a %s checkpoint (model '%s'), but %s is a %s configuration", ckpt,
                c.meta.segmentation ? "segmentation" : "classification", c.meta.model, config,
                cfg.task == DG_TASK_SEGMENTATION ? "segmentation" : "classification");
        st = DG_STATUS_ERR_FORMAT;
    }
    if (st == DG_STATUS_OK) {
        dg_free(cfg.model);
        cfg.model = dg_xstrdup(c.meta.model);
    }
    if (st == DG_STATUS_OK && cfg.task == DG_TASK_CLASSIFICATION) {
        int rc = eval_cls(&cfg, &c, live, json);
        dg_ckpt_close(&c);
        dg_config_free(&cfg);
        return rc;
    }
    dg_ctx ctx;
    dg_ctx_init(&ctx);
    /* The training layout (auxiliary head included when the checkpoint has
     * one): the method's buffers are laid out like it, and the evaluator
     * runs its head-less instances on a prefix of it (eval/seg_infer.h). */
    dg_model_opts mo = {.batch = 1, .in_channels = 3, .height = 64, .width = 64,
            .training = false, .winograd = cfg.winograd,
            /* inference: f32 where the CPU has no bf16 (master weights are f32) */
            .bf16 = cfg.dtype == DG_DTYPE_BF16 && ctx.caps.bf16};
    if (st == DG_STATUS_OK) {
        cfg.output_stride = c.meta.output_stride;
        st = dg_ckpt_load_model(&c, &ctx, &mo, live);
    }
    const dg_ckpt_weights *w = &c.w;
    if (st == DG_STATUS_OK) {
        printf("weights: %s\n", w->note);
        fflush(stdout);
    }
    dg_eval_targets t = {0};
    if (st == DG_STATUS_OK)
        st = dg_eval_seg_targets(&cfg, &ctx, &c.m.ps, w->params, w->stats, w->label, &t);
    if (st == DG_STATUS_OK && w->params2)
        st = dg_eval_seg_targets(&cfg, &ctx, &c.m.ps, w->params2, w->stats2, w->label2, &t);
    if (st == DG_STATUS_OK) {
        dg_eval_print_seg(stdout, t.v, t.n);
        if (json && dg_dist_is_root()) {
            dg_seg_result *res = dg_eval_targets_results(&t);
            dg_seg_report rep = {.checkpoint = ckpt, .results = res, .n_results = t.n};
            st = dg_report_seg_write_json(&rep, json);
            dg_free(res);
        }
    }
    dg_eval_targets_free(&t);
    dg_ckpt_close(&c);
    dg_ctx_free(&ctx);
    dg_config_free(&cfg);
    return dg_cli_exit_code(st);
}
