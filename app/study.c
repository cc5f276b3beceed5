/* app/study.c -- see study.h. */
#define _XOPEN_SOURCE 700
#include "app/study.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <plplot.h>

#include "app/cli.h"
#include "app/config.h"
#include "app/flatness.h"
#include "app/metrics_log.h"
#include "app/plot.h"
#include "data/fsutil.h"
#include "eval/metrics.h"

/* ---- the study file -------------------------------------------------------- */

#define MAX_ARMS 64
#define MAX_SEEDS 64

typedef struct arm {
    char *name;
    char *config;     /* resolved against the study file's folder */
    dg_strvec over;   /* the arm's own overrides */
    int line;         /* of [arm NAME], and of its overrides (0: none) */
    int over_line;
} arm;

typedef struct study {
    char *path, *name, *out;
    long seeds[MAX_SEEDS];
    int n_seeds;
    dg_strvec over;   /* every run's */
    int over_line;
    dg_strvec flatness; /* `dgseg flatness` options after each run (n = 0: none) */
    arm arms[MAX_ARMS];
    int n_arms;
    bool layout_only; /* study_load without check_configs: arms and seeds only */
} study;

static void study_free(study *s) {
    dg_free(s->path), dg_free(s->name), dg_free(s->out);
    dg_strvec_free(&s->over);
    dg_strvec_free(&s->flatness);
    for (int i = 0; i < s->n_arms; i++) {
        dg_free(s->arms[i].name), dg_free(s->arms[i].config);
        dg_strvec_free(&s->arms[i].over);
    }
    memset(s, 0, sizeof(*s));
}

/* Appends the white-space separated words of v to out. */
static void split_words(const char *v, dg_strvec *out) {
    char *copy = dg_xstrdup(v), *save = NULL;
    for (char *t = strtok_r(copy, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
        dg_strvec_push(out, dg_xstrdup(t));
    dg_free(copy);
}

/* An override the study sets itself for every run. */
static bool owned_key(const char *o) {
    static const char *const keys[] = {"train.seed=", "output.dir=", "train.resume="};
    for (size_t i = 0; i < DG_ARRAY_LEN(keys); i++)
        if (!strncmp(o, keys[i], strlen(keys[i]))) return true;
    return false;
}

static dg_status check_overrides(const char *path, int line, const dg_strvec *v) {
    for (size_t i = 0; i < v->n; i++) {
        if (!strchr(v->v[i], '=') || !strchr(v->v[i], '.')) {
            dg_log_error("%s:%d: '%s' is not section.key=value", path, line, v->v[i]);
            return DG_STATUS_ERR_CONFIG;
        }
        if (owned_key(v->v[i])) {
            dg_log_error("%s:%d: '%s': the study sets train.seed (from seeds), output.dir and "
                         "train.resume of every run itself", path, line, v->v[i]);
            return DG_STATUS_ERR_CONFIG;
        }
    }
    return DG_STATUS_OK;
}

/* The folder of path ("." for a bare name), joined with rel unless rel is
 * absolute. */
static char *beside(const char *path, const char *rel) {
    if (rel[0] == '/') return dg_xstrdup(rel);
    const char *slash = strrchr(path, '/');
    if (!slash) return dg_xstrdup(rel);
    return dg_xasprintf("%.*s/%s", (int)(slash - path), path, rel);
}

static char *stem(const char *path) {
    const char *b = strrchr(path, '/');
    char *s = dg_xstrdup(b ? b + 1 : path);
    char *dot = strrchr(s, '.');
    if (dot && dot != s) *dot = '\0';
    return s;
}

/* A name usable as a folder: letters, digits, '-', '_', '.'. */
static bool name_ok(const char *n) {
    if (!*n || !strcmp(n, ".") || !strcmp(n, "..")) return false;
    for (; *n; n++)
        if (!(('a' <= *n && *n <= 'z') || ('A' <= *n && *n <= 'Z') || ('0' <= *n && *n <= '9') ||
                    *n == '-' || *n == '_' || *n == '.'))
            return false;
    return true;
}

static dg_status parse_line(study *s, const char *path, int line, char *text, int *section) {
    char *t = dg_str_trim(text);
    if (!*t || *t == ';' || *t == '#') return DG_STATUS_OK;
    if (*t == '[') {
        char *end = strchr(t, ']');
        if (!end || dg_str_trim(end + 1)[0]) {
            dg_log_error("%s:%d: malformed section header", path, line);
            return DG_STATUS_ERR_CONFIG;
        }
        *end = '\0';
        char *name = dg_str_trim(t + 1);
        if (!strcmp(name, "study")) {
            *section = 0;
            return DG_STATUS_OK;
        }
        if (strncmp(name, "arm ", 4) || !name_ok(dg_str_trim(name + 4))) {
            dg_log_error("%s:%d: unknown section [%s] (a study file has [study] and [arm NAME], "
                         "NAME of letters, digits, '-', '_' and '.')", path, line, name);
            return DG_STATUS_ERR_CONFIG;
        }
        const char *an = dg_str_trim(name + 4);
        for (int i = 0; i < s->n_arms; i++)
            if (!strcmp(s->arms[i].name, an)) {
                dg_log_error("%s:%d: arm '%s' again (first at line %d)", path, line, an,
                        s->arms[i].line);
                return DG_STATUS_ERR_CONFIG;
            }
        if (s->n_arms == MAX_ARMS) {
            dg_log_error("%s:%d: more than %d arms", path, line, MAX_ARMS);
            return DG_STATUS_ERR_CONFIG;
        }
        arm *a = &s->arms[s->n_arms++];
        a->name = dg_xstrdup(an);
        a->line = line;
        *section = s->n_arms;
        return DG_STATUS_OK;
    }
    char *eq = strchr(t, '=');
    if (!eq || *section < 0) {
        dg_log_error("%s:%d: %s", path, line, eq ? "key before any section"
                                                   : "malformed line (expected key = value)");
        return DG_STATUS_ERR_CONFIG;
    }
    *eq = '\0';
    const char *key = dg_str_trim(t), *val = dg_str_trim(eq + 1);
    if (*section == 0) {
        if (!strcmp(key, "name") && name_ok(val)) {
            dg_free(s->name);
            s->name = dg_xstrdup(val);
        } else if (!strcmp(key, "out") && *val) {
            dg_free(s->out);
            s->out = dg_xstrdup(val);
        } else if (!strcmp(key, "seeds")) {
            dg_strvec items = {0};
            dg_split_list(val, &items);
            dg_status st = items.n ? DG_STATUS_OK : DG_STATUS_ERR_CONFIG;
            s->n_seeds = 0;
            for (size_t i = 0; st == DG_STATUS_OK && i < items.n; i++) {
                char *e = NULL;
                errno = 0;
                const long v = strtol(items.v[i], &e, 10);
                if (errno || *e || v < 0 || s->n_seeds == MAX_SEEDS) st = DG_STATUS_ERR_CONFIG;
                else s->seeds[s->n_seeds++] = v;
            }
            dg_strvec_free(&items);
            if (st != DG_STATUS_OK) {
                dg_log_error("%s:%d: seeds wants a list of up to %d integers >= 0, got '%s'",
                        path, line, MAX_SEEDS, val);
                return st;
            }
        } else if (!strcmp(key, "overrides")) {
            split_words(val, &s->over);
            s->over_line = line;
            return check_overrides(path, line, &s->over);
        } else if (!strcmp(key, "flatness")) {
            dg_strvec_free(&s->flatness);
            split_words(val, &s->flatness);
            if (dg_flatness_check_options((const char *const *)s->flatness.v,
                        (int)s->flatness.n)) {
                dg_log_error("%s:%d: flatness: not options of `dgseg flatness`", path, line);
                return DG_STATUS_ERR_CONFIG;
            }
        } else {
            dg_log_error("%s:%d: [study] has no key '%s' (name, out, seeds, overrides, "
                         "flatness)%s", path,
                    line, key, !strcmp(key, "name") ? ", or its name is not a folder name" : "");
            return DG_STATUS_ERR_CONFIG;
        }
        return DG_STATUS_OK;
    }
    arm *a = &s->arms[*section - 1];
    if (!strcmp(key, "config") && *val) {
        dg_free(a->config);
        a->config = beside(path, val);
        if (!s->layout_only && !dg_is_file(a->config)) {
            dg_log_error("%s:%d: arm %s: no config file %s", path, line, a->name, a->config);
            return DG_STATUS_ERR_CONFIG;
        }
        return DG_STATUS_OK;
    }
    if (!strcmp(key, "overrides")) {
        split_words(val, &a->over);
        a->over_line = line;
        return check_overrides(path, line, &a->over);
    }
    dg_log_error("%s:%d: [arm %s] has no key '%s' (config, overrides)", path, line, a->name, key);
    return DG_STATUS_ERR_CONFIG;
}

/* The overrides of run (arm a, seed) in order: the study's, the arm's,
 * then seed, folder and resume (dg_strvec_free them). */
static void run_overrides(const study *s, const arm *a, long seed, const char *dir,
        dg_strvec *out) {
    for (size_t i = 0; i < s->over.n; i++) dg_strvec_push(out, dg_xstrdup(s->over.v[i]));
    for (size_t i = 0; i < a->over.n; i++) dg_strvec_push(out, dg_xstrdup(a->over.v[i]));
    dg_strvec_push(out, dg_xasprintf("train.seed=%ld", seed));
    dg_strvec_push(out, dg_xasprintf("output.dir=%s", dir));
    dg_strvec_push(out, dg_xstrdup("train.resume=true"));
}

static char *run_dir(const study *s, const arm *a, long seed) {
    return dg_xasprintf("%s/%s/seed-%ld", s->out, a->name, seed);
}

/* Reads and checks the study file and, with check_configs, every arm's
 * config with its overrides; DG_STATUS_OK or an error naming file:line
 * (logged). `report` reads a study folder's copy of the file for its arms
 * and seeds only: the configs it names are relative to where the study
 * file was run from, not to the copy. */
static dg_status study_load(study *s, const char *path, bool check_configs) {
    memset(s, 0, sizeof(*s));
    s->path = dg_xstrdup(path);
    s->layout_only = !check_configs;
    size_t n;
    char *text = dg_file_read_all(path, &n);
    if (!text) return DG_STATUS_ERR_CONFIG;
    dg_status st = DG_STATUS_OK;
    /* logical lines: an indented line continues the key = value before it,
     * as in configs (a long list of overrides) */
    int section = -1, line = 0, at = 0;
    char *logical = NULL;
    for (char *l = text; st == DG_STATUS_OK && l && *l;) {
        char *end = strchr(l, '\n');
        if (end) *end = '\0';
        line++;
        const bool indented = l[0] == ' ' || l[0] == '\t';
        char *t = dg_str_trim(l);
        if (indented && *t && *t != ';' && *t != '#' && logical && strchr(logical, '=')) {
            char *joined = dg_xasprintf("%s %s", logical, t);
            dg_free(logical);
            logical = joined;
        } else {
            if (logical) st = parse_line(s, path, at, logical, &section);
            dg_free(logical);
            logical = dg_xstrdup(t);
            at = line;
        }
        l = end ? end + 1 : NULL;
    }
    if (st == DG_STATUS_OK && logical) st = parse_line(s, path, at, logical, &section);
    dg_free(logical);
    dg_free(text);
    if (st != DG_STATUS_OK) return st;
    if (!s->name) s->name = stem(path);
    if (!s->out) s->out = dg_xasprintf("runs/study-%s", s->name);
    if (!s->n_seeds) {
        s->seeds[0] = 0;
        s->n_seeds = 1;
    }
    if (!s->n_arms) {
        dg_log_error("%s: no [arm NAME] section: nothing to run", path);
        return DG_STATUS_ERR_CONFIG;
    }
    for (int i = 0; i < s->n_arms; i++) {
        const arm *a = &s->arms[i];
        if (!a->config) {
            dg_log_error("%s:%d: arm %s has no config", path, a->line, a->name);
            return DG_STATUS_ERR_CONFIG;
        }
        if (!check_configs) continue;
        char *dir = run_dir(s, a, s->seeds[0]);
        dg_strvec ov = {0};
        run_overrides(s, a, s->seeds[0], dir, &ov);
        dg_config cfg;
        const int rc = dg_config_load_checked(&cfg, a->config, (int)ov.n, ov.v);
        dg_strvec_free(&ov);
        dg_free(dir);
        if (rc) {
            dg_log_error("%s:%d: arm %s: its config %s with the study's overrides (line %d) and "
                         "its own (line %d) does not load (above)", path,
                    a->over_line ? a->over_line : a->line, a->name, a->config, s->over_line,
                    a->over_line);
            return DG_STATUS_ERR_CONFIG;
        }
        dg_config_free(&cfg);
    }
    return DG_STATUS_OK;
}

/* ---- aggregation ------------------------------------------------------------ */

enum { RUN_DONE, RUN_INCOMPLETE, RUN_FAILED, RUN_OTHER_TASK, RUN_UNREADABLE };
static const char *const run_status_names[] = {"done", "incomplete", "failed", "other task",
        "unreadable"};

typedef struct agg_run {
    char *group;     /* arm, or the run's method */
    long seed;
    char *dir;
    int status;
    char *why;       /* for a run not averaged */
    int n;           /* values: column names, value at the selected step and at the last */
    char **col;
    double *sel, *last;
    int nf;          /* flatness values (dgseg flatness of the run's models, averaged) */
    char **fcol;
    double *fval;
} agg_run;

typedef struct agg {
    char *title;
    char task[16];   /* "segmentation" | "classification" | "" (none done) */
    agg_run *runs;
    int n_runs;
} agg;

static void agg_free(agg *g) {
    for (int i = 0; i < g->n_runs; i++) {
        agg_run *r = &g->runs[i];
        dg_free(r->group), dg_free(r->dir), dg_free(r->why);
        for (int k = 0; k < r->n; k++) dg_free(r->col[k]);
        dg_free(r->col), dg_free(r->sel), dg_free(r->last);
        for (int k = 0; k < r->nf; k++) dg_free(r->fcol[k]);
        dg_free(r->fcol), dg_free(r->fval);
    }
    dg_free(g->runs);
    dg_free(g->title);
    memset(g, 0, sizeof(*g));
}

static void run_add_value(agg_run *r, const char *col, double sel, double last) {
    r->col = dg_xrealloc(r->col, (size_t)(r->n + 1) * sizeof(*r->col));
    r->sel = dg_xrealloc(r->sel, (size_t)(r->n + 1) * sizeof(double));
    r->last = dg_xrealloc(r->last, (size_t)(r->n + 1) * sizeof(double));
    r->col[r->n] = dg_xstrdup(col);
    r->sel[r->n] = sel;
    r->last[r->n] = last;
    r->n++;
}

static double json_num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Reads dir/results.json into r (status done, other task or unreadable);
 * *method gets its "method" (dg_free), or NULL. */
static void read_results(agg *g, agg_run *r, char **method) {
    *method = NULL;
    char *path = dg_xasprintf("%s/results.json", r->dir);
    char *text = dg_is_file(path) ? dg_file_read_all(path, NULL) : NULL;
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    dg_free(text);
    const cJSON *task = cJSON_GetObjectItemCaseSensitive(root, "task");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "method");
    if (cJSON_IsString(m)) *method = dg_xstrdup(m->valuestring);
    if (!cJSON_IsString(task)) {
        r->status = root ? RUN_UNREADABLE : RUN_INCOMPLETE;
        r->why = dg_xasprintf(root ? "%s has no task" : "no readable %s", path);
    } else if (g->task[0] && strcmp(g->task, task->valuestring)) {
        r->status = RUN_OTHER_TASK;
        r->why = dg_xasprintf("a %s run among %s runs", task->valuestring, g->task);
    } else if (!strcmp(task->valuestring, "segmentation")) {
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(root, "targets")) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
            if (cJSON_IsString(name)) {
                const double v = json_num(t, "miou");
                run_add_value(r, name->valuestring, v, v);
            }
        }
    } else if (!strcmp(task->valuestring, "classification")) {
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(root, "runs")) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "test_domain");
            if (cJSON_IsString(name))
                run_add_value(r, name->valuestring, json_num(t, "acc_selected"),
                        json_num(t, "acc_last"));
        }
    } else {
        r->status = RUN_UNREADABLE;
        r->why = dg_xasprintf("%s: unknown task '%s'", path, task->valuestring);
    }
    if (r->status == RUN_DONE && r->n == 0) {
        r->status = RUN_UNREADABLE;
        r->why = dg_xasprintf("%s holds no result", path);
    }
    if (r->status == RUN_DONE && !g->task[0])
        snprintf(g->task, sizeof(g->task), "%s", task->valuestring);
    cJSON_Delete(root);
    dg_free(path);
}

static void model_dirs(const char *dir, const char *holding, dg_strvec *out);

/* Adds value v to flatness column col of r (summing: read_flatness divides). */
static void flat_add(agg_run *r, const char *col, double v, int *count) {
    for (int k = 0; k < r->nf; k++)
        if (!strcmp(r->fcol[k], col)) {
            r->fval[k] += v;
            count[k]++;
            return;
        }
    r->fcol = dg_xrealloc(r->fcol, (size_t)(r->nf + 1) * sizeof(*r->fcol));
    r->fval = dg_xrealloc(r->fval, (size_t)(r->nf + 1) * sizeof(double));
    r->fcol[r->nf] = dg_xstrdup(col);
    r->fval[r->nf] = v;
    count[r->nf++] = 1;
}

#define MAX_FLAT_COLS 24

/* The flatness.json of every model of run r (the run, or its test-domain
 * folders), averaged over them: "loss", "sharpness r=R" per radius, "worst
 * rho=P" per rho. A column some model lacks is NaN. */
static void read_flatness(agg_run *r) {
    dg_strvec models = {0};
    model_dirs(r->dir, "flatness/flatness.json", &models);
    int count[MAX_FLAT_COLS] = {0}, n_read = 0;
    for (size_t i = 0; i < models.n; i++) {
        char *path = dg_xasprintf("%s/flatness/flatness.json", models.v[i]);
        char *text = dg_is_file(path) ? dg_file_read_all(path, NULL) : NULL;
        cJSON *root = text ? cJSON_Parse(text) : NULL;
        dg_free(text), dg_free(path);
        if (!root) continue;
        n_read++;
        char col[64];
        if (r->nf < MAX_FLAT_COLS) flat_add(r, "loss", json_num(root, "loss"), count);
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "expected")) {
            snprintf(col, sizeof(col), "sharpness r=%g", json_num(e, "radius"));
            if (r->nf < MAX_FLAT_COLS) flat_add(r, col, json_num(e, "sharpness"), count);
        }
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "worst_case")) {
            snprintf(col, sizeof(col), "worst rho=%g", json_num(e, "rho"));
            if (r->nf < MAX_FLAT_COLS) flat_add(r, col, json_num(e, "sharpness"), count);
        }
        cJSON_Delete(root);
    }
    for (int k = 0; k < r->nf; k++) r->fval[k] = count[k] == n_read ? r->fval[k] / n_read : NAN;
    dg_strvec_free(&models);
}

/* Adds run folder dir of group (NULL: the run's method) and seed (< 0: the
 * run's train.seed from its config.ini). */
static void agg_add(agg *g, const char *dir, const char *group, long seed, int status,
        const char *why) {
    char *real = realpath(dir, NULL);
    for (int i = 0; real && i < g->n_runs; i++) { /* a folder named twice counts once */
        char *other = realpath(g->runs[i].dir, NULL);
        const bool same = other && !strcmp(real, other);
        free(other);
        if (same) {
            free(real);
            return;
        }
    }
    free(real);
    g->runs = dg_xrealloc(g->runs, (size_t)(g->n_runs + 1) * sizeof(*g->runs));
    agg_run *r = &g->runs[g->n_runs++];
    memset(r, 0, sizeof(*r));
    r->dir = dg_xstrdup(dir);
    r->status = status;
    if (why) r->why = dg_xstrdup(why);
    char *method = NULL;
    if (status == RUN_DONE) read_results(g, r, &method);
    if (r->status == RUN_DONE) read_flatness(r);
    if (seed < 0) {
        char *cp = dg_xasprintf("%s/config.ini", dir);
        if (dg_is_file(cp)) {
            dg_config cfg;
            if (dg_config_load(&cfg, cp, 0, NULL) == DG_STATUS_OK) {
                seed = cfg.seed;
                if (!method) method = dg_xstrdup(cfg.method);
            }
            dg_config_free(&cfg);
        }
        dg_free(cp);
    }
    r->seed = seed;
    r->group = dg_xstrdup(group ? group : method ? method : "unknown");
    dg_free(method);
}

/* Mean and sample standard deviation (ddof 1; NaN for one value). */
static void mean_sd(const double *v, int n, double *mean, double *sd) {
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = n ? s / n : NAN;
    for (int i = 0; i < n; i++) s2 += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(s2 / (n - 1)) : NAN;
}

/* The columns of every done run, in order of first appearance. */
static int columns(const agg *g, const char **cols, int max) {
    int n = 0;
    for (int i = 0; i < g->n_runs; i++) {
        const agg_run *r = &g->runs[i];
        if (r->status != RUN_DONE) continue;
        for (int k = 0; k < r->n; k++) {
            bool seen = false;
            for (int j = 0; j < n; j++) seen |= !strcmp(cols[j], r->col[k]);
            if (!seen && n < max) cols[n++] = r->col[k];
        }
    }
    return n;
}

static int groups(const agg *g, const char **names, int max) {
    int n = 0;
    for (int i = 0; i < g->n_runs; i++) {
        bool seen = false;
        for (int j = 0; j < n; j++) seen |= !strcmp(names[j], g->runs[i].group);
        if (!seen && n < max) names[n++] = g->runs[i].group;
    }
    return n;
}

/* Value of column col in run r (NaN when absent). */
static double run_value(const agg_run *r, const char *col, bool last) {
    for (int k = 0; k < r->n; k++)
        if (!strcmp(r->col[k], col)) return last ? r->last[k] : r->sel[k];
    return NAN;
}

/* A run's average over all columns (NaN when it lacks one). */
static double run_avg(const agg_run *r, const char *const *cols, int n_cols, bool last) {
    double s = 0;
    for (int j = 0; j < n_cols; j++) s += run_value(r, cols[j], last);
    return n_cols ? s / n_cols : NAN;
}

typedef struct cell {
    int n;
    double mean, sd;
    double v[MAX_SEEDS * 4];
} cell;

/* Over the done runs of group grp: column j (j == n_cols: the average). */
static cell cell_of(const agg *g, const char *grp, const char *const *cols, int n_cols, int j,
        bool last) {
    cell c;
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < g->n_runs && c.n < (int)DG_ARRAY_LEN(c.v); i++) {
        const agg_run *r = &g->runs[i];
        if (r->status != RUN_DONE || strcmp(r->group, grp)) continue;
        const double v = j < n_cols ? run_value(r, cols[j], last) : run_avg(r, cols, n_cols, last);
        if (isfinite(v)) c.v[c.n++] = v;
    }
    mean_sd(c.v, c.n, &c.mean, &c.sd);
    return c;
}

/* The flatness columns of every done run, in order of first appearance. */
static int flat_columns(const agg *g, const char **cols, int max) {
    int n = 0;
    for (int i = 0; i < g->n_runs; i++) {
        const agg_run *r = &g->runs[i];
        for (int k = 0; k < r->nf && r->status == RUN_DONE; k++) {
            bool seen = false;
            for (int j = 0; j < n; j++) seen |= !strcmp(cols[j], r->fcol[k]);
            if (!seen && n < max) cols[n++] = r->fcol[k];
        }
    }
    return n;
}

static double run_flat(const agg_run *r, const char *col) {
    for (int k = 0; k < r->nf; k++)
        if (!strcmp(r->fcol[k], col)) return r->fval[k];
    return NAN;
}

/* Flatness column col over the done runs of group grp that measured it. */
static cell flat_cell(const agg *g, const char *grp, const char *col) {
    cell c;
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < g->n_runs && c.n < (int)DG_ARRAY_LEN(c.v); i++) {
        const agg_run *r = &g->runs[i];
        if (r->status != RUN_DONE || strcmp(r->group, grp)) continue;
        const double v = run_flat(r, col);
        if (isfinite(v)) c.v[c.n++] = v;
    }
    mean_sd(c.v, c.n, &c.mean, &c.sd);
    return c;
}

static void md_cell(FILE *f, const cell *c) {
    if (c->n == 0) fputs(" — |", f);
    else if (c->n == 1) fprintf(f, " %.2f |", c->mean);
    else fprintf(f, " %.2f ± %.2f |", c->mean, c->sd);
}

#define MAX_COLS 64

static void md_table(FILE *f, const agg *g, const char **cols, int n_cols, bool last) {
    const char *names[MAX_ARMS * 4];
    const int n_g = groups(g, names, (int)DG_ARRAY_LEN(names));
    fputs("| method | runs |", f);
    for (int j = 0; j < n_cols; j++) fprintf(f, " %s |", cols[j]);
    fputs(" avg |\n|---|---:|", f);
    for (int j = 0; j <= n_cols; j++) fputs("---:|", f);
    fputc('\n', f);
    for (int k = 0; k < n_g; k++) {
        const cell a = cell_of(g, names[k], cols, n_cols, n_cols, last);
        int done = 0;
        for (int i = 0; i < g->n_runs; i++)
            done += g->runs[i].status == RUN_DONE && !strcmp(g->runs[i].group, names[k]);
        fprintf(f, "| %s | %d |", names[k], done);
        for (int j = 0; j < n_cols; j++) {
            const cell c = cell_of(g, names[k], cols, n_cols, j, last);
            md_cell(f, &c);
        }
        md_cell(f, &a);
        fputc('\n', f);
    }
}

static char *agg_markdown(const agg *g) {
    const char *cols[MAX_COLS];
    const int n_cols = columns(g, cols, MAX_COLS);
    const bool cls = !strcmp(g->task, "classification");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    DG_ASSERT(f != NULL);
    int count[5] = {0};
    for (int i = 0; i < g->n_runs; i++) count[g->runs[i].status]++;
    fprintf(f, "# %s\n\n%d runs: %d done, %d not finished, %d failed, %d of the other task, "
               "%d unreadable.\n\n", g->title, g->n_runs, count[RUN_DONE], count[RUN_INCOMPLETE],
            count[RUN_FAILED], count[RUN_OTHER_TASK], count[RUN_UNREADABLE]);
    if (n_cols) {
        if (cls) fputs("Test-domain accuracy (%) at the step training-domain validation "
                       "selects:\n\n", f);
        else fputs("Target mIoU (%):\n\n", f);
        md_table(f, g, cols, n_cols, false);
        if (cls) {
            fputs("\nAt the last step:\n\n", f);
            md_table(f, g, cols, n_cols, true);
        }
        fputs("\n(mean ± standard deviation over the finished runs, ddof = 1; avg: each run's "
              "average over the columns, then over runs)\n", f);
    }
    const char *fcols[MAX_FLAT_COLS];
    const int n_f = flat_columns(g, fcols, MAX_FLAT_COLS);
    if (n_f) {
        fputs("\n## Flatness\n\nTraining-domain loss L of each run's final model (the weights "
              "its method evaluates) and its sharpness, by `dgseg flatness`: sharpness r = "
              "E[L(w + r d) - L(w)] over random filter-normalised directions d; worst rho = "
              "max over ||e|| <= rho of L(w + e) - L(w), by projected gradient ascent. Mean ± "
              "sd over the runs that measured it (runs: how many):\n\n| method |", f);
        for (int j = 0; j < n_f; j++) fprintf(f, " %s |", fcols[j]);
        fputs("\n|---|", f);
        for (int j = 0; j < n_f; j++) fputs("---:|", f);
        fputc('\n', f);
        const char *names[MAX_ARMS * 4];
        const int n_g = groups(g, names, (int)DG_ARRAY_LEN(names));
        for (int k = 0; k < n_g; k++) {
            fprintf(f, "| %s |", names[k]);
            for (int j = 0; j < n_f; j++) {
                const cell c = flat_cell(g, names[k], fcols[j]);
                if (c.n == 0) fputs(" — |", f);
                else if (c.n == 1) fprintf(f, " %.4f (1) |", c.mean);
                else fprintf(f, " %.4f ± %.4f (%d) |", c.mean, c.sd, c.n);
            }
            fputc('\n', f);
        }
    }
    fputs("\n## Runs\n\n| method | seed | status | folder |", f);
    for (int j = 0; j < n_cols; j++) fprintf(f, " %s |", cols[j]);
    fputs(" avg |\n|---|---:|---|---|", f);
    for (int j = 0; j <= n_cols; j++) fputs("---:|", f);
    fputc('\n', f);
    for (int i = 0; i < g->n_runs; i++) {
        const agg_run *r = &g->runs[i];
        fprintf(f, "| %s | %ld | %s | %s |", r->group, r->seed, run_status_names[r->status],
                r->dir);
        for (int j = 0; j <= n_cols; j++) {
            const double v = r->status != RUN_DONE ? NAN : j < n_cols
                    ? run_value(r, cols[j], false) : run_avg(r, cols, n_cols, false);
            if (isfinite(v)) fprintf(f, " %.2f |", v);
            else fputs(" — |", f);
        }
        fputc('\n', f);
    }
    bool any = false;
    for (int i = 0; i < g->n_runs; i++) {
        const agg_run *r = &g->runs[i];
        if (r->status == RUN_DONE) continue;
        if (!any) fputs("\nNot averaged:\n\n", f);
        any = true;
        fprintf(f, "- %s (%s, seed %ld): %s%s%s\n", r->dir, r->group, r->seed,
                run_status_names[r->status], r->why ? ": " : "", r->why ? r->why : "");
    }
    fclose(f);
    char *out = dg_xstrdup(buf);
    free(buf);
    return out;
}

static cJSON *cell_json(const cell *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", c->n);
    cJSON_AddItemToObject(o, "mean", isfinite(c->mean) ? cJSON_CreateNumber(c->mean)
                                                       : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "sd", isfinite(c->sd) ? cJSON_CreateNumber(c->sd)
                                                   : cJSON_CreateNull());
    return o;
}

static char *agg_json(const agg *g) {
    const char *cols[MAX_COLS], *names[MAX_ARMS * 4];
    const int n_cols = columns(g, cols, MAX_COLS);
    const int n_g = groups(g, names, (int)DG_ARRAY_LEN(names));
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "title", g->title);
    cJSON_AddStringToObject(root, "task", g->task);
    cJSON *jc = cJSON_AddArrayToObject(root, "columns");
    for (int j = 0; j < n_cols; j++) cJSON_AddItemToArray(jc, cJSON_CreateString(cols[j]));
    cJSON *arms = cJSON_AddArrayToObject(root, "methods");
    for (int k = 0; k < n_g; k++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "name", names[k]);
        for (int pick = 0; pick < 2; pick++) {
            if (pick && strcmp(g->task, "classification")) break;
            cJSON *o = cJSON_AddObjectToObject(a, pick ? "last" : "selected");
            for (int j = 0; j <= n_cols; j++) {
                const cell c = cell_of(g, names[k], cols, n_cols, j, pick);
                cJSON_AddItemToObject(o, j < n_cols ? cols[j] : "avg", cell_json(&c));
            }
        }
        const char *fcols[MAX_FLAT_COLS];
        const int n_f = flat_columns(g, fcols, MAX_FLAT_COLS);
        cJSON *fo = n_f ? cJSON_AddObjectToObject(a, "flatness") : NULL;
        for (int j = 0; j < n_f; j++) {
            const cell c = flat_cell(g, names[k], fcols[j]);
            cJSON_AddItemToObject(fo, fcols[j], cell_json(&c));
        }
        cJSON_AddItemToArray(arms, a);
    }
    cJSON *runs = cJSON_AddArrayToObject(root, "runs");
    for (int i = 0; i < g->n_runs; i++) {
        const agg_run *r = &g->runs[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "method", r->group);
        cJSON_AddNumberToObject(o, "seed", (double)r->seed);
        cJSON_AddStringToObject(o, "folder", r->dir);
        cJSON_AddStringToObject(o, "status", run_status_names[r->status]);
        if (r->why) cJSON_AddStringToObject(o, "why", r->why);
        cJSON *v = cJSON_AddObjectToObject(o, "values");
        for (int k = 0; k < r->n && r->status == RUN_DONE; k++)
            cJSON_AddItemToObject(v, r->col[k], isfinite(r->sel[k])
                            ? cJSON_CreateNumber(r->sel[k]) : cJSON_CreateNull());
        cJSON *fv = r->nf ? cJSON_AddObjectToObject(o, "flatness") : NULL;
        for (int k = 0; k < r->nf; k++)
            cJSON_AddItemToObject(fv, r->fcol[k], isfinite(r->fval[k])
                            ? cJSON_CreateNumber(r->fval[k]) : cJSON_CreateNull());
        cJSON_AddItemToArray(runs, o);
    }
    char *s = cJSON_Print(root);
    char *out = dg_xstrdup(s);
    cJSON_free(s);
    cJSON_Delete(root);
    return out;
}

/* ---- the figure ----------------------------------------------------------- */

/* study.png: grouped bars (mean, with the standard deviation as an error
 * bar) per column and method, then every run's training-domain validation
 * over steps (segmentation: the sources' validation mIoU; classification:
 * the training domains' validation accuracy of the first test domain),
 * coloured by method. */
typedef struct figure {
    const agg *g;
    const char *cols[MAX_COLS];
    int n_cols;
    const char *names[MAX_ARMS * 4];
    int n_g;
    dg_metrics_data *curves; /* (n_runs), zeroed where a run has none */
} figure;

static void plot_text(char *dst, size_t size, const char *src) { /* '#' is PLplot's escape */
    size_t k = 0;
    for (; *src && k + 2 < size; src++) {
        if (*src == '#') dst[k++] = '#';
        dst[k++] = *src;
    }
    dst[k] = '\0';
}

static void legend(const figure *f) {
    PLINT opt[MAX_ARMS * 4], col[MAX_ARMS * 4], sty[MAX_ARMS * 4];
    PLFLT wid[MAX_ARMS * 4];
    char names[MAX_ARMS * 4][64];
    const char *text[MAX_ARMS * 4];
    for (int k = 0; k < f->n_g; k++) {
        opt[k] = PL_LEGEND_LINE;
        col[k] = 2 + k % 8;
        sty[k] = 1;
        wid[k] = 4.0;
        plot_text(names[k], sizeof(names[k]), f->names[k]);
        text[k] = names[k];
    }
    PLFLT lw, lh;
    plcol0(1);
    pllegend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
            PL_POSITION_RIGHT | PL_POSITION_TOP | PL_POSITION_INSIDE, 0.01, 0.02, 0.06, 0, 1, 1,
            0, 0, f->n_g, opt, 1.0, 0.8, 1.8, 0.0, col, text, NULL, NULL, NULL, NULL, col, sty,
            wid, NULL, NULL, NULL, NULL);
}

static void draw_figure(void *ctx) {
    const figure *f = ctx;
    const agg *g = f->g;
    const bool cls = !strcmp(g->task, "classification");
    /* bars */
    double top = 1.0;
    for (int k = 0; k < f->n_g; k++)
        for (int j = 0; j <= f->n_cols; j++) {
            const cell c = cell_of(g, f->names[k], f->cols, f->n_cols, j, false);
            if (c.n) top = fmax(top, c.mean + (isfinite(c.sd) ? c.sd : 0.0));
        }
    pladv(0);
    plvpor(0.08, 0.97, 0.16, 0.88);
    plwind(-0.5, f->n_cols + 0.5, 0.0, 1.15 * top);
    plcol0(1);
    plbox("bc", 0.0, 0, "bcnstv", 0.0, 0);
    pllab("", cls ? "accuracy (%)" : "mIoU (%)",
            cls ? "test-domain accuracy at the selected step: mean, +-1 sd over runs"
                : "target mIoU: mean, +-1 sd over runs");
    for (int j = 0; j <= f->n_cols; j++) {
        char t[96];
        plot_text(t, sizeof(t), j < f->n_cols ? f->cols[j] : "average");
        plmtex("b", 1.2, (j + 0.5) / (f->n_cols + 1.0), 0.5, t);
    }
    const double w = 0.8 / f->n_g;
    for (int k = 0; k < f->n_g; k++)
        for (int j = 0; j <= f->n_cols; j++) {
            const cell c = cell_of(g, f->names[k], f->cols, f->n_cols, j, false);
            if (!c.n) continue;
            const PLFLT x0 = j - 0.4 + k * w, x1 = x0 + 0.9 * w;
            PLFLT bx[4] = {x0, x1, x1, x0}, by[4] = {0, 0, c.mean, c.mean};
            plcol0(2 + k % 8);
            plfill(4, bx, by);
            if (isfinite(c.sd)) {
                PLFLT ex = 0.5 * (x0 + x1), lo = c.mean - c.sd, hi = c.mean + c.sd;
                plcol0(1);
                plerry(1, &ex, &lo, &hi);
            }
        }
    legend(f);
    /* validation curves */
    double xmax = 1, ylo = INFINITY, yhi = -INFINITY;
    for (int i = 0; i < g->n_runs; i++) {
        const dg_series *sr = dg_metrics_find(&f->curves[i], "eval", cls ? "val_acc" : "val_miou");
        for (int k = 0; sr && k < sr->n; k++)
            if (isfinite(sr->value[k])) {
                xmax = fmax(xmax, (double)sr->step[k]);
                ylo = fmin(ylo, 100 * sr->value[k]);
                yhi = fmax(yhi, 100 * sr->value[k]);
            }
    }
    if (!(ylo < yhi)) {
        ylo = 0;
        yhi = 100;
    }
    pladv(0);
    plvpor(0.08, 0.97, 0.16, 0.88);
    plwind(0, xmax, ylo - 0.05 * (yhi - ylo), yhi + 0.05 * (yhi - ylo));
    plcol0(1);
    plbox("bcnst", 0.0, 0, "bcnstv", 0.0, 0);
    pllab("iteration", "%", cls ? "training-domain validation accuracy, every run"
                                : "source validation mIoU, every run");
    for (int i = 0; i < g->n_runs; i++) {
        const dg_series *sr = dg_metrics_find(&f->curves[i], "eval", cls ? "val_acc" : "val_miou");
        if (!sr || sr->n == 0) continue;
        int k = 0;
        while (k < f->n_g && strcmp(f->names[k], g->runs[i].group)) k++;
        PLFLT *x = dg_xmalloc((size_t)sr->n * sizeof(PLFLT));
        PLFLT *y = dg_xmalloc((size_t)sr->n * sizeof(PLFLT));
        int n = 0;
        for (int q = 0; q < sr->n; q++)
            if (isfinite(sr->value[q])) {
                x[n] = (PLFLT)sr->step[q];
                y[n++] = 100 * sr->value[q];
            }
        plcol0(2 + k % 8);
        plwidth(1.5);
        if (n > 1) plline(n, x, y);
        if (n > 0) plpoin(n, x, y, 17);
        plwidth(1.0);
        dg_free(x), dg_free(y);
    }
}

/* The run's metrics: dir/metrics.jsonl, or for a classification run its
 * first test domain's (dir/test-<column>/metrics.jsonl). */
static void read_curves(const agg *g, const agg_run *r, const char *first_col,
        dg_metrics_data *d) {
    memset(d, 0, sizeof(*d));
    char *p = !strcmp(g->task, "classification") && first_col
            ? dg_xasprintf("%s/test-%s/metrics.jsonl", r->dir, first_col)
            : dg_xasprintf("%s/metrics.jsonl", r->dir);
    if (dg_is_file(p) && dg_metrics_read(d, p) != DG_STATUS_OK) memset(d, 0, sizeof(*d));
    dg_free(p);
}

static void agg_figure(const agg *g, const char *dir) {
    figure f;
    memset(&f, 0, sizeof(f));
    f.g = g;
    f.n_cols = columns(g, f.cols, MAX_COLS);
    f.n_g = groups(g, f.names, (int)DG_ARRAY_LEN(f.names));
    if (!f.n_cols || !f.n_g) return;
    f.curves = dg_xcalloc((size_t)g->n_runs, sizeof(*f.curves));
    for (int i = 0; i < g->n_runs; i++) read_curves(g, &g->runs[i], f.cols[0], &f.curves[i]);
    char *path = dg_xasprintf("%s/study.png", dir);
    dg_report_plot(path, "study figure", 1000, 760, 2, draw_figure, &f);
    dg_free(path);
    for (int i = 0; i < g->n_runs; i++) dg_metrics_data_free(&f.curves[i]);
    dg_free(f.curves);
}

/* Writes DIR/study.md and DIR/study.json and prints the markdown. */
static dg_status agg_write(const agg *g, const char *dir) {
    char *md = agg_markdown(g), *js = agg_json(g);
    dg_status st = dg_make_dirs(dir);
    if (st == DG_STATUS_OK) {
        char *pm = dg_xasprintf("%s/study.md", dir), *pj = dg_xasprintf("%s/study.json", dir);
        const dg_file_part m = {md, strlen(md)}, j = {js, strlen(js)};
        st = dg_file_write_atomic(pm, &m, 1);
        if (st == DG_STATUS_OK) st = dg_file_write_atomic(pj, &j, 1);
        if (st == DG_STATUS_OK) {
            agg_figure(g, dir); /* a figure that cannot be drawn is a warning */
            printf("%s\nstudy: %s, %s, %s/study.png\n", md, pm, pj, dir);
        }
        dg_free(pm), dg_free(pj);
    }
    fflush(stdout);
    dg_free(md), dg_free(js);
    return st;
}

/* ---- running ------------------------------------------------------------------ */

static volatile sig_atomic_t stop_signal;
static volatile pid_t child_pid;

static void on_signal(int sig) {
    stop_signal = sig;
    if (child_pid > 0) kill(child_pid, sig);
}

static void fmt_time(double s, char *buf, size_t n) {
    const long t = (long)(s + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs `exe ARGS` (args[0] the command) with its output appended to
 * log_path; the exit code (128 + signal when one ended it, -1 when it
 * could not start). */
static int run_child(const char *exe, const dg_strvec *args, const char *log_path) {
    const int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) {
        dg_log_error("%s: cannot open: %s", log_path, strerror(errno));
        return -1;
    }
    char **argv = dg_xcalloc(args->n + 2, sizeof(*argv));
    argv[0] = "dgseg"; /* what ps shows (exe may be /proc/self/exe) */
    for (size_t i = 0; i < args->n; i++) argv[1 + i] = args->v[i];
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid == 0) {
        const int in = open("/dev/null", O_RDONLY);
        if (in < 0 || dup2(in, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) _exit(127);
        execv(exe, argv);
        _exit(127);
    }
    close(fd);
    dg_free(argv);
    if (pid < 0) {
        dg_log_error("cannot start %s: %s", exe, strerror(errno));
        return -1;
    }
    child_pid = pid;
    if (stop_signal) kill(pid, stop_signal); /* a signal that came before child_pid was set */
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    child_pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* `exe train CONFIG OVERRIDES`, its output in dir/train.log. */
static int run_train(const char *exe, const char *config, const dg_strvec *ov, const char *dir) {
    if (dg_make_dirs(dir) != DG_STATUS_OK) return -1;
    dg_strvec args = {0};
    dg_strvec_push(&args, dg_xstrdup("train"));
    dg_strvec_push(&args, dg_xstrdup(config));
    for (size_t i = 0; i < ov->n; i++) dg_strvec_push(&args, dg_xstrdup(ov->v[i]));
    char *log = dg_xasprintf("%s/train.log", dir);
    const int code = run_child(exe, &args, log);
    dg_free(log);
    dg_strvec_free(&args);
    return code;
}

/* The folders of a run that hold file `holding` (a model's
 * "checkpoints/last.safetensors", its "flatness/flatness.json"): the run
 * folder (segmentation) or its test-DOMAIN folders (classification). */
static void model_dirs(const char *dir, const char *holding, dg_strvec *out) {
    char *ck = dg_xasprintf("%s/%s", dir, holding);
    if (dg_is_file(ck)) dg_strvec_push(out, dg_xstrdup(dir));
    dg_free(ck);
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, "test-", 5)) continue;
        char *sub = dg_xasprintf("%s/%s", dir, e->d_name);
        ck = dg_xasprintf("%s/%s", sub, holding);
        if (dg_is_file(ck)) dg_strvec_push(out, sub);
        else dg_free(sub);
        dg_free(ck);
    }
    if (d) closedir(d);
    if (out->n > 1) qsort(out->v, out->n, sizeof(*out->v), cmp_str);
}

/* The study's flatness measurement of every model of finished run dir that
 * has none yet (MODEL/flatness/flatness.json), output in
 * MODEL/flatness.log. Returns the number that failed. */
static int run_flatness(const study *s, const char *exe, const char *dir, const char *what) {
    dg_strvec models = {0};
    model_dirs(dir, "checkpoints/last.safetensors", &models);
    int failed = 0;
    for (size_t i = 0; i < models.n && !stop_signal; i++) {
        const char *m = models.v[i];
        char *js = dg_xasprintf("%s/flatness/flatness.json", m);
        const bool have = dg_is_file(js);
        dg_free(js);
        if (have) continue;
        dg_strvec args = {0};
        dg_strvec_push(&args, dg_xstrdup("flatness"));
        dg_strvec_push(&args, dg_xasprintf("%s/config.ini", dir));
        dg_strvec_push(&args, dg_xstrdup("--checkpoint"));
        dg_strvec_push(&args, dg_xasprintf("%s/checkpoints/last.safetensors", m));
        dg_strvec_push(&args, dg_xstrdup("--out"));
        dg_strvec_push(&args, dg_xasprintf("%s/flatness", m));
        for (size_t k = 0; k < s->flatness.n; k++)
            dg_strvec_push(&args, dg_xstrdup(s->flatness.v[k]));
        const char *base = strrchr(m, '/');
        if (base && !strncmp(base + 1, "test-", 5)) /* the classification run's held-out domain */
            dg_strvec_push(&args, dg_xasprintf("data.test_domains=%s", base + 6));
        char *log = dg_xasprintf("%s/flatness.log", m);
        printf("%s: flatness of %s (log %s)\n", what, m, log);
        fflush(stdout);
        const double t0 = dg_now();
        const int code = run_child(exe, &args, log);
        char t[32];
        fmt_time(dg_now() - t0, t, sizeof(t));
        if (code != 0 && !stop_signal) {
            failed++;
            printf("%s: flatness failed (exit %d after %s; see %s)\n", what, code, t, log);
        } else if (code == 0) {
            printf("%s: flatness done in %s\n", what, t);
        }
        fflush(stdout);
        dg_free(log);
        dg_strvec_free(&args);
    }
    dg_strvec_free(&models);
    return failed;
}

int dg_study_run(const char *study_path, const char *exe, bool dry_run) {
    study s;
    if (study_load(&s, study_path, true) != DG_STATUS_OK) {
        study_free(&s);
        return 2;
    }
    const int total = s.n_arms * s.n_seeds;
    printf("study %s: %d arms x %d seeds = %d runs in %s\n", s.name, s.n_arms, s.n_seeds,
            total, s.out);
    fflush(stdout);
    int rc = dry_run || dg_make_dirs(s.out) == DG_STATUS_OK ? 0 : 1;
    if (rc == 0 && !dry_run) { /* a copy of the study file, for `report` and the record */
        size_t n;
        char *text = dg_file_read_all(study_path, &n);
        char *copy = dg_xasprintf("%s/study.ini", s.out);
        const dg_file_part part = {text, n};
        if (!text || dg_file_write_atomic(copy, &part, 1) != DG_STATUS_OK) rc = 1;
        dg_free(copy), dg_free(text);
    }
    dg_cli_stop_signals old_sig;
    dg_cli_stop_signals_catch(&old_sig, on_signal);
    stop_signal = 0;
    agg g;
    memset(&g, 0, sizeof(g));
    g.title = dg_xasprintf("Study %s (%s)", s.name, study_path);
    int k = 0, failed = 0, failed_flat = 0;
    /* seed by seed: every arm's first seed before any second, so a study
     * cut short compares all arms on the seeds it has */
    for (int j = 0; rc == 0 && j < s.n_seeds; j++)
        for (int i = 0; i < s.n_arms; i++) {
            const arm *a = &s.arms[i];
            char *dir = run_dir(&s, a, s.seeds[j]);
            char *res = dg_xasprintf("%s/results.json", dir);
            k++;
            int status = RUN_DONE;
            char why[64] = "";
            if (!dg_is_file(res) && (stop_signal || dry_run)) {
                status = RUN_INCOMPLETE;
                if (dry_run) printf("[%d/%d] %s seed %ld: to run in %s\n", k, total, a->name,
                        s.seeds[j], dir);
            } else if (!dg_is_file(res)) {
                dg_strvec ck = {0}; /* the run's checkpoints (classification: per domain) */
                model_dirs(dir, "checkpoints/last.safetensors", &ck);
                printf("[%d/%d] %s seed %ld: %s (log %s/train.log)\n", k, total, a->name,
                        s.seeds[j], ck.n ? "resuming" : "running", dir);
                fflush(stdout);
                dg_strvec_free(&ck);
                dg_strvec ov = {0};
                run_overrides(&s, a, s.seeds[j], dir, &ov);
                const double t0 = dg_now();
                const int code = run_train(exe, a->config, &ov, dir);
                dg_strvec_free(&ov);
                char t[32];
                fmt_time(dg_now() - t0, t, sizeof(t));
                if (code == 0 && dg_is_file(res)) {
                    printf("[%d/%d] %s seed %ld: done in %s\n", k, total, a->name, s.seeds[j],
                            t);
                } else {
                    status = stop_signal ? RUN_INCOMPLETE : RUN_FAILED;
                    snprintf(why, sizeof(why), "exit %d after %s", code, t);
                    failed += !stop_signal;
                    printf("[%d/%d] %s seed %ld: %s (%s; see %s/train.log)\n", k, total,
                            a->name, s.seeds[j], stop_signal ? "interrupted" : "failed", why,
                            dir);
                }
                fflush(stdout);
            }
            if (status == RUN_DONE && s.flatness.n && !dry_run && !stop_signal) {
                char what[96];
                snprintf(what, sizeof(what), "[%d/%d] %s seed %ld", k, total, a->name,
                        s.seeds[j]);
                failed_flat += run_flatness(&s, exe, dir, what);
            }
            agg_add(&g, dir, a->name, s.seeds[j], status, why[0] ? why : NULL);
            dg_free(dir), dg_free(res);
        }
    dg_cli_stop_signals_restore(&old_sig);
    if (rc == 0 && !dry_run && agg_write(&g, s.out) != DG_STATUS_OK) rc = 1;
    if (rc == 0 && stop_signal) {
        dg_log_error("study %s: stopped by signal %d; `dgseg study %s` resumes it", s.name,
                (int)stop_signal, study_path);
        rc = 1;
    } else if (rc == 0 && failed) {
        dg_log_error("study %s: %d of %d runs failed (listed above; not averaged); `dgseg study "
                     "%s` runs them again", s.name, failed, total, study_path);
        rc = 1;
    } else if (rc == 0 && failed_flat) {
        dg_log_error("study %s: %d flatness measurements failed (listed above); `dgseg study "
                     "%s` runs them again", s.name, failed_flat, study_path);
        rc = 1;
    }
    agg_free(&g);
    study_free(&s);
    return rc;
}

static void study_usage(FILE *f) {
    fprintf(f, "usage: dgseg study STUDY.ini [--dry-run]\n\n"
               "Runs every (arm, seed) of STUDY.ini one after another (skipping finished runs,\n"
               "resuming interrupted ones) and writes study.md, study.json and study.png to\n"
               "its folder.\n"
               "  --dry-run   check the study and list the runs still to do; run nothing\n");
}

int dg_study_main(int argc, char **argv) {
    const char *path = NULL;
    bool dry = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            study_usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--dry-run")) dry = true;
        else if (!path && argv[i][0] != '-') path = argv[i];
        else {
            fprintf(stderr, "dgseg study: unexpected argument '%s'\n", argv[i]);
            study_usage(stderr);
            return 2;
        }
    }
    if (!path) {
        study_usage(stderr);
        return 2;
    }
    /* this very binary, even when a rebuild has replaced its file since:
     * every run of one `dgseg study` runs the same code */
    return dg_study_run(path, "/proc/self/exe", dry);
}

/* ---- dgseg report ------------------------------------------------------------- */

/* Adds dir: a study folder (its study.ini: its arms and seeds) or a run
 * folder (results.json or config.ini). */
static void report_add(agg *g, const char *dir) {
    char *ini = dg_xasprintf("%s/study.ini", dir);
    char *res = dg_xasprintf("%s/results.json", dir), *cfg = dg_xasprintf("%s/config.ini", dir);
    if (dg_is_file(ini)) {
        study s;
        memset(&s, 0, sizeof(s));
        if (study_load(&s, ini, false) == DG_STATUS_OK) {
            for (int i = 0; i < s.n_arms; i++)
                for (int j = 0; j < s.n_seeds; j++) {
                    char *d = dg_xasprintf("%s/%s/seed-%ld", dir, s.arms[i].name, s.seeds[j]);
                    char *r = dg_xasprintf("%s/results.json", d);
                    const bool done = dg_is_file(r);
                    agg_add(g, d, s.arms[i].name, s.seeds[j], done ? RUN_DONE : RUN_INCOMPLETE,
                            done ? NULL : "no results.json");
                    dg_free(d), dg_free(r);
                }
        } else {
            agg_add(g, dir, "unknown", -1, RUN_UNREADABLE, "its study.ini does not load");
        }
        study_free(&s);
    } else if (dg_is_file(res) || dg_is_file(cfg)) {
        const bool done = dg_is_file(res);
        agg_add(g, dir, NULL, -1, done ? RUN_DONE : RUN_INCOMPLETE,
                done ? NULL : "no results.json");
    } else {
        agg_add(g, dir, "unknown", -1, RUN_UNREADABLE,
                dg_is_dir(dir) ? "neither a run folder nor a study folder" : "no such folder");
    }
    dg_free(ini), dg_free(res), dg_free(cfg);
}

int dg_report_main(int argc, char **argv) {
    const char *out = NULL;
    agg g;
    memset(&g, 0, sizeof(g));
    int n_dirs = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: dgseg report RUN_OR_STUDY_DIR... [--out DIR]\n\n"
                   "Aggregates run folders (grouped by method) and study folders (by arm): per\n"
                   "method, mean ± sd over runs per target or test domain; prints the table\n"
                   "and, with --out, writes DIR/study.md and DIR/study.json.\n");
            agg_free(&g);
            return 0;
        }
        if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "dgseg report: unexpected argument '%s'\n", argv[i]);
            agg_free(&g);
            return 2;
        } else {
            n_dirs++;
        }
    }
    if (!n_dirs) {
        fprintf(stderr, "usage: dgseg report RUN_OR_STUDY_DIR... [--out DIR]\n");
        return 2;
    }
    g.title = dg_xstrdup("Report");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out")) {
            i++;
            continue;
        }
        report_add(&g, argv[i]);
    }
    int rc = 0;
    if (out) {
        rc = agg_write(&g, out) == DG_STATUS_OK ? 0 : 1;
    } else {
        char *md = agg_markdown(&g);
        fputs(md, stdout);
        dg_free(md);
    }
    int done = 0;
    for (int i = 0; i < g.n_runs; i++) done += g.runs[i].status == RUN_DONE;
    if (rc == 0 && done == 0) {
        dg_log_error("report: no finished run among the folders given");
        rc = 1;
    }
    agg_free(&g);
    return rc;
}
