/* app/verify.c -- `dgseg verify CONFIG [--json FILE] [section.key=value ...]`
 * (docs/design.md §4, docs/datasets.md §6): scans every dataset the configuration
 * names, decodes every image and label, and reports per dataset and split
 * (per domain for classification) the image count, missing partners,
 * unreadable files, image/label size mismatches, label values outside the
 * reader's native range and the label (class) histogram. Exits 1 when
 * anything would stop training or evaluation: a dataset that cannot be
 * opened, or an unreadable or mismatched pair in a target (evaluation never
 * skips) or, with data.on_bad_sample = fail, in a source. A partner that
 * exists but is not a regular file (a directory, a dangling or looping
 * link, a FIFO, a socket, a device) means a damaged copy of the dataset:
 * exit 1 in any role and under either policy. A partner that does not
 * exist at all stays a warning (distributed copies of GTAV lack a few
 * frames, docs/datasets.md §2). */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "app/cli.h"
#include "app/config.h"
#include "app/verify.h"
#include "data/domainbed.h"
#include "data/fsutil.h"
#include "data/idx.h"
#include "data/labelmap.h"
#include "data/loader.h"
#include "data/rotated_fmnist.h"
#include "data/seg_dataset.h"

#define N_BINS (DG_NUM_TRAIN_IDS + 1) /* trainIds 0 .. 18, then ignore */

/* Full-dataset sizes (docs/datasets.md §6) and canonical split-list md5s. */
typedef struct known_split {
    const char *reader, *split;
    long images;
    const char *list_md5; /* NULL: no list */
} known_split;

static const known_split known[] = {
    {"cityscapes", "train", 2975, NULL},
    {"cityscapes", "val", 500, NULL},
    {"gtav", "train", 12388, "96e3dd81fcbf3734464e2d1519e58644"},
    {"gtav", "val", 6382, "7e25e66e8ca8bae6633860f767d94d7f"},
    {"gtav", "test", 6181, "a0930f7470bb86c8fbbe70ebfc0c0d5b"},
    {"synthia", "train", 6580, "5d5ba9518b8fb1f44c8aec85d0d0bd29"},
    {"synthia", "val", 2820, "405236c4a573d598ca0650e3e341bd66"},
    {"bdd100k", "train", 7000, NULL},
    {"bdd100k", "val", 1000, NULL},
    {"mapillary", "training", 18000, NULL},
    {"mapillary", "validation", 2000, NULL},
};

static const known_split *find_known(const char *reader, const char *split) {
    for (size_t i = 0; i < DG_ARRAY_LEN(known); i++)
        if (!strcmp(known[i].reader, reader) && !strcmp(known[i].split, split)) return &known[i];
    return NULL;
}

typedef struct verify_run {
    const dg_config *cfg;
    cJSON *datasets; /* array */
    bool stop;       /* something would stop training or evaluation, or a
                        partner is not a regular file */
} verify_run;

static cJSON *entry_new(verify_run *vr, const char *name, const char *reader, const char *root,
        const char *split, bool source) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", name);
    cJSON_AddStringToObject(e, "reader", reader);
    cJSON_AddStringToObject(e, "root", root);
    cJSON_AddStringToObject(e, "split", split);
    cJSON_AddStringToObject(e, "role", source ? "source" : "target");
    cJSON_AddItemToArray(vr->datasets, e);
    return e;
}

static void add_problem(cJSON *problems, const char *file, const char *kind, const char *msg) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "file", file);
    cJSON_AddStringToObject(p, "kind", kind);
    cJSON_AddStringToObject(p, "message", msg);
    cJSON_AddItemToArray(problems, p);
}

static const char *status_words(dg_status st) {
    switch (st) {
    case DG_STATUS_ERR_IO: return "cannot be read";
    case DG_STATUS_ERR_SHAPE: return "image and label sizes differ";
    default: return "corrupt, truncated or not in the reader's encoding";
    }
}

/* ---- segmentation ------------------------------------------------------- */

typedef struct pair_result {
    dg_status st;
    const char *bad_file; /* borrowed from the dataset */
    uint64_t n_oor;
} pair_result;

static void verify_seg(verify_run *vr, const dg_dataset_spec *spec, bool source) {
    const dg_config *cfg = vr->cfg;
    const char *split = source ? cfg->source_split : dg_seg_eval_split(spec->reader);
    char name[256];
    snprintf(name, sizeof(name), "%s:%s", spec->reader, split);
    cJSON *e = entry_new(vr, name, spec->reader, spec->root, split, source);
    cJSON *problems = cJSON_CreateArray();
    dg_seg_dataset ds;
    dg_seg_open_opts opts = {.split_dir = cfg->split_dir};
    dg_status st = dg_seg_dataset_open_opts(spec->reader, spec->root, split, &opts, &ds);
    if (st != DG_STATUS_OK) {
        add_problem(problems, spec->root, "unreadable_dataset",
                "the dataset cannot be opened (see the messages above)");
        cJSON_AddNumberToObject(e, "images", 0);
        cJSON_AddItemToObject(e, "problems", problems);
        cJSON_AddItemToObject(e, "label_histogram", cJSON_CreateArray());
        printf("%s %s %s: cannot be opened\n", source ? "source" : "target", name, spec->root);
        vr->stop = true;
        return;
    }
    ds.mismatch_level = DG_LOG_ERROR;
    for (size_t i = 0; i < ds.n_problems; i++)
        add_problem(problems, ds.problems[i].file, ds.problems[i].kind, ds.problems[i].message);
    if (ds.n_not_files) vr->stop = true;
    const size_t n_missing = ds.n_problems - ds.n_not_files;

    pair_result *res = dg_xcalloc(ds.n, sizeof(*res));
    uint64_t hist[N_BINS] = {0};
#pragma omp parallel
    {
        uint64_t h[N_BINS] = {0};
#pragma omp for schedule(dynamic, 1)
        for (long i = 0; i < (long)ds.n; i++) {
            dg_image img, lbl;
            dg_seg_load_report rep;
            res[i].st = dg_seg_dataset_load_ex(&ds, (size_t)i, &img, &lbl, &rep);
            res[i].bad_file = rep.bad_file;
            res[i].n_oor = rep.n_out_of_range;
            if (res[i].st != DG_STATUS_OK) continue;
            size_t n = (size_t)lbl.h * (size_t)lbl.w;
            for (size_t k = 0; k < n; k++)
                h[lbl.data[k] < DG_NUM_TRAIN_IDS ? lbl.data[k] : DG_NUM_TRAIN_IDS]++;
            dg_image_free(&img);
            dg_image_free(&lbl);
        }
#pragma omp critical
        for (int k = 0; k < N_BINS; k++) hist[k] += h[k];
    }
    long n_unreadable = 0, n_mismatch = 0, n_unmapped = 0;
    for (size_t i = 0; i < ds.n; i++) {
        char msg[256];
        if (res[i].st == DG_STATUS_OK) {
            if (!res[i].n_oor) continue;
            n_unmapped++;
            snprintf(msg, sizeof(msg), "%llu label pixels hold values outside the %s id range "
                     "(mapped to ignore)", (unsigned long long)res[i].n_oor, ds.reader);
            add_problem(problems, ds.pairs[i].label, "unmapped_values", msg);
            continue;
        }
        bool mismatch = res[i].st == DG_STATUS_ERR_SHAPE;
        n_mismatch += mismatch;
        n_unreadable += !mismatch;
        snprintf(msg, sizeof(msg), "%s", status_words(res[i].st));
        add_problem(problems, res[i].bad_file ? res[i].bad_file : ds.pairs[i].image,
                mismatch ? "size_mismatch" : "unreadable", msg);
    }
    dg_free(res);
    bool skips = source && cfg->on_bad_sample == DG_BAD_SAMPLE_SKIP;
    if ((n_unreadable || n_mismatch) && !skips) vr->stop = true;
    if (n_unreadable + n_mismatch == (long)ds.n) vr->stop = true; /* nothing left */

    cJSON_AddNumberToObject(e, "images", (double)ds.n);
    cJSON_AddItemToObject(e, "problems", problems);
    cJSON *h = cJSON_CreateArray();
    for (int k = 0; k < N_BINS; k++) cJSON_AddItemToArray(h, cJSON_CreateNumber((double)hist[k]));
    cJSON_AddItemToObject(e, "label_histogram", h);

    printf("%s %s %s (%s): %zu images, %zu missing partner%s, %zu partner%s not %s, %ld "
           "unreadable, %ld size mismatches, %ld labels with unmapped values\n",
            source ? "source" : "target", name, spec->root, ds.layout, ds.n, n_missing,
            n_missing == 1 ? "" : "s", ds.n_not_files, ds.n_not_files == 1 ? "" : "s",
            ds.n_not_files == 1 ? "a regular file" : "regular files", n_unreadable, n_mismatch,
            n_unmapped);
    if (ds.n_not_files)
        printf("  %zu image/label pair%s cannot be used: a partner exists but is not a regular "
               "file (a damaged copy of the dataset; each is named in the warnings)\n",
                ds.n_not_files, ds.n_not_files == 1 ? "" : "s");
    const known_split *ks = find_known(ds.reader, ds.split);
    if (ks && (long)ds.n != ks->images)
        printf("  note: the full dataset has %ld images in this split\n", ks->images);
    if (ds.split_list) {
        size_t len = 0;
        char *text = dg_file_read_all(ds.split_list, &len);
        if (text) {
            uint8_t dig[16];
            char hex[33];
            dg_idx_md5(text, len, dig);
            dg_idx_md5_hex(dig, hex);
            bool canon = ks && ks->list_md5 && !strcmp(hex, ks->list_md5);
            printf("  split list %s: md5 %s%s\n", ds.split_list, hex,
                    canon ? " (the canonical RobustNet list)" : " (not the canonical list)");
            cJSON_AddStringToObject(e, "split_list_md5", hex);
            dg_free(text);
        }
    }
    printf("  trainId histogram (0..18, ignore):");
    for (int k = 0; k < N_BINS; k++) printf(" %llu", (unsigned long long)hist[k]);
    printf("\n");
    dg_seg_dataset_free(&ds);
}

/* ---- classification ----------------------------------------------------- */

/* Is domain d (name) among data.test_domains (names or indices)? */
static bool is_test_domain(const dg_config *cfg, int d, const char *name) {
    dg_strvec toks = {0};
    dg_split_list(cfg->test_domains, &toks);
    bool hit = false;
    for (size_t i = 0; i < toks.n && !hit; i++) {
        char *end;
        long k = strtol(toks.v[i], &end, 10);
        hit = (*end == '\0' && k == d) || !strcmp(toks.v[i], name);
    }
    dg_strvec_free(&toks);
    return hit;
}

static void add_class_histogram(cJSON *e, const int64_t *count, int n_classes) {
    cJSON *h = cJSON_CreateArray();
    for (int k = 0; k < n_classes; k++) cJSON_AddItemToArray(h, cJSON_CreateNumber((double)count[k]));
    cJSON_AddItemToObject(e, "class_histogram", h);
}

static void verify_domainbed(verify_run *vr, const dg_dataset_spec *spec) {
    dg_domainbed ds;
    if (dg_domainbed_open(spec->root, &ds) != DG_STATUS_OK) {
        cJSON *e = entry_new(vr, "domainbed", "domainbed", spec->root, "all", true);
        cJSON *problems = cJSON_CreateArray();
        add_problem(problems, spec->root, "unreadable_dataset",
                "the dataset cannot be opened (see the messages above)");
        cJSON_AddNumberToObject(e, "images", 0);
        cJSON_AddItemToObject(e, "problems", problems);
        printf("domainbed %s: cannot be opened\n", spec->root);
        vr->stop = true;
        return;
    }
    for (int d = 0; d < ds.n_domains; d++) {
        const dg_domainbed_domain *dm = &ds.domains[d];
        bool test = is_test_domain(vr->cfg, d, dm->name);
        cJSON *e = entry_new(vr, dm->name, "domainbed", spec->root, "all", !test);
        dg_status *st = dg_xcalloc((size_t)dm->n, sizeof(*st));
#pragma omp parallel for schedule(dynamic, 4)
        for (long k = 0; k < (long)dm->n; k++) {
            dg_image img;
            st[k] = dg_domainbed_load(&ds, d, k, &img);
            if (st[k] == DG_STATUS_OK) dg_image_free(&img);
        }
        cJSON *problems = cJSON_CreateArray();
        int64_t *count = dg_xcalloc((size_t)ds.n_classes, sizeof(*count));
        long bad = 0;
        for (int64_t k = 0; k < dm->n; k++) {
            count[dm->labels[k]]++;
            if (st[k] == DG_STATUS_OK) continue;
            bad++;
            add_problem(problems, dm->paths[k], "unreadable", status_words(st[k]));
        }
        if (bad && (test || vr->cfg->on_bad_sample != DG_BAD_SAMPLE_SKIP)) vr->stop = true;
        cJSON_AddNumberToObject(e, "images", (double)dm->n);
        cJSON_AddItemToObject(e, "problems", problems);
        add_class_histogram(e, count, ds.n_classes);
        printf("%s domain %d %s: %lld images, %ld unreadable, %d classes\n",
                test ? "test" : "training", d, dm->name, (long long)dm->n, bad, ds.n_classes);
        dg_free(count);
        dg_free(st);
    }
    dg_domainbed_free(&ds);
}

static void verify_rfmnist(verify_run *vr) {
    dg_rotated_fmnist ds;
    if (dg_rotated_fmnist_init(&ds, vr->cfg->fmnist_dir, (uint64_t)vr->cfg->data_seed, true) !=
            DG_STATUS_OK) {
        cJSON *e = entry_new(vr, "rotated-fmnist", "rotated-fmnist", vr->cfg->fmnist_dir, "all",
                true);
        cJSON *problems = cJSON_CreateArray();
        add_problem(problems, vr->cfg->fmnist_dir, "unreadable_dataset",
                "the IDX files cannot be read or fail their checks (see the messages above)");
        cJSON_AddNumberToObject(e, "images", 0);
        cJSON_AddItemToObject(e, "problems", problems);
        vr->stop = true;
        return;
    }
    for (int d = 0; d < DG_RFMNIST_DOMAINS; d++) {
        char name[32];
        dg_rotated_fmnist_domain_name(d, name, sizeof(name));
        bool test = is_test_domain(vr->cfg, d, name);
        cJSON *e = entry_new(vr, name, "rotated-fmnist", vr->cfg->fmnist_dir, "all", !test);
        int64_t count[DG_RFMNIST_CLASSES] = {0};
        for (int64_t k = 0; k < ds.n[d]; k++) count[ds.labels[d][k]]++;
        cJSON_AddNumberToObject(e, "images", (double)ds.n[d]);
        cJSON_AddItemToObject(e, "problems", cJSON_CreateArray());
        add_class_histogram(e, count, DG_RFMNIST_CLASSES);
        printf("%s domain %d %s (%d degrees): %lld images\n", test ? "test" : "training", d, name,
                dg_rotated_fmnist_angle(d), (long long)ds.n[d]);
    }
    dg_rotated_fmnist_free(&ds);
}

/* ---- command ------------------------------------------------------------- */

static void verify_usage(FILE *f) {
    fprintf(f,
            "usage: dgseg verify CONFIG [--json FILE] [section.key=value ...]\n"
            "\n"
            "Scans every dataset CONFIG names (segmentation: data.sources at data.source_split\n"
            "and data.targets at their evaluation split; classification: every domain of\n"
            "data.dataset), decodes every image and label and reports per dataset and split:\n"
            "images, missing partners, partners that are not regular files (folders,\n"
            "dangling or looping links, FIFOs, sockets, devices), unreadable files,\n"
            "image/label size mismatches, label values outside the reader's range, and the\n"
            "trainId (class) histogram. Exits 1 when anything would stop training or\n"
            "evaluation or a partner is not a regular file, 2 on a usage or config error.\n"
            "\n"
            "  --json FILE   also write the report as JSON\n");
}

int dg_verify_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"json", required_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *json_path = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (c == 'j') json_path = optarg;
        else if (c == 'h') {
            verify_usage(stdout);
            return 0;
        } else {
            verify_usage(stderr);
            return 2;
        }
    }
    /* CONFIG and overrides may come in any order after the options */
    dg_cli_config_args args = {0};
    for (int i = optind; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (!dg_cli_config_arg(&args, argv[i])) {
            dg_free(args.over);
            return dg_cli_unexpected("verify", argv[i], verify_usage);
        }
    }
    dg_config cfg;
    int crc = dg_cli_config_load(&args, verify_usage, &cfg);
    if (crc) return crc;
    verify_run vr = {.cfg = &cfg, .datasets = cJSON_CreateArray()};
    int rc = 0;
    if (cfg.task == DG_TASK_SEGMENTATION) {
        for (int role = 0; role < 2 && rc == 0; role++) {
            dg_dataset_spec *specs = NULL;
            int n = 0;
            const char *key = role == 0 ? "data.sources" : "data.targets";
            if (dg_dataset_specs_parse(key, role == 0 ? cfg.sources : cfg.targets, &specs, &n) !=
                    DG_STATUS_OK) {
                rc = 2;
                break;
            }
            for (int i = 0; i < n; i++) verify_seg(&vr, &specs[i], role == 0);
            dg_dataset_specs_free(specs, n);
        }
    } else {
        dg_dataset_spec *specs = NULL;
        int n = 0;
        if (dg_dataset_specs_parse("data.dataset", cfg.dataset, &specs, &n) != DG_STATUS_OK ||
                n != 1) {
            if (n != 1 && specs) dg_log_error("data.dataset: name exactly one dataset");
            rc = 2;
        } else if (!strcmp(specs[0].reader, "domainbed")) {
            verify_domainbed(&vr, &specs[0]);
        } else if (!strcmp(specs[0].reader, "rotated-fmnist")) {
            verify_rfmnist(&vr);
        } else {
            dg_log_error("data.dataset: unknown reader '%s' (domainbed, rotated-fmnist)",
                    specs[0].reader);
            rc = 2;
        }
        dg_dataset_specs_free(specs, n);
    }
    if (rc == 0 && json_path) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddItemToObject(root, "datasets", vr.datasets);
        vr.datasets = NULL;
        char *text = cJSON_Print(root);
        const dg_file_part parts[2] = {{text, strlen(text)}, {"\n", 1}};
        if (dg_file_write_atomic(json_path, parts, 2) != DG_STATUS_OK) rc = 1;
        cJSON_free(text);
        cJSON_Delete(root);
    }
    cJSON_Delete(vr.datasets);
    if (rc == 0 && vr.stop) {
        printf("verify: problems found that would stop training or evaluation, or partners "
               "that are not regular files\n");
        rc = 1;
    } else if (rc == 0) {
        printf("verify: ok\n");
    }
    dg_config_free(&cfg);
    return rc;
}
