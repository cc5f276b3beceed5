/* tests/test_train.c -- `dgseg train` end to end on `dgseg synth` output at
 * tiny sizes (DeepLabv3+ R18, 32x32 crops) and on Rotated Fashion-MNIST:
 * resume exactness (4 steps straight vs 2 steps, interrupt, resume to 4:
 * identical checkpoint bytes) for Lookahead with a sync and BN refresh
 * across the resume point and for DGSAM on two sources; the run folder's
 * files; a non-finite loss (absurd learning rate) stops with exit 1 and
 * the last checkpoint intact; a corrupt checkpoint is refused by name; a
 * DomainBed tree trains leave-one-out with evaluation every 2 steps and
 * writes the selection results. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "app/eval_cmd.h"
#include "app/train.h"
#include "app/trainer.h"
#include "common.h"
#include "data/fsutil.h"
#include "data/image_cv.h"
#include "nets/core/weights.h"

static char dir[64];
static char synth_dir[128];

static void setup_synth(void) {
    make_tmpdir(dir, "train");
    snprintf(synth_dir, sizeof(synth_dir), "%.64s/synth", dir);
    make_tiny_synth(synth_dir, 64, 32, 6);
}
static void remove_all(void) { remove_tree(dir, 8); }

static char *write_cfg(const char *name, const char *body) {
    char *path = dg_xmalloc(256);
    snprintf(path, 256, "%s/%s.ini", dir, name);
    char text[2048];
    snprintf(text, sizeof(text), body, synth_dir, synth_dir);
    write_file(path, text, strlen(text));
    return path;
}

static const char *SEG_CFG =
        "[data]\nsources = gtav:%s/gtav, synthia:%s/synthia\ncrop_size = 32\nworkers = 1\n"
        "class_uniform_tile = 16\n"
        "[model]\nname = deeplabv3plus-r18\n"
        "[optim]\nmethod = lookahead\nla_k = 2\nla_bn_refresh_final = 2\n"
        "[train]\niterations = 4\nbatch_size = 2\nlog_every = 1\ncheckpoint_every = 100\n";

static int train(const char *cfg, const char *out, const char *extra, long interrupt_after,
        char **log) {
    char o[256];
    snprintf(o, sizeof(o), "output.dir=%s", out);
    char *argv[6] = {"train", (char *)cfg, o, (char *)extra, NULL};
    int argc = extra ? 4 : 3;
    dg_train_interrupt_after = interrupt_after;
    capture cap;
    capture_begin(&cap);
    int rc = dg_train_main(argc, argv);
    char *l = capture_end(&cap);
    dg_train_interrupt_after = -1;
    if (log) *log = l;
    else dg_free(l);
    return rc;
}

static void expect_same_checkpoints(const char *a, const char *b) {
    char pa[256], pb[256];
    snprintf(pa, sizeof(pa), "%s/checkpoints/last.safetensors", a);
    snprintf(pb, sizeof(pb), "%s/checkpoints/last.safetensors", b);
    size_t na, nb;
    char *ba = read_file(pa, &na), *bb = read_file(pb, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(!memcmp(ba, bb, na), "checkpoints %s and %s differ", pa, pb);
    dg_free(ba);
    dg_free(bb);
}

/* The tensor bytes (after the header, whose metadata holds the resolved
 * configuration) of run folders a and b are identical. */
static void expect_same_tensor_data(const char *a, const char *b) {
    char pa[512], pb[512];
    snprintf(pa, sizeof(pa), "%s/checkpoints/last.safetensors", a);
    snprintf(pb, sizeof(pb), "%s/checkpoints/last.safetensors", b);
    size_t na, nb;
    char *ba = read_file(pa, &na), *bb = read_file(pb, &nb);
    ck_assert(na >= 8 && nb >= 8);
    uint64_t ha = 0, hb = 0;
    for (int i = 7; i >= 0; i--) { /* little-endian header lengths */
        ha = (ha << 8) | (unsigned char)ba[i];
        hb = (hb << 8) | (unsigned char)bb[i];
    }
    ck_assert(8 + ha <= na && 8 + hb <= nb);
    ck_assert_uint_eq(na - 8 - ha, nb - 8 - hb);
    ck_assert_msg(!memcmp(ba + 8 + ha, bb + 8 + hb, na - 8 - ha), "tensors of %s and %s differ",
            pa, pb);
    dg_free(ba);
    dg_free(bb);
}

/* metrics.jsonl of run folder d without the "img_s" values (timings). */
static char *metrics_without_timings(const char *d) {
    char p[256];
    snprintf(p, sizeof(p), "%s/metrics.jsonl", d);
    char *text = read_file(p, NULL);
    for (char *q = text; (q = strstr(q, "\"img_s\":")) != NULL;) {
        char *end = q + strcspn(q, ",}");
        memmove(q, end, strlen(end) + 1);
    }
    return text;
}

/* 4 steps straight against 2, SIGTERM, resume to 4 (SEG_CFG, metrics
 * logged every 3 steps so a line straddles the interrupt): the same
 * checkpoint tensors and the same metrics.jsonl but for the timings. */
static void resume_case(const char *name, const char *extra) {
    char body[1024];
    snprintf(body, sizeof(body), "%s", SEG_CFG);
    char *le = strstr(body, "log_every = 1\n");
    ck_assert_ptr_nonnull(le);
    le[strlen("log_every = ")] = '3';
    char *cfg = write_cfg(name, body);
    char a[128], b[128];
    snprintf(a, sizeof(a), "%.64s/%s-straight", dir, name);
    snprintf(b, sizeof(b), "%.64s/%s-resumed", dir, name);
    char *log;
    int rc = train(cfg, a, extra, -1, &log);
    ck_assert_msg(rc == 0, "straight run rc %d:\n%s", rc, log);
    dg_free(log);
    rc = train(cfg, b, extra, 1, &log); /* interrupted after step 2 of 4 */
    ck_assert_msg(rc == 1 && strstr(log, "interrupted after step 2"), "rc %d:\n%s", rc, log);
    dg_free(log);
    rc = train(cfg, b, "train.resume=true", -1, &log);
    if (extra) {
        /* the override must hold on resume too: rerun with both */
        dg_free(log);
        char *argv[6] = {"train", cfg, NULL, (char *)extra, "train.resume=true", NULL};
        char o[256];
        snprintf(o, sizeof(o), "output.dir=%s", b);
        argv[2] = o;
        capture cap;
        capture_begin(&cap);
        rc = dg_train_main(5, argv);
        log = capture_end(&cap);
    }
    ck_assert_msg(rc == 0 && strstr(log, "from step 2"), "resume rc %d:\n%s", rc, log);
    dg_free(log);
    expect_same_checkpoints(a, b);
    char *ma = metrics_without_timings(a), *mb = metrics_without_timings(b);
    ck_assert_msg(!strcmp(ma, mb), "metrics.jsonl differ:\nstraight:\n%s\nresumed:\n%s", ma, mb);
    ck_assert_msg(strstr(ma, "\"step\":3,\"kind\":\"train\""), "no line at step 3:\n%s", ma);
    dg_free(ma);
    dg_free(mb);
    dg_free(cfg);
}

START_TEST(lookahead_resume_is_exact) { resume_case("la", NULL); }
END_TEST

/* DGSAM with one source domain is SAM (docs/algorithms.md §10 with S = 1: one
 * ascent step, the descent gradient at the perturbed point): it trains
 * instead of asking for a sub-batch that does not exist, and ends where
 * SAM ends. */
START_TEST(dgsam_with_one_source_is_sam) {
    char *cfg = write_cfg("dgsam1", SEG_CFG);
    char a[128], b[128], *log;
    snprintf(a, sizeof(a), "%.64s/dgsam1-sam", dir);
    snprintf(b, sizeof(b), "%.64s/dgsam1-dgsam", dir);
    char src[256];
    snprintf(src, sizeof(src), "data.sources=gtav:%s/gtav", synth_dir);
    const char *method[2] = {"optim.method=sam", "optim.method=dgsam"};
    const char *out[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        char o[256];
        snprintf(o, sizeof(o), "output.dir=%s", out[k]);
        char *argv[] = {"train", cfg, o, src, (char *)method[k], "train.batch_size=2", NULL};
        capture cap;
        capture_begin(&cap);
        int rc = dg_train_main(6, argv);
        log = capture_end(&cap);
        ck_assert_msg(rc == 0, "%s: rc %d:\n%s", method[k], rc, log);
        dg_free(log);
    }
    char pa[256], pb[256];
    snprintf(pa, sizeof(pa), "%s/checkpoints/last.safetensors", a);
    snprintf(pb, sizeof(pb), "%s/checkpoints/last.safetensors", b);
    dg_tensor_reader ra, rb;
    ck_assert_int_eq(dg_tensor_reader_open(&ra, pa), DG_STATUS_OK);
    ck_assert_int_eq(dg_tensor_reader_open(&rb, pb), DG_STATUS_OK);
    const char *name = "backbone.conv1.weight";
    const dg_st_tensor *ia = dg_tensor_reader_find(&ra, name);
    const dg_st_tensor *ib = dg_tensor_reader_find(&rb, name);
    ck_assert(ia && ib && ia->numel == ib->numel);
    const size_t n = (size_t)ia->numel;
    float *wa = dg_xmalloc(n * sizeof(float)), *wb = dg_xmalloc(n * sizeof(float));
    ck_assert_int_eq(dg_tensor_reader_read_as_f32(&ra, ia, wa), DG_STATUS_OK);
    ck_assert_int_eq(dg_tensor_reader_read_as_f32(&rb, ib, wb), DG_STATUS_OK);
    double *ref = dup_double(wa, n);
    DG_ASSERT_CLOSE(wb, ref, n, 1e-6, 1e-4);
    dg_free(ref), dg_free(wa), dg_free(wb);
    dg_tensor_reader_close(&ra);
    dg_tensor_reader_close(&rb);
    dg_free(cfg);
}
END_TEST

START_TEST(dgsam_two_sources_resume_is_exact) { resume_case("dgsam", "optim.method=dgsam"); }
END_TEST

/* The bytes of dir/name. */
static char *bytes_of(const char *d, const char *name, size_t *n) {
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", d, name);
    return read_file(p, n);
}

static void expect_same_file(const char *a, const char *b, const char *name) {
    size_t na, nb;
    char *ba = bytes_of(a, name, &na), *bb = bytes_of(b, name, &nb);
    ck_assert_msg(na == nb && !memcmp(ba, bb, na), "%s differs between %s and %s", name, a, b);
    dg_free(ba);
    dg_free(bb);
}

/* A segmentation Lookahead run with a target, straight, into a. */
static char *finish_case(const char *a, char *targets, size_t size) {
    char *cfg = write_cfg("finish", SEG_CFG);
    snprintf(targets, size, "data.targets=cityscapes:%s/cityscapes", synth_dir);
    if (access(a, F_OK) != 0) {
        char *log;
        int rc = train(cfg, a, targets, -1, &log);
        ck_assert_msg(rc == 0, "straight run rc %d:\n%s", rc, log);
        dg_free(log);
    }
    return cfg;
}

/* --resume of a finished run: nothing is trained, refreshed, evaluated or
 * written again (Lookahead's final BN refresh would move the statistics). */
START_TEST(resuming_a_finished_run_changes_nothing) {
    char a[128], targets[256], *log;
    snprintf(a, sizeof(a), "%.64s/finish-straight", dir);
    char *cfg = finish_case(a, targets, sizeof(targets));
    size_t n0, m0, r0;
    char *ck0 = bytes_of(a, "checkpoints/last.safetensors", &n0);
    char *me0 = bytes_of(a, "metrics.jsonl", &m0), *re0 = bytes_of(a, "results.json", &r0);
    char o[256];
    snprintf(o, sizeof(o), "output.dir=%s", a);
    char *argv[] = {"train", cfg, o, targets, "train.resume=true", NULL};
    capture cap;
    capture_begin(&cap);
    int rc = dg_train_main(5, argv);
    log = capture_end(&cap);
    ck_assert_msg(rc == 0 && strstr(log, "the run is complete") && !strstr(log, "evaluating"),
            "rc %d:\n%s", rc, log);
    dg_free(log);
    size_t n1, m1, r1;
    char *ck1 = bytes_of(a, "checkpoints/last.safetensors", &n1);
    char *me1 = bytes_of(a, "metrics.jsonl", &m1), *re1 = bytes_of(a, "results.json", &r1);
    ck_assert_msg(n0 == n1 && !memcmp(ck0, ck1, n0), "the checkpoint changed");
    ck_assert_msg(m0 == m1 && !memcmp(me0, me1, m0), "metrics.jsonl changed");
    ck_assert_msg(r0 == r1 && !memcmp(re0, re1, r0), "results.json changed");
    /* nor continued past its end: its final BN refresh is applied */
    char *argv2[] = {"train", cfg, o, targets, "train.resume=true", "train.iterations=6", NULL};
    capture_begin(&cap);
    rc = dg_train_main(6, argv2);
    log = capture_end(&cap);
    ck_assert_msg(rc == 2 && strstr(log, "cannot be continued to 6"), "rc %d:\n%s", rc, log);
    dg_free(log);
    dg_free(ck0), dg_free(ck1), dg_free(me0), dg_free(me1), dg_free(re0), dg_free(re1);
    dg_free(cfg);
}
END_TEST

/* SIGTERM during the finish (phase 1: Lookahead's final BN refresh) or the
 * final evaluation (phase 2): exit 1 without results; the resume ends with
 * the checkpoint and results of the run that was never stopped. */
START_TEST(a_run_stopped_while_finishing_resumes_to_the_same_bytes) {
    char a[128], targets[256], *log;
    snprintf(a, sizeof(a), "%.64s/finish-straight", dir);
    char *cfg = finish_case(a, targets, sizeof(targets));
    static const char *const want[] = {"interrupted while finishing",
            "interrupted during the final evaluation"};
    for (int phase = 1; phase <= 2; phase++) {
        char b[128], o[256], p[256];
        snprintf(b, sizeof(b), "%.64s/finish-stopped-%d", dir, phase);
        snprintf(o, sizeof(o), "output.dir=%s", b);
        char *argv[] = {"train", cfg, o, targets, "train.resume=true", NULL};
        dg_train_interrupt_phase = phase;
        capture cap;
        capture_begin(&cap);
        int rc = dg_train_main(4, argv);
        log = capture_end(&cap);
        dg_train_interrupt_phase = 0;
        ck_assert_msg(rc == 1 && strstr(log, want[phase - 1]), "phase %d: rc %d:\n%s", phase,
                rc, log);
        dg_free(log);
        snprintf(p, sizeof(p), "%s/results.json", b);
        ck_assert_msg(access(p, F_OK) != 0, "phase %d: %s written", phase, p);
        capture_begin(&cap);
        rc = dg_train_main(5, argv);
        log = capture_end(&cap);
        ck_assert_msg(rc == 0 && (phase == 1 || strstr(log, "writing its results")),
                "phase %d resume: rc %d:\n%s", phase, rc, log);
        dg_free(log);
        expect_same_checkpoints(a, b);
        expect_same_file(a, b, "results.json");
    }
    dg_free(cfg);
}
END_TEST

/* A kill -9 during a checkpoint write leaves last.safetensors.tmp.PID.N:
 * the next run in the folder removes it when PID is gone (and leaves the
 * files of a live writer); a checkpoint path that is a folder is refused on
 * resume instead of "no checkpoint yet" and a failure at the end. */
START_TEST(stale_checkpoint_temporaries_go_and_a_folder_checkpoint_is_refused) {
    char *cfg = write_cfg("stale", SEG_CFG);
    char out[128], dead[320], live[320], ck[256], *log;
    snprintf(out, sizeof(out), "%.64s/stale-run", dir);
    snprintf(ck, sizeof(ck), "%s/checkpoints/last.safetensors", out);
    snprintf(dead, sizeof(dead), "%s.tmp.99999999.0", ck); /* above any pid_max */
    snprintf(live, sizeof(live), "%s.tmp.%ld.7", ck, (long)getpid());
    char sub[192];
    snprintf(sub, sizeof(sub), "%s/checkpoints", out);
    ck_assert_int_eq(dg_make_dirs(sub), DG_STATUS_OK);
    write_file(dead, "partial", 7);
    write_file(live, "partial", 7);
    int rc = train(cfg, out, "train.iterations=1", -1, &log);
    ck_assert_msg(rc == 0 && strstr(log, "removed, a temporary file"), "rc %d:\n%s", rc, log);
    dg_free(log);
    ck_assert_msg(access(dead, F_OK) != 0, "%s is still there", dead);
    ck_assert_msg(access(live, F_OK) == 0, "%s (a live writer's) was removed", live);
    ck_assert_int_eq(unlink(ck), 0);
    ck_assert_int_eq(mkdir(ck, 0755), 0);
    rc = train(cfg, out, "train.resume=true", -1, &log);
    ck_assert_msg(rc == 1 && strstr(log, "is not a regular file") && !strstr(log, "training "),
            "rc %d:\n%s", rc, log);
    dg_free(log);
    dg_free(cfg);
}
END_TEST

/* A source path with a Latin-1 byte (0xE9): the run's checkpoints record
 * it escaped, so --resume (and eval) can read them back. */
START_TEST(a_config_path_that_is_not_utf8_keeps_checkpoints_readable) {
    char link[192], src[320], out[128], *log;
    snprintf(link, sizeof(link), "%.64s/caf\xe9", dir);
    ck_assert_int_eq(symlink(synth_dir, link), 0);
    snprintf(src, sizeof(src), "data.sources=gtav:%s/gtav", link);
    char *cfg = write_cfg("latin1", SEG_CFG);
    snprintf(out, sizeof(out), "%.64s/latin1-run", dir);
    char o[256];
    snprintf(o, sizeof(o), "output.dir=%s", out);
    char *argv[] = {"train", cfg, o, src, "train.iterations=2", NULL, NULL};
    capture cap;
    dg_train_interrupt_after = 0; /* a checkpoint at step 1 */
    capture_begin(&cap);
    int rc = dg_train_main(5, argv);
    log = capture_end(&cap);
    dg_train_interrupt_after = -1;
    ck_assert_msg(rc == 1 && strstr(log, "interrupted after step 1"), "rc %d:\n%s", rc, log);
    dg_free(log);
    argv[5] = "train.resume=true";
    capture_begin(&cap);
    rc = dg_train_main(6, argv);
    log = capture_end(&cap);
    ck_assert_msg(rc == 0 && strstr(log, "from step 1"), "resume rc %d:\n%s", rc, log);
    dg_free(log);
    char p[256];
    snprintf(p, sizeof(p), "%s/checkpoints/last.safetensors", out);
    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, p), DG_STATUS_OK);
    ck_assert_ptr_nonnull(strstr(dg_tensor_reader_metadata(&r, "config"), "caf\\xe9"));
    dg_tensor_reader_close(&r);
    dg_free(cfg);
}
END_TEST

/* Two runs in one output.dir would leave one run's checkpoint, metrics
 * and results: the second refuses, naming the owner, and writes nothing
 * there; the lock of a process that is gone is free. */
START_TEST(a_run_folder_has_one_owner_at_a_time) {
    char *cfg = write_cfg("lock", SEG_CFG);
    char out[128], lock[192], conf[192], *log;
    snprintf(out, sizeof(out), "%.64s/lock-run", dir);
    snprintf(lock, sizeof(lock), "%s/.dgseg.lock", out);
    snprintf(conf, sizeof(conf), "%s/config.ini", out);
    ck_assert_int_eq(dg_make_dirs(out), DG_STATUS_OK);
    write_file(conf, "[train]\nseed = 7\n", 17); /* the owner's */
    int fd;
    ck_assert_int_eq(dg_folder_lock(out, "run folder", &fd), DG_STATUS_OK);
    /* the owner is this process; a second open file description conflicts */
    char pid[32];
    snprintf(pid, sizeof(pid), "process %ld", (long)getpid());
    int rc = train(cfg, out, "train.iterations=1", -1, &log);
    ck_assert_msg(rc == 1 && strstr(log, "in use by") && strstr(log, pid), "rc %d:\n%s", rc,
            log);
    dg_free(log);
    size_t n;
    char *text = read_file(conf, &n);
    ck_assert_msg(n == 17 && !memcmp(text, "[train]\nseed = 7\n", 17), "config.ini changed");
    dg_free(text);
    dg_folder_unlock(fd);
    /* a lock file whose process is gone (no flock held): taken over */
    write_file(lock, "99999999\n", 9);
    rc = train(cfg, out, "train.iterations=1", -1, &log);
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    dg_free(log);
    dg_free(cfg);
}
END_TEST

START_TEST(run_folder_holds_config_metrics_and_a_loadable_checkpoint) {
    char *cfg = write_cfg("files", SEG_CFG);
    char out[128];
    snprintf(out, sizeof(out), "%.64s/files-run", dir);
    ck_assert_int_eq(train(cfg, out, "optim.method=erm", -1, NULL), 0);
    char p[256];
    snprintf(p, sizeof(p), "%s/config.ini", out);
    char *text = read_file(p, NULL);
    ck_assert_msg(strstr(text, "method = erm\n") && strstr(text, "iterations = 4\n"), "%s", text);
    dg_free(text);
    snprintf(p, sizeof(p), "%s/metrics.jsonl", out);
    text = read_file(p, NULL);
    ck_assert_int_eq(count_lines(text), 4);
    ck_assert_msg(strstr(text, "\"step\":4") && strstr(text, "\"kind\":\"train\""), "%s", text);
    dg_free(text);
    snprintf(p, sizeof(p), "%s/checkpoints/last.safetensors", out);
    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, p), DG_STATUS_OK);
    ck_assert_str_eq(dg_tensor_reader_metadata(&r, "step"), "4");
    ck_assert_str_eq(dg_tensor_reader_metadata(&r, "model"), "deeplabv3plus-r18");
    ck_assert_str_eq(dg_tensor_reader_metadata(&r, "classes"), "19");
    ck_assert_ptr_nonnull(strstr(dg_tensor_reader_metadata(&r, "config"), "[optim]"));
    dg_tensor_reader_close(&r);
    dg_free(cfg);
}
END_TEST

START_TEST(nan_loss_stops_with_the_last_checkpoint_intact) {
    char *cfg = write_cfg("nan", SEG_CFG);
    char out[128];
    snprintf(out, sizeof(out), "%.64s/nan-run", dir);
    char *log;
    char o[256];
    snprintf(o, sizeof(o), "output.dir=%s", out);
    char *argv[] = {"train", cfg, o, "optim.method=erm", "optim.lr=1e30", "train.iterations=50",
            "train.checkpoint_every=1"};
    capture cap;
    capture_begin(&cap);
    int rc = dg_train_main(7, argv);
    log = capture_end(&cap);
    ck_assert_msg(rc == 1 && strstr(log, "non-finite loss"), "rc %d:\n%s", rc, log);
    dg_free(log);
    char p[256];
    snprintf(p, sizeof(p), "%s/checkpoints/last.safetensors", out);
    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, p), DG_STATUS_OK);
    dg_tensor_reader_close(&r);
    dg_free(cfg);
}
END_TEST

/* Before the first checkpoint there is none to speak of: the messages say
 * so instead of naming a step-0 checkpoint, and a rollback is refused
 * instead of failing to open a file that was never written. */
START_TEST(nan_before_the_first_checkpoint_says_there_is_none) {
    char *cfg = write_cfg("nan0", SEG_CFG);
    static const char *const policy[2] = {"train.nan_policy=stop", "train.nan_policy=rollback"};
    static const char *const want[2] = {"no checkpoint was written yet",
            "no checkpoint to roll back to yet"};
    for (int k = 0; k < 2; k++) {
        char out[128], o[256];
        snprintf(out, sizeof(out), "%.64s/nan0-run-%d", dir, k);
        snprintf(o, sizeof(o), "output.dir=%s", out);
        char *argv[] = {"train", cfg, o, "optim.method=erm", "optim.lr=1e30",
                "train.iterations=50", (char *)policy[k], NULL};
        capture cap;
        capture_begin(&cap);
        int rc = dg_train_main(7, argv);
        char *log = capture_end(&cap);
        ck_assert_msg(rc == 1 && strstr(log, want[k]) && !strstr(log, "checkpoint (step 0)") &&
                !strstr(log, "checkpoint of step 0"), "rc %d:\n%s", rc, log);
        dg_free(log);
    }
    dg_free(cfg);
}
END_TEST

START_TEST(corrupt_checkpoint_is_refused_by_name) {
    char *cfg = write_cfg("corrupt", SEG_CFG);
    char out[128];
    snprintf(out, sizeof(out), "%.64s/corrupt-run", dir);
    ck_assert_int_eq(train(cfg, out, "optim.method=erm", 1, NULL), 1);
    char p[256];
    snprintf(p, sizeof(p), "%s/checkpoints/last.safetensors", out);
    size_t n;
    char *bytes = read_file(p, &n);
    write_file(p, bytes, n / 3);
    dg_free(bytes);
    char *log;
    int rc = train(cfg, out, "train.resume=true", -1, &log);
    ck_assert_msg(rc == 1 && strstr(log, p), "rc %d:\n%s", rc, log);
    dg_free(log);
    dg_free(cfg);
}
END_TEST

START_TEST(rotated_fmnist_leave_one_out_runs) {
    char path[256];
    snprintf(path, sizeof(path), "%s/rf.ini", dir);
    const char *text = "[data]\ndataset = rotated-fmnist\ntest_domains = 0, rot75\nworkers = 0\n"
                       "[model]\nname = mnist-cnn\n"
                       "[optim]\nmethod = erm\nbase = adam\nlr = 1e-3\nweight_decay = 0\n"
                       "schedule = constant\n"
                       "[train]\niterations = 3\nbatch_size = 4\nlog_every = 1\n";
    write_file(path, text, strlen(text));
    char out[128];
    snprintf(out, sizeof(out), "%.64s/rf-run", dir);
    char *log;
    int rc = train(path, out, NULL, -1, &log);
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    dg_free(log);
    char p[256];
    snprintf(p, sizeof(p), "%s/test-rot0/checkpoints/last.safetensors", out);
    ck_assert_msg(dg_is_file(p), "%s", p);
    snprintf(p, sizeof(p), "%s/test-rot75/checkpoints/last.safetensors", out);
    ck_assert_msg(dg_is_file(p), "%s", p);
}
END_TEST

/* Writes DIR/<name>.ini for a DomainBed tree made at DIR/<name>: `model`
 * at 32 x 32, Adam 1e-3 at a constant LR, batch 2 per domain; `optim` and
 * `train` are the method's and the run's further key lines. */
static void domainbed_config(const char *name, const char *model, const char *test_domains,
        int workers, const char *optim, const char *train, char *path, size_t size) {
    char root[128], text[1024];
    snprintf(root, sizeof(root), "%.64s/%s", dir, name);
    make_tiny_domainbed(root);
    snprintf(path, size, "%.64s/%s.ini", dir, name);
    snprintf(text, sizeof(text),
            "[data]\ndataset = domainbed:%s\ntest_domains = %s\nimage_size = 32\n"
            "workers = %d\n[model]\nname = %s\n[optim]\nbase = adam\nlr = 1e-3\n"
            "weight_decay = 0\nschedule = constant\n%s[train]\nbatch_size = 2\nlog_every = 1\n"
            "%s[eval]\nbatch_size = 4\n", root, test_domains, workers, model, optim, train);
    write_file(path, text, strlen(text));
}

/* dgseg eval CONFIG --checkpoint OUT/SUB/checkpoints/last.safetensors
 * --json JP (JP = OUT/eval.json); fails the test unless it exits 0. */
static void eval_last_checkpoint(const char *config, const char *out, const char *sub, char *jp,
        size_t size) {
    char ck[256];
    snprintf(ck, sizeof(ck), "%s/%s/checkpoints/last.safetensors", out, sub);
    snprintf(jp, size, "%s/eval.json", out);
    char *argv[] = {"eval", (char *)config, "--checkpoint", ck, "--json", jp, NULL};
    capture cap;
    capture_begin(&cap);
    const int rc = dg_eval_main(6, argv);
    char *log = capture_end(&cap);
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    dg_free(log);
}

START_TEST(domainbed_evaluation_and_selection) {
    char path[256];
    domainbed_config("db", "resnet18", "env0, 2", 0, "method = erm\n", "iterations = 4\neval_every = 2\n",
            path, sizeof(path));
    char out[128];
    snprintf(out, sizeof(out), "%.64s/db-run", dir);
    char *log;
    int rc = train(path, out, NULL, -1, &log);
    ck_assert_msg(rc == 0 && strstr(log, "step 4: training-domain validation"), "rc %d:\n%s", rc,
            log);
    dg_free(log);
    char p[256];
    snprintf(p, sizeof(p), "%s/results.json", out);
    char *json = read_file(p, NULL);
    ck_assert_msg(strstr(json, "env0") && strstr(json, "env2") && strstr(json, "selected_step"),
            "%s", json);
    dg_free(json);
    snprintf(p, sizeof(p), "%s/test-env2/metrics.jsonl", out);
    char *m = read_file(p, NULL);
    /* DomainBed's evaluation points: after updates 1, 3 (1 + eval_every) and 4 (the last). */
    ck_assert_msg(strstr(m, "{\"step\":1,\"kind\":\"eval\"") &&
                    strstr(m, "{\"step\":3,\"kind\":\"eval\"") &&
                    strstr(m, "{\"step\":4,\"kind\":\"eval\"") &&
                    !strstr(m, "{\"step\":2,\"kind\":\"eval\""),
            "%s", m);
    dg_free(m);
    /* dgseg eval of the checkpoint: every domain, all 10 images, ERM's live weights */
    char jp[256];
    eval_last_checkpoint(path, out, "test-env2", jp, sizeof(jp));
    json = read_file(jp, NULL);
    ck_assert_msg(strstr(json, "\"classification\"") && strstr(json, "\"env0\"") &&
                    strstr(json, "\"env1\"") && strstr(json, "\"env2\""),
            "%s", json);
    int tens = 0; /* every domain: all 10 images */
    for (const char *q = json; (q = strstr(q, "\"images\":")) != NULL; q++)
        tens += strtol(q + strlen("\"images\":"), NULL, 10) == 10;
    ck_assert_msg(tens == 3, "%s", json);
    dg_free(json);
}
END_TEST

/* dg_train_main with any number of overrides (NULL-terminated). */
static int train_v(const char *cfg, const char *out, const char *const *over, char **log) {
    char o[256];
    snprintf(o, sizeof(o), "output.dir=%s", out);
    char *argv[32] = {"train", (char *)cfg, o};
    int argc = 3;
    for (int i = 0; over[i] && argc < 31; i++) argv[argc++] = (char *)over[i];
    capture cap;
    capture_begin(&cap);
    int rc = dg_train_main(argc, argv);
    *log = capture_end(&cap);
    return rc;
}

/* The value of `"key":` in the metrics line of (step, kind); NaN if none. */
static double metric_at(const char *m, long step, const char *kind, const char *key) {
    char head[96], k[96];
    snprintf(head, sizeof(head), "{\"step\":%ld,\"kind\":\"%s\"", step, kind);
    snprintf(k, sizeof(k), "\"%s\":", key);
    const char *line = strstr(m, head);
    if (!line) return NAN;
    const char *end = strchr(line, '\n');
    const char *v = strstr(line, k);
    if (!v || (end && v > end)) return NAN;
    return strtod(v + strlen(k), NULL);
}

/* Segmentation validation every 2 steps on both sources' val splits writes
 * best.safetensors (model weights only) at the best score; SWAD gets its
 * source validation loss after steps 1, 3 and the last (its schedule). */
START_TEST(segmentation_validation_best_and_swad_schedule) {
    char *cfg = write_cfg("val", SEG_CFG);
    char out[128];
    snprintf(out, sizeof(out), "%.64s/val-run", dir);
    const char *over[] = {"optim.method=swad", "optim.swad_eval_every=2",
            "optim.swad_n_converge=1", "optim.swad_n_tolerance=2", "optim.swad_val_images=2",
            "optim.swad_bn_batches=1", "train.iterations=5", "train.eval_every=2",
            "eval.val_images=3", NULL};
    char *log;
    int rc = train_v(cfg, out, over, &log);
    ck_assert_msg(rc == 0 && strstr(log, "swad: segments"), "rc %d:\n%s", rc, log);
    dg_free(log);
    char p[256];
    snprintf(p, sizeof(p), "%s/metrics.jsonl", out);
    char *m = read_file(p, NULL);
    for (long st = 1; st <= 5; st++) {
        const bool swad_point = st == 1 || st == 3 || st == 5;
        ck_assert_msg(isfinite(metric_at(m, st, "val_loss", "loss")) == swad_point,
                "val_loss at step %ld:\n%s", st, m);
        const bool val_point = st == 2 || st == 4 || st == 5;
        ck_assert_msg(isfinite(metric_at(m, st, "eval", "gtav_val_miou")) == val_point &&
                        isfinite(metric_at(m, st, "eval", "synthia_val_miou")) == val_point,
                "validation at step %ld:\n%s", st, m);
    }
    long best = 2;
    for (long st = 4; st <= 5; st++)
        if (metric_at(m, st, "eval", "val_miou") > metric_at(m, best, "eval", "val_miou"))
            best = st;
    const double g = metric_at(m, best, "eval", "gtav_val_miou");
    const double y = metric_at(m, best, "eval", "synthia_val_miou");
    ck_assert_double_eq_tol(metric_at(m, best, "eval", "val_miou"), 0.5 * (g + y), 1e-12);
    dg_free(m);
    snprintf(p, sizeof(p), "%s/checkpoints/best.safetensors", out);
    dg_tensor_reader rd;
    ck_assert_int_eq(dg_tensor_reader_open(&rd, p), DG_STATUS_OK);
    char want[16];
    snprintf(want, sizeof(want), "%ld", best);
    ck_assert_str_eq(dg_tensor_reader_metadata(&rd, "step"), want);
    ck_assert_str_eq(dg_tensor_reader_metadata(&rd, "weights"), "best");
    for (size_t i = 0; i < rd.n_tensors; i++)
        ck_assert_msg(strncmp(rd.tensors[i].name, "optim.", 6), "%s", rd.tensors[i].name);
    dg_tensor_reader_close(&rd);
    dg_free(cfg);
}
END_TEST

/* Lookahead's validation sees its slow weights with statistics of their
 * own (app/train_seg.c, slow_weight_stats), and the last step's validation
 * follows the final refresh: that validation equals the results' target
 * evaluation (the same weights, statistics and images; before, it came
 * ahead of the refresh), and training is the same with validations (and
 * their refreshes) as without. */
START_TEST(lookahead_validates_slow_weights_with_their_own_statistics) {
    char *cfg = write_cfg("la-val", SEG_CFG);
    char a[128], b[128], targets[256];
    snprintf(a, sizeof(a), "%.64s/la-val", dir);
    snprintf(b, sizeof(b), "%.64s/la-noval", dir);
    snprintf(targets, sizeof(targets), "data.targets=cityscapes:%s/cityscapes", synth_dir);
    const char *val[] = {targets, "train.eval_every=2", "eval.validate=targets",
            "eval.val_images=100", NULL};
    const char *noval[] = {targets, NULL};
    char *log;
    int rc = train_v(cfg, a, val, &log);
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    dg_free(log);
    rc = train_v(cfg, b, noval, &log);
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    dg_free(log);
    expect_same_tensor_data(a, b);
    char p[256];
    snprintf(p, sizeof(p), "%s/metrics.jsonl", a);
    char *m = read_file(p, NULL);
    const double v2 = metric_at(m, 2, "eval", "cityscapes_miou");
    const double v4 = metric_at(m, 4, "eval", "cityscapes_miou");
    ck_assert_msg(isfinite(v2) && isfinite(v4), "%s", m);
    dg_free(m);
    snprintf(p, sizeof(p), "%s/results.json", a);
    cJSON *res = read_json(p);
    const cJSON *t0 = cJSON_GetArrayItem(cJSON_GetObjectItem(res, "targets"), 0);
    ck_assert_msg(fabs(cJSON_GetObjectItem(t0, "miou")->valuedouble - 100 * v4) < 0.006,
            "results %g, last validation %g", cJSON_GetObjectItem(t0, "miou")->valuedouble,
            100 * v4);
    cJSON_Delete(res);
    dg_free(cfg);
}
END_TEST

/* SWAD on a DomainBed tree: evaluations on optim.swad_eval_every's points
 * (train.eval_every does not apply), the averaged model evaluated once at
 * the end and reported as both the selected and the last result. */
START_TEST(swad_classification_reports_its_average) {
    char path[256];
    domainbed_config("db-swad", "resnet18", "env1", 0,
            "method = swad\nswad_eval_every = 2\nswad_n_converge = 1\nswad_n_tolerance = 1\n"
            "swad_bn_batches = 1\n",
            "iterations = 5\neval_every = 4\n", path, sizeof(path));
    char out[128];
    snprintf(out, sizeof(out), "%.64s/db-swad-run", dir);
    const char *over[] = {NULL};
    char *log;
    int rc = train_v(path, out, over, &log);
    ck_assert_msg(rc == 0 && strstr(log, "swad average"), "rc %d:\n%s", rc, log);
    dg_free(log);
    char p[256];
    snprintf(p, sizeof(p), "%s/test-env1/metrics.jsonl", out);
    char *m = read_file(p, NULL);
    for (long st = 1; st <= 5; st++) {
        const bool point = st == 1 || st == 3 || st == 5;
        ck_assert_msg(isfinite(metric_at(m, st, "eval", "val_acc")) == point &&
                        isfinite(metric_at(m, st, "val_loss", "loss")) == point,
                "step %ld:\n%s", st, m);
    }
    const double avg = metric_at(m, 5, "swad", "test_acc");
    ck_assert_msg(isfinite(avg), "%s", m);
    dg_free(m);
    snprintf(p, sizeof(p), "%s/results.json", out);
    char *json = read_file(p, NULL);
    const char *sel = strstr(json, "\"selected_step\":");
    ck_assert_msg(sel && strtol(sel + strlen("\"selected_step\":"), NULL, 10) == 5, "%s", json);
    dg_free(json);
}
END_TEST

/* Evaluations must not change training: the same run with an evaluation
 * after every step and with none writes the same checkpoint bytes (an
 * evaluation once re-pointed the training loader's source at the test
 * domain and switched its augmentation off). */
START_TEST(classification_evaluations_do_not_change_training) {
    char path[256];
    domainbed_config("db-ev", "resnet18", "env1", 1, "method = erm\n", "iterations = 4\n", path,
            sizeof(path));
    char a[128], b[128];
    snprintf(a, sizeof(a), "%.64s/db-ev-each", dir);
    snprintf(b, sizeof(b), "%.64s/db-ev-none", dir);
    const char *each[] = {"train.eval_every=1", NULL}, *none[] = {"train.eval_every=0", NULL};
    char *log;
    int rc = train_v(path, a, each, &log);
    ck_assert_msg(rc == 0 && strstr(log, "step 3: training-domain validation"), "rc %d:\n%s", rc,
            log);
    dg_free(log);
    rc = train_v(path, b, none, &log);
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    dg_free(log);
    char pa[160], pb[160];
    snprintf(pa, sizeof(pa), "%s/test-env1", a);
    snprintf(pb, sizeof(pb), "%s/test-env1", b);
    expect_same_tensor_data(pa, pb);
}
END_TEST

/* MESA's teacher in the classification trainer: evaluated at the same
 * points ("eval2"), reported as a second row and by dgseg eval as a second
 * model. mesa_decay = 0 makes the teacher the model after every step
 * (docs/algorithms.md §14, invariant 27), so its accuracies equal the student's; with
 * mesa_decay = 1 it never changes, so its accuracies stay put. */
START_TEST(mesa_teacher_is_a_second_classification_row) {
    char path[256];
    domainbed_config("db-mesa", "mnist-cnn", "env1", 0, "method = mesa\nmesa_start_epoch = 0\n",
            "iterations = 3\neval_every = 2\n", path, sizeof(path));
    char a[128], b[128];
    snprintf(a, sizeof(a), "%.64s/db-mesa-d0", dir);
    snprintf(b, sizeof(b), "%.64s/db-mesa-d1", dir);
    const char *d0[] = {"optim.mesa_decay=0", NULL}, *d1[] = {"optim.mesa_decay=1", NULL};
    char *log;
    int rc = train_v(path, a, d0, &log);
    ck_assert_msg(rc == 0 && strstr(log, "step 3: teacher: training-domain validation"),
            "rc %d:\n%s", rc, log);
    dg_free(log);
    char p[256];
    snprintf(p, sizeof(p), "%s/test-env1/metrics.jsonl", a);
    char *m = read_file(p, NULL);
    for (long st = 1; st <= 3; st += 2) {
        for (int k = 0; k < 2; k++) {
            const char *key = k ? "test_acc" : "val_acc";
            const double s = metric_at(m, st, "eval", key), t = metric_at(m, st, "eval2", key);
            ck_assert_msg(isfinite(s) && s == t, "step %ld %s: %g vs %g\n%s", st, key, s, t, m);
        }
        const double ls = metric_at(m, st, "val_loss", "loss");
        ck_assert_msg(isfinite(ls) && ls == metric_at(m, st, "eval2", "val_loss"), "%s", m);
    }
    dg_free(m);
    snprintf(p, sizeof(p), "%s/results.md", a);
    char *md = read_file(p, NULL);
    ck_assert_msg(strstr(md, "| mesa | ") && strstr(md, "| mesa teacher | ") &&
                    strstr(md, "## Runs (mesa teacher)"),
            "%s", md);
    dg_free(md);
    snprintf(p, sizeof(p), "%s/results.json", a);
    cJSON *j = read_json(p);
    const cJSON *sec = cJSON_GetObjectItem(j, "second");
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(sec, "method")));
    ck_assert_str_eq(cJSON_GetObjectItem(sec, "method")->valuestring, "mesa teacher");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(sec, "runs")), 1);
    cJSON_Delete(j);

    rc = train_v(path, b, d1, &log);
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    dg_free(log);
    snprintf(p, sizeof(p), "%s/test-env1/metrics.jsonl", b);
    m = read_file(p, NULL);
    /* the teacher's loss stays put while the student's moves */
    const double v1 = metric_at(m, 1, "eval2", "val_acc"), t1 = metric_at(m, 1, "eval2", "test_acc");
    const double l1 = metric_at(m, 1, "eval2", "val_loss");
    ck_assert_msg(isfinite(v1) && isfinite(t1) && isfinite(l1), "%s", m);
    ck_assert_msg(metric_at(m, 3, "eval2", "val_acc") == v1 &&
                    metric_at(m, 3, "eval2", "test_acc") == t1 &&
                    metric_at(m, 3, "eval2", "val_loss") == l1,
            "%s", m);
    ck_assert_msg(metric_at(m, 3, "val_loss", "loss") != metric_at(m, 1, "val_loss", "loss"),
            "%s", m);
    dg_free(m);

    /* dgseg eval of the checkpoint: the teacher as a second model */
    char jp[256];
    eval_last_checkpoint(path, b, "test-env1", jp, sizeof(jp));
    j = read_json(jp);
    sec = cJSON_GetObjectItem(j, "second");
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(sec, "weights")));
    ck_assert_str_eq(cJSON_GetObjectItem(sec, "weights")->valuestring, "mesa teacher");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(sec, "domains")), 3);
    cJSON_Delete(j);
}
END_TEST

/* Lookahead's BN refreshes (every sync at a new epoch, 500 batches after
 * the last step) on a model without running statistics (the MNIST CNN's
 * GroupNorm) run no forward and draw no refresh batch: the checkpoint
 * records 0 refresh batches. */
START_TEST(no_bn_refresh_without_bn_statistics) {
    char path[256];
    domainbed_config("db-la", "mnist-cnn", "env1", 0,
            "method = lookahead\nla_k = 1\nla_bn_refresh_final = 500\n", "iterations = 3\n",
            path, sizeof(path));
    char out[128];
    snprintf(out, sizeof(out), "%.64s/db-la-run", dir);
    const char *none[] = {NULL};
    char *log;
    const int rc = train_v(path, out, none, &log);
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    dg_free(log);
    char p[256];
    snprintf(p, sizeof(p), "%s/test-env1/checkpoints/last.safetensors", out);
    dg_tensor_reader rd;
    ck_assert_int_eq(dg_tensor_reader_open(&rd, p), DG_STATUS_OK);
    const char *n = dg_tensor_reader_metadata(&rd, "bn_refresh_batches");
    ck_assert_msg(n && !strcmp(n, "0"), "bn_refresh_batches %s", n ? n : "(none)");
    dg_tensor_reader_close(&rd);
}
END_TEST

/* train.dtype = bf16 trains (the step-1 loss within 1% of f32's: the same
 * weights and batch, only the convolutions' rounding differs), keeps f32
 * master weights and writes an f32 checkpoint; the resolved config says
 * bf16. */
START_TEST(bf16_training_keeps_f32_checkpoints) {
    char *cfg = write_cfg("bf16", SEG_CFG);
    char a[128], b[128];
    snprintf(a, sizeof(a), "%.64s/bf16-f32", dir);
    snprintf(b, sizeof(b), "%.64s/bf16-bf16", dir);
    const char *f32[] = {"optim.method=erm", "train.iterations=2", NULL};
    const char *bf16[] = {"optim.method=erm", "train.iterations=2", "train.dtype=bf16", NULL};
    char *log;
    int rc;
    if (!dg_caps_get()->bf16) { /* exit 2 naming the key, before any run folder */
        rc = train_v(cfg, b, bf16, &log);
        ck_assert_msg(rc == 2 && strstr(log, "train.dtype = bf16") &&
                strstr(log, dg_caps_get()->isa_name), "rc %d:\n%s", rc, log);
        dg_free(log);
        ck_assert(!dg_is_dir(b));
        dg_free(cfg);
        DG_TEST_SKIPPED("bf16 training: no bf16 at ISA %s (checked: exit 2 with the reason, no "
                        "run folder)", dg_caps_get()->isa_name);
        return;
    }
    rc = train_v(cfg, a, f32, &log);
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    dg_free(log);
    rc = train_v(cfg, b, bf16, &log);
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    dg_free(log);
    char p[256];
    snprintf(p, sizeof(p), "%s/config.ini", b);
    char *text = read_file(p, NULL);
    ck_assert_msg(strstr(text, "dtype = bf16\n"), "%s", text);
    dg_free(text);
    double loss[2];
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof(p), "%s/metrics.jsonl", i ? b : a);
        text = read_file(p, NULL);
        loss[i] = metric_at(text, 1, "train", "loss");
        dg_free(text);
    }
    ck_assert_msg(isfinite(loss[1]) && fabs(loss[1] - loss[0]) <= 0.01 * loss[0],
            "step-1 loss bf16 %g, f32 %g", loss[1], loss[0]);
    snprintf(p, sizeof(p), "%s/checkpoints/last.safetensors", b);
    dg_tensor_reader r;
    ck_assert_int_eq(dg_tensor_reader_open(&r, p), DG_STATUS_OK);
    for (size_t i = 0; i < dg_tensor_reader_count(&r); i++) {
        const dg_st_tensor *t = dg_tensor_reader_at(&r, i);
        if (!strncmp(t->name, "backbone.", 9) || !strncmp(t->name, "optim.", 6))
            ck_assert_msg(t->dtype == DG_ST_F32 || t->dtype == DG_ST_I64 || t->dtype == DG_ST_U64,
                    "%s: %s", t->name, dg_st_dtype_name(t->dtype));
    }
    ck_assert_int_eq(dg_tensor_reader_find(&r, "backbone.conv1.weight")->dtype, DG_ST_F32);
    dg_tensor_reader_close(&r);
    dg_free(cfg);
}
END_TEST

/* One image per forward pass would abort in ASPP's image-pooling BN:
 * refused as a configuration error (exit 2) naming train.batch_size. */
START_TEST(one_image_per_forward_is_a_config_error) {
    char *cfg = write_cfg("b1", SEG_CFG);
    char out[128], src[192];
    snprintf(out, sizeof(out), "%.64s/b1-run", dir);
    snprintf(src, sizeof(src), "data.sources=gtav:%s/gtav", synth_dir);
    const char *one[] = {src, "train.batch_size=1", NULL};
    const char *dgsam[] = {"optim.method=dgsam", "train.batch_size=1", NULL};
    const char *frozen[] = {src, "train.batch_size=1", "model.freeze_bn=true",
            "train.iterations=1", NULL};
    char *log;
    int rc = train_v(cfg, out, one, &log);
    ck_assert_msg(rc == 2 && strstr(log, "train.batch_size = 1"), "rc %d:\n%s", rc, log);
    dg_free(log);
    rc = train_v(cfg, out, dgsam, &log);
    ck_assert_msg(rc == 2 && strstr(log, "DGSAM"), "rc %d:\n%s", rc, log);
    dg_free(log);
    rc = train_v(cfg, out, frozen, &log); /* frozen BN has no batch statistics */
    ck_assert_msg(rc == 0, "rc %d:\n%s", rc, log);
    dg_free(log);
    dg_free(cfg);
}
END_TEST

Suite *train_suite(void) {
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("segmentation");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup_synth, remove_all); /* in the child: OpenMP after fork hangs */
    tcase_add_test(tc, lookahead_resume_is_exact);
    tcase_add_test(tc, resuming_a_finished_run_changes_nothing);
    tcase_add_test(tc, a_run_stopped_while_finishing_resumes_to_the_same_bytes);
    tcase_add_test(tc, dgsam_two_sources_resume_is_exact);
    tcase_add_test(tc, dgsam_with_one_source_is_sam);
    tcase_add_test(tc, nan_before_the_first_checkpoint_says_there_is_none);
    tcase_add_test(tc, a_run_folder_has_one_owner_at_a_time);
    tcase_add_test(tc, a_config_path_that_is_not_utf8_keeps_checkpoints_readable);
    tcase_add_test(tc, stale_checkpoint_temporaries_go_and_a_folder_checkpoint_is_refused);
    tcase_add_test(tc, segmentation_validation_best_and_swad_schedule);
    tcase_add_test(tc, one_image_per_forward_is_a_config_error);
    tcase_add_test(tc, run_folder_holds_config_metrics_and_a_loadable_checkpoint);
    tcase_add_test(tc, nan_loss_stops_with_the_last_checkpoint_intact);
    tcase_add_test(tc, corrupt_checkpoint_is_refused_by_name);
    tcase_add_test(tc, rotated_fmnist_leave_one_out_runs);
    tcase_add_test(tc, domainbed_evaluation_and_selection);
    tcase_add_test(tc, swad_classification_reports_its_average);
    tcase_add_test(tc, classification_evaluations_do_not_change_training);
    tcase_add_test(tc, mesa_teacher_is_a_second_classification_row);
    tcase_add_test(tc, no_bn_refresh_without_bn_statistics);
    tcase_add_test(tc, bf16_training_keeps_f32_checkpoints);
    tcase_add_test(tc, lookahead_validates_slow_weights_with_their_own_statistics);
    suite_add_tcase(s, tc);
    return s;
}
