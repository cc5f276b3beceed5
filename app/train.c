/* app/train.c -- `dgseg train` (docs/design.md §4): reads the configuration,
 * checks what this CPU can run, chooses the run folder (output.dir, the
 * newest runs/<config-name>-* for --resume, or a new
 * runs/<config-name>-<timestamp>), locks it, writes config.ini (resolved)
 * and catches SIGINT/SIGTERM; then hands the run to the segmentation
 * trainer (app/train_seg.c) or the classification trainer
 * (app/train_cls.c), which share the loop of app/trainer.c.
 *
 * Under mpirun (app/dist.h) rank 0 alone chooses the folder (its name
 * goes to the other ranks), locks it and writes config.ini; the other
 * ranks write nothing there, so they never contend for the folder's lock
 * or race a writer. What data parallelism cannot compute exactly yet is
 * refused before the folder exists (check_parallel). */
#define _POSIX_C_SOURCE 200809L
#include "app/train.h"

#include <dirent.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/cli.h"
#include "app/config.h"
#include "app/dist.h"
#include "app/train_cls.h"
#include "app/train_seg.h"
#include "app/trainer.h"
#include "data/fsutil.h"

/* ---- command --------------------------------------------------------------- */

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: dgseg train CONFIG [section.key=value ...] [--resume]\n"
            "\n"
            "Trains the model CONFIG describes: segmentation (data.sources) or leave-one-domain-\n"
            "out classification over every data.test_domains entry (data.dataset). The run\n"
            "folder (output.dir, default runs/<config-name>-<timestamp>) gets config.ini,\n"
            "metrics.jsonl and checkpoints/last.safetensors. --resume (train.resume=true)\n"
            "continues from the last checkpoint exactly; SIGINT/SIGTERM write a checkpoint\n"
            "and stop. Exit codes: 0 done, 1 runtime failure, 2 usage or configuration error.\n");
}

/* The newest runs/<name>-<timestamp> folder holding a checkpoint (the
 * timestamps sort by name), or NULL. */
static char *latest_run(const char *name) {
    DIR *d = opendir("runs");
    if (!d) return NULL;
    char *prefix = dg_xasprintf("%s-", name), *best = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix))) continue;
        char *ck = dg_xasprintf("runs/%s/checkpoints/last.safetensors", e->d_name);
        if (dg_is_file(ck) && (!best || strcmp(e->d_name, best) > 0)) {
            dg_free(best);
            best = dg_xstrdup(e->d_name);
        }
        dg_free(ck);
    }
    closedir(d);
    dg_free(prefix);
    char *dir = best ? dg_xasprintf("runs/%s", best) : NULL;
    dg_free(best);
    return dir;
}

/* What a job of N > 1 ranks computes exactly: both trainers, every model
 * (BatchNorm with model.sync_bn computes the whole batch's statistics,
 * dropout draws each sample's masks from its place in the whole batch) and
 * every method (each gradient is summed over the ranks; SAF's bank is fed
 * the whole batch on every rank), when train.batch_size is a multiple of
 * N. Anything else is refused here, naming the key. */
static dg_status check_parallel(const dg_config *cfg, int n) {
    const char *p = cfg->path;
    if (cfg->batch_size % n) {
        dg_log_error("%s: train.batch_size = %ld: must be a multiple of the %d ranks (each rank "
                     "computes train.batch_size / %d samples of every training domain)", p,
                cfg->batch_size, n, n);
        return DG_STATUS_ERR_CONFIG;
    }
    return DG_STATUS_OK;
}

/* Rank 0's *dir on every rank (allocated). */
static void share_dir(char **dir) {
    uint64_t len = dg_dist_is_root() ? strlen(*dir) : 0;
    dg_dist_bcast(&len, sizeof(len));
    if (!dg_dist_is_root()) {
        dg_free(*dir);
        *dir = dg_xcalloc(len + 1, 1);
    }
    dg_dist_bcast(*dir, len);
}

int dg_train_main(int argc, char **argv) {
    dg_cli_config_args args = {0};
    bool resume = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            train_usage(stdout);
            dg_free(args.over);
            return 0;
        }
        if (!strcmp(argv[i], "--resume")) resume = true;
        else if (!dg_cli_config_arg(&args, argv[i])) {
            dg_free(args.over);
            return dg_cli_unexpected("train", argv[i], train_usage);
        }
    }
    if (resume) dg_cli_config_arg(&args, "train.resume=true");
    dg_config cfg;
    int crc = dg_cli_config_load(&args, train_usage, &cfg);
    if (crc) return crc;
    /* before the run folder exists: what this CPU cannot run is a
     * configuration error, not an abort half-way into building the model */
    {
        char what[512];
        snprintf(what, sizeof(what), "%s: train.dtype = bf16", cfg.path);
        if (dg_caps_check(dg_caps_get(), cfg.dtype == DG_DTYPE_BF16, what) != DG_STATUS_OK) {
            dg_config_free(&cfg);
            return 2;
        }
    }
    if (dg_dist_size() > 1 && (!dg_cli_same_job(&cfg, "train") ||
            check_parallel(&cfg, dg_dist_size()) != DG_STATUS_OK)) {
        dg_config_free(&cfg);
        return 2;
    }
    if (cfg.threads) omp_set_num_threads((int)cfg.threads);
    char *dir = NULL;
    if (cfg.out_dir[0]) {
        dir = dg_xstrdup(cfg.out_dir);
    } else if (cfg.resume) {
        dir = latest_run(cfg.name);
        if (!dir) {
            dg_log_error("train.resume: no runs/%s-* folder with a checkpoint; set output.dir to "
                         "the run folder to resume", cfg.name);
            dg_config_free(&cfg);
            return 2;
        }
    } else {
        char stamp[32];
        time_t now = time(NULL);
        struct tm tmv;
        localtime_r(&now, &tmv);
        strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tmv);
        dir = dg_xasprintf("runs/%s-%s", cfg.name, stamp);
    }
    share_dir(&dir); /* a timestamp can differ between ranks */
    const bool root = dg_dist_is_root();
    int rc = root && dg_make_dirs(dir) != DG_STATUS_OK;
    int lock = -1; /* one run at a time in a folder */
    if (rc == 0 && root && dg_folder_lock(dir, "run folder", &lock) != DG_STATUS_OK) rc = 1;
    if (rc == 0 && root) {
        char *text = dg_config_text(&cfg, false);
        char *path = dg_xasprintf("%s/config.ini", dir);
        dg_file_remove_stale_temporaries(path); /* a kill -9 while it was written */
        const dg_file_part part = {text, strlen(text)};
        if (dg_file_write_atomic(path, &part, 1) != DG_STATUS_OK) rc = 1;
        dg_free(path);
        dg_free(text);
    }
    dg_cli_stop_signals old_sig;
    dg_cli_stop_signals_catch(&old_sig, dg_trainer_on_signal);
    dg_trainer_interrupt_clear();
    if (rc == 0)
        rc = cfg.task == DG_TASK_SEGMENTATION ? dg_train_seg(&cfg, dir) : dg_train_cls(&cfg, dir);
    dg_cli_stop_signals_restore(&old_sig);
    dg_folder_unlock(lock);
    dg_free(dir);
    dg_config_free(&cfg);
    return rc;
}
