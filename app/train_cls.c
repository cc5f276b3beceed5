/* app/train_cls.c -- see train_cls.h. The data (a dataset's training
 * domains with their 80/20 in/out splits, docs/datasets.md §9.2, §12.6) comes
 * from app/train_data.c, the loop from app/trainer.c; this file adds what
 * classification evaluates: training-domain validation and test-domain
 * accuracy at DomainBed's evaluation points, SWAD's averaged model, the
 * selected step, and the results over the test domains. */
#define _POSIX_C_SOURCE 200809L
#include "app/train_cls.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "app/cli.h"
#include "app/dist.h"
#include "app/results.h"
#include "app/evaluate.h"
#include "app/trainer.h"
#include "data/fsutil.h"

#define CLS_EVAL_BATCH 128

/* The classification evaluations of one model, in step order. */
typedef struct eval_hist {
    long n;
    long *step;                    /* (n) */
    double *val;                   /* (n) mean training-domain out-split accuracy */
    double *test;                  /* (n) test-domain in-split accuracy */
} eval_hist;

/* One test domain's run beside the loop's state. */
typedef struct cls_run {
    dg_model ev;                   /* an eval-mode instance on the trainer's layout */
    bool has_ev;
    eval_hist hist[2];             /* the evaluated weights', the second model's */
    const char *second_label;      /* MESA's other model ("mesa teacher"); NULL: none */
    dg_cls_run result[2];          /* filled after training, as hist */
} cls_run;

static cls_run *cls_of(dg_trainer *t) { return t->task_ctx; }

static bool is_swad(const dg_config *cfg) { return !strcmp(cfg->method, "swad"); }

/* DomainBed's (and SWAD's, docs/algorithms.md §6) evaluation points: after the
 * first update, every `every` updates from there and after the last. */
static bool domainbed_point(long done, long every, long T) {
    return every > 0 && ((done - 1) % every == 0 || done == T);
}

/* Classification evaluations run every train.eval_every steps; SWAD's run
 * on its own schedule (optim.swad_eval_every), which then is the trainer's. */
static long eval_every(const dg_config *cfg) {
    return is_swad(cfg) ? cfg->optim.swad_eval_every : cfg->eval_every;
}

/* The evaluation instance: the trainer's model in inference mode, batch
 * eval_batch_size, sharing its parameter layout. */
static dg_status prepare(dg_trainer *t) {
    cls_run *c = cls_of(t);
    dg_model_opts eo = t->m.opts;
    eo.batch = t->cfg->eval_batch_size > 1 ? t->cfg->eval_batch_size : CLS_EVAL_BATCH;
    eo.training = false;
    dg_status st = dg_model_create(&c->ev, &t->ctx, t->cfg->model, &eo, 0);
    if (st != DG_STATUS_OK) return st;
    c->has_ev = true;
    const dg_param_set *a = &c->ev.ps, *b = &t->m.ps;
    if (a->d != b->d || a->n_stats != b->n_stats || !dg_params_layout_is_prefix(a, b)) {
        dg_log_error("%s: the evaluation instance's parameter layout differs from the training "
                     "instance's", t->cfg->model);
        return DG_STATUS_ERR_SHAPE;
    }
    return DG_STATUS_OK;
}

/* Training-domain validation (mean accuracy and mean CE over the training
 * domains' out splits) and the test domain's in-split accuracy of P/Q. */
static void scores(dg_trainer *t, const float *P, const float *Q, double *val, double *val_loss,
        double *test) {
    cls_run *c = cls_of(t);
    double ce;
    *val = *val_loss = 0;
    for (int k = 0; k < t->data.S; k++) {
        *val += dg_eval_cls_accuracy(&t->data, &t->ctx, &c->ev, P, Q,
                t->data.train_domain[k], true, &ce);
        *val_loss += ce;
    }
    *val /= t->data.S;
    *val_loss /= t->data.S;
    *test = dg_eval_cls_accuracy(&t->data, &t->ctx, &c->ev, P, Q, t->data.test_domain,
            false, &ce);
}

static void push_eval(eval_hist *h, long step, double val, double test) {
    h->step = dg_xrealloc(h->step, (size_t)(h->n + 1) * sizeof(long));
    h->val = dg_xrealloc(h->val, (size_t)(h->n + 1) * sizeof(double));
    h->test = dg_xrealloc(h->test, (size_t)(h->n + 1) * sizeof(double));
    h->step[h->n] = step;
    h->val[h->n] = val;
    h->test[h->n] = test;
    h->n++;
}

/* The run's result from h: the step training-domain validation selects
 * and the last evaluation. */
static void select_result(const eval_hist *h, dg_cls_run *res) {
    if (h->n == 0) return;
    const int sel = dg_report_select(h->val, (int)h->n);
    res->selected_step = sel >= 0 ? h->step[sel] : -1;
    res->val_acc = sel >= 0 ? h->val[sel] : NAN;
    res->acc_selected = sel >= 0 ? h->test[sel] : NAN;
    res->last_step = h->step[h->n - 1];
    res->acc_last = h->test[h->n - 1];
}

/* One evaluation after step `step` with the method's evaluated weights
 * (SWAD's live weights until it finishes). SWAD then gets the source
 * validation loss (trainer loop step 5); returns true when it asks to stop. */
static bool evaluate_at(dg_trainer *t, long step) {
    cls_run *c = cls_of(t);
    const float *P, *Q;
    dg_method_eval_weights(t->method, &t->m.ps, &P, &Q);
    double val, val_loss, test;
    scores(t, P, Q, &val, &val_loss, &test);
    push_eval(&c->hist[0], step, val, test);
    dg_metric mv[2] = {{"val_acc", val}, {"test_acc", test}};
    dg_metrics_log(&t->metrics, "eval", step, mv, 2);
    dg_metric ml[1] = {{"loss", val_loss}};
    dg_metrics_log(&t->metrics, "val_loss", step, ml, 1);
    dg_progress_break(&t->progress);
    dg_log_info("step %ld: training-domain validation %.2f%% (loss %.4f), test domain %.2f%%",
            step, 100 * val, val_loss, 100 * test);
    if (dg_method_second_weights(t->method, &c->second_label, &P, &Q)) {
        double val2, val_loss2, test2;
        scores(t, P, Q, &val2, &val_loss2, &test2);
        push_eval(&c->hist[1], step, val2, test2);
        dg_metric m2[3] = {{"val_acc", val2}, {"test_acc", test2}, {"val_loss", val_loss2}};
        dg_metrics_log(&t->metrics, "eval2", step, m2, 3);
        dg_log_info("step %ld: %s: training-domain validation %.2f%%, test domain %.2f%%", step,
                c->second_label, 100 * val2, 100 * test2);
    }
    return is_swad(t->cfg) && dg_method_on_eval(t->method, step - 1, val_loss);
}

/* At DomainBed's points; the evaluation after the last step waits for the
 * method's finish (BN refresh, final sync) unless SWAD needs it for its
 * end rule. */
static bool evaluate(dg_trainer *t, long done, bool *stop) {
    const dg_config *cfg = t->cfg;
    if (domainbed_point(done, eval_every(cfg), cfg->iterations) &&
            (done != cfg->iterations || is_swad(cfg)))
        *stop = evaluate_at(t, done);
    return true;
}

static void set_swad_result(cls_run *c, long last, double val, double test) {
    c->result[0].selected_step = c->result[0].last_step = last;
    c->result[0].val_acc = val;
    c->result[0].acc_selected = c->result[0].acc_last = test;
}

/* SWAD reports its averaged model (docs/datasets.md §9.3): one evaluation of it
 * stands for both the selected and the last step. Other methods evaluate
 * the finished model at the last point. */
static bool finished(dg_trainer *t, long last) {
    const dg_config *cfg = t->cfg;
    cls_run *c = cls_of(t);
    if (is_swad(cfg)) {
        const float *P, *Q;
        dg_method_eval_weights(t->method, &t->m.ps, &P, &Q);
        double val, val_loss, test;
        scores(t, P, Q, &val, &val_loss, &test);
        dg_metric mv[3] = {{"val_acc", val}, {"test_acc", test}, {"val_loss", val_loss}};
        dg_metrics_log(&t->metrics, "swad", last, mv, 3);
        dg_log_info("swad average: training-domain validation %.2f%%, test domain %.2f%%",
                100 * val, 100 * test);
        set_swad_result(c, last, val, test);
    } else if (domainbed_point(last, eval_every(cfg), cfg->iterations)) {
        evaluate_at(t, last); /* the finished model */
    }
    return true;
}

/* A finished SWAD run's result: the "swad" record of metrics.jsonl at step
 * last (its averaged model's evaluation). */
static bool resumed_finished(dg_trainer *t, long last) {
    if (!is_swad(t->cfg)) return true;
    char *mp = dg_trainer_path(t, "metrics.jsonl");
    dg_metrics_data md;
    bool ok = false;
    if (dg_metrics_read(&md, mp) == DG_STATUS_OK) {
        const dg_series *v = dg_metrics_find(&md, "swad", "val_acc");
        const dg_series *te = dg_metrics_find(&md, "swad", "test_acc");
        for (int i = 0; v && te && i < v->n && i < te->n; i++)
            if ((long)v->step[i] == last) {
                set_swad_result(cls_of(t), last, v->value[i], te->value[i]);
                ok = true;
            }
        dg_metrics_data_free(&md);
        if (!ok) dg_log_error("%s: no 'swad' record of step %ld for the finished run", mp, last);
    }
    dg_free(mp);
    return ok;
}

static void restore(dg_trainer *t, const dg_metrics_data *md) {
    static const char *const kinds[2] = {"eval", "eval2"};
    for (int k = 0; k < 2; k++) {
        const dg_series *v = dg_metrics_find(md, kinds[k], "val_acc");
        const dg_series *te = dg_metrics_find(md, kinds[k], "test_acc");
        for (int i = 0; v && te && i < v->n && i < te->n; i++)
            push_eval(&cls_of(t)->hist[k], (long)v->step[i], v->value[i], te->value[i]);
    }
}

static const dg_trainer_task cls_task = {
    .prepare = prepare,
    .restore = restore,
    .evaluate = evaluate,
    .finished = finished,
    .resumed_finished = resumed_finished,
};

static void cls_run_free(cls_run *c) {
    if (c->has_ev) dg_model_free(&c->ev);
    for (int k = 0; k < 2; k++) {
        dg_free(c->hist[k].step);
        dg_free(c->hist[k].val);
        dg_free(c->hist[k].test);
    }
}

/* One test domain's run in dir: dataset spec's domain test_domain held
 * out. Fills result[0] and, for a method with a second model (MESA),
 * result[1] and *second (its label, static). Returns the exit code. */
static int run_domain(const dg_config *cfg, const char *dir, const dg_dataset_spec *spec,
        int test_domain, dg_cls_run result[2], const char **second) {
    cls_run c;
    memset(&c, 0, sizeof(c));
    dg_trainer t;
    dg_status st = dg_trainer_open(&t, cfg, dir, spec, test_domain, &cls_task, &c);
    int rc = dg_cli_exit_code(st);
    if (st == DG_STATUS_OK) {
        const bool complete = dg_trainer_complete(&t, true);
        rc = dg_trainer_run(&t, complete);
        if (rc == 0 && !is_swad(cfg)) {
            select_result(&c.hist[0], &c.result[0]);
            select_result(&c.hist[1], &c.result[1]);
        }
        /* everything was there in a complete run: curves.png too */
        if (rc == 0 && !complete) rc = dg_trainer_write_curves(&t);
        if (rc == 0) {
            result[0] = c.result[0];
            result[1] = c.result[1];
            *second = c.second_label;
        }
    }
    dg_trainer_close(&t);
    cls_run_free(&c);
    return rc;
}

/* ---- leave-one-domain-out -------------------------------------------------- */

/* The dataset's domain names (DomainBed folders, or Rotated
 * Fashion-MNIST's rotations), to resolve data.test_domains. */
typedef struct domain_names {
    dg_domainbed db;
    char **names;
    int n;
} domain_names;

static dg_status domain_names_open(domain_names *dn, const dg_dataset_spec *spec) {
    memset(dn, 0, sizeof(*dn));
    if (!strcmp(spec->reader, "domainbed")) {
        dg_status st = dg_domainbed_open(spec->root, &dn->db);
        dn->n = dn->db.n_domains;
        dn->names = dg_xcalloc((size_t)dn->n + 1, sizeof(*dn->names));
        for (int d = 0; d < dn->n; d++) dn->names[d] = dn->db.domains[d].name;
        return st;
    }
    dn->n = DG_RFMNIST_DOMAINS;
    dn->names = dg_xcalloc((size_t)dn->n, sizeof(*dn->names));
    for (int d = 0; d < dn->n; d++) {
        char rot[16];
        dg_rotated_fmnist_domain_name(d, rot, sizeof(rot));
        dn->names[d] = dg_xstrdup(rot);
    }
    return DG_STATUS_OK;
}

static void domain_names_free(domain_names *dn) {
    if (!dn->db.domains && dn->names)
        for (int d = 0; d < dn->n; d++) dg_free(dn->names[d]);
    dg_free(dn->names);
    dg_domainbed_free(&dn->db);
}

/* results.json/md over the test domains and the table on stdout. */
static int write_results(const dg_config *cfg, const char *dir, dg_cls_run *runs,
        dg_cls_run *runs2, char **names, int n, const char *second) {
    int rc = 0;
    dg_report_settings set;
    memset(&set, 0, sizeof(set));
    dg_report_settings_from_config(&set, cfg);
    char *label2 = second ? dg_xasprintf("%s %s", cfg->method, second) : NULL;
    dg_cls_report rep2 = {.method = label2, .runs = runs2, .n_runs = n};
    dg_cls_report rep[2] = {{.method = cfg->method, .dataset = cfg->dataset,
            .domains = (const char *const *)names, .n_domains = n, .run = &set, .runs = runs,
            .n_runs = n, .second = second ? &rep2 : NULL}, rep2};
    char *pj = dg_xasprintf("%s/results.json", dir), *pm = dg_xasprintf("%s/results.md", dir);
    if (dg_report_cls_write_json(rep, pj) != DG_STATUS_OK ||
            dg_report_cls_write_md(rep, pm) != DG_STATUS_OK)
        rc = 1;
    char *table = dg_report_cls_table(rep, second ? 2 : 1, DG_CLS_PICK_SELECTED);
    printf("\ntest-domain accuracy (%%) at the step chosen by training-domain validation:\n"
           "%s\n", table);
    dg_free(table);
    dg_free(pj);
    dg_free(pm);
    dg_free(label2);
    return rc;
}

int dg_train_cls(const dg_config *cfg, const char *dir) {
    dg_dataset_spec *specs = NULL;
    int n_specs = 0, rc = 0;
    dg_status st = dg_dataset_specs_parse("data.dataset", cfg->dataset, &specs, &n_specs);
    if (st != DG_STATUS_OK || n_specs != 1) {
        if (st == DG_STATUS_OK) dg_log_error("data.dataset: name exactly one dataset");
        dg_dataset_specs_free(specs, n_specs);
        return 2;
    }
    domain_names dn;
    if (domain_names_open(&dn, &specs[0]) != DG_STATUS_OK) rc = 1;
    dg_strvec toks = {0};
    dg_split_list(cfg->test_domains, &toks);
    int runs = 0;
    dg_cls_run *res = NULL, *res2 = NULL; /* the second model's (MESA) */
    const char *second = NULL;
    char **names = NULL;
    for (size_t ti = 0; rc == 0 && ti < toks.n; ti++) {
        const int d = dg_train_data_find_domain(toks.v[ti], dn.names, dn.n);
        if (d < 0) {
            dg_log_error("data.test_domains: unknown domain '%s'", toks.v[ti]);
            rc = 2;
            break;
        }
        char *sub = dg_xasprintf("%s/test-%s", dir, dn.names[d]);
        res = dg_xrealloc(res, (size_t)(runs + 1) * sizeof(*res));
        res2 = dg_xrealloc(res2, (size_t)(runs + 1) * sizeof(*res2));
        names = dg_xrealloc(names, (size_t)(runs + 1) * sizeof(*names));
        dg_cls_run r[2];
        memset(r, 0, sizeof(r));
        rc = run_domain(cfg, sub, &specs[0], d, r, &second);
        res[runs] = r[0];
        res2[runs] = r[1];
        names[runs] = dn.names[d];
        for (int k = 0; k < 2; k++) {
            dg_cls_run *c = k ? &res2[runs] : &res[runs];
            c->test_domain = dn.names[d];
            c->trial = cfg->seed;
        }
        dg_free(sub);
        runs++;
    }
    if (rc == 0 && runs == 0) {
        dg_log_error("data.test_domains: name at least one test domain");
        rc = 2;
    }
    /* one writer in a data-parallel job: rank 0 (app/dist.h) */
    if (rc == 0 && cfg->eval_every > 0 && dg_dist_is_root())
        rc = write_results(cfg, dir, res, res2, names, runs, second);
    dg_free(res);
    dg_free(res2);
    dg_free(names);
    dg_strvec_free(&toks);
    domain_names_free(&dn);
    dg_dataset_specs_free(specs, n_specs);
    return rc;
}
