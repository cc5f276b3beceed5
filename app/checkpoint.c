/* app/checkpoint.c -- see checkpoint.h. */
#define _POSIX_C_SOURCE 200809L
#include "app/checkpoint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"
#include "app/config.h"
#include "data/fsutil.h"
#include "data/labelmap.h"
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

/* What recreating a method needs of a checkpoint's configuration: the
 * [optim] keys and train.seed. */
static bool method_key(const char *section, const char *key) {
    return !strcmp(section, "optim") || (!strcmp(section, "train") && !strcmp(key, "seed"));
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
    char *name = dg_xasprintf("%s: metadata 'config'", path);
    dg_status st = dg_config_load_text(&c, text, name, method_key);
    dg_free(name);
    if (st != DG_STATUS_OK)
        dg_log_error("%s: the method cannot be recreated from its configuration (--weights live "
                "evaluates the live weights)", path);
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

/* ---- opening a checkpoint --------------------------------------------------- */

dg_status dg_ckpt_open(dg_ckpt *c, const char *path) {
    memset(c, 0, sizeof(*c));
    c->path = path;
    c->meta.output_stride = 16;
    dg_status st = dg_tensor_reader_open(&c->rd, path);
    if (st != DG_STATUS_OK) return st;
    c->opened = true;
    dg_ckpt_meta *m = &c->meta;
    m->model = dg_tensor_reader_metadata(&c->rd, "model");
    m->method = dg_tensor_reader_metadata(&c->rd, "method");
    m->test_domain = dg_tensor_reader_metadata(&c->rd, "test_domain");
    const char *classes = dg_tensor_reader_metadata(&c->rd, "classes");
    const char *os = dg_tensor_reader_metadata(&c->rd, "output_stride");
    const char *aux = dg_tensor_reader_metadata(&c->rd, "aux");
    bool known = false;
    for (size_t i = 0; m->model && dg_model_names[i]; i++)
        known = known || !strcmp(dg_model_names[i], m->model);
    if (!known) {
        dg_log_error("%s: not a dgseg checkpoint (metadata 'model' is %s%s%s)", path,
                m->model ? "'" : "", m->model ? m->model : "missing", m->model ? "'" : "");
        return DG_STATUS_ERR_FORMAT;
    }
    m->segmentation = dg_model_is_segmentation(m->model);
    char *end = NULL;
    if (classes) {
        long v = strtol(classes, &end, 10);
        if (!*classes || *end || v < 1 || v > 254) {
            dg_log_error("%s: metadata 'classes' is '%s' (1 .. 254)", path, classes);
            return DG_STATUS_ERR_FORMAT;
        }
        m->classes = v;
    }
    if (m->segmentation && os) {
        long v = strtol(os, &end, 10);
        if (!*os || *end || (v != 8 && v != 16)) {
            dg_log_error("%s: metadata 'output_stride' is '%s': DeepLabv3+ runs at 8 or 16", path,
                    os);
            return DG_STATUS_ERR_FORMAT;
        }
        m->output_stride = (int)v;
    }
    m->aux = m->segmentation && aux && !strcmp(aux, "true");
    return DG_STATUS_OK;
}

/* The first tensor of ps (laid out like P / Q) holding a value that is not
 * finite, or a BN running variance below 0: an error naming it, since such
 * a model would "evaluate" to numbers that mean nothing. */
static dg_status check_values(const dg_ckpt *c, const float *P, const float *Q,
        const char *label) {
    const dg_param_set *ps = &c->m.ps;
    for (size_t t = 0; t < ps->n_tensors; t++) {
        const dg_param_tensor *tn = &ps->tensors[t];
        for (size_t i = 0; i < tn->n; i++)
            if (!isfinite(P[tn->offset + i])) {
                dg_log_error("%s: tensor %s of the %s holds %g at element %zu: the model cannot "
                             "be evaluated", c->path, tn->name, label, (double)P[tn->offset + i],
                        i);
                return DG_STATUS_ERR_FORMAT;
            }
    }
    for (size_t t = 0; t < ps->n_stat_tensors; t++) {
        const dg_param_tensor *tn = &ps->stat_tensors[t];
        const bool var = dg_ends_with(tn->name, ".running_var");
        for (size_t i = 0; i < tn->n; i++) {
            const float v = Q[tn->offset + i];
            if (!isfinite(v) || (var && v < 0)) {
                dg_log_error("%s: tensor %s of the %s holds %g at element %zu%s: the model "
                             "cannot be evaluated", c->path, tn->name, label, (double)v, i,
                        var && v < 0 ? " (a variance below 0)" : "");
                return DG_STATUS_ERR_FORMAT;
            }
        }
    }
    return DG_STATUS_OK;
}

dg_status dg_ckpt_load_model(dg_ckpt *c, dg_ctx *ctx, const dg_model_opts *mo, bool live) {
    DG_ASSERT(c->opened && !c->has_model);
    dg_model_opts o = *mo;
    if (c->meta.classes) o.classes = c->meta.classes;
    else if (c->meta.segmentation) o.classes = DG_NUM_TRAIN_IDS;
    if (c->meta.segmentation) {
        o.output_stride = c->meta.output_stride;
        o.aux = c->meta.aux;
    }
    dg_status st = dg_model_create(&c->m, ctx, c->meta.model, &o, 0);
    if (st != DG_STATUS_OK) {
        dg_log_error("%s: cannot build its model '%s'", c->path, c->meta.model);
        return st;
    }
    c->has_model = true;
    /* Plain weights may carry an auxiliary head the metadata does not announce. */
    const char *ignore[] = {"aux."};
    dg_weights_load_opts lo = {.ignore = ignore, .n_ignore = o.aux ? 0 : 1};
    st = dg_weights_load_reader(&c->rd, &c->m.ps, &lo);
    if (st != DG_STATUS_OK) {
        dg_log_error("%s: cannot load the weights", c->path);
        return st;
    }
    st = dg_ckpt_weights_resolve(&c->w, &c->rd, c->path, &c->m.ps, live);
    if (st == DG_STATUS_OK) st = check_values(c, c->w.params, c->w.stats, c->w.label);
    if (st == DG_STATUS_OK && c->w.params2)
        st = check_values(c, c->w.params2, c->w.stats2, c->w.label2);
    return st;
}

void dg_ckpt_close(dg_ckpt *c) {
    dg_ckpt_weights_free(&c->w);
    if (c->has_model) dg_model_free(&c->m);
    if (c->opened) dg_tensor_reader_close(&c->rd);
    c->has_model = c->opened = false;
}

/* ---- a training run's files ------------------------------------------------ */

/* The metadata of a run's weights files (text: the resolved configuration,
 * freed by the caller after the write). */
static void set_run_metadata(const dg_ckpt_run_info *info, dg_tensor_writer *w, long step,
        char **text) {
    const dg_config *cfg = info->cfg;
    char buf[64];
    *text = dg_config_text(cfg, true);
    dg_tensor_writer_set_metadata(w, "format_version", "1");
    snprintf(buf, sizeof(buf), "%ld", step);
    dg_tensor_writer_set_metadata(w, "step", buf);
    dg_tensor_writer_set_metadata(w, "model", cfg->model);
    snprintf(buf, sizeof(buf), "%d", info->classes);
    dg_tensor_writer_set_metadata(w, "classes", buf);
    snprintf(buf, sizeof(buf), "%ld", cfg->output_stride);
    dg_tensor_writer_set_metadata(w, "output_stride", buf);
    dg_tensor_writer_set_metadata(w, "aux", info->aux ? "true" : "false");
    dg_tensor_writer_set_metadata(w, "task",
            cfg->task == DG_TASK_SEGMENTATION ? "segmentation" : "classification");
    dg_tensor_writer_set_metadata(w, "method", cfg->method);
    if (cfg->task == DG_TASK_CLASSIFICATION && info->test_domain)
        dg_tensor_writer_set_metadata(w, "test_domain", info->test_domain);
    snprintf(buf, sizeof(buf), "%ld", info->bn_refresh_batches);
    dg_tensor_writer_set_metadata(w, "bn_refresh_batches", buf);
    /* after dg_method_finish: the final model; a resume does not finish again */
    if (info->finished) dg_tensor_writer_set_metadata(w, "finished", "true");
    snprintf(buf, sizeof(buf), "%ld", cfg->iterations);
    dg_tensor_writer_set_metadata(w, "iterations", buf);
    dg_tensor_writer_set_metadata(w, "config", *text);
}

dg_status dg_ckpt_save_weights(const char *path, const dg_ckpt_run_info *info, long step,
        const dg_param_set *layout, const float *P, const float *Q, const char *what,
        double score) {
    dg_param_set view = *layout; /* shallow: only data and stats are read */
    view.data = (float *)P;
    view.stats = (float *)Q;
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    dg_weights_add(&w, &view);
    char *text, buf[64];
    set_run_metadata(info, &w, step, &text);
    dg_tensor_writer_set_metadata(&w, "weights", what);
    snprintf(buf, sizeof(buf), "%.17g", score);
    dg_tensor_writer_set_metadata(&w, "score", buf);
    dg_status st = dg_tensor_writer_write(&w, path);
    if (st == DG_STATUS_OK) dg_log_info("%s weights: %s (step %ld)", what, path, step);
    dg_free(text);
    dg_tensor_writer_free(&w);
    return st;
}

dg_status dg_ckpt_save_run(const char *path, const dg_ckpt_run_info *info, long step,
        const dg_param_set *ps, const dg_method *method) {
    dg_tensor_writer w;
    dg_tensor_writer_init(&w);
    dg_weights_add(&w, ps);
    dg_status st = dg_method_state_save(method, &w);
    char *text, buf[64];
    set_run_metadata(info, &w, step, &text);
    snprintf(buf, sizeof(buf), "%.17g", info->log_loss_sum);
    dg_tensor_writer_set_metadata(&w, "log_loss_sum", buf);
    snprintf(buf, sizeof(buf), "%ld", info->log_loss_steps);
    dg_tensor_writer_set_metadata(&w, "log_loss_steps", buf);
    if (st == DG_STATUS_OK) st = dg_tensor_writer_write(&w, path);
    if (st == DG_STATUS_OK) dg_log_info("checkpoint: %s (step %ld)", path, step);
    dg_free(text);
    dg_tensor_writer_free(&w);
    return st;
}

static long meta_long(const dg_tensor_reader *rd, const char *path, const char *key,
        dg_status *st) {
    const char *v = dg_tensor_reader_metadata(rd, key);
    char *end = NULL;
    long x = v ? strtol(v, &end, 10) : -1;
    if (!v || *end || x < 0) {
        dg_log_error("%s: checkpoint metadata '%s' is missing or malformed", path, key);
        *st = DG_STATUS_ERR_FORMAT;
        return 0;
    }
    return x;
}

dg_status dg_ckpt_resume(const char *path, const dg_config *cfg, dg_param_set *ps,
        dg_method *method, dg_ckpt_resumed *out) {
    memset(out, 0, sizeof(*out));
    dg_tensor_reader rd;
    dg_status st = dg_tensor_reader_open(&rd, path);
    if (st == DG_STATUS_OK) {
        const char *model = dg_tensor_reader_metadata(&rd, "model");
        if (!model || strcmp(model, cfg->model)) {
            dg_log_error("%s: checkpoint of model '%s', the configuration trains '%s'", path,
                    model ? model : "?", cfg->model);
            st = DG_STATUS_ERR_FORMAT;
        }
        if (st == DG_STATUS_OK) out->step = meta_long(&rd, path, "step", &st);
        if (st == DG_STATUS_OK)
            out->bn_refresh_batches = meta_long(&rd, path, "bn_refresh_batches", &st);
        const char *fin = dg_tensor_reader_metadata(&rd, "finished");
        out->finished = fin && !strcmp(fin, "true");
        if (st == DG_STATUS_OK && out->finished) {
            /* its method's finish (Lookahead's final BN refresh, SWAD's
             * average) is applied: it ends here, it cannot go on */
            const long T = meta_long(&rd, path, "iterations", &st);
            if (st == DG_STATUS_OK && T != cfg->iterations) {
                dg_log_error("%s: this run finished with train.iterations = %ld; a finished run "
                             "cannot be continued to %ld (its method's finish is applied): "
                             "start a new run, or keep train.iterations = %ld", path, T,
                        cfg->iterations, T);
                st = DG_STATUS_ERR_CONFIG;
            }
            /* a finished run that stopped early (SWAD) stopped at its last step */
            if (st == DG_STATUS_OK && out->step < T) out->stopped_at = out->step;
        }
        /* optional: checkpoints written before these keys start the mean afresh */
        const char *ls = dg_tensor_reader_metadata(&rd, "log_loss_sum");
        if (st == DG_STATUS_OK && ls) {
            char *end = NULL;
            out->log_loss_sum = strtod(ls, &end);
            out->log_loss_steps = meta_long(&rd, path, "log_loss_steps", &st);
            if (st == DG_STATUS_OK && (*end || !isfinite(out->log_loss_sum))) {
                dg_log_error("%s: checkpoint metadata 'log_loss_sum' is malformed", path);
                st = DG_STATUS_ERR_FORMAT;
            }
        }
        if (st == DG_STATUS_OK) st = dg_weights_load_reader(&rd, ps, NULL);
        if (st == DG_STATUS_OK) st = dg_method_state_load(method, &rd);
        dg_tensor_reader_close(&rd);
    }
    if (st != DG_STATUS_OK) dg_log_error("%s: cannot resume from this checkpoint", path);
    return st;
}
