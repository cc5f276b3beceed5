/* app/study.h -- `dgseg study STUDY.ini`: a grid of training runs (arms x
 * seeds) in one folder, run one after another and aggregated; `dgseg report
 * DIR...`: the same aggregation of run folders that exist.
 *
 * A study file:
 *
 *   [study]
 *   name = rfmnist-la           ; default: the file's name
 *   out = runs/study-rfmnist-la ; default: runs/study-<name>
 *   seeds = 0, 1, 2             ; train.seed of each arm's runs
 *   overrides = data.test_domains=rot75 train.eval_every=500
 *   flatness = --radii 0.05,0.1 --rho 0.05,0.1 ; optional: `dgseg flatness` options
 *
 *   [arm erm]
 *   config = ../configs/rfmnist-erm.ini ; relative to the study file
 *   overrides = optim.lr=1e-3           ; after the study's
 *
 * Runs go seed by seed (every arm's first seed, then every arm's second,
 * ...). Run (arm, seed) is `dgseg train CONFIG OVERRIDES train.seed=S
 * output.dir=OUT/ARM/seed-S train.resume=true`, in its own process, its
 * output in OUT/ARM/seed-S/train.log. A run is done when its folder holds
 * results.json; `dgseg study` skips done runs and resumes the others from
 * their last checkpoint, so a study killed at any moment loses at most the
 * current run's progress since its last checkpoint. With `flatness`, every
 * finished run's model (classification: each test-DOMAIN folder's) is
 * measured by `dgseg flatness RUN/config.ini --checkpoint
 * MODEL/checkpoints/last.safetensors --out MODEL/flatness OPTIONS` (output
 * in MODEL/flatness.log) unless MODEL/flatness/flatness.json exists; a
 * failed measurement is reported and retried by the next `dgseg study`,
 * the run's result stands. SIGINT/SIGTERM go to
 * the running run (which checkpoints) and stop the study. Every arm's
 * config and overrides are checked before anything runs: a bad file, key
 * or value is exit 2 naming STUDY.ini:LINE.
 *
 * Aggregation (study.md, study.json in the study folder or in `report
 * --out`): per arm (report: per method of the runs' results.json), the
 * number of finished runs and, per target (segmentation: target mIoU) or
 * test domain (classification: test-domain accuracy at the step
 * training-domain validation selects, DomainBed's protocol, and at the last
 * step), the mean and the standard deviation over runs (ddof = 1); the
 * average over targets is taken per run, then over runs. Runs that did not
 * finish, failed or are of the other task are listed and never averaged.
 * Runs with flatness.json files add a flatness table: the training-domain
 * loss, expected sharpness per radius and worst-case sharpness per rho of
 * the run's model (averaged over its test-domain models), mean ± sd over
 * the runs that measured it. */
#ifndef DG_APP_STUDY_H
#define DG_APP_STUDY_H

#include "nets/core/common.h"

int dg_study_main(int argc, char **argv);
int dg_report_main(int argc, char **argv);

/* dgseg study with the dgseg binary `exe` for the runs (dg_study_main:
 * /proc/self/exe, the study's own binary even after a rebuild replaced its
 * file; tests: the build's dgseg). Returns the exit code. */
int dg_study_run(const char *study_path, const char *exe, bool dry_run);

#endif
