/* app/metrics_log.c -- see metrics_log.h. */
#define _POSIX_C_SOURCE 200809L
#include "app/metrics_log.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "app/cli.h"
#include "data/fsutil.h"

/* v in the shortest of %.15g .. %.17g that reads back exactly (cJSON's own
 * printer accepts a one-ulp difference); null when not finite. */
static cJSON *json_exact(double v) {
    if (!isfinite(v)) return cJSON_CreateNull();
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    return cJSON_CreateRaw(buf);
}


/* ---- metrics.jsonl --------------------------------------------------------- */

/* Parses one line [s, s + n) as a JSON object with a numeric "step";
 * NULL when it is not one (torn, malformed, other JSON). */
static cJSON *parse_line(const char *s, size_t n, int64_t *step) {
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    if (!o) return NULL;
    for (; end && end < s + n; end++) {
        if (*end != ' ' && *end != '\t' && *end != '\r') {
            cJSON_Delete(o);
            return NULL;
        }
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step");
    if (!cJSON_IsObject(o) || !cJSON_IsNumber(st)) {
        cJSON_Delete(o);
        return NULL;
    }
    *step = (int64_t)st->valuedouble;
    return o;
}

/* Rewrites path keeping only the complete lines with step <= resume_step. */
static dg_status metrics_truncate(const char *path, int64_t resume_step) {
    size_t size;
    char *text = dg_file_read_all(path, &size);
    if (!text) return DG_STATUS_ERR_IO;
    dg_file_part *keep = dg_xmalloc((size / 2 + 1) * sizeof(*keep));
    int n_keep = 0, n_drop = 0;
    for (size_t pos = 0; pos < size;) {
        const char *nl = memchr(text + pos, '\n', size - pos);
        const size_t len = nl ? (size_t)(nl - (text + pos)) : size - pos;
        int64_t step;
        cJSON *o = nl ? parse_line(text + pos, len, &step) : NULL;
        if (o && step <= resume_step) {
            keep[n_keep].data = text + pos;
            keep[n_keep].size = len + 1;
            n_keep++;
        } else if (len > 0 || !nl) {
            n_drop++;
        }
        cJSON_Delete(o);
        pos += len + 1;
    }
    dg_status st = DG_STATUS_OK;
    if (n_drop > 0) {
        st = dg_file_write_atomic(path, keep, n_keep);
        if (st == DG_STATUS_OK)
            dg_log_info("%s: resuming at step %lld: dropped %d line(s) written after it", path,
                    (long long)resume_step, n_drop);
    }
    dg_free(keep);
    dg_free(text);
    return st;
}

dg_status dg_metrics_open(dg_metrics *m, const char *path, bool resume, int64_t resume_step) {
    memset(m, 0, sizeof(*m));
    if (resume && dg_is_file(path)) {
        const dg_status st = metrics_truncate(path, resume_step);
        if (st != DG_STATUS_OK) return st;
    }
    m->f = fopen(path, resume ? "a" : "w");
    if (!m->f) {
        dg_log_error("%s: cannot open the metrics log: %s", path, strerror(errno));
        return DG_STATUS_ERR_IO;
    }
    m->path = dg_xstrdup(path);
    return DG_STATUS_OK;
}

void dg_metrics_open_discard(dg_metrics *m) {
    memset(m, 0, sizeof(*m));
    m->discard = true;
}

dg_status dg_metrics_log(dg_metrics *m, const char *kind, int64_t step, const dg_metric *values,
        int n_values) {
    if (m->discard) return DG_STATUS_OK;
    DG_ASSERT(m->f && kind && n_values >= 0);
    for (int i = 0; i < n_values; i++)
        DG_ASSERT(strcmp(values[i].name, "step") && strcmp(values[i].name, "kind"));
    if (m->failed) return DG_STATUS_ERR_IO;
    cJSON *o = cJSON_CreateObject();
    char step_text[32];
    snprintf(step_text, sizeof(step_text), "%lld", (long long)step);
    cJSON_AddRawToObject(o, "step", step_text);
    cJSON_AddStringToObject(o, "kind", kind);
    for (int i = 0; i < n_values; i++)
        cJSON_AddItemToObject(o, values[i].name, json_exact(values[i].value));
    char *json = cJSON_PrintUnformatted(o);
    DG_ASSERT(json);
    char *line = dg_xasprintf("%s\n", json);
    cJSON_free(json);
    cJSON_Delete(o);
    /* one write of the whole line, past the stream's (empty) buffer; a
     * line the disk could take only part of is cut off again, so the log
     * holds whole lines only */
    const int fd = fileno(m->f);
    struct stat sb;
    errno = 0;
    const bool sized = fflush(m->f) == 0 && fstat(fd, &sb) == 0;
    int err = sized ? 0 : errno ? errno : EIO;
    for (size_t done = 0, n = strlen(line); err == 0 && done < n;) {
        const ssize_t k = write(fd, line + done, n - done);
        if (k > 0) done += (size_t)k;
        else if (k == 0 || errno != EINTR) err = k == 0 ? EIO : errno;
    }
    dg_free(line);
    if (err != 0) {
        if (sized && (ftruncate(fd, sb.st_size) != 0 || lseek(fd, sb.st_size, SEEK_SET) < 0))
            dg_log_warn("%s: cannot cut off the partial line: %s", m->path, strerror(errno));
        dg_log_error("%s: cannot append to the metrics log at step %lld: %s", m->path,
                (long long)step, strerror(err));
        m->failed = true;
        return DG_STATUS_ERR_IO;
    }
    return DG_STATUS_OK;
}

dg_status dg_metrics_log_train(dg_metrics *m, int64_t step, double loss, double lr,
        double images_per_s) {
    const dg_metric v[] = {{"loss", loss}, {"lr", lr}, {"img_s", images_per_s}};
    return dg_metrics_log(m, "train", step, v, (int)DG_ARRAY_LEN(v));
}

void dg_metrics_close(dg_metrics *m) {
    if (m->f) fclose(m->f);
    dg_free(m->path);
    memset(m, 0, sizeof(*m));
}

/* Grows an array holding n elements so that element n fits: capacities are
 * powers of two, so growing at n = 0, 1, 2, 4, ... is enough. */
static void *grow(void *p, int n, size_t elem) {
    if (n == 0) return dg_xrealloc(p, elem);
    if ((n & (n - 1)) == 0) return dg_xrealloc(p, 2 * (size_t)n * elem);
    return p;
}

static dg_series *series_get(dg_metrics_data *d, const char *kind, const char *name) {
    for (int i = 0; i < d->n_series; i++)
        if (!strcmp(d->series[i].kind, kind) && !strcmp(d->series[i].name, name))
            return &d->series[i];
    d->series = grow(d->series, d->n_series, sizeof(*d->series));
    dg_series *s = &d->series[d->n_series++];
    memset(s, 0, sizeof(*s));
    s->kind = dg_xstrdup(kind);
    s->name = dg_xstrdup(name);
    return s;
}

static void series_push(dg_series *s, int64_t step, double v) {
    s->step = grow(s->step, s->n, sizeof(*s->step));
    s->value = grow(s->value, s->n, sizeof(*s->value));
    s->step[s->n] = step;
    s->value[s->n] = v;
    s->n++;
}

dg_status dg_metrics_read(dg_metrics_data *d, const char *path) {
    memset(d, 0, sizeof(*d));
    size_t size;
    char *text = dg_file_read_all(path, &size);
    if (!text) return DG_STATUS_ERR_IO;
    int line_no = 0;
    for (size_t pos = 0; pos < size;) {
        const char *nl = memchr(text + pos, '\n', size - pos);
        const size_t len = nl ? (size_t)(nl - (text + pos)) : size - pos;
        line_no++;
        int64_t step;
        cJSON *o = len > 0 ? parse_line(text + pos, len, &step) : NULL;
        pos += len + 1;
        if (!o) {
            if (len > 0)
                dg_log_warn("%s:%d: not a metrics line (a JSON object with a numeric "
                        "\"step\"), skipped", path, line_no);
            continue;
        }
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "kind");
        const char *kind = cJSON_IsString(k) ? k->valuestring : "";
        for (const cJSON *it = o->child; it; it = it->next) {
            if (!strcmp(it->string, "step") || !strcmp(it->string, "kind")) continue;
            if (cJSON_IsNumber(it))
                series_push(series_get(d, kind, it->string), step, it->valuedouble);
            else if (cJSON_IsNull(it))
                series_push(series_get(d, kind, it->string), step, NAN);
        }
        cJSON_Delete(o);
    }
    dg_free(text);
    return DG_STATUS_OK;
}

const dg_series *dg_metrics_find(const dg_metrics_data *d, const char *kind, const char *name) {
    for (int i = 0; i < d->n_series; i++)
        if (!strcmp(d->series[i].kind, kind) && !strcmp(d->series[i].name, name))
            return &d->series[i];
    return NULL;
}

void dg_metrics_data_free(dg_metrics_data *d) {
    for (int i = 0; i < d->n_series; i++) {
        dg_free(d->series[i].kind);
        dg_free(d->series[i].name);
        dg_free(d->series[i].step);
        dg_free(d->series[i].value);
    }
    dg_free(d->series);
    memset(d, 0, sizeof(*d));
}
