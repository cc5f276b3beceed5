/* data/seg_dataset.c -- the segmentation dataset readers of
 * docs/datasets.md §1-§6: layout detection, directory scans and split lists,
 * image/label pairing, and loading with encoding and size checks.
 * See data/seg_dataset.h. Shape letters: H, W (pixels). */
#define _POSIX_C_SOURCE 200809L
#include "data/seg_dataset.h"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/fsutil.h"
#include "data/png_io.h"

/* Deepest folder nesting a scan descends (Cityscapes' <city>/, GTAV's
 * RobustNet <any>/). */
#define SCAN_DEPTH 1

/* Missing partners logged one by one; the rest are summarised. */
#define DG_SEG_PROBLEMS_LOGGED 10

/* What loads met outside the native label range (dg_seg_dataset.oor). */
struct dg_seg_oor_state {
    _Atomic uint64_t pixels;
    _Atomic uint64_t labels;
    _Atomic uint64_t reads;
    _Atomic int64_t first;  /* lowest pair index; INT64_MAX: none */
    atomic_bool noted;      /* a warning about them was logged */
    atomic_bool summarised; /* the count was logged */
};

/* ---- readers -------------------------------------------------------------
 * A layout resolves to an image folder and a label folder plus the name
 * suffixes that turn a key (path relative to the folder, without suffix)
 * into a file name; flat GTAV/SYNTHIA take their keys from a split list. */
typedef struct layout {
    char *img_dir;
    char *lbl_dir;
    const char *img_suffix;
    const char *lbl_suffix;
    char *list;       /* split list file, or NULL: scan the folders */
    const char *what; /* layout in words */
} layout;

static void layout_free(layout *l) {
    dg_free(l->img_dir);
    dg_free(l->lbl_dir);
    dg_free(l->list);
    memset(l, 0, sizeof(*l));
}

typedef dg_status (*find_layout_fn)(const char *root, const char *split,
        const dg_seg_open_opts *opts, layout *out);

typedef struct reader_def {
    const char *name;
    dg_labelmap_kind map;
    dg_seg_label_encoding encoding;
    /* accepted split names; canonical[i] (or NULL: itself) is the name used */
    const char *splits[8];
    const char *canonical[8];
    const char *split_help;
    find_layout_fn find;
} reader_def;

/* The first existing folder of a NULL-terminated candidate list (a copy),
 * or NULL. */
static char *first_dir(char *const *cand) {
    for (size_t i = 0; cand[i]; i++)
        if (dg_is_dir(cand[i])) return dg_xstrdup(cand[i]);
    return NULL;
}

static void free_list(char **cand) {
    for (size_t i = 0; cand[i]; i++) dg_free(cand[i]);
}

static dg_status missing_layout(const char *reader, const char *root,
        const char *split, const char *looked) {
    dg_log_error("%s: no %s layout for split '%s' (looked for %s)", root,
            reader, split, looked);
    return DG_STATUS_ERR_MISSING;
}

static dg_status missing_labels(
        const char *reader, const char *img_dir, const char *looked) {
    dg_log_error("%s: %s images found but no label folder (looked for %s)",
            img_dir, reader, looked);
    return DG_STATUS_ERR_MISSING;
}

static dg_status find_cityscapes(const char *root, const char *split,
        const dg_seg_open_opts *opts, layout *out) {
    (void)opts;
    char *img[] = {dg_str_cat3(root, "/leftImg8bit/", split),
            dg_str_cat3(root, "/leftImg8bit_trainvaltest/leftImg8bit/", split), NULL};
    char *lbl[] = {dg_str_cat3(root, "/gtFine/", split),
            dg_str_cat3(root, "/gtFine_trainvaltest/gtFine/", split), NULL};
    dg_status st = DG_STATUS_OK;
    out->img_dir = first_dir(img);
    out->lbl_dir = out->img_dir ? first_dir(lbl) : NULL;
    if (!out->img_dir) {
        char *looked = dg_xasprintf("%s or %s", img[0], img[1]);
        st = missing_layout("cityscapes", root, split, looked);
        dg_free(looked);
    } else if (!out->lbl_dir) {
        char *looked = dg_xasprintf("%s or %s", lbl[0], lbl[1]);
        st = missing_labels("cityscapes", out->img_dir, looked);
        dg_free(looked);
    }
    out->img_suffix = "_leftImg8bit.png";
    out->lbl_suffix = "_gtFine_labelIds.png";
    out->what = "leftImg8bit/<split>/<city> + gtFine/<split>/<city>";
    free_list(img);
    free_list(lbl);
    return st;
}

/* The split list of a flat GTAV/SYNTHIA layout: the dataset's own
 * <root>/split_data/<ds>_split_<split>.txt (RobustNet's name) first, so a
 * dataset that carries its lists (a RobustNet copy, `dgseg synth` output)
 * uses them, then the project's opts->split_dir/<ds>_<split>.txt. */
static dg_status find_split_list(const char *reader, const char *root,
        const char *split, const dg_seg_open_opts *opts, layout *out) {
    char *project =
            opts && opts->split_dir
                    ? dg_xasprintf("%s/%s_%s.txt", opts->split_dir, reader, split)
                    : NULL;
    char *robustnet =
            dg_xasprintf("%s/split_data/%s_split_%s.txt", root, reader, split);
    dg_status st = DG_STATUS_OK;
    if (dg_is_file(robustnet))
        out->list = dg_xstrdup(robustnet);
    else if (project && dg_is_file(project))
        out->list = dg_xstrdup(project);
    else {
        dg_log_error("%s: the flat %s layout needs a split list for '%s' "
                     "(looked for "
                     "%s%s%s); use split 'all' for every frame",
                root, reader, split, project ? project : "",
                project ? " and " : "", robustnet);
        st = DG_STATUS_ERR_MISSING;
    }
    dg_free(project);
    dg_free(robustnet);
    return st;
}

/* GTAV and SYNTHIA share the logic: RobustNet's per-split folders, else the
 * flat folders with a split list (or every frame for split "all"). */
static dg_status find_synthetic(const char *reader, const char *root,
        const char *split, const char *img_sub, const char *lbl_sub,
        const char *split_dir_name, const dg_seg_open_opts *opts, layout *out) {
    char *img_base = dg_path_join(root, img_sub);
    char *lbl_base = dg_path_join(root, lbl_sub);
    char *img_split = dg_path_join(img_base, split_dir_name);
    char *lbl_split = dg_path_join(lbl_base, split_dir_name);
    dg_status st = DG_STATUS_OK;
    out->img_suffix = ".png";
    out->lbl_suffix = ".png";
    if (strcmp(split, "all") != 0 && dg_is_dir(img_split)) {
        out->what = "RobustNet per-split folders";
        out->img_dir = img_split;
        out->lbl_dir = lbl_split;
        img_split = lbl_split = NULL;
        if (!dg_is_dir(out->lbl_dir))
            st = missing_labels(reader, out->img_dir, out->lbl_dir);
    } else if (dg_is_dir(img_base)) {
        out->what = "flat folders";
        out->img_dir = img_base;
        out->lbl_dir = lbl_base;
        img_base = lbl_base = NULL;
        if (!dg_is_dir(out->lbl_dir))
            st = missing_labels(reader, out->img_dir, out->lbl_dir);
        else if (strcmp(split, "all") != 0)
            st = find_split_list(reader, root, split, opts, out);
    } else {
        char *looked = dg_xasprintf("%s or %s", img_split, img_base);
        st = missing_layout(reader, root, split, looked);
        dg_free(looked);
    }
    dg_free(img_base);
    dg_free(lbl_base);
    dg_free(img_split);
    dg_free(lbl_split);
    return st;
}

static dg_status find_gtav(const char *root, const char *split,
        const dg_seg_open_opts *opts, layout *out) {
    /* RobustNet names the validation folder "valid". */
    return find_synthetic("gtav", root, split, "images", "labels",
            strcmp(split, "val") == 0 ? "valid" : split, opts, out);
}

static dg_status find_synthia(const char *root, const char *split,
        const dg_seg_open_opts *opts, layout *out) {
    return find_synthetic(
            "synthia", root, split, "RGB", "GT/LABELS", split, opts, out);
}

static dg_status find_bdd100k(const char *root, const char *split,
        const dg_seg_open_opts *opts, layout *out) {
    (void)opts;
    char *off_img = dg_str_cat3(root, "/images/10k/", split);
    char *off_lbl = dg_str_cat3(root, "/labels/sem_seg/masks/", split);
    char *old_img = dg_str_cat3(root, "/images/", split);
    char *old_lbl = dg_str_cat3(root, "/labels/", split);
    dg_status st = DG_STATUS_OK;
    out->img_suffix = ".jpg";
    if (dg_is_dir(off_img)) {
        out->what = "official images/10k + labels/sem_seg/masks";
        out->img_dir = off_img;
        out->lbl_dir = off_lbl;
        out->lbl_suffix = ".png";
        off_img = off_lbl = NULL;
    } else if (dg_is_dir(old_img)) {
        out->what = "RobustNet images + labels/*_train_id.png";
        out->img_dir = old_img;
        out->lbl_dir = old_lbl;
        out->lbl_suffix = "_train_id.png";
        old_img = old_lbl = NULL;
    } else {
        char *looked = dg_xasprintf("%s or %s", off_img, old_img);
        st = missing_layout("bdd100k", root, split, looked);
        dg_free(looked);
    }
    if (st == DG_STATUS_OK && !dg_is_dir(out->lbl_dir))
        st = missing_labels("bdd100k", out->img_dir, out->lbl_dir);
    dg_free(off_img);
    dg_free(off_lbl);
    dg_free(old_img);
    dg_free(old_lbl);
    return st;
}

static dg_status find_mapillary(const char *root, const char *split,
        const dg_seg_open_opts *opts, layout *out) {
    (void)opts;
    char *img = dg_xasprintf("%s/%s/images", root, split);
    char *lbl[] = {dg_xasprintf("%s/%s/v1.2/labels", root, split),
            dg_xasprintf("%s/%s/labels", root, split), NULL};
    dg_status st = DG_STATUS_OK;
    out->img_suffix = ".jpg";
    out->lbl_suffix = ".png";
    out->what = "<split>/images + <split>/[v1.2/]labels";
    if (!dg_is_dir(img)) {
        st = missing_layout("mapillary", root, split, img);
    } else {
        out->img_dir = img;
        img = NULL;
        out->lbl_dir = first_dir(lbl);
        if (!out->lbl_dir) {
            char *looked = dg_xasprintf("%s or %s", lbl[0], lbl[1]);
            st = missing_labels("mapillary", out->img_dir, looked);
            dg_free(looked);
        }
    }
    dg_free(img);
    free_list(lbl);
    return st;
}

static const reader_def READERS[] = {
        {"cityscapes", DG_LABELMAP_CITYSCAPES, DG_SEG_LABEL_GRAY8,
                {"train", "val", "test"}, {NULL}, "train, val, test",
                find_cityscapes},
        {"gtav", DG_LABELMAP_GTAV, DG_SEG_LABEL_PALETTED,
                {"train", "val", "valid", "test", "all"},
                {NULL, NULL, "val", NULL, NULL},
                "train, val (valid), test, all", find_gtav},
        {"synthia", DG_LABELMAP_SYNTHIA, DG_SEG_LABEL_SAMPLE16,
                {"train", "val", "all"}, {NULL}, "train, val, all",
                find_synthia},
        {"bdd100k", DG_LABELMAP_BDD100K, DG_SEG_LABEL_GRAY8,
                {"train", "val", "test"}, {NULL}, "train, val, test",
                find_bdd100k},
        {"mapillary", DG_LABELMAP_MAPILLARY, DG_SEG_LABEL_PALETTED,
                {"training", "validation", "testing", "train", "val", "test"},
                {NULL, NULL, NULL, "training", "validation", "testing"},
                "training (train), validation (val), testing (test)",
                find_mapillary},
};

/* ---- scanning ------------------------------------------------------------ */

/* Appends to keys the paths (relative to base, without suffix) of the
 * entries ending in suffix under base/rel, descending depth more folder
 * levels. Entries that are not regular files (a dangling or looping link,
 * a FIFO, a socket, a device, a folder below the deepest level) are keys
 * too, and also go to odd: the pairing names them for what they are.
 * Nothing is opened but folders. */
static dg_status scan_dir(const char *base, const char *rel, int depth,
        const char *suffix, dg_strvec *keys, dg_strvec *odd) {
    char *dir = rel[0] ? dg_path_join(base, rel) : dg_xstrdup(base);
    DIR *d = opendir(dir);
    if (!d) {
        dg_log_error("%s: cannot list folder: %s", dir, strerror(errno));
        dg_free(dir);
        return DG_STATUS_ERR_IO;
    }
    dg_status st = DG_STATUS_OK;
    struct dirent *e;
    while (st == DG_STATUS_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *full = dg_path_join(dir, e->d_name);
        char *sub = rel[0] ? dg_path_join(rel, e->d_name) : dg_xstrdup(e->d_name);
        struct stat sb;
        const bool ok = stat(full, &sb) == 0;
        if (ok && S_ISDIR(sb.st_mode) && depth > 0) {
            st = scan_dir(base, sub, depth - 1, suffix, keys, odd);
        } else if (dg_ends_with(e->d_name, suffix)) {
            sub[strlen(sub) - strlen(suffix)] = '\0';
            if (!ok || !S_ISREG(sb.st_mode)) dg_strvec_push(odd, dg_xstrdup(sub));
            dg_strvec_push(keys, sub);
            sub = NULL;
        }
        dg_free(full);
        dg_free(sub);
    }
    closedir(d);
    dg_free(dir);
    return st;
}

dg_status dg_seg_split_list_read(const char *path, dg_strvec *keys) {
    FILE *f = fopen(path, "r");
    if (!f) {
        dg_log_error("%s: cannot open split list: %s", path, strerror(errno));
        return DG_STATUS_ERR_IO;
    }
    dg_status st = DG_STATUS_OK;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0;
    while (st == DG_STATUS_OK && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0) continue;
        if (strchr(line, '/') || line[0] == '.' || !dg_ends_with(line, ".png")) {
            dg_log_error("%s:%d: expected a frame file name like 00001.png, "
                         "got '%s'",
                    path, lineno, line);
            st = DG_STATUS_ERR_FORMAT;
            break;
        }
        line[len - 4] = '\0';
        dg_strvec_push(keys, dg_xstrdup(line));
    }
    if (st == DG_STATUS_OK && ferror(f)) {
        dg_log_error("%s: cannot read split list: %s", path, strerror(errno));
        st = DG_STATUS_ERR_IO;
    }
    free(line); /* getline allocates with malloc */
    fclose(f);
    return st;
}

static void add_pair(
        dg_seg_dataset *ds, size_t *cap, char *image, char *label) {
    if (ds->n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        ds->pairs = dg_xrealloc(ds->pairs, *cap * sizeof(*ds->pairs));
    }
    ds->pairs[ds->n].image = image;
    ds->pairs[ds->n].label = label;
    ds->n++;
}

/* Records and logs (warning) one problem; takes ownership of file and msg. */
static void add_problem(dg_seg_dataset *ds, size_t *cap, char *file,
        const char *kind, char *msg) {
    if (ds->n_problems == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        ds->problems = dg_xrealloc(ds->problems, *cap * sizeof(*ds->problems));
    }
    if (ds->n_problems < DG_SEG_PROBLEMS_LOGGED) dg_log_warn("%s", msg);
    ds->problems[ds->n_problems].file = file;
    ds->problems[ds->n_problems].kind = kind;
    ds->problems[ds->n_problems].message = msg;
    ds->n_problems++;
    if (dg_ends_with(kind, "_not_a_file")) ds->n_not_files++;
}

/* Pairs image and label when both are regular files (examined, never
 * opened): takes both strings. Otherwise records one problem naming what
 * each path that is not a regular file is (list: the split list the entry
 * comes from, or NULL) and frees them. */
static void pair_or_problem(dg_seg_dataset *ds, size_t *cap, size_t *pcap, char *image,
        char *label, const char *list, const char *entry) {
    char *wi, *wl;
    const dg_path_kind ki = dg_path_examine(image, &wi);
    const dg_path_kind kl = dg_path_examine(label, &wl);
    const char *kind = NULL;
    char *file = NULL, *msg = NULL;
    if (ki == DG_PATH_REGULAR && kl == DG_PATH_REGULAR) {
        add_pair(ds, cap, image, label);
        return;
    }
    if (ki == DG_PATH_REGULAR && kl == DG_PATH_MISSING) {
        kind = "missing_label";
        file = image;
        msg = dg_xasprintf("%s: image has no label (%s does not exist)", image, label);
    } else if (ki == DG_PATH_REGULAR) {
        kind = "label_not_a_file";
        file = label;
        msg = dg_xasprintf("%s: %s; the image %s has no usable label", label, wl, image);
    } else if (ki == DG_PATH_MISSING && kl == DG_PATH_REGULAR) {
        kind = "missing_image";
        file = label;
        msg = dg_xasprintf("%s: label has no image (%s does not exist)", label, image);
    } else if (ki == DG_PATH_MISSING && kl == DG_PATH_MISSING) {
        kind = "missing_image";
        file = image;
        msg = dg_xasprintf("%s: split list entry %s has neither image %s nor label %s",
                list ? list : "?", entry, image, label);
    } else if (ki == DG_PATH_MISSING) {
        kind = "label_not_a_file";
        file = label;
        msg = dg_xasprintf("%s: %s, and its image %s does not exist", label, wl, image);
    } else if (kl == DG_PATH_REGULAR) {
        kind = "image_not_a_file";
        file = image;
        msg = dg_xasprintf("%s: %s; its label %s has no usable image", image, wi, label);
    } else {
        kind = "image_not_a_file";
        file = image;
        msg = dg_xasprintf("%s: %s, and its label %s %s", image, wi, label, wl);
    }
    add_problem(ds, pcap, dg_xstrdup(file), kind, msg);
    dg_free(wi);
    dg_free(wl);
    dg_free(image);
    dg_free(label);
}

static int cmp_key(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Is key among the sorted keys of odd? */
static bool is_odd(const dg_strvec *odd, const char *key) {
    return odd->n && bsearch(&key, odd->v, odd->n, sizeof(*odd->v), cmp_key) != NULL;
}

/* Pairs sorted image keys with sorted label keys (a merge). A key on both
 * sides whose files are regular becomes a pair; any other key (on one side
 * only, or naming something that is not a regular file: odd_img, odd_lbl,
 * sorted) becomes one problem. */
static void pair_scanned(dg_seg_dataset *ds, const layout *l, const dg_strvec *img,
        const dg_strvec *lbl, const dg_strvec *odd_img, const dg_strvec *odd_lbl) {
    size_t cap = 0, pcap = 0, a = 0, b = 0;
    while (a < img->n || b < lbl->n) {
        int c = a == img->n   ? 1
                : b == lbl->n ? -1
                              : strcmp(img->v[a], lbl->v[b]);
        const char *key = c <= 0 ? img->v[a] : lbl->v[b];
        char *image = dg_xasprintf("%s/%s%s", l->img_dir, key, l->img_suffix);
        char *label = dg_xasprintf("%s/%s%s", l->lbl_dir, key, l->lbl_suffix);
        if (c == 0 && !is_odd(odd_img, key) && !is_odd(odd_lbl, key))
            add_pair(ds, &cap, image, label);
        else
            pair_or_problem(ds, &cap, &pcap, image, label, NULL, key);
        if (c <= 0) a++;
        if (c >= 0) b++;
    }
}

/* Pairs the entries of a split list: both files must be regular files. */
static void pair_listed(
        dg_seg_dataset *ds, const layout *l, const dg_strvec *keys) {
    size_t cap = 0, pcap = 0;
    for (size_t i = 0; i < keys->n; i++) {
        char *image =
                dg_xasprintf("%s/%s%s", l->img_dir, keys->v[i], l->img_suffix);
        char *label =
                dg_xasprintf("%s/%s%s", l->lbl_dir, keys->v[i], l->lbl_suffix);
        char *entry = dg_xasprintf("%s%s", keys->v[i], l->img_suffix);
        pair_or_problem(ds, &cap, &pcap, image, label, l->list, entry);
        dg_free(entry);
    }
}

/* ---- open / free ----------------------------------------------------------
 */

static const reader_def *find_reader(const char *name) {
    for (size_t i = 0; i < DG_ARRAY_LEN(READERS); i++)
        if (strcmp(READERS[i].name, name) == 0) return &READERS[i];
    return NULL;
}

/* Canonical split name of `split` for reader r, or NULL when unknown. */
static const char *canonical_split(const reader_def *r, const char *split) {
    for (size_t i = 0; i < DG_ARRAY_LEN(r->splits) && r->splits[i]; i++)
        if (strcmp(r->splits[i], split) == 0)
            return r->canonical[i] ? r->canonical[i] : r->splits[i];
    return NULL;
}

dg_status dg_seg_dataset_open_opts(const char *reader_name, const char *root,
        const char *split, const dg_seg_open_opts *opts, dg_seg_dataset *ds) {
    memset(ds, 0, sizeof(*ds));
    const reader_def *r = find_reader(reader_name);
    if (!r) {
        dg_log_error("unknown dataset reader '%s' (readers: cityscapes, gtav, "
                     "synthia, bdd100k, mapillary)",
                reader_name);
        return DG_STATUS_ERR_CONFIG;
    }
    const char *csplit = canonical_split(r, split);
    if (!csplit) {
        dg_log_error("%s: reader %s has no split '%s' (splits: %s)", root,
                r->name, split, r->split_help);
        return DG_STATUS_ERR_CONFIG;
    }
    struct stat st_root;
    if (stat(root, &st_root) != 0) {
        dg_log_error("%s: %s dataset root: %s", root, r->name, strerror(errno));
        return DG_STATUS_ERR_MISSING;
    }
    if (!S_ISDIR(st_root.st_mode)) {
        dg_log_error("%s: %s dataset root is not a folder", root, r->name);
        return DG_STATUS_ERR_MISSING;
    }

    ds->reader = r->name;
    ds->root = dg_xstrdup(root);
    ds->split = dg_xstrdup(split);
    ds->encoding = r->encoding;
    ds->mismatch_level = DG_LOG_ERROR;
    dg_labelmap_init(&ds->map, r->map);
    ds->oor = dg_xcalloc(1, sizeof(*ds->oor));
    atomic_init(&ds->oor->first, INT64_MAX);

    layout l;
    memset(&l, 0, sizeof(l));
    dg_strvec img = {0}, lbl = {0}, odd_img = {0}, odd_lbl = {0};
    dg_status st = r->find(root, csplit, opts, &l);
    if (st != DG_STATUS_OK) goto done;
    ds->layout = dg_xstrdup(l.what);
    if (l.list) ds->split_list = dg_xstrdup(l.list);
    if (l.list) {
        st = dg_seg_split_list_read(l.list, &img);
        if (st != DG_STATUS_OK) goto done;
        dg_strvec_sort(&img);
        pair_listed(ds, &l, &img);
    } else {
        st = scan_dir(l.img_dir, "", SCAN_DEPTH, l.img_suffix, &img, &odd_img);
        if (st == DG_STATUS_OK)
            st = scan_dir(l.lbl_dir, "", SCAN_DEPTH, l.lbl_suffix, &lbl, &odd_lbl);
        if (st != DG_STATUS_OK) goto done;
        dg_strvec_sort(&img);
        dg_strvec_sort(&lbl);
        dg_strvec_sort(&odd_img);
        dg_strvec_sort(&odd_lbl);
        pair_scanned(ds, &l, &img, &lbl, &odd_img, &odd_lbl);
    }
    if (ds->n_problems > DG_SEG_PROBLEMS_LOGGED)
        dg_log_warn("%s: %zu more missing or unusable partners in %s split '%s' (%zu in all: "
                    "%zu missing, %zu not regular files; `dgseg verify --json` lists them all)",
                root, ds->n_problems - DG_SEG_PROBLEMS_LOGGED, r->name, split, ds->n_problems,
                ds->n_problems - ds->n_not_files, ds->n_not_files);
    if (ds->n == 0) {
        dg_log_error("%s: no complete image/label pair in %s split '%s' "
                     "(images %s/*%s, "
                     "labels %s/*%s%s%s)",
                root, r->name, split, l.img_dir, l.img_suffix, l.lbl_dir,
                l.lbl_suffix, l.list ? ", list " : "", l.list ? l.list : "");
        st = DG_STATUS_ERR_MISSING;
    }

done:
    dg_strvec_free(&img);
    dg_strvec_free(&lbl);
    dg_strvec_free(&odd_img);
    dg_strvec_free(&odd_lbl);
    layout_free(&l);
    if (st != DG_STATUS_OK) dg_seg_dataset_free(ds);
    return st;
}

dg_status dg_seg_dataset_open(const char *reader_name, const char *root,
        const char *split, dg_seg_dataset *ds) {
    return dg_seg_dataset_open_opts(reader_name, root, split, NULL, ds);
}

void dg_seg_dataset_free(dg_seg_dataset *ds) {
    for (size_t i = 0; i < ds->n; i++) {
        dg_free(ds->pairs[i].image);
        dg_free(ds->pairs[i].label);
    }
    for (size_t i = 0; i < ds->n_problems; i++) {
        dg_free(ds->problems[i].file);
        dg_free(ds->problems[i].message);
    }
    dg_free(ds->pairs);
    dg_free(ds->problems);
    dg_free(ds->root);
    dg_free(ds->split);
    dg_free(ds->layout);
    dg_free(ds->split_list);
    dg_free(ds->oor);
    memset(ds, 0, sizeof(*ds));
}

/* ---- load ------------------------------------------------------------------
 */

static const char *encoding_name(dg_seg_label_encoding e) {
    switch (e) {
    case DG_SEG_LABEL_GRAY8:
        return "8-bit gray, one channel";
    case DG_SEG_LABEL_PALETTED:
        return "paletted";
    case DG_SEG_LABEL_SAMPLE16:
        return "16 bits per sample";
    }
    return "unknown";
}

static bool encoding_matches(dg_seg_label_encoding e, const dg_label_png *p) {
    switch (e) {
    case DG_SEG_LABEL_GRAY8:
        return !p->paletted && p->channels == 1 && p->bit_depth == 8;
    case DG_SEG_LABEL_PALETTED:
        return p->paletted;
    case DG_SEG_LABEL_SAMPLE16:
        return !p->paletted && p->bit_depth == 16;
    }
    return false;
}

/* ---- label values outside the native range ------------------------------ */

/* Adds one decode of pair i with n pixels outside the range. */
static void oor_count(const dg_seg_dataset *ds, size_t i, uint64_t n) {
    struct dg_seg_oor_state *o = ds->oor;
    if (!o) return;
    atomic_fetch_add(&o->reads, 1);
    if (!n) return;
    atomic_fetch_add(&o->pixels, n);
    atomic_fetch_add(&o->labels, 1);
    int64_t cur = atomic_load(&o->first);
    while ((int64_t)i < cur && !atomic_compare_exchange_weak(&o->first, &cur, (int64_t)i)) {
    }
}

dg_seg_oor_count dg_seg_dataset_out_of_range(const dg_seg_dataset *ds) {
    dg_seg_oor_count c = {.first = -1};
    const struct dg_seg_oor_state *o = ds->oor;
    if (!o) return c;
    c.pixels = atomic_load(&o->pixels);
    c.labels = atomic_load(&o->labels);
    c.reads = atomic_load(&o->reads);
    const int64_t f = atomic_load(&o->first);
    c.first = f == INT64_MAX ? -1 : f;
    return c;
}

bool dg_seg_dataset_warn_out_of_range(const dg_seg_dataset *ds, const char *by) {
    const dg_seg_oor_count c = dg_seg_dataset_out_of_range(ds);
    if (!c.pixels || atomic_exchange(&ds->oor->summarised, true)) return false;
    atomic_store(&ds->oor->noted, true);
    char range[64];
    dg_labelmap_range_text(&ds->map, range, sizeof(range));
    dg_log_warn("%s (%s %s): %llu label pixels in %llu of %llu labels read %s hold values "
                "outside the %s id range (%s) and count as ignore (255); the first: %s "
                "(`dgseg verify` lists every file)",
            ds->root, ds->reader, ds->split, (unsigned long long)c.pixels,
            (unsigned long long)c.labels, (unsigned long long)c.reads, by, ds->reader, range,
            ds->pairs[c.first].label);
    return true;
}

void dg_seg_dataset_note_out_of_range(const dg_seg_dataset *ds, size_t i, uint64_t n,
        const char *while_doing) {
    if (!n || !ds->oor || atomic_exchange(&ds->oor->noted, true)) return;
    char range[64];
    dg_labelmap_range_text(&ds->map, range, sizeof(range));
    dg_log_warn("%s: %llu label pixels hold values outside the %s id range (%s) and count as "
                "ignore (255) %s; further ones in %s split '%s' are not logged one by one "
                "(`dgseg verify` lists every file)",
            ds->pairs[i].label, (unsigned long long)n, ds->reader, range, while_doing,
            ds->reader, ds->split);
}

/* Decodes and maps pair i's label; when h > 0 its size must be (h, w).
 * label is zeroed on error. */
static dg_status load_label(const dg_seg_dataset *ds, size_t i, int h, int w,
        dg_image *label, uint64_t *n_out_of_range) {
    const dg_seg_pair *p = &ds->pairs[i];
    dg_label_png png;
    memset(label, 0, sizeof(*label));
    dg_status st = dg_label_read_png(p->label, &png);
    if (st != DG_STATUS_OK) return st;
    if (!encoding_matches(ds->encoding, &png)) {
        dg_log_error(
                "%s: %s label must be %s; found %d-bit %s with %d channel(s)",
                p->label, ds->reader, encoding_name(ds->encoding),
                png.file_bit_depth, png.paletted ? "paletted" : "samples",
                png.channels);
        dg_label_png_free(&png);
        return DG_STATUS_ERR_FORMAT;
    }
    if (h > 0 && (png.h != h || png.w != w)) {
        dg_log(ds->mismatch_level,
                "%s: image is %dx%d but its label %s is %dx%d (width x height)",
                p->image, w, h, p->label, png.w, png.h);
        dg_label_png_free(&png);
        return DG_STATUS_ERR_SHAPE;
    }
    dg_image_init(label, png.h, png.w, 1);
    size_t n = (size_t)png.h * (size_t)png.w;
    uint64_t bad = png.bit_depth == 16
                           ? dg_labelmap_apply16(&ds->map, png.data16,
                                     (size_t)png.channels, n, label->data)
                           : dg_labelmap_apply8(&ds->map, png.data8,
                                     (size_t)png.channels, n, label->data);
    oor_count(ds, i, bad);
    if (n_out_of_range) *n_out_of_range = bad;
    dg_label_png_free(&png);
    return DG_STATUS_OK;
}

dg_status dg_seg_dataset_load_ex(const dg_seg_dataset *ds, size_t i,
        dg_image *img, dg_image *label, dg_seg_load_report *rep) {
    DG_ASSERT(i < ds->n);
    const dg_seg_pair *p = &ds->pairs[i];
    memset(label, 0, sizeof(*label));
    if (rep) memset(rep, 0, sizeof(*rep));
    dg_status st = dg_image_read(p->image, img);
    if (st != DG_STATUS_OK) {
        if (rep) rep->bad_file = p->image;
        return st;
    }
    uint64_t bad = 0;
    st = load_label(ds, i, img->h, img->w, label, &bad);
    if (st != DG_STATUS_OK) {
        if (rep) rep->bad_file = p->label;
        dg_image_free(img);
        return st;
    }
    if (rep) rep->n_out_of_range = bad;
    return DG_STATUS_OK;
}

dg_status dg_seg_dataset_load_label(const dg_seg_dataset *ds, size_t i, dg_image *label) {
    DG_ASSERT(i < ds->n);
    return load_label(ds, i, 0, 0, label, NULL);
}

dg_status dg_seg_dataset_load(
        const dg_seg_dataset *ds, size_t i, dg_image *img, dg_image *label) {
    return dg_seg_dataset_load_ex(ds, i, img, label, NULL);
}

const char *dg_seg_eval_split(const char *reader_name) {
    return !strcmp(reader_name, "mapillary") ? "validation" : "val";
}
