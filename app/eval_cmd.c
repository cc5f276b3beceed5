/* app/eval_cmd.c -- `dgseg eval CONFIG --checkpoint FILE [--json FILE]
 * [--weights live|method] [section.key=value ...]` (DESIGN.md §4):
 * evaluates a checkpoint on every target the configuration lists
 * (segmentation: per-class IoU, mIoU, pixel accuracy at each target's
 * protocol resolution) with the weights its method evaluates (see
 * eval_cmd.h; MESA's second model as a second row, as training's final
 * evaluation reports it) and prints the table; --json writes the DESIGN.md
 * §4 object. The model (name, output stride, auxiliary head) comes from
 * the checkpoint's metadata, the targets and evaluation settings from
 * CONFIG. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"
#include "app/eval_cmd.h"
#include "app/evaluate.h"
#include "app/report.h"
#include "app/train.h"
#include "data/fsutil.h"
#include "nets/core/weights.h"

/* ---- the weights of a checkpoint ------------------------------------------ */

bool dg_ckpt_weights_parse(const char *cmd, const char *value, bool *live) {
    if (!strcmp(value, "live") || !strcmp(value, "method")) {
        *live = value[0] == 'l';
        return true;
    }
    fprintf(stderr, "dgseg %s: --weights '%s': expected 'live' (the weights training was "
            "updating) or 'method' (the weights the method evaluates, the default)\n", cmd,
            value);
    return false;
}

/* Applies the [optim] keys and train.seed of the checkpoint's resolved
 * configuration `text` (dg_config_write's "key = value" lines) over the
 * defaults in c. The other sections are not needed to recreate the method
 * and are not read. */
static dg_status config_from_text(const char *path, const char *text, dg_config *c) {
    dg_config_defaults(c);
    char *copy = dg_xstrdup(text), *save = NULL, section[32] = "";
    dg_status st = DG_STATUS_OK;
    int line = 0;
    for (char *l = strtok_r(copy, "\n", &save); l && st == DG_STATUS_OK;
            l = strtok_r(NULL, "\n", &save)) {
        line++;
        char *s = dg_str_trim(l), *eq = strchr(s, '=');
        if (*s == '[') {
            snprintf(section, sizeof(section), "%.*s", (int)strcspn(s + 1, "]"), s + 1);
            continue;
        }
        if (!*s || *s == ';' || *s == '#' || !eq) continue;
        *eq = '\0';
        const char *key = dg_str_trim(s), *value = dg_str_trim(eq + 1);
        if (strcmp(section, "optim") && !(!strcmp(section, "train") && !strcmp(key, "seed")))
            continue;
        char *a = dg_xasprintf("%s.%s=%s", section, key, value);
        st = dg_config_set(c, a);
        dg_free(a);
        if (st != DG_STATUS_OK)
            dg_log_error("%s: metadata 'config', [%s] %s (its line %d) does not apply to this "
                    "dgseg; the method cannot be recreated (--weights live evaluates the live "
                    "weights)", path, section, key, line);
    }
    dg_free(copy);
    return st;
}

/* "lookahead slow weights", ... for the weights a method evaluates. */
static void method_label(char *buf, size_t size, const char *method) {
    if (!strcmp(method, "lookahead")) snprintf(buf, size, "lookahead slow weights");
    else if (!strcmp(method, "swad")) snprintf(buf, size, "swad averaged weights");
    else if (!strcmp(method, "mesa")) snprintf(buf, size, "mesa teacher");
    else snprintf(buf, size, "%s evaluated weights", method);
}

dg_status dg_ckpt_weights_resolve(dg_ckpt_weights *w, const dg_tensor_reader *rd,
        const char *path, const dg_param_set *ps, bool live) {
    memset(w, 0, sizeof(*w));
    w->params = ps->data;
    w->stats = ps->stats;
    const char *method = dg_tensor_reader_metadata(rd, "method");
    const char *step = dg_tensor_reader_metadata(rd, "step");
    if (live) {
        w->label = "live weights";
        w->note = dg_xasprintf("live weights of %s (--weights live)", path);
        return DG_STATUS_OK;
    }
    char key[96];
    snprintf(key, sizeof(key), "optim.%s.step", method ? method : "");
    if (!method || !dg_tensor_reader_find(rd, key)) {
        /* train.c's best.safetensors says what it stored in "weights" */
        const char *what = dg_tensor_reader_metadata(rd, "weights");
        w->label = "weights as stored";
        w->note = dg_xasprintf("the weights stored in %s%s%s%s (it holds no %s state)", path,
                what ? " ('" : "", what ? what : "", what ? "' weights)" : "",
                method ? method : "optimizer");
        return DG_STATUS_OK;
    }
    /* Only these evaluate weights other than the live ones; the others
     * (ERM, SAM, ASAM, Lookbehind, DGSAM, SAF) need not be recreated, and
     * SAF's bank could not be (it is shaped by the training set). */
    if (strcmp(method, "lookahead") && strcmp(method, "swad") && strcmp(method, "mesa")) {
        w->label = "live weights";
        w->note = dg_xasprintf("live weights of %s (what %s evaluates, step %s)", path, method,
                step ? step : "?");
        return DG_STATUS_OK;
    }
    const char *text = dg_tensor_reader_metadata(rd, "config");
    if (!text) {
        dg_log_error("%s: holds the state of method '%s' but no metadata 'config' to recreate "
                "it with (--weights live evaluates the live weights)", path, method);
        return DG_STATUS_ERR_FORMAT;
    }
    dg_config c;
    dg_status st = config_from_text(path, text, &c);
    if (st == DG_STATUS_OK && strcmp(c.method, method)) {
        dg_log_error("%s: metadata 'method' is '%s' but its 'config' says optim.method = %s",
                path, method, c.method);
        st = DG_STATUS_ERR_FORMAT;
    }
    if (st == DG_STATUS_OK) {
        dg_method_cfg mc = c.optim;
        /* Run facts: none of them shapes the state a checkpoint stores
         * (MESA's logit scratch is per batch, SAF refuses segmentation). */
        mc.n_samples = 1;
        mc.n_classes = 1;
        mc.logits_numel = 1;
        mc.segmentation = true;
        st = dg_method_create(method, c.base, &mc, ps, (uint64_t)c.seed, &w->method);
        if (st == DG_STATUS_OK) st = dg_method_state_load(w->method, rd);
        if (st != DG_STATUS_OK)
            dg_log_error("%s: the state of method '%s' (base %s) cannot be restored from this "
                    "checkpoint (--weights live evaluates the live weights)", path, method,
                    c.base);
    }
    dg_config_free(&c);
    if (st != DG_STATUS_OK) {
        dg_ckpt_weights_free(w);
        return DG_STATUS_ERR_FORMAT;
    }
    dg_method_eval_weights(w->method, ps, &w->params, &w->stats);
    if (w->params == ps->data) {
        w->label = "live weights";
        w->note = dg_xasprintf("live weights of %s (what %s evaluates at step %s%s)", path,
                method, step ? step : "?",
                !strcmp(method, "swad") ? ": the average is not finished" : "");
    } else {
        method_label(w->buf[0], sizeof(w->buf[0]), method);
        w->label = w->buf[0];
        w->note = dg_xasprintf("%s of %s (step %s)", w->label, path, step ? step : "?");
    }
    const char *l2;
    if (dg_method_second_weights(w->method, &l2, &w->params2, &w->stats2)) {
        snprintf(w->buf[1], sizeof(w->buf[1]), "%s %s", method, l2);
        w->label2 = w->buf[1];
        char *n = dg_xasprintf("%s; second model: %s", w->note, w->label2);
        dg_free(w->note);
        w->note = n;
    }
    return DG_STATUS_OK;
}

void dg_ckpt_weights_free(dg_ckpt_weights *w) {
    dg_method_free(w->method);
    dg_free(w->note);
    memset(w, 0, sizeof(*w));
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
    const char *config = NULL, *ckpt = NULL, *json = NULL;
    char **over = dg_xcalloc((size_t)argc + 1, sizeof(*over));
    int n_over = 0, rc = 0;
    bool live = false;
    for (int i = 1; i < argc && rc == 0; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            eval_usage(stdout);
            dg_free(over);
            return 0;
        }
        if (!strcmp(argv[i], "--checkpoint") && i + 1 < argc) ckpt = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--weights") && i + 1 < argc) {
            if (!dg_ckpt_weights_parse("eval", argv[++i], &live)) rc = 2;
        } else if (strchr(argv[i], '=') && argv[i][0] != '-') over[n_over++] = argv[i];
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
    if (cfg.task == DG_TASK_SEGMENTATION && !cfg.targets[0]) {
        dg_log_error("%s: dgseg eval needs data.targets for a segmentation config", config);
        dg_config_free(&cfg);
        return 2;
    }
    dg_tensor_reader rd;
    dg_status st = dg_tensor_reader_open(&rd, ckpt);
    const bool opened = st == DG_STATUS_OK;
    if (opened && cfg.task == DG_TASK_CLASSIFICATION) {
        const char *model = dg_tensor_reader_metadata(&rd, "model");
        int rc = 0;
        if (!model || !strncmp(model, "deeplab", 7)) {
            dg_log_error("%s: not a dgseg classification checkpoint (metadata 'model' is %s)",
                    ckpt, model ? model : "missing");
            rc = 1;
        } else {
            dg_free(cfg.model);
            cfg.model = dg_xstrdup(model);
            rc = dg_train_eval_cls(&cfg, ckpt, &rd, live, json);
        }
        dg_tensor_reader_close(&rd);
        dg_config_free(&cfg);
        return rc;
    }
    const char *model = opened ? dg_tensor_reader_metadata(&rd, "model") : NULL;
    const char *os = opened ? dg_tensor_reader_metadata(&rd, "output_stride") : NULL;
    const char *aux = opened ? dg_tensor_reader_metadata(&rd, "aux") : NULL;
    if (st == DG_STATUS_OK && (!model || strncmp(model, "deeplab", 7))) {
        dg_log_error("%s: not a dgseg segmentation checkpoint (metadata 'model' is %s)", ckpt,
                model ? model : "missing");
        st = DG_STATUS_ERR_FORMAT;
    }
    dg_ctx ctx;
    dg_ctx_init(&ctx);
    dg_model m;
    bool have_model = false;
    /* The training layout (auxiliary head included when the checkpoint has
     * one): the method's buffers are laid out like it, and the evaluator
     * runs its head-less instances on a prefix of it (eval/seg_infer.h). */
    const bool has_aux = aux && !strcmp(aux, "true");
    if (st == DG_STATUS_OK) {
        dg_free(cfg.model);
        cfg.model = dg_xstrdup(model);
        if (os) {
            char *end = NULL;
            cfg.output_stride = strtol(os, &end, 10);
            if (!end || *end || (cfg.output_stride != 8 && cfg.output_stride != 16)) {
                dg_log_error("%s: metadata 'output_stride' is '%s': DeepLabv3+ runs at 8 or 16",
                        ckpt, os);
                st = DG_STATUS_ERR_FORMAT;
            }
        }
        dg_model_opts mo = {.batch = 1, .in_channels = 3, .height = 64, .width = 64,
                .classes = 19, .training = false, .output_stride = (int)cfg.output_stride,
                .aux = has_aux, .winograd = cfg.winograd,
                /* inference: f32 where the CPU has no bf16 (master weights are f32) */
                .bf16 = cfg.dtype == 1 && ctx.caps.bf16};
        if (st == DG_STATUS_OK) st = dg_model_create(&m, &ctx, cfg.model, &mo, 0);
        have_model = st == DG_STATUS_OK;
    }
    if (st == DG_STATUS_OK) {
        const char *ignore[] = {"aux."};
        dg_weights_load_opts lo = {.ignore = ignore, .n_ignore = has_aux ? 0 : 1};
        st = dg_weights_load_reader(&rd, &m.ps, &lo);
        if (st != DG_STATUS_OK) dg_log_error("%s: cannot load the weights", ckpt);
    }
    dg_ckpt_weights w;
    memset(&w, 0, sizeof(w));
    if (st == DG_STATUS_OK) st = dg_ckpt_weights_resolve(&w, &rd, ckpt, &m.ps, live);
    if (st == DG_STATUS_OK) {
        printf("weights: %s\n", w.note);
        fflush(stdout);
    }
    dg_eval_target t[2 * DG_EVAL_MAX_TARGETS];
    int n = 0;
    if (st == DG_STATUS_OK)
        st = dg_eval_seg_targets(&cfg, &ctx, &m.ps, w.params, w.stats, w.label, t, &n);
    if (st == DG_STATUS_OK && w.params2) {
        int n2 = 0;
        st = dg_eval_seg_targets(&cfg, &ctx, &m.ps, w.params2, w.stats2, w.label2, t + n, &n2);
        n += n2;
    }
    if (st == DG_STATUS_OK) {
        dg_eval_print_seg(stdout, t, n);
        if (json) {
            dg_seg_result res[2 * DG_EVAL_MAX_TARGETS];
            for (int i = 0; i < n; i++) res[i] = t[i].res;
            dg_seg_report rep = {.checkpoint = ckpt, .results = res, .n_results = n};
            st = dg_report_seg_write_json(&rep, json);
        }
    }
    dg_eval_targets_free(t, n);
    dg_ckpt_weights_free(&w);
    if (have_model) dg_model_free(&m);
    dg_ctx_free(&ctx);
    if (opened) dg_tensor_reader_close(&rd);
    dg_config_free(&cfg);
    return st == DG_STATUS_OK ? 0 : st == DG_STATUS_ERR_CONFIG ? 2 : 1;
}
