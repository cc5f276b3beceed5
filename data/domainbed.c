/* data/domainbed.c -- DomainBed image-folder datasets (see domainbed.h,
 * docs/datasets.md §9.1). */
#define _POSIX_C_SOURCE 200809L
#include "data/domainbed.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/fsutil.h"

/* Deepest folder nesting below a class folder that is searched (ImageFolder
 * has no limit; this only guards against link cycles). */
#define DB_MAX_DEPTH 16

static const char *const image_ext[] = {
    ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
};

static bool has_image_ext(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return false;
    for (size_t i = 0; i < DG_ARRAY_LEN(image_ext); i++) {
        const char *e = image_ext[i];
        size_t n = strlen(e);
        if (strlen(dot) != n) continue;
        size_t j = 0;
        while (j < n && tolower((unsigned char)dot[j]) == e[j]) j++;
        if (j == n) return true;
    }
    return false;
}

/* Lists dir: sub-folder names into dirs and regular-file names into files
 * (either may be NULL), both sorted, "." entries skipped as os.walk does
 * not return them (hidden names are kept, as os.walk keeps them). */
static dg_status list_dir(const char *dir, dg_strvec *dirs, dg_strvec *files) {
    DIR *d = opendir(dir);
    if (!d) {
        dg_log_error("%s: cannot list folder: %s", dir, strerror(errno));
        return DG_STATUS_ERR_IO;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *full = dg_path_join(dir, e->d_name);
        struct stat sb;
        if (stat(full, &sb) == 0) {
            if (S_ISDIR(sb.st_mode) && dirs) dg_strvec_push(dirs, dg_xstrdup(e->d_name));
            if (S_ISREG(sb.st_mode) && files) dg_strvec_push(files, dg_xstrdup(e->d_name));
        }
        dg_free(full);
    }
    closedir(d);
    if (dirs) dg_strvec_sort(dirs);
    if (files) dg_strvec_sort(files);
    return DG_STATUS_OK;
}

/* ImageFolder's order is sorted(os.walk(class_dir)) with sorted file names:
 * by folder path, then file name. That is neither a pre-order walk (folder
 * "a b" sorts between "a" and "a/x") nor a sort of full paths ("a b/z" <
 * "a/y" but folder "a" < "a b"), so (folder, file) pairs are collected and
 * sorted. */
typedef struct walk_entry {
    char *dir;  /* folder path */
    char *name; /* file name */
} walk_entry;

typedef struct walk_list {
    walk_entry *v;
    size_t n, cap;
} walk_list;

static dg_status walk(const char *dir, int depth, walk_list *out) {
    dg_strvec dirs = {0}, files = {0};
    dg_status st = list_dir(dir, &dirs, &files);
    for (size_t i = 0; st == DG_STATUS_OK && i < files.n; i++) {
        if (!has_image_ext(files.v[i])) continue;
        if (out->n == out->cap) {
            out->cap = out->cap ? 2 * out->cap : 256;
            out->v = dg_xrealloc(out->v, out->cap * sizeof(*out->v));
        }
        out->v[out->n].dir = dg_xstrdup(dir);
        out->v[out->n].name = files.v[i];
        files.v[i] = NULL;
        out->n++;
    }
    for (size_t i = 0; st == DG_STATUS_OK && i < dirs.n && depth > 0; i++) {
        char *sub = dg_path_join(dir, dirs.v[i]);
        st = walk(sub, depth - 1, out);
        dg_free(sub);
    }
    dg_strvec_free(&dirs);
    dg_strvec_free(&files);
    return st;
}

static int cmp_walk(const void *pa, const void *pb) {
    const walk_entry *a = pa, *b = pb;
    int c = strcmp(a->dir, b->dir);
    return c ? c : strcmp(a->name, b->name);
}

static int find_str(char *const *v, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i], s)) return i;
    return -1;
}

/* Scans domain folder dom (class folders cls, sorted) into out. */
static dg_status scan_domain(const dg_domainbed *ds, const char *dom_dir, const dg_strvec *cls,
        dg_domainbed_domain *out) {
    int64_t cap = 0;
    for (size_t c = 0; c < cls->n; c++) {
        char *cdir = dg_path_join(dom_dir, cls->v[c]);
        walk_list wl = {0};
        dg_status st = walk(cdir, DB_MAX_DEPTH, &wl);
        dg_free(cdir);
        if (st == DG_STATUS_OK && wl.n > 1) qsort(wl.v, wl.n, sizeof(*wl.v), cmp_walk);
        int label = find_str(ds->classes, ds->n_classes, cls->v[c]);
        DG_ASSERT(label >= 0);
        for (size_t i = 0; i < wl.n; i++) {
            if (st == DG_STATUS_OK) {
                if (out->n == cap) {
                    cap = cap ? 2 * cap : 256;
                    out->paths = dg_xrealloc(out->paths, (size_t)cap * sizeof(*out->paths));
                    out->labels = dg_xrealloc(out->labels, (size_t)cap * sizeof(*out->labels));
                }
                out->paths[out->n] = dg_path_join(wl.v[i].dir, wl.v[i].name);
                out->labels[out->n] = label;
                out->n++;
            }
            dg_free(wl.v[i].dir);
            dg_free(wl.v[i].name);
        }
        dg_free(wl.v);
        if (st != DG_STATUS_OK) return st;
    }
    return DG_STATUS_OK;
}

dg_status dg_domainbed_open(const char *root, dg_domainbed *ds) {
    memset(ds, 0, sizeof(*ds));
    if (!dg_is_dir(root)) {
        dg_log_error("domainbed: %s: no such folder (expected <root>/<domain>/<class>/<image>)",
                root);
        return DG_STATUS_ERR_MISSING;
    }
    ds->root = dg_xstrdup(root);
    dg_strvec doms = {0};
    dg_status st = list_dir(root, &doms, NULL);
    if (st == DG_STATUS_OK && doms.n == 0) {
        dg_log_error("domainbed: %s holds no domain folders (expected <root>/<domain>/<class>/"
                     "<image>)", root);
        st = DG_STATUS_ERR_MISSING;
    }
    /* class folders of every domain, and their sorted union */
    dg_strvec *cls = dg_xcalloc(doms.n ? doms.n : 1, sizeof(*cls));
    dg_strvec all = {0};
    for (size_t d = 0; st == DG_STATUS_OK && d < doms.n; d++) {
        char *ddir = dg_path_join(root, doms.v[d]);
        st = list_dir(ddir, &cls[d], NULL);
        dg_free(ddir);
        for (size_t c = 0; st == DG_STATUS_OK && c < cls[d].n; c++)
            if (find_str(all.v, (int)all.n, cls[d].v[c]) < 0)
                dg_strvec_push(&all, dg_xstrdup(cls[d].v[c]));
    }
    dg_strvec_sort(&all);
    if (st == DG_STATUS_OK) {
        ds->n_classes = (int)all.n;
        ds->classes = all.v;
        all.v = NULL;
        all.n = all.cap = 0;
        ds->n_domains = (int)doms.n;
        ds->domains = dg_xcalloc(doms.n, sizeof(*ds->domains));
    }
    for (size_t d = 0; st == DG_STATUS_OK && d < doms.n; d++) {
        dg_domainbed_domain *dm = &ds->domains[d];
        dm->name = dg_xstrdup(doms.v[d]);
        char *ddir = dg_path_join(root, doms.v[d]);
        if (cls[d].n < (size_t)ds->n_classes) {
            for (int c = 0; c < ds->n_classes; c++)
                if (find_str(cls[d].v, (int)cls[d].n, ds->classes[c]) < 0)
                    dg_log_warn("domainbed: %s has no folder for class '%s' (class index %d "
                                "kept from the union of all domains)", ddir, ds->classes[c], c);
        }
        st = scan_domain(ds, ddir, &cls[d], dm);
        if (st == DG_STATUS_OK && dm->n == 0) {
            dg_log_error("domainbed: domain %s holds no images (.jpg .jpeg .png .ppm .bmp .pgm "
                         ".tif .tiff .webp) under its class folders", ddir);
            st = DG_STATUS_ERR_MISSING;
        }
        dg_free(ddir);
    }
    for (size_t d = 0; d < doms.n; d++) dg_strvec_free(&cls[d]);
    dg_free(cls);
    dg_strvec_free(&doms);
    dg_strvec_free(&all);
    if (st != DG_STATUS_OK) dg_domainbed_free(ds);
    return st;
}

void dg_domainbed_free(dg_domainbed *ds) {
    for (int d = 0; d < ds->n_domains && ds->domains; d++) {
        dg_domainbed_domain *dm = &ds->domains[d];
        for (int64_t k = 0; k < dm->n; k++) dg_free(dm->paths[k]);
        dg_free(dm->paths);
        dg_free(dm->labels);
        dg_free(dm->name);
    }
    dg_free(ds->domains);
    for (int c = 0; c < ds->n_classes; c++) dg_free(ds->classes[c]);
    dg_free(ds->classes);
    dg_free(ds->root);
    memset(ds, 0, sizeof(*ds));
}

int dg_domainbed_find_domain(const dg_domainbed *ds, const char *name) {
    for (int d = 0; d < ds->n_domains; d++)
        if (!strcmp(ds->domains[d].name, name)) return d;
    return -1;
}

dg_status dg_domainbed_load(const dg_domainbed *ds, int d, int64_t k, dg_image *img) {
    DG_ASSERT(d >= 0 && d < ds->n_domains && k >= 0 && k < ds->domains[d].n);
    return dg_image_read(ds->domains[d].paths[k], img);
}
